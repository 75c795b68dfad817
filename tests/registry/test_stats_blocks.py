"""Streaming ingest: files read and written block by block behave as one whole-file ingest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from calibreg.client import Registry
from calibreg.db.models import IngestBatch
from calibreg.errors import ConflictError, InputError
from calibreg.formats import iter_stats, read_stats
from calibreg.services.simulate import simulate_flats
from tests.conftest import LSSTCAM_YAML

#: Small enough that a few-exposure LSSTCam file spans many blocks.
TINY = 50_000


@pytest.fixture(scope="module")
def sim(lsstcam_spec):
    return simulate_flats(lsstcam_spec, n_exposures=6, seed=4, n_missing_frames=2)


@pytest.fixture
def files(tmp_path, sim):
    csv = tmp_path / "stats.csv"
    parquet = tmp_path / "stats.parquet"
    sim.stats.to_csv(csv, index=False)
    sim.stats.to_parquet(parquet, index=False)
    return {"csv": csv, "parquet": parquet}


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(block=st.integers(min_value=1_000, max_value=3_000_000))
def test_blocks_concatenate_to_the_whole_file(files, block) -> None:
    for path in files.values():
        blocks = list(iter_stats(path, block_bytes=block))
        whole = read_stats(path)
        got = pd.concat(blocks, ignore_index=True)
        pd.testing.assert_frame_equal(got, whole, check_exact=True)
        assert got["source_row"].tolist() == list(range(1, len(whole) + 1))


def test_a_bad_value_in_a_late_block_names_its_row_in_the_file(tmp_path, sim) -> None:
    bad = sim.stats.copy()
    row = len(bad) - 17  # 0-based frame position → data row row + 1
    bad["n_pixels"] = bad["n_pixels"].astype(object)
    bad.loc[row, "n_pixels"] = "-3"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        list(iter_stats(path, block_bytes=TINY))
    assert err.value.row == row + 1
    assert err.value.field == "n_pixels"
    with pytest.raises(InputError) as whole:
        read_stats(path)
    assert whole.value.row == row + 1


@pytest.fixture
def registry(engine, lsstcam_spec, sim):
    reg = Registry(engine=engine)
    reg.ingest_camera(lsstcam_spec, source=str(LSSTCAM_YAML), sha256="c", instrument="LSSTCam")
    reg.ingest_exposures(sim.exposures, source="sim", sha256="e")
    return reg


def _stats(engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT exposure_id, detector_id, amp_index, median, sigma, n_pixels, batch_id "
                "FROM amp_stats ORDER BY exposure_id, detector_id, amp_index"
            )
        ).all()
        det = conn.execute(
            text(
                "SELECT exposure_id, detector_id, median, sigma, n_pixels, batch_id "
                "FROM detector_stats ORDER BY exposure_id, detector_id"
            )
        ).all()
    return [tuple(r) for r in rows] + [tuple(r) for r in det]


def _batches(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(IngestBatch).where(IngestBatch.kind == "stats")
        ).scalar_one()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_streamed_ingest_equals_the_whole_file(
    registry, engine, files, sim, fmt, lsstcam_spec
) -> None:
    path = files[fmt]
    done: list[int] = []

    def progress(stage: str, n: int, total: int | None = None, **_kw: object) -> None:
        if stage == "stored":
            done.append(n)

    rep = registry.ingest_stats_files(
        [path], instrument="LSSTCam", block_bytes=TINY, progress=progress
    )
    assert rep.n_rows == rep.n_inserted == len(sim.stats)
    assert len(done) > 3, "the file must span several blocks"
    assert done == sorted(done) and done[-1] == len(sim.stats)
    assert _batches(engine) == 1
    stored = _stats(engine)
    assert len(stored) == len(sim.stats)
    # Ground truth: every simulated value is stored as it was generated (NaN as NULL).
    truth = sim.stats
    amp = truth[truth["amp"].notna()]
    got = {(r[0], r[1], r[2]): r[3] for r in stored if len(r) == 7}
    index = {(d.id, a.name): a.index for d in lsstcam_spec.detectors for a in d.amplifiers}
    for e, d, a, m in amp[["exposure", "detector", "amp", "median"]].itertuples(index=False):
        value = got[(int(e), int(d), index[(int(d), a)])]
        assert (value is None and np.isnan(m)) or value == m
    # Identical again: nothing written, not even a batch.
    again = registry.ingest_stats_files([path], instrument="LSSTCam", block_bytes=TINY)
    assert again.batch_id is None
    assert again.n_unchanged == len(sim.stats)
    assert _stats(engine) == stored
    assert _batches(engine) == 1


def test_a_key_repeated_in_a_later_block_names_both_rows(registry, engine, tmp_path, sim):
    frame = sim.stats.copy()
    dup = frame.iloc[[3]]
    frame = pd.concat([frame, dup], ignore_index=True)  # last row repeats data row 4
    path = tmp_path / "dup.csv"
    frame.to_csv(path, index=False)
    before = _stats(engine)
    with pytest.raises(InputError) as err:
        registry.ingest_stats_files([path], instrument="LSSTCam", block_bytes=TINY)
    assert err.value.row == len(frame)
    assert f"{path} row 4" in str(err.value)
    assert _stats(engine) == before
    assert _batches(engine) == 0


def test_a_key_repeated_in_another_file_names_both(registry, engine, tmp_path, sim) -> None:
    first = tmp_path / "a.csv"
    second = tmp_path / "b.parquet"
    sim.stats.iloc[:1000].to_csv(first, index=False)
    sim.stats.iloc[999:2000].to_parquet(second, index=False)
    with pytest.raises(InputError) as err:
        registry.ingest_stats_files([first, second], instrument="LSSTCam", block_bytes=TINY)
    assert err.value.source == str(second)
    assert err.value.row == 1
    assert f"{first} row 1000" in str(err.value)
    assert _stats(engine) == []


def test_a_failure_in_a_late_block_writes_nothing(registry, engine, tmp_path, sim) -> None:
    bad = sim.stats.copy()
    bad.loc[len(bad) - 5, "exposure"] = 999  # unknown exposure, in the last block
    path = tmp_path / "late.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(InputError, match="unknown exposure 999") as err:
        registry.ingest_stats_files([path], instrument="LSSTCam", block_bytes=TINY)
    assert err.value.row == len(bad) - 4
    assert _stats(engine) == []
    assert _batches(engine) == 0


def test_a_conflict_in_a_late_block_needs_replace(registry, engine, files, tmp_path, sim):
    registry.ingest_stats_files([files["csv"]], instrument="LSSTCam", block_bytes=TINY)
    stored = _stats(engine)
    changed = sim.stats.copy()
    row = int(np.flatnonzero(np.isfinite(changed["median"].to_numpy()))[-1])
    changed.loc[row, "median"] = changed.loc[row, "median"] * 1.5
    path = tmp_path / "changed.parquet"
    changed.to_parquet(path, index=False)
    with pytest.raises(ConflictError, match="--replace"):
        registry.ingest_stats_files([path], instrument="LSSTCam", block_bytes=TINY)
    assert _stats(engine) == stored
    rep = registry.ingest_stats_files([path], instrument="LSSTCam", block_bytes=TINY, replace=True)
    assert (rep.n_inserted, rep.n_replaced, rep.n_unchanged) == (0, 1, len(sim.stats) - 1)
    after = _stats(engine)
    assert sum(a != b for a, b in zip(after, stored, strict=True)) == 1


def test_a_missing_file_is_one_line(registry, tmp_path) -> None:
    with pytest.raises(InputError, match="cannot read file"):
        registry.ingest_stats_files([tmp_path / "nope.csv"], instrument="LSSTCam")


def test_a_directory_is_refused_before_anything_is_read(registry, engine, tmp_path) -> None:
    with pytest.raises(InputError, match="cannot read file") as err:
        registry.ingest_stats_files([tmp_path], instrument="LSSTCam")
    assert str(tmp_path) in str(err.value)
    assert _batches(engine) == 0


def test_the_batch_records_the_files_sha256_hashed_while_they_are_ingested(
    registry, engine, sim, tmp_path
) -> None:
    """The hash runs in the background now; the batch still gets exactly ``sha256sum``'s
    (of several files: the sha256 of their hex digests in order)."""
    import hashlib

    first = sim.stats["exposure"].isin(sim.stats["exposure"].unique()[:3])
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    sim.stats[first].to_csv(paths[0], index=False)
    sim.stats[~first].to_csv(paths[1], index=False)
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]

    def recorded(batch: int) -> str:
        with engine.connect() as conn:
            return conn.execute(
                select(IngestBatch.sha256).where(IngestBatch.id == batch)
            ).scalar_one()

    rep = registry.ingest_stats_files(paths[:1], instrument="LSSTCam", block_bytes=TINY)
    assert recorded(rep.batch_id) == digests[0]
    with engine.begin() as conn:  # so that the two files together write again
        conn.execute(text("DELETE FROM amp_stats"))
        conn.execute(text("DELETE FROM detector_stats"))
    rep = registry.ingest_stats_files(paths, instrument="LSSTCam", block_bytes=TINY)
    assert rep.n_inserted == len(sim.stats)
    assert recorded(rep.batch_id) == hashlib.sha256("".join(digests).encode()).hexdigest()


def test_a_hash_that_fails_in_the_background_rolls_the_ingest_back(
    registry, engine, files, monkeypatch
) -> None:
    """The file is hashed while its rows are written: a read error there (the file gone or
    unreadable mid-ingest) is the same one-line refusal, and nothing stays written."""
    import errno

    import calibreg.domain.hashing as hashing

    def failing(paths):
        raise OSError(errno.EIO, "Input/output error", str(next(iter(paths))))

    monkeypatch.setattr(hashing, "sha256_files", failing)
    with pytest.raises(InputError, match="cannot read file: Input/output error") as err:
        registry.ingest_stats_files([files["csv"]], instrument="LSSTCam", block_bytes=TINY)
    assert str(files["csv"]) in str(err.value)
    assert _stats(engine) == []
    assert _batches(engine) == 0


def test_a_re_ingest_of_a_detector_ordered_file_reads_each_stored_row_about_once(
    registry, engine, tmp_path, sim, monkeypatch
) -> None:
    """Each block's diff reads the stored rows of its (exposure, detector) pairs, not all the
    rows of its exposures: a file ordered by detector has every exposure in every block, and
    reading those exposures whole made an identical re-ingest grow as blocks x table."""
    import calibreg.registry.stats_store as store_module

    by_detector = sim.stats.sort_values(["detector", "exposure"], kind="stable")
    path = tmp_path / "by_detector.csv"
    by_detector.to_csv(path, index=False)
    first = registry.ingest_stats_files([path], instrument="LSSTCam", block_bytes=TINY)
    assert first.n_inserted == len(sim.stats)

    read: list[int] = []
    blocks: list[int] = []
    for cls in (store_module.SQLiteStatsStore, store_module.PostgreSQLStatsStore):
        original = cls._read_columns

        def counting(self, conn, sql, columns, _original=original):
            out = _original(self, conn, sql, columns)
            read.append(len(out[columns[0]]))
            return out

        monkeypatch.setattr(cls, "_read_columns", counting)

    def progress(stage: str, n: int, total: int | None = None, **_kw: object) -> None:
        if stage == "stored":
            blocks.append(n)

    again = registry.ingest_stats_files(
        [path], instrument="LSSTCam", block_bytes=TINY, progress=progress
    )
    assert again.n_unchanged == len(sim.stats) and again.batch_id is None
    assert len(blocks) > 5, "the file must span many blocks"
    # A block holds whole detectors but for the two at its edges: each stored row is read
    # at most twice, never once per block.
    assert sum(read) <= 2 * len(sim.stats), (sum(read), len(sim.stats), len(blocks))


def _spy_writes(monkeypatch, fail_at: int | None = None) -> list[str]:
    """Record the thread of every statistics write (and fail the ``fail_at``-th, from 1)."""
    import threading

    import calibreg.registry.stats_store as store_module

    threads: list[str] = []
    for cls in (store_module.SQLiteStatsStore, store_module.PostgreSQLStatsStore):
        original = cls._write_chunk

        def spy(self, conn, table, columns, arrays, _original=original):
            threads.append(threading.current_thread().name)
            if fail_at is not None and len(threads) == fail_at:
                raise ConflictError(f"refused by the database: write {fail_at} (a test)")
            return _original(self, conn, table, columns, arrays)

        monkeypatch.setattr(cls, "_write_chunk", spy)
    return threads


def test_postgresql_writes_a_block_while_the_next_is_prepared(
    registry, engine, files, sim, monkeypatch
) -> None:
    """On PostgreSQL the COPY of a block runs in a writer thread; the result is the same."""
    threads = _spy_writes(monkeypatch)
    rep = registry.ingest_stats_files([files["csv"]], instrument="LSSTCam", block_bytes=TINY)
    assert rep.n_inserted == len(sim.stats)
    assert len(threads) > 3
    background = engine.dialect.name == "postgresql"
    assert all(t.startswith("calibreg-write") == background for t in threads), threads
    again = registry.ingest_stats_files([files["csv"]], instrument="LSSTCam", block_bytes=TINY)
    assert again.n_unchanged == len(sim.stats) and again.batch_id is None


def test_a_write_failing_in_a_late_block_writes_nothing(
    registry, engine, files, sim, monkeypatch
) -> None:
    """A write that fails (in the writer thread on PostgreSQL) fails the ingest, whole."""
    threads = _spy_writes(monkeypatch, fail_at=3)
    with pytest.raises(ConflictError, match="write 3"):
        registry.ingest_stats_files([files["csv"]], instrument="LSSTCam", block_bytes=TINY)
    assert len(threads) == 3  # nothing written after the failure
    assert _stats(engine) == []
    assert _batches(engine) == 0
    monkeypatch.undo()  # the connection is fine afterwards: the same ingest succeeds
    rep = registry.ingest_stats_files([files["csv"]], instrument="LSSTCam", block_bytes=TINY)
    assert rep.n_inserted == len(sim.stats)


def test_stats_ingested_with_their_exposures_in_one_outer_transaction(
    engine, lsstcam_spec, sim, files
) -> None:
    """Inside an outer transaction the exposures it wrote are seen (no background reader)."""
    reg = Registry(engine=engine)
    reg.ingest_camera(lsstcam_spec, source=str(LSSTCAM_YAML), sha256="c", instrument="LSSTCam")
    with reg.transaction():
        reg.ingest_exposures(sim.exposures, source="sim", sha256="e")
        rep = reg.ingest_stats_files([files["csv"]], instrument="LSSTCam", block_bytes=TINY)
    assert rep.n_inserted == len(sim.stats)
    assert len(_stats(engine)) == len(sim.stats)


def test_blocks_waiting_for_a_slow_writer_are_written_together(
    registry, engine, files, sim, monkeypatch
) -> None:
    """Blocks prepared while the writer is busy go out as one merged, key-ordered write.

    The merged write stores exactly the rows of the blocks it merges (ground truth: the
    simulated file), progress still reaches every row in order, and a re-ingest is unchanged.
    """
    import time

    import calibreg.registry.ingest as ingest_module

    applied: list[int] = []
    original = ingest_module._apply_plans

    def slow(conn, plans, batch, **kw):
        applied.append(sum(len(p.new) for p in plans))
        time.sleep(0.3)  # a slow server: the next blocks are ready before this one is written
        return original(conn, plans, batch, **kw)

    monkeypatch.setattr(ingest_module, "_apply_plans", slow)
    done: list[int] = []

    def progress(stage: str, n: int, total: int | None = None, **_kw: object) -> None:
        if stage == "stored":
            done.append(n)

    rep = registry.ingest_stats_files(
        [files["csv"]], instrument="LSSTCam", block_bytes=TINY, progress=progress
    )
    n_blocks = len(list(iter_stats(files["csv"], block_bytes=TINY)))
    assert rep.n_inserted == len(sim.stats) == sum(applied)
    assert done == sorted(done) and done[-1] == len(sim.stats)
    if engine.dialect.name == "postgresql":  # the writer runs in the background there
        assert len(applied) < n_blocks, (applied, n_blocks)
    stored = _stats(engine)
    assert len(stored) == len(sim.stats)
    assert len({r[:3] for r in stored}) == len(stored)
    monkeypatch.undo()
    again = registry.ingest_stats_files([files["csv"]], instrument="LSSTCam", block_bytes=TINY)
    assert again.n_unchanged == len(sim.stats) and again.batch_id is None


def test_the_first_blocks_are_smaller_so_writing_starts_sooner(files, sim) -> None:
    """Block sizes ramp up (1/8, 1/4, 1/2, then ``block_bytes``) and still cover the file."""
    size = files["csv"].stat().st_size
    block = 1 << 19  # 512 KiB: the file is larger than the ramp
    assert size > 2 * block
    rows = [len(b) for b in iter_stats(files["csv"], block_bytes=block)]
    assert sum(rows) == len(sim.stats)
    assert rows[0] < rows[1] < rows[2] < rows[3], rows
    assert rows[0] * 6 < rows[3] <= rows[0] * 10, rows  # an eighth of a full block, about


def test_a_parquet_row_group_is_not_read_whole_before_its_first_block(tmp_path) -> None:
    """Arrow memory while streaming one large row group stays well under the group's size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 1_500_000
    rng = np.random.default_rng(3)
    names = np.array([f"C{i:02d}" for i in range(16)])
    table = pa.table(
        {
            "exposure": np.full(n, 2026011500100, dtype=np.int64),
            "detector": np.arange(n, dtype=np.int64) // 16,
            "amp": pa.array(names[np.arange(n) % 16]),
            "median": rng.normal(1e4, 100, n),  # random: the chunks do not compress
            "sigma": rng.normal(100, 1, n),
            "n_pixels": rng.integers(1, 10**6, n),
        }
    )
    path = tmp_path / "one_group.parquet"
    pq.write_table(table, path, row_group_size=n)
    size = path.stat().st_size
    base = pa.total_allocated_bytes()
    peak = 0
    rows = 0
    for block in iter_stats(path, block_bytes=1 << 18):  # 4,096-row blocks
        peak = max(peak, pa.total_allocated_bytes() - base)
        rows += len(block)
        del block
    assert rows == n
    # Read whole (pyarrow's default), the group's chunks (~1.7x size bytes) are held from the
    # first block on; streamed, a page buffer per column.
    assert peak < 0.4 * size, (peak, size)
