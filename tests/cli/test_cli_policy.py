"""``ingest camera DIR`` reads obs_lsst policy directories; exposures without a camera say so."""

from __future__ import annotations

import json

import pytest
from calibreg_cli.main import app
from typer.testing import CliRunner

from tests.conftest import TEST_DATA

runner = CliRunner()
POLICY = TEST_DATA / "cameras" / "obs_lsst" / "policy"


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture
def db(db_url: str) -> str:
    cli("db", "upgrade", "--db", db_url)
    return db_url


def test_three_policy_directories_ingest_with_their_counts(db: str) -> None:
    for directory in ("latiss", "comCam", "lsstCam"):
        cli("ingest", "camera", POLICY / directory, "--db", db)
    out = json.loads(cli("instruments", "--db", db, "--format", "json").stdout)
    counts = {r["instrument"]: (r["detectors"], r["amplifiers"]) for r in out}
    assert counts == {"LATISS": (1, 16), "LSSTComCam": (9, 144), "LSSTCam": (205, 3216)}
    again = cli("ingest", "camera", POLICY / "comCam", "--db", db).stdout
    assert "nothing changed" in again


def test_exposures_that_create_an_instrument_say_it_has_no_camera(db: str) -> None:
    export = TEST_DATA / "butler" / "lsstcam-subset.yaml"
    first = cli("ingest", "exposures", export, "--db", db)
    assert "instrument LSSTCam was created without a camera" in first.stderr
    cli("ingest", "camera", POLICY / "lsstCam", "--db", db)
    again = cli("ingest", "exposures", export, "--db", db)
    assert "without a camera" not in again.stderr
