"""Semantic label search: an embedding index over feature labels, when an embedding model is configured.

Keyword search (``FeatureLabels.search``) finds "animal" but not "canine"; this index embeds every
label once with a sentence encoder (mean-pooled last hidden state, L2-normalised — how
all-MiniLM-L6-v2 is meant to be used) and ranks labels by cosine similarity to the query.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from atlas_align.atlas.labels import FeatureLabel, FeatureLabels
from atlas_align.errors import ConfigError

DEFAULT_EMBEDDING_MODEL = "minilm"


class LabelEmbedder:
    """Sentence embeddings from any ``transformers`` encoder (a name, folder, or a loaded model)."""

    def __init__(self, model_name: str = DEFAULT_EMBEDDING_MODEL, *, model=None, tokenizer=None, batch_size: int = 128) -> None:
        if model is None:
            from atlas_align.models.assets import load_model_and_tokenizer

            model, tokenizer = load_model_and_tokenizer(model_name, causal=False)
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        parts = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[start : start + self.batch_size]), padding=True, truncation=True, max_length=64, return_tensors="pt")
            hidden = self.model(**{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            parts.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp_min(1), dim=-1))
        return torch.cat(parts) if parts else torch.empty(0, 0)


class EmbeddingIndex:
    """Labels embedded once; ``search`` ranks them by cosine similarity (validated labels break ties)."""

    def __init__(self, labels: FeatureLabels, embedder: LabelEmbedder) -> None:
        self.items: list[FeatureLabel] = list(labels)
        if not self.items:
            raise ConfigError("This atlas has no labels to index.")
        self.embedder = embedder
        self.vectors = embedder.embed([item.label for item in self.items])

    def search(self, query: str, top_k: int = 10) -> list[tuple[FeatureLabel, float]]:
        if not query.strip():
            raise ConfigError("The search query is empty; give a word such as 'canine'.")
        sims = self.vectors @ self.embedder.embed([query])[0]
        sims = sims + 1e-3 * torch.tensor([item.validated for item in self.items], dtype=sims.dtype)
        values, indices = sims.topk(min(top_k, len(self.items)))
        return [(self.items[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]
