"""Judges for ``steering@3``: each generation is rated 0/1/2 on three axes, as in AxBench.

**Concept** (registry :data:`JUDGES`, ``rate(texts, concept)``; 0 absent, 1 vague, 2 clear, as in FADE):

- ``lexicon``: WordNet words of the concept's category (from the corpus rows' ``lemma``,
  ``category`` and ``text``; a word counts for a category only when most of its uses are there).
  0 words → 0, one distinct word → 1, two or more → 2.
- ``atlas``: the generation runs through the atlas space; per concept feature, 2 when its pooled
  activation reaches its typical level on held-out texts of the concept's category (median),
  1 when it exceeds its 90th percentile on the other held-out texts, else 0; the concept's
  rating is the max over its features.
- ``llm``: :data:`CONCEPT_PROMPT` to a local HF causal LM or an OpenAI-compatible endpoint.

**Instruction relevance** (registry :data:`INSTRUCTION_JUDGES`, ``rate_instruction(instructions, texts)``;
0 unrelated, 1 somewhat, 2 clearly answers it):

- ``atlas``: cosine between the instruction's and the response's pooled atlas activations
  (``ctx.atlas_pooled``). Calibrated once on the unsteered responses of the tuning split: the
  cosines of mismatched pairs (instruction i, response of j ≠ i) give the levels — 2 when the
  cosine reaches their 90th percentile, 1 when it reaches their median, else 0. An empty response is 0.
- ``llm``: :data:`INSTRUCTION_PROMPT`.
- ``none``: 2 for everything (the axis switched off).

**Fluency** (registry :data:`FLUENCY_JUDGES`, ``rate_fluency(generations)``; 0 broken, 1 somewhat, 2 fluent):

- ``perplexity``: exp(mean NLL) of the continuation given its prompt under the *unsteered*
  subject, against m = the median over the unsteered tuning-split continuations and k =
  ``perplexity_factor``: 2 when ppl ≤ k·m, 1 when ppl ≤ 2k·m, else 0; a continuation whose distinct
  tokens are fewer than ``min_distinct_fraction`` of its tokens is 0 whatever its perplexity
  (repetition such as "and and and" has a *low* perplexity), and so is an empty one.
- ``llm``: :data:`FLUENCY_PROMPT`.
- ``none``: 2 for everything.

The ``llm`` judge (prompts versioned by :data:`PROMPT_VERSION`) applies the judge tokenizer's chat
template when it has one and reads the rating off the next-token logits over '0', '1', '2' (each
digit alone or after a space, whichever scores higher); an endpoint gets the same prompt as one
user message and its first digit counts. :func:`cohen_kappa` measures how two concept judges agree.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import re
import urllib.request
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from atlas_align.errors import ConfigError
from atlas_align.harness.benchmarks.instructions import chat_text, has_chat_template, starts_with_bos
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
        self.ctx = None
        self.clear_level: dict[int, float] = {}
        self.vague_level: dict[int, float] = {}

    def prepare(self, ctx: Any, concepts: Sequence[SteeringConcept]) -> None:  # noqa: B027 - optional hook, no-op by default
        """Levels per feature from held-out texts: 'clear' = a quantile of its activation on texts of the
        concept's category (of its non-zero activations when no text has a category); 'vague' = a
        quantile on the other texts. Both are at least just above zero."""
        self.atlas, self.ctx = ctx.atlas, ctx
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
        pooled = getattr(self.ctx, "atlas_pooled", None)  # the context caches per text: other judges reuse the pass
        acts = (pooled(list(texts)) if pooled is not None else torch.cat(list(self.atlas.pooled_batches(list(texts))))).double()
        ratings = torch.zeros(len(texts), dtype=torch.long)
        for f in concept.features:
            a = acts[:, f]
            level = torch.where(a >= self.clear_level[f], 2, torch.where(a >= self.vague_level[f], 1, 0))
            ratings = torch.maximum(ratings, level)
        return ratings.tolist()


# ----------------------------------------------------------------------------------- instruction and fluency axes


class InstructionJudge(ABC):
    """Rates how well each response answers its instruction, 0/1/2."""

    name: ClassVar[str]

    def prepare_instruction(self, ctx: Any, instructions: Sequence[str], texts: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Called once with the unsteered (instruction, response) pairs of the tuning split."""

    @abstractmethod
    def rate_instruction(self, instructions: Sequence[str], texts: Sequence[str]) -> list[int]: ...

    def calibration(self) -> dict[str, float]:
        """Levels learnt in ``prepare_instruction``, reported beside the metrics."""
        return {}


class FluencyJudge(ABC):
    """Rates the fluency of each generation (``.text``, ``.token_ids``, ``.prompt_ids``), 0/1/2."""

    name: ClassVar[str]

    def prepare_fluency(self, ctx: Any, generations: Sequence[Any]) -> None:  # noqa: B027 - optional hook
        """Called once with the unsteered generations of the tuning split."""

    @abstractmethod
    def rate_fluency(self, generations: Sequence[Any]) -> list[int]: ...

    def calibration(self) -> dict[str, float]:
        return {}


INSTRUCTION_JUDGES: Registry[type[InstructionJudge]] = Registry("instruction judge")
FLUENCY_JUDGES: Registry[type[FluencyJudge]] = Registry("fluency judge")


def get_instruction_judge(name: str, **params: Any) -> InstructionJudge:
    return INSTRUCTION_JUDGES.get(name)(**params)


def get_fluency_judge(name: str, **params: Any) -> FluencyJudge:
    return FLUENCY_JUDGES.get(name)(**params)


@INSTRUCTION_JUDGES.register("none")
@FLUENCY_JUDGES.register("none")
class NoAxisJudge(InstructionJudge, FluencyJudge):
    """Switches an axis off: every generation gets 2, so the AxBench score is the harmonic mean of the others."""

    name = "none"

    def rate_instruction(self, instructions: Sequence[str], texts: Sequence[str]) -> list[int]:
        return [2] * len(texts)

    def rate_fluency(self, generations: Sequence[Any]) -> list[int]:
        return [2] * len(generations)


def _cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(a.double(), dim=-1) @ torch.nn.functional.normalize(b.double(), dim=-1).T


@INSTRUCTION_JUDGES.register("atlas")
class AtlasRelevanceJudge(InstructionJudge):
    """Cosine of instruction and response in the atlas's pooled space, against mismatched pairs (module docstring)."""

    name = "atlas"

    def __init__(self, clear_quantile: float = 0.9, vague_quantile: float = 0.5) -> None:
        if not (0.0 <= vague_quantile <= clear_quantile <= 1.0):
            raise ConfigError("The atlas instruction judge needs 0 ≤ vague_quantile ≤ clear_quantile ≤ 1.")
        self.clear_quantile, self.vague_quantile = clear_quantile, vague_quantile
        self.ctx = None
        self.clear_level = self.vague_level = math.nan
        self.matched_mean = self.mismatched_mean = math.nan

    def _pooled(self, texts: Sequence[str]) -> torch.Tensor:
        return self.ctx.atlas_pooled(list(texts))

    def prepare_instruction(self, ctx: Any, instructions: Sequence[str], texts: Sequence[str]) -> None:
        if getattr(ctx, "atlas", None) is None:
            raise ConfigError("The atlas instruction judge needs the atlas (ctx.atlas); pick instruction_judge='llm' or 'none'.")
        self.ctx = ctx
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if len(keep) < 2:
            raise ConfigError(
                f"The atlas instruction judge calibrates on mismatched (instruction, response) pairs of the tuning split and needs "
                f"at least 2 non-empty unsteered responses there; got {len(keep)}. Add instructions or raise max_new_tokens."
            )
        sims = _cosine_rows(self._pooled([instructions[i] for i in keep]), self._pooled([texts[i] for i in keep])).numpy()
        off = sims[~np.eye(len(keep), dtype=bool)]
        self.vague_level = float(np.quantile(off, self.vague_quantile))
        self.clear_level = max(float(np.quantile(off, self.clear_quantile)), self.vague_level)
        self.matched_mean, self.mismatched_mean = float(np.mean(np.diag(sims))), float(np.mean(off))

    def rate_instruction(self, instructions: Sequence[str], texts: Sequence[str]) -> list[int]:
        if self.ctx is None:
            raise ConfigError("The atlas instruction judge must be prepared (calibrated) with a benchmark context first.")
        ratings = [0] * len(texts)
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if keep:
            a, b = self._pooled([instructions[i] for i in keep]), self._pooled([texts[i] for i in keep])
            cos = (torch.nn.functional.normalize(a.double(), dim=-1) * torch.nn.functional.normalize(b.double(), dim=-1)).sum(-1).tolist()
            for i, c in zip(keep, cos):
                ratings[i] = 2 if c >= self.clear_level else 1 if c >= self.vague_level else 0
        return ratings

    def calibration(self) -> dict[str, float]:
        return {
            "relevance_matched_unsteered": self.matched_mean, "relevance_mismatched_unsteered": self.mismatched_mean,
            "relevance_clear_level": self.clear_level, "relevance_vague_level": self.vague_level,
        }  # fmt: skip


def distinct_fraction(token_ids: Sequence[int]) -> float:
    """Distinct tokens / tokens (0 for none): low for repetition such as 'and and and'."""
    return len(set(token_ids)) / len(token_ids) if token_ids else 0.0


def pad_id(tokenizer) -> int:
    for value in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if value is not None:
            return int(value)
    return 0


def _keeps_logits(model) -> bool:
    """Whether the causal LM's forward takes ``logits_to_keep`` (transformers ≥ 4.50 models do)."""
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _cache_argument(model) -> str:
    """The forward keyword that takes a key/value cache (transformers ≥ 5.2x renamed ``past_key_values``)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _continuation_nll(model, prompt_ids: list[int], token_ids: list[int], prefixes: dict, cache_argument: str) -> float:
    """Mean NLL of ``token_ids`` after ``prompt_ids``, reusing the prompt's key/value cache from ``prefixes``:
    a steering run rates dozens of continuations of the same few prompts, and the prompt (a chat template's
    system text included) is most of every sequence."""
    device = next(model.parameters()).device
    key = tuple(prompt_ids)
    if key not in prefixes:
        out = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True, logits_to_keep=1)
        past = out.get("cache", None) or out.get("past_key_values", None)  # transformers ≥ 5.2x renamed it
        prefixes[key] = (past, out.logits[0, -1:].double())
    past, first = prefixes[key]
    predicted = first
    if len(token_ids) > 1:
        out = model(input_ids=torch.tensor([token_ids[:-1]], device=device), use_cache=True, **{cache_argument: copy.deepcopy(past)})
        predicted = torch.cat([first, out.logits[0].double()])
    return float(torch.nn.functional.cross_entropy(predicted, torch.tensor(token_ids, device=device), reduction="mean"))


@torch.inference_mode()
def perplexities(model, tokenizer, generations: Sequence[Any], batch_size: int = 8, prefixes: dict | None = None) -> list[float]:
    """exp(mean NLL) of each continuation (``token_ids``) given its prompt (``prompt_ids``, else the
    tokenised ``prompt``); ``inf`` for an empty continuation. Batched, right-padded (exact for a causal LM);
    with ``prefixes`` (a dict the caller keeps for one unchanged model), one continuation at a time on
    the prompt's cached keys and values instead — several times fewer tokens through the model."""
    device = next(model.parameters()).device
    values = [math.inf] * len(generations)
    items = []
    for i, g in enumerate(generations):
        prompt_ids = list(getattr(g, "prompt_ids", None) or tokenizer(g.prompt)["input_ids"])
        if g.token_ids and prompt_ids:
            items.append((i, prompt_ids, list(g.token_ids)))
    if prefixes is not None and _keeps_logits(model):
        cache_argument = _cache_argument(model)
        for i, p, n in items:
            values[i] = math.exp(_continuation_nll(model, p, n, prefixes, cache_argument))
        return values
    pad = pad_id(tokenizer)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        length = max(len(p) + len(n) for _, p, n in chunk)
        ids = torch.full((len(chunk), length), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), length), dtype=torch.long)
        for row, (_, p, n) in enumerate(chunk):
            ids[row, : len(p) + len(n)] = torch.tensor(p + n)
            mask[row, : len(p) + len(n)] = 1
        # Project onto the vocabulary only where a continuation token is predicted (positions
        # first-1 … last-2): the full-sequence logits of a 262k-token vocabulary cost more than the model.
        first = min(len(p) for _, p, _ in chunk) - 1
        kwargs = {"logits_to_keep": torch.arange(first, length - 1, device=device)} if _keeps_logits(model) else {}
        offset = first if kwargs else 0
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs).logits
        for row, (i, p, n) in enumerate(chunk):
            predicted = logits[row, len(p) - 1 - offset : len(p) + len(n) - 1 - offset].double()
            nll = torch.nn.functional.cross_entropy(predicted, torch.tensor(n, device=predicted.device), reduction="mean")
            values[i] = float(torch.exp(nll))
    return values


@FLUENCY_JUDGES.register("perplexity")
class PerplexityFluencyJudge(FluencyJudge):
    """Perplexity under the unsteered subject against the unsteered median, plus a repetition check (module docstring).

    Rate generations outside any steering block: the perplexity must come from the unsteered model.
    Sets ``.perplexity`` on each generation it rates.
    """

    name = "perplexity"

    def __init__(self, perplexity_factor: float = 3.0, min_distinct_fraction: float = 0.3, batch_size: int = 8) -> None:
        if perplexity_factor <= 0 or not (0.0 <= min_distinct_fraction <= 1.0) or batch_size < 1:
            raise ConfigError("The perplexity fluency judge needs perplexity_factor > 0, 0 ≤ min_distinct_fraction ≤ 1 and batch_size ≥ 1.")
        self.perplexity_factor, self.min_distinct_fraction, self.batch_size = perplexity_factor, min_distinct_fraction, batch_size
        self.model = self.tokenizer = None
        self.median_perplexity: float | None = None
        self._prefixes: dict = {}  # the prompts' key/value caches, for self.model only

    def perplexities(self, generations: Sequence[Any]) -> list[float]:
        values = perplexities(self.model, self.tokenizer, generations, batch_size=self.batch_size, prefixes=self._prefixes)
        for g, value in zip(generations, values):
            if hasattr(g, "perplexity"):
                g.perplexity = value
        return values

    def prepare_fluency(self, ctx: Any, generations: Sequence[Any]) -> None:
        self.model, self.tokenizer, self._prefixes = ctx.model, ctx.tokenizer, {}
        if self.model is None or self.tokenizer is None:
            raise ConfigError("The perplexity fluency judge needs the subject as a causal LM (ctx.model, ctx.tokenizer).")
        finite = [p for p in self.perplexities(generations) if math.isfinite(p)]
        if not finite:
            raise ConfigError("Every unsteered continuation is empty, so the perplexity fluency judge has no reference; raise max_new_tokens or check the prompts.")
        self.median_perplexity = float(np.median(finite))

    def rate_fluency(self, generations: Sequence[Any]) -> list[int]:
        if self.median_perplexity is None:
            raise ConfigError("The perplexity fluency judge must be prepared with the unsteered generations first.")
        limit = self.perplexity_factor * self.median_perplexity
        ratings = []
        for g, ppl in zip(generations, self.perplexities(generations)):
            if not g.token_ids or distinct_fraction(g.token_ids) < self.min_distinct_fraction:
                ratings.append(0)
            else:
                ratings.append(2 if ppl <= limit else 1 if ppl <= 2 * limit else 0)
        return ratings

    def calibration(self) -> dict[str, float]:
        return {"median_perplexity_unsteered": math.nan if self.median_perplexity is None else self.median_perplexity}


# ----------------------------------------------------------------------------------- agreement


def cohen_kappa(a: Sequence[int], b: Sequence[int], *, labels: Sequence[int] = (0, 1, 2), weights: str | None = None) -> float:
    """Cohen's κ between two raters over ``labels`` (as scikit-learn's ``cohen_kappa_score``):
    κ = 1 − Σ w·O / Σ w·E, O the confusion counts, E = outer(row sums, column sums)/n, and w = 1 off
    the diagonal (``weights=None``), |i − j| (``"linear"``) or (i − j)² (``"quadratic"``) for label
    positions i, j. NaN when undefined (no pairs, or no disagreement is possible by chance)."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs equally many ratings; got {len(a)} and {len(b)}.")
    if not len(a):
        return math.nan
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({x for x in list(a) + list(b) if x not in index})
    if unknown:
        raise ValueError(f"Ratings {unknown} are not among the labels {list(labels)}.")
    k = len(labels)
    observed = np.zeros((k, k))
    np.add.at(observed, ([index[x] for x in a], [index[y] for y in b]), 1.0)
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    i, j = np.indices((k, k))
    if weights is None:
        w = (i != j).astype(float)
    elif weights == "linear":
        w = np.abs(i - j).astype(float)
    elif weights == "quadratic":
        w = ((i - j) ** 2).astype(float)
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic'; got {weights!r}.")
    chance = float((w * expected).sum())
    return math.nan if chance == 0.0 else 1.0 - float((w * observed).sum()) / chance


# ----------------------------------------------------------------------------------- llm

PROMPT_VERSION = 2  # 1: steering@2 (concept only, raw prompt); 2: + instruction and fluency, chat template applied
CONCEPT_PROMPT = (
    "Rate whether the text expresses the concept.\n"
    "Concept: {concept}\nText: {text}\n"
    "Answer 0 if the concept is absent, 1 if it is vaguely present, 2 if it is clearly present.\nAnswer:"
)
INSTRUCTION_PROMPT = (
    "Rate whether the response answers the instruction. Ignore its grammar and style.\n"
    "Instruction: {instruction}\nResponse: {text}\n"
    "Answer 0 if the response is unrelated to the instruction, 1 if it is somewhat related, 2 if it clearly answers it.\nAnswer:"
)
FLUENCY_PROMPT = (
    "Rate the fluency of the text. Ignore what it is about.\n"
    "Text: {text}\n"
    "Answer 0 if it is broken, repetitive or nonsensical, 1 if it is somewhat fluent, 2 if it is fluent, natural language.\nAnswer:"
)


def _digit_ids(tokenizer) -> list[list[int]]:
    """Token ids for '0', '1', '2', each alone and after a space (its last token)."""
    choices = []
    for digit in "012":
        ids = set()
        for text in (digit, " " + digit):
            encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
            if encoded:
                ids.add(encoded[-1])
        choices.append(sorted(ids))
    return choices


@JUDGES.register("llm")
@INSTRUCTION_JUDGES.register("llm")
@FLUENCY_JUDGES.register("llm")
class LLMJudge(Judge, InstructionJudge, FluencyJudge):
    """``model=`` a local HF causal LM (name, folder or loaded ``(model, tokenizer)``), or ``endpoint=`` an
    OpenAI-compatible base URL (``api_model`` names the model; the key comes from ``api_key_env``).
    Rates all three axes, with :data:`CONCEPT_PROMPT`, :data:`INSTRUCTION_PROMPT` and :data:`FLUENCY_PROMPT`
    unless other prompts are given."""

    name = "llm"

    def __init__(
        self, model: Any = None, endpoint: str | None = None, api_model: str = "gpt-4o-mini", api_key_env: str = "OPENAI_API_KEY",
        prompt: str = CONCEPT_PROMPT, instruction_prompt: str = INSTRUCTION_PROMPT, fluency_prompt: str = FLUENCY_PROMPT,
        chat_template: bool = True, batch_size: int = 8, timeout: float = 60.0,
    ) -> None:  # fmt: skip
        if (model is None) == (endpoint is None):
            raise ConfigError("The llm judge needs exactly one of model= (a local HF causal LM) or endpoint= (an OpenAI-compatible URL).")
        if batch_size < 1:
            raise ConfigError("The llm judge's batch_size must be at least 1.")
        self.model_spec, self.endpoint, self.api_model = model, endpoint, api_model
        self.api_key_env, self.timeout = api_key_env, timeout
        self.prompt, self.instruction_prompt, self.fluency_prompt = prompt, instruction_prompt, fluency_prompt
        self.chat_template, self.batch_size = chat_template, batch_size
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
        return self._ask([self.prompt.format(concept=concept.description, text=t.strip()) for t in texts])

    def rate_instruction(self, instructions: Sequence[str], texts: Sequence[str]) -> list[int]:
        return self._ask([self.instruction_prompt.format(instruction=i, text=t.strip()) for i, t in zip(instructions, texts)])

    def rate_fluency(self, generations: Sequence[Any]) -> list[int]:
        return self._ask([self.fluency_prompt.format(text=g.text.strip()) for g in generations])

    def _ask(self, prompts: list[str]) -> list[int]:
        if not prompts:
            return []
        return [self._ask_endpoint(p) for p in prompts] if self.endpoint else self._ask_local(prompts)

    def _encode(self, tokenizer, prompt: str) -> list[int]:
        if self.chat_template and has_chat_template(tokenizer):
            text = chat_text(tokenizer, prompt)
            return tokenizer(text, add_special_tokens=not starts_with_bos(tokenizer, [text]))["input_ids"]
        return tokenizer(prompt)["input_ids"]

    @torch.inference_mode()
    def _ask_local(self, prompts: list[str]) -> list[int]:
        model, tokenizer = self._load()
        choices = _digit_ids(tokenizer)
        device = next(model.parameters()).device
        encoded = [self._encode(tokenizer, p) for p in prompts]
        pad = pad_id(tokenizer)
        ratings: list[int] = []
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start : start + self.batch_size]
            length = max(len(ids) for ids in chunk)
            ids = torch.full((len(chunk), length), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), length), dtype=torch.long)
            for row, seq in enumerate(chunk):  # left-padded: every prompt's last token is at the end
                ids[row, length - len(seq) :] = torch.tensor(seq)
                mask[row, length - len(seq) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp_min(0)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device)).logits[:, -1].float()
            scores = torch.stack([logits[:, c].max(dim=-1).values for c in choices], dim=-1)
            ratings += scores.argmax(dim=-1).tolist()
        return ratings

    def _ask_endpoint(self, prompt: str) -> int:
        body = json.dumps({"model": self.api_model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 2}).encode()
        request = urllib.request.Request(self.endpoint.rstrip("/") + "/chat/completions", data=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {os.environ.get(self.api_key_env, '')}"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - user-given URL
            answer = json.loads(response.read())["choices"][0]["message"]["content"]
        match = re.search(r"[012]", answer)
        return int(match.group()) if match else 0
