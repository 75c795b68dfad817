"""``calibreg ingest``: camera geometry, exposure records, background statistics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from calibreg.domain.reports import IngestReport
from calibreg_cli.common import DbOption, errors, open_registry, progress_bars
from calibreg_cli.output import ObjFormat, print_json

app = typer.Typer(help="Load input files into the registry.", no_args_is_help=True)

ReplaceOption = Annotated[
    bool, typer.Option("--replace", help="Overwrite rows whose values differ (else refused).")
]
FormatOption = Annotated[ObjFormat, typer.Option("--format", help="Output format.")]


def _report(report: IngestReport, fmt: ObjFormat) -> None:
    import dataclasses

    if fmt == ObjFormat.json:
        print_json({**dataclasses.asdict(report), "changed": report.changed})
    else:
        typer.echo(report.message())


@app.command()
def camera(
    file: Path = typer.Argument(
        ..., help="calibreg camera YAML, obs_lsst camera YAML or obs_lsst policy directory."
    ),
    instrument: str | None = typer.Option(
        None, "--instrument", help="Register under this name (e.g. LSSTCam for lsstCamSim.yaml)."
    ),
    replace: ReplaceOption = False,
    db: DbOption = None,
    fmt: FormatOption = ObjFormat.table,
) -> None:
    """Register a camera's detectors and amplifiers."""
    with errors():
        from calibreg.domain.hashing import sha256_files
        from calibreg.formats import read_camera
        from calibreg.formats.obs_lsst_policy import source_files

        with open_registry(db) as reg:
            spec = read_camera(file, instrument=instrument)
            report = reg.ingest_camera(
                spec,
                source=str(file),
                sha256=sha256_files(source_files(file)),
                instrument=instrument,
                replace=replace,
            )
        _report(report, fmt)


@app.command()
def exposures(
    file: Path = typer.Argument(..., help="CSV, Parquet, JSON, or a butler export YAML."),
    instrument: str | None = typer.Option(
        None, "--instrument", help="Only this instrument's records."
    ),
    time_scale: str = typer.Option(
        "utc", "--time-scale", help="Scale of ISO datetime_begin/end columns: utc or tai."
    ),
    replace: ReplaceOption = False,
    db: DbOption = None,
    fmt: FormatOption = ObjFormat.table,
) -> None:
    """Register exposure records."""
    with errors():
        from calibreg.domain.hashing import sha256_files
        from calibreg.formats import read_exposures

        with open_registry(db) as reg:
            frame = read_exposures(file, time_scale=time_scale)
            known = set(reg.instruments().get("instrument", []))
            report = reg.ingest_exposures(
                frame,
                source=str(file),
                sha256=sha256_files([file]),
                instrument=instrument,
                replace=replace,
            )
            named = set(frame["instrument"]) if instrument is None else {instrument}
        _report(report, fmt)
        for name in sorted(named - known):  # created by this ingest: it has no camera yet
            typer.echo(
                f"note: instrument {name} was created without a camera; "
                "ingest one with 'calibreg ingest camera FILE|POLICY_DIR'",
                err=True,
            )


@app.command()
def stats(
    files: list[Path] = typer.Argument(
        ..., help="Long tables (CSV/Parquet) or cpFlatMeasure PropertyList YAML files."
    ),
    instrument: str | None = typer.Option(
        None, "--instrument", help="The instrument (needed when the registry holds several)."
    ),
    exposure: str | None = typer.Option(
        None,
        "--exposure",
        help="Exposure id or obs_id, for PropertyList files (else from the file name).",
    ),
    detector: str | None = typer.Option(
        None,
        "--detector",
        help="Detector id or name, for PropertyList files (else from the file name).",
    ),
    replace: ReplaceOption = False,
    block_mib: float = typer.Option(
        16.0,
        "--block-mib",
        min=0.01,
        help="MiB of a table read, checked and written at a time (bounds the memory used).",
    ),
    db: DbOption = None,
    fmt: FormatOption = ObjFormat.table,
) -> None:
    """Register background statistics (all files in one transaction)."""
    with errors(), open_registry(db) as reg:
        kwargs: dict[str, int | str] = {}
        if exposure is not None:
            kwargs["exposure"] = int(exposure) if exposure.isdigit() else exposure
        if detector is not None:
            kwargs["detector"] = int(detector) if detector.isdigit() else detector
        with progress_bars() as advance:
            report = reg.ingest_stats_files(
                files,
                instrument=instrument,
                replace=replace,
                block_bytes=int(block_mib * (1 << 20)),
                progress=advance,
                **kwargs,
            )
        _report(report, fmt)
