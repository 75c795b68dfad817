"""Web view benchmark: the version page of a full-LSSTCam AMP solve of 2,000 exposures.

Builds (once; ``--db`` keeps it for later runs) an SQLite registry holding the real LSSTCam
geometry, 2,000 flat exposures and their 6,048,000 amplifier statistics (synthetic
``B = G · E · (1 + ε)``, written through the statistics store's bulk write; the ingest path is
measured by ``bench_ingest.py``), solved at AMP level (``exact``) through the Task into one
version (3,024 rows x 2,000 exposures), and a second version of the first 1,000 exposures (for
the compare page).

Then it starts ``calibreg serve`` on loopback and times, interleaved, ``--repeat`` times each
(median, after one warm-up request each), over keep-alive HTTP with ``Accept-Encoding: gzip``
as a browser sends:

* **floor**: ``GET /versions/{id}``, the JSON record of the same version (one read, no
  template);
* ``GET /ui/versions/{id}``: the whole page rendered (record, both scale tables, geometry,
  exposure times, focal-plane layout, template) — goal < 300 ms;
* ``GET /ui/versions/{id}`` with a matching ``If-None-Match`` (304);
* ``GET /ui/compare/{v1}/{v2}`` and ``GET /ui/`` for reference.

Usage::

    python benchmarks/bench_web.py [--repeat 15] [--exposures 2000] [--db /tmp/bench_web.sqlite3]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine
from calibreg.domain.quantum import Selection
from calibreg.formats import read_camera
from calibreg.registry.stats_store import stats_store
from calibreg.services.solve import SolveRequest, solve_quantum

ROOT = Path(__file__).resolve().parents[1]
CAMERA = ROOT / "calibreg" / "data" / "cameras" / "lsstCamSim.yaml"
FIRST_ID = 2026011500000
FILTER = "r_57"


def build(url: str, n_exp: int) -> tuple[int, int]:
    """Fill an empty database; return (full version id, half version id)."""
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    reg = Registry(url)
    camera = read_camera(CAMERA, instrument="LSSTCam")
    reg.ingest_camera(camera, source="bench", sha256="bench", instrument="LSSTCam")
    ids = FIRST_ID + np.arange(n_exp)
    begin = 1768446000000000000 + np.arange(n_exp) * 60_000_000_000
    exposures = pd.DataFrame(
        {
            "instrument": "LSSTCam",
            "id": ids,
            "physical_filter": FILTER,
            "obs_id": [f"MC_C_{i}" for i in ids],
            "observation_type": "flat",
            "observation_reason": "flat",
            "science_program": "BENCH",
            "group": "bench",
            "target_name": "FlatField position",
            "day_obs": 20260114,
            "seq_num": np.arange(n_exp) + 1,
            "exposure_time": 15.0,
            "dark_time": 15.3,
            "timespan_begin": begin,
            "timespan_end": begin + 15_000_000_000,
        }
    )
    reg.ingest_exposures(exposures, source="bench", sha256="bench")
    with reg.read() as conn:
        inst = int(conn.exec_driver_sql("SELECT id FROM instrument").scalar_one())
    amps = [
        (d.id, a.index) for d in camera.detectors if d.purpose == "SCIENCE" for a in d.amplifiers
    ]
    det = np.array([a[0] for a in amps], dtype=np.int64)
    idx = np.array([a[1] for a in amps], dtype=np.int64)
    rng = np.random.default_rng(1)
    g = rng.normal(1.0, 0.05, len(amps))
    e = 12_000 * (1 + 0.04 * np.sin(np.linspace(0, 3, n_exp)))
    chunk = max(1, 1_000_000 // len(amps))
    for start in range(0, n_exp, chunk):
        sl = slice(start, start + chunk)
        k = len(ids[sl])
        median = (g[None, :] * e[sl, None]).ravel() * (
            1 + 1e-4 * rng.standard_normal(k * len(amps))
        )
        frame = pd.DataFrame(
            {
                "instrument_id": inst,
                "exposure_id": np.repeat(ids[sl], len(amps)),
                "detector_id": np.tile(det, k),
                "amp_index": np.tile(idx, k),
                "median": median,
                "sigma": 150.0,
                "n_pixels": 1_000_000,
                "batch_id": 1,
            }
        )
        with reg.transaction() as conn:
            stats_store(conn).write(conn, "AMP", frame)
    full = solve_quantum(reg, SolveRequest("LSSTCam", FILTER, level="AMP"))
    half = solve_quantum(
        reg,
        SolveRequest(
            "LSSTCam",
            FILTER,
            level="AMP",
            selection=Selection(exposures=tuple(int(i) for i in ids[: n_exp // 2])),
        ),
    )
    reg.close()
    return int(full["version_id"]), int(half["version_id"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(url: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "calibreg_cli.main", "serve", "--db", url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("calibreg serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--exposures", type=int, default=2000)
    parser.add_argument("--db", help="SQLite file to build (or reuse if it exists)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "bench_web.sqlite3"
        url = f"sqlite:///{path}"
        if path.exists():
            with Registry(url) as reg:
                found = reg.versions(instrument="LSSTCam", level="AMP")
            full, half = int(found["id"].iloc[0]), int(found["id"].iloc[1])
            print(f"reusing {path}: versions {full} and {half}")
        else:
            t0 = time.perf_counter()
            full, half = build(url, args.exposures)
            print(f"built {path} in {time.perf_counter() - t0:.0f} s: versions {full}, {half}")
        with Registry(url) as reg:
            record = reg.version(full)
        print(
            f"version {full}: {record['n_rows']} rows x {record['n_exposures']} exposures "
            f"({record['level']}, {record['method']})"
        )
        proc, base = serve(url)
        try:
            client = httpx.Client(base_url=base, timeout=60)
            etag = client.get(f"/ui/versions/{full}").headers["etag"]
            cases = {
                "floor: GET /versions/{id} (JSON)": (f"/versions/{full}", {}),
                "GET /ui/versions/{id}": (f"/ui/versions/{full}", {}),
                "GET /ui/versions/{id} (304)": (f"/ui/versions/{full}", {"If-None-Match": etag}),
                "GET /ui/compare/{v1}/{v2}": (f"/ui/compare/{half}/{full}", {}),
                "GET /ui/": ("/ui/", {}),
            }
            times: dict[str, list[float]] = {k: [] for k in cases}
            sizes: dict[str, tuple[int, int]] = {}
            for path_, headers in cases.values():  # warm-up
                client.get(path_, headers=headers)
            for _ in range(args.repeat):
                for name, (path_, headers) in cases.items():
                    t0 = time.perf_counter()
                    resp = client.get(path_, headers=headers)
                    times[name].append(time.perf_counter() - t0)
                    assert resp.status_code in (200, 304), (name, resp.status_code)
                    wire = int(resp.headers.get("content-length", len(resp.content)))
                    sizes[name] = (len(resp.content), wire)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    floor = statistics.median(times["floor: GET /versions/{id} (JSON)"])
    print(f"\nmedian of {args.repeat} interleaved requests (gzip), calibreg serve on loopback\n")
    print(f"{'request':<36} {'median ms':>10} {'x floor':>8} {'body kB':>9} {'wire kB':>8}")
    for name, ts in times.items():
        med = statistics.median(ts)
        body, wire = sizes[name]
        ratio = med / floor
        print(f"{name:<36} {med * 1e3:10.1f} {ratio:8.2f} {body / 1e3:9.1f} {wire / 1e3:8.1f}")
    page = statistics.median(times["GET /ui/versions/{id}"])
    print(f"\nversion page {page * 1000:.0f} ms: {'within' if page < 0.3 else 'OVER'} 300 ms")


if __name__ == "__main__":
    main()
