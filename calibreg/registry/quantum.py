"""Quanta: which exposures a solve uses, and their statistics assembled into matrices.

Assembly is one set-based query per quantum whose rows go straight from the driver's cursor
into NumPy arrays (no ORM object, no per-row Python type processing); rows are placed into the
matrix with vectorized index arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Select, func, select

from calibreg.db.models import Amplifier, Detector, Exposure
from calibreg.domain.quantum import QuantumData, QuantumSpec
from calibreg.domain.vocabulary import SELECTION_FIELDS
from calibreg.errors import SolveError
from calibreg.registry.backend import backend_of
from calibreg.registry.common import instrument_id


def _exposure_filter(stmt: Select, inst: int, spec: QuantumSpec) -> Select:
    sel = spec.selection
    stmt = stmt.where(
        Exposure.instrument_id == inst, Exposure.physical_filter == spec.physical_filter
    )
    if sel.field is not None:
        column = Exposure.__table__.c[SELECTION_FIELDS[sel.field]]
        stmt = stmt.where(func.lower(column) == str(sel.value).lower())
    if sel.exposures is not None:
        stmt = stmt.where(Exposure.id.in_(list(sel.exposures)))
    if sel.day_obs_min is not None:
        stmt = stmt.where(Exposure.day_obs >= sel.day_obs_min)
    if sel.day_obs_max is not None:
        stmt = stmt.where(Exposure.day_obs <= sel.day_obs_max)
    if sel.time_begin is not None:
        stmt = stmt.where(Exposure.timespan_begin >= sel.time_begin)
    if sel.time_end is not None:
        stmt = stmt.where(Exposure.timespan_begin < sel.time_end)
    return stmt


def select_exposures(conn: Connection, spec: QuantumSpec) -> list[int]:
    """Return the ids of the quantum's exposures, sorted; a clear error when none match."""
    inst = instrument_id(conn, spec.instrument)
    ids = list(
        conn.execute(
            _exposure_filter(select(Exposure.id), inst, spec).order_by(Exposure.id)
        ).scalars()
    )
    if not ids:
        raise SolveError(f"no input exposures match {spec.describe()}")
    if spec.selection.exposures is not None:
        missing = sorted(set(spec.selection.exposures) - set(ids))
        if missing:
            raise SolveError(
                f"exposure(s) {', '.join(map(str, missing[:5]))} are not {spec.instrument} "
                f"{spec.physical_filter} exposures matching {spec.selection.describe()}"
            )
    return ids


def _exposure_subquery_sql(spec: QuantumSpec) -> tuple[str, dict[str, Any]]:
    sel = spec.selection
    where = ["e.instrument_id = :inst", "e.physical_filter = :filt"]
    params: dict[str, Any] = {"filt": spec.physical_filter}
    if sel.field is not None:
        where.append(f"lower(e.{SELECTION_FIELDS[sel.field]}) = :selval")
        params["selval"] = str(sel.value).lower()
    if sel.exposures is not None:
        # Integers only (validated in Selection), so inlining them is safe and keeps the query
        # free of thousands of bind parameters.
        where.append(f"e.id IN ({', '.join(str(int(x)) for x in sel.exposures)})")
    if sel.day_obs_min is not None:
        where.append("e.day_obs >= :domin")
        params["domin"] = sel.day_obs_min
    if sel.day_obs_max is not None:
        where.append("e.day_obs <= :domax")
        params["domax"] = sel.day_obs_max
    if sel.time_begin is not None:
        where.append("e.timespan_begin >= :tbeg")
        params["tbeg"] = sel.time_begin
    if sel.time_end is not None:
        where.append("e.timespan_begin < :tend")
        params["tend"] = sel.time_end
    return " AND ".join(where), params


#: Integers of smaller magnitude are exact in float64.
_FLOAT_EXACT = float(2**53)


def assemble(conn: Connection, spec: QuantumSpec) -> QuantumData:
    """Read the quantum's statistics into matrices in one query.

    Rows are the detectors that have at least one statistic in the quantum (DETECTOR level),
    or every amplifier of those detectors in camera order (AMP level); columns are the
    quantum's exposures in id order.
    """
    inst = instrument_id(conn, spec.instrument)
    exposure_ids = np.asarray(select_exposures(conn, spec), dtype=np.int64)
    where, params = _exposure_subquery_sql(spec)
    params["inst"] = inst
    amp = spec.level == "AMP"
    table = "amp_stats" if amp else "detector_stats"
    amp_col = "s.amp_index" if amp else "-1"
    sql = (
        f"SELECT s.exposure_id, s.detector_id, {amp_col}, s.median, s.sigma, s.n_pixels "
        f"FROM {table} s JOIN exposure e "
        "ON e.instrument_id = s.instrument_id AND e.id = s.exposure_id "
        f"WHERE s.instrument_id = :inst AND {where}"
    )
    rows = backend_of(conn).fetch_raw(conn, sql, params)
    if not rows:
        raise SolveError(
            f"no {spec.level.lower()}-level statistics for the {len(exposure_ids)} exposure(s) "
            f"of {spec.describe()}: ingest statistics first"
        )
    # One C-level conversion of the fetched tuples (None → NaN). Ids below 2**53 are exact in
    # float64; rounding is monotonic, so a converted id of magnitude >= 2**53 means some id
    # may have been rounded, and the id columns are then read again exactly from the tuples.
    table = np.array(rows, dtype=float)
    ids = table[:, :3]
    if len(ids) and np.abs(ids).max() >= _FLOAT_EXACT:
        exp_col, det_col, amp_idx = (
            np.fromiter((r[k] for r in rows), dtype=np.int64, count=len(rows)) for k in range(3)
        )
    else:
        exp_col, det_col, amp_idx = (ids[:, k].astype(np.int64) for k in range(3))
    del rows
    med, sig, npx = table[:, 3], table[:, 4], table[:, 5]

    detectors = np.unique(det_col)
    amp_table = conn.execute(
        select(Amplifier.detector_id, Amplifier.amp_index, Amplifier.name)
        .where(Amplifier.instrument_id == inst, Amplifier.detector_id.in_(detectors.tolist()))
        .order_by(Amplifier.detector_id, Amplifier.amp_index)
    ).all()
    amp_names: dict[int, list[str]] = {int(d): [] for d in detectors}
    for det, _idx, name in amp_table:
        amp_names[int(det)].append(name)

    if amp:
        counts_per_det = np.array([len(amp_names[int(d)]) for d in detectors], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts_per_det)[:-1]])
        row_detectors = np.repeat(detectors, counts_per_det)
        row_amp_index = (
            np.concatenate([np.arange(c, dtype=np.int64) for c in counts_per_det])
            if len(detectors)
            else np.zeros(0, dtype=np.int64)
        )
        row_amp_names: list[str | None] = [n for d in detectors for n in amp_names[int(d)]]
        row_of = offsets[np.searchsorted(detectors, det_col)] + amp_idx
    else:
        row_detectors = detectors
        row_amp_index = np.full(len(detectors), -1, dtype=np.int64)
        row_amp_names = [None] * len(detectors)
        row_of = np.searchsorted(detectors, det_col)
    col_of = np.searchsorted(exposure_ids, exp_col)

    shape = (len(row_detectors), len(exposure_ids))
    background = np.full(shape, np.nan)
    sigma = np.full(shape, np.nan)
    counts = np.zeros(shape)
    present = np.zeros(shape, dtype=bool)
    background[row_of, col_of] = med
    sigma[row_of, col_of] = sig
    counts[row_of, col_of] = npx
    present[row_of, col_of] = True
    return QuantumData(
        spec=spec,
        exposure_ids=exposure_ids,
        row_detectors=row_detectors,
        row_amp_index=row_amp_index,
        row_amp_names=row_amp_names,
        amp_names=amp_names,
        background=background,
        counts=counts,
        sigma=sigma,
        present=present,
    )


def detector_names(conn: Connection, instrument: str, ids: Sequence[int]) -> dict[int, str]:
    """Detector id → name for the given ids."""
    inst = instrument_id(conn, instrument)
    rows = conn.execute(
        select(Detector.id, Detector.name).where(
            Detector.instrument_id == inst, Detector.id.in_([int(i) for i in ids])
        )
    ).all()
    return {int(i): n for i, n in rows}
