"""Bad input is refused with a message that says what and where; degenerate data is flagged."""

from __future__ import annotations

import re

import numpy as np
import pytest
from engine_reference import make_truth, max_rel, normalized

from calibreg.engine import ScaleSolution, measure_scales


def _good(n_row=6, n_exp=4, seed=0):
    rng = np.random.default_rng(seed)
    G, E, N = make_truth(n_row, n_exp, rng)
    return G[:, None] * E, N, G, E


@pytest.mark.parametrize(
    ("background", "message"),
    [
        (np.ones(5), "background must be a 2-D array (rows × exposures), got shape (5,)"),
        (np.ones((2, 3, 4)), "got shape (2, 3, 4)"),
        (np.ones((0, 5)), "background is empty (shape (0, 5))"),
        (np.ones((3, 0)), "background is empty (shape (3, 0))"),
        ([["a", "b"]], "background must be an array of real numbers"),
        (np.full((3, 4), np.nan), "no valid entry in background of shape (3, 4)"),
        (-np.ones((3, 4)), "no valid entry"),
    ],
)
def test_bad_background(background, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        measure_scales(background)


def test_negative_count_is_located():
    B, N, *_ = _good()
    N[3, 2] = -2.0
    with pytest.raises(ValueError, match=re.escape("counts[3, 2] is negative (-2.0)")):
        measure_scales(B, N)


def test_counts_of_another_shape():
    B, N, *_ = _good()
    with pytest.raises(ValueError, match=re.escape("counts has shape (6, 3) but background")):
        measure_scales(B, N[:, :3])


def test_nan_count_beside_a_usable_background_is_refused():
    B, N, *_ = _good()
    N[1, 1] = np.nan
    with pytest.raises(ValueError, match=re.escape("counts[1, 1] is not finite (nan)")):
        measure_scales(B, N)


def test_nan_count_beside_a_missing_background_is_fine():
    B, N, *_ = _good()
    B[1, 1] = np.nan
    N[1, 1] = np.nan
    sol = measure_scales(B, N)
    assert not sol.used[1, 1]
    assert np.isnan(sol.log_residuals[1, 1])


def test_all_zero_counts():
    B, N, *_ = _good()
    with pytest.raises(ValueError, match="no valid entry"):
        measure_scales(B, np.zeros_like(N))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "lsq"}, "unknown method 'lsq'; choose one of exact, alternating, robust"),
        ({"weights": "ivar"}, "unknown weights 'ivar'; choose one of counts, inverse-variance"),
        ({"weights": "inverse-variance"}, "weights='inverse-variance' needs sigma"),
        ({"max_iter": 0}, "max_iter must be a positive integer"),
        ({"tol": -1.0}, "tol must be a finite number >= 0"),
        ({"clip_sigma": 0.0}, "clip_sigma must be a finite number > 0"),
        ({"max_clip_iter": -1}, "max_clip_iter must be an integer >= 0"),
        ({"sigma": np.ones((2, 2))}, "sigma has shape (2, 2) but background has shape (6, 4)"),
    ],
)
def test_bad_options(kwargs, message):
    B, N, *_ = _good()
    with pytest.raises(ValueError, match=re.escape(message)):
        measure_scales(B, N, **kwargs)


def test_negative_sigma_is_located():
    B, N, *_ = _good()
    sigma = np.ones_like(B)
    sigma[0, 3] = -1.0
    with pytest.raises(ValueError, match=re.escape("sigma[0, 3] is negative (-1.0)")):
        measure_scales(B, N, sigma=sigma, weights="inverse-variance")


def test_zero_or_nan_sigma_excludes_the_entry():
    B, N, *_ = _good()
    sigma = np.ones_like(B)
    sigma[0, 3] = 0.0
    sigma[2, 1] = np.nan
    sol = measure_scales(B, N, sigma=sigma, weights="inverse-variance")
    assert not sol.used[0, 3]
    assert not sol.used[2, 1]
    assert sol.used.sum() == B.size - 2


@pytest.mark.parametrize("method", ["exact", "alternating", "robust"])
def test_disconnected_data_raises_with_block_sizes(method):
    B, N, *_ = _good(8, 6)
    B[:5, 3:] = np.nan
    B[5:, :3] = np.nan
    with pytest.raises(ValueError, match="no common scale") as info:
        measure_scales(B, N, method=method)
    assert "2 disconnected blocks (5 rows × 3 exposures, 3 rows × 3 exposures)" in str(info.value)


def test_disconnected_found_beyond_breadth_first_steps():
    """A long chain (diameter > the fast path's steps) is still judged correctly."""
    n = 30
    B = np.full((n, n), np.nan)
    for i in range(n):
        B[i, i] = 100.0 + i
        if i + 1 < n:
            B[i, i + 1] = 101.0 + i
    measure_scales(B)  # connected chain: solvable
    B[14, 15] = np.nan  # cut the chain in the middle
    with pytest.raises(ValueError, match=r"2 disconnected blocks \(15 rows × 15 exposures"):
        measure_scales(B)


@pytest.mark.parametrize("method", ["exact", "alternating", "robust"])
def test_empty_row_and_exposure_are_flagged(method):
    B, N, G, E = _good(8, 6)
    B[3, :] = np.nan  # a dead detector
    B[:, 4] = 0.0  # an exposure with nothing usable
    sol = measure_scales(B, N, method=method, tol=1e-14)
    valid = np.isfinite(B) & (B > 0)
    Gn, En = normalized(G, E, N, valid)
    assert sol.row_flagged.tolist() == [i == 3 for i in range(8)]
    assert sol.exp_flagged.tolist() == [j == 4 for j in range(6)]
    assert np.isnan(sol.exp_scales[4])
    assert np.isnan(sol.model[:, 4]).all()
    others = np.delete(np.arange(8), 3)
    geo = np.exp(np.mean(np.log(sol.row_scales[others])))
    assert sol.row_scales[3] == pytest.approx(geo, rel=1e-14)
    assert max_rel(sol.row_scales[others], Gn[others]) < 1e-11
    assert max_rel(np.delete(sol.exp_scales, 4), np.delete(En, 4)) < 1e-11
    # The normalization ignores the flagged row: count-weighted mean of the others is 1.
    c = np.where(valid, N, 0).sum(axis=1)
    assert float(c @ sol.row_scales / c.sum()) == pytest.approx(1.0, rel=1e-14)
    assert np.isnan(sol.rms_row[3])
    assert np.isnan(sol.rms_exp[4])
    assert not sol.used[3].any()
    assert not sol.used[:, 4].any()


def test_solution_is_immutable_and_consistent():
    B, N, *_ = _good()
    B = B * np.exp(np.random.default_rng(1).normal(0, 1e-3, B.shape))
    sol = measure_scales(B, N)
    assert isinstance(sol, ScaleSolution)
    assert sol.shape == (6, 4)
    with pytest.raises(ValueError, match="read-only"):
        sol.row_scales[0] = 2.0
    np.testing.assert_allclose(sol.model, np.outer(sol.row_scales, sol.exp_scales), rtol=1e-15)
    np.testing.assert_allclose(sol.log_residuals, np.log(B) - np.log(sol.model), atol=1e-14)
    w = N
    r = sol.log_residuals
    assert sol.rms == pytest.approx(np.sqrt(np.sum(w * r * r) / w.sum()), rel=1e-12)
    np.testing.assert_allclose(sol.rms_row, np.sqrt((w * r * r).sum(1) / w.sum(1)), rtol=1e-12)
    np.testing.assert_allclose(sol.rms_exp, np.sqrt((w * r * r).sum(0) / w.sum(0)), rtol=1e-12)
    assert (sol.method, sol.weights, sol.n_rejected) == ("exact", "counts", 0)


def test_inputs_are_not_modified():
    B, N, *_ = _good()
    B[0, 0] = np.nan
    B0, N0 = B.copy(), N.copy()
    for method in ("exact", "alternating", "robust"):
        measure_scales(B, N, method=method)
    np.testing.assert_array_equal(B, B0)
    np.testing.assert_array_equal(N, N0)


def test_single_row_and_single_exposure():
    sol = measure_scales(np.array([[100.0, 200.0, 50.0]]))
    np.testing.assert_allclose(sol.row_scales, [1.0])
    np.testing.assert_allclose(sol.exp_scales, [100.0, 200.0, 50.0], rtol=1e-14)
    sol = measure_scales(np.array([[100.0], [200.0]]), np.array([[1.0], [3.0]]))
    np.testing.assert_allclose(sol.row_scales, [100 / 175, 200 / 175], rtol=1e-14)
    np.testing.assert_allclose(sol.exp_scales, [175.0], rtol=1e-14)
