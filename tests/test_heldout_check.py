"""The held-out check `align` and `demo` print: ties and NaN rank against the true match."""

import torch

from atlas_align.alignment.pipeline import derangement, match_ranks


def test_a_broken_translation_is_at_chance_not_perfect():
    n = 8
    assert match_ranks(torch.zeros(n, n)).tolist() == [n] * n  # all-zero T: every score ties
    assert match_ranks(torch.full((n, n), float("nan"))).tolist() == [n] * n  # all-NaN T
    ranks = match_ranks(torch.eye(n)).double()
    assert (1 / ranks).mean() == 1.0  # a perfect translation still scores 1
    sims = torch.eye(n)
    sims[0, 3] = 1.0  # one tie with another text: the true match ranks second
    sims[1, 1] = float("inf")
    sims[2, 2] = float("nan")
    assert match_ranks(sims)[:3].tolist() == [2, n, n]


def test_derangement_is_a_true_shuffle():
    for n in (2, 3, 10, 257):
        perm = derangement(n, seed=n)
        assert sorted(perm.tolist()) == list(range(n)) and not (perm == torch.arange(n)).any()
    assert derangement(50, seed=1).tolist() == derangement(50, seed=1).tolist()
