"""Streaming statistics against an exact reference (issue 11, defect 3).

The reference is computed in exact rational arithmetic (``fractions.Fraction``) from the same
float64 inputs, so any difference is the streaming code's own round-off. Data have mean/std up to
1e8, where raw sums (Σxy − ΣxΣy/n) lose every digit.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from atlas_align.errors import ConstantColumnWarning, IntegrityError
from atlas_align.fit.statistics import AlignmentStatistics

N, D_S, D_C = 700, 3, 4
RATIOS = (1.0, 1e4, 1e6, 1e8)


def correlated_data(ratio: float, n: int = N, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Subject and atlas rows with std ≈ 1, strong cross-correlations, and means ≈ ratio (different per column)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 5))
    s = z[:, :D_S] @ rng.standard_normal((D_S, D_S)) * 0.6 + rng.standard_normal((n, D_S)) * 0.3
    c = z[:, 1 : 1 + D_C] + 0.5 * z[:, :D_C] + rng.standard_normal((n, D_C)) * 0.3
    s_mean = ratio * (1 + np.arange(D_S) / 7) * np.array([1, -1, 1])[:D_S]
    c_mean = -ratio * (1 + np.arange(D_C) / 5)
    return torch.from_numpy(s + s_mean), torch.from_numpy(c + c_mean)


def exact_reference(s: torch.Tensor, c: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Covariance, correlation and subject variance, in exact rationals, rounded once to float64."""
    S = [[Fraction(float(v)) for v in row] for row in s.tolist()]
    C = [[Fraction(float(v)) for v in row] for row in c.tolist()]
    n = len(S)
    mean_s = [sum(r[i] for r in S) / n for i in range(D_S)]
    mean_c = [sum(r[j] for r in C) / n for j in range(D_C)]
    dev_s = [[r[i] - mean_s[i] for i in range(D_S)] for r in S]
    dev_c = [[r[j] - mean_c[j] for j in range(D_C)] for r in C]
    cov = [[sum(a[i] * b[j] for a, b in zip(dev_s, dev_c)) / (n - 1) for j in range(D_C)] for i in range(D_S)]
    var_s = [sum(a[i] * a[i] for a in dev_s) / (n - 1) for i in range(D_S)]
    var_c = [sum(b[j] * b[j] for b in dev_c) / (n - 1) for j in range(D_C)]
    corr = [[float(cov[i][j]) / math.sqrt(float(var_s[i]) * float(var_c[j])) for j in range(D_C)] for i in range(D_S)]
    return np.array(cov, dtype=float), np.array(corr), np.array(var_s, dtype=float)


def streamed(s: torch.Tensor, c: torch.Tensor, batch: int = 64, shards: int = 1) -> AlignmentStatistics:
    parts = [AlignmentStatistics(D_S, D_C, with_gram=True) for _ in range(shards)]
    for k, start in enumerate(range(0, s.shape[0], batch)):
        parts[k % shards].update(s[start : start + batch], c[start : start + batch])
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def relative_error(got: torch.Tensor, want: np.ndarray) -> float:
    return float(np.abs(got.numpy() - want).max() / np.abs(want).max())


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("batch, shards", [(64, 1), (1, 1), (97, 3)])
def test_covariance_and_correlation_match_exact_reference(ratio, batch, shards):
    s, c = correlated_data(ratio)
    cov, corr, var_s = exact_reference(s, c)
    stats = streamed(s, c, batch=batch, shards=shards)
    assert stats.n == N
    # Issue 11 asks for 1e-9; the co-moments reach float64 round-off (≤ 1e-15 measured), so hold them to 1e-12.
    assert relative_error(stats.covariance(), cov) <= 1e-12
    assert relative_error(stats.std_s() ** 2, var_s) <= 1e-12
    assert np.abs(stats.correlation().numpy() - corr).max() <= 1e-12
    torch.testing.assert_close(stats.mean_s(), s.mean(0), rtol=1e-15, atol=0)


def test_raw_sums_would_have_failed_at_large_means():
    """The old formula on the same data: the reference test above is not trivially easy."""
    s, c = correlated_data(1e8)
    cov, _, _ = exact_reference(s, c)
    raw = (s.T @ c - torch.outer(s.sum(0), c.sum(0)) / N) / (N - 1)
    assert relative_error(raw, cov) > 1e-3


def test_constant_column_correlation_is_zero_and_named():
    s, c = correlated_data(1e6)
    c[:, 1] = -2.5e6  # constant at a large value: its spread is round-off, not signal
    stats = streamed(s, c)
    assert stats.constant_columns() == ([], [1])
    with pytest.warns(ConstantColumnWarning, match=r"atlas 1 column: 1\)"):
        corr = stats.correlation()
    assert torch.all(corr[:, 1] == 0) and torch.isfinite(corr).all()
    assert torch.all(stats.covariance()[:, 1].abs() < 1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantColumnWarning)
        streamed(*correlated_data(1e6)).correlation()  # no constant column, no warning


def test_merge_order_and_empty_parts_do_not_matter():
    s, c = correlated_data(1e8)
    a, b = streamed(s[:300], c[:300]), streamed(s[300:], c[300:])
    empty = AlignmentStatistics(D_S, D_C, with_gram=True)
    ab, ba = a + b, empty + b + empty + a
    for name in ("covariance", "std_s", "std_c", "mean_s", "centered_cross_norm"):
        torch.testing.assert_close(getattr(ab, name)(), getattr(ba, name)(), rtol=1e-12, atol=1e-12, msg=name)
    torch.testing.assert_close(ab.gram_norm, ba.gram_norm, rtol=1e-12, atol=1e-12)
    assert a.n == 300 and b.n == 400  # + makes a new object


def test_old_raw_sum_checkpoint_is_refused_clearly(tmp_path):
    old = tmp_path / "stats.safetensors"
    save_file({"sum_s": torch.zeros(3)}, str(old), metadata={"kind": "atlas-align/statistics", "n": "5", "d_s": "3", "d_c": "2", "with_gram": "0"})
    with pytest.raises(IntegrityError, match="format version 1; this atlas-align reads version 2 .* without --resume"):
        AlignmentStatistics.load(old)
