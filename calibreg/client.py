"""The read/write facade other code imports: ``calibreg.Registry``.

It owns an engine and hands every call to the repository layer (:mod:`calibreg.registry`); the
CLI, the HTTP API and the Task use it, so all of them see the same behaviour.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from calibreg.db.migrate import current_revision, require_current
from calibreg.db.session import make_engine, masked_url, resolve_url, transaction
from calibreg.registry import catalog, quantum, versions
from calibreg.registry.quantum import QuantumData, QuantumSpec
from calibreg.registry.versions import PersistedVersion


class Registry:
    """A calibreg registry database.

    Parameters
    ----------
    url
        SQLAlchemy URL (``sqlite:///file.db``, ``postgresql://...``); default from
        ``$CALIBREG_DATABASE_URL``, else ``./calibreg.sqlite3``.
    check_schema
        Refuse a database whose schema is not at this software's revision (default).
    """

    def __init__(self, url: str | None = None, *, check_schema: bool = True,
                 engine: Engine | None = None) -> None:  # fmt: skip
        self.url = resolve_url(url)
        self.engine = engine if engine is not None else make_engine(self.url)
        if check_schema:
            require_current(self.engine)

    def __repr__(self) -> str:
        return f"Registry({masked_url(self.url)!r})"

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- inputs
    def instruments(self) -> pd.DataFrame:
        """Instruments with their detector, amplifier and exposure counts."""
        with self.engine.connect() as conn:
            return catalog.list_instruments(conn)

    def detectors(self, instrument: str) -> pd.DataFrame:
        """An instrument's detectors."""
        with self.engine.connect() as conn:
            return catalog.list_detectors(conn, instrument)

    def exposures(self, instrument: str, physical_filter: str | None = None) -> pd.DataFrame:
        """An instrument's exposures (timespans in TAI ns)."""
        with self.engine.connect() as conn:
            return catalog.list_exposures(conn, instrument, physical_filter)

    # ----------------------------------------------------------------- solving
    def assemble(self, spec: QuantumSpec) -> QuantumData:
        """The quantum's statistics as matrices (one query)."""
        with self.engine.connect() as conn:
            return quantum.assemble(conn, spec)

    def persist(
        self,
        data: QuantumData,
        solution: Any,
        *,
        config: dict[str, Any],
        task_metadata: dict[str, Any],
        started_at: dt.datetime,
    ) -> PersistedVersion:
        """Write a solve as a new immutable version (one transaction)."""
        with transaction(self.engine) as conn:
            return versions.persist_version(
                conn, data, solution, config=config, task_metadata=task_metadata,
                started_at=started_at, db_url=self.url,
                schema_revision=current_revision(conn) or "unknown",
            )  # fmt: skip

    # ----------------------------------------------------------------- versions
    def versions(
        self,
        *,
        instrument: str | None = None,
        physical_filter: str | None = None,
        level: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> pd.DataFrame:
        """Versions, oldest first, optionally filtered and paginated."""
        with self.engine.connect() as conn:
            return versions.list_versions(
                conn, instrument=instrument, physical_filter=physical_filter, level=level,
                limit=limit, offset=offset,
            )  # fmt: skip

    def version(self, version_id: int) -> dict[str, Any]:
        """One version's record: quantum, config, provenance, diagnostics, task metadata."""
        with self.engine.connect() as conn:
            return versions.get_version(conn, version_id)

    def scales(self, version_id: int, kind: str = "row") -> pd.DataFrame:
        """A version's scales: ``kind="row"`` (G per detector/amplifier) or ``"exposure"`` (E)."""
        with self.engine.connect() as conn:
            if kind == "exposure":
                return versions.exposure_scales(conn, version_id)
            if kind == "row":
                return versions.row_scales(conn, version_id)
        raise ValueError(f"kind must be 'row' or 'exposure', not {kind!r}")

    def history(
        self, *, instrument: str, physical_filter: str, detector: int | str, amp: str | None = None
    ) -> pd.DataFrame:
        """One detector's (or amplifier's) scale in every version, oldest first."""
        with self.engine.connect() as conn:
            return versions.history(
                conn, instrument=instrument, physical_filter=physical_filter,
                detector=detector, amp=amp,
            )  # fmt: skip
