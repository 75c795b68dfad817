"""The statistics store: every SQL statement that touches ``detector_stats`` and ``amp_stats``.

The background statistics are the registry's only big tables (LSSTCam: 3,024 amplifier rows
per exposure, 10^7-10^8 rows in a survey's registry). Everything that reads or writes them goes
through one small interface, :class:`StatsStore`, with one implementation per backend; no
other module builds statistics SQL.

Columnar end to end
    Reads go database → Arrow → NumPy through the Arrow Database Connectivity drivers
    (``adbc-driver-sqlite``, ``adbc-driver-postgresql``): no Python tuple is made per row.
    Measured on this project's 2-core machine, 604,800 of 3 M amplifier rows (``benchmarks/
    bench_assembly.py``): ``sqlite3`` ``fetchall`` + ``numpy.array`` 0.74-0.79 s, ADBC 0.20-0.44
    s; psycopg ``fetchall`` 0.80-1.0 s, ``COPY TO STDOUT`` parsed by Arrow's CSV reader
    0.42-0.52 s, ADBC 0.24-0.47 s. ADBC reads on a connection of its own; on PostgreSQL it
    imports the caller's transaction snapshot (``pg_export_snapshot`` / ``SET TRANSACTION
    SNAPSHOT``), so it sees exactly what the caller's transaction sees; on SQLite (WAL) it
    reads the last committed state, which is what the caller sees as long as it has not
    written statistics itself in the same transaction (the store never reads back rows it
    wrote in the same transaction). In-memory SQLite databases, which another connection
    cannot open, are read through the driver cursor instead.

    Writes stay on the caller's connection, so that a failed ingest writes nothing: rows are
    sorted by the primary key first (B-tree appends instead of random inserts), then written
    with the driver's ``executemany`` (SQLite) or a binary ``COPY ... FROM STDIN`` built from
    the NumPy columns without a Python object per row (PostgreSQL). References are checked
    set-wise, not row by row: on PostgreSQL by statement-level triggers (migration 0001), on
    SQLite in a ``bulk_stats`` transaction by :meth:`SQLiteStatsStore._before_write` (the
    per-row foreign-key lookups were 0.4 s of a 1.1 s write of 604,800 rows).

After a bulk write the store refreshes the planner's statistics (``ANALYZE`` of the table on
PostgreSQL, ``PRAGMA optimize`` on SQLite).

The quantum fetch is one query shape on both backends, ``WHERE instrument_id = ? AND
exposure_id IN (...)`` on the statistics table alone: a range of the primary key per exposure,
whatever the table's size (checked with ``EXPLAIN`` in ``tests/registry/test_stats_store.py``).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import os
import struct
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Table, and_, bindparam, func, select, update

from calibreg.db.models import AmpStats, DetectorStats
from calibreg.errors import ConflictError

#: The value columns of both statistics tables.
STAT_VALUES = ("median", "sigma", "n_pixels")

#: Exposure ids per ``IN (...)`` list (inlined integers: no bind-parameter limit applies, but
#: a bounded statement length keeps parsing cheap).
IN_CHUNK = 5_000

#: Rows per driver call on the write path.
WRITE_CHUNK = 1_000_000


@dataclasses.dataclass(frozen=True)
class StatsTable:
    """One statistics table: its name, key and the version level that reads it."""

    name: str
    table: Table
    key: tuple[str, ...]
    level: str

    @property
    def columns(self) -> tuple[str, ...]:
        """Key then value columns (what a fetch returns)."""
        return (*self.key, *STAT_VALUES)


DETECTOR = StatsTable(
    "detector_stats",
    DetectorStats.__table__,
    ("instrument_id", "exposure_id", "detector_id"),
    "DETECTOR",
)
AMP = StatsTable(
    "amp_stats",
    AmpStats.__table__,
    ("instrument_id", "exposure_id", "detector_id", "amp_index"),
    "AMP",
)
TABLES = {"DETECTOR": DETECTOR, "AMP": AMP}

#: Column order of a write (the table's own order).
_WRITE_COLUMNS = {
    "DETECTOR": (*DETECTOR.key, *STAT_VALUES, "batch_id"),
    "AMP": (*AMP.key, *STAT_VALUES, "batch_id"),
}
#: Binary-COPY field types (PostgreSQL) of each written column.
_PG_TYPES = {
    "instrument_id": ">i4",
    "exposure_id": ">i8",
    "detector_id": ">i4",
    "amp_index": ">i2",
    "median": ">f8",
    "sigma": ">f8",
    "n_pixels": ">i8",
    "batch_id": ">i4",
}
_NULLABLE = ("median", "sigma")
#: Integer columns usually holding one value per write (inlined as literals on SQLite).
_CONSTANT_CANDIDATES = ("instrument_id", "batch_id")


def table_of(level: str) -> StatsTable:
    """Return the statistics table of a version level (``"DETECTOR"`` or ``"AMP"``).

    Raises
    ------
    KeyError
        For another level.
    """
    return TABLES[level]


class StatsStore:
    """Reads and writes of the statistics tables on one backend (see the module docstring)."""

    name = ""

    # ------------------------------------------------------------------ reads

    def fetch(
        self,
        conn: Connection,
        level: str,
        inst: int,
        exposure_ids: Sequence[int],
        detectors: tuple[int, int] | None = None,
    ) -> dict[str, np.ndarray]:
        """Return the statistics of ``exposure_ids`` as NumPy columns.

        Parameters
        ----------
        conn
            The caller's connection (its transaction's snapshot is the one read).
        level
            ``"DETECTOR"`` or ``"AMP"``.
        inst
            Instrument id.
        exposure_ids
            Exposure ids (any order; duplicates harmless).
        detectors
            Only detectors ``first <= id <= last`` (all if ``None``): still one key range per
            exposure.

        Returns
        -------
        dict of str to numpy.ndarray
            ``exposure_id``, ``detector_id`` (int64), ``amp_index`` (int64, AMP level only),
            ``median``, ``sigma`` (float64, NULL → NaN) and ``n_pixels`` (int64), each of
            length n_rows, in no particular order.
        """
        spec = table_of(level)
        ids = sorted({int(i) for i in exposure_ids})
        cols = spec.columns[1:]
        parts = [
            self._read_columns(
                conn, self.fetch_sql(level, inst, ids[s : s + IN_CHUNK], detectors), cols
            )
            for s in range(0, len(ids), IN_CHUNK)
        ]
        if not parts:
            return _empty(cols)
        if len(parts) == 1:
            return parts[0]
        return {c: np.concatenate([p[c] for p in parts]) for c in cols}

    @staticmethod
    def fetch_sql(
        level: str,
        inst: int,
        exposure_ids: Sequence[int],
        detectors: tuple[int, int] | None = None,
    ) -> str:
        """Return the one query shape of a quantum fetch (ids inlined: they are validated ints).

        With ``detectors`` (``(first, last)``, an ingest's diff of one block), the range of
        the next key column narrows each exposure's range.

        Raises
        ------
        ValueError
            If ``exposure_ids`` is empty.
        """
        if not exposure_ids:
            raise ValueError("no exposure ids")
        spec = table_of(level)
        in_list = ", ".join(str(int(i)) for i in exposure_ids)
        sql = (
            f"SELECT {', '.join(spec.columns[1:])} FROM {spec.name} "
            f"WHERE instrument_id = {int(inst)} AND exposure_id IN ({in_list})"
        )
        if detectors is not None:
            first, last = (int(d) for d in detectors)
            sql += f" AND detector_id BETWEEN {first} AND {last}"
        return sql

    def existing(
        self,
        conn: Connection,
        level: str,
        inst: int,
        exposure_ids: Sequence[int],
        detectors: tuple[int, int] | None = None,
    ) -> pd.DataFrame:
        """Return the stored rows of these exposures (key without ``instrument_id``, values).

        What an ingest diffs its rows against, restricted to the detectors ``first..last``
        when given (a block of a file ordered by detector holds every exposure but a few
        detectors: reading all of those exposures' rows for each block made an identical
        re-ingest of 6 M rows grow as blocks x table; a range, not a list, keeps it one index
        descent per exposure). ``median``/``sigma`` are float64 (NULL → NaN), the key
        columns and ``n_pixels`` int64.
        """
        spec = table_of(level)
        columns = self.fetch(conn, level, inst, exposure_ids, detectors)
        return pd.DataFrame({c: columns[c] for c in spec.columns[1:]})

    @contextlib.contextmanager
    def pinned_snapshot(self, conn: Connection) -> Iterator[None]:
        """Make the reads of the block need no round trip on ``conn`` (nothing to do here)."""
        yield

    def known_exposures(
        self, conn: Connection, inst: int, exposure_ids: Sequence[int]
    ) -> list[int]:
        """Return which of ``exposure_ids`` exist, read where the statistics are read.

        For an ingest whose connection is busy writing (see :meth:`pinned_snapshot`): what
        its transaction sees, less what it wrote itself since.
        """
        ids = sorted({int(i) for i in exposure_ids})
        found: list[int] = []
        for s in range(0, len(ids), IN_CHUNK):
            in_list = ", ".join(str(i) for i in ids[s : s + IN_CHUNK])
            sql = (
                f"SELECT id AS exposure_id FROM exposure WHERE instrument_id = {int(inst)} "
                f"AND id IN ({in_list})"
            )
            found.extend(self._read_columns(conn, sql, ["exposure_id"])["exposure_id"].tolist())
        return found

    def count_per_exposure(self, level: str, inst: int, exposure_column: Any) -> Any:
        """Return a scalar subquery counting the rows of each exposure (exposure listings)."""
        table = table_of(level).table
        return (
            select(func.count())
            .where(table.c.instrument_id == inst, table.c.exposure_id == exposure_column)
            .scalar_subquery()
        )

    def exposures_with_stats(
        self, conn: Connection, level: str, inst: int, exposure_ids: Sequence[int]
    ) -> set[int]:
        """Return which of ``exposure_ids`` have at least one statistics row at ``level``."""
        table = table_of(level).table
        ids = sorted({int(i) for i in exposure_ids})
        found: set[int] = set()
        for s in range(0, len(ids), IN_CHUNK):
            found.update(
                conn.execute(
                    select(table.c.exposure_id)
                    .where(
                        table.c.instrument_id == inst,
                        table.c.exposure_id.in_(ids[s : s + IN_CHUNK]),
                    )
                    .distinct()
                ).scalars()
            )
        return found

    def _read_columns(
        self, conn: Connection, sql: str, columns: Sequence[str]
    ) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # ------------------------------------------------------------------ writes

    def write(
        self, conn: Connection, level: str, frame: pd.DataFrame, *, analyze: bool = True
    ) -> int:
        """Insert new rows on the caller's open transaction, in primary-key order.

        Parameters
        ----------
        frame
            One row per statistic with the table's columns (``instrument_id``, the key,
            ``median``, ``sigma``, ``n_pixels``, ``batch_id``); NaN medians/sigmas are stored
            as NULL.
        analyze
            Refresh the planner's statistics afterwards (a caller writing several blocks
            calls :meth:`analyze` once at the end instead).

        Returns
        -------
        int
            Rows written.

        Raises
        ------
        ConflictError
            For a key already stored or a reference (exposure, detector, amplifier) missing.
        """
        if frame.empty:
            return 0
        spec = table_of(level)
        columns = _WRITE_COLUMNS[level]
        arrays = _sorted_columns(frame, spec.key, columns)
        self._before_write(conn, level, arrays)
        n = len(frame)
        refused = conn.dialect.dbapi.IntegrityError  # the raw driver's, not SQLAlchemy's
        for start in range(0, n, WRITE_CHUNK):
            part = {c: a[start : start + WRITE_CHUNK] for c, a in arrays.items()}
            try:
                self._write_chunk(conn, spec.name, columns, part)
            except refused as err:  # a key or reference the database refuses
                first = str(err).strip().splitlines()[0]
                raise ConflictError(f"refused by the database: {first}") from err
        if analyze:
            self.analyze(conn, level, written=n)
        return n

    def replace(self, conn: Connection, level: str, frame: pd.DataFrame) -> None:
        """Overwrite the values (and ``batch_id``) of existing rows, matched on the key."""
        if frame.empty:
            return
        spec = table_of(level)
        table = spec.table
        values = (*STAT_VALUES, "batch_id")
        stmt = (
            update(table)
            .where(and_(*(table.c[k] == bindparam(f"k_{k}") for k in spec.key)))
            .values({v: bindparam(f"v_{v}") for v in values})
        )
        arrays = _sorted_columns(frame, spec.key, (*spec.key, *values))
        params = [
            {
                **{f"k_{k}": int(arrays[k][i]) for k in spec.key},
                **{f"v_{v}": _scalar(arrays[v][i]) for v in values},
            }
            for i in range(len(frame))
        ]
        conn.execute(stmt, params)

    def analyze(self, conn: Connection, level: str, *, written: int | None = None) -> None:
        """Bring the planner's statistics of the table up to date after a bulk write.

        ``written`` (rows just inserted) lets a backend skip a write too small to change them.
        """

    def _before_write(self, conn: Connection, level: str, arrays: dict[str, np.ndarray]) -> None:
        """Check what the database does not before a bulk write (nothing by default)."""

    def _write_chunk(
        self, conn: Connection, table: str, columns: Sequence[str], arrays: dict[str, np.ndarray]
    ) -> None:
        raise NotImplementedError


class SQLiteStatsStore(StatsStore):
    """SQLite: ADBC reads of the database file, ``executemany`` writes."""

    name = "sqlite"

    def _read_columns(
        self, conn: Connection, sql: str, columns: Sequence[str]
    ) -> dict[str, np.ndarray]:
        path = _sqlite_path(conn)
        if path is None:
            rows = conn.connection.driver_connection.execute(sql).fetchall()
            return _columns_from_rows(rows, columns)

        def connect() -> Any:
            import adbc_driver_sqlite.dbapi as adbc

            # Read-only URI: the ADBC connection can never write (or create) the database.
            return adbc.connect(f"file:{path}?mode=ro", autocommit=True)

        with _reader(f"sqlite:{path}", connect) as reader, reader.cursor() as cursor:
            cursor.execute(sql)
            return _columns_from_arrow(cursor.fetch_arrow_table(), columns)

    def analyze(self, conn: Connection, level: str, *, written: int | None = None) -> None:
        """``PRAGMA optimize``: SQLite's own advice to run after large changes (cheap)."""
        conn.exec_driver_sql("PRAGMA optimize")

    def _before_write(self, conn: Connection, level: str, arrays: dict[str, np.ndarray]) -> None:
        """Check the rows' references set-wise when foreign keys are off (bulk transactions).

        A ``bulk_stats`` transaction (:meth:`calibreg.client.Registry.transaction`) turns
        SQLite's per-row foreign-key lookups off; this check takes their place with the same
        guarantee, one query per referenced table on the transaction's write lock: every
        distinct exposure, and every distinct detector (or amplifier) the rows name, exists.

        Raises
        ------
        ConflictError
            Naming the first missing reference, as the foreign key would have refused it.
        """
        if conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one():
            return  # the database checks each row itself
        spec = table_of(level)
        inst = np.unique(arrays["instrument_id"])
        if len(inst) != 1:  # pragma: no cover - the store writes one instrument at a time
            raise ConflictError(f"{spec.name}: rows of {len(inst)} instruments in one write")
        inst_id = int(inst[0])
        exposures = np.unique(arrays["exposure_id"])
        known = np.array(
            conn.exec_driver_sql(
                "SELECT id FROM exposure WHERE instrument_id = ? AND id IN "
                f"({', '.join(str(int(e)) for e in exposures.tolist())})",
                (inst_id,),
            )
            .scalars()
            .all(),
            dtype=np.int64,
        )
        missing = exposures[~np.isin(exposures, known)]
        if len(missing):
            raise ConflictError(
                f"refused: {spec.name} rows of exposure {int(missing[0])}, which instrument "
                f"{inst_id} does not have (foreign key fk_{spec.name}_instrument_id_exposure_id"
                "_exposure)"
            )
        if level == "AMP":
            parent, sql = "amplifier", "SELECT detector_id, amp_index FROM amplifier"
            keys = arrays["detector_id"].astype(np.int64) << 16 | arrays["amp_index"]
        else:
            parent, sql = "detector", "SELECT id, 0 FROM detector"
            keys = arrays["detector_id"].astype(np.int64) << 16
        rows = conn.exec_driver_sql(f"{sql} WHERE instrument_id = ?", (inst_id,)).all()
        table_keys = np.array([d << 16 | a for d, a in rows], dtype=np.int64)
        wanted = np.unique(keys)
        missing = wanted[~np.isin(wanted, table_keys)]
        if len(missing):
            detector, amp = int(missing[0]) >> 16, int(missing[0]) & 0xFFFF
            what = f"detector {detector}" + (f" amplifier index {amp}" if level == "AMP" else "")
            raise ConflictError(
                f"refused: {spec.name} rows of {what}, which instrument {inst_id} has no "
                f"{parent} for (a foreign key of {spec.name})"
            )

    def _write_chunk(
        self, conn: Connection, table: str, columns: Sequence[str], arrays: dict[str, np.ndarray]
    ) -> None:
        # A column of one integer (the instrument, the batch) is written as a literal: fewer
        # values to bind per row (8 → 6 parameters, ~10% of the executemany).
        values_sql, py = [], []
        for c in columns:
            a = arrays[c]
            if c in _CONSTANT_CANDIDATES and len(a) and (a == a[0]).all():
                values_sql.append(str(int(a[0])))
                continue
            values_sql.append("?")
            if c in _NULLABLE:
                values = a.tolist()
                nan = np.flatnonzero(np.isnan(a))
                for i in nan.tolist():
                    values[i] = None
                py.append(values)
            else:
                py.append(a.tolist())
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(values_sql)})"
        conn.connection.driver_connection.executemany(sql, zip(*py, strict=True))


class PostgreSQLStatsStore(StatsStore):
    """PostgreSQL: ADBC reads in the caller's snapshot, binary ``COPY`` writes."""

    name = "postgresql"

    def _read_columns(
        self, conn: Connection, sql: str, columns: Sequence[str]
    ) -> dict[str, np.ndarray]:
        import adbc_driver_postgresql.dbapi as adbc

        if conn.in_nested_transaction():
            # A savepoint cannot export its snapshot: read on the caller's connection (what
            # it wrote in the outer transaction is then seen too).
            return _columns_from_rows(conn.exec_driver_sql(sql).all(), columns)
        pinned = conn.info.get(_PINNED)
        if pinned is not None:
            snapshot, search_path = pinned
        else:
            snapshot, search_path = _export_snapshot(conn)
        url = _reader_url(conn)
        with (
            _reader(url, lambda: adbc.connect(url, autocommit=True)) as reader,
            reader.cursor() as cursor,
        ):
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                cursor.execute(f"SET LOCAL search_path = {search_path}")
                cursor.execute(sql)
                table = cursor.fetch_arrow_table()
            finally:
                cursor.execute("ROLLBACK")
        return _columns_from_arrow(table, columns)

    @contextlib.contextmanager
    def pinned_snapshot(self, conn: Connection) -> Iterator[None]:
        """Read every statistics fetch in the block through one snapshot of ``conn``'s.

        Exported once (``pg_export_snapshot``), so that reads need no round trip on ``conn``
        itself: an ingest writes on it from another thread meanwhile. The snapshot is the
        caller's at entry; rows its transaction writes later are not in it (an ingest keeps
        its own keys in memory). The calling thread's reader connection is opened meanwhile
        in the background (:func:`_prepare_reader`): the ADBC driver takes ~85 ms to connect,
        which the first block's parse now hides instead of adding to it.
        """
        import adbc_driver_postgresql.dbapi as adbc

        url = _reader_url(conn)
        _prepare_reader(url, lambda: adbc.connect(url, autocommit=True))
        conn.info[_PINNED] = _export_snapshot(conn)
        try:
            yield
        finally:
            conn.info.pop(_PINNED, None)

    def analyze(self, conn: Connection, level: str, *, written: int | None = None) -> None:
        """``ANALYZE`` the table's key columns, unless ``written`` rows change little.

        The planner reads the key columns' statistics for every statistics query (the
        quantum fetch, the ingest's diff); the values are never filtered on. Sampling the keys
        alone took 0.06-0.08 s against 0.12 s for every column (604,800 rows, this machine);
        autovacuum's own ANALYZE fills in the rest. A write of under a tenth of an analysed
        table's rows (autovacuum's own threshold) leaves its statistics as they are.
        """
        spec = table_of(level)
        if written is not None:
            estimate = conn.exec_driver_sql(
                f"SELECT reltuples FROM pg_class WHERE oid = '{spec.name}'::regclass"
            ).scalar_one()
            if estimate is not None and estimate > 0 and written < 0.1 * estimate:
                return
        conn.exec_driver_sql(f"ANALYZE {spec.name} ({', '.join(spec.key)})")

    def _write_chunk(
        self, conn: Connection, table: str, columns: Sequence[str], arrays: dict[str, np.ndarray]
    ) -> None:
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT binary)"
        raw = conn.connection.driver_connection
        n = len(arrays[columns[0]])
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            copy.write(_PGCOPY_HEADER)
            # Encoded a slice at a time: the server parses and inserts one slice while the
            # next is encoded (encoding all 600k rows first kept it idle ~0.1 s).
            for start in range(0, n, _COPY_SLICE):
                part = {c: a[start : start + _COPY_SLICE] for c, a in arrays.items()}
                for block in pg_binary_rows(columns, part):
                    copy.write(block)
            copy.write(b"\xff\xff")


#: Rows encoded at a time in a binary ``COPY`` (~6 MB of tuples).
_COPY_SLICE = 65_536
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
#: ``conn.info`` key of a pinned snapshot (:meth:`PostgreSQLStatsStore.pinned_snapshot`).
_PINNED = "calibreg_pinned_snapshot"


def _export_snapshot(conn: Connection) -> tuple[str, str]:
    """Export ``conn``'s snapshot; return it with ``conn``'s search_path."""
    snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
    search_path = conn.exec_driver_sql("SELECT current_setting('search_path')").scalar_one()
    return snapshot, search_path


def pg_binary_rows(
    columns: Sequence[str], arrays: dict[str, np.ndarray]
) -> Iterable[bytes | memoryview]:
    """Encode rows as PostgreSQL binary ``COPY`` tuples, vectorized (no object per row).

    A tuple is its field count (int16), then per field its length (int32, -1 for NULL) and
    its big-endian value. Rows are grouped by which nullable fields are NULL (NaN), each group
    one block of fixed-size tuples: a byte matrix (one row per tuple) filled with the group's
    constant header fields once, then each value column copied in as big-endian bytes (a
    strided byte copy; assigning to the fields of a packed structured array, the first form,
    took 1.5x as long). Within a group the input order is kept.

    Parameters
    ----------
    columns
        Column names, in the ``COPY`` column-list order; types from ``_PG_TYPES``.
    arrays
        One array per column, all of the same length.

    Yields
    ------
    bytes or memoryview
        The encoded tuples of one null pattern (header and trailer not included).
    """
    n = len(arrays[columns[0]])
    nullable = [c for c in columns if c in _NULLABLE]
    if n == 0:
        return
    pattern = np.zeros(n, dtype=np.int64)
    for bit, c in enumerate(nullable):
        pattern |= np.isnan(arrays[c]).astype(np.int64) << bit
    codes = np.unique(pattern)
    for code in codes:
        rows = np.flatnonzero(pattern == code) if len(codes) > 1 else None
        null = {c for bit, c in enumerate(nullable) if code >> bit & 1}
        fields: list[tuple[str, str]] = [("nfields", ">i2")]
        for c in columns:
            fields.append((f"len_{c}", ">i4"))
            if c not in null:
                fields.append((c, _PG_TYPES[c]))
        layout = np.dtype(fields)
        header = np.zeros(1, dtype=layout)  # the constant fields of every tuple of the group
        header["nfields"] = len(columns)
        for c in columns:
            header[f"len_{c}"] = -1 if c in null else layout[c].itemsize
        m = n if rows is None else len(rows)
        out = np.empty((m, layout.itemsize), dtype=np.uint8)
        out[:] = header.view(np.uint8)
        for c in columns:
            if c in null:
                continue
            offset, size = layout.fields[c][1], layout[c].itemsize
            values = arrays[c] if rows is None else arrays[c][rows]
            big_endian = np.ascontiguousarray(values, dtype=layout[c])
            out[:, offset : offset + size] = big_endian.view(np.uint8).reshape(m, size)
        yield memoryview(out).cast("B")


_STORES: dict[str, StatsStore] = {s.name: s for s in (SQLiteStatsStore(), PostgreSQLStatsStore())}


def stats_store(conn: Connection) -> StatsStore:
    """Return the statistics store of ``conn``'s backend.

    Raises
    ------
    NotImplementedError
        For a dialect calibreg does not run on (the engine factory refuses those first).
    """
    try:
        return _STORES[conn.dialect.name]
    except KeyError:  # pragma: no cover - make_engine refuses other backends
        raise NotImplementedError(conn.dialect.name) from None


# --------------------------------------------------------------------------- helpers

#: Reader connections kept per thread (ADBC connections are not thread-safe) and per process
#: (never used across a fork), a few databases each: connecting costs more than a fetch.
_READERS = threading.local()
_READERS_PER_THREAD = 4
#: Every open reader, closed at interpreter exit (a driver finalizer run during shutdown fails).
_OPEN: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_readers() -> None:
    for reader in list(_OPEN):
        with contextlib.suppress(Exception):
            reader.close()


def _reader_url(conn: Connection) -> str:
    """Return the libpq URL of ``conn``'s database, for an ADBC reader connection."""
    return conn.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


#: Reader connections being opened in the background, by (process, thread, key), for that
#: thread.
_PREPARED: dict[tuple[int, int, str], Any] = {}
_PREPARED_LOCK = threading.Lock()


def _prepare_reader(key: str, connect: Callable[[], Any]) -> None:
    """Start opening this thread's reader of ``key`` in the background, if it has none.

    The connection is handed to this thread when :func:`_reader` first needs it (an ADBC
    connection may move between threads; it is never used by two at once).
    """
    from concurrent.futures import Future

    cache = getattr(_READERS, "cache", None)
    entry = None if cache is None else cache.get(key)
    if entry is not None and entry[0] == os.getpid():
        return
    slot = (os.getpid(), threading.get_ident(), key)
    with _PREPARED_LOCK:
        if slot in _PREPARED:
            return
        future: Future = Future()
        _PREPARED[slot] = future

    def run() -> None:
        try:
            reader = connect()
        except BaseException as exc:  # the consumer connects itself, and reports that
            future.set_exception(exc)
            return
        _OPEN.add(reader)  # closed at exit even if never handed over
        future.set_result(reader)

    threading.Thread(target=run, name="calibreg-reader-connect", daemon=True).start()


def _prepared(key: str) -> Any | None:
    """Return the reader being prepared for this thread (waiting for it), or ``None``."""
    with _PREPARED_LOCK:
        future = _PREPARED.pop((os.getpid(), threading.get_ident(), key), None)
    if future is None:
        return None
    try:
        return future.result()
    except Exception:
        return None


@contextlib.contextmanager
def _reader(key: str, connect: Callable[[], Any]) -> Iterator[Any]:
    """Lend this thread's ADBC reader of ``key``; a reader that fails is closed, not kept."""
    cache: collections.OrderedDict = getattr(_READERS, "cache", None) or collections.OrderedDict()
    _READERS.cache = cache
    pid = os.getpid()
    entry = cache.pop(key, None)
    if entry is not None and entry[0] != pid:
        entry = None  # inherited through a fork: the server side belongs to the parent
    if entry is not None:
        reader = entry[1]
    else:
        reader = _prepared(key) or connect()
        _OPEN.add(reader)
    try:
        yield reader
    except BaseException:
        with contextlib.suppress(Exception):
            reader.close()
        raise
    cache[key] = (pid, reader)
    while len(cache) > _READERS_PER_THREAD:
        _, (old_pid, old) = cache.popitem(last=False)
        if old_pid == pid:
            with contextlib.suppress(Exception):
                old.close()


def _sqlite_path(conn: Connection) -> str | None:
    database = conn.engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    from pathlib import Path

    return str(Path(database).expanduser().resolve())


def _empty(columns: Sequence[str]) -> dict[str, np.ndarray]:
    return {c: np.zeros(0, dtype=float if c in _NULLABLE else np.int64) for c in columns}


def _columns_from_arrow(table: Any, columns: Sequence[str]) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    out = {}
    for c in columns:
        col = table.column(c)
        if c in _NULLABLE:
            col = pc.fill_null(col.cast(pa.float64()), np.nan)
            out[c] = col.to_numpy().astype(np.float64, copy=False)
        else:
            out[c] = col.cast(pa.int64()).to_numpy().astype(np.int64, copy=False)
    return out


def _columns_from_rows(rows: list[tuple], columns: Sequence[str]) -> dict[str, np.ndarray]:
    if not rows:
        return _empty(columns)
    out = {}
    for k, c in enumerate(columns):
        if c in _NULLABLE:
            out[c] = np.fromiter(
                (np.nan if r[k] is None else r[k] for r in rows), dtype=float, count=len(rows)
            )
        else:
            out[c] = np.fromiter((r[k] for r in rows), dtype=np.int64, count=len(rows))
    return out


def _sorted_columns(
    frame: pd.DataFrame, key: Sequence[str], columns: Sequence[str]
) -> dict[str, np.ndarray]:
    """Return the frame's columns as NumPy arrays, rows sorted by ``key`` (NaN: missing)."""
    arrays = {}
    for c in columns:
        col = frame[c]
        if c in _NULLABLE:
            arrays[c] = col.to_numpy(dtype=float, na_value=np.nan)
        else:
            arrays[c] = col.to_numpy(dtype=np.int64)
    order = np.lexsort([arrays[k] for k in reversed(key)])
    if not np.all(order[1:] > order[:-1]):
        arrays = {c: a[order] for c, a in arrays.items()}
    return arrays


def _scalar(value: Any) -> Any:
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


__all__ = [
    "AMP",
    "DETECTOR",
    "STAT_VALUES",
    "PostgreSQLStatsStore",
    "SQLiteStatsStore",
    "StatsStore",
    "StatsTable",
    "pg_binary_rows",
    "stats_store",
    "table_of",
]
