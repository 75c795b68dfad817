"""How long work reports how far it has got: a callback, never printing.

The reading, writing and solving layers take an optional ``progress`` callback and call it as
they go; the command line draws it (a Rich progress bar on a terminal), the Python client and
the HTTP service pass nothing and stay silent. One call names a *stage* (``"read"``,
``"stored"``, ``"rejection passes"``, ...) and how far it is::

    progress("read", 300_000, 604_800, unit="rows")

A stage's ``done`` only grows; ``total`` may be ``None`` (unknown), or an estimate that is
refined as the work goes on (a CSV file's rows, estimated from the bytes read so far).
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Progress", "Throttle", "report"]


class Progress(Protocol):
    """A progress callback: ``progress(stage, done, total=None, *, unit="rows", detail="")``.

    Parameters
    ----------
    stage : str
        A short name of the step (one line on the terminal per stage).
    done : int
        Units done so far in this stage (never decreases).
    total : int, optional
        Units the stage will do, if known (an estimate may change between calls).
    unit : str
        What is counted: ``"rows"``, ``"files"``, ``"quanta"``, ``"passes"``, ...
    detail : str
        A few words shown beside the stage (e.g. ``"12 new, 3 unchanged"``).
    """

    def __call__(
        self,
        stage: str,
        done: int,
        total: int | None = None,
        *,
        unit: str = "rows",
        detail: str = "",
    ) -> None:
        """Report that ``stage`` has done ``done`` of ``total`` units."""


def report(
    progress: Progress | None,
    stage: str,
    done: int,
    total: int | None = None,
    *,
    unit: str = "rows",
    detail: str = "",
) -> None:
    """Call ``progress`` if there is one (the common case in library code is none)."""
    if progress is not None:
        progress(stage, int(done), None if total is None else int(total), unit=unit, detail=detail)


class Throttle:
    """Pass on at most one report per ``interval`` seconds, plus the last one of a stage.

    For loops that run thousands of cheap iterations (solver sweeps): the callback is not
    called more often than a person can read.
    """

    def __init__(self, progress: Progress | None, interval: float = 0.1) -> None:
        self._progress = progress
        self._interval = float(interval)
        self._last = 0.0

    def __call__(
        self,
        stage: str,
        done: int,
        total: int | None = None,
        *,
        unit: str = "rows",
        detail: str = "",
        final: bool = False,
    ) -> None:
        """Report, unless the last report was less than ``interval`` ago (``final`` always)."""
        if self._progress is None:
            return
        now = time.monotonic()
        if final or now - self._last >= self._interval:
            self._last = now
            report(self._progress, stage, done, total, unit=unit, detail=detail)
