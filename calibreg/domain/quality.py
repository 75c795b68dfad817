"""The quality-flag vocabulary: names, bits and help shared by the engine, storage and displays.

Kept here (no NumPy/SciPy) so that the registry, the HTTP layer and the CLI can name flags
without importing the solver. The flags are documented in :mod:`calibreg.engine.quality`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Default refusal threshold of certify's comparison gate: the largest |relative change| of any
#: row scale against the neighbouring certified version (``calibreg certify --max-change``).
DEFAULT_MAX_CHANGE = 0.05

__all__ = [
    "DEFAULT_MAX_CHANGE",
    "EXPOSURE_FLAGS",
    "FLAGS",
    "FLAG_BITS",
    "FLAG_HELP",
    "MISSING_REASONS",
    "REJECTION_REASONS",
    "ROW_FLAGS",
    "flag_counts",
    "flag_names",
    "flag_report",
]

#: Every flag name; bit ``i`` of a row's or exposure's mask is ``FLAGS[i]``.
FLAGS: tuple[str, ...] = (
    "no_data",
    "stuck",
    "few_exposures",
    "few_rows",
    "mostly_rejected",
    "high_rms",
    "weak_link",
)
#: ``name → bit value`` (``1 << index``).
FLAG_BITS: dict[str, int] = {name: 1 << i for i, name in enumerate(FLAGS)}
#: The flags that can be set on a row, and on an exposure.
ROW_FLAGS: tuple[str, ...] = (
    "no_data",
    "stuck",
    "few_exposures",
    "mostly_rejected",
    "high_rms",
    "weak_link",
)
EXPOSURE_FLAGS: tuple[str, ...] = (
    "no_data",
    "few_rows",
    "mostly_rejected",
    "high_rms",
    "weak_link",
)
#: One line of explanation per flag (for ``versions show``, plots and the HTTP schema).
FLAG_HELP: dict[str, str] = {
    "no_data": "no usable entry (every value missing or invalid)",
    "stuck": "does not follow the exposure level (slope of log B on log E far below 1)",
    "few_exposures": "measured in too few exposures to be checked",
    "few_rows": "measured by too few rows to be checked",
    "mostly_rejected": "most of its valid entries were rejected by the robust fit",
    "high_rms": "scatter far above its peers'",
    "weak_link": "joined to the rest of the data by only a few entries",
}
#: Why an entry could not be used at all (code ``i`` is ``MISSING_REASONS[i]``).
MISSING_REASONS: tuple[str, ...] = (
    "background_not_finite",
    "background_not_positive",
    "zero_count",
    "sigma_invalid",
    "weight_invalid",
)
#: Why a valid entry was rejected by the robust fit (code ``i`` is ``REJECTION_REASONS[i]``).
REJECTION_REASONS: tuple[str, ...] = ("clipped", "stuck_row")


def flag_names(mask: int) -> tuple[str, ...]:
    """Return the names of the flags set in ``mask`` (in ``FLAGS`` order)."""
    m = int(mask)
    return tuple(name for name in FLAGS if m & FLAG_BITS[name])


def flag_counts(masks: Iterable[int]) -> dict[str, int]:
    """Return ``flag name → how many masks carry it``, for the flags that occur (FLAGS order)."""
    values = [int(m) for m in masks]
    out = {name: sum(1 for m in values if m & FLAG_BITS[name]) for name in FLAGS}
    return {name: n for name, n in out.items() if n}


def flag_report(flagged: Mapping[str, Sequence[Mapping[str, Any]]] | None) -> dict[str, Any]:
    """Return a version's flagged rows and exposures with what each flag means (for sidecars).

    Parameters
    ----------
    flagged
        ``{"rows": [{"detector", "detector_name", "amp", "flags": [names], ...}],
        "exposures": [{"exposure", "flags": [names]}]}``, as
        :func:`calibreg.registry.versions.flagged_summary` returns it (``None``: nothing).

    Returns
    -------
    dict
        ``rows`` (``detector``, ``detector_name``, ``amp``, ``flags``), ``exposures``
        (``exposure``, ``flags``), their counts ``n_rows`` and ``n_exposures``, and ``help``:
        ``flag name → its meaning`` for the flags that occur (FLAGS order).
    """
    rows = [
        {
            "detector": int(r["detector"]),
            "detector_name": r["detector_name"],
            "amp": r.get("amp"),
            "flags": list(r["flags"]),
        }
        for r in (flagged or {}).get("rows", [])
    ]
    exposures = [
        {"exposure": int(e["exposure"]), "flags": list(e["flags"])}
        for e in (flagged or {}).get("exposures", [])
    ]
    seen = {name for item in [*rows, *exposures] for name in item["flags"]}
    return {
        "n_rows": len(rows),
        "n_exposures": len(exposures),
        "rows": rows,
        "exposures": exposures,
        "help": {name: FLAG_HELP[name] for name in FLAGS if name in seen},
    }
