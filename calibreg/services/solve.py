"""The solve service: a quantum in the registry → a persisted version, via the Task.

Used by the CLI (one quantum, or every filter in parallel worker processes) and by
``versions verify`` (re-solve a stored version's quantum and compare). Every function takes a
:class:`calibreg.Registry`, the one way into the database.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

import numpy as np

from calibreg.domain.progress import Progress, report
from calibreg.domain.quality import flag_counts
from calibreg.domain.quantum import QuantumSpec, Selection
from calibreg.domain.vocabulary import Level, Method, Weights
from calibreg.errors import SolveError

if TYPE_CHECKING:
    from calibreg.client import Registry
    from calibreg.task import FlatNormalizationTask


@dataclasses.dataclass(frozen=True)
class SolveRequest:
    """What to solve and how (everything a version's config records)."""

    instrument: str
    physical_filter: str
    level: str = Level.DETECTOR.value
    method: str = Method.exact.value
    weights: str = Weights.counts.value
    max_iter: int = 1000
    tol: float = 1e-12
    clip_sigma: float = 5.0
    variance: str = "model"
    selection: Selection = dataclasses.field(default_factory=Selection)

    def spec(self) -> QuantumSpec:
        """Return the quantum this request solves."""
        return QuantumSpec(self.instrument, self.physical_filter, self.level, self.selection)


def make_task(request: SolveRequest) -> FlatNormalizationTask:
    """Return a configured FlatNormalizationTask for the request."""
    from calibreg.task import FlatNormalizationTask

    task = FlatNormalizationTask()
    cfg = task.config
    cfg.level = request.level
    cfg.method = request.method
    cfg.weights = request.weights
    cfg.scaleMaxIter = request.max_iter
    cfg.tolerance = request.tol
    cfg.clipSigma = request.clip_sigma
    cfg.variance = request.variance
    sel = request.selection
    if sel.field is not None:
        cfg.doDownSelection = True
        cfg.downSelectionField = sel.field
        cfg.downSelectionValue = str(sel.value)
    cfg.validate()
    return task


def solve_quantum(
    registry: Registry, request: SolveRequest, *, progress: Progress | None = None
) -> dict[str, Any]:
    """Solve one quantum through the Task and persist it; return a summary.

    ``progress`` hears the Task's stages (assembly, the solve's passes or sweeps, persist).

    Raises
    ------
    SolveError
        If the quantum has no exposures or statistics, or its data cannot be solved.
    """
    task = make_task(request)
    result = task.runQuantum(registry, request.spec(), progress=progress)
    sol, data, ver = result.solution, result.data, result.version
    return {
        "version_id": ver.id,
        "seq": ver.seq,
        "instrument": request.instrument,
        "physical_filter": request.physical_filter,
        "level": request.level,
        "method": sol.method,
        "shape": list(data.shape),
        "exposures": int(data.shape[1]),
        "rows": int(data.shape[0]),
        "missing": data.n_missing,
        "iterations": int(sol.iterations),
        "converged": bool(sol.converged),
        "rms": float(sol.rms),
        "rms_dof": float(sol.rms_dof),
        "chi2": float(sol.chi2),
        "dof": int(sol.dof),
        "reduced_chi2": float(sol.reduced_chi2),
        "median_row_error": _median_relative(sol.row_errors, sol.row_scales),
        "rejected": int(sol.n_rejected),
        "flagged_rows": int(np.count_nonzero(sol.row_flags)),
        "flagged_exposures": int(np.count_nonzero(sol.exp_flags)),
        "row_flags": flag_counts(sol.row_flags),
        "exposure_flags": flag_counts(sol.exp_flags),
        "weak_link_entries": int(sol.weak_link_entries),
        "content_hash": ver.content_hash,
    }


def _median_relative(errors: np.ndarray, scales: np.ndarray) -> float:
    """Median of ``errors / scales`` over the finite ones (NaN when none)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.asarray(errors, float) / np.asarray(scales, float)
    rel = rel[np.isfinite(rel)]
    return float(np.median(rel)) if rel.size else float("nan")


def _solve_one(args: tuple[str, SolveRequest]) -> dict[str, Any]:
    """Solve one filter in a worker process, with a registry of its own."""
    from calibreg.client import Registry

    url, request = args
    try:
        with Registry(url) as registry:
            return solve_quantum(registry, request)
    except Exception as err:
        return {"physical_filter": request.physical_filter, "error": str(err)}


def solve_all_filters(
    registry: Registry,
    request: SolveRequest,
    *,
    jobs: int = 1,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Solve every filter of the instrument (each its own version), in ``jobs`` processes.

    A filter that fails gives ``{"physical_filter": ..., "error": ...}`` in its place; the
    results are in filter order. ``progress`` hears stage ``"quanta"`` (quanta done of the
    total, as each finishes, with the last one's filter and version as detail); with
    ``jobs=1`` also each quantum's own stages.

    Raises
    ------
    SolveError
        If the instrument has no exposures.
    """
    filters = sorted(set(registry.exposures(request.instrument)["physical_filter"]))
    if not filters:
        raise SolveError(f"{request.instrument} has no exposures")
    requests = [dataclasses.replace(request, physical_filter=f) for f in filters]
    total = len(requests)

    def done(n: int, res: dict[str, Any]) -> None:
        what = (
            f"failed: {res['physical_filter']}"
            if "error" in res
            else (f"{res['physical_filter']} → version {res['version_id']}")
        )
        report(progress, "quanta", n, total, unit="quanta", detail=what)

    report(progress, "quanta", 0, total, unit="quanta")
    if jobs <= 1:
        out = []
        for req in requests:
            try:
                out.append(solve_quantum(registry, req, progress=progress))
            except Exception as err:
                out.append({"physical_filter": req.physical_filter, "error": str(err)})
            done(len(out), out[-1])
        return out
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no forked DB connections
    results: dict[int, dict[str, Any]] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(_solve_one, (registry.url, r)): i for i, r in enumerate(requests)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            done(len(results), results[futures[future]])
    return [results[i] for i in range(total)]


def verify_version(
    registry: Registry, version_id: int, *, progress: Progress | None = None
) -> dict[str, Any]:
    """Re-solve a version's quantum with its stored config; compare scales and inputs.

    ``progress`` hears the assembly's and the solve's stages.

    The stored config goes through the Task's own mapping to solver options
    (:meth:`FlatNormalizationTaskConfig.solver_options`), the one used by ``solve``.
    """
    from calibreg.engine import measure_scales
    from calibreg.task import FlatNormalizationTaskConfig

    version = registry.version(version_id)
    spec = QuantumSpec.from_version(version)
    data = registry.assemble(spec, progress=progress)
    stored_rows = registry.scales(version_id, "row")
    stored_exp = registry.scales(version_id, "exposure")
    config = FlatNormalizationTaskConfig.fromDict(version["config"])
    stored_exposures = [int(e) for e in version["provenance"]["inputs"]["exposures"]]
    same_exposures = stored_exposures == [int(e) for e in data.exposure_ids]
    inputs_changed = data.fingerprint() != version["input_fingerprint"]
    result: dict[str, Any] = {
        "version_id": version_id,
        "inputs_changed": bool(inputs_changed),
        "same_exposures": same_exposures,
    }
    if not same_exposures or data.shape[0] != len(stored_rows):
        result.update(
            max_rel_diff=None, ok=False, reason="the quantum's exposures or rows changed since"
        )
        return result
    sol = measure_scales(
        data.background,
        data.counts,
        sigma=data.sigma,
        progress=progress,
        **config.solver_options(),
    )
    diffs = []
    for new, old in (
        (sol.row_scales, stored_rows["scale"].to_numpy(float)),
        (sol.exp_scales, stored_exp["scale"].to_numpy(float)),
    ):
        both = np.isfinite(new) & np.isfinite(old)
        if np.any(np.isfinite(new) != np.isfinite(old)):
            diffs.append(np.inf)
        if both.any():
            diffs.append(float(np.max(np.abs(new[both] / old[both] - 1.0))))
    max_rel = max(diffs) if diffs else 0.0
    result.update(max_rel_diff=max_rel, ok=bool(max_rel <= 1e-12 and not inputs_changed))
    return result
