"""``calibreg solve``: turn a quantum into a new calibration version (through the Task)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

# The vocabularies are pure Python (no NumPy, no SQLAlchemy): cheap enough for --help.
from calibreg.domain.vocabulary import Level, Method, Variance, Weights

if TYPE_CHECKING:
    from calibreg.domain.quantum import Selection
from calibreg_cli.common import DbOption, errors, open_registry, progress_bars
from calibreg_cli.output import ObjFormat, fail, print_json, print_mapping


def parse_selection(
    select: list[str], exposures: str | None, day_obs: str | None, time_range: str | None
) -> Selection:
    """Build a Selection from the command-line options."""
    from calibreg.domain.quantum import Selection
    from calibreg.errors import InputError
    from calibreg.formats.timescale import parse_time

    kwargs: dict = {}
    for item in select:
        if "=" not in item:
            raise InputError("--select", f"expected FIELD=VALUE, got {item!r}", field="select")
        field, value = item.split("=", 1)
        if not field.strip() or not value.strip():
            raise InputError("--select", f"expected FIELD=VALUE, got {item!r}", field="select")
        if "field" in kwargs:
            raise InputError("--select", "only one FIELD=VALUE down-selection", field="select")
        kwargs["field"], kwargs["value"] = field.strip(), value.strip()
    if exposures is not None:
        try:
            kwargs["exposures"] = tuple(int(x) for x in exposures.replace(",", " ").split())
        except ValueError as err:
            raise InputError(
                "--exposures", f"not a list of ids: {exposures[:200]!r}", field="exposures"
            ) from err
        if not kwargs["exposures"]:
            raise InputError("--exposures", "no exposure id given", field="exposures")
        if len(set(kwargs["exposures"])) != len(kwargs["exposures"]):
            raise InputError("--exposures", "an exposure id is given twice", field="exposures")
    if day_obs is not None:
        lo, _, hi = day_obs.partition(":")
        if not lo.strip() and not hi.strip():
            raise InputError(
                "--day-obs", f"expected YYYYMMDD[:YYYYMMDD], got {day_obs!r}", field="day_obs"
            )
        try:
            kwargs["day_obs_min"] = int(lo) if lo else None
            kwargs["day_obs_max"] = int(hi) if hi else (int(lo) if not _ else None)
        except ValueError as err:
            raise InputError(
                "--day-obs", f"expected YYYYMMDD[:YYYYMMDD], got {day_obs!r}", field="day_obs"
            ) from err
    if time_range is not None:
        lo, _, hi = time_range.partition("/")
        if not lo.strip() and not hi.strip():
            raise InputError(
                "--time",
                f"expected BEGIN/END (either may be empty), got {time_range!r}",
                field="time",
            )
        kwargs["time_begin"] = parse_time(lo, field="time", source="--time") if lo else None
        kwargs["time_end"] = parse_time(hi, field="time", source="--time") if hi else None
    return Selection(**kwargs)


def solve(
    instrument: str = typer.Option(..., "--instrument", "-i"),
    physical_filter: str | None = typer.Option(None, "--filter", "-f"),
    all_filters: bool = typer.Option(False, "--all-filters", help="Solve every filter."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Worker processes for --all-filters."),
    level: Level = typer.Option(Level.DETECTOR, "--level", case_sensitive=False),
    method: Method = typer.Option(Method.exact, "--method", case_sensitive=False),
    weights: Weights = typer.Option(Weights.counts, "--weights", case_sensitive=False),
    max_iter: int = typer.Option(1000, "--max-iter", help="Iteration cap (alternating)."),
    tol: float = typer.Option(1e-12, "--tol", help="Convergence tolerance (log space)."),
    clip_sigma: float = typer.Option(5.0, "--clip-sigma", help="Rejection k (robust)."),
    variance: Variance = typer.Option(
        Variance.model,
        "--variance",
        case_sensitive=False,
        help="Inverse-variance weights: the background in N·B²/σ² from the fitted model "
        "(unbiased) or the measured data.",
    ),
    select: list[str] = typer.Option(
        [],
        "--select",
        help="FIELD=VALUE down-selection: observation_reason, "
        "observation_type, science_program or group (case-insensitive).",
    ),
    exposures: str | None = typer.Option(None, "--exposures", help="Explicit exposure ids."),
    day_obs: str | None = typer.Option(None, "--day-obs", help="YYYYMMDD or FROM:TO."),
    time_range: str | None = typer.Option(
        None, "--time", help="UTC ISO range BEGIN/END of exposure start times."
    ),
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format"),
) -> None:
    """Solve a quantum and store the result as a new immutable version."""
    with errors():
        from calibreg.services.solve import SolveRequest, solve_all_filters, solve_quantum

        if all_filters == (physical_filter is not None):
            fail("give exactly one of --filter F or --all-filters")
        selection = parse_selection(select, exposures, day_obs, time_range)
        request = SolveRequest(
            instrument=instrument,
            physical_filter=physical_filter or "",
            level=level.value,
            method=method.value,
            weights=weights.value,
            max_iter=max_iter,
            tol=tol,
            clip_sigma=clip_sigma,
            variance=variance.value,
            selection=selection,
        )
        with progress_bars() as advance, open_registry(db) as reg:
            if all_filters:
                results = solve_all_filters(reg, request, jobs=jobs, progress=advance)
            else:
                results = [solve_quantum(reg, request, progress=advance)]
        failed = [r for r in results if "error" in r]
        if fmt == ObjFormat.json:
            print_json(results if all_filters else results[0])
        else:
            for res in results:
                if "error" not in res:
                    print_mapping(res, fmt, title=f"version {res['version_id']}")
        if failed:
            # The versions of the other filters are stored (each solve is its own version).
            done = len(results) - len(failed)
            reasons = "; ".join(f"{r['physical_filter']}: {r['error']}" for r in failed)
            fail(f"solved {done} of {len(results)} filters; failed: {reasons}")
