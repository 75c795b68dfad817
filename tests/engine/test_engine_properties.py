"""Properties any correct flat-normalization solver must have, checked on generated data."""

from __future__ import annotations

import numpy as np
import pytest
from engine_reference import (
    connected_mask,
    make_truth,
    max_rel,
    normalized,
    reference_measure_scales,
    weighted_sse,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from calibreg.engine import measure_scales

SETTINGS = settings(max_examples=25, deadline=None)
CONVERGED_ALTERNATING = {"method": "alternating", "max_iter": 50_000, "tol": 1e-15}

shapes = st.tuples(st.integers(2, 25), st.integers(2, 25))
seeds = st.integers(0, 2**32 - 1)
missing = st.sampled_from([0.0, 0.2, 0.5])


def _data(shape, seed, frac, noise=0.0):
    rng = np.random.default_rng(seed)
    G, E, N = make_truth(*shape, rng)
    valid = connected_mask(*shape, frac, rng)
    B = G[:, None] * E[None, :]
    if noise:
        B = B * np.exp(rng.normal(0.0, noise, shape))
    B = np.where(valid, B, np.nan)
    return B, N, G, E, valid


@SETTINGS
@given(shape=shapes, seed=seeds, frac=missing, method=st.sampled_from(["exact", "robust"]))
def test_noiseless_recovery_exact_methods(shape, seed, frac, method):
    B, N, G, E, valid = _data(shape, seed, frac)
    sol = measure_scales(B, N, method=method)
    Gn, En = normalized(G, E, N, valid)
    assert sol.converged
    assert max_rel(sol.row_scales, Gn) < 1e-12
    assert max_rel(sol.exp_scales, En) < 1e-12
    assert sol.n_rejected == 0
    np.testing.assert_allclose(sol.model[valid], B[valid], rtol=1e-12)


@SETTINGS
@given(shape=shapes, seed=seeds, frac=missing)
def test_noiseless_recovery_converged_alternating(shape, seed, frac):
    B, N, G, E, valid = _data(shape, seed, frac)
    sol = measure_scales(B, N, method="alternating", max_iter=50_000, tol=1e-14)
    Gn, En = normalized(G, E, N, valid)
    assert sol.converged
    assert max_rel(sol.row_scales, Gn) < 1e-12
    assert max_rel(sol.exp_scales, En) < 1e-12


@SETTINGS
@given(
    shape=shapes,
    seed=seeds,
    frac=missing,
    c=st.floats(1e-3, 1e4),
    method=st.sampled_from(["exact", "alternating", "robust"]),
)
def test_scaling_background_scales_E_only(shape, seed, frac, c, method):
    """B × c → E × c, G unchanged: the answer does not depend on units (reference: defect 5)."""
    B, N, *_ = _data(shape, seed, frac, noise=1e-3)
    s1 = measure_scales(B, N, method=method)
    s2 = measure_scales(B * c, N, method=method)
    assert max_rel(s2.row_scales, s1.row_scales) < 1e-10
    assert max_rel(s2.exp_scales, s1.exp_scales * c) < 1e-10


@SETTINGS
@given(shape=shapes, seed=seeds, frac=missing, method=st.sampled_from(["exact", "alternating"]))
def test_permutation_equivariance(shape, seed, frac, method):
    B, N, *_ = _data(shape, seed, frac, noise=1e-3)
    rng = np.random.default_rng(seed)
    pr, pc = rng.permutation(shape[0]), rng.permutation(shape[1])
    s1 = measure_scales(B, N, method=method)
    s2 = measure_scales(B[pr][:, pc], N[pr][:, pc], method=method)
    assert max_rel(s2.row_scales, s1.row_scales[pr]) < 1e-10
    assert max_rel(s2.exp_scales, s1.exp_scales[pc]) < 1e-10
    np.testing.assert_array_equal(s2.used, s1.used[pr][:, pc])


@SETTINGS
@given(shape=shapes, seed=seeds, frac=st.sampled_from([0.2, 0.5]))
def test_units_do_not_matter_with_missing_entries(shape, seed, frac):
    """B × 1000 gives E × 1000 and the same G, also with missing entries."""
    B, N, *_ = _data(shape, seed, frac, noise=1e-3)
    s1, s2 = measure_scales(B, N), measure_scales(B * 1000.0, N)
    assert max_rel(s2.row_scales, s1.row_scales) < 1e-11
    assert max_rel(s2.exp_scales, 1000.0 * s1.exp_scales) < 1e-11


def test_units_matter_to_the_reference():
    """The same check on the reference fails: its E ratio is not 1000 (defect 5)."""
    B, N, *_ = _data((30, 12), 7, 0.2, noise=1e-3)
    r1, r2 = reference_measure_scales(B, N), reference_measure_scales(B * 1000.0, N)
    assert max_rel(r2.det_scales, r1.det_scales) > 1e-4
    assert max_rel(r2.exp_scales, 1000.0 * r1.exp_scales) > 1e-3


@SETTINGS
@given(shape=shapes, seed=seeds, frac=missing)
def test_exact_never_worse_than_alternating(shape, seed, frac):
    B, N, *_ = _data(shape, seed, frac, noise=1e-2)
    w = np.where(np.isfinite(B), N, 0.0)
    exact = measure_scales(B, N)
    sse = weighted_sse(B, w, exact.row_scales, exact.exp_scales)
    for kw in ({"max_iter": 10, "tol": 0.0}, {}):
        alt = measure_scales(B, N, method="alternating", **kw)
        assert sse <= weighted_sse(B, w, alt.row_scales, alt.exp_scales) * (1 + 1e-12)


def test_heavily_weighted_exposure_dominates():
    rng = np.random.default_rng(11)
    G, E, N = make_truth(20, 8, rng)
    B = G[:, None] * E * np.exp(rng.normal(0, 1e-2, (20, 8)))
    N[:, 3] = 1e9
    sol = measure_scales(B, N)
    plain = measure_scales(B, np.ones_like(B))
    heavy = np.abs(sol.log_residuals[:, 3]).max()
    assert heavy < 1e-6 < np.abs(sol.log_residuals[:, [0, 1, 2, 4]]).max()
    # Row scales follow the heavy exposure: G ∝ B[:, 3].
    assert max_rel(sol.row_scales / sol.row_scales[0], B[:, 3] / B[0, 3]) < 1e-6
    assert max_rel(plain.row_scales / plain.row_scales[0], B[:, 3] / B[0, 3]) > 1e-3


def test_inverse_variance_beats_counts_when_rows_differ_in_noise():
    """Half the rows are 30× noisier; with missing entries their noise leaks into E and from
    there into every other row's G unless the weights know about it.

    (With complete data the gauge-free G differences are plain row means whatever the row
    weights, so the test needs missing entries to be able to fail.)
    """
    errors: dict[str, list[float]] = {"counts": [], "inverse-variance": []}
    for seed in range(5):
        rng = np.random.default_rng(seed)
        G, E, N = make_truth(60, 20, rng)
        N[:] = 2000.0
        per_pixel = np.where(np.arange(60) % 2 == 0, 0.01, 0.3)  # relative scatter per pixel
        quiet = per_pixel < 0.1
        truth = G[:, None] * E
        sigma = per_pixel[:, None] * truth
        B = truth + sigma / np.sqrt(N) * rng.normal(size=truth.shape)
        B[~connected_mask(60, 20, 0.3, rng)] = np.nan
        for weights in errors:
            sol = measure_scales(B, N, sigma=sigma, weights=weights)
            d = np.log(sol.row_scales[quiet]) - np.log(G[quiet])
            errors[weights].append(float(np.sqrt(np.mean((d - d.mean()) ** 2))))
    assert np.mean(errors["inverse-variance"]) < 0.6 * np.mean(errors["counts"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_robust_ignores_gross_outliers(seed):
    """1% of entries +5% (satellite trails): robust G error ≤ 1.2 × its error without them."""
    rng = np.random.default_rng(seed)
    shape = (189, 50)
    G, E, N = make_truth(*shape, rng)
    clean = G[:, None] * E * np.exp(rng.normal(0.0, 1e-3, shape))
    hit = rng.random(shape) < 0.01
    dirty = np.where(hit, clean * 1.05, clean)
    Gn, _ = normalized(G, E, N, np.ones(shape, bool))
    err = {}
    for name, B in (("clean", clean), ("dirty", dirty)):
        sol = measure_scales(B, N, method="robust")
        err[name] = np.max(np.abs(sol.row_scales / Gn - 1))
        if name == "dirty":
            assert not sol.used[hit].any()
            assert sol.n_rejected >= hit.sum()
            assert sol.converged
    exact_dirty = measure_scales(dirty, N)
    assert err["dirty"] <= 1.2 * err["clean"]
    assert np.max(np.abs(exact_dirty.row_scales / Gn - 1)) > 3 * err["clean"]


@pytest.mark.parametrize("frac", [0.0, 0.3])
def test_solver_paths_agree(monkeypatch, frac):
    """Diagonal-preconditioned CG, the direct dense factor and the CG → dense fallback all
    reach the same optimum."""
    from calibreg.engine import solve

    B, N, *_ = _data((120, 80), 5, frac, noise=1e-3)
    answers = {}
    with monkeypatch.context() as m:
        m.setattr(solve, "_DENSE_FLOP_LIMIT", 0.0)  # no fallback: CG only
        answers["cg"] = measure_scales(B, N)
    with monkeypatch.context() as m:
        m.setattr(solve, "_DENSE_DIRECT_SIDE", 10**6)
        answers["dense"] = measure_scales(B, N)
    with monkeypatch.context() as m:
        m.setattr(solve, "_CG_FIRST_LIMIT", 1)  # CG "stalls" after one step
        answers["fallback"] = measure_scales(B, N)
    assert answers["cg"].iterations > 2
    assert answers["dense"].iterations <= 2
    for name, sol in answers.items():
        assert sol.converged, name
        assert max_rel(sol.row_scales, answers["dense"].row_scales) < 1e-12, name
        assert max_rel(sol.exp_scales, answers["dense"].exp_scales) < 1e-12, name
