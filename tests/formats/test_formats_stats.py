"""Statistics readers: long tables (fast path, errors, property tests) and PropertyList files."""

from __future__ import annotations

import contextlib
import csv
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calibreg.errors import InputError
from calibreg.formats import (
    STATS_COLUMNS,
    parse_stats_filename,
    read_propertylist,
    read_stats,
    read_stats_table,
    write_propertylist,
)

DATA = Path(__file__).resolve().parents[1] / "data"
DECAM_HEADER = DATA / "metadata" / "fitsheader-decam.yaml"
HEADER = "exposure,detector,amp,median,sigma,n_pixels\n"


def _check_schema(df: pd.DataFrame) -> None:
    assert list(df.columns) == list(STATS_COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == STATS_COLUMNS


def _write(tmp_path: Path, text: str, name: str = "stats.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- tables
def test_small_table_with_ids_names_nan(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        HEADER
        + "100,5,,1000.5,2.5,4000000\n"
        + "100,5,C10,nan,NaN,0\n"
        + "100,R22_S11,C10,,,0\n"
        + "101, 5 ,C10, 12.5 ,0,7\n",
    )
    df = read_stats_table(path)
    _check_schema(df)
    assert df["detector"].tolist()[:2] == [5, 5]
    assert df["detector"].isna().tolist()[2]
    assert df["detector_name"].tolist() == [None, None, "R22_S11", None]
    assert df["amp"].tolist() == [None, "C10", "C10", "C10"]
    assert df["median"].isna().tolist() == [False, True, True, False]
    assert df["sigma"].isna().tolist() == [False, True, True, False]
    assert df["source_row"].tolist() == [1, 2, 3, 4]
    assert read_stats(path).equals(df)


def test_optional_columns_and_extra_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "note,exposure,detector,median,n_pixels\nx,1,2,3.5,4\n")
    df = read_stats_table(path)
    assert df["amp"].tolist() == [None]
    assert math.isnan(df["sigma"].iloc[0])


@pytest.mark.parametrize(
    ("rows", "row", "field", "needle"),
    [
        ("1,2,C0,abc,1,5\n", 1, "median", "expected a number, got 'abc'"),
        ("1,2,C0,1.0,1,5\n1,2,C1,1.0,1,-5\n", 2, "n_pixels", "must be >= 0"),
        ("1,2,C0,1.0,1,5\n1,2,C1,1.0,1,\n", 2, "n_pixels", "missing"),
        ("1,2,C0,1.0,1,5.5\n", 1, "n_pixels", "expected an integer"),
        (",2,C0,1.0,1,5\n", 1, "exposure", "missing"),
        ("1,2,C0,inf,1,5\n", 1, "median", "finite"),
        ("1,2,C0,1.0,-1,5\n", 1, "sigma", ">= 0"),
        ("1,,C0,1.0,1,5\n", 1, "detector", "missing"),
        ("1,-3,C0,1.0,1,5\n", 1, "detector", "must be >= 0"),
        ("1,2,C0,1.0,1,99999999999999999999\n", 1, "n_pixels", "64 bits"),
    ],
)
def test_table_value_errors(tmp_path: Path, rows: str, row: int, field: str, needle: str) -> None:
    path = _write(tmp_path, HEADER + rows)
    with pytest.raises(InputError, match=needle) as info:
        read_stats_table(path)
    assert (info.value.row, info.value.field) == (row, field)
    assert str(info.value).startswith(f"{path}: row {row}: field {field!r}: ")


def test_duplicate_names_both_rows(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "1,2,C0,1,1,5\n1,2,C1,1,1,5\n1,3,,1,1,5\n1,2,C0,2,1,5\n")
    with pytest.raises(InputError, match=r"duplicate .*exposure 1, detector 2, amp C0.*row 1") as e:
        read_stats_table(path)
    assert e.value.row == 4
    path = _write(tmp_path, HEADER + "1,R22_S11,,1,1,5\n1,R22_S11,,1,1,5\n")
    with pytest.raises(InputError, match="detector level"):
        read_stats_table(path)


@pytest.mark.parametrize(
    ("text", "needle", "row", "field"),
    [
        ("exposure,detector,amp,median\n1,2,C0,1.0\n", "required column", None, "n_pixels"),
        ("exposure,detector,median,median,n_pixels\n1,2,1,1,1\n", "twice", None, "median"),
        (HEADER + "1,2,C0,1.0,1,5\n1,2,C1,1.0\n", "expected 6 cells, found 4", 2, None),
        ("", "empty file", None, None),
    ],
)
def test_table_structure_errors(
    tmp_path: Path, text: str, needle: str, row: int | None, field: str | None
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError, match=needle) as info:
        read_stats_table(path)
    assert (info.value.row, info.value.field) == (row, field)


def test_not_utf8_and_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "stats.csv"
    path.write_bytes(HEADER.encode() + b"1,2,\xff\xfe,1,1,5\n")
    with pytest.raises(InputError):
        read_stats_table(path)
    with pytest.raises(InputError, match="Parquet"):
        read_stats_table(_write(tmp_path, "nope", "x.parquet"))


def test_parquet_typed_columns(tmp_path: Path) -> None:
    table = pa.table(
        {
            "exposure": pa.array([1, 2], pa.int64()),
            "detector": pa.array([3, 4], pa.int32()),
            "amp": pa.array(["C0", None]),
            "median": pa.array([1.5, None], pa.float64()),
            "sigma": pa.array([0.5, 0.25], pa.float32()),
            "n_pixels": pa.array([10, 0], pa.int64()),
        }
    )
    import pyarrow.parquet as pq

    pq.write_table(table, tmp_path / "s.parquet")
    df = read_stats_table(tmp_path / "s.parquet")
    _check_schema(df)
    assert df["amp"].tolist() == ["C0", None]
    assert np.isnan(df["median"].iloc[1])
    bad = table.set_column(5, "n_pixels", pa.array([10, None], pa.int64()))
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="missing") as info:
        read_stats_table(tmp_path / "bad.parquet")
    assert (info.value.row, info.value.field) == (2, "n_pixels")


def test_600k_rows_fast(tmp_path: Path) -> None:
    n_exp, n_det, n_amp = 200, 189, 16
    n = n_exp * n_det * n_amp
    rng = np.random.default_rng(3)
    median = rng.normal(1e4, 50, n)
    median[::997] = np.nan
    table = pa.table(
        {
            "exposure": np.repeat(np.arange(n_exp, dtype=np.int64) + 2025120200000, n_det * n_amp),
            "detector": np.tile(np.repeat(np.arange(n_det, dtype=np.int64), n_amp), n_exp),
            "amp": np.tile(np.array([f"C{i:02d}" for i in range(n_amp)]), n_exp * n_det),
            "median": median,
            "sigma": rng.random(n),
            "n_pixels": rng.integers(0, 10**6, n),
        }
    )
    path = tmp_path / "big.csv"
    pacsv.write_csv(table, path)
    # Speed is measured in benchmarks/bench_ingest.py, not asserted here.
    df = read_stats_table(path)
    assert len(df) == n == 604_800
    assert np.array_equal(df["median"].to_numpy(), median, equal_nan=True)


# --------------------------------------------------------------------------- property tests
_cell = st.one_of(
    st.just(""),
    st.sampled_from(["nan", "NaN", "-1", "0", "1e400", "inf", "C10", "R22_S11", " 7 ", "+3"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.lists(_cell, min_size=0, max_size=8), max_size=6))
def test_random_rows_raise_only_input_error(tmp_path: Path, rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["exposure", "detector", "amp", "median", "sigma", "n_pixels"])
    writer.writerows(rows)
    path = tmp_path / "random.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8", errors="surrogatepass")
    try:
        df = read_stats_table(path)
    except InputError as err:
        message = str(err)
    else:
        _check_schema(df)
        assert (df["n_pixels"] >= 0).all()
        assert np.isfinite(df["median"].dropna()).all()
        return
    assert message.startswith(str(path))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_input_error(tmp_path: Path, blob: bytes) -> None:
    for name in ("random.csv", "random.parquet", "random.yaml", "random.json"):
        path = tmp_path / name
        path.write_bytes(blob)
        with contextlib.suppress(InputError):
            read_stats(path, exposure=1, detector=2) if name[-4:] in ("yaml", "json") else (
                read_stats(path)
            )


_finite_or_nan = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just(math.nan))


@st.composite
def _valid_tables(draw: st.DrawFn) -> pd.DataFrame:
    keys = draw(
        st.lists(
            st.tuples(
                st.integers(0, 2**63 - 1),
                st.integers(0, 2**31 - 1),  # detector ids are INTEGER (limits.INT32_MAX)
                st.one_of(st.none(), st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,5}", fullmatch=True)),
            ),
            min_size=1,
            max_size=40,
            unique=True,
        )
    )
    n = len(keys)
    median = draw(st.lists(_finite_or_nan, min_size=n, max_size=n))
    sigma = draw(
        st.lists(
            st.one_of(st.floats(min_value=0, allow_infinity=False), st.just(math.nan)),
            min_size=n,
            max_size=n,
        )
    )
    n_pixels = draw(st.lists(st.integers(0, 2**63 - 1), min_size=n, max_size=n))
    return pd.DataFrame(
        {
            "exposure": np.array([k[0] for k in keys], dtype=np.int64),
            "detector": np.array([k[1] for k in keys], dtype=np.int64),
            "amp": pd.Series([k[2] for k in keys], dtype=object),
            "median": np.array(median, dtype=np.float64),
            "sigma": np.abs(np.array(sigma, dtype=np.float64)),
            "n_pixels": np.array(n_pixels, dtype=np.int64),
        }
    )


def _bit_equal(a: np.ndarray, b: np.ndarray) -> bool:
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    return bool(
        np.array_equal(nan_a, nan_b)
        and np.array_equal(a[~nan_a].view(np.int64), b[~nan_b].view(np.int64))
    )


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_valid_tables(), st.sampled_from(["csv", "parquet"]))
def test_valid_tables_round_trip_exactly(tmp_path: Path, table: pd.DataFrame, kind: str) -> None:
    path = tmp_path / f"table.{kind}"
    if kind == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    df = read_stats_table(path)
    _check_schema(df)
    assert df["exposure"].tolist() == table["exposure"].tolist()
    assert df["detector"].tolist() == table["detector"].tolist()
    assert df["detector_name"].isna().all()
    assert df["amp"].tolist() == table["amp"].tolist()
    assert _bit_equal(df["median"].to_numpy(), table["median"].to_numpy())
    assert _bit_equal(df["sigma"].to_numpy(), table["sigma"].to_numpy())
    assert df["n_pixels"].tolist() == table["n_pixels"].tolist()
    assert df["source_row"].tolist() == list(range(1, len(table) + 1))


# --------------------------------------------------------------------------- PropertyList
def _cp_flat_measure_values(amp_names: list[str], dead: int | None = None) -> dict[str, object]:
    values: dict[str, object] = {
        "DETECTOR_MEDIAN": 10234.625,
        "DETECTOR_SIGMA": 12.5,
        "DETECTOR_N": 15_000_000,
    }
    for i, name in enumerate(amp_names):
        values[f"AMP_NAME_{i}"] = name
        values[f"AMP_MEDIAN_{i}"] = math.nan if i == dead else 10_000.0 + i / 3
        values[f"AMP_SIGMA_{i}"] = math.nan if i == dead else 11.0
        values[f"AMP_N_{i}"] = 0 if i == dead else 1_018_000
    return values


def test_propertylist_round_trip_and_file_name(tmp_path: Path) -> None:
    amps = [f"C1{i}" for i in range(8)] + [f"C0{i}" for i in range(7, -1, -1)]
    path = tmp_path / "cpFlatStatistics_LSSTCam_z_20_2025120200439_R22_S11_u_me_flat_run.yaml"
    write_propertylist(path, _cp_flat_measure_values(amps, dead=3))
    text = path.read_text()
    assert text.startswith(
        "!<lsst.daf.base.PropertyList>\n- [DETECTOR_MEDIAN, Double, 10234.625, '']"
    )
    assert "- [AMP_MEDIAN_3, Double, .nan, '']" in text
    df = read_propertylist(path)
    assert list(df.columns) == [*STATS_COLUMNS, "exposure_obs_id"]
    assert len(df) == 17
    assert df["exposure"].eq(2025120200439).all()
    assert df["exposure_obs_id"].isna().all()
    assert df["detector_name"].eq("R22_S11").all()
    assert df["detector"].isna().all()
    assert df["amp"].tolist() == [None, *amps]
    assert np.isnan(df["median"].iloc[4])
    assert df["n_pixels"].iloc[4] == 0
    assert df["median"].iloc[2] == 10_000.0 + 1 / 3  # bit-exact through YAML
    assert read_stats(path).equals(df)
    by_option = read_stats(path, exposure="MC_O_20251202_000439", detector=94)
    assert by_option["exposure"].isna().all()
    assert by_option["exposure_obs_id"].eq("MC_O_20251202_000439").all()
    assert by_option["detector"].eq(94).all()
    assert by_option["detector_name"].isna().all()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "flatStats_LSSTCam_r_57_MC_C_20191101_002212_R22_S11_u_someone_run.yaml",
            {"exposure_obs_id": "MC_C_20191101_002212", "detector_name": "R22_S11"},
        ),
        (
            "processCcdMetadata_00204595-i-R11-S11-det040.yaml",
            {"detector": 40, "detector_name": "R11_S11"},
        ),
        (
            "x_LSSTCam_i_2025120200439_R00_SG0_run.json",
            {"exposure": 2025120200439, "detector_name": "R00_SG0"},
        ),
        (
            "x_LATISS_empty_2021052500080_RXX_S00_run.yaml",
            {"exposure": 2021052500080, "detector_name": "RXX_S00"},
        ),
    ],
)
def test_parse_file_names(name: str, expected: dict[str, object]) -> None:
    parsed = parse_stats_filename(name)
    full = {"exposure": None, "exposure_obs_id": None, "detector": None, "detector_name": None}
    assert parsed == {**full, **expected}


def test_propertyset_and_plain_mapping_forms(tmp_path: Path) -> None:
    pset = tmp_path / "stats_123456789_det007.yaml"
    pset.write_text(
        "!<lsst.daf.base.PropertySet>\n- [DETECTOR_MEDIAN, Double, .nan]\n- [DETECTOR_N, Int, 0]\n"
    )
    df = read_propertylist(pset)
    assert df["exposure"].tolist() == [123456789]
    assert df["detector"].tolist() == [7]
    assert np.isnan(df["median"].iloc[0])
    assert np.isnan(df["sigma"].iloc[0])
    plain = tmp_path / "stats_123456789_det007.json"
    plain.write_text('{"AMP_NAME_0": "A", "AMP_MEDIAN_0": NaN, "AMP_SIGMA_0": 1, "AMP_N_0": 5}')
    df = read_stats(plain)
    assert df["amp"].tolist() == ["A"]
    assert np.isnan(df["median"].iloc[0])


@pytest.mark.parametrize(
    ("edit", "field", "needle"),
    [
        ({"AMP_N_1": -4}, "AMP_N_1", ">= 0"),
        ({"AMP_MEDIAN_0": "bright"}, "AMP_MEDIAN_0", "expected a number"),
        ({"AMP_NAME_1": "C10"}, "AMP_NAME_1", "also named"),
        ({"AMP_NAME_5": "C99"}, "AMP_NAME_2", "without gaps"),
        ({"DETECTOR_N": None}, "DETECTOR_N", "missing"),
        ({"AMP_SIGMA_0": math.inf}, "AMP_SIGMA_0", "finite"),
    ],
)
def test_propertylist_errors(
    tmp_path: Path, edit: dict[str, object], field: str, needle: str
) -> None:
    values = _cp_flat_measure_values(["C10", "C11"])
    for key, value in edit.items():
        if value is None:
            del values[key]
        else:
            values[key] = value
    path = tmp_path / "s_123456789_R22_S11.yaml"
    write_propertylist(path, values)
    with pytest.raises(InputError, match=needle) as info:
        read_propertylist(path)
    assert info.value.field == field
    assert str(info.value).startswith(f"{path}: field {field!r}: ")


def test_propertylist_duplicate_key_and_missing_identity(tmp_path: Path) -> None:
    path = tmp_path / "s_123456789_R22_S11.yaml"
    path.write_text(
        "!<lsst.daf.base.PropertyList>\n"
        "- [DETECTOR_MEDIAN, Double, 1.0, '']\n- [DETECTOR_MEDIAN, Double, 2.0, '']\n"
    )
    with pytest.raises(InputError, match="duplicate key") as info:
        read_propertylist(path)
    assert info.value.field == "DETECTOR_MEDIAN"
    anonymous = tmp_path / "stats.yaml"
    write_propertylist(anonymous, _cp_flat_measure_values(["C10"]))
    with pytest.raises(InputError, match="pass exposure="):
        read_propertylist(anonymous)
    with pytest.raises(InputError, match="pass detector="):
        read_propertylist(anonymous, exposure=5)
    assert len(read_propertylist(anonymous, exposure=5, detector="R01_S00")) == 2


def test_real_propertylist_without_statistics_keys() -> None:
    """The real on-disk PropertyList form parses; it just lacks cpFlatMeasure's keys."""
    with pytest.raises(InputError, match="DETECTOR_MEDIAN") as info:
        read_propertylist(DECAM_HEADER, exposure=229388, detector=1)
    assert str(info.value).startswith(str(DECAM_HEADER))


def test_read_stats_rejects_options_for_tables(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "1,2,C0,1,1,5\n")
    with pytest.raises(InputError, match="PropertyList files"):
        read_stats(path, exposure=3)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([2026011500100, 2026011500101, 7, -3]),
            st.integers(-1, 3),
            st.integers(-1, 2),
            st.integers(-1, 2),
        ),
        max_size=25,
    )
)
def test_the_packed_duplicate_check_agrees_with_tuples(rows) -> None:
    """The sort of packed keys finds a repeated row exactly when the rows as tuples do."""
    from calibreg.formats.stats import _any_repeated

    columns = [np.array([r[i] for r in rows], dtype=np.int64) for i in range(4)]
    if not rows:
        columns = [np.zeros(0, dtype=np.int64)] * 4
    assert _any_repeated(*columns) == (len(set(rows)) < len(rows))


def test_a_duplicate_in_a_large_block_names_both_rows(tmp_path: Path) -> None:
    """Among 50,000 distinct rows one repeat is found and named (the packed fast path)."""
    n = 50_000
    rows = [(1000 + i // 16, i % 16) for i in range(n)]
    rows.append(rows[12_345])
    path = tmp_path / "stats.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["exposure", "detector", "amp", "median", "n_pixels"])
        for e, d in rows:
            w.writerow([e, d, "C10", 1.0, 100])
    with pytest.raises(InputError, match=r"duplicate .*also row 12346") as info:
        read_stats(path)
    assert info.value.row == n + 1
