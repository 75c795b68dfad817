"""The ``calibreg`` program: one Typer app with a sub-app per command group.

Heavy libraries (pandas, SQLAlchemy, NumPy) are imported inside commands so that
``calibreg --help`` stays fast.
"""

from __future__ import annotations

import typer

from calibreg_cli import db as db_cmds
from calibreg_cli import ingest as ingest_cmds
from calibreg_cli.common import DbOption, errors, open_engine
from calibreg_cli.output import Format, print_frame

app = typer.Typer(
    name="calibreg",
    help="A database-backed calibration registry for flat-field normalization scales.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_cmds.app, name="db")
app.add_typer(ingest_cmds.app, name="ingest")

FormatOpt = typer.Option(Format.table, "--format", help="table, json or csv.")


def _with_utc(frame):  # noqa: ANN001, ANN202
    """Show TAI-nanosecond timespans as UTC ISO strings."""
    from calibreg.formats.timescale import tai_ns_to_utc_iso

    for col in ("timespan_begin", "timespan_end"):
        if col in frame.columns:
            frame[col] = [
                None if v is None or v != v else tai_ns_to_utc_iso(int(v)) for v in frame[col]
            ]
    return frame


@app.command()
def instruments(db: DbOption = None, fmt: Format = FormatOpt) -> None:
    """List instruments with their detector, amplifier and exposure counts."""
    with errors():
        from calibreg.registry.catalog import list_instruments

        with open_engine(db).connect() as conn:
            print_frame(list_instruments(conn), fmt, title="instruments")


@app.command()
def detectors(
    instrument: str = typer.Option(..., "--instrument", "-i"),
    db: DbOption = None,
    fmt: Format = FormatOpt,
) -> None:
    """List an instrument's detectors."""
    with errors():
        from calibreg.registry.catalog import list_detectors

        with open_engine(db).connect() as conn:
            print_frame(list_detectors(conn, instrument), fmt, title=f"{instrument} detectors")


@app.command()
def exposures(
    instrument: str = typer.Option(..., "--instrument", "-i"),
    physical_filter: str | None = typer.Option(None, "--filter", "-f"),
    db: DbOption = None,
    fmt: Format = FormatOpt,
) -> None:
    """List an instrument's exposures (timespans shown in UTC)."""
    with errors():
        from calibreg.registry.catalog import list_exposures

        with open_engine(db).connect() as conn:
            frame = _with_utc(list_exposures(conn, instrument, physical_filter))
            print_frame(frame, fmt, title=f"{instrument} exposures")


if __name__ == "__main__":  # pragma: no cover
    app()
