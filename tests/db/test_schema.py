"""The schema: migrations and models agree, round trips, constraints and types on both backends."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, select, text

from calibreg.db.base import Base
from calibreg.db.migrate import (
    alembic_config,
    compare_filter,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from calibreg.db.models import Detector, IngestBatch, Instrument
from calibreg.db.session import make_engine, transaction
from calibreg.db.types import utcnow
from calibreg.errors import ConflictError, SchemaError


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, heads


def _diff(engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_object": compare_filter(conn.dialect.name),
            },
        )
        return compare_metadata(ctx, Base.metadata)


def test_migrations_match_models(engine) -> None:
    assert _diff(engine) == []


def test_naming_convention_applied(engine) -> None:
    insp = inspect(engine)
    fks = insp.get_foreign_keys("version_row")
    assert {fk["name"] for fk in fks} >= {
        "fk_version_row_instrument_id_detector_id_detector",
        "fk_version_row_version_id_calibration_version",
    }
    checks = {c["name"] for c in insp.get_check_constraints("amp_stats")}
    assert "ck_amp_stats_n_pixels" in checks


def _seed(engine) -> None:
    with transaction(engine) as conn:
        conn.execute(insert(Instrument), {"id": 1, "name": "Cam", "created_at": utcnow()})
        conn.execute(
            insert(IngestBatch),
            {
                "id": 1,
                "kind": "camera",
                "instrument_id": 1,
                "source": "x",
                "sha256": "0" * 64,
                "n_rows": 1,
                "n_inserted": 1,
                "n_replaced": 0,
                "n_unchanged": 0,
                "started_at": utcnow(),
                "finished_at": utcnow(),
                "user_name": "u",
                "host": "h",
                "software_version": "0",
            },
        )
        conn.execute(
            insert(Detector),
            {
                "instrument_id": 1,
                "id": 7,
                "name": "R22_S11",
                "purpose": "SCIENCE",
                "bbox_x0": 0,
                "bbox_y0": 0,
                "bbox_x1": 10,
                "bbox_y1": 10,
                "n_amplifiers": 0,
                "offset_x": math.nan,
                "yaw": 1.5,
                "batch_id": 1,
            },
        )


def test_downgrade_upgrade_round_trip_with_data(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    _seed(engine)
    with pytest.raises(ConflictError, match=r"would destroy .*instrument rows.*--destroy-data"):
        downgrade(engine, "base")
    assert current_revision(engine) == head_revision()  # refused: nothing changed
    downgrade(engine, "base", destroy_data=True)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _diff(engine) == []
    _seed(engine)  # the tables are back, empty and usable
    engine.dispose()


def test_downgrade_of_an_empty_database_needs_no_flag(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    downgrade(engine, "0002")  # nothing stored: nothing to destroy
    assert current_revision(engine) == "0002"
    upgrade(engine)
    engine.dispose()


def test_unknown_revision_is_one_line(db_url: str) -> None:
    engine = make_engine(db_url)
    with pytest.raises(SchemaError, match=r"unknown schema revision 'nope'; known: 0001"):
        upgrade(engine, "nope")
    with pytest.raises(SchemaError, match="unknown schema revision"):
        downgrade(engine, "0099")
    engine.dispose()


def test_nan_round_trip_means_null(engine) -> None:
    _seed(engine)
    with engine.connect() as conn:
        offset_x, yaw = conn.execute(select(Detector.offset_x, Detector.yaw)).one()
        raw = conn.execute(text("SELECT offset_x FROM detector")).scalar_one()
    assert math.isnan(offset_x)
    assert yaw == 1.5
    assert raw is None  # NaN is stored as NULL on both backends


def test_float64_is_bit_exact(engine) -> None:
    _seed(engine)
    value = 0.1 + 0.2  # not representable in 32 bits
    with transaction(engine) as conn:
        conn.execute(text("UPDATE detector SET yaw = :v"), {"v": value})
    with engine.connect() as conn:
        assert conn.execute(select(Detector.yaw)).scalar_one() == value


def test_naive_datetime_refused(engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), transaction(engine) as conn:
        conn.execute(insert(Instrument), {"name": "X", "created_at": dt.datetime(2020, 1, 1)})


def test_aware_datetime_round_trips_in_utc(engine) -> None:
    when = dt.datetime(2025, 12, 3, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with transaction(engine) as conn:
        conn.execute(insert(Instrument), {"name": "X", "created_at": when})
    with engine.connect() as conn:
        got = conn.execute(select(Instrument.created_at)).scalar_one()
    assert got == when and got.tzinfo is not None and got.utcoffset() == dt.timedelta(0)


def test_check_and_foreign_keys_enforced(engine) -> None:
    _seed(engine)
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO exposure (instrument_id, id, physical_filter, batch_id) "
                "VALUES (1, 5, 'r', 1)"
            )
        )
    with pytest.raises(ConflictError, match=r"n_pixels|check"), transaction(engine) as conn:
        conn.execute(text("INSERT INTO detector_stats VALUES (1, 5, 7, 1.0, 0.1, -1, 1)"))
    with pytest.raises(ConflictError, match=r"(?i)foreign key"), transaction(engine) as conn:
        conn.execute(text("INSERT INTO detector_stats VALUES (1, 999, 7, 1.0, 0.1, 10, 1)"))


def test_out_of_date_schema_is_refused(db_url: str) -> None:
    from calibreg.db.migrate import require_current

    engine = make_engine(db_url)
    with pytest.raises(SchemaError, match="calibreg db upgrade"):
        require_current(engine)
    upgrade(engine)
    require_current(engine)
    engine.dispose()


def test_masked_url_hides_passwords() -> None:
    from calibreg.db.session import masked_url, resolve_url

    masked = masked_url("postgresql://alice:s3cret@db.example:5432/reg")
    assert "s3cret" not in masked and "***" in masked
    assert resolve_url("postgresql://a@h/d").startswith("postgresql+psycopg://")


def test_statistics_references_enforced_both_ways(engine) -> None:
    """Orphan statistics and deleting a referenced parent are refused on both backends
    (real foreign keys on SQLite, statement-level triggers on PostgreSQL)."""
    _seed(engine)
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO exposure (instrument_id, id, physical_filter, batch_id) "
                "VALUES (1, 5, 'r', 1)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO amplifier (instrument_id, detector_id, amp_index, name, bbox_x0, "
                "bbox_y0, bbox_width, bbox_height) VALUES (1, 7, 0, 'C00', 0, 0, 5, 5)"
            )
        )
        conn.execute(text("INSERT INTO amp_stats VALUES (1, 5, 7, 0, 1.0, 0.1, 10, 1)"))
        conn.execute(text("INSERT INTO detector_stats VALUES (1, 5, 7, 1.0, 0.1, 10, 1)"))
    for sql in (
        "INSERT INTO amp_stats VALUES (1, 5, 7, 3, 1.0, 0.1, 10, 1)",  # no amplifier 3
        "INSERT INTO amp_stats VALUES (1, 6, 7, 0, 1.0, 0.1, 10, 1)",  # no exposure 6
        "INSERT INTO detector_stats VALUES (1, 5, 8, 1.0, 0.1, 10, 1)",  # no detector 8
        "UPDATE amp_stats SET exposure_id = 6",
        "DELETE FROM exposure WHERE id = 5",
        "DELETE FROM amplifier WHERE amp_index = 0",
        "UPDATE amplifier SET amp_index = 1",
    ):
        with pytest.raises(ConflictError, match=r"(?i)foreign key"), transaction(engine) as conn:
            conn.execute(text(sql))
    with transaction(engine) as conn:  # a non-key change of a referenced parent is fine
        conn.execute(text("UPDATE amplifier SET gain = 1.5"))
        conn.execute(text("UPDATE exposure SET obs_id = 'x'"))


def test_head_read_from_the_files_is_alembics_head() -> None:
    """Opening a registry finds the head without Alembic; it must be Alembic's own head."""
    from alembic.script import ScriptDirectory

    from calibreg.db.migrate import alembic_config, head_revision

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
