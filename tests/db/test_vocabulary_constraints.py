"""The migrated schema admits exactly the vocabularies of ``calibreg.domain.vocabulary``.

Migrations spell the values out (a migration is frozen when written); the models derive theirs
from the vocabulary. Alembic's autogenerate comparison does not look at CHECK constraints, so
this test reads them back from the migrated database on both backends.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from calibreg.domain.vocabulary import Level, Method, Vocabulary

CHECKED: list[tuple[str, str, type[Vocabulary]]] = [
    ("quantum", "level", Level),
    ("calibration_version", "level", Level),
    ("calibration_version", "method", Method),
]


def _definition(conn, table: str, column: str) -> str:
    name = f"ck_{table}_{column}"
    if conn.dialect.name == "postgresql":
        return conn.execute(
            # Constraint names are unique per schema only: each test has a schema of its own.
            text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conname = :n AND conrelid = to_regclass(:t)"
            ),
            {"n": name, "t": table},
        ).scalar_one()
    sql = "\n".join(
        row[0]
        for row in conn.execute(
            text("SELECT sql FROM sqlite_master WHERE tbl_name = :t AND sql IS NOT NULL"),
            {"t": table},
        )
    )
    # A CHECK in the CREATE TABLE, or the BEFORE INSERT trigger of migration 0004.
    match = re.search(
        rf"CONSTRAINT {name} CHECK \(([^)]*)\)|trg_{table}_{column} .*?WHEN NOT \((.*?)\) BEGIN",
        sql,
        re.S,
    )
    assert match, f"no constraint {name} on {table}:\n{sql}"
    return match.group(1) or match.group(2)


@pytest.mark.parametrize(("table", "column", "vocabulary"), CHECKED)
def test_migrated_checks_admit_exactly_the_vocabulary(engine, table, column, vocabulary) -> None:
    with engine.connect() as conn:
        definition = _definition(conn, table, column)
    assert column in definition
    assert set(re.findall(r"'([^']*)'", definition)) == set(vocabulary.values())


def test_an_unknown_method_is_refused_by_the_database(engine) -> None:
    """The trigger/constraint really refuses (not only reads right)."""
    from calibreg.errors import ConflictError

    table = "calibration_version"
    from calibreg.db.session import transaction

    with (
        pytest.raises(ConflictError, match="ck_calibration_version_method"),
        transaction(engine) as conn,
    ):
        conn.execute(
            text(
                f"INSERT INTO {table} (quantum_id, seq, instrument_id, physical_filter, "
                "level, method, n_exposures, n_rows, n_missing, n_rejected, iterations, "
                "converged, content_hash, input_fingerprint, config, provenance, "
                "task_metadata, software_version, schema_revision, user_name, host, "
                "started_at, finished_at, created_at) VALUES (1, 1, 1, 'f', 'AMP', "
                "'median', 1, 1, 0, 0, 1, true, 'h', 'f', '{}', '{}', '{}', 'v', 'r', 'u', "
                "'h', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', "
                "'2026-01-01T00:00:00+00:00')"
            )
        )
