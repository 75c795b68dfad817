"""Calibration versions: persist one solve atomically, and read versions back.

A version is written in one transaction: its quantum row is locked (PostgreSQL ``FOR UPDATE``;
SQLite's write transaction is already exclusive), the next sequence number within the quantum is
taken, and the version, its exposure scales and its row scales are inserted. A failure anywhere
rolls all of it back, so there is never a partial version.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, func, insert, select

from calibreg.db.models import (
    Amplifier,
    CalibrationVersion,
    Detector,
    Instrument,
    Quantum,
    VersionExposure,
    VersionRejected,
    VersionRow,
)
from calibreg.db.types import utcnow
from calibreg.domain.jsonable import jsonable
from calibreg.domain.provenance import Who
from calibreg.domain.quality import FLAG_BITS, flag_counts, flag_names
from calibreg.domain.quantum import QuantumData, QuantumSpec
from calibreg.domain.reports import PersistedVersion
from calibreg.errors import NotFoundError
from calibreg.formats.timescale import with_instant_fields
from calibreg.registry.backend import backend_of
from calibreg.registry.bulk import bulk_insert
from calibreg.registry.common import instrument_id
from calibreg.registry.frames import query_frame
from calibreg.registry.listing import VERSION_COLUMNS, filtered_versions

if TYPE_CHECKING:
    import pandas as pd


def _quantum_id(conn: Connection, inst: int, spec: QuantumSpec, *, lock: bool) -> int:
    sel = spec.selection
    key = sel.key()
    where = (
        Quantum.instrument_id == inst,
        Quantum.physical_filter == spec.physical_filter,
        Quantum.level == spec.level,
        Quantum.selection_key == key,
    )
    values = {
        "instrument_id": inst,
        "physical_filter": spec.physical_filter,
        "level": spec.level,
        "selection_key": key,
        "selection": sel.canonical(),
        "created_at": utcnow(),
    }
    # Insert-if-absent then read back under a row lock: concurrent solves of one quantum on
    # PostgreSQL queue here for the next sequence number (SQLite's writer lock already does).
    backend = backend_of(conn)
    backend.insert_ignore(
        conn,
        Quantum.__table__,
        values,
        ["instrument_id", "physical_filter", "level", "selection_key"],
    )
    stmt = select(Quantum.id).where(*where)
    if lock:
        stmt = backend.lock_rows(stmt)
    return conn.execute(stmt).scalar_one()


def persist_version(
    conn: Connection,
    data: QuantumData,
    solution: Any,
    *,
    config: dict[str, Any],
    task_metadata: dict[str, Any],
    started_at: dt.datetime,
    database: str,
    schema_revision: str,
    who: Who,
) -> PersistedVersion:
    """Write one solve as a new version on ``conn``'s open transaction.

    Parameters
    ----------
    conn
        A connection inside a write transaction.
    data
        The quantum's matrices the solve used.
    solution
        A :class:`calibreg.engine.ScaleSolution` for ``data``.
    config, task_metadata
        The Task's config and TaskMetadata, stored as JSON.
    started_at
        When the solve began (UTC).
    database
        The registry's URL with its password masked (provenance).
    schema_revision
        The Alembic revision the database is at (provenance).
    who
        The actor (user, host, software version, git commit).

    Returns
    -------
    PersistedVersion
        The new version's id, sequence number in its quantum, quantum id and content hash.
    """
    inst = instrument_id(conn, data.spec.instrument)
    qid = _quantum_id(conn, inst, data.spec, lock=True)
    seq = _next_seq(conn, qid)
    exp_scales = np.asarray(solution.exp_scales, dtype=float)
    row_scales = np.asarray(solution.row_scales, dtype=float)
    chash = data.result_hash(exp_scales, row_scales)
    finished = utcnow()
    provenance = _provenance(
        data,
        solution,
        who=who,
        database=database,
        schema_revision=schema_revision,
        started_at=started_at,
        finished_at=finished,
    )
    version_id = conn.execute(
        insert(CalibrationVersion).returning(CalibrationVersion.id),
        {
            "quantum_id": qid,
            "seq": seq,
            "instrument_id": inst,
            "physical_filter": data.spec.physical_filter,
            "level": data.spec.level,
            "method": str(solution.method),
            "n_exposures": len(data.exposure_ids),
            "n_rows": len(data.row_detectors),
            "n_missing": data.n_missing,
            "n_rejected": int(solution.n_rejected),
            "iterations": int(solution.iterations),
            "converged": bool(solution.converged),
            "rms": _f(solution.rms),
            "chi2": _f(solution.chi2),
            "dof": int(solution.dof),
            "error_scale": _f(solution.error_scale),
            "rms_dof": _f(solution.rms_dof),
            "weak_link_entries": int(solution.weak_link_entries),
            "weights": str(solution.weights),
            "variance": str(solution.variance),
            "content_hash": chash,
            "input_fingerprint": data.fingerprint(),
            "config": jsonable(config),
            "provenance": provenance,
            "task_metadata": jsonable(task_metadata),
            "software_version": who.software_version,
            "schema_revision": schema_revision,
            "user_name": who.user,
            "host": who.host,
            "started_at": started_at,
            "finished_at": finished,
            "created_at": finished,
        },
    ).scalar_one()
    exposures, rows = _scale_frames(version_id, inst, data, solution)
    bulk_insert(conn, "version_exposure", exposures, list(exposures.columns))
    bulk_insert(conn, "version_row", rows, list(rows.columns))
    rejected = _rejected_frame(version_id, solution)
    if len(rejected):
        bulk_insert(conn, "version_rejected", rejected, list(rejected.columns))
    return PersistedVersion(version_id, seq, qid, chash)


def _next_seq(conn: Connection, quantum: int) -> int:
    """Return the next sequence number within a quantum (its row is locked by the caller)."""
    last = conn.execute(
        select(func.coalesce(func.max(CalibrationVersion.seq), 0)).where(
            CalibrationVersion.quantum_id == quantum
        )
    ).scalar_one()
    return int(last) + 1


def _provenance(
    data: QuantumData,
    solution: Any,
    *,
    who: Who,
    database: str,
    schema_revision: str,
    started_at: dt.datetime,
    finished_at: dt.datetime,
) -> dict[str, Any]:
    """Return the provenance stored with a version: who, where, which software, which inputs."""
    return {
        "software_version": who.software_version,
        "git_commit": who.git_commit,
        "schema_revision": schema_revision,
        "host": who.host,
        "user": who.user,
        "database": database,
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "quantum": {
            "instrument": data.spec.instrument,
            "physical_filter": data.spec.physical_filter,
            "level": data.spec.level,
            "selection": data.spec.selection.canonical(),
        },
        "inputs": {
            "exposures": [int(e) for e in data.exposure_ids],
            "statistics_fingerprint": data.fingerprint(),
            "n_statistics": int(data.present.sum()),
        },
        "diagnostics": {
            "rms": _f(solution.rms),
            "n_rejected": int(solution.n_rejected),
            "iterations": int(solution.iterations),
            "converged": bool(solution.converged),
            "flagged_rows": [int(i) for i in np.flatnonzero(solution.row_flagged)],
            "flagged_exposures": [
                int(data.exposure_ids[i]) for i in np.flatnonzero(solution.exp_flagged)
            ],
            "n_missing_by_reason": _counts(solution.missing_reason_names()),
            "n_rejected_by_reason": _counts(solution.rejected_reason_names()),
            "row_flag_counts": flag_counts(solution.row_flags),
            "exposure_flag_counts": flag_counts(solution.exp_flags),
            "quality_thresholds": dataclasses.asdict(solution.quality),
        },
    }


def _scale_frames(
    version_id: int, inst: int, data: QuantumData, solution: Any
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the ``version_exposure`` and ``version_row`` rows of a solve, as frames."""
    import pandas as pd

    used = np.asarray(solution.used, dtype=bool)
    exposures = pd.DataFrame(
        {
            "version_id": version_id,
            "exposure_id": data.exposure_ids,
            "exp_index": np.arange(len(data.exposure_ids), dtype=np.int64),
            "instrument_id": inst,
            "scale": np.asarray(solution.exp_scales, dtype=float),
            "rms": np.asarray(solution.rms_exp, dtype=float),
            "n_used": used.sum(axis=0).astype(np.int64),
            "flagged": np.asarray(solution.exp_flagged, dtype=bool),
            **_fit_columns(solution, "exp"),
        }
    )
    rows = pd.DataFrame(
        {
            "version_id": version_id,
            "row_index": np.arange(len(data.row_detectors), dtype=np.int64),
            "instrument_id": inst,
            "detector_id": data.row_detectors,
            "amp_index": pd.array(
                [None if i < 0 else int(i) for i in data.row_amp_index], dtype="Int64"
            ),
            "amp_name": data.row_amp_names,
            "scale": np.asarray(solution.row_scales, dtype=float),
            "rms": np.asarray(solution.rms_row, dtype=float),
            "n_used": used.sum(axis=1).astype(np.int64),
            "flagged": np.asarray(solution.row_flagged, dtype=bool),
            **_fit_columns(solution, "row"),
        }
    )
    return exposures, rows


def _fit_columns(solution: Any, axis: str) -> dict[str, np.ndarray]:
    """Return the per-row (``axis="row"``) or per-exposure fit statistics of a solution."""
    return {
        "error": np.asarray(getattr(solution, f"{axis}_errors"), dtype=float),
        "chi2": np.asarray(getattr(solution, f"chi2_{axis}"), dtype=float),
        "dof": np.asarray(getattr(solution, f"dof_{axis}"), dtype=float),
        "rms_dof": np.asarray(getattr(solution, f"rms_dof_{axis}"), dtype=float),
        "flags": np.asarray(getattr(solution, f"{axis}_flags"), dtype=np.int64),
    }


def _rejected_frame(version_id: int, solution: Any) -> pd.DataFrame:
    """Return the ``version_rejected`` rows of a solve (one per rejected entry, row-major)."""
    import pandas as pd

    rows = np.asarray(solution.rejected_rows, dtype=np.int64)
    return pd.DataFrame(
        {
            "version_id": version_id,
            "entry_index": np.arange(rows.size, dtype=np.int64),
            "row_index": rows,
            "exp_index": np.asarray(solution.rejected_exposures, dtype=np.int64),
            "residual": np.asarray(solution.rejected_residuals, dtype=float),
            "reason": solution.rejected_reason_names(),
        }
    )


def _counts(names: list[str]) -> dict[str, int]:
    """``name → how many times it occurs``, in first-seen order."""
    out: dict[str, int] = {}
    for name in names:
        out[name] = out.get(name, 0) + 1
    return out


def _f(value: Any) -> float | None:
    value = float(value)
    return None if not np.isfinite(value) else value


# --------------------------------------------------------------------------- reading


def get_version(conn: Connection, version_id: int) -> dict[str, Any]:
    """Everything about one version except its scales."""
    table = CalibrationVersion.__table__
    row = conn.execute(
        select(
            *table.columns,
            Instrument.name.label("instrument"),
            Quantum.selection.label("selection"),
        )
        .join(Instrument, Instrument.id == table.c.instrument_id)
        .join(Quantum, Quantum.id == table.c.quantum_id)
        .where(table.c.id == version_id)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no calibration version {version_id}")
    record = dict(row._mapping)
    if isinstance(record.get("selection"), dict):  # its TAI-ns bounds, readable too
        record["selection"] = with_instant_fields(record["selection"], "time_begin", "time_end")
    dof = record.get("dof")
    chi2 = record.get("chi2")
    record["reduced_chi2"] = (
        float(chi2) / dof if dof and chi2 is not None and np.isfinite(chi2) else float("nan")
    )
    record["flagged"] = flagged_summary(conn, version_id)
    return record


def flagged_summary(conn: Connection, version_id: int) -> dict[str, list[dict[str, Any]]]:
    """Return the rows and exposures of a version that carry a quality flag, with the flags.

    ``{"rows": [{"row", "detector", "detector_name", "amp", "flags": [names]}],
    "exposures": [{"exposure", "flags": [names]}]}`` in camera / exposure order. Versions
    written before migration 0006 report their ``flagged`` entries as ``no_data``.
    """
    r, x = VersionRow, VersionExposure
    flagged_row = (r.flags != 0) | (r.flags.is_(None) & r.flagged)
    rows = conn.execute(
        select(r.row_index, r.detector_id, Detector.name, r.amp_name, r.flags, r.flagged)
        .join(
            Detector, (Detector.instrument_id == r.instrument_id) & (Detector.id == r.detector_id)
        )
        .where(r.version_id == version_id, flagged_row)
        .order_by(r.row_index)
    ).all()
    flagged_exp = (x.flags != 0) | (x.flags.is_(None) & x.flagged)
    exposures = conn.execute(
        select(x.exposure_id, x.flags, x.flagged)
        .where(x.version_id == version_id, flagged_exp)
        .order_by(x.exp_index)
    ).all()

    def names(flags: int | None, flagged: bool) -> list[str]:
        return list(flag_names(flags if flags is not None else FLAG_BITS["no_data"] * flagged))

    return {
        "rows": [
            {
                "row": int(i),
                "detector": int(d),
                "detector_name": name,
                "amp": amp,
                "flags": names(f, g),
            }
            for i, d, name, amp, f, g in rows
        ],
        "exposures": [{"exposure": int(e), "flags": names(f, g)} for e, f, g in exposures],
    }


#: What every scale listing carries after its identifying columns (fit statistics: NULL/NaN
#: for versions written before migration 0006; ``flags`` then derives from ``flagged``).
SCALE_STAT_COLUMNS = ["scale", "error", "rms", "rms_dof", "chi2", "dof", "n_used", "flagged"]


def _scale_stats(t: Any) -> list[Any]:
    return [t.scale, t.error, t.rms, t.rms_dof, t.chi2, t.dof, t.n_used, t.flagged, t.flags]


def _with_flags(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill ``flags`` (old versions: ``flagged`` as ``no_data``), add ``reduced_chi2`` and names."""
    raw = frame.pop("flags_raw")
    no_data = np.where(frame["flagged"].to_numpy(bool), FLAG_BITS["no_data"], 0)
    flags = np.where(raw.isna().to_numpy(), no_data, raw.fillna(0).to_numpy(np.int64))
    dof = frame["dof"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame.insert(
            frame.columns.get_loc("dof") + 1,
            "reduced_chi2",
            np.where(dof > 0, frame["chi2"].to_numpy(float) / dof, np.nan),
        )
    frame["flags"] = flags.astype(np.int64)
    frame["flag_names"] = [",".join(flag_names(int(m))) for m in flags]
    return frame


def exposure_scales(conn: Connection, version_id: int) -> pd.DataFrame:
    """Return a version's per-exposure scales (E) and fit statistics, in exposure order.

    Columns: ``exposure``, then :data:`SCALE_STAT_COLUMNS`, ``reduced_chi2`` (after ``dof``),
    ``flags`` (bitmask, :data:`calibreg.domain.quality.FLAGS`) and ``flag_names`` (comma
    separated, empty when none).
    """
    get_version_exists(conn, version_id)
    t = VersionExposure
    stmt = (
        select(t.exposure_id, *_scale_stats(t))
        .where(t.version_id == version_id)
        .order_by(t.exp_index)
    )
    return _with_flags(query_frame(conn, stmt, ["exposure", *SCALE_STAT_COLUMNS, "flags_raw"]))


def row_scales(conn: Connection, version_id: int) -> pd.DataFrame:
    """Return a version's per-row scales (G) and fit statistics, in camera order.

    Columns: ``row``, ``detector``, ``detector_name``, ``amp_index``, ``amp``, then as
    :func:`exposure_scales`.
    """
    get_version_exists(conn, version_id)
    t = VersionRow
    stmt = (
        select(
            t.row_index,
            t.detector_id,
            Detector.name,
            t.amp_index,
            t.amp_name,
            *_scale_stats(t),
        )
        .join(
            Detector,
            (Detector.instrument_id == t.instrument_id) & (Detector.id == t.detector_id),
        )
        .where(t.version_id == version_id)
        .order_by(t.row_index)
    )
    columns = ["row", "detector", "detector_name", "amp_index", "amp", *SCALE_STAT_COLUMNS]
    return _with_flags(query_frame(conn, stmt, [*columns, "flags_raw"]))


def rejected_entries(conn: Connection, version_id: int) -> pd.DataFrame:
    """Return the entries a version's robust fit rejected, in row-major order.

    Columns: ``row`` (row index), ``detector``, ``detector_name``, ``amp``, ``exposure``
    (id), ``exp_index``, ``residual`` (log residual against the final model) and ``reason``
    (:data:`calibreg.domain.quality.REJECTION_REASONS`). Empty for the other methods, and for
    versions written before migration 0006 (which kept only the count, ``n_rejected``).
    """
    get_version_exists(conn, version_id)
    r, row, x = VersionRejected, VersionRow, VersionExposure
    stmt = (
        select(
            r.row_index,
            row.detector_id,
            Detector.name,
            row.amp_name,
            x.exposure_id,
            r.exp_index,
            r.residual,
            r.reason,
        )
        .join(row, (row.version_id == r.version_id) & (row.row_index == r.row_index))
        .join(x, (x.version_id == r.version_id) & (x.exp_index == r.exp_index))
        .join(
            Detector,
            (Detector.instrument_id == row.instrument_id) & (Detector.id == row.detector_id),
        )
        .where(r.version_id == version_id)
        .order_by(r.entry_index)
    )
    columns = [
        "row",
        "detector",
        "detector_name",
        "amp",
        "exposure",
        "exp_index",
        "residual",
        "reason",
    ]
    return query_frame(conn, stmt, columns)


def get_version_exists(conn: Connection, version_id: int) -> None:
    """Raise NotFoundError unless the version exists."""
    found = conn.execute(
        select(CalibrationVersion.id).where(CalibrationVersion.id == version_id)
    ).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"no calibration version {version_id}")


def history(
    conn: Connection,
    *,
    instrument: str,
    physical_filter: str,
    detector: int | str,
    amp: str | None = None,
) -> pd.DataFrame:
    """One row's scale in every version of (instrument, filter), oldest first.

    Without ``amp`` the detector-level versions are used; with it, the AMP-level ones.
    """
    inst = instrument_id(conn, instrument)
    det_id = _detector_id(conn, inst, instrument, detector)
    if amp is not None:
        names = list(
            conn.execute(
                select(Amplifier.name)
                .where(Amplifier.instrument_id == inst, Amplifier.detector_id == det_id)
                .order_by(Amplifier.amp_index)
            ).scalars()
        )
        if amp not in names:
            raise NotFoundError(
                f"detector {detector} of {instrument} has no amplifier {amp!r} "
                f"(it has {', '.join(names) or 'none'})"
            )
    v, r = CalibrationVersion, VersionRow
    stmt = (
        select(
            v.id,
            v.seq,
            v.level,
            v.method,
            v.created_at,
            r.detector_id,
            r.amp_name,
            r.scale,
            r.flagged,
        )
        .join(r, r.version_id == v.id)
        .where(
            v.instrument_id == inst,
            v.physical_filter == physical_filter,
            r.detector_id == det_id,
        )
        .order_by(v.created_at, v.id)
    )
    if amp is None:
        stmt = stmt.where(v.level == "DETECTOR")
    else:
        stmt = stmt.where(v.level == "AMP", r.amp_name == amp)
    return query_frame(
        conn,
        stmt,
        [
            "version",
            "seq",
            "level",
            "method",
            "created_at",
            "detector",
            "amp",
            "scale",
            "flagged",
        ],
    )


def _detector_id(conn: Connection, inst: int, instrument: str, detector: int | str) -> int:
    if isinstance(detector, int) or str(detector).isdigit():
        det = int(detector)
        found = conn.execute(
            select(Detector.id).where(Detector.instrument_id == inst, Detector.id == det)
        ).scalar_one_or_none()
    else:
        found = conn.execute(
            select(Detector.id).where(Detector.instrument_id == inst, Detector.name == detector)
        ).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"unknown detector {detector!r} of {instrument}")
    return int(found)


def compare_row_scales(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, Any]:
    """Per-row ratio b/a of two versions' row scales (matched on detector and amplifier).

    Returns the matched table (with both versions' errors and flags, and the change in units
    of the combined standard error, ``significance``), max and rms relative change, the worst
    rows, and the rows that carry a quality flag in ``b`` that they did not carry in ``a``
    (``newly_flagged``: each with its ``flags`` gained and the flags it ``had``).
    """
    key = ["detector", "amp"]
    cols = ["detector", "amp", "scale", "error", "flags"]
    left = a[["detector_name", *cols]].copy()
    right = b[cols].copy()
    left["amp"] = left["amp"].fillna("")
    right["amp"] = right["amp"].fillna("")
    merged = left.merge(right, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    both = merged["_merge"] == "both"
    merged["ratio"] = merged["scale_b"] / merged["scale_a"]
    merged["rel_change"] = merged["ratio"] - 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        merged["significance"] = (merged["scale_b"] - merged["scale_a"]) / np.hypot(
            merged["error_a"].astype(float), merged["error_b"].astype(float)
        )
    finite = both & np.isfinite(merged["rel_change"])
    rel = merged.loc[finite, "rel_change"].to_numpy()
    sig = merged.loc[finite, "significance"].to_numpy(float)
    sig = sig[np.isfinite(sig)]
    worst = (
        merged.loc[finite]
        .reindex(merged.loc[finite, "rel_change"].abs().sort_values(ascending=False).index)
        .head(5)
    )
    fa = merged["flags_a"].fillna(0).to_numpy(np.int64)
    fb = merged["flags_b"].fillna(0).to_numpy(np.int64)
    gained = fb & ~fa
    newly = [
        {
            "detector": int(rec.detector),
            "detector_name": rec.detector_name,
            "amp": rec.amp or None,
            "flags": list(flag_names(int(g))),
            "had": list(flag_names(int(f))),
        }
        for rec, g, f in zip(merged.itertuples(index=False), gained, fa, strict=True)
        if g
    ]
    return {
        "table": merged.drop(columns=["_merge"]),
        "n_matched": int(both.sum()),
        "n_only_a": int((merged["_merge"] == "left_only").sum()),
        "n_only_b": int((merged["_merge"] == "right_only").sum()),
        "max_abs_rel_change": float(np.max(np.abs(rel))) if rel.size else float("nan"),
        "rms_rel_change": float(np.sqrt(np.mean(rel**2))) if rel.size else float("nan"),
        "max_abs_significance": float(np.max(np.abs(sig))) if sig.size else float("nan"),
        "n_newly_flagged": len(newly),
        "newly_flagged": newly,
        "worst": worst[
            ["detector", "detector_name", "amp", "scale_a", "scale_b", "rel_change", "significance"]
        ].to_dict("records"),
    }


def amplifier_names(
    conn: Connection, instrument: int, detectors: list[int]
) -> dict[int, list[str]]:
    """Return each detector's amplifier names in camera order (``{detector id: [names]}``)."""
    rows = conn.execute(
        select(Amplifier.detector_id, Amplifier.name)
        .where(Amplifier.instrument_id == instrument, Amplifier.detector_id.in_(detectors))
        .order_by(Amplifier.detector_id, Amplifier.amp_index)
    ).all()
    names: dict[int, list[str]] = {int(d): [] for d in detectors}
    for det, name in rows:
        names[int(det)].append(str(name))
    return names


def newest_versions(
    conn: Connection,
    limit: int,
    *,
    instrument: str | None = None,
    physical_filter: str | None = None,
    level: str | None = None,
) -> pd.DataFrame:
    """Return the newest ``limit`` versions (highest ids), listed oldest first.

    Columns as :func:`list_versions`. Filters as there; ``limit`` must be positive.

    Raises
    ------
    ValueError
        If ``limit`` is not positive.
    NotFoundError
        For an unknown instrument.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, not {limit}")
    stmt = filtered_versions(
        conn, instrument=instrument, physical_filter=physical_filter, level=level
    )
    stmt = stmt.order_by(CalibrationVersion.id.desc()).limit(limit)
    frame = query_frame(conn, stmt, VERSION_COLUMNS)
    return frame.iloc[::-1].reset_index(drop=True)


def history_with_flags(
    conn: Connection,
    *,
    instrument: str,
    physical_filter: str,
    detector: int | str,
    amp: str | None = None,
) -> pd.DataFrame:
    """Return :func:`history` with the row's name, error and quality flags in each version.

    Columns: those of :func:`history`, then ``detector_name``, ``error`` (standard error of
    ``scale``), ``flags`` (bitmask, :data:`calibreg.domain.quality.FLAGS`) and
    ``flag_names`` (comma separated, empty when none). Versions written before migration 0006
    report a ``flagged`` row as ``no_data``.

    Raises
    ------
    NotFoundError
        For an unknown instrument, detector or amplifier.
    """
    frame = history(
        conn,
        instrument=instrument,
        physical_filter=physical_filter,
        detector=detector,
        amp=amp,
    )
    inst = instrument_id(conn, instrument)
    det_id = _detector_id(conn, inst, instrument, detector)
    name = conn.execute(
        select(Detector.name).where(Detector.instrument_id == inst, Detector.id == det_id)
    ).scalar_one()
    v, r = CalibrationVersion, VersionRow
    stmt = (
        select(v.id, r.error, r.flags)
        .join(r, r.version_id == v.id)
        .where(
            v.instrument_id == inst,
            v.physical_filter == physical_filter,
            r.detector_id == det_id,
        )
    )
    if amp is None:
        stmt = stmt.where(v.level == "DETECTOR")
    else:
        stmt = stmt.where(v.level == "AMP", r.amp_name == amp)
    extra = query_frame(conn, stmt, ["version", "error", "flags_raw"])
    frame = frame.merge(extra, on="version", how="left", validate="one_to_one")
    raw = frame.pop("flags_raw")
    no_data = np.where(frame["flagged"].to_numpy(bool), FLAG_BITS["no_data"], 0)
    flags = np.where(raw.isna().to_numpy(), no_data, raw.fillna(0).to_numpy(np.int64))
    frame.insert(frame.columns.get_loc("detector") + 1, "detector_name", name)
    frame["flags"] = flags.astype(np.int64)
    frame["flag_names"] = [",".join(flag_names(int(m))) for m in flags]
    return frame
