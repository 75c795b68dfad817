"""Camera readers: the real obs_lsst LSSTCam geometry and calibreg's own format."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest

from calibreg.errors import InputError
from calibreg.formats import CameraSpec, read_camera, write_camera_yaml

DATA = Path(__file__).resolve().parents[1] / "data"
LSSTCAM_SIM = DATA / "cameras" / "obs_lsst" / "policy" / "lsstCamSim.yaml"


@pytest.fixture(scope="module")
def lsstcam() -> CameraSpec:
    return read_camera(LSSTCAM_SIM)


def _same(a: object, b: object) -> bool:
    """Equality where NaN equals NaN (unknown values survive a round trip as unknown)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_lsstcam_counts(lsstcam: CameraSpec) -> None:
    assert lsstcam.name == "LSSTCamSim"
    assert lsstcam.source_format == "obs_lsst"
    assert len(lsstcam.detectors) == 205
    assert Counter(d.purpose for d in lsstcam.detectors) == {
        "SCIENCE": 189,
        "GUIDER": 8,
        "WAVEFRONT": 8,
    }
    assert Counter(d.physical_type for d in lsstcam.detectors) == {
        "E2V": 117,
        "ITL": 72,
        "ITL_G": 8,
        "ITL_WF": 8,
    }
    assert lsstcam.n_amplifiers == 3216
    for det in lsstcam.detectors:
        assert len(det.amplifiers) == (8 if det.purpose == "WAVEFRONT" else 16)
    ids = [d.id for d in lsstcam.detectors]
    assert ids == sorted(ids) == list(range(205))


def test_lsstcam_spot_values(lsstcam: CameraSpec) -> None:
    det = next(d for d in lsstcam.detectors if d.name == "R00_SG0")
    assert det.id == 189
    assert det.serial == "ITL-3800C-397"
    assert det.purpose == "GUIDER"
    assert (det.bbox_x0, det.bbox_y0, det.bbox_x1, det.bbox_y1) == (0, 0, 4071, 3999)
    assert (det.offset_x, det.offset_y, det.offset_z) == (-212.24, -258.74, 0.0)
    assert det.yaw == 450.0
    c10 = det.amplifiers[0]
    assert (c10.name, c10.index, c10.gain, c10.read_noise) == ("C10", 0, 1.47879, 10.407)
    # ixy = (0, 1), data region 509 x 2000 -> assembled at (0, 2000)
    assert (c10.bbox_x0, c10.bbox_y0, c10.bbox_width, c10.bbox_height) == (0, 2000, 509, 2000)


def test_amplifiers_tile_their_detector(lsstcam: CameraSpec) -> None:
    for det in lsstcam.detectors:
        width = det.bbox_x1 - det.bbox_x0 + 1
        height = det.bbox_y1 - det.bbox_y0 + 1
        cells = {(a.bbox_x0, a.bbox_y0) for a in det.amplifiers}
        assert len(cells) == len(det.amplifiers), det.name
        assert sum(a.bbox_width * a.bbox_height for a in det.amplifiers) == width * height
        assert all(a.bbox_x0 + a.bbox_width <= width for a in det.amplifiers)
        assert all(a.bbox_y0 + a.bbox_height <= height for a in det.amplifiers)
        assert [a.index for a in det.amplifiers] == list(range(len(det.amplifiers)))


def test_instrument_override() -> None:
    assert read_camera(LSSTCAM_SIM, instrument="LSSTCam").name == "LSSTCam"


def test_calibreg_format_round_trip(lsstcam: CameraSpec, tmp_path: Path) -> None:
    out = tmp_path / "camera.yaml"
    write_camera_yaml(lsstcam, out)
    back = read_camera(out)
    assert back.source_format == "calibreg-camera/1"
    assert back.name == lsstcam.name
    assert _same(asdict(back)["detectors"], asdict(lsstcam)["detectors"])


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cam.yaml"
    path.write_text(text)
    return path


GOOD = """\
format: calibreg-camera/1
instrument: Toy
detectors:
- id: 1
  name: A
  bbox_x0: 0
  bbox_y0: 0
  bbox_x1: 9
  bbox_y1: 9
  amplifiers:
  - {name: C0, bbox_x0: 0, bbox_y0: 0, bbox_width: 10, bbox_height: 5, gain: 1.5}
  - {name: C1, bbox_x0: 0, bbox_y0: 5, bbox_width: 10, bbox_height: 5, gain: .nan}
- id: 0
  name: B
  purpose: WAVEFRONT
  bbox_x0: 0
  bbox_y0: 0
  bbox_x1: 9
  bbox_y1: 9
"""


def test_minimal_calibreg_camera(tmp_path: Path) -> None:
    cam = read_camera(_write(tmp_path, GOOD))
    assert [d.name for d in cam.detectors] == ["B", "A"]  # sorted by id
    a = cam.detectors[1]
    assert a.purpose == "SCIENCE"
    assert a.serial is None
    assert math.isnan(a.offset_x)
    assert [amp.index for amp in a.amplifiers] == [0, 1]
    assert a.amplifiers[0].gain == 1.5
    assert math.isnan(a.amplifiers[1].gain)


@pytest.mark.parametrize(
    ("edit", "row", "field"),
    [
        (("id: 0\n  name: B", "id: 1\n  name: B"), 2, "id"),
        (("name: B", "name: A"), 2, "name"),
        (("name: C1", "name: C0"), 1, "amplifiers"),
        (("- id: 0\n", "- \n"), 2, "id"),
        (("gain: 1.5", "gain: lots"), 1, "amplifiers[0].gain"),
        (
            ("bbox_x1: 9\n  bbox_y1: 9\n  amplifiers", "bbox_x1: x\n  bbox_y1: 9\n  amplifiers"),
            1,
            "bbox_x1",
        ),
        (("purpose: WAVEFRONT", "purpose: 7"), 2, "purpose"),
    ],
)
def test_calibreg_camera_errors(
    tmp_path: Path, edit: tuple[str, str], row: int, field: str
) -> None:
    text = GOOD.replace(*edit, 1)
    assert text != GOOD
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_camera(path)
    err = info.value
    assert (err.row, err.field) == (row, field)
    assert str(err).startswith(f"{path}: row {row}: field {field!r}: ")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("format: calibreg-camera/9\n", "unknown camera format"),
        ("just: a mapping\n", "not a camera file"),
        ("- a list\n", "expected a YAML mapping"),
        (
            "CCDs: {A: {id: 1, detectorType: 0, bbox: [[0, 0], [9, 9]], amplifiers: {C0: "
            "{ixy: [0, 0], rawDataBBox: [[0, 0], [10, 10]], gain: x}}}}\nname: T\n",
            "gain",
        ),
        ("CCDs: {A: {detectorType: 0}}\nname: T\n", "no id"),
        ("CCDs:\n  A: {id: 1}\n  A: {id: 2}\nname: T\n", "duplicate key 'A'"),
        ("key: [unclosed\n", "not valid YAML"),
    ],
)
def test_camera_file_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError, match=needle) as info:
        read_camera(path)
    assert str(info.value).startswith(str(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_camera(tmp_path / "nope.yaml")
