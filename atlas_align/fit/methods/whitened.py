"""Methods beyond Procrustes that whiten each side first: whitened Procrustes and regularised CCA.

Both work on the same centred, row-normalised rows as Procrustes (ŝ, ĉ; ``row_normalize = True``,
``subject_shift_`` = the mean ŝ) and need the covariances of both sides, Σ_s (d_s × d_s) and
Σ_c (d_c × d_c), besides the cross-covariance Σ_sc: statistics collected with ``with_gram=True``
(``needs_gram``). Each side is whitened with W = (Σ + r·I)^(-1/2), where the ridge r = ``eps`` ×
the mean eigenvalue of Σ (so ``eps`` is scale-free: 0.1 adds a tenth of the average variance to
every direction). A ridge is needed whenever N ≤ d or a column is constant (Σ is then singular);
``eps=0`` is allowed only when Σ is positive definite.

How the result fits the existing translate path. ``translate_to_atlas(x) = (x̂ − shift) @ T``; a
whitened method maps the centred subject row to whitened subject space (@ W_s), across
(@ Q, d_s × d_c) and back into atlas coordinates (@ W_c⁻¹ = (Σ_c + r_c I)^(1/2)), so

    T = W_s · Q · W_c⁻¹          (d_s × d_c; no change to AtlasAlignment, artifacts or benchmarks)

estimates the centred, normalised atlas row ĉ − mean ĉ. T is not semi-orthogonal, so
``concept_direction`` (T with normalised rows, times q) is a regression-style direction here,
as it is for ``linear_regression``.
"""

from __future__ import annotations

import torch

from atlas_align.errors import ConfigError, DegenerateDataError
from atlas_align.fit.methods.base import METHODS, AlignmentMethod
from atlas_align.fit.methods.procrustes import _polar_factor
from atlas_align.fit.statistics import AlignmentStatistics

# Eigenvalues of a covariance below this fraction of the largest count as zero (float64 round-off).
SINGULAR_TOLERANCE = 1e-12


def _check_ridge(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number ≥ 0 (a ridge relative to the mean eigenvalue), got {value!r}.")
    value = float(value)
    if not value >= 0.0 or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number ≥ 0 (a ridge relative to the mean eigenvalue), got {value}.")
    return value


def whitening(sigma: torch.Tensor, eps: float, *, side: str, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, W⁻¹) = ((Σ + r I)^(-1/2), (Σ + r I)^(1/2)) with r = eps × mean eigenvalue, from one symmetric eigendecomposition.

    Refuses (DegenerateDataError) a non-finite Σ, a zero Σ (nothing varies, or statistics merged
    without their Gram matrices) and, with eps = 0, a singular Σ.
    """
    if not bool(torch.isfinite(sigma).all()):
        raise DegenerateDataError(f"{method}: the {side} covariance holds NaN/inf values; the activations overflowed float64 or the statistics are corrupt.")
    d = sigma.shape[0]
    mean_eigenvalue = float(torch.trace(sigma)) / d
    if not mean_eigenvalue > 0.0:
        raise DegenerateDataError(
            f"{method}: the {side} covariance of the normalised rows is zero, so there is nothing to whiten. Either no "
            f"{side} dimension varies, or the statistics lost their Gram matrices (e.g. reduced by code that does not "
            f"carry gram_comoment_norm{'_s' if side == 'subject' else ''})."
        )
    try:
        eigenvalues, eigenvectors = torch.linalg.eigh((sigma + sigma.T) / 2)
    except torch.linalg.LinAlgError as exc:
        raise DegenerateDataError(f"{method}: the eigendecomposition of the {side} covariance did not converge ({exc}).") from None
    eigenvalues = eigenvalues.clamp_min(0.0)  # round-off can make a PSD matrix's smallest eigenvalues slightly negative
    shifted = eigenvalues + eps * mean_eigenvalue
    floor = SINGULAR_TOLERANCE * float(eigenvalues.max())
    if float(shifted.min()) <= floor:
        rank = int((eigenvalues > floor).sum())
        raise DegenerateDataError(
            f"{method}: the {side} covariance is singular (rank {rank} of {d}: fewer samples than dimensions, constant or "
            f"linearly dependent columns), so it cannot be whitened without a ridge. Use eps > 0 (e.g. 0.1)."
        )
    inv_sqrt = (eigenvectors * shifted.rsqrt()) @ eigenvectors.T
    sqrt = (eigenvectors * shifted.sqrt()) @ eigenvectors.T
    return inv_sqrt, sqrt


def _whitened_problem(stats: AlignmentStatistics, method: str, eps_s: float, eps_c: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W_s, W_s Σ_sc W_c, W_c⁻¹) for the centred normalised rows, after the checks every fit does."""
    if not stats.with_gram:
        raise ConfigError(f"{method} needs the covariances of both sides: statistics collected with with_gram=True.")
    stats.require_enough_samples(method)
    sigma_s, sigma_sc, sigma_c = stats.covariance_norm()
    if not bool(torch.isfinite(sigma_sc).all()):
        raise DegenerateDataError(f"{method}: the cross-covariance holds NaN/inf values; the activations overflowed float64 or the statistics are corrupt.")
    w_s, _ = whitening(sigma_s, eps_s, side="subject", method=method)
    w_c, w_c_inv = whitening(sigma_c, eps_c, side="atlas", method=method)
    return w_s, w_s @ sigma_sc @ w_c, w_c_inv


@METHODS.register("whitened_procrustes")
class WhitenedProcrustes(AlignmentMethod):
    """Orthogonal Procrustes between whitened spaces: Q = polar(W_s Σ_sc W_c), T = W_s Q W_c⁻¹.

    Plain Procrustes lets the few high-variance directions of pooled activations dominate the
    rotation; whitening gives every direction unit variance first. ``eps`` (≥ 0) is the ridge on
    both sides relative to each side's mean eigenvalue; ``unwhiten=False`` returns T = W_s Q,
    whose output is in whitened atlas coordinates (the same ranking per feature only when Σ_c is
    diagonal; kept for comparison).
    """

    name = "whitened_procrustes"
    needs_gram = True
    row_normalize = True

    def __init__(self, eps: float = 0.1, unwhiten: bool = True) -> None:
        self.eps = _check_ridge("eps", eps)
        self.unwhiten = bool(unwhiten)

    def fit(self, stats: AlignmentStatistics) -> WhitenedProcrustes:
        w_s, cross, w_c_inv = _whitened_problem(stats, self.name, self.eps, self.eps)
        if not bool(cross.any()):
            raise DegenerateDataError(f"{self.name}: the whitened cross-covariance is zero; no rotation is preferred.")
        t = w_s @ _polar_factor(cross)
        if self.unwhiten:
            t = t @ w_c_inv
        return self._set_state(t, stats.mean_norm_s.clone(), torch.ones(stats.d_s, dtype=torch.float64))


@METHODS.register("cca")
class CCA(AlignmentMethod):
    """Regularised CCA: the SVD (Σ_s + r_s I)^(-1/2) Σ_sc (Σ_c + r_c I)^(-1/2) = U diag(ρ) Vᵀ, k components.

    The subject's canonical variates (x̂ − shift) W_s U_k predict the atlas's as diag(ρ_k) times
    them; mapped back to atlas coordinates (W_c⁻¹ V_k):

        T = W_s U_k diag(ρ_k) V_kᵀ W_c⁻¹

    i.e. reduced-rank regression of ĉ on ŝ through the k most correlated pairs (with k = all and
    no ridge it is exactly least squares, Σ_s⁻¹ Σ_sc). ``reg_s`` / ``reg_c`` are ridges relative
    to each side's mean eigenvalue; ``n_components`` = k (0, the default: all min(d_s, d_c)). The fitted
    canonical correlations are in ``correlations_`` (descending).
    """

    name = "cca"
    needs_gram = True
    row_normalize = True

    def __init__(self, n_components: int = 0, reg_s: float = 0.1, reg_c: float = 0.1) -> None:
        n_components = 0 if n_components is None else n_components
        if isinstance(n_components, bool) or not isinstance(n_components, int | float) or int(n_components) != n_components or n_components < 0:
            raise ConfigError(f"n_components must be an integer ≥ 0 (0: all components), got {n_components!r}.")
        self.n_components = int(n_components)
        self.reg_s = _check_ridge("reg_s", reg_s)
        self.reg_c = _check_ridge("reg_c", reg_c)

    def fit(self, stats: AlignmentStatistics) -> CCA:
        limit = min(stats.d_s, stats.d_c)
        if self.n_components > limit:
            raise ConfigError(f"cca: n_components={self.n_components} exceeds min(d_s, d_c) = {limit}.")
        w_s, m, w_c_inv = _whitened_problem(stats, self.name, self.reg_s, self.reg_c)
        try:
            u, rho, vh = torch.linalg.svd(m, full_matrices=False)
        except torch.linalg.LinAlgError as exc:
            raise DegenerateDataError(f"cca: the SVD of the whitened cross-covariance did not converge ({exc}).") from None
        k = self.n_components or limit
        if not float(rho[0]) > 0.0:
            raise DegenerateDataError("cca: every canonical correlation is 0; no subject direction co-varies with any atlas direction.")
        self.correlations_ = rho[:k].clone()
        t = (w_s @ u[:, :k]) * rho[:k] @ (vh[:k] @ w_c_inv)
        return self._set_state(t, stats.mean_norm_s.clone(), torch.ones(stats.d_s, dtype=torch.float64))
