"""PostgreSQL deployment roles: an owner that migrates, a runtime role that cannot bypass guards.

The immutability of versions and certifications, and the protection of a version's inputs,
are enforced by triggers. The owner of a table can disable its triggers and a role with the
``TRUNCATE`` privilege can empty a table without firing row triggers, so a shared registry
runs its services and users as a *runtime* role that owns nothing: it may read, insert,
update and delete rows (every change still passes through the triggers), but cannot alter a
table, disable a trigger, truncate, or set ``session_replication_role`` (superuser only).

Deployment (documented in the README):

1. an owner role (``calibreg_owner``) creates the database schema: ``calibreg db upgrade``;
2. the owner grants the runtime role: ``calibreg db grant-runtime calibreg_app``;
3. everything else connects as ``calibreg_app``.
"""

from __future__ import annotations

import re

from sqlalchemy import Engine, text

from calibreg.errors import CalibregError, InputError

#: What the runtime role may do to every calibreg table (no TRUNCATE, TRIGGER, REFERENCES).
RUNTIME_TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"

_ROLE_RE = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")


def grant_runtime(engine: Engine, role: str) -> list[str]:
    """Grant ``role`` the runtime privileges on the current schema's calibreg tables.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        A PostgreSQL database, connected as the owner of the calibreg schema.
    role : str
        An existing role (lower-case SQL identifier).

    Returns
    -------
    list of str
        The statements run.

    Raises
    ------
    InputError
        For a role name that is not a plain identifier.
    CalibregError
        On SQLite (a file has no roles), or when the role does not exist.
    """
    if engine.dialect.name != "postgresql":
        raise CalibregError("roles exist only on PostgreSQL (SQLite has no users)")
    if not _ROLE_RE.match(role):
        raise InputError("grant-runtime", f"not a plain role name: {role[:80]!r}", field="role")
    with engine.begin() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).first()
        if exists is None:
            raise CalibregError(f"no PostgreSQL role {role!r}: create it first (CREATE ROLE)")
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        statements = [
            f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"',
            f'GRANT {RUNTIME_TABLE_PRIVILEGES} ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"',
            f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"',
            f'REVOKE TRUNCATE, TRIGGER ON ALL TABLES IN SCHEMA "{schema}" FROM "{role}"',
        ]
        for sql in statements:
            conn.execute(text(sql))
    return statements
