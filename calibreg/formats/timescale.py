"""UTC ↔ TAI conversion in exact integer nanoseconds.

calibreg stores every instant as **TAI nanoseconds since 1970-01-01 00:00:00 TAI** in an
``int64``, the representation LSST's butler uses in its database for exposure timespans. TAI is
uniform (no leap seconds), so a TAI clock reading converts to that count with calendar arithmetic
alone; UTC readings need TAI−UTC (the leap-second table), which comes from ``erfa.dat`` (pyerfa,
the IAU SOFA table). Everything here is integer arithmetic on nanoseconds: a float holds only
~15.9 significant digits while an instant in ns since 1970 has 19, so any float step would round
the instant by up to a few hundred nanoseconds.

Supported range
---------------
UTC from 1972-01-01 onward (since then TAI−UTC is a whole number of seconds and each UTC day has
86400 or 86401 SI seconds); earlier UTC used "rubber" seconds and is refused. Results must fit an
``int64`` (until 2262-04-11). For dates after the last leap second pyerfa knows, the last known
TAI−UTC is used (pyerfa warns for dates far beyond its release).

Conversion functions raise `ValueError` (they know nothing of files); the readers in
`calibreg.formats` turn that into an `~calibreg.errors.InputError` naming the file, row and field.
"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
from functools import lru_cache

import erfa

__all__ = [
    "as_tai_ns",
    "format_instant",
    "format_range",
    "instant_fields",
    "parse_bound",
    "parse_time",
    "parse_wallclock",
    "tai_iso_to_tai_ns",
    "tai_ns_to_tai_iso",
    "tai_ns_to_utc",
    "tai_ns_to_utc_iso",
    "utc_to_tai_ns",
    "with_instant_fields",
]

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND
_EPOCH = _dt.date(1970, 1, 1)
_FIRST_UTC_DAY = (_dt.date(1972, 1, 1) - _EPOCH).days
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)

_ISO_RE = re.compile(
    r"""^\s*
    (?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})
    (?:[T\s]
        (?P<hour>\d{2}):(?P<minute>\d{2})
        (?::(?P<second>\d{2})(?:[.,](?P<frac>\d{1,9}))?)?
    )?
    \s*(?P<tz>Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?
    \s*$""",
    re.VERBOSE,
)


@lru_cache(maxsize=4096)
def _tai_minus_utc_ns(utc_day: int) -> int:
    """TAI−UTC in ns during the UTC day ``utc_day`` (days since 1970-01-01).

    Cached because a table of exposures touches few distinct days. From 1972 the value is a
    whole number of seconds and constant through the day, so the float returned by ERFA is exact.
    """
    if utc_day < _FIRST_UTC_DAY:
        raise ValueError("UTC before 1972-01-01 is not supported (TAI-UTC was not whole seconds)")
    date = _EPOCH + _dt.timedelta(days=utc_day)
    with warnings.catch_warnings():
        # ERFA calls dates a few years past its table "dubious": no leap second is announced
        # that far ahead, so the latest TAI-UTC is the best available answer. Say it once.
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        seconds = erfa.dat(date.year, date.month, date.day, 0.0)
    return round(float(seconds)) * NS_PER_SECOND


def _day_length_ns(utc_day: int) -> int:
    """Length of a UTC day in SI nanoseconds: 86400 s, or 86401 s when it ends in a leap second."""
    return NS_PER_DAY + _tai_minus_utc_ns(utc_day + 1) - _tai_minus_utc_ns(utc_day)


def _check_int64(ns: int) -> int:
    if not _INT64_MIN <= ns <= _INT64_MAX:
        raise ValueError("instant outside the int64 nanosecond range (1677-09-21 .. 2262-04-11)")
    return ns


def _parse_iso(text: str) -> tuple[int, int, int | None, bool]:
    """Split an ISO-8601 reading into (days since 1970, ns into the day, offset ns or None, leap).

    A reading with second 60 is returned as second 59 with ``leap=True``; the caller decides
    whether a leap second is legal there (UTC: only as the last second of a leap-second day).
    """
    if not isinstance(text, str):
        raise ValueError(f"expected an ISO-8601 string, got {type(text).__name__}")
    m = _ISO_RE.match(text)
    if m is None:
        raise ValueError(f"not an ISO-8601 date-time: {text!r}")
    try:
        date = _dt.date(int(m["year"]), int(m["month"]), int(m["day"]))
    except ValueError as exc:
        raise ValueError(f"invalid date in {text!r}: {exc}") from None
    hour = int(m["hour"] or 0)
    minute = int(m["minute"] or 0)
    second = int(m["second"] or 0)
    frac = m["frac"] or ""
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError(f"invalid time of day in {text!r}")
    frac_ns = int(frac.ljust(9, "0")) if frac else 0
    leap = second == 60
    second -= leap
    sod_ns = ((hour * 60 + minute) * 60 + second) * NS_PER_SECOND + frac_ns
    tz = m["tz"]
    offset_ns: int | None = None
    if tz is not None and tz.upper() not in ("Z", "UTC"):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        oh, om = int(digits[:2]), int(digits[2:4] or 0)
        if oh > 23 or om > 59:
            raise ValueError(f"invalid UTC offset in {text!r}")
        offset_ns = sign * (oh * 3600 + om * 60) * NS_PER_SECOND
    elif tz is not None:
        offset_ns = 0
    return (date - _EPOCH).days, sod_ns, offset_ns, leap


def _utc_reading_to_tai_ns(utc_day: int, sod_ns: int) -> int:
    """TAI ns for a UTC reading ``utc_day`` + ``sod_ns`` (which may lie in a leap second)."""
    return _check_int64(utc_day * NS_PER_DAY + sod_ns + _tai_minus_utc_ns(utc_day))


def utc_to_tai_ns(value: str | _dt.datetime) -> int:
    """Convert a UTC instant to TAI nanoseconds since 1970-01-01 00:00:00 TAI.

    Parameters
    ----------
    value : `str` or `datetime.datetime`
        An ISO-8601 string (``T`` or space separator, up to 9 fractional digits; no suffix or
        ``Z`` means UTC, an explicit ``±HH:MM`` offset is honoured; ``23:59:60.x`` is accepted
        on a leap-second day), or a timezone-aware `datetime.datetime` (a `pandas.Timestamp`
        keeps its nanoseconds). Naive datetimes are refused: their time scale is unknowable.

    Returns
    -------
    ns : `int`
        TAI nanoseconds, exact.

    Raises
    ------
    ValueError
        Unparseable text, naive datetime, a date before 1972 or outside the int64 range.
    """
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: attach a timezone (UTC) so the instant is known")
        offset = value.utcoffset()
        local_day = (value.date() - _EPOCH).days
        sod_ns = (
            (value.hour * 60 + value.minute) * 60 + value.second
        ) * NS_PER_SECOND + value.microsecond * 1000
        sod_ns += int(getattr(value, "nanosecond", 0) or 0)
        offset_ns = (offset.days * 86_400 + offset.seconds) * NS_PER_SECOND + (
            offset.microseconds * 1000
        )
        posix_ns = local_day * NS_PER_DAY + sod_ns - offset_ns
        return _utc_reading_to_tai_ns(*divmod(posix_ns, NS_PER_DAY))
    day, sod_ns, offset_ns, leap = _parse_iso(value)
    # Shift the reading by the offset; a leap-second reading ("hh:mm:60.x") was parsed as
    # hh:mm:59.x and gets its extra second back only after the shift, once the UTC day that
    # must own it is known.
    utc_day, utc_sod = divmod(day * NS_PER_DAY + sod_ns - (offset_ns or 0), NS_PER_DAY)
    if leap:
        if utc_sod // NS_PER_SECOND != 86_399 or _day_length_ns(utc_day) == NS_PER_DAY:
            raise ValueError(f"second 60 is only valid in a UTC leap second: {value!r}")
        utc_sod += NS_PER_SECOND
    return _utc_reading_to_tai_ns(utc_day, utc_sod)


def tai_iso_to_tai_ns(text: str) -> int:
    """Convert a TAI clock reading to TAI nanoseconds since 1970-01-01 00:00:00 TAI.

    This is how the butler writes exposure times in its YAML exports
    (``!butler_time/tai/iso '2025-12-03 07:59:07.425363958'``). TAI has no leap seconds, so the
    count is pure calendar arithmetic, exact to the nanosecond.

    Parameters
    ----------
    text : `str`
        ``YYYY-MM-DD[ T]HH:MM:SS[.fffffffff]`` with up to 9 fractional digits. A ``Z`` suffix is
        tolerated (read as "no offset"); a non-zero offset is refused, TAI readings have none.

    Returns
    -------
    ns : `int`
        TAI nanoseconds since 1970-01-01 00:00:00 TAI.

    Raises
    ------
    ValueError
        Unparseable text, a UTC offset, second 60 (TAI has no leap seconds), or an instant
        outside the int64 range.
    """
    day, sod_ns, offset_ns, leap = _parse_iso(text)
    if offset_ns:
        raise ValueError(f"a TAI reading cannot carry a UTC offset: {text!r}")
    if leap:
        raise ValueError(f"TAI has no leap seconds (second 60): {text!r}")
    return _check_int64(day * NS_PER_DAY + sod_ns)


def _tai_ns_to_utc_reading(ns: int) -> tuple[int, int]:
    """Split TAI ns into (UTC day since 1970, ns into that UTC day; ≥ 86400 s in a leap second)."""
    ns = int(ns)
    # TAI runs ahead of UTC, so the UTC day is the TAI day or the one before.
    tai_day = ns // NS_PER_DAY
    for day in (tai_day, tai_day - 1):
        sod = ns - day * NS_PER_DAY - _tai_minus_utc_ns(day)
        if 0 <= sod < _day_length_ns(day):
            return day, sod
    raise ValueError(f"cannot place TAI ns {ns} on the UTC calendar")  # pragma: no cover


def tai_ns_to_utc(ns: int) -> _dt.datetime:
    """Convert TAI nanoseconds to an aware UTC `datetime.datetime`.

    A `datetime` holds microseconds, so the instant is **truncated** (floored) to the
    microsecond: converting back gives at most 999 ns less, never more. An instant inside an
    inserted leap second (``23:59:60.x`` UTC) has no `datetime` form and is clamped to
    ``23:59:59.999999``. Use `tai_ns_to_utc_iso` when nanoseconds matter.

    Parameters
    ----------
    ns : `int`
        TAI nanoseconds since 1970-01-01 00:00:00 TAI.

    Returns
    -------
    utc : `datetime.datetime`
        Aware, ``tzinfo`` `datetime.UTC`.

    Raises
    ------
    ValueError
        For an instant before 1972-01-01 UTC, where TAI−UTC was not a whole number of seconds.
    """
    day, sod = _tai_ns_to_utc_reading(ns)
    sod = min(sod, NS_PER_DAY - 1000)
    micro = sod // 1000
    return _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(days=day, microseconds=micro)


def tai_ns_to_utc_iso(ns: int) -> str:
    """Convert TAI nanoseconds to a UTC ISO-8601 string with nanoseconds.

    Parameters
    ----------
    ns : `int`
        TAI nanoseconds since 1970-01-01 00:00:00 TAI.

    Returns
    -------
    text : `str`
        ``YYYY-MM-DDTHH:MM:SS.fffffffffZ``; an instant inside a leap second reads
        ``23:59:60.fffffffff``. The conversion is exact: `utc_to_tai_ns` gives ``ns`` back.

    Raises
    ------
    ValueError
        For an instant before 1972-01-01 UTC, where TAI−UTC was not a whole number of seconds.
    """
    day, sod = _tai_ns_to_utc_reading(ns)
    date = _EPOCH + _dt.timedelta(days=day)
    whole, frac = divmod(sod, NS_PER_SECOND)
    if whole >= 86_400:  # leap second
        hh, mm, ss = 23, 59, 60 + whole - 86_400
    else:
        hh, rem = divmod(whole, 3600)
        mm, ss = divmod(rem, 60)
    return f"{date.isoformat()}T{hh:02d}:{mm:02d}:{ss:02d}.{frac:09d}Z"


# --------------------------------------------------------------------------- people's input


def parse_time(value: str | _dt.datetime, *, field: str, source: str = "input") -> int:
    """Read an instant a person gave (CLI option, HTTP query, client argument) as TAI ns.

    The one parser of validity and selection times on every interface: ISO-8601 text, UTC
    unless it carries an offset (``Z``, ``+02:00``), or an aware :class:`datetime.datetime`.

    Parameters
    ----------
    value
        The instant.
    field, source
        Where it came from (``"begin"``, ``"--time"``...), named in the error.

    Returns
    -------
    int
        TAI nanoseconds since 1970-01-01T00:00:00 TAI.

    Raises
    ------
    InputError
        With the real reason: not ISO-8601, a naive datetime, before 1972 (UTC had no whole
        leap seconds then), or outside the int64 nanosecond range (after 2262-04-11).
    """
    from calibreg.errors import InputError

    try:
        if isinstance(value, str) and value.strip().upper().endswith(" TAI"):
            return tai_iso_to_tai_ns(value.strip()[:-4])  # what `format_instant` writes pre-1972
        if not isinstance(value, str | _dt.datetime):
            raise TypeError(
                f"expected an ISO-8601 string or an aware datetime, got {type(value).__name__}"
            )
        return utc_to_tai_ns(value)
    except (ValueError, TypeError) as err:
        raise InputError(source, str(err), field=field) from None


#: Words for an unbounded end of a validity range, accepted case-insensitively.
UNBOUNDED_BEGIN = ("unbounded", "-inf", "min", "beginning")
UNBOUNDED_END = ("open", "unbounded", "inf", "+inf", "max")


def parse_bound(
    value: str | _dt.datetime | None, *, side: str, field: str, source: str = "input"
) -> int | None:
    """Read one end of a validity range: an instant as `parse_time`, or unbounded.

    Parameters
    ----------
    value
        ISO-8601 text, an aware datetime, ``None`` or one of `UNBOUNDED_BEGIN` /
        `UNBOUNDED_END` for an unbounded end (the butler's ``Timespan(None, ...)``).
    side : {"begin", "end"}
        Which end this is.

    Returns
    -------
    int or None
        TAI ns, or ``None`` for unbounded.

    Raises
    ------
    InputError
        As `parse_time`.
    """
    if value is None:
        return None
    words = UNBOUNDED_BEGIN if side == "begin" else UNBOUNDED_END
    if isinstance(value, str) and value.strip().lower() in words:
        return None
    return parse_time(value, field=field, source=source)


def parse_wallclock(
    value: str | _dt.datetime, *, field: str, source: str = "input"
) -> _dt.datetime:
    """Read a bookkeeping instant (``--as-of``: when was something certified) as aware UTC.

    Bookkeeping instants are wall-clock UTC timestamps (``created_at``, ``certified_at``), not
    TAI: ISO-8601 text, UTC unless it carries an offset, or an aware datetime.

    Raises
    ------
    InputError
        If the text is not ISO-8601 or a datetime is naive.
    """
    from calibreg.errors import InputError

    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise InputError(source, "naive datetime: attach a timezone (UTC)", field=field)
        return value.astimezone(_dt.UTC)
    try:
        parsed = _dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(source, f"not an ISO-8601 time: {value!r}", field=field) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return parsed.astimezone(_dt.UTC)


# --------------------------------------------------------------------------- for people to read


def _is_missing(ns: object) -> bool:
    if ns is None:
        return True
    try:
        import pandas as pd

        if ns is pd.NA or ns is pd.NaT:
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(ns, float) and ns != ns


def tai_ns_to_tai_iso(ns: int) -> str:
    """Write TAI nanoseconds as a TAI clock reading, ``YYYY-MM-DDTHH:MM:SS.fffffffff TAI``.

    Exact for every int64 (TAI has no leap seconds); used where UTC has no exact form.
    """
    ns = int(ns)
    day, sod = divmod(ns, NS_PER_DAY)
    date = _EPOCH + _dt.timedelta(days=day)
    whole, frac = divmod(sod, NS_PER_SECOND)
    hh, rem = divmod(whole, 3600)
    mm, ss = divmod(rem, 60)
    return f"{date.isoformat()}T{hh:02d}:{mm:02d}:{ss:02d}.{frac:09d} TAI"


#: MJD of 1970-01-01T00:00:00 (the epoch of the TAI nanosecond counts).
MJD_1970 = 40587


def tai_ns_to_mjd(ns: int) -> float:
    """Return TAI nanoseconds since 1970 as an MJD in the TAI scale (float64: ~1 µs precision).

    For plots and tables; exact work stays in integer nanoseconds.
    """
    days, rest = divmod(int(ns), 86_400 * 10**9)
    return MJD_1970 + days + rest / (86_400 * 10**9)


def format_instant(ns: object, *, missing: str | None = None) -> str | None:
    """Write a stored instant for a person: the one formatter of CLI, client and HTTP output.

    Parameters
    ----------
    ns : int or None
        TAI nanoseconds since 1970-01-01 TAI; ``None``/NA/NaN for "no instant".
    missing : str, optional
        What to return for a missing instant (default ``None``, i.e. null / empty).

    Returns
    -------
    str or None
        UTC ISO-8601 with nanoseconds (``...Z``, exact); an instant before 1972 (when UTC had
        no whole leap seconds) as a TAI reading ending in ``" TAI"``.
    """
    if _is_missing(ns):
        return missing
    value = int(ns)  # type: ignore[call-overload]
    if value < _FIRST_UTC_DAY * NS_PER_DAY + 10 * NS_PER_SECOND:
        return tai_ns_to_tai_iso(value)
    return tai_ns_to_utc_iso(value)


def format_range(begin: int | None, end: int | None) -> str:
    """Write a validity range ``[begin, end)`` for a person (``None`` ends are unbounded)."""
    return (
        f"[{format_instant(begin, missing='-inf (unbounded)')}, "
        f"{format_instant(end, missing='+inf (open)')})"
    )


def instant_fields(name: str, ns: object) -> dict[str, object]:
    """JSON fields for one instant: the exact integer, its decimal string and UTC text.

    ``{name: ns, name + "_str": "…", name + "_utc": "…Z"}`` (all ``None`` when missing): the
    string form is there because TAI ns (~1.7e18) exceed JavaScript's exact integer range.
    """
    if _is_missing(ns):
        return {name: None, f"{name}_str": None, f"{name}_utc": None}
    value = int(ns)  # type: ignore[call-overload]
    return {name: value, f"{name}_str": str(value), f"{name}_utc": format_instant(value)}


def as_tai_ns(
    value: object, *, field: str, source: str = "Registry", side: str | None = None
) -> int | None:
    """Read an instant a program gave (the Python client): TAI ns, ISO text or a datetime.

    Parameters
    ----------
    value
        An ``int`` (TAI ns, exact; numpy integers too), ISO-8601 text or an aware
        `datetime.datetime`; ``None`` (or, with ``side``, an unbounded word) for none.
    field, source
        Named in errors.
    side : {"begin", "end"}, optional
        For one end of a validity range: accept the unbounded words of `parse_bound`.

    Returns
    -------
    int or None

    Raises
    ------
    TypeError
        For a value of another type (a float, a bool, a date...): an instant in a float
        would be rounded by up to a few hundred nanoseconds.
    InputError
        For text that is not an instant, a naive datetime, or an int outside int64.
    """
    import numbers

    from calibreg.errors import InputError

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | str | _dt.datetime):
        raise TypeError(
            f"{field}: expected TAI ns (int), ISO-8601 text or an aware datetime, got "
            f"{type(value).__name__}"
        )
    if isinstance(value, numbers.Integral):
        ns = int(value)
        if not _INT64_MIN <= ns <= _INT64_MAX:
            raise InputError(source, f"TAI ns {ns} is outside int64", field=field)
        return ns
    if side is not None:
        return parse_bound(value, side=side, field=field, source=source)
    return parse_time(value, field=field, source=source)


def with_instant_fields(obj: dict, *names: str) -> dict:
    """Return ``obj`` with each TAI-ns field ``name`` expanded by `instant_fields`.

    The JSON form of stored instants on every interface (CLI ``--format json``, HTTP).
    """
    out = dict(obj)
    for name in names:
        if name in out:
            out.update(instant_fields(name, out[name]))
    return out
