"""The result of one decomposition ``B ≈ G·E``: what the registry stores as a calibration version.

A solution is immutable (frozen dataclass, read-only arrays) because a published calibration
version is never modified; a caller who wants to change numbers must make a new solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ScaleSolution"]


@dataclass(frozen=True, eq=False)
class ScaleSolution:
    """Exposure and row scales of a flat-field normalization, with the fit's diagnostics.

    ``eq=False``: arrays have no single truth value, so equality would be ill-defined; compare
    fields with ``np.testing`` instead.

    Attributes
    ----------
    exp_scales : numpy.ndarray
        ``E``, shape ``(n_exp,)``: the lamp level of each exposure, in the units of the input.
        NaN for an exposure that had no valid entry (see ``exp_flagged``).
    row_scales : numpy.ndarray
        ``G``, shape ``(n_row,)``: the relative response of each row (detector or amplifier),
        normalised so that its count-weighted arithmetic mean is 1.
    model : numpy.ndarray
        ``G[:, None] * E[None, :]``, shape ``(n_row, n_exp)``: the fitted background (the
        reference returns ``E / G`` here, which is not the model it fitted). NaN in the
        columns of flagged exposures.
    log_residuals : numpy.ndarray
        ``log B - log model``, shape ``(n_row, n_exp)``; NaN where the entry was not used in
        the final fit.
    used : numpy.ndarray
        Boolean mask, shape ``(n_row, n_exp)``, of the entries the final fit used (valid and
        not rejected).
    iterations : int
        Work done: sweeps for ``alternating``, conjugate-gradient steps for ``exact``,
        rejection passes (fits) for ``robust``.
    converged : bool
        Whether the iteration met its tolerance (and, for ``robust``, the mask stopped
        changing) before its iteration limit.
    method, weights : str
        The options the solution was computed with, so that a stored version says how.
    rms_row, rms_exp : numpy.ndarray
        Weighted rms of the used log residuals per row (shape ``(n_row,)``) and per exposure
        (shape ``(n_exp,)``), NaN where no data. A log residual is a relative error, so 0.01
        is about 1 %.
    rms : float
        Weighted rms of all used log residuals.
    n_rejected : int
        Valid entries rejected by robust clipping (0 for the other methods).
    row_flagged : numpy.ndarray
        Boolean, shape ``(n_row,)``: rows with no usable entry; their ``G`` is the geometric
        mean of the other rows' ``G`` so that downstream code that divides by ``G`` keeps
        working.
    exp_flagged : numpy.ndarray
        Boolean, shape ``(n_exp,)``: exposures with no usable entry; their ``E`` is NaN
        because nothing measured it.
    """

    exp_scales: np.ndarray
    row_scales: np.ndarray
    model: np.ndarray
    log_residuals: np.ndarray
    used: np.ndarray
    iterations: int
    converged: bool
    method: str
    weights: str
    rms_row: np.ndarray
    rms_exp: np.ndarray
    rms: float
    n_rejected: int
    row_flagged: np.ndarray
    exp_flagged: np.ndarray

    def __post_init__(self) -> None:
        # Freeze the arrays too: a frozen dataclass alone would still let callers edit a
        # stored version's numbers in place.
        for name in (
            "exp_scales",
            "row_scales",
            "model",
            "log_residuals",
            "used",
            "rms_row",
            "rms_exp",
            "row_flagged",
            "exp_flagged",
        ):
            arr = getattr(self, name)
            if isinstance(arr, np.ndarray):
                arr.flags.writeable = False

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_row, n_exp)``, the shape of the background matrix that was solved."""
        return (int(self.row_scales.shape[0]), int(self.exp_scales.shape[0]))
