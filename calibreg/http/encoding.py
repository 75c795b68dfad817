"""Turning registry results into HTTP bodies: JSON, CSV, Parquet, ETags and content negotiation.

These helpers are kept apart from the routes so that the exact bytes of a response (and so its
ETag) are decided in one place. JSON is rendered by :func:`render_json` under calibreg's one
JSON rule (:mod:`calibreg.domain.jsonable`: NaN and infinities as ``null``) rather than by
FastAPI's encoder, because the registry hands back pandas frames, NumPy scalars and NaN.
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from calibreg.domain.hashing import sha256_bytes
from calibreg.domain.jsonable import dumps, frame_records, jsonable

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


def render_json(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value``; deterministic, so equal data gives equal bytes."""
    return dumps(value, compact=True).encode()


def render_csv(frame: pd.DataFrame) -> bytes:
    """CSV with a header; NaN and missing values are empty cells, floats keep every bit."""
    return frame.to_csv(index=False, lineterminator="\n", float_format="%.17g").encode()


def render_parquet(frame: pd.DataFrame) -> bytes:
    """Return a Parquet file of ``frame`` (no index), readable by pandas, pyarrow, DuckDB..."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()


def strong_etag(body: bytes) -> str:
    """Return the quoted sha256 of the exact body: equal bytes and only equal bytes share it."""
    return f'"{sha256_bytes(body)}"'


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
    """Return the table format an ``Accept`` header asks for, or ``None`` when none is acceptable.

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


__all__ = [
    "ACCEPTED_TYPES",
    "CSV_TYPE",
    "IMMUTABLE",
    "JSON_TYPE",
    "MEDIA_TYPES",
    "NO_CACHE",
    "PARQUET_TYPE",
    "TABLE_FORMATS",
    "etag_matches",
    "frame_records",
    "jsonable",
    "negotiate",
    "render_csv",
    "render_json",
    "render_parquet",
    "strong_etag",
]
