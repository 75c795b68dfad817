"""The solve service: one quantum, every filter (with failures reported, not lost), verify."""

from __future__ import annotations

import numpy as np
import pytest

from calibreg.client import Registry
from calibreg.errors import SolveError
from calibreg.services.simulate import simulate_flats
from calibreg.services.solve import SolveRequest, solve_all_filters, solve_quantum, verify_version


@pytest.fixture
def registry(engine, lsstcam_spec) -> Registry:
    """LSSTCam with four flats in r_57 and four in g_6 (statistics for r_57 only)."""
    reg = Registry(engine=engine)
    reg.ingest_camera(lsstcam_spec, source="camera", sha256="c", instrument="LSSTCam")
    r = simulate_flats(lsstcam_spec, n_exposures=4, seed=1, n_missing_frames=0)
    g = simulate_flats(
        lsstcam_spec, physical_filter="g_6", n_exposures=4, seed=2, first_exposure=2026011600100
    )
    reg.ingest_exposures(r.exposures, source="r", sha256="r")
    reg.ingest_exposures(g.exposures, source="g", sha256="g")
    reg.ingest_stats(r.stats, source="stats", sha256="s", instrument="LSSTCam")
    reg.sim = r  # type: ignore[attr-defined]
    return reg


def test_solve_quantum_persists_a_version_close_to_the_truth(registry) -> None:
    summary = solve_quantum(registry, SolveRequest("LSSTCam", "r_57", level="AMP"))
    assert summary["seq"] == 1
    assert summary["exposures"] == 4
    rows = registry.scales(summary["version_id"], "row")
    truth = registry.sim.amp_truth.merge(
        rows, left_on=["detector", "amp"], right_on=["detector", "amp"]
    )
    live = ~truth["flagged"]
    ratio = (truth["scale"] / truth["g"])[live].to_numpy(copy=True)
    ratio /= np.median(ratio)  # the truth is unnormalized: compare shapes
    assert np.sqrt(np.mean((ratio - 1) ** 2)) < 5 * registry.sim.entry_noise


def test_all_filters_reports_a_failing_filter_and_keeps_the_others(registry) -> None:
    results = solve_all_filters(registry, SolveRequest("LSSTCam", "ignored"))
    by_filter = {r["physical_filter"]: r for r in results}
    assert set(by_filter) == {"g_6", "r_57"}
    assert "error" in by_filter["g_6"] and "statistics" in by_filter["g_6"]["error"]
    assert by_filter["r_57"]["version_id"] >= 1
    assert len(registry.versions()) == 1


def test_all_filters_of_an_instrument_without_exposures_is_an_error(engine, lsstcam_spec) -> None:
    reg = Registry(engine=engine)
    reg.ingest_camera(lsstcam_spec, source="camera", sha256="c", instrument="Empty")
    with pytest.raises(SolveError, match="no exposures"):
        solve_all_filters(reg, SolveRequest("Empty", "x"))


def test_verify_reproduces_a_fresh_version_exactly(registry) -> None:
    vid = solve_quantum(registry, SolveRequest("LSSTCam", "r_57"))["version_id"]
    result = verify_version(registry, vid)
    assert result["ok"] is True
    assert result["inputs_changed"] is False
    assert result["max_rel_diff"] == 0.0
