"""Realistic simulated flat sequences on a real camera geometry (demo, tests, benchmarks).

The truth is multiplicative, ``B[amp, exp] = G[amp] · E[exp] · (1 + ε)``:

* ``E``: lamp level drifting smoothly across the sequence (a few per cent) with small
  exposure-to-exposure jitter;
* ``G``: per-amplifier gain ratio (the camera's measured gains, relative) times a radial
  vignetting of the focal plane (detector offset from the boresight) times a small per-amp QE;
* ``ε``: the statistical error of a clipped mean over ``n_pixels`` pixels plus a small
  per-entry systematic floor;
* a dead amplifier (median NaN), and a few frames missing entirely (no statistics rows).

Detector-level statistics are the pixel-weighted means of each detector's live amplifiers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from calibreg.formats.camera import CameraSpec

#: TAI ns of 2026-01-15T03:00:00 TAI, the first simulated exposure's start.
T0_TAI_NS = 1_768_446_000 * 1_000_000_000


@dataclasses.dataclass
class SimulatedFlats:
    """A simulated flat sequence and its generating truth."""

    instrument: str
    physical_filter: str
    exposures: pd.DataFrame  # butler exposure fields (TAI ns timespans)
    stats: pd.DataFrame  # long table: exposure, detector, amp, median, sigma, n_pixels
    amp_truth: pd.DataFrame  # detector, amp, g (unnormalized truth)
    exp_truth: pd.DataFrame  # exposure, e
    dead: tuple[int, str]  # the dead amplifier
    missing: list[tuple[int, int]]  # (exposure, detector) frames without statistics
    entry_noise: float  # rms relative error of one amplifier statistic (statistical + floor)


def simulate_flats(
    camera: CameraSpec,
    *,
    instrument: str = "LSSTCam",
    physical_filter: str = "r_57",
    n_exposures: int = 40,
    seed: int = 0,
    purposes: tuple[str, ...] = ("SCIENCE",),
    first_exposure: int = 2026011500100,
    n_missing_frames: int = 3,
    systematic: float = 2e-4,
) -> SimulatedFlats:
    """Simulate ``n_exposures`` flats of ``camera``'s detectors of the given purposes."""
    rng = np.random.default_rng(seed)
    dets = [d for d in camera.detectors if d.purpose in purposes]
    det_ids, amp_names, gains, radius = [], [], [], []
    for det in dets:
        r = float(np.hypot(np.nan_to_num(det.offset_x), np.nan_to_num(det.offset_y)))
        for amp in det.amplifiers:
            det_ids.append(det.id)
            amp_names.append(amp.name)
            gains.append(amp.gain if np.isfinite(amp.gain) else 1.0)
            radius.append(r)
    det_ids = np.asarray(det_ids)
    gains = np.asarray(gains)
    radius = np.asarray(radius)
    n_amp = len(det_ids)
    vignetting = 1.0 - 0.08 * (radius / max(radius.max(), 1.0)) ** 2
    qe = 1.0 + 0.01 * rng.standard_normal(n_amp)
    g = (gains.mean() / gains) * vignetting * qe  # ADU response relative to the mean

    t = np.linspace(0.0, 1.0, n_exposures)
    level = 12_000.0 * (1.0 + 0.04 * np.sin(2.2 * t) - 0.03 * t)
    e = level * (1.0 + 0.003 * rng.standard_normal(n_exposures))

    n_pix = rng.integers(990_000, 1_018_000, size=(n_amp, n_exposures)).astype(np.int64)
    truth = g[:, None] * e[None, :]
    sigma = np.sqrt(truth * 1.4) + 5.0  # shot + read noise per pixel, in ADU
    err = sigma / np.sqrt(n_pix) / truth + systematic * rng.standard_normal(truth.shape)
    median = truth * (1.0 + err)
    dead_row = int(rng.integers(n_amp))
    median[dead_row, :] = np.nan
    n_pix[dead_row, :] = 0

    live_rows = np.arange(n_amp) != dead_row
    exp_ids = first_exposure + np.arange(n_exposures)
    frame = pd.DataFrame(
        {
            "exposure": np.repeat(exp_ids[None, :], n_amp, axis=0).ravel(),
            "detector": np.repeat(det_ids, n_exposures),
            "amp": np.repeat(np.asarray(amp_names, dtype=object), n_exposures),
            "median": median.ravel(),
            "sigma": sigma.ravel(),
            "n_pixels": n_pix.ravel(),
        }
    )
    # A few frames lost entirely (a detector read out badly in one exposure).
    missing = []
    unique_dets = np.unique(det_ids)
    for _ in range(n_missing_frames):
        missing.append((int(rng.choice(exp_ids)), int(rng.choice(unique_dets))))
    drop = np.zeros(len(frame), dtype=bool)
    for exp, det in missing:
        drop |= (frame["exposure"].to_numpy() == exp) & (frame["detector"].to_numpy() == det)
    frame = frame.loc[~drop].reset_index(drop=True)

    # Detector level: pixel-weighted mean of the live amplifiers of each (exposure, detector).
    live = frame[np.isfinite(frame["median"]) & (frame["n_pixels"] > 0)]
    w = live["n_pixels"].astype(float)
    agg = (
        live.assign(wm=live["median"] * w, ws=live["sigma"] * w, w=w)
        .groupby(["exposure", "detector"], sort=True)[["wm", "ws", "w"]]
        .sum()
        .reset_index()
    )
    det_frame = pd.DataFrame(
        {
            "exposure": agg["exposure"],
            "detector": agg["detector"],
            "amp": None,
            "median": agg["wm"] / agg["w"],
            "sigma": agg["ws"] / agg["w"],
            "n_pixels": agg["w"].astype(np.int64),
        }
    )
    stats = pd.concat([det_frame, frame], ignore_index=True)

    begin = T0_TAI_NS + np.arange(n_exposures, dtype=np.int64) * 45_000_000_000
    exposures = pd.DataFrame(
        {
            "instrument": instrument,
            "id": exp_ids,
            "physical_filter": physical_filter,
            "obs_id": [f"MC_C_20260115_{i:06d}" for i in range(100, 100 + n_exposures)],
            "observation_type": "flat",
            "observation_reason": "flat",
            "science_program": "BLOCK-T123",
            "group": [f"2026-01-15T03:{i // 60:02d}:{i % 60:02d}" for i in range(n_exposures)],
            "target_name": "FlatField position",
            "day_obs": 20260114,
            "seq_num": np.arange(100, 100 + n_exposures),
            "exposure_time": 15.0,
            "dark_time": 15.3,
            "timespan_begin": begin,
            "timespan_end": begin + 15_000_000_000,
        }
    )
    return SimulatedFlats(
        instrument=instrument,
        physical_filter=physical_filter,
        exposures=exposures,
        stats=stats,
        amp_truth=pd.DataFrame({"detector": det_ids, "amp": amp_names, "g": g}),
        exp_truth=pd.DataFrame({"exposure": exp_ids, "e": e}),
        dead=(int(det_ids[dead_row]), amp_names[dead_row]),
        missing=missing,
        entry_noise=float(
            np.sqrt(
                np.mean((sigma / np.sqrt(n_pix.clip(1)) / truth)[live_rows] ** 2) + systematic**2
            )
        ),
    )


def normalize_like_solution(g: np.ndarray, counts: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Scale a truth ``G`` by calibreg's convention: count-weighted arithmetic mean of 1.

    Weights are each row's total count over its valid entries (SPEC §6).
    """
    w = np.where(valid, counts, 0.0).sum(axis=1)
    ok = np.isfinite(g) & (w > 0)
    return g / (np.sum(w[ok] * g[ok]) / np.sum(w[ok]))
