"""Ingest benchmark: LSSTCam amplifier statistics from CSV and Parquet, 604,800 and 6,048,000 rows.

For each backend, size and file format, two contenders run **interleaved** (floor, calibreg,
floor, calibreg, ...), each in a fresh process on a fresh registry holding the same camera and
exposure records, so that neither inherits the other's caches and each reports its own peak
memory:

* ``floor``: the plain driver writing the same rows, already parsed and **sorted by the primary
  key**, into calibreg's own ``amp_stats`` table (its keys, checks and references) under the
  **same connection settings** as calibreg (SQLite: WAL, ``synchronous=NORMAL``, 128 MiB page
  cache, foreign keys on: calibreg's engine sets them; PostgreSQL: the same server and schema):
  ``sqlite3`` ``executemany`` of tuples / psycopg ``COPY ... FROM STDIN`` (binary, the
  fastest plain COPY). Only the write is timed.
* ``calibreg``: what ``calibreg ingest stats FILE`` does, timed whole: read and validate the
  file, resolve detectors/amplifiers/exposures, diff against existing rows, key-ordered bulk
  write, batch record, one transaction.

A third contender, ``again``, times an identical re-ingest (calibreg only: it must write
nothing and say so). Printed: medians, the ratio calibreg / floor, and the peak RSS of the
calibreg process (goal: 604,800 rows ≤ 1.5 s, 6,048,000 ≤ 15 s, peak RSS of 6 M ≤ 2x that of
600 k).

Usage::

    python benchmarks/bench_ingest.py [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--exposures 200,2000] [--formats csv,parquet] [--repeat 3] [--order detector|exposure]
        [--backends sqlite,postgresql]

The simulated files list each detector's amplifiers through every exposure (``--order
detector``, the default and the harder case: every block of the file spans every exposure, so
each block's rows go into the middle of every exposure's range of the primary key); ``--order
exposure`` writes them in key order instead.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The goal (issue 12) was set and measured against the floor of schema revision 0007, whose
#: reference checks (statement triggers) cost more than 0008's: on PostgreSQL that floor is
#: also measured, as the yardstick the goal translates to on another machine.
OLD_REVISION = "0007"
OLD_FLOOR = "floor 0007"
#: 604,800 rows: the goal, 1.5 s, over the floors it was measured against on 2026-12-04 (SQLite
#: 0.89 s, PostgreSQL 0.96 s at revision 0007): the goal on a machine of another speed.
GOAL_RATIO = {"SQLite": 1.5 / 0.89, "PostgreSQL": 1.5 / 0.96}
#: 6,048,000 rows: 15 s over that day's floors (SQLite 11.20 s, PostgreSQL 11.03 s at 0007).
GOAL_RATIO_6M = {"SQLite": 15 / 11.20, "PostgreSQL": 15 / 11.03}
CAMERA = ROOT / "calibreg" / "data" / "cameras" / "lsstCamSim.yaml"


# --------------------------------------------------------------------------- child processes


def _registry(url: str, exposures_path: str, revision: str = "head"):
    from calibreg.client import Registry
    from calibreg.db.migrate import upgrade
    from calibreg.db.session import make_engine
    from calibreg.formats import read_camera, read_exposures

    engine = make_engine(url)
    upgrade(engine, revision)
    reg = Registry(engine=engine, check_schema=revision == "head")
    reg.ingest_camera(
        read_camera(CAMERA, instrument="LSSTCam"), source="c", sha256="c", instrument="LSSTCam"
    )
    reg.ingest_exposures(read_exposures(exposures_path), source="e", sha256="e")
    return reg, engine


def child_calibreg(url: str, exposures_path: str, stats_path: str, again: bool) -> dict:
    reg, engine = _registry(url, exposures_path)
    if again:
        reg.ingest_stats_files([stats_path])
    t0 = time.perf_counter()
    report = reg.ingest_stats_files([stats_path])  # what `calibreg ingest stats FILE` calls
    dt = time.perf_counter() - t0
    if again:
        assert report.n_inserted == 0, report
        assert report.batch_id is None, report
    else:
        assert report.n_inserted == report.n_rows, report
    engine.dispose()
    return {"seconds": dt, "rows": report.n_rows}


def amp_stats_columns(frame, instrument: int) -> dict:
    """The ``amp_stats`` columns of amplifier rows (a ``read_stats`` frame), in the file's order.

    Amplifier names become the LSSTCam camera's indices; ``batch_id`` is 1. What the floors
    write (here and in ``bench_write_order.py``).
    """
    import numpy as np

    from calibreg.formats.camera import read_camera

    camera = read_camera(CAMERA, instrument="LSSTCam")
    index = {(d.id, a.name): a.index for d in camera.detectors for a in d.amplifiers}
    amp = np.array(
        [index[(int(d), a)] for d, a in zip(frame["detector"], frame["amp"], strict=True)]
    )
    return {
        "instrument_id": np.full(len(frame), instrument),
        "exposure_id": frame["exposure"].to_numpy(np.int64),
        "detector_id": frame["detector"].to_numpy(np.int64),
        "amp_index": amp,
        "median": frame["median"].to_numpy(float),
        "sigma": frame["sigma"].to_numpy(float),
        "n_pixels": frame["n_pixels"].to_numpy(np.int64),
        "batch_id": np.full(len(frame), 1),
    }


def child_floor(url: str, exposures_path: str, stats_path: str, revision: str = "head") -> dict:
    import numpy as np

    from calibreg.formats import read_stats

    reg, engine = _registry(url, exposures_path, revision)
    frame = read_stats(stats_path)
    with reg.read() as conn:
        inst = int(conn.exec_driver_sql("SELECT id FROM instrument").scalar_one())
    cols = amp_stats_columns(frame, inst)
    order = np.lexsort([cols["amp_index"], cols["detector_id"], cols["exposure_id"]])
    cols = {k: v[order] for k, v in cols.items()}
    names = list(cols)
    with engine.connect() as sa:
        raw = sa.connection.driver_connection
        if engine.dialect.name == "sqlite":
            py = [
                [None if x != x else x for x in v.tolist()] if v.dtype.kind == "f" else v.tolist()
                for v in cols.values()
            ]
            rows = list(zip(*py, strict=True))
            sql = f"INSERT INTO amp_stats ({', '.join(names)}) VALUES ({', '.join('?' * 8)})"
            t0 = time.perf_counter()
            raw.execute("BEGIN")
            raw.executemany(sql, rows)
            raw.execute("COMMIT")
        else:
            from calibreg.registry.stats_store import _PGCOPY_HEADER, pg_binary_rows

            data = _PGCOPY_HEADER + b"".join(pg_binary_rows(names, cols)) + b"\xff\xff"
            sql = f"COPY amp_stats ({', '.join(names)}) FROM STDIN (FORMAT binary)"
            t0 = time.perf_counter()
            with raw.cursor() as cur, cur.copy(sql) as cp:
                cp.write(data)
            raw.commit()
        dt = time.perf_counter() - t0
    engine.dispose()
    return {"seconds": dt, "rows": len(frame)}


def peak_rss_mb() -> float:
    """This process image's peak resident set (``VmHWM``), in MiB.

    Not ``getrusage``'s ``ru_maxrss``: Linux carries it across ``execve`` from the forking
    parent, so a child of a parent that held the 6M-row simulation reported the parent's 1.8 GB.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _child_main(argv: list[str]) -> None:
    kind, url, exposures_path, stats_path = argv
    if kind == "floor":
        out = child_floor(url, exposures_path, stats_path)
    elif kind == OLD_FLOOR:
        out = child_floor(url, exposures_path, stats_path, OLD_REVISION)
    else:
        out = child_calibreg(url, exposures_path, stats_path, again=kind == "again")
    out["max_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


# --------------------------------------------------------------------------- parent


def _pg_schema_url(base: str) -> tuple[str, callable]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    parsed = make_url(base)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

    url = parsed.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), drop


def _run(kind: str, backend: str, work: Path, exposures: Path, stats: Path) -> dict:
    if backend == "SQLite":
        url, drop = f"sqlite:///{work / f'{uuid.uuid4().hex}.sqlite3'}", (lambda: None)
    else:
        url, drop = _pg_schema_url(backend)
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, url, str(exposures), str(stats)],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        drop()
        if backend == "SQLite":
            for p in work.glob("*.sqlite3*"):
                p.unlink()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", help="PostgreSQL URL (omit to benchmark SQLite only)")
    parser.add_argument("--exposures", default="200,2000", help="sizes, in LSSTCam exposures")
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--order",
        choices=("detector", "exposure"),
        default="detector",
        help="row order of the files: as simulated (each detector and amplifier through every "
        "exposure: every block of the file spans every exposure) or by exposure (the key order)",
    )
    parser.add_argument(
        "--backends",
        default="sqlite,postgresql",
        help="which to run, of sqlite,postgresql (PostgreSQL also needs --postgres)",
    )
    args = parser.parse_args()
    wanted = {b.strip().lower() for b in args.backends.split(",")}

    from calibreg.formats import read_camera
    from calibreg.services.simulate import simulate_flats

    camera = read_camera(CAMERA, instrument="LSSTCam")
    backends = (["SQLite"] if "sqlite" in wanted else []) + (
        [args.postgres] if args.postgres and "postgresql" in wanted else []
    )
    results = []
    pooled: dict[tuple, list[float]] = {}  # (backend, rows, floor kind): every run's seconds
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n_exp in (int(x) for x in args.exposures.split(",")):
            sim = simulate_flats(camera, n_exposures=n_exp, seed=1, n_missing_frames=0)
            exposures = work / f"exposures{n_exp}.csv"
            sim.exposures.to_csv(exposures, index=False)
            amp = sim.stats[sim.stats["amp"].notna()].reset_index(drop=True)
            if args.order == "exposure":
                amp = amp.sort_values(["exposure", "detector", "amp"], kind="stable")
            inputs = {}
            for fmt in args.formats.split(","):
                inputs[fmt] = work / f"amp{n_exp}.{fmt}"
                if fmt == "csv":
                    amp.to_csv(inputs[fmt], index=False)
                else:
                    amp.to_parquet(inputs[fmt], index=False)
            del sim, amp
            for backend in backends:
                label = "SQLite" if backend == "SQLite" else "PostgreSQL"
                for fmt, path in inputs.items():
                    runs: dict[str, list[dict]] = {"floor": [], "calibreg": [], "again": []}
                    if label == "PostgreSQL":
                        runs = {OLD_FLOOR: [], **runs}
                    for _ in range(args.repeat):
                        for kind in runs:  # interleaved
                            runs[kind].append(_run(kind, backend, work, exposures, path))
                    n_rows = runs["calibreg"][0]["rows"]
                    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
                    rss = max(r["max_rss_mb"] for r in runs["calibreg"])
                    results.append((label, n_rows, fmt, med, rss))
                    for kind in (OLD_FLOOR, "floor"):  # the floors' work is the same per format
                        pooled.setdefault((label, n_rows, kind), []).extend(
                            r["seconds"] for r in runs.get(kind, [])
                        )
                    print(f"{label} {n_rows:,} {fmt}: {med}", flush=True)

    print(
        f"\ningest of LSSTCam amplifier statistics (files in {args.order} order), median of "
        f"{args.repeat} interleaved runs\n"
    )
    print(
        f"{'backend':<11} {'rows':>10} {'file':>8} {'floor s':>8} {'calibreg s':>11} "
        f"{'ratio':>6} {'rows/s':>11} {'again s':>8} {'peak MB':>8} {'0007 s':>7} {'x 0007':>7}"
    )
    for label, n_rows, fmt, med, rss in results:
        old = med.get(OLD_FLOOR)
        extra = f" {old:7.2f} {med['calibreg'] / old:7.2f}" if old else ""
        print(
            f"{label:<11} {n_rows:>10,} {fmt:>8} {med['floor']:8.2f} {med['calibreg']:11.2f} "
            f"{med['calibreg'] / med['floor']:6.2f} {n_rows / med['calibreg']:11,.0f} "
            f"{med['again']:8.2f} {rss:8.0f}{extra}"
        )
    print(
        "\ngoal at 604,800 rows: 1.5 s where the floors took SQLite 0.89 s and PostgreSQL 0.96 s "
        f"(revision {OLD_REVISION}), so on another machine calibreg <= "
        f"{GOAL_RATIO['SQLite']:.2f}x the SQLite floor ('ratio') and "
        f"{GOAL_RATIO['PostgreSQL']:.2f}x the PostgreSQL floor of {OLD_REVISION} ('x 0007')"
    )
    print(
        "goal at 6,048,000 rows: 15 s where the floors took SQLite 11.20 s and PostgreSQL "
        f"11.03 s, so calibreg <= {GOAL_RATIO_6M['SQLite']:.2f}x and "
        f"{GOAL_RATIO_6M['PostgreSQL']:.2f}x ('x 0007')"
    )
    by = {(r[0], r[2]): [] for r in results}
    for label, n_rows, fmt, _med, rss in results:
        by[(label, fmt)].append((n_rows, rss))
    for (label, fmt), sizes in by.items():
        if len(sizes) > 1:
            (n0, r0), (n1, r1) = min(sizes), max(sizes)
            print(f"peak RSS {label} {fmt}: {n1:,} rows / {n0:,} rows = {r1 / r0:.2f}x")
    if len(args.formats.split(",")) > 1:
        # A floor writes the same parsed rows whatever the file's format: its runs next to
        # every format are samples of one time, a steadier yardstick than each format's own
        # (on this shared machine the same floor ran 12% apart between two formats' runs).
        print("\nagainst the floors pooled over the formats (median of all their runs):")
        for label, n_rows, fmt, med, _rss in results:
            floor = statistics.median(pooled[(label, n_rows, "floor")])
            line = f"{label:<11} {n_rows:>10,} {fmt:>8} x floor {med['calibreg'] / floor:5.2f}"
            old_runs = pooled.get((label, n_rows, OLD_FLOOR))
            if old_runs:
                line += f"  x 0007 {med['calibreg'] / statistics.median(old_runs):5.2f}"
            print(line)
    print(
        "\nfloor = the plain driver writing the parsed rows, key-sorted, into calibreg's own "
        "amp_stats under calibreg's connection settings (write only); 0007 = the same into "
        f"revision {OLD_REVISION}'s schema;\ncalibreg = read + "
        "validate + resolve + diff + key-ordered bulk write + batch, one transaction; again = "
        "an identical re-ingest (writes nothing)."
    )


if __name__ == "__main__":
    main()
