"""Exposure records from a butler export YAML or a table with the butler's field names.

The registry selects the exposures of a flat sequence by their butler metadata
(observation_type/reason, science_program, group, day_obs, time), so the reader keeps those
fields and the timespan, converted to calibreg's one time scale: TAI nanoseconds since
1970-01-01 00:00:00 TAI, as the butler stores it (see `calibreg.formats.timescale`).

Formats (chosen by suffix)
--------------------------
``.csv``
    Header line + rows. Data row 1 is the first record after the header (error messages count
    rows that way; a quoted field spanning lines still counts as one row, blank lines are
    skipped). Every cell is read as text and converted by the field rules, so 19-digit
    nanosecond counts keep every digit; a row with too few cells (a truncated file) is refused.
``.parquet`` / ``.pq``
    Row 1 is the first row.
``.json``
    A list of records, or ``{"exposures": [...]}``; row N is the N-th record.
``.yaml`` / ``.yml``
    A real ``butler export`` file: ``{description, version, universe_version, data: [...]}``
    whose ``type: dimension, element: exposure`` blocks hold the records (row N = the N-th
    exposure record over all such blocks). Every record must carry the fields its block's
    first record carries, and a timespan, as the butler writes them: a file cut mid-record is
    refused, not read as NULLs. Butler tags are understood:
    ``!butler_time/tai/iso`` (a TAI clock reading) and ``!butler_time/tai/nsec`` become TAI ns;
    ``!uuid`` becomes its text; any other tag (``!<lsst.sphgeom.ConvexPolygon>`` regions...)
    loads as ``None`` because exposures do not need it.

Columns
-------
Field names are the butler's exposure fields. Required: ``instrument``, ``id``,
``physical_filter``. Optional: ``obs_id``, ``observation_type``, ``observation_reason``,
``science_program``, ``group`` (older registries: ``group_name``, used when ``group`` is
empty), ``target_name``, ``day_obs``, ``seq_num``, ``exposure_time``, ``dark_time`` and the
timespan, either ``timespan_begin``/``timespan_end`` or ``datetime_begin``/``datetime_end``
(the ``timespan_*`` value wins when both are given). Other columns are ignored.

Every field follows one rule whatever the format (`calibreg.formats._common`): ``id`` an
integer >= 0 within int64; ``day_obs``/``seq_num`` integers within int32 (``12.0`` counts as
12); ``exposure_time``/``dark_time`` finite numbers >= 0 (blank/NaN = unknown); text fields
at most their column's length (`calibreg.domain.limits`); the four time fields TAI ns
(integers, never floats: a float cannot hold 19 digits) or ISO-8601 text in ``time_scale``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from calibreg.domain import limits
from calibreg.errors import InputError
from calibreg.formats._common import (
    Integer,
    PathLike,
    Real,
    SafeYAMLLoader,
    Text,
    Time,
    check_readable,
    field_name,
    load_json,
    load_yaml,
    read_csv_columns,
    shown,
)
from calibreg.formats.timescale import tai_iso_to_tai_ns

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

#: The rule of every field (calibreg.formats._common), whatever the file format.
_RULES: dict[str, Any] = {
    "instrument": Text(limits.INSTRUMENT_NAME, required=True),
    "id": Integer(0, limits.INT64_MAX),
    "physical_filter": Text(limits.PHYSICAL_FILTER, required=True),
    "obs_id": Text(limits.OBS_ID),
    "observation_type": Text(limits.OBSERVATION_TYPE),
    "observation_reason": Text(limits.OBSERVATION_REASON),
    "science_program": Text(limits.SCIENCE_PROGRAM),
    "group": Text(limits.GROUP_NAME),
    "target_name": Text(limits.TARGET_NAME),
    "day_obs": Integer(limits.INT32_MIN, limits.INT32_MAX, required=False),
    "seq_num": Integer(limits.INT32_MIN, limits.INT32_MAX, required=False),
    "exposure_time": Real(minimum=0.0),
    "dark_time": Real(minimum=0.0),
}
_TIME = Time()
_TIMESPAN_KEYS = (("timespan_begin", "datetime_begin"), ("timespan_end", "datetime_end"))


# --------------------------------------------------------------------------- butler YAML
def _construct_tai_iso(loader: yaml.BaseLoader, node: yaml.Node) -> Any:
    text = loader.construct_scalar(node)  # type: ignore[arg-type]
    try:
        return tai_iso_to_tai_ns(str(text))
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"bad !butler_time/tai/iso value {shown(text)}", node.start_mark
        ) from None


def _construct_tai_nsec(loader: yaml.BaseLoader, node: yaml.Node) -> Any:
    text = str(loader.construct_scalar(node)).strip()  # type: ignore[arg-type]
    value = Integer(required=False)
    try:
        return value.parse(text, "", row=None, field="")
    except InputError:
        raise yaml.constructor.ConstructorError(
            None, None, f"bad !butler_time/tai/nsec value {shown(text)}", node.start_mark
        ) from None


def _construct_uuid(loader: yaml.BaseLoader, node: yaml.Node) -> Any:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


def _construct_ignored(loader: yaml.BaseLoader, node: yaml.Node) -> None:
    return None


class ButlerExportLoader(SafeYAMLLoader):
    """Safe loader for ``butler export`` YAML: butler time tags to TAI ns, other tags to None.

    Dropping unknown tags (``!<lsst.sphgeom.ConvexPolygon>`` regions...) lets an export load
    without the LSST classes they name; exposures need none of those values.
    """


ButlerExportLoader.add_constructor("!butler_time/tai/iso", _construct_tai_iso)
ButlerExportLoader.add_constructor("!butler_time/tai/nsec", _construct_tai_nsec)
ButlerExportLoader.add_constructor("!uuid", _construct_uuid)
ButlerExportLoader.add_constructor(None, _construct_ignored)


def _butler_records(data: Any, source: str) -> list[Any]:
    """Return the exposure records of a butler export, checked to be whole.

    The butler writes every field of an element in every record (null included), timespan
    ends last. A record that lacks a field its block's first record has, or lacks the
    timespan, is a file cut mid-record (or hand-edited): refused rather than read as NULLs.
    """
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
            first_keys: list[str] | None = None
            for rec in block_records:
                row = len(records) + 1
                records.append(rec)
                if not isinstance(rec, Mapping):
                    continue  # refused by _convert, with its row
                if "timespan" not in rec and not any(
                    all(k in rec for k in pair) for pair in zip(*_TIMESPAN_KEYS, strict=True)
                ):
                    raise InputError(
                        source,
                        "butler exposure record lacks its timespan (datetime_begin and "
                        "datetime_end): the file looks cut mid-record",
                        row=row,
                        field="datetime_begin",
                    )
                if first_keys is None:
                    first_keys = list(rec)
                    continue
                missing = [k for k in first_keys if k not in rec]
                if missing:
                    raise InputError(
                        source,
                        "butler exposure record lacks fields the block's first record has "
                        f"({', '.join(shown(k) for k in missing[:3])}): the file looks cut "
                        "mid-record",
                        row=row,
                        field=field_name(missing[0]),
                    )
    return records


# --------------------------------------------------------------------------- tables
def _read_csv(path: PathLike, source: str) -> list[dict[str, Any]]:
    def select(names: list[str]) -> list[str]:
        missing = [name for name in _REQUIRED if name not in names]
        if missing:
            raise InputError(source, "required column is missing", field=missing[0])
        return names

    columns, n_rows = read_csv_columns(path, source, select=select, newlines_in_values=True)
    values = {name: column.to_pylist() for name, column in columns.items()}
    return [{name: values[name][i] for name in values} for i in range(n_rows)]


def _read_parquet(path: PathLike, source: str) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return table.to_pylist()
    except Exception as exc:  # pyarrow raises many types (ArrowInvalid, OSError...)
        raise InputError(source, f"not a readable Parquet file: {str(exc)[:200]}") from None


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
def _timespan_value(
    rec: Mapping[str, Any], keys: tuple[str, str], time_scale: str, source: str, row: int
) -> int | None:
    """Read a timespan end from ``timespan_*`` if given, else ``datetime_*`` (same rule)."""
    for key in keys:
        ns = _TIME.parse(rec.get(key), source, row=row, field=key, time_scale=time_scale)
        if ns is not None:
            return ns
    span = rec.get("timespan")  # a butler Timespan written as {begin: ..., end: ...}
    if isinstance(span, Mapping):
        end = keys[0].removeprefix("timespan_")
        return _TIME.parse(
            span.get(end), source, row=row, field=f"timespan.{end}", time_scale=time_scale
        )
    return None


def _convert(records: list[Any], source: str, time_scale: str) -> pd.DataFrame:
    columns: dict[str, list[Any]] = {name: [] for name in EXPOSURE_COLUMNS}
    first_row_of_id: dict[tuple[str | None, int], int] = {}
    for row, rec in enumerate(records, start=1):
        if not isinstance(rec, Mapping):
            raise InputError(source, f"expected a record (mapping), got {shown(rec)}", row=row)
        for name in _REQUIRED:
            if name not in rec:
                raise InputError(source, "required field is missing", row=row, field=name)
        values = {
            name: rule.parse(rec.get(name), source, row=row, field=name)
            for name, rule in _RULES.items()
        }
        if values["group"] is None and "group_name" in rec:
            values["group"] = _RULES["group"].parse(
                rec["group_name"], source, row=row, field="group_name"
            )
        # Exposure ids are unique per instrument only (LSSTCamSim and LSSTComCamSim share
        # 7024032100720 in obs_lsst's test registries).
        key = (values["instrument"], values["id"])
        if key in first_row_of_id:
            raise InputError(
                source,
                f"duplicate exposure id {key[1]} for instrument {key[0]} "
                f"(first at row {first_row_of_id[key]})",
                row=row,
                field="id",
            )
        first_row_of_id[key] = row
        begin, end = (
            _timespan_value(rec, keys, time_scale, source, row) for keys in _TIMESPAN_KEYS
        )
        if begin is not None and end is not None and begin > end:
            raise InputError(
                source,
                f"timespan ends before it begins ({end} < {begin} TAI ns)",
                row=row,
                field="timespan_end",
            )
        values["timespan_begin"], values["timespan_end"] = begin, end
        for name in EXPOSURE_COLUMNS:
            columns[name].append(values[name])
    return pd.DataFrame(
        {
            name: pd.Series(columns[name], dtype=object if dtype == "object" else dtype)
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
        raise InputError(source, f"unknown time scale {shown(time_scale)}; use 'utc' or 'tai'")
    check_readable(path)
    records = _records_from_file(path, source)
    if records and isinstance(records[0], Mapping):
        missing = [name for name in _REQUIRED if name not in records[0]]
        if missing:
            raise InputError(source, "required column is missing", field=missing[0])
    return _convert(records, source, time_scale)
