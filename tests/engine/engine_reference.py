"""Test oracle: the reference (cp_pipe ``CpFlatNormalizationTask``) algorithm, defects included.

Written from the description in issue #3 so that tests can show the reference's wrong numbers
next to calibreg's right ones. It is deliberately *not* part of the package.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class ReferenceResult:
    """What the reference's measureScales returns."""

    exp_scales: np.ndarray
    det_scales: np.ndarray
    bg_model: np.ndarray


def reference_measure_scales(
    bg: np.ndarray, counts: np.ndarray | None = None, iterations: int = 10
) -> ReferenceResult:
    """Alternating weighted means in log space, as the reference does them.

    ``np.average`` on a masked array with a plain weights array keeps the weights of masked
    entries in the denominator (defect 5); an all-zero weight column raises
    ``ZeroDivisionError`` (defect 7); ``bg_model`` is ``E / G`` (defect 4).
    """
    bg = np.asarray(bg, dtype=float)
    n_row, n_exp = bg.shape
    counts = np.ones_like(bg) if counts is None else np.asarray(counts, dtype=float)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        log_meas = np.log(bg)
        log_meas = np.ma.masked_array(log_meas, ~np.isfinite(log_meas))

        def exp_means(log_g: np.ndarray) -> np.ndarray:
            return np.array(
                [np.average(log_meas[:, j] - log_g, weights=counts[:, j]) for j in range(n_exp)]
            )

        log_g = np.zeros(n_row)
        log_e = exp_means(log_g)
        for _ in range(iterations):
            log_g = np.array(
                [np.average(log_meas[i, :] - log_e, weights=counts[i, :]) for i in range(n_row)]
            )
            bad = np.isnan(log_g)
            if np.any(bad):
                log_g[bad] = log_g[~bad].mean()
            log_e = exp_means(log_g)
            flux = np.average(np.exp(log_g), weights=np.sum(counts, axis=1))
            log_g -= np.log(flux)
        log_e = exp_means(log_g)
    return ReferenceResult(
        exp_scales=np.exp(log_e),
        det_scales=np.exp(log_g),
        bg_model=np.exp(log_e[None, :] - log_g[:, None]),
    )


def reference_run_amp(
    medians: Mapping[tuple[int, int], Sequence[float]],
    n_pixels: Mapping[tuple[int, int], Sequence[float]],
    detectors: Sequence[int],
    exposures: Sequence[int],
    amp_names: Mapping[int, Sequence[str]],
    iterations: int = 10,
) -> dict:
    """The reference's ``run()`` at AMP level, with defects 1–3.

    ``medians[(exposure, detector)]`` lists the amplifier medians in amp order. The matrix has
    ``n_det × n_amp(first detector)`` rows (defect 3); a detector's rows start at
    ``position × n_amp(that detector)`` (so mixed amp counts overwrite rows); a non-finite
    median overwrites the *background* with 1.0 instead of zeroing its count (defect 1); and
    ``detScale`` is read from row ``detIdx + ampIdx`` (defect 2).
    """
    det_map = {d: i for i, d in enumerate(detectors)}
    exp_map = {e: i for i, e in enumerate(exposures)}
    n_amp_first = len(amp_names[detectors[0]])
    bg = np.zeros((len(detectors) * n_amp_first, len(exposures)))
    counts = np.ones_like(bg)
    for (exposure, det), values in medians.items():
        n_amp = len(amp_names[det])
        det_idx = det_map[det] * n_amp
        exp_idx = exp_map[exposure]
        for amp_idx in range(n_amp):
            value = values[amp_idx]
            count = n_pixels[(exposure, det)][amp_idx]
            row = det_idx + amp_idx
            if np.isfinite(value):
                bg[row][exp_idx] = value
                counts[row][exp_idx] = count
            else:
                bg[row][exp_idx] = np.nan
                bg[row][exp_idx] = 1.0  # defect 1: meant counts[row][exp_idx] = 0
    result = reference_measure_scales(bg, counts, iterations=iterations)
    out: dict = {"expScale": {}, "detScale": {}}
    for det_idx, det in enumerate(detectors):
        out["expScale"][det] = {}
        out["detScale"][det] = {}
        for amp_idx, amp in enumerate(amp_names[det]):
            out["expScale"][det][amp] = {
                e: float(result.exp_scales[j]) for j, e in enumerate(exposures)
            }
            out["detScale"][det][amp] = float(result.det_scales[det_idx + amp_idx])  # defect 2
    return out


# --------------------------------------------------------------------------- test data


def make_truth(
    n_row: int, n_exp: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row responses around 1, lamp levels over a decade, pixel counts in the thousands."""
    G = rng.uniform(0.6, 1.4, n_row)
    E = np.exp(rng.uniform(np.log(2e3), np.log(5e4), n_exp))
    N = rng.integers(500, 4000, size=(n_row, n_exp)).astype(float)
    return G, E, N


def connected_mask(n_row: int, n_exp: int, frac: float, rng: np.random.Generator) -> np.ndarray:
    """Random missing entries, but row 0 and exposure 0 complete so the data stay connected."""
    valid = rng.random((n_row, n_exp)) >= frac
    valid[0, :] = True
    valid[:, 0] = True
    return valid


def normalized(G: np.ndarray, E: np.ndarray, counts: np.ndarray, valid: np.ndarray):
    """The truth under calibreg's convention: count-weighted mean of G over valid entries is 1."""
    c = np.where(valid, counts, 0.0).sum(axis=1)
    level = float(c @ G) / float(c.sum())
    return G / level, E * level


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a) / np.asarray(b) - 1.0)))


def weighted_sse(B: np.ndarray, w: np.ndarray, G: np.ndarray, E: np.ndarray) -> float:
    """Σ w (log B − log G − log E)² over entries with positive weight: the objective."""
    used = w > 0
    r = np.log(np.where(used, B, 1.0)) - np.log(G)[:, None] - np.log(E)[None, :]
    return float(np.sum(np.where(used, w * r * r, 0.0)))
