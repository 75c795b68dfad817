"""PostgreSQL's own cost of the simulated files' row order: one key-ordered ``COPY`` vs several.

Run as a script (not collected by pytest)::

    python benchmarks/bench_write_order.py [--pg-url URL] [--exposures 200] [--writes 1,2,4,8]
        [--repeat 3]

calibreg reads a statistics file a block at a time and writes each block (or several merged)
sorted by the primary key. A file listed detector by detector (as ``simulate_flats`` writes it,
and as ``bench_ingest.py`` ingests it by default) has every exposure in every block, so every
write after the first goes into the middle of every exposure's key range. This script isolates
what that costs the *server*, with no calibreg client in the way: the rows of
``exposures`` x 3,024 LSSTCam amplifiers, in the file's order, are cut into ``N`` contiguous
parts, each sorted by the key and sent as one binary ``COPY`` into calibreg's ``amp_stats`` (a
fresh schema at head, one transaction), for each ``N`` of ``--writes``, interleaved and
repeated. ``N = 1`` is the ingest floor of ``bench_ingest.py``.

Printed, medians: seconds (the COPYs and the commit), x the one-COPY time, the WAL the
transaction wrote (``pg_stat_wal``; other sessions' WAL counts too) and the size of the primary
key index afterwards. Every part after the first is inserted mid-index: PostgreSQL's B-tree
descends from the root for each such row (only an insert at the right end of the index may skip
that, the rightmost-leaf fast path) and splits full leaves half and half (its "split after the
new item" rule, which would keep them packed, applies only to index tuples of at most two
``int8``s: this key is four columns, 32 bytes).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np
import pandas as pd
from bench_ingest import CAMERA, _pg_schema_url, _registry, amp_stats_columns


def simulated_file(n_exposures: int, work: Path) -> tuple[Path, pd.DataFrame]:
    """Simulate the exposures and amplifier rows; return the exposures CSV and the rows.

    The rows keep the simulated file's order (each detector's amplifiers through every
    exposure).
    """
    from calibreg.formats import read_camera
    from calibreg.services.simulate import simulate_flats

    camera = read_camera(CAMERA, instrument="LSSTCam")
    sim = simulate_flats(camera, n_exposures=n_exposures, seed=1, n_missing_frames=0)
    exposures = work / "exposures.csv"
    sim.exposures.to_csv(exposures, index=False)
    return exposures, sim.stats[sim.stats["amp"].notna()].reset_index(drop=True)


def encode(rows: pd.DataFrame, instrument: int, n_writes: int) -> tuple[str, list[bytes]]:
    """Cut the rows into ``n_writes`` contiguous parts, sort each by the key, encode as COPY.

    Returns the ``COPY`` statement and the parts' binary streams.
    """
    from calibreg.registry.stats_store import _PGCOPY_HEADER, pg_binary_rows

    cols = amp_stats_columns(rows, instrument)
    names = list(cols)
    edges = np.linspace(0, len(rows), n_writes + 1).astype(int)
    out = []
    for lo, hi in itertools.pairwise(edges):
        part = {c: a[lo:hi] for c, a in cols.items()}
        order = np.lexsort([part["amp_index"], part["detector_id"], part["exposure_id"]])
        part = {c: a[order] for c, a in part.items()}
        out.append(_PGCOPY_HEADER + b"".join(pg_binary_rows(names, part)) + b"\xff\xff")
    return f"COPY amp_stats ({', '.join(names)}) FROM STDIN (FORMAT binary)", out


def run(base: str, exposures: Path, rows: pd.DataFrame, n_writes: int) -> dict:
    """One transaction of ``n_writes`` COPYs on a fresh schema; seconds, WAL bytes, index size."""
    url, drop = _pg_schema_url(base)
    try:
        reg, engine = _registry(url, str(exposures))
        with reg.read() as conn:
            instrument = int(conn.exec_driver_sql("SELECT id FROM instrument").scalar_one())
        sql, parts = encode(rows, instrument, n_writes)
        with engine.connect() as sa:
            raw = sa.connection.driver_connection
            with raw.cursor() as cur:
                wal0 = cur.execute("SELECT wal_bytes FROM pg_stat_wal").fetchone()[0]
            raw.commit()
            start = time.perf_counter()
            with raw.cursor() as cur:
                for data in parts:
                    with cur.copy(sql) as copy:
                        copy.write(data)
            raw.commit()
            seconds = time.perf_counter() - start
            with raw.cursor() as cur:
                wal1 = cur.execute("SELECT wal_bytes FROM pg_stat_wal").fetchone()[0]
                index_bytes = cur.execute(
                    "SELECT pg_relation_size(indexrelid) FROM pg_index "
                    "WHERE indrelid = 'amp_stats'::regclass AND indisprimary"
                ).fetchone()[0]
            raw.commit()
        engine.dispose()
        return {"seconds": seconds, "wal": float(wal1 - wal0), "index": float(index_bytes)}
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "CALIBREG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--exposures", type=int, default=200, help="LSSTCam exposures")
    parser.add_argument("--writes", default="1,2,4,8", help="numbers of COPYs to compare")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    writes = [int(x) for x in args.writes.split(",")]
    if 1 not in writes:
        writes.insert(0, 1)  # the yardstick
    with tempfile.TemporaryDirectory() as tmp:
        exposures, rows = simulated_file(args.exposures, Path(tmp))
        n_rows = len(rows)
        results: dict[int, list[dict]] = {n: [] for n in writes}
        for _ in range(args.repeat):
            for n in writes:  # interleaved
                results[n].append(run(args.pg_url, exposures, rows, n))
                print(f"  {n} COPY: {results[n][-1]['seconds']:.2f} s", flush=True)
    med = {
        n: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for n, runs in results.items()
    }
    print(
        f"\n{n_rows:,} amplifier rows in the simulated file's order, cut into N parts, each "
        f"key-sorted and COPYed (one transaction); median of {args.repeat}, interleaved\n"
    )
    print(f"{'N':>3} {'seconds':>8} {'x 1 COPY':>9} {'WAL MB':>7} {'index MB':>9}")
    for n, m in med.items():
        print(
            f"{n:>3} {m['seconds']:8.2f} {m['seconds'] / med[1]['seconds']:9.2f} "
            f"{m['wal'] / 1e6:7.0f} {m['index'] / 1e6:9.0f}"
        )


if __name__ == "__main__":
    main()
