"""Real data through the CLI (issue 8, item 9): the LATISS PTC's per-amplifier flat-pair means.

``tests/data/flat_stats/ci_cpp_gen3/ptcDet.yaml`` holds, for each of LATISS's 16 amplifiers,
the raw means and variances of 30 flat pairs from ~5e3 to ~1.46e5 ADU and the PTC's own mask of
the pairs below each amplifier's turnoff. They are ingested as AMP statistics of 30 exposures
(the camera from obs_lsst's LATISS policy) and solved with every method and weighting through
``calibreg solve``. The truth is computed here without any solver: each amplifier's mean ratio
to the amplifiers' average over the pairs that are unsaturated on every amplifier; and the
pairs step the exposure time evenly, so E of pair ``j`` is proportional to ``j + 1``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from calibreg_cli.main import app
from typer.testing import CliRunner

from tests.conftest import TEST_DATA

runner = CliRunner()
POLICY = TEST_DATA / "cameras" / "obs_lsst" / "policy" / "latiss"
PTC = TEST_DATA / "flat_stats" / "ci_cpp_gen3" / "ptcDet.yaml"
N_PIX = 1_000_000  # pixels behind each amplifier mean (about 509 × 2000)
FILTER = "empty~empty"
FIRST = 2024021500001


def cli(*args, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture
def latiss(db_url: str, tmp_path: Path):
    """A registry holding LATISS and the PTC's 16 × 30 means; returns (db, truth)."""
    amps = yaml.safe_load(PTC.read_text())["AMP"]
    names = list(amps)
    means = np.array([amps[a]["PTC_RAW_MEANS"] for a in names], dtype=float)
    variances = np.array([amps[a]["PTC_RAW_VARIANCE"] for a in names], dtype=float)
    good = np.array([amps[a]["PTC_EXP_ID_MASK"] for a in names], dtype=bool)
    n_exp = means.shape[1]
    ids = FIRST + np.arange(n_exp)
    exposures = pd.DataFrame(
        {
            "instrument": "LATISS",
            "id": ids,
            "physical_filter": FILTER,
            "observation_type": "flat",
            "observation_reason": "ptc",
            "day_obs": 20240214,
            "seq_num": np.arange(1, n_exp + 1),
            "exposure_time": np.arange(1, n_exp + 1, dtype=float),
        }
    )
    stats = pd.DataFrame(
        {
            "exposure": np.repeat(ids[None, :], len(names), axis=0).ravel(),
            "detector": 0,
            "amp": np.repeat(names, n_exp),
            "median": means.ravel(),
            "sigma": np.sqrt(variances).ravel(),
            "n_pixels": N_PIX,
        }
    )
    exp_csv, stats_csv = tmp_path / "exposures.csv", tmp_path / "stats.csv"
    exposures.to_csv(exp_csv, index=False)
    stats.to_csv(stats_csv, index=False)
    cli("db", "upgrade", "--db", db_url)
    cli("ingest", "camera", POLICY, "--db", db_url)
    cli("ingest", "exposures", exp_csv, "--db", db_url)
    cli("ingest", "stats", stats_csv, "--instrument", "LATISS", "--db", db_url)
    clean = good.all(axis=0)
    ratio = means[:, clean] / means[:, clean].mean(axis=0)
    truth = {
        "names": names,
        "G": ratio.mean(axis=1) / ratio.mean(),
        "clean_ids": [int(i) for i in ids[clean]],
        "clean": clean,
        "ids": ids,
    }
    assert clean.sum() >= 15  # the pairs below every amplifier's turnoff
    return db_url, truth


def _solve(db: str, method: str, weights: str, *extra: str) -> int:
    out = cli(
        "solve",
        "-i",
        "LATISS",
        "-f",
        FILTER,
        "--level",
        "AMP",
        "--method",
        method,
        "--weights",
        weights,
        "--format",
        "json",
        "--db",
        db,
        *extra,
    )
    return int(json.loads(out.stdout)["version_id"])


def _scales(db: str, version: int, kind: str) -> pd.DataFrame:
    out = cli("scales", version, "--kind", kind, "--format", "json", "--db", db)
    return pd.DataFrame(json.loads(out.stdout))


@pytest.mark.parametrize("weights", ["counts", "inverse-variance"])
@pytest.mark.parametrize("method", ["exact", "alternating", "robust"])
def test_latiss_ptc_through_the_cli(latiss, method: str, weights: str) -> None:
    db, truth = latiss
    # robust: on every pair, saturated ones included (it has to find them); the least-squares
    # methods: on the pairs below every turnoff (on all pairs saturation pulls them, which
    # tests/engine/test_engine_latiss.py shows).
    extra = () if method == "robust" else ("--exposures", ",".join(map(str, truth["clean_ids"])))
    if method == "alternating":
        extra = (*extra, "--max-iter", "10000", "--tol", "1e-14")
    version = _solve(db, method, weights, *extra)
    rows = _scales(db, version, "row")
    assert list(rows["amp"]) == truth["names"]
    G = rows["scale"].to_numpy(float)
    G = G / G.mean()
    assert np.max(np.abs(G - truth["G"])) < 5e-4, (method, weights)
    # Every amplifier has an error, none is flagged.
    rel = rows["error"].to_numpy(float) / rows["scale"].to_numpy(float)
    assert np.all(np.isfinite(rel) & (rel > 0) & (rel < 1e-3))
    assert (rows["flags"] == 0).all()
    # E follows the flux sequence (E_j ∝ j + 1) on the clean pairs, to the lamp's ~1e-3.
    exps = _scales(db, version, "exposure")
    step = {int(i): k + 1 for k, i in enumerate(truth["ids"])}
    clean = exps[exps["exposure"].isin(truth["clean_ids"])]
    per_step = clean["scale"].to_numpy(float) / clean["exposure"].map(step).to_numpy(float)
    assert np.max(np.abs(per_step / np.median(per_step) - 1)) < 2e-3
    record = json.loads(cli("versions", "show", version, "--format", "json", "--db", db).stdout)
    assert record["dof"] == int(rows["n_used"].sum()) - 16 - int((exps["n_used"] > 0).sum()) + 1
    if method == "robust":
        # What it rejected are mostly saturated pairs; the worst pairs are flagged for it.
        rejected = pd.DataFrame(
            json.loads(cli("scales", version, "--rejected", "--format", "json", "--db", db).stdout)
        )
        assert len(rejected) == record["n_rejected"] >= 60
        on_clean = rejected["exposure"].isin(truth["clean_ids"])
        assert on_clean.sum() <= 0.1 * len(rejected)
        last = exps.sort_values("exposure").tail(3)
        assert all("mostly_rejected" in f for f in last["flag_names"])
