"""calibreg: a database-backed calibration registry for flat-field normalization scales."""

from __future__ import annotations

from typing import TYPE_CHECKING

from calibreg._version import __version__

if TYPE_CHECKING:
    from calibreg.client import Registry


def __getattr__(name: str) -> object:
    # Lazy: ``import calibreg`` stays cheap (the CLI's --help must not load SQLAlchemy).
    if name == "Registry":
        from calibreg.client import Registry

        return Registry
    raise AttributeError(name)


__all__ = ["Registry", "__version__"]
