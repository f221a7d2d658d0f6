import warnings

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes

from atlas_align.errors import AtlasAlignError, NotFittedError, ShapeMismatchError, UnknownNameError
from atlas_align.fit.methods import METHODS, get_method
from atlas_align.fit.statistics import (
    AlignmentStatistics,
    ConstantColumnWarning,
    DegenerateDataError,
    FewSamplesWarning,
    NonFiniteActivationError,
    row_normalize,
)

DATA_METHODS = [name for name in METHODS.names() if name != "random_rotation"]


def planted(n=4000, d_c=48, d_s=32, noise=0.05, seed=0):
    """Atlas activations A_c, a random semi-orthogonal R (d_s×d_c), A_s = A_c Rᵀ + noise."""
    g = torch.Generator().manual_seed(seed)
    a_c = torch.randn(n, d_c, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(d_c, d_c, generator=g, dtype=torch.float64))
    r = q[:d_s]  # rows orthonormal: R Rᵀ = I
    a_s = a_c @ r.T + noise * torch.randn(n, d_s, generator=g, dtype=torch.float64)
    return a_c, a_s, r


def stats_of(a_s, a_c, with_gram=False, shards=1):
    parts = [AlignmentStatistics(a_s.shape[1], a_c.shape[1], with_gram) for _ in range(shards)]
    for i, (s, c) in enumerate(zip(torch.chunk(a_s, 7 * shards), torch.chunk(a_c, 7 * shards))):
        parts[i % shards].update(s, c)
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def test_procrustes_matches_scipy_on_materialised_data():
    a_c, a_s, _ = planted(d_c=24, d_s=24)
    t = get_method("procrustes", center=False).fit(stats_of(a_s, a_c)).T_
    r_scipy, _ = orthogonal_procrustes(row_normalize(a_c).numpy(), row_normalize(a_s).numpy())
    assert np.allclose(t.numpy(), r_scipy.T, atol=1e-5)


def test_semi_orthogonal_recovery_error_far_below_noise():
    a_c, a_s, r = planted(noise=0.05)
    t = get_method("procrustes").fit(stats_of(a_s, a_c)).T_
    assert t.shape == (32, 48)
    assert torch.allclose(t @ t.T, torch.eye(32, dtype=torch.float64), atol=1e-10)
    # Row normalisation of a projection biases the semi-orthogonal fit a little (6 % here, noise or
    # not); the error is still far from a random semi-orthogonal map's (≈ 1.4).
    assert float((t - r).norm() / r.norm()) < 0.1
    a_c, a_s, r = planted(d_c=32, d_s=32, noise=0.05)
    t = get_method("procrustes").fit(stats_of(a_s, a_c)).T_
    assert (t - r).abs().max() < 0.02  # square case: error ≪ the noise std of 0.05


def test_streaming_shards_equal_one_shot():
    a_c, a_s, _ = planted(n=1000)
    one = stats_of(a_s, a_c, with_gram=True)
    sharded = stats_of(a_s, a_c, with_gram=True, shards=3)
    assert one.n == sharded.n == 1000
    derived = ("mean_s", "mean_c", "std_s", "std_c", "covariance", "centered_cross_norm")
    for name in derived:
        torch.testing.assert_close(getattr(sharded, name)(), getattr(one, name)(), rtol=0, atol=1e-12, msg=name)
    for name in ("cross_norm", "gram_norm", "sum_norm_s", "sum_norm_c"):
        torch.testing.assert_close(getattr(sharded, name), getattr(one, name), rtol=0, atol=1e-10, msg=name)
    s_hat, c_hat = row_normalize(a_s), row_normalize(a_c)
    torch.testing.assert_close(one.cross_norm, s_hat.T @ c_hat, rtol=0, atol=1e-10)
    torch.testing.assert_close(one.gram_norm, c_hat.T @ c_hat, rtol=0, atol=1e-10)
    centred = (s_hat - s_hat.mean(0)).T @ (c_hat - c_hat.mean(0))
    torch.testing.assert_close(one.centered_cross_norm(), centred, rtol=0, atol=1e-12)
    reference = np.cov(a_s.T.numpy(), a_c.T.numpy())
    torch.testing.assert_close(one.covariance(), torch.from_numpy(reference[:32, 32:]), rtol=0, atol=1e-12)
    torch.testing.assert_close(one.std_s(), torch.from_numpy(np.sqrt(np.diag(reference)[:32])), rtol=0, atol=1e-12)


def test_statistics_save_load_roundtrip(tmp_path):
    a_c, a_s, _ = planted(n=200)
    stats = stats_of(a_s, a_c, with_gram=True)
    stats.save(tmp_path / "s.safetensors")
    back = AlignmentStatistics.load(tmp_path / "s.safetensors")
    assert back.n == 200 and all(torch.equal(v, back.tensors()[k]) for k, v in stats.tensors().items())
    assert set(back.tensors()) == set(stats.tensors()) and "gram_comoment_norm" in back.tensors()


def test_statistics_reject_mismatched_batches():
    stats = AlignmentStatistics(4, 6)
    with pytest.raises(ShapeMismatchError, match="same number of rows"):
        stats.update(torch.randn(3, 4), torch.randn(2, 6))
    with pytest.raises(ShapeMismatchError, match="do not match"):
        stats.update(torch.randn(3, 5), torch.randn(3, 6))


def test_methods_rank_as_expected():
    a_c, a_s, r = planted(n=3000, d_c=32, d_s=32, noise=0.05)
    fitted = {name: get_method(name).fit(stats_of(a_s, a_c, with_gram=True)) for name in METHODS.names()}
    err = {name: float((m.T_ / m.T_.norm(dim=1, keepdim=True) - r).norm()) for name, m in fitted.items()}
    assert err["procrustes"] < 0.1
    assert err["procrustes"] < err["covariance"] and err["procrustes"] < err["random_rotation"]
    assert err["random_rotation"] > 3.0


@pytest.mark.parametrize("name", METHODS.names())
def test_estimator_contract(name):
    method = get_method(name)
    with pytest.raises(NotFittedError):
        method.check_is_fitted()
    stats = stats_of(*planted(n=300, d_c=10, d_s=6)[:2][::-1], with_gram=True)
    assert method.fit(stats) is method
    method.check_is_fitted()
    assert method.T_.shape == (6, 10) and method.subject_shift_.shape == (6,) and method.subject_scale_.shape == (6,)
    assert type(method)(**method.get_params()).get_params() == method.get_params()


def test_unknown_method_suggests_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'procrustes'"):
        get_method("procrustos")


# ------------------------------------------------------------------ degenerate input (issue 11, defect 4)


@pytest.mark.parametrize("name", DATA_METHODS)
def test_one_text_corpus_is_refused(name):
    a_c, a_s, _ = planted(n=1, d_c=10, d_s=6)
    with pytest.raises(DegenerateDataError, match=r"from 1 sample: .* at least 7"):
        get_method(name).fit(stats_of(a_s, a_c, with_gram=True))


@pytest.mark.parametrize("name", DATA_METHODS)
def test_too_few_samples_for_the_dimensions_refused_then_warned(name):
    a_c, a_s, _ = planted(n=60, d_c=40, d_s=30)
    with pytest.raises(DegenerateDataError, match="needs at least 31"):
        get_method(name).fit(stats_of(a_s[:30], a_c[:30], with_gram=True))  # rank ≤ 29 < 30: part of T arbitrary
    with pytest.warns(FewSamplesWarning, match="only 31 samples"):
        get_method(name).fit(stats_of(a_s[:31], a_c[:31], with_gram=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewSamplesWarning)
        get_method(name).fit(stats_of(a_s, a_c, with_gram=True))  # 2 × min(d): no warning


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_activations_refused_at_update_naming_rows(bad):
    stats = AlignmentStatistics(4, 6)
    stats.update(torch.randn(8, 4), torch.randn(8, 6))
    atlas = torch.randn(5, 6)
    atlas[3, 2] = bad
    with pytest.raises(NonFiniteActivationError, match=r"atlas activations of the batch of samples 8–12 .* 1 NaN/inf values in 1 of 5 rows \(batch rows 3\)"):
        stats.update(torch.randn(5, 4), atlas)
    assert stats.n == 8  # the bad batch left nothing behind
    assert isinstance(NonFiniteActivationError("x"), AtlasAlignError)


@pytest.mark.parametrize("name", DATA_METHODS)
def test_identical_rows_give_no_translation(name):
    a_c, a_s, _ = planted(n=1, d_c=10, d_s=6)
    stats = stats_of(a_s.repeat(40, 1), a_c.repeat(40, 1), with_gram=True)
    with pytest.raises(DegenerateDataError, match=r"every subject activation dimension is constant over the 40 samples \(6 columns: 0, 1, 2, 3, 4, 5\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConstantColumnWarning)
            get_method(name, **({"alpha": 0.0} if name == "linear_regression" else {})).fit(stats)


@pytest.mark.parametrize("name", ["procrustes", "covariance", "correlation", "linear_regression"])
def test_non_finite_statistics_never_give_a_translation(name):
    """A tampered or overflowed checkpoint: methods refuse with our error, never a bare torch _LinAlgError or a NaN T."""
    stats = stats_of(*planted(n=100, d_c=10, d_s=6)[:2][::-1], with_gram=True)
    for tensor in (stats.comoment, stats.comoment_norm, stats.gram_comoment_norm):
        tensor[1, 2] = float("nan")
    with pytest.raises(DegenerateDataError, match="non-finite|NaN/inf"):
        get_method(name).fit(stats)


def test_ridge_without_regularisation_on_dependent_atlas_dims_is_refused_clearly():
    a_c, a_s, _ = planted(n=200, d_c=8, d_s=6)
    a_c = torch.cat([a_c, a_c[:, :1]], dim=1)  # a duplicated atlas column: singular Gram
    with pytest.raises(DegenerateDataError, match="Gram matrix is singular"):
        get_method("linear_regression", alpha=0.0).fit(stats_of(a_s, a_c, with_gram=True))


def test_correlation_of_a_constant_column_is_zero_with_a_warning_naming_it():
    a_c, a_s, _ = planted(n=500, d_c=10, d_s=6)
    a_c[:, 4] = 1e4  # an atlas feature that never changes (a dead SAE latent, offset)
    a_s[:, 2] = -3.0
    with pytest.warns(ConstantColumnWarning, match=r"subject 1 column: 2; atlas 1 column: 4"):
        fitted = get_method("correlation").fit(stats_of(a_s, a_c))
    assert torch.isfinite(fitted.T_).all()
    assert fitted.T_[:, 4].abs().max() == 0 and fitted.T_[2].abs().max() == 0
    assert fitted.subject_scale_[2] == 1.0  # never divide by a zero std
    others = [j for j in range(10) if j != 4]
    truth = np.corrcoef(a_s[:, [0, 1, 3, 4, 5]].T.numpy(), a_c[:, others].T.numpy())[:5, 5:]
    np.testing.assert_allclose(fitted.T_[[0, 1, 3, 4, 5]][:, others].numpy(), truth, rtol=0, atol=1e-12)


def test_all_zero_T_is_refused_at_fit():
    stats = stats_of(*planted(n=100, d_c=10, d_s=6)[:2][::-1])
    stats.comoment.zero_()  # no dimension co-varies with any other
    with pytest.raises(DegenerateDataError, match="covariance produced an all-zero T"):
        get_method("covariance").fit(stats)
