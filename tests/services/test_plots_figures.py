"""The plots' contents (issue 10, item 4): axes, titles, colour scale, flags, series, dates.

Each figure is checked against ground truth computed here from the registry's own tables and
the simulation's truth (the dead amplifier the simulator planted), not against the plotting
code's intermediate values. One SQLite registry per module: what a plot shows does not depend
on the backend, which the registry tests cover.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PatchCollection

from calibreg.client import Registry
from calibreg.domain.quantum import Selection
from calibreg.errors import InputError, NotFoundError
from calibreg.formats.timescale import tai_ns_to_utc
from calibreg.services.plots import focal_plane_figure, history_figure
from calibreg.services.simulate import simulate_flats
from calibreg.services.solve import SolveRequest, solve_quantum
from tests.conftest import LSSTCAM_YAML

INSTRUMENT, FILTER = "LSSTCam", "r_57"


@pytest.fixture(scope="module")
def reg(tmp_path_factory, lsstcam_spec):
    """Camera, 4 simulated flats, and versions: DETECTOR exact, AMP exact/robust/subset."""
    path = tmp_path_factory.mktemp("plots") / "reg.sqlite3"
    registry = Registry(f"sqlite:///{path}", check_schema=False)
    registry.upgrade()
    registry.ingest_camera(
        lsstcam_spec, source=str(LSSTCAM_YAML), sha256="camera", instrument=INSTRUMENT
    )
    sim = simulate_flats(lsstcam_spec, n_exposures=4, seed=7, n_missing_frames=1)
    registry.ingest_exposures(sim.exposures, source="exposures", sha256="exposures")
    registry.ingest_stats(sim.stats, source="stats", sha256="stats", instrument=INSTRUMENT)
    ids = sorted(int(e) for e in sim.exposures["id"])
    versions = {
        name: int(solve_quantum(registry, SolveRequest(INSTRUMENT, FILTER, **kw))["version_id"])
        for name, kw in {
            "det": {"level": "DETECTOR"},
            "amp": {"level": "AMP"},
            "robust": {"level": "AMP", "method": "robust"},
            "subset": {"level": "AMP", "selection": Selection(exposures=tuple(ids[:3]))},
        }.items()
    }
    yield registry, sim, versions
    registry.close()


def _collection(fig) -> PatchCollection:
    (coll,) = [c for c in fig.axes[0].collections if isinstance(c, PatchCollection)]
    return coll


def _texts(ax) -> set[str]:
    return {t.get_text() for t in ax.texts}


def test_focal_plane_amp_scale_is_symmetric_around_one_and_flags_the_dead_amp(reg) -> None:
    registry, sim, v = reg
    fig = focal_plane_figure(registry, v["amp"])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "focal plane x (mm)" and ax.get_ylabel() == "focal plane y (mm)"
    title = ax.get_title()
    assert f"{INSTRUMENT} {FILTER} AMP" in title and f"version {v['amp']}" in title
    lo, hi = _collection(fig).get_clim()
    assert lo < 1 < hi and (1 - lo) == pytest.approx(hi - 1, rel=1e-12)
    rows = registry.scales(v["amp"], "row")
    g = rows["scale"].to_numpy(float)
    g = g[np.isfinite(g)]
    assert hi - 1 == pytest.approx(np.percentile(np.abs(g - 1), 99.5), rel=1e-9)
    assert f"1 ± {hi - 1:.3g}" in title  # the range is in the title
    # Every colour value is one row's G, in the registry's row order.
    np.testing.assert_allclose(
        np.ma.filled(_collection(fig).get_array(), np.nan),
        rows["scale"].to_numpy(float),
        equal_nan=True,
    )
    # The dead amplifier the simulator planted is flagged and marked at its detector.
    dead_det, dead_amp = sim.dead
    dead = rows[(rows["detector"] == dead_det) & (rows["amp"] == dead_amp)]
    assert bool(dead["flagged"].iloc[0])
    (marks,) = [ln for ln in ax.lines if ln.get_gid() == "flagged"]
    assert len(marks.get_xdata()) == int(rows["flagged"].sum())
    dets, _ = registry.geometry(INSTRUMENT)
    det = dets.set_index("id").loc[dead_det]
    distance = np.hypot(marks.get_xdata() - det.offset_x, marks.get_ydata() - det.offset_y)
    assert distance.min() < 21.0  # within the dead amplifier's 42 mm detector
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("flagged amplifiers (") and "no_data" in t for t in legend)
    assert "guider (SG0, SG1)" in legend and "wavefront (SW0, SW1)" in legend
    # Raft and detector labels, the corner rafts' guider and wavefront sensors among them.
    texts = _texts(ax)
    assert {"R00", "R04", "R22", "R40", "R44", "S11", "SG0", "SG1", "SW0", "SW1"} <= texts
    plt.close(fig)


def test_focal_plane_outlines_every_corner_sensor(reg) -> None:
    registry, _, v = reg
    fig = focal_plane_figure(registry, v["det"])
    ax = fig.axes[0]
    dets, _ = registry.geometry(INSTRUMENT)
    corner = dets[dets["purpose"].isin(["GUIDER", "WAVEFRONT"])]
    assert len(corner) == 16 and set(corner["name"].str[:3]) == {"R00", "R04", "R40", "R44"}
    dashed = [p for p in ax.patches if p.get_linestyle() in ("--", "dashed")]
    dotted = [p for p in ax.patches if p.get_linestyle() in (":", "dotted")]
    assert len(dashed) == (corner["purpose"] == "GUIDER").sum() == 8
    assert len(dotted) == (corner["purpose"] == "WAVEFRONT").sum() == 8
    assert "DETECTOR" in ax.get_title()
    assert fig.axes[1].get_ylabel().startswith("relative response G")
    plt.close(fig)


def test_focal_plane_compare_draws_the_ratio(reg) -> None:
    registry, _, v = reg
    fig = focal_plane_figure(registry, v["amp"], compare=v["subset"])
    old = registry.scales(v["amp"], "row").set_index(["detector", "amp"])["scale"]
    new = registry.scales(v["subset"], "row").set_index(["detector", "amp"])["scale"]
    expected = (new.reindex(old.index) / old).to_numpy(float)
    got = np.ma.filled(_collection(fig).get_array(), np.nan)
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)
    assert np.nanstd(got) > 0  # a real comparison: the subset solve differs
    lo, hi = _collection(fig).get_clim()
    assert (1 - lo) == pytest.approx(hi - 1, rel=1e-12)
    assert f"G(v{v['subset']}) / G(v{v['amp']})" in fig.axes[0].get_title()
    assert fig.axes[1].get_ylabel() == f"ratio G(v{v['subset']}) / G(v{v['amp']})"
    plt.close(fig)
    with pytest.raises(InputError, match="same level"):
        focal_plane_figure(registry, v["amp"], compare=v["det"])
    with pytest.raises(NotFoundError):
        focal_plane_figure(registry, v["amp"], compare=999_999)


def _input_median(registry, sim, version) -> float:
    ids = registry.scales(version, "exposure")["exposure"]
    begins = sim.exposures.set_index("id")["timespan_begin"].reindex(ids).to_numpy("int64")
    return mdates.date2num(tai_ns_to_utc(int(np.median(begins))))


def test_history_one_series_per_method_and_selection_at_the_input_dates(reg) -> None:
    registry, sim, v = reg
    fig = history_figure(
        registry, instrument=INSTRUMENT, physical_filter=FILTER, detector="R22_S11", amp="C10"
    )
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("observation date of the inputs")
    assert ax.get_ylabel() == "relative response G"
    assert "R22_S11" in ax.get_title() and "C10" in ax.get_title()
    legend = sorted(t.get_text() for t in ax.get_legend().get_texts())
    ids = sorted(int(e) for e in sim.exposures["id"])[:3]
    subset = "exact [exposures=" + ",".join(map(str, ids)) + "] (1)"
    assert legend == ["exact (1)", subset, "robust (1)"]
    # Each version's point sits at the median start of its own input exposures.
    hist = registry.history(
        instrument=INSTRUMENT, physical_filter=FILTER, detector="R22_S11", amp="C10"
    )
    points = {}
    for line in ax.lines:
        if line.get_gid() != "flagged" and len(line.get_xdata()) and line.get_marker() == "o":
            for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
                points[round(float(y), 15)] = float(x)
    for rec in hist.itertuples(index=False):
        assert points[round(float(rec.scale), 15)] == pytest.approx(
            _input_median(registry, sim, int(rec.version)), abs=1e-9
        )
    assert _input_median(registry, sim, v["subset"]) < _input_median(registry, sim, v["amp"])
    # Dates show year and month; y has no offset notation.
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert any(lbl.startswith("2026-01") for lbl in labels), labels
    assert ax.yaxis.get_major_formatter().get_useOffset() is False
    assert ax.yaxis.get_offset_text().get_text() == ""
    # Every version is labelled once (as vN), none drawn twice.
    labelled = [s for t in _texts(ax) for s in t.split(", ")]
    assert sorted(labelled) == sorted(f"v{n}" for n in hist["version"])
    plt.close(fig)


def test_history_marks_flagged_versions(reg) -> None:
    registry, sim, _ = reg
    dets, _ = registry.geometry(INSTRUMENT)
    name = dets.set_index("id").loc[sim.dead[0], "name"]
    hist = registry.history(
        instrument=INSTRUMENT, physical_filter=FILTER, detector=name, amp=sim.dead[1]
    )
    assert hist["flagged"].all() and len(hist) == 3
    fig = history_figure(
        registry, instrument=INSTRUMENT, physical_filter=FILTER, detector=name, amp=sim.dead[1]
    )
    ax = fig.axes[0]
    (marks,) = [ln for ln in ax.lines if ln.get_gid() == "flagged"]
    assert len(marks.get_xdata()) == 3
    assert any(t.get_text() == "flagged (3)" for t in ax.get_legend().get_texts())
    plt.close(fig)


def test_history_with_nothing_to_draw_is_an_error(reg) -> None:
    registry, _, _ = reg
    with pytest.raises(NotFoundError, match="nothing to plot"):
        history_figure(registry, instrument=INSTRUMENT, physical_filter="g_6", detector="94")


# --------------------------------------------------------------------------- the commands


def _cli(*args):
    from calibreg_cli.main import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [str(a) for a in args])


def _commands(v: dict[str, int]) -> list[tuple[str, ...]]:
    return [
        ("focal-plane", v["amp"]),
        ("focal-plane", v["amp"], "--compare", v["robust"]),
        ("history", "-i", INSTRUMENT, "-f", FILTER, "-d", "R22_S11", "--amp", "C10"),
        ("residuals", v["amp"]),
        ("row", v["amp"], "--detector", "R22_S11"),
        ("exposures", v["amp"]),
    ]


@pytest.mark.parametrize("suffix", [".png", ".pdf", ".svg"])
def test_every_plot_command_writes_the_format_of_its_suffix(reg, tmp_path, suffix) -> None:
    registry, _, v = reg
    magic = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF", ".svg": b"<?xml"}[suffix]
    for i, args in enumerate(_commands(v)):
        out = tmp_path / f"plot{i}{suffix.upper() if i == 0 else suffix}"
        res = _cli("plot", *args, "-o", out, "--db", registry.database)
        assert res.exit_code == 0, res.output
        assert res.output.strip() == f"wrote {out}"
        assert out.read_bytes().startswith(magic), args
        if suffix == ".svg":
            import xml.etree.ElementTree as ET

            root = ET.parse(out).getroot()
            assert root.tag.endswith("svg")
            text = out.read_text()
            # matplotlib writes each text as glyphs preceded by a comment holding the text
            assert INSTRUMENT in text and FILTER in text, args


def test_a_bad_suffix_or_nothing_to_draw_is_one_line_and_writes_nothing(reg, tmp_path) -> None:
    registry, _, v = reg
    for args in _commands(v):
        out = tmp_path / "plot.jpeg"
        res = _cli("plot", *args, "-o", out, "--db", registry.database)
        assert res.exit_code != 0
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "cannot write .jpeg: use .png, .pdf, .svg" in lines[0], args
        assert not out.exists()
    out = tmp_path / "empty.png"
    res = _cli(
        "plot",
        "history",
        "-i",
        INSTRUMENT,
        "-f",
        "g_6",
        "-d",
        "R22_S11",
        "-o",
        out,
        "--db",
        registry.database,
    )
    assert res.exit_code != 0 and "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "nothing to plot" in lines[0]
    assert not out.exists()
