"""UTC ↔ TAI nanoseconds: butler's own numbers, the 2016/2017 leap second, round trips."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibreg.formats.timescale import (
    tai_iso_to_tai_ns,
    tai_ns_to_utc,
    tai_ns_to_utc_iso,
    utc_to_tai_ns,
)

# pyerfa warns ("dubious year") past its table's horizon; far-future dates are still valid here.
pytestmark = pytest.mark.filterwarnings("ignore:ERFA function:erfa.ErfaWarning")

# 1972-01-01 TAI .. 2200-01-01 TAI, in ns.
MIN_NS = 63_072_010 * 10**9
MAX_NS = 7_258_118_400 * 10**9


def test_butler_tai_reading_is_37_seconds_ahead_of_utc() -> None:
    ns = tai_iso_to_tai_ns("2025-12-03 07:59:07.425363958")
    assert ns == 1_764_748_747_425_363_958
    assert tai_ns_to_utc_iso(ns) == "2025-12-03T07:58:30.425363958Z"
    assert utc_to_tai_ns("2025-12-03T07:58:30.425363958Z") == ns
    assert utc_to_tai_ns("2025-12-03 07:58:30.425363958") == ns  # naive string = UTC
    assert utc_to_tai_ns("2025-12-03T08:58:30.425363958+01:00") == ns


def test_leap_second_2016_2017() -> None:
    before = utc_to_tai_ns("2016-12-31T23:59:59")
    leap = utc_to_tai_ns("2016-12-31T23:59:60")
    after = utc_to_tai_ns("2017-01-01T00:00:00")
    assert leap - before == 10**9
    assert after - leap == 10**9  # the UTC day 2016-12-31 lasted 86401 s
    assert after == tai_iso_to_tai_ns("2017-01-01 00:00:37")
    assert before == tai_iso_to_tai_ns("2017-01-01 00:00:35")  # TAI-UTC was 36 s
    assert tai_ns_to_utc_iso(leap + 500_000_000) == "2016-12-31T23:59:60.500000000Z"
    assert tai_ns_to_utc(leap + 500_000_000) == dt.datetime(
        2016, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC
    )
    assert tai_ns_to_utc(after) == dt.datetime(2017, 1, 1, tzinfo=dt.UTC)


def test_aware_datetime_and_truncation() -> None:
    aware = dt.datetime(2020, 5, 1, 12, 0, 0, 123_456, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    ns = utc_to_tai_ns(aware)
    assert tai_ns_to_utc_iso(ns) == "2020-05-01T15:00:00.123456000Z"
    assert tai_ns_to_utc(ns + 999) == aware  # truncated, never rounded up


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("2016-12-30T23:59:60", "leap second"),  # no leap second that day
        ("2019-06-30T12:30:60", "leap second"),
        ("not a time", "not an ISO-8601"),
        ("2021-02-30T00:00:00", "invalid date"),
        ("1969-07-20T20:17:40", "before 1972"),
    ],
)
def test_bad_utc_values(bad: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        utc_to_tai_ns(bad)


def test_naive_datetime_refused_and_tai_offset_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        utc_to_tai_ns(dt.datetime(2020, 1, 1))
    with pytest.raises(ValueError, match="offset"):
        tai_iso_to_tai_ns("2020-01-01T00:00:00+02:00")
    with pytest.raises(ValueError, match="no leap seconds"):
        tai_iso_to_tai_ns("2016-12-31T23:59:60")


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=MIN_NS, max_value=MAX_NS))
def test_tai_ns_utc_iso_round_trip(ns: int) -> None:
    assert utc_to_tai_ns(tai_ns_to_utc_iso(ns)) == ns


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=MIN_NS, max_value=MAX_NS))
def test_datetime_round_trip_truncates_to_microseconds(ns: int) -> None:
    back = utc_to_tai_ns(tai_ns_to_utc(ns))
    in_leap = tai_ns_to_utc_iso(ns)[17:19] == "60"
    if not in_leap:
        assert 0 <= ns - back < 1000


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1972, 1, 1), max_value=dt.datetime(2200, 1, 1)),
    st.integers(min_value=0, max_value=999),
)
def test_utc_reading_round_trip(moment: dt.datetime, extra_ns: int) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond * 1000 + extra_ns:09d}Z"
    assert tai_ns_to_utc_iso(utc_to_tai_ns(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_NS))
def test_tai_reading_is_calendar_arithmetic(ns: int) -> None:
    seconds, frac = divmod(ns, 10**9)
    reading = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds)
    assert tai_iso_to_tai_ns(f"{reading:%Y-%m-%d %H:%M:%S}.{frac:09d}") == ns
