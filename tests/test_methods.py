import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes

from atlas_align.errors import NotFittedError, ShapeMismatchError, UnknownNameError
from atlas_align.fit.methods import METHODS, get_method
from atlas_align.fit.statistics import AlignmentStatistics, row_normalize


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
    for name, tensor in one.tensors().items():
        assert torch.allclose(tensor, sharded.tensors()[name], atol=1e-9), name
    direct = row_normalize(a_s).T @ row_normalize(a_c)
    assert torch.allclose(one.cross_norm, direct, atol=1e-9)
    assert torch.allclose(one.covariance(), torch.from_numpy(np.cov(a_s.T.numpy(), a_c.T.numpy())[:32, 32:]), atol=1e-9)


def test_statistics_save_load_roundtrip(tmp_path):
    a_c, a_s, _ = planted(n=200)
    stats = stats_of(a_s, a_c, with_gram=True)
    stats.save(tmp_path / "s.safetensors")
    back = AlignmentStatistics.load(tmp_path / "s.safetensors")
    assert back.n == 200 and all(torch.equal(v, back.tensors()[k]) for k, v in stats.tensors().items())


def test_statistics_reject_mismatched_batches():
    stats = AlignmentStatistics(4, 6)
    with pytest.raises(ShapeMismatchError, match="same number of rows"):
        stats.update(torch.randn(3, 4), torch.randn(2, 6))
    with pytest.raises(ShapeMismatchError, match="do not match"):
        stats.update(torch.randn(3, 5), torch.randn(3, 6))


def _retrieval_mrr(method_name, a_c, a_s):
    """Each atlas basis vector's translated direction should best match its own planted direction."""
    fitted = get_method(method_name).fit(stats_of(a_s, a_c, with_gram=METHODS.get(method_name).needs_gram))
    dirs = row_normalize(fitted.T_.T)  # (d_c, d_s): direction of each atlas feature
    truth = row_normalize(stats_of(a_s, a_c).covariance().T)
    sims = dirs @ truth.T
    ranks = 1 + (sims > sims.diag()[:, None]).sum(1)
    return float((1.0 / ranks).mean())


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
