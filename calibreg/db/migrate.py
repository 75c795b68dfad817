"""Run the Alembic tree shipped inside the package (works from an installed wheel).

Alembic is imported only by the functions that migrate or walk the tree: opening a registry
(:func:`require_current`) reads the database's revision with one query and finds the tree's
head from the migration files' ``revision``/``down_revision`` lines, so that every CLI command
does not pay Alembic's import (~0.3 s). A test checks that head against Alembic's own.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, func, inspect, select, table, text

from calibreg.errors import ConflictError, SchemaError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory


def compare_filter(dialect_name: str) -> Callable[..., bool]:
    """Build the ``include_object`` filter for schema comparison (autogenerate).

    Skips Alembic's own version table, and on PostgreSQL the statistics tables' references,
    which that backend enforces with statement-level triggers rather than foreign keys, so
    that comparing the models with a migrated database reports no false difference.

    Parameters
    ----------
    dialect_name : str
        SQLAlchemy dialect of the compared database (``"sqlite"``, ``"postgresql"``).

    Returns
    -------
    callable
        ``include(obj, name, type_, reflected, compare_to) -> bool``, Alembic's
        ``include_object`` signature.
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
    """Return an Alembic config for the migration tree shipped in ``calibreg_migrations``.

    The tree is found through `importlib.resources`, so no ``alembic.ini`` or source checkout
    is needed.

    Parameters
    ----------
    connection : sqlalchemy.Connection, optional
        Passed to the migration environment in ``config.attributes["connection"]`` so that
        the migrations run on this connection (needed for in-memory SQLite and for tests).

    Returns
    -------
    alembic.config.Config
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("calibreg_migrations")))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.M)


@functools.cache
def head_revision() -> str:
    """Return the newest migration revision this software knows (the tree's single head).

    Read from the migration files' ``revision = "..."`` and ``down_revision = "..."`` lines
    (the revision no other names as its ``down_revision``), without importing Alembic.

    Raises
    ------
    calibreg.errors.SchemaError
        If the shipped tree does not have exactly one head (a packaging error).
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (resources.files("calibreg_migrations") / "versions").iterdir():
        if not path.name.endswith(".py") or path.name.startswith("__"):
            continue
        for key, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
            names = re.findall(r"[\"']([^\"']+)[\"']", value)
            (revisions if key == "revision" else parents).update(names)
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise SchemaError(f"the shipped migration tree has heads {heads}, expected exactly one")
    return heads[0]


def current_revision(engine_or_conn: Engine | Connection) -> str | None:
    """Return the migration revision the database is at.

    Parameters
    ----------
    engine_or_conn : sqlalchemy.Engine or sqlalchemy.Connection
        The database; an engine is connected for the query and released.

    Returns
    -------
    str or None
        The revision id, or ``None`` for a database without calibreg schema.
    """
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.connect() as conn:
            return _current(conn)
    return _current(engine_or_conn)


def _current(conn: Connection) -> str | None:
    """Return the ``alembic_version`` row (one query; Alembic's reader costs its import)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    found = [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
    if len(found) > 1:
        raise SchemaError(f"the database is at several schema revisions: {', '.join(found)}")
    return found[0] if found else None


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def _known(revision: str) -> None:
    """Refuse a revision the tree does not know, in one line (Alembic raises a long chain)."""
    if revision in ("head", "base", "heads"):
        return
    from alembic.util import CommandError

    try:
        found = _script().get_revision(revision)
    except CommandError:  # also ResolutionError: no such or an ambiguous revision
        found = None
    if found is None:
        known = ", ".join(r.revision for r in reversed(list(_script().walk_revisions())))
        raise SchemaError(f"unknown schema revision {revision!r}; known: {known}, head, base")


def destroyed_by_downgrade(conn: Connection, revision: str) -> dict[str, int]:
    """Count the rows a downgrade to ``revision`` would destroy, per table.

    Each migration module names, in ``DESTROYED_BY_DOWNGRADE``, the tables whose rows its
    downgrade drops; this walks the migrations between the database's revision and
    ``revision`` and counts the rows those tables hold now.

    Parameters
    ----------
    conn : sqlalchemy.Connection
        The database.
    revision : str
        Target revision id or ``"base"``.

    Returns
    -------
    dict of str to int
        Table name to its row count, only tables that hold rows.

    Raises
    ------
    calibreg.errors.SchemaError
        For an unknown revision.
    """
    _known(revision)
    current = _current(conn)
    if current is None:
        return {}
    target = None if revision == "base" else revision
    tables: list[str] = []
    for script in _script().iterate_revisions(current, target):
        if script.revision == target:
            continue
        tables.extend(getattr(script.module, "DESTROYED_BY_DOWNGRADE", ()))
    present = set(inspect(conn).get_table_names())
    counts = {}
    for name in tables:
        if name in present:
            n = conn.execute(select(func.count()).select_from(table(name))).scalar_one()
            if n:
                counts[name] = int(n)
    return counts


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision``, committing at the end.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The database.
    revision : str
        Target revision id, or ``"head"`` (the default) for this software's schema.

    Raises
    ------
    calibreg.errors.SchemaError
        For a revision the tree does not know.
    """
    from alembic import command

    _known(revision)
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), revision)
        conn.commit()


def downgrade(engine: Engine, revision: str, *, destroy_data: bool = False) -> None:
    """Migrate the database down to ``revision``, committing at the end.

    A downgrade that would drop rows (versions, certifications, statistics...) is refused
    unless ``destroy_data`` is true; the check and the downgrade run in one transaction.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The database.
    revision : str
        Target revision id; ``"base"`` drops every calibreg table (and its data).
    destroy_data : bool
        Allow the downgrade to drop data.

    Raises
    ------
    calibreg.errors.SchemaError
        For a revision the tree does not know.
    calibreg.errors.ConflictError
        When the downgrade would destroy data and ``destroy_data`` is false; the message names
        every table and its row count.
    """
    from alembic import command

    _known(revision)
    with engine.connect() as conn:
        lost = destroyed_by_downgrade(conn, revision)
        if lost and not destroy_data:
            what = ", ".join(f"{n:,} {t} rows" for t, n in lost.items())
            conn.rollback()
            raise ConflictError(
                f"downgrade to {revision} would destroy {what}; nothing changed "
                "(give --destroy-data to do it anyway)"
            )
        command.downgrade(alembic_config(conn), revision)
        conn.commit()


def require_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is missing or not at this software's head.

    `calibreg.Registry` calls it when it opens a database (unless told not to), so that an
    old schema fails at once with an instruction to upgrade rather than with an SQL error
    halfway through a write.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The database.

    Raises
    ------
    calibreg.errors.SchemaError
        If the database has no calibreg schema, or is at another revision than
        `head_revision`; the message says to run ``calibreg db upgrade``.
    """
    current = current_revision(engine)
    head = head_revision()
    if current is None:
        raise SchemaError("the database has no calibreg schema: run `calibreg db upgrade` first")
    if current != head:
        raise SchemaError(
            f"the database schema is at revision {current}, this calibreg needs {head}: "
            "run `calibreg db upgrade`"
        )
