"""Listings as plain rows: calibration versions and certifications, without NumPy or pandas.

What ``calibreg versions list`` reads (issue 12: it must start in under half a second): this
module imports SQLAlchemy Core and the tables only, so a listing does not load NumPy (a quarter
of the command's import work), pandas or the statistics store. :mod:`calibreg.registry.versions`
and :mod:`calibreg.registry.tags` build on it and re-export what they always offered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, select

from calibreg.db.models import CalibrationVersion, Certification, Instrument, Tag
from calibreg.registry.common import instrument_id
from calibreg.registry.frames import query_frame, query_records

if TYPE_CHECKING:
    import pandas as pd

#: Columns of a version listing, in order.
VERSION_COLUMNS = [
    "id",
    "seq",
    "instrument",
    "physical_filter",
    "level",
    "method",
    "n_exposures",
    "n_rows",
    "iterations",
    "converged",
    "rms",
    "content_hash",
    "created_at",
]


def _version_select() -> Select:
    v = CalibrationVersion
    return select(
        v.id,
        v.seq,
        Instrument.name.label("instrument"),
        v.physical_filter,
        v.level,
        v.method,
        v.n_exposures,
        v.n_rows,
        v.iterations,
        v.converged,
        v.rms,
        v.content_hash,
        v.created_at,
    ).join(Instrument, Instrument.id == v.instrument_id)


def filtered_versions(
    conn: Connection,
    *,
    instrument: str | None,
    physical_filter: str | None,
    level: str | None,
) -> Select:
    """:func:`_version_select` with the listing filters (an unknown instrument: not found)."""
    stmt = _version_select()
    if instrument is not None:
        stmt = stmt.where(CalibrationVersion.instrument_id == instrument_id(conn, instrument))
    if physical_filter is not None:
        stmt = stmt.where(CalibrationVersion.physical_filter == physical_filter)
    if level is not None:
        stmt = stmt.where(CalibrationVersion.level == level.upper())
    return stmt


def list_versions(
    conn: Connection,
    *,
    instrument: str | None = None,
    physical_filter: str | None = None,
    level: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> pd.DataFrame:
    """Versions, newest last, optionally filtered; ``limit``/``offset`` paginate."""
    stmt = filtered_versions(
        conn, instrument=instrument, physical_filter=physical_filter, level=level
    )
    stmt = stmt.order_by(CalibrationVersion.id).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return query_frame(conn, stmt, VERSION_COLUMNS)


def version_records(
    conn: Connection,
    *,
    instrument: str | None = None,
    physical_filter: str | None = None,
    level: str | None = None,
    newest: int | None = None,
) -> list[dict[str, Any]]:
    """Return versions, oldest first, as plain rows (no pandas): for a terminal listing.

    Parameters
    ----------
    conn
        An open connection.
    instrument, physical_filter, level
        Filters, as :func:`list_versions`.
    newest
        Only the newest this many versions (highest ids), still listed oldest first, as
        :func:`calibreg.registry.versions.newest_versions`; ``None``: every version.

    Returns
    -------
    list of dict
        One dict per version, keys :data:`VERSION_COLUMNS` in order, values those of the
        :func:`list_versions` frame (see :func:`calibreg.registry.frames.query_records`).

    Raises
    ------
    ValueError
        If ``newest`` is not positive.
    NotFoundError
        For an unknown instrument.
    """
    if newest is not None and newest < 1:
        raise ValueError(f"limit must be positive, not {newest}")
    stmt = filtered_versions(
        conn, instrument=instrument, physical_filter=physical_filter, level=level
    )
    if newest is None:
        return query_records(conn, stmt.order_by(CalibrationVersion.id), VERSION_COLUMNS)
    stmt = stmt.order_by(CalibrationVersion.id.desc()).limit(newest)
    return query_records(conn, stmt, VERSION_COLUMNS)[::-1]


def cert_dict(row: Any) -> dict[str, Any]:
    """Return a certification row's fields under the names every answer gives them."""
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
                **cert_dict(cert),
            }
        )
    return out


__all__ = [
    "VERSION_COLUMNS",
    "cert_dict",
    "certifications",
    "filtered_versions",
    "list_versions",
    "version_records",
]
