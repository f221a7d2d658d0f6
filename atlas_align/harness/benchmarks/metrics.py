"""Vectorised ranking metrics, column-wise over features (no per-sample Python loops).

``auroc`` and ``average_precision`` match scikit-learn's ``roc_auc_score`` and
``average_precision_score`` exactly, ties included (tests check it): tied scores give chance
credit, never a perfect score. The retrieval ranks (``rank_of_first_relevant``, ``r_precision``)
break ties pessimistically: a relevant item ranks after every irrelevant item it ties with.
Everywhere a NaN score ranks last (below −inf), so a broken score can never look like a hit;
the benchmarks refuse non-finite scores outright (``require_finite``). All arithmetic is float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import rankdata

from atlas_align.errors import NonFiniteScoreError


def require_finite(values, what: str, fix: str = "") -> None:
    """Raise :class:`NonFiniteScoreError` naming how many values of ``what`` are NaN/inf."""
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        kinds = ", ".join(f"{int(k.sum())} {name}" for name, k in (("NaN", np.isnan(arr)), ("inf", np.isinf(arr))) if k.any())
        raise NonFiniteScoreError(f"{what} hold{'s' if not what.endswith('s') else ''} non-finite values ({kinds} of {arr.size}); {fix or 'no score computed from them would mean anything.'}")


def _nan_last(s: np.ndarray) -> np.ndarray:
    """NaN → −inf so it sorts below every real score (ties with a true −inf are rare and harmless)."""
    return np.where(np.isnan(s), -np.inf, s)


def _as_2d(scores, labels) -> tuple[np.ndarray, np.ndarray, bool]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must have the same shape")
    vector = s.ndim == 1
    return (s[:, None], y[:, None], True) if vector else (s, y, False)


def auroc(scores, labels) -> np.ndarray | float:
    """Area under the ROC curve per column (Mann–Whitney U with average ranks for ties).

    A column with no positives or no negatives gives NaN.
    """
    s, y, vector = _as_2d(scores, labels)
    ranks = rankdata(_nan_last(s), axis=0, method="average")
    n_pos = y.sum(0).astype(np.float64)
    n_neg = y.shape[0] - n_pos
    rank_sum = np.where(y, ranks, 0.0).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(result[0]) if vector else result


def average_precision(scores, labels) -> np.ndarray | float:
    """Average precision per column: Σ_k (R_k − R_{k−1}) P_k over distinct score thresholds.

    Tied scores form one threshold, as in scikit-learn: every positive in a tie group gets the
    precision at the group's end. A column with no positives gives NaN.
    """
    s, y, vector = _as_2d(scores, labels)
    s = _nan_last(s)
    n = s.shape[0]
    order = np.argsort(-s, axis=0, kind="stable")
    s_sorted = np.take_along_axis(s, order, axis=0)
    y_sorted = np.take_along_axis(y, order, axis=0)
    tp = np.cumsum(y_sorted, axis=0, dtype=np.float64)
    precision = tp / np.arange(1, n + 1, dtype=np.float64)[:, None]
    group_end = np.ones_like(y_sorted)
    group_end[:-1] = s_sorted[:-1] != s_sorted[1:]
    # For every position, the index of the last element of its tie group (a reversed running min).
    end_index = np.where(group_end, np.arange(n)[:, None], n)
    end_index = np.flip(np.minimum.accumulate(np.flip(end_index, 0), axis=0), 0)
    precision_at_end = np.take_along_axis(precision, end_index, axis=0)
    n_pos = y.sum(0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(y_sorted, precision_at_end, 0.0).sum(0) / n_pos
    return float(result[0]) if vector else result


def rank_of_first_relevant(scores, relevant) -> np.ndarray:
    """Per row of ``scores`` (Q, F): 1 + the number of irrelevant items ranked before the best relevant one.

    Ties count against the query (pessimistic), so constant scores never look like a hit. NaN
    ranks last: an irrelevant NaN never beats a relevant item, a relevant NaN comes after every
    irrelevant item (NaN or not), so an all-NaN row ranks its relevant item last.
    """
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    r = np.atleast_2d(np.asarray(relevant).astype(bool))
    nan = np.isnan(s)
    usable = r & ~nan
    best = np.where(usable, s, -np.inf).max(1, keepdims=True)
    above = (~r & ~nan & (s >= best)).sum(1)
    return np.where(usable.any(1), 1 + above, 1 + (~r).sum(1))


def r_precision(scores, relevant) -> np.ndarray:
    """Per row: precision among the top P items, P = number of relevant items (ties rank irrelevant first)."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    r = np.atleast_2d(np.asarray(relevant).astype(bool))
    p = r.sum(1)
    # Sort by score descending, NaN last; among equal scores irrelevant items come first (pessimistic).
    order = np.lexsort((r, -_nan_last(s)), axis=-1)
    r_sorted = np.take_along_axis(r, order, axis=1)
    hits_cum = np.cumsum(r_sorted, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits_cum[np.arange(len(p)), np.maximum(p, 1) - 1] / p


def chance_reciprocal_rank(n_items: int, n_relevant: int) -> float:
    """E[1 / rank of the first relevant item] under a uniformly random ranking (exact)."""
    n, m = n_items, n_relevant
    if m <= 0 or m > n:
        return float("nan")
    k = np.arange(1, n - m + 2, dtype=np.float64)
    # P(first relevant at k) = C(n-k, m-1) / C(n, m), in logs to avoid overflow.
    log_p = _log_comb(n - k, m - 1) - _log_comb(np.float64(n), m)
    return float(np.sum(np.exp(log_p) / k))


def _log_comb(n, k) -> np.ndarray:
    from scipy.special import gammaln

    n = np.asarray(n, dtype=np.float64)
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def nanmean(values) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan
