"""Shared plumbing of the readers: safe YAML/JSON loading and typed field conversion.

Every helper here raises `~calibreg.errors.InputError` naming the file, the row and the field, so
that no parser exception (PyYAML, json, pandas, pyarrow) ever reaches a caller: the CLI prints
one line a user can act on instead of a traceback.

The typed-field converters (`to_float`, `to_int`, `to_str`) take ``source`` (the file name),
``row`` (1-based data row, or None for a whole-file field) and ``field`` (name or path such as
``CCDs.R00_SG0.amplifiers.C10.gain``) only to locate their errors.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from calibreg.errors import InputError

PathLike = str | os.PathLike[str]

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"

# Spellings a person (or a writer library) uses for "no value" in a numeric cell.
MISSING_TOKENS = frozenset({"", "nan", "+nan", "-nan", ".nan", "null", "none", "na", "n/a"})


class DuplicateKeyLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe YAML loader that refuses duplicate keys in a mapping.

    PyYAML keeps the last of two equal keys silently, which would drop a detector or a
    statistic without a word. Keys brought in by ``<<:`` merges may legitimately be overridden,
    so only the keys written explicitly in one mapping are compared. The check runs on the
    composed node graph, before construction flattens any merge.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        _check_duplicate_keys(node)
        return super().construct_document(node)


class _DuplicateKeyError(Exception):
    def __init__(self, key: str, line: int) -> None:
        super().__init__(key, line)
        self.key = key
        self.line = line


def _check_duplicate_keys(root: yaml.Node) -> None:
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            for key_node, value_node in node.value:
                stack.append(value_node)
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = (key_node.tag, key_node.value)
                if key in keys:
                    raise _DuplicateKeyError(key_node.value, key_node.start_mark.line + 1)
                keys.add(key)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def load_yaml(path: PathLike, loader: type = DuplicateKeyLoader) -> Any:
    """Load one YAML document, turning every failure into an `InputError` for ``path``."""
    source = str(path)
    try:
        with open(path, "rb") as stream:
            return yaml.load(stream, Loader=loader)
    except _DuplicateKeyError as exc:
        raise InputError(
            source, f"duplicate key {exc.key!r} (line {exc.line})", field=exc.key
        ) from None
    except InputError:
        raise
    except OSError as exc:
        raise InputError(source, f"cannot read file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(source, f"not valid YAML{where}: {problem}") from None
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise InputError(source, f"not valid YAML: {exc}") from None


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key, 0)
        out[key] = value
    return out


def load_json(path: PathLike) -> Any:
    """Load a JSON file (``NaN`` allowed), refusing duplicate keys, errors as `InputError`."""
    source = str(path)
    try:
        with open(path, "rb") as stream:
            return json.load(stream, object_pairs_hook=_pairs_without_duplicates)
    except _DuplicateKeyError as exc:
        raise InputError(source, f"duplicate key {exc.key!r}", field=exc.key) from None
    except OSError as exc:
        raise InputError(source, f"cannot read file: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(source, f"not valid JSON: {exc}") from None


def check_readable(path: PathLike) -> None:
    """Refuse a missing path or a directory up front with a clear message."""
    p = Path(path)
    if not p.exists():
        raise InputError(str(path), "file does not exist")
    if p.is_dir():
        raise InputError(str(path), "is a directory, expected a file")


# --------------------------------------------------------------------------- typed fields
def to_float(
    value: Any, source: str, *, row: int | None, field: str, required: bool = False
) -> float:
    """Convert a YAML/JSON/table scalar to a float; a missing value is NaN unless ``required``.

    Booleans are refused (``True`` is an `int` in Python but never a measurement).

    Parameters
    ----------
    value : object
        A number, a NumPy scalar, numeric text, or a missing value: ``None`` or a
        `MISSING_TOKENS` spelling (``""``, ``nan``, ``null``, ``NA``..., any case).
    source, row, field
        Where the value came from, for the error message.
    required : bool
        Whether a missing value is an error rather than NaN.

    Returns
    -------
    float
        The value. Infinities are passed through; callers that forbid them check.

    Raises
    ------
    calibreg.errors.InputError
        A boolean, a value that is not a number, or a missing value when ``required``.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in MISSING_TOKENS):
        if required:
            raise InputError(source, "value is missing", row=row, field=field)
        return math.nan
    if isinstance(value, bool):
        raise InputError(source, f"expected a number, got {value!r}", row=row, field=field)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    else:
        try:
            return float(value)  # numpy scalars
        except (TypeError, ValueError):
            pass
    raise InputError(source, f"expected a number, got {value!r}", row=row, field=field)


def to_int(
    value: Any, source: str, *, row: int | None, field: str, required: bool = True
) -> int | None:
    """Convert a scalar to an exact integer; integral floats (``12.0``) are accepted.

    Strings are parsed with `int` so that 19-digit nanosecond counts keep every digit. A float
    (or text that only parses as one, such as ``"1e3"``) is accepted only if it is integral
    and below 2**53 in magnitude, where a float still holds every integer exactly.

    Parameters
    ----------
    value : object
        An int, integral float, NumPy scalar, integer text, or a missing value (``None``,
        NaN, or a `MISSING_TOKENS` spelling).
    source, row, field
        Where the value came from, for the error message.
    required : bool
        Whether a missing value is an error rather than ``None``.

    Returns
    -------
    int or None
        The integer, or ``None`` for a missing value when not ``required``.

    Raises
    ------
    calibreg.errors.InputError
        A boolean, a fractional or non-numeric value, or a missing value when ``required``.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in MISSING_TOKENS):
        if required:
            raise InputError(source, "value is missing", row=row, field=field)
        return None
    if isinstance(value, float) and math.isnan(value):
        if required:
            raise InputError(source, "value is missing", row=row, field=field)
        return None
    if isinstance(value, bool):
        raise InputError(source, f"expected an integer, got {value!r}", row=row, field=field)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            value = number
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if math.isfinite(number) and number == int(number) and abs(number) < 2**53:
        return int(number)
    raise InputError(source, f"expected an integer, got {value!r}", row=row, field=field)


def to_str(
    value: Any, source: str, *, row: int | None, field: str, required: bool = False
) -> str | None:
    """Convert a scalar to stripped text; numbers are accepted and printed with `str`.

    YAML reads ``group: 903342`` as an int although it is a name, so numbers are not refused.

    Parameters
    ----------
    value : object
        Text, an int or float, or ``None``/NaN for a missing value.
    source, row, field
        Where the value came from, for the error message.
    required : bool
        Whether a missing (or blank) value is an error rather than ``None``.

    Returns
    -------
    str or None
        The stripped text, or ``None`` when it is missing or blank and not ``required``.

    Raises
    ------
    calibreg.errors.InputError
        A boolean or another type (list, mapping...), or a missing value when ``required``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = ""
    elif isinstance(value, bool):
        raise InputError(source, f"expected text, got {value!r}", row=row, field=field)
    elif isinstance(value, str):
        text = value.strip()
    elif isinstance(value, int | float):
        text = str(value)
    else:
        raise InputError(source, f"expected text, got {type(value).__name__}", row=row, field=field)
    if not text:
        if required:
            raise InputError(source, "value is missing", row=row, field=field)
        return None
    return text


def wrap_value_error(
    func: Callable[[Any], Any], value: Any, source: str, *, row: int | None, field: str
) -> Any:
    """Call a converter that raises `ValueError` and re-raise as a located `InputError`."""
    try:
        return func(value)
    except ValueError as exc:
        raise InputError(source, str(exc), row=row, field=field) from None


def iter_rows(records: list[Any]) -> Iterator[tuple[int, Any]]:
    """Enumerate records from 1, as a person counts them."""
    return enumerate(records, start=1)
