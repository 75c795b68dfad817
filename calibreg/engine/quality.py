"""Quality flags of a solve: which rows and exposures a calibration scientist should look at.

Every row (detector or amplifier) and every exposure gets an integer bitmask; bit ``i`` set
means ``FLAGS[i]`` applies. The names, their bits and one line of explanation each are
module-level constants so that storage, the CLI and plots use the same vocabulary:

``no_data``
    No usable entry: every background was missing or invalid (rows: ``G`` is a fill-in, the
    geometric mean of the others; exposures: ``E`` is NaN).
``stuck``
    (rows) The row does not follow the exposure level: the slope of ``log B`` against
    ``log E`` over its entries is below ``stuck_max_slope`` (a good row has slope 1; a stuck
    amplifier that reads a constant, e.g. 0.5 ADU in every exposure, has slope 0) and differs
    from 1 by more than ``stuck_significance`` standard errors of the slope.
``few_exposures`` / ``few_rows``
    A row measured in, or an exposure measured by, fewer than ``min_entries`` entries or
    fewer than ``min_entries_fraction`` × the median count of its peers (its scale rests on
    too little data to be checked).
``mostly_rejected``
    More than ``max_rejected_fraction`` of its valid entries were rejected by the robust fit.
``high_rms``
    Its normalised scatter ``sqrt(χ²/dof)`` is more than ``high_rms_factor`` times the median
    of its peers (rows compared with rows, exposures with exposures), and its rms (corrected
    for degrees of freedom) is above ``high_rms_floor`` (so that rounding-level scatter of
    noiseless data is never flagged).
``weak_link``
    It sits on the smaller side of a weak link: two blocks of the data joined by at most
    ``weak_link_max_entries`` entries whose conductance (weight crossing the cut / the smaller
    block's total weight) is at most ``weak_link_max_conductance``. The number of joining
    entries is reported as ``ScaleSolution.weak_link_entries``.

Entries that were not used are recorded with a reason: ``MISSING_REASONS`` for input that
could not be used at all, ``REJECTION_REASONS`` for valid input the robust fit rejected.

Weak-link search: spectral partitioning. The second eigenvector of the normalised Laplacian
of the bipartite graph rows–exposures (the Fiedler vector; Fiedler 1973, *Czech. Math. J.*
23, 298) orders the nodes so that a sweep over prefixes finds a cut of small conductance;
Cheeger's inequality ``λ₂/2 ≤ φ_min ≤ sqrt(2 λ₂)`` (Chung 1997, *Spectral Graph Theory*,
ch. 2) lets the search stop at once when ``λ₂ > 2 · weak_link_max_conductance``: then no
cut that weak exists. The eigenvector comes from subspace iteration with the Cholesky factor
the error computation already made (shift-and-invert at 0), so it costs a few triangular
solves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from scipy import linalg

from calibreg.domain.quality import (
    EXPOSURE_FLAGS,
    FLAG_BITS,
    FLAG_HELP,
    FLAGS,
    MISSING_REASONS,
    REJECTION_REASONS,
    ROW_FLAGS,
    flag_names,
)

from .uncertainty import SchurFactor

__all__ = [
    "EXPOSURE_FLAGS",
    "FLAGS",
    "FLAG_BITS",
    "FLAG_HELP",
    "MISSING_REASONS",
    "REJECTION_REASONS",
    "ROW_FLAGS",
    "QualityThresholds",
    "flag_names",
]


@dataclass(frozen=True)
class QualityThresholds:
    """Thresholds of the quality flags (see the module documentation for each flag).

    Attributes
    ----------
    min_entries : int
        ``few_rows`` / ``few_exposures``: fewer used entries than this (default 2: a scale
        fixed by a single number cannot be checked against anything).
    min_entries_fraction : float
        ``few_rows`` / ``few_exposures``: fewer used entries than this fraction of the median
        over its peers (default 0.5).
    stuck_max_slope : float
        ``stuck``: slope of ``log B`` on ``log E`` below this (default 0.5).
    stuck_significance : float
        ``stuck``: and ``1 − slope`` larger than this many standard errors (default 5).
    max_rejected_fraction : float
        ``mostly_rejected``: rejected / valid entries above this (default 0.5).
    high_rms_factor : float
        ``high_rms``: ``sqrt(χ²/dof)`` above this multiple of the peers' median (default 5).
    high_rms_floor : float
        ``high_rms``: and the dof-corrected rms (relative) above this (default 1e-6).
    weak_link_max_entries : int
        ``weak_link``: at most this many entries join the two blocks (default 5).
    weak_link_max_conductance : float
        ``weak_link``: and the cut's conductance is at most this (default 0.1).
    """

    min_entries: int = 2
    min_entries_fraction: float = 0.5
    stuck_max_slope: float = 0.5
    stuck_significance: float = 5.0
    max_rejected_fraction: float = 0.5
    high_rms_factor: float = 5.0
    high_rms_floor: float = 1e-6
    weak_link_max_entries: int = 5
    weak_link_max_conductance: float = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"quality threshold {f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"quality threshold {f.name} must be finite and >= 0, got {value!r}"
                )
        for name in ("min_entries", "weak_link_max_entries"):
            if int(getattr(self, name)) != getattr(self, name):
                raise ValueError(f"quality threshold {name} must be an integer")
        for name in ("min_entries_fraction", "max_rejected_fraction"):
            if getattr(self, name) > 1:
                raise ValueError(f"quality threshold {name} must be <= 1")


# --------------------------------------------------------------------------- per-node tests


def stuck_rows(
    res: np.ndarray, valid: np.ndarray, e: np.ndarray, act_c: np.ndarray, th: QualityThresholds
) -> np.ndarray:
    """Rows whose ``log B`` does not follow ``log E`` (slope test on the log residuals).

    ``res = log B − g − e`` over the valid entries (used or not). A good row has residuals
    flat in ``e`` (slope of ``log B`` on ``e`` = 1 + slope of ``res``); a stuck row has
    ``res ≈ const − e``. Needs three entries and a spread of ``e`` to judge.
    """
    m = valid & act_c[None, :]
    n = np.count_nonzero(m, axis=1).astype(np.float64)
    ec = np.where(act_c, e - (np.mean(e[act_c]) if act_c.any() else 0.0), 0.0)
    complete = bool(m.all())
    r = res if complete else np.where(m, res, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if complete:
            e_bar = np.full(n.shape, ec.sum()) / n
            see = np.full(n.shape, float(ec @ ec))
        else:
            mf = m.view(np.uint8)
            e_bar = np.einsum("ij,j->i", mf, ec) / n
            see = np.einsum("ij,j->i", mf, ec * ec)
        r_bar = r.sum(axis=1) / n
        sxx = see - n * e_bar * e_bar
        sxr = np.einsum("ij,j->i", r, ec) - n * e_bar * r_bar
        srr = np.einsum("ij,ij->i", r, r) - n * r_bar * r_bar
        beta_r = sxr / sxx
        ss = np.maximum(srr - beta_r * sxr, 0.0)
        se = np.sqrt(ss / np.maximum(n - 2.0, 1.0) / sxx)
        slope = 1.0 + beta_r
        judged = (n >= 3) & (sxx > n * 1e-18)
        out = judged & (slope < th.stuck_max_slope)
        out &= (1.0 - slope) > th.stuck_significance * se
    return np.asarray(out, dtype=bool)


def _few(count: np.ndarray, active: np.ndarray, th: QualityThresholds) -> np.ndarray:
    if not active.any():
        return np.zeros_like(active)
    limit = max(float(th.min_entries), th.min_entries_fraction * float(np.median(count[active])))
    return active & (count < limit)


def _high_rms(
    chi2: np.ndarray, dof: np.ndarray, rms_dof: np.ndarray, th: QualityThresholds
) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        nu = np.sqrt(np.where(dof >= 0.5, chi2 / dof, np.nan))
    ok = np.isfinite(nu)
    if not ok.any():
        return np.zeros(chi2.shape, dtype=bool)
    med = float(np.median(nu[ok]))
    out = ok & (nu > th.high_rms_factor * med) & (rms_dof > th.high_rms_floor)
    return np.asarray(out, dtype=bool)


def node_flags(
    *,
    act_r: np.ndarray,
    act_c: np.ndarray,
    valid: np.ndarray,
    used: np.ndarray,
    stuck: np.ndarray,
    chi2_row: np.ndarray,
    dof_row: np.ndarray,
    rms_dof_row: np.ndarray,
    chi2_exp: np.ndarray,
    dof_exp: np.ndarray,
    rms_dof_exp: np.ndarray,
    th: QualityThresholds,
) -> tuple[np.ndarray, np.ndarray]:
    """Row and exposure bitmasks (``uint16``) for every flag but ``weak_link``."""
    bits = FLAG_BITS
    row = np.zeros(valid.shape[0], dtype=np.uint16)
    exp = np.zeros(valid.shape[1], dtype=np.uint16)
    row[~act_r] |= bits["no_data"]
    exp[~act_c] |= bits["no_data"]
    row[stuck] |= bits["stuck"]
    n_used_r, n_used_c = used.sum(axis=1), used.sum(axis=0)
    row[_few(n_used_r, act_r, th)] |= bits["few_exposures"]
    exp[_few(n_used_c, act_c, th)] |= bits["few_rows"]
    n_valid_r, n_valid_c = valid.sum(axis=1), valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac_r = np.where(n_valid_r > 0, 1.0 - n_used_r / n_valid_r, 0.0)
        frac_c = np.where(n_valid_c > 0, 1.0 - n_used_c / n_valid_c, 0.0)
    row[frac_r > th.max_rejected_fraction] |= bits["mostly_rejected"]
    exp[frac_c > th.max_rejected_fraction] |= bits["mostly_rejected"]
    row[_high_rms(chi2_row, dof_row, rms_dof_row, th) & act_r] |= bits["high_rms"]
    exp[_high_rms(chi2_exp, dof_exp, rms_dof_exp, th) & act_c] |= bits["high_rms"]
    return row, exp


# --------------------------------------------------------------------------- weak links

# Subspace iteration: block size, iteration limit, and relative change of the leading Ritz
# value taken as converged.
_BLOCK = 4
_MIN_SWEEPS = 4
_MAX_SWEEPS = 40
_RITZ_TOL = 1e-4
# Kept sides up to this size get a dense eigensolver instead.
_DENSE_EIG_SIDE = 300


def _fiedler(factor: SchurFactor, lam_skip: float) -> tuple[float, np.ndarray]:
    """Smallest non-trivial eigenpair ``(λ₂, x̂)`` of the equilibrated kept-side Laplacian.

    ``Ŝ = L Lᵀ − ŝ ŝᵀ`` (``ŝ = s/‖s‖``, the trivial eigenvector). Small systems: a dense
    symmetric eigensolver. Larger ones: subspace iteration with ``Ŝ_c⁻¹`` (the Cholesky
    factor) on the complement of ``ŝ``, whose largest eigenvalue there is ``1/λ₂``; it stops
    when converged, or when after ``_MIN_SWEEPS`` sweeps the estimate of ``λ₂`` is above
    ``3·lam_skip`` (a ``λ₂`` below ``lam_skip`` would by then dominate the block by orders of
    magnitude). Deterministic (fixed start), so the same data always give the same answer.
    """
    s = factor.s
    n = s.size
    shat = s / np.linalg.norm(s)
    if n <= _DENSE_EIG_SIDE:
        L = np.tril(factor.L).astype(np.float64)
        shat_mat = L @ L.T - np.outer(shat, shat)
        vals, vecs = linalg.eigh(shat_mat, subset_by_index=[0, 1])
        # The smallest is the trivial 0 (along ŝ); the next is λ₂.
        k = 1 if abs(float(shat @ vecs[:, 0])) >= abs(float(shat @ vecs[:, 1])) else 0
        return max(float(vals[k]), 0.0), vecs[:, k]
    p = min(_BLOCK, n - 1)
    rng = np.random.default_rng(0)
    v = rng.standard_normal((n, p))
    v -= np.outer(shat, shat @ v)
    v, _ = np.linalg.qr(v)
    theta_old = 0.0
    theta = np.zeros(p)
    vecs = v
    for sweep in range(1, _MAX_SWEEPS + 1):
        y = linalg.cho_solve((factor.L, True), v.astype(factor.L.dtype), check_finite=False)
        y = y.astype(np.float64)
        y -= np.outer(shat, shat @ y)
        t = v.T @ y
        theta, u = np.linalg.eigh(0.5 * (t + t.T))
        vecs = v @ u
        v, _ = np.linalg.qr(y)
        top = float(theta[-1])
        if abs(top - theta_old) <= _RITZ_TOL * abs(top):
            break
        if sweep >= _MIN_SWEEPS and top > 0 and 1.0 / top > 3.0 * lam_skip:
            break
        theta_old = top
    top = float(theta[-1])
    lam = 1.0 / top if top > 0 else np.inf
    return lam, vecs[:, -1]


def weak_link(
    factor: SchurFactor, th: QualityThresholds
) -> tuple[int, np.ndarray | None, np.ndarray | None]:
    """Find the weakest link; return ``(n_entries, weak_rows, weak_exposures)``.

    ``n_entries`` is 0 and the masks None when no cut within the thresholds exists; the
    masks index the active rows (``factor.rows_idx``) and exposures (``factor.exps_idx``)
    and mark the smaller side of the cut.
    """
    wb = factor.wb
    n_b, n_k = wb.shape
    if n_b < 2 or n_k < 2:
        return 0, None, None
    # The Schur eigenvalue is 1 − σ² for the bipartite graph's singular value σ, whose
    # normalised Laplacian eigenvalue is 1 − σ: λ_bip ≤ t ⇔ λ_S ≤ 1 − (1 − t)².
    t = 2.0 * th.weak_link_max_conductance
    lam_s, xh = _fiedler(factor, 1.0 - (1.0 - min(t, 1.0)) ** 2)
    sigma = math.sqrt(max(1.0 - lam_s, 0.0))
    lam_bip = 1.0 - sigma
    if not lam_bip <= 2.0 * th.weak_link_max_conductance:
        return 0, None, None  # Cheeger: every cut has conductance ≥ λ/2
    x_k = xh / factor.s
    d_b = wb.sum(axis=1)
    x_b = np.einsum("bk,k->b", wb, x_k) / d_b / max(sigma, 1e-12)
    values = np.concatenate([x_b, x_k])
    order = np.argsort(values, kind="stable")
    pos = np.empty(order.size, dtype=np.int64)
    pos[order] = np.arange(order.size)
    bi, ki = np.nonzero(wb)
    wv = wb[bi, ki]
    pb, pk = pos[bi], pos[n_b + ki]
    lo, hi = np.minimum(pb, pk), np.maximum(pb, pk)
    n_nodes = n_b + n_k
    # Entry (b, k) crosses the cut after prefix t (first t nodes in order) iff lo < t <= hi.
    cnt = np.bincount(lo + 1, minlength=n_nodes + 1) - np.bincount(hi + 1, minlength=n_nodes + 1)
    wgt = np.bincount(lo + 1, wv, n_nodes + 1) - np.bincount(hi + 1, wv, n_nodes + 1)
    cut_n = np.cumsum(cnt)[1:n_nodes]
    cut_w = np.cumsum(wgt)[1:n_nodes]
    deg = np.concatenate([d_b, wb.sum(axis=0)])[order]
    vol = np.cumsum(deg)[: n_nodes - 1]
    total = float(deg.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = cut_w / np.minimum(vol, total - vol)
    ok = (cut_n <= th.weak_link_max_entries) & (cut_n > 0) & np.isfinite(phi)
    if not ok.any():
        return 0, None, None
    t_idx = int(np.flatnonzero(ok)[np.argmin(phi[ok])])
    if not phi[t_idx] <= th.weak_link_max_conductance:
        return 0, None, None
    t = t_idx + 1
    in_prefix = np.zeros(n_nodes, dtype=bool)
    in_prefix[order[:t]] = True
    small = in_prefix if vol[t_idx] <= total - vol[t_idx] else ~in_prefix
    weak_b, weak_k = small[:n_b], small[n_b:]
    if factor.rows_big:
        return int(cut_n[t_idx]), weak_b, weak_k
    return int(cut_n[t_idx]), weak_k, weak_b
