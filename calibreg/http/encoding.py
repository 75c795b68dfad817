"""Turning registry results into HTTP bodies: JSON, CSV, Parquet, ETags and content negotiation.

These helpers are kept apart from the routes so that the exact bytes of a response (and so its
ETag) are decided in one place. JSON is rendered by :func:`render_json` under calibreg's one
JSON rule (:mod:`calibreg.domain.jsonable`: NaN and infinities as ``null``) rather than by
FastAPI's encoder, because the registry hands back pandas frames, NumPy scalars and NaN. The
bytes are written by orjson (a compiled encoder, ~10x the standard library's speed); values it
does not know natively go through :func:`~calibreg.domain.jsonable.jsonable`.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd

from calibreg.domain.hashing import sha256_bytes
from calibreg.domain.jsonable import dumps, frame_records, jsonable

#: Cache policy of immutable resources (a version never changes once written).
IMMUTABLE = "public, max-age=31536000, immutable"
#: Cache policy of everything that can change (listings): revalidate every time.
NO_CACHE = "no-cache"
#: Default freshness of a lookup answer (seconds): a caching proxy may serve it that long
#: without asking, then revalidates with ``If-None-Match`` (a 304 costs one generation read).
LOOKUP_MAX_AGE = 5


def lookup_cache_control(max_age: int = LOOKUP_MAX_AGE) -> str:
    """Return the Cache-Control of lookup answers: public, fresh for ``max_age`` seconds."""
    return f"public, max-age={int(max_age)}"


def lookup_etag(generation: int, key: bytes) -> str:
    """Return the strong ETag of a lookup answer: the generation it was read at + the request.

    Equal generation and request give equal bytes (the answer is a function of the
    certifications and exposures, which the generation counts), on any worker.
    """
    digest = hashlib.blake2b(key, digest_size=12).hexdigest()
    return f'"g{int(generation)}-{digest}"'


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


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _default(value: Any) -> Any:
    """Return what orjson cannot write natively, under calibreg's rule (NaN and NA as null)."""
    if isinstance(value, np.generic):
        item = value.item()
        return None if isinstance(item, float) and not math.isfinite(item) else item
    return jsonable(value)


def render_json(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value``; deterministic, so equal data gives equal bytes.

    NaN and infinities are ``null`` (orjson's rule and calibreg's); pandas/NumPy values and
    anything else go through :func:`jsonable`.
    """
    try:
        return orjson.dumps(value, default=_default, option=_ORJSON_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):  # e.g. an int beyond 64 bits, odd keys
        return dumps(value, compact=True).encode()


def fast_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return a frame's rows as dicts of plain values (missing as ``None``), column-wise.

    The same records as :func:`frame_records` for the frames of the lookup tables, without a
    per-cell Python call: each column is converted once.
    """
    columns = []
    for name in frame.columns:
        col = frame[name]
        values = col.astype(object).where(col.notna(), None).tolist()
        if col.dtype == object:
            values = [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]
        columns.append(values)
    names = [str(c) for c in frame.columns]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def iter_csv(frame: pd.DataFrame, chunk_rows: int = 50_000) -> Iterator[bytes]:
    """Yield :func:`render_csv` of ``frame`` in pieces of ``chunk_rows`` rows (same bytes)."""
    for start in range(0, max(len(frame), 1), chunk_rows):
        part = frame.iloc[start : start + chunk_rows]
        yield part.to_csv(
            index=False, header=start == 0, lineterminator="\n", float_format="%.17g"
        ).encode()


def iter_parquet(frame: pd.DataFrame, chunk_rows: int = 200_000) -> Iterator[bytes]:
    """Yield a Parquet file of ``frame`` row group by row group, as each is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=chunk_rows):
            writer.write_table(pa.Table.from_batches([batch], schema=table.schema))
            yield sink.getvalue()
            sink.seek(0)
            sink.truncate()
    yield sink.getvalue()


def iter_cp_pipe(structure: dict[str, Any]) -> Iterator[bytes]:
    """Yield :func:`render_json` of a cp_pipe ``outputScales`` structure, detector by detector.

    The structure's ``expScale`` repeats the exposure scales for every amplifier; each detector
    is encoded and sent on its own, so the whole body is never held.
    """
    exp_scale = structure["expScale"]
    yield b'{"expScale":{'
    for i, (det, amps) in enumerate(exp_scale.items()):
        prefix = b"," if i else b""
        yield prefix + render_json({det: amps})[1:-1]
    yield b'},"detScale":' + render_json(structure["detScale"])
    rest = {k: v for k, v in structure.items() if k not in ("expScale", "detScale")}
    yield (b"," + render_json(rest)[1:-1] if rest else b"") + b"}"


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
    "LOOKUP_MAX_AGE",
    "MEDIA_TYPES",
    "NO_CACHE",
    "PARQUET_TYPE",
    "TABLE_FORMATS",
    "etag_matches",
    "fast_records",
    "frame_records",
    "iter_cp_pipe",
    "iter_csv",
    "iter_parquet",
    "jsonable",
    "lookup_cache_control",
    "lookup_etag",
    "negotiate",
    "render_csv",
    "render_json",
    "render_parquet",
    "strong_etag",
]
