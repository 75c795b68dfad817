"""The facade every caller uses: ``calibreg.Registry``, the one way into a registry database.

The CLI, the HTTP API, the services and the Task reach the database only through this class.
It owns the engine, opens connections and transactions, gathers provenance (who, where, which
software) and hands each call to the repository layer (:mod:`calibreg.registry`), which holds
all SQL. Driver errors come out as calibreg errors (:mod:`calibreg.errors`) on reads and
writes alike.

Importing this module loads SQLAlchemy and NumPy but not pandas, pyarrow or the ingest code
(:mod:`calibreg.registry.ingest`, :mod:`~calibreg.registry.combined`): those are imported by
the methods that use them, so a command that only reads a listing starts fast (issue 12).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import numbers
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calibreg.db import migrate
from calibreg.db.session import (
    BULK_STATS,
    make_engine,
    masked_url,
    resolve_url,
    sqlite_file,
    translate_errors,
)
from calibreg.domain.progress import Progress, report
from calibreg.domain.provenance import Who
from calibreg.domain.quality import DEFAULT_MAX_CHANGE
from calibreg.domain.reports import IngestReport, PersistedVersion
from calibreg.domain.streams import read_ahead
from calibreg.errors import InputError, NotFoundError, SchemaError

# Only what every command needs is imported here; the registry modules that bring NumPy
# (versions, tags, lookups, quantum, validity) and the time scales (ERFA) are imported by the
# methods that use them, so that a listing starts without them (issue 12).
from calibreg.registry import catalog, generation, listing

if TYPE_CHECKING:
    import pandas as pd

    from calibreg.db.session import Connection, Engine
    from calibreg.domain.fit import VersionFit
    from calibreg.domain.quantum import QuantumData, QuantumSpec
    from calibreg.formats.camera import CameraSpec
    from calibreg.registry import validity


def _version_id(value: object) -> int:
    """Check a version id a caller gave: an ``int``; out of the id column's range → not found."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"version id: expected an int, got {type(value).__name__}")
    value = int(value)
    if not 1 <= value <= MAX_ID:
        raise NotFoundError(f"no calibration version {value}")
    return value


#: Largest id of an id column (32-bit INTEGER on PostgreSQL).
MAX_ID = 2**31 - 1

#: The columns of :meth:`Registry.versions`, in order (the keys of
#: :meth:`Registry.version_records`' rows).
VERSION_FIELDS: tuple[str, ...] = tuple(listing.VERSION_COLUMNS)


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
    validity_index
        Answer :meth:`lookup` from the tags' active validity ranges held in memory, reloaded
        when the certification generation moves (:mod:`calibreg.registry.validity`): for a
        long-lived read service (``calibreg serve``). A one-off lookup is cheaper without.

    Raises
    ------
    SchemaError
        If ``check_schema`` and the database is empty or at another revision.
    CalibregError
        If the URL names an unsupported database or a SQLite file in a missing directory.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        check_schema: bool = True,
        engine: Engine | None = None,
        validity_index: bool = False,
    ) -> None:
        self.url = resolve_url(url) if engine is None else engine.url.render_as_string(False)
        if engine is None and check_schema:
            path = sqlite_file(self.url)
            if path is not None and not path.exists():  # do not create an empty file
                raise SchemaError(
                    f"no registry at {path}: check the path, or create one with "
                    "`calibreg db upgrade`"
                )
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else make_engine(self.url)
        self._local = threading.local()
        if check_schema:
            with translate_errors(self.database):
                migrate.require_current(self.engine)
        self._validity: validity.ValidityIndex | None = None
        if validity_index:
            from calibreg.registry import validity

            self._validity = validity.ValidityIndex(
                self.engine, self.watch_certification_generation()
            )

    def __repr__(self) -> str:
        return f"Registry({self.database!r})"

    @functools.cached_property
    def database(self) -> str:
        """The database URL with any password masked (safe to print and store).

        Computed once: every call that may fail names it (parsing the URL each time cost a
        cache-missing lookup of ``calibreg serve`` 3% of its time).
        """
        return masked_url(self.url)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def close(self) -> None:
        """Release the connection pool (unless the engine was handed in)."""
        watcher = getattr(self, "_generation_watcher", None)
        if watcher is not None:
            watcher.close()
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- connections
    @contextlib.contextmanager
    def transaction(self, *, bulk_stats: bool = False) -> Iterator[Connection]:
        """Open a write transaction: commit on success, roll back on any error.

        Nestable: inside another ``transaction()`` of this registry (same thread) it opens a
        savepoint on the same connection, so several writes can be made atomic together::

            with registry.transaction():
                registry.ingest_exposures(...)
                registry.ingest_stats(...)

        Parameters
        ----------
        bulk_stats
            The transaction writes statistics in bulk and every other row it writes has its
            references resolved by calibreg first (what ``ingest_stats_files`` does). On
            SQLite the per-row foreign-key lookups are then off for this transaction only, and
            the statistics store checks the written keys' references set-wise instead (the way
            PostgreSQL's statement-level triggers do). Ignored for a nested transaction.

        Raises
        ------
        ConflictError, SchemaError, CalibregError
            Driver errors, translated (:func:`calibreg.db.session.translate_errors`).
        """
        outer: Connection | None = getattr(self._local, "conn", None)
        if outer is not None:
            with translate_errors(self.database), outer.begin_nested():
                yield outer
            return
        with translate_errors(self.database), self.engine.connect() as conn:
            conn.execution_options(calibreg_write=True, **{BULK_STATS: bulk_stats})
            with conn.begin():
                self._local.conn = conn
                try:
                    yield conn
                finally:
                    self._local.conn = None

    def _in_transaction(self) -> bool:
        """Whether this thread is inside a :meth:`transaction` (it sees its own writes)."""
        return getattr(self._local, "conn", None) is not None

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
        with translate_errors(self.database), self.engine.connect() as conn:
            yield conn

    # ----------------------------------------------------------------- schema
    def schema_revision(self) -> str | None:
        """Return the Alembic revision the database is at (``None`` for an empty database)."""
        with translate_errors(self.database):
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
        with translate_errors(self.database):
            migrate.upgrade(self.engine, revision)
        return self.schema_revision()

    def downgrade(self, revision: str, *, destroy_data: bool = False) -> str | None:
        """Migrate the schema down to ``revision`` (``base`` removes every calibreg table).

        Refused (`ConflictError`, naming the tables and row counts) when it would drop data,
        unless ``destroy_data`` is true.

        Returns
        -------
        str or None
            The revision the database is at afterwards (``None``: empty).
        """
        with translate_errors(self.database):
            migrate.downgrade(self.engine, revision, destroy_data=destroy_data)
        return self.schema_revision()

    def grant_runtime(self, role: str) -> list[str]:
        """Grant a PostgreSQL runtime role what it needs, and nothing that bypasses a guard.

        See :func:`calibreg.db.roles.grant_runtime`.
        """
        from calibreg.db.roles import grant_runtime

        with translate_errors(self.database):
            return grant_runtime(self.engine, role)

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
        from calibreg.registry import ingest

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
        from calibreg.registry import ingest

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
        from calibreg.registry import ingest

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

    def ingest_stats_files(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        instrument: str | None = None,
        replace: bool = False,
        exposure: int | str | None = None,
        detector: int | str | None = None,
        block_bytes: int = 1 << 24,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Register the statistics of files, streamed block by block (one transaction, one batch).

        What ``calibreg ingest stats FILE...`` does: tables (CSV/Parquet) are read and written
        ``block_bytes`` at a time (:func:`calibreg.formats.iter_stats`), so peak memory does
        not grow with the files' size; PropertyList files are one block each.

        Parameters
        ----------
        paths
            The statistics files, in order (row numbers in messages count within each file).
        instrument, replace
            As :meth:`ingest_stats`.
        exposure, detector
            For PropertyList files (else taken from their names).
        block_bytes
            Bytes of a table parsed per block (about 250,000 LSSTCam rows per 16 MiB).
        progress
            A :class:`~calibreg.domain.progress.Progress` callback, called after each block
            with stage ``"read"`` (rows read and checked, of a total estimated from the files'
            sizes) and ``"stored"`` (rows compared and written, with the new/changed/unchanged
            counts as detail).

        Raises
        ------
        InputError, NotFoundError, ConflictError
            As :meth:`ingest_stats`; nothing is written.
        """
        from concurrent.futures import ThreadPoolExecutor

        from calibreg.domain.hashing import sha256_files
        from calibreg.formats import iter_stats
        from calibreg.registry import ingest

        paths = list(paths)
        if not paths:
            raise InputError("statistics", "no files given")
        kwargs = {"exposure": exposure, "detector": detector}

        estimate: list[int | None] = [None]

        def relay(stage: str, done: int, total: int | None = None, **kw: Any) -> None:
            """Give the written rows the total estimated from the files read so far."""
            if stage == "read":
                estimate[0] = total
            elif stage == "stored" and total is None:
                total = max(done, estimate[0] or 0) or None
            report(progress, stage, done, total, **kw)

        def blocks() -> Iterator[pd.DataFrame]:
            sizes = [os.path.getsize(p) for p in paths]  # readable: hashed already
            rows = done_bytes = 0
            for path, size in zip(paths, sizes, strict=True):
                table = Path(path).suffix.lower() in (".csv", ".parquet", ".pq")
                read = 0
                for block in iter_stats(path, block_bytes=block_bytes, **({} if table else kwargs)):
                    rows += len(block)
                    read = min(read + block_bytes, size) if table else size
                    total = rows * sum(sizes) / max(done_bytes + read, 1)
                    relay("read", rows, max(rows, round(total)))
                    block["source"] = str(path)  # in place: no copy of the block
                    yield block
                    del block
                done_bytes += size
            relay("read", rows, rows)

        source = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} files)"

        def unreadable(exc: OSError) -> InputError:
            return InputError(
                str(getattr(exc, "filename", None) or source),
                f"cannot read file: {exc.strerror or exc}",
            )

        for path in paths:  # refused before anything starts, as the hash used to refuse them
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise unreadable(exc) from None
        # The files are hashed (the batch's sha256) while their rows are read and written:
        # hashing first kept the database idle 0.25-0.5 s per 400 MB of CSV.
        with ThreadPoolExecutor(1, thread_name_prefix="calibreg-sha256") as pool:
            hashing = pool.submit(sha256_files, paths)

            def digest() -> str:
                try:
                    return hashing.result()
                except OSError as exc:
                    raise unreadable(exc) from None

            with self.transaction(bulk_stats=True) as conn:
                return ingest.ingest_stats_blocks(
                    conn,
                    read_ahead(blocks()),  # parse the next block while this one is written
                    source=source,
                    sha256=digest,
                    who=Who.current(),
                    instrument=instrument,
                    replace=replace,
                    progress=None if progress is None else relay,
                )

    def ingest_inputs(
        self, exposures: pd.DataFrame, stats: pd.DataFrame, *, instrument: str, **kw: Any
    ) -> IngestReport:
        """Register exposure records and their statistics together (one transaction, one batch).

        See :func:`calibreg.registry.combined.ingest_exposures_and_stats` for the keywords
        (``source``, ``sha256``, ``replace``, ``options``) and errors.
        """
        from calibreg.registry import combined

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
    def assemble(self, spec: QuantumSpec, *, progress: Progress | None = None) -> QuantumData:
        """Return the quantum's statistics as matrices (one query).

        ``progress`` hears stage ``"assembly"`` (see
        :func:`calibreg.registry.quantum.assemble`).
        """
        from calibreg.registry import quantum

        with self.read() as conn:
            return quantum.assemble(conn, spec, progress=progress)

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
        from calibreg.registry import versions

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
            return listing.list_versions(
                conn,
                instrument=instrument,
                physical_filter=physical_filter,
                level=level,
                limit=limit,
                offset=offset,
            )

    def version_records(
        self,
        *,
        instrument: str | None = None,
        physical_filter: str | None = None,
        level: str | None = None,
        newest: int | None = None,
    ) -> list[dict[str, Any]]:
        """Return versions, oldest first, as plain rows: :meth:`versions` without pandas.

        For a caller that prints the listing and needs no DataFrame (``calibreg versions
        list``, which must start fast): neither this call nor importing this module loads
        pandas.

        Parameters
        ----------
        instrument, physical_filter, level
            Filters, as :meth:`versions`.
        newest
            Only the newest this many versions, still listed oldest first (as
            :meth:`newest_versions`); ``None`` (default): every version.

        Returns
        -------
        list of dict
            One dict per version with the columns of :meth:`versions` as keys, in order
            (:data:`VERSION_FIELDS`): integers ``int`` or ``None``, ``converged`` ``bool`` or
            ``None``, ``rms`` a ``float`` (NaN when unknown), ``created_at`` a UTC
            ``datetime``.

        Raises
        ------
        ValueError
            If ``newest`` is not positive.
        NotFoundError
            For an unknown instrument.
        """
        with self.read() as conn:
            return listing.version_records(
                conn,
                instrument=instrument,
                physical_filter=physical_filter,
                level=level,
                newest=newest,
            )

    def version(self, version_id: int) -> dict[str, Any]:
        """Return one version's record: quantum, config, provenance, diagnostics, metadata.

        Raises
        ------
        NotFoundError
            If there is no such version.
        """
        from calibreg.registry import versions

        with self.read() as conn:
            return versions.get_version(conn, _version_id(version_id))

    def scales(self, version_id: int, kind: str = "row") -> pd.DataFrame:
        """Return a version's scales: ``"row"`` (G per detector/amplifier) or ``"exposure"`` (E).

        Raises
        ------
        ValueError
            For another ``kind``.
        NotFoundError
            If there is no such version.
        """
        from calibreg.registry import versions

        readers = {"row": versions.row_scales, "exposure": versions.exposure_scales}
        if kind not in readers:
            raise ValueError(f"kind must be 'row' or 'exposure', not {kind!r}")
        with self.read() as conn:
            return readers[kind](conn, _version_id(version_id))

    def rejected(self, version_id: int) -> pd.DataFrame:
        """Return the entries a version's robust fit rejected (row, exposure, residual, reason).

        See :func:`calibreg.registry.versions.rejected_entries`.

        Raises
        ------
        NotFoundError
            If there is no such version.
        """
        from calibreg.registry import versions

        with self.read() as conn:
            return versions.rejected_entries(conn, _version_id(version_id))

    def fit(self, version_id: int) -> VersionFit:
        """Return a version's fit for looking at: inputs, scales, residuals, what was left out.

        See :class:`calibreg.domain.fit.VersionFit`.

        Raises
        ------
        NotFoundError
            If there is no such version.
        """
        from calibreg.registry.fit import version_fit

        with self.read() as conn:
            return version_fit(conn, _version_id(version_id))

    def history(
        self, *, instrument: str, physical_filter: str, detector: int | str, amp: str | None = None
    ) -> pd.DataFrame:
        """Return one detector's (or amplifier's) scale in every version, oldest first."""
        from calibreg.registry import versions

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
        from calibreg.registry import tags

        with self.read() as conn:
            return tags.compare_versions(conn, _version_id(old_version), _version_id(new_version))

    def cp_pipe(self, version_id: int) -> dict[str, Any]:
        """Return the version in cp_pipe's ``cpFlatNormScales`` structure (SPEC §5).

        Built by :func:`calibreg.engine.cp_pipe_scales`, the one builder of that structure.
        """
        from calibreg.engine import cp_pipe_scales
        from calibreg.registry import versions

        with self.read() as conn:
            version = versions.get_version(conn, _version_id(version_id))
            rows = versions.row_scales(conn, _version_id(version_id))
            exps = versions.exposure_scales(conn, _version_id(version_id))
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
        begin_tai_ns: int | str | dt.datetime | None,
        end_tai_ns: int | str | dt.datetime | None = None,
        *,
        force: bool = False,
        max_change: float = DEFAULT_MAX_CHANGE,
    ) -> dict[str, Any]:
        """Certify a version in a tag for ``[begin, end)``.

        Each end is TAI ns (``int``), ISO-8601 text (UTC unless it has an offset), an aware
        ``datetime``, or ``None``/``"unbounded"``/``"open"`` for an unbounded end. See
        :func:`calibreg.registry.tags.certify`.

        Raises
        ------
        TypeError
            For a time of another type (a float, a naive date...).
        InputError
            For an unreadable time, an empty range or a bad ``max_change``.
        CertificationGateError
            If the version changes a row scale by more than ``max_change`` relative to the
            version it replaces and ``force`` is false; carries the comparison.
        ConflictError
            If the range overlaps an active certification of the tag.
        """
        from calibreg.formats.timescale import as_tai_ns
        from calibreg.registry import tags

        begin = as_tai_ns(begin_tai_ns, field="begin", side="begin")
        end = as_tai_ns(end_tai_ns, field="end", side="end")
        with self.transaction() as conn:
            return tags.certify(
                conn,
                _version_id(version_id),
                tag,
                begin,
                end,
                force=force,
                max_change=max_change,
                user=Who.current().user,
            )

    def decertify(
        self,
        tag: str,
        instrument: str,
        physical_filter: str | None,
        begin_tai_ns: int | str | dt.datetime | None,
        end_tai_ns: int | str | dt.datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Remove ``[begin, end)`` from a tag (splitting ranges); history is kept.

        Times as in :meth:`certify`; ``physical_filter=None`` is every filter. Where nothing
        is certified it returns an empty list (the butler's rule: repeatable).
        """
        from calibreg.formats.timescale import as_tai_ns
        from calibreg.registry import tags

        begin = as_tai_ns(begin_tai_ns, field="begin", side="begin")
        end = as_tai_ns(end_tai_ns, field="end", side="end")
        with self.transaction() as conn:
            return tags.decertify(
                conn,
                tag,
                instrument,
                physical_filter,
                begin,
                end,
                user=Who.current().user,
            )

    def lookup(
        self,
        instrument: str,
        physical_filter: str | None,
        tag: str,
        *,
        time_tai_ns: int | str | dt.datetime | None = None,
        exposure: int | None = None,
        as_of: dt.datetime | str | None = None,
        explain: bool = False,
    ) -> dict[str, Any]:
        """Return the version valid at an instant, or over an exposure's timespan, in a tag.

        ``time_tai_ns`` is TAI ns (``int``), ISO-8601 text or an aware ``datetime``;
        ``as_of`` a wall-clock instant (aware ``datetime`` or ISO text).

        Raises
        ------
        TypeError
            For a time or exposure of another type.
        InputError
            For an unreadable time, or both a time and an exposure.
        NothingCertifiedError
            If nothing is certified there (with ``explain``, it carries what was considered).
        AmbiguousLookupError
            If the exposure's timespan crosses a boundary between two versions.
        """
        from calibreg.formats.timescale import as_tai_ns, parse_wallclock
        from calibreg.registry import tags

        time = as_tai_ns(time_tai_ns, field="time")
        when = None if as_of is None else parse_wallclock(as_of, field="as_of", source="Registry")
        if exposure is not None and (isinstance(exposure, bool) or not isinstance(exposure, int)):
            raise TypeError(f"exposure: expected an int id, got {type(exposure).__name__}")
        index = self._validity
        if index is not None and when is None and not explain and not self._in_transaction():
            with translate_errors(self.database):
                found = index.lookup(
                    instrument, physical_filter, tag, time_tai_ns=time, exposure=exposure
                )
            if found is not None:
                return found
        with self.read() as conn:
            return tags.lookup(
                conn,
                instrument,
                physical_filter,
                tag,
                time_tai_ns=time,
                exposure=exposure,
                as_of=when,
                explain=explain,
            )

    def lookup_in_memory(
        self,
        instrument: str,
        physical_filter: str | None,
        tag: str,
        *,
        time_tai_ns: int | None = None,
    ) -> dict[str, Any] | None:
        """Return :meth:`lookup`'s answer if the validity index holds it now, else ``None``.

        Never reads the database (but for the certification generation, which a read service
        watches without a round trip on PostgreSQL): an event loop may call it in line and
        hand only the ``None`` cases to :meth:`lookup` on a thread. Always ``None`` without
        ``validity_index``, inside a :meth:`transaction`, or for a lookup by exposure.
        """
        index = self._validity
        if index is None or time_tai_ns is None or self._in_transaction():
            return None
        with translate_errors(self.database):
            return index.lookup(instrument, physical_filter, tag, time_tai_ns=time_tai_ns, io=False)

    def lookup_many(
        self,
        instrument: str,
        tag: str,
        exposures: Any = None,
        *,
        day_obs: int | tuple[int, int] | None = None,
        exposure_range: tuple[int, int] | None = None,
        as_of: dt.datetime | str | None = None,
    ) -> pd.DataFrame:
        """Return the version certified in ``tag`` for many exposures at once (best references).

        Each answer is what :meth:`lookup` with ``exposure=`` says, as a row with a ``status``
        (``ok``, ``unknown_exposure``, ``no_timespan``, ``nothing_certified``, ``ambiguous``)
        instead of an exception. Select with exactly one of ``exposures`` (an iterable of int
        ids; duplicates answered once), ``day_obs`` (a day or an inclusive ``(first, last)``)
        or ``exposure_range`` (inclusive ids). One query, whatever the number of exposures.
        See :func:`calibreg.registry.lookups.lookup_many`.

        Raises
        ------
        NotFoundError
            For an unknown instrument or tag.
        InputError
            For a bad selection: none or several, a non-integer id, more than 100,000 ids.
        """
        from calibreg.formats.timescale import parse_wallclock
        from calibreg.registry import lookups

        when = None if as_of is None else parse_wallclock(as_of, field="as_of", source="Registry")
        if isinstance(exposures, str | bytes):
            raise InputError("lookup", "exposures: give a list of int ids", field="exposures")
        with self.read() as conn:
            return lookups.lookup_many(
                conn,
                instrument,
                tag,
                exposures=exposures,
                day_obs=day_obs,
                exposure_range=exposure_range,
                as_of=when,
            )

    def certification_generation(self) -> int:
        """Return the registry's certification generation (bumped by every certify/decertify).

        A read service keys its cached lookup answers on it: while it is unchanged, every
        lookup answer is. One primary-key read (see :mod:`calibreg.registry.generation`).
        """
        with translate_errors(self.database):
            return generation.read(self.engine)

    def watch_certification_generation(self) -> Any:
        """Return a callable giving the certification generation cheaply, for a read service.

        On PostgreSQL a thread LISTENs for the triggers' notifications, so a call reads a
        Python attribute (the new value arrives milliseconds after a commit; while the listening
        connection is down, calls read the counter). On SQLite each call is one primary-key
        read. See :class:`calibreg.registry.generation.Watcher`.
        """
        watcher = getattr(self, "_generation_watcher", None)
        if watcher is None:
            watcher = self._generation_watcher = generation.Watcher(self.engine)
        return watcher

    def certifications(
        self, tag: str | None = None, *, include_closed: bool = False
    ) -> list[dict[str, Any]]:
        """Return certification rows, newest first."""
        with self.read() as conn:
            return listing.certifications(conn, tag, include_closed=include_closed)

    # ----------------------------------------------------------------- terminal views
    def newest_versions(
        self,
        limit: int,
        *,
        instrument: str | None = None,
        physical_filter: str | None = None,
        level: str | None = None,
    ) -> pd.DataFrame:
        """Return the newest ``limit`` versions, listed oldest first (columns of :meth:`versions`).

        Raises
        ------
        ValueError
            If ``limit`` is not positive.
        NotFoundError
            For an unknown instrument.
        """
        from calibreg.registry import versions

        with self.read() as conn:
            return versions.newest_versions(
                conn,
                limit,
                instrument=instrument,
                physical_filter=physical_filter,
                level=level,
            )

    def history_with_flags(
        self, *, instrument: str, physical_filter: str, detector: int | str, amp: str | None = None
    ) -> pd.DataFrame:
        """Return :meth:`history` with the detector's name, the error and the quality flags.

        See :func:`calibreg.registry.versions.history_with_flags`.

        Raises
        ------
        NotFoundError
            For an unknown instrument, detector or amplifier.
        """
        from calibreg.registry import versions

        with self.read() as conn:
            return versions.history_with_flags(
                conn,
                instrument=instrument,
                physical_filter=physical_filter,
                detector=detector,
                amp=amp,
            )

    def exposure_times(self, instrument: str, exposures: Sequence[int]) -> pd.DataFrame:
        """Return the observing records (day_obs, exposure_time, timespan) of some exposures.

        Cheaper than :meth:`exposures` (no statistics counts): for the web view's plot of a
        version's exposure scales against time. See
        :func:`calibreg.registry.catalog.exposure_times`.

        Raises
        ------
        NotFoundError
            If the instrument is unknown.
        """
        with self.read() as conn:
            return catalog.exposure_times(conn, instrument, list(exposures))
