"""Assembly benchmark: a 200-exposure AMP quantum (604,800 rows) from registries of growing size.

For each backend and each size of the ``amp_stats`` table (default 604,800 and 10,000,512
rows, i.e. 200 and 3,308 LSSTCam exposures; the quantum's 200 exposures are spread evenly
among the others, as a filter's flats are among a survey's), three contenders run
interleaved, ``--repeat`` times each, on the same database:

* ``calibreg``: ``Registry.assemble(spec)`` - exposure selection, the statistics fetch through
  the statistics store, placement into the four matrices;
* ``columnar floor``: the same fetch statement through the ADBC driver alone, into NumPy
  columns (no selection, no placement): what the columnar driver costs by itself;
* ``plain driver``: the same statement through ``sqlite3`` / ``psycopg`` ``fetchall`` and
  ``numpy.array`` (the previous implementation's path).

It prints medians and the ratio calibreg / columnar floor (goal: ≤ 0.5 s and ≤ 1.3x at 10 M
rows on both backends). The tables are filled with synthetic values through the store's own
bulk write (the ingest path is measured by ``bench_ingest.py``).

Usage::

    python benchmarks/bench_assembly.py [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--sizes 604800,10000512] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine
from calibreg.domain.quantum import QuantumSpec, Selection
from calibreg.formats import read_camera
from calibreg.registry.stats_store import stats_store

ROOT = Path(__file__).resolve().parents[1]
CAMERA = ROOT / "calibreg" / "data" / "cameras" / "lsstCamSim.yaml"
QUANTUM_EXPOSURES = 200
FIRST_ID = 2026011500000


def _exposures(n: int) -> pd.DataFrame:
    """``n`` flat exposures; every ``n // 200``-th is in r_57 (the quantum), the rest in g_6."""
    ids = FIRST_ID + np.arange(n)
    step = max(n // QUANTUM_EXPOSURES, 1)
    in_quantum = (np.arange(n) % step == 0) & (np.arange(n) // step < QUANTUM_EXPOSURES)
    begin = 1768446000000000000 + np.arange(n) * 60_000_000_000
    return pd.DataFrame(
        {
            "instrument": "LSSTCam",
            "id": ids,
            "physical_filter": np.where(in_quantum, "r_57", "g_6"),
            "obs_id": [f"MC_C_{i}" for i in ids],
            "observation_type": "flat",
            "observation_reason": "flat",
            "science_program": "BENCH",
            "group": "bench",
            "target_name": "FlatField position",
            "day_obs": 20260114,
            "seq_num": np.arange(n) + 1,
            "exposure_time": 15.0,
            "dark_time": 15.3,
            "timespan_begin": begin,
            "timespan_end": begin + 15_000_000_000,
        }
    )


def build(url: str, camera, n_rows: int) -> tuple[Registry, QuantumSpec, str, int]:
    engine = make_engine(url)
    upgrade(engine)
    reg = Registry(engine=engine)
    reg.ingest_camera(camera, source="bench", sha256="bench", instrument="LSSTCam")
    amps = [
        (d.id, a.index) for d in camera.detectors if d.purpose == "SCIENCE" for a in d.amplifiers
    ]
    per_exp = len(amps)
    n_exp = -(-n_rows // per_exp)
    exposures = _exposures(n_exp)
    reg.ingest_exposures(exposures, source="bench", sha256="bench")
    with reg.read() as conn:
        inst = int(conn.exec_driver_sql("SELECT id FROM instrument").scalar_one())
    det = np.array([a[0] for a in amps], dtype=np.int64)
    idx = np.array([a[1] for a in amps], dtype=np.int64)
    rng = np.random.default_rng(1)
    chunk = max(1, 1_000_000 // per_exp)
    for start in range(0, n_exp, chunk):
        ids = exposures["id"].to_numpy()[start : start + chunk]
        k = len(ids)
        frame = pd.DataFrame(
            {
                "instrument_id": inst,
                "exposure_id": np.repeat(ids, per_exp),
                "detector_id": np.tile(det, k),
                "amp_index": np.tile(idx, k),
                "median": rng.normal(20000, 100, k * per_exp),
                "sigma": rng.normal(150, 1, k * per_exp),
                "n_pixels": 1_000_000,
                "batch_id": 1,
            }
        )
        with reg.transaction() as conn:
            stats_store(conn).write(conn, "AMP", frame)
    spec = QuantumSpec("LSSTCam", "r_57", "AMP", Selection())
    quantum_ids = exposures.loc[exposures["physical_filter"] == "r_57", "id"].tolist()
    with reg.read() as conn:
        sql = stats_store(conn).fetch_sql("AMP", inst, quantum_ids)
    return reg, spec, sql, n_exp * per_exp


def columnar_floor(url: str, sql: str) -> float:
    t0 = time.perf_counter()
    if url.startswith("sqlite"):
        import adbc_driver_sqlite.dbapi as adbc

        conn = adbc.connect(url.removeprefix("sqlite:///"))
    else:
        import adbc_driver_postgresql.dbapi as adbc
        from sqlalchemy.engine import make_url

        conn = adbc.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    with conn, conn.cursor() as cur:
        cur.execute(sql)
        table = cur.fetch_arrow_table()
        _ = [table.column(i).to_numpy() for i in range(table.num_columns)]
    return time.perf_counter() - t0


def plain_driver(url: str, sql: str) -> float:
    t0 = time.perf_counter()
    if url.startswith("sqlite"):
        import sqlite3

        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        rows = con.execute(sql).fetchall()
        con.close()
    else:
        import psycopg
        from sqlalchemy.engine import make_url

        with psycopg.connect(
            make_url(url).set(drivername="postgresql").render_as_string(False)
        ) as c:
            rows = c.execute(sql).fetchall()
    np.array(rows, dtype=float)
    return time.perf_counter() - t0


def calibreg_assemble(reg: Registry, spec: QuantumSpec) -> float:
    t0 = time.perf_counter()
    q = reg.assemble(spec)
    dt = time.perf_counter() - t0
    assert q.background.shape[1] == QUANTUM_EXPOSURES, q.background.shape
    assert int(q.present.sum()) == QUANTUM_EXPOSURES * q.background.shape[0]
    return dt


def _pg_url(base: str) -> tuple[str, callable]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", help="PostgreSQL URL (omit to benchmark SQLite only)")
    parser.add_argument("--sizes", default="604800,10000512")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    camera = read_camera(CAMERA, instrument="LSSTCam")
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        backends = [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
        for name, base in backends:
            for size in sizes:
                if base is None:
                    url, drop = f"sqlite:///{Path(tmp) / f'a{size}.sqlite3'}", (lambda: None)
                else:
                    url, drop = _pg_url(base)
                try:
                    t0 = time.perf_counter()
                    reg, spec, sql, n_rows = build(url, camera, size)
                    print(f"{name}: built {n_rows:,} rows in {time.perf_counter() - t0:.0f} s")
                    times: dict[str, list[float]] = {"calibreg": [], "columnar": [], "plain": []}
                    calibreg_assemble(reg, spec)  # warm the cache alike for every contender
                    for _ in range(args.repeat):
                        times["calibreg"].append(calibreg_assemble(reg, spec))
                        times["columnar"].append(columnar_floor(url, sql))
                        times["plain"].append(plain_driver(url, sql))
                    reg.close()
                    med = {k: statistics.median(v) for k, v in times.items()}
                    results.append((name, n_rows, med))
                finally:
                    drop()
    print(
        f"\nassembly of a {QUANTUM_EXPOSURES}-exposure AMP quantum ({QUANTUM_EXPOSURES * 3024:,} "
        f"rows), median of {args.repeat} interleaved runs\n"
    )
    print(
        f"{'backend':<11} {'rows in table':>14} {'columnar s':>11} {'plain s':>8} "
        f"{'calibreg s':>11} {'calibreg/columnar':>18}"
    )
    for name, n_rows, med in results:
        print(
            f"{name:<11} {n_rows:>14,} {med['columnar']:11.3f} {med['plain']:8.3f} "
            f"{med['calibreg']:11.3f} {med['calibreg'] / med['columnar']:18.2f}"
        )
    print(
        "\ncolumnar = the fetch statement through ADBC alone into NumPy; plain = the same "
        "statement through sqlite3/psycopg fetchall + numpy.array;\ncalibreg = "
        "Registry.assemble: exposure selection + columnar fetch + placement into the matrices."
    )


if __name__ == "__main__":
    main()
