"""What the pages draw, checked against the camera geometry and the certification rules."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from web_sample import camera_path

from calibreg.formats import read_camera
from calibreg.web.layout import focal_plane, script_json, timeline, utc_ms


@pytest.fixture(scope="module")
def lsstcam() -> tuple[pd.DataFrame, pd.DataFrame, object]:
    """LSSTCam geometry frames shaped as Registry.geometry returns them."""
    camera = read_camera(camera_path(), instrument="LSSTCam")
    dets = pd.DataFrame(
        [
            {
                "id": d.id,
                "name": d.name,
                "purpose": d.purpose,
                "bbox_x0": d.bbox_x0,
                "bbox_y0": d.bbox_y0,
                "bbox_x1": d.bbox_x1,
                "bbox_y1": d.bbox_y1,
                "offset_x": d.offset_x,
                "offset_y": d.offset_y,
                "yaw": d.yaw,
                "pixel_size_x": d.pixel_size_x,
                "pixel_size_y": d.pixel_size_y,
            }
            for d in camera.detectors
        ]
    )
    amps = pd.DataFrame(
        [
            {
                "detector_id": d.id,
                "amp_index": a.index,
                "name": a.name,
                "bbox_x0": a.bbox_x0,
                "bbox_y0": a.bbox_y0,
                "bbox_width": a.bbox_width,
                "bbox_height": a.bbox_height,
            }
            for d in camera.detectors
            for a in d.amplifiers
        ]
    )
    return dets, amps, camera


def test_amplifiers_tile_their_detector_at_its_offset(lsstcam) -> None:
    dets, amps, camera = lsstcam
    for det in camera.detectors:  # every detector kind and yaw of the real camera
        rows = pd.DataFrame({"detector": det.id, "amp": [a.name for a in det.amplifiers]})
        box = focal_plane(rows, dets, amps)
        whole = focal_plane(pd.DataFrame({"detector": [det.id], "amp": [None]}), dets, amps)
        x0, y0 = box["x"].min(), box["y"].min()
        x1, y1 = (box["x"] + box["w"]).max(), (box["y"] + box["h"]).max()
        # the amplifiers cover exactly the detector's box (no gap, no overlap: areas add up)
        assert (box["w"] * box["h"]).sum() == pytest.approx(whole["w"][0] * whole["h"][0], rel=1e-6)
        assert (x0, y0, x1 - x0, y1 - y0) == pytest.approx(
            (whole["x"][0], whole["y"][0], whole["w"][0], whole["h"][0]), abs=2e-3
        )
        # centred on the focal-plane offset (SVG y is the focal plane's -y), pixel size 10 µm
        assert (x0 + x1) / 2 == pytest.approx(det.offset_x, abs=2e-3)
        assert (y0 + y1) / 2 == pytest.approx(-det.offset_y, abs=2e-3)
        long_side = max(det.bbox_x1 - det.bbox_x0 + 1, det.bbox_y1 - det.bbox_y0 + 1)
        assert max(whole["w"][0], whole["h"][0]) == pytest.approx(long_side * det.pixel_size_x)
    assert box["placement"] == "offsets"


def test_amplifier_order_follows_the_pixel_boxes(lsstcam) -> None:
    dets, amps, _camera = lsstcam
    # R22_S11 (id 94, yaw 0): C00 has x0 = 0 and y0 = 0, C07 x0 = 3584; C10 sits above C00.
    rows = pd.DataFrame({"detector": 94, "amp": ["C00", "C07", "C10"]})
    box = focal_plane(rows, dets, amps)
    assert box["x"][0] < box["x"][1]
    assert box["x"][0] == pytest.approx(box["x"][2])
    assert box["y"][2] < box["y"][0]  # higher on the focal plane = smaller SVG y


def test_unknown_rows_get_nan_and_missing_geometry_a_grid() -> None:
    dets = pd.DataFrame(
        {
            "id": [0, 1],
            "name": ["A", "B"],
            "purpose": "SCIENCE",
            "bbox_x0": 0,
            "bbox_y0": 0,
            "bbox_x1": 99,
            "bbox_y1": 49,
            "offset_x": np.nan,
            "offset_y": np.nan,
            "yaw": np.nan,
            "pixel_size_x": np.nan,
            "pixel_size_y": np.nan,
        }
    )
    amps = pd.DataFrame(
        {
            "detector_id": [0],
            "amp_index": [0],
            "name": ["C00"],
            "bbox_x0": [0],
            "bbox_y0": [0],
            "bbox_width": [100],
            "bbox_height": [50],
        }
    )
    rows = pd.DataFrame({"detector": [0, 1, 7, 0], "amp": ["C00", None, "C00", "C99"]})
    box = focal_plane(rows, dets, amps)
    assert box["placement"] == "grid by detector id"
    assert np.isfinite(box["x"][:2]).all()
    assert np.isnan(box["x"][2:]).all()  # unknown detector, unknown amplifier
    # boxes do not overlap: 95 % of the spacing between the two centres
    assert box["x"][0] + box["w"][0] < box["x"][1]


def test_script_json_cannot_close_its_script_block() -> None:
    value = {"name": "</script><script>alert(1)</script>", "x": np.array([1.0, np.nan])}
    text = str(script_json(value))
    assert "<" not in text and ">" not in text
    assert json.loads(text) == {"name": value["name"], "x": [1.0, None]}


def _cert(cid, version, begin, end, certified, decertified=None, filt="r"):
    return {
        "certification_id": cid,
        "version_id": version,
        "instrument": "Cam",
        "physical_filter": filt,
        "valid_begin": begin,
        "valid_end": end,
        "certified_at": certified,
        "certified_by": "me",
        "decertified_at": decertified,
        "decertified_by": "me" if decertified else None,
    }


def test_timeline_lanes_and_as_of() -> None:
    t = [dt.datetime(2026, 1, d, tzinfo=dt.UTC) for d in (1, 2, 3)]
    s = 10**9
    certs = [
        _cert(1, 10, 0 * s + 1_700_000_000 * s, None, t[0], decertified=t[1]),
        _cert(2, 10, 1_700_000_000 * s, 1_700_003_600 * s, t[1]),
        _cert(3, 11, 1_700_003_600 * s, None, t[1]),
        _cert(4, 12, None, None, t[2], filt="g"),
    ]
    now = timeline(certs)
    lanes = {
        (g["physical_filter"], lane["kind"]): [b["certification_id"] for b in lane["bars"]]
        for g in now["groups"]
        for lane in g["lanes"]
    }
    assert lanes == {("g", "active"): [4], ("r", "active"): [2, 3], ("r", "decertified"): [1]}
    bars = {
        b["certification_id"]: b for g in now["groups"] for ln in g["lanes"] for b in ln["bars"]
    }
    assert bars[2]["x"] + bars[2]["w"] == pytest.approx(bars[3]["x"], abs=0.02)  # they abut
    assert bars[3]["open_end"] and bars[3]["x"] + bars[3]["w"] == pytest.approx(now["width"])
    assert bars[4]["open_begin"] and bars[4]["x"] == 0
    # as of just after the first certification: only it, and still active
    then = timeline(certs, as_of=t[0] + dt.timedelta(hours=1))
    assert then["n_shown"] == 1
    assert then["groups"][0]["lanes"][0]["kind"] == "active"
    assert timeline(certs, as_of=t[0] - dt.timedelta(days=1))["n_shown"] == 0


def test_utc_ms_takes_off_the_leap_seconds() -> None:
    # 2026-01-15T03:00:00 TAI is 02:59:23 UTC (TAI - UTC = 37 s since 2017)
    tai = int(dt.datetime(2026, 1, 15, 3, tzinfo=dt.UTC).timestamp()) * 10**9
    expected = dt.datetime(2026, 1, 15, 2, 59, 23, tzinfo=dt.UTC).timestamp() * 1000
    assert utc_ms(tai) == expected
    assert utc_ms(None) is None


def test_templates_and_assets_are_package_data() -> None:
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["calibreg"]
    files = [
        p.relative_to(root / "calibreg").as_posix()
        for sub in ("templates", "static")
        for p in (root / "calibreg" / "web" / sub).iterdir()
    ]
    assert files
    for name in files:
        assert any(fnmatch.fnmatch(name, g) for g in globs), name
