"""Standard errors, degrees of freedom and goodness of fit (issue 8, items 1 and 2)."""

from __future__ import annotations

import numpy as np
import pytest
from engine_reference import connected_mask, make_truth

from calibreg.engine import measure_scales
from calibreg.engine import uncertainty as unc


def _brute(w, a):
    """Covariance of the gauge-fixed estimates from the pseudo-inverse of the full normal matrix."""
    n_r, n_c = w.shape
    r, c = np.nonzero(w)
    X = np.zeros((r.size, n_r + n_c))
    X[np.arange(r.size), r] = 1.0
    X[np.arange(r.size), n_r + c] = 1.0
    wt = w[r, c]
    M = X.T @ (wt[:, None] * X)
    Mp = np.linalg.pinv(M, rcond=1e-12)
    P = np.eye(n_r + n_c)
    P[:n_r, :n_r] -= np.outer(np.ones(n_r), a)
    P[n_r:, :n_r] += np.outer(np.ones(n_c), a)
    C = P @ Mp @ P.T
    lev = wt * np.einsum("ij,jk,ik->i", X, Mp, X)
    return (
        np.diag(C)[:n_r],
        np.diag(C)[n_r:],
        np.bincount(r, lev, n_r),
        np.bincount(c, lev, n_c),
    )


@pytest.mark.parametrize("shape", [(7, 5), (5, 9), (30, 12), (12, 30), (25, 25)])
@pytest.mark.parametrize("frac", [0.0, 0.4])
def test_unit_covariance_equals_pseudo_inverse(shape, frac):
    """The Schur-complement formulas equal P M⁺ Pᵀ (P: the gauge map) to rounding."""
    rng = np.random.default_rng(hash((shape, frac)) % 2**32)
    w = rng.uniform(0.5, 3.0, shape) * (rng.random(shape) >= frac)
    w[0, :] = rng.uniform(0.5, 3.0, shape[1])
    w[:, 0] = rng.uniform(0.5, 3.0, shape[0])
    w[2, :] = 0.0  # an inactive row
    act_r, act_c = w.any(axis=1), w.any(axis=0)
    gauge = rng.uniform(1.0, 2.0, shape[0]) * act_r
    gauge /= gauge.sum()
    cov = unc.unit_covariance(w, act_r, act_c, gauge)
    vg, ve, lr, lc = _brute(w[act_r], gauge[act_r])
    np.testing.assert_allclose(cov.var_log_g[act_r], vg, rtol=1e-10)
    np.testing.assert_allclose(cov.var_log_e, ve, rtol=1e-10)
    np.testing.assert_allclose(cov.lev_row[act_r], lr, atol=1e-10)
    np.testing.assert_allclose(cov.lev_exp, lc, atol=1e-10)
    assert np.isnan(cov.var_log_g[2])
    # Leverages sum to the rank: rows + exposures − 1.
    assert np.nansum(cov.lev_row) == pytest.approx(act_r.sum() + act_c.sum() - 1, rel=1e-12)


@pytest.mark.parametrize("shape", [(90, 60), (60, 90)])
def test_float32_path_agrees_with_float64(monkeypatch, shape):
    rng = np.random.default_rng(4)
    w = rng.uniform(500, 4000, shape) * connected_mask(*shape, 0.3, rng)
    act_r, act_c = w.any(axis=1), w.any(axis=0)
    gauge = w.sum(axis=1) / w.sum()
    monkeypatch.setattr(unc, "_FLOAT32_FLOPS", 1e30)
    ref = unc.unit_covariance(w, act_r, act_c, gauge)
    monkeypatch.setattr(unc, "_FLOAT32_FLOPS", 0.0)
    fast = unc.unit_covariance(w, act_r, act_c, gauge)
    assert fast.factor is not None and ref.factor is not None
    assert fast.factor.L.dtype == np.float32 and ref.factor.L.dtype == np.float64
    np.testing.assert_allclose(fast.var_log_g, ref.var_log_g, rtol=1e-4)
    np.testing.assert_allclose(fast.var_log_e, ref.var_log_e, rtol=1e-4)
    np.testing.assert_allclose(fast.lev_row, ref.lev_row, atol=1e-4)
    np.testing.assert_allclose(fast.lev_exp, ref.lev_exp, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_cholesky_and_inverse(monkeypatch, dtype):
    monkeypatch.setattr(unc, "_BLOCK", 16)
    rng = np.random.default_rng(0)
    A = rng.random((100, 100))
    S = np.asfortranarray(A @ A.T / 100 + np.eye(100)).astype(dtype, order="F")
    L, info = unc._cholesky(S)
    assert info == 0
    L = np.tril(L).astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(L @ L.T, S.astype(np.float64), atol=tol)
    norms, info = unc._inverse_col_norms(L.astype(dtype, order="F"))
    assert info == 0
    Linv = np.linalg.inv(L)
    np.testing.assert_allclose(norms, (Linv**2).sum(axis=0), rtol=100 * tol)
    bad = S.copy(order="F")
    bad[50, 50] = -1.0
    assert unc._cholesky(bad)[1] > 0


def test_weakly_connected_data_are_factored_in_float64(monkeypatch):
    """A badly conditioned Schur complement (two blocks joined by one entry) is not trusted to
    float32, even when the system is large enough for it."""
    rng = np.random.default_rng(6)
    w = np.zeros((60, 40))
    w[:30, :20] = rng.uniform(1, 2, (30, 20))
    w[30:, 20:] = rng.uniform(1, 2, (30, 20))
    w[0, 20] = 1e-3  # the one weak link
    act_r, act_c = w.any(axis=1), w.any(axis=0)
    gauge = w.sum(axis=1) / w.sum()
    monkeypatch.setattr(unc, "_FLOAT32_FLOPS", 0.0)
    cov = unc.unit_covariance(w, act_r, act_c, gauge)
    assert cov.factor is not None and cov.factor.L.dtype == np.float64
    vg, ve, *_ = _brute(w, gauge)
    # (the Schur complement's edges are float32 here: ~1e-7 relative, and so the variances)
    np.testing.assert_allclose(cov.var_log_g, vg, rtol=1e-6)
    np.testing.assert_allclose(cov.var_log_e, ve, rtol=1e-6)


def _simulate(shape, weights, n_real, seed):
    """Noise realisations on fixed truth with missing entries; noise matches the weights."""
    rng = np.random.default_rng(seed)
    G, E, N = make_truth(*shape, rng)
    N = N / 1000.0
    valid = connected_mask(*shape, 0.35, rng)
    truth = G[:, None] * E
    sigma = 0.02 * truth * rng.uniform(0.5, 2.0, shape[0])[:, None]  # per pixel, per row
    # var(log B) = σ²/(N B²) for both weightings (counts: N and the σ/B per row the same).
    rel = sigma / truth / np.sqrt(N) if weights == "inverse-variance" else 0.02 / np.sqrt(N)
    Gs, Es, gerr, eerr = [], [], [], []
    for _ in range(n_real):
        B = truth * np.exp(rel * rng.standard_normal(shape))
        B[~valid] = np.nan
        sol = measure_scales(B, N, sigma=sigma, weights=weights)
        Gs.append(sol.row_scales)
        Es.append(sol.exp_scales)
        gerr.append(sol.row_errors)
        eerr.append(sol.exp_errors)
    return [np.array(x) for x in (Gs, Es, gerr, eerr)]


@pytest.mark.parametrize("weights", ["counts", "inverse-variance"])
@pytest.mark.parametrize("shape", [(12, 8), (8, 12)])
def test_errors_match_the_spread_over_noise_realisations(weights, shape):
    """Over 1500 realisations the standard deviation of every G and E is the reported error
    (root-mean-square over realisations) within 10%."""
    Gs, Es, gerr, eerr = _simulate(shape, weights, 1500, seed=11)
    for est, err in ((Gs, gerr), (Es, eerr)):
        spread = est.std(axis=0, ddof=1)
        reported = np.sqrt(np.mean(err**2, axis=0))
        ratio = spread / reported
        assert np.all(np.abs(ratio - 1.0) < 0.10), ratio


def test_errors_shrink_as_one_over_sqrt_counts():
    rng = np.random.default_rng(2)
    G, E, N = make_truth(30, 20, rng)
    B = G[:, None] * E * np.exp(rng.normal(0, 1e-3, (30, 20)))
    s1 = measure_scales(B, N, sigma=0.1 * B, weights="inverse-variance")
    s4 = measure_scales(B, 4 * N, sigma=0.1 * B, weights="inverse-variance")
    np.testing.assert_allclose(s4.row_errors, s1.row_errors / 2, rtol=1e-8)
    # Count weights scale by the residual chi2: multiplying N changes nothing.
    c1, c4 = measure_scales(B, N), measure_scales(B, 4 * N)
    np.testing.assert_allclose(c4.row_errors, c1.row_errors, rtol=1e-8)


def test_degrees_of_freedom_and_chi2():
    rng = np.random.default_rng(5)
    shape = (40, 15)
    G, E, N = make_truth(*shape, rng)
    valid = connected_mask(*shape, 0.3, rng)
    B = np.where(valid, G[:, None] * E * np.exp(rng.normal(0, 1e-3, shape)), np.nan)
    B[5, :] = np.nan  # a dead row: not counted
    sol = measure_scales(B, N)
    used = valid.copy()
    used[5, :] = False
    n_r = int(used.any(axis=1).sum())
    n_c = int(used.any(axis=0).sum())
    assert sol.dof == int(used.sum()) - n_r - n_c + 1
    assert sol.dof_row.sum() == pytest.approx(sol.dof, rel=1e-10)
    assert sol.dof_exp.sum() == pytest.approx(sol.dof, rel=1e-10)
    r = np.where(used, sol.log_residuals, 0.0)
    w = np.where(used, N, 0.0)
    assert sol.chi2 == pytest.approx(float(np.sum(w * r * r)), rel=1e-12)
    np.testing.assert_allclose(sol.chi2_row, (w * r * r).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(sol.chi2_exp, (w * r * r).sum(axis=0), rtol=1e-12)
    assert sol.error_scale == pytest.approx(np.sqrt(sol.chi2 / sol.dof))
    assert sol.reduced_chi2 == pytest.approx(sol.chi2 / sol.dof)
    assert np.isnan(sol.row_errors[5])
    assert np.isnan(sol.reduced_chi2_row[5])


def test_inverse_variance_chi2_per_dof_is_about_one():
    rng = np.random.default_rng(8)
    shape = (60, 30)
    G, E, N = make_truth(*shape, rng)
    truth = G[:, None] * E
    sigma = 0.05 * truth
    B = truth + sigma / np.sqrt(N) * rng.standard_normal(shape)
    sol = measure_scales(B, N, sigma=sigma, weights="inverse-variance")
    assert sol.error_scale == 1.0
    # χ² with dof = 1771 degrees of freedom: mean 1, standard deviation sqrt(2/dof) ≈ 0.034.
    assert abs(sol.reduced_chi2 - 1.0) < 4 * np.sqrt(2.0 / sol.dof)
    assert np.nanmedian(sol.reduced_chi2_row) == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize("varying_counts", [False, True])
def test_rms_with_dof_correction_estimates_the_noise(varying_counts):
    """A 189 × 2 solve: the plain rms reports ~0.7e-3 for a true noise of 1e-3, because the fit
    uses up 190 of the 378 degrees of freedom; the corrected one reports the noise."""
    plain, corrected, row_median = [], [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        G, E, N = make_truth(189, 2, rng)
        if not varying_counts:
            N[:] = 2000.0
        B = G[:, None] * E * np.exp(rng.normal(0.0, 1e-3, (189, 2)))
        sol = measure_scales(B, N)
        plain.append(sol.rms)
        corrected.append(sol.rms_dof)
        row_median.append(np.sqrt(np.mean(sol.rms_dof_exp**2)))
    assert np.mean(plain) < 0.75e-3
    tol = 0.1 if varying_counts else 0.03
    assert np.mean(corrected) == pytest.approx(1e-3, rel=tol)
    assert np.mean(row_median) == pytest.approx(1e-3, rel=tol)


def test_errors_can_be_switched_off():
    rng = np.random.default_rng(1)
    G, E, N = make_truth(20, 10, rng)
    B = G[:, None] * E * np.exp(rng.normal(0, 1e-3, (20, 10)))
    on, off = measure_scales(B, N), measure_scales(B, N, errors=False)
    assert np.isnan(off.row_errors).all() and np.isnan(off.exp_errors).all()
    assert off.weak_link_entries == -1 and on.weak_link_entries == 0
    np.testing.assert_array_equal(on.row_scales, off.row_scales)
    # Without the factor the degrees of freedom come from first-order leverages: close.
    np.testing.assert_allclose(off.dof_row, on.dof_row, rtol=0.05)
    assert off.dof == on.dof


def test_errors_for_every_method_describe_the_same_optimum():
    rng = np.random.default_rng(3)
    G, E, N = make_truth(25, 12, rng)
    B = G[:, None] * E * np.exp(rng.normal(0, 1e-3, (25, 12)))
    ex = measure_scales(B, N)
    for method in ("alternating", "robust"):
        sol = measure_scales(B, N, method=method, max_iter=50_000, tol=1e-15)
        np.testing.assert_allclose(sol.row_errors, ex.row_errors, rtol=1e-6)
        np.testing.assert_allclose(sol.exp_errors, ex.exp_errors, rtol=1e-6)


def test_no_redundancy_gives_nan_count_errors():
    sol = measure_scales(np.array([[100.0, 200.0, 50.0]]))
    assert sol.dof == 0
    assert np.isnan(sol.row_errors).all() and np.isnan(sol.rms_dof)
    assert np.isnan(sol.reduced_chi2)


if __name__ == "__main__":  # print the numbers for the report
    for weights in ("counts", "inverse-variance"):
        for shape in ((12, 8), (8, 12)):
            Gs, Es, gerr, eerr = _simulate(shape, weights, 1500, seed=11)
            for name, est, err in (("G", Gs, gerr), ("E", Es, eerr)):
                ratio = est.std(axis=0, ddof=1) / np.sqrt(np.mean(err**2, axis=0))
                print(
                    f"{weights:17s} {shape[0]:2d}×{shape[1]:<2d} {name}: spread / reported error "
                    f"min {ratio.min():.3f} max {ratio.max():.3f}"
                )
    for varying in (False, True):
        plain, corrected = [], []
        for seed in range(20):
            rng = np.random.default_rng(seed)
            G, E, N = make_truth(189, 2, rng)
            if not varying:
                N[:] = 2000.0
            B = G[:, None] * E * np.exp(rng.normal(0.0, 1e-3, (189, 2)))
            sol = measure_scales(B, N)
            plain.append(sol.rms)
            corrected.append(sol.rms_dof)
        print(
            f"189×2, noise 1e-3, {'varying' if varying else 'equal  '} counts: rms "
            f"{np.mean(plain):.3e}, rms_dof {np.mean(corrected):.3e}"
        )
