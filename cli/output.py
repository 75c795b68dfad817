"""Printing for every command: human tables, JSON or CSV, and the one error exit.

`print_frame` prints a DataFrame; `print_rows` prints plain rows (dicts) the same way without
importing pandas, for commands that must start fast (``calibreg versions list``). Both draw
the terminal table with `_print_table`.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import numbers
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table


class Format(enum.StrEnum):
    """Output formats of tabular commands."""

    table = "table"
    json = "json"
    csv = "csv"


class ObjFormat(enum.StrEnum):
    """Output formats of commands that print one object."""

    table = "table"
    json = "json"


def one_line(text: str) -> str:
    """Return ``text`` as one printable line: control and line-breaking characters escaped.

    Error messages echo what a user gave; a value holding ``\r``, ``\n`` or other
    non-printing characters must not break the message into several lines.
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error to stderr and exit non-zero (no traceback)."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def print_json(obj: Any) -> None:
    """JSON on stdout under calibreg's one JSON rule (NaN and infinities → null), nothing else."""
    from calibreg.domain.jsonable import dumps

    sys.stdout.write(dumps(obj, indent=2) + "\n")


def print_frame(
    frame: pd.DataFrame,
    fmt: Format,
    *,
    title: str | None = None,
    columns: Sequence[Column | str] | None = None,
) -> None:
    """Print a DataFrame as a terminal table, JSON records or CSV.

    Parameters
    ----------
    frame
        The rows to print. JSON and CSV carry every column of it, exactly (machine output
        loses nothing).
    fmt
        ``table``, ``json`` or ``csv``.
    title
        Title above the terminal table.
    columns
        The terminal table's columns (names of ``frame`` or :class:`Column` specs), in order;
        names ``frame`` lacks are skipped. Default: every column, identifiers kept whole.
        Only the terminal table uses it.
    """
    if fmt == Format.json:
        print_json(frame.to_dict("records"))
        return
    if fmt == Format.csv:
        frame.to_csv(sys.stdout, index=False)
        return
    _print_table(
        frame,
        list(frame.columns),
        lambda name: _is_numeric(frame[name]),
        empty=frame.empty,
        title=title,
        columns=columns,
    )


def print_rows(
    rows: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    fmt: Format,
    *,
    title: str | None = None,
    columns: Sequence[Column | str] | None = None,
) -> None:
    """Print plain rows as :func:`print_frame` prints the DataFrame of them, without pandas.

    Parameters
    ----------
    rows
        The rows to print, each a mapping of every name in ``fields``; values as a typed
        DataFrame of the repository layer holds them (``int`` or ``None`` for integers,
        ``bool`` or ``None``, ``float`` with NaN for missing, text, instants).
    fields
        The columns, in order (JSON keys and CSV header even when there are no rows).
    fmt
        ``table``, ``json`` or ``csv``: the same text as :func:`print_frame` prints.
    title
        Title above the terminal table.
    columns
        The terminal table's columns, as for :func:`print_frame`. A column right-aligns when
        its values are numbers (not booleans).
    """
    if fmt == Format.json:
        print_json([{name: row[name] for name in fields} for row in rows])
        return
    if fmt == Format.csv:
        _write_csv(rows, fields)
        return
    values = {name: [row[name] for row in rows] for name in fields}
    _print_table(
        values,
        list(fields),
        lambda name: _all_numbers(values[name]),
        empty=not rows,
        title=title,
        columns=columns,
    )


def _write_csv(rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> None:
    """CSV as ``DataFrame.to_csv(index=False)`` writes a typed frame: NULL and NaN empty."""
    import csv

    def text(value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return repr(float(value)) if isinstance(value, float) else value

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(fields)
    writer.writerows([text(row[name]) for name in fields] for row in rows)


def _print_table(
    values: Mapping[str, Iterable[Any]],
    names: Sequence[str],
    is_numeric: Callable[[str], bool],
    *,
    empty: bool,
    title: str | None,
    columns: Sequence[Column | str] | None,
) -> None:
    """Draw the terminal table of :func:`print_frame` and :func:`print_rows`.

    ``values`` maps each of ``names`` (the columns, in order) to its values; ``is_numeric``
    says which columns right-align.
    """
    specs = _specs(values, names, columns)
    cells = {spec.name: [_cell(v, spec.digits) for v in values[spec.name]] for spec in specs}
    out = console()
    left_out: list[str] = []
    while sum(_widths(specs, cells)[1]) + _gaps(specs) > out.width and any(
        c.optional for c in specs
    ):
        last = max(i for i, c in enumerate(specs) if c.optional)
        left_out.insert(0, specs.pop(last).title)
    widths = _layout(specs, cells, out.width)
    table = new_table(title)
    for spec, width in zip(specs, widths, strict=True):
        table.add_column(
            spec.title,
            justify="right" if _right(spec, is_numeric) else "left",
            overflow="fold",
            width=width,
        )
    from rich.text import Text

    def text(value: str, whole: bool | None) -> Text:  # Text: no markup read into values
        return Text(value, no_wrap=True, overflow="ellipsis") if whole else Text(value)

    for row in zip(*(cells[spec.name] for spec in specs), strict=True):
        table.add_row(*(text(v, spec.whole) for v, spec in zip(row, specs, strict=True)))
    out.print(table)
    if empty:
        typer.echo("(no rows)", err=True)
    if left_out:
        typer.echo(
            f"(left out at {out.width} columns: {', '.join(left_out)}; a wider terminal or "
            "--format csv shows them)",
            err=True,
        )


def _right(spec: Column, is_numeric: Callable[[str], bool]) -> bool:
    return is_numeric(spec.name) if spec.numeric is None else spec.numeric


#: Characters between two columns of a terminal table (see :func:`new_table`).
COLUMN_GAP = 2


def _gaps(specs: Sequence[Column]) -> int:
    return COLUMN_GAP * max(len(specs) - 1, 0)


def _widths(
    specs: Sequence[Column], cells: Mapping[str, Sequence[str]]
) -> tuple[list[int], list[int]]:
    """Each column's natural width and the narrowest width that cuts no value.

    Natural: the longest line, and the heading on one line. Narrowest: a column kept whole
    needs its longest line, a wrapping column its longest word; a heading may wrap at spaces.
    """
    from rich.cells import cell_len

    natural, narrowest = [], []
    for spec in specs:
        values = cells[spec.name]
        lines = [line for v in values for line in (v.splitlines() or [""])]
        words = [w for v in values for w in v.split()]
        longest_line = max((cell_len(x) for x in lines), default=0)
        longest_word = max((cell_len(w) for w in words), default=0)
        head_word = max(cell_len(w) for w in (spec.title.split() or [""]))
        natural.append(max(longest_line, cell_len(spec.title), 1))
        narrowest.append(max(longest_line if spec.whole else longest_word, head_word, 1))
    return natural, narrowest


def _layout(
    specs: Sequence[Column], cells: Mapping[str, Sequence[str]], width: int
) -> list[int | None]:
    """Column widths that fit ``width`` wrapping only at spaces, where that is possible.

    Returns ``None`` for every column when the table fits as it is. Otherwise the widest
    column gives up one character at a time, never below its narrowest (:func:`_widths`:
    whole columns only wrap their heading). Rich's own squeeze, which cuts words, is left
    only for a table that cannot fit at all.
    """
    natural, narrowest = _widths(specs, cells)
    avail = width - _gaps(specs)
    if sum(natural) <= avail:
        return [None] * len(specs)
    widths = list(natural)
    while sum(widths) > avail:
        shrinkable = [i for i in range(len(specs)) if widths[i] > narrowest[i]]
        if not shrinkable:
            return [None] * len(specs)
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
    return list(widths)


@dataclasses.dataclass(frozen=True)
class Column:
    """How one column of a terminal table looks.

    Attributes
    ----------
    name
        The frame's column.
    header
        Its heading (default: ``name``).
    whole
        Never wrap or cut its values (identifiers: ids, names, tags). ``None``: decide from
        the values (whole when every value is at most :data:`WHOLE_MAX` characters).
    digits
        Significant digits of floating-point values.
    optional
        Leave the column out when the terminal is too narrow for the table (the last
        optional column first; a note on stderr says so).
    numeric
        Right-align it (a column of numbers). ``None``: decide from the frame's dtype
        (:func:`print_frame`) or the values (:func:`print_rows`: numbers, not booleans; give
        it for a column that may hold no value, which the values cannot tell).
    """

    name: str
    header: str | None = None
    whole: bool | None = None
    digits: int = 7
    optional: bool = False
    numeric: bool | None = None

    @property
    def title(self) -> str:
        """The column's heading."""
        return self.header or self.name


#: Values up to this many characters are kept whole (not wrapped) by default.
WHOLE_MAX = 24


def _specs(
    values: Mapping[str, Iterable[Any]],
    names: Sequence[str],
    columns: Sequence[Column | str] | None,
) -> list[Column]:
    given = list(names) if columns is None else columns
    specs = []
    for item in given:
        spec = item if isinstance(item, Column) else Column(str(item))
        if spec.name not in names:
            continue
        if spec.whole is None:
            longest = max((len(_cell(v, spec.digits)) for v in values[spec.name]), default=0)
            spec = dataclasses.replace(spec, whole=longest <= WHOLE_MAX)
        specs.append(spec)
    return specs


def _is_numeric(values: pd.Series) -> bool:
    import pandas as pd

    if pd.api.types.is_bool_dtype(values):
        return False
    if pd.api.types.is_numeric_dtype(values):
        return True
    return _all_numbers(values)


def _all_numbers(values: Iterable[Any]) -> bool:
    """Whether the present values (at least one) are all real numbers, booleans not counted."""
    na = _pandas("NA")
    present = [v for v in values if v is not None and v is not na]
    return bool(present) and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present
    )


def _pandas(name: str) -> Any:
    """pandas' ``NA`` or ``NaT``; a value can only be one once pandas is loaded, so no import.

    Without pandas loaded, a fresh object that no value is.
    """
    pd = sys.modules.get("pandas")
    return object() if pd is None else getattr(pd, name)


def new_table(title: str | None = None, *, show_header: bool = True) -> Table:
    """A terminal table in calibreg's look: a ruled heading, no vertical rules (saves width)."""
    from rich import box
    from rich.table import Table

    return Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_header=show_header,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        title_justify="left",
        title_style="bold",
    )


def console(*, stderr: bool = False) -> Console:
    """The Rich console of stdout (or stderr): the terminal's width, else ``$COLUMNS``, else 80."""
    from rich.console import Console

    return Console(stderr=stderr)


def _cell(value: Any, digits: int = 7) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}g}"
    if value is _pandas("NA") or value is _pandas("NaT"):
        return ""
    return str(value)


def short_hash(value: str | None, n: int = 12) -> str:
    """A content hash abbreviated to its first ``n`` hex digits (as ``git log`` does)."""
    return "" if not value else str(value)[:n]


def short_instant(text: str | None) -> str:
    """A UTC ISO-8601 instant without its zero fraction and zero seconds, for a table.

    ``2026-01-15T02:59:23.000000000Z`` → ``2026-01-15T02:59:23Z``, and
    ``2026-01-01T00:00:00.000000000Z`` → ``2026-01-01T00:00Z`` (both ISO 8601). Exact: only
    zeros are dropped, so the instant is unchanged. Other text is returned as it is.
    """
    if not text:
        return ""
    if not text.endswith("Z") or "T" not in text:
        return text
    head, _, fraction = text[:-1].partition(".")
    fraction = fraction.rstrip("0")
    if fraction:
        return f"{head}.{fraction}Z"
    if head.endswith(":00") and head.count(":") == 2:
        head = head[:-3]
    return f"{head}Z"


def short_time(value: Any) -> str:
    """A creation time for a table: ``YYYY-MM-DD HH:MM`` in UTC (JSON keeps the full one)."""
    import datetime as dt

    if value is None or value is _pandas("NaT"):
        return ""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def print_mapping(
    obj: Mapping[str, Any], fmt: ObjFormat | Format, *, title: str | None = None
) -> None:
    """Print one object as key/value lines or JSON."""
    if fmt == ObjFormat.json or fmt == Format.json:
        print_json(obj)
        return
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in obj.items():
        if isinstance(value, (Mapping, list, tuple)) and not isinstance(value, str):
            from calibreg.domain.jsonable import dumps

            value = dumps(value)
        table.add_row(str(key), _cell(value, 10))
    console().print(table)


def rows_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A list of dicts as a DataFrame (keeps column order of the first row)."""
    import pandas as pd

    return pd.DataFrame(list(rows))
