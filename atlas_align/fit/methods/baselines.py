"""The paper's baselines: covariance, correlation and (ridge) linear regression."""

from __future__ import annotations

import torch

from atlas_align.errors import ConfigError
from atlas_align.fit.methods.base import METHODS, AlignmentMethod
from atlas_align.fit.statistics import AlignmentStatistics


@METHODS.register("covariance")
class Covariance(AlignmentMethod):
    """T = cross-covariance of raw activations (no optimisation)."""

    name = "covariance"
    row_normalize = False

    def fit(self, stats: AlignmentStatistics) -> Covariance:
        return self._set_state(stats.covariance(), stats.mean_s(), torch.ones(stats.d_s, dtype=torch.float64))


@METHODS.register("correlation")
class Correlation(AlignmentMethod):
    """T = cross-correlation (covariance divided by both standard deviations)."""

    name = "correlation"
    row_normalize = False

    def fit(self, stats: AlignmentStatistics) -> Correlation:
        std_s = stats.std_s().clamp_min(1e-12)
        std_c = stats.std_c().clamp_min(1e-12)
        corr = stats.covariance() / torch.outer(std_s, std_c)
        return self._set_state(corr, stats.mean_s(), std_s)


@METHODS.register("linear_regression")
class LinearRegression(AlignmentMethod):
    """Ridge regression from normalised atlas rows to normalised subject rows: Ŝ ≈ Ĉ Tᵀ.

    Tᵀ = (ĈᵀĈ/N + alpha·I)⁻¹ ĈᵀŜ/N; needs the d_c × d_c Gram matrix in the statistics.
    """

    name = "linear_regression"
    needs_gram = True
    row_normalize = True

    def __init__(self, alpha: float = 1e-3) -> None:
        if alpha < 0:
            raise ConfigError(f"alpha must be ≥ 0, got {alpha}.")
        self.alpha = alpha

    def fit(self, stats: AlignmentStatistics) -> LinearRegression:
        if stats.gram_norm is None:
            raise ConfigError("linear_regression needs statistics collected with with_gram=True.")
        n = max(stats.n, 1)
        gram = stats.gram_norm / n + self.alpha * torch.eye(stats.d_c, dtype=torch.float64)
        t_transposed = torch.linalg.solve(gram, stats.cross_norm.T / n)
        return self._set_state(t_transposed.T.contiguous(), torch.zeros(stats.d_s, dtype=torch.float64), torch.ones(stats.d_s, dtype=torch.float64))
