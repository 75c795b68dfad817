"""FlatNormalizationTask.runQuantum on both backends: assemble, solve, persist a version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from task_oracle import make_flats

from calibreg.client import Registry
from calibreg.db.models import CalibrationVersion
from calibreg.domain.quantum import QuantumSpec, Selection
from calibreg.errors import SolveError
from calibreg.formats.camera import AmplifierSpec, CameraSpec, DetectorSpec
from calibreg.task import FlatNormalizationTask, FlatNormalizationTaskConfig

INSTRUMENT = "TaskCam"
EXPOSURES = [5001, 5002, 5003, 5004]
AMPS = {1: 4, 2: 4, 3: 2}  # detector 3 has fewer amplifiers


def _camera(flats) -> CameraSpec:
    detectors = []
    for det in flats.detectors:
        amps = [
            AmplifierSpec(
                name=a.getName(),
                index=i,
                bbox_x0=100 * i,
                bbox_y0=0,
                bbox_width=100,
                bbox_height=200,
            )
            for i, a in enumerate(flats.camera[det])
        ]
        detectors.append(
            DetectorSpec(
                id=det,
                name=f"R00_S0{det}",
                serial=None,
                physical_type="ITL",
                purpose="SCIENCE",
                bbox_x0=0,
                bbox_y0=0,
                bbox_x1=100 * len(amps) - 1,
                bbox_y1=199,
                amplifiers=amps,
            )
        )
    return CameraSpec(name=INSTRUMENT, detectors=detectors, source_format="calibreg")


def _exposures() -> pd.DataFrame:
    n = len(EXPOSURES)
    t0 = 1_700_000_000_000_000_000
    return pd.DataFrame(
        {
            "instrument": [INSTRUMENT] * n,
            "id": EXPOSURES,
            "physical_filter": ["r"] * n,
            "obs_id": [f"TC_{e}" for e in EXPOSURES],
            "observation_type": ["flat"] * n,
            # The last exposure is a different kind of flat: down-selection drops it.
            "observation_reason": ["dome flat"] * (n - 1) + ["sky flat"],
            "science_program": ["calib"] * n,
            "group": ["g1"] * n,
            "target_name": [None] * n,
            "day_obs": pd.array([20240601] * n, dtype="Int64"),
            "seq_num": pd.array(range(1, n + 1), dtype="Int64"),
            "exposure_time": [15.0] * n,
            "dark_time": [15.2] * n,
            "timespan_begin": pd.array([t0 + i * 30_000_000_000 for i in range(n)], dtype="Int64"),
            "timespan_end": pd.array(
                [t0 + i * 30_000_000_000 + 15_000_000_000 for i in range(n)], dtype="Int64"
            ),
        }
    )


def _stats(flats) -> pd.DataFrame:
    rows = []
    for i, det in enumerate(flats.detectors):
        for j, exp in enumerate(flats.exposures):
            rows.append((exp, det, None, flats.det_bg[i, j], 5.0, int(flats.det_n[i, j])))
    for k, (det, amp) in enumerate(flats.amp_rows):
        for j, exp in enumerate(flats.exposures):
            value = np.nan if (det, amp) == (2, "C01") else flats.amp_bg[k, j]  # a dead amp
            rows.append((exp, det, amp, value, 5.0, int(flats.amp_n[k, j])))
    frame = pd.DataFrame(
        rows, columns=["exposure", "detector", "amp", "median", "sigma", "n_pixels"]
    )
    frame["detector_name"] = None
    frame["source_row"] = np.arange(1, len(frame) + 1)
    frame["exposure"] = frame["exposure"].astype("int64")
    frame["detector"] = frame["detector"].astype("Int64")
    return frame


def _stored(registry: Registry, version_id: int) -> dict:
    """The stored version row (read directly; see test_registry_version_reads_task_metadata)."""
    v = CalibrationVersion
    with registry.engine.connect() as conn:
        row = conn.execute(
            select(v.level, v.config, v.task_metadata).where(v.id == version_id)
        ).one()
    return dict(row._mapping)


@pytest.fixture
def registry(engine, db_url):
    flats = make_flats(AMPS, EXPOSURES, seed=11)
    Registry(engine=engine).ingest_camera(_camera(flats), source="camera.yaml", sha256="c")
    Registry(engine=engine).ingest_exposures(_exposures(), source="exposures.csv", sha256="e")
    Registry(engine=engine).ingest_stats(
        _stats(flats), source="stats.csv", sha256="s", instrument=INSTRUMENT
    )
    reg = Registry(db_url, engine=engine)
    reg.flats = flats  # type: ignore[attr-defined]
    return reg


def test_run_quantum_persists_a_version_with_task_metadata(registry) -> None:
    task = FlatNormalizationTask()
    result = task.runQuantum(registry, QuantumSpec(INSTRUMENT, "r"))
    version = result.version
    assert version.seq == 1
    assert result.solution.shape == (3, 4)

    # Same numbers as the cp_pipe API on the same statistics.
    flats = registry.flats
    direct = FlatNormalizationTask().measureScales(flats.det_bg, flats.det_n)
    np.testing.assert_allclose(result.solution.exp_scales, direct.expScales, rtol=1e-12)
    assert list(result.outputScales["detScale"]) == [1, 2, 3]
    assert list(result.outputScales["expScale"][3]) == ["C00", "C01"]

    stored = _stored(registry, version.id)
    assert stored["config"]["method"] == "exact"
    assert stored["config"]["level"] == "DETECTOR"
    md = stored["task_metadata"]
    assert set(md) == {"scalars", "arrays", "metadata"}
    assert set(md["metadata"]) == {
        "flatNorm",
        "flatNorm:assemble",
        "flatNorm:solve",
        "flatNorm:persist",
    }
    assemble = md["metadata"]["flatNorm:assemble"]
    assert assemble["scalars"]["nExposures"] == 4
    assert assemble["scalars"]["nRows"] == 3
    assert {"runStartUtc", "runEndUtc", "runStartCpuTime", "runEndCpuTime"} <= set(
        assemble["arrays"]
    )
    solve = md["metadata"]["flatNorm:solve"]["scalars"]
    assert solve["converged"] is True
    assert solve["nMissing"] == 0
    # Persist's own end comes after the capture (documented); its start is stored.
    persist = md["metadata"]["flatNorm:persist"]["arrays"]
    assert "runStartUtc" in persist
    assert "runEndUtc" not in persist
    assert "runQuantumStartUtc" in md["metadata"]["flatNorm"]["arrays"]
    # In memory, everything ends.
    assert task.persist.metadata["versionId"] == version.id
    assert "runEndUtc" in task.persist.metadata

    again = FlatNormalizationTask().runQuantum(registry, (INSTRUMENT, "r"))
    assert again.version.seq == 2
    assert again.version.content_hash == version.content_hash


def test_run_quantum_amp_level_with_down_selection(registry) -> None:
    config = FlatNormalizationTaskConfig(
        level="AMP",
        doDownSelection=True,
        downSelectionField="observation_reason",
        downSelectionValue="Dome Flat",
    )
    task = FlatNormalizationTask(config=config)
    result = task.runQuantum(registry, {"instrument": INSTRUMENT, "physical_filter": "r"})
    assert result.data.spec.level == "AMP"
    assert result.data.spec.selection == Selection(field="observation_reason", value="Dome Flat")
    assert list(result.data.exposure_ids) == EXPOSURES[:3]
    assert result.solution.shape == (10, 3)
    # The dead amplifier (NaN, stored as NULL) is flagged, not fitted.
    labels = result.data.row_labels()
    dead = labels.index((2, "C01"))
    assert result.solution.row_flagged[dead]
    assert result.solution.row_flagged.sum() == 1
    assert list(result.outputScales["detScale"][3]) == ["C00", "C01"]
    stored = _stored(registry, result.version.id)
    assert stored["level"] == "AMP"
    assert stored["config"]["downSelectionValue"] == "Dome Flat"
    assert stored["task_metadata"]["metadata"]["flatNorm"]["scalars"]["level"] == "AMP"


def test_run_quantum_errors_are_domain_errors(registry) -> None:
    with pytest.raises(SolveError):
        FlatNormalizationTask().runQuantum(registry, (INSTRUMENT, "no-such-filter"))


def test_registry_version_reads_task_metadata(registry) -> None:
    result = FlatNormalizationTask().runQuantum(registry, (INSTRUMENT, "r"))
    stored = registry.version(result.version.id)
    assert "flatNorm:assemble" in stored["task_metadata"]["metadata"]
    assert stored["config"]["scaleMaxIter"] == 10
