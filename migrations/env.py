"""Alembic environment: one tree for SQLite (batch mode) and PostgreSQL.

A caller may hand over an open connection in ``config.attributes["connection"]`` (tests, and
in-memory databases, need the migration to run on *their* connection).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from calibreg.db import models  # noqa: F401  (registers every table on the metadata)
from calibreg.db.base import Base
from calibreg.db.migrate import compare_filter
from calibreg.db.session import make_engine

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=compare_filter(connection.dialect.name),
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    engine = make_engine(url or None)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit(
        "calibreg migrations run online only (they need the dialect of a live database)"
    )
run_migrations_online()
