"""Small shared pieces of the repository layer: lookups of instruments by name."""

from __future__ import annotations

from sqlalchemy import Connection, select

from calibreg.db.models import Instrument
from calibreg.errors import NotFoundError


def instrument_id(conn: Connection, name: str) -> int:
    """Return the id of instrument ``name``.

    Raises
    ------
    NotFoundError
        If it is absent; the message lists the known instruments.
    """
    found = conn.execute(select(Instrument.id).where(Instrument.name == name)).scalar_one_or_none()
    if found is None:
        known = conn.execute(select(Instrument.name).order_by(Instrument.name)).scalars().all()
        hint = f" (known: {', '.join(known)})" if known else " (none ingested yet)"
        raise NotFoundError(f"unknown instrument {name!r}{hint}")
    return found


def instrument_names(conn: Connection) -> list[str]:
    """Return all instrument names, sorted."""
    return list(conn.execute(select(Instrument.name).order_by(Instrument.name)).scalars())
