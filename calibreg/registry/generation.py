"""The certification generation: one counter that every change to a lookup's inputs bumps.

Migration 0007 keeps it in the one-row table ``certification_generation`` and bumps it from
triggers, so no write path can forget to: every statement that inserts or updates a
certification (certify, decertify and its split pieces) and every write to ``exposure`` (a
lookup by exposure reads the exposure's timespan and filter) adds one, in the same
transaction as the change. A reader that sees generation *g* therefore sees every change up to
*g* committed, and while the number stays put every lookup answer does too: a read service
caches its answers under it and derives its ETags from it.

:func:`read` is the one cheap read a request pays: a primary-key SELECT on a connection kept
per thread outside the pool (autocommit, so each read sees the latest commit), about 10 µs on
SQLite and one loopback round trip on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any

from sqlalchemy import Connection, Engine, select

from calibreg.db.models import CertificationGeneration

_SQL = "SELECT generation FROM certification_generation WHERE id = 1"
_local = threading.local()


def current(conn: Connection) -> int:
    """Return the generation, read on ``conn`` (inside its transaction)."""
    value = conn.execute(
        select(CertificationGeneration.generation).where(CertificationGeneration.id == 1)
    ).scalar_one_or_none()
    return 0 if value is None else int(value)


def _connect(engine: Engine) -> Any:
    """Open a DBAPI connection to ``engine``'s database outside its pool, in autocommit mode."""
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    raw = engine.dialect.connect(*cargs, **cparams)
    if engine.dialect.name == "sqlite":
        raw.isolation_level = None  # no implicit BEGIN: each SELECT sees the latest commit
    else:
        raw.autocommit = True
    return raw


def read(engine: Engine) -> int:
    """Return the current generation with one primary-key read (see the module docs).

    The connection is kept per thread and per engine, and opened again once if it broke.
    """
    conns: weakref.WeakKeyDictionary[Engine, Any] | None = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = weakref.WeakKeyDictionary()
    for attempt in (0, 1):
        raw = conns.get(engine)
        if raw is None:
            raw = conns[engine] = _connect(engine)
        try:
            cur = raw.cursor()
            try:
                cur.execute(_SQL)
                row = cur.fetchone()
            finally:
                cur.close()
            return 0 if row is None else int(row[0])
        except Exception:
            conns.pop(engine, None)
            with contextlib.suppress(Exception):
                raw.close()
            if attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["current", "read"]
