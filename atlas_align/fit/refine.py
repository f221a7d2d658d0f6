"""Iterative Procrustes refinement (MUSE-style; Conneau et al. 2018): re-fit on mutual nearest neighbours.

Streaming statistics cannot do this (the pairs change each round), so it works on pooled row
matrices held in memory: ``S`` (n_s, d_s) subject rows and ``C`` (n_c, d_c) atlas rows, which need
not be paired. Rows are prepared exactly as the ``procrustes`` method prepares them (row-normalised,
then centred on each side's mean normalised row when ``center``), so the result plugs into
``AtlasAlignment(config, result.T, result.subject_shift, ones)`` like a ``procrustes`` fit.

Each round: translate the subject rows (ŝ @ T), score them against the atlas rows (cosine, or
CSLS with ``csls_k``), keep the mutual nearest neighbours (i's best atlas row is j and j's best
subject row is i), and re-fit T = polar(Σ_pairs ŝ_i ĉ_jᵀ) on those pairs only. It stops when the
pair set stops changing, or after ``n_iter`` rounds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from atlas_align.errors import ConfigError, DegenerateDataError, FewSamplesWarning, ShapeMismatchError
from atlas_align.fit.csls import cosine_matrix, csls_scores
from atlas_align.fit.methods.procrustes import _polar_factor
from atlas_align.fit.statistics import WARN_SAMPLES_PER_DIMENSION, row_normalize


@dataclass
class RefineResult:
    """The refined T (d_s, d_c), the subject shift that goes with it, and how the refinement went."""

    T: torch.Tensor
    subject_shift: torch.Tensor
    pairs: torch.Tensor  # (m, 2) long: (subject row, atlas row) of the last round's mutual nearest neighbours
    iterations: int
    converged: bool  # the pair set stopped changing before n_iter ran out
    n_pairs: list[int] = field(default_factory=list)  # per round


def prepare_rows(x: torch.Tensor, center: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, shift): row-normalised float64 rows minus their mean (the ``procrustes`` preprocessing)."""
    x_hat = row_normalize(x.detach().to("cpu", torch.float64))
    shift = x_hat.mean(0) if center else torch.zeros(x_hat.shape[1], dtype=torch.float64)
    return x_hat - shift, shift


def mutual_nearest_neighbours(scores: torch.Tensor) -> torch.Tensor:
    """(m, 2) pairs (i, j) with j = argmax scores[i] and i = argmax scores[:, j] (first index on ties)."""
    best_key = scores.argmax(1)
    best_query = scores.argmax(0)
    rows = torch.arange(scores.shape[0])
    mutual = best_query[best_key] == rows
    return torch.stack([rows[mutual], best_key[mutual]], dim=1)


def refine_procrustes(
    S: torch.Tensor,
    C: torch.Tensor,
    T0: torch.Tensor,
    n_iter: int = 5,
    *,
    csls_k: int | None = None,
    center: bool = True,
) -> RefineResult:
    """Refine a Procrustes T0 (d_s, d_c) on mutual nearest neighbours of ``S`` translated and ``C``.

    ``csls_k``: score candidate pairs with CSLS over k neighbours instead of cosine (None: cosine).
    Refuses (DegenerateDataError) non-finite input and a round whose mutual-NN set is too small to
    determine T (≤ min(d_s, d_c) pairs, as the statistics-based fits do); warns below 2 × that.
    """
    if S.ndim != 2 or C.ndim != 2 or tuple(T0.shape) != (S.shape[1], C.shape[1]):
        raise ShapeMismatchError(
            f"refine_procrustes needs S (n_s, d_s), C (n_c, d_c) and T0 (d_s, d_c); got {tuple(S.shape)}, {tuple(C.shape)}, {tuple(T0.shape)}."
        )
    if isinstance(n_iter, bool) or int(n_iter) != n_iter or n_iter < 1:
        raise ConfigError(f"n_iter must be a positive integer, got {n_iter!r}.")
    for what, x in (("subject rows", S), ("atlas rows", C), ("T0", T0)):
        if not bool(torch.isfinite(x).all()):
            raise DegenerateDataError(f"refine_procrustes: the {what} hold NaN/inf values.")
    s_rows, shift = prepare_rows(S, center)
    c_rows, _ = prepare_rows(C, center)
    need = min(S.shape[1], C.shape[1]) + 1
    t = T0.detach().to("cpu", torch.float64)
    previous: set[tuple[int, int]] | None = None
    history: list[int] = []
    pairs = torch.empty(0, 2, dtype=torch.long)
    converged = False
    for _ in range(int(n_iter)):
        translated = s_rows @ t
        scores = csls_scores(translated, c_rows, csls_k) if csls_k is not None else cosine_matrix(translated, c_rows)
        pairs = mutual_nearest_neighbours(scores)
        history.append(len(pairs))
        current = set(map(tuple, pairs.tolist()))
        if current == previous:
            converged = True
            break
        if len(pairs) < need:
            raise DegenerateDataError(
                f"refine_procrustes: only {len(pairs)} mutual nearest neighbours among {S.shape[0]} subject and {C.shape[0]} "
                f"atlas rows; re-fitting a {S.shape[1]} × {C.shape[1]} T needs at least {need}, or part of T is arbitrary. "
                f"Use more rows, or keep the plain fit."
            )
        if len(pairs) < WARN_SAMPLES_PER_DIMENSION * (need - 1):
            warnings.warn(
                f"refine_procrustes re-fits on only {len(pairs)} mutual-NN pairs for min(d_s, d_c) = {need - 1}; the refined T will be noisy.",
                FewSamplesWarning,
                stacklevel=2,
            )
        cross = s_rows[pairs[:, 0]].T @ c_rows[pairs[:, 1]]
        if not bool(cross.any()):
            raise DegenerateDataError("refine_procrustes: the mutual-NN pairs' cross-moment is zero; no rotation is preferred.")
        t = _polar_factor(cross)
        previous = current
    return RefineResult(T=t, subject_shift=shift, pairs=pairs, iterations=len(history), converged=converged, n_pairs=history)
