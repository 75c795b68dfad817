"""fit statistics: errors, goodness of fit, quality flags, rejected entries

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 19:30:00

* **Per version**: ``chi2``, ``dof`` (used entries − active rows − active exposures + 1),
  ``error_scale`` (the factor the unit-weight errors were scaled by), ``rms_dof`` (rms corrected
  for the degrees of freedom), ``weak_link_entries`` and ``weights``/``variance`` (how the
  entries were weighted). NULL for versions written before this revision (not computed then).
* **Per row and per exposure**: ``error`` (standard error of the scale, same units), ``chi2``,
  ``dof`` (sum of ``1 − leverage``: fractional), ``rms_dof`` and ``flags`` (a bitmask over
  ``quality_flag.bit``). Older versions have NULL ``flags``; the views read their ``flagged``
  column as the ``no_data`` flag, which is all they knew.
* **quality_flag**: the flag vocabulary (bit, name, what it applies to, one line of help), the
  same as ``calibreg.engine.quality`` (a test compares them).
* **version_rejected**: each valid entry a robust fit rejected (row, exposure, log residual,
  reason), one row per entry, numbered ``entry_index`` in ``[0, n_rejected)``: like the scales,
  a version's rejected entries are sealed slots (migration 0005) and immutable (0003).
* **Views**: ``version_flag`` (one row per flag set, with detector/amplifier names or exposure,
  and the flag's help); ``scale_history`` and ``exposure_scale_history`` gain the error, the
  reduced χ² and the flags.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: A downgrade drops the fit statistics of every version written at this revision.
DESTROYED_BY_DOWNGRADE: tuple[str, ...] = ("version_rejected",)

#: The flag vocabulary at this revision (frozen here: a migration never imports the package).
QUALITY_FLAGS = (
    (0, "no_data", "both", "no usable entry (every value missing or invalid)"),
    (1, "stuck", "row", "does not follow the exposure level (slope of log B on log E far below 1)"),
    (2, "few_exposures", "row", "measured in too few exposures to be checked"),
    (3, "few_rows", "exposure", "measured by too few rows to be checked"),
    (4, "mostly_rejected", "both", "most of its valid entries were rejected by the robust fit"),
    (5, "high_rms", "both", "scatter far above its peers'"),
    (6, "weak_link", "both", "joined to the rest of the data by only a few entries"),
)
REJECTION_REASONS = ("clipped", "stuck_row")

VERSION_COLUMNS = (
    ("chi2", sa.Double()),
    ("dof", sa.Integer()),
    ("error_scale", sa.Double()),
    ("rms_dof", sa.Double()),
    ("weak_link_entries", sa.Integer()),
    ("weights", sa.String(length=32)),
    ("variance", sa.String(length=16)),
)
SCALE_COLUMNS = (
    ("error", sa.Double()),
    ("chi2", sa.Double()),
    ("dof", sa.Double()),
    ("rms_dof", sa.Double()),
    ("flags", sa.Integer()),
)
SCALE_TABLES = ("version_row", "version_exposure")


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    for name in OLD_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for name, kind in VERSION_COLUMNS:
        op.add_column("calibration_version", sa.Column(name, kind, nullable=True))
    for table in SCALE_TABLES:
        for name, kind in SCALE_COLUMNS:
            op.add_column(table, sa.Column(name, kind, nullable=True))
    flags = op.create_table(
        "quality_flag",
        sa.Column("bit", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("applies_to", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.CheckConstraint("bit >= 0 AND bit < 16", name=op.f("ck_quality_flag_bit")),
        sa.CheckConstraint(
            "applies_to IN ('row', 'exposure', 'both')", name=op.f("ck_quality_flag_applies_to")
        ),
        sa.PrimaryKeyConstraint("bit", name=op.f("pk_quality_flag")),
        sa.UniqueConstraint("name", name=op.f("uq_quality_flag_name")),
    )
    op.bulk_insert(
        flags,
        [{"bit": b, "name": n, "applies_to": a, "description": d} for b, n, a, d in QUALITY_FLAGS],
    )
    reasons = ", ".join(f"'{r}'" for r in REJECTION_REASONS)
    op.create_table(
        "version_rejected",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("entry_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("exp_index", sa.Integer(), nullable=False),
        sa.Column("residual", sa.Double(), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.CheckConstraint(f"reason IN ({reasons})", name=op.f("ck_version_rejected_reason")),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["calibration_version.id"],
            name=op.f("fk_version_rejected_version_id_calibration_version"),
        ),
        sa.PrimaryKeyConstraint("version_id", "entry_index", name=op.f("pk_version_rejected")),
    )
    if _postgres():
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()
    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    if _postgres():
        op.execute("DROP TRIGGER IF EXISTS trg_version_rejected_slot ON version_rejected")
        op.execute("DROP FUNCTION IF EXISTS calibreg_version_rejected_slot()")
        for kind in ("immutable", "no_truncate"):
            op.execute(f"DROP TRIGGER IF EXISTS trg_version_rejected_{kind} ON version_rejected")
    else:
        for kind in ("slot", "no_update", "no_delete", "no_replace"):
            op.execute(f"DROP TRIGGER IF EXISTS trg_version_rejected_{kind}")
    op.drop_table("version_rejected")
    op.drop_table("quality_flag")
    # SQLite (>= 3.35) drops a column that no index, constraint, trigger or view names: the
    # views are gone by now and nothing else names these.
    for table in SCALE_TABLES:
        for name, _ in reversed(SCALE_COLUMNS):
            op.drop_column(table, name)
    for name, _ in reversed(VERSION_COLUMNS):
        op.drop_column("calibration_version", name)
    for name, sql in OLD_VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


# --------------------------------------------------------------------------- triggers

SLOT_MESSAGE = "calibreg: INSERT into version_rejected refused: version % is sealed"


def _upgrade_postgresql() -> None:
    op.execute(
        f"""
        CREATE FUNCTION calibreg_version_rejected_slot() RETURNS trigger AS $$
        DECLARE n integer; nr integer; ne integer;
        BEGIN
            SELECT n_rejected, n_rows, n_exposures INTO n, nr, ne
            FROM calibration_version WHERE id = NEW.version_id;
            IF n IS NOT NULL AND (NEW.entry_index < 0 OR NEW.entry_index >= n
                OR NEW.row_index < 0 OR NEW.row_index >= nr
                OR NEW.exp_index < 0 OR NEW.exp_index >= ne) THEN
                RAISE EXCEPTION '{SLOT_MESSAGE}', NEW.version_id
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER trg_version_rejected_slot BEFORE INSERT ON version_rejected "
        "FOR EACH ROW EXECUTE FUNCTION calibreg_version_rejected_slot()"
    )
    op.execute(
        "CREATE TRIGGER trg_version_rejected_immutable BEFORE UPDATE OR DELETE ON "
        "version_rejected FOR EACH ROW EXECUTE FUNCTION calibreg_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER trg_version_rejected_no_truncate BEFORE TRUNCATE ON version_rejected "
        "FOR EACH STATEMENT EXECUTE FUNCTION calibreg_refuse_truncate()"
    )


def _upgrade_sqlite() -> None:
    op.execute(
        "CREATE TRIGGER trg_version_rejected_slot BEFORE INSERT ON version_rejected "
        "WHEN NEW.entry_index < 0 OR NEW.row_index < 0 OR NEW.exp_index < 0 OR NOT EXISTS ("
        "SELECT 1 FROM calibration_version v WHERE v.id = NEW.version_id "
        "AND NEW.entry_index < v.n_rejected AND NEW.row_index < v.n_rows "
        "AND NEW.exp_index < v.n_exposures) "
        "BEGIN SELECT RAISE(ABORT, 'calibreg: INSERT into version_rejected refused: the "
        "version is sealed (a version never gains rows)'); END"
    )
    op.execute(
        "CREATE TRIGGER trg_version_rejected_no_replace BEFORE INSERT ON version_rejected "
        "WHEN EXISTS (SELECT 1 FROM version_rejected t WHERE t.version_id = NEW.version_id "
        "AND t.entry_index = NEW.entry_index) "
        "BEGIN SELECT RAISE(ABORT, 'calibreg: insert over an existing version_rejected row "
        "refused: the registry never rewrites its history'); END"
    )
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER trg_version_rejected_no_{event.lower()} BEFORE {event} ON "
            f"version_rejected BEGIN SELECT RAISE(ABORT, 'calibreg: {event} of "
            "version_rejected refused: calibration versions are immutable'); END"
        )


# --------------------------------------------------------------------------- analyst views
# Old versions (NULL flags) read their `flagged` column as the no_data flag (bit 0).

FLAGS_OF = "COALESCE({t}.flags, CASE WHEN {t}.flagged THEN 1 ELSE 0 END)"

VIEWS = {
    "scale_history": f"""
        SELECT i.name AS instrument, v.physical_filter, v.level, v.id AS version_id, v.seq,
               v.method, v.created_at, r.detector_id AS detector, d.name AS detector_name,
               r.amp_name AS amplifier, r.scale, r.error,
               CASE WHEN r.dof > 0 THEN r.chi2 / r.dof END AS reduced_chi2,
               r.flagged, {FLAGS_OF.format(t="r")} AS flags,
               t.name AS tag, c.valid_begin, c.valid_end
        FROM version_row r
        JOIN calibration_version v ON v.id = r.version_id
        JOIN instrument i ON i.id = v.instrument_id
        JOIN detector d ON d.instrument_id = r.instrument_id AND d.id = r.detector_id
        LEFT JOIN certification c ON c.version_id = v.id AND c.decertified_at IS NULL
        LEFT JOIN tag t ON t.id = c.tag_id
    """,
    "exposure_scale_history": f"""
        SELECT i.name AS instrument, v.physical_filter, v.level, v.id AS version_id, v.seq,
               v.created_at, x.exposure_id AS exposure, e.obs_id, e.day_obs,
               e.timespan_begin, x.scale, x.error,
               CASE WHEN x.dof > 0 THEN x.chi2 / x.dof END AS reduced_chi2,
               x.flagged, {FLAGS_OF.format(t="x")} AS flags
        FROM version_exposure x
        JOIN calibration_version v ON v.id = x.version_id
        JOIN instrument i ON i.id = v.instrument_id
        JOIN exposure e ON e.instrument_id = x.instrument_id AND e.id = x.exposure_id
    """,
    "version_flag": f"""
        SELECT r.version_id, 'row' AS kind, r.row_index AS position, r.detector_id AS detector,
               d.name AS detector_name, r.amp_name AS amplifier, NULL AS exposure,
               f.name AS flag, f.description
        FROM version_row r
        JOIN detector d ON d.instrument_id = r.instrument_id AND d.id = r.detector_id
        JOIN quality_flag f ON ({FLAGS_OF.format(t="r")} & (1 << f.bit)) <> 0
        UNION ALL
        SELECT x.version_id, 'exposure' AS kind, x.exp_index AS position, NULL AS detector,
               NULL AS detector_name, NULL AS amplifier, x.exposure_id AS exposure,
               f.name AS flag, f.description
        FROM version_exposure x
        JOIN quality_flag f ON ({FLAGS_OF.format(t="x")} & (1 << f.bit)) <> 0
    """,
}

#: The views as 0005 left them (restored by a downgrade).
OLD_VIEWS = {
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
