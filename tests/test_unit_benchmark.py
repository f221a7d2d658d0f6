"""``translation_unit@1``: per-unit translation (max and mean pooling) and localisation, on tiny models with a planted T."""

from __future__ import annotations

import random

import pytest
import torch

from atlas_align.alignment.artifact import AlignmentConfig
from atlas_align.alignment.model import AtlasAlignment
from atlas_align.atlas.atlas import Atlas
from atlas_align.atlas.labels import FeatureLabel, FeatureLabels
from atlas_align.corpus.sources import Sample
from atlas_align.harness.benchmarks import BENCHMARKS, BenchmarkContext, get_benchmark
from atlas_align.harness.benchmarks.synthetic import planted_problem
from atlas_align.models.activations import ActivationExtractor, resolve_hookpoint
from atlas_align.models.cache import ActivationCache, CachedSpace
from atlas_align.models.spans import token_activations, token_source, unit_activations
from atlas_align.refs import AtlasRef, PoolingConfig, SubjectRef
from tests.test_atlas import _random_topk_sae
from tests.tiny_models import WORDS, tiny_bert, word_tokenizer

CATEGORIES = {"noun.animal": ["dog", "cat", "horse", "bird", "fish"], "noun.food": ["apple", "bread", "cheese"], "noun.artifact": ["car", "boat", "train", "house"]}
TEMPLATES = ("the {} runs", "a big {} sleeps", "the red {} eats")


def _setup(shuffle_T: bool = False):
    model, tok = tiny_bert(), word_tokenizer("cls")
    sae = _random_topk_sae(16, 32, k=6)
    atlas = Atlas.from_model(model, tok, sae, model_id="tiny-bert", layer=1)
    # Category features: the SAE feature whose true activation peaks on the category's words in the templates most often.
    extractor = atlas.extractor()
    labels, used = [], set()
    for category, words in CATEGORIES.items():
        texts = [t.format(w) for w in words for t in TEMPLATES]
        acts = token_activations(model, tok, extractor.hookpoint, texts, pooling=extractor.pooling, token_transform=atlas.encode_tokens)
        peaks = torch.zeros(sae.cfg.d_sae)
        for text, ta in zip(texts, acts):
            units, (pooled,) = unit_activations([ta])
            position = text.split().index(next(w for w in words if w in text.split()))
            peaks += (pooled.argmax(0) == position).float() * (pooled.max(0).values > 0).float()
        peaks[list(used)] = -1
        feature = int(peaks.argmax())
        used.add(feature)
        labels.append(FeatureLabel(feature=feature, label=f"{category.split('.')[1]} ({category})", score=0.9, source="test", validated=True))
    atlas.labels = FeatureLabels(labels)
    # A planted T: the SAE's encoder itself (its pre-activations are linear in the layer's activations).
    W = sae.W_enc.detach().clone()
    if shuffle_T:
        W = W[:, torch.randperm(W.shape[1], generator=torch.Generator().manual_seed(5))]
    config = AlignmentConfig(subject=SubjectRef(model_id="tiny-bert", hookpoint="encoder.layer.1", layer=1), atlas=AtlasRef(atlas_id="tiny"),
                             method="planted", d_s=16, d_c=32, row_normalize=False, pooling=PoolingConfig())  # fmt: skip
    alignment = AtlasAlignment(config, W, subject_shift=sae.b_dec.detach().clone(), labels=atlas.labels)
    subject = ActivationExtractor(model, tok, resolve_hookpoint(model, 1), pooling=PoolingConfig())
    rng = random.Random(0)
    heldout = [Sample(text=" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))) for _ in range(60)]
    rows = [{"text": f"a {w}", "category": c, "lemma": w, "synset": f"{c}-{w}"} for c, ws in CATEGORIES.items() for w in ws]
    return BenchmarkContext(alignment=alignment, subject=subject, atlas=atlas.space(), heldout=heldout, lexicon_rows=rows, seed=0)


def test_registered_and_not_the_default_translation():
    assert "translation_unit@1" in BENCHMARKS.names()
    from atlas_align.harness.benchmarks import benchmark_key

    assert benchmark_key("translation") == "translation@2" and benchmark_key("translation_unit") == "translation_unit@1"


def test_planted_T_beats_shuffled_control_per_unit_and_localises():
    ctx = _setup()
    bench = get_benchmark("translation_unit", n_features=20, min_positives=3, words_per_category=3, templates=TEMPLATES)
    assert bench.not_applicable(ctx) is None
    res = bench.run(ctx)
    m, c, ch = res.metrics, res.controls, res.chance
    assert m["n_texts"] == 60 and m["n_units"] == sum(len(s.text.split()) for s in ctx.heldout)  # one unit per word
    assert m["auroc"] > 0.9 and c["auroc"] < 0.7 and ch["auroc"] == 0.5
    assert m["ap"] > 2 * c["ap"] and m["auroc_mean"] == pytest.approx(m["auroc"])  # one token per unit: mean == max
    assert m["n_localisation"] == 9  # 3 categories × 3 words
    loc = res.details[-1]["localisation"]
    assert loc["atlas_localisation"] > ch["localisation"] + 0.2  # the chosen features do peak on their words (tiny random models: often, not always)
    assert m["localisation"] > max(c["localisation"], ch["localisation"]) + 0.2 and 1 / 4 <= ch["localisation"] <= 1 / 3  # 3 or 4 units per template
    assert set(loc["per_category"]) == set(CATEGORIES)
    again = bench.run(_setup())
    assert again.metrics == res.metrics and again.provenance.heldout_fingerprint == res.provenance.heldout_fingerprint
    shuffled = bench.run(_setup(shuffle_T=True))
    assert shuffled.metrics["auroc"] < 0.7


def test_needs_models_not_precomputed_spaces(tmp_path):
    problem = planted_problem(seed=0)
    ctx = BenchmarkContext(alignment=problem.alignment, subject=problem.subject, atlas=problem.atlas, heldout=problem.samples)
    assert "per-token" in get_benchmark("translation_unit").not_applicable(ctx)
    real = _setup()
    cached = CachedSpace(real.subject, {"id": "x"}, ActivationCache(tmp_path))
    assert token_source(cached) is real.subject and token_source(real.atlas) is real.atlas.extractor


def test_one_instance_scores_several_alignments_from_one_pass(monkeypatch):
    import dataclasses

    from atlas_align.harness.benchmarks import unit

    ctx = _setup()
    calls = []
    real = unit.extractor_token_activations
    monkeypatch.setattr(unit, "extractor_token_activations", lambda *a, **k: calls.append(1) or real(*a, **k))
    bench = get_benchmark("translation_unit", n_features=20, min_positives=3, words_per_category=3, templates=TEMPLATES)
    first = bench.run(ctx)
    n = len(calls)
    shuffled_T = ctx.alignment.T[:, torch.randperm(32, generator=torch.Generator().manual_seed(1))]
    other = AtlasAlignment(ctx.alignment.config, shuffled_T, ctx.alignment.subject_shift, labels=ctx.alignment.labels)
    second = bench.run(dataclasses.replace(ctx, alignment=other))
    assert len(calls) == n == 4  # held-out and localisation texts, subject and atlas: computed once
    assert second.metrics["auroc"] < first.metrics["auroc"] - 0.2


def test_evaluate_runs_it_on_request_and_writes_results(tmp_path):
    import json

    from atlas_align.harness.evaluation import evaluate

    ctx = _setup()
    folder = tmp_path / "artifact"
    ctx.alignment.save_pretrained(folder)
    params = {"translation_unit@1": {"n_features": 10, "min_positives": 3, "n_categories": 0}}
    report = evaluate(folder, ["translation_unit"], subject_space=ctx.subject, atlas_space=ctx.atlas, heldout=ctx.heldout, params=params, plot=False)
    assert report.results["translation_unit@1"].metrics["auroc"] > 0.9
    saved = json.loads((folder / "eval_results.json").read_text())
    assert "localisation" not in saved["results"]["translation_unit@1"]["metrics"]  # n_categories=0 skips it
    assert "translation_unit@1" in (folder / "README.md").read_text()
