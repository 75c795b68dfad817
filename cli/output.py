"""Printing for every command: human tables, JSON or CSV, and the one error exit."""

from __future__ import annotations

import dataclasses
import enum
import math
import numbers
import sys
from collections.abc import Mapping, Sequence
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
    specs = _specs(frame, columns)
    table = new_table(title)
    for spec in specs:
        values = frame[spec.name]
        numeric = _is_numeric(values)
        table.add_column(
            spec.header or spec.name,
            justify="right" if numeric else "left",
            no_wrap=spec.whole,
            overflow="ellipsis" if spec.whole else "fold",
        )
    cells = [[_cell(v, spec.digits) for v in frame[spec.name]] for spec in specs]
    for row in zip(*cells, strict=True):
        table.add_row(*row)
    console().print(table)
    if frame.empty:
        typer.echo("(no rows)", err=True)


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
    """

    name: str
    header: str | None = None
    whole: bool | None = None
    digits: int = 7


#: Values up to this many characters are kept whole (not wrapped) by default.
WHOLE_MAX = 24


def _specs(frame: pd.DataFrame, columns: Sequence[Column | str] | None) -> list[Column]:
    given = list(frame.columns) if columns is None else columns
    specs = []
    for item in given:
        spec = item if isinstance(item, Column) else Column(str(item))
        if spec.name not in frame.columns:
            continue
        if spec.whole is None:
            longest = max((len(_cell(v, spec.digits)) for v in frame[spec.name]), default=0)
            spec = dataclasses.replace(spec, whole=longest <= WHOLE_MAX)
        specs.append(spec)
    return specs


def _is_numeric(values: pd.Series) -> bool:
    import pandas as pd

    if pd.api.types.is_bool_dtype(values):
        return False
    if pd.api.types.is_numeric_dtype(values):
        return True
    present = [v for v in values if v is not None and v is not pd.NA]
    return bool(present) and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present
    )


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
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return ""
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def short_hash(value: str | None, n: int = 12) -> str:
    """A content hash abbreviated to its first ``n`` hex digits (as ``git log`` does)."""
    return "" if not value else str(value)[:n]


def short_instant(text: str | None) -> str:
    """A UTC ISO-8601 instant without a zero fraction (``...:23.000000000Z`` → ``...:23Z``).

    Exact: only zeros are dropped, so the instant is unchanged.
    """
    if not text:
        return ""
    head, dot, rest = text.partition(".")
    if not dot or not rest.endswith("Z"):
        return text
    fraction = rest[:-1].rstrip("0")
    return f"{head}.{fraction}Z" if fraction else f"{head}Z"


def short_time(value: Any) -> str:
    """A creation time for a table: ``YYYY-MM-DD HH:MM`` in UTC (JSON keeps the full one)."""
    import datetime as dt

    import pandas as pd

    if value is None or value is pd.NaT:
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
