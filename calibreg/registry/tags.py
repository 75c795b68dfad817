"""Tags, certification of versions for validity ranges, and lookups.

Validity ranges are half-open ``[begin, end)`` in TAI nanoseconds since 1970 (``end=None`` is
open). Active ranges of one (tag, instrument, filter) never overlap: the database refuses it
(PostgreSQL exclusion constraint, SQLite trigger), so even racing certify calls cannot both
win. Certification rows are never deleted; decertify closes them and inserts the remaining
pieces, so every past state of a tag can be read back with ``as_of``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Connection, insert, or_, select, update

from calibreg.db.models import CalibrationVersion, Certification, Exposure, Instrument, Tag
from calibreg.db.types import utcnow
from calibreg.errors import (
    CertificationGateError,
    ConflictError,
    InputError,
    NotFoundError,
    NothingCertifiedError,
)
from calibreg.registry.backend import backend_of
from calibreg.registry.common import instrument_id
from calibreg.registry.versions import compare_row_scales, get_version, row_scales

#: Default refusal threshold of the comparison gate: max |relative change| of any row scale.
DEFAULT_MAX_CHANGE = 0.05


def _tag_id(conn: Connection, name: str, *, create: bool, what: str = "") -> int:
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


def _overlaps(begin: int, end: int | None) -> list[ColumnElement[bool]]:
    """Return the SQL condition: an active certification's range overlaps [begin, end)."""
    cond = [or_(Certification.valid_end.is_(None), Certification.valid_end > begin)]
    if end is not None:
        cond.append(Certification.valid_begin < end)
    return cond


def _active(as_of: dt.datetime | None = None) -> list[ColumnElement[bool]]:
    if as_of is None:
        return [Certification.decertified_at.is_(None)]
    return [
        Certification.certified_at <= as_of,
        or_(Certification.decertified_at.is_(None), Certification.decertified_at > as_of),
    ]


def _cert_dict(row: Any) -> dict[str, Any]:
    return {
        "certification_id": row.id,
        "version_id": row.version_id,
        "valid_begin": row.valid_begin,
        "valid_end": row.valid_end,
        "certified_at": row.certified_at,
        "certified_by": row.certified_by,
        "decertified_at": row.decertified_at,
        "decertified_by": row.decertified_by,
        "replaces_id": row.replaces_id,
    }


def neighbour(
    conn: Connection, tag: int, inst: int, physical_filter: str, begin: int, end: int | None
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
    before = conn.execute(
        base.where(Certification.valid_begin < begin)
        .order_by(Certification.valid_begin.desc())
        .limit(1)
    ).one_or_none()
    if before is not None:
        return before
    return conn.execute(
        base.where(Certification.valid_begin >= begin).order_by(Certification.valid_begin).limit(1)
    ).one_or_none()


def certify(
    conn: Connection,
    version_id: int,
    tag: str,
    begin: int,
    end: int | None = None,
    *,
    force: bool = False,
    max_change: float = DEFAULT_MAX_CHANGE,
    user: str,
) -> dict[str, Any]:
    """Certify ``version_id`` in ``tag`` for ``[begin, end)``; returns the certification.

    The new version is compared with the one it replaces or abuts (per-row scale ratios);
    if any row changes by more than ``max_change`` (relative) the call is refused unless
    ``force``. The comparison is always returned, under ``"comparison"``.
    """
    if end is not None and end <= begin:
        raise InputError(
            "certify", f"empty validity range: end {end} <= begin {begin}", field="end"
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
            f"[{begin}, {end if end is not None else 'open'}) overlaps certification "
            f"{clash.id} of version {clash.version_id} in tag {tag!r} "
            f"([{clash.valid_begin}, {clash.valid_end if clash.valid_end is not None else 'open'}"
            "); decertify that range first"
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
    for key in ("max_abs_rel_change", "rms_rel_change"):
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
    physical_filter: str,
    begin: int,
    end: int | None = None,
    *,
    user: str,
) -> list[dict[str, Any]]:
    """Remove ``[begin, end)`` from the tag's active ranges, splitting ranges that straddle it.

    Returns the certifications closed and the pieces that replaced them.
    """
    if end is not None and end <= begin:
        raise InputError("decertify", f"empty range: end {end} <= begin {begin}", field="end")
    tag_id = _tag_id(conn, tag, create=False)
    _lock_tag(conn, tag_id)
    inst = instrument_id(conn, instrument)
    hits = conn.execute(
        select(*Certification.__table__.columns)
        .where(
            Certification.tag_id == tag_id,
            Certification.instrument_id == inst,
            Certification.physical_filter == physical_filter,
            *_active(),
            *_overlaps(begin, end),
        )
        .order_by(Certification.valid_begin)
    ).all()
    if not hits:
        raise NotFoundError(
            f"nothing certified in tag {tag!r} for {instrument} {physical_filter} in "
            f"[{begin}, {end if end is not None else 'open'})"
        )
    now = utcnow()
    changes = []
    for cert in hits:
        conn.execute(
            update(Certification)
            .where(Certification.id == cert.id)
            .values(decertified_at=now, decertified_by=user)
        )
        pieces = []
        if cert.valid_begin < begin:
            pieces.append((cert.valid_begin, begin))
        if end is not None and (cert.valid_end is None or end < cert.valid_end):
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
                        "physical_filter": physical_filter,
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
    """Return the version valid at an instant (or at an exposure's start) in ``tag``.

    ``as_of`` answers as the tag stood at that wall-clock instant (reproducible reads).

    Raises
    ------
    NothingCertifiedError
        When nothing is certified there (carrying what was considered, with ``explain``).
    NotFoundError
        For an unknown instrument, exposure or tag.
    InputError
        For a missing time or filter, or an exposure of another filter.
    """
    inst: int | None = None
    if exposure is not None:
        inst = instrument_id(conn, instrument)
        physical_filter, time_tai_ns = _exposure_instant(
            conn, inst, instrument, exposure, physical_filter
        )
    if time_tai_ns is None:
        raise InputError("lookup", "give a time or an exposure", field="time")
    if physical_filter is None:
        raise InputError("lookup", "give a filter (or an exposure)", field="filter")
    hit = _certified_at(conn, inst, instrument, physical_filter, tag, time_tai_ns, as_of)

    considered: list[dict[str, Any]] = []
    if hit is None or explain:
        # Only now resolve names, for precise errors and for the explanation.
        if inst is None:
            inst = instrument_id(conn, instrument)
        tag_id = _tag_id(conn, tag, create=False, what="nothing certified: ")
        if explain:
            considered = _considered(conn, tag_id, inst, physical_filter, hit, time_tai_ns, as_of)
    if hit is None:
        msg = (
            f"nothing certified in tag {tag!r} for {instrument} {physical_filter} at "
            f"TAI ns {time_tai_ns}" + (f" as of {as_of.isoformat()}" if as_of else "")
        )
        raise NothingCertifiedError(msg, considered)
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
        "certification": _cert_dict(hit),
    }
    if explain:
        result["explain"] = considered
    return result


def _exposure_instant(
    conn: Connection, inst: int, instrument: str, exposure: int, physical_filter: str | None
) -> tuple[str, int]:
    """Return an exposure's filter and the instant a lookup by exposure asks about (its start)."""
    row = conn.execute(
        select(Exposure.timespan_begin, Exposure.physical_filter).where(
            Exposure.instrument_id == inst, Exposure.id == exposure
        )
    ).one_or_none()
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
    return row.physical_filter, int(row.timespan_begin)


def _certified_at(
    conn: Connection,
    inst: int | None,
    instrument: str,
    physical_filter: str,
    tag: str,
    time_tai_ns: int,
    as_of: dt.datetime | None,
) -> Any | None:
    """Return the certification valid at ``time_tai_ns``: one indexed query (⋈ tag ⋈ version)."""
    v = CalibrationVersion
    stmt = (
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
        .where(
            Tag.name == tag,
            Certification.physical_filter == physical_filter,
            *_active(as_of),
            Certification.valid_begin <= time_tai_ns,
            or_(Certification.valid_end.is_(None), Certification.valid_end > time_tai_ns),
        )
    )
    if inst is not None:
        stmt = stmt.where(Certification.instrument_id == inst)
    else:
        stmt = stmt.join(Instrument, Instrument.id == Certification.instrument_id).where(
            Instrument.name == instrument
        )
    hits = conn.execute(stmt).all()
    if len(hits) > 1:  # cannot happen for the present (the database forbids it)
        raise ConflictError(f"{len(hits)} certifications match; the tag history is inconsistent")
    return hits[0] if hits else None


def _considered(
    conn: Connection,
    tag_id: int,
    inst: int,
    physical_filter: str,
    hit: Any | None,
    time_tai_ns: int,
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
        .order_by(Certification.valid_begin, Certification.id)
    ).all()
    return [
        {
            **_cert_dict(c),
            "matched": hit is not None and c.id == hit.id,
            "why": _why(c, time_tai_ns, as_of),
        }
        for c in rows
    ]


def _why(c: Any, t: int, as_of: dt.datetime | None) -> str:
    if as_of is not None and c.certified_at > as_of:
        return "certified after the as-of instant"
    if c.decertified_at is not None and (as_of is None or c.decertified_at <= as_of):
        return f"decertified at {c.decertified_at.isoformat()}"
    if t < c.valid_begin:
        return "range begins after the time (begin is inclusive)"
    if c.valid_end is not None and t >= c.valid_end:
        return "range ends at or before the time (end is exclusive)"
    return "valid range contains the time"


def certifications(
    conn: Connection, tag: str | None = None, *, include_closed: bool = False
) -> list[dict[str, Any]]:
    """Certification rows (active only unless ``include_closed``), newest first."""
    stmt = (
        select(Certification, Tag.name, Instrument.name)
        .join(Tag, Tag.id == Certification.tag_id)
        .join(Instrument, Instrument.id == Certification.instrument_id)
        .order_by(Certification.id.desc())
    )
    if tag is not None:
        stmt = stmt.where(Tag.name == tag)
    if not include_closed:
        stmt = stmt.where(Certification.decertified_at.is_(None))
    out = []
    for cert in conn.execute(stmt).all():
        out.append(
            {
                "tag": cert.tag_name,
                "instrument": cert.instrument_name,
                "physical_filter": cert.physical_filter,
                **_cert_dict(cert),
            }
        )
    return out
