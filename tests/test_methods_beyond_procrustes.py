"""Methods beyond Procrustes (issue 14 item 3): whitened Procrustes, regularised CCA, CSLS scoring, MUSE-style refinement.

Every method is checked against an independent numpy/scipy/sklearn computation on the same rows
(tolerances stated at each assert), and on adversarial input it refuses with our errors, never a NaN T.
"""

import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from scipy.linalg import orthogonal_procrustes, sqrtm, subspace_angles

from atlas_align.errors import ConfigError, DegenerateDataError, IntegrityError, ShapeMismatchError
from atlas_align.fit.csls import csls_scores, neighbourhood_radius
from atlas_align.fit.methods import METHODS, get_method
from atlas_align.fit.refine import mutual_nearest_neighbours, refine_procrustes
from atlas_align.fit.statistics import AlignmentStatistics, ConstantColumnWarning, FewSamplesWarning, row_normalize

NEW_METHODS = ["whitened_procrustes", "cca"]


def stats_of(a_s, a_c, with_gram=True, shards=1):
    parts = [AlignmentStatistics(a_s.shape[1], a_c.shape[1], with_gram) for _ in range(shards)]
    for i, (s, c) in enumerate(zip(torch.chunk(a_s, 5 * shards), torch.chunk(a_c, 5 * shards))):
        parts[i % shards].update(s, c)
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def latent_problem(n=3000, d_s=8, d_c=10, k=3, noise=0.3, seed=0):
    """Two views of k shared latent factors, each mixed non-orthogonally and with its own noise (positive offset so rows are not centred)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k))
    a_s = z @ rng.standard_normal((k, d_s)) + noise * rng.standard_normal((n, d_s)) + 3.0
    a_c = z @ rng.standard_normal((k, d_c)) + noise * rng.standard_normal((n, d_c)) + 3.0
    return torch.from_numpy(a_s), torch.from_numpy(a_c)


def reference_moments(a_s, a_c):
    """Centred normalised rows and their unbiased covariances, in numpy."""
    s = row_normalize(a_s).numpy()
    c = row_normalize(a_c).numpy()
    s, c = s - s.mean(0), c - c.mean(0)
    n = len(s)
    return s, c, s.T @ s / (n - 1), s.T @ c / (n - 1), c.T @ c / (n - 1)


def ridge(sigma, eps):
    return sigma + eps * np.trace(sigma) / len(sigma) * np.eye(len(sigma))


def inv_sqrt(sigma):
    return np.real(np.linalg.inv(sqrtm(sigma)))


# ------------------------------------------------------------------ statistics: the subject-side Gram


def test_subject_gram_is_the_centred_gram_of_normalised_rows_and_merges():
    a_s, a_c = latent_problem(n=600)
    one, sharded = stats_of(a_s, a_c), stats_of(a_s, a_c, shards=3)
    s, c, sigma_s, sigma_sc, sigma_c = reference_moments(a_s, a_c)
    for stats in (one, sharded):  # float64 round-off over 600 rows: 1e-12
        got_s, got_sc, got_c = (x.numpy() for x in stats.covariance_norm())
        np.testing.assert_allclose(got_s, sigma_s, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got_sc, sigma_sc, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got_c, sigma_c, rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match="with_gram=True"):
        stats_of(a_s, a_c, with_gram=False).covariance_norm()


def test_statistics_with_gram_roundtrip_and_an_older_file_is_refused_clearly(tmp_path):
    a_s, a_c = latent_problem(n=100)
    stats = stats_of(a_s, a_c)
    stats.save(tmp_path / "s.safetensors")
    back = AlignmentStatistics.load(tmp_path / "s.safetensors")
    assert torch.equal(back.gram_comoment_norm_s, stats.gram_comoment_norm_s)
    tensors = load_file(str(tmp_path / "s.safetensors"))
    del tensors["gram_comoment_norm_s"]  # what a with_gram checkpoint written before this change holds
    meta = {"kind": "atlas-align/statistics", "format_version": "2", "n": "100", "d_s": "8", "d_c": "10", "with_gram": "1"}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=meta)
    with pytest.raises(IntegrityError, match="before with_gram statistics kept the subject-side Gram"):
        AlignmentStatistics.load(tmp_path / "old.safetensors")


# ------------------------------------------------------------------ whitened Procrustes


def test_whitened_procrustes_matches_scipy_on_the_same_rows():
    a_s, a_c = latent_problem(d_s=10, d_c=10)
    s, c, sigma_s, sigma_sc, sigma_c = reference_moments(a_s, a_c)
    for eps in (0.0, 0.1):
        fitted = get_method("whitened_procrustes", eps=eps).fit(stats_of(a_s, a_c))
        w_s, w_c = inv_sqrt(ridge(sigma_s, eps)), inv_sqrt(ridge(sigma_c, eps))
        q, _ = orthogonal_procrustes(s @ w_s, c @ w_c)  # min ‖(s W_s) Q − c W_c‖, Q orthogonal
        expected = w_s @ q @ np.real(sqrtm(ridge(sigma_c, eps)))
        # sqrtm/inv vs one eigendecomposition, covariance condition number ≲ 1e3: 1e-8 relative
        np.testing.assert_allclose(fitted.T_.numpy(), expected, rtol=0, atol=1e-8 * np.abs(expected).max())
        np.testing.assert_allclose(fitted.subject_shift_.numpy(), row_normalize(a_s).numpy().mean(0), rtol=0, atol=1e-13)
    whitened_only = get_method("whitened_procrustes", eps=0.1, unwhiten=False).fit(stats_of(a_s, a_c)).T_.numpy()
    w_s, w_c = inv_sqrt(ridge(sigma_s, 0.1)), inv_sqrt(ridge(sigma_c, 0.1))
    q, _ = orthogonal_procrustes(s @ w_s, c @ w_c)
    np.testing.assert_allclose(whitened_only, w_s @ q, rtol=0, atol=1e-8 * np.abs(w_s @ q).max())


def test_whitened_procrustes_rectangular_against_a_direct_svd():
    a_s, a_c = latent_problem(d_s=6, d_c=11)
    s, c, sigma_s, sigma_sc, sigma_c = reference_moments(a_s, a_c)
    fitted = get_method("whitened_procrustes", eps=0.05).fit(stats_of(a_s, a_c)).T_.numpy()
    w_s, w_c = inv_sqrt(ridge(sigma_s, 0.05)), inv_sqrt(ridge(sigma_c, 0.05))
    u, _, vh = np.linalg.svd(w_s @ sigma_sc @ w_c, full_matrices=False)
    expected = w_s @ u @ vh @ np.real(sqrtm(ridge(sigma_c, 0.05)))
    np.testing.assert_allclose(fitted, expected, rtol=0, atol=1e-8 * np.abs(expected).max())


def test_whitened_procrustes_translates_a_planted_whitened_rotation():
    """Atlas = subject mixed by a random invertible (non-orthogonal) matrix: whitening undoes the mixing, Procrustes cannot."""
    g = torch.Generator().manual_seed(1)
    n, d = 4000, 12
    a_s = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.3, 3.0, d, dtype=torch.float64) + 2.0
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) + 2 * torch.eye(d, dtype=torch.float64)
    a_c = a_s @ mix + 0.01 * torch.randn(n, d, generator=g, dtype=torch.float64) + 5.0
    train, test = slice(0, 3000), slice(3000, None)
    stats = stats_of(a_s[train], a_c[train])
    truth = row_normalize(a_c[test]) - row_normalize(a_c[train]).mean(0)

    def r2(method):
        pred = (row_normalize(a_s[test]) - method.subject_shift_) @ method.T_
        return float(1 - ((pred - truth) ** 2).sum() / (truth**2).sum())

    white = r2(get_method("whitened_procrustes", eps=1e-6).fit(stats))
    plain = r2(get_method("procrustes").fit(stats))
    # measured (seed 1): held-out R² whitened 0.977, plain Procrustes 0.378 (row normalisation makes the map only approximately linear)
    assert white > 0.95 and white > plain + 0.3


# ------------------------------------------------------------------ CCA


def test_cca_canonical_correlations_and_subspace_match_sklearn():
    from sklearn.cross_decomposition import CCA as SklearnCCA

    a_s, a_c = latent_problem(n=4000, d_s=8, d_c=10, k=3)
    s, c, *_ = reference_moments(a_s, a_c)
    ours = get_method("cca", n_components=3, reg_s=0.0, reg_c=0.0).fit(stats_of(a_s, a_c))
    reference = SklearnCCA(n_components=3, scale=False, max_iter=5000, tol=1e-12).fit(s, c)
    x_scores, y_scores = reference.transform(s, c)
    sk_rho = np.array([np.corrcoef(x_scores[:, i], y_scores[:, i])[0, 1] for i in range(3)])
    # NIPALS converged to tol 1e-12: correlations agree to 1e-6, subspaces of scores to 1e-4 rad
    np.testing.assert_allclose(ours.correlations_.numpy(), sk_rho, rtol=0, atol=1e-6)
    sigma_s = s.T @ s / (len(s) - 1)
    sigma_c = c.T @ c / (len(c) - 1)
    u, rho, vh = np.linalg.svd(inv_sqrt(sigma_s) @ (s.T @ c / (len(s) - 1)) @ inv_sqrt(sigma_c))
    our_x_scores = s @ inv_sqrt(sigma_s) @ u[:, :3]
    our_y_scores = c @ inv_sqrt(sigma_c) @ vh[:3].T
    assert np.max(subspace_angles(our_x_scores, x_scores)) < 1e-4
    assert np.max(subspace_angles(our_y_scores, y_scores)) < 1e-4
    np.testing.assert_allclose(ours.correlations_.numpy(), rho[:3], rtol=0, atol=1e-10)


def test_cca_T_matches_a_direct_numpy_computation_with_ridge_and_k():
    a_s, a_c = latent_problem(n=2000, d_s=7, d_c=9, k=4)
    s, c, sigma_s, sigma_sc, sigma_c = reference_moments(a_s, a_c)
    fitted = get_method("cca", n_components=2, reg_s=0.2, reg_c=0.05).fit(stats_of(a_s, a_c))
    w_s, w_c = inv_sqrt(ridge(sigma_s, 0.2)), inv_sqrt(ridge(sigma_c, 0.05))
    u, rho, vh = np.linalg.svd(w_s @ sigma_sc @ w_c)
    expected = w_s @ u[:, :2] @ np.diag(rho[:2]) @ vh[:2] @ np.real(sqrtm(ridge(sigma_c, 0.05)))
    np.testing.assert_allclose(fitted.T_.numpy(), expected, rtol=0, atol=1e-8 * np.abs(expected).max())
    assert fitted.correlations_.shape == (2,) and bool((fitted.correlations_[:-1] >= fitted.correlations_[1:]).all())


def test_cca_with_all_components_and_no_ridge_is_least_squares():
    a_s, a_c = latent_problem(n=1500, d_s=6, d_c=9)
    s, c, *_ = reference_moments(a_s, a_c)
    fitted = get_method("cca", reg_s=0.0, reg_c=0.0).fit(stats_of(a_s, a_c)).T_.numpy()
    expected, *_ = np.linalg.lstsq(s, c, rcond=None)
    np.testing.assert_allclose(fitted, expected, rtol=0, atol=1e-8 * np.abs(expected).max())


# ------------------------------------------------------------------ adversarial input for both methods


@pytest.mark.parametrize("name", NEW_METHODS)
def test_constant_columns_need_a_ridge_and_never_give_nan(name):
    a_s, a_c = latent_problem(n=500)
    a_s[:, 2] = 4.0  # a dead subject dimension
    a_c[:, 4] = 0.0  # a dead SAE latent
    fitted = get_method(name).fit(stats_of(a_s, a_c))  # default ridge 0.1
    assert torch.isfinite(fitted.T_).all() and bool(fitted.T_.any())
    zero = {"eps": 0.0} if name == "whitened_procrustes" else {"reg_s": 0.0, "reg_c": 0.0}
    # row normalisation makes a constant raw column vary a little; make one exactly dependent instead
    a_s[:, 3] = a_s[:, 1]
    a_c[:, 5] = a_c[:, 0]
    with pytest.raises(DegenerateDataError, match="singular .* Use eps > 0"):
        get_method(name, **zero).fit(stats_of(a_s, a_c))


@pytest.mark.parametrize("name", NEW_METHODS)
def test_fewer_samples_than_atlas_dimensions(name):
    a_s, a_c = latent_problem(n=20, d_s=6, d_c=40)  # Σ_c has rank ≤ 19 of 40: only the ridge makes it invertible
    fitted = get_method(name).fit(stats_of(a_s, a_c))
    assert torch.isfinite(fitted.T_).all() and bool(fitted.T_.any())
    zero = {"eps": 0.0} if name == "whitened_procrustes" else {"reg_s": 0.0, "reg_c": 0.0}
    with pytest.raises(DegenerateDataError, match=r"atlas covariance is singular \(rank \d+ of 40"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSamplesWarning)
        get_method(name, **zero).fit(stats_of(a_s, a_c))
    with pytest.raises(DegenerateDataError, match="needs at least 7"):
        get_method(name).fit(stats_of(a_s[:6], a_c[:6]))


@pytest.mark.parametrize("name", NEW_METHODS)
def test_one_sample_identical_rows_and_missing_gram_are_refused(name):
    a_s, a_c = latent_problem(n=40)
    with pytest.raises(DegenerateDataError, match="from 1 sample"):
        get_method(name).fit(stats_of(a_s[:1], a_c[:1]))
    with pytest.raises(DegenerateDataError, match="every subject activation dimension is constant"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantColumnWarning)
        get_method(name).fit(stats_of(a_s[:1].repeat(40, 1), a_c[:1].repeat(40, 1)))
    with pytest.raises(ConfigError, match="with_gram=True"):
        get_method(name).fit(stats_of(a_s, a_c, with_gram=False))


@pytest.mark.parametrize("name", NEW_METHODS)
def test_corrupt_or_lost_gram_statistics_are_refused(name):
    a_s, a_c = latent_problem(n=200)
    stats = stats_of(a_s, a_c)
    stats.gram_comoment_norm_s.zero_()  # e.g. reduced by code that does not carry the subject Gram
    with pytest.raises(DegenerateDataError, match="subject covariance of the normalised rows is zero"):
        get_method(name).fit(stats)
    stats = stats_of(a_s, a_c)
    stats.gram_comoment_norm[1, 2] = float("nan")
    with pytest.raises(DegenerateDataError, match="NaN/inf"):
        get_method(name).fit(stats)
    stats = stats_of(a_s, a_c)
    stats.comoment_norm[0, 0] = float("inf")
    with pytest.raises(DegenerateDataError, match="NaN/inf"):
        get_method(name).fit(stats)


def test_bad_parameters_are_config_errors():
    for bad in ({"eps": -0.1}, {"eps": float("nan")}, {"eps": float("inf")}, {"eps": True}, {"eps": "0.1"}):
        with pytest.raises(ConfigError, match="eps must be"):
            get_method("whitened_procrustes", **bad)
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ConfigError, match="n_components"):
            get_method("cca", n_components=bad)
    assert get_method("cca", n_components=None).n_components == 0  # None and 0 both mean all components
    with pytest.raises(ConfigError, match="reg_c must be"):
        get_method("cca", reg_c=-1)
    a_s, a_c = latent_problem(n=100, d_s=4, d_c=6)
    with pytest.raises(ConfigError, match="exceeds min"):
        get_method("cca", n_components=5).fit(stats_of(a_s, a_c))
    assert {"whitened_procrustes", "cca"} <= set(METHODS.names())


# ------------------------------------------------------------------ CSLS


def brute_force_csls(q, y, k):
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    out = np.empty((len(q), len(y)))
    for i in range(len(q)):
        r_q = np.mean(sorted((float(q[i] @ y[m]) for m in range(len(y))), reverse=True)[:k])
        for j in range(len(y)):
            r_y = np.mean(sorted((float(y[j] @ q[m]) for m in range(len(q))), reverse=True)[:k])
            out[i, j] = 2 * float(q[i] @ y[j]) - r_q - r_y
    return out


@pytest.mark.parametrize(("n_q", "n_k", "k"), [(13, 17, 3), (9, 5, 10), (1, 4, 1)])
def test_csls_matches_brute_force(n_q, n_k, k):
    rng = np.random.default_rng(n_q)
    q, y = rng.standard_normal((n_q, 6)), rng.standard_normal((n_k, 6)) + 0.5
    got = csls_scores(torch.from_numpy(q).float(), torch.from_numpy(y), k=k)
    assert got.dtype == torch.float64 and got.shape == (n_q, n_k)
    # float32 queries upcast to float64: agreement to float32 round-off
    np.testing.assert_allclose(got.numpy(), brute_force_csls(q.astype(np.float32).astype(np.float64), y, k), rtol=0, atol=1e-6)
    r = neighbourhood_radius(torch.from_numpy(q), torch.from_numpy(y), k=k)
    cos = row_normalize(torch.from_numpy(q)) @ row_normalize(torch.from_numpy(y)).T
    np.testing.assert_allclose(r.numpy(), np.sort(cos.numpy(), axis=1)[:, ::-1][:, :k].mean(1), rtol=0, atol=1e-12)


def test_csls_demotes_a_hub():
    """Queries share a direction u that only one key (the hub) has: cosine retrieval sends most queries to it, CSLS does not."""
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(50, 16, generator=g, dtype=torch.float64)
    u = torch.randn(16, generator=g, dtype=torch.float64)
    queries = keys + 0.5 * torch.randn(50, 16, generator=g, dtype=torch.float64) + u
    keys = torch.cat([keys, 2 * u[None]])  # key 50: the hub
    cosine_best = (row_normalize(queries) @ row_normalize(keys).T).argmax(1)
    csls_best = csls_scores(queries, keys, k=5).argmax(1)
    truth = torch.arange(50)
    # measured (seed 0): top-1 0.32 → 0.88; queries won by the hub 30 → 6
    assert float((csls_best == truth).double().mean()) > float((cosine_best == truth).double().mean()) + 0.3
    assert int((csls_best == 50).sum()) < int((cosine_best == 50).sum()) / 2


def test_csls_refuses_bad_input():
    x = torch.randn(4, 3)
    with pytest.raises(ShapeMismatchError):
        csls_scores(x, torch.randn(4, 5))
    with pytest.raises(ShapeMismatchError, match="at least one"):
        csls_scores(x[:0], x)
    with pytest.raises(ConfigError, match="k ≥ 1"):
        csls_scores(x, x, k=0)
    bad = x.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(DegenerateDataError, match="NaN/inf"):
        csls_scores(bad, x)


# ------------------------------------------------------------------ MUSE-style refinement


def corrupted_problem(n=600, d=24, noise=0.1, corrupt=0.2, seed=0):
    """Paired rows S = C R + noise; then the subject rows of a random 20 % of pairs are permuted among themselves."""
    g = torch.Generator().manual_seed(seed)
    a_c = torch.randn(n, d, generator=g, dtype=torch.float64)
    r, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    a_s = a_c @ r.T + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    bad = torch.randperm(n, generator=g)[: int(corrupt * n)]
    a_s[bad] = a_s[bad[torch.randperm(len(bad), generator=g)]]
    return a_s, a_c, r


def test_refinement_recovers_T_better_than_the_plain_fit_under_20_percent_corrupted_pairs():
    a_s, a_c, r = corrupted_problem()
    plain = get_method("procrustes").fit(stats_of(a_s, a_c, with_gram=False)).T_
    result = refine_procrustes(a_s, a_c, plain, n_iter=10)
    err_plain, err_refined = float((plain - r).norm() / r.norm()), float((result.T - r).norm() / r.norm())
    # measured (seed 0): plain 0.080, refined 0.015 (converged in 2 rounds on 600 mutual-NN pairs: the true partners)
    assert err_refined < 0.5 * err_plain, (err_plain, err_refined)
    assert result.converged and result.iterations <= 10 and len(result.pairs) > 0.9 * len(a_s)
    torch.testing.assert_close(result.subject_shift, row_normalize(a_s).mean(0), rtol=0, atol=1e-14)
    with_csls = refine_procrustes(a_s, a_c, plain, n_iter=10, csls_k=5)
    assert float((with_csls.T - r).norm() / r.norm()) < 0.5 * err_plain


def test_mutual_nearest_neighbours_and_refine_errors():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.0, 0.3, 0.7]])
    assert mutual_nearest_neighbours(scores).tolist() == [[0, 0], [2, 2]]
    a_s, a_c, r = corrupted_problem(n=60, d=24)
    with pytest.raises(ShapeMismatchError):
        refine_procrustes(a_s, a_c, torch.eye(23, 24, dtype=torch.float64))
    with pytest.raises(ConfigError, match="n_iter"):
        refine_procrustes(a_s, a_c, r.T, n_iter=0)
    bad = a_c.clone()
    bad[3, 3] = float("inf")
    with pytest.raises(DegenerateDataError, match="NaN/inf"):
        refine_procrustes(a_s, bad, r.T)
    random_t, _ = torch.linalg.qr(torch.randn(24, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(DegenerateDataError, match="mutual nearest neighbours .* needs at least 25"):
        refine_procrustes(a_s[:20], a_c[:20], random_t)
