"""Synthetic concept sequences for ``retrieval@2``, as the paper measured it: ``template`` and ``llm``.

Both register in :data:`~atlas_align.harness.benchmarks.retrieval.QUERY_GENERATORS` beside ``heldout``
and draw a category's *member lemmas* from the WordNet corpus rows (``ctx.lexicon_rows``, else the
packaged corpus): distinct lemmas of the category, underscores read as spaces, at most 3 words,
letters/spaces/hyphens/apostrophes only, and only lemmas whose senses lie mostly (≥ half of their
synsets) in that category. Lower-case lemmas are preferred (proper names such as 'Animalia' are used only
when a category has too few others). A category with no usable lemma yields no sequences, and
retrieval skips it (``min_queries``).

- ``template``: each sequence is one neutral template for the category's part of speech (``noun.``,
  ``verb.``, ``adj.``, ``adv.``) filled with one lemma, e.g. "I saw a vermin yesterday.".
- ``llm``: each sequence is written by a local instruct LM (default the packaged ``qwen-coder-0.5b``;
  ``RetrievalConfig.generator_model`` picks another) asked :data:`LLM_PROMPT` with the category's
  readable name and one lemma, greedy, at most :data:`LLM_MAX_NEW_TOKENS` new tokens, cut to the
  first sentence; empty answers are dropped.

Randomness is ``random.Random`` seeded from the run's seed and a sha256 of the category (not Python's
salted ``hash``), so the same seed gives the same sequences in every process.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from atlas_align.errors import ConfigError
from atlas_align.harness.benchmarks.base import BenchmarkContext
from atlas_align.harness.benchmarks.retrieval import QUERY_GENERATORS

TEMPLATES: dict[str, tuple[str, ...]] = {
    "noun": (
        "I saw {a} {w} yesterday.",
        "There was {a} {w} near the house.",
        "She told me about the {w}.",
        "We talked about the {w} for a while.",
        "The {w} was mentioned in the report.",
        "He pointed at the {w} and smiled.",
        "Everyone noticed the {w} at once.",
        "I read an article about the {w}.",
        "They found the {w} on the way home.",
        "The {w} is what I remember most.",
    ),
    "verb": (
        "They {w} every morning.",
        "We decided to {w} together.",
        "She likes to {w} after work.",
        "I did not want to {w} today.",
        "He began to {w} slowly.",
        "You can {w} if you want.",
        "They will {w} tomorrow.",
        "Nobody wanted to {w} that day.",
    ),
    "adj": (
        "It was a very {w} day.",
        "The room looked {w}.",
        "Everything seemed {w} to me.",
        "She described it as {w}.",
        "That idea is {w}.",
        "The result was quite {w}.",
    ),
    "adv": (
        "She did it {w}.",
        "He spoke {w} to the group.",
        "They moved {w} across the room.",
        "I answered {w}.",
        "We worked {w} all day.",
    ),
}
MAX_LEMMA_WORDS = 3
_LEMMA = re.compile(r"^[A-Za-z][A-Za-z' -]*$")

LLM_PROMPT = "Write one short sentence about {concept} that uses the {pos} '{lemma}'. Answer with the sentence only."
LLM_MAX_NEW_TOKENS = 30
DEFAULT_GENERATOR_MODEL = "qwen-coder-0.5b"
_POS_WORD = {"noun": "word", "verb": "verb", "adj": "adjective", "adv": "adverb"}


def part_of_speech(category: str) -> str:
    """'noun.animal' → 'noun'; a category outside WordNet's four parts of speech is refused."""
    pos = category.split(".", 1)[0]
    if pos not in TEMPLATES:
        raise ConfigError(f"Cannot write concept sequences for category {category!r}: its part of speech must be one of {', '.join(TEMPLATES)} (e.g. 'noun.animal').")
    return pos


def category_seed(seed: int, category: str) -> int:
    """A seed for one category that is the same in every process (sha256, not the salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{category}".encode()).digest()[:8], "big")


def lemma_pools(rows: Iterable[dict]) -> dict[str, list[str]]:
    """Category → its usable member lemmas (sorted; lower-case ones first), as the module docstring says."""
    senses: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for row in rows:
        category, lemma = row.get("category"), str(row.get("lemma") or "").replace("_", " ").strip()
        if category and lemma:
            senses[lemma][category].add(str(row.get("synset") or row.get("text")))
    pools: dict[str, set[str]] = defaultdict(set)
    for lemma, by_category in senses.items():
        if len(lemma.split()) > MAX_LEMMA_WORDS or not _LEMMA.match(lemma):
            continue
        total = sum(len(s) for s in by_category.values())
        for category, synsets in by_category.items():
            if len(synsets) * 2 >= total:
                pools[category].add(" ".join(lemma.split()))
    return {c: sorted(words, key=lambda w: (w[0].isupper(), w)) for c, words in sorted(pools.items())}


@lru_cache(maxsize=1)
def _default_pools() -> dict[str, list[str]]:
    from atlas_align.corpus.builtin import load_default_corpus

    return lemma_pools(load_default_corpus())


def category_lemmas(ctx: BenchmarkContext | None, category: str) -> list[str]:
    """The category's usable lemmas from ``ctx.lexicon_rows`` (else the packaged corpus, loaded once)."""
    rows = getattr(ctx, "lexicon_rows", None)
    pools = lemma_pools(rows) if rows is not None else _default_pools()
    return list(pools.get(category, []))


def sample_lemmas(lemmas: Sequence[str], n: int, rng: random.Random) -> list[str]:
    """``n`` lemmas: without replacement while they last (lower-case ones when there are enough), then again."""
    lower = [w for w in lemmas if not w[0].isupper()]
    pool = lower if len(lower) >= n else list(lemmas)
    if not pool:
        return []
    out: list[str] = []
    while len(out) < n:
        out += rng.sample(pool, min(len(pool), n - len(out)))
    return out


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


@QUERY_GENERATORS.register("template")
def template_queries(ctx: BenchmarkContext, category: str, features: Sequence[int], n: int, seed: int) -> list[str]:
    """``n`` template sentences, each filled with a member lemma of the category (seeded)."""
    templates = TEMPLATES[part_of_speech(category)]
    rng = random.Random(category_seed(seed, category))
    lemmas = sample_lemmas(category_lemmas(ctx, category), n, rng)
    return [rng.choice(templates).format(w=w, a=_article(w)) for w in lemmas]


# ------------------------------------------------------------------------------------------ llm


def concept_words(category: str) -> str:
    """What the LM is asked to write about: 'noun.animal' → 'animals', 'verb.motion' → 'motion'."""
    from atlas_align.atlas.build import CATEGORY_NAMES

    name = CATEGORY_NAMES.get(category) or category.split(".", 1)[-1].replace("_", " ")
    return re.sub(r"\s*\(verbs\)$", "", name)


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s")


def first_sentence(text: str) -> str:
    """The first sentence of an answer: first non-empty line, past a 'Here is …:' lead-in, without quotes."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    if ":" in line and re.match(r"^(sure|here|certainly|okay|ok)\b", line, re.IGNORECASE):
        line = line.split(":", 1)[1].strip()
    match = _SENTENCE_END.search(line + " ")
    sentence = line[: match.start()] if match else line
    return sentence.strip().strip("\"'“”‘’` ").strip()


def llm_prompts(category: str, n: int, seed: int, ctx: BenchmarkContext | None = None) -> list[str]:
    """The ``n`` prompts for a category: its readable name and one member lemma each (seeded)."""
    pos = part_of_speech(category)
    rng = random.Random(category_seed(seed, category))
    lemmas = sample_lemmas(category_lemmas(ctx, category), n, rng)
    return [LLM_PROMPT.format(concept=concept_words(category), pos=_POS_WORD[pos], lemma=w) for w in lemmas]


class LLMQueries:
    """Concept sequences written by a local causal LM: ``model=`` a packaged name or folder, or a loaded
    ``(model, tokenizer)``. Greedy, one left-padded batch of ``batch_size`` prompts at a time; what it
    wrote is kept per prompt, so a second subject evaluated in the same process gets the same sequences
    without a second generation."""

    def __init__(self, model: Any = DEFAULT_GENERATOR_MODEL, *, max_new_tokens: int = LLM_MAX_NEW_TOKENS, batch_size: int = 16, chat_template: bool = True) -> None:
        if batch_size < 1 or max_new_tokens < 1:
            raise ConfigError("The llm query generator needs batch_size ≥ 1 and max_new_tokens ≥ 1.")
        self.model_spec, self.max_new_tokens, self.batch_size, self.chat_template = model, max_new_tokens, batch_size, chat_template
        self._bundle = model if isinstance(model, tuple) else None
        self._written: dict[str, str] = {}

    def _load(self):
        if self._bundle is None:
            from atlas_align.models.loading import load_subject

            model, tokenizer, _ = load_subject(str(self.model_spec))
            self._bundle = (model, tokenizer)
        return self._bundle

    def write(self, prompts: Sequence[str]) -> list[str]:
        """One first sentence per prompt ('' when the model wrote none)."""
        from atlas_align.harness.benchmarks.instructions import format_prompt
        from atlas_align.harness.benchmarks.steering import generate

        missing = list(dict.fromkeys(p for p in prompts if p not in self._written))
        if missing:
            model, tokenizer = self._load()
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start : start + self.batch_size]
                asked = [format_prompt(tokenizer, p, chat_template=self.chat_template, template="{instruction}\n") for p in chunk]
                generations = generate(model, tokenizer, asked, max_new_tokens=self.max_new_tokens)
                self._written.update((p, first_sentence(g.text)) for p, g in zip(chunk, generations))
        return [self._written[p] for p in prompts]

    def __call__(self, ctx: BenchmarkContext, category: str, features: Sequence[int], n: int, seed: int) -> list[str]:
        return [t for t in self.write(llm_prompts(category, n, seed, ctx)) if t]


@lru_cache(maxsize=2)
def _llm_writer(model: str) -> LLMQueries:
    """One loaded generator per model name and process."""
    return LLMQueries(model)


@QUERY_GENERATORS.register("llm")
def llm_queries(ctx: BenchmarkContext, category: str, features: Sequence[int], n: int, seed: int, model: str | None = None) -> list[str]:
    """``n`` sentences (fewer when some come back empty) written by ``model`` (default :data:`DEFAULT_GENERATOR_MODEL`)."""
    return _llm_writer(model or DEFAULT_GENERATOR_MODEL)(ctx, category, features, n, seed)
