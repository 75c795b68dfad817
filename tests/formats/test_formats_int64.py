"""Ids and TAI nanoseconds are exact int64 through every reader (issue 13, kind 1).

No reader may pass an integer through float64 (which holds only 53 bits), even when a column
has blanks (pandas would upcast it to float64): random int64 ids and TAI ns, the extremes and
values near 2**62 and 2**63 included, must come back bit for bit from CSV, Parquet, JSON, a
butler export YAML and (for what they carry) PropertyList files and their file names.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calibreg.domain import limits
from calibreg.errors import InputError
from calibreg.formats import read_exposures, read_propertylist, read_stats_table, write_propertylist

_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _near(*centres: int) -> st.SearchStrategy[int]:
    return st.sampled_from(centres).flatmap(lambda c: st.integers(-3, 3).map(lambda d: c + d))


# Exposure ids: >= 0 within int64. TAI ns: the whole int64 range.
_ids = st.one_of(
    st.integers(0, limits.INT64_MAX),
    _near(0, 2**53, 2**62, limits.INT64_MAX - 3).filter(lambda v: 0 <= v <= limits.INT64_MAX),
)
_ns = st.one_of(
    st.integers(limits.INT64_MIN, limits.INT64_MAX),
    _near(-(2**62), 2**62, 2**53, -(2**53), limits.INT64_MIN + 3, limits.INT64_MAX - 3),
    st.just(1_764_748_747_425_363_958),
)


@st.composite
def _exposure_rows(draw: st.DrawFn) -> list[dict[str, object]]:
    ids = draw(st.lists(_ids, min_size=1, max_size=8, unique=True))
    rows = []
    for exposure_id in ids:
        begin = draw(st.one_of(st.none(), _ns))
        end = draw(st.one_of(st.none(), _ns))
        if begin is not None and end is not None and begin > end:
            begin, end = end, begin
        rows.append(
            {
                "instrument": "LSSTCam",
                "id": exposure_id,
                "physical_filter": "r_57",
                "day_obs": draw(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))),
                "timespan_begin": begin,
                "timespan_end": end,
            }
        )
    return rows


_INTEGER_FIELDS = ("id", "day_obs", "timespan_begin", "timespan_end")


def _write(path: Path, kind: str, rows: list[dict[str, object]]) -> None:
    if kind == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
        path.write_text(buffer.getvalue())
    elif kind == "pandas-csv":  # pandas with nullable integer columns, as a careful user writes
        frame = pd.DataFrame(
            {
                key: pd.array([r[key] for r in rows], dtype="Int64")
                if key in _INTEGER_FIELDS
                else [r[key] for r in rows]
                for key in rows[0]
            }
        )
        frame.to_csv(path, index=False)
    elif kind == "parquet":
        schema = pa.schema(
            [(k, pa.int64() if k in _INTEGER_FIELDS else pa.string()) for k in rows[0]]
        )
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    elif kind == "json":
        path.write_text(json.dumps(rows))
    elif kind == "yaml":
        lines = ["data:", "- type: dimension", "  element: exposure", "  records:"]
        for r in rows:
            items = []
            for key, value in r.items():
                if key.startswith("timespan_"):
                    key = key.replace("timespan_", "datetime_")
                    text = "null" if value is None else f"!butler_time/tai/nsec '{value}'"
                else:
                    text = json.dumps(value)
                items.append(f"{key}: {text}")
            lines.append("  - {" + ", ".join(items) + "}")
        path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("kind", ["csv", "pandas-csv", "parquet", "json", "yaml"])
@_SETTINGS
@given(rows=_exposure_rows())
def test_exposure_integers_round_trip_exactly(
    tmp_path: Path, kind: str, rows: list[dict[str, object]]
) -> None:
    suffix = {"pandas-csv": "csv"}.get(kind, kind)
    path = tmp_path / f"exposures.{suffix}"
    _write(path, kind, rows)
    df = read_exposures(path)
    assert str(df["id"].dtype) == "int64"
    for key in _INTEGER_FIELDS:
        got = [None if v is pd.NA else int(v) for v in df[key].tolist()]
        assert got == [r[key] for r in rows], key


@st.composite
def _stats_rows(draw: st.DrawFn) -> list[tuple[int, int, int]]:
    return draw(
        st.lists(
            st.tuples(_ids, st.integers(0, limits.INT32_MAX), _ids),
            min_size=1,
            max_size=10,
            unique_by=lambda t: (t[0], t[1]),
        )
    )


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@_SETTINGS
@given(rows=_stats_rows())
def test_statistics_integers_round_trip_exactly(
    tmp_path: Path, kind: str, rows: list[tuple[int, int, int]]
) -> None:
    table = pa.table(
        {
            "exposure": pa.array([r[0] for r in rows], pa.int64()),
            "detector": pa.array([r[1] for r in rows], pa.int64()),
            "median": pa.array([1.0] * len(rows)),
            "n_pixels": pa.array([r[2] for r in rows], pa.int64()),
        }
    )
    path = tmp_path / f"stats.{kind}"
    if kind == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    df = read_stats_table(path)
    assert df["exposure"].tolist() == [r[0] for r in rows]
    assert df["detector"].tolist() == [r[1] for r in rows]
    assert df["n_pixels"].tolist() == [r[2] for r in rows]


@_SETTINGS
@given(exposure=_ids, detector=st.integers(0, limits.INT32_MAX), n_pixels=_ids)
def test_propertylist_integers_round_trip_exactly(
    tmp_path: Path, exposure: int, detector: int, n_pixels: int
) -> None:
    values = {"DETECTOR_MEDIAN": 1.0, "DETECTOR_N": n_pixels}
    by_option = tmp_path / "stats.yaml"
    write_propertylist(by_option, values)
    df = read_propertylist(by_option, exposure=exposure, detector=detector)
    assert (int(df["exposure"].iloc[0]), int(df["detector"].iloc[0])) == (exposure, detector)
    assert df["n_pixels"].tolist() == [n_pixels]
    if exposure >= 10**8:  # a file name carries an exposure id of 9 or more digits
        named = tmp_path / f"cpFlatStats_LSSTCam_r_{exposure}_det{detector}.yaml"
        write_propertylist(named, values)
        df = read_propertylist(named)
        assert (int(df["exposure"].iloc[0]), int(df["detector"].iloc[0])) == (exposure, detector)
    as_json = tmp_path / "stats.json"
    as_json.write_text(json.dumps(values))
    assert read_propertylist(as_json, exposure=exposure, detector=detector)[
        "n_pixels"
    ].tolist() == [n_pixels]


# --------------------------------------------------------------------------- beyond int64
@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (kind, value)
        for kind in ("csv", "json", "yaml", "parquet")
        for value in (2**63, -(2**63) - 1, 10**30)
        # Parquet's widest integer is uint64: only 2**63 can be written there at all.
        if kind != "parquet" or 0 <= value < 2**64
    ],
)
def test_id_beyond_int64_is_refused_with_one_line(tmp_path: Path, value: int, kind: str) -> None:
    path = tmp_path / f"e.{kind}"
    if kind == "csv":
        path.write_text(f"instrument,id,physical_filter\nT,{value},r\n")
    elif kind == "json":
        path.write_text(f'[{{"instrument": "T", "id": {value}, "physical_filter": "r"}}]')
    elif kind == "yaml":
        path.write_text(
            "data:\n- type: dimension\n  element: exposure\n  records:\n"
            f"  - {{instrument: T, id: {value}, physical_filter: r, datetime_begin: null,"
            " datetime_end: null}\n"
        )
    else:
        pq.write_table(
            pa.table(
                {
                    "instrument": ["T"],
                    "id": pa.array([value], pa.uint64()),
                    "physical_filter": ["r"],
                }
            ),
            path,
        )
    with pytest.raises(InputError) as info:
        read_exposures(path)
    message = str(info.value)
    assert (info.value.row, info.value.field) == (1, "id")
    assert "\n" not in message and message.startswith(str(path))
    assert "64 bits" in message or ">= 0" in message


@pytest.mark.parametrize("text", [str(2**63), "-1", "99999999999999999999999"])
def test_statistics_id_beyond_int64_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f"exposure,detector,median,n_pixels\n1,2,1.0,5\n{text},2,1.0,5\n")
    with pytest.raises(InputError) as info:
        read_stats_table(path)
    assert (info.value.row, info.value.field) == (2, "exposure")


def test_float_ids_from_a_blank_holding_pandas_column(tmp_path: Path) -> None:
    """pandas upcasts an int column with blanks to float64: below 2**53 exact, above refused."""
    path = tmp_path / "e.parquet"
    frame = pd.DataFrame(
        {
            "instrument": ["T", "T"],
            "id": [2025120200439.0, 7.0],
            "physical_filter": ["r", "r"],
            "day_obs": [20251202.0, float("nan")],
        }
    )
    frame.to_parquet(path)
    df = read_exposures(path)
    assert df["id"].tolist() == [2025120200439, 7]
    assert df["day_obs"].tolist() == [20251202, pd.NA]
    frame["id"] = [float(2**62), 7.0]
    frame.to_parquet(path)
    with pytest.raises(InputError, match=r"2\*\*53") as info:
        read_exposures(path)
    assert (info.value.row, info.value.field) == (1, "id")
