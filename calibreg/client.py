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
from calibreg.registry import catalog, quantum, tags, versions
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

    def __init__(
        self, url: str | None = None, *, check_schema: bool = True, engine: Engine | None = None
    ) -> None:
        self.url = resolve_url(url)
        self.engine = engine if engine is not None else make_engine(self.url)
        if check_schema:
            require_current(self.engine)

    def __repr__(self) -> str:
        return f"Registry({masked_url(self.url)!r})"

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (``None`` for an empty database)."""
        return current_revision(self.engine)

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
                conn,
                data,
                solution,
                config=config,
                task_metadata=task_metadata,
                started_at=started_at,
                db_url=self.url,
                schema_revision=current_revision(conn) or "unknown",
            )

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
                conn,
                instrument=instrument,
                physical_filter=physical_filter,
                level=level,
                limit=limit,
                offset=offset,
            )

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
                conn,
                instrument=instrument,
                physical_filter=physical_filter,
                detector=detector,
                amp=amp,
            )

    def compare(self, old_version: int, new_version: int) -> dict[str, Any]:
        """Per-row scale ratios new/old: max and rms relative change, worst rows, full table."""
        with self.engine.connect() as conn:
            return tags.compare_versions(conn, old_version, new_version)

    def cp_pipe(self, version_id: int) -> dict[str, Any]:
        """The version in cp_pipe's ``cpFlatNormScales`` structure (SPEC §5)."""
        with self.engine.connect() as conn:
            return versions.cp_pipe_structure(conn, version_id)

    # ----------------------------------------------------------------- publishing
    def certify(
        self,
        version_id: int,
        tag: str,
        begin_tai_ns: int,
        end_tai_ns: int | None = None,
        *,
        force: bool = False,
        max_change: float = tags.DEFAULT_MAX_CHANGE,
    ) -> dict[str, Any]:
        """Certify a version in a tag for ``[begin, end)`` (TAI ns); see :func:`tags.certify`."""
        with transaction(self.engine) as conn:
            return tags.certify(
                conn,
                version_id,
                tag,
                begin_tai_ns,
                end_tai_ns,
                force=force,
                max_change=max_change,
            )

    def decertify(
        self,
        tag: str,
        instrument: str,
        physical_filter: str,
        begin_tai_ns: int,
        end_tai_ns: int | None = None,
    ) -> list[dict[str, Any]]:
        """Remove ``[begin, end)`` from a tag (splitting ranges); history is kept."""
        with transaction(self.engine) as conn:
            return tags.decertify(conn, tag, instrument, physical_filter, begin_tai_ns, end_tai_ns)

    def lookup(
        self,
        instrument: str,
        physical_filter: str | None,
        tag: str,
        *,
        time_tai_ns: int | None = None,
        exposure: int | None = None,
        as_of: dt.datetime | None = None,
        explain: bool = False,
    ) -> dict[str, Any]:
        """The version valid at a TAI instant (or an exposure's start) in a tag."""
        with self.engine.connect() as conn:
            return tags.lookup(
                conn,
                instrument,
                physical_filter,
                tag,
                time_tai_ns=time_tai_ns,
                exposure=exposure,
                as_of=as_of,
                explain=explain,
            )

    def certifications(
        self, tag: str | None = None, *, include_closed: bool = False
    ) -> list[dict[str, Any]]:
        """Certification rows, newest first."""
        with self.engine.connect() as conn:
            return tags.certifications(conn, tag, include_closed=include_closed)
