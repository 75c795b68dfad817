"""FlatNormalizationTask's cp_pipe API: run(), measureScales(), config, metadata.

The reference numbers come from the loop-based oracle in ``task_oracle`` (written from the
description of cp_pipe's algorithm), not from calibreg's engine.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from task_oracle import PropertyListLike, cp_pipe_inputs, make_flats, reference_scales

from calibreg.errors import InputError
from calibreg.task import (
    CpFlatNormalizationTask,
    CpFlatNormalizationTaskConfig,
    FieldValidationError,
    FlatNormalizationTask,
    FlatNormalizationTaskConfig,
    Struct,
    TaskMetadata,
)

EXPOSURES = [2024060100011, 2024060100012, 2024060100013, 2024060100014, 2024060100015]


def _task(**overrides) -> FlatNormalizationTask:
    return FlatNormalizationTask(config=FlatNormalizationTaskConfig(**overrides))


def _rel(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) / np.asarray(b) - 1.0)))


@pytest.fixture(scope="module")
def flats():
    return make_flats({10: 4, 11: 4, 12: 4, 13: 4}, EXPOSURES)


# --------------------------------------------------------------------------- compatibility


def test_aliases_are_the_same_classes() -> None:
    assert CpFlatNormalizationTask is FlatNormalizationTask
    assert CpFlatNormalizationTaskConfig is FlatNormalizationTaskConfig
    assert FlatNormalizationTask._DefaultName == "flatNorm"
    assert FlatNormalizationTask.canMultiprocess is True


@pytest.mark.parametrize("plain", [True, False], ids=["dict", "get-object"])
def test_detector_level_reproduces_reference_on_complete_data(flats, plain: bool) -> None:
    mds, dims = cp_pipe_inputs(flats, plain=plain)
    e_ref, g_ref = reference_scales(flats.det_bg, flats.det_n, iterations=10)
    task = _task(method="alternating", scaleMaxIter=10, tolerance=0.0)
    result = task.run(mds, dims, flats.camera)
    assert isinstance(result, Struct)
    sol = result.solution
    assert _rel(sol.exp_scales, e_ref) < 1e-9
    assert _rel(sol.row_scales, g_ref) < 1e-9
    # The default exact optimum agrees too: the reference is right on complete data.
    exact = _task().run(mds, dims, flats.camera).solution
    assert exact.method == "exact"
    assert _rel(exact.exp_scales, e_ref) < 1e-9
    assert _rel(exact.row_scales, g_ref) < 1e-9


def test_amp_level_reproduces_reference_on_complete_data(flats) -> None:
    mds, dims = cp_pipe_inputs(flats)
    e_ref, g_ref = reference_scales(flats.amp_bg, flats.amp_n, iterations=10)
    out = _task(level="AMP", method="alternating", tolerance=0.0).run(mds, dims, flats.camera)
    assert _rel(out.solution.exp_scales, e_ref) < 1e-9
    assert _rel(out.solution.row_scales, g_ref) < 1e-9
    # detScale is read from each (detector, amp) row (the reference reads detIdx + ampIdx).
    for k, (det, amp) in enumerate(flats.amp_rows):
        assert out.outputScales["detScale"][det][amp] == pytest.approx(g_ref[k], rel=1e-9)


def test_output_scales_have_exactly_cp_pipes_structure(flats) -> None:
    mds, dims = cp_pipe_inputs(flats)
    out = _task().run(mds, dims, flats.camera).outputScales
    assert set(out) == {"expScale", "detScale"}
    assert list(out["expScale"]) == flats.detectors
    assert list(out["detScale"]) == flats.detectors
    n_values = 0
    for det in flats.detectors:
        assert type(det) is int
        names = [a.getName() for a in flats.camera[det]]
        assert list(out["expScale"][det]) == names
        for amp in names:
            per_exp = out["expScale"][det][amp]
            assert list(per_exp) == EXPOSURES
            assert all(type(e) is int for e in per_exp)
            assert all(type(v) is float for v in per_exp.values())
            n_values += len(per_exp)
        assert type(out["detScale"][det]) is float
    assert n_values == sum(len(flats.camera[d]) for d in flats.detectors) * len(EXPOSURES)
    # Plain JSON-able data (what cp_pipe's StructuredDataDict holds).
    json.dumps(out)

    amp_out = _task(level="AMP").run(mds, dims, flats.camera).outputScales
    for det in flats.detectors:
        assert list(amp_out["detScale"][det]) == [a.getName() for a in flats.camera[det]]
        assert all(type(v) is float for v in amp_out["detScale"][det].values())


def test_dead_amplifier_is_left_out_not_fitted_as_one_adu(flats) -> None:
    """SPEC §6 defect 1: the reference fits a NaN amplifier as a background of 1.0."""
    mds, dims = cp_pipe_inputs(flats)
    dead_det, dead_amp = 11, 1
    dead_row = flats.amp_rows.index((dead_det, flats.camera[dead_det][dead_amp].getName()))
    for md, dim in zip(mds, dims, strict=True):
        if dim["detector"] == dead_det:
            md[f"AMP_MEDIAN_{dead_amp}"] = math.nan
            md[f"AMP_N_{dead_amp}"] = 0
    sol = _task(level="AMP").run(mds, dims, flats.camera).solution

    # Exact optimum on the remaining data: the oracle iterated to convergence without the row.
    keep = [i for i in range(len(flats.amp_rows)) if i != dead_row]
    e_opt, g_opt = reference_scales(flats.amp_bg[keep], flats.amp_n[keep], iterations=3000)
    assert _rel(sol.exp_scales, e_opt) < 1e-12
    assert _rel(sol.row_scales[keep], g_opt) < 1e-12
    assert sol.row_flagged[dead_row]
    assert sol.row_flagged.sum() == 1
    # The flagged row gets the geometric mean of the others' G (a usable divisor).
    assert sol.row_scales[dead_row] == pytest.approx(np.exp(np.log(g_opt).mean()), rel=1e-12)

    # The reference: background 1.0 with its initial weight 1. Its scale for the dead
    # amplifier comes out as ~1/E (3.0e-4 with this seed) instead of ~1, and it pulls every
    # other scale by ~1e-7.
    bg_ref, n_ref = flats.amp_bg.copy(), flats.amp_n.copy()
    bg_ref[dead_row], n_ref[dead_row] = 1.0, 1.0
    e_bad, g_bad = reference_scales(bg_ref, n_ref, iterations=10)
    assert g_bad[dead_row] < 1e-3 < 0.5 < sol.row_scales[dead_row]
    assert 1e-8 < _rel(e_bad, e_opt) < 1e-6


def test_mixed_16_and_8_amplifier_camera() -> None:
    """SPEC §6 defect 3: rows are per-detector offsets, not detIdx * nAmp of the first."""
    flats = make_flats({0: 16, 191: 8, 5: 16}, EXPOSURES[:3], noise=0.0, seed=3)
    mds, dims = cp_pipe_inputs(flats)
    out = _task(level="AMP").run(mds, dims, flats.camera)
    assert out.solution.shape == (40, 3)
    assert [len(out.outputScales["detScale"][d]) for d in (0, 5, 191)] == [16, 16, 8]
    # Noise-free data: every amplifier's G is its true response up to one common factor.
    g_true = flats.amp_bg[:, 0] / flats.amp_bg[0, 0]
    got = np.array([out.outputScales["detScale"][d][a] for d, a in flats.amp_rows])
    assert _rel(got / got[0], g_true) < 1e-12
    assert len(out.outputScales["expScale"][191]) == 8


def test_missing_inputs_are_nan_with_zero_weight(flats) -> None:
    mds, dims = cp_pipe_inputs(flats)
    drop = 7
    del mds[drop], dims[drop]
    task = _task()
    sol = task.run(mds, dims, flats.camera).solution
    assert task.solve.metadata["nMissing"] == 1
    assert sol.used.sum() == flats.det_bg.size - 1
    assert not sol.used[drop // len(EXPOSURES), drop % len(EXPOSURES)]
    # Same answer as solving the matrix with that entry NaN (zero weight, not count 1).
    bg = flats.det_bg.copy()
    bg[drop // len(EXPOSURES), drop % len(EXPOSURES)] = np.nan
    direct = _task().measureScales(bg, flats.det_n)
    np.testing.assert_allclose(sol.exp_scales, direct.expScales, rtol=1e-13)
    np.testing.assert_allclose(sol.row_scales, direct.detScales, rtol=1e-13)


def test_measure_scales_matches_reference_and_returns_g_times_e(flats) -> None:
    e_ref, g_ref = reference_scales(flats.det_bg, flats.det_n, iterations=10)
    task = _task(method="alternating", tolerance=0.0)
    res = task.measureScales(flats.det_bg, flats.det_n, iterations=10)
    assert _rel(res.expScales, e_ref) < 1e-9
    assert _rel(res.detScales, g_ref) < 1e-9
    np.testing.assert_allclose(res.bgModel, res.detScales[:, None] * res.expScales[None, :])
    # Without counts, and with the default exact method.
    e1, g1 = reference_scales(flats.det_bg, None, iterations=10)
    res = _task().measureScales(flats.det_bg)
    assert _rel(res.expScales, e1) < 1e-9
    assert _rel(res.detScales, g1) < 1e-9


# --------------------------------------------------------------------------- errors


def test_missing_dimension_raises_key_error_naming_it(flats) -> None:
    mds, dims = cp_pipe_inputs(flats)
    del dims[3]["exposure"]
    with pytest.raises(KeyError, match="'exposure'"):
        _task().run(mds, dims, flats.camera)
    mds, dims = cp_pipe_inputs(flats)
    dims[0] = {"exposure": EXPOSURES[0]}
    with pytest.raises(KeyError, match="'detector'"):
        _task().run(mds, dims, flats.camera)


def test_missing_metadata_key_raises_key_error_naming_key_and_where(flats) -> None:
    mds, dims = cp_pipe_inputs(flats)
    del mds[2]["DETECTOR_N"]
    exp, det = dims[2]["exposure"], dims[2]["detector"]
    with pytest.raises(KeyError, match=rf"exposure {exp}, detector {det} has no 'DETECTOR_N'"):
        _task().run(mds, dims, flats.camera)

    mds, dims = cp_pipe_inputs(flats, plain=False)
    del mds[0]._values["AMP_MEDIAN_3"]
    with pytest.raises(KeyError, match="AMP_MEDIAN_3"):
        _task(level="AMP").run(mds, dims, flats.camera)

    class Raising(PropertyListLike):
        def get(self, key, default=None):
            if key == "DETECTOR_MEDIAN":
                raise LookupError("no such key")
            return super().get(key, default)

    mds, dims = cp_pipe_inputs(flats)
    mds[4] = Raising(mds[4])
    with pytest.raises(KeyError, match="DETECTOR_MEDIAN"):
        _task().run(mds, dims, flats.camera)


def test_other_input_errors(flats) -> None:
    mds, dims = cp_pipe_inputs(flats)
    with pytest.raises(KeyError, match="detector 12 is not in the camera"):
        _task().run(mds, dims, {d: a for d, a in flats.camera.items() if d != 12})
    with pytest.raises(ValueError, match="pair up"):
        _task().run(mds[:-1], dims, flats.camera)
    with pytest.raises(ValueError, match="given twice"):
        _task().run([*mds, mds[0]], [*dims, dims[0]], flats.camera)
    mds[0]["AMP_NAME_2"] = "C07"
    with pytest.raises(ValueError, match="AMP_NAME_2"):
        _task(level="AMP").run(mds, dims, flats.camera)
    # Inverse-variance weights need the sigmas.
    mds, dims = cp_pipe_inputs(flats)
    del mds[1]["DETECTOR_SIGMA"]
    with pytest.raises(KeyError, match="DETECTOR_SIGMA"):
        _task(weights="inverse-variance").run(mds, dims, flats.camera)
    _task().run(mds, dims, flats.camera)  # fine with count weights


# --------------------------------------------------------------------------- config


def test_config_defaults_match_cp_pipe_and_calibreg() -> None:
    c = FlatNormalizationTaskConfig()
    assert (c.level, c.scaleMaxIter, c.doDownSelection, c.downSelectionValue) == (
        "DETECTOR",
        10,
        False,
        None,
    )
    assert (c.method, c.tolerance, c.weights, c.clipSigma, c.maxClipIter) == (
        "exact",
        1e-12,
        "counts",
        5.0,
        20,
    )
    c.validate()
    d = c.toDict()
    assert d["level"] == "DETECTOR"
    assert d["solve"] == {}
    assert FlatNormalizationTaskConfig.fromDict(d) == c
    json.dumps(d)


def test_config_choices_match_the_engine() -> None:
    from calibreg.engine import METHODS, WEIGHTS

    assert set(FlatNormalizationTaskConfig.method.allowed) == set(METHODS)
    assert set(FlatNormalizationTaskConfig.weights.allowed) == set(WEIGHTS)


def test_config_assignment_is_checked() -> None:
    c = FlatNormalizationTaskConfig()
    with pytest.raises(AttributeError, match="no field 'scaleMaxIters'"):
        c.scaleMaxIters = 5
    with pytest.raises(FieldValidationError, match="'AMPS' is not allowed"):
        c.level = "AMPS"
    with pytest.raises(ValueError, match="method"):
        c.method = "fast"
    with pytest.raises(FieldValidationError, match="must be of type int"):
        c.scaleMaxIter = 2.5
    with pytest.raises(FieldValidationError, match="must be of type int"):
        c.scaleMaxIter = True
    with pytest.raises(InputError, match="downSelectionField"):
        c.downSelectionField = "target_name"
    c.tolerance = 0  # an int is accepted for a float field
    assert c.tolerance == 0.0
    assert type(c.tolerance) is float
    c.scaleMaxIter = np.int64(20)
    assert type(c.scaleMaxIter) is int
    c.freeze()
    with pytest.raises(FieldValidationError, match="frozen"):
        c.level = "AMP"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"doDownSelection": True}, "downSelectionValue"),
        ({"doDownSelection": True, "downSelectionValue": "  "}, "downSelectionValue"),
        ({"scaleMaxIter": 0}, "scaleMaxIter"),
        ({"scaleMaxIter": -3}, "scaleMaxIter"),
        ({"tolerance": -1e-9}, "tolerance"),
        ({"tolerance": math.inf}, "tolerance"),
        ({"clipSigma": 0.0}, "clipSigma"),
        ({"maxClipIter": -1}, "maxClipIter"),
        ({"cgMaxIter": 0}, "cgMaxIter"),
        ({"level": None}, "level"),
    ],
)
def test_config_validate_refuses(overrides: dict, field: str) -> None:
    c = FlatNormalizationTaskConfig(**overrides)
    with pytest.raises(FieldValidationError) as info:
        c.validate()
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, InputError)
    with pytest.raises(FieldValidationError):
        FlatNormalizationTask(config=c).measureScales(np.ones((2, 2)))


def test_down_selection_is_ignored_by_run(flats) -> None:
    mds, dims = cp_pipe_inputs(flats)
    plain = _task().run(mds, dims, flats.camera).outputScales
    sel = _task(doDownSelection=True, downSelectionValue="flat").run(mds, dims, flats.camera)
    assert sel.outputScales == plain


# --------------------------------------------------------------------------- metadata


def test_run_records_timers_and_counters(flats) -> None:
    mds, dims = cp_pipe_inputs(flats)
    task = _task()
    task.run(mds, dims, flats.camera)
    full = task.getFullMetadata()
    assert isinstance(full, TaskMetadata)
    assert set(full.metadata) == {
        "flatNorm",
        "flatNorm:assemble",
        "flatNorm:solve",
        "flatNorm:persist",
    }
    top, solve = full["flatNorm"], full["flatNorm:solve"]
    for md in (top, solve):
        for key in ("runStartUtc", "runStartCpuTime", "runEndUtc", "runEndCpuTime", "runDuration"):
            assert len(md.getArray(key)) == 1, key
        assert md.getScalar("runEndCpuTime") >= md.getScalar("runStartCpuTime")
        assert md.getScalar("runEndUtc") >= md.getScalar("runStartUtc")
    assert solve["nExposures"] == len(EXPOSURES)
    assert solve["nRows"] == 4
    assert solve["converged"] is True
    assert solve["method"] == "exact"
    assert solve["nRejected"] == 0
    assert solve["nMissing"] == 0
    assert solve["rms"] > 0
    assert solve["iterations"] >= 1
    # Strict JSON, and it round-trips.
    text = full.to_json()
    assert "NaN" not in text
    assert TaskMetadata.from_json(text) == full
    # A second run appends timings; emptyMetadata clears the tree.
    task.run(mds, dims, flats.camera)
    assert len(task.metadata.getArray("runStartUtc")) == 2
    task.emptyMetadata()
    assert len(task.metadata) == 0
    assert len(task.solve.metadata) == 0
