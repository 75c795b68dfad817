"""A stored version's fit laid out for looking at: inputs, scales, residuals, what was left out.

:class:`VersionFit` is what the plots of a fit read (``calibreg plot residuals|row|exposures``).
The registry builds it from a version's stored scales and flags, the rejected entries stored
with it, and the quantum's statistics (which cannot change once a version uses them).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["VersionFit"]


@dataclasses.dataclass(frozen=True, eq=False)
class VersionFit:
    """One version's fit, as arrays over its rows (detectors or amplifiers) and exposures.

    Attributes
    ----------
    version_id : int
        The version.
    instrument, physical_filter, level, method, weights : str
        Its quantum and how it was solved.
    exposure_ids : numpy.ndarray
        int64, ``(n_exp,)``: the exposures, in the version's exposure order.
    exposure_time : numpy.ndarray
        float64, ``(n_exp,)``: exposure time (s), NaN where unknown.
    exposure_begin : numpy.ndarray
        float64, ``(n_exp,)``: exposure start as an MJD (TAI), NaN where unknown.
    seq_num : numpy.ndarray
        float64, ``(n_exp,)``: the exposure's sequence number within its day, NaN where
        unknown.
    row_detectors : numpy.ndarray
        int64, ``(n_row,)``: detector id of each row.
    row_detector_names : tuple[str, ...]
        Detector name of each row (e.g. ``R22_S11``).
    row_amp_names : tuple[str | None, ...]
        Amplifier name of each row (``None`` at DETECTOR level).
    background : numpy.ndarray
        float64, ``(n_row, n_exp)``: the clipped-mean backgrounds ``B`` (input units, e.g.
        ADU); NaN where no statistic was stored.
    row_scales, row_errors : numpy.ndarray
        float64, ``(n_row,)``: ``G`` and its standard error (NaN where not computed).
    exp_scales, exp_errors : numpy.ndarray
        float64, ``(n_exp,)``: ``E`` (input units) and its standard error.
    log_residuals : numpy.ndarray
        float64, ``(n_row, n_exp)``: ``log B − log(G·E)`` wherever ``B > 0`` is finite and the
        row and exposure have scales, used or not; NaN elsewhere.
    used, rejected, missing : numpy.ndarray
        bool, ``(n_row, n_exp)``: entries the final fit used; valid entries the robust fit
        rejected; entries that could not be used at all. Disjoint, and together every entry.
    row_flags, exp_flags : numpy.ndarray
        uint16 bitmasks, ``(n_row,)`` / ``(n_exp,)``: bit ``i`` is
        ``calibreg.engine.quality.FLAGS[i]``.
    """

    version_id: int
    instrument: str
    physical_filter: str
    level: str
    method: str
    weights: str
    exposure_ids: np.ndarray
    exposure_time: np.ndarray
    exposure_begin: np.ndarray
    seq_num: np.ndarray
    row_detectors: np.ndarray
    row_detector_names: tuple[str, ...]
    row_amp_names: tuple[str | None, ...]
    background: np.ndarray
    row_scales: np.ndarray
    row_errors: np.ndarray
    exp_scales: np.ndarray
    exp_errors: np.ndarray
    log_residuals: np.ndarray
    used: np.ndarray
    rejected: np.ndarray
    missing: np.ndarray
    row_flags: np.ndarray
    exp_flags: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_row, n_exp)``."""
        return (int(self.row_scales.shape[0]), int(self.exp_scales.shape[0]))

    def row_label(self, row: int) -> str:
        """``DETECTOR`` or ``DETECTOR/AMP`` name of a row."""
        amp = self.row_amp_names[row]
        det = self.row_detector_names[row]
        return det if amp is None else f"{det}/{amp}"

    def find_rows(self, detector: int | str, amp: str | None = None) -> np.ndarray:
        """Row indices of a detector (id or name), optionally one amplifier by name.

        Raises
        ------
        KeyError
            If no row matches.
        """
        if isinstance(detector, str) and not detector.lstrip("-").isdigit():
            det_mask = np.array([n == detector for n in self.row_detector_names], dtype=bool)
        else:
            det_mask = self.row_detectors == int(detector)
        if amp is not None:
            det_mask &= np.array([a == amp for a in self.row_amp_names], dtype=bool)
        rows = np.flatnonzero(det_mask)
        if rows.size == 0:
            what = f"detector {detector}" + ("" if amp is None else f" amplifier {amp}")
            raise KeyError(f"version {self.version_id} has no row for {what}")
        return rows
