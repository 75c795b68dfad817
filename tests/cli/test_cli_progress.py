"""Progress bars: drawn on a terminal with advancing counts, silent in pipes and in the client.

The commands run as real processes with stderr on a pseudo-terminal (what a person sees) and
stdout on a pipe; the screen bytes are read back and the counts the bars printed are parsed.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys

import pandas as pd
import pytest

from calibreg.client import Registry
from calibreg.services.simulate import simulate_flats

STYLE = re.compile(r"\x1b\[[0-9;]*m")  # colours: nothing on screen
MOVE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")  # cursor moves: a new line


def calibreg(*args: object) -> list[str]:
    return [sys.executable, "-m", "calibreg_cli.main", *map(str, args)]


def on_a_terminal(cmd: list[str], timeout: float = 300) -> tuple[int, str, str]:
    """Run ``cmd`` with stderr on a pseudo-terminal; return (status, stdout, screen text)."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "LINES": "40", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    screen = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            raise AssertionError(f"no output for {timeout} s: {cmd}")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the slave side closed: the process is done
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    status = proc.wait(timeout=60)
    return status, out, MOVE.sub("\n", STYLE.sub("", screen.decode(errors="replace")))


def counts(screen: str, stage: str, unit: str) -> list[tuple[int, int | None]]:
    """Every ``done[/total] unit`` a stage's line showed, in screen order."""
    pattern = re.compile(rf"{re.escape(stage)}\b[^\n]*?([\d,]+)(?:/([\d,]+))? {re.escape(unit)}\b")
    seen = []
    for m in pattern.finditer(screen):
        total = m.group(2)
        seen.append(
            (int(m.group(1).replace(",", "")), int(total.replace(",", "")) if total else None)
        )
    return seen


@pytest.fixture
def flats(engine, db_url, lsstcam_spec, tmp_path) -> dict:
    """LSSTCam with 12 flats in two filters; the statistics in a CSV file, not yet ingested."""
    with Registry(engine=engine) as reg:
        reg.ingest_camera(lsstcam_spec, source="camera", sha256="c", instrument="LSSTCam")
        r = simulate_flats(lsstcam_spec, n_exposures=6, seed=3, n_missing_frames=0)
        g = simulate_flats(
            lsstcam_spec, physical_filter="g_6", n_exposures=6, seed=4, first_exposure=2026011600100
        )
        reg.ingest_exposures(pd.concat([r.exposures, g.exposures]), source="e", sha256="e")
    stats = tmp_path / "stats.csv"
    pd.concat([r.stats, g.stats]).to_csv(stats, index=False)
    return {"db": db_url, "stats": stats, "rows": len(r.stats) + len(g.stats)}


def test_ingest_stats_draws_advancing_counts_with_rate_on_a_terminal(flats) -> None:
    cmd = calibreg(
        "ingest", "stats", flats["stats"], "--instrument", "LSSTCam", "--db", flats["db"],
        "--block-mib", "0.5",
    )  # fmt: skip
    status, out, screen = on_a_terminal(cmd)
    assert status == 0, screen
    assert f"{flats['rows']:,}" in out or str(flats["rows"]) in out  # the report, on stdout
    read = counts(screen, "read", "rows")
    done = [d for d, _ in read]
    assert len(set(done)) >= 3, screen  # several blocks: the count advanced
    assert done == sorted(done) and done[-1] == flats["rows"]
    assert read[-1][1] == flats["rows"]  # the estimated total ends exact
    stored = [d for d, _ in counts(screen, "stored", "rows")]
    assert len(set(stored)) >= 3 and stored[-1] == flats["rows"], screen
    assert re.search(r"[\d,]+ rows/s", screen), screen  # a rate
    assert f"{flats['rows']:,} new" in screen

    # The identical re-ingest is not silent: it counts the rows it compared.
    status, out, screen = on_a_terminal(cmd)
    assert status == 0 and "nothing changed" in out, screen
    stored = [d for d, _ in counts(screen, "stored", "rows")]
    assert len(set(stored)) >= 3 and stored[-1] == flats["rows"], screen
    assert f"{flats['rows']:,} unchanged" in screen


def test_solve_all_filters_in_two_processes_counts_quanta(flats) -> None:
    db = flats["db"]
    subprocess.run(
        calibreg("ingest", "stats", flats["stats"], "--instrument", "LSSTCam", "--db", db),
        check=True,
        capture_output=True,
    )
    status, _, screen = on_a_terminal(
        calibreg("solve", "-i", "LSSTCam", "--all-filters", "-j", "2", "--db", db)
    )
    assert status == 0, screen
    quanta = counts(screen, "quanta", "quanta")
    assert (0, 2) in quanta and (1, 2) in quanta and quanta[-1] == (2, 2), screen
    assert "version" in screen


def test_solve_one_quantum_shows_its_stages(flats) -> None:
    db = flats["db"]
    subprocess.run(
        calibreg("ingest", "stats", flats["stats"], "--instrument", "LSSTCam", "--db", db),
        check=True,
        capture_output=True,
    )
    status, _, screen = on_a_terminal(
        calibreg("solve", "-i", "LSSTCam", "-f", "r_57", "--method", "robust", "--db", db)
    )
    assert status == 0, screen
    assert counts(screen, "assembly", "exposures")[-1] == (6, 6), screen
    passes = counts(screen, "rejection passes", "passes")
    assert passes and passes[-1][0] == passes[-1][1] >= 1, screen
    assert counts(screen, "persist", "versions")[-1] == (1, 1), screen


def test_off_a_terminal_nothing_is_drawn(flats) -> None:
    res = subprocess.run(
        calibreg(
            "ingest",
            "stats",
            flats["stats"],
            "--instrument",
            "LSSTCam",
            "--db",
            flats["db"],
            "--block-mib",
            "0.5",
        ),
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # a pipe: no bars, no escape codes
    assert "\x1b" not in res.stdout


def test_the_client_reports_stages_through_the_callback(flats) -> None:
    calls: list[tuple] = []
    with Registry(flats["db"]) as reg:
        reg.ingest_stats_files(
            [flats["stats"]],
            instrument="LSSTCam",
            block_bytes=1 << 19,
            progress=lambda stage, done, total=None, **kw: calls.append((stage, done, total)),
        )
    read = [(d, t) for s, d, t in calls if s == "read"]
    assert [d for d, _ in read] == sorted(d for d, _ in read)
    assert read[-1] == (flats["rows"], flats["rows"])
    assert len(read) >= 3
    assert [d for s, d, _ in calls if s == "stored"][-1] == flats["rows"]
