"""``calibreg plot``: pictures of versions (PNG, PDF or SVG by the output suffix)."""

from __future__ import annotations

from pathlib import Path

import typer
from calibreg_cli.common import DbOption, errors, open_registry

app = typer.Typer(
    help="Plot a version on the focal plane, or a row's history.", no_args_is_help=True
)


@app.command("focal-plane")
def focal_plane(
    version: int = typer.Argument(...),
    output: Path = typer.Option(None, "--output", "-o", help="Default: focal-plane-vV.png"),
    db: DbOption = None,
) -> None:
    """Draw a version's row scales (G) at the detectors'/amplifiers' focal-plane positions."""
    with errors():
        from calibreg.services.plots import focal_plane as draw

        with open_registry(db) as reg:
            path = draw(reg, version, output or Path(f"focal-plane-v{version}.png"))
        typer.echo(f"wrote {path}")


@app.command("history")
def history(
    instrument: str = typer.Option(..., "--instrument", "-i"),
    physical_filter: str = typer.Option(..., "--filter", "-f"),
    detector: str = typer.Option(..., "--detector", "-d"),
    amp: str | None = typer.Option(None, "--amp"),
    output: Path = typer.Option(None, "--output", "-o", help="Default: history-DETECTOR.png"),
    db: DbOption = None,
) -> None:
    """Plot one detector's (or amplifier's) scale across versions."""
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
