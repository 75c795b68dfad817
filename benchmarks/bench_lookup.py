"""Benchmark of lookups: ``GET /lookup`` under ``wrk`` and the bulk lookup of 10,000 exposures.

Run as a script (not collected by pytest)::

    python benchmarks/bench_lookup.py [--backends sqlite,postgresql] [--pg-url URL]
        [--versions 300] [--exposures 10000] [--workers 2] [--seconds 5] [--repeats 2]
        [--concurrency 1,16,64]

For each backend it builds a registry (a temporary SQLite file; on PostgreSQL a fresh schema of
``--pg-url``, default ``$CALIBREG_TEST_POSTGRES_URL``, dropped afterwards) holding
``--versions`` versions certified in one tag, one day each, and ``--exposures`` exposures spread
over those days. Then:

1. **Bulk lookup** of all the exposures: ``Registry.lookup_many`` against its floor, the same
   SQL statement executed on a raw DBAPI cursor (no SQLAlchemy, no pandas), interleaved and
   repeated; every answer is checked (exposure of day *d* → the version certified for day *d*).
   Also ``POST /lookup/batch`` with the same ids over HTTP.
2. **/lookup under wrk** (a compiled load generator on the same 2 cores) against
   ``calibreg serve --workers N``, at each concurrency, for four contenders interleaved and
   repeated: the **floor** (a bare ASGI app answering a constant JSON body, served by the same
   uvicorn setup: N workers, SO_REUSEPORT sockets, httptools, uvloop), ``/lookup?exposure=`` over
   a pool of exposures (**hot**: warmed until every worker has cached every answer, as when a
   farm's jobs ask for the same exposures), ``/lookup?time=`` at random instants (**cold**:
   nearly every request misses the answer cache and is answered from the validity index,
   :mod:`calibreg.registry.validity`) and the same with ``as_of`` far ahead (**cold, SQL**: the
   same answers, but the validity index does not take ``as_of``, so every request runs the
   lookup query on the database).

It prints requests/s and p99 latency of each, with the ratio to the floor measured in the same
run. Every server is stopped at the end; each wrk run is bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import httpx
import numpy as np
import pandas as pd

from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine, masked_url
from calibreg.formats import AmplifierSpec, CameraSpec, DetectorSpec
from calibreg.formats.timescale import utc_to_tai_ns

INSTRUMENT = "BenchCam"
FILTER = "r"
TAG = "bench/lookup"
DAY_NS = 86_400 * 10**9
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
FIRST_EXPOSURE = 1_000_000


# --------------------------------------------------------------------------- the registry


def build_registry(url: str, n_versions: int, n_exposures: int) -> tuple[list[int], np.ndarray]:
    """Certify ``n_versions`` versions one day each; ingest ``n_exposures`` exposures over them.

    Returns the version ids in day order and each exposure's day. One solve is persisted many
    times: a lookup's cost depends on the certifications, not on the scales.
    """
    from calibreg.domain.quantum import QuantumSpec, Selection
    from calibreg.engine import measure_scales

    engine = make_engine(url)
    upgrade(engine)
    registry = Registry(url, engine=engine)
    camera = CameraSpec(
        name=INSTRUMENT,
        detectors=[
            DetectorSpec(
                id=d,
                name=f"R00_S{d:02d}",
                serial=None,
                physical_type="ITL",
                purpose="SCIENCE",
                bbox_x0=0,
                bbox_y0=0,
                bbox_x1=99,
                bbox_y1=99,
                amplifiers=[AmplifierSpec("C00", 0, 0, 0, 100, 100)],
            )
            for d in range(4)
        ],
        source_format="calibreg",
    )
    registry.ingest_camera(camera, source="bench", sha256="0" * 64)
    t0 = utc_to_tai_ns(START)
    rng = np.random.default_rng(1)
    days = np.sort(rng.integers(0, n_versions, n_exposures))
    # Flats for the solve (6, on day 0) first, then the lookup exposures, all well inside a day.
    offsets = rng.uniform(600, 86_400 - 600, n_exposures)
    ids = np.arange(FIRST_EXPOSURE, FIRST_EXPOSURE + n_exposures)
    begin = [t0 + int(d) * DAY_NS + int(o * 1e9) for d, o in zip(days, offsets, strict=True)]
    frame = pd.DataFrame(
        {
            "instrument": INSTRUMENT,
            "id": np.concatenate([np.arange(1, 7), ids]),
            "physical_filter": FILTER,
            "obs_id": [f"B_{i}" for i in range(1, 7)] + [f"B_{i}" for i in ids],
            "observation_type": "flat",
            "observation_reason": "flat",
            "science_program": None,
            "group": None,
            "target_name": None,
            "day_obs": pd.array(
                [20240101] * 6
                + [int((START + dt.timedelta(days=int(d))).strftime("%Y%m%d")) for d in days],
                dtype="Int64",
            ),
            "seq_num": pd.array(range(1, 7 + n_exposures), dtype="Int64"),
            "exposure_time": 15.0,
            "dark_time": 15.0,
            "timespan_begin": pd.array(
                [t0 + 60 * 10**9 * i for i in range(6)] + begin, dtype="Int64"
            ),
            "timespan_end": pd.array(
                [t0 + 60 * 10**9 * i + 15 * 10**9 for i in range(6)]
                + [b + 15 * 10**9 for b in begin],
                dtype="Int64",
            ),
        }
    )
    registry.ingest_exposures(frame, source="bench", sha256="1" * 64)
    stats = [
        (
            e,
            d,
            None,
            (1 + 0.1 * d) * (1000 + 50 * e) * (1 + 1e-4 * rng.standard_normal()),
            5.0,
            10_000,
            e * 4 + d,
        )
        for e in range(1, 7)
        for d in range(4)
    ]
    sframe = pd.DataFrame(
        stats, columns=["exposure", "detector", "amp", "median", "sigma", "n_pixels", "source_row"]
    )
    sframe["detector"] = sframe["detector"].astype("Int64")
    sframe["detector_name"] = None
    registry.ingest_stats(sframe, source="bench", sha256="2" * 64, instrument=INSTRUMENT)
    data = registry.assemble(
        QuantumSpec(INSTRUMENT, FILTER, "DETECTOR", Selection(exposures=tuple(range(1, 7))))
    )
    solution = measure_scales(data.background, data.counts, method="exact")
    versions = []
    for day in range(n_versions):
        version = registry.persist(
            data,
            solution,
            config={"method": "exact"},
            task_metadata={},
            started_at=dt.datetime.now(dt.UTC),
        )
        registry.certify(version.id, TAG, t0 + day * DAY_NS, t0 + (day + 1) * DAY_NS)
        versions.append(version.id)
    engine.dispose()
    return versions, days


@contextlib.contextmanager
def database(backend: str, pg_url: str | None, tmp: Path) -> Iterator[str]:
    """A fresh database URL of ``backend`` (a PostgreSQL schema is dropped afterwards)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'bench.sqlite3'}"
        return
    if not pg_url:
        raise SystemExit("PostgreSQL: give --pg-url or set CALIBREG_TEST_POSTGRES_URL")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public"))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema},public"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# --------------------------------------------------------------------------- bulk lookup


def plain_bulk(url: str, ids: list[int], tag_id: int, inst: int) -> list[tuple]:
    """The floor: the bulk statement on a raw DBAPI cursor, rows fetched as tuples."""
    from calibreg.registry.lookups import bind_ids, bulk_statement

    engine = make_engine(url)
    dialect = engine.dialect.name
    sql = str(bulk_statement(dialect, by="ids").text)
    params = {"tag": tag_id, "inst": inst, "ids": bind_ids(dialect, ids)}
    if dialect == "postgresql":
        sql = re.sub(r"(?<!:):(\w+)", r"%(\1)s", sql)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if dialect == "postgresql":
            cur.execute("SET LOCAL jit = off")  # as calibreg does: JIT costs more than the plan
        cur.execute(sql, params)
        rows = cur.fetchall()
        cur.close()
        raw.rollback()
    finally:
        raw.close()
        engine.dispose()
    return rows


def bench_bulk(url: str, versions: list[int], days: np.ndarray, repeats: int) -> dict:
    """Time lookup_many vs the plain statement (interleaved), and POST /lookup/batch."""
    from sqlalchemy import text

    ids = list(range(FIRST_EXPOSURE, FIRST_EXPOSURE + len(days)))
    with Registry(url) as reg:
        with reg.engine.connect() as conn:
            tag_id = conn.execute(text("SELECT id FROM tag WHERE name = :n"), {"n": TAG}).scalar()
            inst = conn.execute(
                text("SELECT id FROM instrument WHERE name = :n"), {"n": INSTRUMENT}
            ).scalar()
        frame = reg.lookup_many(INSTRUMENT, TAG, ids)  # warm-up, and the check
        expected = [versions[int(d)] for d in days]
        assert list(frame["status"].unique()) == ["ok"], frame["status"].value_counts()
        assert [int(v) for v in frame["version_id"]] == expected
        times = {"calibreg": [], "plain SQL": []}
        for _ in range(repeats):
            t = time.perf_counter()
            rows = plain_bulk(url, ids, tag_id, inst)
            times["plain SQL"].append(time.perf_counter() - t)
            assert len(rows) >= len(ids)
            t = time.perf_counter()
            reg.lookup_many(INSTRUMENT, TAG, ids)
            times["calibreg"].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listeners(port: int) -> int:
    """Sockets listening on ``port`` (one per worker)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            count += 1
    return count


FLOOR_BODY = (
    b'{"instrument":"BenchCam","physical_filter":"r","tag":"bench/lookup","version_id":1,'
    b'"seq":1,"level":"DETECTOR","method":"exact","content_hash":"' + b"0" * 64 + b'"}'
)


async def floor_app(scope: dict, receive: object, send: object) -> None:
    """The floor: a bare ASGI app answering a constant JSON body (no framework, no database)."""
    if scope["type"] != "http":
        return
    await send(  # type: ignore[operator]
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(FLOOR_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": FLOOR_BODY})  # type: ignore[operator]


def floor_worker(port: int) -> None:
    """One worker of the floor server, set up as ``calibreg serve`` sets up its workers."""
    import uvicorn

    from calibreg.http.server import _uvicorn_options, listening_socket

    sock = listening_socket("127.0.0.1", port, reuse_port=True)
    config = uvicorn.Config(floor_app, backlog=2048, **_uvicorn_options())
    uvicorn.Server(config).run(sockets=[sock])


@contextlib.contextmanager
def running(cmd: list[str], port: int, workers: int, log: Path) -> Iterator[str]:
    """A server process on loopback until the block ends (always stopped)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while listeners(port) < workers:
            if proc.poll() is not None:
                raise SystemExit(f"server exited ({proc.returncode}):\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"server did not start within 60 s:\n{log.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def floor_cmd(port: int, workers: int) -> list[str]:
    """Start ``workers`` floor workers (one Python process supervising them)."""
    code = (
        "import multiprocessing as mp, sys, signal;"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r});"
        "import bench_lookup as b;"
        "ctx = mp.get_context('spawn');"
        f"ps = [ctx.Process(target=b.floor_worker, args=({port},)) for _ in range({workers})];"
        "[p.start() for p in ps];"
        "signal.signal(signal.SIGTERM, lambda *a: [p.terminate() for p in ps]);"
        "[p.join() for p in ps]"
    )
    return [sys.executable, "-c", code]


# --------------------------------------------------------------------------- wrk


LUA_POOL = """
local paths = {%s}
local n = #paths
math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6))
request = function()
  return wrk.format("GET", paths[math.random(n)])
end
"""

LUA_TIMES = """
local base = %d
local span = %d
math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6))
request = function()
  local t = base + math.random(0, span - 1) + 600
  return wrk.format("GET", "/lookup?instrument=%s&filter=%s&tag=%s%s&time=" ..
                    os.date("!%%Y-%%m-%%dT%%H:%%M:%%SZ", t))
end
"""
#: ``as_of`` of the SQL contender: far ahead, so the answer is the current one, but asked of
#: the database (the validity index answers only lookups without ``as_of``).
AS_OF_FUTURE = "&as_of=2100-01-01T00:00:00Z"


def wrk(base: str, script: Path, connections: int, seconds: float) -> dict:
    """Run wrk once; return requests/s, p99 ms and the non-2xx count."""
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rate, "p99": float(p99.group(1)) * scale, "bad": int(bad.group(1)) if bad else 0}


def bench_http(
    url: str, days: np.ndarray, n_versions: int, args: argparse.Namespace, tmp: Path
) -> dict:
    """wrk against the floor and calibreg serve, contenders interleaved, repeated."""
    rng = np.random.default_rng(2)
    pool = rng.choice(np.arange(FIRST_EXPOSURE, FIRST_EXPOSURE + len(days)), 2000, replace=False)
    hot = tmp / "hot.lua"
    hot.write_text(
        LUA_POOL
        % ",".join(
            f'"/lookup?instrument={INSTRUMENT}&tag={TAG.replace("/", "%2F")}&exposure={e}"'
            for e in pool
        )
    )
    start_unix = int(START.timestamp())
    cold, sql = tmp / "cold.lua", tmp / "sql.lua"
    for path, extra in ((cold, ""), (sql, AS_OF_FUTURE)):
        path.write_text(
            LUA_TIMES
            % (
                start_unix,
                n_versions * 86_400 - 1200,
                INSTRUMENT,
                FILTER,
                TAG.replace("/", "%2F"),
                extra,
            )
        )
    floor = tmp / "floor.lua"
    floor.write_text('request = function() return wrk.format("GET", "/lookup") end\n')
    port_floor, port_reg = free_port(), free_port()
    serve = [
        sys.executable,
        "-m",
        "calibreg_cli.main",
        "serve",
        "--db",
        url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port_reg),
        "--workers",
        str(args.workers),
        "--no-access-log",  # a line per request is not what is measured here
    ]
    results: dict = {}
    with (
        running(
            floor_cmd(port_floor, args.workers), port_floor, args.workers, tmp / "floor.log"
        ) as floor_base,
        running(serve, port_reg, args.workers, tmp / "serve.log") as reg_base,
    ):
        # Correctness first: a hot and a cold request answer 200.
        with httpx.Client(base_url=reg_base) as client:
            e = int(pool[0])
            resp = client.get(
                "/lookup", params={"instrument": INSTRUMENT, "tag": TAG, "exposure": e}
            )
            assert resp.status_code == 200, resp.text
        contenders = [
            ("floor (bare ASGI)", floor_base, floor),
            ("/lookup hot", reg_base, hot),
            ("/lookup cold", reg_base, cold),
            ("/lookup cold, SQL", reg_base, sql),
        ]
        for _name, base, script in contenders[1:]:  # warm the pools and the validity index
            wrk(base, script, 16, 2)
        # Warm the answer caches of the hot pool: each worker must have seen each path (the
        # kernel picks the worker per connection), so go on until the rate stops rising.
        previous = 0.0
        for _ in range(10):
            rate = wrk(reg_base, hot, 16, 2)["rps"]
            if rate < previous * 1.1:
                break
            previous = rate
        for c in args.concurrency:
            for _ in range(args.repeats):
                for name, base, script in contenders:
                    results.setdefault((c, name), []).append(wrk(base, script, c, args.seconds))
        # The batch over HTTP: 10,000 ids in one POST (cold: after a certification elsewhere).
        ids = list(range(FIRST_EXPOSURE, FIRST_EXPOSURE + len(days)))
        body = {"instrument": INSTRUMENT, "tag": TAG, "exposures": ids}
        with httpx.Client(base_url=reg_base, timeout=60) as client:
            times = []
            for _ in range(args.repeats + 1):
                t = time.perf_counter()
                resp = client.post("/lookup/batch", json=body)
                times.append(time.perf_counter() - t)
                assert resp.status_code == 200, resp.text[:200]
                assert resp.json()["counts"] == {"ok": len(ids)}
            results["batch"] = {"first": times[0], "cached": statistics.median(times[1:])}
    return results


# --------------------------------------------------------------------------- main


def main() -> None:
    """Parse options, run every measurement and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("CALIBREG_TEST_POSTGRES_URL"))
    parser.add_argument("--versions", type=int, default=300)
    parser.add_argument("--exposures", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--skip-http", action="store_true", help="only the bulk lookup")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if not (
        1 <= args.versions <= 5000
        and 1 <= args.exposures <= 100_000
        and 1 <= args.seconds <= 60
        and 1 <= args.repeats <= 10
        and all(1 <= c <= 256 for c in args.concurrency)
    ):
        parser.error(
            "out of range: versions 1..5000, exposures 1..100000, seconds 1..60, "
            "repeats 1..10, concurrency 1..256"
        )
    if not args.skip_http and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk), or pass --skip-http")
    print(
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {args.versions} certified "
        f"ranges, {args.exposures} exposures, {args.workers} workers, wrk on the same cores"
    )
    for backend in args.backends.split(","):
        with (
            tempfile.TemporaryDirectory(prefix="calibreg-bench-") as tmp_name,
            database(backend, args.pg_url, Path(tmp_name)) as url,
        ):
            tmp = Path(tmp_name)
            t = time.perf_counter()
            versions, days = build_registry(url, args.versions, args.exposures)
            print(
                f"\n== {backend} ({masked_url(url).split('?')[0]}): built in "
                f"{time.perf_counter() - t:.1f} s"
            )
            bulk = bench_bulk(url, versions, days, max(3, args.repeats))
            print(
                f"bulk lookup of {args.exposures:,} exposures: calibreg "
                f"{bulk['calibreg'] * 1e3:.0f} ms, plain SQL {bulk['plain SQL'] * 1e3:.0f} ms "
                f"(x{bulk['calibreg'] / bulk['plain SQL']:.2f}; goal <= 300 ms)"
            )
            if args.skip_http:
                continue
            res = bench_http(url, days, args.versions, args, tmp)
            batch = res.pop("batch")
            print(
                f"POST /lookup/batch of {args.exposures:,} ids: first {batch['first'] * 1e3:.0f} "
                f"ms, cached {batch['cached'] * 1e3:.0f} ms"
            )
            print(
                f"{'c':>3} {'contender':<20}{'req/s':>9}{'p99 ms':>9}{'x floor':>9}{'non-2xx':>9}"
            )
            for c in args.concurrency:
                floor_rps = statistics.median(r["rps"] for r in res[(c, "floor (bare ASGI)")])
                for name in (
                    "floor (bare ASGI)",
                    "/lookup hot",
                    "/lookup cold",
                    "/lookup cold, SQL",
                ):
                    runs = res[(c, name)]
                    rps = statistics.median(r["rps"] for r in runs)
                    p99 = statistics.median(r["p99"] for r in runs)
                    bad = sum(r["bad"] for r in runs)
                    print(f"{c:>3} {name:<20}{rps:>9.0f}{p99:>9.1f}{rps / floor_rps:>9.2f}{bad:>9}")


if __name__ == "__main__":
    main()
