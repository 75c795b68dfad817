"""Declarative base with a constraint naming convention.

Every constraint gets a deterministic name so that SQLite batch migrations (which rebuild tables)
and PostgreSQL agree on names, and so that a migration can drop a constraint by name.
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every calibreg table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
