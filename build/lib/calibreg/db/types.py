"""Column types that behave the same on SQLite and PostgreSQL.

Two cross-dialect problems are solved here once:

* **Instants.** SQLite has no timestamp type and silently drops time zones, so a naive
  ``datetime`` would shift by the client's offset on one backend and not the other.
  :class:`UTCDateTime` refuses naive values, stores UTC, and always returns aware UTC datetimes.
* **Floats.** Measurements are IEEE 754 binary64 on both backends (:data:`Float64`); SQLite
  stores a NaN REAL as NULL, so calibreg defines NULL in a measurement column as "no valid
  measurement" (NaN) and converts NaN ↔ NULL at this boundary on both backends.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from sqlalchemy import JSON, DateTime, Double
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: 64-bit IEEE float on both backends (REAL on SQLite, DOUBLE PRECISION on PostgreSQL).
Float64 = Double(asdecimal=False)

#: JSON documents: JSONB on PostgreSQL (indexable), JSON text on SQLite.
JSONDoc = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp; naive datetimes are refused, never guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} refused: give a timezone")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw text from a SQLite expression
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Measurement(TypeDecorator[float]):
    """A binary64 measurement where NULL means NaN ("no valid measurement") on both backends.

    PostgreSQL could store NaN itself, but then the same data would read back differently from
    SQLite; NaN is therefore written as NULL everywhere and read back as NaN.
    """

    impl = Double(asdecimal=False)
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Dialect) -> float | None:
        if value is None:
            return None
        value = float(value)
        if math.isnan(value):
            return None
        return value

    def process_result_value(self, value: float | None, dialect: Dialect) -> float:
        if value is None:
            return math.nan
        return float(value)


def utcnow() -> dt.datetime:
    """The current instant as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)
