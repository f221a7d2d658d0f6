"""Judges for ``steering@2``: rate each generation 0 (concept absent), 1 (vague), 2 (clear), as in FADE.

- ``lexicon``: WordNet words of the concept's category (from the corpus rows' ``lemma``,
  ``category`` and ``text``; a word counts for a category only when most of its uses are there).
  0 words → 0, one distinct word → 1, two or more → 2.
- ``atlas``: the generation runs through the atlas space; per concept feature, 2 when its pooled
  activation reaches its typical level on held-out texts of the concept's category (median),
  1 when it exceeds its 90th percentile on the other held-out texts, else 0; the concept's
  rating is the max over its features.
- ``llm``: a prompt to a local HF causal LM (scores the next token '0'/'1'/'2') or to an
  OpenAI-compatible endpoint (``/chat/completions``).
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from atlas_align.errors import ConfigError
from atlas_align.plugins import Registry

_WORD = re.compile(r"[a-z]+")
_STOPWORDS = frozenset(
    "a an the of or and to in on at by for with from as is are was were be been being that this these those it its "
    "into than then which who what when where how not no but if so such any some all each have has had do does did "
    "can will would should could may might must one two you your he she they them his her their our we i me my".split()
)


@dataclass(frozen=True)
class SteeringConcept:
    """A concept to steer toward: its ground-truth category and validated atlas features."""

    category: str
    features: tuple[int, ...]
    description: str


class Judge(ABC):
    name: ClassVar[str]

    def prepare(self, ctx: Any, concepts: Sequence[SteeringConcept]) -> None:  # noqa: B027 - optional hook, no-op by default
        """Called once before rating (build lexicons, reference distributions, load models)."""

    @abstractmethod
    def rate(self, texts: Sequence[str], concept: SteeringConcept) -> list[int]: ...


JUDGES: Registry[type[Judge]] = Registry("judge")


def get_judge(name: str, **params: Any) -> Judge:
    return JUDGES.get(name)(**params)


# ----------------------------------------------------------------------------------- lexicon


def _variants(word: str) -> tuple[str, ...]:
    """The word and its singular guesses, so 'dogs' and 'boxes' match 'dog' and 'box'."""
    out = [word]
    if word.endswith("ies") and len(word) > 4:
        out.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        out.append(word[:-2])
    if word.endswith("s") and len(word) > 3:
        out.append(word[:-1])
    return tuple(out)


def category_lexicon(rows: Iterable[dict], *, min_share: float = 0.5, min_length: int = 3, min_text_count: int = 3) -> dict[str, frozenset[str]]:
    """Category → words specific to it, from two sources in the corpus rows:

    - lemmas (the head, i.e. last, word of a multi-word lemma), counted by distinct synset;
    - words of the texts, counted by row, kept when they occur in ≥ ``min_text_count`` rows of the category.

    A word joins a category when at least ``min_share`` of its counts (per source) fall in it.
    """
    senses: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    in_texts: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        category = row.get("category")
        if not category:
            continue
        lemma = str(row.get("lemma") or "").lower().replace("_", " ").split()
        if lemma:
            senses[lemma[-1]][category].add(str(row.get("synset") or row.get("text")))
        for word in set(_WORD.findall(str(row.get("text") or "").lower())):
            in_texts[word][category] += 1
    lexicon: dict[str, set[str]] = defaultdict(set)
    for word, by_category in senses.items():
        counts = Counter({c: len(s) for c, s in by_category.items()})
        for category, n in counts.items():
            if n / sum(counts.values()) >= min_share:
                lexicon[category].add(word)
    for word, counts in in_texts.items():
        for category, n in counts.items():
            if n >= min_text_count and n / sum(counts.values()) >= min_share:
                lexicon[category].add(word)
    return {c: frozenset(w for w in words if len(w) >= min_length and w.isalpha() and w not in _STOPWORDS) for c, words in sorted(lexicon.items())}


@JUDGES.register("lexicon")
class LexiconJudge(Judge):
    name = "lexicon"

    def __init__(self, lexicon: dict[str, Iterable[str]] | None = None, clear_hits: int = 2) -> None:
        self.lexicon = {c: frozenset(w) for c, w in lexicon.items()} if lexicon is not None else None
        self.clear_hits = clear_hits

    def prepare(self, ctx: Any, concepts: Sequence[SteeringConcept]) -> None:  # noqa: B027 - optional hook, no-op by default
        if self.lexicon is None:
            rows = getattr(ctx, "lexicon_rows", None)
            if rows is None:
                from atlas_align.corpus.builtin import load_default_corpus

                rows = load_default_corpus()
            self.lexicon = category_lexicon(rows)
        missing = [c.category for c in concepts if not self.lexicon.get(c.category)]
        if missing:
            raise ConfigError(f"The lexicon judge has no words for {', '.join(missing)}; pass lexicon rows with 'lemma' and 'category'.")

    def hits(self, text: str, category: str) -> set[str]:
        words = self.lexicon.get(category, frozenset()) if self.lexicon else frozenset()
        return {w for token in _WORD.findall(text.lower()) for w in _variants(token) if w in words}

    def rate(self, texts: Sequence[str], concept: SteeringConcept) -> list[int]:
        if self.lexicon is None:
            self.prepare(None, [concept])
        counts = [len(self.hits(t, concept.category)) for t in texts]
        return [2 if n >= self.clear_hits else 1 if n > 0 else 0 for n in counts]


# ----------------------------------------------------------------------------------- atlas


@JUDGES.register("atlas")
class AtlasJudge(Judge):
    name = "atlas"

    def __init__(self, clear_quantile: float = 0.5, vague_quantile: float = 0.9) -> None:
        if not (0.0 <= clear_quantile <= 1.0 and 0.0 <= vague_quantile <= 1.0):
            raise ConfigError("clear_quantile and vague_quantile must lie in [0, 1].")
        self.clear_quantile, self.vague_quantile = clear_quantile, vague_quantile
        self.atlas = None
        self.clear_level: dict[int, float] = {}
        self.vague_level: dict[int, float] = {}

    def prepare(self, ctx: Any, concepts: Sequence[SteeringConcept]) -> None:  # noqa: B027 - optional hook, no-op by default
        """Levels per feature from held-out texts: 'clear' = a quantile of its activation on texts of the
        concept's category (of its non-zero activations when no text has a category); 'vague' = a
        quantile on the other texts. Both are at least just above zero."""
        self.atlas = ctx.atlas
        texts = ctx.heldout_texts()
        categories = [getattr(s, "category", None) for s in ctx.heldout]
        pooled = ctx.atlas_pooled(texts).double()
        for concept in concepts:
            own = torch.tensor([c == concept.category for c in categories], dtype=torch.bool)
            for f in concept.features:
                column = pooled[:, f]
                on = column[own] if own.any() else column[column > 0]
                off = column[~own] if own.any() else column[column <= 0]
                vague = float(torch.quantile(off, self.vague_quantile)) if off.numel() else 0.0
                clear = float(torch.quantile(on, self.clear_quantile)) if on.numel() else float("inf")
                self.vague_level[f] = max(vague, 1e-6)
                self.clear_level[f] = max(clear, self.vague_level[f])

    def rate(self, texts: Sequence[str], concept: SteeringConcept) -> list[int]:
        if self.atlas is None:
            raise ConfigError("The atlas judge must be prepared with a benchmark context first.")
        if not texts:
            return []
        acts = torch.cat(list(self.atlas.pooled_batches(list(texts)))).double()
        ratings = torch.zeros(len(texts), dtype=torch.long)
        for f in concept.features:
            a = acts[:, f]
            level = torch.where(a >= self.clear_level[f], 2, torch.where(a >= self.vague_level[f], 1, 0))
            ratings = torch.maximum(ratings, level)
        return ratings.tolist()


# ----------------------------------------------------------------------------------- llm

JUDGE_PROMPT = (
    "Rate whether the text expresses the concept.\n"
    "Concept: {concept}\nText: {text}\n"
    "Answer 0 if the concept is absent, 1 if it is vaguely present, 2 if it is clearly present.\nAnswer:"
)


@JUDGES.register("llm")
class LLMJudge(Judge):
    """``model=`` a local HF causal LM (name, folder or loaded ``(model, tokenizer)``), or ``endpoint=`` an
    OpenAI-compatible base URL (``api_model`` names the model; the key comes from ``api_key_env``)."""

    name = "llm"

    def __init__(self, model: Any = None, endpoint: str | None = None, api_model: str = "gpt-4o-mini", api_key_env: str = "OPENAI_API_KEY", prompt: str = JUDGE_PROMPT, timeout: float = 60.0) -> None:
        if (model is None) == (endpoint is None):
            raise ConfigError("The llm judge needs exactly one of model= (a local HF causal LM) or endpoint= (an OpenAI-compatible URL).")
        self.model_spec, self.endpoint, self.api_model = model, endpoint, api_model
        self.api_key_env, self.prompt, self.timeout = api_key_env, prompt, timeout
        self._bundle = None

    def _load(self):
        if self._bundle is None:
            if isinstance(self.model_spec, tuple):
                self._bundle = self.model_spec
            else:
                from atlas_align.models.assets import load_model_and_tokenizer

                self._bundle = load_model_and_tokenizer(str(self.model_spec), causal=True)
        return self._bundle

    def rate(self, texts: Sequence[str], concept: SteeringConcept) -> list[int]:
        prompts = [self.prompt.format(concept=concept.description, text=t.strip()) for t in texts]
        return [self._ask_endpoint(p) for p in prompts] if self.endpoint else self._ask_local(prompts)

    @torch.inference_mode()
    def _ask_local(self, prompts: list[str]) -> list[int]:
        model, tokenizer = self._load()
        choices = []
        for digit in "012":
            ids = tokenizer(" " + digit, add_special_tokens=False)["input_ids"] or tokenizer(digit, add_special_tokens=False)["input_ids"]
            choices.append(ids[-1])
        ratings = []
        for prompt in prompts:
            enc = tokenizer(prompt, return_tensors="pt")
            logits = model(**enc).logits[0, -1]
            ratings.append(int(torch.argmax(logits[choices])))
        return ratings

    def _ask_endpoint(self, prompt: str) -> int:
        body = json.dumps({"model": self.api_model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 2}).encode()
        request = urllib.request.Request(self.endpoint.rstrip("/") + "/chat/completions", data=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {os.environ.get(self.api_key_env, '')}"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - user-given URL
            answer = json.loads(response.read())["choices"][0]["message"]["content"]
        match = re.search(r"[012]", answer)
        return int(match.group()) if match else 0
