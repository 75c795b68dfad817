"""A read-only web view of a registry, served by ``calibreg serve`` under ``/ui/``.

Server-rendered HTML (Jinja2 templates) and a small script drawing the focal-plane maps and
plots as inline SVG, all shipped in this package: it works on a network without internet.
It reads through :class:`calibreg.client.Registry` only, like the JSON API beside it.
"""

from calibreg.web.routes import router

__all__ = ["router"]
