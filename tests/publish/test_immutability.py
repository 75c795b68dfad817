"""The database itself refuses to change a version or a certification (issue #5).

Raw SQL through ``engine.begin()`` bypasses calibreg entirely: the SQLite triggers and the
PostgreSQL triggers / exclusion constraint of migration 0003 must refuse it on their own.
"""

from __future__ import annotations

import pytest
from sqlalchemy import exc, text

from tests.publish.pubdata import T_BASE

S = 1_000_000_000
VERSION_TABLES = ("quantum", "calibration_version", "version_exposure", "version_row")
#: A column of each table that a tamperer would like to change, and a harmless new value.
TAMPER = {
    "quantum": ("physical_filter", "'g_6'"),
    "calibration_version": ("content_hash", "'forged'"),
    "version_exposure": ("scale", "scale * 2"),
    "version_row": ("scale", "scale * 2"),
}


def _refused(engine, sql: str, params: dict | None = None) -> Exception:
    """Run ``sql`` in its own transaction and return the database's refusal."""
    with pytest.raises(exc.DBAPIError) as info, engine.begin() as conn:
        conn.execute(text(sql), params or {})
    # Both backends report a refused change as an integrity violation (calibreg maps that
    # to ConflictError), not as an arbitrary driver failure.
    assert isinstance(info.value, exc.IntegrityError), repr(info.value)
    return info.value


def _snapshot(engine, tables) -> dict[str, list]:
    out = {}
    with engine.connect() as conn:
        for table in tables:
            out[table] = sorted(map(repr, conn.execute(text(f"SELECT * FROM {table}")).all()))
    return out


def test_versions_refuse_raw_update_and_delete(pub) -> None:
    v1 = pub.solve()
    pub.solve(level="AMP")
    before = _snapshot(pub.engine, VERSION_TABLES)
    assert all(before[t] for t in VERSION_TABLES)
    key = {"quantum": "id", "calibration_version": "id"}
    for table in VERSION_TABLES:
        col, value = TAMPER[table]
        where = f"{key.get(table, 'version_id')} = :v"
        err = _refused(pub.engine, f"UPDATE {table} SET {col} = {value} WHERE {where}", {"v": v1})
        assert "immutable" in str(err)
        _refused(pub.engine, f"UPDATE {table} SET {col} = {value}")  # every row at once
        err = _refused(pub.engine, f"DELETE FROM {table} WHERE {where}", {"v": v1})
        assert "immutable" in str(err)
        _refused(pub.engine, f"DELETE FROM {table}")
    assert _snapshot(pub.engine, VERSION_TABLES) == before
    # Reading still works, and the stored content is what was written.
    assert pub.registry.version(v1)["seq"] == 1


def test_certifications_cannot_be_deleted_reopened_or_overlapped(pub) -> None:
    reg = pub.registry
    v1, v2 = pub.solve(), pub.solve()
    a, b, c = T_BASE, T_BASE + 100 * S, T_BASE + 200 * S
    cert = reg.certify(v1, "t", a, b)["certification_id"]
    reg.certify(v2, "t", b, c)
    engine = pub.engine
    before = _snapshot(engine, ["certification"])

    err = _refused(engine, "DELETE FROM certification WHERE id = :i", {"i": cert})
    assert "never deleted" in str(err)
    _refused(engine, "DELETE FROM certification")
    err = _refused(
        engine, "UPDATE certification SET valid_end = :e WHERE id = :i", {"e": b + S, "i": cert}
    )
    assert "closed once" in str(err)
    _refused(
        engine, "UPDATE certification SET valid_begin = valid_begin - 1 WHERE id = :i", {"i": cert}
    )
    _refused(engine, "UPDATE certification SET version_id = :v WHERE id = :i", {"v": v2, "i": cert})
    # Closing together with a change of range is refused as well.
    _refused(
        engine,
        "UPDATE certification SET decertified_at = certified_at, valid_end = :e WHERE id = :i",
        {"e": b + S, "i": cert},
    )
    assert _snapshot(engine, ["certification"]) == before

    # Raw overlapping INSERTs (calibreg's own check bypassed) are refused by the database.
    insert = (
        "INSERT INTO certification (tag_id, version_id, instrument_id, physical_filter, "
        "valid_begin, valid_end, certified_at, certified_by) SELECT tag_id, :v, instrument_id, "
        "physical_filter, :b, :e, certified_at, 'raw' FROM certification WHERE id = :i"
    )
    for begin, end in ((a, b), (b - 1, b + 1), (a - S, a + 1), (c - 1, None), (a - S, None)):
        _refused(engine, insert, {"v": v2, "b": begin, "e": end, "i": cert})
    assert _snapshot(engine, ["certification"]) == before
    # ... while touching ranges are accepted by the database too.
    with engine.begin() as conn:
        conn.execute(text(insert), {"v": v2, "b": c, "e": None, "i": cert})
        conn.execute(text(insert), {"v": v2, "b": a - S, "e": a, "i": cert})
    assert len(reg.certifications("t")) == 4

    # Closing a row once (what decertify does) is allowed; closing it again, or reopening, not.
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE certification SET decertified_at = certified_at, "
                "decertified_by = 'raw' WHERE id = :i"
            ),
            {"i": cert},
        )
    after_close = _snapshot(engine, ["certification"])
    _refused(engine, "UPDATE certification SET decertified_at = NULL WHERE id = :i", {"i": cert})
    _refused(engine, "UPDATE certification SET decertified_by = 'again' WHERE id = :i", {"i": cert})
    _refused(engine, "DELETE FROM certification WHERE id = :i", {"i": cert})
    assert _snapshot(engine, ["certification"]) == after_close
    # The closed range no longer blocks a raw insert of the same range.
    with engine.begin() as conn:
        conn.execute(text(insert), {"v": v2, "b": a, "e": b, "i": cert})
    assert sorted(c["version_id"] for c in reg.certifications("t")) == [v2, v2, v2, v2]


# --------------------------------------------------------------------------- bypasses
# Regressions: SQLite INSERT OR REPLACE and PostgreSQL TRUNCATE used to bypass the guards.
UPSERT = {
    "version_exposure": ("version_id, exposure_id", "scale"),
    "version_row": ("version_id, row_index", "scale"),
    "calibration_version": ("id", "content_hash"),
}


def _upsert_sql(backend: str, table: str, cols: list[str], where: str) -> str:
    key, col = UPSERT[table]
    exprs = ", ".join(
        (f"upper({c})" if col == "content_hash" else f"{c} * 2") if c == col else c for c in cols
    )
    names = ", ".join(cols)
    if backend == "sqlite":
        return f"INSERT OR REPLACE INTO {table} ({names}) SELECT {exprs} FROM {table} WHERE {where}"
    return (
        f"INSERT INTO {table} ({names}) SELECT {exprs} FROM {table} WHERE {where} "
        f"ON CONFLICT ({key}) DO UPDATE SET {col} = EXCLUDED.{col}"
    )


def _columns(engine, table: str) -> list[str]:
    from sqlalchemy import inspect

    return [c["name"] for c in inspect(engine).get_columns(table)]


def test_upsert_over_a_version_is_refused(pub, request) -> None:
    v1 = pub.solve()
    before = _snapshot(pub.engine, VERSION_TABLES)
    changed = []
    for table in UPSERT:
        where = "id = :v" if table == "calibration_version" else "version_id = :v"
        sql = _upsert_sql(pub.backend, table, _columns(pub.engine, table), where)
        if _accepted(pub.engine, sql, {"v": v1}):
            changed.append(table)
    assert _snapshot(pub.engine, VERSION_TABLES) == before
    assert changed == []


def test_upsert_over_a_certification_is_refused(pub, request) -> None:
    reg = pub.registry
    v1 = pub.solve()
    cert = reg.certify(v1, "t", T_BASE, None)["certification_id"]
    reg.decertify("t", "LSSTCam", "r_57", T_BASE + 100 * S, None)  # cert is closed now
    before = _snapshot(pub.engine, ["certification"])
    cols = _columns(pub.engine, "certification")
    # Rewrite the closed row's history: a different validity range.
    exprs = ", ".join(
        "valid_end + 1000"
        if c == "valid_end"
        else "valid_begin - 1000"
        if c == "valid_begin"
        else c
        for c in cols
    )
    if pub.backend == "sqlite":
        sql = (
            f"INSERT OR REPLACE INTO certification ({', '.join(cols)}) "
            f"SELECT {exprs} FROM certification WHERE id = :i"
        )
    else:
        sql = (
            f"INSERT INTO certification ({', '.join(cols)}) SELECT {exprs} FROM "
            "certification WHERE id = :i ON CONFLICT (id) DO UPDATE SET "
            "valid_begin = EXCLUDED.valid_begin"
        )
    accepted = _accepted(pub.engine, sql, {"i": cert})
    assert _snapshot(pub.engine, ["certification"]) == before
    assert not accepted


def _accepted(engine, sql: str, params: dict | None = None) -> bool:
    """Whether the database lets ``sql`` through (rolled back either way)."""
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            conn.execute(text(sql), params or {})
        except exc.IntegrityError:
            trans.rollback()
            return False
        trans.rollback()
        return True


def test_truncate_is_refused(pub, request) -> None:
    reg = pub.registry
    v1 = pub.solve()
    reg.certify(v1, "t", T_BASE, None)
    tables = [*VERSION_TABLES, "certification"]
    before = _snapshot(pub.engine, tables)
    # SQLite has no TRUNCATE: an unqualified DELETE is its truncate optimization (which SQLite
    # turns off for tables with triggers).
    verb = "DELETE FROM {}" if pub.backend == "sqlite" else "TRUNCATE {} CASCADE"
    accepted = [t for t in tables if _accepted(pub.engine, verb.format(t))]
    assert _snapshot(pub.engine, tables) == before
    assert accepted == []
