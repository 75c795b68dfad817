"""The statistics tables' reference checks on PostgreSQL (statement triggers, migration 0008).

PostgreSQL checks the references of ``amp_stats`` and ``detector_stats`` with statement-level
triggers, one pass over each statement's rows. What a foreign key guarantees must hold: a
statement naming one missing parent among many valid rows is refused whole, with the missing
key in the message; the referenced parents are locked ``FOR KEY SHARE`` until the writing
transaction ends (a concurrent delete of one waits, and cannot slip a dangling row in); and
the checks of migration 0001 come back on downgrade.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from calibreg.db.migrate import downgrade, upgrade
from calibreg.db.session import make_engine, transaction
from calibreg.errors import ConflictError
from tests.conftest import _postgres_schema_url
from tests.db.test_schema import _seed

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(postgres_base_url: str):
    """A fresh PostgreSQL schema (SQLite has real foreign keys: nothing of this applies)."""
    yield from _postgres_schema_url(postgres_base_url)


@pytest.fixture
def pg_engine(pg_url: str):
    """A migrated PostgreSQL registry with 50 exposures and a 16-amplifier detector."""
    engine = make_engine(pg_url)
    upgrade(engine)
    _seed(engine)
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO exposure (instrument_id, id, physical_filter, batch_id) "
                "SELECT 1, g, 'r', 1 FROM generate_series(1, 50) g"
            )
        )
        conn.execute(
            text(
                "INSERT INTO amplifier (instrument_id, detector_id, amp_index, name, bbox_x0, "
                "bbox_y0, bbox_width, bbox_height) "
                "SELECT 1, 7, a, 'C' || a, 0, 0, 5, 5 FROM generate_series(0, 15) a"
            )
        )
    yield engine
    engine.dispose()


def _rows(exposures: str, amps: str = "generate_series(0, 15)") -> str:
    return f"INSERT INTO amp_stats SELECT 1, e, 7, a, 1.0, 0.1, 10, 1 FROM {exposures} e, {amps} a"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        # 800 valid rows and 16 naming exposure 51, which does not exist.
        (_rows("generate_series(1, 51)"), r"no exposure \(\(1,51\)\)"),
        # Every exposure exists; amplifier 16 of detector 7 does not.
        (_rows("generate_series(1, 50)", "generate_series(0, 16)"), r"no amplifier \(\(1,7,16\)\)"),
        (
            "INSERT INTO detector_stats SELECT 1, e, 8, 1.0, 0.1, 10, 1 "
            "FROM generate_series(1, 3) e",
            r"no detector \(\(1,8\)\)",
        ),
    ],
)
def test_one_missing_parent_refuses_the_whole_statement(pg_engine, sql, message) -> None:
    with pytest.raises(ConflictError, match=message), transaction(pg_engine) as conn:
        conn.execute(text(sql))
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM amp_stats")).scalar_one() == 0
    with transaction(pg_engine) as conn:  # all valid: written
        conn.execute(text(_rows("generate_series(1, 50)")))
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM amp_stats")).scalar_one() == 800


def test_referenced_parents_stay_locked_until_the_writer_commits(pg_engine) -> None:
    """A delete of an exposure that an open transaction just wrote statistics for must wait.

    Without the lock, the delete's own check would not see the uncommitted rows, succeed, and
    the writer's commit would leave statistics of a deleted exposure.
    """
    writer = pg_engine.connect()
    tx = writer.begin()
    outcome: dict[str, object] = {}
    try:
        writer.execute(text(_rows("generate_series(10, 12)")))

        def delete() -> None:
            try:
                with transaction(pg_engine) as conn:
                    conn.execute(text("SET LOCAL lock_timeout = '300ms'"))
                    conn.execute(text("DELETE FROM exposure WHERE id = 11"))
                outcome["deleted"] = True
            except Exception as err:  # the lock timeout, translated or not
                outcome["error"] = str(err)

        thread = threading.Thread(target=delete)
        thread.start()
        thread.join(30)
        assert "deleted" not in outcome, "a referenced exposure was deleted under an open write"
        assert "lock" in str(outcome.get("error", "")).lower(), outcome
        tx.commit()
    finally:
        if tx.is_active:
            tx.rollback()
        writer.close()
    # Committed: now the parent-side check refuses the delete outright.
    with pytest.raises(ConflictError, match=r"(?i)foreign key"), transaction(pg_engine) as conn:
        conn.execute(text("DELETE FROM exposure WHERE id = 11"))
    # An exposure no row refers to is not locked or protected.
    with transaction(pg_engine) as conn:
        conn.execute(text("DELETE FROM exposure WHERE id = 40"))


def test_downgrade_restores_the_checks_of_0001(pg_engine) -> None:
    def body() -> str:
        with pg_engine.connect() as conn:
            src, config = conn.execute(
                text(
                    "SELECT prosrc, proconfig FROM pg_proc "
                    "WHERE proname = 'calibreg_amp_stats_refs' "
                    "AND pronamespace = current_schema()::regnamespace"
                )
            ).one()
        return f"{src} {config}"

    one_pass = "AS MATERIALIZED"
    assert one_pass in body() and "enable_sort=off" in body()
    downgrade(pg_engine, "0007")
    assert one_pass not in body() and "PERFORM 1 FROM exposure" in body()
    with pytest.raises(ConflictError, match=r"no exposure"), transaction(pg_engine) as conn:
        conn.execute(text(_rows("generate_series(50, 51)")))
    upgrade(pg_engine)
    assert one_pass in body()
