"""Domain errors: what went wrong, said in one line a user can act on.

Every layer raises these instead of driver or parser exceptions so that the CLI and the HTTP API
can report them without a traceback.
"""

from __future__ import annotations

from typing import Any


class CalibregError(Exception):
    """Base of every error calibreg reports to a user."""


class InputError(CalibregError):
    """Bad input data: names the file, the row, the field and the reason.

    ``row`` counts data rows from 1 as a person sees them in the file (for a CSV the header is
    line 1, so data row 1 is line 2); ``None`` when the problem is the whole file.
    """

    def __init__(
        self,
        source: str,
        reason: str,
        *,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.source = str(source)
        self.row = row
        self.field = field
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.source]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        parts.append(self.reason)
        return ": ".join(parts)


class NotFoundError(CalibregError):
    """A named thing (instrument, version, tag...) does not exist."""


class ConflictError(CalibregError):
    """The request contradicts what the registry already holds."""


class SchemaError(CalibregError):
    """The database schema is missing or not at the revision this software needs."""


class SolveError(CalibregError):
    """A quantum cannot be solved as asked (no exposures, disconnected data...)."""


class CertificationGateError(ConflictError):
    """Certify refused: the new version changes row scales by more than the threshold.

    Attributes
    ----------
    comparison
        The comparison that tripped the gate (``old_version``, ``new_version``,
        ``max_abs_rel_change``, ``rms_rel_change``, ``worst`` rows, ``threshold``...), so an
        interface can show it.
    """

    def __init__(self, message: str, comparison: dict[str, Any]) -> None:
        super().__init__(message)
        self.comparison = comparison


class NothingCertifiedError(NotFoundError):
    """A lookup found no certified version.

    Attributes
    ----------
    considered
        When the lookup was asked to explain itself, every certification of the quantum's tag
        with why it did not match; else an empty list.
    """

    def __init__(self, message: str, considered: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.considered = list(considered or [])


class AmbiguousLookupError(ConflictError):
    """A lookup by exposure matched more than one version: its timespan crosses a boundary.

    The butler's rule: an exposure's whole timespan is matched against validity ranges, and a
    match with two calibrations is reported, not resolved by picking one.

    Attributes
    ----------
    candidates
        The matching certifications (``certification_id``, ``version_id``, ``valid_begin``,
        ``valid_end``...).
    """

    def __init__(self, message: str, candidates: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.candidates = list(candidates)
