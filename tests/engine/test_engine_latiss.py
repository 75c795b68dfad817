"""Real data: the LATISS PTC's per-amplifier flat-pair means (issue 8, items 5 and 9, engine part).

``tests/data/flat_stats/ci_cpp_gen3/ptcDet.yaml`` is cp_verify output for one LATISS detector:
for each of its 16 amplifiers the raw mean (``PTC_RAW_MEANS``) and variance
(``PTC_RAW_VARIANCE``) of 30 flat pairs from ~5e3 to ~1.46e5 ADU, and the PTC's own mask of the
pairs it used (``PTC_EXP_ID_MASK``: False above each amplifier's turnoff, where the means bend
and the variances collapse). As a background matrix it is 16 rows × 30 exposures; the
amplifiers' ratios on their unsaturated pairs are the truth the robust fit has to find on all
of them, with either weighting. The means are over whole amplifiers (about 1e6 pixels each),
which is the count given to the engine, so that inverse-variance weights are those of the means.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from calibreg.engine import measure_scales

PTC = Path(__file__).resolve().parents[1] / "data" / "flat_stats" / "ci_cpp_gen3" / "ptcDet.yaml"
N_PIX = 1.0e6  # pixels behind each amplifier mean (LATISS: 509 × 2000 imaging pixels)


def load_ptc() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """``(amp names, means (16, 30), variances (16, 30), unsaturated mask (16, 30))``."""
    amps = yaml.safe_load(PTC.read_text())["AMP"]
    names = list(amps)
    means = np.array([amps[a]["PTC_RAW_MEANS"] for a in names], dtype=float)
    variances = np.array([amps[a]["PTC_RAW_VARIANCE"] for a in names], dtype=float)
    mask = np.array([amps[a]["PTC_EXP_ID_MASK"] for a in names], dtype=bool)
    return names, means, variances, mask


def _unit_mean(G: np.ndarray) -> np.ndarray:
    return G / G.mean()


@pytest.fixture(scope="module")
def ptc():
    names, B, V, good = load_ptc()
    assert B.shape == (16, 30) and len(set(names)) == 16
    assert (~good).sum(axis=1).min() >= 6  # every amplifier has saturated pairs
    # The truth: each amplifier's ratio to the others on its own unsaturated pairs.
    clean = measure_scales(np.where(good, B, np.nan))
    return B, np.sqrt(V), good, _unit_mean(clean.row_scales), np.full(B.shape, N_PIX)


@pytest.mark.parametrize("weights", ["counts", "inverse-variance"])
def test_robust_recovers_the_unsaturated_ratios_from_all_pairs(ptc, weights):
    """Goal: G within 5e-4 of the amplifiers' ratios on the unsaturated pairs, either weighting.
    (Before: robust rejected nothing with inverse-variance weights, G off by 1.7%.)"""
    B, sigma, good, G_ref, N = ptc
    sol = measure_scales(B, N, sigma=sigma, weights=weights, method="robust")
    assert sol.converged
    assert np.max(np.abs(_unit_mean(sol.row_scales) - G_ref)) < 5e-4
    # What it rejected are saturated pairs, and (inverse variance: the means are known to
    # 1e-6, so the amplifiers' ~1e-3 non-linearity below the turnoff shows) a few more.
    on_good = good[sol.rejected_rows, sol.rejected_exposures]
    assert sol.n_rejected >= 60
    assert on_good.sum() <= 0.1 * sol.n_rejected
    assert np.all(np.abs(sol.rejected_residuals[on_good]) < 2e-3)
    # The most saturated pairs are flagged; no amplifier is.
    assert sol.has_flag("mostly_rejected", axis="exp")[-3:].all()
    assert not sol.row_flags.any()


@pytest.mark.parametrize("weights", ["counts", "inverse-variance"])
def test_least_squares_on_all_pairs_is_pulled_by_saturation(ptc, weights):
    """Why robust: exact and alternating fit every pair, saturated ones included."""
    B, sigma, _, G_ref, N = ptc
    for method in ("exact", "alternating"):
        sol = measure_scales(B, N, sigma=sigma, weights=weights, method=method)
        assert np.max(np.abs(_unit_mean(sol.row_scales) - G_ref)) > 4e-3


@pytest.mark.parametrize("method", ["exact", "alternating", "robust"])
@pytest.mark.parametrize("weights", ["counts", "inverse-variance"])
def test_every_method_on_the_unsaturated_pairs(ptc, method, weights):
    """On the unsaturated pairs every method and weighting gives the ratios (within the
    amplifiers' own non-linearity of a few 1e-4) and E follows the flux sequence."""
    B, sigma, good, G_ref, N = ptc
    Bc = np.where(good, B, np.nan)
    sol = measure_scales(
        Bc, N, sigma=sigma, weights=weights, method=method, max_iter=10_000, tol=1e-14
    )
    assert sol.converged
    assert np.max(np.abs(_unit_mean(sol.row_scales) - G_ref)) < 3e-4
    # The pairs step the exposure time evenly: E_j ∝ j + 1, to the lamp's stability (~1e-3).
    seen = np.isfinite(sol.exp_scales)
    per_step = sol.exp_scales[seen] / (np.flatnonzero(seen) + 1.0)
    assert np.max(np.abs(per_step / np.median(per_step) - 1)) < 2e-3
    # Errors are reported; the fit's rms says how non-linear the amplifiers are (a few 1e-4),
    # far above the photon noise of a 1e6-pixel mean, which χ²/dof shows for inverse variance.
    rel = sol.row_errors / sol.row_scales
    assert np.all(np.isfinite(rel) & (rel > 0))
    assert 1e-5 < sol.rms_dof < 1e-3
    if weights == "counts":
        assert np.all(rel < 2e-4)
    else:
        assert sol.error_scale == 1.0 and sol.reduced_chi2 > 100


@pytest.mark.parametrize("weights", ["counts", "inverse-variance"])
def test_robust_flux_sequence_on_all_pairs(ptc, weights):
    """E of the unsaturated pairs follows the flux sequence also when solved on all pairs."""
    B, sigma, good, _, N = ptc
    sol = measure_scales(B, N, sigma=sigma, weights=weights, method="robust")
    clean = good.all(axis=0)
    per_step = sol.exp_scales[clean] / (np.flatnonzero(clean) + 1.0)
    assert np.max(np.abs(per_step / np.median(per_step) - 1)) < 2e-3


if __name__ == "__main__":  # print the numbers for the report
    names, B, V, good = load_ptc()
    ref = _unit_mean(measure_scales(np.where(good, B, np.nan)).row_scales)
    for weights in ("counts", "inverse-variance"):
        for method in ("exact", "alternating", "robust"):
            sol = measure_scales(
                B, np.full(B.shape, N_PIX), sigma=np.sqrt(V), weights=weights, method=method
            )
            dev = np.max(np.abs(_unit_mean(sol.row_scales) - ref))
            print(
                f"{weights:17s} {method:12s} max |G - G_unsaturated| = {dev:.2e}  "
                f"rejected {sol.n_rejected:3d}  converged {sol.converged}"
            )
