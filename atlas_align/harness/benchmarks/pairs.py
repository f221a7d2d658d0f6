"""``pairs@1``: does a translated held-out text land on its own atlas row, among all held-out texts?

Protocol (the check printed after every fit, as a benchmark): on ``n`` held-out texts, each
subject pooled activation is translated into atlas space (``translate_to_atlas``), L2-normalised,
and scored by cosine against every held-out text's atlas row (rows L2-normalised, then centred on
their mean and normalised again, so what all texts share does not decide the match). The rank of
the text's own atlas row among the ``n`` (ties and NaN counted against it) gives **top-1** and
**MRR**. References: chance (top-1 = 1/n, MRR = Hₙ/n) and the shuffled-T control (T's columns
permuted with the seed).

Unlike ``retrieval`` and ``steering`` it needs no labels, so it applies to every atlas, a raw
model layer (``model:NAME@LAYER``) included.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from atlas_align.alignment.pipeline import match_ranks
from atlas_align.errors import ConfigError
from atlas_align.fit.statistics import row_normalize
from atlas_align.harness.benchmarks.base import Benchmark, BenchmarkContext, BenchmarkResult, register_benchmark
from atlas_align.harness.benchmarks.metrics import require_finite
from atlas_align.harness.benchmarks.translation import shuffled_columns


class PairsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_texts: int = Field(1000, ge=2, description="match among at most this many held-out texts (the first ones)")


def _ranks(translated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    translated = translated.double()
    require_finite(translated, "The translated held-out scores", "the subject activations overflowed (try --dtype float32).")
    return match_ranks(row_normalize(translated) @ target.T).double()


@register_benchmark
class PairsBenchmark(Benchmark):
    __doc__ = __doc__
    name = "pairs"
    version = 1
    Config = PairsConfig

    def run(self, ctx: BenchmarkContext) -> BenchmarkResult:
        texts = list(dict.fromkeys(ctx.heldout_texts()))[: self.config.max_texts]
        n = len(texts)
        if n < 2:
            raise ConfigError(f"pairs needs at least 2 distinct held-out texts; got {n}.")
        require_finite(ctx.alignment.T, "The alignment's T", "re-fit it; scores from it would mean nothing.")
        target = row_normalize(ctx.atlas_pooled(texts).double())
        target = row_normalize(target - target.mean(0))
        subject = ctx.subject_pooled(texts)
        ranks = _ranks(ctx.alignment.translate_to_atlas(subject), target)
        perm = shuffled_columns(ctx.alignment.config.d_c, ctx.seed)
        control = _ranks(ctx.alignment.preprocess_subject(subject) @ ctx.alignment.T[:, perm], target)
        harmonic = float((1.0 / torch.arange(1, n + 1, dtype=torch.float64)).sum())
        metrics = {"top1": float((ranks == 1).double().mean()), "mrr": float((1.0 / ranks).mean()), "n_texts": float(n)}
        controls = {"top1": float((control == 1).double().mean()), "mrr": float((1.0 / control).mean())}
        chance = {"top1": 1.0 / n, "mrr": harmonic / n}
        details = [{"text": t[:80], "rank": int(r)} for t, r in zip(texts[:50], ranks[:50].tolist())]
        return self._result(ctx, texts, metrics=metrics, controls=controls, chance=chance, details=details)
