"""Limits of stored values, defined once: text lengths and integer ranges.

The schema (:mod:`calibreg.db.models`) sizes its columns from these constants and the readers
(:mod:`calibreg.formats`) refuse longer text or out-of-range integers with one line naming the
file, row and field, so that a value the readers accept is one every backend stores unchanged
(PostgreSQL refuses text over a ``VARCHAR(n)``; SQLite would store it silently).

Text lengths count characters (Unicode code points), as ``VARCHAR(n)`` does on PostgreSQL.
This module imports nothing, so every layer may use it.
"""

from __future__ import annotations

__all__ = [
    "AMP_NAME",
    "CERTIFIED_BY",
    "CONTENT_HASH",
    "DETECTOR_NAME",
    "DETECTOR_PURPOSE",
    "DETECTOR_SERIAL",
    "GROUP_NAME",
    "HOST",
    "INGEST_KIND",
    "INSTRUMENT_NAME",
    "INT16_MAX",
    "INT16_MIN",
    "INT32_MAX",
    "INT32_MIN",
    "INT64_MAX",
    "INT64_MIN",
    "LEVEL",
    "MAX_AMPLIFIERS_PER_DETECTOR",
    "METHOD",
    "OBSERVATION_REASON",
    "OBSERVATION_TYPE",
    "OBS_ID",
    "PHYSICAL_FILTER",
    "PHYSICAL_TYPE",
    "SCHEMA_REVISION",
    "SCIENCE_PROGRAM",
    "SELECTION_KEY",
    "SHA256",
    "SOFTWARE_VERSION",
    "SOURCE_FORMAT",
    "TAG_NAME",
    "TARGET_NAME",
    "USER_NAME",
]

# --------------------------------------------------------------------------- integer ranges
#: ``BIGINT``: exposure ids, TAI nanoseconds, pixel counts.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: ``INTEGER``: detector ids, pixel bounding boxes, ``day_obs``, ``seq_num``.
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
#: ``SMALLINT``: amplifier indices.
INT16_MIN = -(2**15)
INT16_MAX = 2**15 - 1
#: An amplifier's 0-based index is a ``SMALLINT``.
MAX_AMPLIFIERS_PER_DETECTOR = INT16_MAX + 1

# --------------------------------------------------------------------------- text lengths
# Instruments and camera geometry.
INSTRUMENT_NAME = 64
SOURCE_FORMAT = 32
DETECTOR_NAME = 64
DETECTOR_SERIAL = 64
PHYSICAL_TYPE = 32
DETECTOR_PURPOSE = 16
AMP_NAME = 32

# Exposures (the butler's exposure-dimension fields).
PHYSICAL_FILTER = 64
OBS_ID = 64
OBSERVATION_TYPE = 64
OBSERVATION_REASON = 128
SCIENCE_PROGRAM = 128
GROUP_NAME = 128
TARGET_NAME = 128

# Bookkeeping and provenance.
INGEST_KIND = 16
SHA256 = 64
CONTENT_HASH = 64
SELECTION_KEY = 64
USER_NAME = 128
HOST = 255
SOFTWARE_VERSION = 64
SCHEMA_REVISION = 32
LEVEL = 8
METHOD = 32
WEIGHTS = 32
VARIANCE = 16
FLAG_NAME = 32
FLAG_APPLIES_TO = 16
REJECTION_REASON = 16
TAG_NAME = 128
CERTIFIED_BY = 128
