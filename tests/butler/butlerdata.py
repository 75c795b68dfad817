"""Real butler repositories in temporary directories, filled with a simulated flat sequence.

The repository starts from the real ``butler export`` of two LSSTCam exposures (instrument,
detectors 10/11, filter z_20...), then gets the remaining detectors of raft R02 and the
simulated exposures as dimension records, and one ``cpFlatProc_metadata`` PropertyList file per
(exposure, detector), written as cpFlatMeasure writes them and ingested into a RUN collection
the way a butler user would (``butler ingest-files``). The simulation's truth is kept.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from calibreg.formats import CameraSpec, write_propertylist
from calibreg.services.simulate import SimulatedFlats, simulate_flats

DATA = Path(__file__).resolve().parents[1] / "data"
EXPORT = DATA / "butler" / "lsstcam-subset.yaml"
POLICY = DATA / "cameras" / "obs_lsst" / "policy"
INPUT_RUN = "LSSTCam/calib/cpFlatMeasure/sim"
FILTER = "z_20"  # the filter of the real export
DAY_OBS = 20260114  # the simulated sequence's day (simulate.T0_TAI_NS)


@dataclasses.dataclass
class Repo:
    """A butler repository with a simulated sequence in it."""

    root: Path
    sim: SimulatedFlats
    detectors: list[int]
    files: dict[tuple[int, int], Path]


def raft(camera: CameraSpec, name: str = "R02") -> CameraSpec:
    """The camera restricted to one raft (nine detectors keep tests quick)."""
    dets = [d for d in camera.detectors if d.name.startswith(f"{name}_")]
    return CameraSpec(name=camera.name, detectors=dets, source_format=camera.source_format)


def propertylist_values(sim: SimulatedFlats, camera: CameraSpec, exp: int, det: int) -> dict:
    """cpFlatMeasure's statistics keys for one (exposure, detector) of the simulation."""
    rows = sim.stats[(sim.stats["exposure"] == exp) & (sim.stats["detector"] == det)]
    det_row = rows[rows["amp"].isna()].iloc[0]
    values: dict = {
        "DETECTOR_MEDIAN": float(det_row["median"]),
        "DETECTOR_SIGMA": float(det_row["sigma"]),
        "DETECTOR_N": int(det_row["n_pixels"]),
    }
    amps = rows[rows["amp"].notna()].set_index("amp")
    spec = next(d for d in camera.detectors if d.id == det)
    for i, amp in enumerate(sorted(spec.amplifiers, key=lambda a: a.index)):
        row = amps.loc[amp.name]
        values[f"AMP_NAME_{i}"] = amp.name
        values[f"AMP_MEDIAN_{i}"] = float(row["median"])
        values[f"AMP_SIGMA_{i}"] = float(row["sigma"])
        values[f"AMP_N_{i}"] = int(row["n_pixels"])
    return values


def make_repo(
    root: Path, camera: CameraSpec, *, n_exposures: int = 8, seed: int = 3, files_dir: Path
) -> Repo:
    """Make a repository at ``root`` holding a simulated sequence on ``camera``'s detectors."""
    from lsst.daf.butler import Butler, DatasetRef, DatasetType, FileDataset

    from calibreg.butler._lsst import tai_ns_timespan

    sim = simulate_flats(
        camera,
        physical_filter=FILTER,
        n_exposures=n_exposures,
        seed=seed,
        first_exposure=2026011400100,
        n_missing_frames=1,
    )
    Butler.makeRepo(str(root))
    butler = Butler.from_config(str(root), writeable=True)
    butler.import_(filename=str(EXPORT), transfer=None)
    reg = butler.registry
    have = {r.id for r in butler.query_dimension_records("detector", instrument="LSSTCam")}
    reg.insertDimensionData(
        "detector",
        *[
            {
                "instrument": "LSSTCam",
                "id": d.id,
                "full_name": d.name,
                "raft": d.name.split("_")[0],
                "name_in_raft": d.name.split("_")[1],
                "purpose": d.purpose,
            }
            for d in camera.detectors
            if d.id not in have
        ],
    )
    exps = sim.exposures
    day_begin = int(exps["timespan_begin"].min()) - 3_600_000_000_000
    reg.insertDimensionData(
        "day_obs",
        {
            "instrument": "LSSTCam",
            "id": DAY_OBS,
            "timespan": tai_ns_timespan(day_begin, day_begin + 86_400_000_000_000),
        },
    )
    reg.insertDimensionData("group", *[{"instrument": "LSSTCam", "name": g} for g in exps["group"]])
    reg.insertDimensionData(
        "exposure",
        *[
            {
                "instrument": "LSSTCam",
                "id": int(e.id),
                "physical_filter": FILTER,
                "obs_id": e.obs_id,
                "observation_type": e.observation_type,
                "observation_reason": e.observation_reason,
                "science_program": e.science_program,
                "group": e.group,
                "target_name": e.target_name,
                "day_obs": int(e.day_obs),
                "seq_num": int(e.seq_num),
                "seq_start": int(e.seq_num),
                "seq_end": int(e.seq_num),
                "exposure_time": float(e.exposure_time),
                "dark_time": float(e.dark_time),
                "timespan": tai_ns_timespan(int(e.timespan_begin), int(e.timespan_end)),
                "has_simulated": True,
                "can_see_sky": False,
            }
            for e in exps.itertuples(index=False)
        ],
    )
    dtype = DatasetType(
        "cpFlatProc_metadata",
        ("instrument", "exposure", "detector"),
        "PropertyList",
        universe=butler.dimensions,
    )
    reg.registerDatasetType(dtype)
    reg.registerRun(INPUT_RUN)
    files_dir.mkdir(parents=True, exist_ok=True)
    missing = set(sim.missing)
    datasets, files = [], {}
    for exp in exps["id"].astype(int):
        for det in (d.id for d in camera.detectors):
            if (exp, det) in missing:
                continue
            path = files_dir / f"flatStats_{exp}_{det}.yaml"
            write_propertylist(path, propertylist_values(sim, camera, exp, det))
            ref = DatasetRef(
                dtype, {"instrument": "LSSTCam", "exposure": exp, "detector": det}, run=INPUT_RUN
            )
            datasets.append(FileDataset(path=str(path), refs=[ref]))
    butler.ingest(*datasets, transfer="copy")
    for ref in butler.query_datasets("cpFlatProc_metadata", INPUT_RUN, limit=None):
        files[(int(ref.dataId["exposure"]), int(ref.dataId["detector"]))] = Path(
            butler.getURI(ref).ospath
        )
    return Repo(root, sim, [d.id for d in camera.detectors], files)


def truth_ratio_rms(sim: SimulatedFlats, rows) -> float:
    """Rms of solved G / true G over live amplifiers, after removing the common scale."""
    merged = sim.amp_truth.merge(rows, on=["detector", "amp"])
    live = ~merged["flagged"].to_numpy(bool)
    ratio = (merged["scale"] / merged["g"]).to_numpy(float)[live]
    ratio /= np.median(ratio)
    return float(np.sqrt(np.mean((ratio - 1) ** 2)))
