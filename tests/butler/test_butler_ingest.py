"""``ingest butler``: exact records, one batch, idempotent, atomic, one-line errors."""

from __future__ import annotations

import pytest
from calibreg_cli.main import app
from typer.testing import CliRunner

from calibreg.butler import ingest as butler_ingest
from calibreg.butler import ingest_butler, read_butler_inputs
from calibreg.client import Registry
from calibreg.errors import ConflictError, InputError, NotFoundError
from calibreg.formats import write_propertylist
from tests.butler.butlerdata import INPUT_RUN, propertylist_values, raft

runner = CliRunner()


@pytest.fixture
def reg(engine, policy_camera) -> Registry:
    registry = Registry(engine=engine)
    registry.ingest_camera(policy_camera, source="policy/lsstCam", sha256="camera")
    return registry


def _batches(reg: Registry) -> list[tuple]:
    with reg.read() as conn:
        return [tuple(r) for r in conn.exec_driver_sql("SELECT kind, n_rows FROM ingest_batch")]


def _counts(reg: Registry) -> tuple[int, int]:
    exposures = reg.exposures("LSSTCam")
    return len(exposures), int(exposures["amp_stats"].sum()) if len(exposures) else 0


def test_exposure_records_arrive_exact_in_one_batch(reg, repo) -> None:
    report = ingest_butler(reg, str(repo.root), instrument="LSSTCam", collections=[INPUT_RUN])
    sim = repo.sim
    assert report.kind == "stats" and report.n_rows == len(sim.exposures) + len(sim.stats)
    assert _batches(reg) == [("camera", 3421), ("stats", report.n_rows)]
    got = reg.exposures("LSSTCam").set_index("id").sort_index()
    want = sim.exposures.set_index("id").sort_index()
    assert list(got.index) == list(want.index)
    for col in ("timespan_begin", "timespan_end", "seq_num", "day_obs"):
        assert [int(v) for v in got[col]] == [int(v) for v in want[col]], col  # exact ns
    for col in (
        "obs_id",
        "observation_type",
        "observation_reason",
        "science_program",
        "physical_filter",
    ):
        assert list(got[col]) == list(want[col]), col
    assert list(got["group_name"]) == list(want["group"])
    assert got["exposure_time"].tolist() == want["exposure_time"].tolist()
    assert int(got["amp_stats"].sum()) == int(sim.stats["amp"].notna().sum())
    again = ingest_butler(reg, str(repo.root), instrument="LSSTCam", collections=[INPUT_RUN])
    assert not again.changed and len(_batches(reg)) == 2


def test_where_narrows_the_datasets(reg, repo) -> None:
    report = ingest_butler(
        reg,
        str(repo.root),
        instrument="LSSTCam",
        collections=[INPUT_RUN],
        where="exposure.seq_num < 104",
    )
    assert report.changed
    assert sorted(reg.exposures("LSSTCam")["seq_num"]) == [100, 101, 102, 103]


def test_parallel_parsing_reads_the_same(repo, monkeypatch) -> None:
    serial = read_butler_inputs(
        str(repo.root), instrument="LSSTCam", collections=[INPUT_RUN], jobs=1
    )
    monkeypatch.setattr(butler_ingest, "_PARALLEL_MIN_FILES", 10)
    seen = []
    parallel = read_butler_inputs(
        str(repo.root),
        instrument="LSSTCam",
        collections=[INPUT_RUN],
        jobs=2,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert parallel.sha256 == serial.sha256
    assert parallel.stats.equals(serial.stats)
    assert seen[-1] == (len(repo.files), len(repo.files))


def _assert_nothing_written(reg: Registry) -> None:
    assert _batches(reg) == [("camera", 3421)]
    assert reg.exposures("LSSTCam").empty


def test_a_malformed_file_fails_the_call_naming_dataset_and_file(reg, repo, policy_camera) -> None:
    (exp, det), path = sorted(repo.files.items())[5]
    values = propertylist_values(repo.sim, raft(policy_camera), exp, det)
    values["AMP_N_3"] = -5
    write_propertylist(path, values)
    with pytest.raises(InputError) as err:
        ingest_butler(reg, str(repo.root), instrument="LSSTCam", collections=[INPUT_RUN])
    message = str(err.value)
    assert str(path) in message and "AMP_N_3" in message and "\n" not in message
    assert f"exposure {exp}, detector {det}" in message and "dataset " in message
    _assert_nothing_written(reg)
    # and through the CLI: exit 1, one line on stderr
    url = reg.engine.url.render_as_string(hide_password=False)
    res = runner.invoke(
        app, ["ingest", "butler", str(repo.root), "-i", "LSSTCam", "-c", INPUT_RUN, "--db", url]
    )
    assert res.exit_code == 1
    assert (
        res.output.count("\n") == 1 and res.output.startswith("error: ") and str(path) in res.output
    )


def test_a_missing_file_fails_the_call(reg, repo) -> None:
    (_, det), path = sorted(repo.files.items())[-1]
    path.unlink()
    with pytest.raises(InputError, match="file does not exist") as err:
        ingest_butler(reg, str(repo.root), instrument="LSSTCam", collections=[INPUT_RUN])
    assert str(path) in str(err.value) and f"detector {det}" in str(err.value)
    _assert_nothing_written(reg)


def test_a_detector_the_camera_lacks_is_an_error(reg, repo) -> None:
    from lsst.daf.butler import Butler

    butler = Butler.from_config(str(repo.root), writeable=True)
    butler.registry.insertDimensionData(
        "detector",
        {
            "instrument": "LSSTCam",
            "id": 999,
            "full_name": "R99_S99",
            "raft": "R99",
            "name_in_raft": "S99",
            "purpose": "SCIENCE",
        },
    )
    with pytest.raises(InputError, match=r"butler detector 999 .R99_S99. of LSSTCam is not in"):
        ingest_butler(reg, str(repo.root), instrument="LSSTCam", collections=[INPUT_RUN])
    _assert_nothing_written(reg)


def test_a_camera_is_needed_first(engine, repo) -> None:
    with pytest.raises(NotFoundError, match="no camera in the registry"):
        ingest_butler(
            Registry(engine=engine), str(repo.root), instrument="LSSTCam", collections=[INPUT_RUN]
        )


def test_changed_content_is_refused_unless_replace(reg, repo, policy_camera) -> None:
    ingest_butler(reg, str(repo.root), instrument="LSSTCam", collections=[INPUT_RUN])
    (exp, det), path = sorted(repo.files.items())[0]
    values = propertylist_values(repo.sim, raft(policy_camera), exp, det)
    values["AMP_MEDIAN_0"] *= 1.01
    write_propertylist(path, values)
    with pytest.raises(ConflictError, match="--replace"):
        ingest_butler(reg, str(repo.root), instrument="LSSTCam", collections=[INPUT_RUN])
    report = ingest_butler(
        reg, str(repo.root), instrument="LSSTCam", collections=[INPUT_RUN], replace=True
    )
    assert report.n_replaced == 1


def test_unknown_collection_and_bad_where_are_one_line_errors(reg, repo) -> None:
    for kwargs in (
        {"collections": ["no/such/run"]},
        {"collections": [INPUT_RUN], "where": "exposure.nonsense ==== 3"},
    ):
        with pytest.raises(InputError) as err:
            ingest_butler(reg, str(repo.root), instrument="LSSTCam", **kwargs)
        assert "\n" not in str(err.value)
    _assert_nothing_written(reg)


def test_an_unknown_amplifier_is_refused_before_anything_is_written(
    reg, repo, policy_camera
) -> None:
    (exp, det), path = sorted(repo.files.items())[2]
    values = propertylist_values(repo.sim, raft(policy_camera), exp, det)
    values["AMP_NAME_4"] = "C99"  # a well-formed file naming an amplifier the camera lacks
    write_propertylist(path, values)
    with pytest.raises(InputError, match="unknown amplifier 'C99'") as err:
        ingest_butler(reg, str(repo.root), instrument="LSSTCam", collections=[INPUT_RUN])
    assert str(path) in str(err.value)
    _assert_nothing_written(reg)  # the exposures of the same call were not written either
