"""A PostgreSQL runtime role cannot bypass the registry's guards (issue 13, kind 4)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from calibreg.client import Registry
from calibreg.errors import CalibregError, InputError
from tests.publish.pubdata import FILTER, INSTRUMENT


@pytest.fixture
def runtime(pub):
    """(pub, engine as a fresh LOGIN runtime role; on SQLite, which has no roles, the file)."""
    if pub.backend != "postgresql":
        yield pub, pub.engine, None
        return
    role = f"calibreg_rt_{uuid.uuid4().hex[:10]}"
    with pub.engine.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    pub.registry.grant_runtime(role)
    url = make_url(pub.url).set(username=role)
    engine = create_engine(url)
    yield pub, engine, role
    engine.dispose()
    with pub.engine.begin() as conn:
        conn.execute(text(f'DROP OWNED BY "{role}"'))
        conn.execute(text(f'DROP ROLE "{role}"'))


def _refused(engine, sql: str, match: str) -> None:
    with engine.connect() as conn, pytest.raises(Exception, match=match):
        conn.execute(text(sql))


def test_runtime_role_works_but_cannot_bypass_the_guards(runtime) -> None:
    pub, engine, role = runtime
    v = pub.solve()
    # It can use the registry: read, solve and certify (through the facade, as a user would).
    reg = Registry(engine=engine)
    assert len(reg.versions()) == 1
    from calibreg.services.solve import SolveRequest, solve_quantum

    v2 = solve_quantum(reg, SolveRequest(INSTRUMENT, FILTER))["version_id"]
    assert v2 > v
    if role is not None:
        _cannot_switch_guards_off(engine)
    # Row changes meet the triggers, on both backends.
    _row_changes_refused(engine, v)


def _cannot_switch_guards_off(engine) -> None:
    """The runtime role cannot switch a guard off, nor empty a table past the row triggers."""
    for table, trigger in [
        ("version_row", "trg_version_row_slot"),
        ("detector_stats", "trg_detector_stats_used_update"),
        ("certification", "trg_certification_guard"),
    ]:
        _refused(engine, f"ALTER TABLE {table} DISABLE TRIGGER {trigger}", "must be owner")
    _refused(engine, "ALTER TABLE version_row DISABLE TRIGGER ALL", "must be owner")
    for table in ("version_row", "detector_stats", "amp_stats", "calibration_version"):
        _refused(engine, f"TRUNCATE {table}", "permission denied")
    _refused(engine, "SET session_replication_role = replica", "permission denied")
    _refused(engine, "DROP TABLE version_row", "must be owner")


def _row_changes_refused(engine, v: int) -> None:
    _refused(engine, f"UPDATE version_row SET scale = 2 WHERE version_id = {v}", "immutable")
    _refused(engine, f"DELETE FROM version_row WHERE version_id = {v}", "immutable")
    _refused(
        engine,
        "INSERT INTO version_row (version_id, row_index, instrument_id, detector_id, amp_index, "
        f"scale, rms, n_used, flagged) SELECT version_id, 999, instrument_id, detector_id, "
        f"amp_index, scale, rms, n_used, flagged FROM version_row WHERE version_id = {v} "
        "LIMIT 1",
        "sealed",
    )
    _refused(
        engine,
        "INSERT INTO version_exposure (version_id, exp_index, instrument_id, exposure_id, "
        "scale, rms, n_used, flagged) SELECT version_id, 999, instrument_id, exposure_id + 1, "
        f"scale, rms, n_used, flagged FROM version_exposure WHERE version_id = {v} LIMIT 1",
        "sealed",
    )
    _refused(engine, "UPDATE detector_stats SET median = median * 2", "inputs of (a )?calibration")
    _refused(engine, "DELETE FROM detector_stats", "inputs of (a )?calibration")


def test_grant_runtime_refuses_bad_names_and_sqlite(pub) -> None:
    if pub.backend == "postgresql":
        with pytest.raises(InputError, match="not a plain role name"):
            pub.registry.grant_runtime('x"; DROP TABLE tag; --')
        with pytest.raises(CalibregError, match="no PostgreSQL role"):
            pub.registry.grant_runtime("calibreg_no_such_role")
    else:
        with pytest.raises(CalibregError, match="only on PostgreSQL"):
            pub.registry.grant_runtime("anyone")
