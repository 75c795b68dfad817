"""Decompose flat-field backgrounds ``B[row, exp] ≈ G[row] · E[exp]``.

The fit is weighted least squares in log space, ``log B = g[row] + e[exp]``, the model of LSST
cp_pipe's ``CpFlatNormalizationTask.measureScales`` (after PanSTARRS ``pmFlatNormalize``).
Three methods share one data preparation and one output convention:

``exact``
    Solves the normal equations directly. The two-way layout makes them an arrow of two
    diagonal blocks; eliminating the larger side leaves a weighted graph Laplacian on the
    smaller side (the Schur complement), grounded at one node. That system is solved by
    conjugate gradients preconditioned by its diagonal, which on flat-field data (every
    exposure sees most rows) needs a handful of matrix-vector products even for 3024 × 2000;
    tiny systems, and systems on which CG stalls (badly conditioned, weakly connected data),
    are solved with the dense Cholesky factor of the Schur complement as preconditioner (CG
    then is just iterative refinement). Both stop at the rounding floor, so the answer is the
    optimum, not an approximation that depends on an iteration count.
``alternating``
    The reference iteration (alternating weighted means, renormalised each sweep), vectorised
    and with a convergence test. With ``max_iter=10, tol=0`` on complete data it reproduces the
    reference's numbers; on weakly connected data it needs hundreds of sweeps.
``robust``
    ``exact`` inside an iterative rejection of entries whose standardised log residual
    (scaled by the entry's weight and its row's robust scatter, 1.4826 × MAD) exceeds
    ``clip_sigma``, for satellite trails, saturated flats and other gross outliers that would
    otherwise drag a detector's scale. It starts from Tukey's median polish, which outliers
    cannot steer even when they carry most of the weight, and leaves out stuck rows.

Inverse-variance weights ``N B²/σ²`` are by default computed with the model ``G·E`` in place of
the measured ``B`` and iterated to the fixed point (``variance="model"``), which removes the
bias of weights that correlate with the noise.

Every solution also carries standard errors (:mod:`.uncertainty`), χ² and degrees of freedom,
a dof-corrected rms, quality flags with reasons (:mod:`.quality`) and the missing and
rejected entries with their reasons.

Conventions (SPEC §6): non-finite or non-positive backgrounds and zero weights are excluded
together with their weights (the reference keeps the weights, defect 5); the count-weighted
arithmetic mean of ``G`` is 1, with each row weighted by its total count over its valid
entries; a row without valid data gets the geometric mean of the others' ``G`` and is flagged;
an exposure without valid data gets ``E = NaN`` and is flagged. Disconnected data (no chain of
shared rows and exposures linking every part) has no common scale and raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import linalg
from scipy.linalg import get_blas_funcs
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from calibreg.domain.progress import Progress, Throttle, report
from calibreg.domain.vocabulary import Method, Variance, Weights

from .quality import (
    FLAG_BITS,
    MISSING_REASONS,
    REJECTION_REASONS,
    QualityThresholds,
    node_flags,
    stuck_rows,
    weak_link,
)
from .solution import ScaleSolution
from .uncertainty import feasible, unit_covariance

__all__ = ["METHODS", "VARIANCES", "WEIGHTS", "measure_scales", "usable_entries"]

METHODS = Method.values()
WEIGHTS = Weights.values()
#: Where the background in inverse-variance weights ``N B²/σ²`` comes from.
VARIANCES = Variance.values()

# sigma = 1.4826 MAD for a normal distribution.
_MAD_TO_SIGMA = 1.4826
# Lower bound on the robust sigma of log residuals: no background is known to 1e-10 relative,
# and without a floor noiseless data (MAD at the rounding level) would be clipped on rounding.
_SIGMA_FLOOR = 1e-10
# Systems up to this size are factored directly (a few microseconds of LAPACK).
_DENSE_DIRECT_SIDE = 32
# CG steps tried with the diagonal preconditioner before falling back to the dense factor.
_CG_FIRST_LIMIT = 200
# Fallback to the dense factor (cost ~ n_small² · n_big flops) only below this many flops.
_DENSE_FLOP_LIMIT = 2.0e10
# Largest dense Schur complement tried as a fallback when diagonal-preconditioned CG stalls.
_DENSE_MAX_SIDE = 8000
# Breadth-first steps tried with matrix-vector products before asking scipy.sparse.csgraph.
_BFS_STEPS = 8


# --------------------------------------------------------------------------- kernels


def _mv(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``w @ x`` without BLAS.

    Multithreaded BLAS matrix-vector products slow down by 10-70x when the machine's cores are
    shared with other work (threads wait for each other); einsum's single-threaded loop is as
    fast as memory allows and predictable.
    """
    return np.einsum("ij,j->i", w, x)


def _vm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` without BLAS (see ``_mv``)."""
    return np.einsum("i,ij->j", x, w)


# --------------------------------------------------------------------------- validation


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _fmt_index(name: str, idx: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(str(i) for i in idx)}]"


def _as_float_matrix(name: str, value: object, shape: tuple[int, ...] | None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of real numbers: {exc}") from exc
    if shape is None:
        if arr.ndim != 2:
            raise ValueError(
                f"{name} must be a 2-D array (rows × exposures), got shape {arr.shape}"
            )
        if arr.size == 0:
            raise ValueError(f"{name} is empty (shape {arr.shape}): nothing to solve")
    elif arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape} but background has shape {shape}")
    return arr


def _prepare(
    background: np.ndarray,
    counts: np.ndarray | None,
    sigma: np.ndarray | None,
    weights: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Validate the inputs and build ``(y, w, valid, row_norm, missing)``.

    ``y`` is ``log B`` where valid and 0 elsewhere, ``w`` the fit weights (0 where not valid),
    ``row_norm`` each row's total count over its valid entries (the normalization weights),
    ``missing`` the ``(rows, exposures, reason codes)`` of the entries that are not valid.
    All are new arrays: the caller's inputs are never modified.
    """
    B = _as_float_matrix("background", background, None)
    shape = B.shape
    valid = np.isfinite(B)
    valid &= B > 0

    N: np.ndarray | None = None
    counts_finite = True
    if counts is not None:
        N = _as_float_matrix("counts", counts, shape)
        negative = N < 0
        if negative.any():
            idx = _first_index(negative)
            raise ValueError(f"{_fmt_index('counts', idx)} is negative ({float(N[idx])!r})")
        del negative
        # A count is only read where the background is usable: a missing measurement may come
        # with a missing count, but a usable background needs a real pixel count.
        counts_finite = bool(np.isfinite(N.sum()))  # fast path: no NaN or inf anywhere
        if not counts_finite:
            bad = ~np.isfinite(N)
            bad &= valid
            if bad.any():
                idx = _first_index(bad)
                raise ValueError(
                    f"{_fmt_index('counts', idx)} is not finite ({float(N[idx])!r}) where "
                    f"background is {float(B[idx])!r}"
                )

    S: np.ndarray | None = None
    if weights == "inverse-variance":
        if sigma is None:
            raise ValueError("weights='inverse-variance' needs sigma (the background's scatter)")
        S = _as_float_matrix("sigma", sigma, shape)
        negative = S < 0
        if negative.any():
            idx = _first_index(negative)
            raise ValueError(f"{_fmt_index('sigma', idx)} is negative ({float(S[idx])!r})")
        valid &= np.isfinite(S)
        valid &= S > 0
    elif sigma is not None:
        _as_float_matrix("sigma", sigma, shape)  # still refuse a mismatched shape

    # Fit weights, zero (with the entry) wherever the entry is not usable.
    if N is None:
        w = valid.astype(np.float64)
    elif counts_finite:
        w = N * valid
    else:
        w = np.where(valid, N, 0.0)
    if S is not None:
        # var(log B) ≈ σ² / (N B²), so the weight of log B is N B² / σ².
        np.multiply(w, B, out=w, where=valid)
        np.multiply(w, B, out=w, where=valid)
        np.divide(w, S, out=w, where=valid)
        np.divide(w, S, out=w, where=valid)
        valid &= np.isfinite(w)
        valid &= w > 0
        np.putmask(w, ~valid, 0.0)
        row_norm = np.where(valid, 1.0 if N is None else N, 0.0).sum(axis=1)
    else:
        valid &= w > 0
        row_norm = w.sum(axis=1)

    if not valid.any():
        raise ValueError(
            f"no valid entry in background of shape {shape}: every value is non-finite or "
            "non-positive, or has zero weight"
        )
    y = np.zeros(shape)
    np.log(B, out=y, where=valid)
    return y, w, valid, row_norm, _missing_reasons(B, N, S, valid)


def usable_entries(
    background: np.ndarray,
    counts: np.ndarray | None = None,
    *,
    sigma: np.ndarray | None = None,
    weights: str = "counts",
) -> np.ndarray:
    """Return the mask of the entries :func:`measure_scales` can use (the complement: missing).

    The same rule the solver applies: a finite positive background with a positive count and,
    for ``weights="inverse-variance"``, a finite positive sigma and a finite positive weight.

    Parameters
    ----------
    background, counts, sigma : numpy.ndarray
        As for :func:`measure_scales`, shape ``(n_row, n_exp)``.
    weights : str
        ``"counts"`` or ``"inverse-variance"``.

    Returns
    -------
    numpy.ndarray
        bool, ``(n_row, n_exp)``.

    Raises
    ------
    ValueError
        As :func:`measure_scales` does for invalid inputs (and when no entry is usable).
    """
    return _prepare(background, counts, sigma, weights)[2]


def _missing_reasons(
    B: np.ndarray, N: np.ndarray | None, S: np.ndarray | None, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, exposures and reason codes (``quality.MISSING_REASONS``) of the unusable entries."""
    if valid.all():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros(0, dtype=np.int8)
    rows, exps = np.nonzero(~valid)
    rows, exps = rows.astype(np.int64), exps.astype(np.int64)
    code = np.full(rows.size, MISSING_REASONS.index("weight_invalid"), dtype=np.int8)
    if rows.size == 0:
        return rows, exps, code
    b = B[rows, exps]
    open_ = np.ones(rows.size, dtype=bool)  # not yet explained
    for name, bad in (
        ("background_not_finite", ~np.isfinite(b)),
        ("background_not_positive", ~(b > 0)),
        ("zero_count", np.zeros(rows.size, bool) if N is None else ~(N[rows, exps] > 0)),
        (
            "sigma_invalid",
            np.zeros(rows.size, bool)
            if S is None
            else ~(np.isfinite(S[rows, exps]) & (S[rows, exps] > 0)),
        ),
    ):
        hit = open_ & bad
        code[hit] = MISSING_REASONS.index(name)
        open_ &= ~hit
    return rows, exps, code


# --------------------------------------------------------------------------- connectivity


def _components(w: np.ndarray) -> tuple[int, np.ndarray]:
    n_row, n_exp = w.shape
    r, c = np.nonzero(w)
    graph = coo_matrix(
        (np.ones(r.size, dtype=np.int8), (r, c + n_row)), shape=(n_row + n_exp, n_row + n_exp)
    ).tocsr()
    return connected_components(graph, directed=False)


def _check_connected(w: np.ndarray, act_r: np.ndarray, act_c: np.ndarray) -> None:
    """Raise ``ValueError`` unless the valid entries link every active row and exposure.

    The log model ``g[row] + e[exp]`` is determined only up to one constant per connected
    block of the bipartite graph rows–exposures; with two blocks their relative level is
    arbitrary, and any number we returned would be a guess.
    """
    n_act_r, n_act_c = int(act_r.sum()), int(act_c.sum())
    reach_r = np.zeros(w.shape[0], dtype=bool)
    reach_r[int(np.argmax(act_r))] = True
    reach_c = np.zeros(w.shape[1], dtype=bool)
    for _ in range(_BFS_STEPS):
        # Weights are positive, so a positive sum means "linked to something reached".
        new_c = _vm(reach_r.astype(np.float64), w) > 0
        new_r = _mv(w, new_c.astype(np.float64)) > 0
        if int(new_r.sum()) == n_act_r and int(new_c.sum()) == n_act_c:
            return  # everything reached: connected
        if new_r.sum() == reach_r.sum() and new_c.sum() == reach_c.sum():
            break  # the search stopped short of some rows or exposures
        reach_r, reach_c = new_r, new_c
    n_comp, labels = _components(w)
    n_row = w.shape[0]
    row_lab, exp_lab = labels[:n_row], labels[n_row:]
    blocks = []
    for lab in range(n_comp):
        rows = np.flatnonzero((row_lab == lab) & act_r)
        exps = np.flatnonzero((exp_lab == lab) & act_c)
        if rows.size and exps.size:
            blocks.append((rows, exps))
    if len(blocks) <= 1:
        return
    blocks.sort(key=lambda b: (-(b[0].size * b[1].size), int(b[0][0])))

    def _head(idx: np.ndarray) -> str:
        shown = ", ".join(str(int(i)) for i in idx[:5])
        return f"[{shown}{', ...' if idx.size > 5 else ''}]"

    sizes = ", ".join(f"{r.size} rows × {e.size} exposures" for r, e in blocks)
    detail = "; ".join(
        f"block {i + 1}: rows {_head(r)}, exposures {_head(e)}" for i, (r, e) in enumerate(blocks)
    )
    raise ValueError(
        f"no common scale: the valid entries fall apart into {len(blocks)} disconnected "
        f"blocks ({sizes}); no row or exposure links them, so their relative level is "
        f"undetermined ({detail}). Add exposures that see rows of several blocks, or solve "
        "each block separately."
    )


# --------------------------------------------------------------------------- solvers


def _sums(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(D_r, D_c, a, b)``: total weight and weighted sum of ``y`` per row and per exposure."""
    return (
        w.sum(axis=1),
        w.sum(axis=0),
        np.einsum("ij,ij->i", w, y),
        np.einsum("ij,ij->j", w, y),
    )


def _alternating(
    y: np.ndarray,
    w: np.ndarray,
    row_norm: np.ndarray,
    act_r: np.ndarray,
    act_c: np.ndarray,
    max_iter: int,
    tol: float,
    sums: tuple[np.ndarray, ...],
    on_sweep: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Run the reference iteration, vectorised: same update order, same per-sweep normalization.

    Kept so that a registry solve can be compared number for number with cp_pipe's
    ``measureScales``. Masked entries have weight 0 (the reference keeps them in the
    denominator, defect 5), so each mean is ``(Σ w·(y − other)) / Σ w`` over the used entries
    only. Returns ``(g, e, sweeps, converged)``, ``g`` and ``e`` in log scale.
    """
    D_r, D_c, a, b = sums
    inv_r = np.divide(1.0, D_r, out=np.zeros_like(D_r), where=act_r)
    inv_c = np.divide(1.0, D_c, out=np.zeros_like(D_c), where=act_c)
    norm_w = row_norm * act_r
    norm_total = norm_w.sum()

    g = np.zeros(w.shape[0])
    e = b * inv_c
    converged = False
    sweeps = 0
    for sweeps in range(1, max_iter + 1):
        g_new = (a - _mv(w, e)) * inv_r
        e_new = (b - _vm(g_new, w)) * inv_c
        flux = float(norm_w @ np.exp(g_new)) / norm_total
        g_new -= np.log(flux)
        g_new *= act_r
        change = max(
            float(np.max(np.abs(g_new - g), initial=0.0)),
            float(np.max(np.abs(e_new - e), initial=0.0)),
        )
        g, e = g_new, e_new
        if on_sweep is not None:
            on_sweep(sweeps)
        if change <= tol:
            converged = True
            break
    e = (b - _vm(g, w)) * inv_c
    return g, e, sweeps, converged


def _schur_solve(
    w: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    D_r: np.ndarray,
    D_c: np.ndarray,
    act_r: np.ndarray,
    act_c: np.ndarray,
    max_iter: int,
    target: float,
    x0: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Minimise Σ w (y − u[i] − x[j])² keeping the column effects ``x`` (the smaller side).

    Eliminating ``u`` gives ``u = (a − W x) / D_r`` and the Schur complement system
    ``(D_c − Wᵀ D_r⁻¹ W) x = b − Wᵀ D_r⁻¹ a``: a weighted Laplacian of the column graph,
    singular along the constant vector (the G/E degeneracy). It is grounded by fixing the
    best-measured column at 0; the remaining principal block is positive definite when the
    data are connected. CG stops when the largest scaled residual ``|r_j| / D_c[j]`` (the step
    one alternating sweep would still take) is at ``target``.
    """
    n = w.shape[1]
    inv_r = np.divide(1.0, D_r, out=np.zeros_like(D_r), where=act_r)
    inv_c = np.divide(1.0, D_c, out=np.zeros_like(D_c), where=act_c)
    k = int(np.argmax(D_c))
    free = act_c.copy()
    free[k] = False

    def rows_given(x: np.ndarray) -> np.ndarray:
        return (a - _mv(w, x)) * inv_r

    def residual(x: np.ndarray) -> np.ndarray:
        r = b - _vm(rows_given(x), w) - D_c * x
        r[~free] = 0.0
        return r

    def apply_s(p: np.ndarray) -> np.ndarray:
        q = D_c * p - _vm(_mv(w, p) * inv_r, w)
        q[~free] = 0.0
        return q

    x = np.zeros(n) if x0 is None else np.where(free, x0 - x0[k], 0.0)
    if not free.any():
        return rows_given(x), x, 0, True

    n_free = int(free.sum())
    # Diagonal-preconditioned CG first: on flat-field data (every exposure sees most rows) it
    # converges in a handful of matrix-vector products. The dense factor (BLAS-3 work of
    # n_small² · n_big) is used directly only for tiny systems, and as the fallback when CG
    # stalls on a badly conditioned (weakly connected) layout.
    use_dense = n_free <= _DENSE_DIRECT_SIDE
    total_iter = 0
    converged = False
    for attempt in range(2):
        if use_dense:
            precond = _dense_preconditioner(w, inv_r, D_c, free)
        else:
            inv_diag = np.where(free, inv_c, 0.0)

            def precond(r: np.ndarray, inv_diag: np.ndarray = inv_diag) -> np.ndarray:
                return r * inv_diag

        limit = max(max_iter, 50) if use_dense else min(max_iter, _CG_FIRST_LIMIT)
        x, steps, converged = _pcg(apply_s, residual, precond, x, inv_c, limit, target)
        total_iter += steps
        if converged or use_dense or attempt:
            break
        if n_free > _DENSE_MAX_SIDE or float(n_free) ** 2 * w.shape[0] > _DENSE_FLOP_LIMIT:
            # Too big to factor: keep going with CG up to the caller's limit.
            x, steps, converged = _pcg(
                apply_s, residual, precond, x, inv_c, max_iter - total_iter, target
            )
            total_iter += steps
            break
        use_dense = True  # diagonal preconditioning stalled: pay for the direct factor
    return rows_given(x), x, total_iter, converged


def _dense_preconditioner(
    w: np.ndarray, inv_r: np.ndarray, D_c: np.ndarray, free: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """Cholesky factor of the grounded Schur complement, as a preconditioner function."""
    ws = w * np.sqrt(inv_r)[:, None]
    syrk = get_blas_funcs("syrk", (ws,))
    # S = D_c − Wsᵀ Ws; syrk fills the lower triangle, which is all cho_factor reads.
    if ws.flags.f_contiguous and not ws.flags.c_contiguous:
        s = syrk(-1.0, ws, trans=1, lower=1)
    else:
        s = syrk(-1.0, ws.T, trans=0, lower=1)
    del ws
    s[np.diag_indices_from(s)] += D_c
    fixed = ~free
    s[fixed, :] = 0.0
    s[:, fixed] = 0.0
    s[np.flatnonzero(fixed), np.flatnonzero(fixed)] = 1.0
    factor = linalg.cho_factor(s, lower=True, overwrite_a=True, check_finite=False)

    def precond(r: np.ndarray) -> np.ndarray:
        z = linalg.cho_solve(factor, r, check_finite=False)
        z[fixed] = 0.0
        return z

    return precond


def _pcg(
    apply_s: Callable[[np.ndarray], np.ndarray],
    residual: Callable[[np.ndarray], np.ndarray],
    precond: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    inv_c: np.ndarray,
    max_iter: int,
    target: float,
) -> tuple[np.ndarray, int, bool]:
    """Preconditioned conjugate gradients with restarts on the true residual.

    The recursively updated residual drifts from the true one at the rounding level, so the
    stopping test is confirmed on a freshly computed residual and CG is restarted from there;
    it also stops when the true residual no longer improves (the rounding floor).
    """
    steps = 0
    best = np.inf
    while steps < max_iter:
        r = residual(x)
        scaled = float(np.max(np.abs(r) * inv_c))
        if scaled <= target:
            return x, steps, True
        if scaled >= 0.5 * best:
            # A restart that did not halve the residual: we are at the rounding floor.
            return x, steps, scaled <= 1e3 * target
        best = scaled
        z = precond(r)
        p = z.copy()
        rz = float(r @ z)
        while steps < max_iter:
            steps += 1
            q = apply_s(p)
            pq = float(p @ q)
            if not pq > 0.0:
                break
            alpha = rz / pq
            x = x + alpha * p
            r = r - alpha * q
            if float(np.max(np.abs(r) * inv_c)) <= 0.25 * target:
                break
            z = precond(r)
            rz_new = float(r @ z)
            p = z + (rz_new / rz) * p
            rz = rz_new
    r = residual(x)
    return x, steps, float(np.max(np.abs(r) * inv_c)) <= target


def _exact(
    y: np.ndarray,
    w: np.ndarray,
    act_r: np.ndarray,
    act_c: np.ndarray,
    max_iter: int,
    tol: float,
    sums: tuple[np.ndarray, ...],
    x0: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    D_r, D_c, a, b = sums
    # The residual cannot be computed better than a few ulps of the largest |y| (the terms
    # of Σ w (y − g − e) are of that size before they cancel).
    row_mean = np.divide(a, D_r, out=np.zeros_like(D_r), where=act_r)
    y_scale = 1.0 + float(np.max(np.abs(row_mean)))
    target = max(4.0 * np.finfo(np.float64).eps * y_scale, 1e-3 * tol)
    if w.shape[0] >= w.shape[1]:
        g0 = None if x0 is None else x0[1]
        g, e, it, conv = _schur_solve(w, a, b, D_r, D_c, act_r, act_c, max_iter, target, g0)
        return g, e, it, conv
    g0 = None if x0 is None else x0[0]
    e, g, it, conv = _schur_solve(w.T, b, a, D_c, D_r, act_c, act_r, max_iter, target, g0)
    return g, e, it, conv


# --------------------------------------------------------------------------- assembly


def _normalize(
    g: np.ndarray, e: np.ndarray, row_norm: np.ndarray, act_r: np.ndarray, act_c: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fix the degeneracy: count-weighted arithmetic mean of G is 1, E absorbs the level."""
    G = np.exp(np.where(act_r, g, 0.0))
    E = np.exp(np.where(act_c, e, 0.0))
    weights = row_norm * act_r
    level = float(weights @ G) / float(weights.sum())
    G /= level
    E *= level
    # Renormalise once more: one division leaves the mean within an ulp or two of 1.
    level = float(weights @ G) / float(weights.sum())
    G /= level
    E *= level
    if not act_r.all():
        G[~act_r] = np.exp(np.mean(np.log(G[act_r])))
    E[~act_c] = np.nan
    g_out = np.log(G)
    e_out = np.log(np.where(act_c, E, 1.0))
    return G, E, g_out, e_out


# --------------------------------------------------------------------------- weights

# Inverse-variance weights from the model: reweighting passes allowed, and the change of any
# fitted log B (g + e) below which the weights are taken as consistent with the fit (its
# effect on the solution is that times the rms residual, far below the rounding floor).
_MAX_REWEIGHT = 50
_REWEIGHT_TOL = 1e-10


def _model_weights(
    y: np.ndarray, w0: np.ndarray, mask: np.ndarray, g: np.ndarray, e: np.ndarray
) -> np.ndarray:
    """``N (G E)² / σ²`` where ``mask``: the measured-B weight ``w0`` times ``exp(−2 r)``."""
    r = y - g[:, None]
    r -= e[None, :]
    np.clip(r, -25.0, 25.0, out=r)
    r *= -2.0
    np.exp(r, out=r)
    r *= w0
    np.putmask(r, ~mask, 0.0)
    return r


def _fit_change(
    g: np.ndarray,
    e: np.ndarray,
    g0: np.ndarray,
    e0: np.ndarray,
    act_r: np.ndarray,
    act_c: np.ndarray,
) -> float:
    """Bound ``max |Δ(g_i + e_j)|`` between two fits (free of the solvers' gauge)."""
    dg = (g - g0)[act_r]
    de = (e - e0)[act_c]
    if dg.size == 0 or de.size == 0:
        return 0.0
    c = float(np.median(dg))
    return float(np.max(np.abs(dg - c)) + np.max(np.abs(de + c)))


def _fit(
    solve: Callable[..., tuple[np.ndarray, np.ndarray, int, bool]],
    y: np.ndarray,
    w0: np.ndarray,
    used: np.ndarray,
    act_r: np.ndarray,
    act_c: np.ndarray,
    model: bool,
    x0: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    all_valid: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, bool]:
    """Fit on the ``used`` entries; with ``model``, iterate the weights to ``N (G E)²/σ²``.

    Inverse-variance weights computed from the measured ``B`` correlate with its noise (an
    entry that fluctuates up gets more weight), which biases ``log G`` of a noisy row by
    about ``+2σ²``; weights from the model do not. The fixed point is reached by refitting
    with the weights of the last fit (warm-started); returns ``(g, e, w, work, converged)``.
    """
    if model and x0 is not None:
        w = _model_weights(y, w0, used, *x0)
    elif all_valid:
        w = w0  # ``used`` is every valid entry and w0 is 0 elsewhere (never modified)
    else:
        w = np.where(used, w0, 0.0)
    work = 0
    prev = x0
    for _ in range(_MAX_REWEIGHT if model else 1):
        g, e, it, conv = solve(w, prev)
        work += it
        if not model:
            return g, e, w, work, conv
        w_new = _model_weights(y, w0, used, g, e)
        done = prev is not None and _fit_change(g, e, *prev, act_r, act_c) <= _REWEIGHT_TOL
        w, prev = w_new, (g, e)
        if done:
            # The weights of the last fit agree with its model to the tolerance: refit once
            # more would change nothing measurable; report those weights.
            return g, e, w, work, conv
    return g, e, w, work, False


# --------------------------------------------------------------------------- robust

# Start of the robust fit: sweeps of Tukey's median polish.
_POLISH_SWEEPS = 2
# Shrinkage of a row's robust scatter towards the pooled one: weight of the pool in entries.
_ROW_SCALE_PRIOR = 10.0
# The pooled scatter is the median of at most this many standardised residuals.
_POOL_SAMPLE = 1_000_000
# A rejected entry is readmitted only below this fraction of the clipping threshold.
_READMIT = 0.8
# A row's robust scatter is capped at this multiple of the pooled one: beyond it the row is
# broken, not merely noisy, and its entries are clipped (the row is flagged).
_ROW_SCALE_CAP = 30.0


def _masked_median(a: np.ndarray, mask: np.ndarray, axis: int) -> np.ndarray:
    """Median of ``a`` over ``mask`` along ``axis`` (NaN where nothing), vectorised.

    ``np.nanmedian`` falls back to a Python loop over rows for large arrays; one sort of the
    whole array with the masked entries pushed to the end is an order of magnitude faster.
    """
    if mask.all():
        return np.median(a, axis=axis)
    if axis == 0:
        a, mask = a.T, mask.T
    x = np.where(mask, a, np.inf)
    x.sort(axis=1)
    n = np.count_nonzero(mask, axis=1)
    lo = np.maximum((n - 1) // 2, 0)
    hi = np.maximum(n // 2, 0)
    rows = np.arange(x.shape[0])
    with np.errstate(invalid="ignore"):
        med = 0.5 * (x[rows, lo] + x[rows, np.minimum(hi, x.shape[1] - 1)])
    med[n == 0] = np.nan
    return med


def _median_polish(y: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tukey's median polish of the two-way table ``y`` over the valid entries.

    An additive fit by unweighted row and column medians (Tukey 1977, *Exploratory Data
    Analysis*, ch. 11; Hoaglin, Mosteller & Tukey 1983, *Understanding Robust and Exploratory
    Data Analysis*, ch. 6): up to half of a row's or an exposure's entries can be wrong by any
    amount, and it ignores the weights, so outliers that carry most of the weight (saturated
    flats with inverse-variance weights) cannot steer it. Used only as the start of the
    robust fit; the answer is always a weighted least-squares fit.
    """
    resid = np.where(valid, y, 0.0)
    g = np.zeros(y.shape[0])
    e = np.zeros(y.shape[1])
    for _ in range(_POLISH_SWEEPS):
        dg = np.nan_to_num(_masked_median(resid, valid, axis=1))
        g += dg
        resid -= dg[:, None]
        de = np.nan_to_num(_masked_median(resid, valid, axis=0))
        e += de
        resid -= de[None, :]
    return g, e


def _row_median(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median of ``a`` over ``mask`` per row (NaN for rows with nothing)."""
    return _masked_median(a, mask, axis=1)


def _reject(
    res: np.ndarray,
    w: np.ndarray,
    used: np.ndarray,
    valid: np.ndarray,
    k: float,
    stuck: np.ndarray,
) -> np.ndarray:
    """Return the next mask of used entries, judged on the log residuals ``res``.

    Residuals are standardised by each entry's expected scatter before clipping:
    ``z = r · sqrt(w / (1 ∓ h)) / ŝ_row``, where ``w`` is the entry's weight, ``h`` its
    first-order leverage ``w (1/D_row + 1/D_exp − 1/Σw)`` (``1 − h`` for a used entry, whose
    residual the fit has shrunk; ``1 + h`` for a rejected one, judged as a prediction), and
    ``ŝ_row`` the robust scatter of the row (1.4826 × median |z| over its entries with
    redundancy, shrunk towards the pooled value for rows with few entries and capped at
    ``_ROW_SCALE_CAP`` times it). So a row ten times noisier than the others is judged
    against its own noise, not the pool's. An entry is rejected when ``|z| > k``; every valid
    entry is judged on every pass, so one rejected early comes back when the fit says it
    fits. The entries of ``stuck`` rows are rejected whole. Rows and exposures are never
    emptied by clipping (their entries are kept instead); stuck rows may be.
    """
    # ``w`` is 0 wherever the entry is not valid.
    if used is valid:
        D_r, D_c = w.sum(axis=1), w.sum(axis=0)
    else:
        wu = np.where(used, w, 0.0)
        D_r, D_c = wu.sum(axis=1), wu.sum(axis=0)
        del wu
    total = float(D_r.sum())
    inv_r = np.divide(1.0, D_r, out=np.zeros_like(D_r), where=D_r > 0)
    inv_c = np.divide(1.0, D_c, out=np.zeros_like(D_c), where=D_c > 0)
    # f = 1 − h for used entries, 1 + h for the others, h = w (1/D_r + 1/D_c − 1/Σw).
    f = inv_r[:, None] + inv_c[None, :]
    f -= 1.0 / total
    f *= w
    np.negative(f, out=f, where=used)
    f += 1.0
    judged = f > 0.02
    judged &= valid
    z = np.zeros_like(f)
    np.divide(w, f, out=z, where=judged)
    del f
    np.sqrt(z, out=z)
    z *= np.abs(res)
    n_r, n_c = np.count_nonzero(used, axis=1), np.count_nonzero(used, axis=0)
    informative = used & judged
    informative &= (n_r > 1)[:, None]
    informative &= (n_c > 1)[None, :]
    if not informative.any():
        informative = used & judged
    if not informative.any():
        return valid.copy()
    pool_z = z[informative]
    if pool_z.size > _POOL_SAMPLE:  # a deterministic subsample: the median to ~1e-3
        pool_z = pool_z[:: pool_z.size // _POOL_SAMPLE]
    pool = max(_MAD_TO_SIGMA * float(np.median(pool_z)), _SIGMA_FLOOR)
    del pool_z
    m = np.count_nonzero(informative, axis=1).astype(np.float64)
    own = _MAD_TO_SIGMA * np.nan_to_num(_row_median(z, informative))
    del informative
    scale = np.sqrt((m * own * own + _ROW_SCALE_PRIOR * pool * pool) / (m + _ROW_SCALE_PRIOR))
    np.clip(scale, _SIGMA_FLOOR, _ROW_SCALE_CAP * pool, out=scale)
    # Hysteresis: a rejected entry comes back only when clearly within (|z| ≤ 0.8 k), so that
    # entries at the threshold do not flip in and out as the fit moves by a hair.
    limit = np.where(used, k, _READMIT * k)
    limit *= scale[:, None]
    candidate = z > limit
    del limit
    candidate &= judged
    new_used = valid & ~candidate
    del candidate
    # Never empty a row or an exposure that has valid data: keep its best-fitting entry, which
    # then fixes its scale alone and has no say in anybody else's (a row or exposure every
    # entry of which is out of line, e.g. a saturated flat, must not come back whole).
    empty_r = np.flatnonzero(~new_used.any(axis=1) & valid.any(axis=1))
    if stuck.any():
        new_used &= ~stuck[:, None]
    empty_c = np.flatnonzero(~new_used.any(axis=0) & valid.any(axis=0))
    if empty_r.size or empty_c.size:
        zs = np.where(valid, z / scale[:, None], np.inf)
        if empty_r.size:
            new_used[empty_r, np.argmin(zs[empty_r], axis=1)] = True
            if stuck.any():
                new_used &= ~stuck[:, None]
        zs[stuck] = np.inf
        empty_c = np.flatnonzero(~new_used.any(axis=0) & valid.any(axis=0))
        if empty_c.size:
            best = np.argmin(zs[:, empty_c], axis=0)
            new_used[best, empty_c] = True  # (a stuck row only if nothing else has the exposure)
    return new_used


def _robust(
    solve: Callable[..., tuple[np.ndarray, np.ndarray, int, bool]],
    y: np.ndarray,
    w0: np.ndarray,
    valid: np.ndarray,
    model: bool,
    clip_sigma: float,
    max_clip_iter: int,
    th: QualityThresholds,
    on_pass: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, bool, np.ndarray]:
    """Weighted least squares inside an iterative rejection, from a start outliers cannot steer.

    The first mask is judged against Tukey's median polish (unweighted medians), not against
    a least-squares fit that the outliers have already pulled towards themselves; then each
    pass fits (``exact``, weights iterated to the model for inverse-variance) on the current
    mask and judges all valid entries against that fit (``_reject``), until the mask no longer
    changes. The scheme is iteratively reweighted least squares with hard 0/1 weights started
    from a high-breakdown fit, as in Rousseeuw & Leroy 1987 (*Robust Regression and Outlier
    Detection*, ch. 5: reweighted least squares after a robust start) and Hampel et al. 1986
    (*Robust Statistics*, §1.4: rejection rules need a robust start). A rejection that would
    cut the data into blocks with no common scale is not made: the last connected fit is
    returned, flagged as not converged. Returns ``(g, e, w, used, fits, converged, stuck)``.
    """
    act_r, act_c = valid.any(axis=1), valid.any(axis=0)
    _check_connected(w0, act_r, act_c)
    g, e = _median_polish(y, valid)
    w = _model_weights(y, w0, valid, g, e) if model else w0
    used = valid
    fits = 0
    stable = False
    fit_converged = True
    stuck = np.zeros(valid.shape[0], dtype=bool)
    w_used = np.where(valid, w0, 0.0)
    seen: set[bytes] = set()
    cycle = False
    while True:
        res = y - g[:, None]
        res -= e[None, :]
        stuck = stuck_rows(res, valid, e, act_c, th)
        new_used = _reject(res, w, used, valid, clip_sigma, stuck)
        del res
        if fits > 0 and np.array_equal(new_used, used):
            stable = True
            break
        if cycle or fits >= max_clip_iter:
            stable = cycle  # a broken cycle is a decision; the limit is not convergence
            break  # the last fit is on a mask that was still changing
        key = np.packbits(new_used).tobytes()
        if fits > 0 and key in seen:
            # The masks cycle: reject every entry rejected in either of the last two, fit
            # once more on that and stop.
            new_used = new_used & used
            cycle = True
        seen.add(key)
        new_act_r, new_act_c = new_used.any(axis=1), new_used.any(axis=0)
        try:
            _check_connected(np.where(new_used, w0, 0.0), new_act_r, new_act_c)
        except ValueError:
            if fits > 0:
                break  # rejecting more would leave no common scale: keep the current fit
            new_used, new_act_r, new_act_c = valid, act_r, act_c
        used, act_r, act_c = new_used, new_act_r, new_act_c
        prev = (g, e) if fits > 0 else None
        g, e, w_used, _, fit_converged = _fit(solve, y, w0, used, act_r, act_c, model, prev)
        fits += 1
        if on_pass is not None:
            on_pass(fits)
        w = _model_weights(y, w0, valid, g, e) if model else w0
    return g, e, w_used, used, fits, bool(fit_converged and stable), stuck


# --------------------------------------------------------------------------- statistics


def _statistics(
    y: np.ndarray,
    w: np.ndarray,
    valid: np.ndarray,
    used: np.ndarray,
    g: np.ndarray,
    e: np.ndarray,
    G: np.ndarray,
    E: np.ndarray,
    act_r: np.ndarray,
    act_c: np.ndarray,
    row_norm: np.ndarray,
    weights: str,
    errors: bool,
    th: QualityThresholds,
    stuck_rejected: np.ndarray | None,
) -> dict[str, object]:
    """Residuals, goodness of fit, errors, flags and rejected entries of a finished fit.

    ``y`` is owned and overwritten (it becomes the log residuals). ``w`` holds the weights of
    the used entries (0 elsewhere), ``g``/``e`` are in the reported gauge.
    """
    r = y
    r -= g[:, None]
    r -= e[None, :]
    if not valid.all():
        np.putmask(r, ~valid, 0.0)
    # w is 0 wherever the entry is not used, so these sums run over used entries only.
    wr2 = r * r
    wr2 *= w
    chi2_row, chi2_exp = wr2.sum(axis=1), wr2.sum(axis=0)
    del wr2
    D_r, D_c = w.sum(axis=1), w.sum(axis=0)
    n_r = np.count_nonzero(used, axis=1)
    n_c = np.count_nonzero(used, axis=0)
    n_used = int(n_r.sum())
    chi2 = float(chi2_row.sum())
    total = float(D_r.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        rms_row = np.sqrt(np.where(D_r > 0, chi2_row / D_r, np.nan))
        rms_exp = np.sqrt(np.where(D_c > 0, chi2_exp / D_c, np.nan))
    rms = float(np.sqrt(chi2 / total)) if total > 0 else float("nan")
    dof = n_used - int(act_r.sum()) - int(act_c.sum()) + 1

    cov = None
    if errors and feasible(int(act_r.sum()), int(act_c.sum())):
        c = row_norm * act_r
        gauge = c * np.where(act_r, G, 0.0)
        cov = unit_covariance(w, act_r, act_c, gauge / gauge.sum())
    if cov is not None and np.isfinite(cov.lev_row[act_r]).all():
        lev_row = np.where(act_r, cov.lev_row, 0.0)
        lev_exp = np.where(act_c, cov.lev_exp, 0.0)
    else:
        # First-order leverages w (1/D_r + 1/D_c − 1/Σw), summed per row and exposure.
        inv_r = np.divide(1.0, D_r, out=np.zeros_like(D_r), where=D_r > 0)
        inv_c = np.divide(1.0, D_c, out=np.zeros_like(D_c), where=D_c > 0)
        lev_row = np.where(act_r, 1.0 + _mv(w, inv_c) - D_r / total, 0.0)
        lev_exp = np.where(act_c, 1.0 + _vm(inv_r, w) - D_c / total, 0.0)
    dof_row = np.maximum(n_r - lev_row, 0.0)
    dof_exp = np.maximum(n_c - lev_exp, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms_dof_row = np.where(dof_row > 1e-9, rms_row * np.sqrt(n_r / dof_row), np.nan)
        rms_dof_exp = np.where(dof_exp > 1e-9, rms_exp * np.sqrt(n_c / dof_exp), np.nan)
    rms_dof = rms * float(np.sqrt(n_used / dof)) if dof > 0 else float("nan")

    if weights == "counts":
        error_scale = float(np.sqrt(chi2 / dof)) if dof > 0 else float("nan")
    else:
        error_scale = 1.0
    if cov is not None:
        with np.errstate(invalid="ignore"):
            row_errors = G * error_scale * np.sqrt(cov.var_log_g)
            exp_errors = E * error_scale * np.sqrt(cov.var_log_e)
        row_errors[~act_r] = np.nan
        exp_errors[~act_c] = np.nan
    else:
        row_errors = np.full(G.shape, np.nan)
        exp_errors = np.full(E.shape, np.nan)

    stuck = stuck_rows(r, valid, e, act_c, th)
    if stuck_rejected is not None:
        stuck |= stuck_rejected
    row_flags, exp_flags = node_flags(
        act_r=act_r,
        act_c=act_c,
        valid=valid,
        used=used,
        stuck=stuck,
        chi2_row=chi2_row,
        dof_row=dof_row,
        rms_dof_row=rms_dof_row,
        chi2_exp=chi2_exp,
        dof_exp=dof_exp,
        rms_dof_exp=rms_dof_exp,
        th=th,
    )
    weak_entries = -1
    if cov is not None and cov.factor is not None:
        weak_entries, weak_r, weak_c = weak_link(cov.factor, th)
        bit = np.uint16(FLAG_BITS["weak_link"])
        if weak_r is not None and weak_c is not None:
            row_flags[cov.factor.rows_idx[weak_r]] |= bit
            exp_flags[cov.factor.exps_idx[weak_c]] |= bit

    if used is valid:
        rej_r = rej_c = np.zeros(0, dtype=np.int64)
    else:
        rej_r, rej_c = np.nonzero(valid & ~used)
    rej_res = r[rej_r, rej_c].copy()
    rej_code = np.full(rej_r.size, REJECTION_REASONS.index("clipped"), dtype=np.int8)
    if stuck_rejected is not None and rej_r.size:
        rej_code[stuck_rejected[rej_r]] = REJECTION_REASONS.index("stuck_row")
    if used is not valid or not valid.all():
        np.putmask(r, ~used, np.nan)
    return {
        "log_residuals": r,
        "rms_row": rms_row,
        "rms_exp": rms_exp,
        "rms": rms,
        "row_errors": row_errors,
        "exp_errors": exp_errors,
        "error_scale": error_scale,
        "chi2": chi2,
        "dof": int(dof),
        "chi2_row": chi2_row,
        "chi2_exp": chi2_exp,
        "dof_row": dof_row,
        "dof_exp": dof_exp,
        "rms_dof": rms_dof,
        "rms_dof_row": rms_dof_row,
        "rms_dof_exp": rms_dof_exp,
        "row_flags": row_flags,
        "exp_flags": exp_flags,
        "weak_link_entries": int(weak_entries),
        "rejected_rows": rej_r.astype(np.int64),
        "rejected_exposures": rej_c.astype(np.int64),
        "rejected_residuals": rej_res,
        "rejected_reasons": rej_code,
    }


# --------------------------------------------------------------------------- entry point


def _check_options(
    method: str,
    weights: str,
    max_iter: int,
    tol: float,
    clip_sigma: float,
    max_clip_iter: int,
    variance: str,
    quality: QualityThresholds | None,
) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if weights not in WEIGHTS:
        raise ValueError(f"unknown weights {weights!r}; choose one of {', '.join(WEIGHTS)}")
    if isinstance(max_iter, bool) or int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if not (np.isfinite(clip_sigma) and clip_sigma > 0):
        raise ValueError(f"clip_sigma must be a finite number > 0, got {clip_sigma!r}")
    if isinstance(max_clip_iter, bool) or int(max_clip_iter) != max_clip_iter or max_clip_iter < 0:
        raise ValueError(f"max_clip_iter must be an integer >= 0, got {max_clip_iter!r}")
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}")
    if quality is not None and not isinstance(quality, QualityThresholds):
        raise ValueError(f"quality must be a QualityThresholds, got {type(quality).__name__}")


def measure_scales(
    background: np.ndarray,
    counts: np.ndarray | None = None,
    *,
    sigma: np.ndarray | None = None,
    method: str = "exact",
    weights: str = "counts",
    max_iter: int = 1000,
    tol: float = 1e-12,
    clip_sigma: float = 5.0,
    max_clip_iter: int = 20,
    variance: str = "model",
    errors: bool = True,
    quality: QualityThresholds | None = None,
    progress: Progress | None = None,
) -> ScaleSolution:
    """Find exposure scales ``E`` and row scales ``G`` with ``background ≈ G[:, None] · E``.

    This is the decomposition of LSST cp_pipe's ``CpFlatNormalizationTask.measureScales``
    (``python/lsst/cp/pipe/cpFlatNormTask.py``): a weighted least-squares fit of
    ``log B[row, exp] = g[row] + e[exp]``. Working in log space turns the product into a sum,
    so a detector's gain/vignetting (``G``) and a lamp's level (``E``) separate linearly. The
    default ``exact`` method reaches the least-squares optimum instead of stopping after a
    fixed number of sweeps (cp_pipe's ``scaleMaxIter``, default 10), which on weakly
    connected data is far from converged. Every solution carries standard errors, goodness
    of fit, quality flags and the entries left out (see :class:`ScaleSolution`).

    Parameters
    ----------
    background : numpy.ndarray
        ``B[row, exp]``, shape ``(n_row, n_exp)``: clipped-mean background of each row
        (detector, or detector × amplifier) in each exposure, in any one unit (e.g. ADU).
        Non-finite or non-positive entries are "no measurement" and are left out with their
        weight, so the answer does not depend on the units of B: ``E`` carries them and ``G``
        is dimensionless.
    counts : numpy.ndarray, optional
        ``N[row, exp]``, shape ``(n_row, n_exp)``: pixels behind each background, the weight
        of its log (a background averaged over more pixels is better known). Defaults to
        ones. Must be >= 0; a zero count excludes the entry. Only read where the background
        is usable, so a missing measurement may carry a missing (NaN) count.
    sigma : numpy.ndarray, optional
        Shape ``(n_row, n_exp)``: per-pixel scatter of each background, in the unit of
        ``background``; needed by ``weights="inverse-variance"`` (otherwise only its shape is
        checked). Entries with non-finite or zero sigma are excluded.
    method : {"exact", "alternating", "robust"}
        ``exact`` solves the least-squares problem directly (the default, and what a registry
        should store). ``alternating`` is the reference iteration with a convergence test, for
        comparison with cp_pipe. ``robust`` is ``exact`` with rejection of gross outliers,
        started from a median polish and judging each entry against its own expected scatter
        (see ``_robust``).
    weights : {"counts", "inverse-variance"}
        ``counts`` weights ``log B`` by ``N`` (the reference's choice). ``inverse-variance``
        uses ``var(log B) ≈ σ² / (N B²)``, i.e. weight ``N B² / σ²``, which is better when
        rows differ in noise.
    max_iter : int
        Limit on alternating sweeps, or on conjugate-gradient steps for ``exact``.
    tol : float
        ``alternating`` stops when no ``g`` or ``e`` (log scale) changes by more than ``tol``
        in one sweep. ``exact`` iterates to the rounding floor or to ``tol / 1000`` in the
        same units, whichever is larger.
    clip_sigma : float
        ``robust`` rejects entries whose standardised log residual exceeds ``clip_sigma``
        (robust standard deviations of its row, each entry scaled by its weight).
    max_clip_iter : int
        Limit on ``robust`` rejection passes (0 means a plain ``exact`` fit).
    variance : {"model", "data"}
        Inverse-variance weights only: ``"model"`` (default) puts the fitted ``G·E`` in
        ``N B²/σ²`` and iterates to the fixed point, which removes the bias that weights from
        the measured ``B`` cause (they correlate with its noise: ``log G`` of a row with
        relative noise ``σ`` per entry comes out ``≈ 2σ²`` high); ``"data"`` uses the measured
        ``B`` (the previous behaviour). The residual bias of the log-space fit itself,
        ``−σ²/2`` for Gaussian (not lognormal) noise in ``B``, remains either way.
    errors : bool
        Compute standard errors (and exact degrees of freedom and the weak-link check) from
        the dense Schur complement; ``False`` skips them (NaN errors). Systems too large to
        factor (see :mod:`calibreg.engine.uncertainty`) get NaN errors regardless.
    quality : QualityThresholds, optional
        Thresholds of the quality flags (defaults documented in
        :class:`calibreg.engine.quality.QualityThresholds`).
    progress : calibreg.domain.progress.Progress, optional
        Called as the solve goes: stage ``"rejection passes"`` (robust: passes done of
        ``max_clip_iter``), ``"sweeps"`` (alternating: sweeps of ``max_iter``, at most ten
        reports a second), ``"fit"`` (exact) and ``"uncertainties"``. Nothing is printed.

    Returns
    -------
    ScaleSolution
        ``exp_scales`` (shape ``(n_exp,)``, unit of ``background``), ``row_scales`` (shape
        ``(n_row,)``, count-weighted mean 1), the model ``G·E`` and log residuals (shape
        ``(n_row, n_exp)``), residual rms per row and per exposure, standard errors, χ² and
        degrees of freedom, quality flags, and the missing and rejected entries.

    Raises
    ------
    ValueError
        For inputs that cannot be solved, saying what and where: a background that is not a
        non-empty 2-D array, counts or sigma of another shape, a negative count or sigma, a
        non-finite count beside a usable background, ``weights="inverse-variance"`` without
        ``sigma``, no valid entry at all, an unknown method, weighting or variance, an
        out-of-range ``max_iter``, ``tol``, ``clip_sigma`` or ``max_clip_iter``, or data
        that fall apart into blocks with no common scale.

    References
    ----------
    cp_pipe's iteration comes from pipe_drivers' ``constructCalibs.py`` and, before it, from
    PanSTARRS IPP ``psModules/src/detrend/pmFlatNormalize.c`` (E. Magnier).
    """
    _check_options(method, weights, max_iter, tol, clip_sigma, max_clip_iter, variance, quality)
    th = QualityThresholds() if quality is None else quality
    y, w0, valid, row_norm, missing = _prepare(background, counts, sigma, weights)
    model = weights == "inverse-variance" and variance == "model"
    max_iter, tol = int(max_iter), float(tol)

    def exact(w: np.ndarray, x0: tuple[np.ndarray, np.ndarray] | None) -> tuple:
        act_r, act_c = w.any(axis=1), w.any(axis=0)
        return _exact(y, w, act_r, act_c, max_iter, tol, _sums(y, w), x0=x0)

    throttle = Throttle(progress)

    def on_sweep(n: int) -> None:
        throttle("sweeps", n, max_iter, unit="sweeps")

    def alternating(w: np.ndarray, x0: tuple[np.ndarray, np.ndarray] | None) -> tuple:
        act_r, act_c = w.any(axis=1), w.any(axis=0)
        return _alternating(
            y, w, row_norm, act_r, act_c, max_iter, tol, _sums(y, w), on_sweep=on_sweep
        )

    def on_pass(n: int) -> None:
        report(progress, "rejection passes", n, int(max_clip_iter), unit="passes")

    stuck_rejected = None
    if method == "robust" and max_clip_iter > 0:
        report(progress, "rejection passes", 0, int(max_clip_iter), unit="passes")
        g, e, w, used, iterations, converged, stuck_rejected = _robust(
            exact, y, w0, valid, model, float(clip_sigma), int(max_clip_iter), th, on_pass
        )
        report(progress, "rejection passes", iterations, iterations, unit="passes")
        act_r, act_c = used.any(axis=1), used.any(axis=0)
    else:
        used = valid
        act_r, act_c = used.any(axis=1), used.any(axis=0)
        _check_connected(w0, act_r, act_c)
        solver = alternating if method == "alternating" else exact
        report(progress, "fit", 0, 1, unit="fits")
        g, e, w, iterations, converged = _fit(
            solver, y, w0, used, act_r, act_c, model, all_valid=True
        )
        if method == "alternating":
            throttle("sweeps", iterations, iterations, unit="sweeps", final=True)
        report(progress, "fit", 1, 1, unit="fits")
        if method == "robust":
            iterations = 1

    row_norm = row_norm * act_r
    G, E, g, e = _normalize(g, e, row_norm, act_r, act_c)
    report(progress, "uncertainties", 0, 1, unit="steps")
    stats = _statistics(
        y,
        w,
        valid,
        used,
        g,
        e,
        G,
        E,
        act_r,
        act_c,
        row_norm,
        weights,
        bool(errors),
        th,
        stuck_rejected,
    )
    report(progress, "uncertainties", 1, 1, unit="steps")
    model_matrix = G[:, None] * E[None, :]
    return ScaleSolution(
        exp_scales=E,
        row_scales=G,
        model=model_matrix,
        used=used,
        iterations=int(iterations),
        converged=bool(converged),
        method=method,
        weights=weights,
        n_rejected=int(stats["rejected_rows"].size),  # type: ignore[union-attr]
        row_flagged=~act_r,
        exp_flagged=~act_c,
        missing_rows=missing[0],
        missing_exposures=missing[1],
        missing_reasons=missing[2],
        variance=variance,
        quality=th,
        **stats,  # type: ignore[arg-type]
    )
