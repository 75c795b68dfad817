"""The acceptance of record: butler → calibreg → solve → certify → butler, and back.

On calibreg's SQLite and PostgreSQL, through the command line: ingest the camera from its obs_lsst
policy directory, ingest the simulated sequence from a real butler repository, solve at AMP
level (checked against the simulation's truth), certify for two validity ranges, publish into
the butler with certification, and then ask both systems which version is valid at times
inside, at the edges of and outside those ranges: the butler's ``find_dataset(...,
timespan=t)`` and ``calibreg lookup --time t`` must name the same version every time.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from calibreg_cli.main import app
from typer.testing import CliRunner

from calibreg.client import Registry
from calibreg.formats.timescale import tai_ns_to_utc_iso
from tests.butler.butlerdata import FILTER, INPUT_RUN, POLICY, truth_ratio_rms

runner = CliRunner()
TAG = "flat-norm/recommended"
COLLECTION = "LSSTCam/calib/flat-norm"
RUN = "u/calibreg/flat-norm/v1"


def cli(*args, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture
def published(db_url, repo):
    """The whole chain through the CLI; returns what the checks need."""
    db = ["--db", db_url]
    cli("db", "upgrade", *db)
    cli("ingest", "camera", POLICY / "lsstCam", *db)
    where = "exposure.observation_type = 'flat'"
    out = cli(
        "ingest",
        "butler",
        repo.root,
        "-i",
        "LSSTCam",
        "-c",
        INPUT_RUN,
        "--where",
        where,
        *db,
        "--format",
        "json",
    ).stdout
    report = json.loads(out)
    sim = repo.sim
    n_stats = len(sim.stats)
    assert report["kind"] == "stats" and report["n_inserted"] == len(sim.exposures) + n_stats
    again = cli("ingest", "butler", repo.root, "-i", "LSSTCam", "-c", INPUT_RUN, *db).stdout
    assert "nothing changed" in again
    solved = json.loads(
        cli(
            "solve", "-i", "LSSTCam", "-f", FILTER, "--level", "AMP", *db, "--format", "json"
        ).stdout
    )
    version = solved["version_id"]
    begin = int(sim.exposures["timespan_begin"].min())
    end = int(sim.exposures["timespan_end"].max())
    cut = (begin + 3 * 45_000_000_000, begin + 5 * 45_000_000_000)  # a gap inside
    cli(
        "certify",
        version,
        "--tag",
        TAG,
        "--begin",
        tai_ns_to_utc_iso(begin),
        "--end",
        tai_ns_to_utc_iso(end),
        *db,
    )
    cli(
        "decertify",
        "--tag",
        TAG,
        "-i",
        "LSSTCam",
        "-f",
        FILTER,
        "--begin",
        tai_ns_to_utc_iso(cut[0]),
        "--end",
        tai_ns_to_utc_iso(cut[1]),
        *db,
    )
    pub = json.loads(
        cli(
            "publish",
            "butler",
            version,
            repo.root,
            "--run",
            RUN,
            "--tag",
            TAG,
            "--calibration-collection",
            COLLECTION,
            *db,
            "--format",
            "json",
        ).stdout
    )
    ranges = [(begin, cut[0]), (cut[1], end)]
    assert pub["certified"] == [list(r) for r in ranges]
    return {"db": db_url, "version": version, "ranges": ranges, "pub": pub, "repo": repo}


def _butler_version(butler, t: int) -> int | None:
    """The calibreg version the butler serves at TAI ns ``t`` (through the sidecar)."""
    from lsst.daf.butler import Timespan

    from calibreg.butler._lsst import tai_ns_timespan

    ref = butler.find_dataset(
        "cpFlatNormScales",
        instrument="LSSTCam",
        physical_filter=FILTER,
        collections=COLLECTION,
        timespan=tai_ns_timespan(t, t + 1),
    )
    assert isinstance(tai_ns_timespan(t, t + 1), Timespan)
    if ref is None:
        return None
    side = butler.get("cpFlatNormScales_calibreg", ref.dataId, collections=ref.run)
    return side["calibreg_version_id"]


def _calibreg_version(db: str, t: int) -> int | None:
    res = cli(
        "lookup",
        "-i",
        "LSSTCam",
        "-f",
        FILTER,
        "-t",
        TAG,
        "--time",
        tai_ns_to_utc_iso(t),
        "--db",
        db,
        "--format",
        "json",
        ok=False,
    )
    if res.exit_code != 0:
        assert "certified" in res.output  # "nothing certified ...", one line
        return None
    return json.loads(res.stdout)["version_id"]


def test_round_trip_names_the_same_version_inside_at_edges_and_outside(published) -> None:
    from lsst.daf.butler import Butler

    butler = Butler.from_config(str(published["repo"].root))
    (b1, e1), (b2, e2) = published["ranges"]
    version = published["version"]
    times = {
        b1 - 1: None,  # before the first range
        b1: version,  # its first instant
        (b1 + e1) // 2: version,  # inside
        e1 - 1: version,  # its last nanosecond
        e1: None,  # end is exclusive: the decertified gap begins
        (e1 + b2) // 2: None,  # inside the gap
        b2 - 1: None,
        b2: version,
        e2 - 1: version,
        e2: None,  # after the second range
        e2 + 86_400_000_000_000: None,
    }
    for t, expected in times.items():
        assert _butler_version(butler, t) == expected, t
        assert _calibreg_version(published["db"], t) == expected, t


def test_published_scales_are_cp_pipes_structure_and_match_the_truth(published) -> None:
    from lsst.daf.butler import Butler

    repo = published["repo"]
    butler = Butler.from_config(str(repo.root))
    version = published["version"]
    ref = butler.find_dataset(
        "cpFlatNormScales", instrument="LSSTCam", physical_filter=FILTER, collections=RUN
    )
    assert str(ref.id) == published["pub"]["dataset_id"]
    assert ref.datasetType.storageClass_name == "StructuredDataDict"
    assert set(ref.datasetType.dimensions.required) == {"instrument", "physical_filter"}
    reg = Registry(published["db"])
    scales = butler.get(ref)
    assert scales == reg.cp_pipe(version)  # exactly what `calibreg export` writes
    assert set(scales) == {"expScale", "detScale"}
    assert all(isinstance(d, int) for d in scales["detScale"])
    some = next(iter(scales["expScale"].values()))
    assert all(isinstance(a, str) for a in some)
    assert all(isinstance(e, int) for e in next(iter(some.values())))
    # solved scales against the simulation's truth
    rows = reg.scales(version, "row")
    assert truth_ratio_rms(repo.sim, rows) < 5 * repo.sim.entry_noise
    dead = rows[(rows["detector"] == repo.sim.dead[0]) & (rows["amp"] == repo.sim.dead[1])]
    assert bool(dead["flagged"].iloc[0])
    exp = reg.scales(version, "exposure").merge(repo.sim.exp_truth, on="exposure")
    ratio = (exp["scale"] / exp["e"]).to_numpy(float)
    assert np.ptp(ratio / np.median(ratio)) < 10 * repo.sim.entry_noise
    # the trace back to calibreg: sidecar and run documentation
    side = butler.get("cpFlatNormScales_calibreg", ref.dataId, collections=RUN)
    record = reg.version(version)
    assert side["calibreg_version_id"] == version
    assert side["content_hash"] == record["content_hash"]
    assert side["input_fingerprint"] == record["input_fingerprint"]
    assert side["validity_tai_ns"] == [list(r) for r in published["ranges"]]
    assert side["provenance"] == json.loads(json.dumps(record["provenance"]))
    doc = butler.registry.getCollectionDocumentation(RUN)
    assert f"calibreg version {version}" in doc and record["content_hash"] in doc
    reg.close()


def test_publishing_again_changes_nothing(published) -> None:
    out = cli(
        "publish",
        "butler",
        published["version"],
        published["repo"].root,
        "--run",
        RUN,
        "--tag",
        TAG,
        "--calibration-collection",
        COLLECTION,
        "--db",
        published["db"],
    ).stdout
    assert "nothing changed" in out
