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
SQLite and one loopback round trip on PostgreSQL (~0.3 ms here, and it blocks a server's event
loop). A read service on PostgreSQL therefore uses :class:`Watcher` instead: the migration's
trigger also sends ``NOTIFY calibreg_generation`` with the new value, which a thread per process
LISTENs for, so a request reads a Python attribute. The notification arrives after the commit
(milliseconds later) and wakes the thread, which then reads the counter (the payload is not
trusted: registries in other schemas of the same database notify on the same channel); it
also re-reads the counter every second, and while its connection is down every request reads
the counter itself.
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


class Watcher:
    """The current generation of ``engine``'s registry, kept by LISTEN/NOTIFY (PostgreSQL).

    Call the instance for the value. On SQLite (no NOTIFY) every call is :func:`read`.
    """

    #: Seconds between the thread's own reads of the counter (a backstop, and reconnects).
    POLL = 1.0

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.value: int | None = None
        self.listening = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __call__(self) -> int:
        """Return the generation: the watched value, or a read while not listening."""
        if self.engine.dialect.name != "postgresql":
            return read(self.engine)
        if self._thread is None:
            self._start()
        if not self.listening or self.value is None:
            return self._raise_to(read(self.engine))
        return self.value

    def _raise_to(self, value: int) -> int:
        with self._lock:  # the counter only grows: never step back to an older value
            if self.value is None or value > self.value:
                self.value = value
            return self.value

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="calibreg-generation", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Stop the listening thread (it ends within :attr:`POLL` seconds)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            raw = None
            try:
                raw = _connect(self.engine)
                raw.execute("LISTEN calibreg_generation")
                self._raise_to(_read_on(raw))  # after LISTEN: nothing can slip between
                self.listening = True
                while not self._stop.is_set():
                    # A notification only says that *a* counter moved: every calibreg schema
                    # in the database notifies on the one channel, and trusting its payload
                    # keyed this registry's answers to another's (higher) generation, so that
                    # its own next certification went unseen. Wake up, read this one's.
                    for _note in raw.notifies(timeout=self.POLL, stop_after=1):
                        pass
                    self._raise_to(_read_on(raw))
            except Exception:
                self.listening = False
                self._stop.wait(self.POLL)
            finally:
                self.listening = False
                if raw is not None:
                    with contextlib.suppress(Exception):
                        raw.close()


def _read_on(raw: Any) -> int:
    cur = raw.cursor()
    try:
        cur.execute(_SQL)
        row = cur.fetchone()
    finally:
        cur.close()
    return 0 if row is None else int(row[0])


__all__ = ["Watcher", "current", "read"]
