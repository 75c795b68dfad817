"""Tags, certification of versions for validity ranges, and lookups.

Validity ranges are half-open ``[begin, end)`` in TAI nanoseconds since 1970; either end may be
``None`` (NULL): unbounded, as in the butler's ``Timespan`` (``begin=None`` is "valid from the
beginning", its convention for curated calibrations; ``end=None`` is open).

Active ranges of one (tag, instrument, filter) never overlap: the database refuses it
(PostgreSQL exclusion constraint, SQLite trigger), so even racing certify calls cannot both
win. Certification rows are never deleted; decertify closes them and inserts the remaining
pieces, so every past state of a tag can be read back with ``as_of``.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Connection, bindparam, func, insert, or_, select, update

from calibreg.db.models import CalibrationVersion, Certification, Exposure, Instrument, Tag
from calibreg.db.types import utcnow
from calibreg.domain import limits
from calibreg.domain.quality import DEFAULT_MAX_CHANGE
from calibreg.errors import (
    AmbiguousLookupError,
    CertificationGateError,
    ConflictError,
    InputError,
    NotFoundError,
    NothingCertifiedError,
)
from calibreg.formats.timescale import format_instant, format_range
from calibreg.registry.backend import backend_of
from calibreg.registry.common import instrument_id
from calibreg.registry.listing import cert_dict
from calibreg.registry.versions import compare_row_scales, get_version, row_scales


def check_tag_name(name: object) -> str:
    """Refuse a tag name nobody could type back: empty, padded, with control characters, long.

    Raises
    ------
    InputError
        Naming the problem.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError("tag", "a tag name must be non-empty text", field="tag")
    if name != name.strip():
        raise InputError(
            "tag", f"tag name {name[:60]!r} has leading or trailing space", field="tag"
        )
    if not name.isprintable():
        raise InputError("tag", f"tag name {name[:60]!r} holds control characters", field="tag")
    if len(name) > limits.TAG_NAME:
        raise InputError(
            "tag",
            f"tag name of {len(name):,} characters is longer than the {limits.TAG_NAME} allowed",
            field="tag",
        )
    return name


def _tag_id(conn: Connection, name: str, *, create: bool, what: str = "") -> int:
    if create:
        check_tag_name(name)
    found = conn.execute(select(Tag.id).where(Tag.name == name)).scalar_one_or_none()
    if found is not None:
        return found
    if not create:
        raise NotFoundError(f"{what}no tag {name!r}")
    backend_of(conn).insert_ignore(
        conn, Tag.__table__, {"name": name, "created_at": utcnow()}, ["name"]
    )
    return conn.execute(select(Tag.id).where(Tag.name == name)).scalar_one()


def _lock_tag(conn: Connection, tag_id: int) -> None:
    """Serialize certify/decertify of one tag on PostgreSQL (SQLite's write lock already does).

    Without it, a second decertify reading the same active range under READ COMMITTED would
    try to close a row the first has just closed. The exclusion constraint stays the backstop.
    """
    conn.execute(backend_of(conn).lock_rows(select(Tag.id).where(Tag.id == tag_id)))


#: Sort key of a begin: NULL (unbounded) sorts first.
_begin_key = func.coalesce(Certification.valid_begin, -(2**63))


def _overlaps(begin: int | None, end: int | None) -> list[ColumnElement[bool]]:
    """Return the SQL condition: a certification's range overlaps ``[begin, end)``.

    ``None`` ends are unbounded on both sides of the comparison.
    """
    cond = []
    if begin is not None:
        cond.append(or_(Certification.valid_end.is_(None), Certification.valid_end > begin))
    if end is not None:
        cond.append(or_(Certification.valid_begin.is_(None), Certification.valid_begin < end))
    return cond


def _begins_before(a: int | None, b: int | None) -> bool:
    """Whether begin ``a`` is earlier than begin ``b`` (``None`` is the earliest)."""
    if b is None:
        return False
    return a is None or a < b


def _ends_after(a: int | None, b: int | None) -> bool:
    """Whether end ``a`` is later than end ``b`` (``None`` is the latest)."""
    if a is None:
        return b is not None
    return b is not None and a > b


def _check_filter(conn: Connection, inst: int, instrument: str, physical_filter: str) -> None:
    """Refuse a filter the instrument has neither exposures nor certifications in."""
    seen = set(
        conn.execute(
            select(Exposure.physical_filter).where(Exposure.instrument_id == inst).distinct()
        ).scalars()
    ) | set(
        conn.execute(
            select(Certification.physical_filter)
            .where(Certification.instrument_id == inst)
            .distinct()
        ).scalars()
    )
    if physical_filter not in seen:
        known = ", ".join(sorted(seen)) or "none"
        raise NotFoundError(f"unknown filter {physical_filter!r} of {instrument} (known: {known})")


def _check_range(begin: int | None, end: int | None, what: str) -> None:
    if begin is not None and end is not None and end <= begin:
        raise InputError(
            what, f"empty range {format_range(begin, end)}: end is not after begin", field="end"
        )


def _active(as_of: dt.datetime | None = None) -> list[ColumnElement[bool]]:
    if as_of is None:
        return [Certification.decertified_at.is_(None)]
    return [
        Certification.certified_at <= as_of,
        or_(Certification.decertified_at.is_(None), Certification.decertified_at > as_of),
    ]


def neighbour(
    conn: Connection,
    tag: int,
    inst: int,
    physical_filter: str,
    begin: int | None,
    end: int | None,
) -> Any | None:
    """Return the active certification the new range replaces or abuts (for the comparison gate).

    Overlaps are refused before this is asked, so the latest active range before ``begin``
    is the one the new range follows; without one, the earliest range after it.
    """
    base = select(*Certification.__table__.columns).where(
        Certification.tag_id == tag,
        Certification.instrument_id == inst,
        Certification.physical_filter == physical_filter,
        *_active(),
    )
    if begin is not None:
        before = conn.execute(
            base.where(_begin_key < begin).order_by(_begin_key.desc()).limit(1)
        ).one_or_none()
        if before is not None:
            return before
        base = base.where(_begin_key >= begin)
    return conn.execute(base.order_by(_begin_key).limit(1)).one_or_none()


def certify(
    conn: Connection,
    version_id: int,
    tag: str,
    begin: int | None,
    end: int | None = None,
    *,
    force: bool = False,
    max_change: float = DEFAULT_MAX_CHANGE,
    user: str,
) -> dict[str, Any]:
    """Certify ``version_id`` in ``tag`` for ``[begin, end)``; returns the certification.

    The new version is compared with the one it replaces or abuts (per-row scale ratios);
    if any row changes by more than ``max_change`` (relative) the call is refused unless
    ``force``. The comparison is always returned, under ``"comparison"``. ``begin=None`` is
    "valid from the beginning", ``end=None`` open.

    Raises
    ------
    InputError
        For an empty range or a threshold that is not a finite number ≥ 0.
    ConflictError
        When the range overlaps an active one of the same tag, instrument and filter.
    CertificationGateError
        When the comparison exceeds ``max_change`` and ``force`` is false.
    """
    _check_range(begin, end, "certify")
    if not isinstance(max_change, int | float) or not np.isfinite(max_change) or max_change < 0:
        raise InputError(
            "certify",
            f"max_change must be a finite number >= 0, got {max_change!r}",
            field="max_change",
        )
    version = get_version(conn, version_id)
    inst = version["instrument_id"]
    physical_filter = version["physical_filter"]
    tag_id = _tag_id(conn, tag, create=True)
    _lock_tag(conn, tag_id)
    clash = conn.execute(
        select(*Certification.__table__.columns).where(
            Certification.tag_id == tag_id,
            Certification.instrument_id == inst,
            Certification.physical_filter == physical_filter,
            *_active(),
            *_overlaps(begin, end),
        )
    ).first()
    if clash is not None:
        raise ConflictError(
            f"{format_range(begin, end)} overlaps certification {clash.id} of version "
            f"{clash.version_id} in tag {tag!r} "
            f"({format_range(clash.valid_begin, clash.valid_end)}); decertify that range first"
        )
    comparison = None
    other = neighbour(conn, tag_id, inst, physical_filter, begin, end)
    if other is not None and other.version_id != version_id:
        comparison = compare_versions(conn, other.version_id, version_id)
        comparison["threshold"] = max_change
        exceeded = (
            comparison["comparable"]
            and np.isfinite(comparison["max_abs_rel_change"])
            and comparison["max_abs_rel_change"] > max_change
        )
        comparison["exceeds_threshold"] = bool(exceeded)
        if exceeded and not force:
            raise CertificationGateError(
                f"version {version_id} changes row scales by up to "
                f"{comparison['max_abs_rel_change']:.3%} (rms {comparison['rms_rel_change']:.3%})"
                f" relative to version {other.version_id}, above the {max_change:.3%} "
                "threshold: pass --force to certify anyway",
                comparison,
            )
    now = utcnow()
    cert_id = conn.execute(
        insert(Certification).returning(Certification.id),
        {
            "tag_id": tag_id,
            "version_id": version_id,
            "instrument_id": inst,
            "physical_filter": physical_filter,
            "valid_begin": begin,
            "valid_end": end,
            "certified_at": now,
            "certified_by": user,
            "comparison": _summary(comparison),
        },
    ).scalar_one()
    return {
        "certification_id": cert_id,
        "tag": tag,
        "version_id": version_id,
        "instrument": version["instrument"],
        "physical_filter": physical_filter,
        "valid_begin": begin,
        "valid_end": end,
        "certified_at": now,
        "comparison": comparison,
    }


def _summary(comparison: dict[str, Any] | None) -> dict[str, Any] | None:
    if comparison is None:
        return None
    out = {k: v for k, v in comparison.items() if k != "table"}
    for key in ("max_abs_rel_change", "rms_rel_change", "max_abs_significance"):
        if out.get(key) is not None and not np.isfinite(out[key]):
            out[key] = None
    out["worst"] = [
        {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in w.items()}
        for w in out.get("worst", [])
    ]
    return out


def compare_versions(conn: Connection, old: int, new: int) -> dict[str, Any]:
    """Per-row comparison of two versions (only meaningful at the same level)."""
    a, b = get_version(conn, old), get_version(conn, new)
    result: dict[str, Any] = {"old_version": old, "new_version": new}
    if a["level"] != b["level"]:
        result.update(
            comparable=False,
            reason=f"levels differ ({a['level']} vs {b['level']})",
            max_abs_rel_change=float("nan"),
            rms_rel_change=float("nan"),
            worst=[],
        )
        return result
    cmp = compare_row_scales(row_scales(conn, old), row_scales(conn, new))
    result.update(comparable=True, **cmp)
    return result


def decertify(
    conn: Connection,
    tag: str,
    instrument: str,
    physical_filter: str | None,
    begin: int | None,
    end: int | None = None,
    *,
    user: str,
) -> list[dict[str, Any]]:
    """Remove ``[begin, end)`` from the tag's active ranges, splitting ranges that straddle it.

    The butler's semantics: decertifying where nothing is certified is no error (it returns
    an empty list), so a decertify can be repeated and applied across filters.

    Parameters
    ----------
    physical_filter : str or None
        The filter, or ``None`` for every filter of ``instrument`` in ``tag``.
    begin, end : int or None
        TAI ns; ``None`` is unbounded.

    Returns
    -------
    list of dict
        Per certification closed: ``closed`` (its id), ``version_id``, ``physical_filter``,
        ``was`` ([begin, end]), ``pieces`` (the kept parts) and ``new_ids``.

    Raises
    ------
    NotFoundError
        For an unknown tag or instrument.
    InputError
        For an empty range.
    """
    _check_range(begin, end, "decertify")
    tag_id = _tag_id(conn, tag, create=False)
    _lock_tag(conn, tag_id)
    inst = instrument_id(conn, instrument)
    stmt = select(*Certification.__table__.columns).where(
        Certification.tag_id == tag_id,
        Certification.instrument_id == inst,
        *_active(),
        *_overlaps(begin, end),
    )
    if physical_filter is not None:
        _check_filter(conn, inst, instrument, physical_filter)
        stmt = stmt.where(Certification.physical_filter == physical_filter)
    hits = conn.execute(stmt.order_by(Certification.physical_filter, _begin_key)).all()
    now = utcnow()
    changes = []
    for cert in hits:
        conn.execute(
            update(Certification)
            .where(Certification.id == cert.id)
            .values(decertified_at=now, decertified_by=user)
        )
        pieces: list[tuple[int | None, int | None]] = []
        if _begins_before(cert.valid_begin, begin):
            pieces.append((cert.valid_begin, begin))
        if end is not None and _ends_after(cert.valid_end, end):
            pieces.append((end, cert.valid_end))
        new_ids = []
        for b, e in pieces:
            new_ids.append(
                conn.execute(
                    insert(Certification).returning(Certification.id),
                    {
                        "tag_id": tag_id,
                        "version_id": cert.version_id,
                        "instrument_id": inst,
                        "physical_filter": cert.physical_filter,
                        "valid_begin": b,
                        "valid_end": e,
                        "certified_at": now,
                        "certified_by": user,
                        "replaces_id": cert.id,
                    },
                ).scalar_one()
            )
        changes.append(
            {
                "closed": cert.id,
                "version_id": cert.version_id,
                "physical_filter": cert.physical_filter,
                "was": [cert.valid_begin, cert.valid_end],
                "pieces": [list(p) for p in pieces],
                "new_ids": new_ids,
            }
        )
    return changes


def lookup(
    conn: Connection,
    instrument: str,
    physical_filter: str | None,
    tag: str,
    *,
    time_tai_ns: int | None = None,
    exposure: int | None = None,
    as_of: dt.datetime | None = None,
    explain: bool = False,
) -> dict[str, Any]:
    """Return the version valid at an instant, or over an exposure's timespan, in ``tag``.

    A lookup by exposure matches the exposure's whole timespan ``[begin, end)`` against the
    validity ranges, as the butler does: a timespan that crosses a boundary between two
    versions is ambiguous and reported as such. ``as_of`` answers as the tag stood at that
    wall-clock instant (reproducible reads).

    Raises
    ------
    NothingCertifiedError
        When nothing is certified there (carrying what was considered, with ``explain``).
    AmbiguousLookupError
        When the exposure's timespan overlaps ranges of more than one version.
    NotFoundError
        For an unknown instrument, exposure or tag.
    InputError
        For a missing time or filter, both a time and an exposure, or an exposure of another
        filter.
    """
    inst: int | None = None
    span_end: int | None = None
    if exposure is not None and time_tai_ns is not None:
        raise InputError("lookup", "give a time or an exposure, not both", field="time")
    if exposure is not None:
        inst = instrument_id(conn, instrument)
        physical_filter, time_tai_ns, span_end = _exposure_span(
            conn, inst, instrument, exposure, physical_filter
        )
    if time_tai_ns is None:
        raise InputError("lookup", "give a time or an exposure", field="time")
    if physical_filter is None:
        raise InputError("lookup", "give a filter (or an exposure)", field="filter")
    if span_end is None or span_end <= time_tai_ns:
        span_end = time_tai_ns + 1  # an instant is the 1 ns span starting there
    hits = _certified_over(
        conn, inst, instrument, physical_filter, tag, time_tai_ns, span_end, as_of
    )
    what = (
        f"exposure {exposure} ({format_range(time_tai_ns, span_end)})"
        if exposure is not None
        else format_instant(time_tai_ns)
    )
    if len({h.version_id for h in hits}) > 1:
        raise AmbiguousLookupError(
            f"{what} overlaps the validity ranges of versions "
            + ", ".join(f"{h.version_id} {format_range(h.valid_begin, h.valid_end)}" for h in hits)
            + f" in tag {tag!r}: ambiguous",
            [cert_dict(h) for h in hits],
        )
    hit = hits[0] if hits else None

    considered: list[dict[str, Any]] = []
    if hit is None or explain:
        # Only now resolve names, for precise errors and for the explanation.
        if inst is None:
            inst = instrument_id(conn, instrument)
        tag_id = _tag_id(conn, tag, create=False, what="nothing certified: ")
        if explain:
            considered = _considered(
                conn, tag_id, inst, physical_filter, hit, (time_tai_ns, span_end), as_of
            )
    if hit is None:
        msg = f"nothing certified in tag {tag!r} for {instrument} {physical_filter} at {what}" + (
            f" as of {as_of.isoformat()}" if as_of else ""
        )
        raise NothingCertifiedError(msg, considered)
    result = answer(
        hit, instrument, physical_filter, tag, time_tai_ns, span_end, exposure=exposure, as_of=as_of
    )
    if explain:
        result["explain"] = considered
    return result


def answer(
    hit: Any,
    instrument: str,
    physical_filter: str,
    tag: str,
    time_tai_ns: int,
    span_end: int,
    *,
    exposure: int | None = None,
    as_of: dt.datetime | None = None,
) -> dict[str, Any]:
    """Return the answer of a lookup whose one matching certification is ``hit``.

    ``hit`` is a row of the lookup query (the certification's columns, then the version's as
    ``v_seq``, ``v_level``, ``v_method``, ``v_content_hash``, ``v_created_at``). The one place
    the answer's fields are named: :func:`lookup` and the validity index
    (:mod:`calibreg.registry.validity`) both build it here.
    """
    result = {
        "instrument": instrument,
        "physical_filter": physical_filter,
        "tag": tag,
        "time_tai_ns": time_tai_ns,
        "exposure": exposure,
        "as_of": as_of.isoformat() if as_of else None,
        "version_id": hit.version_id,
        "seq": hit.v_seq,
        "level": hit.v_level,
        "method": hit.v_method,
        "content_hash": hit.v_content_hash,
        "created_at": hit.v_created_at,
        "certification": cert_dict(hit),
    }
    if exposure is not None:
        result["exposure_timespan"] = [time_tai_ns, span_end]
    return result


#: An exposure's filter and timespan (built once; see _over_statement).
_SPAN = select(Exposure.timespan_begin, Exposure.timespan_end, Exposure.physical_filter).where(
    Exposure.instrument_id == bindparam("inst"), Exposure.id == bindparam("exposure")
)


def _exposure_span(
    conn: Connection, inst: int, instrument: str, exposure: int, physical_filter: str | None
) -> tuple[str, int, int | None]:
    """Return an exposure's filter and timespan (begin, end) for a lookup by exposure."""
    row = conn.execute(_SPAN, {"inst": inst, "exposure": exposure}).one_or_none()
    if row is None:
        raise NotFoundError(f"unknown exposure {exposure} of {instrument}")
    if row.timespan_begin is None:
        raise InputError("lookup", f"exposure {exposure} has no timespan", field="exposure")
    if physical_filter is not None and physical_filter != row.physical_filter:
        raise InputError(
            "lookup",
            f"exposure {exposure} was taken in {row.physical_filter}, not {physical_filter}",
            field="filter",
        )
    end = None if row.timespan_end is None else int(row.timespan_end)
    return row.physical_filter, int(row.timespan_begin), end


def _hit_select() -> Any:
    """Return the SELECT of a lookup's rows: a certification's columns and its version's."""
    v = CalibrationVersion
    return (
        select(
            *Certification.__table__.columns,
            v.seq.label("v_seq"),
            v.level.label("v_level"),
            v.method.label("v_method"),
            v.content_hash.label("v_content_hash"),
            v.created_at.label("v_created_at"),
        )
        .join(Tag, Tag.id == Certification.tag_id)
        .join(v, v.id == Certification.version_id)
    )


@functools.lru_cache(maxsize=1)
def active_statement() -> Any:
    """Return the query of every active certification of one tag and instrument, as lookup rows.

    Bind parameters ``tag`` and ``instrument`` (names). Ordered by filter, then begin (NULL, the
    unbounded begin, first): the order :mod:`calibreg.registry.validity` indexes them in.
    """
    return (
        _hit_select()
        .join(Instrument, Instrument.id == Certification.instrument_id)
        .where(
            Tag.name == bindparam("tag"),
            Instrument.name == bindparam("instrument"),
            Certification.decertified_at.is_(None),
        )
        .order_by(Certification.physical_filter, _begin_key, Certification.id)
    )


@functools.lru_cache(maxsize=8)
def _over_statement(by_id: bool, with_as_of: bool) -> Any:
    """Return the lookup query, built once per shape with bind parameters (a lookup binds).

    Building a SELECT costs more than running it; the statement is the same for every lookup
    of a shape, so it is made once and SQLAlchemy's compiled cache does the rest.
    """
    if with_as_of:
        active = [
            Certification.certified_at <= bindparam("as_of"),
            or_(
                Certification.decertified_at.is_(None),
                Certification.decertified_at > bindparam("as_of"),
            ),
        ]
    else:
        active = [Certification.decertified_at.is_(None)]
    stmt = (
        _hit_select()
        .where(
            Tag.name == bindparam("tag"),
            Certification.physical_filter == bindparam("filter"),
            *active,
            or_(Certification.valid_end.is_(None), Certification.valid_end > bindparam("begin")),
            or_(Certification.valid_begin.is_(None), Certification.valid_begin < bindparam("end")),
        )
        .order_by(_begin_key)
    )
    if by_id:
        return stmt.where(Certification.instrument_id == bindparam("inst"))
    return stmt.join(Instrument, Instrument.id == Certification.instrument_id).where(
        Instrument.name == bindparam("instrument")
    )


def _certified_over(
    conn: Connection,
    inst: int | None,
    instrument: str,
    physical_filter: str,
    tag: str,
    begin: int,
    end: int,
    as_of: dt.datetime | None,
) -> list[Any]:
    """Return the certifications overlapping ``[begin, end)``: one indexed query."""
    params: dict[str, Any] = {"tag": tag, "filter": physical_filter, "begin": begin, "end": end}
    if inst is not None:
        params["inst"] = inst
    else:
        params["instrument"] = instrument
    if as_of is not None:
        params["as_of"] = as_of
    stmt = _over_statement(inst is not None, as_of is not None)
    return list(conn.execute(stmt, params).all())


def _considered(
    conn: Connection,
    tag_id: int,
    inst: int,
    physical_filter: str,
    hit: Any | None,
    span: tuple[int, int],
    as_of: dt.datetime | None,
) -> list[dict[str, Any]]:
    """Every certification of the quantum's tag, with whether and why it matched."""
    rows = conn.execute(
        select(*Certification.__table__.columns)
        .where(
            Certification.tag_id == tag_id,
            Certification.instrument_id == inst,
            Certification.physical_filter == physical_filter,
        )
        .order_by(_begin_key, Certification.id)
    ).all()
    return [
        {
            **cert_dict(c),
            "matched": hit is not None and c.id == hit.id,
            "why": _why(c, span, as_of),
        }
        for c in rows
    ]


def _why(c: Any, span: tuple[int, int], as_of: dt.datetime | None) -> str:
    begin, end = span
    if as_of is not None and c.certified_at > as_of:
        return "certified after the as-of instant"
    if c.decertified_at is not None and (as_of is None or c.decertified_at <= as_of):
        return f"decertified at {c.decertified_at.isoformat()}"
    if c.valid_begin is not None and end <= c.valid_begin:
        return "range begins after the time (begin is inclusive)"
    if c.valid_end is not None and begin >= c.valid_end:
        return "range ends at or before the time (end is exclusive)"
    return "valid range contains the time"
