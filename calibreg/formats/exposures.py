"""Exposure records from a butler export YAML or a table with the butler's field names.

The registry selects the exposures of a flat sequence by their butler metadata
(observation_type/reason, science_program, group, day_obs, time), so the reader keeps those
fields and the timespan, converted to calibreg's one time scale: TAI nanoseconds since
1970-01-01 00:00:00 TAI, as the butler stores it (see `calibreg.formats.timescale`).

Formats (chosen by suffix)
--------------------------
``.csv``
    Header line + rows. Data row 1 is the first line after the header (error messages count
    rows that way; a quoted field spanning lines still counts as one row). Every cell is read
    as text and converted here, so 19-digit nanosecond counts keep every digit.
``.parquet`` / ``.pq``
    Row 1 is the first row.
``.json``
    A list of records, or ``{"exposures": [...]}``; row N is the N-th record.
``.yaml`` / ``.yml``
    A real ``butler export`` file: ``{description, version, universe_version, data: [...]}``
    whose ``type: dimension, element: exposure`` blocks hold the records (row N = the N-th
    exposure record over all such blocks). Butler tags are understood:
    ``!butler_time/tai/iso`` (a TAI clock reading) and ``!butler_time/tai/nsec`` become TAI ns;
    ``!uuid`` becomes its text; any other tag (``!<lsst.sphgeom.ConvexPolygon>`` regions...)
    loads as ``None`` because exposures do not need it.

Columns
-------
Field names are the butler's exposure fields. Required: ``instrument``, ``id``,
``physical_filter``. Optional: ``obs_id``, ``observation_type``, ``observation_reason``,
``science_program``, ``group`` (older registries: ``group_name``, used when ``group`` is
empty), ``target_name``, ``day_obs``, ``seq_num``, ``exposure_time``, ``dark_time`` and the
timespan, either ``timespan_begin``/``timespan_end`` (integer TAI ns) or
``datetime_begin``/``datetime_end`` (ISO strings in ``time_scale``; TAI ns integers are also
accepted there). Other columns are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from calibreg.errors import InputError
from calibreg.formats._common import (
    DuplicateKeyLoader,
    PathLike,
    check_readable,
    load_json,
    load_yaml,
    to_float,
    to_int,
    to_str,
    wrap_value_error,
)
from calibreg.formats.timescale import tai_iso_to_tai_ns, utc_to_tai_ns

__all__ = ["EXPOSURE_COLUMNS", "ButlerExportLoader", "read_exposures"]

#: Output columns of `read_exposures`, in order, with their pandas dtypes.
EXPOSURE_COLUMNS: dict[str, str] = {
    "instrument": "object",
    "id": "int64",
    "physical_filter": "object",
    "obs_id": "object",
    "observation_type": "object",
    "observation_reason": "object",
    "science_program": "object",
    "group": "object",
    "target_name": "object",
    "day_obs": "Int64",
    "seq_num": "Int64",
    "exposure_time": "float64",
    "dark_time": "float64",
    "timespan_begin": "Int64",
    "timespan_end": "Int64",
}
_REQUIRED = ("instrument", "id", "physical_filter")
_OPTIONAL_TEXT = (
    "obs_id",
    "observation_type",
    "observation_reason",
    "science_program",
    "group",
    "target_name",
)


# --------------------------------------------------------------------------- butler YAML
class _TaiNs(int):
    """An int that remembers it is already TAI ns (from a butler time tag)."""


def _construct_tai_iso(loader: yaml.BaseLoader, node: yaml.Node) -> Any:
    text = loader.construct_scalar(node)  # type: ignore[arg-type]
    try:
        return _TaiNs(tai_iso_to_tai_ns(str(text)))
    except ValueError as exc:
        raise yaml.constructor.ConstructorError(
            None, None, f"bad !butler_time/tai/iso value: {exc}", node.start_mark
        ) from None


def _construct_tai_nsec(loader: yaml.BaseLoader, node: yaml.Node) -> Any:
    text = loader.construct_scalar(node)  # type: ignore[arg-type]
    try:
        return _TaiNs(int(str(text).strip()))
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"bad !butler_time/tai/nsec value {text!r}", node.start_mark
        ) from None


def _construct_uuid(loader: yaml.BaseLoader, node: yaml.Node) -> Any:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


def _construct_ignored(loader: yaml.BaseLoader, node: yaml.Node) -> None:
    return None


class ButlerExportLoader(DuplicateKeyLoader):
    """Safe loader for ``butler export`` YAML: butler time tags to TAI ns, other tags to None.

    Dropping unknown tags (``!<lsst.sphgeom.ConvexPolygon>`` regions...) lets an export load
    without the LSST classes they name; exposures need none of those values.
    """


ButlerExportLoader.add_constructor("!butler_time/tai/iso", _construct_tai_iso)
ButlerExportLoader.add_constructor("!butler_time/tai/nsec", _construct_tai_nsec)
ButlerExportLoader.add_constructor("!uuid", _construct_uuid)
ButlerExportLoader.add_constructor(None, _construct_ignored)


def _butler_records(data: Any, source: str) -> list[Any]:
    if not isinstance(data, Mapping) or not isinstance(data.get("data"), list):
        raise InputError(source, "not a butler export: expected a mapping with a 'data' list")
    records: list[Any] = []
    for block in data["data"]:
        if (
            isinstance(block, Mapping)
            and block.get("type") == "dimension"
            and block.get("element") == "exposure"
        ):
            block_records = block.get("records") or []
            if not isinstance(block_records, list):
                raise InputError(source, "exposure 'records' is not a list", field="records")
            records.extend(block_records)
    return records


# --------------------------------------------------------------------------- tables
def _read_csv(path: PathLike, source: str) -> list[dict[str, Any]]:
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True
        )
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(source, f"not a readable CSV table: {str(exc).splitlines()[0]}") from None
    except (OSError, ValueError) as exc:
        raise InputError(source, f"cannot read CSV: {exc}") from None
    return frame.to_dict("records")


def _read_parquet(path: PathLike, source: str) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises many types (ArrowInvalid, OSError...)
        raise InputError(source, f"not a readable Parquet file: {exc}") from None
    return table.to_pylist()


def _records_from_file(path: PathLike, source: str) -> list[Any]:
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, source)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path, source)
    if suffix == ".json":
        data = load_json(path)
        if isinstance(data, Mapping) and "exposures" in data:
            data = data["exposures"]
        if not isinstance(data, list):
            raise InputError(source, "expected a JSON list of records or {'exposures': [...]}")
        return data
    if suffix in (".yaml", ".yml"):
        return _butler_records(load_yaml(path, ButlerExportLoader), source)
    raise InputError(
        source, f"unknown exposure file type {suffix!r}; use .csv, .parquet, .json or .yaml"
    )


# --------------------------------------------------------------------------- conversion
def _timestamp_converter(time_scale: str) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, _TaiNs):
            return int(value)
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            return int(value)  # already TAI ns
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
        if time_scale == "tai":
            if not isinstance(value, str):
                raise ValueError(f"expected a TAI date-time string, got {value!r}")
            return tai_iso_to_tai_ns(value)
        return utc_to_tai_ns(value)

    return convert


def _timespan_value(
    rec: Mapping[str, Any], which: str, convert: Callable[[Any], int], source: str, row: int
) -> int | None:
    ns_field, iso_field = f"timespan_{which}", f"datetime_{which}"
    if not _is_blank(rec.get(ns_field)):
        return to_int(rec[ns_field], source, row=row, field=ns_field)
    if not _is_blank(rec.get(iso_field)):
        return wrap_value_error(convert, rec[iso_field], source, row=row, field=iso_field)
    return None


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, float) and np.isnan(value)


def _convert(records: list[Any], source: str, time_scale: str) -> pd.DataFrame:
    convert_time = _timestamp_converter(time_scale)
    columns: dict[str, list[Any]] = {name: [] for name in EXPOSURE_COLUMNS}
    first_row_of_id: dict[tuple[str | None, int], int] = {}
    for row, rec in enumerate(records, start=1):
        if not isinstance(rec, Mapping):
            raise InputError(source, f"expected a record (mapping), got {rec!r}", row=row)
        for name in _REQUIRED:
            if name not in rec:
                raise InputError(source, "required field is missing", row=row, field=name)
        exp_id = to_int(rec["id"], source, row=row, field="id")
        assert exp_id is not None
        if exp_id < 0:
            raise InputError(source, f"exposure id must be >= 0, got {exp_id}", row=row, field="id")
        for name in ("instrument", "physical_filter"):
            columns[name].append(to_str(rec[name], source, row=row, field=name, required=True))
        # Exposure ids are unique per instrument only (LSSTCamSim and LSSTComCamSim share
        # 7024032100720 in obs_lsst's test registries).
        key = (columns["instrument"][-1], exp_id)
        if key in first_row_of_id:
            raise InputError(
                source,
                f"duplicate exposure id {exp_id} for instrument {key[0]} "
                f"(first at row {first_row_of_id[key]})",
                row=row,
                field="id",
            )
        first_row_of_id[key] = row
        columns["id"].append(exp_id)
        for name in _OPTIONAL_TEXT:
            columns[name].append(to_str(rec.get(name), source, row=row, field=name))
        if columns["group"][-1] is None and "group_name" in rec:
            columns["group"][-1] = to_str(rec["group_name"], source, row=row, field="group_name")
        for name in ("day_obs", "seq_num"):
            columns[name].append(to_int(rec.get(name), source, row=row, field=name, required=False))
        for name in ("exposure_time", "dark_time"):
            columns[name].append(to_float(rec.get(name), source, row=row, field=name))
        begin = _timespan_value(rec, "begin", convert_time, source, row)
        end = _timespan_value(rec, "end", convert_time, source, row)
        if begin is not None and end is not None and begin > end:
            raise InputError(
                source,
                f"timespan ends before it begins ({end} < {begin} TAI ns)",
                row=row,
                field="timespan_end",
            )
        columns["timespan_begin"].append(begin)
        columns["timespan_end"].append(end)
    for name in ("id", "day_obs", "seq_num", "timespan_begin", "timespan_end"):
        for row, value in enumerate(columns[name], start=1):
            if value is not None and not -(2**63) <= value < 2**63:
                raise InputError(source, "integer does not fit in 64 bits", row=row, field=name)
    return pd.DataFrame(
        {
            name: pd.Series(columns[name], dtype=dtype)
            if dtype != "object"
            else pd.Series(columns[name], dtype=object)
            for name, dtype in EXPOSURE_COLUMNS.items()
        }
    )


def read_exposures(path: PathLike, *, time_scale: str = "utc") -> pd.DataFrame:
    """Read exposure records into a DataFrame with the columns of `EXPOSURE_COLUMNS`.

    Parameters
    ----------
    path : path-like
        ``.csv``, ``.parquet``/``.pq``, ``.json`` or a butler export ``.yaml``/``.yml`` (see
        the module docstring).
    time_scale : {"utc", "tai"}
        Scale of ISO strings in ``datetime_begin``/``datetime_end`` table cells. Butler YAML
        tags carry their own scale, and integer cells are always TAI ns, so this only matters
        for hand-written tables. UTC strings without an offset are UTC; an offset is honoured.

    Returns
    -------
    exposures : `pandas.DataFrame`
        One row per exposure in file order. Text columns are ``object`` holding `str` or
        ``None``; ``id`` is ``int64``; ``day_obs``, ``seq_num``, ``timespan_begin``,
        ``timespan_end`` are nullable ``Int64`` (timespans in TAI ns); ``exposure_time`` and
        ``dark_time`` are ``float64`` (NaN when absent).

    Raises
    ------
    calibreg.errors.InputError
        Unknown ``time_scale``, unreadable file or unknown suffix, missing required column,
        bad value (a UTC time before 1972, an integer beyond 64 bits...), negative or
        duplicate id within an instrument, or a timespan that ends before it begins.
    """
    source = str(path)
    if time_scale not in ("utc", "tai"):
        raise InputError(source, f"unknown time scale {time_scale!r}; use 'utc' or 'tai'")
    check_readable(path)
    records = _records_from_file(path, source)
    if records and isinstance(records[0], Mapping):
        missing = [name for name in _REQUIRED if name not in records[0]]
        if missing:
            raise InputError(source, "required column is missing", field=missing[0])
    return _convert(records, source, time_scale)
