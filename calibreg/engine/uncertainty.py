"""Standard errors and leverages of the log-space fit ``log B[i, j] = g[i] + e[j]``.

Method
------
The fit is weighted linear least squares with design matrix ``X`` (one row per used entry, a
1 in column ``g[i]`` and one in column ``e[j]``) and weights ``w``. Its normal matrix is the
arrow ``M = [[D_r, W], [Wᵀ, D_c]]`` (``D_r``, ``D_c`` the total weight per row and exposure),
the weighted Laplacian of the bipartite graph rows–exposures up to signs. ``M`` is singular
along ``v = (1, −1)`` — the G/E degeneracy — so only *estimable* functions ``λᵀθ`` with
``λ ⊥ v`` have a variance, and for them the variance is ``σ² λᵀ M⁻ λ`` for *any* generalised
inverse ``M⁻`` (Rao 1973, *Linear Statistical Inference*, §4a; Searle 1971, *Linear Models*,
ch. 5: estimable functions in less-than-full-rank models). The reported scales are in the gauge
"count-weighted arithmetic mean of G is 1": ``log Ĝ_i = g_i − log L(g)`` and
``log Ê_j = e_j + log L(g)`` with ``L = Σ c_k e^{g_k} / Σ c_k``; to first order (the delta
method) ``δlog L = aᵀδg`` with ``a_k = c_k G_k / Σ c G``, which sums to 1, so both reported
quantities are estimable and their variances are gauge-fixed, not arbitrary.

``M⁻`` is formed by block elimination (the Schur complement the exact solver already uses):
with ``H = D_b⁻¹ W`` (the eliminated, larger side ``b``) and the Schur complement
``S = D_k − Wᵀ D_b⁻¹ W`` on the kept, smaller side ``k``,
``λᵀ M⁻ λ = αᵀ D_b⁻¹ α + (β − Hᵀα)ᵀ S⁻ (β − Hᵀα)`` for ``λ = (α, β)``. ``S`` is the weighted
graph Laplacian of the kept side (``S·1 = 0``); its generalised inverse is taken as
``(S + c·d dᵀ)⁻¹`` with ``d = D_k``, which is non-singular for connected data and, in the
scaling ``D_k^{-1/2} · D_k^{-1/2}``, has condition number ``≈ 2/λ₂`` (``λ₂`` the normalised
algebraic connectivity) instead of the ``O(n)`` of grounding one node. One Cholesky factor
of that ``n_k × n_k`` matrix gives every variance: ``diag(S⁻)`` from the inverse factor, and
the row terms ``uᵢᵀ S⁻ uᵢ`` (``uᵢ = hᵢ − h̄``, zero-sum, so no cancellation) from one
triangular solve with all ``uᵢ`` at once. Cost ``≈ n_b·n_k² + n_k³/3`` flops, BLAS-3.

Errors are ``σ̂ · sqrt(variance)`` with ``σ̂² = χ²/dof`` (reduced chi-square, count weights:
the weights give only relative precisions) or ``σ̂ = 1`` (inverse-variance weights, which
claim absolute precisions); this is the standard weighted least-squares covariance
``σ̂² (XᵀWX)⁻`` (e.g. Björck 1996, *Numerical Methods for Least Squares Problems*, §1.1.5;
Press et al., *Numerical Recipes*, §15.4). The errors of ``G`` and ``E`` themselves are
``G·σ(log G)`` and ``E·σ(log E)`` (delta method).

The leverage of an entry is ``h_ij = w_ij xᵢⱼᵀ M⁻ xᵢⱼ`` (the diagonal of the hat matrix; its
sum is the rank ``n_rows + n_exposures − 1``). Per row and per exposure the *unweighted*
sums ``Σ h`` follow from the same pieces in closed form (no ``n_r × n_c`` product is needed),
which gives the degrees of freedom ``Σ (1 − h)`` of each row and exposure.

Precision: for large systems the ``n_b·n_k²`` products (the Schur complement and the
triangular solve) and the factorisation run in float32, which halves their cost. This is
safe because (i) the Schur complement's off-diagonal terms are sums of positive numbers and
its diagonal is rebuilt from them so that it stays an exact Laplacian of edge weights
perturbed by ``~1e-6`` relative, which perturbs every variance by at most as much (Loewner
order), and (ii) the float32 factor is kept only when its condition number is below ``1e3``
(LAPACK ``spocon``), so that the variances are good to ``κ·6e-8 < 1e-4`` relative; weakly
connected data (larger κ) are factored in float64. Small systems are float64 throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.linalg import blas, get_blas_funcs, lapack

__all__ = ["Covariance", "SchurFactor", "feasible", "unit_covariance"]

# Above this many flops (n_b · n_k²) the Schur complement and the triangular solve use
# float32 (see the module docstring for why that is safe).
_FLOAT32_FLOPS = 2.0e8
# The factorisation stays float64 unless the float32 factor's reciprocal condition is above this.
_FLOAT32_MIN_RCOND = 1e-3
# Largest kept side factored for errors, and the largest n_b · n_k² work spent on them
# (about 20 s here); beyond that errors are NaN.
_MAX_SIDE = 12000
# Block size of the blocked Cholesky factorisation.
_BLOCK = 120
_MAX_FLOPS = 4.0e11


@dataclass(frozen=True)
class SchurFactor:
    """What the weak-link search reuses from the error computation.

    ``L`` is the lower Cholesky factor (float32 or float64; only its lower triangle is
    valid) of the equilibrated, regularised
    kept-side Schur complement ``Ŝ_c = D_k^{-1/2} S D_k^{-1/2} + s sᵀ/ΣD_k``, ``s = sqrt(D_k)``,
    ``wb`` the ``(n_b, n_k)`` weights of the active part (eliminated side first; a view of the
    caller's array, not to be modified), ``rows_big`` whether
    the eliminated side is the rows, ``rows_idx`` / ``exps_idx`` the active rows and exposures.
    """

    L: np.ndarray
    s: np.ndarray
    wb: np.ndarray
    rows_big: bool
    rows_idx: np.ndarray
    exps_idx: np.ndarray


@dataclass(frozen=True)
class Covariance:
    """Unit-weight (σ = 1) second moments of the fit, in the reported gauge.

    ``var_log_g`` / ``var_log_e`` are variances of ``log G`` and ``log E`` (NaN for inactive
    rows/exposures); ``lev_row`` / ``lev_exp`` are the sums of the entry leverages per row and
    per exposure; ``factor`` is reused by the weak-link search (None when not computed).
    """

    var_log_g: np.ndarray
    var_log_e: np.ndarray
    lev_row: np.ndarray
    lev_exp: np.ndarray
    factor: SchurFactor | None


def _nan_result(n_row: int, n_exp: int) -> Covariance:
    return Covariance(
        var_log_g=np.full(n_row, np.nan),
        var_log_e=np.full(n_exp, np.nan),
        lev_row=np.full(n_row, np.nan),
        lev_exp=np.full(n_exp, np.nan),
        factor=None,
    )


def feasible(n_row: int, n_exp: int) -> bool:
    """Whether the dense Schur complement of an ``n_row × n_exp`` fit is affordable."""
    n_k, n_b = min(n_row, n_exp), max(n_row, n_exp)
    return n_k <= _MAX_SIDE and float(n_b) * n_k * n_k <= _MAX_FLOPS


def _mv(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Return ``a @ x`` without multithreaded BLAS (see ``solve._mv``)."""
    return np.einsum("ij,j->i", a, x)


def _schur_equilibrated(
    wb: np.ndarray, d_b: np.ndarray, d_k: np.ndarray, single: bool
) -> tuple[np.ndarray, float]:
    """``D_k^{-1/2} (S + d dᵀ/Σd) D_k^{-1/2}`` (Fortran order, lower triangle) and its 1-norm.

    ``S = D_k − Wbᵀ D_b⁻¹ Wb``; off-diagonals come from one ``syrk`` of the normalised weights
    ``Ŵ = D_b^{-1/2} Wb D_k^{-1/2}`` (entries ≤ 1, well scaled even in float32), and the
    diagonal is rebuilt from them so that ``S·1 = 0`` holds exactly for the computed edges.
    Only the lower triangle is formed (it is all ``potrf`` reads).
    """
    dtype = np.float32 if single else np.float64
    s = np.sqrt(d_k)
    # Ŵ in the memory layout of wb (no transposing copy); syrk takes either layout.
    wn = np.multiply(wb, (1.0 / np.sqrt(d_b))[:, None], dtype=dtype, order="K")
    wn *= (1.0 / s).astype(dtype)[None, :]
    syrk = get_blas_funcs("syrk", (wn,))
    if wn.flags.f_contiguous:
        k = syrk(1.0, wn, trans=1, lower=1)  # (n_k, n_k), lower triangle = Ŵᵀ Ŵ
    else:
        k = syrk(1.0, wn.T, trans=0, lower=1)
    del wn
    k = np.asarray(k, dtype=np.float64, order="F")
    diag_k = k.diagonal().copy()
    # Σ_{l≠j} K̂_jl s_l and Σ_{l≠j} K̂_jl, from the lower triangle.
    off_s = blas.dsymv(1.0, k, s, lower=1) - diag_k * s
    off_1 = blas.dsymv(1.0, k, np.ones_like(s), lower=1) - diag_k
    # Normalised Laplacian: Ŝ_jl = −K̂_jl (j ≠ l), Ŝ_jj = Σ_{l≠j} K̂_jl s_l / s_j, so Ŝ s = 0.
    k *= -1.0
    diag = off_s / s
    k[np.diag_indices_from(k)] = diag
    # + d dᵀ/Σd with d = D_k, in this scaling s sᵀ / Σ D_k (eigenvalue 1 along s).
    total = float(d_k.sum())
    k = blas.dsyr(1.0 / total, s, lower=1, a=k, overwrite_a=1)
    anorm = float(np.max(diag + off_1 + s * (float(s.sum()) / total)))
    return k, anorm


def _cholesky(a: np.ndarray) -> tuple[np.ndarray, int]:
    """Lower Cholesky factor of ``a`` (lower triangles read and valid), and LAPACK's ``info``.

    Large matrices are factored block by block (right-looking, ``_BLOCK`` columns at a time):
    ``potrf`` on a diagonal block, ``trsm`` for the panel below it, ``syrk`` for the trailing
    update. The same flops as ``potrf`` on the whole, but the threaded work is all BLAS-3 on
    large blocks: OpenBLAS's threaded ``potrf`` and ``trtri`` slow down by up to 10x when the
    machine's cores are shared, its ``syrk``/``trsm`` do not.
    """
    potrf = lapack.spotrf if a.dtype == np.float32 else lapack.dpotrf
    n = a.shape[0]
    if n <= 2 * _BLOCK:
        return potrf(a, lower=1, clean=1)
    a = np.array(a, order="F")
    syrk = get_blas_funcs("syrk", (a,))
    trsm = get_blas_funcs("trsm", (a,))
    for k in range(0, n, _BLOCK):
        e = min(k + _BLOCK, n)
        d, info = potrf(a[k:e, k:e], lower=1, clean=1)
        if info != 0:
            return a, k + info
        a[k:e, k:e] = d
        if e < n:
            panel = trsm(1.0, d, a[e:, k:e], side=1, lower=1, trans_a=1)
            a[e:, k:e] = panel
            a[e:, e:] = syrk(-1.0, panel, beta=1.0, c=a[e:, e:], trans=0, lower=1)
    return a, 0  # (the strict upper triangle is left as it was: never read)


def _inverse_col_norms(L: np.ndarray) -> tuple[np.ndarray, int]:
    """``Σ_i (L⁻¹)_ij²`` for every column ``j`` of lower-triangular ``L`` (float64), and info.

    Small: ``trtri``. Large: block column by block column, ``L[j:, j:] Y = I[j:, j:j+b]``
    (the block column of ``L⁻¹`` below the diagonal; zero above), one ``trsm`` each — the
    ``n³/3`` flops of ``trtri`` in BLAS-3, without ever holding ``L⁻¹`` whole.
    """
    n = L.shape[0]
    if n <= 2 * _BLOCK:
        linv, info = (lapack.strtri if L.dtype == np.float32 else lapack.dtrtri)(L, lower=1)
        if info != 0:
            return np.zeros(0), int(info)
        linv = np.tril(linv)
        return np.einsum("ij,ij->j", linv, linv, dtype=np.float64), 0
    trsm = get_blas_funcs("trsm", (L,))
    out = np.empty(n)
    for j in range(0, n, _BLOCK):
        e = min(j + _BLOCK, n)
        rhs = np.zeros((n - j, e - j), dtype=L.dtype, order="F")
        rhs[np.arange(e - j), np.arange(e - j)] = 1.0
        y = trsm(1.0, L[j:, j:], rhs, side=0, lower=1, overwrite_b=1)
        out[j:e] = np.einsum("ij,ij->j", y, y, dtype=np.float64)
    return out, 0


def _factor(
    shat: np.ndarray, anorm: float, single: bool
) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """Cholesky factor ``L`` of ``shat`` and ``L⁻¹``'s column norms²; None if singular.

    With ``single`` (large systems) the factorisation is tried in float32 first and kept when
    its reciprocal condition number is above ``_FLOAT32_MIN_RCOND`` (then every variance is
    good to ``≈ κ·6e-8 < 1e-4`` relative, far below what errors need); otherwise, and for
    small systems, float64.
    """
    if single:
        L32, info = _cholesky(shat.astype(np.float32, order="F"))
        if info == 0:
            rcond, info = lapack.spocon(L32, anorm, uplo="L")
            if info == 0 and rcond > _FLOAT32_MIN_RCOND:
                norms, info = _inverse_col_norms(L32)
                if info == 0:
                    return L32, norms, True
    L, info = _cholesky(shat)
    if info != 0:
        return None
    rcond, info = lapack.dpocon(L, anorm, uplo="L")
    if info != 0 or not rcond > 1e-15:
        return None
    norms, info = _inverse_col_norms(L)
    if info != 0:
        return None
    return L, norms, False


def unit_covariance(
    w: np.ndarray, act_r: np.ndarray, act_c: np.ndarray, gauge: np.ndarray
) -> Covariance:
    """Variances of the reported ``log G``, ``log E`` and leverage sums, for unit σ.

    Parameters
    ----------
    w : numpy.ndarray
        ``(n_row, n_exp)`` weights of the used entries, 0 elsewhere. The used entries must
        connect every active row and exposure.
    act_r, act_c : numpy.ndarray
        Boolean masks of rows and exposures with at least one used entry.
    gauge : numpy.ndarray
        ``(n_row,)`` derivative of the normalisation's ``log L`` with respect to ``g``:
        ``c_k G_k / Σ c G`` over active rows (sums to 1), 0 on inactive rows.

    Returns
    -------
    Covariance
        NaN everywhere if the system is too large to factor (see ``feasible``) or
        numerically singular.
    """
    n_row, n_exp = w.shape
    rows_idx, exps_idx = np.flatnonzero(act_r), np.flatnonzero(act_c)
    n_ar, n_ac = rows_idx.size, exps_idx.size
    if n_ar == 0 or n_ac == 0 or not feasible(n_ar, n_ac):
        return _nan_result(n_row, n_exp)
    sub = w if (n_ar == n_row and n_ac == n_exp) else w[np.ix_(rows_idx, exps_idx)]
    rows_big = n_ar >= n_ac
    wb = sub if rows_big else sub.T  # (n_b, n_k); read only
    a = gauge[rows_idx] / float(gauge[rows_idx].sum())
    d_b = wb.sum(axis=1)
    d_k = wb.sum(axis=0)
    n_b, n_k = wb.shape
    big = float(n_b) * n_k * n_k > _FLOAT32_FLOPS
    s = np.sqrt(d_k)
    try:
        shat, anorm = _schur_equilibrated(wb, d_b, d_k, single=big)
        factored = _factor(shat, anorm, single=big)
    except (linalg.LinAlgError, ValueError):  # pragma: no cover - guarded by the checks
        factored = None
    if factored is None:
        return _nan_result(n_row, n_exp)
    L, inv_norms, _ = factored
    # X = S⁻ = D^{-1/2} L^{-T} L^{-1} D^{-1/2}: diag(X)_j = ‖L⁻¹ e_j‖² / D_j.
    dX = inv_norms / d_k

    def apply_x(v: np.ndarray) -> np.ndarray:
        out = linalg.cho_solve((L, True), (v / s).astype(L.dtype), check_finite=False)
        return out.astype(np.float64) / s

    # Reference distribution on the kept side making every u_b = h_b − ref zero-sum.
    inv_db = 1.0 / d_b
    ref = np.einsum("bk,b->k", wb, a * inv_db) if rows_big else a  # h̄ = Hᵀ a, or a
    p = apply_x(ref)
    rp = float(ref @ p)
    # u_bᵀ X u_b for every eliminated node b: one triangular solve with all u_b (scaled).
    # Columns (h_b − ref) / s, one per eliminated node: (n_k, n_b), Fortran order.
    uu = np.multiply(wb, inv_db[:, None], order="K")  # (n_b, n_k): rows h_b
    uu -= ref[None, :]
    ut = np.divide(uu, s[None, :], dtype=L.dtype, order="K").T  # (n_k, n_b)
    del uu
    if not ut.flags.f_contiguous:
        ut = np.asfortranarray(ut)
    trsm = get_blas_funcs("trsm", (ut,))
    z = trsm(1.0, L, ut, side=0, lower=1, overwrite_b=1)
    q_u = np.einsum("ij,ij->j", z, z, dtype=np.float64)
    del z, ut
    hp = _mv(wb, p) * inv_db  # (H p)_b
    q_raw = q_u + 2.0 * hp - rp  # h_bᵀ X h_b
    lev_b = 1.0 + _mv(wb, dX) - d_b * q_raw
    # Σ_b w_bk q_raw_b etc.: see the module docstring; (X S)_kk = 1 − D_k/ΣD_k here.
    lev_k = (
        np.einsum("bk,b->k", wb, inv_db + q_raw) - d_k * dX + 2.0 * (1.0 - d_k / float(d_k.sum()))
    )
    var_k = dX - 2.0 * p + rp
    var_b = inv_db + q_u
    if rows_big:
        a2 = float(np.sum(a * a * inv_db))
        var_g_act = var_b - 2.0 * a * inv_db + a2
        var_e_act = var_k + a2
        lev_r_act, lev_c_act = lev_b, lev_k
    else:
        var_g_act = var_k
        var_e_act = var_b
        lev_r_act, lev_c_act = lev_k, lev_b
    var_log_g = np.full(n_row, np.nan)
    var_log_e = np.full(n_exp, np.nan)
    lev_row = np.full(n_row, np.nan)
    lev_exp = np.full(n_exp, np.nan)
    # Never a negative variance from rounding.
    var_log_g[rows_idx] = np.maximum(var_g_act, 0.0)
    var_log_e[exps_idx] = np.maximum(var_e_act, 0.0)
    lev_row[rows_idx] = lev_r_act
    lev_exp[exps_idx] = lev_c_act
    return Covariance(
        var_log_g=var_log_g,
        var_log_e=var_log_e,
        lev_row=lev_row,
        lev_exp=lev_exp,
        factor=SchurFactor(L, s, wb, rows_big, rows_idx, exps_idx),
    )
