"""calibreg: a database-backed calibration registry for flat-field normalization scales."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("calibreg")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from calibreg.client import Registry


def __getattr__(name: str) -> object:
    # Lazy: ``import calibreg`` stays cheap (the CLI's --help must not load SQLAlchemy).
    if name == "Registry":
        from calibreg.client import Registry

        return Registry
    raise AttributeError(name)


__all__ = ["Registry", "__version__"]
