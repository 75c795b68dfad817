"""Engines, URLs and the one transaction helper every write goes through.

``Connection`` and ``Engine`` are re-exported so that the facade (:mod:`calibreg.client`) can
name them in its signatures without importing SQLAlchemy itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import make_url

from calibreg.errors import CalibregError, ConflictError, InputError, SchemaError

__all__ = [
    "DEFAULT_SQLITE_FILE",
    "ENV_URL",
    "Connection",
    "Engine",
    "make_engine",
    "masked_url",
    "resolve_url",
    "sqlite_file",
    "transaction",
    "translate_errors",
]

#: Environment variable naming the registry database when ``--db`` is not given.
ENV_URL = "CALIBREG_DATABASE_URL"
#: The embedded default: a SQLite file in the working directory.
DEFAULT_SQLITE_FILE = "calibreg.sqlite3"


def resolve_url(url: str | None = None) -> str:
    """Return the database URL: the argument, else ``$CALIBREG_DATABASE_URL``, else a local file.

    A bare ``postgresql://`` URL is pointed at psycopg 3, the driver calibreg ships with.
    """
    url = url or os.environ.get(ENV_URL) or f"sqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError) as err:
        raise CalibregError(
            f"not a database URL: {url[:200]!r} (expected sqlite:///FILE or "
            "postgresql://USER@HOST:PORT/DB)"
        ) from err
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def masked_url(url: str) -> str:
    """Return the URL with any password replaced by ``***`` (safe to print and to store)."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_on_connect(dbapi_connection: Any, _record: object) -> None:
    """Per-connection SQLite settings: enforce foreign keys, WAL, wait instead of failing."""
    # Let SQLAlchemy own transactions (pysqlite's own BEGIN handling is off, see below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    # REPLACE conflict resolution then fires DELETE triggers (the immutability guards).
    cursor.execute("PRAGMA recursive_triggers = ON")
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.execute("PRAGMA temp_store = MEMORY")
    cursor.execute("PRAGMA cache_size = -131072")  # 128 MiB page cache
    with contextlib.suppress(Exception):  # in-memory databases have no WAL
        cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


#: Execution option of a write transaction whose statistics references are checked set-wise
#: by the statistics store (:mod:`calibreg.registry.stats_store`) instead of row by row.
BULK_STATS = "calibreg_bulk_stats"
_FK_OFF = "calibreg_foreign_keys_off"


def _sqlite_on_begin(conn: Connection) -> None:
    # A write transaction takes the write lock up front (BEGIN IMMEDIATE), so two writers queue
    # on busy_timeout instead of one failing later with "database is locked" on lock upgrade.
    # Readers use a plain (deferred) BEGIN and never block a writer under WAL.
    options = conn.get_execution_options()
    write = options.get("calibreg_write", False)
    # A bulk statistics write turns SQLite's per-row foreign-key lookups off for its own
    # transaction (the pragma cannot change inside one): 0.4 of 1.1 s for 604,800 LSSTCam rows.
    # The store checks the written keys' references set-wise instead, on the same write lock.
    # Every other transaction has them on (restored here and when the connection is returned).
    fairy = conn.connection
    _set_foreign_keys(fairy.dbapi_connection, fairy.info, not (write and options.get(BULK_STATS)))
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _set_foreign_keys(dbapi_connection: Any, info: dict, on: bool) -> None:
    """Switch foreign-key enforcement (outside a transaction), remembered in the pool entry."""
    if info.get(_FK_OFF, False) == (not on):
        return
    dbapi_connection.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")
    info[_FK_OFF] = not on


def _sqlite_on_checkin(dbapi_connection: Any, record: Any) -> None:
    if dbapi_connection is not None and record is not None:
        _set_foreign_keys(dbapi_connection, record.info, True)


def sqlite_file(url: str) -> Path | None:
    """Return the file of a SQLite URL (``None`` for other backends and in-memory databases)."""
    parsed = make_url(resolve_url(url))
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database).expanduser()


def make_engine(url: str | None = None, **kwargs: object) -> Engine:
    """Create an engine for ``url`` (see :func:`resolve_url`) with calibreg's settings."""
    url = resolve_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            parent = Path(database).expanduser().resolve().parent
            if not parent.exists():
                raise CalibregError(f"cannot open {url}: directory {parent} does not exist")
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        event.listen(engine, "checkin", _sqlite_on_checkin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)
    raise CalibregError(
        f"unsupported database {masked_url(url)!r}: calibreg runs on SQLite and PostgreSQL"
    )


def _first_line(err: exc.DBAPIError) -> str:
    return str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err)


@contextlib.contextmanager
def translate_errors(database: str | None = None) -> Iterator[None]:
    """Turn driver errors raised inside the block into calibreg errors a user can act on.

    Parameters
    ----------
    database : str, optional
        The database (masked URL) named in the messages.

    Raises
    ------
    ConflictError
        For a constraint or trigger the database refused the change with.
    InputError
        For a value the database cannot hold (out of range, too long...).
    SchemaError
        When the calibreg tables are missing (run ``calibreg db upgrade``).
    CalibregError
        For any other database error (locked, unreachable, not a database...), in one line.
    """
    where = database or "the database"
    try:
        yield
    except CalibregError:
        raise
    except OverflowError as err:  # sqlite3 binding an int beyond 64 bits
        raise InputError(
            where, f"integer outside the 64-bit range the database stores ({err})"
        ) from err
    except exc.StatementError as err:
        if isinstance(err.orig, OverflowError):
            raise InputError(where, "integer outside the 64-bit range the database stores") from err
        if isinstance(err.orig, CalibregError):  # raised while binding (e.g. BoundedText)
            raise err.orig from None
        if isinstance(err, exc.IntegrityError):
            raise ConflictError(f"refused by the database: {_first_line(err)}") from err
        if isinstance(err, exc.DataError):
            raise InputError(where, f"value refused by the database: {_first_line(err)}") from err
        _operational(err, where)
    except exc.SQLAlchemyError as err:
        msg = _first_line(err) if isinstance(err, exc.DBAPIError) else str(err).splitlines()[0]
        raise CalibregError(f"database error on {where}: {msg}") from err


def _operational(err: exc.StatementError, where: str) -> None:
    """Raise the calibreg error for an operational or programming driver error."""
    msg = _first_line(err)
    relation = "relation" in msg or isinstance(err, exc.ProgrammingError)
    lower = msg.lower()
    if "no such table" in msg or ("does not exist" in msg and relation):
        raise SchemaError(
            f"the database has no calibreg schema ({msg}); run `calibreg db upgrade`"
        ) from err
    if "database is locked" in msg:
        raise CalibregError(
            f"{where} is locked: another process held its write lock for the whole "
            "30 s wait; retry when that process has finished (or use PostgreSQL for "
            "many concurrent writers)"
        ) from err
    if "file is not a database" in msg:
        raise CalibregError(f"{where} is not a SQLite database ({msg})") from err
    if isinstance(err, exc.OperationalError) and ("connection" in lower or "could not" in lower):
        raise CalibregError(f"cannot reach {where}: {msg}") from err
    raise CalibregError(f"database error on {where}: {msg}") from err


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """Open a connection and a write transaction; commit on success, roll back on any error.

    Driver errors become calibreg errors (:func:`translate_errors`). On SQLite the transaction
    takes the write lock up front (``BEGIN IMMEDIATE``).
    """
    with translate_errors(masked_url(engine.url.render_as_string(False))), engine.connect() as conn:
        conn.execution_options(calibreg_write=True)
        with conn.begin():
            yield conn
