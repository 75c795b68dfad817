"""Turning registry results into HTTP bodies: JSON, CSV, Parquet, ETags and content negotiation.

These helpers are kept apart from the routes so that the exact bytes of a response (and so its
ETag) are decided in one place. JSON is rendered by :func:`render_json` rather than by FastAPI's
encoder because the registry hands back pandas frames, NumPy scalars and NaN: JSON has no NaN,
so a NaN (calibreg's "no valid measurement") must become ``null`` on purpose rather than make
the encoder fail or emit invalid ``NaN`` tokens.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

#: Cache policy of immutable resources (a version never changes once written).
IMMUTABLE = "public, max-age=31536000, immutable"
#: Cache policy of everything that can change (listings, lookups): revalidate every time.
NO_CACHE = "no-cache"

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv; charset=utf-8"
PARQUET_TYPE = "application/vnd.apache.parquet"

#: Representations of a table, in the server's order of preference.
TABLE_FORMATS = ("json", "csv", "parquet")
MEDIA_TYPES = {"json": JSON_TYPE, "csv": CSV_TYPE, "parquet": PARQUET_TYPE}
#: Media types a client may ask for in ``Accept``, and the format each one means.
ACCEPTED_TYPES = {
    "application/json": "json",
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: NaN/Inf/NA → ``None``, NumPy → Python, instants → ISO.

    Mapping keys become strings, as JSON requires (cp_pipe's integer detector and exposure ids
    therefore arrive as ``"12"``; a JSON client cannot tell otherwise).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, pd.DataFrame):
        return frame_records(value)
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return str(value)


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as JSON objects (column order kept, missing values as ``null``)."""
    columns = [str(c) for c in frame.columns]
    return [
        {c: jsonable(v) for c, v in zip(columns, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


def render_json(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value``; deterministic, so equal data gives equal bytes."""
    return json.dumps(
        jsonable(value), ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode()


def render_csv(frame: pd.DataFrame) -> bytes:
    """CSV with a header; NaN and missing values are empty cells, floats keep every bit."""
    return frame.to_csv(index=False, lineterminator="\n", float_format="%.17g").encode()


def render_parquet(frame: pd.DataFrame) -> bytes:
    """A Parquet file of ``frame`` (no pandas index), readable by pandas, pyarrow, DuckDB..."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()


def strong_etag(body: bytes) -> str:
    """The quoted sha256 of the exact body: equal bytes and only equal bytes share it."""
    return f'"{hashlib.sha256(body).hexdigest()}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header selects ``etag`` (so the answer is 304).

    ``*`` matches any current representation; otherwise the header is a comma-separated list
    compared weakly, as RFC 9110 §13.1.2 prescribes for If-None-Match (a ``W/`` prefix on
    either side is ignored).
    """
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in if_none_match.split(","))


def negotiate(accept: str | None) -> str | None:
    """The table format an ``Accept`` header asks for, or ``None`` when none is acceptable.

    Each media range's quality applies to the types it covers, the most specific range winning
    (RFC 9110 §12.5.1); among equal qualities an explicitly named type beats a wildcard, then
    the server's preference (JSON, CSV, Parquet) decides. No header means JSON.
    """
    if accept is None or not accept.strip():
        return "json"
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if not media:
            continue
        quality = 1.0
        for param in fields[1:]:
            name, _, raw = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(raw)
                except ValueError:
                    quality = 0.0
        ranges.append((media, quality))

    best: tuple[float, int, int] | None = None
    chosen: str | None = None
    for order, (media_type, fmt) in enumerate(ACCEPTED_TYPES.items()):
        major = media_type.split("/")[0]
        match: tuple[int, float] | None = None  # (specificity, quality)
        for media, quality in ranges:
            if media == media_type:
                specificity = 2
            elif media == f"{major}/*":
                specificity = 1
            elif media == "*/*":
                specificity = 0
            else:
                continue
            if match is None or specificity > match[0]:
                match = (specificity, quality)
        if match is None or match[1] <= 0:
            continue
        rank = (match[1], match[0], -TABLE_FORMATS.index(fmt) * 10 - order)
        if best is None or rank > best:
            best, chosen = rank, fmt
    return chosen
