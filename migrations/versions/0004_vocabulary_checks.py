"""vocabulary checks: a version's level and method must be names calibreg knows

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 14:50:00

The values are spelled out here, as a migration must stay what it was when written; the models
derive theirs from ``calibreg.domain.vocabulary`` and ``tests/db`` checks that the migrated
database admits exactly the vocabulary's values. PostgreSQL gets CHECK constraints. SQLite
cannot add a constraint to an existing table without rebuilding it (which would drop the
immutability triggers of 0003), so there a BEFORE INSERT trigger refuses the same rows; no
UPDATE needs guarding, as versions can never be updated.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: The tables whose rows a downgrade from this revision destroys: calibreg.db.migrate refuses
#: such a downgrade while they hold data, unless told to destroy it.
DESTROYED_BY_DOWNGRADE: tuple[str, ...] = ()

CHECKS = {
    "level": "level IN ('DETECTOR', 'AMP')",
    "method": "method IN ('exact', 'alternating', 'robust')",
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, condition in CHECKS.items():
            op.create_check_constraint(name, "calibration_version", condition)
        return
    for name, condition in CHECKS.items():
        op.execute(
            f"CREATE TRIGGER trg_calibration_version_{name} BEFORE INSERT ON calibration_version "
            f"WHEN NOT (NEW.{condition}) BEGIN SELECT RAISE(ABORT, "
            f"'CHECK constraint failed: ck_calibration_version_{name}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in CHECKS:
            op.drop_constraint(f"ck_calibration_version_{name}", "calibration_version")
        return
    for name in CHECKS:
        op.execute(f"DROP TRIGGER IF EXISTS trg_calibration_version_{name}")
