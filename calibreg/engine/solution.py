"""The result of one decomposition ``B ≈ G·E``: what the registry stores as a calibration version.

A solution is immutable (frozen dataclass, read-only arrays) because a published calibration
version is never modified; a caller who wants to change numbers must make a new solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .quality import FLAG_BITS, MISSING_REASONS, REJECTION_REASONS, QualityThresholds, flag_names

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
    row_errors, exp_errors : numpy.ndarray
        float64, shapes ``(n_row,)`` and ``(n_exp,)``: standard errors of ``G`` (same units
        as ``G``) and of ``E`` (units of the input), from the weighted least-squares normal
        matrix in the reported gauge, times ``error_scale`` (see
        :mod:`calibreg.engine.uncertainty`). The relative error is ``row_errors /
        row_scales``. NaN for rows and exposures without data, and everywhere when the
        system is too large to factor or ``errors=False`` was asked for, or (count weights)
        when ``dof`` is 0.
    error_scale : float
        The factor applied to the unit-weight errors: ``sqrt(chi2 / dof)`` for count weights
        (the weights give relative precisions only), 1 for inverse-variance weights (the
        sigmas claim absolute ones; then ``chi2 / dof`` says whether they are right).
    chi2 : float
        ``Σ w r²`` over the used entries (``r`` the log residual).
    dof : int
        Degrees of freedom: used entries − active rows − active exposures + 1 (the data are
        one connected block).
    chi2_row, chi2_exp : numpy.ndarray
        float64, ``(n_row,)`` / ``(n_exp,)``: ``Σ w r²`` per row and per exposure.
    dof_row, dof_exp : numpy.ndarray
        float64, ``(n_row,)`` / ``(n_exp,)``: degrees of freedom per row and exposure,
        ``Σ (1 − h)`` over its used entries with ``h`` the entry's leverage (exact; each set
        sums to ``dof``). When errors are not computed, the first-order leverages
        ``w (1/D_row + 1/D_exp − 1/Σw)`` are used instead.
    rms_dof, rms_dof_row, rms_dof_exp : float, numpy.ndarray
        The rms (as ``rms``, ``rms_row``, ``rms_exp``) corrected for the degrees of freedom
        the fit used up: ``rms · sqrt(n_used / dof)``; an estimate of the per-entry scatter
        (relative), NaN where ``dof`` is 0.
    row_flags, exp_flags : numpy.ndarray
        uint16 bitmasks, ``(n_row,)`` / ``(n_exp,)``: bit ``i`` is ``quality.FLAGS[i]``
        (``no_data``, ``stuck``, ``few_exposures``, ``few_rows``, ``mostly_rejected``,
        ``high_rms``, ``weak_link``); see :mod:`calibreg.engine.quality`.
    weak_link_entries : int
        Entries joining the two blocks of the weakest link found (its nodes carry the
        ``weak_link`` flag); 0 if none, −1 if not checked (errors not computed).
    missing_rows, missing_exposures, missing_reasons : numpy.ndarray
        The entries that could not be used at all (row index int64, exposure index int64,
        reason int8 code into ``quality.MISSING_REASONS``), in row-major order.
    rejected_rows, rejected_exposures, rejected_residuals, rejected_reasons : numpy.ndarray
        The valid entries the robust fit rejected: row and exposure (int64), log residual
        against the final model (float64), reason (int8 code into
        ``quality.REJECTION_REASONS``: ``clipped`` or ``stuck_row``). Empty for the other
        methods. ``n_rejected`` is their number.
    variance : str
        For inverse-variance weights, where the background in ``N·B²/σ²`` came from:
        ``"model"`` (``G·E``, iterated; unbiased) or ``"data"`` (the measured ``B``).
    quality : QualityThresholds
        The thresholds the flags were computed with.
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
    row_errors: np.ndarray
    exp_errors: np.ndarray
    error_scale: float
    chi2: float
    dof: int
    chi2_row: np.ndarray
    chi2_exp: np.ndarray
    dof_row: np.ndarray
    dof_exp: np.ndarray
    rms_dof: float
    rms_dof_row: np.ndarray
    rms_dof_exp: np.ndarray
    row_flags: np.ndarray
    exp_flags: np.ndarray
    weak_link_entries: int
    missing_rows: np.ndarray
    missing_exposures: np.ndarray
    missing_reasons: np.ndarray
    rejected_rows: np.ndarray
    rejected_exposures: np.ndarray
    rejected_residuals: np.ndarray
    rejected_reasons: np.ndarray
    variance: str
    quality: QualityThresholds

    #: Array fields, frozen in ``__post_init__`` (and what a store must persist per element).
    ARRAY_FIELDS = (
        "exp_scales",
        "row_scales",
        "model",
        "log_residuals",
        "used",
        "rms_row",
        "rms_exp",
        "row_flagged",
        "exp_flagged",
        "row_errors",
        "exp_errors",
        "chi2_row",
        "chi2_exp",
        "dof_row",
        "dof_exp",
        "rms_dof_row",
        "rms_dof_exp",
        "row_flags",
        "exp_flags",
        "missing_rows",
        "missing_exposures",
        "missing_reasons",
        "rejected_rows",
        "rejected_exposures",
        "rejected_residuals",
        "rejected_reasons",
    )

    def __post_init__(self) -> None:
        # Freeze the arrays too: a frozen dataclass alone would still let callers edit a
        # stored version's numbers in place.
        for name in self.ARRAY_FIELDS:
            arr = getattr(self, name)
            if isinstance(arr, np.ndarray):
                arr.flags.writeable = False

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_row, n_exp)``, the shape of the background matrix that was solved."""
        return (int(self.row_scales.shape[0]), int(self.exp_scales.shape[0]))

    @property
    def reduced_chi2(self) -> float:
        """``chi2 / dof`` (NaN when ``dof`` is 0)."""
        return self.chi2 / self.dof if self.dof > 0 else float("nan")

    @property
    def reduced_chi2_row(self) -> np.ndarray:
        """``chi2_row / dof_row`` per row (NaN where a row has no degree of freedom)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.dof_row > 1e-9, self.chi2_row / self.dof_row, np.nan)

    @property
    def reduced_chi2_exp(self) -> np.ndarray:
        """``chi2_exp / dof_exp`` per exposure (NaN where an exposure has none)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.dof_exp > 1e-9, self.chi2_exp / self.dof_exp, np.nan)

    @property
    def n_missing(self) -> int:
        """Entries that could not be used at all (see ``missing_reasons``)."""
        return int(self.missing_rows.size)

    def row_flag_names(self, row: int) -> tuple[str, ...]:
        """Names of the flags set on ``row``."""
        return flag_names(int(self.row_flags[row]))

    def exp_flag_names(self, exp: int) -> tuple[str, ...]:
        """Names of the flags set on exposure ``exp``."""
        return flag_names(int(self.exp_flags[exp]))

    def has_flag(self, name: str, *, axis: str = "row") -> np.ndarray:
        """Boolean mask of the rows (``axis="row"``) or exposures carrying flag ``name``."""
        flags = self.row_flags if axis == "row" else self.exp_flags
        return (flags & FLAG_BITS[name]) != 0

    def missing_reason_names(self) -> list[str]:
        """``missing_reasons`` as names."""
        return [MISSING_REASONS[int(c)] for c in self.missing_reasons]

    def rejected_reason_names(self) -> list[str]:
        """``rejected_reasons`` as names."""
        return [REJECTION_REASONS[int(c)] for c in self.rejected_reasons]
