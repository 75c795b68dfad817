"""Quanta: which exposures a solve uses, and their statistics assembled into matrices.

Assembly selects the quantum's exposures (a small query on ``exposure``), then reads their
statistics in one query shape on the statistics table alone, through the columnar statistics
store (:mod:`calibreg.registry.stats_store`: database → Arrow → NumPy, no Python object per
row); rows are placed into the matrices with vectorized index arithmetic. Its cost depends on
the quantum's size, not on how many rows the registry holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection, Select, func, select

from calibreg.db.models import Amplifier, Detector, Exposure
from calibreg.domain.progress import Progress, report
from calibreg.domain.quantum import QuantumData, QuantumSpec
from calibreg.domain.vocabulary import SELECTION_FIELDS
from calibreg.errors import SolveError
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


def assemble(
    conn: Connection, spec: QuantumSpec, *, progress: Progress | None = None
) -> QuantumData:
    """Read the quantum's statistics into matrices in one query.

    Rows are the detectors that have at least one statistic in the quantum (DETECTOR level),
    or every amplifier of those detectors in camera order (AMP level); columns are the
    quantum's exposures in id order. ``progress`` (a
    :class:`~calibreg.domain.progress.Progress`) hears stage ``"assembly"`` in exposures:
    none done when the exposures are chosen, all of them once the matrices are filled.
    """
    from calibreg.registry.stats_store import stats_store

    inst = instrument_id(conn, spec.instrument)
    exposure_ids = np.asarray(select_exposures(conn, spec), dtype=np.int64)
    n_exp = len(exposure_ids)
    report(progress, "assembly", 0, n_exp, unit="exposures")
    amp = spec.level == "AMP"
    columns = stats_store(conn).fetch(conn, spec.level, inst, exposure_ids.tolist())
    if not len(columns["exposure_id"]):
        raise SolveError(
            f"no {spec.level.lower()}-level statistics for the {len(exposure_ids)} exposure(s) "
            f"of {spec.describe()}: ingest statistics first"
        )
    exp_col, det_col = columns["exposure_id"], columns["detector_id"]
    amp_idx = columns["amp_index"] if amp else np.full(len(exp_col), -1, dtype=np.int64)
    med, sig, npx = columns["median"], columns["sigma"], columns["n_pixels"]

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
    report(progress, "assembly", n_exp, n_exp, unit="exposures", detail=f"{len(med):,} statistics")
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
