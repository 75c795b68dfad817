"""Bulk writes that never go row by row through the ORM.

SQLite: the driver's ``executemany`` of plain tuples inside the caller's transaction (the floor
for SQLite; NaN binds as NULL, which is what calibreg's NULL means). PostgreSQL: ``COPY ... FROM
STDIN`` in CSV form, NaN written as an empty (NULL) field, floats as their shortest exact repr.
The dialect-specific code lives in :mod:`calibreg.registry.backend`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from calibreg.registry.backend import backend_of

if TYPE_CHECKING:
    import pandas as pd


def bulk_insert(conn: Connection, table: str, frame: pd.DataFrame, columns: Sequence[str]) -> int:
    """Insert ``frame[columns]`` into ``table`` on the connection's open transaction.

    Float NaN becomes NULL on both backends.

    Returns
    -------
    int
        The number of rows written.
    """
    return backend_of(conn).bulk_insert(conn, table, frame, columns)


__all__ = ["bulk_insert"]
