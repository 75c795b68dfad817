"""publishing: tags, certifications, immutability, analyst views

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 19:26:02.762520
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: The tables whose rows a downgrade from this revision destroys: calibreg.db.migrate refuses
#: such a downgrade while they hold data, unless told to destroy it.
DESTROYED_BY_DOWNGRADE: tuple[str, ...] = ("tag", "certification")


def upgrade() -> None:

    op.create_table(
        "tag",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag")),
        sa.UniqueConstraint("name", name=op.f("uq_tag_name")),
    )
    op.create_table(
        "certification",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("physical_filter", sa.String(length=64), nullable=False),
        sa.Column("valid_begin", sa.BigInteger(), nullable=False),
        sa.Column("valid_end", sa.BigInteger(), nullable=True),
        sa.Column("certified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("certified_by", sa.String(length=128), nullable=False),
        sa.Column("decertified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decertified_by", sa.String(length=128), nullable=True),
        sa.Column("replaces_id", sa.Integer(), nullable=True),
        sa.Column(
            "comparison", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.CheckConstraint(
            "valid_end IS NULL OR valid_begin < valid_end",
            name=op.f("ck_certification_valid_range"),
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instrument.id"],
            name=op.f("fk_certification_instrument_id_instrument"),
        ),
        sa.ForeignKeyConstraint(
            ["replaces_id"],
            ["certification.id"],
            name=op.f("fk_certification_replaces_id_certification"),
        ),
        sa.ForeignKeyConstraint(["tag_id"], ["tag.id"], name=op.f("fk_certification_tag_id_tag")),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["calibration_version.id"],
            name=op.f("fk_certification_version_id_calibration_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certification")),
    )
    with op.batch_alter_table("certification", schema=None) as batch_op:
        batch_op.create_index(
            "ix_certification_lookup",
            ["tag_id", "instrument_id", "physical_filter", "valid_begin"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_certification_version_id"), ["version_id"], unique=False
        )

    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()
    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _downgrade_postgresql()
    else:
        _downgrade_sqlite()

    with op.batch_alter_table("certification", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certification_version_id"))
        batch_op.drop_index("ix_certification_lookup")

    op.drop_table("certification")
    op.drop_table("tag")


# --------------------------------------------------------------------------- immutability
# A version (its record, its scales, its quantum) can never be updated or deleted, not even with
# raw SQL; a certification row can only be closed once (decertified_at/by set from NULL), and
# never deleted. Active ranges of one (tag, instrument, filter) may not overlap.

IMMUTABLE_TABLES = ("quantum", "calibration_version", "version_exposure", "version_row")
OVERLAP_MESSAGE = (
    "calibreg: certification overlaps an active range of the same tag, instrument and filter"
)


def _upgrade_postgresql() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.execute(
        "ALTER TABLE certification ADD CONSTRAINT ex_certification_no_overlap "
        "EXCLUDE USING gist (tag_id WITH =, instrument_id WITH =, physical_filter WITH =, "
        "int8range(valid_begin, valid_end) WITH &&) WHERE (decertified_at IS NULL)"
    )
    op.execute(
        """
        CREATE FUNCTION calibreg_refuse_change() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION 'calibreg: % of % refused: calibration versions are immutable',
                TG_OP, TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
        END
        $$ LANGUAGE plpgsql
        """
    )
    for table in IMMUTABLE_TABLES:
        op.execute(
            f"CREATE TRIGGER trg_{table}_immutable BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION calibreg_refuse_change()"
        )
    op.execute(
        """
        CREATE FUNCTION calibreg_certification_guard() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'calibreg: certifications are never deleted (decertify closes them)'
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            IF OLD.decertified_at IS NOT NULL
               OR NEW.decertified_at IS NULL
               OR NEW.id IS DISTINCT FROM OLD.id
               OR NEW.tag_id IS DISTINCT FROM OLD.tag_id
               OR NEW.version_id IS DISTINCT FROM OLD.version_id
               OR NEW.instrument_id IS DISTINCT FROM OLD.instrument_id
               OR NEW.physical_filter IS DISTINCT FROM OLD.physical_filter
               OR NEW.valid_begin IS DISTINCT FROM OLD.valid_begin
               OR NEW.valid_end IS DISTINCT FROM OLD.valid_end
               OR NEW.certified_at IS DISTINCT FROM OLD.certified_at
               OR NEW.certified_by IS DISTINCT FROM OLD.certified_by
               OR NEW.replaces_id IS DISTINCT FROM OLD.replaces_id
               OR NEW.comparison IS DISTINCT FROM OLD.comparison THEN
                RAISE EXCEPTION 'calibreg: a certification can only be closed once (decertify)'
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER trg_certification_guard BEFORE UPDATE OR DELETE ON certification "
        "FOR EACH ROW EXECUTE FUNCTION calibreg_certification_guard()"
    )
    # TRUNCATE fires no row trigger: refuse it with a statement trigger.
    op.execute(
        """
        CREATE FUNCTION calibreg_refuse_truncate() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION 'calibreg: TRUNCATE of % refused: the registry keeps its history',
                TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
        END
        $$ LANGUAGE plpgsql
        """
    )
    for table in (*IMMUTABLE_TABLES, "certification"):
        op.execute(
            f"CREATE TRIGGER trg_{table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION calibreg_refuse_truncate()"
        )


def _downgrade_postgresql() -> None:
    for table in (*IMMUTABLE_TABLES, "certification"):
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION IF EXISTS calibreg_refuse_truncate()")
    op.execute("DROP TRIGGER IF EXISTS trg_certification_guard ON certification")
    op.execute("DROP FUNCTION IF EXISTS calibreg_certification_guard()")
    for table in IMMUTABLE_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_immutable ON {table}")
    op.execute("DROP FUNCTION IF EXISTS calibreg_refuse_change()")
    op.execute("ALTER TABLE certification DROP CONSTRAINT IF EXISTS ex_certification_no_overlap")


# SQLite's INSERT OR REPLACE deletes a conflicting row without firing DELETE triggers (unless
# recursive_triggers is on), so an insert that collides with any key of an existing row is
# refused up front.
SQLITE_KEYS = {
    "quantum": ["id", "instrument_id, physical_filter, level, selection_key"],
    "calibration_version": ["id", "quantum_id, seq"],
    "version_exposure": ["version_id, exposure_id"],
    "version_row": ["version_id, row_index"],
    "certification": ["id"],
}


def _key_clash(table: str) -> str:
    clauses = []
    for key in SQLITE_KEYS[table]:
        cols = [c.strip() for c in key.split(",")]
        clauses.append(
            f"EXISTS (SELECT 1 FROM {table} t WHERE "
            + " AND ".join(f"t.{c} = NEW.{c}" for c in cols)
            + ")"
        )
    return " OR ".join(clauses)


def _upgrade_sqlite() -> None:
    for table in SQLITE_KEYS:
        op.execute(
            f"CREATE TRIGGER trg_{table}_no_replace BEFORE INSERT ON {table} "
            f"WHEN {_key_clash(table)} "
            f"BEGIN SELECT RAISE(ABORT, 'calibreg: insert over an existing {table} row refused: "
            "the registry never rewrites its history'); END"
        )
    for table in IMMUTABLE_TABLES:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER trg_{table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'calibreg: {event} of {table} refused: "
                "calibration versions are immutable'); END"
            )
    op.execute(
        "CREATE TRIGGER trg_certification_no_delete BEFORE DELETE ON certification "
        "BEGIN SELECT RAISE(ABORT, 'calibreg: certifications are never deleted "
        "(decertify closes them)'); END"
    )
    op.execute(
        """
        CREATE TRIGGER trg_certification_close_once BEFORE UPDATE ON certification
        WHEN OLD.decertified_at IS NOT NULL
          OR NEW.decertified_at IS NULL
          OR NEW.id IS NOT OLD.id
          OR NEW.tag_id IS NOT OLD.tag_id
          OR NEW.version_id IS NOT OLD.version_id
          OR NEW.instrument_id IS NOT OLD.instrument_id
          OR NEW.physical_filter IS NOT OLD.physical_filter
          OR NEW.valid_begin IS NOT OLD.valid_begin
          OR NEW.valid_end IS NOT OLD.valid_end
          OR NEW.certified_at IS NOT OLD.certified_at
          OR NEW.certified_by IS NOT OLD.certified_by
          OR NEW.replaces_id IS NOT OLD.replaces_id
          OR NEW.comparison IS NOT OLD.comparison
        BEGIN SELECT RAISE(ABORT, 'calibreg: a certification can only be closed once (decertify)'); END
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER trg_certification_no_overlap BEFORE INSERT ON certification
        WHEN NEW.decertified_at IS NULL AND EXISTS (
            SELECT 1 FROM certification c
            WHERE c.tag_id = NEW.tag_id AND c.instrument_id = NEW.instrument_id
              AND c.physical_filter = NEW.physical_filter AND c.decertified_at IS NULL
              AND (c.valid_end IS NULL OR c.valid_end > NEW.valid_begin)
              AND (NEW.valid_end IS NULL OR NEW.valid_end > c.valid_begin))
        BEGIN SELECT RAISE(ABORT, '{OVERLAP_MESSAGE}'); END
        """
    )


def _downgrade_sqlite() -> None:
    for table in SQLITE_KEYS:
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_no_replace")
    for table in IMMUTABLE_TABLES:
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_no_{event}")
    for name in ("no_delete", "close_once", "no_overlap"):
        op.execute(f"DROP TRIGGER IF EXISTS trg_certification_{name}")


# --------------------------------------------------------------------------- analyst views
# Plain SQL that runs unchanged on SQLite and PostgreSQL. Times: created_at is UTC; validity
# bounds are TAI nanoseconds since 1970 (NULL valid_end = open-ended).

VIEWS = {
    "active_certification": """
        SELECT c.id AS certification_id, t.name AS tag, i.name AS instrument,
               c.physical_filter, c.version_id, c.valid_begin, c.valid_end,
               c.certified_at, c.certified_by
        FROM certification c
        JOIN tag t ON t.id = c.tag_id
        JOIN instrument i ON i.id = c.instrument_id
        WHERE c.decertified_at IS NULL
    """,
    "scale_history": """
        SELECT i.name AS instrument, v.physical_filter, v.level, v.id AS version_id, v.seq,
               v.method, v.created_at, r.detector_id AS detector, d.name AS detector_name,
               r.amp_name AS amplifier, r.scale, r.flagged,
               t.name AS tag, c.valid_begin, c.valid_end
        FROM version_row r
        JOIN calibration_version v ON v.id = r.version_id
        JOIN instrument i ON i.id = v.instrument_id
        JOIN detector d ON d.instrument_id = r.instrument_id AND d.id = r.detector_id
        LEFT JOIN certification c ON c.version_id = v.id AND c.decertified_at IS NULL
        LEFT JOIN tag t ON t.id = c.tag_id
    """,
    "exposure_scale_history": """
        SELECT i.name AS instrument, v.physical_filter, v.level, v.id AS version_id, v.seq,
               v.created_at, x.exposure_id AS exposure, e.obs_id, e.day_obs,
               e.timespan_begin, x.scale, x.flagged
        FROM version_exposure x
        JOIN calibration_version v ON v.id = x.version_id
        JOIN instrument i ON i.id = v.instrument_id
        JOIN exposure e ON e.instrument_id = x.instrument_id AND e.id = x.exposure_id
    """,
}
