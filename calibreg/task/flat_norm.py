"""``FlatNormalizationTask``: cp_pipe's ``CpFlatNormalizationTask`` on calibreg.

Code written against the LSST task (``run(inputMDs, inputDims, camera)``, ``measureScales``,
the config names ``level``/``scaleMaxIter``/``doDownSelection``...) runs unchanged, and gets
the same ``outputScales`` structure. What differs is deliberate (SPEC §6): a non-finite
statistic is left out *with its weight*, AMP-level rows are matched by (detector, amplifier)
rather than by index arithmetic, detectors may have different amplifier counts, the model is
``G·E``, and by default the least-squares optimum is solved exactly (``method="exact"``)
instead of with a fixed number of sweeps. ``method="alternating"`` with ``scaleMaxIter=10`` and
``tolerance=0`` reproduces the reference's numbers on complete data.

`FlatNormalizationTask.runQuantum` is the registry form: assemble the quantum's statistics
from the database, solve, and persist an immutable calibration version with this task's
config and full metadata.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from calibreg.domain.progress import Progress, report
from calibreg.domain.quantum import QuantumData, QuantumSpec, Selection
from calibreg.domain.vocabulary import (
    HELP,
    SELECTION_FIELDS,
    Level,
    Method,
    Variance,
    Vocabulary,
    Weights,
)
from calibreg.engine import QualityThresholds, ScaleSolution, measure_scales, to_cp_pipe_scales
from calibreg.errors import InputError, SolveError

from .base import (
    ChoiceField,
    Config,
    ConfigurableField,
    Field,
    FieldValidationError,
    Struct,
    Task,
    timeMethod,
)

__all__ = [
    "AssembleTask",
    "CpFlatNormalizationTask",
    "CpFlatNormalizationTaskConfig",
    "FlatNormalizationTask",
    "FlatNormalizationTaskConfig",
    "PersistTask",
    "SolveTask",
]


# --------------------------------------------------------------------------- subtasks


class AssembleTask(Task):
    """Read a quantum's statistics from the registry into matrices (one query)."""

    _DefaultName = "assemble"

    @timeMethod
    def run(
        self, registry: Any, spec: QuantumSpec, *, progress: Progress | None = None
    ) -> QuantumData:
        """Assemble ``spec`` with ``registry`` and record the matrix sizes."""
        data = registry.assemble(spec, progress=progress)
        n_row, n_exp = data.shape
        self.metadata["nExposures"] = int(n_exp)
        self.metadata["nRows"] = int(n_row)
        self.metadata["nMissing"] = int(data.n_missing)
        self.metadata["inputFingerprint"] = data.fingerprint()
        return data


class SolveTask(Task):
    """Decompose ``B ≈ G·E`` with the engine and record the fit's counters."""

    _DefaultName = "solve"

    @timeMethod
    def run(
        self,
        background: np.ndarray,
        counts: np.ndarray | None = None,
        *,
        sigma: np.ndarray | None = None,
        n_missing: int | None = None,
        progress: Progress | None = None,
        **options: Any,
    ) -> ScaleSolution:
        """Solve with ``options`` (``measure_scales`` keywords); see its documentation.

        ``n_missing`` counts matrix entries that had no statistic at all (as opposed to a
        statistic that is NaN); it is only recorded. ``progress`` is passed to
        ``measure_scales``.
        """
        solution = measure_scales(background, counts, sigma=sigma, progress=progress, **options)
        md = self.metadata
        n_row, n_exp = solution.shape
        md["method"] = solution.method
        md["weights"] = solution.weights
        md["nExposures"] = n_exp
        md["nRows"] = n_row
        if n_missing is not None:
            md["nMissing"] = int(n_missing)
        md["nUsed"] = int(np.count_nonzero(solution.used))
        md["nRejected"] = int(solution.n_rejected)
        md["nFlaggedRows"] = int(np.count_nonzero(solution.row_flagged))
        md["nFlaggedExposures"] = int(np.count_nonzero(solution.exp_flagged))
        md["iterations"] = int(solution.iterations)
        md["converged"] = bool(solution.converged)
        md["rms"] = float(solution.rms)
        if not solution.converged:
            self.log.warning(
                "%s solve did not converge in %d iterations", solution.method, solution.iterations
            )
        return solution


class PersistTask(Task):
    """Write a solve as a new immutable calibration version."""

    _DefaultName = "persist"

    @timeMethod
    def run(
        self,
        registry: Any,
        data: QuantumData,
        solution: ScaleSolution,
        *,
        config: dict[str, Any],
        metadata: Callable[[], dict[str, Any]],
        started_at: dt.datetime,
    ) -> Any:
        """Persist; ``metadata`` is called as late as possible to capture the task metadata.

        The version is written inside this method's timer, so the stored metadata holds this
        subtask's start but not its end (nor the end of the parent's ``runQuantum``): those
        are recorded afterwards, in the in-memory metadata only.
        """
        version = registry.persist(
            data, solution, config=config, task_metadata=metadata(), started_at=started_at
        )
        self.metadata["versionId"] = int(version.id)
        self.metadata["seq"] = int(version.seq)
        self.metadata["contentHash"] = str(version.content_hash)
        return version


# --------------------------------------------------------------------------- config


def _positive(value: float) -> bool:
    return value > 0


def _finite_non_negative(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _choices(vocabulary: type[Vocabulary]) -> dict[str, str]:
    """Return a config field's allowed values and their help, from the one vocabulary."""
    return {member.value: HELP[member] for member in vocabulary}


_QUALITY = QualityThresholds()
#: QualityThresholds attribute → config field.
_QUALITY_FIELDS = {
    "min_entries": "flagMinEntries",
    "min_entries_fraction": "flagMinEntriesFraction",
    "stuck_max_slope": "flagStuckMaxSlope",
    "stuck_significance": "flagStuckSignificance",
    "max_rejected_fraction": "flagMaxRejectedFraction",
    "high_rms_factor": "flagHighRmsFactor",
    "high_rms_floor": "flagHighRmsFloor",
    "weak_link_max_entries": "flagWeakLinkMaxEntries",
    "weak_link_max_conductance": "flagWeakLinkMaxConductance",
}


class FlatNormalizationTaskConfig(Config):
    """Config of `FlatNormalizationTask`: cp_pipe's fields, then calibreg's own.

    ``scaleMaxIter`` keeps its cp_pipe meaning, the number of alternating sweeps; the exact
    solver does not need it and is limited by ``cgMaxIter`` instead, so an LSST config that
    sets ``scaleMaxIter = 10`` cannot cut the exact solve short.
    """

    # cp_pipe (CpFlatNormalizationTaskConfig)
    level = ChoiceField(
        "Which level to apply normalizations.",
        str,
        allowed=_choices(Level),
        default=Level.DETECTOR.value,
    )
    scaleMaxIter = Field(
        "Max number of sweeps of the alternating scale solver (cp_pipe's iteration count).",
        int,
        default=10,
        check=_positive,
    )
    doDownSelection = Field(
        "Solve only exposures whose downSelectionField equals downSelectionValue?",
        bool,
        default=False,
    )
    downSelectionField = ChoiceField(
        "Exposure field to down-select on (case-insensitive match).",
        str,
        allowed={name: f"The exposure's {name}." for name in SELECTION_FIELDS},
        default="observation_reason",
    )
    downSelectionValue = Field(
        "Value of downSelectionField to keep.", str, default=None, optional=True
    )
    # calibreg
    method = ChoiceField(
        "How to solve the least-squares problem.",
        str,
        allowed=_choices(Method),
        default=Method.exact.value,
    )
    tolerance = Field(
        "Convergence tolerance in log scale; 0 runs all scaleMaxIter alternating sweeps, "
        "exactly as the reference does.",
        float,
        default=1e-12,
        check=_finite_non_negative,
    )
    cgMaxIter = Field(
        "Limit on conjugate-gradient steps of the exact and robust solvers.",
        int,
        default=1000,
        check=_positive,
    )
    weights = ChoiceField(
        "Weights of the log backgrounds.",
        str,
        allowed=_choices(Weights),
        default=Weights.counts.value,
    )
    clipSigma = Field(
        "Robust method: reject entries beyond this many robust sigmas.",
        float,
        default=5.0,
        check=lambda v: math.isfinite(v) and v > 0,
    )
    maxClipIter = Field(
        "Robust method: limit on rejection passes.",
        int,
        default=20,
        check=lambda v: v >= 0,
    )
    variance = ChoiceField(
        "Inverse-variance weights: where the background in N·B²/σ² comes from.",
        str,
        allowed=_choices(Variance),
        default=Variance.model.value,
    )
    doErrors = Field(
        "Compute standard errors of G and E, per-entry leverages and the weak-link check.",
        bool,
        default=True,
    )
    # quality flags (calibreg.engine.quality.QualityThresholds, one field each)
    flagMinEntries = Field(
        "few_rows/few_exposures: fewer used entries than this.",
        int,
        default=_QUALITY.min_entries,
        check=lambda v: v >= 0,
    )
    flagMinEntriesFraction = Field(
        "few_rows/few_exposures: fewer used entries than this fraction of the peers' median.",
        float,
        default=_QUALITY.min_entries_fraction,
        check=lambda v: math.isfinite(v) and 0 <= v <= 1,
    )
    flagStuckMaxSlope = Field(
        "stuck: slope of log B on log E below this.",
        float,
        default=_QUALITY.stuck_max_slope,
        check=_finite_non_negative,
    )
    flagStuckSignificance = Field(
        "stuck: and 1 - slope larger than this many standard errors.",
        float,
        default=_QUALITY.stuck_significance,
        check=_finite_non_negative,
    )
    flagMaxRejectedFraction = Field(
        "mostly_rejected: rejected / valid entries above this.",
        float,
        default=_QUALITY.max_rejected_fraction,
        check=lambda v: math.isfinite(v) and 0 <= v <= 1,
    )
    flagHighRmsFactor = Field(
        "high_rms: sqrt(chi2/dof) above this multiple of the peers' median.",
        float,
        default=_QUALITY.high_rms_factor,
        check=_finite_non_negative,
    )
    flagHighRmsFloor = Field(
        "high_rms: and the dof-corrected rms (relative) above this.",
        float,
        default=_QUALITY.high_rms_floor,
        check=_finite_non_negative,
    )
    flagWeakLinkMaxEntries = Field(
        "weak_link: at most this many entries join the two blocks.",
        int,
        default=_QUALITY.weak_link_max_entries,
        check=lambda v: v >= 0,
    )
    flagWeakLinkMaxConductance = Field(
        "weak_link: and the cut's conductance is at most this.",
        float,
        default=_QUALITY.weak_link_max_conductance,
        check=_finite_non_negative,
    )
    # subtasks
    assemble = ConfigurableField("Read a quantum's statistics.", target=AssembleTask)
    solve = ConfigurableField("Solve the normalization.", target=SolveTask)
    persist = ConfigurableField("Write a calibration version.", target=PersistTask)

    def validate(self) -> None:
        """Check fields, then the relations cp_pipe checks (down-selection needs a value)."""
        super().validate()
        if self.doDownSelection:
            if self.downSelectionValue is None or not self.downSelectionValue.strip():
                raise FieldValidationError(
                    self,
                    "downSelectionValue",
                    f"doDownSelection is set but no value is given for {self.downSelectionField}",
                )
            if self.downSelectionField not in SELECTION_FIELDS:  # pragma: no cover - guarded
                raise FieldValidationError(self, "downSelectionField", "unknown field")

    def solver_options(self, *, iterations: int | None = None) -> dict[str, Any]:
        """Keywords of ``measure_scales`` for this config.

        ``iterations`` overrides ``scaleMaxIter`` (for `FlatNormalizationTask.measureScales`).
        """
        sweeps = self.scaleMaxIter if iterations is None else iterations
        return {
            "method": self.method,
            "weights": self.weights,
            "max_iter": int(sweeps) if self.method == "alternating" else self.cgMaxIter,
            "tol": self.tolerance,
            "clip_sigma": self.clipSigma,
            "max_clip_iter": self.maxClipIter,
            "variance": self.variance,
            "errors": bool(self.doErrors),
            "quality": self.quality_thresholds(),
        }

    def quality_thresholds(self) -> QualityThresholds:
        """Return the ``flag*`` fields as the engine's :class:`QualityThresholds`."""
        return QualityThresholds(
            **{name: getattr(self, field) for name, field in _QUALITY_FIELDS.items()}
        )


CpFlatNormalizationTaskConfig = FlatNormalizationTaskConfig


# --------------------------------------------------------------------------- helpers


def _amp_name(amp: Any) -> str:
    """Return an amplifier's name: ``getName()`` (afw), ``.name`` (calibreg), or the string."""
    if isinstance(amp, str):
        return amp
    get_name = getattr(amp, "getName", None)
    if callable(get_name):
        return str(get_name())
    name = getattr(amp, "name", None)
    if name is not None:
        return str(name)
    raise TypeError(f"cannot tell the name of amplifier {amp!r} (no getName() or name)")


def _camera_mapping(camera: Any) -> Any:
    """Accept a calibreg ``CameraSpec`` as well as a detector id → amplifiers mapping."""
    detectors = getattr(camera, "detectors", None)
    if detectors is not None and not isinstance(camera, Mapping):
        return {int(d.id): list(d.amplifiers) for d in detectors}
    return camera


def _as_id(value: Any, what: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer id, got {value!r}") from None


def _dimension(dims: Any, key: str, position: int) -> int:
    try:
        value = dims[key]
    except (KeyError, IndexError, TypeError) as exc:
        raise KeyError(f"input {position}: cannot find dimension {key!r} in {dims!r}") from exc
    return _as_id(value, f"input {position}: dimension {key!r}")


def _read(md: Any, key: str, exposure: int, detector: int, *, required: bool = True) -> Any:
    """``md.get(key)``; a missing key (None or an exception) is a KeyError naming where."""
    try:
        value = md.get(key)
    except Exception as exc:  # PropertyList raises its own types; all mean "not there"
        raise KeyError(
            f"cannot read {key!r} from the metadata of exposure {exposure}, "
            f"detector {detector}: {exc}"
        ) from exc
    if value is None and required:
        raise KeyError(f"metadata of exposure {exposure}, detector {detector} has no {key!r}")
    return value


def _number(value: Any, key: str, exposure: int, detector: int) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{key} of exposure {exposure}, detector {detector} is not a number: {value!r}"
        ) from None


def _input_keys(inputMDs: list[Any], inputDims: list[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """Return the (exposure, detector) of every input, checking that metadata and ids pair up."""
    if len(inputMDs) != len(inputDims):
        raise ValueError(
            f"{len(inputMDs)} metadata objects but {len(inputDims)} data ids: "
            "they must pair up one to one"
        )
    if not inputDims:
        raise ValueError("no inputs: nothing to normalize")
    return [
        (_dimension(d, "exposure", i), _dimension(d, "detector", i))
        for i, d in enumerate(inputDims)
    ]


def _camera_amp_names(camera: Any, detectors: list[int]) -> dict[int, list[str]]:
    """Each detector's amplifier names in camera order (KeyError for one not in the camera)."""
    camera = _camera_mapping(camera)
    names: dict[int, list[str]] = {}
    for det in detectors:
        try:
            amps = camera[det]
        except (KeyError, IndexError) as exc:
            raise KeyError(f"detector {det} is not in the camera") from exc
        names[det] = [_amp_name(a) for a in amps]
    return names


def _row_layout(level: str, amp_names: dict[int, list[str]]) -> tuple[dict[int, int], list[Any]]:
    """Each detector's first matrix row and the row labels (detector ids or (id, amp) pairs).

    At AMP level a detector's rows are consecutive, so its amplifier ``i`` is row
    ``first + i`` whatever the number of amplifiers of the detectors before it.
    """
    if level == Level.DETECTOR.value:
        return {det: i for i, det in enumerate(amp_names)}, list(amp_names)
    row_of: dict[int, int] = {}
    labels: list[Any] = []
    for det, names in amp_names.items():
        row_of[det] = len(labels)
        labels.extend((det, name) for name in names)
    return row_of, labels


def _fill_matrices(
    inputMDs: Sequence[Any],
    keys: list[tuple[int, int]],
    *,
    level: str,
    row_of: dict[int, int],
    exp_col: dict[int, int],
    amp_names: dict[int, list[str]],
    shape: tuple[int, int],
    need_sigma: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read every input's statistics into background, count, sigma and presence matrices.

    A non-finite median leaves its entry NaN with zero weight (no usable pixels), unlike the
    reference, which fits it.
    """
    background = np.full(shape, np.nan)
    counts = np.zeros(shape)
    sigma = np.full(shape, np.nan)
    present = np.zeros(shape, dtype=bool)
    for md, (exposure, det) in zip(inputMDs, keys, strict=True):
        col = exp_col[exposure]
        for row, k_med, k_n, k_sig, name in _entries(level, row_of[det], amp_names[det]):
            if present[row, col]:
                raise ValueError(f"exposure {exposure}, detector {det} is given twice")
            present[row, col] = True
            if name is not None:
                _check_amp_name(md, k_med.replace("MEDIAN", "NAME"), name, exposure, det)
            value = _number(_read(md, k_med, exposure, det), k_med, exposure, det)
            count = _number(_read(md, k_n, exposure, det), k_n, exposure, det)
            sig = _number(
                _read(md, k_sig, exposure, det, required=need_sigma), k_sig, exposure, det
            )
            if math.isfinite(value):
                background[row, col] = value
                counts[row, col] = count
                sigma[row, col] = sig
    return background, counts, sigma, present


def _entries(
    level: str, first_row: int, names: list[str]
) -> list[tuple[int, str, str, str, str | None]]:
    """(row, median key, count key, sigma key, amplifier name) of one detector's statistics."""
    if level == Level.DETECTOR.value:
        return [(first_row, "DETECTOR_MEDIAN", "DETECTOR_N", "DETECTOR_SIGMA", None)]
    return [
        (first_row + i, f"AMP_MEDIAN_{i}", f"AMP_N_{i}", f"AMP_SIGMA_{i}", name)
        for i, name in enumerate(names)
    ]


def _check_amp_name(md: Any, key: str, name: str, exposure: int, detector: int) -> None:
    """Return an ``AMP_NAME_i`` that disagrees with the camera means another amplifier order."""
    stated = _read(md, key, exposure, detector, required=False)
    if stated is not None and str(stated) != name:
        raise ValueError(
            f"{key} of exposure {exposure}, detector {detector} is {stated!r} "
            f"but the camera's amplifier {key.rsplit('_', 1)[1]} is {name!r}"
        )


# --------------------------------------------------------------------------- the task


class FlatNormalizationTask(Task):
    """Rescale flat exposures to a common level: ``B[row, exp] ≈ G[row] · E[exp]``.

    Subtasks ``assemble``, ``solve`` and ``persist`` each time themselves into their own
    metadata, so `getFullMetadata` shows where a solve spent its time
    (``flatNorm:assemble``, ``flatNorm:solve``, ``flatNorm:persist``).
    """

    ConfigClass = FlatNormalizationTaskConfig
    _DefaultName = "flatNorm"

    def __init__(self, config: Config | None = None, **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)
        self.makeSubtask("assemble")
        self.makeSubtask("solve")
        self.makeSubtask("persist")

    # ------------------------------------------------------------------ cp_pipe API
    @timeMethod
    def run(
        self, inputMDs: Sequence[Any], inputDims: Sequence[Mapping[str, Any]], camera: Any
    ) -> Struct:
        """Normalize flat exposures from per-(exposure, detector) statistics, as cp_pipe.

        Parameters
        ----------
        inputMDs : sequence
            One metadata object per input (a ``PropertyList``, a dict, anything with
            ``.get``) holding ``DETECTOR_MEDIAN``/``DETECTOR_N`` (DETECTOR level) or
            ``AMP_MEDIAN_i``/``AMP_N_i`` for amplifier ``i`` in camera order (AMP level);
            ``*_SIGMA*`` is read too and required for inverse-variance weights. An
            ``AMP_NAME_i`` that disagrees with the camera's name is an error, because it
            means the statistics were measured in another amplifier order.
        inputDims : sequence of mapping
            The data id of each input, with ``"exposure"`` and ``"detector"``.
        camera : mapping or CameraSpec
            Detector id → sequence of amplifiers (objects with ``getName()``, or names).

        Returns
        -------
        Struct
            ``outputScales`` (cp_pipe's structure: ``{"expScale": {det: {amp: {exp: E}}},
            "detScale": {det: G}`` or ``{det: {amp: G}}``) and ``solution`` (the engine's
            `~calibreg.engine.ScaleSolution`).

        Raises
        ------
        KeyError
            An input lacks a dimension, a detector is not in the camera, or a metadata lacks
            a statistic (naming the key, exposure and detector).
        ValueError
            Inputs of different lengths, a repeated (exposure, detector), an amplifier name
            mismatch, or data the engine cannot solve.

        Notes
        -----
        Down-selection needs the exposure records, which ``run`` does not see; it is applied
        by `runQuantum` and ignored here (logged). Missing (exposure, detector) pairs and
        non-finite statistics carry zero weight, unlike the reference.
        """
        self.config.validate()
        if self.config.doDownSelection:
            self.log.info(
                "run() has no exposure records: down-selection is applied by "
                "runQuantum only and is ignored here"
            )
        keys = _input_keys(list(inputMDs), list(inputDims))
        exp_set = sorted({e for e, _ in keys})
        amp_names = _camera_amp_names(camera, sorted({d for _, d in keys}))
        level = self.config.level
        row_of, labels = _row_layout(level, amp_names)
        background, counts, sigma, present = _fill_matrices(
            inputMDs,
            keys,
            level=level,
            row_of=row_of,
            exp_col={e: j for j, e in enumerate(exp_set)},
            amp_names=amp_names,
            shape=(len(labels), len(exp_set)),
            need_sigma=self.config.weights == "inverse-variance",
        )

        solution = self.solve.run(
            background,
            counts,
            sigma=sigma,
            n_missing=int((~present).sum()),
            **self.config.solver_options(),
        )
        output = to_cp_pipe_scales(
            solution, level=level, row_labels=labels, exposure_ids=exp_set, amp_names=amp_names
        )
        return Struct(outputScales=output, solution=solution)

    def measureScales(
        self, bgMatrix: np.ndarray, bgCounts: np.ndarray | None = None, iterations: int = 10
    ) -> Struct:
        """Decompose a background matrix, as cp_pipe's ``measureScales``.

        Uses the configured ``method``. ``iterations`` is the number of alternating sweeps,
        so with ``method="alternating"`` and ``tolerance=0`` this returns the reference's
        numbers on complete data; the default exact method ignores it (the optimum does not
        depend on an iteration count). Non-finite and non-positive entries (the reference's
        zero-filled gaps) are left out with their weights.

        Returns
        -------
        Struct
            ``expScales`` (E), ``detScales`` (G), ``bgModel`` (``G·E``, not the reference's
            ``E/G``) and ``solution``.
        """
        self.config.validate()
        solution = self.solve.run(
            bgMatrix, bgCounts, **self.config.solver_options(iterations=iterations)
        )
        return Struct(
            expScales=np.array(solution.exp_scales),
            detScales=np.array(solution.row_scales),
            bgModel=np.array(solution.model),
            solution=solution,
        )

    # ------------------------------------------------------------------ registry API
    def quantumSpec(self, quantum: Any) -> QuantumSpec:
        """Return the quantum this task solves for ``quantum``, with the config applied.

        ``quantum`` is a `QuantumSpec`, a mapping with ``instrument``, ``physical_filter`` and
        optionally ``selection`` (a `Selection` or its fields as a mapping), or a tuple
        ``(instrument, physical_filter)``. The level is always ``config.level`` (as in
        cp_pipe, the level is configuration, not part of the data id); with
        ``doDownSelection`` the config's field and value replace the selection's.
        """
        if isinstance(quantum, QuantumSpec):
            spec = quantum
        elif isinstance(quantum, Mapping):
            try:
                instrument, physical_filter = quantum["instrument"], quantum["physical_filter"]
            except KeyError as exc:
                raise InputError("quantum", f"needs {exc.args[0]!r}", field=exc.args[0]) from None
            unknown = sorted(set(quantum) - {"instrument", "physical_filter", "selection", "level"})
            if unknown:
                raise InputError(
                    "quantum",
                    f"unknown key(s) {', '.join(map(str, unknown))}; a quantum has instrument, "
                    "physical_filter, selection and (matching config.level) level",
                    field=str(unknown[0]),
                )
            if "level" in quantum:
                asked = Level.parse(quantum["level"], source="quantum", field="level")
                if asked.value != self.config.level:
                    raise InputError(
                        "quantum",
                        f"level {asked.value} conflicts with config.level {self.config.level} "
                        "(the level is configuration, as in cp_pipe: set config.level)",
                        field="level",
                    )
            selection = quantum.get("selection") or Selection()
            if isinstance(selection, Mapping):
                selection = Selection(**selection)
            spec = QuantumSpec(instrument, physical_filter, selection=selection)
        elif isinstance(quantum, Iterable) and not isinstance(quantum, str | bytes):
            parts = list(quantum)
            if len(parts) != 2:
                raise InputError("quantum", "a tuple quantum is (instrument, physical_filter)")
            spec = QuantumSpec(str(parts[0]), str(parts[1]))
        else:
            raise InputError("quantum", f"cannot make a quantum from {quantum!r}")
        if spec.level != self.config.level:
            self.log.info(
                "solving at config level %s, not the quantum's %s", self.config.level, spec.level
            )
        selection = spec.selection
        if self.config.doDownSelection:
            selection = dataclasses.replace(
                selection,
                field=self.config.downSelectionField,
                value=self.config.downSelectionValue,
            )
        return dataclasses.replace(spec, level=self.config.level, selection=selection)

    @timeMethod
    def runQuantum(
        self, registry: Any, quantum: Any, *, progress: Progress | None = None
    ) -> Struct:
        """Assemble, solve and persist one quantum as a new calibration version.

        Parameters
        ----------
        registry : calibreg.Registry or str
            The registry (or its URL; the connection is closed afterwards).
        quantum : QuantumSpec, mapping or tuple
            See `quantumSpec`.
        progress : calibreg.domain.progress.Progress, optional
            Hears the stages of the assembly (``"assembly"``), of the solve (see
            ``measure_scales``) and ``"persist"``; nothing is printed.

        Returns
        -------
        Struct
            ``version`` (`~calibreg.registry.versions.PersistedVersion`), ``solution``,
            ``data`` (the assembled `QuantumData`) and ``outputScales`` (cp_pipe's form).

        Notes
        -----
        The stored task metadata is captured inside the ``persist`` subtask, after every
        other step has been recorded; the ends of ``persist`` and of ``runQuantum`` itself
        come later and exist only in this task's in-memory metadata.
        """
        self.config.validate()
        spec = self.quantumSpec(quantum)
        started_at = dt.datetime.now(dt.UTC)
        self.metadata["instrument"] = spec.instrument
        self.metadata["physicalFilter"] = spec.physical_filter
        self.metadata["level"] = spec.level
        self.metadata["selection"] = spec.selection.describe()

        own = isinstance(registry, str)
        if own:
            from calibreg.client import Registry

            registry = Registry(registry)
        try:
            data = self.assemble.run(registry, spec, progress=progress)
            try:
                solution = self.solve.run(
                    data.background,
                    data.counts,
                    sigma=data.sigma,
                    n_missing=data.n_missing,
                    progress=progress,
                    **self.config.solver_options(),
                )
            except ValueError as exc:
                raise SolveError(f"cannot solve {spec.describe()}: {exc}") from exc
            output = to_cp_pipe_scales(
                solution,
                level=spec.level,
                row_labels=data.row_labels(),
                exposure_ids=[int(e) for e in data.exposure_ids],
                amp_names=data.amp_names,
            )
            report(progress, "persist", 0, 1, unit="versions")
            version = self.persist.run(
                registry,
                data,
                solution,
                config=self.config.toDict(),
                metadata=lambda: self.getFullMetadata().to_dict(),
                started_at=started_at,
            )
            report(progress, "persist", 1, 1, unit="versions", detail=f"version {version.id}")
        finally:
            if own:
                registry.close()
        self.log.info("%s: version %d (seq %d)", spec.describe(), version.id, version.seq)
        return Struct(version=version, solution=solution, data=data, outputScales=output)


CpFlatNormalizationTask = FlatNormalizationTask
