"""``calibreg serve`` talks (issue 10, item 5): start lines, access lines, a clean Ctrl-C.

Each test runs the real entry point as a subprocess on a free loopback port, reads what it
writes on stderr, and stops it the way a terminal does: SIGINT to its whole process group.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from calibreg.client import Registry

STARTUP_TIMEOUT = 90.0  # two spawned workers on a shared 2-core machine
STOP_TIMEOUT = 30.0


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite registry holding nothing (enough for /health and /versions)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('serve') / 'registry.sqlite3'}"
    with Registry(url, check_schema=False) as reg:
        reg.upgrade()
    return url


class Served:
    """A running ``calibreg serve``: its process, port, and what it wrote so far."""

    def __init__(self, proc: subprocess.Popen, port: int, out: Path, err: Path) -> None:
        self.proc, self.port, self.out, self.err = proc, port, out, err
        self.base = f"http://127.0.0.1:{port}"

    def stderr(self) -> str:
        return self.err.read_text()

    def stdout(self) -> str:
        return self.out.read_text()

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match:
        """Wait until stderr matches ``pattern`` (the server writes asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m := re.search(pattern, self.stderr(), re.MULTILINE):
                return m
            time.sleep(0.05)
        pytest.fail(f"no {pattern!r} on stderr:\n{self.stderr()}")

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the process group; return the exit status."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def serve(url: str, tmp_path: Path, *extra: str) -> Iterator[Served]:
    port = free_port()
    out, err = tmp_path / f"serve{port}.out", tmp_path / f"serve{port}.err"
    cmd = [sys.executable, "-m", "calibreg_cli.main", "serve", "--db", url, "--port", str(port)]
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(
            [*cmd, *extra],
            stdout=fo,
            stderr=fe,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    served = Served(proc, port, out, err)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while "press Ctrl-C to stop" not in served.stderr():
            if proc.poll() is not None:
                pytest.fail(f"serve exited {proc.returncode}:\n{served.stderr()}")
            if time.monotonic() > deadline:
                pytest.fail(f"serve printed no start lines:\n{served.stderr()}")
            time.sleep(0.1)
        yield served
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_start_lines_say_where_what_and_which_revision(db_url_with_sample, tmp_path) -> None:
    url = make_url(db_url_with_sample)
    if url.get_backend_name() == "postgresql":  # trust auth: any password is accepted
        url = url.set(password="s3cret-pw")
    shown = url.render_as_string(hide_password=False)
    with serve(shown, tmp_path) as srv:
        lines = srv.stderr().splitlines()
        assert lines[0] == (
            f"calibreg serve: listening on http://127.0.0.1:{srv.port} (1 worker, read-only)"
        )
        assert f"schema revision {Registry.head_revision()}" in lines[1]
        assert lines[2] == f"  API docs http://127.0.0.1:{srv.port}/docs; press Ctrl-C to stop"
        # It says so because it is so: the address answers.
        assert httpx.get(f"{srv.base}/health", timeout=10).status_code == 200
    text = srv.stderr() + srv.stdout()
    if url.get_backend_name() == "postgresql":
        assert "s3cret-pw" not in text
        assert f"database {url.render_as_string(hide_password=True)}," in lines[1]
        assert f"{url.username}:***@{url.host}" in lines[1]
    else:
        assert f"database {shown}," in lines[1]


def test_one_access_line_per_request(empty_db, tmp_path) -> None:
    with serve(empty_db, tmp_path) as srv:
        plain = {"Accept-Encoding": "identity"}
        a = httpx.get(f"{srv.base}/versions?limit=1", headers=plain, timeout=10)
        b = httpx.get(f"{srv.base}/versions/424242", headers=plain, timeout=10)
        assert (a.status_code, b.status_code) == (200, 404)
        first = srv.wait_for(
            r'^(\S+Z) 127\.0\.0\.1:\d+ "GET /versions\?limit=1 HTTP/1\.1" 200 (\d+) B '
            r"(\d+\.\d) ms$"
        )
        assert int(first.group(2)) == len(a.content)
        second = srv.wait_for(r'"GET /versions/424242 HTTP/1\.1" 404 (\d+) B')
        assert int(second.group(1)) == len(b.content)
        time.sleep(0.3)
        access = [ln for ln in srv.stderr().splitlines() if '"GET ' in ln]
        assert len(access) == 2, access


def test_no_access_log_means_none(empty_db, tmp_path) -> None:
    with serve(empty_db, tmp_path, "--no-access-log") as srv:
        assert httpx.get(f"{srv.base}/health", timeout=10).status_code == 200
        time.sleep(0.3)
        assert '"GET ' not in srv.stderr()
        assert srv.interrupt() == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_cleanly(empty_db, tmp_path, workers) -> None:
    with serve(empty_db, tmp_path, "--workers", str(workers)) as srv:
        assert f"({workers} worker" in srv.stderr()
        for _ in range(3):
            assert httpx.get(f"{srv.base}/health", timeout=10).status_code == 200
        srv.wait_for(r'"GET /health HTTP/1\.1" 200')
        code = srv.interrupt()
    text = srv.stderr() + srv.stdout()
    assert code == 0, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert srv.stderr().splitlines()[-1] == "calibreg serve: stopped"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{srv.base}/health", timeout=2)
