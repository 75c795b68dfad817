"""Benchmark of ``GET /lookup`` on a real ``calibreg serve`` process over loopback.

Run as a script (not collected by pytest)::

    python benchmarks/bench_lookup.py [--db URL] [--versions 1000] [--requests 2000]
                                      [--clients 4] [--max-seconds 60]

It builds a registry (a temporary SQLite file unless ``--db`` names an empty database, which
is migrated) holding ``--versions`` versions of one quantum, each certified in one tag for its
own day, so the tag has that many non-overlapping validity ranges. It then starts
``calibreg serve`` on 127.0.0.1, and measures lookups at random instants (every one a hit, and
every answer checked against the version certified for that day): sequentially over one
keep-alive httpx client, then from ``--clients`` concurrent clients (threads, each with its own
keep-alive connection). It prints lookups/s and p50/p99 latency, and always stops the server.
Each phase is bounded by ``--requests`` and by ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
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


def build_registry(url: str, n_versions: int) -> list[int]:
    """Ingest a 4-detector camera and 6 flats, persist ``n_versions`` versions and certify
    version ``i`` for day ``i`` (TAI), returning the version ids in day order.

    One solve is persisted many times: a lookup's cost depends on how many certifications the
    tag holds, not on the scales, so repeating one result keeps set-up fast.
    """
    from calibreg.domain.quantum import QuantumSpec
    from calibreg.engine import measure_scales

    engine = make_engine(url)
    upgrade(engine)
    registry = Registry(url, engine=engine)
    if INSTRUMENT in set(registry.instruments()["instrument"]):
        raise SystemExit(f"{masked_url(url)} already holds {INSTRUMENT}: give an empty database")
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
    exposures = pd.DataFrame(
        {
            "instrument": INSTRUMENT,
            "id": np.arange(1, 7),
            "physical_filter": FILTER,
            "obs_id": [f"B_{i}" for i in range(1, 7)],
            "observation_type": "flat",
            "observation_reason": "flat",
            "science_program": None,
            "group": None,
            "target_name": None,
            "day_obs": pd.array([20240101] * 6, dtype="Int64"),
            "seq_num": pd.array(range(1, 7), dtype="Int64"),
            "exposure_time": 15.0,
            "dark_time": 15.0,
            "timespan_begin": pd.array([t0 + 60 * 10**9 * i for i in range(6)], dtype="Int64"),
            "timespan_end": pd.array(
                [t0 + 60 * 10**9 * i + 15 * 10**9 for i in range(6)], dtype="Int64"
            ),
        }
    )
    registry.ingest_exposures(exposures, source="bench", sha256="1" * 64)
    rng = np.random.default_rng(1)
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
    frame = pd.DataFrame(
        stats, columns=["exposure", "detector", "amp", "median", "sigma", "n_pixels", "source_row"]
    )
    frame["detector"] = frame["detector"].astype("Int64")
    frame["detector_name"] = None
    registry.ingest_stats(frame, source="bench", sha256="2" * 64, instrument=INSTRUMENT)

    data = registry.assemble(QuantumSpec(INSTRUMENT, FILTER, "DETECTOR"))
    solution = measure_scales(data.background, data.counts, method="exact")
    ids = []
    for day in range(n_versions):
        version = registry.persist(
            data,
            solution,
            config={"method": "exact"},
            task_metadata={},
            started_at=dt.datetime.now(dt.UTC),
        )
        registry.certify(version.id, TAG, t0 + day * DAY_NS, t0 + (day + 1) * DAY_NS)
        ids.append(version.id)
    engine.dispose()
    return ids


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(url: str, log: Path) -> Iterator[str]:
    """``calibreg serve`` on loopback for the duration of the block; always stopped."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "calibreg_cli.main",
        "serve",
        "--db",
        url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited ({proc.returncode}):\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"server did not start within 30 s:\n{log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def make_queries(n: int, n_versions: int, ids: list[int], seed: int) -> list[tuple[str, int]]:
    """``n`` (ISO UTC time, expected version id) pairs at random instants inside the ranges."""
    rng = random.Random(seed)
    t0 = utc_to_tai_ns(START)
    out = []
    for _ in range(n):
        day = rng.randrange(n_versions)
        # Stay a minute clear of range edges so UTC↔TAI leap-second offsets cannot matter.
        offset_s = rng.uniform(60, 86_400 - 60)
        when = START + dt.timedelta(days=day, seconds=offset_s)
        assert t0 + day * DAY_NS <= utc_to_tai_ns(when) < t0 + (day + 1) * DAY_NS
        out.append((when.isoformat().replace("+00:00", "Z"), ids[day]))
    return out


def run_client(
    base: str,
    queries: list[tuple[str, int]],
    deadline: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    """Issue the queries in order on one keep-alive connection, recording each latency."""
    params = {"instrument": INSTRUMENT, "filter": FILTER, "tag": TAG}
    with httpx.Client(base_url=base, timeout=30) as client:
        for when, expected in queries:
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            resp = client.get("/lookup", params={**params, "time": when})
            latencies.append(time.perf_counter() - start)
            if resp.status_code != 200 or resp.json().get("version_id") != expected:
                errors.append(f"{when}: {resp.status_code} {resp.text[:200]}")


def measure(
    base: str, queries: list[tuple[str, int]], clients: int, max_seconds: float
) -> dict[str, float]:
    """Throughput and latency of ``queries`` split over ``clients`` concurrent clients."""
    shares = [queries[i::clients] for i in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = time.perf_counter()
    deadline = time.monotonic() + max_seconds
    threads = [
        threading.Thread(target=run_client, args=(base, s, deadline, lat, errors))
        for s, lat in zip(shares, latencies, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    merged = sorted(x for lat in latencies for x in lat)
    if errors:
        raise SystemExit(f"{len(errors)} lookups failed, first: {errors[0]}")
    return {
        "n": len(merged),
        "seconds": elapsed,
        "per_s": len(merged) / elapsed,
        "p50_ms": 1e3 * statistics.median(merged),
        "p99_ms": 1e3 * merged[min(len(merged) - 1, int(0.99 * len(merged)))],
    }


def main() -> None:
    """Parse options, build the registry, serve it and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="an empty database URL (default: a temporary SQLite file)")
    parser.add_argument("--versions", type=int, default=1000, help="certified versions")
    parser.add_argument("--requests", type=int, default=2000, help="lookups per phase")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time bound per phase")
    args = parser.parse_args()
    if not 1 <= args.versions <= 100_000 or not 1 <= args.requests <= 1_000_000:
        parser.error("--versions must be 1..100000 and --requests 1..1000000")

    with tempfile.TemporaryDirectory(prefix="calibreg-bench-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        t = time.perf_counter()
        ids = build_registry(url, args.versions)
        print(
            f"registry {masked_url(url)}: {len(ids)} certified versions "
            f"in {time.perf_counter() - t:.1f} s"
        )
        with running_server(url, Path(tmp) / "serve.log") as base:
            warmup = make_queries(50, args.versions, ids, seed=0)
            measure(base, warmup, 1, args.max_seconds)
            rows = [
                (
                    "sequential, 1 client",
                    measure(
                        base,
                        make_queries(args.requests, args.versions, ids, 1),
                        1,
                        args.max_seconds,
                    ),
                ),
                (
                    f"concurrent, {args.clients} clients",
                    measure(
                        base,
                        make_queries(args.requests, args.versions, ids, 2),
                        args.clients,
                        args.max_seconds,
                    ),
                ),
            ]
    print(
        f"\nGET /lookup on calibreg serve (127.0.0.1), {args.versions} certified ranges, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(f"{'mode':<24}{'lookups':>9}{'seconds':>9}{'lookups/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for name, r in rows:
        print(
            f"{name:<24}{r['n']:>9.0f}{r['seconds']:>9.2f}{r['per_s']:>11.0f}"
            f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
        )


if __name__ == "__main__":
    main()
