"""The read-only HTTP API over a :class:`calibreg.client.Registry` (GitHub issue #5, item 6).

Other services (pipelines, dashboards, cp_pipe wrappers) read calibration versions and ask
"which version is valid here" without a database driver or credentials. The app only *reads*
through the Registry facade, exactly as the CLI does, so both give the same answers; it writes
no SQL and routes no method but GET/HEAD (see :mod:`calibreg.http.middleware`).

Caching follows from the data model: a calibration version is immutable, so its record, scales
and cp_pipe export carry a strong ETag (sha256 of the exact body) and a one-year ``immutable``
Cache-Control, and a matching ``If-None-Match`` gets 304. Listings change whenever a version is
persisted, so they are ``no-cache``. Lookup answers (``/lookup``, ``/lookup/batch``) carry an
ETag derived from the registry's certification generation and a short ``max-age``
(:mod:`calibreg.http.cache`): cached per process, revalidated with one counter read.
Big bodies (a cp_pipe export or scales table past :data:`STREAM_THRESHOLD` values) are streamed
and gzip-compressed for clients that accept it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.middleware.gzip import GZipMiddleware

import calibreg
from calibreg.client import Registry
from calibreg.domain.vocabulary import Level
from calibreg.errors import InputError
from calibreg.formats.timescale import parse_time, parse_wallclock, with_instant_fields
from calibreg.http.cache import LookupCacheMiddleware
from calibreg.http.docs import install_docs
from calibreg.http.encoding import (
    IMMUTABLE,
    JSON_TYPE,
    LOOKUP_MAX_AGE,
    MEDIA_TYPES,
    NO_CACHE,
    TABLE_FORMATS,
    etag_matches,
    fast_records,
    frame_records,
    iter_cp_pipe,
    iter_csv,
    iter_parquet,
    negotiate,
    render_csv,
    render_json,
    render_parquet,
    strong_etag,
)
from calibreg.http.errors import error_response, install_error_handlers
from calibreg.http.middleware import ReadOnlyMiddleware
from calibreg.web import router as web_router

INT64_MAX = 2**63 - 1
#: Page size of ``/versions`` when the client names none, and the most it may ask for.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Values (table cells, or cp_pipe entries) past which a body is streamed instead of built: its
#: ETag then comes from the version's content hash, and it has no Content-Length.
STREAM_THRESHOLD = 1_000_000
#: Bodies at least this long are gzip-compressed for clients that accept it.
GZIP_MINIMUM = 1400
#: zlib level: scales are random-looking floats, so every level gives about 2x; level 1 does it
#: 4x faster than level 5 (a 36 MB cp_pipe body: 1.8 s against 7.7 s on this machine).
GZIP_LEVEL = 1

DESCRIPTION = """\
Read-only access to a calibreg registry: instruments, calibration versions (flat-field
normalization scales), their cp_pipe `outputScales` export, validity lookups and scale history.

* **Time scale.** Query instants (`time`, `as_of`) are ISO-8601 **UTC** (`Z` or an explicit
  offset; no suffix means UTC). Stored instants are TAI nanoseconds since 1970-01-01 TAI.
* **Caching.** Versions are immutable: `/versions/{id}`, `/versions/{id}/scales` and
  `/versions/{id}/cp_pipe` have a strong `ETag` and `Cache-Control: immutable`, and answer
  `304` to a matching `If-None-Match`. Lookups (`/lookup`, `/lookup/batch`) have an `ETag`
  derived from the registry's certification generation (bumped by every certify, decertify
  and exposure write) and `Cache-Control: public, max-age=5`; they answer `304` to a matching
  `If-None-Match`. Everything else is `no-cache`.
* **Read-only.** Every method but GET/HEAD is 405, except `POST /lookup/batch`: a query whose
  exposure list travels in the body; it writes nothing.
* **Big bodies** are streamed, and gzip-compressed when the client sends
  `Accept-Encoding: gzip`.
* **Errors** are always `{"error": {"code", "message", "details"?}}`; unknown ids are 404, bad
  parameters 422, and any method other than GET/HEAD is 405.
* **NaN** (no valid measurement) is `null` in JSON, an empty cell in CSV and null in Parquet.
"""

TAGS = [
    {"name": "service", "description": "Liveness and the schema revision being served."},
    {"name": "inputs", "description": "What has been ingested."},
    {"name": "versions", "description": "Immutable calibration versions and their scales."},
    {"name": "lookup", "description": "Which version is certified for a given time or exposure."},
]


# --------------------------------------------------------------------------- documentation


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: int = Field(description="The HTTP status code, repeated for clients that lose it.")
    message: str = Field(description="One line a person can act on.")
    details: list[Any] | None = Field(
        default=None, description="Per-parameter problems (422 only), FastAPI's `loc`/`msg`."
    )


class ErrorBody(BaseModel):
    """The body of every non-2xx response."""

    error: ErrorDetail


class Health(BaseModel):
    """Service liveness."""

    status: Literal["ok"]
    schema_revision: str | None = Field(description="Alembic revision of the database.")
    version: str = Field(description="calibreg software version.")
    backend: str = Field(description="Database backend: sqlite or postgresql.")


class Items(BaseModel):
    """A list of records."""

    items: list[dict[str, Any]]


class VersionPage(Items):
    """One page of versions, oldest first."""

    limit: int
    offset: int
    has_more: bool = Field(description="Whether another page follows.")
    next_offset: int | None = Field(description="`offset` of the next page, if any.")


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown version, instrument, detector or tag."},
    422: {"model": ErrorBody, "description": "Invalid parameters."},
}
TABLE_CONTENT = {
    "application/json": {},
    "text/csv": {"schema": {"type": "string"}},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
}


# --------------------------------------------------------------------------- helpers


async def get_registry(request: Request) -> Registry:
    """Return the Registry the app was created with (a dependency, so tests can override it).

    ``async``: FastAPI runs a plain ``def`` dependency on a worker thread, one more thread
    hop per request.
    """
    return request.app.state.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]
VersionId = Annotated[int, Path(ge=1, le=INT64_MAX, description="Global version id.")]
FilterParam = Annotated[str, Query(alias="filter", description="Physical filter name.")]


def _mutable(value: Any) -> Response:
    """Return a JSON response that caches must revalidate (it changes as the registry grows)."""
    return Response(render_json(value), media_type=JSON_TYPE, headers={"Cache-Control": NO_CACHE})


def _immutable(
    request: Request,
    body: bytes,
    media_type: str,
    *,
    vary: str | None = None,
    filename: str | None = None,
) -> Response:
    """Return an immutable representation with its strong ETag (304 when the client has it)."""
    etag = strong_etag(body)
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if vary:
        headers["Vary"] = vary
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if filename:
        headers["Content-Disposition"] = f'inline; filename="{filename}"'
    return Response(body, media_type=media_type, headers=headers)


def _require(registry: Registry, method: str) -> Any:
    """Return a Registry method that newer calibreg releases provide (501 until this one does)."""
    return getattr(registry, method, None)


def _scales_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Give the scale columns stable dtypes, so CSV/Parquet do not depend on which rows exist."""
    frame = frame.copy()
    if "amp_index" in frame.columns:
        frame["amp_index"] = pd.array(
            [None if v is None or pd.isna(v) else int(v) for v in frame["amp_index"]],
            dtype="Int64",
        )
    if "amp" in frame.columns:
        frame["amp"] = frame["amp"].astype("string")
    for col in ("scale", "error", "rms", "rms_dof", "chi2", "dof", "reduced_chi2", "residual"):
        if col in frame.columns:
            frame[col] = frame[col].astype(float)
    for col in ("flags", "row", "exp_index", "detector", "exposure"):
        if col in frame.columns:
            frame[col] = frame[col].astype("Int64")
    for col in ("flag_names", "reason", "detector_name"):
        if col in frame.columns:
            frame[col] = frame[col].astype("string")
    return frame


def _streamed(
    request: Request,
    chunks: Any,
    media_type: str,
    *,
    etag: str,
    vary: str | None = None,
    filename: str | None = None,
) -> Response:
    """Return an immutable body sent as it is encoded (ETag from the version's content hash)."""
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if vary:
        headers["Vary"] = vary
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if filename:
        headers["Content-Disposition"] = f'inline; filename="{filename}"'
    return StreamingResponse(chunks, media_type=media_type, headers=headers)


def _table_response(
    request: Request,
    frame: pd.DataFrame,
    fmt: str | None,
    envelope: dict[str, Any],
    name: str,
    content_hash: str | None = None,
) -> Response:
    """Render a table as JSON (``envelope`` + ``items``), CSV or Parquet, immutable.

    A CSV or Parquet table past :data:`STREAM_THRESHOLD` cells is streamed when the version's
    ``content_hash`` is given (it names the bytes instead of their sha256).
    """
    chosen = fmt or negotiate(request.headers.get("accept"))
    if chosen is None:
        return error_response(
            406,
            "no acceptable representation: ask for application/json, text/csv or "
            "application/vnd.apache.parquet (or use ?format=)",
        )
    frame = _scales_frame(frame)
    if frame.size > STREAM_THRESHOLD and chosen in ("csv", "parquet") and content_hash:
        return _streamed(
            request,
            iter_csv(frame) if chosen == "csv" else iter_parquet(frame),
            MEDIA_TYPES[chosen],
            etag=f'"{name}-{chosen}-{content_hash}-{calibreg.__version__}"',
            vary="Accept",
            filename=f"{name}.{chosen}",
        )
    if chosen == "json":
        body = render_json({**envelope, "items": frame_records(frame)})
    elif chosen == "csv":
        body = render_csv(frame)
    else:
        body = render_parquet(frame)
    assert chosen in TABLE_FORMATS
    return _immutable(
        request,
        body,
        MEDIA_TYPES[chosen],
        vary="Accept",
        filename=None if chosen == "json" else f"{name}.{chosen}",
    )


# --------------------------------------------------------------------------- routes


async def strict_query(request: Request) -> None:
    """Refuse query parameters the route does not know, or gives twice (422, one line).

    Without it ``/versions?physical_filter=nope`` would silently list everything and a
    repeated ``exposure=`` would use the last value. ``async`` (it reads nothing): FastAPI runs
    a plain ``def`` dependency on a worker thread, a hop per request.
    """
    route = request.scope.get("route")
    known = _known_query(route)
    if known is None:
        return
    keys = [k for k, _ in request.query_params.multi_items()]
    unknown = sorted({k for k in keys if k not in known})
    if unknown:
        raise InputError(
            "query",
            f"unknown parameter(s) {', '.join(unknown)}; this endpoint takes "
            f"{', '.join(sorted(known)) or 'none'}",
            field=unknown[0],
        )
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise InputError(
            "query", f"parameter(s) given more than once: {', '.join(repeated)}", field=repeated[0]
        )


def _known_query(route: Any) -> frozenset[str] | None:
    """Return the query parameters ``route`` takes (its own and its dependencies'), once."""
    known = getattr(route, "_calibreg_known_query", None)
    if known is not None:
        return known
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    names: set[str] = set()
    todo = [dependant]
    while todo:
        dep = todo.pop()
        names.update(p.alias for p in dep.query_params)
        todo.extend(dep.dependencies)
    known = frozenset(names)
    route._calibreg_known_query = known
    return known


router = APIRouter(dependencies=[Depends(strict_query)])


@router.get(
    "/health",
    tags=["service"],
    summary="Service health",
    response_model=Health,
    responses={503: {"model": ErrorBody, "description": "The database cannot be read."}},
)
def health(registry: RegistryDep) -> Response:
    """Whether the service can read its database, and which schema revision it serves."""
    try:
        revision = registry.schema_revision()
    except Exception as err:  # any failure means "unhealthy", said in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return error_response(503, f"database unavailable: {first}")
    return _mutable(
        {
            "status": "ok",
            "schema_revision": revision,
            "version": calibreg.__version__,
            "backend": registry.backend,
        }
    )


@router.get(
    "/instruments",
    tags=["inputs"],
    summary="Instruments",
    response_model=Items,
)
def instruments(registry: RegistryDep) -> Response:
    """Every instrument with its detector, amplifier and exposure counts."""
    return _mutable({"items": frame_records(registry.instruments())})


@router.get(
    "/versions",
    tags=["versions"],
    summary="List calibration versions",
    response_model=VersionPage,
    responses=ERRORS,
)
def list_versions(
    registry: RegistryDep,
    instrument: Annotated[str | None, Query(description="Instrument name.")] = None,
    physical_filter: Annotated[
        str | None, Query(alias="filter", description="Physical filter name.")
    ] = None,
    level: Annotated[
        str | None,
        Query(
            description=f"Row granularity of the solve: {', '.join(Level.values())} (any case).",
            max_length=32,
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Page size (at most 1000).")
    ] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX, description="Versions to skip.")] = 0,
) -> Response:
    """Versions oldest first, filtered and paginated.

    One extra row is read to tell whether another page follows, so a client can page without a
    separate count query.
    """
    frame = registry.versions(
        instrument=instrument,
        physical_filter=physical_filter,
        level=None if level is None else Level.parse(level, source="query").value,
        limit=limit + 1,
        offset=offset,
    )
    has_more = len(frame) > limit
    return _mutable(
        {
            "items": frame_records(frame.iloc[:limit]),
            "limit": limit,
            "offset": offset,
            "has_more": has_more,
            "next_offset": offset + limit if has_more else None,
        }
    )


@router.get(
    "/versions/{version_id}",
    tags=["versions"],
    summary="One calibration version",
    response_model=dict[str, Any],
    responses={**ERRORS, 304: {"description": "Not modified (If-None-Match matched)."}},
)
def get_version(request: Request, registry: RegistryDep, version_id: VersionId) -> Response:
    """Return a version's full record.

    Quantum and selection, config, provenance, diagnostics and task metadata (instants as
    ISO-8601 UTC, NaN as null). Immutable: strong ETag, cacheable forever.
    """
    return _immutable(request, render_json(registry.version(version_id)), JSON_TYPE)


@router.get(
    "/versions/{version_id}/scales",
    tags=["versions"],
    summary="A version's scales (JSON, CSV or Parquet)",
    responses={
        200: {"content": TABLE_CONTENT, "description": "The scales table."},
        304: {"description": "Not modified (If-None-Match matched)."},
        406: {"model": ErrorBody, "description": "No acceptable representation."},
        **ERRORS,
    },
)
def get_scales(
    request: Request,
    registry: RegistryDep,
    version_id: VersionId,
    kind: Annotated[
        Literal["row", "exposure"],
        Query(description="`row`: G per detector/amplifier; `exposure`: E per exposure."),
    ] = "row",
    fmt: Annotated[
        Literal["json", "csv", "parquet"] | None,
        Query(alias="format", description="Overrides the Accept header."),
    ] = None,
) -> Response:
    """Return a version's per-row (``kind=row``) or per-exposure (``kind=exposure``) scales.

    The representation is chosen by ``?format=`` or else by ``Accept``: ``application/json``
    (default), ``text/csv``, ``application/vnd.apache.parquet`` or ``application/x-parquet``.
    """
    frame = registry.scales(version_id, kind=kind)
    content_hash = None
    if frame.size > STREAM_THRESHOLD:
        content_hash = registry.version(version_id).get("content_hash")
    return _table_response(
        request,
        frame,
        fmt,
        {"version": version_id, "kind": kind},
        f"version-{version_id}-{kind}-scales",
        content_hash,
    )


@router.get(
    "/versions/{version_id}/rejected",
    tags=["versions"],
    summary="The entries a version's robust fit rejected (JSON, CSV or Parquet)",
    responses={
        200: {"content": TABLE_CONTENT, "description": "One row per rejected entry."},
        304: {"description": "Not modified (If-None-Match matched)."},
        406: {"model": ErrorBody, "description": "No acceptable representation."},
        **ERRORS,
    },
)
def get_rejected(
    request: Request,
    registry: RegistryDep,
    version_id: VersionId,
    fmt: Annotated[
        Literal["json", "csv", "parquet"] | None,
        Query(alias="format", description="Overrides the Accept header."),
    ] = None,
) -> Response:
    """Return the valid entries the robust fit rejected: row, exposure, log residual, reason.

    Empty for the ``exact`` and ``alternating`` methods (they reject nothing). Entries that
    could not be used at all are not here: the version's ``n_missing`` counts them and its
    provenance gives them by reason.
    """
    return _table_response(
        request,
        registry.rejected(version_id),
        fmt,
        {"version": version_id},
        f"version-{version_id}-rejected",
    )


@router.get(
    "/quality-flags",
    tags=["versions"],
    summary="The quality flags a row or exposure of a version may carry",
    response_model=dict[str, Any],
)
def quality_flags() -> Response:
    """Return each flag's bit (in the ``flags`` bitmask of the scales), name and meaning."""
    from calibreg.domain.quality import EXPOSURE_FLAGS, FLAG_BITS, FLAG_HELP, ROW_FLAGS

    return _mutable(
        {
            "items": [
                {
                    "name": name,
                    "bit": bit.bit_length() - 1,
                    "value": bit,
                    "rows": name in ROW_FLAGS,
                    "exposures": name in EXPOSURE_FLAGS,
                    "description": FLAG_HELP[name],
                }
                for name, bit in FLAG_BITS.items()
            ]
        }
    )


@router.get(
    "/versions/{version_id}/cp_pipe",
    tags=["versions"],
    summary="A version as cp_pipe outputScales",
    response_model=dict[str, Any],
    responses={
        **ERRORS,
        304: {"description": "Not modified (If-None-Match matched)."},
        501: {"model": ErrorBody, "description": "This registry cannot export cp_pipe yet."},
    },
)
def get_cp_pipe(request: Request, registry: RegistryDep, version_id: VersionId) -> Response:
    """Return the version in cp_pipe's structure.

    What ``CpFlatNormalizationTask.run`` returns as ``outputScales`` (SPEC §5):
    ``{"expScale": {det: {amp: {exposure: E}}}, "detScale": {det: G or {amp: G}}}``.

    JSON object keys are strings, so detector and exposure ids arrive as ``"12"``; convert them
    back to ``int`` before handing the structure to cp_pipe.
    """
    export = _require(registry, "cp_pipe")
    if export is None:
        return error_response(501, "this calibreg registry cannot export cp_pipe scales yet")
    structure = export(version_id)
    entries = sum(len(per) for amps in structure["expScale"].values() for per in amps.values())
    if entries > STREAM_THRESHOLD:
        record = registry.version(version_id)
        return _streamed(
            request,
            iter_cp_pipe(structure),
            JSON_TYPE,
            etag=f'"version-{version_id}-cp_pipe-{record.get("content_hash")}-{calibreg.__version__}"',
        )
    return _immutable(request, render_json(structure), JSON_TYPE)


@router.get(
    "/lookup",
    tags=["lookup"],
    summary="The version certified for a time or an exposure",
    response_model=dict[str, Any],
    responses={**ERRORS, 501: {"model": ErrorBody, "description": "No lookup support yet."}},
)
async def lookup(
    registry: RegistryDep,
    instrument: Annotated[str, Query(description="Instrument name.")],
    tag: Annotated[str, Query(description="Certification tag, e.g. flat-norm/recommended.")],
    physical_filter: Annotated[
        str | None,
        Query(alias="filter", description="Physical filter (optional with `exposure`)."),
    ] = None,
    time: Annotated[
        str | None, Query(description="ISO-8601 UTC instant (exclusive with `exposure`).")
    ] = None,
    exposure: Annotated[
        int | None,
        Query(
            ge=-INT64_MAX - 1,
            le=INT64_MAX,
            description="Exposure id whose whole timespan is matched (409 if it crosses a "
            "boundary between versions).",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        Query(description="ISO-8601 UTC: answer as the registry stood at this instant."),
    ] = None,
    explain: Annotated[bool, Query(description="Also say why this version was chosen.")] = False,
) -> Response:
    """Find the version valid for ``instrument``/``filter`` at ``time`` in ``tag``.

    Or at the start of ``exposure``, whose filter is then implied. 404 when nothing is certified
    there; with ``explain=true`` the 404's ``details`` list the certifications considered.
    """
    if (time is None) == (exposure is None):
        raise InputError("query", "give exactly one of time or exposure", field="time")
    time_tai_ns = None if time is None else parse_time(time, field="time", source="query")
    as_of_dt = None if as_of is None else parse_wallclock(as_of, field="as_of", source="query")
    find = _require(registry, "lookup")
    if find is None:
        return error_response(501, "this calibreg registry cannot answer lookups yet")
    # A time lookup the validity index holds is answered here, in the event loop (no thread
    # hop); anything that reads the database runs on a worker thread.
    in_memory = getattr(registry, "lookup_in_memory", None)
    result = None
    if in_memory is not None and as_of_dt is None and not explain:
        result = in_memory(instrument, physical_filter, tag, time_tai_ns=time_tai_ns)
    if result is None:
        result = await run_in_threadpool(
            functools.partial(
                find,
                instrument,
                physical_filter,
                tag,
                time_tai_ns=time_tai_ns,
                exposure=exposure,
                as_of=as_of_dt,
                explain=explain,
            )
        )
    result = with_instant_fields(result, "time_tai_ns")
    result["certification"] = with_instant_fields(
        result["certification"], "valid_begin", "valid_end"
    )
    if "exposure_timespan" in result:
        begin, end = result.pop("exposure_timespan")
        result.update(
            with_instant_fields(
                {"exposure_begin": begin, "exposure_end": end}, "exposure_begin", "exposure_end"
            )
        )
    return _mutable(result)


BATCH_FORMATS = ("json", "csv")
BatchFormat = Annotated[
    Literal["json", "csv"] | None,
    Query(alias="format", description="`json` (default) or `csv`; overrides Accept."),
]


def _batch_response(
    request: Request,
    frame: pd.DataFrame,
    fmt: str | None,
    envelope: dict[str, Any],
) -> Response:
    """Render a bulk lookup as JSON (``envelope``, ``counts`` and ``items``) or CSV."""
    chosen = fmt or negotiate(request.headers.get("accept"))
    if chosen not in BATCH_FORMATS:
        return error_response(
            406, "no acceptable representation: ask for application/json or text/csv"
        )
    headers = {"Cache-Control": NO_CACHE, "Vary": "Accept"}
    if chosen == "csv":
        out = frame.copy()
        out["ambiguous_versions"] = [
            None if v is None else " ".join(map(str, v)) for v in out["ambiguous_versions"]
        ]
        return Response(render_csv(out), media_type=MEDIA_TYPES["csv"], headers=headers)
    counts = {k: int(v) for k, v in frame["status"].value_counts().items()}
    body = render_json({**envelope, "n": len(frame), "counts": counts})[:-1]
    items = orjson.dumps(fast_records(frame))
    return Response(body + b',"items":' + items + b"}", media_type=JSON_TYPE, headers=headers)


BATCH_DOC = """Each item: `exposure`, `status` (`ok`, `unknown_exposure`, `no_timespan`,
`nothing_certified`, `ambiguous`), `physical_filter`, `version_id`, `seq`, `level`, `method`,
`content_hash`, `certification_id`, `valid_begin`/`valid_end` (TAI ns, null = unbounded),
`exposure_begin`/`exposure_end` (the span matched, TAI ns) and `ambiguous_versions`. The answer
for each exposure is the one `GET /lookup?exposure=` gives, as a status instead of an error."""


@router.get(
    "/lookup/batch",
    tags=["lookup"],
    summary="The versions certified for a day_obs or exposure range",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}, **ERRORS},
    description="Select by `day_obs` (to `day_obs_end`, inclusive) or by `exposure_min`.."
    "`exposure_max`. One query answers all.\n\n" + BATCH_DOC,
)
def lookup_batch_get(
    request: Request,
    registry: RegistryDep,
    instrument: Annotated[str, Query(description="Instrument name.")],
    tag: Annotated[str, Query(description="Certification tag.")],
    day_obs: Annotated[
        int | None, Query(ge=0, le=2**31 - 1, description="Observing day (YYYYMMDD).")
    ] = None,
    day_obs_end: Annotated[
        int | None, Query(ge=0, le=2**31 - 1, description="Last day of a range (inclusive).")
    ] = None,
    exposure_min: Annotated[
        int | None, Query(ge=-INT64_MAX - 1, le=INT64_MAX, description="First exposure id.")
    ] = None,
    exposure_max: Annotated[
        int | None, Query(ge=-INT64_MAX - 1, le=INT64_MAX, description="Last exposure id.")
    ] = None,
    as_of: Annotated[
        str | None, Query(description="ISO-8601 UTC: answer as the tag stood then.")
    ] = None,
    fmt: BatchFormat = None,
) -> Response:
    """Return the version certified in ``tag`` for every exposure of a day or id range."""
    if day_obs_end is not None and day_obs is None:
        raise InputError("query", "day_obs_end needs day_obs", field="day_obs_end")
    if (exposure_min is None) != (exposure_max is None):
        raise InputError("query", "give both exposure_min and exposure_max", field="exposure_min")
    if (day_obs is None) == (exposure_min is None):
        raise InputError(
            "query", "give day_obs or exposure_min/exposure_max (one of them)", field="day_obs"
        )
    when = None if as_of is None else parse_wallclock(as_of, field="as_of", source="query")
    frame = registry.lookup_many(
        instrument,
        tag,
        day_obs=None if day_obs is None else (day_obs, day_obs_end or day_obs),
        exposure_range=None if exposure_min is None else (exposure_min, exposure_max),
        as_of=when,
    )
    return _batch_response(
        request, frame, fmt, {"instrument": instrument, "tag": tag, "as_of": as_of}
    )


BATCH_BODY = {
    "type": "object",
    "required": ["instrument", "tag", "exposures"],
    "additionalProperties": False,
    "properties": {
        "instrument": {"type": "string"},
        "tag": {"type": "string"},
        "exposures": {
            "type": "array",
            "items": {"type": "integer"},
            "maxItems": 100_000,
            "description": "Exposure ids (duplicates are answered once, in first order).",
        },
        "as_of": {"type": ["string", "null"], "description": "ISO-8601 UTC."},
    },
}


def _batch_body(raw: bytes) -> dict[str, Any]:
    """Parse and check the POST body (one line per problem, 422)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InputError("body", f"the body is not JSON: {err}", field="body") from None
    if not isinstance(doc, dict):
        raise InputError("body", "the body must be a JSON object", field="body")
    unknown = sorted(set(doc) - set(BATCH_BODY["properties"]))
    if unknown:
        raise InputError(
            "body",
            f"unknown field(s) {', '.join(map(str, unknown))[:200]}; the body takes "
            "instrument, tag, exposures and as_of",
            field=str(unknown[0])[:60],
        )
    for name in ("instrument", "tag"):
        if not isinstance(doc.get(name), str):
            raise InputError("body", f"{name} must be given, as text", field=name)
    if not isinstance(doc.get("exposures"), list):
        raise InputError("body", "exposures must be a list of exposure ids", field="exposures")
    if doc.get("as_of") is not None and not isinstance(doc["as_of"], str):
        raise InputError("body", "as_of must be ISO-8601 text", field="as_of")
    return doc


@router.post(
    "/lookup/batch",
    tags=["lookup"],
    summary="The versions certified for a list of exposures (read-only query)",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}, **ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BATCH_BODY}},
        }
    },
    description="A query, not a write: POST only carries the id list (10,000 ids do not fit in "
    "a URL). At most 100,000 ids. One query answers all.\n\n" + BATCH_DOC,
)
async def lookup_batch_post(
    request: Request, registry: RegistryDep, fmt: BatchFormat = None
) -> Response:
    """Return the version certified in ``tag`` for each exposure of the body's list."""
    doc = _batch_body(await request.body())
    when = (
        None
        if doc.get("as_of") is None
        else parse_wallclock(doc["as_of"], field="as_of", source="body")
    )
    frame = await run_in_threadpool(
        registry.lookup_many, doc["instrument"], doc["tag"], doc["exposures"], as_of=when
    )
    envelope = {"instrument": doc["instrument"], "tag": doc["tag"], "as_of": doc.get("as_of")}
    return await run_in_threadpool(_batch_response, request, frame, fmt, envelope)


@router.get(
    "/history",
    tags=["versions"],
    summary="One detector's (or amplifier's) scale across versions",
    response_model=Items,
    responses=ERRORS,
)
def history(
    registry: RegistryDep,
    instrument: Annotated[str, Query(description="Instrument name.")],
    physical_filter: FilterParam,
    detector: Annotated[str, Query(description="Detector id or name (e.g. 94 or R22_S11).")],
    amp: Annotated[str | None, Query(description="Amplifier name: use AMP-level versions.")] = None,
) -> Response:
    """Return the row's scale in every version of (instrument, filter), oldest first.

    DETECTOR-level versions without ``amp``, AMP-level ones with it.
    """
    frame = registry.history(
        instrument=instrument, physical_filter=physical_filter, detector=detector, amp=amp
    )
    return _mutable({"items": frame_records(frame)})


# --------------------------------------------------------------------------- factory


#: Threads a worker runs routes on at once: SQLAlchemy's default pool size. More would open
#: overflow connections per request (a PostgreSQL backend started and stopped for each one):
#: measured, p99 of cache-missing lookups at c=16 was ~2 s with anyio's default 40 threads.
ROUTE_THREADS = 5


def create_app(registry: Registry, *, lookup_max_age: int = LOOKUP_MAX_AGE) -> FastAPI:
    """Build the read-only API over ``registry``.

    Parameters
    ----------
    registry
        The registry to read. The app never closes it: whoever created it owns it (the
        ``serve`` entry point, or a test fixture).
    lookup_max_age
        Seconds a lookup answer may be served by a cache without revalidating.

    Returns
    -------
    fastapi.FastAPI
        An ASGI app; run it with uvicorn or drive it with ``fastapi.testclient.TestClient``.
    """

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = ROUTE_THREADS
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="calibreg",
        summary="Read-only API of a flat-field normalization calibration registry.",
        description=DESCRIPTION,
        version=calibreg.__version__,
        openapi_tags=TAGS,
        license_info={"name": "GPL-3.0-or-later", "identifier": "GPL-3.0-or-later"},
        docs_url=None,  # /docs and /redoc come from calibreg.http.docs: no CDN
        redoc_url=None,
    )
    app.state.registry = registry
    install_error_handlers(app)
    app.include_router(router)
    install_docs(app)
    app.include_router(web_router)  # the read-only web view under /ui/ (calibreg.web)
    # Outermost last: read-only guard → gzip → lookup cache → routes. The cache keeps
    # uncompressed bodies; gzip compresses per client.
    watch = getattr(registry, "watch_certification_generation", None)
    generation = watch() if watch is not None else None
    if generation is not None:  # a registry (or a test's stand-in) that counts certifications
        app.add_middleware(LookupCacheMiddleware, generation=generation, max_age=lookup_max_age)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM, compresslevel=GZIP_LEVEL)
    app.add_middleware(ReadOnlyMiddleware)
    return app


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "STREAM_THRESHOLD", "create_app", "get_registry"]
