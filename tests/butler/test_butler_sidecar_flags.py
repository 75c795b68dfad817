"""The butler sidecar of a published version names its flagged rows and says why."""

from __future__ import annotations

from calibreg.butler import publish_butler
from calibreg.client import Registry
from calibreg.services.solve import SolveRequest, solve_quantum
from tests.butler.butlerdata import FILTER, INPUT_RUN


def test_sidecar_carries_the_dead_amplifier_by_name_with_its_reason(
    engine, policy_camera, repo
) -> None:
    from lsst.daf.butler import Butler

    from calibreg.butler import ingest_butler

    reg = Registry(engine=engine)
    reg.ingest_camera(policy_camera, source="policy/lsstCam", sha256="camera")
    ingest_butler(reg, str(repo.root), instrument="LSSTCam", collections=[INPUT_RUN])
    version = solve_quantum(reg, SolveRequest("LSSTCam", FILTER, level="AMP"))["version_id"]
    publish_butler(reg, version, str(repo.root), run="u/me/flags")
    butler = Butler.from_config(str(repo.root))
    side = butler.get(
        "cpFlatNormScales_calibreg",
        instrument="LSSTCam",
        physical_filter=FILTER,
        collections="u/me/flags",
    )
    dead_detector, dead_amp = repo.sim.dead
    name = next(d.name for d in policy_camera.detectors if d.id == dead_detector)
    flags = side["quality_flags"]
    assert {"detector": dead_detector, "detector_name": name, "amp": dead_amp} in [
        {k: r[k] for k in ("detector", "detector_name", "amp")} for r in flags["rows"]
    ]
    dead_row = next(
        r for r in flags["rows"] if r["amp"] == dead_amp and r["detector"] == dead_detector
    )
    assert dead_row["flags"] == ["no_data"]
    assert flags["n_rows"] == len(flags["rows"]) == len(reg.version(version)["flagged"]["rows"])
    assert flags["help"]["no_data"].startswith("no usable entry")
