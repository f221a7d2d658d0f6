"""``retrieval@2``: does a concept's translated query rank that concept's atlas features first?

Protocol (paper Table 4, our definitions): every validated atlas feature whose label names a
ground-truth category (e.g. ``noun.animal``) is a query. Its concept sequences come from a
pluggable generator (default ``heldout``: held-out corpus texts of that category, so features
of one category share their query; ``template`` and ``llm``, the paper's synthetic concept sequences,
are in :mod:`~atlas_align.harness.benchmarks.queries`). The subject's pooled activations of the sequences are
translated into atlas space and averaged; all atlas features are ranked by that score.

- **MRR**: mean over queries of 1 / rank of the first feature that shares the query's category
  (the query cannot tell features of one category apart); ties rank against the query.
- **MPP** (this project's definition; the paper's was not recovered): mean precision at P,
  P = number of validated features sharing the query's category — i.e. R-precision.

References: chance (exact expected 1/rank and P/d_c for a random ranking) and a shuffled-T
control (T's columns permuted with the seed).

``center=True`` (opt-in) ranks each concept against the others: the mean of all concepts' translated
query vectors is subtracted from each before ranking, so a feature every concept's sequences raise alike
(e.g. one that fires on the conversational style of synthetic sentences) no longer tops every concept.
The shuffled-T control is centered the same way (its permuted scores, centered over concepts); chance is
unchanged. It needs at least two concepts with sequences.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from atlas_align.errors import ConfigError
from atlas_align.harness.benchmarks.base import (
    Benchmark,
    BenchmarkContext,
    BenchmarkResult,
    NotApplicable,
    register_benchmark,
    validated_concepts,
)
from atlas_align.harness.benchmarks.metrics import chance_reciprocal_rank, r_precision, rank_of_first_relevant, require_finite
from atlas_align.harness.benchmarks.translation import shuffled_columns
from atlas_align.plugins import Registry

# (ctx, category, feature ids, n, seed[, model=]) -> concept sequences; ``model`` only for generators that take one
QueryGenerator = Callable[[BenchmarkContext, str, Sequence[int], int, int], list[str]]
QUERY_GENERATORS: Registry[QueryGenerator] = Registry("query generator")


@QUERY_GENERATORS.register("heldout")
def heldout_queries(ctx: BenchmarkContext, category: str, features: Sequence[int], n: int, seed: int) -> list[str]:
    """The first ``n`` held-out texts of the category, in held-out order (deterministic)."""
    return [s.text for s in ctx.heldout if s.category == category][:n]


class RetrievalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generator: str = "heldout"
    queries_per_concept: int = Field(16, gt=0)
    min_queries: int = Field(1, gt=0, description="skip a concept with fewer sequences")
    generator_model: str | None = Field(None, description="the model a generator that takes one writes with (llm); None: its default")
    center: bool = Field(False, description="subtract the mean over concepts of the translated query vectors before ranking")

    @field_validator("generator")
    @classmethod
    def _known_generator(cls, name: str) -> str:
        QUERY_GENERATORS.get(name)  # an unknown name raises, listing the valid ones
        return name

    @model_serializer(mode="wrap")
    def _without_unset_options(self, handler) -> dict[str, Any]:
        data = handler(self)
        # Dropped at their defaults: keeps the config hash of results from before the fields existed.
        if data.get("generator_model") is None:
            data.pop("generator_model", None)
        if data.get("center") is False:
            data.pop("center", None)
        return data


@register_benchmark
class RetrievalBenchmark(Benchmark):
    __doc__ = __doc__
    name = "retrieval"
    version = 2
    Config = RetrievalConfig

    def not_applicable(self, ctx: BenchmarkContext) -> str | None:
        if validated_concepts(ctx.labels):
            return None
        raw = getattr(getattr(ctx.atlas, "ref", None), "kind", None) == "raw"
        return (
            "retrieval needs validated atlas features whose labels name a category (e.g. 'animals (noun.animal)'); "
            + ("a raw-layer atlas (model:NAME@LAYER) has no labels." if raw else "this alignment's atlas has none.")
        )

    def run(self, ctx: BenchmarkContext) -> BenchmarkResult:
        cfg = self.config
        generate = QUERY_GENERATORS.get(cfg.generator)
        options: dict[str, Any] = {}
        if cfg.generator_model is not None:
            if "model" not in inspect.signature(generate).parameters:
                raise ConfigError(f"Query generator {cfg.generator!r} takes no generator_model (got {cfg.generator_model!r}).")
            options["model"] = cfg.generator_model
        concepts = validated_concepts(ctx.labels)
        if not concepts:
            raise NotApplicable(self.not_applicable(ctx))
        d_c = ctx.alignment.config.d_c
        require_finite(ctx.alignment.T, "The alignment's T", "re-fit it; a NaN T would rank every query first.")
        perm = shuffled_columns(d_c, ctx.seed).numpy()
        used_texts: list[str] = []
        names, weights, queries, relevant, n_texts = [], [], [], [], []
        for category, features in concepts.items():
            texts = generate(ctx, category, features, cfg.queries_per_concept, ctx.seed, **options)
            if len(texts) < cfg.min_queries:
                continue
            used_texts.extend(texts)
            translated = ctx.alignment.translate_to_atlas(ctx.subject_pooled(texts)).double().mean(0).numpy()
            mask = np.zeros(d_c, dtype=bool)
            mask[features] = True
            names.append(category)
            n_texts.append(len(texts))
            weights.append(len(features))
            queries.append(translated)
            relevant.append(mask)
        if not names:
            hint = "use more held-out samples" if cfg.generator == "heldout" else "its categories may have no usable lemmas, or lower min_queries"
            raise ConfigError(f"No concept had ≥ {cfg.min_queries} query sequences from generator {cfg.generator!r}; {hint}.")
        scores, rel, w = np.stack(queries), np.stack(relevant), np.asarray(weights, dtype=np.float64)
        require_finite(scores, "The translated query scores", "the subject activations overflowed (try --dtype float32).")
        control_scores = scores[:, perm]
        if cfg.center:
            if len(names) < 2:
                raise ConfigError(
                    f"center=True needs at least two concepts with query sequences, got {len(names)} ({', '.join(names)}): "
                    "it subtracts the mean over concepts, which for a single concept is its own query, leaving all scores 0."
                )
            scores = scores - scores.mean(0, keepdims=True)  # each concept against the mean of all concepts
            control_scores = control_scores - control_scores.mean(0, keepdims=True)
        ranks, control_ranks = rank_of_first_relevant(scores, rel), rank_of_first_relevant(control_scores, rel)
        precision, control_precision = r_precision(scores, rel), r_precision(control_scores, rel)
        chance_rr = np.array([chance_reciprocal_rank(d_c, int(m)) for m in w])
        chance_p = w / d_c

        def avg(values: np.ndarray) -> float:
            return float(np.sum(values * w) / w.sum())  # one query per validated feature

        details = [
            {
                "concept": name, "features": np.flatnonzero(r).tolist(), "n_sequences": n,
                "rank": int(rank), "reciprocal_rank": 1.0 / float(rank), "r_precision": float(p),
                "control_rank": int(c_rank), "control_r_precision": float(c_p),
                "top_features": np.argsort(-s, kind="stable")[:5].tolist(),
            }
            for name, n, r, rank, p, c_rank, c_p, s in zip(names, n_texts, rel, ranks, precision, control_ranks, control_precision, scores)
        ]  # fmt: skip
        metrics = {"mrr": avg(1.0 / ranks), "mpp": avg(precision), "n_queries": float(w.sum()), "n_concepts": float(len(names))}
        controls = {"mrr": avg(1.0 / control_ranks), "mpp": avg(control_precision)}
        chance = {"mrr": avg(chance_rr), "mpp": avg(chance_p)}
        return self._result(ctx, used_texts, metrics=metrics, controls=controls, chance=chance, details=details)
