"""Ingest benchmark: 600,000 amplifier statistics (200 LSSTCam exposures) from CSV.

Prints rows/s for calibreg's ingest on SQLite and PostgreSQL beside the plain-driver floor
measured in the same run on the same rows:

* SQLite floor: ``sqlite3`` ``executemany`` of the rows into a keyed table;
* PostgreSQL floor: a plain psycopg ``COPY`` of the rows into a keyed table.

calibreg's time covers everything ``calibreg ingest stats FILE`` does: reading and validating
the CSV, resolving detectors/amplifiers/exposures, checking for existing rows, the bulk write
and the batch record, in one transaction.

Usage::

    python benchmarks/bench_ingest.py [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import io
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine
from calibreg.formats import read_camera, read_stats
from calibreg.services.simulate import simulate_flats

ROOT = Path(__file__).resolve().parents[1]
CAMERA = ROOT / "calibreg" / "data" / "cameras" / "lsstCamSim.yaml"
KEYED = (
    "CREATE TABLE {name} (instrument_id INTEGER NOT NULL, exposure_id BIGINT NOT NULL, "
    "detector_id INTEGER NOT NULL, amp_index SMALLINT NOT NULL, median DOUBLE PRECISION, "
    "sigma DOUBLE PRECISION, n_pixels BIGINT NOT NULL, batch_id INTEGER NOT NULL, "
    "PRIMARY KEY (instrument_id, exposure_id, detector_id, amp_index)){suffix}"
)


def plain_sqlite(rows: list[tuple], workdir: Path) -> float:
    path = workdir / f"floor-{uuid.uuid4().hex}.sqlite3"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(KEYED.format(name="floor", suffix=" WITHOUT ROWID"))
    t0 = time.perf_counter()
    con.execute("BEGIN")
    con.executemany("INSERT INTO floor VALUES (?,?,?,?,?,?,?,?)", rows)
    con.execute("COMMIT")
    dt = time.perf_counter() - t0
    con.close()
    return dt


def plain_copy(rows: list[tuple], url: str) -> float:
    import psycopg

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as con:
        name = f"floor_{uuid.uuid4().hex[:8]}"
        con.execute(KEYED.format(name=name, suffix=""))
        con.commit()
        buf = io.StringIO()
        for r in rows:
            buf.write(",".join("" if v is None else repr(v) for v in r) + "\n")
        data = buf.getvalue().encode()
        t0 = time.perf_counter()
        with con.cursor() as cur, cur.copy(f"COPY {name} FROM STDIN (FORMAT csv, NULL '')") as cp:
            cp.write(data)
        con.commit()
        dt = time.perf_counter() - t0
        con.execute(f"DROP TABLE {name}")
        con.commit()
    return dt


def plain_copy_registry(rows: list[tuple], base: str, camera, sim) -> float:
    """Plain psycopg COPY of the same rows into calibreg's own amp_stats table (its keys and
    foreign keys), i.e. what the database itself must do, without anything calibreg adds."""
    import psycopg

    url, drop = _pg_schema_url(base)
    try:
        engine = make_engine(url)
        upgrade(engine)
        Registry(engine=engine).ingest_camera(
            camera, source="floor", sha256="floor", instrument="LSSTCam"
        )
        rep = Registry(engine=engine).ingest_exposures(
            sim.exposures, source="floor", sha256="floor"
        )
        engine.dispose()
        buf = io.StringIO()
        for r in rows:
            buf.write(",".join("" if v is None else repr(v) for v in r[:-1]) + f",{rep.batch_id}\n")
        data = buf.getvalue().encode()
        from sqlalchemy.engine import make_url

        conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(conninfo) as con:
            t0 = time.perf_counter()
            with (
                con.cursor() as cur,
                cur.copy("COPY amp_stats FROM STDIN (FORMAT csv, NULL '')") as cp,
            ):
                cp.write(data)
            con.commit()
            return time.perf_counter() - t0
    finally:
        drop()


def calibreg_ingest(url: str, camera, sim, csv_path: Path) -> float:
    engine = make_engine(url)
    upgrade(engine)
    Registry(engine=engine).ingest_camera(
        camera, source=str(CAMERA), sha256="bench", instrument="LSSTCam"
    )
    Registry(engine=engine).ingest_exposures(sim.exposures, source="bench", sha256="bench")
    t0 = time.perf_counter()
    frame = read_stats(csv_path)
    report = Registry(engine=engine).ingest_stats(
        frame, source=str(csv_path), sha256="bench", instrument="LSSTCam"
    )
    dt = time.perf_counter() - t0
    assert report.n_inserted == len(frame), report
    engine.dispose()
    return dt


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", help="PostgreSQL URL (omit to benchmark SQLite only)")
    parser.add_argument("--exposures", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    camera = read_camera(CAMERA, instrument="LSSTCam")
    sim = simulate_flats(camera, n_exposures=args.exposures, seed=1, n_missing_frames=0)
    amp = sim.stats[sim.stats["amp"].notna()].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        csv_path = work / "amp_stats.csv"
        amp.to_csv(csv_path, index=False)
        index = {(d.id, a.name): a.index for d in camera.detectors for a in d.amplifiers}
        rows = [
            (
                1,
                int(e),
                int(d),
                index[(int(d), a)],
                None if m != m else float(m),
                float(s),
                int(n),
                1,
            )
            for e, d, a, m, s, n in zip(
                amp["exposure"],
                amp["detector"],
                amp["amp"],
                amp["median"],
                amp["sigma"],
                amp["n_pixels"],
                strict=True,
            )
        ]
        n = len(rows)
        results = []
        floor = [plain_sqlite(rows, work) for _ in range(args.repeat)]
        ours = [
            calibreg_ingest(f"sqlite:///{work / f'r{i}.sqlite3'}", camera, sim, csv_path)
            for i in range(args.repeat)
        ]
        results.append(("SQLite", statistics.median(floor), statistics.median(ours)))
        if args.postgres:
            floor = [plain_copy(rows, args.postgres) for _ in range(args.repeat)]
            floor_reg = [
                plain_copy_registry(rows, args.postgres, camera, sim) for _ in range(args.repeat)
            ]
            ours = []
            for _ in range(args.repeat):
                url, drop = _pg_schema_url(args.postgres)
                try:
                    ours.append(calibreg_ingest(url, camera, sim, csv_path))
                finally:
                    drop()
            results.append(("PostgreSQL", statistics.median(floor), statistics.median(ours)))
            results.append(("PostgreSQL*", statistics.median(floor_reg), statistics.median(ours)))

    print(
        f"\ningest of {n:,} amplifier statistics rows ({args.exposures} exposures x "
        f"{n // args.exposures} amplifiers), median of {args.repeat} runs\n"
    )
    print(
        f"{'backend':<11} {'floor s':>8} {'floor rows/s':>13} {'calibreg s':>11} "
        f"{'calibreg rows/s':>16} {'ratio':>6}"
    )
    for name, fl, us in results:
        print(f"{name:<11} {fl:8.2f} {n / fl:13,.0f} {us:11.2f} {n / us:16,.0f} {us / fl:6.2f}")
    print(
        "\nfloor: SQLite = sqlite3 executemany into a keyed table (primary key only); "
        "PostgreSQL = plain psycopg COPY into a keyed table (primary key only);\n"
        "PostgreSQL* = plain psycopg COPY into calibreg's amp_stats (primary key, checks and "
        "its reference checks on exposure and amplifier).\n"
        "calibreg = read + validate CSV, resolve references, diff against existing rows, "
        "bulk write, batch record (one transaction)."
    )


if __name__ == "__main__":
    main()
