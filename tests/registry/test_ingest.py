"""Ingest on both backends: real files, atomicity, idempotency, conflicts, references."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select, text

from calibreg.client import Registry
from calibreg.db.models import Amplifier, AmpStats, Detector, DetectorStats, Exposure, IngestBatch
from calibreg.errors import ConflictError, InputError, NotFoundError
from calibreg.formats import read_exposures, read_stats, write_propertylist
from calibreg.formats.timescale import tai_iso_to_tai_ns
from calibreg.services.simulate import simulate_flats
from tests.conftest import LSSTCAM_YAML


def _count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def _snapshot(engine) -> dict[str, list]:
    """Every row of every input table, to prove a failed ingest changed nothing."""
    out = {}
    with engine.connect() as conn:
        for table in (
            "instrument",
            "ingest_batch",
            "detector",
            "amplifier",
            "exposure",
            "detector_stats",
            "amp_stats",
        ):
            out[table] = sorted(map(repr, conn.execute(text(f"SELECT * FROM {table}")).all()))
    return out


@pytest.fixture
def lsstcam(engine, lsstcam_spec):
    Registry(engine=engine).ingest_camera(
        lsstcam_spec, source=str(LSSTCAM_YAML), sha256="x", instrument="LSSTCam"
    )
    return engine


def _write_stats(tmp_path: Path, frame: pd.DataFrame, name: str = "stats.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _sim(spec, n=4, seed=1):
    return simulate_flats(spec, n_exposures=n, seed=seed, n_missing_frames=1)


def test_lsstcam_geometry_counts(lsstcam) -> None:
    engine = lsstcam
    with engine.connect() as conn:
        purposes = dict(
            conn.execute(select(Detector.purpose, func.count()).group_by(Detector.purpose)).all()
        )
        n_amp = conn.execute(select(func.count()).select_from(Amplifier)).scalar_one()
        types = dict(
            conn.execute(
                select(Detector.physical_type, func.count()).group_by(Detector.physical_type)
            ).all()
        )
        name = conn.execute(text("SELECT name FROM instrument")).scalar_one()
        wf = (
            conn.execute(select(Detector.n_amplifiers).where(Detector.purpose == "WAVEFRONT"))
            .scalars()
            .all()
        )
    assert name == "LSSTCam"
    assert purposes == {"SCIENCE": 189, "GUIDER": 8, "WAVEFRONT": 8}
    assert n_amp == 3216
    assert types == {"E2V": 117, "ITL": 72, "ITL_G": 8, "ITL_WF": 8}
    assert set(wf) == {8}


def test_camera_reingest_is_a_no_op_and_conflict_needs_replace(lsstcam, lsstcam_spec) -> None:
    engine = lsstcam
    again = Registry(engine=engine).ingest_camera(
        lsstcam_spec, source="again", sha256="x", instrument="LSSTCam"
    )
    assert not again.changed and again.n_unchanged == 205 + 3216
    assert _count(engine, IngestBatch) == 1
    import dataclasses

    det0 = lsstcam_spec.detectors[0]
    amp0 = dataclasses.replace(det0.amplifiers[0], gain=det0.amplifiers[0].gain * 1.01)
    changed = dataclasses.replace(
        lsstcam_spec,
        detectors=[
            dataclasses.replace(det0, amplifiers=[amp0, *det0.amplifiers[1:]]),
            *lsstcam_spec.detectors[1:],
        ],
    )
    with pytest.raises(ConflictError, match="--replace"):
        Registry(engine=engine).ingest_camera(changed, source="c", sha256="y", instrument="LSSTCam")
    rep = Registry(engine=engine).ingest_camera(
        changed, source="c", sha256="y", instrument="LSSTCam", replace=True
    )
    assert rep.n_replaced == 1 and rep.n_inserted == 0
    with engine.connect() as conn:
        gain = conn.execute(
            select(Amplifier.gain).where(Amplifier.detector_id == det0.id, Amplifier.amp_index == 0)
        ).scalar_one()
    assert gain == amp0.gain


def test_butler_exports_ingest_with_correct_tai_times(engine, shared_data: Path) -> None:
    lsst = shared_data / "butler" / "lsstcam-subset.yaml"
    hsc = shared_data / "butler" / "hsc-rc2-subset.yaml"
    Registry(engine=engine).ingest_exposures(read_exposures(lsst), source=str(lsst), sha256="a")
    Registry(engine=engine).ingest_exposures(read_exposures(hsc), source=str(hsc), sha256="b")
    with engine.connect() as conn:
        rows = dict(conn.execute(select(Exposure.id, Exposure.timespan_begin)).all())
        ends = dict(conn.execute(select(Exposure.id, Exposure.timespan_end)).all())
        group = conn.execute(
            select(Exposure.group_name).where(Exposure.id == 2025120200439)
        ).scalar_one()
    assert rows[2025120200439] == tai_iso_to_tai_ns("2025-12-03 07:59:07.425363958")
    assert ends[2025120200439] == tai_iso_to_tai_ns("2025-12-03 07:59:38.355000000")
    assert rows[903342] == tai_iso_to_tai_ns("2013-06-17 13:34:45.775000000")
    # TAI ns are exact integers: 2025-12-03 07:59:07.425363958 TAI is 37 s ahead of UTC.
    assert rows[2025120200439] == (1764748710 + 37) * 10**9 + 425363958 - 0
    assert group == "2025-12-03T07:58:10.858"


def test_exposure_table_csv(engine, shared_data: Path) -> None:
    path = shared_data / "butler" / "obs_lsst_test_registry_exposures.csv"
    rep = Registry(engine=engine).ingest_exposures(
        read_exposures(path), source=str(path), sha256="c"
    )
    assert rep.n_inserted == 15
    with engine.connect() as conn:
        begin = conn.execute(
            select(Exposure.timespan_begin).where(Exposure.id == 3019110102212)
        ).scalar_one()
    assert begin == 1572673410271994770


def test_stats_round_trip_nan_and_idempotency(tmp_path, lsstcam, lsstcam_spec) -> None:
    engine = lsstcam
    sim = _sim(lsstcam_spec)
    Registry(engine=engine).ingest_exposures(sim.exposures, source="sim", sha256="e")
    path = _write_stats(tmp_path, sim.stats)
    frame = read_stats(path)
    rep = Registry(engine=engine).ingest_stats(
        frame, source=str(path), sha256="s", instrument="LSSTCam"
    )
    n_amp = int(sim.stats["amp"].notna().sum())
    assert rep.n_inserted == len(sim.stats)
    assert _count(engine, AmpStats) == n_amp
    assert _count(engine, DetectorStats) == len(sim.stats) - n_amp
    det, amp = sim.dead
    with engine.connect() as conn:
        dead = conn.execute(
            select(AmpStats.median, AmpStats.n_pixels)
            .join(
                Amplifier,
                (Amplifier.instrument_id == AmpStats.instrument_id)
                & (Amplifier.detector_id == AmpStats.detector_id)
                & (Amplifier.amp_index == AmpStats.amp_index),
            )
            .where(AmpStats.detector_id == det, Amplifier.name == amp)
        ).all()
        # Bit-exact floats: compare everything read back with the file's values.
        back = pd.DataFrame(
            conn.execute(
                text(
                    "SELECT exposure_id, detector_id, amp_index, median, sigma, "
                    "n_pixels FROM amp_stats"
                )
            ).all(),
            columns=["exposure", "detector", "amp_index", "median", "sigma", "n_pixels"],
        )
    assert dead and all(math.isnan(m) for m, _ in dead)
    src = frame[frame["amp"].notna()].sort_values(["exposure", "detector", "amp"])
    assert np.nansum(back["median"].astype(float)) == pytest.approx(
        np.nansum(src["median"]), rel=1e-15
    )
    assert set(back["median"].astype(float).dropna()) == set(src["median"].dropna())
    before = _snapshot(engine)
    again = Registry(engine=engine).ingest_stats(
        read_stats(path), source=str(path), sha256="s", instrument="LSSTCam"
    )
    assert not again.changed and again.n_unchanged == len(sim.stats)
    assert _snapshot(engine) == before


def test_bad_row_in_the_middle_writes_nothing(tmp_path, lsstcam, lsstcam_spec) -> None:
    engine = lsstcam
    sim = _sim(lsstcam_spec)
    Registry(engine=engine).ingest_exposures(sim.exposures, source="sim", sha256="e")
    before = _snapshot(engine)
    # A reference error (unknown detector) is found by the registry, after parsing.
    bad = sim.stats.copy()
    mid = len(bad) // 2
    bad.loc[mid, "detector"] = 999
    path = _write_stats(tmp_path, bad)
    with pytest.raises(InputError) as info:
        Registry(engine=engine).ingest_stats(
            read_stats(path), source=str(path), sha256="z", instrument="LSSTCam"
        )
    assert f"row {mid + 1}" in str(info.value) and "detector" in str(info.value)
    assert "\n" not in str(info.value)
    assert _snapshot(engine) == before
    # A value error (negative n_pixels) is found by the reader.
    bad = sim.stats.copy()
    bad["n_pixels"] = bad["n_pixels"].astype(object)
    bad.loc[mid, "n_pixels"] = -5
    path = _write_stats(tmp_path, bad, "neg.csv")
    with pytest.raises(InputError, match="n_pixels"):
        Registry(engine=engine).ingest_stats(
            read_stats(path), source=str(path), sha256="z", instrument="LSSTCam"
        )
    assert _snapshot(engine) == before


def test_failure_inside_the_transaction_rolls_back(
    tmp_path, lsstcam, lsstcam_spec, monkeypatch
) -> None:
    engine = lsstcam
    sim = _sim(lsstcam_spec)
    Registry(engine=engine).ingest_exposures(sim.exposures, source="sim", sha256="e")
    before = _snapshot(engine)
    from calibreg.registry.stats_store import StatsStore

    real = StatsStore.write
    calls = []

    def failing(self, conn, level, frame, **kw):
        calls.append(level)
        if len(calls) == 2:  # after detector_stats were written, before amp_stats
            raise RuntimeError("killed during persist")
        return real(self, conn, level, frame, **kw)

    monkeypatch.setattr(StatsStore, "write", failing)
    path = _write_stats(tmp_path, sim.stats)
    with pytest.raises(RuntimeError):
        Registry(engine=engine).ingest_stats(
            read_stats(path), source=str(path), sha256="s", instrument="LSSTCam"
        )
    assert _snapshot(engine) == before


def test_conflicting_value_needs_replace(tmp_path, lsstcam, lsstcam_spec) -> None:
    engine = lsstcam
    sim = _sim(lsstcam_spec)
    Registry(engine=engine).ingest_exposures(sim.exposures, source="sim", sha256="e")
    path = _write_stats(tmp_path, sim.stats)
    Registry(engine=engine).ingest_stats(
        read_stats(path), source=str(path), sha256="s", instrument="LSSTCam"
    )
    changed = sim.stats.copy()
    row = int(np.flatnonzero(changed["amp"].notna() & np.isfinite(changed["median"]))[0])
    changed.loc[row, "median"] = changed.loc[row, "median"] * 1.001
    path2 = _write_stats(tmp_path, changed, "changed.csv")
    before = _snapshot(engine)
    with pytest.raises(ConflictError, match="--replace"):
        Registry(engine=engine).ingest_stats(
            read_stats(path2), source=str(path2), sha256="t", instrument="LSSTCam"
        )
    assert _snapshot(engine) == before
    rep = Registry(engine=engine).ingest_stats(
        read_stats(path2), source=str(path2), sha256="t", instrument="LSSTCam", replace=True
    )
    assert (rep.n_inserted, rep.n_replaced) == (0, 1)
    with engine.connect() as conn:
        got = conn.execute(
            text("SELECT count(*) FROM amp_stats WHERE median = :m"),
            {"m": float(changed.loc[row, "median"])},
        ).scalar_one()
    assert got == 1


def test_unknown_exposure_and_instrument(tmp_path, lsstcam, lsstcam_spec) -> None:
    engine = lsstcam
    sim = _sim(lsstcam_spec)
    path = _write_stats(tmp_path, sim.stats)
    with pytest.raises(InputError, match=r"unknown exposure .* ingest the exposure records"):
        Registry(engine=engine).ingest_stats(
            read_stats(path), source=str(path), sha256="s", instrument="LSSTCam"
        )
    with pytest.raises(NotFoundError, match="unknown instrument 'HSC'"):
        Registry(engine=engine).ingest_stats(
            read_stats(path), source=str(path), sha256="s", instrument="HSC"
        )


def test_propertylist_files_by_name(tmp_path, lsstcam, lsstcam_spec) -> None:
    engine = lsstcam
    sim = _sim(lsstcam_spec, n=2)
    Registry(engine=engine).ingest_exposures(sim.exposures, source="sim", sha256="e")
    exp = int(sim.exposures["id"].iloc[0])
    obs_id = sim.exposures["obs_id"].iloc[1]
    det = lsstcam_spec.detectors[0]
    values: dict[str, object] = {
        "DETECTOR_MEDIAN": 1000.5,
        "DETECTOR_SIGMA": 30.0,
        "DETECTOR_N": 16_000_000,
    }
    for i, amp in enumerate(det.amplifiers):
        values[f"AMP_NAME_{i}"] = amp.name
        values[f"AMP_MEDIAN_{i}"] = float("nan") if i == 3 else 1000.0 + i
        values[f"AMP_SIGMA_{i}"] = 30.0
        values[f"AMP_N_{i}"] = 0 if i == 3 else 1_000_000
    by_id = tmp_path / f"cpFlatProc_metadata_LSSTCam_r_57_{exp}_{det.name}_u_x_run.yaml"
    by_obs = tmp_path / f"cpFlatProc_metadata_LSSTCam_r_57_{obs_id}_{det.name}_u_x_run.yaml"
    write_propertylist(by_id, values)
    write_propertylist(by_obs, values)
    frames = [read_stats(by_id), read_stats(by_obs)]
    for f, p in zip(frames, (by_id, by_obs), strict=True):
        f["source"] = str(p)
    rep = Registry(engine=engine).ingest_stats(
        pd.concat(frames, ignore_index=True), source="pl", sha256="p", instrument="LSSTCam"
    )
    assert rep.n_inserted == 2 * (1 + len(det.amplifiers))
    with engine.connect() as conn:
        exps = sorted(conn.execute(select(DetectorStats.exposure_id)).scalars())
        nan_count = conn.execute(
            text("SELECT count(*) FROM amp_stats WHERE median IS NULL")
        ).scalar_one()
    assert exps == sorted(int(e) for e in sim.exposures["id"])
    assert nan_count == 2
