"""Query generators of ``retrieval@2``: ``template`` (seeded template sentences over WordNet member
lemmas) and ``llm`` (sentences an instruct LM writes, here a tiny random Llama), and retrieval run
end to end on synthetic sequences over the planted problem."""

from __future__ import annotations

import re

import pytest
import torch

from atlas_align.errors import ConfigError, UnknownNameError
from atlas_align.harness.benchmarks import BenchmarkContext, get_benchmark
from atlas_align.harness.benchmarks.base import config_hash
from atlas_align.harness.benchmarks.queries import (
    TEMPLATES,
    LLMQueries,
    category_lemmas,
    category_seed,
    concept_words,
    first_sentence,
    lemma_pools,
    llm_prompts,
    template_queries,
)
from atlas_align.harness.benchmarks.retrieval import QUERY_GENERATORS, RetrievalConfig
from atlas_align.harness.benchmarks.synthetic import planted_problem
from tests.tiny_models import tiny_llama, word_tokenizer

ROWS = [
    {"category": "noun.animal", "lemma": "dog", "synset": "1-n"},
    {"category": "noun.animal", "lemma": "cat", "synset": "2-n"},
    {"category": "noun.animal", "lemma": "horse", "synset": "3-n"},
    {"category": "noun.animal", "lemma": "sea_horse", "synset": "4-n"},  # underscores → spaces
    {"category": "noun.animal", "lemma": "very long animal lemma name", "synset": "5-n"},  # > 3 words: skipped
    {"category": "noun.animal", "lemma": "Felis", "synset": "6-n"},  # proper name: only when lower-case ones run out
    {"category": "noun.food", "lemma": "apple", "synset": "7-n"},
    {"category": "noun.food", "lemma": "bread", "synset": "8-n"},
    {"category": "noun.food", "lemma": "fish", "synset": "9-n"},
    {"category": "noun.animal", "lemma": "fish", "synset": "10-n"},
    {"category": "noun.food", "lemma": "fish", "synset": "11-n"},  # 2 of fish's 3 senses are food
    {"category": "verb.motion", "lemma": "run", "synset": "12-v"},
    {"category": "verb.motion", "lemma": "walk", "synset": "13-v"},
    {"category": "adj.all", "lemma": "red", "synset": "14-a"},
    {"category": "adv.all", "lemma": "quickly", "synset": "15-r"},
]


class _Ctx:
    lexicon_rows = ROWS


def _template_regex(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(re.escape("{a}"), "(?:a|an)").replace(re.escape("{w}"), "(.+)") + "$")


def _matches(sentence: str, pos: str) -> str | None:
    """The lemma a sentence was filled with, if it is one of ``pos``'s templates."""
    for template in TEMPLATES[pos]:
        match = _template_regex(template).match(sentence)
        if match:
            return match.group(1)
    return None


# ------------------------------------------------------------------------------ template


def test_lemma_pools_filter_and_prefer_lower_case():
    pools = lemma_pools(ROWS)
    assert pools["noun.animal"] == ["cat", "dog", "horse", "sea horse", "Felis"]  # fish went to food; the 5-word lemma is skipped
    assert "fish" in pools["noun.food"]
    assert category_lemmas(_Ctx(), "noun.plant") == []


def test_template_is_deterministic_per_seed_and_differs_across_seeds():
    first = template_queries(None, "noun.animal", [0], 12, seed=0)
    assert first == template_queries(None, "noun.animal", [0], 12, seed=0)
    assert first != template_queries(None, "noun.animal", [0], 12, seed=1)
    assert category_seed(0, "noun.animal") == 16023138713591564577  # sha256, not the salted hash(): the same in every process


@pytest.mark.parametrize("category", ["noun.animal", "noun.food", "verb.motion", "adj.all", "adv.all"])
def test_template_uses_the_category_lemmas_and_its_part_of_speech(category):
    lemmas = set(category_lemmas(None, category))
    texts = template_queries(None, category, [0], 10, seed=3)
    assert len(texts) == 10 and len(lemmas) > 30
    filled = [_matches(t, category.split(".")[0]) for t in texts]
    assert all(w is not None for w in filled), texts  # every sentence is one of its part of speech's templates
    assert all(w in lemmas for w in filled)
    assert len(set(filled)) == 10  # without replacement while the lemmas last


@pytest.mark.parametrize("n", [1, 3, 9])
def test_template_respects_n_even_past_the_lemmas(n):
    texts = template_queries(_Ctx(), "noun.animal", [0], n, seed=0)
    assert len(texts) == n
    filled = [_matches(t, "noun") for t in texts]
    assert set(filled) <= {"cat", "dog", "horse", "sea horse", "Felis"}
    if n == 9:  # past the 4 lower-case lemmas: all 5 are used, again
        assert set(filled) == {"cat", "dog", "horse", "sea horse", "Felis"}
    assert template_queries(_Ctx(), "verb.motion", [0], 2, seed=0)[0].split()[0] in {"They", "We", "She", "I", "He", "You", "Nobody"}


def test_template_bad_input():
    assert template_queries(_Ctx(), "noun.plant", [0], 4, seed=0) == []  # no lemmas: retrieval skips the concept
    with pytest.raises(ConfigError, match="part of speech"):
        template_queries(_Ctx(), "thing.animal", [0], 4, seed=0)
    with pytest.raises(UnknownNameError, match="Did you mean 'template'"):
        get_benchmark("retrieval", generator="templte")
    assert {"heldout", "template", "llm"} <= set(QUERY_GENERATORS.names())


# ------------------------------------------------------------------------------ llm


def test_first_sentence_and_prompts():
    assert first_sentence('Sure! Here is one: "The dog ran home." It was late.') == "The dog ran home."
    assert first_sentence("  \nA cat sat. Then it slept.") == "A cat sat."
    assert first_sentence("") == ""
    assert concept_words("noun.animal") == "animals" and concept_words("verb.motion") == "motion"
    prompts = llm_prompts("verb.motion", 2, 0, _Ctx())
    assert len(prompts) == 2 and all("about motion" in p and "the verb" in p for p in prompts)
    assert {re.search(r"'(.+)'", p).group(1) for p in prompts} == {"run", "walk"}


def test_llm_writer_returns_n_non_empty_sentences_deterministically():
    bundle = (tiny_llama(), word_tokenizer())
    first = LLMQueries(bundle, max_new_tokens=6, batch_size=2)(_Ctx(), "noun.animal", [0], 3, 0)
    again = LLMQueries(bundle, max_new_tokens=6, batch_size=3)(_Ctx(), "noun.animal", [0], 3, 0)
    assert len(first) == 3 and all(t.strip() for t in first)
    assert first == again
    assert LLMQueries(bundle)(_Ctx(), "noun.plant", [0], 3, 0) == []  # no lemmas → no prompts, no generation


# ------------------------------------------------------------------------------ retrieval end to end


class _LemmaSpace:
    """The planted subject space for synthetic sequences: a text that names a lemma of concept k gets the
    mean planted subject activation of concept k's texts (else the mean of all texts)."""

    def __init__(self, problem, rows):
        texts = [s.text for s in problem.samples]
        acts = torch.cat(list(problem.subject.pooled_batches(texts)))
        self.by_category = {c: acts[[i for i, s in enumerate(problem.samples) if s.category == c]].mean(0) for c in {s.category for s in problem.samples}}
        self.lemmas = {r["lemma"]: r["category"] for r in rows}
        self.fallback = acts.mean(0)

    def pooled_batches(self, texts, progress=False, total=None):
        rows = [next((self.by_category[c] for w, c in self.lemmas.items() if w in t.split(" ")), self.fallback) for t in texts]
        yield torch.stack(rows)


def _planted_ctx(with_lemmas=range(6), seed=0):
    problem = planted_problem(seed=0)
    rows = [{"category": f"noun.concept{k}", "lemma": f"lemma{'abcdef'[k]}{'xyz'[j]}", "synset": f"{k}{j}-n"} for k in with_lemmas for j in range(3)]
    return BenchmarkContext(alignment=problem.alignment, subject=_LemmaSpace(problem, rows), atlas=problem.atlas, heldout=problem.samples, lexicon_rows=rows, seed=seed)


def test_retrieval_end_to_end_with_template_sequences():
    ctx = _planted_ctx()
    result = get_benchmark("retrieval", generator="template", queries_per_concept=4).run(ctx)
    assert result.metrics["mrr"] == 1.0 and result.metrics["mpp"] == 1.0
    assert result.controls["mrr"] < 0.5 and result.chance["mrr"] < 0.5
    assert result.metrics["n_concepts"] == 6 and all(d["n_sequences"] == 4 for d in result.details)
    assert result.config["generator"] == "template" and "generator_model" not in result.config
    assert result.provenance.n_heldout == 24  # the fingerprint is over the generated sequences
    assert get_benchmark("retrieval", generator="template", queries_per_concept=4).run(_planted_ctx()).model_dump_json() == result.model_dump_json()
    other = get_benchmark("retrieval", generator="template", queries_per_concept=4).run(_planted_ctx(seed=1))
    assert other.provenance.heldout_fingerprint != result.provenance.heldout_fingerprint


def test_retrieval_skips_concepts_without_lemmas():
    result = get_benchmark("retrieval", generator="template").run(_planted_ctx(with_lemmas=[0, 2, 4]))
    assert sorted(d["concept"] for d in result.details) == ["noun.concept0", "noun.concept2", "noun.concept4"]
    with pytest.raises(ConfigError, match="no usable lemmas"):
        get_benchmark("retrieval", generator="template").run(_planted_ctx(with_lemmas=[]))


def test_retrieval_passes_generator_model_to_llm(monkeypatch):
    from atlas_align.harness.benchmarks import queries

    asked = []
    writer = LLMQueries((tiny_llama(), word_tokenizer()), max_new_tokens=4)
    monkeypatch.setattr(queries, "_llm_writer", lambda name: asked.append(name) or writer)
    ctx = _planted_ctx(with_lemmas=[0, 1])
    result = get_benchmark("retrieval", generator="llm", generator_model="tiny", queries_per_concept=2).run(ctx)
    assert set(asked) == {"tiny"} and result.config["generator_model"] == "tiny"
    assert result.metrics["n_concepts"] == 2
    with pytest.raises(ConfigError, match="takes no generator_model"):
        get_benchmark("retrieval", generator_model="tiny").run(ctx)


def test_default_config_hash_is_unchanged_by_the_generator_model_field():
    before = {"generator": "heldout", "queries_per_concept": 16, "min_queries": 1}  # RetrievalConfig before generator_model
    assert RetrievalConfig().model_dump(mode="json") == before
    assert config_hash(RetrievalConfig()) == config_hash(before) == "19779cb9bc5a03d76c6f6e79233998de3043922d32d2814ce60200d7a123b281"
    assert RetrievalConfig.model_validate(RetrievalConfig(generator="llm", generator_model="m").model_dump()).generator_model == "m"
