"""The read-only web view: server-rendered pages under ``/ui/`` over the Registry facade.

Pages (all GET/HEAD; the app's :class:`calibreg.http.middleware.ReadOnlyMiddleware` refuses
anything else):

* ``/ui/``: instruments, tags, the latest versions and a lookup form (with its reasoning);
* ``/ui/versions/{id}``: a version's quantum, fit quality, provenance, focal-plane map of G,
  exposure scales against time and download links to the JSON API;
* ``/ui/compare/{v1}/{v2}``: the ratio map v2/v1 and the largest changes;
* ``/ui/tags/{tag}``: the tag's validity ranges per quantum on a time axis (``?as_of=``);
* ``/ui/history``: one detector's (or amplifier's) scale across versions;
* ``/ui/static/{file}``: the CSS and JavaScript, from the installed package (no CDN).

Every value goes through Jinja2 with autoescape on; data for the scripts travels as JSON in
``<script type="application/json">`` blocks (:func:`calibreg.web.layout.script_json`), and a
Content-Security-Policy allows scripts from this server only. Pages of immutable versions
(version, compare) carry a strong ETag (sha256 of the body) with ``Cache-Control: no-cache``:
a browser revalidates and gets 304 while the page is unchanged. No page shows the database URL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from importlib import resources
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from jinja2 import Environment, PackageLoader, Undefined

import calibreg
from calibreg.client import Registry
from calibreg.errors import (
    AmbiguousLookupError,
    CalibregError,
    ConflictError,
    InputError,
    NotFoundError,
    NothingCertifiedError,
)
from calibreg.formats.timescale import format_instant, parse_time, parse_wallclock
from calibreg.web.layout import focal_plane, script_json, timeline, utc_ms

HTML_TYPE = "text/html; charset=utf-8"
NO_CACHE = "no-cache"
#: Static files: long-lived but revalidated by ETag (they change with the software version).
STATIC_CACHE = "public, max-age=3600"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
#: Scripts and styles from this server only; the page data is JSON, never executed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
#: Versions listed on the home page, newest first.
LATEST = 20
#: Rows of the "largest changes" table of a comparison.
WORST = 20
#: Keys dropped from provenance before it is shown: where the database is, even masked.
PRIVATE_KEYS = frozenset({"database", "url", "database_url", "password"})

_env = Environment(
    loader=PackageLoader("calibreg.web", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _num(value: Any, digits: int = 6) -> str:
    """Format a number for a person: ``digits`` significant digits, ``—`` when missing."""
    if isinstance(value, Undefined):
        return "—"
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    return f"{float(value):.{digits}g}"


def _when(value: Any) -> str:
    """Format a wall-clock ``datetime`` (UTC) or TAI-ns instant for a person."""
    if isinstance(value, str):
        return value
    if (
        isinstance(value, Undefined)
        or value is None
        or (not isinstance(value, dt.datetime) and pd.isna(value))
    ):
        return "—"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = format_instant(int(value)) or "—"
    return text.replace(".000000000Z", "Z")  # exact, without nine zeros


def _json(value: Any) -> str:
    """Write a mapping or list as compact JSON (text; the template escapes it)."""
    import orjson

    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str).decode()


_env.filters["num"] = _num
_env.filters["json"] = _json
_env.filters["when"] = _when
_env.globals["software_version"] = calibreg.__version__

router = APIRouter(prefix="/ui", include_in_schema=False)

VersionId = Annotated[str, Path(max_length=40)]


def _version_id(text: str) -> int:
    """Return a version id from the URL (``InputError``: one line, shown as a 422 page)."""
    if not text.isdigit() or not 1 <= int(text) < 2**63:
        raise InputError("url", f"a version id is a positive integer, not {text[:40]!r}")
    return int(text)


Text = Annotated[str | None, Query(max_length=400)]


def _registry(request: Request) -> Registry:
    return request.app.state.registry


def _status(err: CalibregError) -> int:
    if isinstance(err, NotFoundError):
        return 404
    if isinstance(err, ConflictError):
        return 409
    if isinstance(err, InputError):
        return 422
    return 400


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        **(extra or {}),
    }


def _render(template: str, **context: Any) -> bytes:
    return _env.get_template(template).render(**context).encode()


def _page(
    request: Request, template: str, *, status: int = 200, etag: bool = False, **context: Any
) -> Response:
    """Render a page; with ``etag``, a strong ETag of the body and 304 on a match."""
    registry = _registry(request)
    body = _render(template, backend=registry.backend, **context)
    headers = _headers({"Cache-Control": NO_CACHE})
    if etag and status == 200:
        tag = '"' + hashlib.sha256(body).hexdigest() + '"'
        headers["ETag"] = tag
        match = request.headers.get("if-none-match")
        if match and (match.strip() == "*" or tag in [m.strip() for m in match.split(",")]):
            return Response(status_code=304, headers=headers)
    return Response(body, status_code=status, media_type=HTML_TYPE, headers=headers)


def _error(request: Request, err: CalibregError) -> Response:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return _page(request, "error.html", status=_status(err), title="Error", message=message)


def _blank(value: str | None) -> str | None:
    """Return a form field stripped, ``None`` when empty."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def _private(value: Any) -> Any:
    """Provenance without the database's whereabouts (recursively)."""
    if isinstance(value, dict):
        return {k: _private(v) for k, v in value.items() if str(k).lower() not in PRIVATE_KEYS}
    if isinstance(value, list):
        return [_private(v) for v in value]
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if not isinstance(v, list | dict) and pd.isna(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def _tags(registry: Registry) -> list[str]:
    return sorted({c["tag"] for c in registry.certifications(include_closed=True)})


# --------------------------------------------------------------------------- home


@router.get("/")
def home(
    request: Request,
    instrument: Text = None,
    physical_filter: Annotated[str | None, Query(alias="filter", max_length=400)] = None,
    tag: Text = None,
    time: Text = None,
    exposure: Text = None,
    as_of: Text = None,
) -> Response:
    """Instruments, tags, latest versions and the lookup form (with its answer)."""
    registry = _registry(request)
    form = {
        "instrument": _blank(instrument),
        "filter": _blank(physical_filter),
        "tag": _blank(tag),
        "time": _blank(time),
        "exposure": _blank(exposure),
        "as_of": _blank(as_of),
    }
    asked = any(v is not None for v in form.values())
    answer, problem, considered = None, None, None
    if asked:
        try:
            answer = _lookup(registry, form)
            considered = answer.pop("explain", [])
        except NothingCertifiedError as err:
            problem, considered = str(err), err.considered
        except AmbiguousLookupError as err:
            problem, considered = str(err), err.candidates
        except CalibregError as err:
            problem = str(err).strip().splitlines()[0]
    instruments = registry.instruments()
    versions = registry.versions()
    latest = _records(versions.iloc[::-1].head(LATEST))
    filters = sorted({str(f) for f in versions["physical_filter"].dropna()})
    return _page(
        request,
        "home.html",
        title="calibreg",
        instruments=_records(instruments),
        tags=_tags(registry),
        latest=latest,
        n_versions=len(versions),
        filters=filters,
        form=form,
        asked=asked,
        answer=answer,
        problem=problem,
        considered=considered or [],
    )


def _lookup(registry: Registry, form: dict[str, str | None]) -> dict[str, Any]:
    """Run the form's lookup exactly as ``calibreg lookup --explain`` does."""
    if form["instrument"] is None or form["tag"] is None:
        raise InputError("form", "give an instrument and a tag")
    if (form["time"] is None) == (form["exposure"] is None):
        raise InputError("form", "give exactly one of time or exposure")
    exposure = None
    if form["exposure"] is not None:
        try:
            exposure = int(form["exposure"])
        except ValueError:
            raise InputError(
                "form", f"exposure must be an integer id, not {form['exposure']!r}"
            ) from None
    time_ns = (
        None if form["time"] is None else parse_time(form["time"], field="time", source="form")
    )
    when = None
    if form["as_of"] is not None:
        when = parse_wallclock(form["as_of"], field="as_of", source="form")
    return registry.lookup(
        form["instrument"],
        form["filter"],
        form["tag"],
        time_tai_ns=time_ns,
        exposure=exposure,
        as_of=when,
        explain=True,
    )


# --------------------------------------------------------------------------- version


def _map_payload(
    registry: Registry, instrument: str, rows: pd.DataFrame, values: np.ndarray, label: str
) -> dict[str, Any]:
    dets, amps = registry.geometry(instrument)
    placed = focal_plane(rows, dets, amps)
    amp = rows["amp"] if "amp" in rows.columns else pd.Series([""] * len(rows))
    errors = rows["error"] if "error" in rows.columns else pd.Series([np.nan] * len(rows))
    flag_names = rows["flag_names"] if "flag_names" in rows.columns else None
    return {
        "label": label,
        "placement": placed["placement"],
        "x": placed["x"],
        "y": placed["y"],
        "w": placed["w"],
        "h": placed["h"],
        "det": rows["detector"].to_numpy(np.int64),
        "name": _texts(rows["detector_name"]),
        "amp": _texts(amp),
        "value": np.asarray(values, float),
        "error": errors.to_numpy(float),
        "flags": [""] * len(rows) if flag_names is None else _texts(flag_names),
    }


def _texts(column: pd.Series) -> list[str]:
    """Return a column as text, missing values as ``""``."""
    return column.astype(object).where(column.notna(), "").astype(str).tolist()


def _exposure_payload(
    registry: Registry, instrument: str, exps: pd.DataFrame
) -> tuple[dict[str, Any], int]:
    times = registry.exposure_times(instrument, [int(e) for e in exps["exposure"]])
    begin = dict(zip(times["id"].astype(int), times["timespan_begin"], strict=True))
    x = [utc_ms(begin.get(int(e))) for e in exps["exposure"]]
    flags = _texts(exps["flag_names"])
    return (
        {
            "label": "E",
            "x": x,
            "y": exps["scale"].to_numpy(float),
            "yerr": exps["error"].to_numpy(float),
            "id": exps["exposure"].to_numpy(np.int64),
            "flags": flags,
            "xtime": True,
        },
        sum(v is None for v in x),
    )


@router.get("/versions/{version_id}")
def version_page(request: Request, version_id: VersionId) -> Response:
    """One version: quantum, fit quality, provenance, focal-plane map, exposure scales."""
    registry = _registry(request)
    try:
        version_id = _version_id(version_id)  # type: ignore[assignment]
        record = registry.version(version_id)
        rows = registry.scales(version_id, "row")
        exps = registry.scales(version_id, "exposure")
        fp = _map_payload(registry, record["instrument"], rows, rows["scale"].to_numpy(), "G")
        series, untimed = _exposure_payload(registry, record["instrument"], exps)
    except CalibregError as err:
        return _error(request, err)
    provenance = _private(record.get("provenance") or {})
    diagnostics = provenance.pop("diagnostics", {})
    inputs = provenance.pop("inputs", {})
    started, finished = record.get("started_at"), record.get("finished_at")
    elapsed = (finished - started).total_seconds() if started and finished else None
    flagged = record.get("flagged") or {"rows": [], "exposures": []}
    return _page(
        request,
        "version.html",
        etag=True,
        title=f"Version {version_id}",
        v=record,
        provenance=provenance,
        diagnostics=diagnostics,
        inputs_summary={k: v for k, v in inputs.items() if k != "exposures"},
        elapsed=elapsed,
        flagged_rows=flagged.get("rows", []),
        flagged_exposures=flagged.get("exposures", []),
        n_flagged_rows=int(rows["flagged"].sum()) if "flagged" in rows.columns else 0,
        n_rows=len(rows),
        n_exposures=len(exps),
        untimed=untimed,
        map_json=script_json(fp),
        series_json=script_json(series),
        config_json=_pretty(record.get("config")),
        metadata_json=_pretty(record.get("task_metadata")),
        diagnostics_json=_pretty(diagnostics),
    )


def _pretty(value: Any) -> str:
    import orjson

    return orjson.dumps(
        value,
        option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
        default=str,
    ).decode()


# --------------------------------------------------------------------------- compare


@router.get("/compare/{old_version}/{new_version}")
def compare_page(request: Request, old_version: VersionId, new_version: VersionId) -> Response:
    """Show the ratio new/old of two versions' row scales: a map and the largest changes."""
    registry = _registry(request)
    try:
        old_version = _version_id(old_version)  # type: ignore[assignment]
        new_version = _version_id(new_version)  # type: ignore[assignment]
        old = registry.version(old_version)
        new = registry.version(new_version)
        result = registry.compare(old_version, new_version)
    except CalibregError as err:
        return _error(request, err)
    table = result.get("table")
    if table is None:
        table = pd.DataFrame()
    fp = None
    if result.get("comparable", True) and len(table):
        table = table.assign(error=np.nan, flag_names="")
        fp = _map_payload(registry, new["instrument"], table, table["ratio"].to_numpy(), "ratio")
    summary = {k: v for k, v in result.items() if k not in ("table", "worst", "newly_flagged")}
    return _page(
        request,
        "compare.html",
        etag=True,
        title=f"Compare {old_version} → {new_version}",
        old=old,
        new=new,
        summary=summary,
        worst=list(result.get("worst", []))[:WORST],
        newly_flagged=list(result.get("newly_flagged", [])),
        map_json=None if fp is None else script_json(fp),
    )


# --------------------------------------------------------------------------- tags


@router.get("/tags/{tag:path}")
def tag_page(request: Request, tag: str, as_of: Text = None) -> Response:
    """Show a tag's validity ranges per quantum as bars on a time axis, as of an instant."""
    registry = _registry(request)
    when = None
    problem = None
    if _blank(as_of) is not None:
        try:
            when = parse_wallclock(as_of.strip(), field="as_of", source="form")  # type: ignore[union-attr]
        except CalibregError as err:
            problem = str(err).strip().splitlines()[0]
    certs = registry.certifications(tag, include_closed=True)
    if not certs:
        return _error(request, NotFoundError(f"no certification in tag {tag!r}"))
    layout = timeline(certs, as_of=when)
    rows = sorted(certs, key=lambda c: c["certification_id"])
    return _page(
        request,
        "tag.html",
        title=f"Tag {tag}",
        tag=tag,
        as_of=_blank(as_of) or "",
        as_of_dt=when,
        problem=problem,
        layout=layout,
        certifications=rows,
    )


# --------------------------------------------------------------------------- history


@router.get("/history")
def history_page(
    request: Request,
    instrument: Text = None,
    physical_filter: Annotated[str | None, Query(alias="filter", max_length=400)] = None,
    detector: Text = None,
    amp: Text = None,
) -> Response:
    """One detector's (or amplifier's) scale across versions, with a picker."""
    registry = _registry(request)
    instruments = [str(i) for i in registry.instruments()["instrument"]]
    chosen = _blank(instrument) or (instruments[0] if instruments else None)
    filters: list[str] = []
    detectors: list[str] = []
    amp_names: list[str] = []
    problem = None
    points: list[dict[str, Any]] = []
    series = None
    if chosen is not None:
        try:
            versions = registry.versions(instrument=chosen)
            filters = sorted({str(f) for f in versions["physical_filter"].dropna()})
            dets, amps = registry.geometry(chosen)
            detectors = [str(n) for n in dets.sort_values("id")["name"]]
            amp_names = sorted({str(a) for a in amps["name"]})
        except CalibregError as err:
            problem = str(err).strip().splitlines()[0]
    form = {
        "instrument": chosen,
        "filter": _blank(physical_filter) or (filters[0] if filters else None),
        "detector": _blank(detector),
        "amp": _blank(amp),
    }
    if problem is None and chosen and form["filter"] and form["detector"]:
        try:
            frame = registry.history(
                instrument=chosen,
                physical_filter=form["filter"],
                detector=form["detector"],
                amp=form["amp"],
            )
            points = _records(frame)
            series = {
                "label": "G",
                "x": [int(v) for v in frame["version"]],
                "y": frame["scale"].to_numpy(float),
                "yerr": None,
                "id": [int(v) for v in frame["version"]],
                "flags": ["flagged" if f else "" for f in frame["flagged"]],
                "xtime": False,
                "xlabel": "version",
            }
        except CalibregError as err:
            problem = str(err).strip().splitlines()[0]
    return _page(
        request,
        "history.html",
        title="History",
        instruments=instruments,
        filters=filters,
        detectors=detectors,
        amp_names=amp_names,
        form=form,
        problem=problem,
        points=points,
        series_json=None if series is None else script_json(series),
    )


# --------------------------------------------------------------------------- static


def _static_files() -> dict[str, bytes]:
    root = resources.files("calibreg.web") / "static"
    return {p.name: p.read_bytes() for p in root.iterdir() if p.name.endswith(tuple(STATIC_TYPES))}


_STATIC: dict[str, tuple[bytes, str]] = {}


@router.get("/static/{name}")
def static(request: Request, name: str) -> Response:
    """Serve a CSS or JavaScript file shipped in the package (ETag, revalidated hourly)."""
    if not _STATIC:
        for fname, body in _static_files().items():
            _STATIC[fname] = (body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    found = _STATIC.get(name)
    if found is None:
        return _error(request, NotFoundError(f"no static file {name!r}"))
    body, etag = found
    headers = _headers({"Cache-Control": STATIC_CACHE, "ETag": etag})
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    suffix = name[name.rfind(".") :]
    return Response(body, media_type=STATIC_TYPES[suffix], headers=headers)
