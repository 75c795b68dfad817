"""calibreg's version: the one place it is written (``pyproject.toml`` reads it from here).

A literal, not ``importlib.metadata.version("calibreg")``: reading the installed distribution's
metadata imports ``importlib.metadata`` (and ``email`` with it), ~40 ms of every command's start.
"""

from __future__ import annotations

__version__ = "0.1.0"
