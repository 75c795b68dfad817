"""``calibreg versions``, ``scales``, ``history``, ``export``: reading versions."""

from __future__ import annotations

import enum
from pathlib import Path

import typer
from calibreg_cli.common import DbOption, errors, open_registry
from calibreg_cli.output import Format, ObjFormat, print_frame, print_json, print_mapping

from calibreg.domain.vocabulary import Level

app = typer.Typer(help="List, show, compare and verify calibration versions.", no_args_is_help=True)
FormatOpt = typer.Option(Format.table, "--format", help="table, json or csv.")


@app.command("list")
def list_(
    instrument: str | None = typer.Option(None, "--instrument", "-i"),
    physical_filter: str | None = typer.Option(None, "--filter", "-f"),
    level: Level | None = typer.Option(None, "--level", case_sensitive=False),
    limit: int | None = typer.Option(None, "--limit"),
    db: DbOption = None,
    fmt: Format = FormatOpt,
) -> None:
    """List versions, oldest first."""
    with errors(), open_registry(db) as reg:
        frame = reg.versions(
            instrument=instrument,
            physical_filter=physical_filter,
            level=level.value if level else None,
            limit=limit,
        )
        print_frame(frame, fmt, title="calibration versions")


@app.command()
def show(
    version: int = typer.Argument(...),
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format"),
    metadata: bool = typer.Option(False, "--metadata", help="Include the full task metadata."),
) -> None:
    """Show one version: quantum, config, provenance, diagnostics."""
    with errors(), open_registry(db) as reg:
        rec = reg.version(version)
        if fmt != ObjFormat.table:
            print_mapping(rec, fmt, title=f"version {version}")
            return
        if not metadata:
            rec = {k: v for k, v in rec.items() if k != "task_metadata"}
        flagged = rec.pop("flagged", {"rows": [], "exposures": []})
        print_mapping(rec, fmt, title=f"version {version}")
        print_flagged(version, flagged)


#: Flagged rows/exposures `versions show` lists before "... and N more".
SHOW_FLAGGED = 20


def print_flagged(version: int, flagged: dict) -> None:
    """Print a version's flagged rows and exposures by name, with the flags' meaning."""
    from calibreg.domain.quality import FLAG_HELP

    rows, exposures = flagged.get("rows", []), flagged.get("exposures", [])
    if not rows and not exposures:
        typer.echo(f"quality flags: none (version {version})")
        return
    typer.echo(f"quality flags: {len(rows)} row(s), {len(exposures)} exposure(s)")
    seen: set[str] = set()
    for item in rows[:SHOW_FLAGGED]:
        label = item["detector_name"] + (f"/{item['amp']}" if item.get("amp") else "")
        typer.echo(f"  {label:<24} {', '.join(item['flags'])}")
        seen.update(item["flags"])
    if len(rows) > SHOW_FLAGGED:
        typer.echo(f"  ... and {len(rows) - SHOW_FLAGGED} more rows (calibreg scales {version})")
    for item in exposures[:SHOW_FLAGGED]:
        typer.echo(f"  exposure {item['exposure']:<15} {', '.join(item['flags'])}")
        seen.update(item["flags"])
    if len(exposures) > SHOW_FLAGGED:
        typer.echo(
            f"  ... and {len(exposures) - SHOW_FLAGGED} more exposures "
            f"(calibreg scales {version} --kind exposure)"
        )
    for name in [*rows[SHOW_FLAGGED:], *exposures[SHOW_FLAGGED:]]:
        seen.update(name["flags"])
    for name in sorted(seen):
        typer.echo(f"  {name}: {FLAG_HELP.get(name, '')}")


@app.command()
def diff(
    v1: int = typer.Argument(...),
    v2: int = typer.Argument(...),
    db: DbOption = None,
    fmt: Format = FormatOpt,
) -> None:
    """Compare two versions row by row: ratio v2/v1, max and rms relative change."""
    with errors(), open_registry(db) as reg:
        cmp = reg.compare(v1, v2)
        if not cmp.get("comparable", True):
            from calibreg_cli.output import fail

            fail(f"versions {v1} and {v2} are not comparable: {cmp['reason']}")
        table = cmp.pop("table")
        if fmt == Format.json:
            print_json({**cmp, "rows": table.to_dict("records")})
            return
        if fmt == Format.csv:
            print_frame(table, fmt)
            return
        print_frame(table, fmt, title=f"row scales: version {v2} / version {v1}")
        summary = {k: v for k, v in cmp.items() if k != "worst"}
        print_mapping(summary, ObjFormat.table, title="summary")


@app.command()
def verify(
    version: int = typer.Argument(...),
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format"),
) -> None:
    """Re-solve a version from the registry's inputs; report the difference and input changes."""
    with errors(), open_registry(db) as reg:
        from calibreg.services.solve import verify_version

        result = verify_version(reg, version)
        print_mapping(result, fmt, title=f"verify version {version}")
        if not result["ok"]:
            raise typer.Exit(1)


class Kind(enum.StrEnum):
    """Which scales."""

    exposure = "exposure"
    row = "row"


def scales(
    version: int = typer.Argument(...),
    kind: Kind = typer.Option(Kind.row, "--kind"),
    flagged: bool = typer.Option(False, "--flagged", help="Only rows/exposures with a flag."),
    rejected: bool = typer.Option(
        False, "--rejected", help="The entries the robust fit rejected instead of the scales."
    ),
    db: DbOption = None,
    fmt: Format = FormatOpt,
) -> None:
    """Print a version's scales with errors and flags: per row (G) or per exposure (E).

    ``error`` is the standard error (same units as the scale), ``reduced_chi2`` the row's or
    exposure's χ²/dof, ``flag_names`` its quality flags (``calibreg versions show V`` explains
    them).
    """
    with errors(), open_registry(db) as reg:
        if rejected:
            frame = reg.rejected(version)
            print_frame(frame, fmt, title=f"version {version}: rejected entries")
            return
        frame = reg.scales(version, kind.value)
        if flagged:
            frame = frame[frame["flags"] != 0]
        if fmt == Format.table:  # the columns a person scans; json/csv carry every one
            keep = [c for c in TABLE_SCALE_COLUMNS if c in frame.columns]
            frame = frame[keep]
        print_frame(frame, fmt, title=f"version {version} {kind.value}")


#: The columns of `scales` in a terminal table.
TABLE_SCALE_COLUMNS = (
    "exposure",
    "detector_name",
    "amp",
    "scale",
    "error",
    "reduced_chi2",
    "n_used",
    "flag_names",
)


def history(
    instrument: str = typer.Option(..., "--instrument", "-i"),
    physical_filter: str = typer.Option(..., "--filter", "-f"),
    detector: str = typer.Option(..., "--detector", "-d", help="Detector id or name."),
    amp: str | None = typer.Option(None, "--amp", help="Amplifier name (AMP-level versions)."),
    db: DbOption = None,
    fmt: Format = FormatOpt,
) -> None:
    """One detector's (or amplifier's) scale in every version, oldest first."""
    with errors(), open_registry(db) as reg:
        frame = reg.history(
            instrument=instrument, physical_filter=physical_filter, detector=detector, amp=amp
        )
        print_frame(frame, fmt, title=f"{instrument} {physical_filter} {detector} {amp or ''}")


class ExportFormat(enum.StrEnum):
    """Export structures."""

    cp_pipe = "cp_pipe"


def export(
    version: int = typer.Argument(...),
    fmt: ExportFormat = typer.Option(ExportFormat.cp_pipe, "--format"),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="File to write (.yaml/.yml or .json); default stdout JSON."
    ),
    db: DbOption = None,
) -> None:
    """Export a version as cp_pipe's cpFlatNormScales structure (YAML or JSON by suffix)."""
    with errors(), open_registry(db) as reg:
        from calibreg.formats.cp_pipe import dump_cp_pipe

        structure = reg.cp_pipe(version)
        text = dump_cp_pipe(
            structure, "yaml" if output and output.suffix in (".yaml", ".yml") else "json"
        )
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.write_text(text)
            typer.echo(f"wrote version {version} as cp_pipe scales to {output}", err=True)
