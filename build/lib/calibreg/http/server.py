"""Run the read-only API under uvicorn: what ``calibreg serve`` calls."""

from __future__ import annotations

from calibreg.client import Registry


def serve(url: str | None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the registry at ``url`` on ``host:port`` until interrupted.

    Parameters
    ----------
    url
        Database URL; ``None`` means ``$CALIBREG_DATABASE_URL``, else ``./calibreg.sqlite3``
        (as every command resolves it).
    host
        Interface to bind. Loopback by default: the API has no authentication, so exposing it
        beyond this machine must be a deliberate choice (or left to a reverse proxy).
    port
        TCP port.

    Raises
    ------
    calibreg.errors.SchemaError
        Before binding, if the database schema is missing or not current: a service that
        started anyway would only answer errors.
    """
    import uvicorn

    from calibreg.http.app import create_app

    registry = Registry(url)
    try:
        app = create_app(registry)
        # Access logs off: at lookup rates they cost more than the lookup; errors still log.
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        registry.close()


__all__ = ["serve"]
