"""Options and helpers shared by every command group."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

try:  # recent Typer vendors Click as typer._click; its exceptions are those classes
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older Typer on Click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]

if TYPE_CHECKING:
    from calibreg.client import Registry
from calibreg_cli.output import fail, one_line

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (else $CALIBREG_DATABASE_URL, else ./calibreg.sqlite3).",
        show_default=False,
    ),
]


class OneLineErrors(TyperGroup):
    """The top-level command group: a usage error is one line too, like every other error.

    Click prints a usage error as a multi-line panel (usage, hint, boxed message); scripts and
    people alike get ``error: <what> (see --help)`` on stderr and exit status 2 instead.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Run the command line, reporting usage errors in one line."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError as err:
            err.show()
            sys.exit(err.exit_code)
        except click_errors.ClickException as err:
            message = " ".join(err.format_message().split())
            hint = ""
            ctx = getattr(err, "ctx", None)
            if isinstance(err, click_errors.UsageError) and ctx is not None:
                hint = f" (see {ctx.command_path} --help)"
            typer.echo(f"error: {one_line(message)}{hint}", err=True)
            sys.exit(err.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def debug_enabled() -> bool:
    """Whether to show tracebacks (``CALIBREG_DEBUG=1``)."""
    return os.environ.get("CALIBREG_DEBUG", "") not in ("", "0")


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """Turn calibreg's errors into a one-line message and a non-zero exit."""
    from calibreg.errors import CalibregError

    try:
        yield
    except typer.Exit:
        raise
    except CalibregError as err:
        if debug_enabled():
            raise
        fail(str(err))
    except FileNotFoundError as err:
        if debug_enabled():
            raise
        fail(f"{err.filename}: no such file")
    except OSError as err:  # permissions, a directory given for a file, a full disk...
        if debug_enabled():
            raise
        where = f"{err.filename}: " if err.filename else ""
        fail(f"{where}{err.strerror or err}")
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as err:  # a bug: still one line, the traceback on request
        if debug_enabled():
            raise
        first = (str(err).splitlines() or [""])[0][:300]
        fail(
            f"internal error ({type(err).__name__}: {first}); please report it, "
            "CALIBREG_DEBUG=1 shows the traceback",
            70,
        )


@contextlib.contextmanager
def progress(message: str) -> Iterator[None]:
    """A spinner on stderr while long work runs, only when attached to a terminal.

    Scripts and pipes (and ``--format json``, whose stdout must stay pure JSON) see nothing.
    """
    import sys

    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


@contextlib.contextmanager
def row_progress(message: str, unit: str = "rows") -> Iterator[Callable[[int], None]]:
    """A progress line on stderr counting rows done, with the rate, only on a terminal.

    Yields the callback a streaming facade call takes (``progress=``): it is called with the
    number of rows done so far. Off a terminal the callback does nothing.
    """
    import sys

    if not sys.stderr.isatty():
        yield lambda _done: None
        return
    from rich.console import Console
    from rich.progress import (
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} {unit}/s" if speed else "")

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,.0f} " + unit),
        RateColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(message, total=None)
        yield lambda done: bar.update(task, completed=done)


def open_registry(db: str | None, *, check_schema: bool = True) -> Registry:
    """Open the registry at ``db`` (the one way in), refusing an out-of-date schema."""
    from calibreg.client import Registry

    return Registry(db, check_schema=check_schema)
