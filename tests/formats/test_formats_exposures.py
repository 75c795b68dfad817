"""Exposure readers: real butler exports, the obs_lsst registry extract, tables and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calibreg.errors import InputError
from calibreg.formats import (
    EXPOSURE_COLUMNS,
    read_exposures,
    tai_iso_to_tai_ns,
    utc_to_tai_ns,
)

DATA = Path(__file__).resolve().parents[1] / "data"
BUTLER = DATA / "butler"


def _check_schema(df: pd.DataFrame) -> None:
    assert list(df.columns) == list(EXPOSURE_COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == EXPOSURE_COLUMNS


def test_lsstcam_butler_export() -> None:
    df = read_exposures(BUTLER / "lsstcam-subset.yaml")
    _check_schema(df)
    assert df["id"].tolist() == [2025120200439, 2025120200440]
    first = df.iloc[0]
    assert first["instrument"] == "LSSTCam"
    assert first["physical_filter"] == "z_20"
    assert first["obs_id"] == "MC_O_20251202_000439"
    assert first["group"] == "2025-12-03T07:58:10.858"
    assert first["observation_reason"] == "singles_z"
    assert first["science_program"] == "BLOCK-407"
    assert first["target_name"] == "lowdust"
    assert (first["day_obs"], first["seq_num"]) == (20251202, 439)
    assert (first["exposure_time"], first["dark_time"]) == (30.0, 30.9296)
    assert first["timespan_begin"] == tai_iso_to_tai_ns("2025-12-03 07:59:07.425363958")
    assert first["timespan_begin"] == utc_to_tai_ns("2025-12-03T07:58:30.425363958Z")
    assert first["timespan_end"] == tai_iso_to_tai_ns("2025-12-03 07:59:38.355000000")


def test_hsc_butler_export_with_regions_and_binary() -> None:
    df = read_exposures(BUTLER / "hsc-rc2-subset.yaml")
    _check_schema(df)
    assert len(df) == 1  # the file's only exposure record; the rest are visits/regions
    row = df.iloc[0]
    assert (row["instrument"], row["id"], row["physical_filter"]) == ("HSC", 903342, "HSC-R")
    assert row["group"] == "903342"
    assert row["timespan_begin"] == tai_iso_to_tai_ns("2013-06-17 13:34:45.775")


def test_obs_lsst_registry_csv() -> None:
    df = read_exposures(BUTLER / "obs_lsst_test_registry_exposures.csv")
    _check_schema(df)
    assert len(df) == 15
    # Exposure ids repeat across instruments (LSSTComCamSim/LSSTCamSim, imSim/PhoSim).
    assert df["id"].duplicated().sum() == 2
    assert not df[["instrument", "id"]].duplicated().any()
    bot = df.iloc[0]
    assert bot["timespan_begin"] == 1572673410271994770  # 19 digits, exact
    assert bot["group"] == "3019110102212"  # from group_name: 'group' is empty here
    sim = df[df["instrument"] == "LSSTCamSim"].iloc[0]
    assert sim["group"] == "7024032100720"
    # The data README says "7 are flats"; the file has 6 'flat' and 2 'spot' (spot_flat) rows.
    assert df["observation_type"].value_counts()[["flat", "spot"]].tolist() == [6, 2]
    assert df["target_name"].eq("UNKNOWN").all()


def test_datetime_columns_utc_and_tai(tmp_path: Path) -> None:
    path = tmp_path / "exp.csv"
    path.write_text(
        "instrument,id,physical_filter,datetime_begin,datetime_end,extra\n"
        "Toy,1,r,2016-12-31T23:59:60.25,2017-01-01T00:00:10Z,ignored\n"
    )
    utc = read_exposures(path)
    assert utc["timespan_begin"].iloc[0] == tai_iso_to_tai_ns("2017-01-01 00:00:36.25")
    assert utc["timespan_end"].iloc[0] == tai_iso_to_tai_ns("2017-01-01 00:00:47")
    path.write_text(
        "instrument,id,physical_filter,datetime_begin,datetime_end\n"
        "Toy,1,r,2017-01-01 00:00:36.25,2017-01-01 00:00:47\n"
    )
    tai = read_exposures(path, time_scale="tai")
    assert tai["timespan_begin"].tolist() == utc["timespan_begin"].tolist()


def test_json_and_parquet_round_trip(tmp_path: Path) -> None:
    records = [
        {
            "instrument": "Toy",
            "id": 5,
            "physical_filter": "g",
            "day_obs": 20240101,
            "timespan_begin": 1_704_067_237_000_000_001,
            "timespan_end": 1_704_067_267_000_000_001,
            "exposure_time": 30.0,
        },
        {"instrument": "Toy", "id": 6, "physical_filter": "g", "target_name": None},
    ]
    (tmp_path / "a.json").write_text(json.dumps({"exposures": records}))
    from_json = read_exposures(tmp_path / "a.json")
    _check_schema(from_json)
    assert from_json["timespan_begin"].iloc[0] == 1_704_067_237_000_000_001
    assert from_json["timespan_begin"].isna().iloc[1]
    assert from_json["target_name"].iloc[1] is None
    assert np.isnan(from_json["exposure_time"].iloc[1])
    from_json.to_parquet(tmp_path / "a.parquet")
    from_parquet = read_exposures(tmp_path / "a.parquet")
    pd.testing.assert_frame_equal(from_parquet, from_json)


HEADER = "instrument,id,physical_filter,day_obs,exposure_time,timespan_begin,timespan_end\n"


@pytest.mark.parametrize(
    ("rows", "row", "field", "needle"),
    [
        ("Toy,1,r,1,1.0,5,6\nToy,1,r,1,1.0,5,6\n", 2, "id", "duplicate exposure id 1"),
        ("Toy,x,r,1,1.0,5,6\n", 1, "id", "expected an integer"),
        ("Toy,1,,1,1.0,5,6\n", 1, "physical_filter", "missing"),
        ("Toy,1,r,1,fast,5,6\n", 1, "exposure_time", "expected a number"),
        ("Toy,1,r,1.5,1.0,5,6\n", 1, "day_obs", "expected an integer"),
        ("Toy,1,r,1,1.0,7,6\n", 1, "timespan_end", "ends before it begins"),
        ("Toy,1,r,1,1.0,5,6\nToy,-2,r,1,1.0,5,6\n", 2, "id", ">= 0"),
    ],
)
def test_csv_errors(tmp_path: Path, rows: str, row: int, field: str, needle: str) -> None:
    path = tmp_path / "exp.csv"
    path.write_text(HEADER + rows)
    with pytest.raises(InputError, match=needle) as info:
        read_exposures(path)
    assert (info.value.row, info.value.field) == (row, field)
    assert str(info.value).startswith(f"{path}: row {row}: field {field!r}: ")


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("a.csv", "id,physical_filter\n1,r\n", "required column is missing"),
        ("a.json", "{not json", "not valid JSON"),
        ("a.json", '{"x": 1}', "expected a JSON list"),
        ("a.yaml", "data: [unclosed", "not valid YAML"),
        ("a.yaml", "- 1\n", "not a butler export"),
        ("a.parquet", "not parquet", "not a readable Parquet"),
        ("a.txt", "whatever", "unknown exposure file type"),
        ("a.csv", "", "empty file"),
    ],
)
def test_file_errors(tmp_path: Path, name: str, content: str, needle: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=needle):
        read_exposures(path)


def test_bad_butler_time_tag(tmp_path: Path) -> None:
    path = tmp_path / "export.yaml"
    path.write_text(
        "data:\n- type: dimension\n  element: exposure\n  records:\n"
        "  - {instrument: T, id: 1, physical_filter: r,"
        " datetime_begin: !butler_time/tai/iso 'yesterday'}\n"
    )
    with pytest.raises(InputError, match="butler_time"):
        read_exposures(path)


def test_unknown_time_scale(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="time scale"):
        read_exposures(tmp_path / "x.csv", time_scale="gps")
