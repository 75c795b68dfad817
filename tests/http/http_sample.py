"""A tiny synthetic registry for the HTTP tests and the lookup benchmark.

The HTTP layer only reads, so its tests need versions that went through the real write path
(ingest → assemble → measure_scales → persist), not hand-made rows: a version record, its
scales and its cp_pipe export must be what the rest of calibreg would produce.

The camera "TestCam" mixes detector kinds on purpose (two 2-amplifier detectors and one
1-amplifier detector, SPEC §6 defect 3) and one amplifier is dead (a NaN median, §2), so the
API's NaN → null path and AMP-level shapes are exercised.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

INSTRUMENT = "TestCam"
FILTER = "r_03"
TAG = "flat-norm/recommended"
#: UTC start of the synthetic flat sequence; exposures are one minute apart.
T0_UTC = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)
EXPOSURE_IDS = (2024030100001, 2024030100002, 2024030100003, 2024030100004)
#: Detector id → amplifier names.
AMPS: dict[int, list[str]] = {0: ["C00", "C01"], 1: ["C00", "C01"], 2: ["C00"]}
DETECTOR_NAMES = {0: "R00_S00", 1: "R00_S01", 2: "R00_SW0"}
DEAD_AMP = (1, "C01")  # (detector, amp) whose median is NaN in every exposure


@dataclasses.dataclass(frozen=True)
class Sample:
    """What :func:`build_sample` wrote."""

    detector_versions: tuple[int, ...]
    amp_version: int
    certified: bool
    exposure_ids: tuple[int, ...] = EXPOSURE_IDS

    @property
    def all_versions(self) -> tuple[int, ...]:
        """Every version id, oldest first."""
        return tuple(sorted((*self.detector_versions, self.amp_version)))


def camera_spec() -> Any:
    """The synthetic camera as the formats layer describes cameras."""
    from calibreg.formats import AmplifierSpec, CameraSpec, DetectorSpec

    detectors = []
    for det, amps in AMPS.items():
        width = 100 * len(amps)
        detectors.append(
            DetectorSpec(
                id=det,
                name=DETECTOR_NAMES[det],
                serial=f"SN-{det:03d}",
                physical_type="ITL",
                purpose="SCIENCE" if len(amps) > 1 else "WAVEFRONT",
                bbox_x0=0,
                bbox_y0=0,
                bbox_x1=width - 1,
                bbox_y1=99,
                offset_x=float(det) * 42.0,
                offset_y=0.0,
                amplifiers=[
                    AmplifierSpec(
                        name=name,
                        index=i,
                        bbox_x0=100 * i,
                        bbox_y0=0,
                        bbox_width=100,
                        bbox_height=100,
                        gain=1.5 + 0.1 * i,
                    )
                    for i, name in enumerate(amps)
                ],
            )
        )
    return CameraSpec(name=INSTRUMENT, detectors=detectors, source_format="calibreg")


def tai_ns(utc: dt.datetime) -> int:
    """TAI ns of a UTC instant, through the registry's own converter."""
    from calibreg.formats.timescale import utc_to_tai_ns

    return utc_to_tai_ns(utc)


def exposures_frame() -> pd.DataFrame:
    """Four flat exposures, one minute apart, 15 s each."""
    rows = []
    for seq, exp in enumerate(EXPOSURE_IDS, start=1):
        begin = T0_UTC + dt.timedelta(minutes=seq - 1)
        rows.append(
            {
                "instrument": INSTRUMENT,
                "id": exp,
                "physical_filter": FILTER,
                "obs_id": f"TC_O_20240301_{seq:06d}",
                "observation_type": "flat",
                "observation_reason": "flat",
                "science_program": "calib",
                "group": "flatseq-1",
                "target_name": None,
                "day_obs": 20240301,
                "seq_num": seq,
                "exposure_time": 15.0,
                "dark_time": 15.2,
                "timespan_begin": tai_ns(begin),
                "timespan_end": tai_ns(begin + dt.timedelta(seconds=15)),
            }
        )
    frame = pd.DataFrame(rows)
    for col in ("day_obs", "seq_num", "timespan_begin", "timespan_end"):
        frame[col] = frame[col].astype("Int64")
    return frame


def stats_frame() -> pd.DataFrame:
    """Backgrounds ``B = G · E`` (with a little deterministic noise) at both levels."""
    rng = np.random.default_rng(20240301)
    lamp = np.array([1000.0, 1100.0, 950.0, 1200.0])
    rows = []
    src = 0
    for det, amps in AMPS.items():
        for i, amp in enumerate(amps):
            gain = 0.9 + 0.05 * det + 0.02 * i
            for j, exp in enumerate(EXPOSURE_IDS):
                src += 1
                dead = (det, amp) == DEAD_AMP
                median = np.nan if dead else gain * lamp[j] * (1 + 1e-4 * rng.standard_normal())
                rows.append((exp, det, amp, median, 5.0, 0 if dead else 10_000, src))
        for j, exp in enumerate(EXPOSURE_IDS):
            src += 1
            level = (0.9 + 0.05 * det) * lamp[j] * (1 + 1e-4 * rng.standard_normal())
            rows.append((exp, det, None, level, 5.0, 10_000 * len(amps), src))
    frame = pd.DataFrame(
        rows, columns=["exposure", "detector", "amp", "median", "sigma", "n_pixels", "source_row"]
    )
    frame["detector"] = frame["detector"].astype("Int64")
    frame["detector_name"] = None
    return frame


def _solve(registry: Any, spec: Any) -> int:
    from calibreg.engine import measure_scales

    started = dt.datetime.now(dt.UTC)
    data = registry.assemble(spec)
    solution = measure_scales(data.background, data.counts, sigma=data.sigma, method="exact")
    persisted = registry.persist(
        data,
        solution,
        config={"method": "exact", "level": spec.level},
        task_metadata={"test": {"scalars": {"n_rows": data.shape[0]}}},
        started_at=started,
    )
    return persisted.id


def build_sample(registry: Any, *, certify: bool = True) -> Sample:
    """Ingest TestCam and write three versions (two DETECTOR, one AMP).

    When the registry can certify (``Registry.certify``, being added by the lead) and
    ``certify`` is true, the newest DETECTOR version is certified in :data:`TAG` from the first
    exposure on, open-ended, so ``/lookup`` has something to find.
    """
    from calibreg.domain.quantum import QuantumSpec, Selection

    registry.ingest_camera(camera_spec(), source="testcam.yaml", sha256="0" * 64)
    registry.ingest_exposures(exposures_frame(), source="exposures.csv", sha256="1" * 64)
    registry.ingest_stats(stats_frame(), source="stats.csv", sha256="2" * 64, instrument=INSTRUMENT)

    det_all = QuantumSpec(INSTRUMENT, FILTER, "DETECTOR")
    det_sub = QuantumSpec(INSTRUMENT, FILTER, "DETECTOR", Selection(exposures=EXPOSURE_IDS[:3]))
    v1 = _solve(registry, det_all)
    v2 = _solve(registry, det_sub)
    v3 = _solve(registry, QuantumSpec(INSTRUMENT, FILTER, "AMP"))
    sample = Sample(detector_versions=(v1, v2), amp_version=v3, certified=False)
    if certify and hasattr(registry, "certify"):
        sample = certify_sample(registry, sample)
    return sample


def certify_sample(registry: Any, sample: Sample) -> Sample:
    """Certify the newest DETECTOR version in :data:`TAG` from the first exposure on."""
    registry.certify(sample.detector_versions[-1], TAG, tai_ns(T0_UTC))
    return dataclasses.replace(sample, certified=True)
