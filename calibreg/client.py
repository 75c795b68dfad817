"""The facade every caller uses: ``calibreg.Registry``, the one way into a registry database.

The CLI, the HTTP API, the services and the Task reach the database only through this class.
It owns the engine, opens connections and transactions, gathers provenance (who, where, which
software) and hands each call to the repository layer (:mod:`calibreg.registry`), which holds
all SQL. Driver errors come out as calibreg errors (:mod:`calibreg.errors`) on reads and
writes alike.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd

from calibreg.db import migrate
from calibreg.db.session import make_engine, masked_url, resolve_url, translate_errors
from calibreg.domain.provenance import Who
from calibreg.domain.quantum import QuantumData, QuantumSpec
from calibreg.domain.reports import IngestReport, PersistedVersion
from calibreg.registry import catalog, combined, ingest, quantum, tags, versions

if TYPE_CHECKING:
    from calibreg.db.session import Connection, Engine
    from calibreg.formats.camera import CameraSpec

#: Default refusal threshold of the certification gate (max |relative change| of a row scale).
DEFAULT_MAX_CHANGE = tags.DEFAULT_MAX_CHANGE


class Registry:
    """A calibreg registry database.

    Parameters
    ----------
    url
        SQLAlchemy URL (``sqlite:///file.db``, ``postgresql://...``); default from
        ``$CALIBREG_DATABASE_URL``, else ``./calibreg.sqlite3``.
    check_schema
        Refuse a database whose schema is not at this software's revision (default). Pass
        ``False`` only to migrate it (:meth:`upgrade`) or to ask its revision.
    engine
        Use this SQLAlchemy engine instead of creating one (the caller keeps ownership).

    Raises
    ------
    SchemaError
        If ``check_schema`` and the database is empty or at another revision.
    CalibregError
        If the URL names an unsupported database or a SQLite file in a missing directory.
    """

    def __init__(
        self, url: str | None = None, *, check_schema: bool = True, engine: Engine | None = None
    ) -> None:
        self.url = resolve_url(url) if engine is None else engine.url.render_as_string(False)
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else make_engine(self.url)
        self._local = threading.local()
        if check_schema:
            with translate_errors():
                migrate.require_current(self.engine)

    def __repr__(self) -> str:
        return f"Registry({self.database!r})"

    @property
    def database(self) -> str:
        """The database URL with any password masked (safe to print and store)."""
        return masked_url(self.url)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def close(self) -> None:
        """Release the connection pool (unless the engine was handed in)."""
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- connections
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Open a write transaction: commit on success, roll back on any error.

        Nestable: inside another ``transaction()`` of this registry (same thread) it opens a
        savepoint on the same connection, so several writes can be made atomic together::

            with registry.transaction():
                registry.ingest_exposures(...)
                registry.ingest_stats(...)

        Raises
        ------
        ConflictError, SchemaError, CalibregError
            Driver errors, translated (:func:`calibreg.db.session.translate_errors`).
        """
        outer: Connection | None = getattr(self._local, "conn", None)
        if outer is not None:
            with translate_errors(), outer.begin_nested():
                yield outer
            return
        with translate_errors(), self.engine.connect() as conn:
            conn.execution_options(calibreg_write=True)
            with conn.begin():
                self._local.conn = conn
                try:
                    yield conn
                finally:
                    self._local.conn = None

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """Open a read connection (inside a :meth:`transaction`, that transaction's own).

        Raises
        ------
        SchemaError, CalibregError
            Driver errors, translated.
        """
        outer: Connection | None = getattr(self._local, "conn", None)
        if outer is not None:
            yield outer
            return
        with translate_errors(), self.engine.connect() as conn:
            yield conn

    # ----------------------------------------------------------------- schema
    def schema_revision(self) -> str | None:
        """Return the Alembic revision the database is at (``None`` for an empty database)."""
        with translate_errors():
            return migrate.current_revision(self.engine)

    @staticmethod
    def head_revision() -> str:
        """Return the newest schema revision this software knows."""
        return migrate.head_revision()

    def upgrade(self, revision: str = "head") -> str | None:
        """Migrate the schema up to ``revision`` (creating it in an empty database).

        Returns
        -------
        str or None
            The revision the database is at afterwards.
        """
        with translate_errors():
            migrate.upgrade(self.engine, revision)
        return self.schema_revision()

    def downgrade(self, revision: str) -> str | None:
        """Migrate the schema down to ``revision`` (``base`` removes every calibreg table).

        Returns
        -------
        str or None
            The revision the database is at afterwards (``None``: empty).
        """
        with translate_errors():
            migrate.downgrade(self.engine, revision)
        return self.schema_revision()

    # ----------------------------------------------------------------- inputs
    def ingest_camera(
        self,
        camera: CameraSpec,
        *,
        source: str,
        sha256: str,
        instrument: str | None = None,
        replace: bool = False,
    ) -> IngestReport:
        """Register a camera's detectors and amplifiers (one transaction, one batch).

        See :func:`calibreg.registry.ingest.ingest_camera` for the parameters and errors.
        """
        with self.transaction() as conn:
            return ingest.ingest_camera(
                conn,
                camera,
                source=source,
                sha256=sha256,
                who=Who.current(),
                instrument=instrument,
                replace=replace,
            )

    def ingest_exposures(
        self,
        frame: pd.DataFrame,
        *,
        source: str,
        sha256: str,
        instrument: str | None = None,
        replace: bool = False,
    ) -> IngestReport:
        """Register exposure records (one transaction, one batch).

        See :func:`calibreg.registry.ingest.ingest_exposures` for the parameters and errors.
        """
        with self.transaction() as conn:
            return ingest.ingest_exposures(
                conn,
                frame,
                source=source,
                sha256=sha256,
                who=Who.current(),
                instrument=instrument,
                replace=replace,
            )

    def ingest_stats(
        self,
        frame: pd.DataFrame,
        *,
        source: str,
        sha256: str,
        instrument: str | None = None,
        replace: bool = False,
    ) -> IngestReport:
        """Register background statistics (one transaction, one batch).

        See :func:`calibreg.registry.ingest.ingest_stats` for the parameters and errors.
        """
        with self.transaction() as conn:
            return ingest.ingest_stats(
                conn,
                frame,
                source=source,
                sha256=sha256,
                who=Who.current(),
                instrument=instrument,
                replace=replace,
            )

    def ingest_inputs(
        self, exposures: pd.DataFrame, stats: pd.DataFrame, *, instrument: str, **kw: Any
    ) -> IngestReport:
        """Register exposure records and their statistics together (one transaction, one batch).

        See :func:`calibreg.registry.combined.ingest_exposures_and_stats` for the keywords
        (``source``, ``sha256``, ``replace``, ``options``) and errors.
        """
        with self.transaction() as conn:
            return combined.ingest_exposures_and_stats(
                conn, exposures, stats, instrument=instrument, who=Who.current(), **kw
            )

    def instruments(self) -> pd.DataFrame:
        """Return instruments with their detector, amplifier and exposure counts."""
        with self.read() as conn:
            return catalog.list_instruments(conn)

    def detectors(self, instrument: str) -> pd.DataFrame:
        """Return an instrument's detectors in id order."""
        with self.read() as conn:
            return catalog.list_detectors(conn, instrument)

    def exposures(self, instrument: str, physical_filter: str | None = None) -> pd.DataFrame:
        """Return an instrument's exposures (timespans in TAI ns) with statistics counts."""
        with self.read() as conn:
            return catalog.list_exposures(conn, instrument, physical_filter)

    def geometry(self, instrument: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Return detector placement (mm, degrees, pixel bbox) and amplifier bboxes."""
        with self.read() as conn:
            return catalog.geometry(conn, instrument)

    # ----------------------------------------------------------------- solving
    def assemble(self, spec: QuantumSpec) -> QuantumData:
        """Return the quantum's statistics as matrices (one query)."""
        with self.read() as conn:
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
        """Write a solve as a new immutable version (one transaction).

        See :func:`calibreg.registry.versions.persist_version`.
        """
        with self.transaction() as conn:
            return versions.persist_version(
                conn,
                data,
                solution,
                config=config,
                task_metadata=task_metadata,
                started_at=started_at,
                database=self.database,
                schema_revision=migrate.current_revision(conn) or "unknown",
                who=Who.current(),
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
        """Return versions, oldest first, optionally filtered and paginated."""
        with self.read() as conn:
            return versions.list_versions(
                conn,
                instrument=instrument,
                physical_filter=physical_filter,
                level=level,
                limit=limit,
                offset=offset,
            )

    def version(self, version_id: int) -> dict[str, Any]:
        """Return one version's record: quantum, config, provenance, diagnostics, metadata.

        Raises
        ------
        NotFoundError
            If there is no such version.
        """
        with self.read() as conn:
            return versions.get_version(conn, version_id)

    def scales(self, version_id: int, kind: str = "row") -> pd.DataFrame:
        """Return a version's scales: ``"row"`` (G per detector/amplifier) or ``"exposure"`` (E).

        Raises
        ------
        ValueError
            For another ``kind``.
        NotFoundError
            If there is no such version.
        """
        readers = {"row": versions.row_scales, "exposure": versions.exposure_scales}
        if kind not in readers:
            raise ValueError(f"kind must be 'row' or 'exposure', not {kind!r}")
        with self.read() as conn:
            return readers[kind](conn, version_id)

    def history(
        self, *, instrument: str, physical_filter: str, detector: int | str, amp: str | None = None
    ) -> pd.DataFrame:
        """Return one detector's (or amplifier's) scale in every version, oldest first."""
        with self.read() as conn:
            return versions.history(
                conn,
                instrument=instrument,
                physical_filter=physical_filter,
                detector=detector,
                amp=amp,
            )

    def compare(self, old_version: int, new_version: int) -> dict[str, Any]:
        """Compare row scales new/old: max and rms relative change, worst rows, full table."""
        with self.read() as conn:
            return tags.compare_versions(conn, old_version, new_version)

    def cp_pipe(self, version_id: int) -> dict[str, Any]:
        """Return the version in cp_pipe's ``cpFlatNormScales`` structure (SPEC §5).

        Built by :func:`calibreg.engine.cp_pipe_scales`, the one builder of that structure.
        """
        from calibreg.engine import cp_pipe_scales

        with self.read() as conn:
            version = versions.get_version(conn, version_id)
            rows = versions.row_scales(conn, version_id)
            exps = versions.exposure_scales(conn, version_id)
            detectors = sorted({int(d) for d in rows["detector"]})
            amp_names = versions.amplifier_names(conn, version["instrument_id"], detectors)
        if version["level"] == "DETECTOR":
            labels: list[Any] = [int(d) for d in rows["detector"]]
        else:
            labels = [(int(d), str(a)) for d, a in zip(rows["detector"], rows["amp"], strict=True)]
        return cp_pipe_scales(
            level=version["level"],
            row_labels=labels,
            row_scales=rows["scale"].to_numpy(float),
            exposure_ids=[int(e) for e in exps["exposure"]],
            exp_scales=exps["scale"].to_numpy(float),
            amp_names=amp_names,
        )

    # ----------------------------------------------------------------- publishing
    def certify(
        self,
        version_id: int,
        tag: str,
        begin_tai_ns: int,
        end_tai_ns: int | None = None,
        *,
        force: bool = False,
        max_change: float = DEFAULT_MAX_CHANGE,
    ) -> dict[str, Any]:
        """Certify a version in a tag for ``[begin, end)`` (TAI ns).

        See :func:`calibreg.registry.tags.certify`.

        Raises
        ------
        CertificationGateError
            If the version changes a row scale by more than ``max_change`` relative to the
            version it replaces and ``force`` is false; carries the comparison.
        ConflictError
            If the range overlaps an active certification of the tag.
        """
        with self.transaction() as conn:
            return tags.certify(
                conn,
                version_id,
                tag,
                begin_tai_ns,
                end_tai_ns,
                force=force,
                max_change=max_change,
                user=Who.current().user,
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
        with self.transaction() as conn:
            return tags.decertify(
                conn,
                tag,
                instrument,
                physical_filter,
                begin_tai_ns,
                end_tai_ns,
                user=Who.current().user,
            )

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
        """Return the version valid at a TAI instant (or an exposure's start) in a tag.

        Raises
        ------
        NothingCertifiedError
            If nothing is certified there (with ``explain``, it carries what was considered).
        """
        with self.read() as conn:
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
        """Return certification rows, newest first."""
        with self.read() as conn:
            return tags.certifications(conn, tag, include_closed=include_closed)
