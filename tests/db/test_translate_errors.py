"""Driver errors become one line a person can act on (issue 13, kind 6)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc

from calibreg.client import Registry
from calibreg.db.session import make_engine, translate_errors
from calibreg.errors import CalibregError, InputError


def test_database_is_locked_names_the_file_and_what_to_do(tmp_path) -> None:
    path = tmp_path / "r.sqlite3"
    Registry(f"sqlite:///{path}", check_schema=False).upgrade()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    engine = make_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(CalibregError) as info:
            _write(engine, str(path))
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    message = str(info.value)
    assert str(path) in message and "locked" in message and "retry" in message
    assert "\n" not in message


def test_an_out_of_range_value_is_an_input_error_not_a_traceback() -> None:
    orig = Exception("value out of range for type integer\nDETAIL: more")
    err = exc.DataError("SELECT 1", {}, orig)
    with pytest.raises(InputError, match="value refused by the database: value out of range"):
        _raise_inside(err)


def _write(engine, where: str) -> None:
    with translate_errors(where), engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA busy_timeout = 50")
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _raise_inside(err: Exception) -> None:
    with translate_errors("db"):
        raise err
