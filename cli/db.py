"""``calibreg db``: schema migrations."""

from __future__ import annotations

import typer
from calibreg_cli.common import DbOption, errors
from calibreg_cli.output import ObjFormat, print_mapping

app = typer.Typer(help="Create and migrate the registry schema.", no_args_is_help=True)


@app.command()
def upgrade(
    revision: str = typer.Argument("head", help="Target revision."),
    db: DbOption = None,
) -> None:
    """Migrate the database up to REVISION (default: head); creates it if empty."""
    with errors():
        from calibreg.db.migrate import current_revision
        from calibreg.db.migrate import upgrade as do_upgrade
        from calibreg.db.session import make_engine, masked_url, resolve_url

        engine = make_engine(db)
        do_upgrade(engine, revision)
        typer.echo(f"{masked_url(resolve_url(db))}: at revision {current_revision(engine)}")


@app.command()
def downgrade(
    revision: str = typer.Argument(..., help="Target revision ('base' removes everything)."),
    db: DbOption = None,
) -> None:
    """Migrate the database down to REVISION."""
    with errors():
        from calibreg.db.migrate import current_revision
        from calibreg.db.migrate import downgrade as do_downgrade
        from calibreg.db.session import make_engine, masked_url, resolve_url

        engine = make_engine(db)
        do_downgrade(engine, revision)
        rev = current_revision(engine) or "base (empty)"
        typer.echo(f"{masked_url(resolve_url(db))}: at revision {rev}")


@app.command()
def current(
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format"),
) -> None:
    """Show the database's schema revision and the one this calibreg needs."""
    with errors():
        from calibreg.db.migrate import current_revision, head_revision
        from calibreg.db.session import make_engine, masked_url, resolve_url

        engine = make_engine(db)
        cur = current_revision(engine)
        head = head_revision()
        print_mapping(
            {
                "database": masked_url(resolve_url(db)),
                "current": cur,
                "head": head,
                "up_to_date": cur == head,
            },
            fmt,
        )
