"""The ``calibreg`` program: one Typer app with a sub-app per command group.

Heavy libraries (pandas, SQLAlchemy, NumPy) are imported inside commands so that
``calibreg --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import pandas as pd
from calibreg_cli import butler as butler_cmds
from calibreg_cli import db as db_cmds
from calibreg_cli import ingest as ingest_cmds
from calibreg_cli import plot, publish, solve, versions
from calibreg_cli.common import DbOption, OneLineErrors, errors, open_registry
from calibreg_cli.output import Column, Format, print_frame, short_instant

app = typer.Typer(
    name="calibreg",
    cls=OneLineErrors,
    help="A database-backed calibration registry for flat-field normalization scales.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_cmds.app, name="db")
app.add_typer(ingest_cmds.app, name="ingest")
ingest_cmds.app.command("butler")(butler_cmds.ingest)
app.add_typer(butler_cmds.publish_app, name="publish")
app.add_typer(versions.app, name="versions")
app.add_typer(plot.app, name="plot")
app.command("solve")(solve.solve)
app.command("scales")(versions.scales)
app.command("history")(versions.history)
app.command("export")(versions.export)
app.command("certify")(publish.certify)
app.command("decertify")(publish.decertify)
app.command("lookup")(publish.lookup)
app.command("tags")(publish.tags_list)

FormatOpt = typer.Option(Format.table, "--format", help="table, json or csv.")


def _with_utc(frame: pd.DataFrame, fmt: Format) -> pd.DataFrame:
    """Show TAI-ns timespans as UTC ISO text; JSON keeps the exact integers beside it."""
    import pandas as pd

    from calibreg.formats.timescale import format_instant

    frame = frame.copy()
    for col in ("timespan_begin", "timespan_end"):
        if col in frame.columns:
            text = pd.Series(
                [format_instant(v) for v in frame[col]], dtype=object, index=frame.index
            )
            if fmt == Format.json:
                position = frame.columns.get_loc(col) + 1
                frame.insert(position, f"{col}_utc", text)
                frame.insert(
                    position, f"{col}_str", [None if pd.isna(v) else str(v) for v in frame[col]]
                )
            else:
                frame[col] = text
    return frame


@app.command()
def instruments(db: DbOption = None, fmt: Format = FormatOpt) -> None:
    """List instruments with their detector, amplifier and exposure counts."""
    with errors(), open_registry(db) as reg:
        print_frame(reg.instruments(), fmt, title="instruments")


@app.command()
def detectors(
    instrument: str = typer.Option(..., "--instrument", "-i"),
    db: DbOption = None,
    fmt: Format = FormatOpt,
) -> None:
    """List an instrument's detectors (focal-plane offsets in mm, yaw in degrees)."""
    with errors(), open_registry(db) as reg:
        frame = reg.detectors(instrument)
    columns = [
        Column("id", whole=True),
        Column("name", whole=True),
        Column("purpose", whole=True),
        Column("physical_type", "type", whole=True),
        Column("serial", whole=True),
        Column("n_amplifiers", "amps"),
        Column("offset_x", "x (mm)", digits=6),
        Column("offset_y", "y (mm)", digits=6),
        Column("yaw", "yaw (deg)", digits=6, optional=True),
    ]
    print_frame(frame, fmt, title=f"{instrument} detectors", columns=columns)


@app.command()
def exposures(
    instrument: str = typer.Option(..., "--instrument", "-i"),
    physical_filter: str | None = typer.Option(None, "--filter", "-f"),
    db: DbOption = None,
    fmt: Format = FormatOpt,
) -> None:
    """List an instrument's exposures (timespans shown in UTC) and their statistics counts.

    The table shows the columns a person scans; JSON and CSV carry every column.
    """
    with errors(), open_registry(db) as reg:
        frame = _with_utc(reg.exposures(instrument, physical_filter), fmt)
    if fmt == Format.table:
        frame["begin"] = [
            short_instant(t).removesuffix("Z").replace("T", " ") if t else ""
            for t in frame["timespan_begin"]
        ]
        frame["stats"] = [
            f"{d}/{a}" for d, a in zip(frame["detector_stats"], frame["amp_stats"], strict=True)
        ]
    columns = [
        Column("id", whole=True),
        Column("day_obs", whole=True, optional=True),
        Column("obs_id", whole=True),
        Column("physical_filter", "filter", whole=True),
        Column("observation_type", "type", whole=True, optional=True),
        Column("exposure_time", "exptime (s)", whole=False),
        Column("begin", "begin (UTC)", whole=False),
        Column("stats", "stats det/amp", whole=False),
    ]
    print_frame(frame, fmt, title=f"{instrument} exposures", columns=columns)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    workers: int = typer.Option(
        1,
        "--workers",
        "-w",
        help="Worker processes, each with its own SO_REUSEPORT socket and lookup cache.",
    ),
    max_age: int = typer.Option(
        5, "--max-age", help="Seconds a cache may serve a lookup answer before revalidating."
    ),
    access_log: bool = typer.Option(
        True,
        "--access-log/--no-access-log",
        help="One line per request on stderr (turn off for benchmarks).",
    ),
    db: DbOption = None,
) -> None:
    """Serve the registry read-only over HTTP (JSON; docs at /docs, OpenAPI at /openapi.json).

    Prints where it listens, the database (password masked) and its schema revision; Ctrl-C
    stops it (exit status 0).
    """
    with errors():
        from calibreg.http.server import serve as run_server

        run_server(
            db,
            host=host,
            port=port,
            workers=workers,
            lookup_max_age=max_age,
            access_log=access_log,
        )


@app.command()
def demo(
    db: DbOption = None,
    exposures: int = typer.Option(40, "--exposures", help="Flat exposures to simulate."),
    seed: int = typer.Option(20261123, "--seed"),
    workdir: Path = typer.Option(
        Path("calibreg-demo"),
        "--dir",
        help="Folder for the demo's registry and files (made if missing).",
    ),
) -> None:
    """Tour the whole job on simulated LSSTCam flats: ingest, solve, verify, certify, export.

    Prints each step's command as you would type it, and ends with three commands to look at
    the result. Everything it writes goes into --dir; its own SQLite registry is made afresh.
    """
    with errors():
        from calibreg.services.demo import run_demo

        run_demo(db, n_exposures=exposures, seed=seed, workdir=workdir)


if __name__ == "__main__":  # pragma: no cover
    app()
