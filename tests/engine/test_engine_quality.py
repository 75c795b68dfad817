"""Quality flags, missing and rejected entries (issue 8, items 3 and 4)."""

from __future__ import annotations

import numpy as np
import pytest
from engine_reference import make_truth, normalized

from calibreg.engine import measure_scales
from calibreg.engine.quality import (
    EXPOSURE_FLAGS,
    FLAG_BITS,
    FLAG_HELP,
    FLAGS,
    MISSING_REASONS,
    REJECTION_REASONS,
    ROW_FLAGS,
    QualityThresholds,
    flag_names,
)

METHODS = ["exact", "alternating", "robust"]


def _clean(shape=(189, 50), seed=0, noise=1e-3):
    rng = np.random.default_rng(seed)
    G, E, N = make_truth(*shape, rng)
    B = G[:, None] * E * np.exp(rng.normal(0.0, noise, shape))
    return B, N, G, E, rng


def test_vocabulary_is_consistent():
    assert len(set(FLAGS)) == len(FLAGS)
    assert set(ROW_FLAGS) | set(EXPOSURE_FLAGS) == set(FLAGS)
    assert set(FLAG_HELP) == set(FLAGS)
    assert [FLAG_BITS[n] for n in FLAGS] == [1 << i for i in range(len(FLAGS))]
    assert flag_names(FLAG_BITS["stuck"] | FLAG_BITS["high_rms"]) == ("stuck", "high_rms")
    assert flag_names(0) == ()
    assert len(set(MISSING_REASONS)) == len(MISSING_REASONS)
    assert REJECTION_REASONS == ("clipped", "stuck_row")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_data_raise_no_flag(method, seed):
    B, N, *_ = _clean(seed=seed)
    sol = measure_scales(B, N, method=method)
    assert not sol.row_flags.any(), [sol.row_flag_names(i) for i in np.flatnonzero(sol.row_flags)]
    assert not sol.exp_flags.any()
    assert sol.weak_link_entries == 0
    assert sol.row_flags.dtype == np.uint16 and sol.row_flags.shape == (189,)


@pytest.mark.parametrize("method", METHODS)
def test_stuck_amplifier_is_flagged(method):
    """A finite constant (0.5 ADU in every exposure) fitted as G ≈ 3e-5 with unflagged rms
    before; now flagged ``stuck``, and the robust fit leaves its entries out."""
    B, N, *_ = _clean(seed=3)
    B[7] = 0.5
    sol = measure_scales(B, N, method=method)
    assert "stuck" in sol.row_flag_names(7)
    others = np.delete(np.arange(189), 7)
    assert not sol.has_flag("stuck")[others].any()
    if method == "robust":
        assert sol.rejected_reason_names().count("stuck_row") == 50
        assert set(sol.rejected_rows[sol.rejected_reasons == 1]) == {7}
        # The other rows are as good as without the stuck one.
        clean = measure_scales(np.delete(B, 7, axis=0), np.delete(N, 7, axis=0), method="robust")
        ref = clean.row_scales / np.exp(np.mean(np.log(clean.row_scales)))
        got = sol.row_scales[others] / np.exp(np.mean(np.log(sol.row_scales[others])))
        assert np.max(np.abs(got / ref - 1)) < 1e-4


def test_stuck_amplifier_on_a_flat_sequence_at_one_level():
    """With every exposure at the same level only the exact constancy gives it away."""
    B, N, G, _, rng = _clean(seed=4)
    B = G[:, None] * 1e4 * np.exp(rng.normal(0.0, 1e-3, B.shape))
    B[3] = 0.5
    sol = measure_scales(B, N)
    assert sol.row_flag_names(3) == ("stuck",)
    assert not np.delete(sol.row_flags, 3).any()


def test_noisy_row_is_flagged_high_rms():
    B, N, _, _, rng = _clean(seed=5)
    B[11] *= np.exp(rng.normal(0.0, 2e-2, 50))
    for method in METHODS:
        sol = measure_scales(B, N, method=method)
        assert sol.row_flag_names(11) == ("high_rms",), method
        assert not np.delete(sol.row_flags, 11).any()


def test_mostly_rejected_row_and_exposure():
    B, N, _, _, rng = _clean(seed=6)
    bad = rng.permutation(50)[:35]  # a broken amplifier: 35 of its 50 values way off
    B[20, bad] *= np.exp(rng.choice([-1, 1], 35) * rng.uniform(0.3, 1.0, 35))
    B[::3, 9] *= 1.1  # a third of the rows of exposure 9 (more than the row test's share)
    B[1::3, 9] *= 0.9
    sol = measure_scales(B, N, method="robust")
    assert "mostly_rejected" in sol.row_flag_names(20)
    assert "mostly_rejected" in sol.exp_flag_names(9)
    exact = measure_scales(B, N)
    assert not exact.has_flag("mostly_rejected").any()


def test_few_rows_and_few_exposures():
    B, N, *_ = _clean(seed=7)
    B[3:, 12] = np.nan  # exposure 12 seen by 3 of 189 rows
    B[40, 1:] = np.nan  # row 40 seen in one exposure
    sol = measure_scales(B, N)
    assert sol.exp_flag_names(12) == ("few_rows",)
    assert "few_exposures" in sol.row_flag_names(40)
    assert not np.delete(sol.exp_flags, 12).any()
    th = QualityThresholds(min_entries=1, min_entries_fraction=0.0)
    relaxed = measure_scales(B, N, quality=th)
    assert not relaxed.has_flag("few_rows", axis="exp").any()
    assert relaxed.quality is th


def _two_blocks(links):
    """Rows 0-19 see exposures 0-9, rows 20-34 see 10-17; ``links`` entries join them."""
    rng = np.random.default_rng(9)
    G, E, N = make_truth(35, 18, rng)
    B = G[:, None] * E * np.exp(rng.normal(0.0, 1e-3, (35, 18)))
    mask = np.zeros((35, 18), bool)
    mask[:20, :10] = True
    mask[20:, 10:] = True
    for i, j in links:
        mask[i, j] = True
    return np.where(mask, B, np.nan), N


@pytest.mark.parametrize("n_links", [1, 2, 3])
def test_weak_link_is_found_and_counted(n_links):
    links = [(20 + k, k) for k in range(n_links)]
    B, N = _two_blocks(links)
    sol = measure_scales(B, N)
    assert sol.weak_link_entries == n_links
    weak_rows = sol.has_flag("weak_link")
    weak_exps = sol.has_flag("weak_link", axis="exp")
    # The smaller block (15 rows × 8 exposures) is marked.
    assert np.flatnonzero(weak_rows).tolist() == list(range(20, 35))
    assert np.flatnonzero(weak_exps).tolist() == list(range(10, 18))
    # The weak link makes every scale less certain than with the blocks well linked.
    many = [(20 + k, k % 10) for k in range(15)] + [(k, 10 + k % 8) for k in range(15)]
    strong = measure_scales(*_two_blocks(many))
    rel = sol.exp_errors / sol.exp_scales
    rel_strong = strong.exp_errors / strong.exp_scales
    assert np.median(rel[10:]) > 1.5 * np.median(rel_strong[10:])


def test_many_links_are_not_weak():
    links = [(20 + k, k % 10) for k in range(15)] + [(k, 10 + k % 8) for k in range(15)]
    B, N = _two_blocks(links)
    sol = measure_scales(B, N)
    assert sol.weak_link_entries == 0
    assert not sol.has_flag("weak_link").any()


def test_weak_link_on_a_large_kept_side(monkeypatch):
    """The subspace-iteration path (kept side above the dense eigensolver's size)."""
    from calibreg.engine import quality

    monkeypatch.setattr(quality, "_DENSE_EIG_SIDE", 4)
    B, N = _two_blocks([(20, 0), (21, 1)])
    assert measure_scales(B, N).weak_link_entries == 2
    B, N, *_ = _clean(seed=1)
    assert measure_scales(B, N).weak_link_entries == 0


def test_missing_entries_with_reasons():
    B, N, *_ = _clean((10, 6), seed=2)
    sigma = 0.01 * B
    B[0, 1] = np.nan
    B[1, 2] = np.inf
    B[2, 3] = -5.0
    B[3, 4] = 0.0
    N[4, 5] = 0.0
    sigma[5, 0] = np.nan
    sigma[6, 1] = 0.0
    sol = measure_scales(B, N, sigma=sigma, weights="inverse-variance")
    got = sorted(
        zip(
            sol.missing_rows.tolist(),
            sol.missing_exposures.tolist(),
            sol.missing_reason_names(),
            strict=True,
        )
    )
    assert got == [
        (0, 1, "background_not_finite"),
        (1, 2, "background_not_finite"),
        (2, 3, "background_not_positive"),
        (3, 4, "background_not_positive"),
        (4, 5, "zero_count"),
        (5, 0, "sigma_invalid"),
        (6, 1, "sigma_invalid"),
    ]
    assert sol.n_missing == 7
    assert sol.missing_rows.dtype == np.int64 and sol.missing_reasons.dtype == np.int8
    assert sol.n_rejected == 0 and sol.rejected_rows.size == 0
    assert not sol.used[sol.missing_rows, sol.missing_exposures].any()


def test_rejected_entries_are_kept_apart_from_missing():
    B, N, G, E, rng = _clean(seed=8)
    # Noise as the count weights say (σ ∝ 1/sqrt(N), 1e-3 at N = 2000).
    B = G[:, None] * E * np.exp(rng.normal(0.0, 1.0, B.shape) * 0.045 / np.sqrt(N))
    hit = np.zeros(B.shape, bool)
    hit[rng.integers(0, 189, 60), rng.integers(0, 50, 60)] = True
    B = np.where(hit, B * 1.05, B)
    B[0, 0] = np.nan
    sol = measure_scales(B, N, method="robust")
    rejected = set(zip(sol.rejected_rows.tolist(), sol.rejected_exposures.tolist(), strict=True))
    assert rejected == set(zip(*np.nonzero(hit), strict=True))
    assert sol.n_rejected == len(rejected)
    np.testing.assert_allclose(sol.rejected_residuals, np.log(1.05), atol=5e-3)
    assert set(sol.rejected_reason_names()) == {"clipped"}
    assert (0, 0) not in rejected
    assert sol.missing_rows.tolist() == [0] and sol.missing_exposures.tolist() == [0]
    Gn, _ = normalized(G, E, N, np.isfinite(B))
    assert np.max(np.abs(sol.row_scales / Gn - 1)) < 2e-3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_entries": -1}, "min_entries must be finite and >= 0"),
        ({"min_entries": 1.5}, "min_entries must be an integer"),
        ({"max_rejected_fraction": 2.0}, "max_rejected_fraction must be <= 1"),
        ({"high_rms_factor": float("nan")}, "high_rms_factor must be finite"),
        ({"stuck_max_slope": "x"}, "stuck_max_slope must be a number"),
    ],
)
def test_threshold_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QualityThresholds(**kwargs)


def test_quality_must_be_thresholds():
    with pytest.raises(ValueError, match="quality must be a QualityThresholds"):
        measure_scales(np.ones((2, 2)), quality={"min_entries": 3})
