"""Compatibility with the reference where it is right, and each SPEC §6 defect where it is not.

Every ``measure_defect_*`` function returns the reference oracle's number and calibreg's
number on the same data; the tests assert that the first is wrong and the second right.
Run this file as a script to print the numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_reference import (
    make_truth,
    max_rel,
    normalized,
    reference_measure_scales,
    reference_run_amp,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from calibreg.engine import measure_scales, to_cp_pipe_scales

# --------------------------------------------------------------------------- compatibility


@settings(max_examples=20, deadline=None)
@given(n_row=st.integers(2, 40), n_exp=st.integers(2, 30), seed=st.integers(0, 2**32 - 1))
def test_alternating_reproduces_reference_on_complete_data(n_row, n_exp, seed):
    rng = np.random.default_rng(seed)
    G, E, N = make_truth(n_row, n_exp, rng)
    B = G[:, None] * E * np.exp(rng.normal(0, 1e-2, (n_row, n_exp)))
    ref = reference_measure_scales(B, N, iterations=10)
    sol = measure_scales(B, N, method="alternating", max_iter=10, tol=0.0)
    assert sol.iterations <= 10  # fewer only if a sweep changed nothing at all
    assert max_rel(sol.exp_scales, ref.exp_scales) < 1e-9
    assert max_rel(sol.row_scales, ref.det_scales) < 1e-9


@settings(max_examples=20, deadline=None)
@given(n_row=st.integers(2, 40), n_exp=st.integers(2, 30), seed=st.integers(0, 2**32 - 1))
def test_exact_equals_converged_alternating_on_complete_data(n_row, n_exp, seed):
    rng = np.random.default_rng(seed)
    G, E, N = make_truth(n_row, n_exp, rng)
    B = G[:, None] * E * np.exp(rng.normal(0, 1e-2, (n_row, n_exp)))
    exact = measure_scales(B, N)
    alt = measure_scales(B, N, method="alternating", tol=1e-14)
    assert alt.converged
    assert max_rel(exact.exp_scales, alt.exp_scales) < 1e-10
    assert max_rel(exact.row_scales, alt.row_scales) < 1e-10


# --------------------------------------------------------------------------- AMP-level data


def _amp_camera(amps_per_det, n_exp, seed, dead=None):
    """Per-(exposure, detector) amp medians and counts as cp_pipe's run() receives them."""
    rng = np.random.default_rng(seed)
    detectors = list(range(10, 10 + len(amps_per_det)))
    exposures = [1000 + 7 * j for j in range(n_exp)]
    amp_names = {
        d: [f"C{i:02d}" for i in range(n)] for d, n in zip(detectors, amps_per_det, strict=True)
    }
    labels = [(d, a) for d in detectors for a in amp_names[d]]
    G = rng.uniform(0.6, 1.4, len(labels))
    E = np.exp(rng.uniform(np.log(2e3), np.log(5e4), n_exp))
    B = G[:, None] * E
    N = rng.integers(500, 4000, B.shape).astype(float)
    if dead is not None:
        B[labels.index(dead), :] = np.nan
    medians, counts = {}, {}
    for j, e in enumerate(exposures):
        for d in detectors:
            rows = [labels.index((d, a)) for a in amp_names[d]]
            medians[(e, d)] = list(B[rows, j])
            counts[(e, d)] = list(N[rows, j])
    return detectors, exposures, amp_names, labels, B, N, G, E, medians, counts


def measure_defect_1() -> dict[str, float]:
    """A dead amplifier (NaN median in every exposure) at AMP level."""
    dead = (11, "C02")
    dets, exps, amps, labels, B, N, G, E, med, cnt = _amp_camera([4, 4, 4], 6, 1, dead=dead)
    ref = reference_run_amp(med, cnt, dets, exps, amps)
    sol = measure_scales(B, N)
    ours = to_cp_pipe_scales(sol, level="AMP", row_labels=labels, exposure_ids=exps, amp_names=amps)
    valid = np.isfinite(B)
    _, En = normalized(G, E, N, valid)
    ref_E = np.array([ref["expScale"][dets[0]]["C00"][e] for e in exps])
    our_E = np.array([ours["expScale"][dets[0]]["C00"][e] for e in exps])
    # Read the dead amp's own row in the reference (row = position * nAmp + amp index), so the
    # number shows defect 1 alone, not defect 2.
    ref_direct = reference_measure_scales(*_reference_matrix(med, cnt, dets, exps, amps))
    dead_row = 1 * 4 + 2
    return {
        "ref_dead_amp_G": float(ref_direct.det_scales[dead_row]),
        "ref_dead_amp_G_times_geomean_E": float(
            ref_direct.det_scales[dead_row] * np.exp(np.mean(np.log(ref_E)))
        ),
        "ref_E_max_rel_error": max_rel(ref_E, En),
        "ours_dead_amp_G": ours["detScale"][11]["C02"],
        "ours_dead_amp_flagged": float(sol.row_flagged[labels.index(dead)]),
        "ours_E_max_rel_error": max_rel(our_E, En),
    }


def _reference_matrix(med, cnt, dets, exps, amps):
    """The reference's bgMatrix/bgCounts for equal amp counts (defect 1 included)."""
    n_amp = len(amps[dets[0]])
    bg = np.zeros((len(dets) * n_amp, len(exps)))
    counts = np.ones_like(bg)
    for (e, d), values in med.items():
        for k, v in enumerate(values):
            r, j = dets.index(d) * n_amp + k, exps.index(e)
            bg[r, j] = v if np.isfinite(v) else 1.0
            counts[r, j] = cnt[(e, d)][k]
    return bg, counts


def test_defect_1_dead_amplifier_is_not_fitted_as_one_adu():
    m = measure_defect_1()
    assert m["ref_dead_amp_G"] < 1e-2  # fitted as a real 1 ADU: scale ~ 1/E
    assert m["ref_dead_amp_G_times_geomean_E"] == pytest.approx(1.0, rel=0.5)
    assert m["ref_E_max_rel_error"] > 1e-5
    assert m["ours_dead_amp_flagged"] == 1.0
    assert 0.6 < m["ours_dead_amp_G"] < 1.4
    assert m["ours_E_max_rel_error"] < 1e-12


def measure_defect_2() -> dict[str, float]:
    """AMP-level detScale read from row detIdx + ampIdx."""
    dets, exps, amps, labels, B, N, G, E, med, cnt = _amp_camera([4, 4, 4], 5, 2)
    ref = reference_run_amp(med, cnt, dets, exps, amps)
    sol = measure_scales(B, N)
    ours = to_cp_pipe_scales(sol, level="AMP", row_labels=labels, exposure_ids=exps, amp_names=amps)
    Gn, _ = normalized(G, E, N, np.isfinite(B))
    ref_err = [abs(ref["detScale"][d][a] / Gn[i] - 1) for i, (d, a) in enumerate(labels)]
    our_err = [abs(ours["detScale"][d][a] / Gn[i] - 1) for i, (d, a) in enumerate(labels)]
    return {
        "ref_wrong_rows": float(sum(e > 1e-6 for e in ref_err)),
        "ref_max_rel_error": float(max(ref_err)),
        "ours_wrong_rows": float(sum(e > 1e-12 for e in our_err)),
        "ours_max_rel_error": float(max(our_err)),
        "rows": float(len(labels)),
    }


def test_defect_2_amp_detscale_reads_its_own_row():
    m = measure_defect_2()
    assert m["ref_wrong_rows"] >= 8  # every detector but the first
    assert m["ref_max_rel_error"] > 0.05
    assert m["ours_wrong_rows"] == 0
    assert m["ours_max_rel_error"] < 1e-12


def measure_defect_3() -> dict[str, float]:
    """A camera mixing 16- and 8-amplifier detectors (LSSTCam's wavefront sensors)."""
    dets, exps, amps, labels, B, N, G, E, med, cnt = _amp_camera([16, 8, 16], 5, 3)
    ref = reference_run_amp(med, cnt, dets, exps, amps)
    sol = measure_scales(B, N)
    ours = to_cp_pipe_scales(sol, level="AMP", row_labels=labels, exposure_ids=exps, amp_names=amps)
    Gn, _ = normalized(G, E, N, np.isfinite(B))
    # Judge the reference on the first detector only (defect 2 spares it): its amps 8–15
    # were overwritten by the 8-amp detector's rows, and the never-filled rows 16–31 (zeros,
    # weight 1) shift the normalization of all the others.
    first = [i for i, (d, _) in enumerate(labels) if d == dets[0]]
    ref_err = [abs(ref["detScale"][dets[0]][labels[i][1]] / Gn[i] - 1) for i in first]
    our_err = [abs(ours["detScale"][d][a] / Gn[i] - 1) for i, (d, a) in enumerate(labels)]
    return {
        "ref_first_detector_wrong_amps": float(sum(e > 1e-6 for e in ref_err)),
        "ref_first_detector_max_rel_error": float(max(ref_err)),
        "ours_wrong_rows": float(sum(e > 1e-12 for e in our_err)),
        "ours_max_rel_error": float(max(our_err)),
        "ours_amps_per_detector": float(len(ours["detScale"][dets[1]])),
    }


def test_defect_3_mixed_amplifier_counts():
    m = measure_defect_3()
    assert m["ref_first_detector_wrong_amps"] >= 8
    assert m["ref_first_detector_max_rel_error"] > 0.01
    assert m["ours_wrong_rows"] == 0
    assert m["ours_max_rel_error"] < 1e-12
    assert m["ours_amps_per_detector"] == 8


def measure_defect_4() -> dict[str, float]:
    rng = np.random.default_rng(4)
    G, E, N = make_truth(20, 6, rng)
    B = G[:, None] * E
    ref = reference_measure_scales(B, N)
    sol = measure_scales(B, N)
    return {
        "ref_model_max_rel_error": max_rel(ref.bg_model, B),
        "ours_model_max_rel_error": max_rel(sol.model, B),
    }


def test_defect_4_model_is_G_times_E():
    m = measure_defect_4()
    assert m["ref_model_max_rel_error"] > 0.1
    assert m["ours_model_max_rel_error"] < 1e-12


def measure_defect_5() -> dict[str, float]:
    """Masked entries keep their weight: E depends on units; a zero median keeps full weight."""
    # (a) unit weights, one NaN, a handful of rows: E of that exposure is pulled towards 1.
    rng = np.random.default_rng(5)
    G, E, _ = make_truth(6, 4, rng)
    E[:] = [5e4, 3e4, 4e4, 2e4]
    B = G[:, None] * E
    B[2, 0] = np.nan
    valid = np.isfinite(B)
    _, En = normalized(G, E, np.ones_like(B), valid)
    ref = reference_measure_scales(B)
    sol = measure_scales(B)
    # (b) 189 detectors, real counts, one detector's median exactly 0.0.
    G2, E2, N2 = make_truth(189, 5, rng)
    E2[:] = 3e4
    B2 = G2[:, None] * E2
    B2[17, 2] = 0.0
    _, En2 = normalized(G2, E2, N2, B2 > 0)
    ref2 = reference_measure_scales(B2, N2)
    sol2 = measure_scales(B2, N2)
    return {
        "ref_nan_E_max_rel_error": max_rel(ref.exp_scales, En),
        "ours_nan_E_max_rel_error": max_rel(sol.exp_scales, En),
        "ref_zero_E_shift": float(ref2.exp_scales[2] / En2[2] - 1),
        "ours_zero_E_shift": float(sol2.exp_scales[2] / En2[2] - 1),
    }


def test_defect_5_masked_entries_lose_their_weight():
    m = measure_defect_5()
    assert m["ref_nan_E_max_rel_error"] > 0.5
    assert m["ours_nan_E_max_rel_error"] < 1e-12
    assert m["ref_zero_E_shift"] < -0.03
    assert abs(m["ours_zero_E_shift"]) < 1e-12


def _weakly_connected(shared: int = 2, seed: int = 6):
    """189 detectors, two groups of 5 exposures; the groups share ``shared`` detectors."""
    rng = np.random.default_rng(seed)
    G, E, N = make_truth(189, 10, rng)
    B = G[:, None] * E
    valid = np.zeros(B.shape, bool)
    valid[:100, :5] = True
    valid[100 - shared :, 5:] = True
    return np.where(valid, B, np.nan), N, G, E, valid


def measure_defect_6() -> dict[str, float]:
    B, N, G, E, valid = _weakly_connected()
    Gn, En = normalized(G, E, N, valid)

    def err(sol):
        return max(max_rel(sol.row_scales, Gn), max_rel(sol.exp_scales, En))

    ten = measure_scales(B, N, method="alternating", max_iter=10, tol=0.0)
    converged = measure_scales(B, N, method="alternating", max_iter=100_000, tol=1e-12)
    exact = measure_scales(B, N)
    ref = reference_measure_scales(np.where(valid, B, np.nan), np.where(valid, N, 0.0))
    sweeps_to_reference_precision = next(
        k
        for k in range(10, 100_000, 1)
        if err(measure_scales(B, N, method="alternating", max_iter=k, tol=0.0)) < 1e-9
    )
    return {
        "ten_sweeps_max_rel_error": err(ten),
        "ref_oracle_max_rel_error": max(max_rel(ref.det_scales, Gn), max_rel(ref.exp_scales, En)),
        "sweeps_to_1e-9": float(sweeps_to_reference_precision),
        "alternating_sweeps_to_tol_1e-12": float(converged.iterations),
        "alternating_converged_max_rel_error": err(converged),
        "exact_max_rel_error": err(exact),
        "exact_cg_steps": float(exact.iterations),
    }


def test_defect_6_weakly_connected_data_needs_convergence_test():
    m = measure_defect_6()
    assert m["ten_sweeps_max_rel_error"] > 1e-4
    assert m["sweeps_to_1e-9"] > 100
    assert m["alternating_converged_max_rel_error"] < 1e-9
    assert m["exact_max_rel_error"] < 1e-12


def test_defect_6_not_converged_is_reported():
    B, N, *_ = _weakly_connected()
    assert not measure_scales(B, N, method="alternating", max_iter=10).converged


def test_defect_6_cg_path_handles_weak_connection(monkeypatch):
    from calibreg.engine import solve

    B, N, G, E, valid = _weakly_connected(shared=1)
    Gn, En = normalized(G, E, N, valid)
    monkeypatch.setattr(solve, "_DENSE_FLOP_LIMIT", 0.0)  # CG only, no dense fallback
    sol = measure_scales(B, N)
    assert sol.converged
    assert max_rel(sol.row_scales, Gn) < 1e-12
    assert max_rel(sol.exp_scales, En) < 1e-12


def measure_defect_7() -> dict[str, float]:
    rng = np.random.default_rng(7)
    # (a) an exposure whose counts sum to zero.
    G, E, N = make_truth(20, 6, rng)
    B = G[:, None] * E
    N[:, 4] = 0.0
    try:
        reference_measure_scales(B, N)
        ref_raises = 0.0
    except ZeroDivisionError:
        ref_raises = 1.0
    sol = measure_scales(B, N)
    _, En = normalized(G, E, N, N > 0)
    # (b) a +5% satellite trail in one entry, 5 exposures.
    G2, E2, N2 = make_truth(189, 5, rng)
    clean = G2[:, None] * E2 * np.exp(rng.normal(0, 1e-4, (189, 5)))
    dirty = clean.copy()
    dirty[42, 3] *= 1.05
    ref_shift = (
        reference_measure_scales(dirty, N2).det_scales[42]
        / (reference_measure_scales(clean, N2).det_scales[42])
        - 1
    )
    robust_shift = (
        measure_scales(dirty, N2, method="robust").row_scales[42]
        / (measure_scales(clean, N2, method="robust").row_scales[42])
        - 1
    )
    return {
        "ref_zero_count_exposure_raises_ZeroDivisionError": ref_raises,
        "ours_zero_count_exposure_flagged": float(sol.exp_flagged[4]),
        "ours_zero_count_E_is_nan": float(np.isnan(sol.exp_scales[4])),
        "ours_other_E_max_rel_error": max_rel(np.delete(sol.exp_scales, 4), np.delete(En, 4)),
        "ref_outlier_G_shift": float(ref_shift),
        "robust_outlier_G_shift": float(robust_shift),
    }


def test_defect_7_zero_counts_and_outliers():
    m = measure_defect_7()
    assert m["ref_zero_count_exposure_raises_ZeroDivisionError"] == 1.0
    assert m["ours_zero_count_exposure_flagged"] == 1.0
    assert m["ours_zero_count_E_is_nan"] == 1.0
    assert m["ours_other_E_max_rel_error"] < 1e-12
    assert m["ref_outlier_G_shift"] > 0.005
    assert abs(m["robust_outlier_G_shift"]) < 1e-4


if __name__ == "__main__":  # print the numbers for the report
    for n in range(1, 8):
        for key, value in globals()[f"measure_defect_{n}"]().items():
            print(f"defect {n}  {key:50s} {value:.6g}")
