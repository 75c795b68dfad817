"""Readers and writers of outside formats; no database code lives here.

Each reader turns a file into plain dataclasses or a `pandas.DataFrame` and reports every
problem as one `~calibreg.errors.InputError` naming the file, row and field, so that the
registry's ingest layer can be written against a stable, typed API:

* `read_camera` / `write_camera_yaml`: obs_lsst or calibreg camera YAML → `CameraSpec`.
* `read_exposures`: butler export YAML, CSV, Parquet or JSON → exposure table (TAI ns times).
* `read_stats_table`, `read_propertylist`, `read_stats`, `write_propertylist`: background
  statistics from long tables or cpFlatMeasure PropertyList files.
* `calibreg.formats.timescale`: exact UTC ↔ TAI nanosecond conversion.
"""

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
