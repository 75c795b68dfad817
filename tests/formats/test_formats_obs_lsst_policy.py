"""obs_lsst policy directories: assembled as obs_lsst assembles them, counted, compared."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest

from calibreg.errors import InputError
from calibreg.formats import read_camera
from calibreg.formats._common import load_yaml
from calibreg.formats.obs_lsst_policy import (
    assemble_policy_directory,
    is_policy_directory,
    source_files,
)

POLICY = Path(__file__).resolve().parents[1] / "data" / "cameras" / "obs_lsst" / "policy"


@pytest.mark.parametrize(
    ("directory", "name", "detectors", "amplifiers"),
    [
        ("latiss", "LATISS", 1, 16),
        ("comCam", "LSSTComCam", 9, 144),
        ("lsstCam", "LSSTCam", 205, 3216),
    ],
)
def test_policy_directories_ingest_with_their_counts(
    directory, name, detectors, amplifiers
) -> None:
    camera = read_camera(POLICY / directory)
    assert (camera.name, len(camera.detectors), camera.n_amplifiers) == (
        name,
        detectors,
        amplifiers,
    )
    assert camera.source_format == "obs_lsst"
    assert is_policy_directory(POLICY / directory)


def test_latiss_and_comcam_details() -> None:
    latiss = read_camera(POLICY / "latiss").detectors[0]
    assert (latiss.id, latiss.name, latiss.serial, latiss.physical_type) == (
        0,
        "RXX_S00",
        "ITL-3800C-068",
        "ITL",
    )
    assert [a.name for a in latiss.amplifiers][:3] == ["C10", "C11", "C12"]
    assert latiss.amplifiers[0].gain == 1.0811 and latiss.amplifiers[9].read_noise == 10.0
    # raft centre + S00's place in an ITL raft, rounded as obs_lsst writes it (%g)
    assert (latiss.offset_x, latiss.offset_y, latiss.offset_z) == (-0.515, -0.055, 0.0)
    comcam = read_camera(POLICY / "comCam")
    assert [d.name for d in comcam.detectors] == [
        f"R22_S{i}{j}" for i in range(3) for j in range(3)
    ]
    assert [d.id for d in comcam.detectors] == list(range(9))
    assert Counter(d.physical_type for d in comcam.detectors) == {"ITL": 9}


def _diff(a: object, b: object, path: str = "") -> list[str]:
    """Every difference between two loaded YAML trees (NaN equals NaN, order of keys too)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [] if list(a) == list(b) else [f"{path}: keys {list(a)} != {list(b)}"]
        return out + [d for k in a.keys() & b.keys() for d in _diff(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {a!r} != {b!r}"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _diff(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_lsstcam_policy_equals_lsstcamsim_field_by_field() -> None:
    """lsstCamSim.yaml is obs_lsst's own assembly of the same inputs under another name."""
    assembled = assemble_policy_directory(POLICY / "lsstCam")
    committed = load_yaml(POLICY / "lsstCamSim.yaml")
    assert (assembled["name"], committed["name"]) == ("LSSTCam", "LSSTCamSim")
    assert _diff(assembled["CCDs"], committed["CCDs"], "CCDs") == []  # every field of every CCD
    assert assembled["plateScale"] == committed["plateScale"]
    # and the same through the reader: every detector and amplifier field of the CameraSpec
    ours = read_camera(POLICY / "lsstCam")
    theirs = read_camera(POLICY / "lsstCamSim.yaml", instrument="LSSTCam")
    assert _diff(asdict(ours), asdict(theirs)) == []


def test_a_missing_raft_file_is_an_error(tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    shutil.copytree(POLICY, policy)
    (policy / "lsstCam" / "R13.yaml").unlink()
    with pytest.raises(InputError, match=r"lists raft R13 but there is no R13\.yaml"):
        read_camera(policy / "lsstCam")


def test_a_directory_without_a_header_is_not_a_policy_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert not is_policy_directory(tmp_path / "empty")
    with pytest.raises(InputError, match=r"no cameraHeader\.yaml"):
        read_camera(tmp_path / "empty")


def test_source_files_are_what_the_assembly_reads() -> None:
    files = source_files(POLICY / "latiss")
    assert [f.relative_to(POLICY).as_posix() for f in files] == [
        "cameraHeader.yaml",
        "latiss/cameraTransforms.yaml",
        "latiss/name.yaml",
        "latiss/rafts.yaml",
        "latiss/RXX.yaml",
    ]
    assert source_files(POLICY / "lsstCamSim.yaml") == [POLICY / "lsstCamSim.yaml"]
    assert (
        len(source_files(POLICY / "lsstCam")) == 3 + 29
    )  # header, transforms, rafts.yaml, 29 raft files
