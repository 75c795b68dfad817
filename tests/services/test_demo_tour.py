"""``calibreg demo`` is a tour (issue 10, item 6).

The demo runs as a user runs it: the installed entry point in a fresh directory, its output
piped (so Rich sees no terminal and would wrap at 80 columns). Then every command it printed
is run for real, from the same directory, and must work.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

#: The steps' commands, in order: (words that start it, options it must carry).
STEPS = [
    ("calibreg db upgrade", ()),
    ("calibreg ingest camera", ("--instrument",)),
    ("calibreg ingest exposures", ()),
    ("calibreg ingest stats", ("--instrument",)),
    ("calibreg solve", ("--level",)),
    ("calibreg solve", ("--level",)),
    ("calibreg versions verify", ()),
    ("calibreg certify", ("--tag", "--begin")),
    ("calibreg lookup", ("--exposure",)),
    ("calibreg export", ("--format", "-o")),
]


@pytest.fixture(scope="module")
def tour(tmp_path_factory) -> tuple[Path, str]:
    """Run ``calibreg demo --exposures 4`` piped, in an empty directory; (cwd, stdout)."""
    cwd = tmp_path_factory.mktemp("tour")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.pop("CALIBREG_DATABASE_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "calibreg_cli.main", "demo", "--exposures", "4"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return cwd, proc.stdout


def _commands(out: str) -> tuple[list[list[str]], list[list[str]]]:
    """(step commands, final commands) as argument lists, parsed from the printed lines."""
    steps, final = [], []
    for line in out.splitlines():
        if line.startswith("$ "):
            steps.append(shlex.split(line[2:]))
        elif line.startswith("  $ "):
            final.append(shlex.split(line[4:]))
    return steps, final


def test_the_demo_stays_in_its_folder(tour) -> None:
    cwd, _ = tour
    assert [p.name for p in cwd.iterdir()] == ["calibreg-demo"]
    inside = {p.name for p in (cwd / "calibreg-demo").iterdir()}
    assert {"demo.sqlite3", "exposures.csv", "stats.parquet"} <= inside
    assert any(n.startswith("cpFlatNormScales_v") for n in inside)


def test_every_step_prints_its_command(tour) -> None:
    _, out = tour
    steps, final = _commands(out)
    assert len(steps) == len(STEPS), steps
    for argv, (start, options) in zip(steps, STEPS, strict=True):
        assert " ".join(argv).startswith(start), argv
        for option in (*options, "--db"):
            assert option in argv, (option, argv)
        assert argv[argv.index("--db") + 1] == "sqlite:///calibreg-demo/demo.sqlite3"
    assert [a[2] for a in steps if a[1] == "solve"] == ["-i"] * 2
    assert [a[a.index("--level") + 1] for a in steps if a[1] == "solve"] == ["DETECTOR", "AMP"]
    assert out.index("Look at the result:") < out.index("  $ ")
    assert [f[:3] for f in final] == [
        ["calibreg", "plot", "focal-plane"],
        ["calibreg", "lookup", "-i"],
        ["sqlite3", "-header", "-column"],
    ]


def test_no_path_is_broken_across_lines(tour) -> None:
    cwd, out = tour
    lines = out.splitlines()
    assert max(len(ln) for ln in lines) > 80  # long lines exist and were left whole
    paths = re.findall(r"calibreg-demo/[\w./-]+", out)
    assert len(paths) > 15
    for path in set(paths):
        path = path.rstrip(".")
        if "focal-plane" not in path:  # the one the final plot command will write
            assert (cwd / path).is_file(), path
    # A wrapped line would start with the tail of a word: every line starts as the demo does.
    starts = ("$ ", "  $ ", "# ", "✓ ", "─", "┏", "┃", "┡", "│", "└", "Look at", "  ", "")
    for line in lines:
        assert line.startswith(starts) or line.strip().startswith("AMP-level"), line


def _calibreg(argv: list[str]) -> str:
    from calibreg_cli.main import app

    assert argv[0] == "calibreg"
    res = CliRunner().invoke(app, argv[1:])
    assert res.exit_code == 0, (argv, res.output)
    return res.output


def test_the_printed_commands_work(tour, monkeypatch) -> None:
    cwd, out = tour
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("CALIBREG_DATABASE_URL", raising=False)
    steps, final = _commands(out)
    for argv in steps:
        if argv[1] == "certify":  # certifying the same range twice is refused, by design
            continue
        _calibreg(argv)
    plot, lookup, sql = final
    assert _calibreg(plot).strip() == f"wrote {plot[plot.index('-o') + 1]}"
    png = cwd / plot[plot.index("-o") + 1]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    amp_version = plot[3]
    answer = _calibreg(lookup)
    assert re.search(rf"version_id\s+│\s+{amp_version}\s", answer), answer
    if shutil.which("sqlite3"):
        res = subprocess.run(sql, cwd=cwd, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        text = res.stdout
    else:  # the same query through Python's sqlite3 where the shell is not installed
        with sqlite3.connect(cwd / sql[3]) as conn:
            text = "\n".join(" ".join(map(str, r)) for r in conn.execute(sql[4]))
    assert "flat-norm/recommended" in text and f" {amp_version} " in f" {text} "
