"""Start-up time of ``calibreg versions list`` against the interpreter's own floors.

Run as a script (not collected by pytest)::

    python benchmarks/bench_cli.py [--repeat 9] [--db sqlite:////path/demo.sqlite3]

Without ``--db`` it builds the demo registry (``calibreg demo``, two versions, one certified)
in a temporary folder first. Then it runs, each as a fresh process, interleaved (one of each
per round, so a noisy machine slows all alike), ``--repeat`` rounds, and prints the median
wall time of each and its ratio to the floors:

* ``python -c pass``: the bare interpreter (site, the editable install's finder);
* ``python -c "import sqlalchemy, typer, rich"``: the libraries the listing cannot do without;
* ``python -c "import sqlalchemy.orm, typer, rich.table, numpy"``: what it imports in fact
  (the ORM models, the table, NumPy through the domain types);
* ``calibreg versions list --db ...``: the command (table output, to a pipe);
* ``calibreg --help``, ``calibreg versions list --format json``: for reference.

Goal (issue 12): ``calibreg versions list`` ≤ 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 0.5


def calibreg_exe() -> list[str]:
    """The console script next to this Python, else ``python -m``-style through its entry."""
    exe = Path(sys.executable).with_name("calibreg")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from calibreg_cli.main import app; app()"]


def demo_registry(workdir: Path) -> str:
    subprocess.run(
        [*calibreg_exe(), "demo", "--dir", str(workdir / "demo")],
        cwd=workdir,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return f"sqlite:///{workdir / 'demo' / 'demo.sqlite3'}"


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="rounds (at least 5)")
    parser.add_argument("--db", help="registry URL (default: a fresh demo registry)")
    args = parser.parse_args()
    repeat = max(args.repeat, 5)

    tmp = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    try:
        db = args.db or demo_registry(tmp)
        py = sys.executable
        cli = calibreg_exe()
        contenders = {
            "python -c pass": [py, "-c", "pass"],
            "import sqlalchemy, typer, rich": [py, "-c", "import sqlalchemy, typer, rich"],
            "import sqlalchemy.orm, typer, rich.table, numpy": [
                py,
                "-c",
                "import sqlalchemy.orm, typer, rich.table, numpy",
            ],
            "calibreg versions list": [*cli, "versions", "list", "--db", db],
            "calibreg versions list --format json": [
                *cli,
                "versions",
                "list",
                "--db",
                db,
                "--format",
                "json",
            ],
            "calibreg --help": [*cli, "--help"],
        }
        env_note = os.environ.get("COLUMNS")
        for cmd in contenders.values():  # warm the file cache and the .pyc files
            wall(cmd)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(repeat):
            for name, cmd in contenders.items():
                times[name].append(wall(cmd))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    median = {name: statistics.median(t) for name, t in times.items()}
    bare = median["python -c pass"]
    libs = median["import sqlalchemy, typer, rich"]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {repeat} runs")
    print(f"registry: {db}" + (f" (COLUMNS={env_note})" if env_note else ""))
    print(f"{'command':48} {'median':>9} {'min':>9} {'x bare':>7} {'x libs':>7}")
    for name, value in median.items():
        print(
            f"{name:48} {value * 1e3:7.0f}ms {min(times[name]) * 1e3:7.0f}ms "
            f"{value / bare:7.2f} {value / libs:7.2f}"
        )
    listing = median["calibreg versions list"]
    verdict = "meets" if listing <= GOAL_SECONDS else "misses"
    print(
        f"\ncalibreg versions list: {listing:.3f} s, {verdict} the {GOAL_SECONDS} s goal; "
        f"{(listing - libs) * 1e3:.0f} ms above importing sqlalchemy, typer and rich"
    )


if __name__ == "__main__":
    main()
