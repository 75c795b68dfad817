"""Bulk writes that never go row by row through the ORM.

SQLite: the driver's ``executemany`` of plain tuples inside the caller's transaction (the floor
for SQLite; NaN binds as NULL, which is what calibreg's NULL means). PostgreSQL: ``COPY ... FROM
STDIN`` in CSV form, NaN written as an empty (NULL) field, floats as their shortest exact repr.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import Connection

#: Rows per driver call: keeps memory flat for 10^7-row files without costing speed.
CHUNK_ROWS = 200_000


def bulk_insert(conn: Connection, table: str, frame: pd.DataFrame, columns: Sequence[str]) -> int:
    """Insert ``frame[columns]`` into ``table`` on the connection's open transaction.

    Float NaN becomes NULL on both backends. Returns the number of rows written.
    """
    if frame.empty:
        return 0
    dialect = conn.dialect.name
    if dialect == "sqlite":
        _sqlite_executemany(conn, table, frame, columns)
    elif dialect == "postgresql":
        _postgres_copy(conn, table, frame, columns)
    else:  # pragma: no cover - make_engine refuses other backends
        raise NotImplementedError(dialect)
    return len(frame)


def _python_columns(frame: pd.DataFrame, columns: Sequence[str]) -> list[list]:
    out = []
    for name in columns:
        col = frame[name]
        if isinstance(col.dtype, pd.api.extensions.ExtensionDtype):
            values = col.astype(object).where(col.notna(), None).tolist()
        else:
            values = col.to_numpy().tolist()
        out.append(values)
    return out


def _sqlite_executemany(
    conn: Connection, table: str, frame: pd.DataFrame, columns: Sequence[str]
) -> None:
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    raw = conn.connection.driver_connection
    for start in range(0, len(frame), CHUNK_ROWS):
        part = frame.iloc[start : start + CHUNK_ROWS]
        raw.executemany(sql, zip(*_python_columns(part, columns), strict=True))


def _postgres_copy(
    conn: Connection, table: str, frame: pd.DataFrame, columns: Sequence[str]
) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    raw = conn.connection.driver_connection
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv, NULL '')"
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    with raw.cursor() as cursor, cursor.copy(sql) as copy:
        for start in range(0, len(frame), CHUNK_ROWS):
            part = frame.iloc[start : start + CHUNK_ROWS][list(columns)]
            # Arrow's C++ writer prints doubles in their shortest round-trip form (bit-exact,
            # tested) about 8x faster than pandas.to_csv; NaN becomes NULL as for SQLite.
            arrays = []
            for name in columns:
                col = part[name]
                if pd.api.types.is_float_dtype(col.dtype):
                    values = col.to_numpy(dtype=float)
                    arrays.append(pa.array(values, mask=np.isnan(values)))
                else:
                    arrays.append(
                        pa.array(
                            col.astype(object).where(col.notna(), None).tolist()
                            if col.dtype == object
                            or isinstance(col.dtype, pd.api.extensions.ExtensionDtype)
                            else col.to_numpy()
                        )
                    )
            sink = io.BytesIO()
            pacsv.write_csv(pa.Table.from_arrays(arrays, names=list(columns)), sink, options)
            copy.write(sink.getvalue())


def nan_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise equality where NaN equals NaN (NULL means NaN in calibreg)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return (a == b) | (np.isnan(a) & np.isnan(b))
