"""``steering@3``: AxBench three-axis scores, judge agreement, baselines and λ chosen per model on tuning prompts.

Fast tier: pure functions against hand-computed values and scikit-learn, planted problems, a fake
generator that exposes which strength produced a text (to prove the held-out split never picks λ),
and one end-to-end run on a tiny random-init Llama."""

from __future__ import annotations

import io
import json
import math
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from sklearn.metrics import cohen_kappa_score

from atlas_align.alignment.artifact import AlignmentConfig
from atlas_align.alignment.model import AtlasAlignment
from atlas_align.atlas.labels import FeatureLabel, FeatureLabels
from atlas_align.corpus.sources import Sample
from atlas_align.errors import ConfigError
from atlas_align.harness.benchmarks import BENCHMARKS, BenchmarkContext, get_benchmark
from atlas_align.harness.benchmarks import steering as steering_module
from atlas_align.harness.benchmarks.instructions import INSTRUCTIONS, format_prompt, split_instructions, with_concept
from atlas_align.harness.benchmarks.judges import (
    FLUENCY_PROMPT,
    INSTRUCTION_JUDGES,
    INSTRUCTION_PROMPT,
    JUDGES,
    AtlasRelevanceJudge,
    LLMJudge,
    PerplexityFluencyJudge,
    SteeringConcept,
    cohen_kappa,
    perplexities,
)
from atlas_align.harness.benchmarks.steering import (
    Generation,
    SteeringBenchmark,
    axbench_score,
    choose_strength,
    diffmean_direction,
    faithfulness,
    fluency_edge,
    generate,
)
from atlas_align.harness.benchmarks.synthetic import planted_problem
from atlas_align.refs import AtlasRef, SubjectRef
from tests.tiny_models import WORDS, tiny_gpt2, tiny_llama, word_tokenizer

LEXICON = {"noun.animal": ["dog", "cat", "horse", "bird", "fish"], "noun.food": ["apple", "bread", "cheese"]}
ANIMAL = SteeringConcept(category="noun.animal", features=(0,), description="animals (noun.animal)")
# Instructions in the tiny tokenizer's vocabulary, so the tiny model reads real tokens.
TINY_INSTRUCTIONS = ["the dog", "a red car", "the big house", "a small boat", "the green train", "a blue bird"]


class WordAtlas:
    """A toy atlas: feature 0 counts animal words, 1 food words, 2 vehicle/house words, 3 is always on."""

    width = 4
    ref = AtlasRef(atlas_id="words")
    labels = FeatureLabels()

    def pooled_batches(self, texts, progress=False, total=None):
        def row(t):
            words = t.split()
            return [sum(w in LEXICON["noun.animal"] for w in words), sum(w in LEXICON["noun.food"] for w in words), sum(w in ("car", "boat", "train", "house") for w in words), 1.0]

        rows = [torch.tensor(row(t), dtype=torch.float32) for t in texts]
        yield torch.stack(rows) if rows else torch.empty(0, 4)


class WordSubject:
    """A toy subject space: the sum of fixed random word vectors (32 dims, the tiny Llama's width)."""

    table = torch.randn(len(WORDS) + 1, 32, generator=torch.Generator().manual_seed(3))
    index = {w: i for i, w in enumerate(WORDS)}

    def pooled_batches(self, texts, progress=False, total=None):
        yield torch.stack([sum((self.table[self.index.get(w, len(WORDS))] for w in t.split()), torch.zeros(32)) for t in texts])


def tiny_ctx(seed: int = 0) -> BenchmarkContext:
    model, tok = tiny_llama(), word_tokenizer()
    labels = FeatureLabels([FeatureLabel(feature=0, label="animals (noun.animal)", validated=True), FeatureLabel(feature=1, label="food (noun.food)", validated=True)])
    config = AlignmentConfig(subject=SubjectRef(model_id="tiny", hookpoint="layers.1"), atlas=AtlasRef(atlas_id="words"), method="random", d_s=32, d_c=4)
    T, _ = torch.linalg.qr(torch.randn(32, 4, generator=torch.Generator().manual_seed(0)))
    heldout = [Sample(text=t, category=c) for t, c in [("dog cat", "noun.animal"), ("the horse", "noun.animal"), ("apple bread", "noun.food"), ("cheese", "noun.food"), ("the red car", "noun.artifact")]]
    return BenchmarkContext(alignment=AtlasAlignment(config, T, labels=labels), subject=WordSubject(), atlas=WordAtlas(), heldout=heldout, model=model, tokenizer=tok, seed=seed)


# ------------------------------------------------------------------------------ scores


def test_axbench_score_is_the_harmonic_mean_and_zero_when_any_axis_is_zero():
    assert axbench_score(2, 2, 2) == 2.0
    assert axbench_score(1, 2, 2) == pytest.approx(3 / (1 + 0.5 + 0.5)) == pytest.approx(1.5)
    assert axbench_score(2, 1, 1) == pytest.approx(1.2)
    assert axbench_score(1, 1, 1) == 1.0
    for zeroed in [(0, 2, 2), (2, 0, 2), (2, 2, 0), (0, 0, 0)]:
        assert axbench_score(*zeroed) == 0.0
    assert axbench_score(1, 2, 2) < (1 + 2 + 2) / 3  # harmonic, not arithmetic


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_sklearn(weights):
    rng = np.random.default_rng(0)
    for trial in range(20):
        a = rng.integers(0, 3, size=int(rng.integers(5, 80)))
        agree = rng.random(a.size) < rng.uniform(0, 1)
        b = np.where(agree, a, rng.integers(0, 3, size=a.size))
        if trial % 5 == 0:
            b[:] = np.clip(b, 0, 1)  # a label one rater never uses
        expected = cohen_kappa_score(a, b, labels=[0, 1, 2], weights=weights)
        assert cohen_kappa(a.tolist(), b.tolist(), weights=weights) == pytest.approx(expected, abs=1e-12)
    assert cohen_kappa([0, 1, 2, 2], [0, 1, 2, 2]) == 1.0
    assert math.isnan(cohen_kappa([2, 2, 2], [2, 2, 2]))  # undefined, as in scikit-learn
    assert math.isnan(cohen_kappa([], []))
    with pytest.raises(ValueError, match="not among the labels"):
        cohen_kappa([0, 3], [0, 1])


def test_fade_faithfulness():
    assert faithfulness({0.0: 0.2, 0.1: 0.6, 0.2: 0.4}) == pytest.approx(0.5)
    assert faithfulness({0.0: 1.0, 0.1: 1.0}) == 0.0


# ------------------------------------------------------------------------------ strengths


def test_fluency_edge_is_the_last_strength_before_fluency_first_breaks():
    search = [0.01 * 2**k for k in range(9)]
    calls: list[float] = []

    def share(s):
        calls.append(s)
        return 1.0 if s <= 0.16 + 1e-12 else 0.3

    edge, tried = fluency_edge(search, share, 0.5)
    assert edge == search[4] == pytest.approx(0.16) and [s for s, _ in tried] == search[:6] == calls  # stops at the first failure
    recovers = lambda s: 0.0 if abs(s - 0.04) < 1e-12 else 1.0  # noqa: E731 - breaks at 0.04, fluent again above: "stays" ≥ 0.5 fails
    assert fluency_edge(search, recovers, 0.5)[0] == pytest.approx(0.02)
    assert fluency_edge(search, lambda s: 0.5, 0.5)[0] == search[-1]  # never breaks: the largest; the threshold is inclusive
    assert fluency_edge(search, lambda s: 0.0, 0.5)[0] == search[0]  # breaks at once: the smallest


def test_choose_strength_takes_the_best_and_the_smaller_on_ties():
    assert choose_strength({0.1: 0.5, 0.2: 0.9, 0.4: 0.3}) == 0.2
    assert choose_strength({0.4: 1.0, 0.1: 1.0, 0.2: 0.0}) == 0.1


class _Steered:
    strength = 0.0


@contextmanager
def _fake_steer(model, hookpoint, direction, strength, **kwargs):
    _Steered.strength = strength
    try:
        yield None
    finally:
        _Steered.strength = 0.0


def _fake_generate(model, tokenizer, prompts, *, instructions=None, **kwargs):
    """A generator whose text says which instruction and strength produced it."""
    return [Generation(instruction=i, prompt=p, text=f"{i}|{_Steered.strength:g}", token_ids=[5, 6, 7], prompt_ids=[1]) for i, p in zip(instructions, prompts)]


class PlantedJudge:
    """Concept 2 on tuning prompts at strength 1, 1 at strength 2; on held-out prompts 0 at strength 1, 2 at strength 2.

    So tuning picks strength 1 and the held-out split alone — or both splits pooled — would pick 2."""

    def prepare(self, ctx, concepts):
        pass

    def rate(self, texts, concept):
        out = []
        for t in texts:
            instruction, strength = t.split("|")
            tuning = instruction.startswith("tune")
            out.append({("1", True): 2, ("2", True): 1, ("1", False): 0, ("2", False): 2}.get((strength, tuning), 0))
        return out


def test_lambda_is_chosen_on_tuning_and_reported_on_heldout(monkeypatch):
    monkeypatch.setattr(steering_module, "steer", _fake_steer)
    monkeypatch.setattr(steering_module, "generate", _fake_generate)
    settings = dict(
        instructions=["tune one", "tune two"], heldout_instructions=["held one", "held two", "held three"], strengths=[1.0, 2.0],
        strength_unit="absolute", methods=["atlas", "diffmean", "control"], judges=["planted"], instruction_judge="none", fluency_judge="none",
        concepts=["noun.animal"],
    )  # fmt: skip
    result = get_benchmark("steering", judge_instances={"planted": PlantedJudge()}, **settings).run(tiny_ctx())
    for prefix in ("atlas", "diffmean"):
        assert result.metrics[f"strength_{prefix}"] == 1.0 and result.metrics[f"lambda_{prefix}"] == 1.0
        assert result.metrics[f"axbench_{prefix}"] == 0.0  # held-out at the tuning choice (held-out alone would give 2.0)
        assert result.metrics[f"concept_{prefix}"] == 0.0
    assert result.controls["strength_atlas"] == 1.0 and result.controls["axbench_atlas"] == 0.0
    rows = {(r["method"], r["split"], r["strength"]): r for r in result.table}
    assert rows[("atlas", "tuning", 1.0)]["axbench"] == 2.0 and rows[("atlas", "tuning", 2.0)]["axbench"] == pytest.approx(1.5)
    assert rows[("atlas", "heldout", 2.0)]["axbench"] == 2.0 and rows[("atlas", "heldout", 1.0)]["chosen"]
    # Changing only the held-out prompts changes no tuning row and no choice.
    other = dict(settings, heldout_instructions=["held four"])
    again = get_benchmark("steering", judge_instances={"planted": PlantedJudge()}, **other).run(tiny_ctx())
    tuning = lambda r: [row for row in r.table if row["split"] == "tuning"]  # noqa: E731
    assert tuning(again) == tuning(result)
    assert {k: v for k, v in again.metrics.items() if k.startswith(("strength_", "lambda_"))} == {k: v for k, v in result.metrics.items() if k.startswith(("strength_", "lambda_"))}


def test_a_one_strength_grid_steers_only_the_heldout_split(monkeypatch):
    """Nothing to choose with one strength: the tuning split is generated unsteered only (calibration), never steered."""
    monkeypatch.setattr(steering_module, "steer", _fake_steer)
    monkeypatch.setattr(steering_module, "generate", _fake_generate)
    seen: list[str] = []

    class Recording(PlantedJudge):
        def rate(self, texts, concept):
            seen.extend(texts)
            return super().rate(texts, concept)

    settings = dict(
        instructions=["tune one", "tune two"], heldout_instructions=["held one", "held two"], strengths=[2.0], strength_unit="absolute",
        methods=["atlas", "control"], judges=["planted"], instruction_judge="none", fluency_judge="none", concepts=["noun.animal"],
    )  # fmt: skip
    result = get_benchmark("steering", judge_instances={"planted": Recording()}, **settings).run(tiny_ctx())
    assert not [t for t in seen if t.startswith("tune") and not t.endswith("|0")]  # no steered tuning generation
    assert result.metrics["strength_atlas"] == 2.0 and result.metrics["axbench_atlas"] == 2.0 and result.controls["strength_atlas"] == 2.0
    assert {(r["method"], r["split"]) for r in result.table} == {("unsteered", "tuning"), ("unsteered", "heldout"), ("atlas", "heldout"), ("control", "heldout")}


def test_default_grid_is_the_fluency_edge_times_the_fractions(monkeypatch):
    """No explicit strengths: the edge is searched with the atlas direction of the first concept on tuning prompts only."""
    monkeypatch.setattr(steering_module, "steer", _fake_steer)
    monkeypatch.setattr(steering_module, "generate", _fake_generate)

    class EdgeFluency:  # fluent up to strength 0.08, then broken
        def rate_fluency(self, generations):
            return [2 if float(g.text.split("|")[1]) <= 0.08 + 1e-12 else 0 for g in generations]

    seen: list[str] = []

    class Recording(PlantedJudge):
        def rate(self, texts, concept):
            seen.extend(texts)
            return [1] * len(texts)

    settings = dict(
        instructions=["tune one", "tune two"], heldout_instructions=["held one"], strength_unit="absolute", methods=["atlas"],
        judges=["rec"], instruction_judge="none", fluency_judge="edge", concepts=["noun.animal"], edge_start=0.01, edge_steps=6,
    )  # fmt: skip
    result = get_benchmark("steering", judge_instances={"rec": Recording(), "edge": EdgeFluency()}, **settings).run(tiny_ctx())
    assert result.metrics["fluency_edge"] == pytest.approx(0.08)
    assert sorted({r["strength"] for r in result.table if r["method"] == "atlas"}) == pytest.approx([0.02, 0.04, 0.08])
    assert result.metrics["strength_atlas"] == pytest.approx(0.02)  # all tie on tuning: the smallest


# ------------------------------------------------------------------------------ methods


def test_prompt_arm_appends_the_concept():
    assert with_concept("Describe your ideal morning.", "animals (noun.animal)", "noun.animal") == "Describe your ideal morning. Talk about animals."
    assert with_concept("Say hi.", "noun.food", "noun.food") == "Say hi. Talk about food."


def test_prompt_arm_in_the_benchmark_asks_for_the_concept_and_is_judged_against_the_plain_instruction(monkeypatch):
    monkeypatch.setattr(steering_module, "generate", _fake_generate)
    settings = dict(instructions=["tune one", "tune two"], heldout_instructions=["held one"], methods=["prompt"], judges=["planted"], instruction_judge="none", fluency_judge="none")
    result = get_benchmark("steering", judge_instances={"planted": PlantedJudge()}, **settings).run(tiny_ctx())
    rows = [d for d in result.details if d["method"] == "prompt"]
    assert {d["concept"] for d in rows} == {"noun.animal", "noun.food"} and len(rows) == 2 * 3
    for d in rows:
        assert d["prompt"] == f"Instruction: {d['instruction']} Talk about {'animals' if d['concept'] == 'noun.animal' else 'food'}.\nResponse:"
        assert not d["instruction"].endswith(".")  # the plain instruction, as the relevance judge sees it
    assert "axbench_prompt" in result.metrics and "strength_prompt" not in result.metrics


def test_diffmean_direction_equals_the_mean_difference_on_a_planted_problem():
    problem = planted_problem(n_texts=300, seed=0)
    ctx = BenchmarkContext(alignment=problem.alignment, subject=problem.subject, atlas=problem.atlas, heldout=problem.samples)
    pooled = torch.stack([problem.subject._rows[s.text] for s in problem.samples]).double()
    for k in range(3):
        category = f"noun.concept{k}"
        own = torch.tensor([s.category == category for s in problem.samples])
        expected = pooled[own].mean(0) - pooled[~own].mean(0)
        got = diffmean_direction(ctx, category)
        assert torch.allclose(got.double(), expected / expected.norm(), atol=1e-6) and got.norm() == pytest.approx(1.0, abs=1e-6)
        planted = problem.alignment.T[:, 2 * k : 2 * k + 2].sum(1)
        assert float(got @ planted / planted.norm()) > 0.85  # it finds the planted concept direction
    with pytest.raises(ConfigError, match="noun.nothing"):
        diffmean_direction(ctx, "noun.nothing")


# ------------------------------------------------------------------------------ prompts and generation


def test_builtin_instructions_split_deterministically_into_halves():
    assert len(INSTRUCTIONS) == 24 and len(set(INSTRUCTIONS)) == 24
    tuning, heldout = split_instructions(INSTRUCTIONS, seed=0)
    assert len(tuning) == len(heldout) == 12 and not set(tuning) & set(heldout) and set(tuning) | set(heldout) == set(INSTRUCTIONS)
    assert split_instructions(INSTRUCTIONS, seed=0) == (tuning, heldout)
    assert split_instructions(INSTRUCTIONS, seed=1) != (tuning, heldout)
    assert tuning == [t for t in INSTRUCTIONS if t in tuning]  # original order kept
    with pytest.raises(ConfigError, match="at least 2"):
        split_instructions(["only one"], seed=0)


def test_chat_template_is_used_when_the_tokenizer_has_one_without_a_second_bos():
    tok = word_tokenizer()
    assert format_prompt(tok, "the dog") == "Instruction: the dog\nResponse:"
    tok.chat_template = "{% for m in messages %}<s>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %} the{% endif %}"
    assert format_prompt(tok, "the dog") == "<s>the dog the"
    assert format_prompt(tok, "the dog", chat_template=False) == "Instruction: the dog\nResponse:"
    generations = generate(tiny_llama(), tok, [format_prompt(tok, "the dog"), format_prompt(tok, "a big red car")], max_new_tokens=2)
    assert [g.prompt_ids[:2] for g in generations] == [[1, tok.convert_tokens_to_ids("the")], [1, tok.convert_tokens_to_ids("a")]]
    # The strength unit is measured on the same tokens (median_token_norm tokenises with special tokens).
    assert tok(steering_module._without_bos(tok, [format_prompt(tok, "the dog")])[0])["input_ids"] == generations[0].prompt_ids


def test_batched_perplexities_equal_one_at_a_time():
    model, tok = tiny_llama(), word_tokenizer()
    gens = generate(model, tok, ["the dog", "a big red car eats", "cat"], max_new_tokens=4)
    gens.append(Generation(prompt="the", text="", token_ids=[], prompt_ids=[1, 6]))
    batched = perplexities(model, tok, gens, batch_size=8)
    single = [perplexities(model, tok, [g], batch_size=1)[0] for g in gens]
    assert batched[:3] == pytest.approx(single[:3], rel=1e-5) and math.isinf(batched[3]) and all(1 < p < 1e4 for p in batched[:3])


def test_perplexities_project_only_the_continuation_positions(monkeypatch):
    """logits_to_keep (vocabulary projection only where a continuation token is predicted) changes nothing."""
    import atlas_align.harness.benchmarks.judges as judges_module

    model, tok = tiny_llama(), word_tokenizer()
    gens = generate(model, tok, ["the dog", "a big red car eats", "cat"], max_new_tokens=4)
    assert judges_module._keeps_logits(model)
    kept = perplexities(model, tok, gens, batch_size=8)
    monkeypatch.setattr(judges_module, "_keeps_logits", lambda m: False)
    assert perplexities(model, tok, gens, batch_size=8) == pytest.approx(kept, rel=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
def test_perplexities_on_cached_prompts_equal_the_batched_ones(arch):
    """The prompt key/value cache (reused across calls, never mutated by them) gives the same perplexities."""
    if arch == "gemma3":
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        torch.manual_seed(0)
        model = Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                                                   num_key_value_heads=1, head_dim=16, sliding_window=4, max_position_embeddings=64)).eval()  # fmt: skip
    else:
        model = tiny_llama() if arch == "llama" else tiny_gpt2()
    tok = word_tokenizer()
    gens = generate(model, tok, ["the dog", "a big red car eats", "cat", "the dog"], max_new_tokens=6)
    gens.append(Generation(prompt="the", text="", token_ids=[], prompt_ids=[1, 6]))
    batched = perplexities(model, tok, gens, batch_size=8)
    prefixes: dict = {}
    cached = perplexities(model, tok, gens, batch_size=8, prefixes=prefixes)
    again = perplexities(model, tok, gens, batch_size=8, prefixes=prefixes)
    assert len(prefixes) == 3 and cached == again
    assert cached[:4] == pytest.approx(batched[:4], rel=1e-4) and math.isinf(cached[4])


# ------------------------------------------------------------------------------ axis judges


def test_atlas_relevance_judge_calibrates_on_mismatched_pairs():
    ctx = BenchmarkContext(alignment=None, subject=None, atlas=WordAtlas(), heldout=[])
    judge = AtlasRelevanceJudge()
    instructions = ["dog dog", "apple apple", "car car", "dog apple"]
    responses = ["cat bird", "bread cheese", "boat train", "fish"]
    judge.prepare_instruction(ctx, instructions, responses)
    a = torch.nn.functional.normalize(torch.cat(list(WordAtlas().pooled_batches(instructions))).double(), dim=-1)
    b = torch.nn.functional.normalize(torch.cat(list(WordAtlas().pooled_batches(responses))).double(), dim=-1)
    sims = (a @ b.T).numpy()
    off = sims[~np.eye(4, dtype=bool)]
    assert judge.clear_level == pytest.approx(np.quantile(off, 0.9)) and judge.vague_level == pytest.approx(np.quantile(off, 0.5))
    assert judge.matched_mean > judge.mismatched_mean
    assert judge.rate_instruction(["dog dog", "dog dog", "dog dog", "dog dog"], ["horse", "bread cheese", "", "the"]) == [2, 0, 0, 1]
    with pytest.raises(ConfigError, match="at least 2"):
        AtlasRelevanceJudge().prepare_instruction(ctx, ["dog", "car"], ["cat", ""])


def test_perplexity_fluency_levels_and_repetition(monkeypatch):
    judge = PerplexityFluencyJudge(perplexity_factor=3.0, min_distinct_fraction=0.3)
    judge.median_perplexity = 10.0
    values = [10.0, 30.0, 30.5, 60.0, 60.5, 5.0, 5.0]
    monkeypatch.setattr(judge, "perplexities", lambda gens: values[: len(gens)])
    ids = [[1, 2, 3, 4]] * 5 + [[7] * 9 + [8], []]
    gens = [Generation(prompt="p", text="t", token_ids=i) for i in ids]
    assert judge.rate_fluency(gens) == [2, 2, 1, 1, 0, 0, 0]  # ≤ 3m, ≤ 6m, else 0; repetition and empty are 0


def test_llm_judge_rates_all_three_axes_locally_and_by_endpoint(monkeypatch):
    model, tok = tiny_llama(), word_tokenizer()
    judge = LLMJudge(model=(model, tok), batch_size=2)
    gens = [Generation(prompt="p", text=t, token_ids=[5]) for t in ("the dog", "a car runs", "cat")]
    for ratings in (judge.rate([g.text for g in gens], ANIMAL), judge.rate_instruction(["x", "y", "z"], [g.text for g in gens]), judge.rate_fluency(gens)):
        assert len(ratings) == 3 and set(ratings) <= {0, 1, 2}
    # Left-padded batches read the same last-token logits as one prompt at a time.
    digits = ["0", "1", "2"]
    tok.add_tokens(digits)
    bundle = (tiny_llama(layers=2, seed=4), tok)
    scorer, one_by_one = LLMJudge(model=bundle, batch_size=3), LLMJudge(model=bundle, batch_size=1)
    texts = ["the dog eats the red apple", "cat", "a big house"]
    assert scorer.rate_fluency(gens) == [one_by_one.rate_fluency([g])[0] for g in gens]
    assert scorer.rate(texts, ANIMAL) == [one_by_one.rate([t], ANIMAL)[0] for t in texts]
    # The chat template, when the judge's tokenizer has one, wraps the prompt.
    tok.chat_template = "{% for m in messages %}<s>[{{ m['content'] }}]{% endfor %}{% if add_generation_prompt %} the{% endif %}"
    encoded = scorer._encode(tok, "dog")
    assert encoded[0] == 1 and encoded.count(1) == 1 and encoded[-1] == tok.convert_tokens_to_ids("the")

    asked: list[str] = []

    def fake_urlopen(request, timeout):
        asked.append(json.loads(request.data)["messages"][0]["content"])
        return io.BytesIO(json.dumps({"choices": [{"message": {"content": "1"}}]}).encode())

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    remote = LLMJudge(endpoint="http://localhost:1/v1")
    assert remote.rate_instruction(["Describe your ideal morning."], ["I wake up early."]) == [1]
    assert remote.rate_fluency([Generation(prompt="p", text="I wake up early.", token_ids=[1])]) == [1]
    assert asked[0] == INSTRUCTION_PROMPT.format(instruction="Describe your ideal morning.", text="I wake up early.")
    assert asked[1] == FLUENCY_PROMPT.format(text="I wake up early.")


def test_one_llm_judge_instance_serves_every_role_with_the_same_settings():
    bench = SteeringBenchmark(judges=["llm"], instruction_judge="llm", fluency_judge="llm", judge_params={"llm": {"endpoint": "http://localhost:1/v1"}})
    make = bench._judges()
    concept = make("llm", JUDGES)
    assert make("llm", INSTRUCTION_JUDGES) is concept
    other = make("llm", INSTRUCTION_JUDGES, role={"api_model": "other"})
    assert other is not concept and other.endpoint == concept.endpoint and other.api_model == "other"


# ------------------------------------------------------------------------------ config


def test_version_is_3():
    assert SteeringBenchmark.version == 3 and "steering@3" in BENCHMARKS.names() and "steering@2" not in BENCHMARKS.names()
    assert get_benchmark("steering").key == "steering@3"


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"methods": ["atlas", "bogus"]}, "methods"),
        ({"methods": ["control"]}, "control"),
        ({"strengths": [-0.1, 0.2]}, "strengths"),
        ({"strengths": [0.0]}, "strengths"),
        ({"grid_fractions": [0.0, 1.0]}, "grid_fractions"),
        ({"instructions": ["only one"]}, "at least 2"),
        ({"prompt_template": "no placeholder"}, "instruction"),
        ({"judges": []}, "judges"),
        ({"prompts": ["the v2 field"]}, "prompts"),
        ({"tuning_fraction": 1.0}, "tuning_fraction"),
        ({"judges": ["lexicom"]}, "Did you mean 'lexicon'"),
        ({"instruction_judge": "perplexity"}, "instruction judge 'perplexity'"),
        ({"fluency_judge": "lexicon"}, "fluency judge 'lexicon'"),
    ],
)
def test_bad_config_is_a_clear_config_error(settings, match):
    with pytest.raises(ConfigError, match=match):
        get_benchmark("steering", **settings)


def test_judge_settings_a_judge_does_not_take_are_a_config_error():
    bench = get_benchmark("steering", judges=["lexicon"], judge_params={"lexicon": {"clear_hitz": 1}})
    with pytest.raises(ConfigError, match="clear_hitz"):
        bench.run(tiny_ctx())


def test_diffmean_without_categories_is_a_config_error():
    ctx = tiny_ctx()
    ctx.heldout = [Sample(text="dog cat"), Sample(text="apple")]
    bench = get_benchmark("steering", instructions=TINY_INSTRUCTIONS[:2], methods=["diffmean"], strengths=[0.1], judges=["lexicon"], judge_params={"lexicon": {"lexicon": LEXICON}}, max_new_tokens=2)
    with pytest.raises(ConfigError, match="diffmean"):
        bench.run(ctx)


# ------------------------------------------------------------------------------ end to end


DOCUMENTED = [f"{axis}_{m}" for axis in ("axbench", "concept", "instruction", "fluency") for m in ("atlas", "diffmean", "prompt", "unsteered")]
DOCUMENTED += [f"{kind}_{m}" for kind in ("strength", "lambda") for m in ("atlas", "diffmean")]
DOCUMENTED += [f"{kind}_{j}" for kind in ("faithfulness", "p2_best", "p2_unsteered") for j in ("lexicon", "atlas")]
DOCUMENTED += ["fluency_edge", "strength_unit", "n_tuning", "n_heldout", "median_perplexity_unsteered", "relevance_clear_level", "relevance_vague_level"]


def test_end_to_end_on_a_tiny_model_returns_the_documented_metrics():
    ctx = tiny_ctx()
    settings = dict(instructions=TINY_INSTRUCTIONS[:4], concepts=["noun.animal", "noun.food"], max_new_tokens=4, edge_steps=4, judge_params={"lexicon": {"lexicon": LEXICON, "clear_hits": 1}})
    result = get_benchmark("steering", **settings).run(ctx)
    assert result.benchmark == "steering@3"
    assert set(DOCUMENTED) <= set(result.metrics), sorted(set(DOCUMENTED) - set(result.metrics))
    assert all(math.isfinite(v) for v in result.metrics.values())
    assert {"axbench_atlas", "strength_atlas", "lambda_atlas", "faithfulness_lexicon", "faithfulness_atlas"} <= set(result.controls)
    assert result.chance["axbench_atlas"] == result.metrics["axbench_unsteered"] and result.chance["faithfulness_atlas"] == 0.0
    assert not any(k.endswith("_control") for k in result.metrics)
    # The grid is the fluency edge × (0.25, 0.5, 1); λ = strength × the median token norm on the tuning prompts.
    edge, unit = result.metrics["fluency_edge"], result.metrics["strength_unit"]
    tuning, heldout = split_instructions(TINY_INSTRUCTIONS[:4], seed=0)
    from atlas_align.models.steering import median_token_norm

    assert unit == median_token_norm(ctx.model, ctx.tokenizer, "layers.1", [format_prompt(ctx.tokenizer, i) for i in tuning])
    for method in ("atlas", "diffmean", "control"):
        strengths = sorted({r["strength"] for r in result.table if r["method"] == method})
        assert strengths == pytest.approx([edge / 4, edge / 2, edge])
    assert result.metrics["lambda_atlas"] == pytest.approx(result.metrics["strength_atlas"] * unit)
    # Every metric is recomputed from the table and details.
    rows = {(r["method"], r["split"], r["strength"]): r for r in result.table}
    for method in ("atlas", "diffmean"):
        chosen = result.metrics[f"strength_{method}"]
        tuning_scores = {s: r["axbench"] for (m, split, s), r in rows.items() if m == method and split == "tuning"}
        assert chosen == choose_strength(tuning_scores)
        assert result.metrics[f"axbench_{method}"] == pytest.approx(rows[(method, "heldout", chosen)]["axbench"])
    held = [d for d in result.details if d["method"] == "atlas" and d["split"] == "heldout" and d["strength"] == result.metrics["strength_atlas"]]
    assert len(held) == 2 * len(heldout) and {d["instruction"] for d in held} == set(heldout)
    assert result.metrics["axbench_atlas"] == pytest.approx(np.mean([d["axbench"] for d in held]))
    assert all(d["axbench"] == axbench_score(d["concept_rating"], d["instruction_rating"], d["fluency_rating"]) for d in result.details)
    for judge in ("lexicon", "atlas"):
        per_concept = []
        for concept in ("noun.animal", "noun.food"):
            p2 = {0.0: rows[("unsteered", "heldout", 0.0)]["by_concept"][concept][f"p2_{judge}"]}
            p2.update({s: r["by_concept"][concept][f"p2_{judge}"] for (m, split, s), r in rows.items() if m == "atlas" and split == "heldout"})
            per_concept.append(faithfulness(p2))
        assert result.metrics[f"faithfulness_{judge}"] == pytest.approx(np.mean(per_concept))
    kappa = cohen_kappa([d["ratings"]["lexicon"] for d in result.details], [d["ratings"]["atlas"] for d in result.details])
    assert result.metrics.get("kappa_lexicon_atlas", math.nan) == pytest.approx(kappa, nan_ok=True)
    assert {(r["method"], r["split"]) for r in result.table} == {(m, s) for m in ("unsteered", "atlas", "diffmean", "prompt", "control") for s in ("tuning", "heldout")}


def test_unsteered_generations_are_shared_per_weights_prompts_and_settings():
    """Memoised unsteered runs: equal to a fresh generate, copies (a judge may annotate them), keyed on the weights."""
    tok = word_tokenizer()
    model = tiny_llama()
    first = steering_module.generate_unsteered(model, tok, ["the dog", "a cat"], max_new_tokens=3)
    assert [g.text for g in first] == [g.text for g in generate(model, tok, ["the dog", "a cat"], max_new_tokens=3)]
    first[0].perplexity = 1.0
    again = steering_module.generate_unsteered(tiny_llama(), tok, ["the dog", "a cat"], max_new_tokens=3)
    assert math.isnan(again[0].perplexity) and [g.text for g in again] == [g.text for g in first]
    other = tiny_llama(seed=1)
    assert steering_module.weights_fingerprint(other) != steering_module.weights_fingerprint(model)
    assert [g.text for g in steering_module.generate_unsteered(other, tok, ["the dog", "a cat"], max_new_tokens=3)] == [
        g.text for g in generate(other, tok, ["the dog", "a cat"], max_new_tokens=3)
    ]
