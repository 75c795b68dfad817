"""``versions verify`` and the cp_pipe export of stored versions (issue #5), on both backends."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from calibreg_cli.main import app
from sqlalchemy import text
from typer.testing import CliRunner

from calibreg.errors import ConflictError
from calibreg.services.solve import verify_version
from tests.publish.pubdata import unprotected_inputs


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout


# --------------------------------------------------------------------------- 11. verify
def test_verify_fresh_version_then_detects_a_replaced_statistic(pub) -> None:
    det_version = pub.solve()
    amp_version = pub.solve(level="AMP")
    for v in (det_version, amp_version):
        res = verify_version(pub.registry, v)
        assert res["inputs_changed"] is False
        assert res["same_exposures"] is True
        assert res["max_rel_diff"] <= 1e-12
        assert res["ok"] is True
    code, out = _cli("versions", "verify", str(det_version), "--db", pub.url, "--format", "json")
    assert code == 0, out
    assert json.loads(out)["inputs_changed"] is False

    # Replacing one detector-level statistic (one exposure, one detector) by 0.1 % more is
    # refused: it is an input of det_version. Should it slip past (an owner disabling the
    # triggers), verify is the detector.
    stats = pub.sim.stats
    one = stats[stats["amp"].isna()].iloc[[7]].copy()
    one["median"] *= 1.001
    with pytest.raises(ConflictError, match=rf"inputs of calibration version\(s\) {det_version}\b"):
        pub.replace_stats(one, "one-statistic")
    pub.scale_detector(int(one["detector"].iloc[0]), 1.001, exposure=int(one["exposure"].iloc[0]))

    res = verify_version(pub.registry, det_version)
    assert res["inputs_changed"] is True
    assert res["ok"] is False
    assert res["max_rel_diff"] > 1e-12  # the re-solve moves with its input
    code, out = _cli("versions", "verify", str(det_version), "--db", pub.url, "--format", "json")
    assert code != 0
    assert json.loads(out)["inputs_changed"] is True
    # The AMP-level version does not read detector-level statistics: its inputs are unchanged.
    res = verify_version(pub.registry, amp_version)
    assert res["inputs_changed"] is False
    assert res["ok"] is True

    # Replacing an amplifier statistic changes the AMP version's inputs.
    amp_row = stats[stats["amp"].notna() & np.isfinite(stats["median"])].iloc[[3]].copy()
    amp_row["median"] *= 0.999
    with pytest.raises(ConflictError, match=rf"inputs of calibration version\(s\) {amp_version}\b"):
        pub.replace_stats(amp_row, "one-amp-statistic")
    with unprotected_inputs(pub.engine) as conn:
        conn.execute(
            text(
                "UPDATE amp_stats SET median = median * 0.999 WHERE exposure_id = :x "
                "AND detector_id = :d AND amp_index = (SELECT amp_index FROM amplifier "
                "WHERE detector_id = :d AND name = :a)"
            ),
            {
                "x": int(amp_row["exposure"].iloc[0]),
                "d": int(amp_row["detector"].iloc[0]),
                "a": str(amp_row["amp"].iloc[0]),
            },
        )
    assert verify_version(pub.registry, amp_version)["inputs_changed"] is True
    # The stored versions themselves never changed.
    assert pub.registry.version(det_version)["seq"] == 1


# --------------------------------------------------------------------------- 12. cp_pipe export
def _amp_names(pub) -> dict[int, list[str]]:
    from sqlalchemy import text

    with pub.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT detector_id, name FROM amplifier ORDER BY detector_id, amp_index")
        ).all()
    out: dict[int, list[str]] = {}
    for det, name in rows:
        out.setdefault(int(det), []).append(str(name))
    return out


def _check_exp_scale(pub, structure: dict, version: int, amps: dict[int, list[str]]) -> None:
    reg = pub.registry
    exp = reg.scales(version, "exposure")
    exp_map = dict(zip(exp["exposure"].astype(int), exp["scale"].astype(float), strict=True))
    quantum_exposures = {int(e) for e in pub.sim.exposures["id"]}
    assert set(exp_map) == quantum_exposures
    detectors = {int(d) for d in reg.scales(version)["detector"]}
    assert len(detectors) == 189  # every science detector of the quantum
    exp_scale = structure["expScale"]
    assert set(exp_scale) == detectors
    for det, per_amp in exp_scale.items():
        assert type(det) is int
        assert list(per_amp) == amps[det]  # every amplifier, camera order
        for amp, per_exp in per_amp.items():
            assert type(amp) is str
            assert set(per_exp) == quantum_exposures
            for e, value in per_exp.items():
                assert type(e) is int
                assert type(value) is float
                assert value == exp_map[e]


def test_cp_pipe_export_detector_level(pub, tmp_path) -> None:
    v = pub.solve()
    structure = pub.registry.cp_pipe(v)
    assert set(structure) == {"expScale", "detScale"}
    _check_exp_scale(pub, structure, v, _amp_names(pub))
    rows = pub.registry.scales(v)
    det_scale = structure["detScale"]
    assert set(det_scale) == {int(d) for d in rows["detector"]}
    for det, scale in zip(rows["detector"], rows["scale"], strict=True):
        assert type(det_scale[int(det)]) is float
        assert det_scale[int(det)] == scale

    # Written as YAML the keys keep their types (ints stay ints) and the values are exact.
    path = tmp_path / "scales.yaml"
    code, _ = _cli("export", str(v), "--format", "cp_pipe", "-o", str(path), "--db", pub.url)
    assert code == 0
    loaded = yaml.safe_load(path.read_text())
    assert loaded["detScale"] == det_scale
    assert loaded["expScale"] == structure["expScale"]


def test_cp_pipe_export_amp_level_reads_each_rows_own_scale(pub) -> None:
    v = pub.solve(level="AMP")
    reg = pub.registry
    structure = reg.cp_pipe(v)
    amps = _amp_names(pub)
    _check_exp_scale(pub, structure, v, amps)
    rows = reg.scales(v)
    assert len(rows) == 189 * 16
    det_scale = structure["detScale"]
    assert set(det_scale) == {int(d) for d in rows["detector"]}
    for det, per_amp in det_scale.items():
        assert type(det) is int
        assert list(per_amp) == amps[det]
        assert all(type(a) is str and type(s) is float for a, s in per_amp.items())
    # Each (detector, amp) carries its own row's scale (not cp_pipe's detIdx + ampIdx row).
    for det, amp, scale in zip(rows["detector"], rows["amp"], rows["scale"], strict=True):
        got = det_scale[int(det)][str(amp)]
        assert got == scale or (np.isnan(got) and np.isnan(scale)), (det, amp)
    # Distinct detectors really report distinct values (the reference's defect 2 would repeat).
    firsts = [per_amp[next(iter(per_amp))] for per_amp in det_scale.values()]
    assert len(set(firsts)) > 100
    # The dead amplifier is present too, flagged in the version.
    dead_det, dead_amp = pub.sim.dead
    assert dead_amp in det_scale[dead_det]
    flagged = rows[(rows["detector"] == dead_det) & (rows["amp"] == dead_amp)]["flagged"]
    assert bool(flagged.iloc[0]) is True

    # As JSON (the CLI's default) object keys are strings and the values exact.
    code, out = _cli("export", str(v), "--format", "cp_pipe", "--db", pub.url)
    assert code == 0
    loaded = json.loads(out)
    assert {int(k) for k in loaded["detScale"]} == set(det_scale)
    for det, per_amp in det_scale.items():
        assert loaded["detScale"][str(det)] == per_amp
