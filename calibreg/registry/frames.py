"""Query results as typed DataFrames: integers stay exact, missing stays missing.

A plain ``pd.DataFrame(rows)`` turns an integer column with one NULL into float64, and an
int64 id or TAI-ns time above 2**53 then silently loses its last digits. Every listing of the
repository layer builds its frame here instead, typing each column from the SQL type of the
selected expression: integers as pandas' nullable ``Int64``, booleans as ``boolean``, floats
as ``float64`` (NULL measurement → NaN, calibreg's meaning), the rest as Python objects.

`query_records` gives the same values without pandas, as plain Python rows (``int`` or
``None``, ``bool`` or ``None``, ``float`` with NaN for NULL): for callers that print a listing
and need no DataFrame (``calibreg versions list``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.sql import Select

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["query_frame", "query_records", "typed_frame"]


def _dtype(sql_type: Any) -> str | None:
    impl = getattr(sql_type, "impl", sql_type)  # TypeDecorator → its storage type
    if isinstance(impl, sa.Boolean):
        return "boolean"
    if isinstance(impl, sa.Integer):
        return "Int64"
    if isinstance(impl, sa.Float | sa.Numeric):
        return "float64"
    return None


def typed_frame(
    rows: Sequence[Sequence[Any]], columns: Sequence[str], sql_types: Sequence[Any]
) -> pd.DataFrame:
    """Build a DataFrame from result rows, one dtype per column from its SQL type.

    Parameters
    ----------
    rows : sequence of row tuples
        Result rows, in ``columns`` order.
    columns : sequence of str
        Output column names.
    sql_types : sequence of sqlalchemy types
        The SQL type of each column.

    Returns
    -------
    pandas.DataFrame
        Integer columns are ``Int64`` (exact for every int64, ``<NA>`` for NULL), boolean
        columns ``boolean``, float columns ``float64``, others ``object``.
    """
    import pandas as pd

    data: dict[str, Any] = {}
    values = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    for name, col, sql_type in zip(columns, values, sql_types, strict=True):
        dtype = _dtype(sql_type)
        if dtype == "float64":
            data[name] = pd.array(
                [float("nan") if v is None else float(v) for v in col], dtype="float64"
            )
        elif dtype is not None:
            data[name] = pd.array(list(col), dtype=dtype)
        else:
            data[name] = pd.Series(list(col), dtype=object)
    return pd.DataFrame(data, columns=list(columns))


def query_frame(
    conn: Connection, stmt: Select, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Run ``stmt`` and return its rows as a typed DataFrame (see `typed_frame`).

    Parameters
    ----------
    conn : sqlalchemy.Connection
        Open connection.
    stmt : sqlalchemy.Select
        The query; its selected columns give the SQL types.
    columns : sequence of str, optional
        Output names (default: the selected columns' names), one per selected column.
    """
    selected = list(stmt.selected_columns)
    names = [c.name for c in selected] if columns is None else list(columns)
    return typed_frame(conn.execute(stmt).all(), names, [c.type for c in selected])


def query_records(
    conn: Connection, stmt: Select, columns: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Run ``stmt`` and return its rows as dicts of the values `query_frame` would hold.

    Parameters
    ----------
    conn : sqlalchemy.Connection
        Open connection.
    stmt : sqlalchemy.Select
        The query; its selected columns give the SQL types.
    columns : sequence of str, optional
        Output names (default: the selected columns' names), one per selected column, in the
        order of each dict's keys.

    Returns
    -------
    list of dict
        One dict per row: integer columns ``int`` (``None`` for NULL), boolean columns
        ``bool`` (``None`` for NULL), float columns ``float`` (NaN for NULL), others as the
        driver returns them; the values of ``query_frame(conn, stmt, columns)``, without
        pandas.
    """
    selected = list(stmt.selected_columns)
    names = [c.name for c in selected] if columns is None else list(columns)
    casts = [_CASTS.get(_dtype(c.type)) for c in selected]
    return [
        {
            name: (cast(v) if cast is not None else v)
            for name, v, cast in zip(names, row, casts, strict=True)
        }
        for row in conn.execute(stmt).all()
    ]


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


#: Per `_dtype`: the Python value a `typed_frame` column of that dtype holds for a driver value.
_CASTS = {"float64": _float, "Int64": _int, "boolean": _bool}
