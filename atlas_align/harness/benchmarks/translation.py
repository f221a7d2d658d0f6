"""``translation@2``: does the translated subject activation predict which atlas features fire?

Protocol (paper Table 3, our reading): on held-out texts, subject pooled activations are
translated into atlas space (``translate_to_atlas``) and compared with the atlas's true pooled
SAE feature activations. Per atlas feature, positives are the texts where the feature fires
(pooled activation > ``active_threshold``, default 0); the translated value is the score. We
report AUROC and average precision (scikit-learn's definitions, ties included), averaged over
a seeded sample of ``n_features`` features among those with ≥ ``min_positives`` positives and
negatives, and separately over the validated (labelled) features that qualify.
References: chance (AUROC 0.5, AP = the feature's positive rate) and a shuffled-T control
(T's columns permuted with the seed, so each feature is scored by another feature's column).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from atlas_align.errors import ConfigError
from atlas_align.harness.benchmarks.base import Benchmark, BenchmarkContext, BenchmarkResult, register_benchmark
from atlas_align.harness.benchmarks.metrics import auroc, average_precision, nanmean, require_finite


def shuffled_columns(d_c: int, seed: int) -> torch.Tensor:
    """The seeded column permutation of T used by every shuffled-T control."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(d_c, generator=generator)


class TranslationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_features: int = Field(100, gt=0, description="seeded sample of eligible atlas features")
    min_positives: int = Field(5, ge=1, description="k: a feature needs ≥ k positive and ≥ k negative texts")
    active_threshold: float = 0.0


@register_benchmark
class TranslationBenchmark(Benchmark):
    __doc__ = __doc__
    name = "translation"
    version = 2
    Config = TranslationConfig

    def run(self, ctx: BenchmarkContext) -> BenchmarkResult:
        cfg = self.config
        texts = ctx.heldout_texts()
        if len(texts) < 2 * cfg.min_positives:
            raise ConfigError(f"translation needs at least {2 * cfg.min_positives} held-out texts; got {len(texts)}.")
        require_finite(ctx.alignment.T, "The alignment's T", "re-fit it; scores from it would mean nothing.")
        translated = ctx.alignment.translate_to_atlas(ctx.subject_pooled(texts)).double().numpy()
        require_finite(translated, "The translated held-out scores", "the subject activations overflowed (try --dtype float32).")
        active = (ctx.atlas_pooled(texts) > cfg.active_threshold).numpy()
        n_pos = active.sum(0)
        eligible = np.flatnonzero((n_pos >= cfg.min_positives) & (len(texts) - n_pos >= cfg.min_positives))
        if eligible.size == 0:
            raise ConfigError(
                f"No atlas feature fires on ≥ {cfg.min_positives} and stays silent on ≥ {cfg.min_positives} of the "
                f"{len(texts)} held-out texts; use more held-out samples or a lower min_positives."
            )
        rng = np.random.default_rng(ctx.seed)
        sampled = np.sort(rng.choice(eligible, size=min(cfg.n_features, eligible.size), replace=False))
        labels = ctx.labels
        validated = np.array(sorted(set(eligible.tolist()) & {x.feature for x in labels.validated()}), dtype=np.int64)
        features = np.union1d(sampled, validated)
        perm = shuffled_columns(translated.shape[1], ctx.seed).numpy()

        y = active[:, features]
        fitted_auc, fitted_ap = auroc(translated[:, features], y), average_precision(translated[:, features], y)
        control_scores = translated[:, perm[features]]
        control_auc, control_ap = auroc(control_scores, y), average_precision(control_scores, y)
        positive_rate = y.mean(0)
        details = []
        for i, f in enumerate(features.tolist()):
            label = labels.get(f)
            details.append({
                "feature": f, "label": label.label if label else None, "validated": bool(label and label.validated),
                "sampled": bool(f in set(sampled.tolist())), "n_positive": int(n_pos[f]),
                "auroc": float(fitted_auc[i]), "ap": float(fitted_ap[i]),
                "control_auroc": float(control_auc[i]), "control_ap": float(control_ap[i]), "chance_ap": float(positive_rate[i]),
            })  # fmt: skip

        metrics: dict[str, float] = {}
        controls: dict[str, float] = {}
        chance: dict[str, float] = {}
        for suffix, subset in (("", sampled), ("_validated", validated)):
            if subset.size == 0:
                continue
            idx = np.searchsorted(features, subset)
            metrics[f"auroc{suffix}"] = nanmean(fitted_auc[idx])
            metrics[f"ap{suffix}"] = nanmean(fitted_ap[idx])
            controls[f"auroc{suffix}"] = nanmean(control_auc[idx])
            controls[f"ap{suffix}"] = nanmean(control_ap[idx])
            chance[f"auroc{suffix}"] = 0.5
            chance[f"ap{suffix}"] = nanmean(positive_rate[idx])
        metrics["n_features"] = float(sampled.size)
        metrics["n_validated"] = float(validated.size)
        return self._result(ctx, texts, metrics=metrics, controls=controls, chance=chance, details=details)
