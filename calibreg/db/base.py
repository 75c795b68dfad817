"""Table classes: a class body of SQLAlchemy Core columns becomes a Core ``Table``.

calibreg speaks SQL through Core only (statements on a ``Connection``, never an ORM session),
so its tables need no mapper: importing the ORM (``sqlalchemy.orm``) and building 16 mapped
classes cost a quarter of a second of every command's start on this machine, for nothing a
command used (issue 12: ``calibreg versions list`` ≤ 0.5 s). A class keeps what the registry
code reads: ``Instrument.id`` is the table's column, ``Instrument.__table__`` the table, and the
class itself goes wherever a table does (``select(Tag)``, ``insert(Instrument)``), by
``__clause_element__``, the protocol SQLAlchemy coerces its arguments with.

Every constraint gets a deterministic name (the naming convention), so that SQLite batch
migrations (which rebuild tables) and PostgreSQL agree on names, and a migration can drop a
constraint by name.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import Column, MetaData, Table

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base:
    """Base of every calibreg table.

    A subclass names its table in ``__tablename__``, declares one ``Column`` per attribute (in
    order; the attribute's name is the column's), and may give ``__table_args__``: constraints
    and indexes, optionally ending with a dict of table keyword arguments (as SQLAlchemy's
    declarative classes do). The columns become attributes of the class, bound to the table.
    """

    metadata: ClassVar[MetaData] = MetaData(naming_convention=NAMING_CONVENTION)
    __tablename__: ClassVar[str]
    __table__: ClassVar[Table]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        columns = []
        for name, value in vars(cls).items():
            if isinstance(value, Column):
                if value.name is None:
                    value.name = value.key = name
                columns.append(value)
        args = tuple(vars(cls).get("__table_args__", ()))
        options: dict[str, Any] = {}
        if args and isinstance(args[-1], dict):
            args, options = args[:-1], args[-1]
        table = Table(cls.__tablename__, cls.metadata, *columns, *args, **options)
        for column in columns:
            setattr(cls, column.key, table.c[column.key])
        cls.__table__ = table

    @classmethod
    def __clause_element__(cls) -> Table:
        """Return the table: SQLAlchemy takes the class wherever it takes a table."""
        return cls.__table__


__all__ = ["NAMING_CONVENTION", "Base"]
