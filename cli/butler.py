"""``calibreg ingest butler`` and ``calibreg publish butler``: a butler repository as source and
destination.

The LSST middleware is the optional extra ``calibreg[butler]``; it is imported inside the
commands (through :mod:`calibreg.butler`), so ``calibreg --help`` never loads it, and without it
the commands fail with one line saying how to install it.
"""

from __future__ import annotations

import typer
from calibreg_cli.common import DbOption, errors, open_registry, progress_bars
from calibreg_cli.output import ObjFormat, print_json

publish_app = typer.Typer(
    help="Publish calibration versions to other systems.", no_args_is_help=True
)


def ingest(
    repo: str = typer.Argument(..., help="Butler repository (directory or butler.yaml)."),
    instrument: str = typer.Option(..., "--instrument", "-i", help="Butler instrument name."),
    collections: list[str] = typer.Option(
        ..., "--collections", "-c", help="Collections to read from, in order (repeatable)."
    ),
    where: str | None = typer.Option(
        None, "--where", help="Butler query expression narrowing the datasets."
    ),
    dataset_type: str = typer.Option(
        "cpFlatProc_metadata", "--dataset-type", help="Statistics dataset type (PropertyList)."
    ),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", help="Processes parsing files (default: all cores)."
    ),
    replace: bool = typer.Option(
        False, "--replace", help="Overwrite rows whose values differ (else refused)."
    ),
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format", help="Output format."),
) -> None:
    """Register a butler repository's exposures and statistics datasets (one transaction)."""
    with errors():
        from calibreg.butler import daf_butler, ingest_butler

        daf_butler()  # the install hint comes before any database error
        names = [c for item in collections for c in item.split(",") if c.strip()]
        with open_registry(db) as reg, progress_bars() as advance:
            report = ingest_butler(
                reg,
                repo,
                instrument=instrument,
                collections=[c.strip() for c in names],
                where=where,
                dataset_type=dataset_type,
                replace=replace,
                jobs=jobs,
                progress=lambda done, total: advance("datasets read", done, total, unit="files"),
            )
        if fmt == ObjFormat.json:
            import dataclasses

            print_json({**dataclasses.asdict(report), "changed": report.changed})
        else:
            typer.echo(report.message())


@publish_app.command("butler")
def publish(
    version: int = typer.Argument(..., help="Calibration version id."),
    repo: str = typer.Argument(..., help="Butler repository (directory or butler.yaml)."),
    run: str = typer.Option(..., "--run", help="RUN collection to write into."),
    tag: str | None = typer.Option(
        None, "--tag", "-t", help="Certify for the version's validity ranges in this tag."
    ),
    calibration_collection: str | None = typer.Option(
        None,
        "--calibration-collection",
        help="CALIBRATION collection to certify into (default INSTRUMENT/calib/TAG).",
    ),
    dataset_type: str = typer.Option("cpFlatNormScales", "--dataset-type"),
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format", help="Output format."),
) -> None:
    """Write VERSION into a butler repository as cpFlatNormScales (and certify it with --tag)."""
    with errors():
        from calibreg.butler import daf_butler, publish_butler
        from calibreg.butler.publish import describe

        daf_butler()  # the install hint comes before any database error
        with open_registry(db) as reg:
            result = publish_butler(
                reg,
                version,
                repo,
                run=run,
                tag=tag,
                calibration_collection=calibration_collection,
                dataset_type=dataset_type,
            )
        if fmt == ObjFormat.json:
            print_json(result)
        else:
            typer.echo(describe(result))
