"""Run the read-only API under uvicorn: what ``calibreg serve`` calls.

With ``workers > 1`` each worker is a process of its own that binds its **own** listening socket
on the same address with ``SO_REUSEPORT``: the kernel then spreads incoming connections over
the workers by a hash of each connection, instead of all workers racing on one accept queue
(where whichever worker is awake takes most of a burst). Each socket is created as
``IPPROTO_TCP``, so the event loop sets ``TCP_NODELAY`` on every accepted connection (no 40 ms
Nagle/delayed-ACK stall when a response is written as headers then body). The workers share
nothing but the database: each keeps its own lookup cache, invalidated by the registry's
certification generation, so a certification made anywhere is seen by all of them.

The server talks: it prints where it listens, the database (password masked) and the schema
revision on start, one access line per request (unless ``access_log=False``) and ``stopped``
when Ctrl-C (SIGINT) or SIGTERM ends it — exit status 0, no traceback, with any worker count.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import multiprocessing
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from calibreg.client import Registry
from calibreg.http.encoding import LOOKUP_MAX_AGE

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


def _say(line: str) -> None:
    """Write one line to stderr in one call (whole lines even with several workers)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class AccessLog:
    """ASGI wrapper writing one line per HTTP request to stderr when its response is sent.

    ``2026-12-03T14:22:15Z 127.0.0.1:51234 "GET /health HTTP/1.1" 200 57 B 1.2 ms``: UTC time
    the response ended, client, request line (query string included), status, body bytes sent
    (after compression), and the time from request to the response's last byte.
    """

    def __init__(self, app: ASGIApp, write: Callable[[str], None] = _say) -> None:
        self.app = app
        self.write = write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through, noting status and size; log when the body ends."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, size = 0, 0

        async def noting(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    self._line(scope, status, size, start)
            await send(message)

        try:
            await self.app(scope, receive, noting)
        except BaseException:
            if status == 0:  # the app failed before answering: the server sends a 500
                self._line(scope, 500, 0, start)
            raise

    def _line(self, scope: Scope, status: int, size: int, start: float) -> None:
        ms = (time.perf_counter() - start) * 1000
        client = scope.get("client")
        who = f"{client[0]}:{client[1]}" if client else "-"
        path = scope.get("path", "")
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.write(
            f'{when} {who} "{scope["method"]} {path} HTTP/{scope.get("http_version", "1.1")}" '
            f"{status} {size} B {ms:.1f} ms"
        )


def start_lines(registry: Registry, host: str, port: int, workers: int) -> list[str]:
    """Return what ``serve`` prints on start: address, database (password masked), revision."""
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    plural = "worker" if workers == 1 else "workers"
    return [
        f"calibreg serve: listening on {base} ({workers} {plural}, read-only)",
        f"  database {registry.database}, schema revision {registry.schema_revision()}",
        f"  API docs {base}/docs; press Ctrl-C to stop",
    ]


@contextlib.contextmanager
def _quiet_stop(on_signal: Callable[[], None]) -> Any:
    """Handle SIGINT/SIGTERM by calling ``on_signal`` instead of raising KeyboardInterrupt.

    uvicorn installs its own handlers while it serves and, once it has shut down, re-raises
    the signal it caught; that lands here, where it is only noted, so the process ends
    through the normal path: a ``stopped`` line and status 0, no traceback.
    """
    previous = {
        sig: signal.signal(sig, lambda _s, _f: on_signal())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_uvicorn(app: Any, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until SIGINT/SIGTERM; return normally after either.

    A worker process starts with SIGINT ignored (see :func:`_supervise`); the handler put
    in place here takes it over once the worker is ready to stop cleanly.
    """
    import uvicorn

    config = uvicorn.Config(app, backlog=2048, **_uvicorn_options())
    server = uvicorn.Server(config)

    def stop() -> None:
        server.should_exit = True

    # Everything made so far (modules, the app, the registry) lives as long as the process:
    # gc.freeze() keeps it out of the collector's full passes, which otherwise walk all of it
    # (~70 ms here) while every request of the moment waits: a p99 of its own.
    gc.collect()
    gc.freeze()
    with _quiet_stop(stop):
        server.run(sockets=[sock])


def _wait_listening(host: str, port: int, procs: list[Any], timeout: float = 60.0) -> bool:
    """Wait until ``host:port`` accepts connections; False if a worker died or time ran out."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.exitcode is not None for p in procs):
            return False
        with contextlib.suppress(OSError), socket.create_connection((target, port), timeout=1):
            return True
        time.sleep(0.05)
    return False


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


def _worker(
    url: str | None, host: str, port: int, lookup_max_age: int, access_log: bool = True
) -> None:
    """One worker process: its own socket, registry, app and lookup cache."""
    from calibreg.http.app import create_app

    try:
        sock = listening_socket(host, port, reuse_port=True)
    except OSError as err:
        print(f"error: cannot listen on {host}:{port}: {err.strerror}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    registry = Registry(url, validity_index=True)
    try:
        app = create_app(registry, lookup_max_age=lookup_max_age)
        _run_uvicorn(AccessLog(app) if access_log else app, sock)
    except KeyboardInterrupt:  # a Ctrl-C before uvicorn took the signals over
        pass
    finally:
        registry.close()


def serve(
    url: str | None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int = 1,
    lookup_max_age: int = LOOKUP_MAX_AGE,
    access_log: bool = True,
) -> None:
    """Serve the registry at ``url`` on ``host:port`` until interrupted.

    Prints (stderr) where it listens, the database with any password masked and its schema
    revision; one access line per request when ``access_log``; ``calibreg serve: stopped``
    when SIGINT (Ctrl-C) or SIGTERM ends it, then returns normally.

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
    access_log
        Write one line per request to stderr (:class:`AccessLog`). At thousands of lookups
        per second the lines cost measurable time: benchmarks turn them off.

    Raises
    ------
    calibreg.errors.SchemaError
        Before binding, if the database schema is missing or not current: a service that
        started anyway would only answer errors.
    calibreg.errors.InputError
        For a worker count outside 1..64 or a negative max-age.
    calibreg.errors.CalibregError
        If the address cannot be bound, or a worker exits with an error.
    """
    from calibreg.errors import CalibregError, InputError

    if not 1 <= workers <= MAX_WORKERS:
        raise InputError(
            "serve", f"--workers must be 1..{MAX_WORKERS}, got {workers}", field="workers"
        )
    if lookup_max_age < 0:
        raise InputError("serve", "--max-age must be >= 0", field="max_age")
    # Checks the schema before anything listens; a single-process server reads through it.
    registry = Registry(url, validity_index=workers == 1)
    try:
        if workers == 1:
            from calibreg.http.app import create_app

            try:
                sock = listening_socket(host, port, reuse_port=False)
                # Listen now: a client that reads the start line and connects at once is
                # queued until uvicorn accepts, not refused.
                sock.listen(2048)
            except OSError as err:
                raise CalibregError(f"cannot listen on {host}:{port}: {err.strerror}") from None
            app = create_app(registry, lookup_max_age=lookup_max_age)
            for line in start_lines(registry, host, port, workers):
                _say(line)
            _run_uvicorn(AccessLog(app) if access_log else app, sock)
            _say("calibreg serve: stopped")
            return
        lines = start_lines(registry, host, port, workers)
    finally:
        registry.close()
    code = _supervise(url, host, port, workers, lookup_max_age, access_log, lines)
    if code:
        raise CalibregError(f"a worker of calibreg serve exited with status {code}")
    _say("calibreg serve: stopped")


def _supervise(
    url: str | None,
    host: str,
    port: int,
    workers: int,
    max_age: int,
    access_log: bool = True,
    lines: list[str] | None = None,
) -> int:
    """Start the workers, stop them all on SIGTERM/SIGINT or when one dies; return its code."""
    # Refuse a port in use before starting anyone (each worker would fail alone otherwise).
    try:
        listening_socket(host, port, reuse_port=True).close()
    except OSError as err:
        from calibreg.errors import CalibregError

        raise CalibregError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(url, host, port, max_age, access_log), daemon=False)
        for _ in range(workers)
    ]
    stopping = False

    def stop(_signum: int = 0, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        # The workers start with SIGINT ignored (an ignored signal stays ignored across
        # exec): a Ctrl-C while they import would otherwise print a KeyboardInterrupt
        # traceback from each. The terminal's SIGINT reaches this process too, which then
        # stops them with SIGTERM.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for proc in procs:
                proc.start()
        finally:
            signal.signal(signal.SIGINT, stop)
        if _wait_listening(host, port, procs) and not stopping:
            for line in lines or []:
                _say(line)
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


__all__ = ["AccessLog", "listening_socket", "serve", "start_lines"]
