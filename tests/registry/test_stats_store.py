"""The statistics store: exact columnar round trips, the binary COPY encoding, the fetch plan."""

from __future__ import annotations

import re
import struct
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine
from calibreg.domain.quantum import QuantumSpec, Selection
from calibreg.registry.stats_store import _WRITE_COLUMNS, pg_binary_rows, stats_store
from calibreg.services.simulate import simulate_flats
from tests.conftest import LSSTCAM_YAML

# --------------------------------------------------------------------------- binary COPY

_FORMAT = {
    "instrument_id": ">i",
    "exposure_id": ">q",
    "detector_id": ">i",
    "amp_index": ">h",
    "median": ">d",
    "sigma": ">d",
    "n_pixels": ">q",
    "batch_id": ">i",
}


def _decode(blob: bytes, columns: list[str]) -> list[tuple]:
    """An independent, struct-based reader of PostgreSQL binary COPY tuples."""
    out, pos = [], 0
    while pos < len(blob):
        (nfields,) = struct.unpack_from(">h", blob, pos)
        pos += 2
        assert nfields == len(columns)
        row = []
        for c in columns:
            (length,) = struct.unpack_from(">i", blob, pos)
            pos += 4
            if length == -1:
                row.append(None)
                continue
            assert length == struct.calcsize(_FORMAT[c])
            (value,) = struct.unpack_from(_FORMAT[c], blob, pos)
            pos += length
            row.append(value)
        out.append(tuple(row))
    return out


_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**63), 2**63 - 1),
            st.integers(-(2**31), 2**31 - 1),
            st.integers(-(2**15), 2**15 - 1),
            _floats,
            _floats,
            st.integers(0, 2**63 - 1),
        ),
        max_size=40,
    )
)
def test_binary_copy_encodes_every_value_exactly(rows) -> None:
    columns = list(_WRITE_COLUMNS["AMP"])
    arrays = {
        "instrument_id": np.full(len(rows), 7, dtype=np.int64),
        "exposure_id": np.array([r[0] for r in rows], dtype=np.int64),
        "detector_id": np.array([r[1] for r in rows], dtype=np.int64),
        "amp_index": np.array([r[2] for r in rows], dtype=np.int64),
        "median": np.array([r[3] for r in rows], dtype=float),
        "sigma": np.array([r[4] for r in rows], dtype=float),
        "n_pixels": np.array([r[5] for r in rows], dtype=np.int64),
        "batch_id": np.full(len(rows), 3, dtype=np.int64),
    }
    decoded = _decode(b"".join(pg_binary_rows(columns, arrays)), columns)
    expected = [
        (7, e, d, a, None if m != m else m, None if s != s else s, n, 3)
        for e, d, a, m, s, n in rows
    ]

    def bits(row: tuple) -> tuple:  # floats compared bit for bit (-0.0 is not 0.0)
        return tuple(struct.pack(">d", v) if isinstance(v, float) else v for v in row)

    assert sorted(map(bits, decoded), key=repr) == sorted(map(bits, expected), key=repr)


# --------------------------------------------------------------------------- database


@pytest.fixture
def registry_with_exposures(engine, lsstcam_spec):
    reg = Registry(engine=engine)
    reg.ingest_camera(lsstcam_spec, source=str(LSSTCAM_YAML), sha256="c", instrument="LSSTCam")
    sim = simulate_flats(lsstcam_spec, n_exposures=40, seed=3, n_missing_frames=0)
    reg.ingest_exposures(sim.exposures, source="sim", sha256="e")
    return reg, sim


def _instrument(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT id FROM instrument WHERE name = 'LSSTCam'")).scalar_one()


#: Values a store must keep bit for bit (NaN is stored as NULL and read back as NaN; -0.0 is
#: left out: SQLite stores an integral REAL as an integer and reads it back as +0.0).
EDGE_VALUES = [
    np.nan,
    np.inf,
    -np.inf,
    5e-324,
    -5e-324,
    1.7976931348623157e308,
    0.1,
    1 / 3,
    2.0**-1022,
    12345.678901234567,
]


def test_write_then_fetch_is_bit_exact(registry_with_exposures, engine) -> None:
    _reg, sim = registry_with_exposures
    inst = _instrument(engine)
    exposures = sorted(sim.exposures["id"].astype(int).tolist())[:3]
    n = len(EDGE_VALUES)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "instrument_id": inst,
            "exposure_id": np.repeat(exposures, n),
            "detector_id": np.tile(np.arange(n), 3),
            "amp_index": 5,
            "median": np.tile(EDGE_VALUES, 3),
            "sigma": rng.permutation(np.tile(EDGE_VALUES, 3)),
            "n_pixels": np.arange(3 * n) * 2**40,
            "batch_id": 1,
        }
    ).sample(frac=1, random_state=1)  # out of key order on purpose
    with engine.begin() as conn:
        assert stats_store(conn).write(conn, "AMP", frame) == len(frame)
    with engine.connect() as conn:
        got = stats_store(conn).existing(conn, "AMP", inst, exposures)
        stored_order = conn.execute(
            text("SELECT exposure_id, detector_id FROM amp_stats ORDER BY exposure_id, detector_id")
        ).all()
    assert len(stored_order) == len(frame)
    key = ["exposure_id", "detector_id", "amp_index"]
    want = frame.drop(columns=["instrument_id", "batch_id"]).sort_values(key)
    got = got.sort_values(key)
    for col in [*key, "n_pixels"]:
        assert got[col].to_numpy(np.int64).tolist() == want[col].to_numpy(np.int64).tolist()
    for col in ["median", "sigma"]:
        a = got[col].to_numpy(float)
        b = want[col].to_numpy(float)
        assert np.array_equal(np.isnan(a), np.isnan(b))
        ok = ~np.isnan(b)
        assert a[ok].view(np.int64).tolist() == b[ok].view(np.int64).tolist()


def test_fetch_plan_is_a_key_range_on_the_statistics_table(registry_with_exposures, engine):
    """EXPLAIN of the one fetch shape: the primary key's range, no scan, no join probe loop."""
    _reg, sim = registry_with_exposures
    inst = _instrument(engine)
    exposures = sorted(sim.exposures["id"].astype(int).tolist())
    n_rows = len(exposures) * 189 * 16
    frame = _amp_frame(inst, exposures, range(189))
    assert len(frame) == n_rows
    with engine.begin() as conn:
        stats_store(conn).write(conn, "AMP", frame)  # also refreshes the planner statistics
    store_sql = stats_store
    with engine.connect() as conn:
        sql = store_sql(conn).fetch_sql("AMP", inst, exposures[:2])
        if conn.dialect.name == "sqlite":
            plan = [r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()]
            assert plan == [
                "SEARCH amp_stats USING PRIMARY KEY (instrument_id=? AND exposure_id=?)"
            ]
        else:
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}").all())
            assert re.search(r"Index Scan (on|using) pk_amp_stats", plan), plan
            assert "Seq Scan" not in plan and "Nested Loop" not in plan, plan
        got = store_sql(conn).fetch(conn, "AMP", inst, exposures[:2])
        # An ingest's diff of one block: its detectors' range within each exposure's range.
        sql = store_sql(conn).fetch_sql("AMP", inst, exposures, (3, 5))
        if conn.dialect.name == "sqlite":
            plan = [r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()]
            assert plan == [
                "SEARCH amp_stats USING PRIMARY KEY "
                "(instrument_id=? AND exposure_id=? AND detector_id>? AND detector_id<?)"
            ]
        else:
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}").all())
            # A plain or bitmap index scan: the planner picks by its statistics.
            assert re.search(r"Index Scan (on|using) pk_amp_stats", plan), plan
            assert "detector_id >= 3" in plan, plan  # an index condition, not a filter
            assert "Filter" not in plan, plan
            assert "Seq Scan" not in plan and "Nested Loop" not in plan, plan
        pairs = store_sql(conn).fetch(conn, "AMP", inst, exposures, (3, 5))
    assert len(got["exposure_id"]) == 2 * 189 * 16
    assert set(got["exposure_id"].tolist()) == set(exposures[:2])
    assert len(pairs["exposure_id"]) == len(exposures) * 3 * 16
    assert set(pairs["detector_id"].tolist()) == {3, 4, 5}
    assert set(pairs["exposure_id"].tolist()) == set(exposures)


def _amp_frame(inst: int, exposures: list[int], detectors: range) -> pd.DataFrame:
    det = np.asarray(detectors)
    return pd.DataFrame(
        {
            "instrument_id": inst,
            "exposure_id": np.repeat(exposures, len(det) * 16),
            "detector_id": np.tile(np.repeat(det, 16), len(exposures)),
            "amp_index": np.tile(np.arange(16), len(exposures) * len(det)),
            "median": 1.0,
            "sigma": 0.5,
            "n_pixels": 100,
            "batch_id": 1,
        }
    )


def test_planner_statistics_follow_big_writes_not_small_ones(registry_with_exposures, engine):
    """PostgreSQL: a bulk write ANALYZEs the key columns; a write of under a tenth of the
    table's rows leaves the statistics to autovacuum (SQLite: PRAGMA optimize, always)."""
    if engine.dialect.name != "postgresql":
        with engine.begin() as conn:  # the SQLite store's analyze is a cheap pragma
            stats_store(conn).analyze(conn, "AMP", written=1)
        return
    _reg, sim = registry_with_exposures
    inst = _instrument(engine)
    exposures = sorted(sim.exposures["id"].astype(int).tolist())

    def analyzed() -> tuple[int, set[str]]:
        with engine.connect() as conn:
            count = conn.execute(
                text(
                    "SELECT analyze_count FROM pg_stat_user_tables "
                    "WHERE relid = 'amp_stats'::regclass"
                )
            ).scalar_one()
            columns = set(
                conn.execute(
                    text(
                        "SELECT attname FROM pg_stats WHERE tablename = 'amp_stats' "
                        "AND schemaname = current_schema()"
                    )
                ).scalars()
            )
        return count, columns

    with engine.begin() as conn:  # 40 exposures x 100 detectors x 16: into an empty table
        stats_store(conn).write(conn, "AMP", _amp_frame(inst, exposures, range(100)))
    count, columns = wait_for_stats(analyzed, 1)
    assert {"instrument_id", "exposure_id", "detector_id", "amp_index"} <= columns
    with engine.begin() as conn:  # 1 more detector: 1% of the table
        stats_store(conn).write(conn, "AMP", _amp_frame(inst, exposures, range(100, 101)))
    time.sleep(1.5)  # a backend reports its counts within a second of going idle
    assert analyzed()[0] == count
    with engine.begin() as conn:  # 50 more: half the table again
        stats_store(conn).write(conn, "AMP", _amp_frame(inst, exposures, range(101, 151)))
    assert wait_for_stats(analyzed, count + 1)[0] == count + 1


def wait_for_stats(read, at_least: int, timeout: float = 10.0):
    """Read ``(analyze_count, columns)`` until the count reaches ``at_least`` (the cumulative
    statistics system reports a backend's counts at its transaction's end, or a little later)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value[0] >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_in_memory_sqlite_assembles_like_a_file(tmp_path, lsstcam_spec) -> None:
    """In-memory SQLite (no second connection can open it) takes the driver-cursor read."""
    sim = simulate_flats(lsstcam_spec, n_exposures=5, seed=2, n_missing_frames=1)
    path = tmp_path / "stats.csv"
    sim.stats.to_csv(path, index=False)
    from calibreg.formats import read_stats

    results = []
    for url in (f"sqlite:///{tmp_path / 'file.sqlite3'}", "sqlite://"):
        eng = make_engine(url)
        upgrade(eng)
        reg = Registry(engine=eng)
        reg.ingest_camera(lsstcam_spec, source="c", sha256="c", instrument="LSSTCam")
        reg.ingest_exposures(sim.exposures, source="e", sha256="e")
        reg.ingest_stats(read_stats(path), source=str(path), sha256="s", instrument="LSSTCam")
        filt = str(sim.exposures["physical_filter"].iloc[0])
        results.append(reg.assemble(QuantumSpec("LSSTCam", filt, "AMP", Selection())))
        eng.dispose()
    a, b = results
    assert (
        a.background.shape
        == b.background.shape
        == (
            sum(len(d.amplifiers) for d in lsstcam_spec.detectors if d.id in set(a.row_detectors)),
            5,
        )
    )
    np.testing.assert_array_equal(a.background, b.background)
    np.testing.assert_array_equal(a.present, b.present)
    np.testing.assert_array_equal(a.counts, b.counts)
    # Ground truth: every simulated amplifier median sits where the matrix says it does.
    amp = sim.stats[sim.stats["amp"].notna()]
    row = {
        (int(d), name): i
        for i, (d, name) in enumerate(zip(a.row_detectors, a.row_amp_names, strict=True))
    }
    col = {int(e): j for j, e in enumerate(a.exposure_ids)}
    for e, d, name, med in amp[["exposure", "detector", "amp", "median"]].itertuples(index=False):
        got = a.background[row[(int(d), name)], col[int(e)]]
        assert (np.isnan(got) and np.isnan(med)) or got == med


# --------------------------------------------------------------------------- bulk references


def _one_row(inst: int, exposure: int, detector: int, amp_index: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "instrument_id": [inst],
            "exposure_id": [exposure],
            "detector_id": [detector],
            "amp_index": [amp_index],
            "median": [1.0],
            "sigma": [0.1],
            "n_pixels": [10],
            "batch_id": [1],
        }
    )


def _foreign_keys(conn) -> int | None:
    if conn.dialect.name != "sqlite":
        return None
    return conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one()


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"exposure": 1}, "exposure"),  # no such exposure
        ({"detector": 999}, "detector 999"),  # no such detector (so no amplifier)
        ({"amp_index": 16}, "amplifier index 16"),  # LSSTCam detectors have 16 (0..15)
    ],
)
def test_a_bulk_statistics_transaction_refuses_a_missing_reference(
    registry_with_exposures, engine, bad, words
) -> None:
    """Per-row foreign keys are off in a bulk write on SQLite: the set-wise check refuses."""
    from calibreg.errors import ConflictError

    reg, sim = registry_with_exposures
    inst = _instrument(engine)
    exposure = int(sim.exposures["id"].iloc[0])
    good = _one_row(inst, exposure, 94, 3)
    wrong = _one_row(
        inst, bad.get("exposure", exposure), bad.get("detector", 94), bad.get("amp_index", 3)
    )
    with pytest.raises(ConflictError) as err, reg.transaction(bulk_stats=True) as conn:  # noqa: PT012
        assert _foreign_keys(conn) in (0, None)  # off for this transaction (SQLite)
        stats_store(conn).write(conn, "AMP", good)
        stats_store(conn).write(conn, "AMP", wrong)
    if engine.dialect.name == "sqlite":
        assert words in str(err.value)
    with reg.read() as conn:  # nothing written, and foreign keys on again for everyone else
        assert conn.exec_driver_sql("SELECT count(*) FROM amp_stats").scalar_one() == 0
        assert _foreign_keys(conn) in (1, None)
    with reg.transaction(bulk_stats=True) as conn:  # the same rows without the bad one: fine
        assert stats_store(conn).write(conn, "AMP", good) == 1


def test_foreign_keys_stay_on_outside_bulk_statistics_transactions(tmp_path, lsstcam_spec) -> None:
    """Only the bulk transaction itself runs without SQLite's per-row foreign keys."""
    from calibreg.errors import ConflictError

    engine = make_engine(f"sqlite:///{tmp_path / 'fk.sqlite3'}")
    upgrade(engine)
    reg = Registry(engine=engine)
    reg.ingest_camera(lsstcam_spec, source=str(LSSTCAM_YAML), sha256="c", instrument="LSSTCam")
    inst = _instrument(engine)
    with reg.transaction(bulk_stats=True) as conn:
        assert _foreign_keys(conn) == 0
        with reg.transaction(bulk_stats=True) as inner:  # nested: a savepoint, same state
            assert _foreign_keys(inner) == 0
    with reg.transaction() as conn:  # the pooled connection comes back with them on
        assert _foreign_keys(conn) == 1
    with reg.transaction(bulk_stats=True), reg.transaction() as inner:
        assert _foreign_keys(inner) == 0  # a nested ordinary write cannot switch them back
    with reg.read() as conn:
        assert _foreign_keys(conn) == 1
    with pytest.raises(ConflictError), reg.transaction() as conn:  # ordinary: the database's FK
        conn.exec_driver_sql("INSERT INTO amp_stats VALUES (?, 1, 94, 3, 1.0, 0.1, 10, 1)", (inst,))
    engine.dispose()
