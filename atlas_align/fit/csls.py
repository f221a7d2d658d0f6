"""Cross-domain similarity local scaling (CSLS; Conneau et al. 2018, "Word translation without parallel data").

Nearest-neighbour retrieval across two spaces suffers from hubs: a few keys are near every query.
CSLS discounts each side's local density::

    CSLS(x, y) = 2 cos(x, y) − r_K(x) − r_Q(y)

where r_K(x) is the mean cosine of query x to its k nearest keys and r_Q(y) the mean cosine of
key y to its k nearest queries. Pure functions of two row matrices (any float dtype; computed
in float64 on the inputs' device), no model state.
"""

from __future__ import annotations

import torch

from atlas_align.errors import ConfigError, DegenerateDataError, ShapeMismatchError
from atlas_align.fit.statistics import row_normalize


def _check(queries: torch.Tensor, keys: torch.Tensor, k: int) -> None:
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ShapeMismatchError(f"CSLS needs two 2-D row matrices of one width; got {tuple(queries.shape)} and {tuple(keys.shape)}.")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ConfigError(f"CSLS needs k ≥ 1 nearest neighbours, got {k!r}.")
    if queries.shape[0] == 0 or keys.shape[0] == 0:
        raise ShapeMismatchError(f"CSLS needs at least one query and one key; got {queries.shape[0]} and {keys.shape[0]}.")
    for what, x in (("queries", queries), ("keys", keys)):
        if not bool(torch.isfinite(x).all()):
            raise DegenerateDataError(f"CSLS: the {what} hold NaN/inf values.")


def cosine_matrix(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """(n_q, n_k) cosines in float64; a zero row has cosine 0 with everything."""
    return row_normalize(queries.double()) @ row_normalize(keys.double()).T


def mean_topk(cosines: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the mean of its ``k`` largest entries (all of them when a row has fewer than ``k``)."""
    return cosines.topk(min(int(k), cosines.shape[1]), dim=1).values.mean(1)


def neighbourhood_radius(points: torch.Tensor, others: torch.Tensor, k: int = 10) -> torch.Tensor:
    """r(x) for each row x of ``points``: its mean cosine to its ``k`` nearest rows of ``others`` (k capped at len(others))."""
    _check(points, others, k)
    return mean_topk(cosine_matrix(points, others), k)


def csls_scores(queries: torch.Tensor, keys: torch.Tensor, k: int = 10) -> torch.Tensor:
    """CSLS(q_i, y_j) = 2 cos(q_i, y_j) − r_K(q_i) − r_Q(y_j): an (n_q, n_k) float64 score matrix.

    ``queries`` (n_q, d) and ``keys`` (n_k, d) live in one space (e.g. translated subject rows and
    atlas rows, or translated rows and atlas feature directions). ``k`` nearest neighbours define
    both radii; it is capped at the other side's size (k ≥ n means "mean over all"). Higher is
    more similar; ranks per query differ from cosine ranks only through the key term r_Q(y_j),
    ranks per key only through r_K(q_i).
    """
    _check(queries, keys, k)
    cos = cosine_matrix(queries, keys)
    r_keys_of_query = mean_topk(cos, k)  # r_K(q): query's density among keys
    r_queries_of_key = mean_topk(cos.T, k)  # r_Q(y): key's density among queries
    return 2.0 * cos - r_keys_of_query[:, None] - r_queries_of_key[None, :]
