"""Small shared pieces of the repository layer: lookups of instruments and who-is-running."""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import Connection, select

from calibreg import __version__
from calibreg.db.models import Instrument
from calibreg.errors import NotFoundError


def instrument_id(conn: Connection, name: str) -> int:
    """The id of instrument ``name``; a clear error listing the known ones if it is absent."""
    found = conn.execute(select(Instrument.id).where(Instrument.name == name)).scalar_one_or_none()
    if found is None:
        known = conn.execute(select(Instrument.name).order_by(Instrument.name)).scalars().all()
        hint = f" (known: {', '.join(known)})" if known else " (none ingested yet)"
        raise NotFoundError(f"unknown instrument {name!r}{hint}")
    return found


def instrument_names(conn: Connection) -> list[str]:
    """All instrument names, sorted."""
    return list(conn.execute(select(Instrument.name).order_by(Instrument.name)).scalars())


def current_user() -> str:
    """The login name of whoever runs calibreg (``unknown`` when the OS cannot say)."""
    try:
        return getpass.getuser()
    except Exception:
        return os.environ.get("USER", "unknown")


def current_host() -> str:
    """This machine's host name."""
    return socket.gethostname()


def software_version() -> str:
    """calibreg's version string."""
    return __version__


def sha256_files(paths: Iterable[str | Path]) -> str:
    """Content hash of one file, or of several files in the order given."""
    paths = list(paths)
    if len(paths) == 1:
        return _sha256_file(paths[0])
    outer = hashlib.sha256()
    for path in paths:
        outer.update(_sha256_file(path).encode())
    return outer.hexdigest()


def _sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
