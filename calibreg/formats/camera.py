"""Camera geometry readers: obs_lsst camera YAML and calibreg's own camera YAML.

The registry needs, per detector, its identity (id, full name, serial, sensor type, purpose)
and where it sits (bbox, focal-plane offset and orientation), and per amplifier its name, its
camera order and its data region, gain, read noise and saturation: enough to label and plot
per-amplifier scales and to check that statistics name real amplifiers. Nothing here touches a
database; the result is a plain `CameraSpec`.

Formats
-------
**obs_lsst camera YAML** (``policy/lsstCamSim.yaml``; what ``generateCamera.py`` writes): a
mapping with ``name`` (the instrument), YAML anchors and ``<<:`` merges for templates, and
``CCDs:`` keyed by detector full name. Per CCD: ``id``, ``serial``, ``physicalType``,
``detectorType`` (afw ``DetectorType``: 0 SCIENCE, 1 FOCUS, 2 GUIDER, 3 WAVEFRONT),
``bbox: [[x0, y0], [x1, y1]]`` (inclusive corners), ``offset: [x, y(, z)]`` mm,
``yaw``/``pitch``/``roll`` degrees, ``pixelSize: [x, y]`` mm, and ``amplifiers:`` keyed by amp
name with ``ixy``, ``rawDataBBox: [[x0, y0], [width, height]]``, ``gain``, ``readNoise``,
``saturation`` and ``hdu``.

An amplifier's assembled bbox (detector pixels) is computed as obs_base's ``yamlCamera``
builder does: with ``(ix, iy) = ixy`` and ``(w, h)`` the size of ``rawDataBBox``, the box starts
at ``(ix * w, iy * h)`` and has size ``(w, h)``. Its ``index`` is its position in the camera:
the builder orders amplifiers by ``hdu`` (stable, so the YAML mapping order when ``hdu`` is
absent); in obs_lsst files the two orders agree.

**calibreg camera YAML** (``format: calibreg-camera/1``), written by `write_camera_yaml`::

    format: calibreg-camera/1
    instrument: LSSTCam
    detectors:                      # any order; read back sorted by id
    - id: 0                         # required, int, unique
      name: R01_S00                 # required, unique
      serial: ITL-3800C-…           # optional (null)
      physical_type: ITL            # optional (null)
      purpose: SCIENCE              # SCIENCE | FOCUS | GUIDER | WAVEFRONT | OTHER (default SCIENCE)
      bbox_x0: 0                    # required ints, inclusive corners
      bbox_y0: 0
      bbox_x1: 4071
      bbox_y1: 3999
      offset_x: -127.0              # optional floats (.nan / absent = unknown):
      offset_y: -42.0               #   offset_* and pixel_size_* in mm,
      offset_z: 0.0                 #   yaw/pitch/roll in degrees
      yaw: 0.0
      pitch: 0.0
      roll: 0.0
      pixel_size_x: 0.01
      pixel_size_y: 0.01
      amplifiers:                   # list order = camera order (index 0, 1, ...)
      - name: C10                   # required, unique in the detector
        bbox_x0: 0                  # required ints: assembled data region in detector pixels
        bbox_y0: 2000
        bbox_width: 509
        bbox_height: 2000
        gain: 1.47879               # optional floats (e-/ADU, e-, ADU); .nan / absent = unknown
        read_noise: 10.407
        saturation: 128980

Errors name the file, the row (the 1-based detector in the ``detectors`` list, calibreg format
only) and the field as a path such as ``CCDs.R00_SG0.amplifiers.C10.gain``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from calibreg.domain import limits
from calibreg.errors import InputError
from calibreg.formats._common import (
    Integer,
    PathLike,
    Real,
    Text,
    check_readable,
    field_name,
    load_yaml,
    shown,
)

__all__ = [
    "CALIBREG_CAMERA_FORMAT",
    "DETECTOR_PURPOSES",
    "AmplifierSpec",
    "CameraSpec",
    "DetectorSpec",
    "read_camera",
    "write_camera_yaml",
]

CALIBREG_CAMERA_FORMAT = "calibreg-camera/1"

# afw cameraGeom DetectorType values as obs_lsst writes them in ``detectorType``.
_DETECTOR_TYPES = {0: "SCIENCE", 1: "FOCUS", 2: "GUIDER", 3: "WAVEFRONT"}
DETECTOR_PURPOSES = ("SCIENCE", "FOCUS", "GUIDER", "WAVEFRONT", "OTHER")

# The field rules (calibreg.formats._common), the same in both camera formats.
_INSTRUMENT = Text(limits.INSTRUMENT_NAME, required=True)
_DETECTOR_ID = Integer(0, limits.INT32_MAX)
_DETECTOR_NAME = Text(limits.DETECTOR_NAME, required=True)
_SERIAL = Text(limits.DETECTOR_SERIAL)
_PHYSICAL_TYPE = Text(limits.PHYSICAL_TYPE)
_AMP_NAME = Text(limits.AMP_NAME, required=True)
_PIXEL = Integer(limits.INT32_MIN, limits.INT32_MAX)  # a pixel coordinate
_PIXEL_COUNT = Integer(1, limits.INT32_MAX)  # a data region's width or height
_HDU = Integer(limits.INT32_MIN, limits.INT32_MAX, required=False)
_POSITION = Real()  # mm, or degrees for yaw/pitch/roll: finite, NaN for unknown
_NONNEGATIVE = Real(minimum=0.0)  # pixel size, gain, read noise, saturation
_FLOAT_RULES = {
    "offset_x": _POSITION,
    "offset_y": _POSITION,
    "offset_z": _POSITION,
    "yaw": _POSITION,
    "pitch": _POSITION,
    "roll": _POSITION,
    "pixel_size_x": _NONNEGATIVE,
    "pixel_size_y": _NONNEGATIVE,
}


@dataclass
class AmplifierSpec:
    """One amplifier (segment) of a detector.

    ``index`` is its 0-based position in the camera's amplifier list (cp_pipe iterates
    amplifiers in that order, and numbers its ``AMP_*_i`` statistics by it); the bbox is the
    assembled data region in detector pixels. Missing electrical values are NaN rather than a
    guess.

    Attributes
    ----------
    name : str
        Amplifier name, unique within its detector (``C10``).
    index : int
        0-based position in the camera's amplifier order.
    bbox_x0, bbox_y0 : int
        Minimum (x, y) corner of the assembled data region, detector pixels.
    bbox_width, bbox_height : int
        Size of the data region, pixels.
    gain : float
        e-/ADU, NaN if unknown.
    read_noise : float
        e-, NaN if unknown.
    saturation : float
        ADU, NaN if unknown.
    """

    name: str
    index: int
    bbox_x0: int
    bbox_y0: int
    bbox_width: int
    bbox_height: int
    gain: float = math.nan
    read_noise: float = math.nan
    saturation: float = math.nan


@dataclass
class DetectorSpec:
    """One detector: identity, pixel bbox (inclusive corners), placement and amplifiers.

    Attributes
    ----------
    id : int
        Detector id, unique in the camera (the butler's ``detector``).
    name : str
        Full name, unique in the camera (``R22_S11``).
    serial, physical_type : str or None
        Sensor serial and type (``ITL``, ``E2V``), ``None`` if unknown.
    purpose : str
        One of `DETECTOR_PURPOSES`.
    bbox_x0, bbox_y0, bbox_x1, bbox_y1 : int
        Inclusive pixel corners of the detector.
    offset_x, offset_y, offset_z : float
        Focal-plane position, mm; NaN if unknown.
    yaw, pitch, roll : float
        Orientation, degrees; NaN if unknown.
    pixel_size_x, pixel_size_y : float
        Pixel size, mm; NaN if unknown.
    amplifiers : list of AmplifierSpec
        In camera order (``index`` 0, 1, ...).
    """

    id: int
    name: str
    serial: str | None
    physical_type: str | None
    purpose: str
    bbox_x0: int
    bbox_y0: int
    bbox_x1: int
    bbox_y1: int
    offset_x: float = math.nan
    offset_y: float = math.nan
    offset_z: float = math.nan
    yaw: float = math.nan
    pitch: float = math.nan
    roll: float = math.nan
    pixel_size_x: float = math.nan
    pixel_size_y: float = math.nan
    amplifiers: list[AmplifierSpec] = field(default_factory=list)


@dataclass
class CameraSpec:
    """A camera: instrument name, detectors sorted by id, and which format it came from.

    Attributes
    ----------
    name : str
        Instrument name (``LSSTCam``).
    detectors : list of DetectorSpec
        Sorted by id when returned by `read_camera`.
    source_format : str
        ``"obs_lsst"`` or ``"calibreg-camera/1"``, kept as provenance of the ingest.
    """

    name: str
    detectors: list[DetectorSpec]
    source_format: str

    @property
    def n_amplifiers(self) -> int:
        """Total number of amplifiers over all detectors."""
        return sum(len(d.amplifiers) for d in self.detectors)


# --------------------------------------------------------------------------- public API
def read_camera(path: PathLike, *, instrument: str | None = None) -> CameraSpec:
    """Read camera geometry from an obs_lsst camera YAML or a calibreg camera YAML.

    Parameters
    ----------
    path : path-like
        The YAML file. A mapping with ``format: calibreg-camera/1`` is read as calibreg's own
        format; a mapping with ``CCDs:`` as obs_lsst's. A directory is read as an obs_lsst
        policy directory (`calibreg.formats.obs_lsst_policy`).
    instrument : `str`, optional
        Instrument name to use instead of the file's (``lsstCamSim.yaml`` carries the real
        LSSTCam geometry under the name ``LSSTCamSim``).

    Returns
    -------
    camera : `CameraSpec`
        Detectors sorted by id; ``source_format`` is ``"obs_lsst"`` or ``"calibreg-camera/1"``.

    Raises
    ------
    calibreg.errors.InputError
        Unreadable file, unknown format, missing or mistyped field, duplicate detector id or
        name, duplicate amplifier name within a detector.
    """
    source = str(path)
    if Path(path).is_dir():  # an obs_lsst policy directory, assembled as obs_lsst does
        from calibreg.formats.obs_lsst_policy import assemble_policy_directory

        data: Any = assemble_policy_directory(path)
    else:
        check_readable(path)
        data = load_yaml(path)
    if not isinstance(data, Mapping):
        raise InputError(source, "expected a YAML mapping (obs_lsst or calibreg camera)")
    if "format" in data:
        if data["format"] != CALIBREG_CAMERA_FORMAT:
            raise InputError(
                source,
                f"unknown camera format {shown(data['format'])}; "
                f"expected {CALIBREG_CAMERA_FORMAT!r}",
                field="format",
            )
        camera = _read_calibreg(data, source)
    elif "CCDs" in data:
        camera = _read_obs_lsst(data, source)
    else:
        raise InputError(
            source,
            "not a camera file: expected 'format: calibreg-camera/1' or an obs_lsst 'CCDs:' "
            "mapping",
        )
    if instrument is not None:
        if not instrument.strip():
            raise InputError(source, "instrument override is empty", field="instrument")
        camera.name = _INSTRUMENT.parse(instrument, source, row=None, field="instrument")  # type: ignore[assignment]
    _check_unique(camera, source)
    camera.detectors.sort(key=lambda d: d.id)
    return camera


def write_camera_yaml(spec: CameraSpec, path: PathLike) -> None:
    """Write ``spec`` in the calibreg camera YAML format (see the module docstring).

    Floats are written with full precision (YAML ``.nan`` for unknown), so `read_camera`
    gives back an equal `CameraSpec` (``source_format`` aside). Amplifiers are written in
    ``index`` order, which is the order the format reads as camera order.

    Parameters
    ----------
    spec : CameraSpec
        The camera to write.
    path : path-like
        Output file, overwritten if it exists (UTF-8).

    Raises
    ------
    OSError
        If the file cannot be written.
    """
    detectors = []
    for det in spec.detectors:
        amps = [
            {
                "name": amp.name,
                "bbox_x0": int(amp.bbox_x0),
                "bbox_y0": int(amp.bbox_y0),
                "bbox_width": int(amp.bbox_width),
                "bbox_height": int(amp.bbox_height),
                "gain": float(amp.gain),
                "read_noise": float(amp.read_noise),
                "saturation": float(amp.saturation),
            }
            for amp in sorted(det.amplifiers, key=lambda a: a.index)
        ]
        detectors.append(
            {
                "id": int(det.id),
                "name": det.name,
                "serial": det.serial,
                "physical_type": det.physical_type,
                "purpose": det.purpose,
                "bbox_x0": int(det.bbox_x0),
                "bbox_y0": int(det.bbox_y0),
                "bbox_x1": int(det.bbox_x1),
                "bbox_y1": int(det.bbox_y1),
                **{name: float(getattr(det, name)) for name in _DETECTOR_FLOATS},
                "amplifiers": amps,
            }
        )
    document = {"format": CALIBREG_CAMERA_FORMAT, "instrument": spec.name, "detectors": detectors}
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    with open(path, "w", encoding="utf-8") as stream:
        yaml.dump(document, stream, Dumper=dumper, sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------- obs_lsst
_DETECTOR_FLOATS = (
    "offset_x",
    "offset_y",
    "offset_z",
    "yaw",
    "pitch",
    "roll",
    "pixel_size_x",
    "pixel_size_y",
)


def _pair(value: Any, source: str, field: str, *, length: tuple[int, ...] = (2,)) -> list[Any]:
    if not isinstance(value, list | tuple) or len(value) not in length:
        want = " or ".join(str(n) for n in length)
        raise InputError(
            source, f"expected a list of {want} values, got {shown(value)}", field=field
        )
    return list(value)


def _box(value: Any, source: str, field: str) -> tuple[int, int, int, int]:
    """Read ``[[a, b], [c, d]]`` as four ints (meaning depends on the caller's convention)."""
    first, second = _pair(value, source, field)
    a, b = _pair(first, source, field)
    c, d = _pair(second, source, field)
    return tuple(  # type: ignore[return-value]
        _PIXEL.parse(v, source, row=None, field=field) for v in (a, b, c, d)
    )


def _purpose(value: Any, source: str, *, row: int | None, field: str) -> str:
    if isinstance(value, str) and value.strip().upper() in DETECTOR_PURPOSES:
        return value.strip().upper()
    if isinstance(value, int) and not isinstance(value, bool) and value in _DETECTOR_TYPES:
        return _DETECTOR_TYPES[value]
    raise InputError(
        source,
        f"unknown detector type {shown(value)}; "
        f"expected 0-3 or one of {', '.join(DETECTOR_PURPOSES)}",
        row=row,
        field=field,
    )


def _read_obs_lsst(data: Mapping[str, Any], source: str) -> CameraSpec:
    name = _INSTRUMENT.parse(data.get("name"), source, row=None, field="name")
    ccds = data["CCDs"]
    if not isinstance(ccds, Mapping) or not ccds:
        raise InputError(source, "expected a non-empty mapping of detectors", field="CCDs")
    detectors = []
    for ccd_name, ccd in ccds.items():
        where = f"CCDs.{field_name(ccd_name)}"
        if not isinstance(ccd, Mapping):
            raise InputError(source, "expected a mapping", field=where)
        det_name = _DETECTOR_NAME.parse(ccd_name, source, row=None, field=where)
        if "id" not in ccd:
            raise InputError(source, "detector has no id", field=f"{where}.id")
        det_id = _DETECTOR_ID.parse(ccd["id"], source, row=None, field=f"{where}.id")
        if "detectorType" not in ccd:
            raise InputError(source, "detector has no detectorType", field=f"{where}.detectorType")
        x0, y0, x1, y1 = _box(ccd.get("bbox"), source, f"{where}.bbox")
        offset = _pair(ccd.get("offset", []), source, f"{where}.offset", length=(0, 2, 3))
        offset += [None] * (3 - len(offset))
        pixel = _pair(ccd.get("pixelSize", [None, None]), source, f"{where}.pixelSize")
        floats = {
            "offset_x": offset[0],
            "offset_y": offset[1],
            "offset_z": offset[2],
            "yaw": ccd.get("yaw"),
            "pitch": ccd.get("pitch"),
            "roll": ccd.get("roll"),
            "pixel_size_x": pixel[0],
            "pixel_size_y": pixel[1],
        }
        yaml_names = {"pixel_size_x": "pixelSize", "pixel_size_y": "pixelSize"}
        det = DetectorSpec(
            id=det_id,  # type: ignore[arg-type]
            name=det_name,  # type: ignore[arg-type]
            serial=_SERIAL.parse(ccd.get("serial"), source, row=None, field=f"{where}.serial"),
            physical_type=_PHYSICAL_TYPE.parse(
                ccd.get("physicalType"), source, row=None, field=f"{where}.physicalType"
            ),
            purpose=_purpose(ccd["detectorType"], source, row=None, field=f"{where}.detectorType"),
            bbox_x0=x0,
            bbox_y0=y0,
            bbox_x1=x1,
            bbox_y1=y1,
            **{
                key: _FLOAT_RULES[key].parse(
                    value,
                    source,
                    row=None,
                    field=f"{where}.{yaml_names.get(key, key.split('_')[0])}",
                )
                for key, value in floats.items()
            },
        )
        det.amplifiers = _read_obs_lsst_amps(ccd.get("amplifiers"), source, where)
        detectors.append(det)
    return CameraSpec(name=name, detectors=detectors, source_format="obs_lsst")  # type: ignore[arg-type]


def _read_obs_lsst_amps(amps: Any, source: str, where: str) -> list[AmplifierSpec]:
    if not isinstance(amps, Mapping) or not amps:
        raise InputError(
            source, "expected a non-empty mapping of amplifiers", field=f"{where}.amplifiers"
        )
    parsed = []
    for position, (amp_name, amp) in enumerate(amps.items()):
        at = f"{where}.amplifiers.{field_name(amp_name)}"
        if not isinstance(amp, Mapping):
            raise InputError(source, "expected a mapping", field=at)
        ix, iy = (
            _PIXEL.parse(v, source, row=None, field=f"{at}.ixy")
            for v in _pair(amp.get("ixy"), source, f"{at}.ixy")
        )
        _, _, width, height = _box(amp.get("rawDataBBox"), source, f"{at}.rawDataBBox")
        if width <= 0 or height <= 0:
            raise InputError(
                source, "data region must have a positive size", field=f"{at}.rawDataBBox"
            )
        order = _HDU.parse(amp.get("hdu"), source, row=None, field=f"{at}.hdu")
        x0, y0 = (
            _PIXEL.parse(i * n, source, row=None, field=f"{at}.ixy")  # type: ignore[operator]
            for i, n in ((ix, width), (iy, height))
        )
        parsed.append(
            (
                order if order is not None else math.inf,
                position,
                AmplifierSpec(
                    name=_AMP_NAME.parse(amp_name, source, row=None, field=at),  # type: ignore[arg-type]
                    index=-1,
                    bbox_x0=x0,  # type: ignore[arg-type]
                    bbox_y0=y0,  # type: ignore[arg-type]
                    bbox_width=width,
                    bbox_height=height,
                    gain=_NONNEGATIVE.parse(amp.get("gain"), source, row=None, field=f"{at}.gain"),
                    read_noise=_NONNEGATIVE.parse(
                        amp.get("readNoise"), source, row=None, field=f"{at}.readNoise"
                    ),
                    saturation=_NONNEGATIVE.parse(
                        amp.get("saturation"), source, row=None, field=f"{at}.saturation"
                    ),
                ),
            )
        )
    _check_amplifier_count(len(parsed), source, f"{where}.amplifiers", row=None)
    parsed.sort(key=lambda item: (item[0], item[1]))
    result = []
    for index, (_, _, amp_spec) in enumerate(parsed):
        amp_spec.index = index
        result.append(amp_spec)
    return result


# --------------------------------------------------------------------------- calibreg format
def _read_calibreg(data: Mapping[str, Any], source: str) -> CameraSpec:
    name = _INSTRUMENT.parse(data.get("instrument"), source, row=None, field="instrument")
    records = data.get("detectors")
    if not isinstance(records, list) or not records:
        raise InputError(source, "expected a non-empty list of detectors", field="detectors")
    detectors = []
    for row, rec in enumerate(records, start=1):
        if not isinstance(rec, Mapping):
            raise InputError(source, "expected a mapping", row=row, field="detectors")
        for key in ("id", "name", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"):
            if key not in rec:
                raise InputError(source, "required field is missing", row=row, field=key)
        det = DetectorSpec(
            id=_DETECTOR_ID.parse(rec["id"], source, row=row, field="id"),  # type: ignore[arg-type]
            name=_DETECTOR_NAME.parse(rec["name"], source, row=row, field="name"),  # type: ignore[arg-type]
            serial=_SERIAL.parse(rec.get("serial"), source, row=row, field="serial"),
            physical_type=_PHYSICAL_TYPE.parse(
                rec.get("physical_type"), source, row=row, field="physical_type"
            ),
            purpose=_purpose(rec.get("purpose", "SCIENCE"), source, row=row, field="purpose"),
            **{
                key: _PIXEL.parse(rec[key], source, row=row, field=key)  # type: ignore[misc]
                for key in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1")
            },
            **{
                key: _FLOAT_RULES[key].parse(rec.get(key), source, row=row, field=key)
                for key in _DETECTOR_FLOATS
            },
        )
        amps = rec.get("amplifiers", [])
        if not isinstance(amps, list):
            raise InputError(source, "expected a list of amplifiers", row=row, field="amplifiers")
        _check_amplifier_count(len(amps), source, "amplifiers", row=row)
        for index, amp in enumerate(amps):
            at = f"amplifiers[{index}]"
            if not isinstance(amp, Mapping):
                raise InputError(source, "expected a mapping", row=row, field=at)
            for key in ("name", "bbox_x0", "bbox_y0", "bbox_width", "bbox_height"):
                if key not in amp:
                    raise InputError(
                        source, "required field is missing", row=row, field=f"{at}.{key}"
                    )
            det.amplifiers.append(
                AmplifierSpec(
                    name=_AMP_NAME.parse(amp["name"], source, row=row, field=f"{at}.name"),  # type: ignore[arg-type]
                    index=index,
                    **{
                        key: rule.parse(amp[key], source, row=row, field=f"{at}.{key}")  # type: ignore[misc]
                        for key, rule in (
                            ("bbox_x0", _PIXEL),
                            ("bbox_y0", _PIXEL),
                            ("bbox_width", _PIXEL_COUNT),
                            ("bbox_height", _PIXEL_COUNT),
                        )
                    },
                    **{
                        key: _NONNEGATIVE.parse(amp.get(key), source, row=row, field=f"{at}.{key}")
                        for key in ("gain", "read_noise", "saturation")
                    },
                )
            )
        detectors.append(det)
    return CameraSpec(name=name, detectors=detectors, source_format=CALIBREG_CAMERA_FORMAT)  # type: ignore[arg-type]


def _check_amplifier_count(n: int, source: str, field: str, *, row: int | None) -> None:
    if n > limits.MAX_AMPLIFIERS_PER_DETECTOR:
        raise InputError(
            source,
            f"{n} amplifiers, more than the {limits.MAX_AMPLIFIERS_PER_DETECTOR} a detector "
            "may have",
            row=row,
            field=field,
        )


def _check_unique(camera: CameraSpec, source: str) -> None:
    """Refuse duplicate detector ids/names and duplicate amplifier names within a detector.

    Rows are reported only for the calibreg format, whose detectors form a list; obs_lsst
    detectors are named in the field instead.
    """
    listed = camera.source_format == CALIBREG_CAMERA_FORMAT
    by_id: dict[int, str] = {}
    by_name: dict[str, int] = {}
    for row, det in enumerate(camera.detectors, start=1):
        where_row = row if listed else None
        prefix = "" if listed else f"CCDs.{det.name}."
        if det.id in by_id:
            raise InputError(
                source,
                f"duplicate detector id {det.id} (also used by {by_id[det.id]})",
                row=where_row,
                field=f"{prefix}id",
            )
        if det.name in by_name:
            raise InputError(
                source, f"duplicate detector name {det.name!r}", row=where_row, field="name"
            )
        by_id[det.id] = det.name
        by_name[det.name] = det.id
        seen: set[str] = set()
        for amp in det.amplifiers:
            if amp.name in seen:
                raise InputError(
                    source,
                    f"duplicate amplifier name {amp.name!r} in detector {det.name}",
                    row=where_row,
                    field=f"{prefix}amplifiers",
                )
            seen.add(amp.name)
