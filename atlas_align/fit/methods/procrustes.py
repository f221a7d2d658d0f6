"""Orthogonal Procrustes on row-normalised activations (the paper's method)."""

from __future__ import annotations

import torch

from atlas_align.errors import DegenerateDataError
from atlas_align.fit.methods.base import METHODS, AlignmentMethod
from atlas_align.fit.statistics import AlignmentStatistics


@METHODS.register("procrustes")
class Procrustes(AlignmentMethod):
    """min ‖Ŝ − Ĉ Tᵀ‖_F s.t. T Tᵀ = I, solved by the SVD of Ŝᵀ Ĉ = U Σ Vᵀ → T = U Vᵀ (thin).

    ``center=True`` (default) subtracts the mean normalised row of each side first. The paper
    only normalises rows, but max-pooled activations share one dominant direction and the
    uncentred fit degenerates to mapping it: on SmolLM2 layer 20 → MiniLM layer 3 (2,000 texts)
    held-out top-1 text matching was 0.0025 (= chance) uncentred vs 0.475 centred.
    ``center=False`` reproduces the paper's exact formulation.
    """

    name = "procrustes"
    row_normalize = True

    def __init__(self, center: bool = True) -> None:
        self.center = center

    def fit(self, stats: AlignmentStatistics) -> Procrustes:
        stats.require_enough_samples(self.name)
        if self.center:
            cross, shift = stats.centered_cross_norm(), stats.mean_norm_s.clone()
        else:
            cross, shift = stats.cross_norm, torch.zeros(stats.d_s, dtype=torch.float64)
        if not bool(cross.any()):
            raise DegenerateDataError(
                f"procrustes: the {'centred ' if self.center else ''}cross-moment of the normalised activations is zero "
                f"(every {'row is the same' if self.center else 'row pair is orthogonal'}), so no rotation is preferred."
            )
        return self._set_state(_polar_factor(cross), shift, torch.ones(stats.d_s, dtype=torch.float64))


@METHODS.register("random_rotation")
class RandomRotation(AlignmentMethod):
    """Chance-level control: a seeded random semi-orthogonal T that ignores the data."""

    name = "random_rotation"
    row_normalize = True

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, stats: AlignmentStatistics) -> RandomRotation:
        gen = torch.Generator().manual_seed(self.seed)
        g = torch.randn(stats.d_s, stats.d_c, generator=gen, dtype=torch.float64)
        return self._set_state(_polar_factor(g), torch.zeros(stats.d_s, dtype=torch.float64), torch.ones(stats.d_s, dtype=torch.float64))


def _polar_factor(matrix: torch.Tensor) -> torch.Tensor:
    """U Vᵀ of the thin SVD: the semi-orthogonal matrix nearest to ``matrix``; never a bare torch error."""
    if not bool(torch.isfinite(matrix).all()):
        raise DegenerateDataError("procrustes: the cross-moment holds NaN/inf values; the activations overflowed float64.")
    try:
        u, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    except torch.linalg.LinAlgError as exc:
        raise DegenerateDataError(f"procrustes: the SVD of the cross-moment did not converge ({exc}).") from None
    return u @ vh
