"""``calibreg plot``: pictures of versions (PNG, PDF or SVG by the output suffix)."""

from __future__ import annotations

from pathlib import Path

import typer
from calibreg_cli.common import DbOption, errors, open_registry

app = typer.Typer(
    help="Plot a version on the focal plane, its fit (residuals, a row, exposures), or history.",
    no_args_is_help=True,
)


@app.command("focal-plane")
def focal_plane(
    version: int = typer.Argument(...),
    compare: int | None = typer.Option(
        None,
        "--compare",
        metavar="V2",
        help="Draw the ratio G(V2) / G(VERSION) (same instrument and level).",
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="PNG, PDF or SVG by suffix. Default: focal-plane-vV.png"
    ),
    db: DbOption = None,
) -> None:
    """Draw a version's row scales G (or a ratio of two versions) on the focal plane."""
    with errors():
        from calibreg.services.plots import focal_plane as draw

        default = f"focal-plane-v{version}" + (f"-v{compare}" if compare else "") + ".png"
        with open_registry(db) as reg:
            path = draw(reg, version, output or Path(default), compare=compare)
        typer.echo(f"wrote {path}")


@app.command("history")
def history(
    instrument: str = typer.Option(..., "--instrument", "-i"),
    physical_filter: str = typer.Option(..., "--filter", "-f"),
    detector: str = typer.Option(..., "--detector", "-d"),
    amp: str | None = typer.Option(None, "--amp"),
    output: Path = typer.Option(
        None, "--output", "-o", help="PNG, PDF or SVG by suffix. Default: history-DETECTOR.png"
    ),
    db: DbOption = None,
) -> None:
    """Plot one detector's (or amplifier's) scale G across versions, by date of their inputs."""
    with errors():
        from calibreg.services.plots import history_plot

        with open_registry(db) as reg:
            path = history_plot(
                reg,
                instrument=instrument,
                physical_filter=physical_filter,
                detector=detector,
                amp=amp,
                output=output or Path(f"history-{detector}{'-' + amp if amp else ''}.png"),
            )
        typer.echo(f"wrote {path}")


def _fit_plot(
    version: int, output: Path | None, default: str, draw: object, db: str | None, **kw: object
) -> None:
    with errors():
        from calibreg.services import fit_plots

        path = fit_plots.check_output(output or Path(default))
        with open_registry(db) as reg:
            fit = reg.fit(version)
        try:
            written = getattr(fit_plots, str(draw))(fit, path, **kw)
        except KeyError as err:
            from calibreg.errors import NotFoundError

            raise NotFoundError(str(err.args[0])) from None
        typer.echo(f"wrote {written}")


@app.command("residuals")
def residuals(
    version: int = typer.Argument(...),
    output: Path = typer.Option(None, "--output", "-o", help="Default: residuals-vV.png"),
    db: DbOption = None,
) -> None:
    """Draw a version's row × exposure log residuals, rejected and missing entries marked."""
    _fit_plot(version, output, f"residuals-v{version}.png", "residual_image", db)


@app.command("row")
def row(
    version: int = typer.Argument(...),
    detector: str = typer.Option(..., "--detector", "-d", help="Detector id or name."),
    amp: str | None = typer.Option(None, "--amp", help="One amplifier (default: all of them)."),
    output: Path = typer.Option(None, "--output", "-o", help="Default: row-vV-DETECTOR.png"),
    db: DbOption = None,
) -> None:
    """Draw one row's log residual against its background level (non-linearity, saturation)."""
    name = f"row-v{version}-{detector}{'-' + amp if amp else ''}.png"
    _fit_plot(version, output, name, "row_plot", db, detector=detector, amp=amp)


@app.command("exposures")
def exposures(
    version: int = typer.Argument(...),
    output: Path = typer.Option(None, "--output", "-o", help="Default: exposures-vV.png"),
    db: DbOption = None,
) -> None:
    """Draw the exposure scales E with their errors against exposure time (flagged marked)."""
    _fit_plot(version, output, f"exposures-v{version}.png", "exposures_plot", db)
