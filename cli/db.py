"""``calibreg db``: schema migrations."""

from __future__ import annotations

import typer
from calibreg_cli.common import DbOption, errors, open_registry
from calibreg_cli.output import ObjFormat, print_mapping

app = typer.Typer(help="Create and migrate the registry schema.", no_args_is_help=True)


@app.command()
def upgrade(
    revision: str = typer.Argument("head", help="Target revision."),
    db: DbOption = None,
) -> None:
    """Migrate the database up to REVISION (default: head); creates it if empty."""
    with errors(), open_registry(db, check_schema=False) as reg:
        rev = reg.upgrade(revision)
        typer.echo(f"{reg.database}: at revision {rev}")


@app.command()
def downgrade(
    revision: str = typer.Argument(..., help="Target revision ('base' removes everything)."),
    db: DbOption = None,
) -> None:
    """Migrate the database down to REVISION."""
    with errors(), open_registry(db, check_schema=False) as reg:
        rev = reg.downgrade(revision) or "base (empty)"
        typer.echo(f"{reg.database}: at revision {rev}")


@app.command()
def current(
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format"),
) -> None:
    """Show the database's schema revision and the one this calibreg needs."""
    with errors(), open_registry(db, check_schema=False) as reg:
        cur = reg.schema_revision()
        head = reg.head_revision()
        print_mapping(
            {"database": reg.database, "current": cur, "head": head, "up_to_date": cur == head},
            fmt,
        )
