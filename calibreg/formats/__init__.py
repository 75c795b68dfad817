"""Readers and writers of outside formats; no database code lives here.

Each reader turns a file into plain dataclasses or a `pandas.DataFrame` and reports every
problem as one `~calibreg.errors.InputError` naming the file, row and field, so that the
registry's ingest layer can be written against a stable, typed API:

* `read_camera` / `write_camera_yaml`: obs_lsst or calibreg camera YAML → `CameraSpec`.
* `read_exposures`: butler export YAML, CSV, Parquet or JSON → exposure table (TAI ns times).
* `read_stats_table`, `read_propertylist`, `read_stats`, `write_propertylist`: background
  statistics from long tables or cpFlatMeasure PropertyList files.
* `calibreg.formats.timescale`: exact UTC ↔ TAI nanosecond conversion.

The names are loaded on first use (:pep:`562`): importing :mod:`calibreg.formats.timescale`
imports this package first, and must not load the table readers' pandas, pyarrow and YAML.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calibreg.formats.camera import (
        CALIBREG_CAMERA_FORMAT,
        DETECTOR_PURPOSES,
        AmplifierSpec,
        CameraSpec,
        DetectorSpec,
        read_camera,
        write_camera_yaml,
    )
    from calibreg.formats.exposures import EXPOSURE_COLUMNS, ButlerExportLoader, read_exposures
    from calibreg.formats.stats import (
        STATS_COLUMNS,
        iter_stats,
        parse_stats_filename,
        read_propertylist,
        read_stats,
        read_stats_table,
        write_propertylist,
    )
    from calibreg.formats.timescale import (
        tai_iso_to_tai_ns,
        tai_ns_to_utc,
        tai_ns_to_utc_iso,
        utc_to_tai_ns,
    )

#: Each public name and the submodule that defines it.
_SOURCES = {
    "CALIBREG_CAMERA_FORMAT": "calibreg.formats.camera",
    "DETECTOR_PURPOSES": "calibreg.formats.camera",
    "AmplifierSpec": "calibreg.formats.camera",
    "CameraSpec": "calibreg.formats.camera",
    "DetectorSpec": "calibreg.formats.camera",
    "read_camera": "calibreg.formats.camera",
    "write_camera_yaml": "calibreg.formats.camera",
    "EXPOSURE_COLUMNS": "calibreg.formats.exposures",
    "ButlerExportLoader": "calibreg.formats.exposures",
    "read_exposures": "calibreg.formats.exposures",
    "STATS_COLUMNS": "calibreg.formats.stats",
    "iter_stats": "calibreg.formats.stats",
    "parse_stats_filename": "calibreg.formats.stats",
    "read_propertylist": "calibreg.formats.stats",
    "read_stats": "calibreg.formats.stats",
    "read_stats_table": "calibreg.formats.stats",
    "write_propertylist": "calibreg.formats.stats",
    "tai_iso_to_tai_ns": "calibreg.formats.timescale",
    "tai_ns_to_utc": "calibreg.formats.timescale",
    "tai_ns_to_utc_iso": "calibreg.formats.timescale",
    "utc_to_tai_ns": "calibreg.formats.timescale",
}


def __getattr__(name: str) -> Any:
    try:
        module = _SOURCES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


__all__ = [
    "CALIBREG_CAMERA_FORMAT",
    "DETECTOR_PURPOSES",
    "EXPOSURE_COLUMNS",
    "STATS_COLUMNS",
    "AmplifierSpec",
    "ButlerExportLoader",
    "CameraSpec",
    "DetectorSpec",
    "iter_stats",
    "parse_stats_filename",
    "read_camera",
    "read_exposures",
    "read_propertylist",
    "read_stats",
    "read_stats_table",
    "tai_iso_to_tai_ns",
    "tai_ns_to_utc",
    "tai_ns_to_utc_iso",
    "utc_to_tai_ns",
    "write_camera_yaml",
    "write_propertylist",
]
