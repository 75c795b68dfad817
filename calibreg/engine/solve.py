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
    ``exact`` inside an iterative rejection of entries whose log residual exceeds
    ``clip_sigma`` robust standard deviations (1.4826 × MAD), for satellite trails and other
    gross outliers that would otherwise drag a detector's scale.

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

from calibreg.domain.vocabulary import Method, Weights

from .solution import ScaleSolution

__all__ = ["METHODS", "WEIGHTS", "measure_scales"]

METHODS = Method.values()
WEIGHTS = Weights.values()

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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate the inputs and build ``(y, w, valid, row_norm)``.

    ``y`` is ``log B`` where valid and 0 elsewhere, ``w`` the fit weights (0 where not valid),
    ``row_norm`` each row's total count over its valid entries (the normalization weights).
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
    return y, w, valid, row_norm


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
    for sweeps in range(1, max_iter + 1):  # noqa: B007 - the count is reported
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


def _residual_stats(
    y: np.ndarray,
    w: np.ndarray,
    used: np.ndarray,
    g: np.ndarray,
    e: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Turn ``y`` (owned, overwritten) into the log residuals and their weighted rms."""
    r = y
    r -= g[:, None]
    r -= e[None, :]
    # w is 0 wherever the entry is not used, so these sums run over used entries only.
    sse_row = np.einsum("ij,ij,ij->i", w, r, r)
    sse_exp = np.einsum("ij,ij,ij->j", w, r, r)
    D_r = w.sum(axis=1)
    D_c = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms_row = np.sqrt(np.where(D_r > 0, sse_row / D_r, np.nan))
        rms_exp = np.sqrt(np.where(D_c > 0, sse_exp / D_c, np.nan))
    total = float(D_r.sum())
    rms = float(np.sqrt(sse_row.sum() / total)) if total > 0 else float("nan")
    np.putmask(r, ~used, np.nan)
    return r, rms_row, rms_exp, rms


def _check_options(
    method: str, weights: str, max_iter: int, tol: float, clip_sigma: float, max_clip_iter: int
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
) -> ScaleSolution:
    """Find exposure scales ``E`` and row scales ``G`` with ``background ≈ G[:, None] · E``.

    This is the decomposition of LSST cp_pipe's ``CpFlatNormalizationTask.measureScales``
    (``python/lsst/cp/pipe/cpFlatNormTask.py``): a weighted least-squares fit of
    ``log B[row, exp] = g[row] + e[exp]``. Working in log space turns the product into a sum,
    so a detector's gain/vignetting (``G``) and a lamp's level (``E``) separate linearly. The
    default ``exact`` method reaches the least-squares optimum instead of stopping after a
    fixed number of sweeps (cp_pipe's ``scaleMaxIter``, default 10), which on weakly
    connected data is far from converged.

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
        comparison with cp_pipe. ``robust`` is ``exact`` with rejection of gross outliers.
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
        ``robust`` rejects entries with ``|log residual| > clip_sigma · 1.4826 · MAD`` of the
        used log residuals.
    max_clip_iter : int
        Limit on ``robust`` rejection passes (0 means a plain ``exact`` fit).

    Returns
    -------
    ScaleSolution
        ``exp_scales`` (shape ``(n_exp,)``, unit of ``background``), ``row_scales`` (shape
        ``(n_row,)``, count-weighted mean 1), the model ``G·E`` and log residuals (shape
        ``(n_row, n_exp)``), residual rms per row and per exposure, and the flags of rows and
        exposures that had no usable entry.

    Raises
    ------
    ValueError
        For inputs that cannot be solved, saying what and where: a background that is not a
        non-empty 2-D array, counts or sigma of another shape, a negative count or sigma, a
        non-finite count beside a usable background, ``weights="inverse-variance"`` without
        ``sigma``, no valid entry at all, an unknown method or weighting, an out-of-range
        ``max_iter``, ``tol``, ``clip_sigma`` or ``max_clip_iter``, or data that fall apart
        into blocks with no common scale.

    References
    ----------
    cp_pipe's iteration comes from pipe_drivers' ``constructCalibs.py`` and, before it, from
    PanSTARRS IPP ``psModules/src/detrend/pmFlatNormalize.c`` (E. Magnier).
    """
    _check_options(method, weights, max_iter, tol, clip_sigma, max_clip_iter)
    y, w, valid, row_norm = _prepare(background, counts, sigma, weights)

    used = valid
    n_rejected = 0
    if method == "alternating":
        act_r, act_c = used.any(axis=1), used.any(axis=0)
        _check_connected(w, act_r, act_c)
        g, e, iterations, converged = _alternating(
            y, w, row_norm, act_r, act_c, int(max_iter), float(tol), _sums(y, w)
        )
    elif method == "exact" or max_clip_iter == 0:
        act_r, act_c = used.any(axis=1), used.any(axis=0)
        _check_connected(w, act_r, act_c)
        g, e, iterations, converged = _exact(
            y, w, act_r, act_c, int(max_iter), float(tol), _sums(y, w)
        )
        if method == "robust":
            iterations = 1
    else:
        g, e, w, used, act_r, act_c, iterations, converged = _robust(
            y, w, valid, int(max_iter), float(tol), float(clip_sigma), int(max_clip_iter)
        )
        n_rejected = int(valid.sum() - used.sum())

    row_norm = row_norm * act_r
    G, E, g, e = _normalize(g, e, row_norm, act_r, act_c)
    log_res, rms_row, rms_exp, rms = _residual_stats(y, w, used, g, e)
    model = G[:, None] * E[None, :]
    return ScaleSolution(
        exp_scales=E,
        row_scales=G,
        model=model,
        log_residuals=log_res,
        used=used,
        iterations=int(iterations),
        converged=bool(converged),
        method=method,
        weights=weights,
        rms_row=rms_row,
        rms_exp=rms_exp,
        rms=rms,
        n_rejected=n_rejected,
        row_flagged=~act_r,
        exp_flagged=~act_c,
    )


def _reject(res: np.ndarray, used: np.ndarray, valid: np.ndarray, k: float) -> np.ndarray:
    """Return the next mask of used entries, judged on the log residuals ``res`` of the fit.

    An entry is an outlier candidate when ``|r| > k σ̂`` (σ̂ = 1.4826 MAD of the used
    residuals that have redundancy: an entry alone in its row or column fits exactly and says
    nothing about the scatter). A candidate is *newly* rejected only if its ``|r|`` is at
    least half the largest used ``|r|`` of both its row and its column: a least-squares fit
    spreads one outlier over its row (by ~1/n_exp) and column, and without this test clipping
    would throw the good entries of a short row out with the outlier. An entry already
    rejected stays out while it is still a candidate, and comes back when the fit says it is
    not (so the mask cannot oscillate). Rows and exposures are never emptied by rejection.
    """
    n_r = used.sum(axis=1)
    n_c = used.sum(axis=0)
    informative = used & (n_r > 1)[:, None]
    informative &= (n_c > 1)[None, :]
    pool = res[informative] if informative.any() else res[used]
    med = float(np.median(pool))
    scale = max(_MAD_TO_SIGMA * float(np.median(np.abs(pool - med))), _SIGMA_FLOOR)
    del pool, informative
    absr = np.abs(res)
    candidate = absr > k * scale
    candidate &= valid
    if not candidate.any():
        return valid.copy()
    a_used = np.where(used, absr, 0.0)
    half_row = 0.5 * a_used.max(axis=1)
    half_col = 0.5 * a_used.max(axis=0)
    del a_used
    dominant = absr >= half_row[:, None]
    dominant &= absr >= half_col[None, :]
    dominant |= ~used  # already rejected: stays out while still a candidate
    candidate &= dominant
    new_used = valid & ~candidate
    # Never empty a row or an exposure that has valid data: keep its entries instead.
    empty_r = ~new_used.any(axis=1) & valid.any(axis=1)
    empty_c = ~new_used.any(axis=0) & valid.any(axis=0)
    if empty_r.any():
        new_used |= valid & empty_r[:, None]
    if empty_c.any():
        new_used |= valid & empty_c[None, :]
    return new_used


def _robust(
    y: np.ndarray,
    w_valid: np.ndarray,
    valid: np.ndarray,
    max_iter: int,
    tol: float,
    clip_sigma: float,
    max_clip_iter: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, bool]:
    """Fit with ``exact`` inside an iterative k-sigma rejection on the log residuals.

    Every pass judges *all* valid entries against the current fit (see ``_reject``) and
    re-solves until the mask no longer changes. A rejection that would cut the data into
    blocks with no common scale is not made: the last connected fit is returned, flagged as
    not converged. Returns ``(g, e, w, used, act_r, act_c, fits, converged)``.
    """
    used = valid
    w = w_valid
    act_r, act_c = used.any(axis=1), used.any(axis=0)
    _check_connected(w, act_r, act_c)
    prev: tuple[np.ndarray, np.ndarray] | None = None
    stable = False
    fits = 0
    while True:
        g, e, _, fit_converged = _exact(y, w, act_r, act_c, max_iter, tol, _sums(y, w), x0=prev)
        fits += 1
        prev = (g, e)
        if fits > max_clip_iter:
            break  # the limit: this fit is on the last mask, which was still changing
        res = y - g[:, None]
        res -= e[None, :]
        new_used = _reject(res, used, valid, clip_sigma)
        del res
        if np.array_equal(new_used, used):
            stable = True
            break
        new_w = np.where(new_used, w_valid, 0.0)
        new_act_r, new_act_c = new_used.any(axis=1), new_used.any(axis=0)
        try:
            _check_connected(new_w, new_act_r, new_act_c)
        except ValueError:
            break  # rejecting more would leave no common scale: keep the current fit
        used, w, act_r, act_c = new_used, new_w, new_act_r, new_act_c
    return g, e, w, used, act_r, act_c, fits, fit_converged and stable
