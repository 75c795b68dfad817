"""The one place that imports the LSST middleware, lazily, with a one-line install hint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from calibreg.errors import CalibregError

if TYPE_CHECKING:
    from types import ModuleType

#: How to get the middleware, said by every butler command that cannot import it.
INSTALL_HINT = "pip install 'calibreg[butler]'"


class ButlerUnavailableError(CalibregError):
    """The LSST middleware (``lsst-daf-butler``) is not installed."""


def daf_butler() -> ModuleType:
    """Return ``lsst.daf.butler``, imported on first use.

    Raises
    ------
    ButlerUnavailableError
        If it is not installed; the message is one line naming `INSTALL_HINT`.
    """
    try:
        import lsst.daf.butler as module
    except ImportError:
        raise ButlerUnavailableError(
            f"the butler commands need the LSST middleware: {INSTALL_HINT}"
        ) from None
    return module


def open_butler(repo: str, *, writeable: bool) -> Any:
    """Open the butler repository at ``repo`` (a directory or a ``butler.yaml``).

    Raises
    ------
    ButlerUnavailableError
        If the middleware is not installed.
    CalibregError
        If the repository cannot be opened (one line with the butler's reason).
    """
    module = daf_butler()
    try:
        return module.Butler.from_config(repo, writeable=writeable)
    except Exception as err:  # the butler raises many kinds; the user needs one line
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CalibregError(f"cannot open butler repository {repo}: {reason}") from None


def tai_ns_timespan(begin: int, end: int | None) -> Any:
    """Return a butler ``Timespan`` for ``[begin, end)`` TAI ns (``end`` None: unbounded).

    The butler's own converter is exact to the nanosecond both ways (it stores the same TAI
    nanoseconds since 1970 that calibreg does).
    """
    module = daf_butler()
    from lsst.daf.butler.time_utils import TimeConverter

    conv = TimeConverter()
    return module.Timespan(
        conv.nsec_to_astropy(int(begin)), None if end is None else conv.nsec_to_astropy(int(end))
    )


def timespan_tai_ns(timespan: Any) -> tuple[int | None, int | None]:
    """Return a butler ``Timespan`` as ``(begin, end)`` TAI ns, None for an unbounded side."""
    if timespan is None:
        return None, None
    begin, end = timespan.nsec
    from lsst.daf.butler.time_utils import TimeConverter

    conv = TimeConverter()
    return (
        None if begin <= conv.min_nsec else int(begin),
        None if end >= conv.max_nsec else int(end),
    )
