"""Benchmarks: metric code against scikit-learn, hand-computed retrieval scores, planted alignments,
bit-for-bit reproducibility, judges, steering mechanics on tiny random models, and the outputs
`evaluate` writes. One slow test runs all three benchmarks on the real models."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from atlas_align.alignment.artifact import AlignmentConfig
from atlas_align.alignment.model import AtlasAlignment
from atlas_align.atlas.labels import FeatureLabel, FeatureLabels
from atlas_align.corpus.sources import Sample
from atlas_align.errors import ConfigError, UnknownNameError
from atlas_align.files import texts_fingerprint
from atlas_align.harness.benchmarks import BENCHMARKS, BenchmarkContext, BenchmarkResult, benchmark_key, get_benchmark
from atlas_align.harness.benchmarks.base import label_category, validated_concepts
from atlas_align.harness.benchmarks.judges import AtlasJudge, LexiconJudge, LLMJudge, SteeringConcept, category_lexicon, get_judge
from atlas_align.harness.benchmarks.metrics import (
    NonFiniteScoreError,
    auroc,
    average_precision,
    chance_reciprocal_rank,
    r_precision,
    rank_of_first_relevant,
)
from atlas_align.harness.benchmarks.steering import faithfulness
from atlas_align.harness.benchmarks.synthetic import InMemorySpace, planted_problem
from atlas_align.models.steering import steer
from atlas_align.refs import AtlasRef, SubjectRef
from tests.tiny_models import tiny_llama, word_tokenizer


def _ctx(problem, seed: int = 0, **kw) -> BenchmarkContext:
    return BenchmarkContext(alignment=problem.alignment, subject=problem.subject, atlas=problem.atlas, heldout=problem.samples, seed=seed, **kw)


# ------------------------------------------------------------------------------ metrics


@pytest.mark.parametrize("levels", [3, 1000])  # few levels → many ties; many levels → few
def test_auroc_and_ap_match_sklearn_with_ties(levels):
    rng = np.random.default_rng(1)
    scores = rng.integers(0, levels, size=(300, 40)).astype(float)
    labels = rng.random((300, 40)) < rng.uniform(0.05, 0.6, size=40)
    got_auc, got_ap = auroc(scores, labels), average_precision(scores, labels)
    for j in range(40):
        assert got_auc[j] == pytest.approx(roc_auc_score(labels[:, j], scores[:, j]), abs=1e-12)
        assert got_ap[j] == pytest.approx(average_precision_score(labels[:, j], scores[:, j]), abs=1e-12)
    assert auroc(scores[:, 0], labels[:, 0]) == pytest.approx(got_auc[0])  # 1-D input


def test_metrics_on_degenerate_columns():
    assert math.isnan(auroc([1.0, 2.0], [True, True]))
    assert math.isnan(average_precision([1.0, 2.0], [False, False]))
    assert auroc([0.0, 0.0, 0.0, 0.0], [1, 0, 1, 0]) == 0.5  # all tied → chance, not 1
    assert average_precision([0.0, 0.0, 0.0, 0.0], [1, 0, 0, 0]) == pytest.approx(0.25)


def test_mrr_and_r_precision_by_hand():
    scores = np.array([[0.9, 0.8, 0.7, 0.1, 0.0], [0.1, 0.9, 0.3, 0.8, 0.2], [0.5, 0.5, 0.5, 0.5, 0.5]])
    relevant = np.array([[0, 1, 1, 0, 0], [1, 0, 0, 0, 1], [1, 0, 0, 0, 0]], dtype=bool)
    # row 0: best relevant (0.8) has one irrelevant above → rank 2; top-2 = {0, 1} → 1 of 2 relevant.
    # row 1: best relevant 0.2, above it 0.9, 0.3, 0.8 → rank 4; top-2 = {1, 3} → 0.
    # row 2: all tied → ties count against the query: rank 5; top-1 is an irrelevant item.
    assert rank_of_first_relevant(scores, relevant).tolist() == [2, 4, 5]
    assert r_precision(scores, relevant).tolist() == [0.5, 0.0, 0.0]


def test_nan_scores_rank_last_never_first():
    """Issue 11: a NaN on the relevant item used to rank it first (MRR 1.000 for an all-NaN T)."""
    nan = float("nan")
    scores = np.array([[nan, 0.1, 0.2, 0.3], [nan, nan, nan, nan], [0.5, nan, nan, 0.1], [nan, 0.4, 0.4, -np.inf]])
    relevant = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]], dtype=bool)
    # row 0: the relevant NaN comes after the 3 real scores; row 1: all NaN → last (rank 4);
    # row 2: irrelevant NaNs never beat a real score → rank 1; row 3: a tie with 0.4 counts against it → 2.
    assert rank_of_first_relevant(scores, relevant).tolist() == [4, 4, 1, 2]
    assert r_precision(scores, relevant).tolist() == [0.0, 0.0, 1.0, 0.0]
    assert auroc([nan, 0.1, 0.2, 0.3], [1, 0, 0, 0]) == 0.0  # a NaN positive is the lowest score
    assert average_precision([nan, 0.1, 0.2, 0.3], [1, 0, 0, 0]) == pytest.approx(0.25)


def test_pessimistic_ties_for_several_relevant_items():
    scores = np.array([[0.7, 0.7, 0.7, 0.7, 0.1]])
    relevant = np.array([[1, 1, 0, 0, 0]], dtype=bool)
    assert rank_of_first_relevant(scores, relevant).tolist() == [3]  # behind both tied irrelevant items
    assert r_precision(scores, relevant).tolist() == [0.0]


@pytest.mark.parametrize("benchmark_name", ["translation", "retrieval", "pairs"])
@pytest.mark.parametrize("where", ["all", "one"])
def test_non_finite_T_is_refused_not_scored(benchmark_name, where):
    problem = planted_problem(seed=0)
    if where == "all":
        problem.alignment.T = torch.full_like(problem.alignment.T, float("nan"))
    else:  # one spoiled activation can spoil one entry of a covariance T
        problem.alignment.T[3, 5] = float("inf")
    with pytest.raises(NonFiniteScoreError, match=r"The alignment's T holds non-finite values \((\d+ NaN|1 inf) of"):
        get_benchmark(benchmark_name).run(_ctx(problem))


@pytest.mark.parametrize("benchmark_name", ["translation", "retrieval", "pairs"])
def test_non_finite_subject_activations_are_refused_not_scored(benchmark_name):
    problem = planted_problem(seed=0)
    texts = [s.text for s in problem.samples]
    rows = torch.cat(list(problem.subject.pooled_batches(texts)))
    rows[::7] = float("nan")  # e.g. a bfloat16 overflow on some texts
    with pytest.raises(NonFiniteScoreError, match="translated .* scores hold non-finite values"):
        get_benchmark(benchmark_name).run(BenchmarkContext(alignment=problem.alignment, subject=InMemorySpace(dict(zip(texts, rows))), atlas=problem.atlas, heldout=problem.samples, seed=0))


def test_all_zero_T_scores_chance_or_worse():
    problem = planted_problem(seed=0)
    problem.alignment.T = torch.zeros_like(problem.alignment.T)
    ctx = _ctx(problem)
    retrieval = get_benchmark("retrieval").run(ctx)
    assert retrieval.metrics["mrr"] < retrieval.chance["mrr"]  # every tie counts against the query
    assert retrieval.metrics["mpp"] == 0.0
    translation = get_benchmark("translation").run(ctx)
    assert translation.metrics["auroc"] == 0.5


def test_chance_reciprocal_rank():
    n = 50
    assert chance_reciprocal_rank(n, 1) == pytest.approx(sum(1 / k for k in range(1, n + 1)) / n)
    assert chance_reciprocal_rank(n, n) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    sims = [1 / (1 + int(np.argmax(rng.permutation(n) < 3))) for _ in range(20000)]
    assert chance_reciprocal_rank(n, 3) == pytest.approx(np.mean(sims), abs=0.01)


def test_faithfulness_formula():
    assert faithfulness({0.0: 0.2, 4.0: 0.6, 8.0: 0.4}) == pytest.approx(0.5)
    assert faithfulness({0.0: 0.5, 4.0: 0.1}) == 0.0  # max includes λ = 0
    assert faithfulness({0.0: 1.0, 4.0: 1.0}) == 0.0


def test_label_category_and_concepts():
    labels = FeatureLabels([
        FeatureLabel(feature=3, label="animals (noun.animal)", validated=True),
        FeatureLabel(feature=1, label="animals (noun.animal)", validated=True),
        FeatureLabel(feature=2, label="food and drink (noun.food)", validated=False),
        FeatureLabel(feature=4, label="words: dog, cat", validated=True),
    ])  # fmt: skip
    assert label_category(labels[3]) == "noun.animal"
    assert label_category(labels[4]) is None
    assert validated_concepts(labels) == {"noun.animal": [1, 3]}


def test_registry_names_versions_and_typos():
    assert {"translation@2", "retrieval@2", "steering@3"} <= set(BENCHMARKS.names())
    assert benchmark_key("retrieval") == "retrieval@2"
    with pytest.raises(UnknownNameError, match="Did you mean 'translation"):
        benchmark_key("translaton")
    with pytest.raises(UnknownNameError):
        benchmark_key("translation@7")
    with pytest.raises(ConfigError, match="already registered"):
        BENCHMARKS.register("translation@2")(object)
    with pytest.raises(ConfigError, match="Invalid settings"):
        get_benchmark("translation", n_features=0)


# ------------------------------------------------------------------------------ planted problems


def test_planted_alignment_scores_near_one_and_shuffled_near_chance():
    fitted = _ctx(planted_problem(seed=0))
    shuffled = _ctx(planted_problem(seed=0, shuffle_T=True))
    t_fit, t_shuf = get_benchmark("translation").run(fitted), get_benchmark("translation").run(shuffled)
    assert t_fit.metrics["auroc"] > 0.98 and t_fit.metrics["ap"] > 0.95
    assert abs(t_shuf.metrics["auroc"] - 0.5) < 0.1
    assert abs(t_fit.controls["auroc"] - 0.5) < 0.1  # the built-in shuffled-T control
    assert t_fit.chance["ap"] == pytest.approx(np.mean([d["chance_ap"] for d in t_fit.details if d["sampled"]]))
    r_fit, r_shuf = get_benchmark("retrieval").run(fitted), get_benchmark("retrieval").run(shuffled)
    assert r_fit.metrics["mrr"] == 1.0 and r_fit.metrics["mpp"] == 1.0
    assert r_shuf.metrics["mrr"] < 0.4 and r_shuf.metrics["mpp"] < 0.4
    assert r_fit.controls["mrr"] < 0.4
    assert r_fit.metrics["n_queries"] == 12 and r_fit.metrics["n_concepts"] == 6


def test_results_reproducible_to_the_bit_and_seed_sensitive():
    def run(seed):
        ctx = _ctx(planted_problem(seed=3, extra_features=60), seed=seed)
        return [get_benchmark(name, **({"n_features": 20} if name == "translation" else {})).run(ctx).model_dump_json() for name in ("translation", "retrieval")]

    first, again, other = run(0), run(0), run(1)
    assert first == again
    assert first[0] != other[0]  # another seed samples other features
    result = BenchmarkResult.model_validate_json(first[0])
    assert result.benchmark == "translation@2" and result.version == 2
    assert result.provenance.heldout_fingerprint == texts_fingerprint(s.text for s in planted_problem(seed=3, extra_features=60).samples)
    assert len(result.config_hash) == 64 and result.provenance.harness_version


def test_retrieval_needs_categories():
    problem = planted_problem()
    problem.alignment.labels = FeatureLabels([FeatureLabel(feature=0, label="no category", validated=True)])
    problem.atlas.labels = FeatureLabels()
    with pytest.raises(ConfigError, match="validated atlas features"):
        get_benchmark("retrieval").run(_ctx(problem))


def test_evaluate_writes_results_card_plot_and_eval_yaml(tmp_path):
    from atlas_align.harness.evaluation import evaluate, format_tables

    problem = planted_problem()
    folder = tmp_path / "artifact"
    problem.alignment.save_pretrained(folder)
    report = evaluate(folder, ["translation"], subject_space=problem.subject, atlas_space=problem.atlas, heldout=problem.samples)
    report = evaluate(folder, ["retrieval"], subject_space=problem.subject, atlas_space=problem.atlas, heldout=problem.samples)
    saved = json.loads((folder / "eval_results.json").read_text())
    assert set(saved["results"]) == {"translation@2", "retrieval@2"}  # merged with the earlier run
    assert BenchmarkResult.model_validate(saved["results"]["retrieval@2"]).metrics["mrr"] == 1.0
    assert (folder / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    card = (folder / "README.md").read_text()
    assert "| retrieval@2 | mrr | 1.0000 |" in card and "(shuffled T)" in card and "![metrics](metrics.png)" in card
    import yaml

    entries = yaml.safe_load((folder / ".eval_results" / "translation-v2.yaml").read_text())
    assert entries[0]["dataset"] == {"id": "atlas-align/translation", "task_id": "translation@2/auroc"}
    assert AtlasAlignment.from_pretrained(folder).T.shape == problem.alignment.T.shape  # artifact still loads
    assert "shuffled-T" in format_tables(report.results)


# ------------------------------------------------------------------------------ judges

LEXICON = {"noun.animal": ["dog", "cat", "horse", "bird", "fish"], "noun.food": ["apple", "bread", "cheese"]}
ANIMAL = SteeringConcept(category="noun.animal", features=(0,), description="animals (noun.animal)")
FOOD = SteeringConcept(category="noun.food", features=(1,), description="food and drink (noun.food)")


class WordSpace:
    """A toy atlas: feature 0 counts animal words, feature 1 food words."""

    width = 4
    ref = AtlasRef(atlas_id="words")
    labels = FeatureLabels()

    def pooled_batches(self, texts, progress=False, total=None):
        rows = [torch.tensor([sum(w in LEXICON["noun.animal"] for w in t.split()), sum(w in LEXICON["noun.food"] for w in t.split()), 0.0, 1.0]) for t in texts]
        yield torch.stack(rows) if rows else torch.empty(0, 4)


def test_lexicon_judge_rates_by_category_words():
    judge = LexiconJudge(LEXICON)
    assert judge.rate(["the red car", "a dog runs", "dogs and cats", "Cheese, bread!"], ANIMAL) == [0, 1, 2, 0]
    assert judge.rate(["Cheese, bread!"], FOOD) == [2]


def test_category_lexicon_keeps_words_whose_senses_are_mostly_there():
    rows = [
        {"lemma": "dog", "category": "noun.animal", "synset": "1-n"},
        {"lemma": "dog", "category": "verb.motion", "synset": "2-v"},
        {"lemma": "dog", "category": "noun.animal", "synset": "3-n"},
        {"lemma": "run", "category": "verb.motion", "synset": "4-v"},
        {"lemma": "run", "category": "noun.act", "synset": "5-n"},
        {"lemma": "run", "category": "noun.event", "synset": "6-n"},
        {"lemma": "ice_cream", "category": "noun.food", "synset": "7-n"},
        {"lemma": "the", "category": "noun.food", "synset": "8-n"},
    ]  # fmt: skip
    lexicon = category_lexicon(rows)
    assert lexicon == {"noun.animal": frozenset({"dog"}), "noun.food": frozenset({"cream"})}  # head word of 'ice cream'
    texts = [{"text": "a small dog", "category": "noun.animal"}] * 3 + [{"text": "a dog sled", "category": "noun.artifact"}]
    assert category_lexicon(texts) == {"noun.animal": frozenset({"small", "dog"})}


def test_builtin_lexicon_has_animal_words():
    judge = LexiconJudge()
    judge.prepare(None, [ANIMAL])
    assert {"bird", "antelope", "ant"} <= judge.lexicon["noun.animal"]
    assert judge.rate(["The bird saw two antelopes."], ANIMAL) == [2]
    assert judge.rate(["The car was red."], ANIMAL) == [0]


def test_atlas_judge_uses_heldout_distribution():
    ctx = BenchmarkContext(alignment=None, subject=None, atlas=WordSpace(), heldout=[Sample(text=t) for t in ("dog", "dog cat", "dog cat bird", "car")])
    judge = AtlasJudge(clear_quantile=0.5)
    judge.prepare(ctx, [ANIMAL])
    assert judge.clear_level[0] == 2.0  # median of the non-zero held-out values 1, 2, 3
    assert judge.rate(["car", "dog", "dog cat", "horse fish bird"], ANIMAL) == [0, 1, 2, 2]
    # With categories: 'clear' = median on the concept's texts, 'vague' = 90th percentile elsewhere.
    labelled = [Sample(text="dog cat bird", category="noun.animal"), Sample(text="dog cat fish", category="noun.animal"), Sample(text="apple", category="noun.food"), Sample(text="dog bread", category="noun.food")]
    judge.prepare(BenchmarkContext(alignment=None, subject=None, atlas=WordSpace(), heldout=labelled), [ANIMAL])
    assert judge.clear_level[0] == 3.0 and judge.vague_level[0] == pytest.approx(0.9)
    assert judge.rate(["car", "dog", "dog cat bird"], ANIMAL) == [0, 1, 2]


def test_llm_judge_local_and_endpoint(monkeypatch):
    model, tok = tiny_llama(), word_tokenizer()
    ratings = LLMJudge(model=(model, tok)).rate(["the dog", "a car"], ANIMAL)
    assert len(ratings) == 2 and set(ratings) <= {0, 1, 2}

    def fake_urlopen(request, timeout):
        body = json.loads(request.data)
        assert "animals (noun.animal)" in body["messages"][0]["content"]
        return io.BytesIO(json.dumps({"choices": [{"message": {"content": "Rating: 2"}}]}).encode())

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    assert LLMJudge(endpoint="http://localhost:1/v1").rate(["the dog"], ANIMAL) == [2]
    with pytest.raises(ConfigError, match="exactly one"):
        LLMJudge()
    with pytest.raises(UnknownNameError, match="Did you mean 'lexicon'"):
        get_judge("lexicom")


# ------------------------------------------------------------------------------ steering mechanics


def _tiny_steering_ctx(seed: int = 0) -> BenchmarkContext:
    model, tok = tiny_llama(), word_tokenizer()
    labels = FeatureLabels([FeatureLabel(feature=0, label="animals (noun.animal)", validated=True), FeatureLabel(feature=1, label="food (noun.food)", validated=True)])
    config = AlignmentConfig(subject=SubjectRef(model_id="tiny", hookpoint="layers.1"), atlas=AtlasRef(atlas_id="words"), method="random", d_s=32, d_c=4)
    T, _ = torch.linalg.qr(torch.randn(32, 4, generator=torch.Generator().manual_seed(0)))
    alignment = AtlasAlignment(config, T, labels=labels)
    heldout = [Sample(text=t) for t in ("dog cat", "the dog", "apple bread", "cheese")]
    return BenchmarkContext(alignment=alignment, subject=None, atlas=WordSpace(), heldout=heldout, model=model, tokenizer=tok, seed=seed)


STEER = {
    "instructions": ["the dog", "a red car"], "heldout_instructions": ["the big house", "a small boat"], "strengths": [2, 64],
    "strength_unit": "absolute", "max_new_tokens": 5, "methods": ["atlas", "control"],
}  # fmt: skip


def test_steering_mechanics_on_a_tiny_model():
    from atlas_align.harness.benchmarks.instructions import format_prompt
    from atlas_align.harness.benchmarks.steering import generate

    ctx = _tiny_steering_ctx()
    result = get_benchmark("steering", judge_instances={"lexicon": LexiconJudge(LEXICON, clear_hits=1)}, **STEER).run(ctx)
    arms = [("unsteered", 0.0), ("atlas", 2.0), ("atlas", 64.0), ("control", 2.0), ("control", 64.0)]
    assert sorted((r["method"], r["split"], r["strength"]) for r in result.table) == sorted((m, split, s) for m, s in arms for split in ("tuning", "heldout"))
    prompts = [format_prompt(ctx.tokenizer, i) for i in STEER["heldout_instructions"]]
    plain = [g.text for g in generate(ctx.model, ctx.tokenizer, prompts, max_new_tokens=5)]
    unsteered = [d["text"] for d in result.details if d["method"] == "unsteered" and d["split"] == "heldout" and d["concept"] == "noun.animal"]
    assert unsteered == plain
    # The steering hook itself at λ = 0 leaves generation unchanged (the norm-preserving add is exact).
    with steer(ctx.model, ctx.alignment.config.subject.hookpoint, ctx.alignment.concept_direction("noun.animal"), 0.0, absolute=True):
        hooked = [g.text for g in generate(ctx.model, ctx.tokenizer, prompts, max_new_tokens=5)]
    assert hooked == plain
    strong = [d["text"] for d in result.details if d["method"] == "atlas" and d["strength"] == 64.0 and d["split"] == "heldout" and d["concept"] == "noun.animal"]
    assert strong != plain  # a strong push changes the continuation
    rows = {(r["method"], r["split"], r["strength"]): r for r in result.table}
    for name in ("lexicon", "atlas"):  # every FADE number is recomputed from the held-out rows of the table
        for method, target in (("atlas", result.metrics), ("control", result.controls)):
            expected = np.mean([
                faithfulness({s: rows[(m, "heldout", s)]["by_concept"][c][f"p2_{name}"] for m, s in [("unsteered", 0.0), (method, 2.0), (method, 64.0)]})
                for c in ("noun.animal", "noun.food")
            ])  # fmt: skip
            assert target[f"faithfulness_{name}"] == pytest.approx(expected)
    again = get_benchmark("steering", judge_instances={"lexicon": LexiconJudge(LEXICON, clear_hits=1)}, **STEER).run(_tiny_steering_ctx())
    assert again.model_dump_json() == result.model_dump_json()  # greedy and seeded: bit-identical


def test_fluency_guard_zeroes_disfluent_generations():
    class Always2:
        def prepare(self, ctx, concepts):
            pass

        def rate(self, texts, concept):
            return [2] * len(texts)

    settings = dict(STEER, judges=["always"], perplexity_factor=1e-6, concepts=["noun.animal"], methods=["atlas"])
    result = get_benchmark("steering", judge_instances={"always": Always2()}, **settings).run(_tiny_steering_ctx())
    # Every generation, the unsteered ones included, is far over the limit: none is fluent, so nothing counts.
    assert all(r["p2_always"] == 0.0 and r["fluent"] == 0.0 and r["axbench"] == 0.0 for r in result.table)
    lenient = get_benchmark("steering", judge_instances={"always": Always2()}, **dict(settings, perplexity_factor=1e6, min_distinct_fraction=0.0)).run(_tiny_steering_ctx())
    assert all(r["p2_always"] == 1.0 and r["fluent"] == 1.0 for r in lenient.table if r["method"] == "atlas") and lenient.metrics["faithfulness_always"] == 0.0


def test_repetition_counts_as_disfluent():
    from atlas_align.harness.benchmarks.judges import distinct_fraction

    assert distinct_fraction([5, 5, 5, 5, 5, 5, 5, 5, 5, 7]) == 0.2 < 0.3  # "and and and …" has a low perplexity
    assert distinct_fraction([1, 2, 3, 4]) == 1.0 and distinct_fraction([]) == 0.0


def test_steering_rejects_unknown_concepts():
    with pytest.raises(ConfigError, match="noun.plant"):
        get_benchmark("steering", concepts=["noun.plant"], **STEER).run(_tiny_steering_ctx())


def test_steer_export_writes_lm_eval_format(tmp_path):
    from click.testing import CliRunner

    from atlas_align.cli.main import main

    ctx = _tiny_steering_ctx()
    ctx.alignment.save_pretrained(tmp_path / "art")
    out = tmp_path / "steer.pt"
    res = CliRunner().invoke(main, ["steer", "export", str(tmp_path / "art"), "--concept", "noun.animal", "--strength", "4", "--absolute", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = torch.load(out, weights_only=False)  # our own file, just written
    entry = data["layers.1"]
    assert entry["action"] == "add" and entry["steering_coefficient"] == 1.0 and entry["bias"] is None
    assert torch.allclose(entry["steering_vector"], 4 * ctx.alignment.concept_direction([0]))
    bad = CliRunner().invoke(main, ["steer", "export", str(tmp_path / "art"), "--concept", "noun.plant", "--strength", "4", "--absolute", "--out", str(out)])
    assert bad.exit_code == 2 and "noun.plant" in bad.output


# ------------------------------------------------------------------------------ real models


@pytest.mark.slow
def test_real_models_all_three_benchmarks(tmp_path, capsys):
    """Built-in atlas + SmolLM2 layer 20, Procrustes on 3000 shared texts: each metric beside its control."""
    from atlas_align.alignment.pipeline import AlignRequest, load_subject, run_alignment
    from atlas_align.atlas.atlas import builtin_atlas_dir
    from atlas_align.errors import ArtifactNotFound
    from atlas_align.harness.evaluation import evaluate, format_tables

    try:
        builtin_atlas_dir()
    except ArtifactNotFound:
        pytest.skip("the built-in atlas (atlas_align/data/default_atlas) is not in this checkout yet")
    bundle = load_subject("smollm2")
    fitted = run_alignment(AlignRequest(samples=3000, heldout_samples=0), subject_bundle=bundle, progress=False)
    fitted.alignment.save_pretrained(tmp_path / "art")
    # steering@3 at CI cost: two concepts, the atlas arm against shuffled T (docs/STEERING.md has the full comparison)
    steering = {"n_concepts": 2, "max_new_tokens": 16, "methods": ["atlas", "control", "unsteered"]}
    report = evaluate(tmp_path / "art", samples=1000, subject_bundle=bundle, params={"steering": steering})
    with capsys.disabled():
        print("\n" + format_tables(report.results))
    t, r, s = (report.results[k] for k in ("translation@2", "retrieval@2", "steering@3"))
    assert t.metrics["auroc"] > t.controls["auroc"] + 0.1 and t.metrics["ap"] > t.chance["ap"]
    assert r.metrics["mrr"] > r.controls["mrr"] and r.metrics["mrr"] > r.chance["mrr"]
    # steering@2 measured faithfulness_atlas 0.272 vs 0.071 (shuffled T); steering@3 is not yet measured on this model.
    assert s.table and {"axbench_atlas", "faithfulness_atlas", "lambda_atlas"} <= set(s.metrics) and "axbench_atlas" in s.controls
