"""obs_lsst per-instrument policy directories, assembled into one camera mapping.

obs_lsst does not commit its cameras as single files: at build time its ``generateCamera``
script assembles ``lsstCam.yaml``, ``latiss.yaml``, ``comCam.yaml``... from the files of a
*policy directory* and a search path, and the camera is then built from that assembled YAML.
`assemble_policy_directory` performs the same assembly in memory (no file is written) and
returns the mapping that the assembled YAML would load to, so that
:func:`calibreg.formats.read_camera` reads it with its one obs_lsst reader.

Search path
-----------
For ``policy/<camera>`` obs_lsst searches ``<camera>``, then ``lsstCam``, then ``policy`` itself,
and takes the *first* file of each name. So ``latiss/`` brings its own ``name.yaml``,
``rafts.yaml`` and ``RXX.yaml`` and shares ``cameraHeader.yaml`` and ``ccdData.yaml`` with the
whole policy tree; ``lsstCam/`` brings only its ``R*.yaml`` files.

Assembly (per raft listed in ``rafts.yaml``, in that order)
-----------------------------------------------------------
* the raft file ``<raft>.yaml`` names the raft's ``detectorType`` (``ITL``, ``E2V``, ``ITL_G``,
  ``ITL_WF``...), its ``ccdSerials`` (only CCDs with a serial are built), optional
  ``sensorTypes`` (afw ``DetectorType`` per CCD), optional ``geometryWithinRaft`` (an offset in
  mm, optionally with z, and a yaw in degrees per CCD) and ``amplifiers`` (``gain``,
  ``readNoise``, optional ``saturation`` per amplifier);
* each CCD starts from the header's ``RAFT_<type>.ccds.<ccd>`` template (which carries the
  ``CCD_<type>`` geometry), and gets ``id = id0 + template id``, its serial,
  ``physicalType = <type>``, ``detectorType`` from ``sensorTypes`` when given, and
  ``offset = raft offset + R(raft yaw) · (template offset + offset within raft)`` (x, y rotated,
  z added); when the raft file gives the CCD's geometry, ``yaw = its yaw + raft yaw``;
* each amplifier, in the order of ``CCD_<type>.amplifiers``, starts from that template and gets
  its ``gain`` and ``readNoise`` and, when given (non-zero), its ``saturation``;
* the corner rafts' wavefront aliases ``R00W``, ``R04W``, ``R40W``, ``R44W`` name their
  detectors after the physical raft (``R00_SW0``);
* the instrument name is ``name.yaml``'s ``name`` when the search path has one, else the
  header's ``name``.

Numbers that obs_lsst writes with ``%g`` (offsets, yaw, gain, read noise, saturation) are
rounded to 6 significant digits as that text is, so the result equals what obs_lsst's own
assembled file holds. A raft listed in ``rafts.yaml`` whose file is missing is an error here
(obs_lsst skips it with a warning, which would silently drop detectors).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from calibreg.errors import InputError
from calibreg.formats._common import PathLike, load_yaml

__all__ = [
    "RAFT_ALIASES",
    "assemble_policy_directory",
    "is_policy_directory",
    "search_path",
    "source_files",
]

#: Raft files that describe another raft's wavefront sensors (obs_lsst's ``raftNameMap``).
RAFT_ALIASES = {"R00W": "R00", "R04W": "R04", "R40W": "R40", "R44W": "R44"}


def search_path(directory: PathLike) -> list[Path]:
    """Return the directories searched for a policy directory's files, first match first.

    Parameters
    ----------
    directory : path-like
        ``policy/<camera>``.

    Returns
    -------
    list of pathlib.Path
        ``<camera>``, ``lsstCam`` beside it and the parent ``policy`` directory, those that exist,
        each once.
    """
    base = Path(directory)
    out: list[Path] = []
    for candidate in (base, base.parent / "lsstCam", base.parent):
        if candidate.is_dir() and all(candidate.resolve() != p.resolve() for p in out):
            out.append(candidate)
    return out


def is_policy_directory(path: PathLike) -> bool:
    """Whether ``path`` is a directory whose search path holds a ``cameraHeader.yaml``."""
    return Path(path).is_dir() and _find("cameraHeader.yaml", search_path(path)) is not None


def source_files(path: PathLike) -> list[Path]:
    """Return the files a camera is read from: the file itself, or a directory's inputs.

    For a policy directory: the header, transforms, name, ``rafts.yaml`` and raft files that
    `assemble_policy_directory` reads, in that order (what an ingest batch's hash covers).

    Parameters
    ----------
    path : path-like
        A camera file or a policy directory.

    Returns
    -------
    list of pathlib.Path
    """
    if not Path(path).is_dir():
        return [Path(path)]
    where = search_path(path)
    found = [
        _find(name, where)
        for name in ("cameraHeader.yaml", "cameraTransforms.yaml", "name.yaml", "rafts.yaml")
    ]
    rafts_file = found[-1]
    rafts = load_yaml(rafts_file).get("rafts", {}) if rafts_file is not None else {}
    if isinstance(rafts, Mapping):
        found += [_find(f"{raft}.yaml", where) for raft in rafts]
    return [f for f in found if f is not None]


def _find(name: str, path: list[Path]) -> Path | None:
    for directory in path:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def _load(name: str, path: list[Path], source: str, *, required: bool = True) -> Any:
    found = _find(name, path)
    if found is None:
        if not required:
            return None
        where = ", ".join(str(p) for p in path) or source
        raise InputError(source, f"not an obs_lsst policy directory: no {name} in {where}")
    return load_yaml(found)


def _g(value: Any, source: str, field: str) -> float:
    """Return a number as obs_lsst's ``%g`` writes it (6 significant digits), read back."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(source, f"expected a number, got {value!r}", field=field)
    return float(format(float(value), "g"))


def _mapping(value: Any, source: str, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(source, "expected a mapping", field=field)
    return value


def _triple(value: Any, source: str, field: str) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) not in (2, 3):
        raise InputError(source, f"expected [x, y] or [x, y, z], got {value!r}", field=field)
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InputError(source, f"expected numbers, got {value!r}", field=field)
        out.append(float(v))
    return out + [0.0] * (3 - len(out))


def _rotate(offset: list[float], yaw_deg: float) -> list[float]:
    """Rotate (x, y) by the raft yaw as obs_lsst does (no rotation at exactly 0)."""
    if yaw_deg == 0.0:
        return offset
    s, c = math.sin(math.radians(yaw_deg)), math.cos(math.radians(yaw_deg))
    x, y, z = offset
    return [c * x - s * y, s * x + c * y, z]


def assemble_policy_directory(directory: PathLike) -> dict[str, Any]:
    """Assemble an obs_lsst policy directory into one obs_lsst camera mapping.

    Parameters
    ----------
    directory : path-like
        A per-instrument policy directory, e.g. ``obs_lsst/policy/latiss``, inside its policy
        tree (the parent holds ``cameraHeader.yaml``, ``rafts.yaml``, ``lsstCam/``...).

    Returns
    -------
    camera : dict
        ``{"name": ..., "CCDs": {full name: ccd mapping}, ...}`` plus the entries of
        ``cameraTransforms.yaml``: what the YAML obs_lsst assembles from this directory loads
        to (see the module docstring).

    Raises
    ------
    calibreg.errors.InputError
        A missing header, ``rafts.yaml`` or raft file, a raft type without templates, a CCD
        or amplifier without data, a malformed value; the message names the file and field.
    """
    source = str(directory)
    if not Path(directory).is_dir():
        raise InputError(source, "not a directory")
    path = search_path(directory)
    header = _mapping(_load("cameraHeader.yaml", path, source), source, "cameraHeader.yaml")
    rafts = _mapping(_load("rafts.yaml", path, source), source, "rafts.yaml").get("rafts")
    transforms = _load("cameraTransforms.yaml", path, source, required=False) or {}
    names = _load("name.yaml", path, source, required=False)
    name = names.get("name") if isinstance(names, Mapping) else None
    camera: dict[str, Any] = {"name": name if name else header.get("name")}
    camera.update(_mapping(transforms, source, "cameraTransforms.yaml"))
    ccds: dict[str, Any] = {}
    for raft_name, raft in _mapping(rafts, source, "rafts.yaml: rafts").items():
        raft_file = _find(f"{raft_name}.yaml", path)
        if raft_file is None:
            raise InputError(
                source, f"rafts.yaml lists raft {raft_name} but there is no {raft_name}.yaml"
            )
        raft_data = _mapping(load_yaml(raft_file), str(raft_file), raft_name).get(raft_name)
        for full_name, ccd in _raft_ccds(
            header, raft_name, _mapping(raft, source, f"rafts.{raft_name}"), raft_data, raft_file
        ):
            if full_name in ccds:
                raise InputError(str(raft_file), f"detector {full_name} is built twice")
            ccds[full_name] = ccd
    if not ccds:
        raise InputError(source, "the policy directory builds no detectors")
    camera["CCDs"] = ccds
    return camera


def _raft_ccds(
    header: Mapping[str, Any],
    raft_name: str,
    raft: Mapping[str, Any],
    raft_data: Any,
    raft_file: Path,
) -> list[tuple[str, dict[str, Any]]]:
    src = str(raft_file)
    data = _mapping(raft_data, src, raft_name)
    kind = data.get("detectorType")
    if not isinstance(kind, str):
        raise InputError(src, "raft has no detectorType", field=f"{raft_name}.detectorType")
    try:
        layouts = header[f"RAFT_{kind}"]["ccds"]
        amp_templates = header[f"CCD_{kind}"]["amplifiers"]
    except (KeyError, TypeError):
        raise InputError(
            src, f"cameraHeader.yaml has no RAFT_{kind}/CCD_{kind} templates", field="detectorType"
        ) from None
    serials = _mapping(data.get("ccdSerials"), src, f"{raft_name}.ccdSerials")
    sensor_types = data.get("sensorTypes")
    geometry = data.get("geometryWithinRaft") or {}
    amp_data = _mapping(data.get("amplifiers"), src, f"{raft_name}.amplifiers")
    raft_offset = _triple(raft.get("offset"), src, f"rafts.{raft_name}.offset")
    raft_yaw = float(raft.get("yaw", 0.0))
    id0 = raft.get("id0")
    if isinstance(id0, bool) or not isinstance(id0, int):
        raise InputError(src, f"raft id0 must be an integer, got {id0!r}", field="id0")
    out = []
    for ccd_name, serial in serials.items():
        where = f"{raft_name}.{ccd_name}"
        if ccd_name not in layouts:
            raise InputError(src, f"RAFT_{kind} has no CCD {ccd_name}", field=where)
        ccd = copy.deepcopy(dict(layouts[ccd_name]))
        if isinstance(sensor_types, Mapping):
            if ccd_name not in sensor_types:
                raise InputError(src, "no sensor type", field=f"{raft_name}.sensorTypes.{ccd_name}")
            ccd["detectorType"] = sensor_types[ccd_name]
        ccd["id"] = id0 + int(layouts[ccd_name]["id"])
        ccd["serial"] = str(serial)
        ccd["physicalType"] = kind
        within = _triple(ccd.get("offset", [0.0, 0.0]), src, f"RAFT_{kind}.{ccd_name}.offset")
        if ccd_name in geometry:
            geo = _mapping(geometry[ccd_name], src, f"{raft_name}.geometryWithinRaft.{ccd_name}")
            delta = _triple(geo.get("offset"), src, f"{where}.geometryWithinRaft.offset")
            ccd["yaw"] = _g(float(geo.get("yaw", 0.0)) + raft_yaw, src, f"{where}.yaw")
        else:
            delta = [0.0, 0.0, 0.0]
        rotated = _rotate([a + b for a, b in zip(within, delta, strict=True)], raft_yaw)
        ccd["offset"] = [
            _g(r + o, src, f"{where}.offset") for r, o in zip(rotated, raft_offset, strict=True)
        ]
        ccd["amplifiers"] = _amplifiers(amp_templates, amp_data.get(ccd_name), src, where)
        out.append((f"{RAFT_ALIASES.get(raft_name, raft_name)}_{ccd_name}", ccd))
    return out


def _amplifiers(
    templates: Mapping[str, Any], values: Any, src: str, where: str
) -> dict[str, dict[str, Any]]:
    values = _mapping(values, src, f"{where}.amplifiers")
    amps: dict[str, dict[str, Any]] = {}
    for amp_name, template in templates.items():
        if amp_name not in values:
            raise InputError(src, "no data for this amplifier", field=f"{where}.{amp_name}")
        given = _mapping(values[amp_name], src, f"{where}.{amp_name}")
        amp = copy.deepcopy(dict(template))
        for key in ("gain", "readNoise"):
            if key not in given:
                raise InputError(
                    src, "required field is missing", field=f"{where}.{amp_name}.{key}"
                )
            amp[key] = _g(given[key], src, f"{where}.{amp_name}.{key}")
        if given.get("saturation"):
            amp["saturation"] = _g(given["saturation"], src, f"{where}.{amp_name}.saturation")
        amps[amp_name] = amp
    return amps
