"""inputs: camera geometry, exposures, statistics, ingest batches

Revision ID: 0001
Revises:
Create Date: 2026-11-23 19:18:34.696092
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: The tables whose rows a downgrade from this revision destroys: calibreg.db.migrate refuses
#: such a downgrade while they hold data, unless told to destroy it.
DESTROYED_BY_DOWNGRADE: tuple[str, ...] = (
    "instrument",
    "detector",
    "amplifier",
    "exposure",
    "detector_stats",
    "amp_stats",
    "ingest_batch",
)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _references(*constraints: sa.ForeignKeyConstraint) -> tuple[sa.ForeignKeyConstraint, ...]:
    """The statistics tables' references: foreign keys on SQLite, triggers on PostgreSQL.

    On PostgreSQL every foreign key checks each COPYed row with its own trigger query, which
    made a 600k-row ingest 7x slower than the COPY itself; the statement-level triggers of
    :func:`reference_triggers_sql` check the whole statement with one anti-join instead, with
    the same guarantees (see calibreg.db.models.STATEMENT_CHECKED_REFERENCES).
    """
    return () if _postgres() else constraints


def upgrade() -> None:

    op.create_table(
        "instrument",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("source_format", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instrument")),
        sa.UniqueConstraint("name", name=op.f("uq_instrument_name")),
    )
    op.create_table(
        "ingest_batch",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("n_rows", sa.BigInteger(), nullable=False),
        sa.Column("n_inserted", sa.BigInteger(), nullable=False),
        sa.Column("n_replaced", sa.BigInteger(), nullable=False),
        sa.Column("n_unchanged", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_name", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("software_version", sa.String(length=64), nullable=False),
        sa.Column(
            "options", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.CheckConstraint(
            "kind IN ('camera', 'exposures', 'stats')", name=op.f("ck_ingest_batch_kind")
        ),
        sa.CheckConstraint("n_rows >= 0", name=op.f("ck_ingest_batch_n_rows")),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instrument.id"],
            name=op.f("fk_ingest_batch_instrument_id_instrument"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_batch")),
    )
    with op.batch_alter_table("ingest_batch", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ingest_batch_sha256"), ["sha256"], unique=False)

    op.create_table(
        "detector",
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("physical_type", sa.String(length=32), nullable=True),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("bbox_x0", sa.Integer(), nullable=False),
        sa.Column("bbox_y0", sa.Integer(), nullable=False),
        sa.Column("bbox_x1", sa.Integer(), nullable=False),
        sa.Column("bbox_y1", sa.Integer(), nullable=False),
        sa.Column("offset_x", sa.Double(), nullable=True),
        sa.Column("offset_y", sa.Double(), nullable=True),
        sa.Column("offset_z", sa.Double(), nullable=True),
        sa.Column("yaw", sa.Double(), nullable=True),
        sa.Column("pitch", sa.Double(), nullable=True),
        sa.Column("roll", sa.Double(), nullable=True),
        sa.Column("pixel_size_x", sa.Double(), nullable=True),
        sa.Column("pixel_size_y", sa.Double(), nullable=True),
        sa.Column("n_amplifiers", sa.SmallInteger(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "purpose IN ('SCIENCE', 'FOCUS', 'GUIDER', 'WAVEFRONT', 'OTHER')",
            name=op.f("ck_detector_purpose"),
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["ingest_batch.id"], name=op.f("fk_detector_batch_id_ingest_batch")
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"], ["instrument.id"], name=op.f("fk_detector_instrument_id_instrument")
        ),
        sa.PrimaryKeyConstraint("instrument_id", "id", name=op.f("pk_detector")),
        sa.UniqueConstraint("instrument_id", "name", name=op.f("uq_detector_instrument_id_name")),
    )
    op.create_table(
        "exposure",
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("physical_filter", sa.String(length=64), nullable=False),
        sa.Column("obs_id", sa.String(length=64), nullable=True),
        sa.Column("observation_type", sa.String(length=64), nullable=True),
        sa.Column("observation_reason", sa.String(length=128), nullable=True),
        sa.Column("science_program", sa.String(length=128), nullable=True),
        sa.Column("group_name", sa.String(length=128), nullable=True),
        sa.Column("target_name", sa.String(length=128), nullable=True),
        sa.Column("day_obs", sa.Integer(), nullable=True),
        sa.Column("seq_num", sa.Integer(), nullable=True),
        sa.Column("exposure_time", sa.Double(), nullable=True),
        sa.Column("dark_time", sa.Double(), nullable=True),
        sa.Column("timespan_begin", sa.BigInteger(), nullable=True),
        sa.Column("timespan_end", sa.BigInteger(), nullable=True),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "exposure_time IS NULL OR exposure_time >= 0", name=op.f("ck_exposure_exposure_time")
        ),
        sa.CheckConstraint(
            "timespan_begin IS NULL OR timespan_end IS NULL OR timespan_begin <= timespan_end",
            name=op.f("ck_exposure_timespan"),
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["ingest_batch.id"], name=op.f("fk_exposure_batch_id_ingest_batch")
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"], ["instrument.id"], name=op.f("fk_exposure_instrument_id_instrument")
        ),
        sa.PrimaryKeyConstraint("instrument_id", "id", name=op.f("pk_exposure")),
    )
    with op.batch_alter_table("exposure", schema=None) as batch_op:
        batch_op.create_index(
            "ix_exposure_instrument_id_physical_filter",
            ["instrument_id", "physical_filter"],
            unique=False,
        )
        batch_op.create_index(
            "ix_exposure_instrument_id_timespan_begin",
            ["instrument_id", "timespan_begin"],
            unique=False,
        )

    op.create_table(
        "amplifier",
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("detector_id", sa.Integer(), nullable=False),
        sa.Column("amp_index", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("bbox_x0", sa.Integer(), nullable=False),
        sa.Column("bbox_y0", sa.Integer(), nullable=False),
        sa.Column("bbox_width", sa.Integer(), nullable=False),
        sa.Column("bbox_height", sa.Integer(), nullable=False),
        sa.Column("gain", sa.Double(), nullable=True),
        sa.Column("read_noise", sa.Double(), nullable=True),
        sa.Column("saturation", sa.Double(), nullable=True),
        sa.CheckConstraint("amp_index >= 0", name=op.f("ck_amplifier_amp_index")),
        sa.ForeignKeyConstraint(
            ["instrument_id", "detector_id"],
            ["detector.instrument_id", "detector.id"],
            name=op.f("fk_amplifier_instrument_id_detector_id_detector"),
        ),
        sa.PrimaryKeyConstraint(
            "instrument_id", "detector_id", "amp_index", name=op.f("pk_amplifier")
        ),
        sa.UniqueConstraint(
            "instrument_id",
            "detector_id",
            "name",
            name=op.f("uq_amplifier_instrument_id_detector_id_name"),
        ),
    )
    op.create_table(
        "detector_stats",
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("exposure_id", sa.BigInteger(), nullable=False),
        sa.Column("detector_id", sa.Integer(), nullable=False),
        sa.Column("median", sa.Double(), nullable=True),
        sa.Column("sigma", sa.Double(), nullable=True),
        sa.Column("n_pixels", sa.BigInteger(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("n_pixels >= 0", name=op.f("ck_detector_stats_n_pixels")),
        *_references(
            sa.ForeignKeyConstraint(
                ["instrument_id", "detector_id"],
                ["detector.instrument_id", "detector.id"],
                name=op.f("fk_detector_stats_instrument_id_detector_id_detector"),
            ),
            sa.ForeignKeyConstraint(
                ["instrument_id", "exposure_id"],
                ["exposure.instrument_id", "exposure.id"],
                name=op.f("fk_detector_stats_instrument_id_exposure_id_exposure"),
            ),
        ),
        sa.PrimaryKeyConstraint(
            "instrument_id", "exposure_id", "detector_id", name=op.f("pk_detector_stats")
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "amp_stats",
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("exposure_id", sa.BigInteger(), nullable=False),
        sa.Column("detector_id", sa.Integer(), nullable=False),
        sa.Column("amp_index", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("median", sa.Double(), nullable=True),
        sa.Column("sigma", sa.Double(), nullable=True),
        sa.Column("n_pixels", sa.BigInteger(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("n_pixels >= 0", name=op.f("ck_amp_stats_n_pixels")),
        *_references(
            sa.ForeignKeyConstraint(
                ["instrument_id", "detector_id", "amp_index"],
                ["amplifier.instrument_id", "amplifier.detector_id", "amplifier.amp_index"],
                name=op.f("fk_amp_stats_instrument_id_detector_id_amp_index_amplifier"),
            ),
            sa.ForeignKeyConstraint(
                ["instrument_id", "exposure_id"],
                ["exposure.instrument_id", "exposure.id"],
                name=op.f("fk_amp_stats_instrument_id_exposure_id_exposure"),
            ),
        ),
        sa.PrimaryKeyConstraint(
            "instrument_id", "exposure_id", "detector_id", "amp_index", name=op.f("pk_amp_stats")
        ),
        sqlite_with_rowid=False,
    )
    if _postgres():
        for sql in reference_triggers_sql():
            op.execute(sql)


def downgrade() -> None:
    if _postgres():
        for sql in drop_reference_triggers_sql():
            op.execute(sql)

    op.drop_table("amp_stats")
    op.drop_table("detector_stats")
    op.drop_table("amplifier")
    with op.batch_alter_table("exposure", schema=None) as batch_op:
        batch_op.drop_index("ix_exposure_instrument_id_timespan_begin")
        batch_op.drop_index("ix_exposure_instrument_id_physical_filter")

    op.drop_table("exposure")
    op.drop_table("detector")
    with op.batch_alter_table("ingest_batch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_batch_sha256"))

    op.drop_table("ingest_batch")
    op.drop_table("instrument")


# --------------------------------------------------------------------------- PostgreSQL references
# (child table, parent table, [(child column, parent column), ...], constraint name)
REFERENCES = [
    (
        "detector_stats",
        "exposure",
        [("instrument_id", "instrument_id"), ("exposure_id", "id")],
        "fk_detector_stats_instrument_id_exposure_id_exposure",
    ),
    (
        "detector_stats",
        "detector",
        [("instrument_id", "instrument_id"), ("detector_id", "id")],
        "fk_detector_stats_instrument_id_detector_id_detector",
    ),
    (
        "amp_stats",
        "exposure",
        [("instrument_id", "instrument_id"), ("exposure_id", "id")],
        "fk_amp_stats_instrument_id_exposure_id_exposure",
    ),
    (
        "amp_stats",
        "amplifier",
        [
            ("instrument_id", "instrument_id"),
            ("detector_id", "detector_id"),
            ("amp_index", "amp_index"),
        ],
        "fk_amp_stats_instrument_id_detector_id_amp_index_amplifier",
    ),
]


def reference_triggers_sql() -> list[str]:
    """Statement-level reference checks for the statistics tables (PostgreSQL).

    Child side: after an INSERT or UPDATE statement, the referenced parent rows are locked
    FOR KEY SHARE (as a foreign key does) and one anti-join over the transition table refuses
    any row whose parent is missing. Parent side: deleting a parent row, or changing its key,
    while a statistics row refers to it is refused.
    """
    out = []
    children = sorted({c for c, _, _, _ in REFERENCES})
    for child in children:
        body = []
        for c, parent, cols, name in REFERENCES:
            if c != child:
                continue
            on = " AND ".join(f"p.{pc} = n.{cc}" for cc, pc in cols)
            keys = ", ".join(cc for cc, _ in cols)
            body.append(
                f"PERFORM 1 FROM {parent} p JOIN (SELECT DISTINCT {keys} FROM new_rows) n "
                f"ON {on} FOR KEY SHARE OF p;\n"
                f"    SELECT {', '.join('n.' + cc for cc, _ in cols)} INTO bad "
                f"FROM (SELECT DISTINCT {keys} FROM new_rows) n "
                f"WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE {on}) LIMIT 1;\n"
                f'    IF FOUND THEN RAISE EXCEPTION \'insert or update on table "{child}" '
                f'violates foreign key constraint "{name}": no {parent} (%)\', bad '
                "USING ERRCODE = 'foreign_key_violation'; END IF;"
            )
        out.append(
            f"CREATE FUNCTION calibreg_{child}_refs() RETURNS trigger AS $$\n"
            "DECLARE bad record;\nBEGIN\n    "
            + "\n    ".join(body)
            + "\n    RETURN NULL;\nEND\n$$ LANGUAGE plpgsql"
        )
        for event in ("INSERT", "UPDATE"):
            out.append(
                f"CREATE TRIGGER trg_{child}_refs_{event.lower()} AFTER {event} ON {child} "
                f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
                f"EXECUTE FUNCTION calibreg_{child}_refs()"
            )
    parents = sorted({p for _, p, _, _ in REFERENCES})
    for parent in parents:
        body = []
        for child, p, cols, name in REFERENCES:
            if p != parent:
                continue
            on = " AND ".join(f"c.{cc} = OLD.{pc}" for cc, pc in cols)
            body.append(
                f"IF EXISTS (SELECT 1 FROM {child} c WHERE {on}) THEN RAISE EXCEPTION "
                f'\'update or delete on table "{parent}" violates foreign key constraint '
                f'"{name}" on table "{child}"\' USING ERRCODE = \'foreign_key_violation\'; '
                "END IF;"
            )
        keys = sorted({pc for _, p, cols, _ in REFERENCES if p == parent for _, pc in cols})
        changed = " OR ".join(f"NEW.{k} IS DISTINCT FROM OLD.{k}" for k in keys)
        out.append(
            f"CREATE FUNCTION calibreg_{parent}_referenced() RETURNS trigger AS $$\n"
            "BEGIN\n    IF TG_OP = 'UPDATE' THEN\n"
            f"        IF NOT ({changed}) THEN RETURN NEW; END IF;\n    END IF;\n    "
            + "\n    ".join(body)
            + "\n    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;\n    RETURN NEW;\nEND\n"
            "$$ LANGUAGE plpgsql"
        )
        out.append(
            f"CREATE TRIGGER trg_{parent}_referenced BEFORE UPDATE OR DELETE ON {parent} "
            f"FOR EACH ROW EXECUTE FUNCTION calibreg_{parent}_referenced()"
        )
    return out


def drop_reference_triggers_sql() -> list[str]:
    out = []
    for child in sorted({c for c, _, _, _ in REFERENCES}):
        out.append(f"DROP TRIGGER IF EXISTS trg_{child}_refs_insert ON {child}")
        out.append(f"DROP TRIGGER IF EXISTS trg_{child}_refs_update ON {child}")
        out.append(f"DROP FUNCTION IF EXISTS calibreg_{child}_refs()")
    for parent in sorted({p for _, p, _, _ in REFERENCES}):
        out.append(f"DROP TRIGGER IF EXISTS trg_{parent}_referenced ON {parent}")
        out.append(f"DROP FUNCTION IF EXISTS calibreg_{parent}_referenced()")
    return out
