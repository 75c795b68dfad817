"""sealed versions, protected inputs, unbounded validity begin

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 12:00:00

* **Sealed versions.** A version's rows fill numbered slots: ``version_row.row_index`` and the new
  ``version_exposure.exp_index`` are unique per version and must lie in ``[0, n_rows)`` /
  ``[0, n_exposures)`` of the (immutable) version record. The persist writes every slot in the
  transaction that creates the version, so once it commits no row can be added (every slot is
  taken), changed or removed (the 0003 triggers), on either backend, not even by raw SQL.
* **Inputs of a version are protected.** A statistics row of an exposure that a version at that
  level was solved from can no longer be updated or deleted (nor the table truncated while any
  version exists). PostgreSQL names the versions in its refusal; SQLite's trigger messages are
  constants, so the ingest layer checks first and names them there.
* **Unbounded begin.** ``certification.valid_begin`` may be NULL ("valid from the beginning", the
  butler's convention for curated calibrations), like ``valid_end``. SQLite cannot drop a NOT
  NULL without rebuilding the table, which drops its triggers: they are created again here,
  NULL-aware. The views are dropped first and created again at the end.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: What a downgrade from this revision destroys (calibreg.db.migrate refuses it with data unless
#: told): nothing. ``exp_index`` is derived (exposure order), and an unbounded begin is kept as
#: the earliest int64 instant, which means the same.
DESTROYED_BY_DOWNGRADE: tuple[str, ...] = ()

INT64_MIN = -(2**63)
STATS = {"detector_stats": "DETECTOR", "amp_stats": "AMP"}


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    for name in VIEW_NAMES:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    _exp_index()
    op.create_index(
        "ix_version_exposure_instrument_id_exposure_id",
        "version_exposure",
        ["instrument_id", "exposure_id"],
    )
    if _postgres():
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()
    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade() -> None:
    for name in VIEW_NAMES:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    if _postgres():
        _downgrade_postgresql()
    else:
        _downgrade_sqlite()
    op.drop_index("ix_version_exposure_instrument_id_exposure_id", "version_exposure")
    if _postgres():
        op.execute("DROP INDEX IF EXISTS uq_version_exposure_exp_index")
        op.execute("ALTER TABLE version_exposure DROP COLUMN exp_index")
    else:
        op.execute("DROP INDEX IF EXISTS uq_version_exposure_exp_index")
        op.execute("DROP TRIGGER IF EXISTS trg_version_exposure_no_replace")
        op.execute("ALTER TABLE version_exposure DROP COLUMN exp_index")
        op.execute(
            "CREATE TRIGGER trg_version_exposure_no_replace BEFORE INSERT ON version_exposure "
            "WHEN EXISTS (SELECT 1 FROM version_exposure t WHERE t.version_id = NEW.version_id "
            "AND t.exposure_id = NEW.exposure_id) BEGIN SELECT RAISE(ABORT, 'calibreg: insert "
            "over an existing version_exposure row refused: the registry never rewrites its "
            "history'); END"
        )
    for name, sql in VIEWS.items():  # the same text as 0003's
        op.execute(f"CREATE VIEW {name} AS {sql}")


# --------------------------------------------------------------------------- exp_index


def _exp_index() -> None:
    """Add each version's exposure position (0-based, exposure id order) as a unique slot."""
    fill = (
        "UPDATE version_exposure SET exp_index = (SELECT count(*) FROM version_exposure o "
        "WHERE o.version_id = version_exposure.version_id "
        "AND o.exposure_id < version_exposure.exposure_id)"
    )
    if _postgres():
        op.add_column("version_exposure", sa.Column("exp_index", sa.Integer(), nullable=True))
        op.execute("ALTER TABLE version_exposure DISABLE TRIGGER trg_version_exposure_immutable")
        op.execute(fill)
        op.execute("ALTER TABLE version_exposure ENABLE TRIGGER trg_version_exposure_immutable")
        op.alter_column("version_exposure", "exp_index", nullable=False)
        op.execute(
            "CREATE UNIQUE INDEX uq_version_exposure_exp_index "
            "ON version_exposure (version_id, exp_index)"
        )
        return
    # SQLite: ADD COLUMN may be NOT NULL only with a default; every row is filled at once.
    op.execute("ALTER TABLE version_exposure ADD COLUMN exp_index INTEGER NOT NULL DEFAULT -1")
    op.execute("DROP TRIGGER trg_version_exposure_no_update")
    op.execute(fill)
    op.execute(
        "CREATE TRIGGER trg_version_exposure_no_update BEFORE UPDATE ON version_exposure "
        "BEGIN SELECT RAISE(ABORT, 'calibreg: UPDATE of version_exposure refused: calibration "
        "versions are immutable'); END"
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_version_exposure_exp_index "
        "ON version_exposure (version_id, exp_index)"
    )
    # The REPLACE guard of 0003 learns the new key.
    op.execute("DROP TRIGGER trg_version_exposure_no_replace")
    op.execute(
        "CREATE TRIGGER trg_version_exposure_no_replace BEFORE INSERT ON version_exposure "
        "WHEN EXISTS (SELECT 1 FROM version_exposure t WHERE t.version_id = NEW.version_id "
        "AND (t.exposure_id = NEW.exposure_id OR t.exp_index = NEW.exp_index)) "
        "BEGIN SELECT RAISE(ABORT, 'calibreg: insert over an existing version_exposure row "
        "refused: the registry never rewrites its history'); END"
    )


# --------------------------------------------------------------------------- PostgreSQL

SLOTS = {"version_row": ("row_index", "n_rows"), "version_exposure": ("exp_index", "n_exposures")}
SEALED_MESSAGE = "calibreg: % refused: version % is sealed (a version never gains rows)"
USED_MESSAGE = "calibreg: % of % refused: these statistics are inputs of calibration version(s) %"


def _upgrade_postgresql() -> None:
    for table, (slot, count) in SLOTS.items():
        op.execute(
            f"""
            CREATE FUNCTION calibreg_{table}_slot() RETURNS trigger AS $$
            DECLARE n integer;
            BEGIN
                SELECT {count} INTO n FROM calibration_version WHERE id = NEW.version_id;
                IF n IS NOT NULL AND (NEW.{slot} < 0 OR NEW.{slot} >= n) THEN
                    RAISE EXCEPTION '{SEALED_MESSAGE}', 'INSERT into {table}', NEW.version_id
                        USING ERRCODE = 'integrity_constraint_violation';
                END IF;
                RETURN NEW;
            END
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            f"CREATE TRIGGER trg_{table}_slot BEFORE INSERT ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION calibreg_{table}_slot()"
        )
    for table, level in STATS.items():
        op.execute(
            f"""
            CREATE FUNCTION calibreg_{table}_used() RETURNS trigger AS $$
            DECLARE ids text;
            BEGIN
                SELECT string_agg(DISTINCT v.id::text, ', ') INTO ids
                FROM (SELECT DISTINCT instrument_id, exposure_id FROM old_rows) o
                JOIN version_exposure x
                  ON x.instrument_id = o.instrument_id AND x.exposure_id = o.exposure_id
                JOIN calibration_version v ON v.id = x.version_id AND v.level = '{level}';
                IF ids IS NOT NULL THEN
                    RAISE EXCEPTION '{USED_MESSAGE}', TG_OP, TG_TABLE_NAME, ids
                        USING ERRCODE = 'integrity_constraint_violation';
                END IF;
                RETURN NULL;
            END
            $$ LANGUAGE plpgsql
            """
        )
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER trg_{table}_used_{event.lower()} AFTER {event} ON {table} "
                "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
                f"EXECUTE FUNCTION calibreg_{table}_used()"
            )
    op.execute(
        """
        CREATE FUNCTION calibreg_stats_no_truncate() RETURNS trigger AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM version_exposure) THEN
                RAISE EXCEPTION 'calibreg: TRUNCATE of % refused: calibration versions were '
                    'solved from these statistics', TG_TABLE_NAME
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql
        """
    )
    for table in STATS:
        op.execute(
            f"CREATE TRIGGER trg_{table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION calibreg_stats_no_truncate()"
        )
    op.alter_column("certification", "valid_begin", nullable=True)


def _downgrade_postgresql() -> None:
    op.execute("ALTER TABLE certification DISABLE TRIGGER trg_certification_guard")
    op.execute(f"UPDATE certification SET valid_begin = {INT64_MIN} WHERE valid_begin IS NULL")
    op.execute("ALTER TABLE certification ENABLE TRIGGER trg_certification_guard")
    op.alter_column("certification", "valid_begin", nullable=False)
    for table in STATS:
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_no_truncate ON {table}")
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_used_{event} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS calibreg_{table}_used()")
    op.execute("DROP FUNCTION IF EXISTS calibreg_stats_no_truncate()")
    for table in SLOTS:
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_slot ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS calibreg_{table}_slot()")


# --------------------------------------------------------------------------- SQLite


def _upgrade_sqlite() -> None:
    for table, (slot, count) in SLOTS.items():
        op.execute(
            f"CREATE TRIGGER trg_{table}_slot BEFORE INSERT ON {table} "
            f"WHEN NEW.{slot} < 0 OR NEW.{slot} >= (SELECT {count} FROM calibration_version "
            "WHERE id = NEW.version_id) "
            f"BEGIN SELECT RAISE(ABORT, 'calibreg: INSERT into {table} refused: the version is "
            "sealed (a version never gains rows)'); END"
        )
    for table, level in STATS.items():
        used = (
            "EXISTS (SELECT 1 FROM version_exposure x JOIN calibration_version v "
            f"ON v.id = x.version_id AND v.level = '{level}' "
            "WHERE x.instrument_id = OLD.instrument_id AND x.exposure_id = OLD.exposure_id)"
        )
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER trg_{table}_used_{event.lower()} BEFORE {event} ON {table} "
                f"WHEN {used} BEGIN SELECT RAISE(ABORT, 'calibreg: {event} of {table} refused: "
                "these statistics are inputs of a calibration version'); END"
            )
    _rebuild_certification(nullable_begin=True)


def _downgrade_sqlite() -> None:
    for table in STATS:
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_used_{event}")
    for table in SLOTS:
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_slot")
    _rebuild_certification(nullable_begin=False)


def _certification_table(nullable_begin: bool) -> sa.Table:
    """The certification table as 0005 leaves it (or 0003 made it), for SQLite's rebuild."""
    meta = sa.MetaData()
    for name in ("tag", "calibration_version", "instrument"):
        sa.Table(name, meta, sa.Column("id", sa.Integer, primary_key=True))
    condition = (
        "valid_begin IS NULL OR valid_end IS NULL OR valid_begin < valid_end"
        if nullable_begin
        else "valid_end IS NULL OR valid_begin < valid_end"
    )
    return sa.Table(
        "certification",
        meta,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("physical_filter", sa.String(length=64), nullable=False),
        sa.Column("valid_begin", sa.BigInteger(), nullable=nullable_begin),
        sa.Column("valid_end", sa.BigInteger(), nullable=True),
        sa.Column("certified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("certified_by", sa.String(length=128), nullable=False),
        sa.Column("decertified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decertified_by", sa.String(length=128), nullable=True),
        sa.Column("replaces_id", sa.Integer(), nullable=True),
        sa.Column(
            "comparison", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.CheckConstraint(condition, name="ck_certification_valid_range"),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instrument.id"],
            name="fk_certification_instrument_id_instrument",
        ),
        sa.ForeignKeyConstraint(
            ["replaces_id"],
            ["certification.id"],
            name="fk_certification_replaces_id_certification",
        ),
        sa.ForeignKeyConstraint(["tag_id"], ["tag.id"], name="fk_certification_tag_id_tag"),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["calibration_version.id"],
            name="fk_certification_version_id_calibration_version",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_certification"),
        sa.Index(
            "ix_certification_lookup", "tag_id", "instrument_id", "physical_filter", "valid_begin"
        ),
        sa.Index("ix_certification_version_id", "version_id"),
    )


CERTIFICATION_TRIGGERS = ("no_replace", "no_delete", "close_once", "no_overlap")


def _rebuild_certification(*, nullable_begin: bool) -> None:
    """Rebuild SQLite's certification table (NOT NULL on valid_begin changes) with its triggers.

    The rebuild copies every row into a new table; the self-reference (``replaces_id``) is
    checked at commit (``defer_foreign_keys``) because the old table is dropped in between.
    """
    for name in CERTIFICATION_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS trg_certification_{name}")
    if not nullable_begin:  # before the copy into a NOT NULL column (the guards are gone)
        op.execute(f"UPDATE certification SET valid_begin = {INT64_MIN} WHERE valid_begin IS NULL")
    op.execute("PRAGMA defer_foreign_keys = ON")
    with op.batch_alter_table(
        "certification", recreate="always", copy_from=_certification_table(nullable_begin)
    ) as batch:
        batch.alter_column(
            "valid_begin",
            existing_type=sa.BigInteger(),
            nullable=nullable_begin,
        )
    op.execute(
        "CREATE TRIGGER trg_certification_no_replace BEFORE INSERT ON certification "
        "WHEN EXISTS (SELECT 1 FROM certification t WHERE t.id = NEW.id) "
        "BEGIN SELECT RAISE(ABORT, 'calibreg: insert over an existing certification row "
        "refused: the registry never rewrites its history'); END"
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
        """
        CREATE TRIGGER trg_certification_no_overlap BEFORE INSERT ON certification
        WHEN NEW.decertified_at IS NULL AND EXISTS (
            SELECT 1 FROM certification c
            WHERE c.tag_id = NEW.tag_id AND c.instrument_id = NEW.instrument_id
              AND c.physical_filter = NEW.physical_filter AND c.decertified_at IS NULL
              AND (c.valid_end IS NULL OR NEW.valid_begin IS NULL OR c.valid_end > NEW.valid_begin)
              AND (NEW.valid_end IS NULL OR c.valid_begin IS NULL OR NEW.valid_end > c.valid_begin))
        BEGIN SELECT RAISE(ABORT, 'calibreg: certification overlaps an active range of the same tag, instrument and filter'); END
        """
    )


# --------------------------------------------------------------------------- analyst views
# As in 0003 (NULL valid_begin now means "from the beginning", as NULL valid_end means "open").

VIEW_NAMES = ("active_certification", "scale_history", "exposure_scale_history")
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
