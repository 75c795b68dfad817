"""Exposure records and their statistics written together: one transaction, one ingest batch.

A source that holds both (a butler repository: exposure dimension records and the
``cpFlatProc_metadata`` datasets of those exposures) is one ingest, not two: either everything
it brings is registered under one ``ingest_batch`` row, or nothing is. This composes the
exposure and statistics plans of :mod:`calibreg.registry.ingest` (same diff, conflict and bulk
rules) into one write; statistics may name only the exposures ingested with them.

The batch is recorded with kind ``stats`` (the schema's vocabulary: a batch that brings
statistics); ``options`` says what else it brought (``exposures``, ``via``...).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from calibreg.db.models import Exposure
from calibreg.db.types import utcnow
from calibreg.domain.provenance import Who
from calibreg.domain.reports import IngestReport
from calibreg.errors import InputError
from calibreg.registry.backend import backend_of
from calibreg.registry.common import instrument_id
from calibreg.registry.ingest import (
    EXPOSURE_VALUES,
    _existing_exposures,
    _plan,
    _refuse_duplicate_keys,
    _resolve_amplifiers,
    _resolve_detectors,
    _row_error,
    _write_plans,
    stat_plans,
)

__all__ = ["ingest_exposures_and_stats"]


def ingest_exposures_and_stats(
    conn: Connection,
    exposures: pd.DataFrame,
    stats: pd.DataFrame,
    *,
    instrument: str,
    source: str,
    sha256: str,
    who: Who,
    replace: bool = False,
    options: dict[str, Any] | None = None,
) -> IngestReport:
    """Register one instrument's exposure records and their statistics under one batch.

    Parameters
    ----------
    conn
        A connection inside a write transaction.
    exposures
        Exposure records as :func:`calibreg.formats.read_exposures` returns them (``group``
        or ``group_name``), all of ``instrument``.
    stats
        Statistics rows as :func:`calibreg.formats.read_propertylist` returns them, with
        ``exposure`` and ``detector`` ids and optionally ``source`` (the file of each row).
    instrument
        The instrument; its camera must already be registered.
    source, sha256
        What was read and its content hash, recorded with the batch.
    who
        The actor recorded with the batch.
    replace
        Overwrite exposures and statistics whose values differ (else refused).
    options
        Recorded with the batch (merged with the instrument, counts and ``replace``).

    Returns
    -------
    IngestReport
        Kind ``stats``; ``n_rows`` counts exposure records plus statistics rows.

    Raises
    ------
    InputError
        Records of another instrument; statistics naming an exposure not among ``exposures``,
        an unknown detector or amplifier, or a key twice.
    NotFoundError
        If the instrument is unknown or has no detectors (ingest its camera first).
    ConflictError
        If a stored exposure or statistic differs and ``replace`` is false.
    """
    started = utcnow()
    backend_of(conn).serialize_ingests(conn)
    inst = instrument_id(conn, instrument)
    exposures = exposures.rename(columns={"group": "group_name"}).reset_index(drop=True)
    others = sorted(set(exposures["instrument"]) - {instrument})
    if others:
        raise InputError(source, f"exposure records of other instruments {others}")
    exp_ids = exposures["id"].astype("int64")
    if exp_ids.duplicated().any():
        raise InputError(source, f"exposure {int(exp_ids[exp_ids.duplicated()].iloc[0])} twice")
    exp_plan = _plan(
        "exposure",
        Exposure.__table__,
        _existing_exposures(conn, inst, exp_ids.tolist()),
        exposures[["id", *EXPOSURE_VALUES]],
        ["id"],
        EXPOSURE_VALUES,
        lambda r: f"exposure {int(r['id'])}",
        {"instrument_id": inst},
    )
    frame = stats.reset_index(drop=True)
    if "source" not in frame.columns:
        frame["source"] = source
    frame = _resolve_detectors(conn, inst, instrument, frame)
    exp = frame["exposure"].astype("Int64")
    unknown = (exp.isna() | ~exp.isin(exp_ids)).to_numpy()
    if unknown.any():
        pos = int(np.flatnonzero(unknown)[0])
        raise _row_error(
            frame, pos, "exposure", f"exposure {exp.iloc[pos]} is not among the records"
        )
    frame = _resolve_amplifiers(conn, inst, frame.assign(exposure=exp.to_numpy(dtype="int64")))
    _refuse_duplicate_keys(frame)
    plans = [exp_plan, *stat_plans(conn, inst, frame)]
    return _write_plans(
        conn,
        plans,
        kind="stats",
        source=source,
        sha256=sha256,
        instrument_label=instrument,
        batch_instrument=inst,
        n_rows=len(exposures) + len(frame),
        replace=replace,
        options={
            **(options or {}),
            "instrument": instrument,
            "exposures": len(exposures),
            "statistics": len(frame),
            "replace": replace,
        },
        who=who,
        started=started,
    )
