"""A version stores what a scientist needs to certify it (issue 8), on both backends.

Errors, goodness of fit, quality flags and the entries a robust fit rejected are stored with
the version (migration 0006), readable through the facade, the SQL views, the CLI and HTTP, and
as immutable as the scales. Ground truth comes from what the test injects into the statistics:
an outlying entry, a stuck detector.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from calibreg_cli.main import app as cli_app
from fastapi.testclient import TestClient
from sqlalchemy import exc, text
from typer.testing import CliRunner

from calibreg.domain.quality import (
    EXPOSURE_FLAGS,
    FLAG_BITS,
    FLAG_HELP,
    FLAGS,
    REJECTION_REASONS,
    ROW_FLAGS,
)
from calibreg.domain.quantum import QuantumSpec
from calibreg.engine import measure_scales
from calibreg.http.app import create_app
from calibreg.services.solve import SolveRequest, make_task
from calibreg.task import FlatNormalizationTaskConfig
from tests.publish.pubdata import FILTER, INSTRUMENT, T_BASE

OUTLIER = 1.5  # factor on one detector's background in one exposure


def _detector_of(pub, index: int = 3) -> int:
    return int(sorted(pub.sim.stats["detector"].unique())[index])


def _set_stuck(pub, detector: int, value: float = 0.5) -> None:
    with pub.engine.begin() as conn:
        n = conn.execute(
            text("UPDATE detector_stats SET median = :v WHERE detector_id = :d"),
            {"v": value, "d": detector},
        ).rowcount
    assert n >= 3


def _row_of(frame, detector: int) -> int:
    hit = frame.index[frame["detector"] == detector]
    assert len(hit) == 1
    return int(hit[0])


def test_quality_flag_table_is_the_engine_vocabulary(engine) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT bit, name, applies_to, description FROM quality_flag ORDER BY bit")
        ).all()
    assert [r.name for r in rows] == list(FLAGS)
    for r in rows:
        assert FLAG_BITS[r.name] == 1 << r.bit
        assert r.description == FLAG_HELP[r.name]
        where = {"row": r.name in ROW_FLAGS, "exposure": r.name in EXPOSURE_FLAGS}
        expected = "both" if all(where.values()) else next(k for k, v in where.items() if v)
        assert r.applies_to == expected
    # The rejection reasons the table admits are the engine's, and only those.
    with engine.connect() as conn:
        ddl = str(
            conn.execute(
                text(
                    "SELECT sql FROM sqlite_master WHERE name = 'version_rejected'"
                    if conn.dialect.name == "sqlite"
                    else "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conname = 'ck_version_rejected_reason' "
                    "AND conrelid = 'version_rejected'::regclass"
                )
            ).scalar_one()
        )
    import re

    admitted = re.findall(
        r"'([a-z_]+)'", ddl.split("reason", 1)[1] if "sqlite" in str(engine.url) else ddl
    )
    assert sorted(set(admitted)) == sorted(REJECTION_REASONS)


def test_robust_version_keeps_its_rejected_entries(pub) -> None:
    det = _detector_of(pub)
    exposures = sorted(int(e) for e in pub.sim.exposures["id"])
    target = exposures[2]
    pub.scale_detector(det, OUTLIER, exposure=target)
    v = pub.solve(method="robust")
    reg = pub.registry
    rejected = reg.rejected(v)
    # The injected entry is rejected with its residual (about log 1.5 against the clean fit)
    # and the reason. This data set (seed 5) also has one clean entry at 4.9 sigma, which a
    # 5-sigma clip may take too: anything else rejected must be at the noise level.
    hit = (rejected["detector"] == det) & (rejected["exposure"] == target)
    assert hit.sum() == 1
    rec = rejected[hit].iloc[0]
    assert rec["reason"] == "clipped"
    assert abs(rec["residual"] - math.log(OUTLIER)) < 0.01
    assert (rejected.loc[~hit, "residual"].abs() < 1e-3).all()
    assert set(rejected["reason"]) == {"clipped"}
    record = reg.version(v)
    assert record["n_rejected"] == len(rejected)
    assert record["provenance"]["diagnostics"]["n_rejected_by_reason"] == {"clipped": len(rejected)}
    # Missing and rejected are kept apart: the simulated missing frame is counted as missing.
    missing = record["provenance"]["diagnostics"]["n_missing_by_reason"]
    assert sum(missing.values()) == record["n_missing"] > 0
    # The stored statistics are those of the solve, bit for bit (a round trip of storage).
    data = reg.assemble(QuantumSpec(INSTRUMENT, FILTER, "DETECTOR"))
    sol = measure_scales(data.background, data.counts, sigma=data.sigma, method="robust")
    rows = reg.scales(v, "row")
    exps = reg.scales(v, "exposure")
    np.testing.assert_array_equal(rows["error"].to_numpy(float), sol.row_errors)
    np.testing.assert_array_equal(exps["error"].to_numpy(float), sol.exp_errors)
    np.testing.assert_array_equal(rows["chi2"].to_numpy(float), sol.chi2_row)
    np.testing.assert_array_equal(rows["dof"].to_numpy(float), sol.dof_row)
    np.testing.assert_array_equal(rows["flags"].to_numpy(np.int64), sol.row_flags)
    assert record["chi2"] == sol.chi2 and record["dof"] == sol.dof
    # dof = used entries − active rows − active exposures + 1 (one connected block).
    n_used = int(rows["n_used"].sum())
    active = int((rows["n_used"] > 0).sum()) + int((exps["n_used"] > 0).sum())
    assert record["dof"] == n_used - active + 1
    assert record["error_scale"] == sol.error_scale
    assert record["reduced_chi2"] == pytest.approx(sol.chi2 / sol.dof, rel=1e-15)
    # The fit view of the version marks that entry rejected and the missing one missing.
    fit = reg.fit(v)
    r, c = _row_of(rows, det), exposures.index(target)
    assert fit.rejected[r, c] and not fit.used[r, c]
    assert fit.rejected.sum() == len(rejected)
    assert abs(fit.log_residuals[r, c] - math.log(OUTLIER)) < 0.01
    np.testing.assert_array_equal(fit.missing, ~data.present | ~(data.background > 0))
    assert not (fit.used & fit.missing).any() and not (fit.rejected & fit.missing).any()
    assert (fit.used | fit.rejected | fit.missing).all()
    # Residuals of used entries are at the noise level.
    assert np.nanmax(np.abs(fit.log_residuals[fit.used])) < 0.01


def test_rejected_entries_are_sealed_and_immutable(pub) -> None:
    det = _detector_of(pub)
    pub.scale_detector(det, OUTLIER, exposure=int(sorted(pub.sim.exposures["id"])[1]))
    v = pub.solve(method="robust")
    before = pub.rows("version_rejected", order="version_id, entry_index")
    assert len(before) >= 1
    n = len(before)
    for sql in (
        "UPDATE version_rejected SET residual = 0",
        "DELETE FROM version_rejected",
        # a new slot beyond n_rejected, and a slot already taken
        f"INSERT INTO version_rejected VALUES ({v}, {n}, 0, 0, 0.1, 'clipped')",
        f"INSERT INTO version_rejected VALUES ({v}, 0, 0, 0, 0.1, 'clipped')",
    ):
        with pytest.raises(exc.DBAPIError), pub.engine.begin() as conn:
            conn.execute(text(sql))
    exact = pub.solve()  # rejects nothing: no slot at all
    with pytest.raises(exc.DBAPIError), pub.engine.begin() as conn:
        conn.execute(
            text(f"INSERT INTO version_rejected VALUES ({exact}, 0, 0, 0, 0.1, 'clipped')")
        )
    assert pub.rows("version_rejected", order="version_id, entry_index") == before


def test_stuck_detector_is_flagged_everywhere(pub) -> None:
    det = _detector_of(pub, 5)
    _set_stuck(pub, det)
    v = pub.solve()
    reg = pub.registry
    rows = reg.scales(v, "row")
    r = _row_of(rows, det)
    name = rows.loc[r, "detector_name"]
    assert "stuck" in rows.loc[r, "flag_names"].split(",")
    assert rows.loc[r, "flags"] & FLAG_BITS["stuck"]
    # No other row is stuck (the rest follow the lamp).
    assert (rows["flags"].to_numpy(np.int64) & FLAG_BITS["stuck"]).sum() == FLAG_BITS["stuck"]
    # The version record names it.
    flagged = reg.version(v)["flagged"]["rows"]
    assert any(f["detector_name"] == name and "stuck" in f["flags"] for f in flagged)
    with pub.engine.connect() as conn:
        view = conn.execute(
            text("SELECT detector_name, flag, description FROM version_flag WHERE version_id = :v"),
            {"v": v},
        ).all()
        hist = conn.execute(
            text(
                "SELECT error, reduced_chi2, flags FROM scale_history "
                "WHERE version_id = :v AND detector = :d"
            ),
            {"v": v, "d": det},
        ).one()
    assert (name, "stuck", FLAG_HELP["stuck"]) in [tuple(x) for x in view]
    assert hist.flags & FLAG_BITS["stuck"]
    assert hist.error > 0 and hist.reduced_chi2 > 0
    # The CLI shows the detector by name with the flag and its meaning.
    out = CliRunner().invoke(cli_app, ["versions", "show", str(v), "--db", pub.url])
    assert out.exit_code == 0, out.output
    assert name in out.output and "stuck" in out.output and FLAG_HELP["stuck"] in out.output
    out = CliRunner().invoke(cli_app, ["scales", str(v), "--flagged", "--db", pub.url])
    assert out.exit_code == 0, out.output
    assert name in out.output and "stuck" in out.output
    # HTTP: the scales carry errors and flags; the vocabulary is served.
    with TestClient(create_app(reg)) as client:
        items = client.get(f"/versions/{v}/scales").json()["items"]
        hit = [i for i in items if i["detector"] == det]
        assert "stuck" in hit[0]["flag_names"] and hit[0]["error"] > 0
        flags = client.get("/quality-flags").json()["items"]
        assert [f["name"] for f in flags] == list(FLAGS)
        assert client.get(f"/versions/{v}/rejected").json()["items"] == []
        csv = client.get(f"/versions/{v}/rejected?format=csv")
        assert csv.status_code == 200 and csv.text.startswith("row,detector")


def test_certify_reports_newly_flagged_rows(pub) -> None:
    reg = pub.registry
    v1 = pub.solve()
    reg.certify(v1, "flat/test", T_BASE, T_BASE + 10**15)
    # Same data, a stricter high_rms threshold: rows flagged now that were not before.
    task = make_task(SolveRequest(INSTRUMENT, FILTER))
    task.config.flagHighRmsFactor = 1.0
    v2 = task.runQuantum(reg, QuantumSpec(INSTRUMENT, FILTER, "DETECTOR")).version.id
    new_flags = reg.scales(v2, "row")
    expected = set(new_flags.loc[new_flags["flags"] & FLAG_BITS["high_rms"] != 0, "detector_name"])
    assert expected  # about half the rows are above their median
    res = reg.certify(v2, "flat/test", T_BASE + 10**15, T_BASE + 2 * 10**15)
    cmp = res["comparison"]
    assert cmp["n_newly_flagged"] == len(expected)
    assert {i["detector_name"] for i in cmp["newly_flagged"]} == expected
    assert all("high_rms" in i["flags"] for i in cmp["newly_flagged"])
    # Same scales: no change, in relative terms or in standard errors.
    assert cmp["max_abs_rel_change"] == 0.0 and cmp["max_abs_significance"] == 0.0
    # The stored config says how it was flagged, and maps back to the same thresholds.
    cfg = FlatNormalizationTaskConfig.fromDict(reg.version(v2)["config"])
    assert cfg.quality_thresholds().high_rms_factor == 1.0
    assert (
        reg.version(v2)["provenance"]["diagnostics"]["quality_thresholds"]["high_rms_factor"] == 1.0
    )
