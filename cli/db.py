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
    destroy_data: bool = typer.Option(
        False, "--destroy-data", help="Allow a downgrade that drops stored rows."
    ),
) -> None:
    """Migrate the database down to REVISION; refused if it would drop data (see --destroy-data)."""
    with errors(), open_registry(db, check_schema=False) as reg:
        rev = reg.downgrade(revision, destroy_data=destroy_data) or "base (empty)"
        typer.echo(f"{reg.database}: at revision {rev}")


@app.command("grant-runtime")
def grant_runtime(
    role: str = typer.Argument(..., help="An existing PostgreSQL role."),
    db: DbOption = None,
) -> None:
    """PostgreSQL: let ROLE use the registry without being able to bypass its guards.

    Run as the schema's owner. ROLE gets SELECT/INSERT/UPDATE/DELETE (every change still goes
    through the immutability triggers) and no TRUNCATE, TRIGGER or ownership.
    """
    with errors(), open_registry(db) as reg:
        for sql in reg.grant_runtime(role):
            typer.echo(sql)


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
