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
    err = _refused(engine, "UPDATE certification SET valid_end = :e WHERE id = :i",
                   {"e": b + S, "i": cert})  # fmt: skip
    assert "closed once" in str(err)
    _refused(engine, "UPDATE certification SET valid_begin = valid_begin - 1 WHERE id = :i",
             {"i": cert})  # fmt: skip
    _refused(engine, "UPDATE certification SET version_id = :v WHERE id = :i",
             {"v": v2, "i": cert})  # fmt: skip
    # Closing together with a change of range is refused as well.
    _refused(engine, "UPDATE certification SET decertified_at = certified_at, valid_end = :e "
             "WHERE id = :i", {"e": b + S, "i": cert})  # fmt: skip
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
        conn.execute(text("UPDATE certification SET decertified_at = certified_at, "
                          "decertified_by = 'raw' WHERE id = :i"), {"i": cert})  # fmt: skip
    after_close = _snapshot(engine, ["certification"])
    _refused(engine, "UPDATE certification SET decertified_at = NULL WHERE id = :i", {"i": cert})
    _refused(engine, "UPDATE certification SET decertified_by = 'again' WHERE id = :i",
             {"i": cert})  # fmt: skip
    _refused(engine, "DELETE FROM certification WHERE id = :i", {"i": cert})
    assert _snapshot(engine, ["certification"]) == after_close
    # The closed range no longer blocks a raw insert of the same range.
    with engine.begin() as conn:
        conn.execute(text(insert), {"v": v2, "b": a, "e": b, "i": cert})
    assert sorted(c["version_id"] for c in reg.certifications("t")) == [v2, v2, v2, v2]
