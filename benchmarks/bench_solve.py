"""End-to-end benchmark: ingest + AMP-level solve of 200 LSSTCam exposures on SQLite.

Prints, in one run:

* the end-to-end time: ingest of the exposures and 600k amplifier statistics from CSV, then
  an AMP-level ``exact`` solve through the Task, persisted as a version;
* quantum assembly (600,000 rows → matrices, ``calibreg.registry.quantum.assemble``) beside
  its baseline: a plain ``SELECT`` of the same rows through the sqlite3 driver fetched into
  NumPy arrays (no placement into a matrix);
* the solve alone and the persist alone (from the Task's metadata timers).

Usage::

    python benchmarks/bench_solve.py [--exposures 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine
from calibreg.formats import read_camera, read_exposures
from calibreg.registry.quantum import QuantumSpec, assemble
from calibreg.services.simulate import simulate_flats
from calibreg.task import FlatNormalizationTask

ROOT = Path(__file__).resolve().parents[1]
CAMERA = ROOT / "calibreg" / "data" / "cameras" / "lsstCamSim.yaml"


def plain_select(path: Path) -> float:
    con = sqlite3.connect(path)
    t0 = time.perf_counter()
    rows = con.execute(
        "SELECT exposure_id, detector_id, amp_index, median, sigma, n_pixels FROM amp_stats"
    ).fetchall()
    table = np.array(rows, dtype=float)  # the fastest plain conversion (None → NaN)
    dt = time.perf_counter() - t0
    assert table.shape == (len(rows), 6)
    con.close()
    return dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exposures", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    camera = read_camera(CAMERA, instrument="LSSTCam")
    sim = simulate_flats(camera, n_exposures=args.exposures, seed=5, n_missing_frames=3)
    amp_only = sim.stats[sim.stats["amp"].notna()]
    end_to_end, ingest_t, solve_t, persist_t, assemble_t, select_t = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        exp_csv, stats_csv = tmp / "exposures.csv", tmp / "amp_stats.csv"
        sim.exposures.to_csv(exp_csv, index=False)
        amp_only.to_csv(stats_csv, index=False)
        for i in range(args.repeat):
            db = tmp / f"run{i}.sqlite3"
            url = f"sqlite:///{db}"
            engine = make_engine(url)
            upgrade(engine)
            Registry(engine=engine).ingest_camera(
                camera, source=str(CAMERA), sha256="c", instrument="LSSTCam"
            )
            t0 = time.perf_counter()
            Registry(engine=engine).ingest_exposures(
                read_exposures(exp_csv), source=str(exp_csv), sha256="e"
            )
            # What `calibreg ingest stats FILE` does: the streamed, block-by-block ingest.
            Registry(engine=engine).ingest_stats_files([stats_csv], instrument="LSSTCam")
            t1 = time.perf_counter()
            task = FlatNormalizationTask()
            task.config.level = "AMP"
            with Registry(url, engine=engine) as reg:
                result = task.runQuantum(reg, QuantumSpec("LSSTCam", sim.physical_filter, "AMP"))
            t2 = time.perf_counter()
            assert result.solution.converged
            end_to_end.append(t2 - t0)
            ingest_t.append(t1 - t0)
            md = task.getFullMetadata()
            solve_t.append(_duration(md, "flatNorm:solve"))
            persist_t.append(t2 - t1 - _duration(md, "flatNorm:assemble") - solve_t[-1])
            engine.dispose()
            engine = make_engine(url)
            spec = QuantumSpec("LSSTCam", sim.physical_filter, "AMP")
            # Interleave baseline and assembly, warm caches first, so neither is favoured.
            plain_select(db)
            for _ in range(2):
                select_t.append(plain_select(db))
                with engine.connect() as conn:
                    t3 = time.perf_counter()
                    data = assemble(conn, spec)
                    assemble_t.append(time.perf_counter() - t3)
            engine.dispose()
    n_rows = int(data.present.sum())
    med = statistics.median
    print(
        f"\nLSSTCam AMP level: {args.exposures} exposures x 3024 amplifiers = {n_rows:,} "
        f"statistics rows; SQLite; median of {args.repeat} runs\n"
    )
    print(f"{'step':<44} {'seconds':>8} {'ratio':>7}")
    print(f"{'ingest exposures + statistics (CSV)':<44} {med(ingest_t):8.2f}")
    print(f"{'solve (exact, through the Task)':<44} {med(solve_t):8.2f}")
    print(f"{'persist version (+ task overhead)':<44} {med(persist_t):8.2f}")
    print(f"{'END TO END: ingest + AMP solve + persist':<44} {med(end_to_end):8.2f}")
    print(f"{'baseline: plain SELECT fetched into NumPy':<44} {med(select_t):8.2f} {1.0:7.2f}")
    print(
        f"{'assemble quantum (600k rows -> matrices)':<44} {med(assemble_t):8.2f} "
        f"{med(assemble_t) / med(select_t):7.2f}"
    )


def _duration(md, name: str) -> float:
    data = md.to_dict() if hasattr(md, "to_dict") else md
    node = data["metadata"].get(name, {})
    arrays, scalars = node.get("arrays", {}), node.get("scalars", {})
    for store in (arrays, scalars):
        for key, v in store.items():
            if key.endswith("Duration"):
                return float(v[-1] if isinstance(v, list) else v)
    return float("nan")


if __name__ == "__main__":
    main()
