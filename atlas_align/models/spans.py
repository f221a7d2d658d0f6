"""Shared text units across tokenizers, and per-unit pooling of per-token activations.

Two models with different tokenizers (SmolLM2's byte-level BPE, MiniLM's WordPiece, Gemma's
SentencePiece) cut one text into different tokens, so their activations cannot be compared
position by position. Both fast tokenizers report each token's character span (the offset
mapping); from those spans this module builds **units** — character spans of the text that every
token stream agrees on — and pools each stream's token activations per unit (max or mean).

Units, precisely:

1. The text is cut into grapheme-like clusters (a base character plus any combining marks,
   variation selectors, emoji skin-tone modifiers and zero-width-joiner continuations).
2. **Words**: maximal runs of word clusters (letters, digits, ``_``); each CJK ideograph, and
   each punctuation/symbol/emoji cluster, is a unit of its own; whitespace belongs to no unit.
3. Each token's span is trimmed of whitespace (byte-level BPE offsets include the leading space);
   a token whose trimmed span touches several units **merges** them. The result is the finest
   segmentation that is coarser than the words and than every token stream (the join of the
   partitions): every token lies inside exactly one unit, so a unit's tokens are well defined
   for every tokenizer. ("don't" is ``don`` + ``'t`` when a BPE token is ``'t``; an emoji family
   that WordPiece maps to one ``[UNK]`` is one unit.)
4. **Shared** units are those that every stream covers with at least one kept token and that end
   before any stream's truncation point; the rest (a zero-width character a normaliser dropped,
   the tail a 128-token limit cut off, a word whose only token is a masked outlier) are left out.

Per-token activations come from :func:`token_activations` (one forward pass per batch, stopped at
the hookpoint): special tokens, padding, and — per the :class:`~atlas_align.refs.PoolingConfig` —
the attention sink and norm outliers are masked out of every unit (the unknown token is not: it
stands for real text). For a causal LM whose
tokenizer adds no BOS, ``sink_prefix`` puts its BOS (else EOS) token in front, so the sink lands
on that token rather than on the text's first word.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from atlas_align.models.activations import ActivationExtractor, Hookpoint, base_model, is_causal_lm, pooling_mask
from atlas_align.models.hooks import forward_to
from atlas_align.refs import PoolingConfig

Span = tuple[int, int]
Reduce = Literal["max", "mean"]

_ZWJ = "\u200d"


def _is_cjk(ch: str) -> bool:
    """CJK ideographs (the blocks BERT's tokenizer splits character by character)."""
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F
    )  # fmt: skip


def _extends(ch: str) -> bool:
    """Characters that attach to the previous cluster: combining marks, format chars (ZWJ, VS), skin tones."""
    cat = unicodedata.category(ch)
    return cat.startswith("M") or cat == "Cf" or 0x1F3FB <= ord(ch) <= 0x1F3FF


def _kind(ch: str) -> str:
    if ch.isspace():
        return "space"
    if _is_cjk(ch):
        return "cjk"
    cat = unicodedata.category(ch)
    if cat[0] in "LN" or ch == "_":
        return "word"
    return "symbol"


def clusters(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) grapheme-like clusters; kind is 'space', 'cjk', 'word' or 'symbol'."""
    out: list[tuple[int, int, str]] = []
    i, n = 0, len(text)
    while i < n:
        kind = _kind(text[i])
        j = i + 1
        if kind != "space":
            while j < n and (_extends(text[j]) or text[j - 1] == _ZWJ) and not text[j].isspace():
                j += 1
        out.append((i, j, kind))
        i = j
    return out


def word_units(text: str) -> list[Span]:
    """Step 2 above: runs of word clusters; each CJK ideograph and each symbol cluster alone; no whitespace."""
    units: list[Span] = []
    for start, end, kind in clusters(text):
        if kind == "space":
            continue
        if kind == "word" and units and units[-1][1] == start and _kind(text[units[-1][0]]) == "word":
            units[-1] = (units[-1][0], end)
        else:
            units.append((start, end))
    return units


def trim_span(text: str, span: Span | None) -> Span | None:
    """A token's span without surrounding whitespace (and clipped to the text); None if nothing is left."""
    if span is None:
        return None
    start, end = max(0, int(span[0])), min(len(text), int(span[1]))
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


@dataclass
class TokenStream:
    """One tokenizer's view of a text: a span per token (None = not in any unit) and where truncation cut it.

    ``spans`` should already be None for tokens that must not be pooled (specials, padding, masked).
    ``limit``: the character offset up to which the stream saw the text (None = all of it).
    """

    spans: list[Span | None]
    limit: int | None = None


@dataclass
class UnitAlignment:
    """Shared units of one text and, per stream, each token's unit index (-1 = none)."""

    text: str
    units: list[Span]
    assignments: list[torch.Tensor] = field(default_factory=list)

    @property
    def words(self) -> list[str]:
        return [self.text[s:e] for s, e in self.units]

    def __len__(self) -> int:
        return len(self.units)


def align_units(text: str, streams: Sequence[TokenStream]) -> UnitAlignment:
    """Shared units of ``text`` for the given token streams (steps 3–4 of the module docstring)."""
    base = word_units(text)
    owner = [-1] * len(text)
    for k, (s, e) in enumerate(base):
        for c in range(s, e):
            owner[c] = k
    joined = [False] * max(len(base) - 1, 0)  # joined[k]: units k and k+1 merge
    trimmed = [[trim_span(text, sp) for sp in stream.spans] for stream in streams]
    for spans in trimmed:
        for sp in spans:
            if sp is None:
                continue
            first = next((owner[c] for c in range(sp[0], sp[1]) if owner[c] >= 0), -1)
            last = next((owner[c] for c in range(sp[1] - 1, sp[0] - 1, -1) if owner[c] >= 0), -1)
            for k in range(first, last):
                joined[k] = True
    merged: list[Span] = []
    for k, (s, e) in enumerate(base):
        if k > 0 and joined[k - 1]:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    merged_of = [-1] * len(text)
    for m, (s, e) in enumerate(merged):
        for c in range(s, e):
            merged_of[c] = m
    # Token → merged unit, then keep the units every stream covers (and saw whole).
    token_units = [[_unit_of(sp, merged_of) for sp in spans] for spans in trimmed]
    limit = min((st.limit for st in streams if st.limit is not None), default=len(text))
    shared = [e <= limit for (s, e) in merged]
    for units_of in token_units:
        covered = [False] * len(merged)
        for m in units_of:
            if m >= 0:
                covered[m] = True
        shared = [a and b for a, b in zip(shared, covered)]
    new_index = {}
    for m, ok in enumerate(shared):
        if ok:
            new_index[m] = len(new_index)
    units = [merged[m] for m in new_index]
    assignments = [torch.tensor([new_index.get(m, -1) for m in units_of], dtype=torch.long) for units_of in token_units]
    return UnitAlignment(text=text, units=units, assignments=assignments)


def _unit_of(span: Span | None, merged_of: list[int]) -> int:
    if span is None:
        return -1
    for c in range(span[0], span[1]):
        if merged_of[c] >= 0:
            return merged_of[c]
    return -1


def pool_units(acts: torch.Tensor, assignment: torch.Tensor, n_units: int, reduce: Reduce = "max") -> torch.Tensor:
    """Per-unit pooling (n_units, d) of token activations (n_tokens, d); tokens with unit -1 are ignored."""
    if acts.shape[0] != assignment.shape[0]:
        raise ValueError(f"{acts.shape[0]} token activations but {assignment.shape[0]} token assignments.")
    acts = acts.float()
    keep = assignment >= 0
    idx = assignment[keep].to(acts.device)
    rows = acts[keep]
    out = torch.zeros(n_units, acts.shape[-1], dtype=acts.dtype, device=acts.device)
    if reduce == "max":
        out = out.scatter_reduce(0, idx.unsqueeze(-1).expand_as(rows), rows, "amax", include_self=False)
    elif reduce == "mean":
        out = out.index_add(0, idx, rows)
        counts = torch.zeros(n_units, dtype=acts.dtype, device=acts.device).index_add(0, idx, torch.ones_like(idx, dtype=acts.dtype))
        out = out / counts.clamp_min(1).unsqueeze(-1)
    else:
        raise ValueError(f"reduce must be 'max' or 'mean', not {reduce!r}.")
    return out


# ------------------------------------------------------------------------- per-token activations


@dataclass
class TokenActivations:
    """One text's per-token activations at a hookpoint and what a unit alignment needs from them."""

    text: str
    acts: torch.Tensor  # (n_tokens, d) float32, CPU, after any token_transform
    offsets: list[Span]
    keep: torch.Tensor  # (n_tokens,) bool: pooled (not special/padding/sink/outlier)
    truncated: bool

    def stream(self) -> TokenStream:
        spans = [sp if k else None for sp, k in zip(self.offsets, self.keep.tolist())]
        limit = None
        if self.truncated:
            limit = max((sp[1] for sp in self.offsets), default=0)  # the end of the last token it saw
        return TokenStream(spans=spans, limit=limit)


def _sink_prefix_id(model: nn.Module, tokenizer, first_is_special: bool, sink_prefix: bool | Literal["auto"]) -> int | None:
    if sink_prefix is False or first_is_special:
        return None
    if sink_prefix == "auto" and not is_causal_lm(model):
        return None
    for tok_id in (getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if tok_id is not None:
            return int(tok_id)
    return None


@torch.inference_mode()
def token_activations(
    model: nn.Module,
    tokenizer,
    hookpoint: Hookpoint,
    texts: Sequence[str],
    *,
    max_length: int = 128,
    batch_size: int = 8,
    pooling: PoolingConfig | None = None,
    token_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    sink_prefix: bool | Literal["auto"] = "auto",
) -> list[TokenActivations]:
    """Per-token activations (with offsets and the pooling mask) of each text at ``hookpoint``.

    Each text is tokenized on its own (``max_length`` tokens including specials), right-padded into
    batches, run to the hookpoint, masked with :func:`~atlas_align.models.activations.pooling_mask`.
    """
    pooling = pooling or PoolingConfig()
    causal = is_causal_lm(model)
    module = base_model(model).get_submodule(hookpoint.path)
    device = next(model.parameters()).device
    # A typed special token (a literal '<|im_start|>') is masked, but not the unknown token: it stands for real text
    # (an emoji MiniLM's WordPiece cannot spell), which is exactly what a unit needs.
    unk = getattr(tokenizer, "unk_token_id", None)
    special_ids = tuple(i for i in (getattr(tokenizer, "all_special_ids", ()) or ()) if i != unk)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    rows = []
    for text in texts:
        enc = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True, return_special_tokens_mask=True)
        ids, offsets, special = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]], list(enc["special_tokens_mask"])
        truncated = len(tokenizer(text, add_special_tokens=True)["input_ids"]) > len(ids)
        prefix = _sink_prefix_id(model, tokenizer, bool(special and special[0]), sink_prefix)
        if prefix is not None:
            ids, offsets, special = [prefix, *ids], [(0, 0), *offsets], [1, *special]
            if len(ids) > max_length:  # keep the length limit: drop tokens before a trailing special
                cut = len(ids) - max_length
                tail = len(ids) - 1 if special[-1] else len(ids)
                del ids[tail - cut : tail], offsets[tail - cut : tail], special[tail - cut : tail]
                truncated = True
        rows.append((text, ids, offsets, special, truncated))
    out: list[TokenActivations] = []
    for s in range(0, len(rows), batch_size):
        batch = rows[s : s + batch_size]
        width = max(len(r[1]) for r in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        special = torch.ones((len(batch), width), dtype=torch.bool)
        for b, (_, ids, _, spec, _) in enumerate(batch):
            input_ids[b, : len(ids)] = torch.tensor(ids)
            attention[b, : len(ids)] = 1
            special[b, : len(ids)] = torch.tensor(spec, dtype=torch.bool)
        inputs = {"input_ids": input_ids.to(device), "attention_mask": attention.to(device)}
        acts = forward_to(model, module, inputs, hookpoint.path).float()
        norms = acts.norm(dim=-1).cpu() if pooling.outlier_ratio is not None else None
        mask = pooling_mask(attention, special, pooling, causal=causal, input_ids=input_ids, special_ids=special_ids, norms=norms)
        if token_transform is not None:
            acts = token_transform(acts).float()
        acts = acts.cpu()
        for b, (text, ids, offsets, _, truncated) in enumerate(batch):
            n = len(ids)
            out.append(TokenActivations(text=text, acts=acts[b, :n].clone(), offsets=offsets, keep=mask[b, :n].clone(), truncated=truncated))
    return out


def token_source(space) -> ActivationExtractor | None:
    """The extractor behind a space (unwrapping an activation cache's ``inner`` and an atlas space's ``extractor``), or None.

    Per-token work needs the model itself; a precomputed or in-memory space has none.
    """
    for _ in range(4):
        if isinstance(space, ActivationExtractor):
            return space
        inner = getattr(space, "__dict__", {}).get("inner")
        space = inner if inner is not None else getattr(space, "extractor", None)
        if space is None:
            return None
    return None


def extractor_token_activations(extractor: ActivationExtractor, texts: Sequence[str], *, max_length: int | None = None, batch_size: int | None = None) -> list[TokenActivations]:
    """:func:`token_activations` with an extractor's model, hookpoint, pooling rules and token transform (an atlas's SAE)."""
    return token_activations(
        extractor.model, extractor.tokenizer, extractor.hookpoint, texts, max_length=max_length or extractor.max_length,
        batch_size=batch_size or extractor.batch_size, pooling=extractor.pooling, token_transform=extractor.token_transform,
    )  # fmt: skip


def unit_activations(text_acts: Sequence[TokenActivations], reduce: Reduce = "max") -> tuple[UnitAlignment, list[torch.Tensor]]:
    """Shared units of one text across several models' :class:`TokenActivations`, and each model's (n_units, d) pooling."""
    if not text_acts:
        raise ValueError("unit_activations needs at least one stream.")
    text = text_acts[0].text
    if any(t.text != text for t in text_acts):
        raise ValueError("All token activations must be of the same text.")
    alignment = align_units(text, [t.stream() for t in text_acts])
    pooled = [pool_units(t.acts, a, len(alignment), reduce) for t, a in zip(text_acts, alignment.assignments)]
    return alignment, pooled


__all__ = [
    "TokenActivations", "TokenStream", "UnitAlignment", "align_units", "clusters", "extractor_token_activations", "pool_units",
    "token_activations", "token_source", "trim_span", "unit_activations", "word_units",
]  # fmt: skip
