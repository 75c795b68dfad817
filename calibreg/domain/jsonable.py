"""The one JSON rule of calibreg, for the CLI, the HTTP API and every stored JSON document.

JSON has no NaN or infinity. In calibreg a NaN means "no valid measurement", so every
non-finite float becomes ``null`` (as LSST's pipe_base writes TaskMetadata), never a bare
``NaN``/``Infinity`` token that strict parsers (browsers, PostgreSQL ``jsonb``) refuse.
NumPy scalars become Python numbers, instants ISO-8601 text, mapping keys strings (JSON object
keys are strings: cp_pipe's integer detector ids arrive as ``"12"``), data frames lists of
records. Integers are kept exact, whatever their size.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import sys
from collections.abc import Mapping
from typing import Any


def jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON data under calibreg's rule (see the module docstring).

    Parameters
    ----------
    value
        Any nesting of mappings, sequences, NumPy arrays and scalars, pandas frames and
        missing values, dataclasses, instants and plain Python values. Anything else is
        written as its ``str``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    # Only a caller that has NumPy (or pandas) can hand us its objects: neither is imported
    # here, so that a command printing plain rows as JSON starts without them.
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    pd = sys.modules.get("pandas")
    if pd is not None:
        if value is pd.NA or value is pd.NaT:
            return None
        if isinstance(value, pd.DataFrame):
            return frame_records(value)
        if isinstance(value, pd.Series):
            return [jsonable(v) for v in value]
    if isinstance(value, (list, tuple, set, frozenset)) or (
        np is not None and isinstance(value, np.ndarray)
    ):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return str(value)


def frame_records(frame: Any) -> list[dict[str, Any]]:
    """Return a pandas frame's rows as JSON objects (column order kept, missing as ``None``)."""
    columns = [str(c) for c in frame.columns]
    return [
        {c: jsonable(v) for c, v in zip(columns, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


def dumps(value: Any, *, indent: int | None = None, compact: bool = False) -> str:
    """Serialise ``value`` as strict JSON text under calibreg's rule.

    Parameters
    ----------
    value
        Anything :func:`jsonable` accepts.
    indent
        Pretty-print with this indentation (``None``: one line).
    compact
        No spaces after separators (the HTTP API's deterministic bodies).
    """
    separators = (",", ":") if compact else None
    return json.dumps(
        jsonable(value), ensure_ascii=False, allow_nan=False, indent=indent, separators=separators
    )


__all__ = ["dumps", "frame_records", "jsonable"]
