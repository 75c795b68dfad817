"""What a solve works on: a quantum (instrument, filter, level, selection) and its matrices.

These value types carry no database code, so the engine-free layers (services, task, CLI, HTTP)
can build and read them; :mod:`calibreg.registry.quantum` fills them from the tables.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from calibreg.domain.hashing import ArrayDigest, sha256_bytes
from calibreg.domain.vocabulary import SELECTION_FIELDS, Level
from calibreg.errors import InputError


@dataclasses.dataclass(frozen=True)
class Selection:
    """How a quantum picks its exposures (all given criteria must hold).

    ``field``/``value`` down-select case-insensitively (as cp_pipe does); ``exposures`` lists
    explicit ids; ``day_obs_min``/``day_obs_max`` bound day_obs inclusively; ``time_begin``/
    ``time_end`` (TAI ns) keep exposures whose timespan begins in ``[time_begin, time_end)``.
    """

    field: str | None = None
    value: str | None = None
    exposures: tuple[int, ...] | None = None
    day_obs_min: int | None = None
    day_obs_max: int | None = None
    time_begin: int | None = None
    time_end: int | None = None

    def __post_init__(self) -> None:
        if self.field is not None:
            if self.field not in SELECTION_FIELDS:
                raise InputError(
                    "selection",
                    f"cannot select on {self.field!r}; choose one of {', '.join(SELECTION_FIELDS)}",
                    field=self.field,
                )
            if self.value is None or str(self.value) == "":
                raise InputError(
                    "selection", f"selecting on {self.field} needs a value", field=self.field
                )
        elif self.value is not None:
            raise InputError("selection", "a selection value needs a field", field="value")
        if self.exposures is not None:
            object.__setattr__(self, "exposures", tuple(sorted({int(e) for e in self.exposures})))

    def canonical(self) -> dict[str, Any]:
        """Return the selection as a plain dict of only the criteria that are set (stable order)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if "exposures" in out:
            out["exposures"] = list(out["exposures"])
        if "value" in out:
            out["value"] = str(out["value"]).lower()
        return out

    def key(self) -> str:
        """Return the sha256 of the canonical JSON: equal selections have equal keys."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return sha256_bytes(text.encode())

    def describe(self) -> str:
        """Return a short human description."""
        c = self.canonical()
        if not c:
            return "all exposures"
        parts = []
        for k, v in c.items():
            if k == "exposures":
                v = f"{len(v)} ids"
            parts.append(f"{k}={v}")
        return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class QuantumSpec:
    """(instrument, physical_filter, level) plus a selection: the unit of one solve."""

    instrument: str
    physical_filter: str
    level: str = "DETECTOR"
    selection: Selection = dataclasses.field(default_factory=Selection)

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", Level.parse(self.level, source="quantum").value)

    @classmethod
    def from_version(cls, version: Mapping[str, Any]) -> QuantumSpec:
        """Rebuild the quantum a stored version solved (to re-solve or verify it).

        Parameters
        ----------
        version
            A version record as :meth:`calibreg.Registry.version` returns it (``instrument``,
            ``physical_filter``, ``level`` and the canonical ``selection``).
        """
        fields = {f.name for f in dataclasses.fields(Selection)}
        # Only the criteria: a record also carries readable companions (``time_begin_utc``).
        sel = {k: v for k, v in dict(version["selection"]).items() if k in fields}
        if "exposures" in sel:
            sel["exposures"] = tuple(sel["exposures"])
        return cls(
            instrument=version["instrument"],
            physical_filter=version["physical_filter"],
            level=version["level"],
            selection=Selection(**sel),
        )

    def describe(self) -> str:
        """Return a short human description."""
        return (
            f"{self.instrument} {self.physical_filter} {self.level} ({self.selection.describe()})"
        )


@dataclasses.dataclass
class QuantumData:
    """A quantum's statistics as matrices (rows × exposures) with their labels.

    Missing statistics are NaN in ``background``/``sigma`` and 0 in ``counts``.
    ``row_detectors``/``row_amp_index``/``row_amp_names`` label the rows (amp fields are
    ``-1``/``None`` at DETECTOR level); ``amp_names`` maps each detector to its amplifier names
    in camera order (the cp_pipe output needs them at both levels).
    """

    spec: QuantumSpec
    exposure_ids: np.ndarray
    row_detectors: np.ndarray
    row_amp_index: np.ndarray
    row_amp_names: list[str | None]
    amp_names: dict[int, list[str]]
    background: np.ndarray
    counts: np.ndarray
    sigma: np.ndarray
    present: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, exposures)."""
        return self.background.shape

    @property
    def n_missing(self) -> int:
        """Matrix entries with no statistics row at all."""
        return int((~self.present).sum())

    def row_labels(self) -> list:
        """Detector ids (DETECTOR level) or (detector, amp name) pairs (AMP level)."""
        if self.spec.level == "DETECTOR":
            return [int(d) for d in self.row_detectors]
        return [
            (int(d), str(a)) for d, a in zip(self.row_detectors, self.row_amp_names, strict=True)
        ]

    def fingerprint(self) -> str:
        """sha256 of exactly what the solve sees: labels, values, counts, sigmas, presence."""
        digest = self._labels_digest()
        for arr in (self.background, self.counts, self.sigma):
            digest.update_floats(arr)
        return digest.update_bools(self.present).hexdigest()

    def result_hash(self, exp_scales: np.ndarray, row_scales: np.ndarray) -> str:
        """Return the sha256 of a result on this quantum: labels and the exact bits of scales.

        Parameters
        ----------
        exp_scales : numpy.ndarray, shape (n_exposures,)
            Exposure scales E.
        row_scales : numpy.ndarray, shape (n_rows,)
            Row scales G.
        """
        return self._labels_digest().update_floats(exp_scales).update_floats(row_scales).hexdigest()

    def _labels_digest(self) -> ArrayDigest:
        digest = ArrayDigest().update_text(str(self.spec.level))
        for arr in (self.exposure_ids, self.row_detectors, self.row_amp_index):
            digest.update_ints(arr)
        return digest


__all__ = ["QuantumData", "QuantumSpec", "Selection"]
