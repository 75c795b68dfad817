"""`calibreg versions list` and the help screens load no heavy library (issue 12: ≤ 0.5 s).

Each command runs in a fresh interpreter, which then reports the heavy modules it holds. No
timings here (benchmarks/bench_cli.py measures them); what is asserted is what makes a start
slow: pandas alone is ~0.25 s of imports, and the listing needs none of it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from calibreg_cli.main import app
from calibreg_cli.output import Column, Format, print_frame, print_rows
from typer.testing import CliRunner

from calibreg import Registry
from calibreg.registry.frames import query_frame, query_records
from calibreg.services.simulate import simulate_flats
from tests.conftest import LSSTCAM_YAML

runner = CliRunner()

#: What the listing must not import (pandas brings pyarrow; the others are other commands').
#: NumPy was a quarter of the listing's import work, the ORM (the tables are Core) another
#: quarter, the PostgreSQL dialect package and ERFA (time scales) are for other work.
HEAVY = (
    "pandas",
    "pyarrow",
    "alembic",
    "matplotlib",
    "fastapi",
    "scipy",
    "adbc_driver_manager",
    "numpy",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.postgresql",
    "erfa",
)


def cli(*args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


@pytest.fixture(scope="module")
def small_registry(tmp_path_factory, lsstcam_spec) -> str:
    """A SQLite registry with three versions, two certified."""
    tmp = tmp_path_factory.mktemp("imports")
    db = f"sqlite:///{tmp / 'registry.sqlite3'}"
    cli("db", "upgrade", "--db", db)
    cli("ingest", "camera", LSSTCAM_YAML, "--instrument", "LSSTCam", "--db", db)
    sim = simulate_flats(lsstcam_spec, n_exposures=3, seed=11)
    sim.exposures.to_csv(tmp / "exposures.csv", index=False)
    sim.stats.to_csv(tmp / "stats.csv", index=False)
    cli("ingest", "exposures", tmp / "exposures.csv", "--db", db)
    cli("ingest", "stats", tmp / "stats.csv", "--instrument", "LSSTCam", "--db", db)
    for extra in ([], ["--level", "AMP"], ["--method", "alternating", "--max-iter", "2"]):
        cli("solve", "-i", "LSSTCam", "-f", "r_57", *extra, "--db", db)
    cli("certify", 1, "--tag", "a/tag", "--begin", "2026-01-01", "--db", db)
    cli("certify", 2, "--tag", "b/tag", "--begin", "2026-01-01", "--db", db)
    return db


def _run_fresh(args: list[str]) -> tuple[str, list[str]]:
    """Run the calibreg command line in a new interpreter: its stdout, the heavy modules."""
    code = (
        "import sys\n"
        f"sys.argv = ['calibreg', *{args!r}]\n"
        "from calibreg_cli.main import app\n"
        "try:\n"
        "    app()\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
        check=False,
    )
    assert res.returncode == 0, res.stderr
    out, _, last = res.stdout.rstrip("\n").rpartition("\n")
    assert last.startswith("HEAVY="), res.stdout
    return out, [m for m in last.removeprefix("HEAVY=").split(",") if m]


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--wide"],
        ["--limit", "2", "-i", "LSSTCam", "--level", "detector"],
        ["--format", "json"],
        ["--format", "csv"],
    ],
)
def test_versions_list_imports_no_heavy_library(small_registry, extra) -> None:
    out, heavy = _run_fresh(["versions", "list", "--db", small_registry, *extra])
    assert heavy == [], f"`calibreg versions list {' '.join(extra)}` imported {heavy}"
    assert "a/tag" in out  # it did list the versions


@pytest.mark.parametrize(
    "args", [["--help"], ["versions", "--help"], ["versions", "list", "--help"]]
)
def test_help_imports_no_heavy_library(args) -> None:
    out, heavy = _run_fresh(args)
    assert heavy == [] and "Usage" in out


def test_version_records_are_the_versions_frame(small_registry) -> None:
    with Registry(small_registry) as reg:
        for newest in (None, 1, 2, 10):
            frame = reg.versions() if newest is None else reg.newest_versions(newest)
            records = reg.version_records(newest=newest)
            assert list(frame.columns) == list(records[0])
            assert [_plain(r) for r in frame.to_dict("records")] == [_plain(r) for r in records]
        assert reg.version_records(level="amp", instrument="LSSTCam") == [
            r for r in reg.version_records() if r["level"] == "AMP"
        ]
        assert reg.version_records(physical_filter="nope") == []


def _plain(row: dict) -> dict:
    """A row with NaN and pandas' NA as None (NaN != NaN)."""
    import pandas as pd

    return {
        k: None if v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v
        for k, v in row.items()
    }


@pytest.mark.parametrize("fmt", list(Format))
@pytest.mark.parametrize("width", [40, 200])
@pytest.mark.parametrize("empty", [False, True])
def test_print_rows_prints_what_print_frame_prints(capsys, monkeypatch, fmt, width, empty) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    engine = sa.create_engine("sqlite://")
    meta = sa.MetaData()
    table = sa.Table(
        "t",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("count", sa.BigInteger),
        sa.Column("none_count", sa.Integer),
        sa.Column("ok", sa.Boolean),
        sa.Column("rms", sa.Float),
        sa.Column("name", sa.String),
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {"id": 1, "count": 2**62 + 1, "ok": True, "rms": 0.1, "name": "a, b"},
                {"id": 2, "count": None, "ok": None, "rms": None, "name": None},
                {"id": 3, "count": -7, "ok": False, "rms": 1e-5, "name": 'say "x"'},
                {"id": 4, "count": 0, "ok": True, "rms": 123456789.125, "name": "two\nlines"},
            ],
        )
    stmt = sa.select(table).order_by(table.c.id)
    if empty:
        stmt = stmt.where(table.c.id < 0)
    with engine.connect() as conn:
        frame, records = query_frame(conn, stmt), query_records(conn, stmt)
    engine.dispose()
    fields = [c.name for c in table.c]
    numeric = {"id", "count", "none_count", "rms"}  # what print_rows cannot see in NULLs
    columns = [Column(name, numeric=True if name in numeric else None) for name in fields]

    print_frame(frame, fmt, title="t", columns=columns)
    expected = capsys.readouterr()
    print_rows(records, fields, fmt, title="t", columns=columns)
    got = capsys.readouterr()
    assert got.out == expected.out
    assert got.err == expected.err
    if fmt == Format.json and not empty:
        assert json.loads(got.out)[1] == dict.fromkeys(fields) | {"id": 2}
