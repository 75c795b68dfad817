"""Untrusted input cannot exhaust memory (issue 13, kind 3).

A 2 KB YAML file with nested aliases ("billion laughs") expands to 10**9 nodes: the loader must
refuse it before anything is built, and no message may expand a value into its text.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from calibreg.errors import InputError
from calibreg.formats import read_camera, read_exposures, read_propertylist
from calibreg.formats._common import MAX_ALIAS_EXPANSION, MAX_ECHO_CHARS, shown

LSSTCAM_SIM = (
    Path(__file__).resolve().parents[1]
    / "data"
    / "cameras"
    / "obs_lsst"
    / "policy"
    / "lsstCamSim.yaml"
)


def _bomb(levels: int = 9, width: int = 10) -> str:
    """Anchors a..: each a list of ``width`` aliases to the previous (width**levels leaves)."""
    lines = ['bomb0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"bomb{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _camera_bomb(levels: int = 9) -> str:
    return (
        "anchors:\n"
        + "".join("  " + line + "\n" for line in _bomb(levels).splitlines())
        + "format: calibreg-camera/1\ninstrument: Toy\ndetectors:\n"
        "- {id: 0, name: A, bbox_x0: 0, bbox_y0: 0, bbox_x1: 9, bbox_y1: 9, "
        f"yaw: *a{levels - 1}}}\n"
    )


def _obs_lsst_bomb() -> str:
    return (
        "anchors:\n"
        + "".join("  " + line + "\n" for line in _bomb().splitlines())
        + "name: Toy\nCCDs:\n  R00_S00:\n    id: 0\n    detectorType: 0\n"
        "    bbox: [[0, 0], [9, 9]]\n    yaw: *a8\n"
        "    amplifiers: {C00: {ixy: [0, 0], rawDataBBox: [[0, 0], [10, 10]]}}\n"
    )


def _butler_bomb() -> str:
    return (
        "anchors:\n"
        + "".join("  " + line + "\n" for line in _bomb().splitlines())
        + "data:\n- type: dimension\n  element: exposure\n  records:\n"
        "  - {instrument: T, id: 1, physical_filter: r, day_obs: *a8,"
        " datetime_begin: null, datetime_end: null}\n"
    )


@pytest.mark.parametrize(
    ("name", "text", "reader"),
    [
        ("camera.yaml", _camera_bomb(), read_camera),
        ("obs_lsst.yaml", _obs_lsst_bomb(), read_camera),
        ("export.yaml", _butler_bomb(), read_exposures),
    ],
)
def test_alias_bomb_is_refused_quickly_and_small(
    tmp_path: Path, name: str, text: str, reader: object
) -> None:
    assert len(text) < 2048
    path = tmp_path / name
    path.write_text(text)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(InputError, match="aliases would expand") as info:
            reader(path)  # type: ignore[operator]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5
    assert peak < 20 * 2**20
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message and len(message) < 300


def test_propertylist_alias_bomb(tmp_path: Path) -> None:
    path = tmp_path / "stats_2025120200439_R22_S11.yaml"
    body = "".join(f"  {line}\n" for line in _bomb().splitlines())
    path.write_text(
        "!<lsst.daf.base.PropertyList>\n"
        "- [DETECTOR_MEDIAN, Double, 1.0, '']\n"
        "- [DETECTOR_N, Int, 5, '']\n"
        "- - BOMB\n  - String\n  - anchors:\n"
        + "".join("    " + line for line in body.splitlines(keepends=True))
        + "  - ''\n"
    )
    with pytest.raises(InputError, match="aliases would expand"):
        read_propertylist(path)


def test_a_bounded_bomb_below_the_limit_is_echoed_briefly(tmp_path: Path) -> None:
    """Within the expansion limit, a nested value in a number field is still shown bounded."""
    path = tmp_path / "camera.yaml"
    path.write_text(_camera_bomb(levels=6))  # about 1.2e6 nodes when expanded: allowed
    assert MAX_ALIAS_EXPANSION > 1.2e6
    started = time.perf_counter()
    with pytest.raises(InputError, match="expected a number") as info:
        read_camera(path)
    assert time.perf_counter() - started < 5
    assert len(str(info.value)) < 300


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "camera.yaml"
    path.write_text("format: calibreg-camera/1\ninstrument: T\ndetectors: &d [*d]\n")
    with pytest.raises(InputError, match="refers to a node that contains it"):
        read_camera(path)


def test_real_camera_templates_stay_within_the_limit() -> None:
    camera = read_camera(LSSTCAM_SIM)
    assert camera.n_amplifiers == 3216


def test_long_flat_value_is_echoed_bounded(tmp_path: Path) -> None:
    path = tmp_path / "camera.yaml"
    path.write_text(
        "format: calibreg-camera/1\ninstrument: T\ndetectors:\n"
        "- {id: 0, name: A, bbox_x0: 0, bbox_y0: 0, bbox_x1: 9, bbox_y1: 9, "
        f"yaw: {'9x' * 10**6}}}\n"
    )
    with pytest.raises(InputError, match="expected a number") as info:
        read_camera(path)
    assert len(str(info.value)) < 300


def test_shown_is_bounded_for_any_value() -> None:
    nested: list[object] = ["x" * 10**6]
    for _ in range(30):
        nested = [nested] * 10
    assert len(shown(nested)) <= 2 * MAX_ECHO_CHARS
    assert len(shown("y" * 10**6)) <= 2 * MAX_ECHO_CHARS
    assert len(shown(10**5000)) <= 2 * MAX_ECHO_CHARS
    assert len(shown({str(i): i for i in range(10**5)})) <= 2 * MAX_ECHO_CHARS


def test_cp_pipe_scales_loader_is_bounded_too() -> None:
    import math

    import yaml

    from calibreg.formats.cp_pipe import dump_cp_pipe, load_cp_pipe

    structure = {
        "expScale": {94: {"C10": {2025120200439: 1.25e-05, 2025120200440: math.nan}}},
        "detScale": {94: {"C10": 0.9999999999999999}},
    }
    for fmt in ("yaml", "json"):
        back = load_cp_pipe(dump_cp_pipe(structure, fmt))
        assert back["detScale"] == structure["detScale"]
        assert back["expScale"][94]["C10"][2025120200439] == 1.25e-05
    with pytest.raises(yaml.YAMLError, match="aliases would expand"):
        load_cp_pipe(_bomb() + "expScale: *a8\n")
