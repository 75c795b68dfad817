"""Cost of standard errors, goodness of fit and quality flags beside the plain exact solve.

Run as a script (not collected by pytest)::

    python benchmarks/bench_errors.py [--repeat 5] [--shape 3024 2000]

At LSSTCam AMP level (3,024 amplifiers × 2,000 exposures by default), complete and with 20% of
the entries missing, it prints the median wall and CPU time of, all measured in the same run:

* ``plain exact solve``: input preparation and the exact least-squares solve alone (the
  engine's ``_prepare`` + ``_exact``, what ``measure_scales`` did before issue 8) — the baseline;
* ``measure_scales(errors=False)``: + residuals, χ², degrees of freedom, rms, flags (all but
  the weak-link search), missing and rejected entries;
* ``measure_scales()`` (the default): + standard errors of every G and E and exact degrees of
  freedom from the dense Schur complement, and the weak-link search;
* the pieces alone: ``unit_covariance`` (errors) and ``weak_link`` (spectral search);

and each one's ratio to the baseline. ``robust`` is shown for reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from calibreg.engine import measure_scales
from calibreg.engine import solve as engine_solve
from calibreg.engine.quality import QualityThresholds, weak_link
from calibreg.engine.uncertainty import unit_covariance


def make_data(shape: tuple[int, int], missing: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    G = rng.uniform(0.6, 1.4, shape[0])
    E = np.exp(rng.uniform(np.log(2e3), np.log(5e4), shape[1]))
    N = rng.integers(500, 4000, size=shape).astype(np.float64)
    B = G[:, None] * E[None, :] * np.exp(rng.normal(0.0, 1.0, shape) * 0.045 / np.sqrt(N))
    if missing:
        B[rng.random(shape) < missing] = np.nan
        B[0, :] = G[0] * E  # keep the data connected
    return B, N


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def plain_exact(B: np.ndarray, N: np.ndarray) -> None:
    y, w, valid, _, _ = engine_solve._prepare(B, N, None, "counts")
    act_r, act_c = valid.any(axis=1), valid.any(axis=0)
    engine_solve._check_connected(w, act_r, act_c)
    engine_solve._exact(y, w, act_r, act_c, 1000, 1e-12, engine_solve._sums(y, w))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--shape", type=int, nargs=2, default=(3024, 2000))
    args = parser.parse_args()
    shape = (args.shape[0], args.shape[1])
    print(
        f"numpy {np.__version__}, {os.cpu_count()} CPUs, load average at start "
        f"{os.getloadavg()[0]:.2f}; shape {shape[0]} × {shape[1]}, median of {args.repeat}"
    )
    header = f"{'missing':>7}  {'step':<44} {'wall s':>8} {'cpu s':>8} {'× plain':>8}"
    print(header)
    print("-" * len(header))
    for missing in (0.0, 0.2):
        B, N = make_data(shape, missing)
        sol = measure_scales(B, N)  # warm-up, and the pieces' inputs
        w = np.where(sol.used, N, 0.0)
        act_r, act_c = ~sol.row_flagged, ~sol.exp_flagged
        gauge = w.sum(axis=1) * sol.row_scales
        gauge /= gauge.sum()
        cov = unit_covariance(w, act_r, act_c, gauge)
        th = QualityThresholds()
        rows = [
            ("plain exact solve (prepare + solve)", lambda B=B, N=N: plain_exact(B, N)),
            ("measure_scales(errors=False)", lambda B=B, N=N: measure_scales(B, N, errors=False)),
            ("measure_scales()  [errors + flags]", lambda B=B, N=N: measure_scales(B, N)),
            (
                "  errors alone (unit_covariance)",
                lambda w=w, r=act_r, c=act_c, a=gauge: unit_covariance(w, r, c, a),
            ),
            ("  weak-link search alone", lambda f=cov.factor, th=th: weak_link(f, th)),
            ("robust, for reference", lambda B=B, N=N: measure_scales(B, N, method="robust")),
        ]
        base = None
        for name, fn in rows:
            reps = max(1, args.repeat // 2) if name.startswith("robust") else args.repeat
            wall, cpu = timed(fn, reps)
            if base is None:
                base = wall
            print(f"{missing:>7.0%}  {name:<44} {wall:>8.3f} {cpu:>8.3f} {wall / base:>8.2f}")
        finite = np.isfinite(sol.row_errors).all() and np.isfinite(sol.exp_errors).all()
        print(
            f"{'':>7}  errors finite: {finite}; weak_link_entries {sol.weak_link_entries}; "
            f"flags set: {int(np.count_nonzero(sol.row_flags))} rows, "
            f"{int(np.count_nonzero(sol.exp_flags))} exposures"
        )
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    print("× plain = wall time / plain exact solve's wall time, same run, same data.")


if __name__ == "__main__":
    main()
