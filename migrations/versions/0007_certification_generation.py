"""certification generation: a counter every change to a lookup's inputs bumps

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:00:00

* **certification_generation**: one row (``id = 1``) holding ``generation``, a BIGINT that
  starts at the number of certification rows already written (any value works: readers only
  compare it with the one they cached under).
* **Triggers bump it in the writing transaction**, so no write path can forget to: each
  statement inserting or updating a ``certification`` (certify, decertify and the pieces a
  split inserts), and each write to ``exposure`` (a lookup by exposure reads the exposure's
  timespan and filter). PostgreSQL uses statement-level triggers (one bump per statement, and
  ``pg_notify('calibreg_generation', ...)`` for listeners); SQLite has only row triggers (one
  bump per row: an exposure ingest of 10,000 rows adds 10,000).
* A read service caches lookup answers under the generation and derives their ETags from it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: A downgrade drops only the counter, which is derived state.
DESTROYED_BY_DOWNGRADE: tuple[str, ...] = ()

#: Tables whose writes change lookup answers.
WATCHED = ("certification", "exposure")


def _is_pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "certification_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_certification_generation_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certification_generation")),
    )
    op.execute(
        "INSERT INTO certification_generation (id, generation) "
        "SELECT 1, COUNT(*) FROM certification"
    )
    bump = "UPDATE certification_generation SET generation = generation + 1 WHERE id = 1"
    if _is_pg():
        op.execute(
            f"""
            CREATE FUNCTION calibreg_bump_generation() RETURNS trigger AS $$
            DECLARE g BIGINT;
            BEGIN
                {bump} RETURNING generation INTO g;
                PERFORM pg_notify('calibreg_generation', g::text);
                RETURN NULL;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        for table, events in (
            ("certification", "INSERT OR UPDATE"),
            ("exposure", "INSERT OR UPDATE OR DELETE OR TRUNCATE"),
        ):
            op.execute(
                f"CREATE TRIGGER trg_{table}_generation AFTER {events} ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION calibreg_bump_generation()"
            )
        return
    for table in WATCHED:
        events = (
            ("INSERT", "UPDATE") if table == "certification" else ("INSERT", "UPDATE", "DELETE")
        )
        for event in events:
            op.execute(
                f"CREATE TRIGGER trg_{table}_generation_{event.lower()} AFTER {event} ON {table} "
                f"BEGIN {bump}; END"
            )


def downgrade() -> None:
    if _is_pg():
        for table in WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_generation ON {table}")
        op.execute("DROP FUNCTION IF EXISTS calibreg_bump_generation()")
    else:
        for table in WATCHED:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_generation_{event}")
    op.drop_table("certification_generation")
