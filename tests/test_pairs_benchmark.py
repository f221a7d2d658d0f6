"""``pairs@1``: held-out text matching (top-1 / MRR) against chance and the shuffled-T control."""

from __future__ import annotations

import pytest
import torch

from atlas_align.errors import ConfigError
from atlas_align.harness.benchmarks import BenchmarkContext, get_benchmark
from atlas_align.harness.benchmarks.metrics import NonFiniteScoreError
from tests.test_benchmarks import _ctx, planted_problem


def test_a_planted_alignment_matches_its_texts_far_above_control_and_chance():
    result = get_benchmark("pairs").run(_ctx(planted_problem(seed=0)))
    assert result.benchmark == "pairs@1"
    n = result.metrics["n_texts"]
    assert result.chance["top1"] == pytest.approx(1 / n)
    assert result.chance["mrr"] == pytest.approx(sum(1 / k for k in range(1, int(n) + 1)) / n)
    assert result.metrics["mrr"] > 0.5 > result.controls["mrr"] + 0.2
    assert result.metrics["top1"] > 5 * result.chance["top1"]


def test_all_zero_T_is_chance_or_worse_never_perfect():
    problem = planted_problem(seed=0)
    problem.alignment.T = torch.zeros_like(problem.alignment.T)
    result = get_benchmark("pairs").run(_ctx(problem))
    assert result.metrics["top1"] == 0.0  # every text ties with every other: all ties count against it
    assert result.metrics["mrr"] <= result.chance["mrr"]


def test_duplicate_held_out_texts_are_matched_once_and_two_are_needed():
    problem = planted_problem(seed=0)
    one = [problem.samples[0]] * 3
    with pytest.raises(ConfigError, match="at least 2 distinct held-out texts; got 1"):
        get_benchmark("pairs").run(BenchmarkContext(alignment=problem.alignment, subject=problem.subject, atlas=problem.atlas, heldout=one))


def test_max_texts_caps_the_candidate_set_and_is_validated():
    result = get_benchmark("pairs", max_texts=10).run(_ctx(planted_problem(seed=0)))
    assert result.metrics["n_texts"] == 10 and result.provenance.n_heldout == 10
    with pytest.raises(ConfigError, match="Invalid settings for benchmark pairs@1"):
        get_benchmark("pairs", max_texts=1)


def test_nan_T_is_refused():
    problem = planted_problem(seed=0)
    problem.alignment.T[0, 0] = float("nan")
    with pytest.raises(NonFiniteScoreError):
        get_benchmark("pairs").run(_ctx(problem))
