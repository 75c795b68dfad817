"""Shared plumbing of the readers: bounded loading and one parsing rule per field kind.

Every reader (camera YAML, butler export, CSV, Parquet, JSON, PropertyList) goes through this
module, so that the same value means the same thing whatever the file format, and so that no
parser exception (PyYAML, json, pandas, pyarrow) reaches a caller: every refusal is one
`~calibreg.errors.InputError` naming the file, the row, the field and the reason.

Field kinds
-----------
`Integer`, `Real`, `Text` and `Time` are the rules. Each has a scalar form (``parse``: one
value from YAML, JSON, a CSV cell or a Parquet cell) and, for the bulk statistics tables, a
column form (``column``: a whole Arrow column, vectorised) that accepts exactly the same values
(the column form locates its first bad row and lets the scalar form word the refusal, and a
property test checks the two agree). The rules:

* **missing**: ``None``, an Arrow null, a float NaN, or text that is blank or one of
  `MISSING_TOKENS` (any case) in a numeric or time field; blank text in a text field.
* **Integer**: an integer (any width), integer text (``+12``, ``-3``; ASCII digits), or a number
  written with a fraction or an exponent (``12.0``, ``1.2e3``, a float or double cell) if it is
  integral and below 2**53 in magnitude, where a binary64 still holds every integer exactly;
  beyond that, such a number may already have been rounded, so it is refused and the message
  asks for the integer's digits. Then the field's range (`calibreg.domain.limits`).
  Booleans are refused.
* **Real**: a number or number text (``1.5``, ``-2e-3``, ``inf``); missing is NaN. Every
  measurement calibreg stores is finite or NaN ("no value", SPEC §2), so infinities are refused
  (``finite=True`` everywhere) and so are values below the field's minimum.
* **Text**: stripped text, at most the field's length in characters (`calibreg.domain.limits`),
  without NUL characters (PostgreSQL cannot store them). Numbers are accepted and printed with
  `str` (YAML reads ``group: 903342`` as an int although it is a name).
* **Time**: an instant as TAI nanoseconds (the Integer rule over the int64 range: so a TAI ns
  count written as a float, always above 2**53, is refused rather than rounded) or ISO-8601 text
  in the reader's time scale, or a `datetime.datetime` (naive: a reading in that time scale).

Text is stripped of ASCII whitespace only (the same bytes in Python and in Arrow).

Bounds on untrusted input
-------------------------
`shown` is the one way a reader echoes a value in a message: a bounded `reprlib` rendering, so a
value built from nested YAML aliases (a "billion laughs" file) is never expanded. The YAML
loaders (`SafeYAMLLoader` and its subclasses) count how many nodes the document's aliases would
expand to before anything is constructed and refuse a document past `MAX_ALIAS_EXPANSION` (or
one whose aliases recurse).

YAML scalars resolve as in YAML 1.2's core schema: ``[-+]?[0-9]+`` is a base-10 integer (PyYAML's
YAML 1.1 would read ``0777`` as octal 511 and ``1:30`` as 5400), numbers with a fraction or
exponent and ``.inf``/``.nan`` are floats, ``true``/``false`` booleans, dates stay text. So a
value reads the same from YAML as from a CSV cell.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import reprlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from calibreg.domain import limits
from calibreg.errors import InputError
from calibreg.formats.timescale import tai_iso_to_tai_ns, utc_to_tai_ns

__all__ = [
    "MAX_ALIAS_EXPANSION",
    "MAX_ECHO_CHARS",
    "MISSING_TOKENS",
    "DuplicateKeyLoader",
    "Integer",
    "PathLike",
    "Real",
    "SafeYAMLLoader",
    "Text",
    "Time",
    "check_readable",
    "clip",
    "field_name",
    "iter_rows",
    "load_json",
    "load_yaml",
    "read_csv_columns",
    "shown",
]

PathLike = str | os.PathLike[str]

# Spellings a person (or a writer library) uses for "no value" in a numeric or time cell.
MISSING_TOKENS = frozenset({"", "nan", "+nan", "-nan", ".nan", "null", "none", "na", "n/a"})

#: Most characters of one input value a message echoes (`shown`).
MAX_ECHO_CHARS = 60
#: Most characters of a library's own message (PyYAML, pyarrow...) quoted in a reason.
MAX_REASON_CHARS = 200
#: Most YAML nodes that aliases may add to a document when expanded. The real LSSTCam camera
#: (``lsstCamSim.yaml``, 35k nodes) expands by 0.64 million through its templates.
MAX_ALIAS_EXPANSION = 5_000_000

#: Floats hold every integer exactly only below this magnitude.
EXACT_FLOAT_INTEGERS = 2**53

_WHITESPACE = " \t\r\n\f\v"
_INT_CORE = r"[+-]?[0-9]+"
_NUMBER_CORE = r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity))"
_INT_RE = re.compile(_INT_CORE)
_NUMBER_RE = re.compile(_NUMBER_CORE)
_INT_ARROW = f"^(?:{_INT_CORE})$"
_NUMBER_ARROW = f"^(?:{_NUMBER_CORE})$"


# =========================================================================== echo bounds
_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxtuple = _REPR.maxlist = _REPR.maxarray = _REPR.maxdict = 4
_REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = 4
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = MAX_ECHO_CHARS


def clip(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """Cut ``text`` to at most ``limit`` characters (marking the cut with ``...``)."""
    text = str(text)
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def shown(value: Any) -> str:
    """Render an input value for a message, bounded in depth, width and length.

    The one way readers echo a value: a nested structure is cut at two levels and four items
    (never expanded in full: a YAML alias bomb renders in microseconds), text and numbers at
    `MAX_ECHO_CHARS` characters.

    Parameters
    ----------
    value : object
        What the user wrote (text, number, list, mapping...).

    Returns
    -------
    str
        A `repr`-like rendering of at most about ``2 * MAX_ECHO_CHARS`` characters.
    """
    try:
        text = _REPR.repr(value)
    except Exception:  # a repr that fails (an int over 4300 digits...) still gets a name
        text = f"<{type(value).__name__}>"
    return clip(text, 2 * MAX_ECHO_CHARS)


def field_name(key: Any) -> str:
    """Render a mapping key (or any input text) as a field name: text, bounded."""
    return clip(str(key), MAX_ECHO_CHARS)


# =========================================================================== YAML
_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _DocumentError(yaml.YAMLError):
    """A problem found in the composed node graph, before construction."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class SafeYAMLLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe YAML loader with YAML 1.2 core scalars, unique keys and bounded alias expansion.

    * Duplicate keys in one mapping are refused (PyYAML keeps the last silently, which would
      drop a detector or a statistic without a word). Keys brought in by ``<<:`` merges may
      legitimately be overridden, so only keys written in one mapping are compared.
    * Before anything is constructed, the node graph is measured: the number of nodes its
      aliases add when expanded must not exceed `MAX_ALIAS_EXPANSION`, and an alias may not
      refer to a node that contains it.
    * Scalars resolve as YAML 1.2's core schema does (see the module docstring).
    """

    def construct_document(self, node: yaml.Node) -> Any:
        _check_document(node, MAX_ALIAS_EXPANSION)
        return super().construct_document(node)

    def construct_yaml_int(self, node: yaml.Node) -> int:
        """Build an int in base 10 (YAML 1.1's octal, hex and sexagesimal forms are text)."""
        text = str(self.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
        return int(text, 10)


_REPLACED_TAGS = (_INT_TAG, _FLOAT_TAG, _BOOL_TAG, _TIMESTAMP_TAG)
SafeYAMLLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in rules if tag not in _REPLACED_TAGS]
    for first, rules in _BaseLoader.yaml_implicit_resolvers.items()
}
SafeYAMLLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
SafeYAMLLoader.add_implicit_resolver(_INT_TAG, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
SafeYAMLLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
SafeYAMLLoader.add_constructor(_INT_TAG, SafeYAMLLoader.construct_yaml_int)

#: The name the readers used before the loader also bounded aliases; the same class.
DuplicateKeyLoader = SafeYAMLLoader


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_keys(node: yaml.MappingNode) -> None:
    keys: set[tuple[str, str]] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
            continue
        key = (key_node.tag, key_node.value)
        if key in keys:
            raise _DocumentError(
                f"duplicate key {shown(key_node.value)} (line {key_node.start_mark.line + 1})",
                field=field_name(key_node.value),
            )
        keys.add(key)


def _check_document(root: yaml.Node, limit: int) -> None:
    """Refuse duplicate keys, recursive aliases and alias expansion past ``limit`` nodes.

    One iterative depth-first pass over the distinct nodes (an alias is the same node object
    reached twice), computing each node's expanded size with memoisation: linear in the file,
    whatever the expansion.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in _children(node))
            continue
        if key in size:
            continue
        if key in on_path:
            line = node.start_mark.line + 1 if node.start_mark is not None else "?"
            raise _DocumentError(f"an alias refers to a node that contains it (line {line})")
        on_path.add(key)
        if isinstance(node, yaml.MappingNode):
            _check_keys(node)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)
    added = size[id(root)] - len(size)
    if added > limit:
        raise _DocumentError(
            f"YAML aliases would expand the document by {added:,} nodes, more than the "
            f"{limit:,} allowed (an alias bomb?)"
        )


def load_yaml(path: PathLike, loader: type = SafeYAMLLoader) -> Any:
    """Load one YAML document, turning every failure into an `InputError` for ``path``.

    Parameters
    ----------
    path : path-like
        The file.
    loader : type
        `SafeYAMLLoader` or a subclass (adding tags).

    Returns
    -------
    object
        The document.

    Raises
    ------
    calibreg.errors.InputError
        Unreadable file, invalid YAML, a duplicate key, a recursive alias or an alias
        expansion past `MAX_ALIAS_EXPANSION`.
    """
    source = str(path)
    try:
        with open(path, "rb") as stream:
            return yaml.load(stream, Loader=loader)
    except _DocumentError as exc:
        raise InputError(source, exc.reason, field=exc.field) from None
    except InputError:
        raise
    except OSError as exc:
        raise InputError(source, f"cannot read file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(source, f"not valid YAML{where}: {clip(problem)}") from None
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise InputError(source, f"not valid YAML: {clip(str(exc))}") from None


class _DuplicateJSONKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateJSONKeyError(key)
        out[key] = value
    return out


def load_json(path: PathLike) -> Any:
    """Load a JSON file (``NaN`` allowed), refusing duplicate keys, errors as `InputError`.

    Raises
    ------
    calibreg.errors.InputError
        Unreadable file, invalid JSON or a duplicate key.
    """
    source = str(path)
    try:
        with open(path, "rb") as stream:
            return json.load(stream, object_pairs_hook=_pairs_without_duplicates)
    except _DuplicateJSONKeyError as exc:
        raise InputError(
            source, f"duplicate key {shown(exc.key)}", field=field_name(exc.key)
        ) from None
    except OSError as exc:
        raise InputError(source, f"cannot read file: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(source, f"not valid JSON: {clip(str(exc))}") from None


def check_readable(path: PathLike) -> None:
    """Refuse a missing path or a directory up front with a clear message."""
    p = Path(path)
    if not p.exists():
        raise InputError(str(path), "file does not exist")
    if p.is_dir():
        raise InputError(str(path), "is a directory, expected a file")


# =========================================================================== CSV
def read_csv_columns(
    path: PathLike,
    source: str,
    *,
    select: Callable[[list[str]], list[str]],
    float_columns: frozenset[str] = frozenset(),
    newlines_in_values: bool = False,
) -> tuple[dict[str, pa.ChunkedArray], int]:
    """Read a CSV table's columns as Arrow text (floats typed when they all parse).

    Every cell is read as text unless its column is in ``float_columns`` and every cell of it
    parses as a float (a fast path whose accepted cells are a subset of the `Real` rule's, with
    the same values); the field rules then convert the text, so a CSV cell means what the same
    value means in any other format. A row with too few or too many cells (a truncated last row)
    is refused, naming it.

    Parameters
    ----------
    path : path-like
        The CSV file (UTF-8, optional BOM; header line first). Data row 1 is the first
        non-blank record after the header.
    source : str
        The file name for messages.
    select : callable
        Given the header's names (checked to be unique and non-empty), returns the names of
        the columns to read (it may raise `InputError`, e.g. for a missing required column).
    float_columns : frozenset of str
        Columns to try to parse as float64 directly.
    newlines_in_values : bool
        Whether a quoted cell may span lines (slower parsing).

    Returns
    -------
    columns : dict of str to `pyarrow.ChunkedArray`
        The selected columns (text, or float64 for a fast-path float column).
    n_rows : int
        Number of data rows.

    Raises
    ------
    calibreg.errors.InputError
        Unreadable or empty file, bad header, a ragged row, or unparseable CSV.
    """
    import pyarrow.csv as pacsv

    names = _csv_header(path, source)
    wanted = select(names)
    read_options = pacsv.ReadOptions(column_names=names, skip_rows=1)
    parse_options = pacsv.ParseOptions(newlines_in_values=newlines_in_values)

    def read(types: dict[str, pa.DataType], nulls: list[str]) -> pa.Table:
        convert = pacsv.ConvertOptions(
            column_types=types,
            include_columns=wanted,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=nulls,
        )
        return pacsv.read_csv(
            path, read_options=read_options, parse_options=parse_options, convert_options=convert
        )

    text_types = {n: pa.string() for n in wanted}
    errors = (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, OSError)
    table = None
    if float_columns & set(wanted):
        try:
            table = read({**text_types, **{n: pa.float64() for n in float_columns}}, _CSV_NULLS)
        except errors:
            table = None
    if table is None:
        try:
            table = read(text_types, [])
        except errors as exc:
            raise _locate_csv_error(path, source, len(names), exc) from None
    return {name: table.column(name) for name in wanted}, table.num_rows


def _csv_header(path: PathLike, source: str) -> list[str]:
    """Read and check a CSV file's header line (unique, non-empty names)."""
    import csv

    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            header_line = stream.readline()
    except UnicodeDecodeError:
        raise InputError(source, "not a UTF-8 text file") from None
    except OSError as exc:
        raise InputError(source, f"cannot read file: {exc.strerror or exc}") from None
    if not header_line.strip():
        raise InputError(source, "empty file: expected a header line")
    names = [name.strip(_WHITESPACE) for name in next(csv.reader([header_line]))]
    seen: set[str] = set()
    for name in names:
        if not name:
            raise InputError(source, "the header has an empty column name")
        if name in seen:
            raise InputError(source, "column appears twice in the header", field=field_name(name))
        seen.add(name)
    return names


def _ramp(block_bytes: int, start: int = 8) -> Iterator[int]:
    """Block sizes: ``block_bytes / start``, doubling up to ``block_bytes`` (at least 64 KiB).

    A pipeline that parses one block while the previous one is written waits for the first
    block alone; a small first block shortens that wait, and the sizes grow so that the number
    of blocks (and their per-block costs) stays near that of fixed blocks.
    """
    full = max(int(block_bytes), 1)
    size = max(full // start, min(full, 1 << 16))
    while size < full:
        yield size
        size *= 2
    while True:
        yield full


def iter_csv_columns(
    path: PathLike,
    source: str,
    *,
    select: Callable[[list[str]], list[str]],
    block_bytes: int = 1 << 24,
    float_columns: frozenset[str] = frozenset(),
) -> Iterator[tuple[dict[str, pa.ChunkedArray], int]]:
    """Stream a CSV table's columns as Arrow arrays, one block of the file at a time.

    The streaming form of `read_csv_columns`, with the same results: the file is cut into
    blocks of about ``block_bytes`` at line ends and each block is parsed on its own
    (pyarrow, on all cores), so memory is bounded by the block size whatever the file's size
    (pyarrow's own streaming reader reads many blocks ahead). As in `read_csv_columns`, a
    column of ``float_columns`` is parsed as float64 when every cell of the block parses (the
    fast path), else the block is parsed again as text for the field rules to convert.

    Parameters
    ----------
    path, source, select, float_columns
        As `read_csv_columns` (a quoted cell may not span lines).
    block_bytes : int
        Bytes of the file parsed per block (about 250,000 rows of a statistics table per
        16 MiB); a longer line makes a longer block. The first blocks are smaller (an eighth,
        a quarter, a half of it: `_ramp`), so that a consumer that writes each block while
        the next is parsed starts writing sooner.

    Yields
    ------
    columns : dict of str to `pyarrow.ChunkedArray`
        The selected columns of one block.
    n_rows : int
        Rows in the block (data rows keep counting from one block to the next).

    Raises
    ------
    calibreg.errors.InputError
        As `read_csv_columns` (a ragged row is located by row number in the whole file).
    """
    import pyarrow.csv as pacsv

    names = _csv_header(path, source)
    wanted = select(names)
    read_options = pacsv.ReadOptions(column_names=names)
    text_types = {n: pa.string() for n in wanted}
    fast = float_columns & set(wanted)
    errors = (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, OSError)

    def parse(data: bytes, types: dict[str, pa.DataType], nulls: list[str]) -> pa.Table:
        convert = pacsv.ConvertOptions(
            column_types=types,
            include_columns=wanted,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=nulls,
        )
        return pacsv.read_csv(
            pa.BufferReader(data), read_options=read_options, convert_options=convert
        )

    def block_table(data: bytes) -> pa.Table:
        if fast:
            try:
                return parse(data, {**text_types, **{n: pa.float64() for n in fast}}, _CSV_NULLS)
            except errors:
                pass
        return parse(data, text_types, [])

    try:
        with open(path, "rb") as stream:
            stream.readline()  # the header, read and checked by _csv_header
            carry = b""
            sizes = _ramp(block_bytes)
            while True:
                chunk = stream.read(next(sizes))
                data = carry + chunk
                if chunk:
                    cut = data.rfind(b"\n") + 1
                    if cut == 0:  # no line end yet: a line longer than the block
                        carry = data
                        continue
                    data, carry = data[:cut], data[cut:]
                if data.strip():
                    table = block_table(data)
                    del data
                    columns = {name: table.column(name) for name in wanted}
                    n_rows = table.num_rows
                    del table
                    yield columns, n_rows
                    del columns
                if not chunk:
                    return
    except errors as exc:
        raise _locate_csv_error(path, source, len(names), exc) from None


# Cells that mean "no value" in the float fast path (the rules compare case-insensitively).
_CSV_NULLS = sorted(
    {v for token in MISSING_TOKENS for v in (token, token.upper(), token.capitalize())}
    | {"NaN", "-NaN", "+NaN", ".NaN", "N/A", "None"}
)


def _locate_csv_error(path: PathLike, source: str, n_columns: int, exc: Exception) -> InputError:
    """Find the first ragged or undecodable row, as pyarrow's parse errors carry no row number."""
    import csv

    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream)
            next(reader, None)
            row = 0
            for record in reader:
                if not record:
                    continue
                row += 1
                if len(record) != n_columns:
                    return InputError(
                        source,
                        f"expected {n_columns} cells, found {len(record)} "
                        "(a truncated or ragged row)",
                        row=row,
                    )
    except UnicodeDecodeError:
        return InputError(source, "not valid UTF-8 text")
    except (csv.Error, OSError) as err:
        return InputError(source, f"not a readable CSV table: {clip(str(err))}")
    return InputError(source, f"not a readable CSV table: {clip(str(exc).splitlines()[0])}")


# =========================================================================== scalar rules
class _RefusedError(Exception):
    """A value refused by a rule; the kind adds the location."""


def _missing_text(text: str) -> bool:
    return text.lower() in MISSING_TOKENS


def _strip(text: str) -> str:
    return text.strip(_WHITESPACE)


def _integral_float(number: float, written: Any) -> int:
    if not math.isfinite(number) or number != math.floor(number):
        raise _RefusedError(f"expected an integer, got {shown(written)}")
    if abs(number) >= EXACT_FLOAT_INTEGERS:
        raise _RefusedError(
            f"expected an integer, got {shown(written)}: written with a fraction or exponent "
            "(or stored as floating point) an integer is exact only below 2**53; write its digits"
        )
    return int(number)


def _integer_value(value: Any) -> int | None:
    """Apply the Integer rule without range or location: an exact int, None for missing."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        raise _RefusedError(f"expected an integer, got {shown(value)}")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else _integral_float(float(value), value)
    if isinstance(value, Decimal):
        if value.is_nan():
            return None
        if not value.is_finite() or value != value.to_integral_value():
            raise _RefusedError(f"expected an integer, got {shown(value)}")
        return int(value)
    if isinstance(value, str):
        text = _strip(value)
        if _missing_text(text):
            return None
        if _INT_RE.fullmatch(text):
            if len(text.lstrip("+-").lstrip("0")) > 19:
                raise _RefusedError(f"integer {shown(text)} does not fit in 64 bits")
            return int(text)
        if _NUMBER_RE.fullmatch(text):
            return _integral_float(float(text), text)
        raise _RefusedError(f"expected an integer, got {shown(text)}")
    raise _RefusedError(f"expected an integer, got {type(value).__name__} {shown(value)}")


def _range_reason(number: int, minimum: int, maximum: int) -> str | None:
    if minimum <= number <= maximum:
        return None
    if not limits.INT64_MIN <= number <= limits.INT64_MAX:
        return f"integer {shown(number)} does not fit in 64 bits"
    if minimum == 0 and number < 0:
        return f"must be >= 0, got {shown(number)}"
    return f"must be between {minimum} and {maximum}, got {shown(number)}"


def _real_value(value: Any) -> float:
    """Apply the Real rule without bounds or location: a float, NaN for missing."""
    if value is None:
        return math.nan
    if isinstance(value, bool | np.bool_):
        raise _RefusedError(f"expected a number, got {shown(value)}")
    if isinstance(value, int | float | np.integer | np.floating | Decimal):
        try:
            return float(value)
        except OverflowError:
            raise _RefusedError(f"number {shown(value)} is too large") from None
    if isinstance(value, str):
        text = _strip(value)
        if _missing_text(text):
            return math.nan
        if _NUMBER_RE.fullmatch(text):
            return float(text)
        raise _RefusedError(f"expected a number, got {shown(text)}")
    raise _RefusedError(f"expected a number, got {type(value).__name__} {shown(value)}")


def _text_value(value: Any) -> str | None:
    """Apply the Text rule without length or location: stripped text, None for missing."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        raise _RefusedError(f"expected text, got {shown(value)}")
    if isinstance(value, str):
        text = _strip(value)
    elif isinstance(value, int | float | np.integer | np.floating):
        text = str(value.item() if isinstance(value, np.generic) else value)
    else:
        raise _RefusedError(f"expected text, got {type(value).__name__} {shown(value)}")
    return text or None


def _time_value(value: Any, time_scale: str) -> int | None:
    """Apply the Time rule without location: TAI ns, None for missing."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            converter = utc_to_tai_ns
            argument: Any = value
        else:  # a naive reading is in the reader's time scale, as ISO text without offset is
            argument = value.isoformat()
            converter = tai_iso_to_tai_ns if time_scale == "tai" else utc_to_tai_ns
        try:
            return converter(argument)
        except ValueError as exc:
            raise _RefusedError(clip(str(exc))) from None
    if isinstance(value, _dt.date):
        value = value.isoformat()
    if isinstance(value, str):
        text = _strip(value)
        if _missing_text(text):
            return None
        if not (_INT_RE.fullmatch(text) or _NUMBER_RE.fullmatch(text)):
            converter = tai_iso_to_tai_ns if time_scale == "tai" else utc_to_tai_ns
            try:
                return converter(text)
            except ValueError:
                raise _RefusedError(
                    f"expected TAI nanoseconds or an ISO-8601 {time_scale.upper()} time, "
                    f"got {shown(text)}"
                ) from None
    try:
        number = _integer_value(value)
    except _RefusedError as exc:
        raise _RefusedError(f"{exc} (a time is TAI nanoseconds or ISO-8601 text)") from None
    if number is not None and not limits.INT64_MIN <= number <= limits.INT64_MAX:
        raise _RefusedError(f"TAI nanoseconds {shown(number)} do not fit in 64 bits")
    return number


# =========================================================================== column helpers
def _text_types(arr_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arr_type):
        arr_type = arr_type.value_type
    is_view = getattr(pa.types, "is_string_view", lambda t: False)
    return pa.types.is_string(arr_type) or pa.types.is_large_string(arr_type) or is_view(arr_type)


def _as_chunked(arr: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr], type=arr.type)


def _clean_text(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    """Return a text column as ``string``, ASCII-stripped, nulls as "" (a missing cell)."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if not pa.types.is_string(arr.type):
        arr = arr.cast(pa.large_string()).cast(pa.string())
    arr = pc.fill_null(arr, "")
    return pc.utf8_trim(arr, characters=_WHITESPACE)


def _mask(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _plain_digits(arr: pa.ChunkedArray) -> np.ndarray | None:
    """Return int64 values if every cell is ASCII digits only and fits int64, else None."""
    if arr.null_count or not len(arr):
        return None
    if not pa.types.is_string(arr.type):
        arr = _clean_text(arr)
    if not pc.all(pc.ascii_is_decimal(arr)).as_py():
        return None
    try:
        return np.ascontiguousarray(pc.cast(arr, pa.int64()).to_numpy(), dtype=np.int64)
    except pa.ArrowInvalid:  # beyond int64
        return None


def _missing_mask(text: pa.ChunkedArray) -> np.ndarray:
    return _mask(pc.is_in(pc.utf8_lower(text), value_set=pa.array(sorted(MISSING_TOKENS))))


def _python_ints(digits: pa.ChunkedArray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer text to int64 one by one, flagging values beyond int64 (the rare slow path)."""
    values = np.zeros(len(digits), dtype=np.int64)
    beyond = np.zeros(len(digits), dtype=bool)
    for i in np.flatnonzero(rows):
        text = digits[int(i)].as_py()
        if len(text.lstrip("-").lstrip("0")) > 19:
            beyond[i] = True
            continue
        number = int(text)
        if limits.INT64_MIN <= number <= limits.INT64_MAX:
            values[i] = number
        else:
            beyond[i] = True
    return values, beyond


# =========================================================================== field kinds
@dataclass(frozen=True)
class Integer:
    """The integer rule (see the module docstring) with an inclusive range.

    Attributes
    ----------
    minimum, maximum : int
        Inclusive range; the storage width from `calibreg.domain.limits` by default int64.
    required : bool
        Whether a missing value is an error rather than ``None``.
    """

    minimum: int = limits.INT64_MIN
    maximum: int = limits.INT64_MAX
    required: bool = True

    def parse(self, value: Any, source: str, *, row: int | None, field: str) -> int | None:
        """Convert one value; ``None`` for a missing value when not ``required``.

        Raises
        ------
        calibreg.errors.InputError
            The value breaks the rule, its range, or is missing and ``required``.
        """
        try:
            number = _integer_value(value)
        except _RefusedError as exc:
            raise InputError(source, str(exc), row=row, field=field) from None
        if number is None:
            if self.required:
                raise InputError(source, "value is missing", row=row, field=field)
            return None
        reason = _range_reason(number, self.minimum, self.maximum)
        if reason is not None:
            raise InputError(source, reason, row=row, field=field)
        return number

    def column(
        self, arr: pa.Array | pa.ChunkedArray, source: str, *, field: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Convert a whole column (vectorised); accepts exactly what `parse` accepts.

        Returns
        -------
        values : `numpy.ndarray`, shape (n,), int64
            The integers (0 where missing).
        missing : `numpy.ndarray`, shape (n,), bool
            Where the value is missing (all False when ``required``).

        Raises
        ------
        calibreg.errors.InputError
            For the first bad row, worded by `parse`.
        """
        arr = _as_chunked(arr)
        n = len(arr)
        if _text_types(arr.type):
            values = _plain_digits(arr)
            if values is not None:  # the usual case: ASCII digits only, one cast
                out_of_range = (values < self.minimum) | (values > self.maximum)
                if out_of_range.any():
                    self._refuse(arr, _first(out_of_range), source, field)
                return values, np.zeros(n, dtype=bool)
            text = _clean_text(arr)
            is_int = _mask(pc.match_substring_regex(text, _INT_ARROW))
            missing = _missing_mask(text)
            is_num = _mask(pc.match_substring_regex(text, _NUMBER_ARROW)) & ~is_int
            unsigned = pc.replace_substring_regex(text, r"^\+", "")
            values = np.zeros(n, dtype=np.int64)
            bad = ~(missing | is_int | is_num)
            if is_int.any():
                digits = pc.if_else(pa.array(is_int), unsigned, "0")
                try:
                    values = np.asarray(pc.cast(digits, pa.int64()).to_numpy(), dtype=np.int64)
                    values = values.copy()
                except pa.ArrowInvalid:  # some beyond int64: find them the scalar way
                    values, beyond = _python_ints(digits, is_int)
                    bad |= beyond
            if is_num.any():
                floats = np.asarray(
                    pc.cast(pc.if_else(pa.array(is_num), unsigned, "0"), pa.float64()).to_numpy()
                )
                with np.errstate(invalid="ignore"):
                    exact = (
                        np.isfinite(floats)
                        & (floats == np.floor(floats))
                        & (np.abs(floats) < EXACT_FLOAT_INTEGERS)
                    )
                bad |= is_num & ~exact
                take = is_num & exact
                values = np.where(take, np.where(take, floats, 0.0).astype(np.int64), values)
        elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
            missing = _mask(arr.is_null())
            if pa.types.is_floating(arr.type):
                raw = np.asarray(pc.fill_null(arr, 0.0).to_numpy(), dtype=np.float64)
                missing |= np.isnan(raw)
                with np.errstate(invalid="ignore"):
                    bad = ~missing & ~(
                        np.isfinite(raw)
                        & (raw == np.floor(raw))
                        & (np.abs(raw) < EXACT_FLOAT_INTEGERS)
                    )
                values = np.where(missing | bad, 0.0, raw).astype(np.int64)
            else:
                raw = pc.fill_null(arr, 0).to_numpy()
                bad = raw > limits.INT64_MAX if raw.dtype == np.uint64 else np.zeros(n, bool)
                values = np.where(bad, 0, raw).astype(np.int64)
        else:
            return self._by_value(arr, source, field)
        if self.required:
            bad = bad | missing
        out_of_range = ~missing & ~bad & ((values < self.minimum) | (values > self.maximum))
        bad = bad | out_of_range
        if bad.any():
            self._refuse(arr, _first(bad), source, field)
        return np.ascontiguousarray(values, dtype=np.int64), missing

    def _by_value(
        self, arr: pa.ChunkedArray, source: str, field: str
    ) -> tuple[np.ndarray, np.ndarray]:
        parsed = [
            self.parse(v, source, row=i, field=field) for i, v in enumerate(arr.to_pylist(), 1)
        ]
        missing = np.array([v is None for v in parsed], dtype=bool)
        values = np.array([0 if v is None else v for v in parsed], dtype=np.int64)
        return values, missing

    def _refuse(self, arr: pa.ChunkedArray, i: int, source: str, field: str) -> None:
        self.parse(arr[i].as_py(), source, row=i + 1, field=field)
        raise AssertionError(f"column and scalar integer rules disagree on row {i + 1}")


@dataclass(frozen=True)
class Real:
    """The real-number rule (see the module docstring): finite or NaN, optionally bounded below.

    Attributes
    ----------
    minimum : float or None
        Smallest allowed value (NaN always passes: it means "no value").
    finite : bool
        Whether infinities are refused; True for every field calibreg reads (SPEC §2: NaN is
        "no valid measurement", and no measurement has an infinite meaning).
    required : bool
        Whether a missing value is an error rather than NaN.
    """

    minimum: float | None = None
    finite: bool = True
    required: bool = False

    def _check(self, number: float) -> str | None:
        if math.isnan(number):
            return "value is missing" if self.required else None
        if self.finite and math.isinf(number):
            return f"must be finite (or blank/NaN for no value), got {shown(number)}"
        if self.minimum is not None and number < self.minimum:
            return f"must be >= {self.minimum:g}, got {shown(number)}"
        return None

    def parse(self, value: Any, source: str, *, row: int | None, field: str) -> float:
        """Convert one value; NaN for a missing value when not ``required``.

        Raises
        ------
        calibreg.errors.InputError
            Not a number, infinite, below ``minimum``, or missing and ``required``.
        """
        try:
            number = _real_value(value)
        except _RefusedError as exc:
            raise InputError(source, str(exc), row=row, field=field) from None
        reason = self._check(number)
        if reason is not None:
            raise InputError(source, reason, row=row, field=field)
        return number

    def column(self, arr: pa.Array | pa.ChunkedArray, source: str, *, field: str) -> np.ndarray:
        """Convert a whole column (vectorised); accepts exactly what `parse` accepts.

        Returns
        -------
        `numpy.ndarray`, shape (n,), float64
            The values, NaN where missing.

        Raises
        ------
        calibreg.errors.InputError
            For the first bad row, worded by `parse`.
        """
        arr = _as_chunked(arr)
        if _text_types(arr.type):
            text = _clean_text(arr)
            missing = _missing_mask(text)
            number = _mask(pc.match_substring_regex(text, _NUMBER_ARROW))
            cleaned = pc.if_else(
                pa.array(number & ~missing), pc.replace_substring_regex(text, r"^\+", ""), "nan"
            )
            values = np.asarray(pc.cast(cleaned, pa.float64()).to_numpy(), dtype=np.float64)
            not_number = ~(missing | number)
        elif pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type):
            values = np.asarray(
                pc.fill_null(pc.cast(arr, pa.float64(), safe=False), math.nan).to_numpy(),
                dtype=np.float64,
            )
            not_number = np.zeros(len(values), dtype=bool)
        else:
            values = arr.to_pylist()
            return np.array(
                [self.parse(v, source, row=i, field=field) for i, v in enumerate(values, 1)],
                dtype=np.float64,
            )
        bad = not_number.copy()
        if self.required:
            bad |= np.isnan(values)
        if self.finite:
            bad |= np.isinf(values)
        if self.minimum is not None:
            with np.errstate(invalid="ignore"):
                bad |= values < self.minimum
        if bad.any():
            self._refuse(arr, _first(bad), source, field)
        return np.ascontiguousarray(values, dtype=np.float64)

    def _refuse(self, arr: pa.ChunkedArray, i: int, source: str, field: str) -> None:
        self.parse(arr[i].as_py(), source, row=i + 1, field=field)
        raise AssertionError(f"column and scalar real rules disagree on row {i + 1}")


@dataclass(frozen=True)
class Text:
    """The text rule (see the module docstring) with its length in characters.

    Attributes
    ----------
    max_length : int
        Longest allowed text, from `calibreg.domain.limits`.
    required : bool
        Whether a missing (blank) value is an error rather than ``None``.
    """

    max_length: int
    required: bool = False

    def _check(self, text: str | None) -> str | None:
        if text is None:
            return "value is missing" if self.required else None
        if len(text) > self.max_length:
            return (
                f"text of {len(text)} characters is longer than the {self.max_length} allowed: "
                f"{shown(text)}"
            )
        if "\x00" in text:
            return f"text contains a NUL character: {shown(text)}"
        return None

    def parse(self, value: Any, source: str, *, row: int | None, field: str) -> str | None:
        """Convert one value; ``None`` for a missing value when not ``required``.

        Raises
        ------
        calibreg.errors.InputError
            Not text (nor a number), too long, with a NUL, or missing and ``required``.
        """
        try:
            text = _text_value(value)
        except _RefusedError as exc:
            raise InputError(source, str(exc), row=row, field=field) from None
        reason = self._check(text)
        if reason is not None:
            raise InputError(source, reason, row=row, field=field)
        return text

    def column(self, arr: pa.Array | pa.ChunkedArray, source: str, *, field: str) -> np.ndarray:
        """Convert a whole column (vectorised for text columns); accepts what `parse` accepts.

        Returns
        -------
        `numpy.ndarray`, shape (n,), object
            `str` values, ``None`` where missing.

        Raises
        ------
        calibreg.errors.InputError
            For the first bad row, worded by `parse`.
        """
        arr = _as_chunked(arr)
        if pa.types.is_null(arr.type):
            if self.required and len(arr):
                self.parse(None, source, row=1, field=field)
            return np.full(len(arr), None, dtype=object)
        if not _text_types(arr.type):
            values = arr.to_pylist()
            return np.array(
                [self.parse(v, source, row=i, field=field) for i, v in enumerate(values, 1)],
                dtype=object,
            )
        text = _clean_text(arr)
        blank = _mask(pc.equal(text, ""))
        bad = _mask(pc.greater(pc.utf8_length(text), self.max_length))
        bad |= _mask(pc.match_substring(text, "\x00"))
        if self.required:
            bad |= blank
        if bad.any():
            i = _first(bad)
            self.parse(arr[i].as_py(), source, row=i + 1, field=field)
            raise AssertionError(f"column and scalar text rules disagree on row {i + 1}")
        values = np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
        values[blank] = None
        return values


@dataclass(frozen=True)
class Time:
    """The instant rule (see the module docstring): TAI ns, ISO-8601 text or a datetime.

    Attributes
    ----------
    required : bool
        Whether a missing value is an error rather than ``None``.
    """

    required: bool = False

    def parse(
        self,
        value: Any,
        source: str,
        *,
        row: int | None,
        field: str,
        time_scale: str = "utc",
    ) -> int | None:
        """Convert one value to TAI nanoseconds; ``None`` for missing when not ``required``.

        Parameters
        ----------
        value : object
            TAI ns (int, integer text), ISO-8601 text read in ``time_scale`` (an explicit UTC
            offset wins), or a `datetime.datetime`/`datetime.date`.
        source, row, field
            Where the value came from, for the message.
        time_scale : {"utc", "tai"}
            The scale of readings without an offset.

        Returns
        -------
        int or None
            TAI nanoseconds since 1970-01-01 00:00:00 TAI.

        Raises
        ------
        calibreg.errors.InputError
            Neither form, out of range, or missing and ``required``.
        """
        try:
            ns = _time_value(value, time_scale)
        except _RefusedError as exc:
            raise InputError(source, str(exc), row=row, field=field) from None
        if ns is None and self.required:
            raise InputError(source, "value is missing", row=row, field=field)
        return ns


def iter_rows(records: list[Any]) -> Iterator[tuple[int, Any]]:
    """Enumerate records from 1, as a person counts them."""
    return enumerate(records, start=1)
