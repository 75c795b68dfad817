"""The read-only HTTP API (FastAPI): :func:`create_app` builds it, :func:`serve` runs it.

Imports are lazy so that importing :mod:`calibreg.http` alone does not load FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calibreg.http.app import create_app
    from calibreg.http.server import serve


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from calibreg.http.app import create_app

        return create_app
    if name == "serve":
        from calibreg.http.server import serve

        return serve
    raise AttributeError(name)


__all__ = ["create_app", "serve"]
