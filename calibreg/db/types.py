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

from sqlalchemy import JSON, DateTime, Double, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: 64-bit IEEE float on both backends (REAL on SQLite, DOUBLE PRECISION on PostgreSQL).
Float64 = Double(asdecimal=False)


class _JSONDoc(TypeDecorator[Any]):
    """JSON documents: JSONB on PostgreSQL (indexable), JSON text on SQLite.

    A decorator rather than ``JSON().with_variant(JSONB(), ...)``: the variant needs the
    PostgreSQL dialect package imported with the models, ~40 ms of every command's start on a
    SQLite registry; here it is imported when a PostgreSQL connection compiles the type.
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        """Return JSONB on PostgreSQL, JSON elsewhere."""
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


#: JSON documents: JSONB on PostgreSQL (indexable), JSON text on SQLite.
JSONDoc = _JSONDoc()


class BoundedText(TypeDecorator[str]):
    """``VARCHAR(n)`` whose length is enforced on both backends, with a one-line error.

    PostgreSQL refuses an over-long value with a driver error, SQLite stores any length
    (a 64 MB tag name included); this refuses it on both, before the database sees it, naming
    the column, the length and the first characters of the value.
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.max_length = length

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        """Refuse text longer than the column holds.

        Raises
        ------
        calibreg.errors.InputError
            For a value over ``max_length`` characters.
        """
        if value is not None and len(value) > self.max_length:
            from calibreg.errors import InputError

            raise InputError(
                "database",
                f"text of {len(value):,} characters is longer than the column's "
                f"{self.max_length}: {value[:40]!r}...",
            )
        return value


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp; naive datetimes are refused, never guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        """Convert an aware datetime to UTC for storage (naive on SQLite, which has no zone).

        Parameters
        ----------
        value : datetime.datetime or None
            An aware datetime in any zone, or ``None`` for NULL.
        dialect : sqlalchemy.engine.Dialect
            The backend being written to.

        Returns
        -------
        datetime.datetime or None
            The same instant in UTC: aware for PostgreSQL, naive (UTC by convention) for
            SQLite.

        Raises
        ------
        TypeError
            If ``value`` is not a datetime.
        ValueError
            If ``value`` is naive: its instant depends on a zone nobody stated.
        """
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
        """Return a stored instant as an aware UTC datetime on every backend.

        Parameters
        ----------
        value : datetime.datetime, str or None
            What the driver returned: a naive UTC datetime (SQLite), an aware one
            (PostgreSQL), ISO text (a SQLite expression), or ``None``.
        dialect : sqlalchemy.engine.Dialect
            The backend read from.

        Returns
        -------
        datetime.datetime or None
            Aware, in UTC; ``None`` for NULL.
        """
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
        """Convert a measurement for storage: NaN (and ``None``) become NULL.

        Parameters
        ----------
        value : float or None
            The measurement; anything `float` accepts (NumPy scalars included).
        dialect : sqlalchemy.engine.Dialect
            The backend being written to (unused: both store the same).

        Returns
        -------
        float or None
            The value as a Python float, or ``None`` for NaN.
        """
        if value is None:
            return None
        value = float(value)
        if math.isnan(value):
            return None
        return value

    def process_result_value(self, value: float | None, dialect: Dialect) -> float:
        """Return a stored measurement as a float, NULL as NaN ("no valid measurement").

        Parameters
        ----------
        value : float or None
            What the driver returned.
        dialect : sqlalchemy.engine.Dialect
            The backend read from (unused).

        Returns
        -------
        float
        """
        if value is None:
            return math.nan
        return float(value)


def utcnow() -> dt.datetime:
    """Return the current instant as an aware UTC datetime, the form `UTCDateTime` stores."""
    return dt.datetime.now(dt.UTC)
