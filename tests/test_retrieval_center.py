"""``retrieval@2`` with ``center=True``: each concept's translated query vector minus the mean over
concepts before ranking (the shuffled-T control centered the same way); the default keeps its hash."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atlas_align.errors import ConfigError
from atlas_align.harness.benchmarks import BenchmarkContext, get_benchmark
from atlas_align.harness.benchmarks.base import config_hash, validated_concepts
from atlas_align.harness.benchmarks.metrics import rank_of_first_relevant
from atlas_align.harness.benchmarks.retrieval import RetrievalConfig
from atlas_align.harness.benchmarks.synthetic import InMemorySpace, planted_problem
from atlas_align.harness.benchmarks.translation import shuffled_columns

SHARED = 20  # an unvalidated background feature of the planted atlas (12 category features, then 20 background)
DEFAULT_HASH = "19779cb9bc5a03d76c6f6e79233998de3043922d32d2814ce60200d7a123b281"


def _dominated_ctx(scale: float = 3.0, categories=None) -> BenchmarkContext:
    """The planted problem with one shared subject direction (T's column of feature SHARED) added to every
    text: that feature tops every concept's translated query."""
    problem = planted_problem(seed=0)
    texts = [s.text for s in problem.samples]
    acts = torch.cat(list(problem.subject.pooled_batches(texts)))
    shifted = acts + scale * problem.alignment.T[:, SHARED].float()
    samples = [s for s in problem.samples if categories is None or s.category in categories]
    return BenchmarkContext(alignment=problem.alignment, subject=InMemorySpace(dict(zip(texts, shifted))), atlas=problem.atlas, heldout=samples, seed=0)


def test_default_config_hash_is_unchanged_by_the_center_field():
    before = {"generator": "heldout", "queries_per_concept": 16, "min_queries": 1}  # RetrievalConfig before center
    assert RetrievalConfig().model_dump(mode="json") == RetrievalConfig(center=False).model_dump(mode="json") == before
    assert config_hash(RetrievalConfig()) == config_hash(RetrievalConfig(center=False)) == config_hash(before) == DEFAULT_HASH
    centered = RetrievalConfig(center=True)
    assert centered.model_dump(mode="json") == before | {"center": True}
    assert config_hash(centered) != DEFAULT_HASH
    assert RetrievalConfig.model_validate(centered.model_dump()).center is True
    assert "center" not in get_benchmark("retrieval").config.model_dump()


def test_centering_removes_a_feature_shared_by_every_query():
    ctx = _dominated_ctx()
    plain = get_benchmark("retrieval").run(ctx)
    assert all(d["top_features"][0] == SHARED for d in plain.details)  # the shared feature tops every concept
    assert all(d["rank"] == 2 for d in plain.details) and plain.metrics["mrr"] == 0.5
    centered = get_benchmark("retrieval", center=True).run(_dominated_ctx())
    assert all(SHARED not in d["top_features"][:2] for d in centered.details)
    assert centered.metrics["mrr"] == 1.0 and centered.metrics["mpp"] == 1.0
    assert [d["concept"] for d in centered.details] == [d["concept"] for d in plain.details]
    assert centered.chance == plain.chance  # chance does not depend on the scores
    assert centered.config["center"] is True and "center" not in plain.config
    assert centered.config_hash != plain.config_hash == DEFAULT_HASH


def test_centered_control_is_the_permuted_scores_centered():
    ctx = _dominated_ctx()
    result = get_benchmark("retrieval", center=True).run(ctx)
    concepts = validated_concepts(ctx.labels)
    scores = np.stack([ctx.alignment.translate_to_atlas(ctx.subject_pooled([s.text for s in ctx.heldout if s.category == c][:16])).double().mean(0).numpy() for c in concepts])
    relevant = np.zeros_like(scores, dtype=bool)
    for i, features in enumerate(concepts.values()):
        relevant[i, features] = True
    control = scores[:, shuffled_columns(scores.shape[1], ctx.seed).numpy()]
    ranks = rank_of_first_relevant(control - control.mean(0, keepdims=True), relevant)
    assert [d["control_rank"] for d in result.details] == ranks.tolist()
    assert [d["rank"] for d in result.details] == rank_of_first_relevant(scores - scores.mean(0, keepdims=True), relevant).tolist()


def test_centering_a_single_concept_is_refused():
    ctx = _dominated_ctx(categories={"noun.concept0"})
    assert get_benchmark("retrieval").run(ctx).metrics["n_concepts"] == 1  # uncentered: fine
    with pytest.raises(ConfigError, match="at least two concepts.*noun.concept0.*all scores 0"):
        get_benchmark("retrieval", center=True).run(_dominated_ctx(categories={"noun.concept0"}))
