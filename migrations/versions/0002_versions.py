"""solves: quanta, calibration versions, exposure and row scales

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 19:23:13.614911
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: The tables whose rows a downgrade from this revision destroys: calibreg.db.migrate refuses
#: such a downgrade while they hold data, unless told to destroy it.
DESTROYED_BY_DOWNGRADE: tuple[str, ...] = (
    "quantum",
    "calibration_version",
    "version_exposure",
    "version_row",
)


def upgrade() -> None:

    op.create_table(
        "quantum",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("physical_filter", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("selection_key", sa.String(length=64), nullable=False),
        sa.Column(
            "selection", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("level IN ('DETECTOR', 'AMP')", name=op.f("ck_quantum_level")),
        sa.ForeignKeyConstraint(
            ["instrument_id"], ["instrument.id"], name=op.f("fk_quantum_instrument_id_instrument")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quantum")),
        sa.UniqueConstraint(
            "instrument_id",
            "physical_filter",
            "level",
            "selection_key",
            name=op.f("uq_quantum_instrument_id_physical_filter_level_selection_key"),
        ),
    )
    op.create_table(
        "calibration_version",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("quantum_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("physical_filter", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("n_exposures", sa.Integer(), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("n_missing", sa.Integer(), nullable=False),
        sa.Column("n_rejected", sa.Integer(), nullable=False),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("converged", sa.Boolean(), nullable=False),
        sa.Column("rms", sa.Double(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("input_fingerprint", sa.String(length=64), nullable=False),
        sa.Column(
            "config", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "provenance", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "task_metadata",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("software_version", sa.String(length=64), nullable=False),
        sa.Column("schema_revision", sa.String(length=32), nullable=False),
        sa.Column("user_name", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_calibration_version_seq")),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instrument.id"],
            name=op.f("fk_calibration_version_instrument_id_instrument"),
        ),
        sa.ForeignKeyConstraint(
            ["quantum_id"], ["quantum.id"], name=op.f("fk_calibration_version_quantum_id_quantum")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibration_version")),
        sa.UniqueConstraint(
            "quantum_id", "seq", name=op.f("uq_calibration_version_quantum_id_seq")
        ),
    )
    with op.batch_alter_table("calibration_version", schema=None) as batch_op:
        batch_op.create_index(
            "ix_calibration_version_instrument_id_physical_filter",
            ["instrument_id", "physical_filter"],
            unique=False,
        )

    op.create_table(
        "version_exposure",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("exposure_id", sa.BigInteger(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("scale", sa.Double(), nullable=True),
        sa.Column("rms", sa.Double(), nullable=True),
        sa.Column("n_used", sa.Integer(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument_id", "exposure_id"],
            ["exposure.instrument_id", "exposure.id"],
            name=op.f("fk_version_exposure_instrument_id_exposure_id_exposure"),
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["calibration_version.id"],
            name=op.f("fk_version_exposure_version_id_calibration_version"),
        ),
        sa.PrimaryKeyConstraint("version_id", "exposure_id", name=op.f("pk_version_exposure")),
    )
    op.create_table(
        "version_row",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("row_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("detector_id", sa.Integer(), nullable=False),
        sa.Column("amp_index", sa.SmallInteger(), nullable=True),
        sa.Column("amp_name", sa.String(length=32), nullable=True),
        sa.Column("scale", sa.Double(), nullable=True),
        sa.Column("rms", sa.Double(), nullable=True),
        sa.Column("n_used", sa.Integer(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument_id", "detector_id"],
            ["detector.instrument_id", "detector.id"],
            name=op.f("fk_version_row_instrument_id_detector_id_detector"),
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["calibration_version.id"],
            name=op.f("fk_version_row_version_id_calibration_version"),
        ),
        sa.PrimaryKeyConstraint("version_id", "row_index", name=op.f("pk_version_row")),
    )
    with op.batch_alter_table("version_row", schema=None) as batch_op:
        batch_op.create_index(
            "ix_version_row_instrument_id_detector_id",
            ["instrument_id", "detector_id"],
            unique=False,
        )


def downgrade() -> None:

    with op.batch_alter_table("version_row", schema=None) as batch_op:
        batch_op.drop_index("ix_version_row_instrument_id_detector_id")

    op.drop_table("version_row")
    op.drop_table("version_exposure")
    with op.batch_alter_table("calibration_version", schema=None) as batch_op:
        batch_op.drop_index("ix_calibration_version_instrument_id_physical_filter")

    op.drop_table("calibration_version")
    op.drop_table("quantum")
