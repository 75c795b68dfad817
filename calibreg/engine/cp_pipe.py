"""The ``outputScales`` structure of cp_pipe's ``CpFlatNormalizationTask.run`` (SPEC §5).

cp_pipe's flat combination reads these nested dictionaries, so the keys and value types must
be exactly cp_pipe's: detector and exposure ids as ``int``, amplifier names as ``str``, scales
as plain ``float``. Unlike the reference, each AMP-level ``detScale`` is read from the row that
belongs to its (detector, amplifier) (reference defect 2), and detectors may have different
numbers of amplifiers (defect 3), because rows are matched by label, not by arithmetic.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

from calibreg.domain.vocabulary import Level

from .solution import ScaleSolution

__all__ = ["LEVELS", "cp_pipe_scales", "to_cp_pipe_scales"]

LEVELS = Level.values()


def _as_int(name: str, value: Any) -> int:
    try:
        return operator.index(value)
    except TypeError as exc:
        raise ValueError(f"{name} must be an integer, got {value!r}") from exc


def _amps_of(amp_names: Mapping[int, Sequence[str]], det: int) -> list[str]:
    try:
        names = amp_names[det]
    except KeyError:
        raise ValueError(f"amp_names has no entry for detector {det}") from None
    if isinstance(names, str):
        raise ValueError(f"amp_names[{det}] must be a sequence of names, not the string {names!r}")
    result = [str(n) for n in names]
    if len(set(result)) != len(result):
        raise ValueError(f"amp_names[{det}] repeats an amplifier name: {result}")
    return result


def to_cp_pipe_scales(
    solution: ScaleSolution,
    *,
    level: str,
    row_labels: Sequence[Any],
    exposure_ids: Sequence[int],
    amp_names: Mapping[int, Sequence[str]],
) -> dict[str, Any]:
    """Express a solution as cp_pipe's ``outputScales`` dictionary.

    Parameters
    ----------
    solution : ScaleSolution
        The solve to export.
    level : {"DETECTOR", "AMP"}
        The row granularity the solution was computed at, as in cp_pipe's ``config.level``.
    row_labels : sequence
        One label per row of the solution, in row order: a detector id at DETECTOR level, a
        ``(detector_id, amp_name)`` tuple at AMP level (any order of rows).
    exposure_ids : sequence of int
        One exposure id per column of the solution, in column order.
    amp_names : mapping of int to sequence of str
        Amplifier names of each detector, as the camera lists them. cp_pipe writes the
        exposure scale once per amplifier, so every amplifier named here gets an entry.

    Returns
    -------
    dict
        ``{"expScale": {det: {amp: {exposure: float}}}, "detScale": {det: float}}`` at
        DETECTOR level, or with ``"detScale": {det: {amp: float}}`` at AMP level. A flagged
        exposure's scale is NaN, as it has no measurement.

    Raises
    ------
    ValueError
        For an unknown level, labels that do not match the solution's shape, repeated or
        malformed labels, or an amplifier or detector that ``amp_names`` does not know.
    """
    return cp_pipe_scales(
        level=level,
        row_labels=row_labels,
        row_scales=solution.row_scales,
        exposure_ids=exposure_ids,
        exp_scales=solution.exp_scales,
        amp_names=amp_names,
    )


def cp_pipe_scales(
    *,
    level: str,
    row_labels: Sequence[Any],
    row_scales: Sequence[float],
    exposure_ids: Sequence[int],
    exp_scales: Sequence[float],
    amp_names: Mapping[int, Sequence[str]],
) -> dict[str, Any]:
    """Build cp_pipe's ``outputScales`` from labelled scales: the one builder of that structure.

    :func:`to_cp_pipe_scales` (a fresh solution) and the registry's export of a stored version
    both come here, so the structure is made in exactly one place.

    Parameters
    ----------
    level : {"DETECTOR", "AMP"}
        The row granularity, as in cp_pipe's ``config.level``.
    row_labels : sequence
        One label per row scale: a detector id (DETECTOR) or ``(detector_id, amp_name)`` (AMP).
    row_scales : sequence of float, shape (n_rows,)
        The relative response G of each row.
    exposure_ids : sequence of int
        One exposure id per exposure scale.
    exp_scales : sequence of float, shape (n_exposures,)
        The exposure (lamp) scale E of each exposure, in ADU; NaN for a flagged exposure.
    amp_names : mapping of int to sequence of str
        Amplifier names of each detector in camera order.

    Returns
    -------
    dict
        As :func:`to_cp_pipe_scales`.

    Raises
    ------
    ValueError
        As :func:`to_cp_pipe_scales`.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}")
    n_row, n_exp = len(row_scales), len(exp_scales)
    labels = list(row_labels)
    exposures = [_as_int("exposure id", x) for x in exposure_ids]
    if len(labels) != n_row:
        raise ValueError(f"{len(labels)} row labels given for a solution with {n_row} rows")
    if len(exposures) != n_exp:
        raise ValueError(
            f"{len(exposures)} exposure ids given for a solution with {n_exp} exposures"
        )
    if len(set(exposures)) != n_exp:
        raise ValueError("exposure ids repeat an exposure")

    exp_values = [float(v) for v in exp_scales]
    row_values = [float(v) for v in row_scales]
    det_scale: dict[int, Any] = {}
    detectors: list[int] = []
    if level == "DETECTOR":
        for i, label in enumerate(labels):
            det = _as_int(f"row label {i}", label)
            if det in det_scale:
                raise ValueError(f"detector {det} labels more than one row")
            det_scale[det] = row_values[i]
            detectors.append(det)
    else:
        for i, label in enumerate(labels):
            try:
                det_raw, amp_raw = label
            except (TypeError, ValueError):
                raise ValueError(
                    f"row label {i} must be a (detector_id, amp_name) pair, got {label!r}"
                ) from None
            det, amp = _as_int(f"row label {i} detector", det_raw), str(amp_raw)
            if amp not in _amps_of(amp_names, det):
                raise ValueError(f"row label {i}: detector {det} has no amplifier {amp!r}")
            per_det = det_scale.setdefault(det, {})
            if amp in per_det:
                raise ValueError(f"({det}, {amp!r}) labels more than one row")
            if not per_det:
                detectors.append(det)
            per_det[amp] = row_values[i]

    exp_scale: dict[int, dict[str, dict[int, float]]] = {}
    for det in detectors:
        per_exp = dict(zip(exposures, exp_values, strict=True))
        exp_scale[det] = {amp: dict(per_exp) for amp in _amps_of(amp_names, det)}
    return {"expScale": exp_scale, "detScale": det_scale}
