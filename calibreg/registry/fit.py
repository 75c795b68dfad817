"""A stored version's fit rebuilt for looking at (:class:`calibreg.domain.fit.VersionFit`).

The scales, errors and flags are the stored ones; the backgrounds are the statistics the
version was solved from (read again: once a version uses them they can no longer change,
migration 0005); the rejected entries are the stored ones (migration 0006); which entries were
unusable follows the solver's own rule (:func:`calibreg.engine.usable_entries`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sqlalchemy import Connection, select

from calibreg.db.models import Exposure
from calibreg.domain.fit import VersionFit
from calibreg.domain.quantum import QuantumSpec, Selection
from calibreg.engine import usable_entries
from calibreg.formats.timescale import tai_ns_to_mjd
from calibreg.registry.common import instrument_id
from calibreg.registry.quantum import assemble
from calibreg.registry.versions import (
    exposure_scales,
    get_version,
    rejected_entries,
    row_scales,
)

__all__ = ["version_fit"]


def version_fit(conn: Connection, version_id: int) -> VersionFit:
    """Return version ``version_id``'s fit: inputs, scales, residuals and what was left out.

    Raises
    ------
    NotFoundError
        If there is no such version.
    """
    version = get_version(conn, version_id)
    rows = row_scales(conn, version_id)
    exps = exposure_scales(conn, version_id)
    exposure_ids = exps["exposure"].to_numpy(np.int64)
    spec = QuantumSpec.from_version(version)
    data = assemble(
        conn,
        dataclasses.replace(
            spec, selection=Selection(exposures=tuple(int(e) for e in exposure_ids))
        ),
    )
    # Align the assembled rows with the stored ones (statistics of new detectors may have been
    # ingested for these exposures since; they were not part of the solve).
    key = {
        (int(d), int(a)): i
        for i, (d, a) in enumerate(zip(data.row_detectors, data.row_amp_index, strict=True))
    }
    amp_index = rows["amp_index"].fillna(-1).to_numpy(np.int64)
    det = rows["detector"].to_numpy(np.int64)
    take = np.array(
        [key.get((int(d), int(a)), -1) for d, a in zip(det, amp_index, strict=True)], dtype=np.int64
    )
    col = np.searchsorted(data.exposure_ids, exposure_ids)
    shape = (len(rows), len(exposure_ids))
    background = np.full(shape, np.nan)
    counts = np.zeros(shape)
    sigma = np.full(shape, np.nan)
    have = take >= 0
    for target, source in (
        (background, data.background),
        (counts, data.counts),
        (sigma, data.sigma),
    ):
        target[have] = source[take[have]][:, col]
    weights = str(version.get("weights") or version["config"].get("weights", "counts"))
    valid = usable_entries(background, counts, sigma=sigma, weights=weights)
    rejected = np.zeros(shape, dtype=bool)
    rej = rejected_entries(conn, version_id)
    rejected[rej["row"].to_numpy(np.int64), rej["exp_index"].to_numpy(np.int64)] = True
    g = rows["scale"].to_numpy(float)
    e = exps["scale"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        resid = np.log(background) - np.log(g)[:, None] - np.log(e)[None, :]
    resid[~(np.isfinite(background) & (background > 0))] = np.nan
    meta = _exposure_metadata(conn, version["instrument"], exposure_ids)
    return VersionFit(
        version_id=int(version_id),
        instrument=str(version["instrument"]),
        physical_filter=str(version["physical_filter"]),
        level=str(version["level"]),
        method=str(version["method"]),
        weights=weights,
        exposure_ids=exposure_ids,
        exposure_time=meta["exposure_time"],
        exposure_begin=meta["begin_mjd"],
        seq_num=meta["seq_num"],
        row_detectors=det,
        row_detector_names=tuple(str(n) for n in rows["detector_name"]),
        row_amp_names=tuple(None if a is None or a != a else str(a) for a in rows["amp"]),
        background=background,
        row_scales=g,
        row_errors=rows["error"].to_numpy(float),
        exp_scales=e,
        exp_errors=exps["error"].to_numpy(float),
        log_residuals=resid,
        used=valid & ~rejected,
        rejected=rejected,
        missing=~valid,
        row_flags=rows["flags"].to_numpy(np.int64).astype(np.uint16),
        exp_flags=exps["flags"].to_numpy(np.int64).astype(np.uint16),
    )


def _exposure_metadata(
    conn: Connection, instrument: str, exposure_ids: np.ndarray
) -> dict[str, np.ndarray]:
    """Exposure time (s), start (MJD TAI) and sequence number of each exposure, NaN if unknown."""
    inst = instrument_id(conn, instrument)
    found = {
        int(r.id): r
        for r in conn.execute(
            select(
                Exposure.id, Exposure.exposure_time, Exposure.timespan_begin, Exposure.seq_num
            ).where(Exposure.instrument_id == inst, Exposure.id.in_([int(e) for e in exposure_ids]))
        )
    }
    out = {k: np.full(exposure_ids.size, np.nan) for k in ("exposure_time", "begin_mjd", "seq_num")}
    for i, eid in enumerate(exposure_ids):
        r = found.get(int(eid))
        if r is None:
            continue
        if r.exposure_time is not None:
            out["exposure_time"][i] = float(r.exposure_time)
        if r.timespan_begin is not None:
            out["begin_mjd"][i] = tai_ns_to_mjd(int(r.timespan_begin))
        if r.seq_num is not None:
            out["seq_num"][i] = float(r.seq_num)
    return out
