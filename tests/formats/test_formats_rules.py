"""One rule per value, whatever the file format (issue 13, kind 2).

Each example of the issue is a test here, and the same content written as CSV, Parquet, JSON,
butler YAML (exposures) or as a table and a PropertyList (statistics) must read the same.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibreg.domain import limits
from calibreg.errors import InputError
from calibreg.formats import (
    read_camera,
    read_exposures,
    read_propertylist,
    read_stats_table,
    tai_iso_to_tai_ns,
    utc_to_tai_ns,
    write_propertylist,
)
from calibreg.formats._common import Integer, Real, Text, Time

STATS_HEADER = "exposure,detector,amp,median,sigma,n_pixels\n"
EXP_HEADER = "instrument,id,physical_filter,exposure_time,timespan_begin,timespan_end\n"


def _one_line(err: InputError, path: Path) -> str:
    message = str(err)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


# --------------------------------------------------------------------------- integers
def test_integral_float_count_is_an_integer_in_csv_as_in_parquet(tmp_path: Path) -> None:
    csv_path = tmp_path / "s.csv"
    csv_path.write_text(STATS_HEADER + "1,2,C0,1.5,0.1,1000000.0\n")
    parquet_path = tmp_path / "s.parquet"
    pq.write_table(
        pa.table(
            {
                "exposure": [1],
                "detector": [2],
                "amp": ["C0"],
                "median": [1.5],
                "sigma": [0.1],
                "n_pixels": pa.array([1000000.0], pa.float64()),  # cpFlatMeasure's Double
            }
        ),
        parquet_path,
    )
    from_csv = read_stats_table(csv_path)
    from_parquet = read_stats_table(parquet_path)
    assert from_csv["n_pixels"].tolist() == [1000000]
    pd.testing.assert_frame_equal(from_csv, from_parquet)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_fractional_count_is_refused_in_every_format(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"s.{kind}"
    if kind == "csv":
        path.write_text(STATS_HEADER + "1,2,C0,1.5,0.1,1000000.5\n")
    else:
        pq.write_table(
            pa.table({"exposure": [1], "detector": [2], "median": [1.5], "n_pixels": [1000000.5]}),
            path,
        )
    with pytest.raises(InputError, match=r"expected an integer, got '?1000000\.5") as info:
        read_stats_table(path)
    assert (info.value.row, info.value.field) == (1, "n_pixels")
    _one_line(info.value, path)


def test_integral_float_in_propertylist_and_exposure_tables(tmp_path: Path) -> None:
    path = tmp_path / "stats_2025120200439_R22_S11.yaml"
    write_propertylist(path, {"DETECTOR_MEDIAN": 5.0, "DETECTOR_N": 1000000.0})
    assert read_propertylist(path)["n_pixels"].tolist() == [1000000]
    write_propertylist(path, {"DETECTOR_MEDIAN": 5.0, "DETECTOR_N": 1000000.5})
    with pytest.raises(InputError, match="expected an integer"):
        read_propertylist(path)
    exp = tmp_path / "e.csv"
    exp.write_text("instrument,id,physical_filter,day_obs,seq_num\nT,7.0,r,20240101.0,3.0\n")
    df = read_exposures(exp)
    assert (df["id"].iloc[0], df["day_obs"].iloc[0], df["seq_num"].iloc[0]) == (7, 20240101, 3)


def test_yaml_integers_are_decimal_as_in_csv(tmp_path: Path) -> None:
    """YAML 1.1 reads 0777 as octal 511 and 1:30 as 5400; a CSV cell reads them otherwise."""
    records = "  - {instrument: T, id: 0777, physical_filter: r, seq_num: 010, day_obs: 1:30,"
    path = tmp_path / "e.yaml"
    path.write_text(
        "data:\n- type: dimension\n  element: exposure\n  records:\n"
        + records
        + " datetime_begin: null, datetime_end: null}\n"
    )
    with pytest.raises(InputError, match="expected an integer, got '1:30'") as info:
        read_exposures(path)
    assert info.value.field == "day_obs"
    path.write_text(path.read_text().replace("day_obs: 1:30", "day_obs: 20240101"))
    df = read_exposures(path)
    assert (df["id"].iloc[0], df["seq_num"].iloc[0]) == (777, 10)


# --------------------------------------------------------------------------- text columns
@pytest.mark.parametrize("text_type", ["string_view", "large_string", "dictionary"])
def test_arrow_text_types_are_text(tmp_path: Path, text_type: str) -> None:
    def text(values: list[str | None]) -> pa.Array:
        if text_type == "dictionary":
            return pa.array(values, pa.string()).dictionary_encode()
        return pa.array(values, getattr(pa, text_type)())

    stats = tmp_path / "s.parquet"
    pq.write_table(
        pa.table(
            {
                "exposure": [1, 1],
                "detector": text(["R22_S11", "7"]),
                "amp": text(["C10", None]),
                "median": [1.0, 2.0],
                "n_pixels": [10, 20],
            }
        ),
        stats,
    )
    df = read_stats_table(stats)
    assert df["detector_name"].tolist() == ["R22_S11", None]
    assert df["detector"].tolist() == [pd.NA, 7]
    assert df["amp"].tolist() == ["C10", None]
    exposures = tmp_path / "e.parquet"
    pq.write_table(
        pa.table(
            {
                "instrument": text(["LSSTCam"]),
                "id": [5],
                "physical_filter": text(["r_57"]),
                "obs_id": text([None]),
                "timespan_begin": text(["2025-01-01T00:00:00Z"]),
            }
        ),
        exposures,
    )
    row = read_exposures(exposures).iloc[0]
    assert (row["instrument"], row["physical_filter"], row["obs_id"]) == ("LSSTCam", "r_57", None)
    assert row["timespan_begin"] == utc_to_tai_ns("2025-01-01T00:00:00Z")


# --------------------------------------------------------------------------- times
def test_iso_time_in_timespan_column(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(EXP_HEADER + "T,1,r,30,2025-12-03T07:58:30.425363958Z,2025-12-03 07:59:01\n")
    row = read_exposures(path).iloc[0]
    assert row["timespan_begin"] == tai_iso_to_tai_ns("2025-12-03 07:59:07.425363958")
    assert row["timespan_end"] == utc_to_tai_ns("2025-12-03T07:59:01Z")
    tai = read_exposures(path, time_scale="tai").iloc[0]
    assert tai["timespan_end"] == tai_iso_to_tai_ns("2025-12-03 07:59:01")


@pytest.mark.parametrize("kind", ["csv", "json", "parquet"])
def test_refused_time_shows_what_was_written(tmp_path: Path, kind: str) -> None:
    record = {"instrument": "T", "id": 1, "physical_filter": "r", "timespan_begin": "garbage"}
    path = tmp_path / f"e.{kind}"
    if kind == "csv":
        path.write_text("instrument,id,physical_filter,timespan_begin\nT,1,r,garbage\n")
    elif kind == "json":
        path.write_text(json.dumps([record]))
    else:
        pq.write_table(pa.Table.from_pylist([record]), path)
    with pytest.raises(InputError, match="got 'garbage'") as info:
        read_exposures(path)
    assert "got nan" not in str(info.value)
    assert (info.value.row, info.value.field) == (1, "timespan_begin")
    _one_line(info.value, path)


def test_float_tai_ns_is_refused_not_rounded(tmp_path: Path) -> None:
    """pandas writes a blank-holding int column as floats: 1.5726734102719948e+18 lost digits."""
    path = tmp_path / "e.csv"
    path.write_text(EXP_HEADER + "T,1,r,30,1.5726734102719948e+18,\n")
    with pytest.raises(InputError, match=r"2\*\*53.*write its digits") as info:
        read_exposures(path)
    assert info.value.field == "timespan_begin"


def test_parquet_timestamp_columns(tmp_path: Path) -> None:
    ns = 1_572_673_410_271_994_770
    path = tmp_path / "e.parquet"
    pq.write_table(
        pa.table(
            {
                "instrument": ["T"],
                "id": [1],
                "physical_filter": ["r"],
                "datetime_begin": pa.array([ns], pa.timestamp("ns", tz="UTC")),
                "datetime_end": pa.array([ns + 60 * 10**9], pa.timestamp("ns")),  # naive
            }
        ),
        path,
    )
    row = read_exposures(path).iloc[0]
    assert row["timespan_begin"] == utc_to_tai_ns("2019-11-02T05:43:30.271994770Z")
    assert row["timespan_end"] == utc_to_tai_ns("2019-11-02T05:44:30.271994770Z")
    tai = read_exposures(path, time_scale="tai").iloc[0]  # a naive reading is in time_scale
    assert tai["timespan_end"] == tai_iso_to_tai_ns("2019-11-02 05:44:30.271994770")


# --------------------------------------------------------------------------- PropertyList
LEGACY_PROPERTYLIST = """\
!<lsst.daf.base.PropertyList>
- !!python/tuple [DETECTOR_MEDIAN, Double, 10234.625, '']
- !!python/tuple [DETECTOR_SIGMA, Double, 12.5, '']
- !!python/tuple [DETECTOR_N, Int, 15000000, '']
- !!python/tuple [AMP_NAME_0, String, C10, '']
- !!python/tuple [AMP_MEDIAN_0, Double, .nan, '']
- !!python/tuple [AMP_N_0, Int, 0, '']
"""


def test_legacy_propertylist_with_python_tuples(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy_2025120200439_R22_S11.yaml"
    legacy.write_text(LEGACY_PROPERTYLIST)
    df = read_propertylist(legacy)
    assert df["amp"].tolist() == [None, "C10"]
    assert df["median"].iloc[0] == 10234.625
    assert math.isnan(df["median"].iloc[1])
    assert df["n_pixels"].tolist() == [15_000_000, 0]
    modern = tmp_path / "modern_2025120200439_R22_S11.yaml"
    write_propertylist(
        modern,
        {
            "DETECTOR_MEDIAN": 10234.625,
            "DETECTOR_SIGMA": 12.5,
            "DETECTOR_N": 15_000_000,
            "AMP_NAME_0": "C10",
            "AMP_MEDIAN_0": math.nan,
            "AMP_N_0": 0,
        },
    )
    pd.testing.assert_frame_equal(df, read_propertylist(modern))


def test_other_python_tags_stay_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil_2025120200439_R22_S11.yaml"
    path.write_text(
        "!<lsst.daf.base.PropertyList>\n- !!python/object/apply:os.system ['echo hi']\n"
    )
    with pytest.raises(InputError, match="not valid YAML"):
        read_propertylist(path)


# --------------------------------------------------------------------------- truncated files
def test_truncated_last_csv_row_is_refused(tmp_path: Path) -> None:
    stats = tmp_path / "s.csv"
    stats.write_text(STATS_HEADER + "1,2,C0,1.5,0.1,100\n1,2,C1,1.5")
    with pytest.raises(InputError, match="expected 6 cells, found 4") as info:
        read_stats_table(stats)
    assert info.value.row == 2
    _one_line(info.value, stats)
    exposures = tmp_path / "e.csv"
    exposures.write_text(EXP_HEADER + "T,1,r,30,5,6\nT,2,r")
    with pytest.raises(InputError, match="expected 6 cells, found 3") as info:
        read_exposures(exposures)
    assert info.value.row == 2
    _one_line(info.value, exposures)


BUTLER_TWO = """\
description: Butler Data Repository Export
version: 1.0.2
data:
- type: dimension
  element: exposure
  records:
  - instrument: T
    id: 1
    physical_filter: r
    obs_id: T_1
    exposure_time: 30.0
    datetime_begin: !butler_time/tai/iso '2025-12-03 07:59:07.425363958'
    datetime_end: !butler_time/tai/iso '2025-12-03 07:59:38.355000000'
  - instrument: T
    id: 2
    physical_filter: r
    obs_id: T_2
    exposure_time: 30.0
    datetime_begin: !butler_time/tai/iso '2025-12-03 08:00:33.880859613'
    datetime_end: !butler_time/tai/iso '2025-12-03 08:01:04.811000000'
"""


@pytest.mark.parametrize("cut_after", ["id: 2\n", "obs_id: T_2\n", "exposure_time: 30.0\n"])
def test_butler_export_cut_mid_record_is_refused(tmp_path: Path, cut_after: str) -> None:
    path = tmp_path / "export.yaml"
    path.write_text(BUTLER_TWO)
    assert len(read_exposures(path)) == 2
    path.write_text(BUTLER_TWO[: BUTLER_TWO.rindex(cut_after) + len(cut_after)])
    with pytest.raises(InputError, match="cut mid-record") as info:
        read_exposures(path)
    assert info.value.row == 2
    _one_line(info.value, path)


@pytest.mark.parametrize("cut_before", ["    datetime_begin", "    datetime_end"])
def test_butler_export_single_record_cut_in_timespan(tmp_path: Path, cut_before: str) -> None:
    path = tmp_path / "export.yaml"
    one = BUTLER_TWO[: BUTLER_TWO.index("  - instrument: T\n    id: 2")]
    path.write_text(one)
    assert len(read_exposures(path)) == 1
    path.write_text(one[: one.index(cut_before)])
    with pytest.raises(InputError, match="lacks its timespan") as info:
        read_exposures(path)
    assert info.value.row == 1


# --------------------------------------------------------------------------- finiteness
CAMERA = """\
format: calibreg-camera/1
instrument: Toy
detectors:
- id: 0
  name: A
  bbox_x0: 0
  bbox_y0: 0
  bbox_x1: 9
  bbox_y1: 9
  yaw: 0.0
  amplifiers:
  - {name: C0, bbox_x0: 0, bbox_y0: 0, bbox_width: 10, bbox_height: 10, gain: 1.5}
"""

OBS_LSST_CAMERA = """\
name: Toy
CCDs:
  R00_S00:
    id: 0
    detectorType: 0
    bbox: [[0, 0], [9, 9]]
    yaw: 0.0
    amplifiers:
      C00: {ixy: [0, 0], rawDataBBox: [[0, 0], [10, 10]], gain: 1.5, hdu: 1}
"""


@pytest.mark.parametrize("text", [CAMERA, OBS_LSST_CAMERA])
@pytest.mark.parametrize("value", [".inf", "-.inf", "inf", "1e999"])
def test_infinite_gain_is_refused_as_a_median_is(tmp_path: Path, text: str, value: str) -> None:
    path = tmp_path / "camera.yaml"
    path.write_text(text.replace("gain: 1.5", f"gain: {value}"))
    with pytest.raises(InputError, match="must be finite") as info:
        read_camera(path)
    assert info.value.field.endswith("gain")
    _one_line(info.value, path)
    path.write_text(text.replace("yaw: 0.0", f"yaw: {value}"))
    with pytest.raises(InputError, match="must be finite"):
        read_camera(path)


@pytest.mark.parametrize("field", ["exposure_time", "dark_time"])
@pytest.mark.parametrize("kind", ["csv", "json", "yaml"])
def test_infinite_exposure_time_is_refused(tmp_path: Path, field: str, kind: str) -> None:
    path = tmp_path / f"e.{kind}"
    if kind == "csv":
        path.write_text(f"instrument,id,physical_filter,{field}\nT,1,r,inf\n")
    elif kind == "json":
        record = f'{{"instrument": "T", "id": 1, "physical_filter": "r", "{field}": 1e999}}'
        path.write_text(f"[{record}]")
    else:
        path.write_text(BUTLER_TWO.replace("exposure_time: 30.0", f"{field}: .inf"))
    with pytest.raises(InputError, match="must be finite") as info:
        read_exposures(path)
    assert (info.value.row, info.value.field) == (1, field)
    _one_line(info.value, path)


def test_negative_exposure_time_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("instrument,id,physical_filter,exposure_time\nT,1,r,-1\n")
    with pytest.raises(InputError, match=">= 0"):
        read_exposures(path)


def test_infinite_median_refused_in_table_and_propertylist(tmp_path: Path) -> None:
    table = tmp_path / "s.csv"
    table.write_text(STATS_HEADER + "1,2,C0,inf,0.1,100\n")
    with pytest.raises(InputError, match="must be finite"):
        read_stats_table(table)
    pl = tmp_path / "s_2025120200439_R22_S11.yaml"
    write_propertylist(pl, {"DETECTOR_MEDIAN": math.inf, "DETECTOR_N": 5})
    with pytest.raises(InputError, match="must be finite"):
        read_propertylist(pl)


# --------------------------------------------------------------------------- text lengths
def test_over_length_text_is_refused_with_one_short_line(tmp_path: Path) -> None:
    long_obs_id = "X" * (limits.OBS_ID + 1)
    path = tmp_path / "e.csv"
    path.write_text(f"instrument,id,physical_filter,obs_id\nT,1,r,{long_obs_id}\n")
    with pytest.raises(InputError, match=f"{limits.OBS_ID + 1} characters") as info:
        read_exposures(path)
    assert (info.value.row, info.value.field) == (1, "obs_id")
    path.write_text(f"instrument,id,physical_filter,obs_id\nT,1,r,{'X' * limits.OBS_ID}\n")
    assert read_exposures(path)["obs_id"].iloc[0] == "X" * limits.OBS_ID
    huge = tmp_path / "s.csv"
    huge.write_text(STATS_HEADER + f"1,2,{'A' * 1_000_000},1.0,0.1,5\n")
    with pytest.raises(InputError, match="longer than the 32 allowed") as info:
        read_stats_table(huge)
    assert len(_one_line(info.value, huge)) < 400
    camera = tmp_path / "camera.yaml"
    camera.write_text(CAMERA.replace("name: A", f"name: {'D' * 65}"))
    with pytest.raises(InputError, match="longer than the 64 allowed"):
        read_camera(camera)


def test_nul_in_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    path.write_text(json.dumps([{"instrument": "T", "id": 1, "physical_filter": "r\u0000"}]))
    with pytest.raises(InputError, match="NUL"):
        read_exposures(path)


def test_int32_fields_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(f"instrument,id,physical_filter,day_obs\nT,1,r,{2**31}\n")
    with pytest.raises(InputError, match="between") as info:
        read_exposures(path)
    assert info.value.field == "day_obs"
    stats = tmp_path / "s.csv"
    stats.write_text(STATS_HEADER + f"1,{2**31},C0,1.0,0.1,5\n")
    with pytest.raises(InputError, match="between") as info:
        read_stats_table(stats)
    assert info.value.field == "detector"


# --------------------------------------------------------------------------- same content
EXPOSURE_RECORDS = [
    {
        "instrument": "LSSTCam",
        "id": 2025120200439,
        "physical_filter": "z_20",
        "obs_id": "MC_O_20251202_000439",
        "observation_type": "flat",
        "group": "903342",
        "day_obs": 20251202,
        "seq_num": 439,
        "exposure_time": 30.0,
        "timespan_begin": 1_764_748_747_425_363_958,
        "timespan_end": 1_764_748_778_355_000_000,
    },
    {
        "instrument": "LSSTCam",
        "id": 4611686018427387905,  # 2**62 + 1: not a float64
        "physical_filter": "z_20",
        "obs_id": None,
        "observation_type": None,
        "group": None,
        "day_obs": None,
        "seq_num": None,
        "exposure_time": None,
        "timespan_begin": None,
        "timespan_end": 9_223_372_036_854_775_807,
    },
]


def _write_exposures(path: Path, kind: str) -> None:
    if kind == "csv":  # pandas, with nullable integers (never via float64)
        integers = ("id", "day_obs", "seq_num", "timespan_begin", "timespan_end")
        pd.DataFrame(
            {
                key: pd.array([rec[key] for rec in EXPOSURE_RECORDS], dtype="Int64")
                if key in integers
                else [rec[key] for rec in EXPOSURE_RECORDS]
                for key in EXPOSURE_RECORDS[0]
            }
        ).to_csv(path, index=False)
    elif kind == "csv-hand":
        lines = [",".join(EXPOSURE_RECORDS[0])]
        for rec in EXPOSURE_RECORDS:
            lines.append(",".join("" if v is None else str(v) for v in rec.values()))
        path.write_text("\n".join(lines) + "\n")
    elif kind == "parquet":
        pq.write_table(pa.Table.from_pylist(EXPOSURE_RECORDS), path)
    elif kind == "json":
        path.write_text(json.dumps({"exposures": EXPOSURE_RECORDS}))
    elif kind == "yaml":
        lines = ["data:", "- type: dimension", "  element: exposure", "  records:"]
        for rec in EXPOSURE_RECORDS:
            items = []
            for key, value in rec.items():
                if key.startswith("timespan_"):
                    key = key.replace("timespan_", "datetime_")
                    tag = "!butler_time/tai/nsec " if value is not None else ""
                    items.append(f"{key}: {tag}{'null' if value is None else value}")
                else:
                    items.append(f"{key}: {json.dumps(value)}")
            lines.append("  - {" + ", ".join(items) + "}")
        path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("kind", ["csv", "csv-hand", "parquet", "json", "yaml"])
def test_same_exposures_read_the_same_from_every_format(tmp_path: Path, kind: str) -> None:
    reference_path = tmp_path / "reference.json"
    _write_exposures(reference_path, "json")
    reference = read_exposures(reference_path)
    suffix = "csv" if kind.startswith("csv") else kind
    path = tmp_path / f"exposures.{suffix}"
    _write_exposures(path, kind)
    df = read_exposures(path)
    pd.testing.assert_frame_equal(df, reference)
    assert df["id"].tolist() == [rec["id"] for rec in EXPOSURE_RECORDS]
    assert df["timespan_end"].tolist() == [rec["timespan_end"] for rec in EXPOSURE_RECORDS]


def test_same_statistics_read_the_same_from_table_and_propertylist(tmp_path: Path) -> None:
    values = {
        "DETECTOR_MEDIAN": 10234.625,
        "DETECTOR_SIGMA": 12.5,
        "DETECTOR_N": 15_000_000,
        "AMP_NAME_0": "C10",
        "AMP_MEDIAN_0": math.nan,
        "AMP_SIGMA_0": math.nan,
        "AMP_N_0": 0,
    }
    pl = tmp_path / "flat_2025120200439_det094.yaml"
    write_propertylist(pl, values)
    as_json = tmp_path / "flat_2025120200439_det094.json"
    as_json.write_text(json.dumps(values))
    table = tmp_path / "s.csv"
    table.write_text(
        STATS_HEADER + "2025120200439,94,,10234.625,12.5,15000000\n2025120200439,94,C10,,,0\n"
    )
    parquet = tmp_path / "s.parquet"
    read_stats_table(table).drop(columns=["detector_name", "source_row"]).to_parquet(parquet)
    columns = ["exposure", "detector", "amp", "median", "sigma", "n_pixels"]
    expected = read_stats_table(table)[columns]
    for path in (pl, as_json):
        got = read_propertylist(path)[columns].astype({"exposure": "int64"})
        pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_frame_equal(read_stats_table(parquet)[columns], expected)


# --------------------------------------------------------------------------- column == scalar
_cells = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "",
            " ",
            "nan",
            "NA",
            "null",
            "+3",
            "-0",
            " 7 ",
            "1e3",
            "1.5",
            "12.0",
            ".5",
            "5.",
            "inf",
            "-Infinity",
            "1e999",
            "0x10",
            "1_000",
            "٣",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "4.611686018427388e+18",
            "9007199254740992.0",
            "\x00",
            "R22_S11",
            "C10",
        ]
    ),
    st.integers(-(2**65), 2**65).map(str),
    st.floats().map(repr),
    st.text(max_size=6),
)


def _outcome(func: object) -> tuple[str, object]:
    try:
        return "ok", func()  # type: ignore[operator]
    except InputError as err:
        return "refused", str(err)


def _scalar_outcome(rule: object, cells: list[str | None], **kw: object) -> tuple[str, object]:
    def run() -> list[object]:
        return [rule.parse(c, "f", row=i, field="x", **kw) for i, c in enumerate(cells, 1)]  # type: ignore[attr-defined]

    return _outcome(run)


@settings(max_examples=300, deadline=None)
@given(st.lists(_cells, max_size=6), st.sampled_from(["string", "large_string", "string_view"]))
def test_column_rules_accept_exactly_what_scalar_rules_accept(
    cells: list[str | None], text_type: str
) -> None:
    arr = pa.array(cells, getattr(pa, text_type)())
    for rule in (Integer(), Integer(0, limits.INT32_MAX, required=False)):
        kind, got = _outcome(lambda r=rule: r.column(arr, "f", field="x"))
        want_kind, want = _scalar_outcome(rule, cells)
        assert kind == want_kind, (cells, got, want)
        if kind == "ok":
            values, missing = got
            assert [None if m else int(v) for v, m in zip(values, missing, strict=True)] == want
        else:
            assert got == want
    for rule in (Real(), Real(minimum=0.0)):
        kind, got = _outcome(lambda r=rule: r.column(arr, "f", field="x"))
        want_kind, want = _scalar_outcome(rule, cells)
        assert kind == want_kind, (cells, got, want)
        if kind == "ok":
            assert np.array_equal(got, np.array(want, dtype=np.float64), equal_nan=True)
        else:
            assert got == want
    rule = Text(4)
    kind, got = _outcome(lambda: rule.column(arr, "f", field="x"))
    want_kind, want = _scalar_outcome(rule, cells)
    assert kind == want_kind, (cells, got, want)
    assert (list(got) if kind == "ok" else got) == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(), st.integers(-(2**63), 2**63 - 1)), max_size=6))
def test_numeric_columns_follow_the_scalar_rule(values: list[float | int | None]) -> None:
    for arr in (
        pa.array([None if v is None else float(v) for v in values], pa.float64()),
        pa.array([None if v is None else int(v) for v in values if not isinstance(v, float)]),
    ):
        cells = arr.to_pylist()
        rule = Integer(required=False)
        kind, got = _outcome(lambda a=arr, r=rule: r.column(a, "f", field="x"))
        want_kind, want = _scalar_outcome(rule, cells)
        assert kind == want_kind
        if kind == "ok":
            values_, missing = got
            assert [None if m else int(v) for v, m in zip(values_, missing, strict=True)] == want
        else:
            assert got == want


def test_time_rule_forms() -> None:
    rule = Time()
    ns = 1_764_748_747_425_363_958
    assert rule.parse(ns, "f", row=1, field="t") == ns
    assert rule.parse(str(ns), "f", row=1, field="t") == ns
    assert rule.parse(" ", "f", row=1, field="t") is None
    tai = "2025-12-03 07:59:07.425363958"
    assert rule.parse(tai, "f", row=1, field="t", time_scale="tai") == ns
    with pytest.raises(InputError, match="got True"):
        rule.parse(True, "f", row=1, field="t")
    with pytest.raises(InputError, match="64 bits"):
        rule.parse(str(2**63), "f", row=1, field="t")
    with pytest.raises(InputError, match=r"before 1972|ISO-8601"):
        rule.parse("1960-01-01T00:00:00Z", "f", row=1, field="t")


def test_butler_timespan_mapping(tmp_path: Path) -> None:
    path = tmp_path / "export.yaml"
    path.write_text(
        "data:\n- type: dimension\n  element: exposure\n  records:\n"
        "  - {instrument: T, id: 1, physical_filter: r, timespan: {begin: !butler_time/tai/iso "
        "'2025-12-03 07:59:07.425363958', end: !butler_time/tai/nsec '1764748778355000000'}}\n"
    )
    row = read_exposures(path).iloc[0]
    assert row["timespan_begin"] == 1_764_748_747_425_363_958
    assert row["timespan_end"] == 1_764_748_778_355_000_000
