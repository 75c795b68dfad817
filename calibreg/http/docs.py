"""Interactive API documentation that works offline: ``/docs`` (Swagger UI), ``/redoc``.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on an observatory network
without internet access they are blank. Here the same pages load their JavaScript, CSS and
icon from this server, out of the copies the ``fastapi-offline`` package ships
(``fastapi_offline/static``), mounted at :data:`ASSETS`. The pages name no outside URL (the
Swagger UI validator badge, which would call validator.swagger.io, is off).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the documentation pages' assets are served.
ASSETS = "/docs/assets"
#: The asset files the pages load, by role (names as ``fastapi-offline`` ships them).
FILES = {
    "swagger_js": "swagger-ui-bundle.js",
    "swagger_css": "swagger-ui.css",
    "redoc_js": "redoc.standalone.js",
    "favicon": "favicon.png",
}


def assets_dir() -> Path:
    """Return the folder of the installed Swagger UI / ReDoc files.

    Raises
    ------
    FileNotFoundError
        If ``fastapi-offline`` is installed without one of :data:`FILES`.
    """
    folder = Path(str(resources.files("fastapi_offline") / "static"))
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: no {', '.join(missing)} (reinstall fastapi-offline)")
    return folder


def install_docs(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and their assets to ``app`` (built with ``docs_url=None``)."""
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} {app.version} — API"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS}/{FILES['swagger_js']}",
            swagger_css_url=f"{ASSETS}/{FILES['swagger_css']}",
            swagger_favicon_url=f"{ASSETS}/{FILES['favicon']}",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=f"{ASSETS}/{FILES['redoc_js']}",
            redoc_favicon_url=f"{ASSETS}/{FILES['favicon']}",
            with_google_fonts=False,
        )


__all__ = ["ASSETS", "FILES", "assets_dir", "install_docs"]
