"""A small LSSTCam registry for the web view's tests (and their screenshots).

Real camera geometry (the bundled ``lsstCamSim.yaml``: 189 science detectors x 16
amplifiers), simulated flats (:func:`calibreg.services.simulate.simulate_flats`: a dead
amplifier, missing frames) ingested and solved through the ordinary write path, then a tag
history with something to show:

* ``flat-norm/recommended``: the AMP version certified from the first flat, open-ended; then
  its second half decertified (kept as faded history) and a second AMP version (solved on the
  first eight flats only) certified there, so the timeline has two certified ranges and one
  decertified one;
* a tag whose name is an HTML injection (:data:`XSS_TAG`), holding the DETECTOR version.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

INSTRUMENT = "LSSTCam"
FILTER = "r_57"
TAG = "flat-norm/recommended"
XSS_TAG = "<script>window.__xss=1</script><b>bold</b>"
N_EXPOSURES = 12
SEED = 11


@dataclasses.dataclass(frozen=True)
class WebSample:
    """What :func:`build` wrote."""

    detector_version: int
    amp_version: int
    amp_subset_version: int
    exposure_ids: tuple[int, ...]
    exposure_begins: tuple[int, ...]  # TAI ns
    split_tai_ns: int  # where the tag passes from amp_version to amp_subset_version
    dead: tuple[int, str]


def camera_path() -> Path:
    return Path(str(resources.files("calibreg") / "data" / "cameras" / "lsstCamSim.yaml"))


def build(registry: Any) -> WebSample:
    """Ingest, solve and certify the sample into an empty, migrated registry."""
    from calibreg.domain.quantum import Selection
    from calibreg.formats import read_camera
    from calibreg.services.simulate import simulate_flats
    from calibreg.services.solve import SolveRequest, solve_quantum

    camera = read_camera(camera_path(), instrument=INSTRUMENT)
    registry.ingest_camera(camera, source="lsstCamSim.yaml", sha256="0" * 64, instrument=INSTRUMENT)
    sim = simulate_flats(camera, n_exposures=N_EXPOSURES, seed=SEED, physical_filter=FILTER)
    registry.ingest_exposures(sim.exposures, source="exposures.csv", sha256="1" * 64)
    registry.ingest_stats(sim.stats, source="stats.parquet", sha256="2" * 64, instrument=INSTRUMENT)
    exposures = sim.exposures.sort_values("id")
    ids = tuple(int(e) for e in exposures["id"])
    begins = tuple(int(b) for b in exposures["timespan_begin"])

    det = solve_quantum(registry, SolveRequest(INSTRUMENT, FILTER, level="DETECTOR"))
    amp = solve_quantum(registry, SolveRequest(INSTRUMENT, FILTER, level="AMP"))
    sub = solve_quantum(
        registry,
        SolveRequest(INSTRUMENT, FILTER, level="AMP", selection=Selection(exposures=ids[:8])),
    )
    split = begins[6]
    registry.certify(amp["version_id"], TAG, begins[0])
    registry.decertify(TAG, INSTRUMENT, FILTER, split, None)
    registry.certify(sub["version_id"], TAG, split, None, force=True)
    registry.certify(det["version_id"], XSS_TAG, begins[0])
    return WebSample(
        detector_version=int(det["version_id"]),
        amp_version=int(amp["version_id"]),
        amp_subset_version=int(sub["version_id"]),
        exposure_ids=ids,
        exposure_begins=begins,
        split_tai_ns=split,
        dead=(int(sim.dead[0]), str(sim.dead[1])),
    )
