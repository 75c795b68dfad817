"""Printing for every command: human tables, JSON or CSV, and the one error exit."""

from __future__ import annotations

import enum
import math
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    import pandas as pd


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


def print_frame(frame: pd.DataFrame, fmt: Format, *, title: str | None = None) -> None:
    """Print a DataFrame as a rich table, JSON records or CSV."""
    if fmt == Format.json:
        print_json(frame.to_dict("records"))
        return
    if fmt == Format.csv:
        frame.to_csv(sys.stdout, index=False)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in frame.columns:
        table.add_column(str(col), overflow="fold")
    for rec in frame.itertuples(index=False):
        table.add_row(*(_cell(v) for v in rec))
    Console().print(table)
    if frame.empty:
        typer.echo("(no rows)", err=True)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.10g}"
    try:
        import pandas as pd

        if value is pd.NA:
            return ""
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def print_mapping(
    obj: Mapping[str, Any], fmt: ObjFormat | Format, *, title: str | None = None
) -> None:
    """Print one object as key/value lines or JSON."""
    if fmt == ObjFormat.json or fmt == Format.json:
        print_json(obj)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in obj.items():
        if isinstance(value, (Mapping, list, tuple)) and not isinstance(value, str):
            from calibreg.domain.jsonable import dumps

            value = dumps(value)
        table.add_row(str(key), _cell(value))
    Console().print(table)


def rows_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A list of dicts as a DataFrame (keeps column order of the first row)."""
    import pandas as pd

    return pd.DataFrame(list(rows))
