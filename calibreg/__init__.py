"""calibreg: a database-backed calibration registry for flat-field normalization scales."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("calibreg")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
