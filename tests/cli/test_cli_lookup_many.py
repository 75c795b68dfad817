"""``calibreg lookup --exposures/--day-obs``: the bulk lookup from the command line."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from calibreg_cli.main import app
from typer.testing import CliRunner

from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine
from tests.http.http_sample import EXPOSURE_IDS, INSTRUMENT, TAG, build_sample

runner = CliRunner()


@pytest.fixture
def db(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    with Registry(db_url, engine=engine) as reg:
        build_sample(reg, certify=True)
    engine.dispose()
    return db_url


def run(*args: str, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def one_error_line(result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_ids_and_ranges_match_the_library(db) -> None:
    ids = f"{EXPOSURE_IDS[0]},{EXPOSURE_IDS[1]}-{EXPOSURE_IDS[3]},5"
    res = run(
        "lookup", "-i", INSTRUMENT, "-t", TAG, "--exposures", ids, "--db", db, "--format", "json"
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [r["exposure"] for r in out] == [*EXPOSURE_IDS, 5]
    assert [r["status"] for r in out] == ["ok"] * 4 + ["unknown_exposure"]
    with Registry(db) as reg:
        truth = reg.lookup_many(INSTRUMENT, TAG, [*EXPOSURE_IDS, 5])
        single = reg.lookup(INSTRUMENT, None, TAG, exposure=EXPOSURE_IDS[2])
    assert [r["version_id"] for r in out[:4]] == [int(v) for v in truth["version_id"][:4]]
    assert out[2]["version_id"] == single["version_id"]


def test_file_stdin_csv_and_table(db, tmp_path) -> None:
    listing = tmp_path / "ids.txt"
    listing.write_text(f"# flats\n{EXPOSURE_IDS[0]}\n\n{EXPOSURE_IDS[1]}  # second\n")
    res = run(
        "lookup", "-i", INSTRUMENT, "-t", TAG, "--exposures", listing, "--db", db, "--format", "csv"
    )
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(io.StringIO(res.stdout))
    assert list(frame["exposure"]) == list(EXPOSURE_IDS[:2])
    assert (frame["status"] == "ok").all()
    res = run(
        "lookup",
        "-i",
        INSTRUMENT,
        "-t",
        TAG,
        "--exposures",
        "-",
        "--db",
        db,
        input=f"{EXPOSURE_IDS[3]}\n99\n",
    )
    assert res.exit_code == 0, res.output
    assert "1 unknown_exposure" in res.output and "1 ok" in res.output
    res = run(
        "lookup",
        "-i",
        INSTRUMENT,
        "-t",
        TAG,
        "--day-obs",
        "20240301",
        "--db",
        db,
        "--format",
        "json",
    )
    assert [r["exposure"] for r in json.loads(res.stdout)] == list(EXPOSURE_IDS)


def test_single_lookup_unchanged(db) -> None:
    res = run(
        "lookup",
        "-i",
        INSTRUMENT,
        "-t",
        TAG,
        "--exposure",
        EXPOSURE_IDS[0],
        "--db",
        db,
        "--format",
        "json",
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["exposure"] == EXPOSURE_IDS[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--exposures", "1,x"], "not an exposure id"),
        (["--exposures", "1,2.5"], "not an exposure id"),
        (["--exposures", "10-5"], "empty range"),
        (["--exposures", "1-200000"], "more than 100,000"),
        (["--exposures", ","], "no exposure ids"),
        (["--exposures", "1", "--time", "2024-03-01T12:00:00Z"], "cannot be combined"),
        (["--exposures", "1", "--day-obs", "20240301"], "not both"),
        (["--day-obs", "yesterday"], "not a day"),
        (["--exposures", "no/such/file.txt"], "no such file"),
    ],
)
def test_hostile_input_is_one_error_line(db, args, message) -> None:
    line = one_error_line(run("lookup", "-i", INSTRUMENT, "-t", TAG, *args, "--db", db))
    assert message in line


def test_unknown_names_and_bad_files(db, tmp_path) -> None:
    assert "unknown instrument" in one_error_line(
        run("lookup", "-i", "NoCam", "-t", TAG, "--exposures", "1", "--db", db)
    )
    assert "no tag" in one_error_line(
        run("lookup", "-i", INSTRUMENT, "-t", "nope", "--exposures", "1", "--db", db)
    )
    bad = tmp_path / "bad.txt"
    bad.write_text("1\n2\nthree\n")
    assert "line 3" in one_error_line(
        run("lookup", "-i", INSTRUMENT, "-t", TAG, "--exposures", bad, "--db", db)
    )
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    assert "no exposure ids" in one_error_line(
        run("lookup", "-i", INSTRUMENT, "-t", TAG, "--exposures", empty, "--db", db)
    )
    binary = tmp_path / "ids.bin"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    one_error_line(run("lookup", "-i", INSTRUMENT, "-t", TAG, "--exposures", binary, "--db", db))
