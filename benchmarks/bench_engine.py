"""Benchmark of the decomposition engine against a per-row loop of the reference iteration.

Run as a script (not collected by pytest)::

    python benchmarks/bench_engine.py [--quick]

For every shape (LSSTCam: 189 detectors or 3024 amplifiers; 5 to 2000 exposures), complete and
with 20% of the entries missing, it prints per method the median wall time over several
repeats, the peak memory allocated during one call (tracemalloc) relative to the input
(B + N as float64), and the speed-up over the baseline: the reference algorithm written as
cp_pipe does it, one ``np.average`` per row and per exposure on masked arrays, 10 sweeps,
measured in the same run. For the largest shape the baseline runs fewer sweeps and its time is
scaled to 10 by the number of ``np.average`` calls; the table says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from calibreg.engine import measure_scales

SHAPES = [(189, 5), (189, 200), (3024, 200), (3024, 2000)]
METHODS: dict[str, dict] = {
    "exact": {"method": "exact"},
    "alternating": {"method": "alternating"},
    "alternating-10": {"method": "alternating", "max_iter": 10, "tol": 0.0},
    "robust": {"method": "robust"},
}


def baseline(bg: np.ndarray, counts: np.ndarray, sweeps: int = 10) -> np.ndarray:
    """The reference iteration as a per-row / per-exposure Python loop over np.average."""
    n_row, n_exp = bg.shape
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        log_meas = np.ma.masked_array(np.log(bg), ~np.isfinite(np.log(bg)))

        def exp_means(log_g: np.ndarray) -> np.ndarray:
            return np.array(
                [np.average(log_meas[:, j] - log_g, weights=counts[:, j]) for j in range(n_exp)]
            )

        log_g = np.zeros(n_row)
        log_e = exp_means(log_g)
        for _ in range(sweeps):
            log_g = np.array(
                [np.average(log_meas[i, :] - log_e, weights=counts[i, :]) for i in range(n_row)]
            )
            bad = np.isnan(log_g)
            if bad.any():
                log_g[bad] = log_g[~bad].mean()
            log_e = exp_means(log_g)
            log_g -= np.log(np.average(np.exp(log_g), weights=counts.sum(axis=1)))
        log_e = exp_means(log_g)
    return np.exp(log_e)


def make_data(shape: tuple[int, int], missing: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    G = rng.uniform(0.6, 1.4, shape[0])
    E = np.exp(rng.uniform(np.log(2e3), np.log(5e4), shape[1]))
    N = rng.integers(500, 4000, size=shape).astype(np.float64)
    B = G[:, None] * E[None, :] * np.exp(rng.normal(0.0, 1e-3, shape))
    if missing:
        B[rng.random(shape) < missing] = np.nan
        B[0, :] = G[0] * E  # keep the data connected
    return B, N


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time of this process (all threads) over repeats.

    Both are printed because the machine may be shared: under contention the wall time grows
    while the CPU time shows the work the method itself did.
    """
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    print(
        f"numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'shape':>11} {'missing':>7} {'method':>15} {'median s':>10} {'cpu s':>8} {'peak MB':>8} "
        f"{'peak/in':>7} {'iters':>6} {'conv':>5} {'baseline s':>11} {'speed-up':>9}  note"
    )
    print(header)
    print("-" * len(header))
    for shape in SHAPES:
        size = shape[0] * shape[1]
        repeats = 3 if args.quick else (5 if size > 1_000_000 else 7)
        for missing in (0.0, 0.2):
            B, N = make_data(shape, missing)
            input_mb = (B.nbytes + N.nbytes) / 2**20
            sweeps = 10 if size <= 1_000_000 else 1
            t_base = median_time(lambda B=B, N=N, s=sweeps: baseline(B, N, s), 1)[0]
            note = ""
            if sweeps != 10:
                calls_10 = 10 * (shape[0] + shape[1]) + 2 * shape[1]
                calls_s = sweeps * (shape[0] + shape[1]) + 2 * shape[1]
                t_base *= calls_10 / calls_s
                note = f"baseline timed on {sweeps} sweep, scaled to 10"
            for name, kwargs in METHODS.items():
                reps = max(1, repeats // 2) if name == "robust" and size > 1_000_000 else repeats
                sol = measure_scales(B, N, **kwargs)  # warm-up, and the iteration count

                def call(B=B, N=N, kwargs=kwargs):
                    return measure_scales(B, N, **kwargs)

                t, t_cpu = median_time(call, reps)
                peak = peak_bytes(call) / 2**20
                print(
                    f"{shape[0]:>5}×{shape[1]:<5} {missing:>7.0%} {name:>15} {t:>10.4f} "
                    f"{t_cpu:>8.4f} "
                    f"{peak:>8.1f} {peak / input_mb:>7.2f} {sol.iterations:>6} "
                    f"{'yes' if sol.converged else 'no':>5} {t_base:>11.3f} {t_base / t:>8.0f}×"
                    f"  {note}"
                )
    print("speed-up = baseline (per-row np.average loop, 10 sweeps) / method median wall time;")
    print("cpu s = median process CPU time; peak/in = tracemalloc peak during one call /")
    print(f"(B + N float64 bytes); load average at end {os.getloadavg()[0]:.2f}.")
    print("alternating-10 = max_iter=10, tol=0: the same sweeps as the reference and baseline.")


if __name__ == "__main__":
    main()
