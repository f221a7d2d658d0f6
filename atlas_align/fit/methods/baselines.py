"""The paper's baselines: covariance, correlation and (ridge) linear regression."""

from __future__ import annotations

import torch

from atlas_align.errors import ConfigError, DegenerateDataError
from atlas_align.fit.methods.base import METHODS, AlignmentMethod
from atlas_align.fit.statistics import AlignmentStatistics


@METHODS.register("covariance")
class Covariance(AlignmentMethod):
    """T = cross-covariance of raw activations (no optimisation)."""

    name = "covariance"
    row_normalize = False

    def fit(self, stats: AlignmentStatistics) -> Covariance:
        stats.require_enough_samples(self.name)
        return self._set_state(stats.covariance(), stats.mean_s(), torch.ones(stats.d_s, dtype=torch.float64))


@METHODS.register("correlation")
class Correlation(AlignmentMethod):
    """T = cross-correlation (covariance divided by both standard deviations).

    A dimension that never varies has no correlation: its row/column of T is 0 (with a warning
    naming it), and its subject scale is 1 (its standardised value is 0 either way).
    """

    name = "correlation"
    row_normalize = False

    def fit(self, stats: AlignmentStatistics) -> Correlation:
        stats.require_enough_samples(self.name)
        corr = stats.correlation()
        std_s = stats.std_s()
        std_s[stats.constant_columns()[0]] = 1.0
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
        stats.require_enough_samples(self.name)
        n = stats.n
        gram = stats.gram_norm / n + self.alpha * torch.eye(stats.d_c, dtype=torch.float64)
        try:
            t_transposed = torch.linalg.solve(gram, stats.cross_norm.T / n)
        except torch.linalg.LinAlgError as exc:
            raise DegenerateDataError(
                f"linear_regression: the atlas Gram matrix is singular (alpha={self.alpha}); some atlas dimensions are "
                f"linearly dependent. Use alpha > 0 (e.g. --method-param alpha=1e-3). ({exc})"
            ) from None
        return self._set_state(t_transposed.T.contiguous(), torch.zeros(stats.d_s, dtype=torch.float64), torch.ones(stats.d_s, dtype=torch.float64))
