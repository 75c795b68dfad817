"""Options and helpers shared by every command group."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

try:  # recent Typer vendors Click as typer._click; its exceptions are those classes
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older Typer on Click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]

if TYPE_CHECKING:
    from calibreg.client import Registry
    from calibreg.domain.progress import Progress
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
        _reflow_help(self)
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


def _reflow_help(command: Any) -> None:
    """Join the source line breaks inside each prose paragraph of every command's help.

    Typer keeps a docstring's line breaks, so a paragraph wrapped at the source's 96 columns
    came out ragged on an 80-column terminal (each source line wrapped again on its own). A
    paragraph holding a list, an indented block or a ``\\b`` (keep as is) marker is left alone.
    """
    if getattr(command, "_calibreg_reflowed", False):
        return
    command._calibreg_reflowed = True
    if command.help:
        command.help = reflow(command.help)
    for sub in getattr(command, "commands", {}).values():
        _reflow_help(sub)


def reflow(text: str) -> str:
    """Return ``text`` with each plain paragraph on one line (see :func:`_reflow_help`)."""
    import inspect

    paragraphs = inspect.cleandoc(text).split("\n\n")
    out = []
    for para in paragraphs:
        lines = para.split("\n")
        keep = para.startswith("\b") or any(
            line[:1].isspace() or line.lstrip().startswith(("- ", "* ", "| ")) for line in lines
        )
        out.append(para if keep else " ".join(line.strip() for line in lines))
    return "\n\n".join(out)


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
def progress_bars() -> Iterator[Progress]:
    """Progress bars on stderr for the stages a long command reports, only on a terminal.

    Yields a :class:`calibreg.domain.progress.Progress` callback to hand to the facade call
    (``progress=``): each stage it names gets one line with a bar (when its total is known),
    the count done of the total, the rate and the time left (or elapsed, when the total is
    unknown). Scripts and pipes (and ``--format json``, whose stdout must stay pure JSON)
    see nothing: off a terminal the callback does nothing. Lines stay on the screen when the
    command ends, so the counts of the last run can be read.
    """
    if not sys.stderr.isatty():
        yield _silent
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn
    from rich.text import Text

    class Counts(ProgressColumn):
        def render(self, task: Any) -> Text:
            unit = task.fields.get("unit", "")
            if task.total is None:
                return Text(f"{task.completed:,.0f} {unit}")
            return Text(f"{task.completed:,.0f}/{task.total:,.0f} {unit}")

    started: list[float] = []  # when the command asked for bars: the work's start

    def rate(task: Any) -> float | None:
        """The stage's mean rate since the work started (steadier than Rich's windowed speed
        for a few large updates, and not inflated for a stage that reports late)."""
        if not started or not task.completed or task.start_time is None:
            return None
        end = task.start_time + task.finished_time if task.finished else bars.get_time()
        return task.completed / (end - started[0]) if end > started[0] else None

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = rate(task)
            unit = task.fields.get("unit", "")
            return Text(f"{speed:,.0f} {unit}/s" if speed and speed >= 1 else "", style="cyan")

    class Time(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = rate(task)
            if task.finished or task.total is None or not speed:
                seconds = (task.finished_time if task.finished else task.elapsed) or 0
                return Text(_clock(seconds), style="yellow")
            return Text(f"eta {_clock((task.total - task.completed) / speed)}", style="green")

    bars = Progress(
        SpinnerColumn(finished_text="[green]✓"),
        TextColumn("{task.description}"),
        BarColumn(bar_width=12),
        Counts(),
        Rate(),
        Time(),
        console=Console(stderr=True),
        refresh_per_second=8,
    )
    tasks: dict[str, Any] = {}

    def advance(
        stage: str,
        done: int,
        total: int | None = None,
        *,
        unit: str = "rows",
        detail: str = "",
    ) -> None:
        label = f"{stage} [dim]{detail}[/]" if detail else stage
        if stage not in tasks:
            tasks[stage] = bars.add_task(label, total=total, unit=unit)
        bars.update(tasks[stage], completed=done, total=total, description=label)
        bars.refresh()

    with bars:
        started.append(bars.get_time())
        try:
            yield advance
        finally:
            for task in bars.tasks:  # what was done is done: no spinner left turning
                if not task.finished:
                    bars.update(task.id, total=task.completed)


def _silent(*_args: Any, **_kwargs: Any) -> None:
    """The progress callback off a terminal: nothing to draw."""


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def open_registry(db: str | None, *, check_schema: bool = True) -> Registry:
    """Open the registry at ``db`` (the one way in), refusing an out-of-date schema."""
    from calibreg.client import Registry

    return Registry(db, check_schema=check_schema)
