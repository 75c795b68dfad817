"""The registry's controlled vocabularies, each defined once.

Levels, methods and weights are named by cp_pipe (``CpFlatNormalizationConfig.level``) and by
calibreg's solver. Every interface derives its choices from these enums: the CLI's options, the
Task's config fields, the HTTP API's query parameters, the solver's argument checks and the
schema's CHECK constraints on ``quantum`` and ``calibration_version`` (the migrations spell the
values out, as a migration must stay frozen; ``tests/db/test_schema.py`` checks that the
migrated constraints admit exactly these values). Parsing is case-insensitive everywhere.
"""

from __future__ import annotations

import enum
from typing import Self

from calibreg.errors import InputError


class Vocabulary(enum.StrEnum):
    """A closed set of names, parsed case-insensitively into its canonical spelling."""

    @classmethod
    def parse(cls, value: object, *, source: str = "input", field: str | None = None) -> Self:
        """Return the member named by ``value`` (any letter case).

        Parameters
        ----------
        value
            A member, or its name in any letter case (``"amp"`` → ``Level.AMP``).
        source, field
            Where the value came from, for the error message.

        Raises
        ------
        InputError
            If ``value`` names no member; the message lists the choices.
        """
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower()
        for member in cls:
            if member.value.lower() == text:
                return member
        raise InputError(
            source,
            f"{value!r} is not a {cls.label()}; choose one of {', '.join(cls.values())}",
            field=field or cls.label(),
        )

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """Return the canonical spellings, in definition order."""
        return tuple(member.value for member in cls)

    @classmethod
    def label(cls) -> str:
        """Return the vocabulary's name as a person reads it (``level``, ``method``...)."""
        return cls.__name__.lower()

    @classmethod
    def sql_check(cls, column: str) -> str:
        """Return the SQL condition ``column IN (...)`` admitting exactly these values."""
        return f"{column} IN ({', '.join(repr(v) for v in cls.values())})"


class Level(Vocabulary):
    """Row granularity of a solve (cp_pipe's ``config.level``)."""

    DETECTOR = "DETECTOR"
    AMP = "AMP"


class Method(Vocabulary):
    """How the scales are solved (see :func:`calibreg.engine.measure_scales`)."""

    exact = "exact"
    alternating = "alternating"
    robust = "robust"


class Weights(Vocabulary):
    """Least-squares weights of ``log B``: pixel counts, or inverse variance ``N·B²/σ²``."""

    counts = "counts"
    inverse_variance = "inverse-variance"

    @classmethod
    def label(cls) -> str:
        """Return ``weights``."""
        return "weights"


class Variance(Vocabulary):
    """Inverse-variance weights: where the background ``B`` in ``N·B²/σ²`` comes from."""

    model = "model"
    data = "data"

    @classmethod
    def label(cls) -> str:
        """Return ``variance``."""
        return "variance"


#: One line of help per choice, for the CLI's ``--help`` and the Task's config documentation.
HELP: dict[Vocabulary, str] = {
    Level.DETECTOR: "Correct using full detector statistics.",
    Level.AMP: "Correct using individual amplifiers.",
    Method.exact: "The exact weighted least-squares optimum (recommended).",
    Method.alternating: "The reference's alternating means, with a convergence test.",
    Method.robust: "Exact, with iterative rejection of outlying entries.",
    Weights.counts: "Pixel counts (the reference's choice).",
    Weights.inverse_variance: "N·B²/σ²: needs the statistics' sigma.",
    Variance.model: "The fitted G·E, iterated (unbiased: the weights do not follow the noise).",
    Variance.data: "The measured B (biases log G of noisy rows by about 2σ²).",
}

#: Exposure fields a quantum may down-select on (cp_pipe's ``downSelectionField`` choices),
#: mapped to their column in the ``exposure`` table.
SELECTION_FIELDS: dict[str, str] = {
    "observation_reason": "observation_reason",
    "observation_type": "observation_type",
    "science_program": "science_program",
    "group": "group_name",
}

__all__ = ["HELP", "SELECTION_FIELDS", "Level", "Method", "Variance", "Vocabulary", "Weights"]
