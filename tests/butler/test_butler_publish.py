"""``publish butler``: all or nothing in the butler, refusals in one line, traceable datasets."""

from __future__ import annotations

import pytest

from calibreg.butler import publish_butler
from calibreg.client import Registry
from calibreg.errors import CalibregError, ConflictError, InputError, NotFoundError
from calibreg.services.solve import SolveRequest, solve_quantum
from tests.butler.butlerdata import FILTER, INPUT_RUN

TAG = "flat-norm/test"
COLLECTION = "LSSTCam/calib/test"


@pytest.fixture
def solved(engine, policy_camera, repo):
    """A registry with the repository's inputs, one AMP version certified in TAG."""
    from calibreg.butler import ingest_butler

    reg = Registry(engine=engine)
    reg.ingest_camera(policy_camera, source="policy/lsstCam", sha256="camera")
    ingest_butler(reg, str(repo.root), instrument="LSSTCam", collections=[INPUT_RUN])
    version = solve_quantum(reg, SolveRequest("LSSTCam", FILTER, level="AMP"))["version_id"]
    begin = int(repo.sim.exposures["timespan_begin"].min())
    reg.certify(version, TAG, begin, begin + 10**12)
    return reg, version, begin


def _butler(repo, writeable: bool = False):
    from lsst.daf.butler import Butler

    return Butler.from_config(str(repo.root), writeable=writeable)


def _state(repo) -> dict:
    """Everything publish could have touched: collections, dataset types, datasets, files."""
    butler = _butler(repo)
    reg = butler.registry
    types = sorted(t.name for t in reg.queryDatasetTypes())
    assoc = sorted(
        (str(a.ref.id), a.collection, a.timespan.nsec if a.timespan else None)
        for name in types
        if name.startswith("cpFlatNormScales")
        for a in reg.queryDatasetAssociations(name, collections=...)
    )
    files = sorted(str(p.relative_to(repo.root)) for p in repo.root.rglob("*") if p.is_file())
    return {
        "collections": sorted(reg.queryCollections()),
        "types": types,
        "associations": assoc,
        "files": [f for f in files if not f.endswith(".sqlite3")],
    }


def _overlapping_certification(repo, begin: int) -> None:
    """Someone else's cpFlatNormScales, certified in COLLECTION over the version's range."""
    from lsst.daf.butler import CollectionType, DatasetType

    from calibreg.butler._lsst import tai_ns_timespan

    butler = _butler(repo, writeable=True)
    dtype = DatasetType(
        "cpFlatNormScales",
        ("instrument", "physical_filter"),
        "StructuredDataDict",
        universe=butler.dimensions,
        isCalibration=True,
    )
    butler.registry.registerDatasetType(dtype)
    butler.registry.registerRun("someone/else")
    ref = butler.put(
        {"expScale": {}, "detScale": {}},
        dtype,
        instrument="LSSTCam",
        physical_filter=FILTER,
        run="someone/else",
    )
    butler.registry.registerCollection(COLLECTION, CollectionType.CALIBRATION)
    butler.registry.certify(COLLECTION, [ref], tai_ns_timespan(begin - 10**9, begin + 10**9))


def test_an_overlapping_certification_leaves_nothing_behind(solved, repo) -> None:
    reg, version, begin = solved
    _overlapping_certification(repo, begin)
    before = _state(repo)
    with pytest.raises(ConflictError) as err:
        publish_butler(
            reg, version, str(repo.root), run="u/me/v1", tag=TAG, calibration_collection=COLLECTION
        )
    message = str(err.value)
    assert "overlaps dataset" in message and "someone/else" in message and "\n" not in message
    assert "nothing was written" in message
    after = _state(repo)
    assert after == before  # no run, no sidecar type, no dataset, no file, same certifications
    assert "u/me/v1" not in after["collections"]
    assert "cpFlatNormScales_calibreg" not in after["types"]


def test_a_failure_midway_removes_what_it_wrote(solved, repo, monkeypatch) -> None:
    from lsst.daf.butler.direct_butler import DirectButler

    reg, version, _ = solved
    before = _state(repo)
    real, calls = DirectButler.put, []

    def failing_put(self, obj, *args, **kwargs):  # the second put (the sidecar) fails
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, obj, *args, **kwargs)

    monkeypatch.setattr(DirectButler, "put", failing_put)
    with pytest.raises(CalibregError, match=r"nothing was written: .*No space left"):
        publish_butler(
            reg, version, str(repo.root), run="u/me/v1", tag=TAG, calibration_collection=COLLECTION
        )
    assert len(calls) == 2
    assert _state(repo) == before  # the dataset types registered by the call are gone too


def test_publish_without_tag_writes_scales_sidecar_and_run_documentation(solved, repo) -> None:
    reg, version, _ = solved
    result = publish_butler(reg, version, str(repo.root), run="u/me/plain")
    assert result["changed"] and result["certified"] == [] and result["collection"] is None
    butler = _butler(repo)
    ref = butler.find_dataset(
        "cpFlatNormScales", instrument="LSSTCam", physical_filter=FILTER, collections="u/me/plain"
    )
    assert butler.get(ref) == reg.cp_pipe(version)
    assert ref.datasetType.isCalibration()  # so a later publish can certify it
    doc = butler.registry.getCollectionDocumentation("u/me/plain")
    assert f"calibreg version {version}" in doc
    # publishing it again with a tag only certifies the dataset already there
    again = publish_butler(reg, version, str(repo.root), run="u/me/plain", tag=TAG)
    assert again["changed"] and again["dataset_id"] == result["dataset_id"]
    assert again["certified"] == [list(r) for r in again_ranges(reg, version)]
    assert again["collection"] == f"LSSTCam/calib/{TAG}"
    found = _butler(repo).find_dataset(
        "cpFlatNormScales",
        instrument="LSSTCam",
        physical_filter=FILTER,
        collections=again["collection"],
        timespan=_instant(again["certified"][0][0]),
    )
    assert str(found.id) == result["dataset_id"]


def again_ranges(reg: Registry, version: int) -> list[tuple]:
    return [
        (c["valid_begin"], c["valid_end"])
        for c in reg.certifications(TAG)
        if c["version_id"] == version
    ]


def _instant(t: int):
    from calibreg.butler._lsst import tai_ns_timespan

    return tai_ns_timespan(t, t + 1)


def test_refusals(solved, repo) -> None:
    reg, version, _ = solved
    with pytest.raises(NotFoundError, match="not certified in tag 'other'"):
        publish_butler(reg, version, str(repo.root), run="u/me/v1", tag="other")
    with pytest.raises(NotFoundError, match="no calibration version 999"):
        publish_butler(reg, 999, str(repo.root), run="u/me/v1")
    with pytest.raises(InputError, match="is a RUN, not a CALIBRATION"):
        publish_butler(
            reg, version, str(repo.root), run="u/me/v1", tag=TAG, calibration_collection=INPUT_RUN
        )
    from lsst.daf.butler import DatasetType

    butler = _butler(repo, writeable=True)  # as cp_pipe registers its output: not a calibration
    butler.registry.registerDatasetType(
        DatasetType(
            "cpPlain",
            ("instrument", "physical_filter"),
            "StructuredDataDict",
            universe=butler.dimensions,
        )
    )
    with pytest.raises(InputError, match="non-calibration type"):
        publish_butler(reg, version, str(repo.root), run="u/me/v2", tag=TAG, dataset_type="cpPlain")
    publish_butler(reg, version, str(repo.root), run="u/me/plain")
    second = solve_quantum(reg, SolveRequest("LSSTCam", FILTER, level="DETECTOR"))["version_id"]
    with pytest.raises(ConflictError, match="already holds cpFlatNormScales"):
        publish_butler(reg, second, str(repo.root), run="u/me/plain")
