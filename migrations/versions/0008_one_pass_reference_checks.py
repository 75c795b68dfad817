"""statistics reference checks in one pass over the written rows per parent (PostgreSQL)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 20:00:00

Migration 0001 checks the references of the statistics tables with one statement-level
trigger per table: after each ``INSERT``/``UPDATE`` statement it locks the referenced parent
rows ``FOR KEY SHARE`` and refuses a row whose parent is missing. It did so with two
``SELECT DISTINCT`` passes over the statement's transition table per parent, four for
``amp_stats``. The trigger function's own time (``pg_stat_xact_user_functions.self_time``,
``benchmarks/bench_reference_checks.py``) was 0.49-0.53 s per 604,800 rows and 4.6-5.1 s per
6,048,000; with one pass per parent it is 0.25-0.32 s and 2.5-2.8 s.

This revision replaces the trigger *functions* (the triggers stay): for each parent, one
statement finds the distinct keys the rows name (one hashed pass over the transition table),
locks the parent rows they name and counts both; fewer locked rows than distinct keys means a
parent is missing, and only then is the missing key looked up for the error message (the same
message and ``foreign_key_violation`` code as before). The function plans with sorting off:
the planner cannot estimate a transition table's distinct keys, and sorted millions of rows on
disk to find a few thousand. SQLite keeps its real foreign keys: nothing changes there.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: Only trigger functions are replaced: a downgrade loses nothing.
DESTROYED_BY_DOWNGRADE: tuple[str, ...] = ()

#: (child table, parent table, [(child column, parent column)...], constraint name), as in
#: migration 0001 (copied: a migration does not change when later code does).
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


def one_pass_function_sql(child: str) -> str:
    """Return ``CREATE OR REPLACE FUNCTION calibreg_<child>_refs()``: one pass per parent.

    Per parent, one statement collects the distinct keys the rows name (once, materialised),
    locks the parent rows they name ``FOR KEY SHARE`` and counts both: fewer parents than
    keys means one is missing, and only then is it looked for, for the message.
    """
    refs = [r for r in REFERENCES if r[0] == child]
    declare = "DECLARE bad record; want bigint; got bigint;"
    body = []
    for _, parent, cols, name in refs:
        keys = ", ".join(cc for cc, _ in cols)
        on_k = " AND ".join(f"p.{pc} = k.{cc}" for cc, pc in cols)
        on_n = " AND ".join(f"p.{pc} = n.{cc}" for cc, pc in cols)
        body.append(
            f"WITH k AS MATERIALIZED (SELECT DISTINCT {keys} FROM new_rows)\n"
            "    SELECT (SELECT count(*) FROM k), (SELECT count(*) FROM "
            f"(SELECT 1 FROM {parent} p JOIN k ON {on_k} FOR KEY SHARE OF p) l) INTO want, got;\n"
            "    IF got < want THEN\n"
            f"        SELECT {', '.join('n.' + cc for cc, _ in cols)} INTO bad "
            f"FROM (SELECT DISTINCT {keys} FROM new_rows) n "
            f"WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE {on_n}) LIMIT 1;\n"
            f'        RAISE EXCEPTION \'insert or update on table "{child}" violates foreign key '
            f"constraint \"{name}\": no {parent} (%)', bad USING ERRCODE = 'foreign_key_violation';\n"
            "    END IF;"
        )
    return (
        f"CREATE OR REPLACE FUNCTION calibreg_{child}_refs() RETURNS trigger AS $$\n"
        f"{declare}\nBEGIN\n    " + "\n    ".join(body) + "\n    RETURN NULL;\nEND\n"
        # The planner cannot estimate a transition table's distinct keys (for 6 M rows naming
        # 2,000 exposures it guessed 644,800) and sorted the rows on disk to find them (8 s);
        # hashing is right at any size: the keys are the referenced parents, a few thousand.
        "$$ LANGUAGE plpgsql SET enable_sort = off"
    )


def _children() -> list[str]:
    return sorted({c for c, _, _, _ in REFERENCES})


def _is_pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _is_pg():
        return
    for child in _children():
        op.execute(one_pass_function_sql(child))


def downgrade() -> None:
    if not _is_pg():
        return
    # Put back exactly what migration 0001 created.
    spec = importlib.util.spec_from_file_location(
        "calibreg_migration_0001", Path(__file__).with_name("0001_inputs.py")
    )
    first = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(first)
    for sql in first.reference_triggers_sql():
        if sql.startswith("CREATE FUNCTION calibreg_") and sql.split("(")[0].endswith("_refs"):
            op.execute(sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
