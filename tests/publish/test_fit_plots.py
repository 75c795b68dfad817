"""``calibreg plot residuals|row|exposures`` and the focal plane's flags (issue 8, item 8).

Ground truth is injected: one outlying entry (a detector's background × 1.5 in one exposure)
that the robust fit must reject, and which the residual image must mark at that row and
exposure.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from calibreg_cli.main import app
from matplotlib import image as mpimg
from typer.testing import CliRunner

from tests.publish.pubdata import FILTER, INSTRUMENT

runner = CliRunner()


def cli(*args, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture
def robust_version(pub):
    dets = sorted(int(d) for d in pub.sim.stats["detector"].unique())
    exposures = sorted(int(e) for e in pub.sim.exposures["id"])
    pub.scale_detector(dets[3], 1.5, exposure=exposures[2])
    return pub, pub.solve(method="robust"), dets[3], exposures[2]


def test_fit_knows_the_injected_outlier(robust_version) -> None:
    pub, v, det, exposure = robust_version
    fit = pub.registry.fit(v)
    r = int(fit.find_rows(det)[0])
    c = int(np.flatnonzero(fit.exposure_ids == exposure)[0])
    assert fit.rejected[r, c]
    assert fit.exposure_time.shape == (4,) and np.isfinite(fit.exposure_time).all()
    with pytest.raises(KeyError):
        fit.find_rows("R99_S99")


def test_plot_commands_write_what_they_say(robust_version, tmp_path) -> None:
    pub, v, det, _ = robust_version
    for args, name in (
        (("residuals", v), "res.png"),
        (("row", v, "--detector", det), "row.svg"),
        (("exposures", v), "exp.pdf"),
        (("focal-plane", v), "fp.png"),
    ):
        out = tmp_path / name
        res = cli("plot", *args, "-o", out, "--db", pub.url)
        assert f"wrote {out}" in res.output
        assert out.stat().st_size > 1000
        if name.endswith(".png"):
            img = mpimg.imread(out)
            assert img.ndim == 3 and img.shape[0] > 200
        elif name.endswith(".svg"):
            text = out.read_text()
            assert "<svg" in text and "log residual" in text
        else:
            assert out.read_bytes().startswith(b"%PDF")


def test_plot_inputs_are_one_line_errors(robust_version, tmp_path) -> None:
    pub, v, _, _ = robust_version
    for args, words in (
        (("residuals", v, "-o", tmp_path / "x.txt"), "use .png"),
        (("residuals", 999999, "-o", tmp_path / "x.png"), "no calibration version"),
        (("row", v, "--detector", "R99_S99", "-o", tmp_path / "r.png"), "no row for detector"),
    ):
        res = cli("plot", *args, "--db", pub.url, ok=False)
        assert res.exit_code != 0
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and words in lines[0], res.output
        assert "Traceback" not in res.output


def test_residual_image_axes(robust_version, tmp_path) -> None:
    from calibreg.services import fit_plots

    pub, v, _, _ = robust_version
    fit = pub.registry.fit(v)
    import matplotlib.pyplot as plt

    closed = []
    real_close = plt.close
    plt.close = lambda fig=None: closed.append(fig)  # keep the figure to look at it
    try:
        fit_plots.residual_image(fit, tmp_path / "r.png")
    finally:
        plt.close = real_close
    fig = closed[0]
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("exposure") and ax.get_ylabel().startswith("row")
    assert f"version {v}" in ax.get_title() and INSTRUMENT in ax.get_title()
    assert FILTER in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("rejected (") for t in labels)
    real_close(fig)
