"""The cp_pipe ``outputScales`` shape (SPEC §5), at DETECTOR and AMP level."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from calibreg.engine import measure_scales, to_cp_pipe_scales


def _solution(n_row, n_exp, seed=0, dead_exposure=None):
    rng = np.random.default_rng(seed)
    G = rng.uniform(0.6, 1.4, n_row)
    E = rng.uniform(1e3, 5e4, n_exp)
    B = G[:, None] * E
    if dead_exposure is not None:
        B[:, dead_exposure] = np.nan
    return measure_scales(B), G, E


def _assert_plain_types(out):
    for det, amps in out["expScale"].items():
        assert type(det) is int
        for amp, per_exp in amps.items():
            assert type(amp) is str
            for exp, value in per_exp.items():
                assert type(exp) is int
                assert type(value) is float


def test_detector_level():
    sol, *_ = _solution(3, 4, dead_exposure=2)
    amp_names = {np.int64(5): ["C00", "C01"], 9: ["C00"], 12: ["A", "B", "C"]}
    amp_names = {int(k): v for k, v in amp_names.items()}
    out = to_cp_pipe_scales(
        sol,
        level="DETECTOR",
        row_labels=[np.int64(5), 9, 12],
        exposure_ids=[np.int64(2024010100001), 2, 3, 4],
        amp_names=amp_names,
    )
    assert set(out) == {"expScale", "detScale"}
    assert out["detScale"] == {5: sol.row_scales[0], 9: sol.row_scales[1], 12: sol.row_scales[2]}
    assert all(type(k) is int and type(v) is float for k, v in out["detScale"].items())
    assert list(out["expScale"][12]) == ["A", "B", "C"]
    assert out["expScale"][5]["C01"][2024010100001] == sol.exp_scales[0]
    assert math.isnan(out["expScale"][9]["C00"][3])  # the flagged exposure
    _assert_plain_types(out)


def test_amp_level_mixed_16_and_8_amplifiers_in_any_row_order():
    """Defects 2 and 3: each (det, amp) gets its own row, whatever the amp counts and order."""
    amp_names = {
        1: [f"C1{i}" for i in range(8)] + [f"C0{i}" for i in range(8)],
        191: ["C10", "C11", "C12", "C13", "C14", "C15", "C16", "C17"],  # wavefront sensor
        2: [f"C1{i}" for i in range(8)] + [f"C0{i}" for i in range(8)],
    }
    labels = [(d, a) for d in amp_names for a in amp_names[d]]
    order = np.random.default_rng(3).permutation(len(labels))
    labels = [labels[i] for i in order]
    sol, G, _ = _solution(len(labels), 5, seed=4)
    out = to_cp_pipe_scales(
        sol, level="AMP", row_labels=labels, exposure_ids=[10, 11, 12, 13, 14], amp_names=amp_names
    )
    assert {d: len(v) for d, v in out["detScale"].items()} == {1: 16, 191: 8, 2: 16}
    for i, (det, amp) in enumerate(labels):
        assert out["detScale"][det][amp] == sol.row_scales[i]
        assert type(out["detScale"][det][amp]) is float
    assert len(out["expScale"][191]) == 8
    assert out["expScale"][2]["C05"][13] == sol.exp_scales[3]
    _assert_plain_types(out)
    # The G ratios come through the label mapping intact.
    g = {lab: G[i] for i, lab in enumerate(labels)}
    ratio = out["detScale"][191]["C13"] / out["detScale"][1]["C02"]
    assert ratio == pytest.approx(g[(191, "C13")] / g[(1, "C02")], rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": "CCD"}, "unknown level 'CCD'"),
        ({"row_labels": [1]}, "1 row labels given for a solution with 2 rows"),
        ({"exposure_ids": [1]}, "1 exposure ids given for a solution with 3 exposures"),
        ({"exposure_ids": [1, 1, 2]}, "exposure ids repeat"),
        ({"exposure_ids": [1.5, 2, 3]}, "exposure id must be an integer"),
        ({"row_labels": [1, 1]}, "detector 1 labels more than one row"),
        ({"row_labels": [1, 3]}, "amp_names has no entry for detector 3"),
        ({"level": "AMP"}, "row label 0 must be a (detector_id, amp_name) pair"),
        ({"level": "AMP", "row_labels": [(1, "A"), (1, "Z")]}, "detector 1 has no amplifier 'Z'"),
        ({"level": "AMP", "row_labels": [(1, "A"), (1, "A")]}, "(1, 'A') labels more than one"),
    ],
)
def test_bad_labels(kwargs, message):
    sol, *_ = _solution(2, 3)
    args = {
        "level": "DETECTOR",
        "row_labels": [1, 2],
        "exposure_ids": [1, 2, 3],
        "amp_names": {1: ["A", "B"], 2: ["A"]},
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        to_cp_pipe_scales(sol, **args)
