"""Read queries over the inputs: instruments, detectors, exposures (for listings and clients)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, select

from calibreg.db.models import (
    Amplifier,
    Detector,
    Exposure,
    Instrument,
)
from calibreg.registry.common import instrument_id
from calibreg.registry.frames import query_frame

if TYPE_CHECKING:
    import pandas as pd


def list_instruments(conn: Connection) -> pd.DataFrame:
    """Instruments with their detector, amplifier, exposure counts."""
    n_det = select(func.count()).where(Detector.instrument_id == Instrument.id).scalar_subquery()
    n_amp = select(func.count()).where(Amplifier.instrument_id == Instrument.id).scalar_subquery()
    n_exp = select(func.count()).where(Exposure.instrument_id == Instrument.id).scalar_subquery()
    stmt = select(
        Instrument.name.label("instrument"),
        n_det.label("detectors"),
        n_amp.label("amplifiers"),
        n_exp.label("exposures"),
    ).order_by(Instrument.name)
    return query_frame(conn, stmt)


def list_detectors(conn: Connection, instrument: str) -> pd.DataFrame:
    """Return an instrument's detectors in id order."""
    inst = instrument_id(conn, instrument)
    cols = [
        "id",
        "name",
        "purpose",
        "physical_type",
        "serial",
        "n_amplifiers",
        "offset_x",
        "offset_y",
        "yaw",
    ]
    stmt = (
        select(*(Detector.__table__.c[c] for c in cols))
        .where(Detector.instrument_id == inst)
        .order_by(Detector.id)
    )
    return query_frame(conn, stmt, cols)


def list_amplifiers(conn: Connection, instrument: str) -> pd.DataFrame:
    """Return an instrument's amplifiers in camera order (detector id, then amplifier index)."""
    inst = instrument_id(conn, instrument)
    cols = ["detector_id", "amp_index", "name", "gain", "read_noise", "saturation"]
    stmt = (
        select(*(Amplifier.__table__.c[c] for c in cols))
        .where(Amplifier.instrument_id == inst)
        .order_by(Amplifier.detector_id, Amplifier.amp_index)
    )
    return query_frame(conn, stmt, cols)


EXPOSURE_COLUMNS = [
    "id",
    "physical_filter",
    "obs_id",
    "observation_type",
    "observation_reason",
    "science_program",
    "group_name",
    "day_obs",
    "seq_num",
    "exposure_time",
    "timespan_begin",
    "timespan_end",
]


def list_exposures(
    conn: Connection, instrument: str, physical_filter: str | None = None
) -> pd.DataFrame:
    """Return an instrument's exposures in id order, with how many statistics rows each has."""
    from calibreg.registry.stats_store import stats_store

    inst = instrument_id(conn, instrument)
    store = stats_store(conn)
    n_det = store.count_per_exposure("DETECTOR", inst, Exposure.id)
    n_amp = store.count_per_exposure("AMP", inst, Exposure.id)
    stmt = select(
        *(Exposure.__table__.c[c] for c in EXPOSURE_COLUMNS),
        n_det.label("detector_stats"),
        n_amp.label("amp_stats"),
    ).where(Exposure.instrument_id == inst)
    if physical_filter is not None:
        stmt = stmt.where(Exposure.physical_filter == physical_filter)
    stmt = stmt.order_by(Exposure.id)
    return query_frame(conn, stmt, [*EXPOSURE_COLUMNS, "detector_stats", "amp_stats"])


def geometry(conn: Connection, instrument: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Detector placement (mm, degrees, pixel bbox) and amplifier bboxes, for plots."""
    inst = instrument_id(conn, instrument)
    dcols = [
        "id",
        "name",
        "purpose",
        "bbox_x0",
        "bbox_y0",
        "bbox_x1",
        "bbox_y1",
        "offset_x",
        "offset_y",
        "yaw",
        "pixel_size_x",
        "pixel_size_y",
    ]
    dets = query_frame(
        conn,
        select(*(Detector.__table__.c[c] for c in dcols)).where(Detector.instrument_id == inst),
    )
    acols = ["detector_id", "amp_index", "name", "bbox_x0", "bbox_y0", "bbox_width", "bbox_height"]
    amps = query_frame(
        conn,
        select(*(Amplifier.__table__.c[c] for c in acols)).where(Amplifier.instrument_id == inst),
    )
    return dets, amps


#: Exposure ids per ``IN (...)`` query of :func:`exposure_times` (well under SQLite's 32,766
#: bound parameters).
EXPOSURE_CHUNK = 5000


def exposure_times(conn: Connection, instrument: str, exposures: list[int]) -> pd.DataFrame:
    """Return the observing records of some exposures, without statistics counts.

    What a page showing a version's exposure scales against time needs: one indexed read of
    the exposure table (``list_exposures`` also counts each exposure's statistics rows, a scan
    of millions of rows for a big registry).

    Parameters
    ----------
    conn
        An open connection.
    instrument
        Instrument name.
    exposures
        Exposure ids; unknown ids are absent from the result.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`EXPOSURE_COLUMNS` (timespans in TAI ns), one row per known exposure,
        in id order.

    Raises
    ------
    NotFoundError
        If the instrument is unknown.
    """
    import pandas as pd

    inst = instrument_id(conn, instrument)
    ids = sorted({int(e) for e in exposures})
    frames = []
    for start in range(0, max(len(ids), 1), EXPOSURE_CHUNK):
        chunk = ids[start : start + EXPOSURE_CHUNK]
        stmt = (
            select(*(Exposure.__table__.c[c] for c in EXPOSURE_COLUMNS))
            .where(Exposure.instrument_id == inst, Exposure.id.in_(chunk))
            .order_by(Exposure.id)
        )
        frames.append(query_frame(conn, stmt, EXPOSURE_COLUMNS))
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True)
