"""Bulk lookup ("best references"): the certified version for many exposures in one query.

The answer per exposure is the one :func:`calibreg.registry.tags.lookup` gives for
``exposure=...``: the exposure's whole timespan ``[begin, end)`` (an instant when it has no
end) is matched against the tag's validity ranges of the exposure's filter, as the tag stood
``as_of`` (default: now); a span that overlaps ranges of more than one version is ambiguous.
Instead of an exception per exposure, each answer carries a ``status``:

``ok``
    One version; its certification is the earliest-beginning one that overlaps (as the single
    lookup picks it).
``unknown_exposure``
    No such exposure of the instrument.
``no_timespan``
    The exposure has no timespan to match.
``nothing_certified``
    Nothing in the tag covers the span.
``ambiguous``
    The span crosses ranges of several versions (listed in ``ambiguous_versions``).

One statement answers the whole list: the ids travel as **one** bind parameter (a PostgreSQL
``BIGINT[]`` unnested, a JSON array read by SQLite's ``json_each``), so no bind limit applies
and nothing is looped per exposure. The candidate ranges of a span are found with three index
probes on ``ix_certification_lookup`` (ranges beginning inside the span, the latest range
beginning before it, ranges valid from the beginning): active ranges of one tag, instrument and
filter never overlap, so no other range can touch the span. The plan does not grow with the
number of ranges in the tag.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import BigInteger, Connection, Integer, bindparam, select, text

from calibreg.db.models import Tag
from calibreg.db.types import UTCDateTime
from calibreg.errors import InputError, NotFoundError
from calibreg.registry.common import instrument_id

if TYPE_CHECKING:
    import pandas as pd

#: The most exposure ids one bulk lookup takes (a request body of ~2 MB).
MAX_EXPOSURES = 100_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

#: Status of each answer, in the order a table shows them.
STATUSES = ("ok", "unknown_exposure", "no_timespan", "nothing_certified", "ambiguous")

#: Columns of the answer, in order.
COLUMNS = (
    "exposure",
    "status",
    "physical_filter",
    "version_id",
    "seq",
    "level",
    "method",
    "content_hash",
    "certification_id",
    "valid_begin",
    "valid_end",
    "exposure_begin",
    "exposure_end",
    "ambiguous_versions",
)


def check_exposure_ids(values: Iterable[Any]) -> list[int]:
    """Return the ids as ``int``, duplicates dropped (first occurrence kept), in order.

    Raises
    ------
    InputError
        For a value that is not an integer (a bool, a float, text) or lies outside BIGINT, or
        for more than :data:`MAX_EXPOSURES` distinct ids.
    """
    out: dict[int, None] = {}
    for position, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InputError(
                "lookup",
                f"exposure id #{position + 1} is not an integer: {str(value)[:40]!r}",
                field="exposures",
            )
        value = int(value)
        if not INT64_MIN <= value <= INT64_MAX:
            raise InputError(
                "lookup",
                f"exposure id {value} is outside the 64-bit range of exposure ids",
                field="exposures",
            )
        out[value] = None
        if len(out) > MAX_EXPOSURES:
            raise InputError(
                "lookup",
                f"more than {MAX_EXPOSURES:,} exposure ids in one lookup: split the list",
                field="exposures",
            )
    return list(out)


def _day_range(day_obs: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if day_obs is None:
        return None
    lo, hi = day_obs if isinstance(day_obs, tuple) else (day_obs, day_obs)
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise InputError("lookup", f"day_obs must be an integer, got {v!r}", field="day_obs")
        if not 0 <= v <= 2**31 - 1:
            raise InputError("lookup", f"day_obs {v} is out of range", field="day_obs")
    if hi < lo:
        raise InputError("lookup", f"empty day_obs range {lo}..{hi}", field="day_obs")
    return int(lo), int(hi)


def _id_range(exposure_range: tuple[int, int] | None) -> tuple[int, int] | None:
    if exposure_range is None:
        return None
    lo, hi = check_exposure_ids([exposure_range[0]])[0], check_exposure_ids([exposure_range[1]])[0]
    if hi < lo:
        raise InputError("lookup", f"empty exposure range {lo}-{hi}", field="exposures")
    return lo, hi


_ACTIVE_NOW = "c.decertified_at IS NULL"
_ACTIVE_AS_OF = (
    "c.certified_at <= :as_of AND (c.decertified_at IS NULL OR c.decertified_at > :as_of)"
)


def _statement(source: str, active: str, *, lateral: bool) -> str:
    """Return the one bulk statement, over the requested exposures ``req(exposure_id)``.

    ``lateral`` (PostgreSQL) writes the ranges beginning inside each span as a LATERAL
    subquery (OFFSET 0 keeps the planner from flattening it): an index probe per exposure,
    where a plain join is planned as a hash join on the filter that compares every exposure
    with every range.
    """
    probe = "c.tag_id = :tag AND c.instrument_id = :inst AND c.physical_filter = ex.physical_filter"
    within = "c.valid_begin >= ex.span_begin AND c.valid_begin < ex.span_end"
    if lateral:
        inside = (
            "SELECT ex.*, c.id AS cert_id FROM ex CROSS JOIN LATERAL ("
            f"SELECT c.id FROM certification c WHERE {probe} AND {within} AND {active} OFFSET 0) c"
        )
    else:
        inside = (
            f"SELECT ex.*, c.id AS cert_id FROM ex JOIN certification c ON {probe} AND {within} "
            f"AND {active}"
        )
    return f"""
WITH req AS ({source}),
ex AS (
  SELECT r.exposure_id, e.id AS found, e.physical_filter, e.timespan_begin AS span_begin,
         e.timespan_end AS span_end_raw,
         CASE WHEN e.timespan_end IS NULL OR e.timespan_end <= e.timespan_begin
              THEN e.timespan_begin + 1 ELSE e.timespan_end END AS span_end
  FROM req r LEFT JOIN exposure e ON e.instrument_id = :inst AND e.id = r.exposure_id
),
hit AS (
  {inside}
  UNION ALL
  SELECT ex.*, (
      SELECT c.id FROM certification c
      WHERE {probe} AND c.valid_begin < ex.span_begin AND {active}
      ORDER BY c.valid_begin DESC LIMIT 1) AS cert_id
  FROM ex
  UNION ALL
  SELECT ex.*, c.id AS cert_id FROM ex JOIN certification c
    ON {probe} AND c.valid_begin IS NULL AND {active}
  WHERE ex.span_begin IS NOT NULL
)
SELECT h.exposure_id, h.found, h.physical_filter, h.span_begin, h.span_end_raw, h.span_end,
       c.id AS certification_id, c.version_id, c.valid_begin, c.valid_end,
       v.seq, v.level, v.method, v.content_hash
FROM hit h
LEFT JOIN certification c ON c.id = h.cert_id
     AND (c.valid_end IS NULL OR c.valid_end > h.span_begin)
LEFT JOIN calibration_version v ON v.id = c.version_id
"""


def _statement_pg_active(source: str) -> str:
    """Return the PostgreSQL statement for the tag as it stands: one GiST probe per exposure.

    The exclusion constraint's index (migration 0003: ``tag_id, instrument_id, physical_filter,
    int8range(valid_begin, valid_end)`` over active rows) answers "the active ranges that
    overlap this span" directly, whatever the table's statistics say.
    """
    return f"""
WITH req AS ({source}),
ex AS (
  SELECT r.exposure_id, e.id AS found, e.physical_filter, e.timespan_begin AS span_begin,
         e.timespan_end AS span_end_raw,
         CASE WHEN e.timespan_end IS NULL OR e.timespan_end <= e.timespan_begin
              THEN e.timespan_begin + 1 ELSE e.timespan_end END AS span_end
  FROM req r LEFT JOIN exposure e ON e.instrument_id = :inst AND e.id = r.exposure_id
)
SELECT ex.exposure_id, ex.found, ex.physical_filter, ex.span_begin, ex.span_end_raw,
       ex.span_end, c.id AS certification_id, c.version_id, c.valid_begin, c.valid_end,
       v.seq, v.level, v.method, v.content_hash
FROM ex
LEFT JOIN LATERAL (
  SELECT c.id, c.version_id, c.valid_begin, c.valid_end FROM certification c
  WHERE ex.span_begin IS NOT NULL AND c.tag_id = :tag AND c.instrument_id = :inst
    AND c.physical_filter = ex.physical_filter AND c.decertified_at IS NULL
    AND int8range(c.valid_begin, c.valid_end) && int8range(ex.span_begin, ex.span_end)
  OFFSET 0) c ON true
LEFT JOIN calibration_version v ON v.id = c.version_id
"""


def bulk_statement(
    dialect: str, *, by: str, as_of: dt.datetime | None = None
) -> Any:  # a TextClause
    """Return the bulk lookup statement for ``by`` = ``ids``, ``day_obs`` or ``range``.

    Bind parameters: ``tag``, ``inst``, ``as_of`` (when given) and, per ``by``: ``ids`` (a
    list on PostgreSQL, a JSON array on SQLite), ``day_lo``/``day_hi`` or ``id_lo``/``id_hi``.
    Exposed for the benchmark, which times the plain statement as its floor.
    """
    if by == "ids":
        source = (
            "SELECT DISTINCT unnest(CAST(:ids AS BIGINT[])) AS exposure_id"
            if dialect == "postgresql"
            else "SELECT DISTINCT CAST(value AS INTEGER) AS exposure_id FROM json_each(:ids)"
        )
    elif by == "day_obs":
        source = (
            "SELECT id AS exposure_id FROM exposure WHERE instrument_id = :inst "
            "AND day_obs BETWEEN :day_lo AND :day_hi"
        )
    elif by == "range":
        source = (
            "SELECT id AS exposure_id FROM exposure WHERE instrument_id = :inst "
            "AND id BETWEEN :id_lo AND :id_hi"
        )
    else:  # pragma: no cover - internal
        raise ValueError(by)
    if dialect == "postgresql" and as_of is None:
        stmt = text(_statement_pg_active(source))
    else:
        active = _ACTIVE_NOW if as_of is None else _ACTIVE_AS_OF
        stmt = text(_statement(source, active, lateral=dialect == "postgresql"))
    params = [bindparam("tag", type_=Integer()), bindparam("inst", type_=Integer())]
    if as_of is not None:
        params.append(bindparam("as_of", type_=UTCDateTime()))
    if by == "range":
        params += [bindparam("id_lo", type_=BigInteger()), bindparam("id_hi", type_=BigInteger())]
    return stmt.bindparams(*params)


def bind_ids(dialect: str, ids: list[int]) -> Any:
    """Return the ``ids`` parameter as the dialect's statement reads it."""
    if dialect == "postgresql":
        return ids
    return "[" + ",".join(map(str, ids)) + "]"


def lookup_many(
    conn: Connection,
    instrument: str,
    tag: str,
    *,
    exposures: Iterable[Any] | None = None,
    day_obs: int | tuple[int, int] | None = None,
    exposure_range: tuple[int, int] | None = None,
    as_of: dt.datetime | None = None,
) -> pd.DataFrame:
    """Return the version certified in ``tag`` for each exposure (see the module docs).

    Give exactly one selection: ``exposures`` (ids; duplicates answered once, in the order
    first given), ``day_obs`` (one day or an inclusive ``(first, last)`` pair) or
    ``exposure_range`` (inclusive ``(first, last)`` ids). Range selections answer the
    exposures that exist, in id order.

    Returns
    -------
    pandas.DataFrame
        One row per exposure, columns :data:`COLUMNS`.

    Raises
    ------
    NotFoundError
        For an unknown instrument or tag.
    InputError
        For no or several selections, a non-integer or out-of-range id, more than
        :data:`MAX_EXPOSURES` ids, or an empty range.
    """
    import pandas as pd

    given = [s is not None for s in (exposures, day_obs, exposure_range)]
    if sum(given) != 1:
        raise InputError(
            "lookup",
            "give exactly one of exposures, day_obs or an exposure range",
            field="exposures",
        )
    ids = None if exposures is None else check_exposure_ids(exposures)
    days = _day_range(day_obs)
    id_range = _id_range(exposure_range)
    inst = instrument_id(conn, instrument)
    tag_id = conn.execute(select(Tag.id).where(Tag.name == tag)).scalar_one_or_none()
    if tag_id is None:
        raise NotFoundError(f"no tag {tag!r}")
    if ids is not None and not ids:
        return _empty()
    dialect = conn.dialect.name
    params: dict[str, Any] = {"tag": tag_id, "inst": inst}
    if as_of is not None:
        params["as_of"] = as_of
    if ids is not None:
        by = "ids"
        params["ids"] = bind_ids(dialect, ids)
    elif days is not None:
        by = "day_obs"
        params["day_lo"], params["day_hi"] = days
    else:
        by = "range"
        assert id_range is not None
        params["id_lo"], params["id_hi"] = id_range
    if dialect == "postgresql":
        # The plan is index probes per exposure; its cost estimate would trigger JIT
        # compilation, which alone takes longer (~25 ms) than running it.
        conn.execute(text("SET LOCAL jit = off"))
    result = conn.execute(bulk_statement(dialect, by=by, as_of=as_of), params)
    names = list(result.keys())
    rows = result.fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    frame = pd.DataFrame(
        {
            name: pd.array(col, dtype="Int64")
            if name in _INT_COLUMNS
            else np.array(col, dtype=object)
            for name, col in zip(names, columns, strict=True)
        }
    )
    order = ids if ids is not None else None
    return _answers(frame, order)


def _empty() -> pd.DataFrame:
    import pandas as pd

    return _typed(pd.DataFrame({c: [] for c in COLUMNS}))


def _typed(out: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    for col in (
        "exposure",
        "version_id",
        "seq",
        "certification_id",
        "valid_begin",
        "valid_end",
        "exposure_begin",
        "exposure_end",
    ):
        out[col] = pd.array(out[col], dtype="Int64") if len(out) else pd.array([], dtype="Int64")
    for col in ("status", "physical_filter", "level", "method", "content_hash"):
        out[col] = out[col].astype(object)
    out["ambiguous_versions"] = out["ambiguous_versions"].astype(object)
    return out[list(COLUMNS)].reset_index(drop=True)


#: Integer columns of the statement's rows (TAI ns need all 64 bits: never through float).
_INT_COLUMNS = (
    "exposure_id",
    "found",
    "span_begin",
    "span_end",
    "certification_id",
    "version_id",
    "valid_begin",
    "valid_end",
    "seq",
)


def _answers(rows: pd.DataFrame, order: list[int] | None) -> pd.DataFrame:
    """Fold the statement's rows (one per exposure and candidate range) into one answer each."""
    import pandas as pd

    if rows.empty:
        return _empty()
    begin_key = rows["valid_begin"].fillna(INT64_MIN)
    rows = rows.assign(_begin_key=begin_key).sort_values(
        ["exposure_id", "_begin_key"], kind="stable"
    )
    with_cert = rows[rows["certification_id"].notna()]
    n_versions = with_cert.groupby("exposure_id")["version_id"].nunique()
    first = rows.drop_duplicates("exposure_id", keep="first").set_index("exposure_id")
    chosen = with_cert.drop_duplicates("exposure_id", keep="first").set_index("exposure_id")
    out = pd.DataFrame(index=first.index)
    out["exposure"] = first.index
    out["physical_filter"] = first["physical_filter"]
    out["exposure_begin"] = first["span_begin"]
    out["exposure_end"] = first["span_end"]
    nver = n_versions.reindex(out.index).fillna(0).astype(int)
    status = np.where(
        first["found"].isna().to_numpy(),
        "unknown_exposure",
        np.where(
            first["span_begin"].isna().to_numpy(),
            "no_timespan",
            np.where(
                nver.to_numpy() == 0,
                "nothing_certified",
                np.where(nver.to_numpy() > 1, "ambiguous", "ok"),
            ),
        ),
    )
    out["status"] = status
    ok = out["status"] == "ok"
    for col in ("version_id", "seq", "level", "method", "content_hash", "certification_id"):
        out[col] = chosen[col].reindex(out.index).where(ok, None)
    for col in ("valid_begin", "valid_end"):
        out[col] = chosen[col].reindex(out.index).where(ok, None)
    out["ambiguous_versions"] = None
    amb = out.index[out["status"] == "ambiguous"]
    if len(amb):
        lists = (
            with_cert[with_cert["exposure_id"].isin(amb)]
            .groupby("exposure_id")["version_id"]
            .agg(lambda s: sorted({int(v) for v in s}))
        )
        out.loc[amb, "ambiguous_versions"] = lists.reindex(amb).to_numpy()
    no_span = out["status"].isin(["unknown_exposure", "no_timespan"])
    out.loc[out["status"] == "unknown_exposure", "physical_filter"] = None
    out.loc[no_span, "exposure_end"] = None
    if order is not None:
        out = out.reindex(pd.Index(order, dtype="Int64"))
    return _typed(out.reset_index(drop=True))


__all__ = [
    "COLUMNS",
    "MAX_EXPOSURES",
    "STATUSES",
    "bind_ids",
    "bulk_statement",
    "check_exposure_ids",
    "lookup_many",
]
