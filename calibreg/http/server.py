"""Run the read-only API under uvicorn: what ``calibreg serve`` calls.

With ``workers > 1`` each worker is a process of its own that binds its **own** listening socket
on the same address with ``SO_REUSEPORT``: the kernel then spreads incoming connections over
the workers by a hash of each connection, instead of all workers racing on one accept queue
(where whichever worker is awake takes most of a burst). Each socket is created as
``IPPROTO_TCP``, so the event loop sets ``TCP_NODELAY`` on every accepted connection (no 40 ms
Nagle/delayed-ACK stall when a response is written as headers then body). The workers share
nothing but the database: each keeps its own lookup cache, invalidated by the registry's
certification generation, so a certification made anywhere is seen by all of them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import socket
import sys
import time
from typing import Any

from calibreg.client import Registry
from calibreg.http.encoding import LOOKUP_MAX_AGE

#: Most worker processes ``serve`` starts.
MAX_WORKERS = 64
#: Exit code of a worker that could not bind (uvicorn's own STARTUP_FAILURE).
STARTUP_FAILURE = 3


def _uvicorn_options() -> dict[str, Any]:
    """Uvicorn settings of every worker: compiled HTTP parser and loop when installed."""
    options: dict[str, Any] = {"log_level": "warning", "access_log": False}
    with contextlib.suppress(ImportError):
        import httptools  # noqa: F401

        options["http"] = "httptools"
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    return options


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """Return a TCP socket bound to ``host:port`` (``SO_REUSEPORT`` when ``reuse_port``).

    Created with ``proto=IPPROTO_TCP``: asyncio and uvloop set ``TCP_NODELAY`` on the
    connections they accept from such a socket.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _worker(url: str | None, host: str, port: int, lookup_max_age: int) -> None:
    """One worker process: its own socket, registry, app and lookup cache."""
    import uvicorn

    from calibreg.http.app import create_app

    try:
        sock = listening_socket(host, port, reuse_port=True)
    except OSError as err:
        print(f"error: cannot listen on {host}:{port}: {err.strerror}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    registry = Registry(url)
    try:
        app = create_app(registry, lookup_max_age=lookup_max_age)
        config = uvicorn.Config(app, backlog=2048, **_uvicorn_options())
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        registry.close()


def serve(
    url: str | None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int = 1,
    lookup_max_age: int = LOOKUP_MAX_AGE,
) -> None:
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
    workers
        Worker processes (see the module docs). 1 serves in this process.
    lookup_max_age
        Seconds a lookup answer may be served by a cache without revalidating.

    Raises
    ------
    calibreg.errors.SchemaError
        Before binding, if the database schema is missing or not current: a service that
        started anyway would only answer errors.
    calibreg.errors.InputError
        For a worker count outside 1..64 or a negative max-age.
    """
    from calibreg.errors import CalibregError, InputError

    if not 1 <= workers <= MAX_WORKERS:
        raise InputError(
            "serve", f"--workers must be 1..{MAX_WORKERS}, got {workers}", field="workers"
        )
    if lookup_max_age < 0:
        raise InputError("serve", "--max-age must be >= 0", field="max_age")
    registry = Registry(url)  # checks the schema before anything listens
    if workers == 1:
        import uvicorn

        from calibreg.http.app import create_app

        try:
            app = create_app(registry, lookup_max_age=lookup_max_age)
            # Access logs off: at lookup rates they cost more than the lookup; errors still log.
            uvicorn.run(app, host=host, port=port, **_uvicorn_options())
        finally:
            registry.close()
        return
    registry.close()
    code = _supervise(url, host, port, workers, lookup_max_age)
    if code:
        raise CalibregError(f"a worker of calibreg serve exited with status {code}")


def _supervise(url: str | None, host: str, port: int, workers: int, max_age: int) -> int:
    """Start the workers, stop them all on SIGTERM/SIGINT or when one dies; return its code."""
    # Refuse a port in use before starting anyone (each worker would fail alone otherwise).
    try:
        listening_socket(host, port, reuse_port=True).close()
    except OSError as err:
        from calibreg.errors import CalibregError

        raise CalibregError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(url, host, port, max_age), daemon=False)
        for _ in range(workers)
    ]
    stopping = False

    def stop(_signum: int = 0, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for proc in procs:
            proc.start()
        code = 0
        while not stopping:
            dead = [p for p in procs if p.exitcode is not None]
            if dead:
                code = dead[0].exitcode or 0
                break
            time.sleep(0.2)
        return code
    finally:
        for proc in procs:
            if proc.exitcode is None and proc.pid is not None:
                proc.terminate()  # SIGTERM: uvicorn finishes its requests and exits
        deadline = time.monotonic() + 10
        for proc in procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.exitcode is None and proc.pid is not None:
                proc.kill()
                proc.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["listening_socket", "serve"]
