"""An independent oracle of cp_pipe's ``measureScales`` and cp_pipe-shaped task inputs.

Written with plain loops from the description of the reference (not from calibreg's engine)
so that agreement means something. It reproduces the reference's numerics, including the
masked-average quirk (defect 5): ``np.average`` over a masked array leaves masked entries out
of the numerator but keeps their weights in the denominator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _masked_average(values: np.ndarray, weights: np.ndarray, valid: np.ndarray) -> float:
    """``np.average(masked, weights=w)`` as NumPy computes it."""
    if not valid.any():
        return math.nan
    num = 0.0
    for v, w, ok in zip(values, weights, valid, strict=True):
        if ok:
            num += w * v
    return num / float(np.sum(weights))


def reference_scales(
    bg: np.ndarray, counts: np.ndarray | None = None, iterations: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """``(E, G)`` of the reference algorithm after ``iterations`` sweeps."""
    bg = np.asarray(bg, dtype=float)
    n_row, n_exp = bg.shape
    counts = np.ones_like(bg) if counts is None else np.asarray(counts, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_meas = np.log(bg)
    valid = np.isfinite(log_meas)

    def exp_means(log_g: np.ndarray) -> np.ndarray:
        return np.array(
            [
                _masked_average(log_meas[:, j] - log_g, counts[:, j], valid[:, j])
                for j in range(n_exp)
            ]
        )

    log_g = np.zeros(n_row)
    log_e = exp_means(log_g)
    for _ in range(iterations):
        log_g = np.array(
            [
                _masked_average(log_meas[i, :] - log_e, counts[i, :], valid[i, :])
                for i in range(n_row)
            ]
        )
        bad = np.isnan(log_g)
        if bad.any():
            log_g[bad] = log_g[~bad].mean()
        log_e = exp_means(log_g)
        row_weights = counts.sum(axis=1)
        flux = float(np.sum(np.exp(log_g) * row_weights) / np.sum(row_weights))
        log_g -= math.log(flux)
    log_e = exp_means(log_g)
    return np.exp(log_e), np.exp(log_g)


# --------------------------------------------------------------------------- inputs


class Amp:
    """An amplifier as afw's camera hands it out: only ``getName()`` is used."""

    def __init__(self, name: str) -> None:
        self._name = name

    def getName(self) -> str:
        return self._name


class PropertyListLike:
    """A metadata object with only ``.get`` (returning None when absent), as PropertyList."""

    def __init__(self, values: dict) -> None:
        self._values = dict(values)

    def get(self, key: str, default=None):
        return self._values.get(key, default)


def make_camera(amps_per_detector: dict[int, int]) -> dict[int, list[Amp]]:
    """Detector id → amplifiers named C00, C01... (LSST-like)."""
    return {
        det: [Amp(f"C{i // 8}{i % 8}") for i in range(n)] for det, n in amps_per_detector.items()
    }


@dataclass
class FlatSet:
    """A synthetic flat sequence: truth, the matrices, and the cp_pipe inputs."""

    exposures: list[int]
    detectors: list[int]
    camera: dict[int, list[Amp]]
    det_bg: np.ndarray  # (n_det, n_exp)
    det_n: np.ndarray
    amp_bg: np.ndarray  # (n_amp_rows, n_exp), rows detector by detector in camera order
    amp_n: np.ndarray
    amp_rows: list[tuple[int, str]]


def make_flats(
    amps_per_detector: dict[int, int],
    exposures: list[int],
    *,
    noise: float = 1e-3,
    seed: int = 7,
) -> FlatSet:
    """Backgrounds ``G·E`` times log-normal noise, with pixel counts that vary by row."""
    rng = np.random.default_rng(seed)
    camera = make_camera(amps_per_detector)
    detectors = sorted(amps_per_detector)
    amp_rows = [(d, a.getName()) for d in detectors for a in camera[d]]
    n_exp = len(exposures)
    e_true = rng.uniform(1000.0, 5000.0, n_exp)
    g_amp = rng.uniform(0.8, 1.2, len(amp_rows))
    amp_n = rng.integers(900_000, 1_100_000, (len(amp_rows), n_exp)).astype(float)
    amp_bg = g_amp[:, None] * e_true[None, :] * np.exp(noise * rng.standard_normal(amp_n.shape))
    det_bg = np.empty((len(detectors), n_exp))
    det_n = np.empty((len(detectors), n_exp))
    start = 0
    for i, d in enumerate(detectors):
        stop = start + len(camera[d])
        det_n[i] = amp_n[start:stop].sum(axis=0)
        det_bg[i] = (amp_bg[start:stop] * amp_n[start:stop]).sum(axis=0) / det_n[i]
        start = stop
    return FlatSet(exposures, detectors, camera, det_bg, det_n, amp_bg, amp_n, amp_rows)


def cp_pipe_inputs(flats: FlatSet, *, plain: bool = True) -> tuple[list, list[dict]]:
    """``(inputMDs, inputDims)`` as cpFlatMeasure writes them (SPEC §4 key names)."""
    mds, dims = [], []
    row = 0
    for i, det in enumerate(flats.detectors):
        n_amp = len(flats.camera[det])
        for j, exp in enumerate(flats.exposures):
            md: dict = {
                "DETECTOR_MEDIAN": float(flats.det_bg[i, j]),
                "DETECTOR_SIGMA": 5.0,
                "DETECTOR_N": int(flats.det_n[i, j]),
            }
            for a in range(n_amp):
                md[f"AMP_NAME_{a}"] = flats.camera[det][a].getName()
                md[f"AMP_MEDIAN_{a}"] = float(flats.amp_bg[row + a, j])
                md[f"AMP_SIGMA_{a}"] = 5.0
                md[f"AMP_N_{a}"] = int(flats.amp_n[row + a, j])
            mds.append(md if plain else PropertyListLike(md))
            dims.append({"instrument": "TestCam", "exposure": exp, "detector": det})
        row += n_amp
    return mds, dims
