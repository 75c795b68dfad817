"""Quanta: which exposures a solve uses, and their statistics assembled into matrices.

Assembly is one set-based query per quantum whose rows go straight from the driver's cursor
into NumPy arrays (no ORM object, no per-row Python type processing); rows are placed into the
matrix with vectorized index arithmetic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Select, func, select

from calibreg.db.models import Amplifier, Detector, Exposure
from calibreg.errors import InputError, SolveError
from calibreg.registry.common import instrument_id

LEVELS = ("DETECTOR", "AMP")
#: Fields a selection may down-select on (cp_pipe's ``downSelectionField`` choices).
SELECTION_FIELDS = {
    "observation_reason": "observation_reason",
    "observation_type": "observation_type",
    "science_program": "science_program",
    "group": "group_name",
}


@dataclasses.dataclass(frozen=True)
class Selection:
    """How a quantum picks its exposures (all given criteria must hold).

    ``field``/``value`` down-select case-insensitively (as cp_pipe does); ``exposures`` lists
    explicit ids; ``day_obs_min``/``day_obs_max`` bound day_obs inclusively; ``time_begin``/
    ``time_end`` (TAI ns) keep exposures whose timespan begins in ``[time_begin, time_end)``.
    """

    field: str | None = None
    value: str | None = None
    exposures: tuple[int, ...] | None = None
    day_obs_min: int | None = None
    day_obs_max: int | None = None
    time_begin: int | None = None
    time_end: int | None = None

    def __post_init__(self) -> None:
        if self.field is not None:
            if self.field not in SELECTION_FIELDS:
                raise InputError(
                    "selection",
                    f"cannot select on {self.field!r}; choose one of {', '.join(SELECTION_FIELDS)}",
                    field=self.field,
                )
            if self.value is None or str(self.value) == "":
                raise InputError(
                    "selection", f"selecting on {self.field} needs a value", field=self.field
                )
        elif self.value is not None:
            raise InputError("selection", "a selection value needs a field", field="value")
        if self.exposures is not None:
            object.__setattr__(self, "exposures", tuple(sorted({int(e) for e in self.exposures})))

    def canonical(self) -> dict[str, Any]:
        """The selection as a plain dict with only the criteria that are set (stable order)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if "exposures" in out:
            out["exposures"] = list(out["exposures"])
        if "value" in out:
            out["value"] = str(out["value"]).lower()
        return out

    def key(self) -> str:
        """sha256 of the canonical JSON: the same selection always has the same key."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> str:
        """A short human description."""
        c = self.canonical()
        if not c:
            return "all exposures"
        parts = []
        for k, v in c.items():
            if k == "exposures":
                v = f"{len(v)} ids"
            parts.append(f"{k}={v}")
        return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class QuantumSpec:
    """(instrument, physical_filter, level) plus a selection: the unit of one solve."""

    instrument: str
    physical_filter: str
    level: str = "DETECTOR"
    selection: Selection = dataclasses.field(default_factory=Selection)

    def __post_init__(self) -> None:
        level = str(self.level).upper()
        if level not in LEVELS:
            raise InputError(
                "quantum", f"level must be DETECTOR or AMP, not {self.level!r}", field="level"
            )
        object.__setattr__(self, "level", level)

    def describe(self) -> str:
        """A short human description."""
        return (
            f"{self.instrument} {self.physical_filter} {self.level} ({self.selection.describe()})"
        )


@dataclasses.dataclass
class QuantumData:
    """A quantum's statistics as matrices (rows × exposures) with their labels.

    Missing statistics are NaN in ``background``/``sigma`` and 0 in ``counts``.
    ``row_detectors``/``row_amp_index``/``row_amp_names`` label the rows (amp fields are
    ``-1``/``None`` at DETECTOR level); ``amp_names`` maps each detector to its amplifier names
    in camera order (the cp_pipe output needs them at both levels).
    """

    spec: QuantumSpec
    exposure_ids: np.ndarray
    row_detectors: np.ndarray
    row_amp_index: np.ndarray
    row_amp_names: list[str | None]
    amp_names: dict[int, list[str]]
    background: np.ndarray
    counts: np.ndarray
    sigma: np.ndarray
    present: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, exposures)."""
        return self.background.shape

    @property
    def n_missing(self) -> int:
        """Matrix entries with no statistics row at all."""
        return int((~self.present).sum())

    def row_labels(self) -> list:
        """Detector ids (DETECTOR level) or (detector, amp name) pairs (AMP level)."""
        if self.spec.level == "DETECTOR":
            return [int(d) for d in self.row_detectors]
        return [
            (int(d), str(a)) for d, a in zip(self.row_detectors, self.row_amp_names, strict=True)
        ]

    def fingerprint(self) -> str:
        """sha256 of exactly what the solve sees: labels, values, counts, sigmas, presence."""
        digest = hashlib.sha256()
        digest.update(self.spec.level.encode())
        for arr in (self.exposure_ids, self.row_detectors, self.row_amp_index):
            digest.update(np.ascontiguousarray(arr, dtype="<i8").tobytes())
        for arr in (self.background, self.counts, self.sigma):
            # NaN has many bit patterns; canonicalize so equal data hashes equal.
            canon = np.where(np.isnan(arr), np.nan, arr)
            digest.update(np.ascontiguousarray(canon, dtype="<f8").tobytes())
        digest.update(np.packbits(self.present).tobytes())
        return digest.hexdigest()


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
    """The ids of the quantum's exposures, sorted; a clear error when none match."""
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


def _raw_rows(conn: Connection, sql: str, params: dict[str, Any]) -> list[tuple]:
    """Run SQL on the driver cursor (no SQLAlchemy result processing) and fetch all rows."""
    if conn.dialect.name == "sqlite":
        names = sorted(params, key=len, reverse=True)
        for name in names:
            sql = sql.replace(f":{name}", f"@{name}")
        sql = sql.replace("@", ":")
        cursor = conn.connection.driver_connection.execute(sql, params)
        return cursor.fetchall()
    for name in sorted(params, key=len, reverse=True):
        sql = sql.replace(f":{name}", f"%({name})s")
    with conn.connection.driver_connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


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
    rows = _raw_rows(conn, sql, params)
    if not rows:
        raise SolveError(
            f"no {spec.level.lower()}-level statistics for the {len(exposure_ids)} exposure(s) "
            f"of {spec.describe()}: ingest statistics first"
        )
    # One C-level conversion of the fetched tuples (None → NaN); ids are exact in float64
    # (< 2**53), so they round-trip to int64 unchanged.
    table = np.array(rows, dtype=float)
    del rows
    exp_col = table[:, 0].astype(np.int64)
    det_col = table[:, 1].astype(np.int64)
    amp_idx = table[:, 2].astype(np.int64)
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
