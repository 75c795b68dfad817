"""Run the Alembic tree shipped inside the package (works from an installed wheel)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from calibreg.errors import SchemaError


def compare_filter(dialect_name: str) -> Callable[..., bool]:
    """``include_object`` for schema comparison (autogenerate) on ``dialect_name``.

    Skips Alembic's own version table, and on PostgreSQL the statistics tables' references,
    which that backend enforces with statement-level triggers rather than foreign keys.
    """
    from calibreg.db.models import STATEMENT_CHECKED_REFERENCES

    def include(
        obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
    ) -> bool:
        if type_ == "table" and name == "alembic_version":
            return False
        return not (
            dialect_name == "postgresql"
            and type_ == "foreign_key_constraint"
            and name in STATEMENT_CHECKED_REFERENCES
        )

    return include


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged tree, optionally bound to ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("calibreg_migrations")))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision this software knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine_or_conn: Engine | Connection) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    return MigrationContext.configure(engine_or_conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision``."""
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), revision)
        conn.commit()


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` empties it)."""
    with engine.connect() as conn:
        command.downgrade(alembic_config(conn), revision)
        conn.commit()


def require_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is missing or not at this software's head."""
    current = current_revision(engine)
    head = head_revision()
    if current is None:
        raise SchemaError("the database has no calibreg schema: run `calibreg db upgrade` first")
    if current != head:
        raise SchemaError(
            f"the database schema is at revision {current}, this calibreg needs {head}: "
            "run `calibreg db upgrade`"
        )
