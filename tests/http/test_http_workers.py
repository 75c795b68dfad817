"""``calibreg serve --workers 2`` against PostgreSQL: both workers see a certification made
through another Registry (their ETags and answers change), and connections reach both.

Which worker holds a connection is read from ``/proc`` (the socket inode of the server side of
each connection, found among the workers' file descriptors), so the test proves that both
workers answered rather than hoping so.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_sample import EXPOSURE_IDS, FILTER, INSTRUMENT, T0_UTC, TAG, Sample, build_sample, tai_ns
from test_http_server import free_port, stop, wait_for_health

from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine

pytestmark = pytest.mark.postgres
N_CONNECTIONS = 12


@pytest.fixture
def pg_sample(postgres_base_url: str) -> Iterator[tuple[str, Sample]]:
    from tests.conftest import _postgres_schema_url

    urls = _postgres_schema_url(postgres_base_url)
    url = next(urls)
    try:
        engine = make_engine(url)
        upgrade(engine)
        with Registry(url, engine=engine) as reg:
            sample = build_sample(reg, certify=True)
        engine.dispose()
        yield url, sample
    finally:
        for _ in urls:
            pass


@pytest.fixture
def two_workers(pg_sample, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    url, _sample = pg_sample
    port = free_port()
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "calibreg_cli.main", "serve", "--workers", "2"]
    cmd += ["--db", url, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_health(f"http://127.0.0.1:{port}", proc, log)
        deadline = time.monotonic() + 30  # /health answers once one worker listens
        while listeners(port) < 2:
            assert time.monotonic() < deadline, log.read_text()
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        yield port, proc
    finally:
        stop(proc)
    assert proc.returncode == 0, log.read_text()


def listeners(port: int) -> int:
    """How many sockets listen on ``port`` (one per worker with SO_REUSEPORT)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # LISTEN
            count += 1
    return count


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _worker_of(client_port: int, server_port: int, pids: list[int]) -> int | None:
    """The pid holding the server side of the connection from ``client_port``."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def _get(conn: http.client.HTTPConnection, path: str, headers: dict | None = None):
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


def test_both_workers_see_a_certification_made_elsewhere(pg_sample, two_workers) -> None:
    url, sample = pg_sample
    port, proc = two_workers
    path = f"/lookup?instrument={INSTRUMENT}&tag={TAG}&exposure={EXPOSURE_IDS[0]}"
    conns = [
        http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(N_CONNECTIONS)
    ]
    try:
        before = []
        for conn in conns:
            status, headers, body = _get(conn, path)
            assert status == 200, body
            assert json.loads(body)["version_id"] == sample.detector_versions[-1]
            before.append(headers["etag"])
        assert len(set(before)) == 1  # the ETag is the same on every worker
        pids = _children(proc.pid)
        workers = {_worker_of(c.sock.getsockname()[1], port, pids) for c in conns}
        assert len(workers - {None}) == 2, (workers, pids)  # both workers hold connections

        with Registry(url) as writer:  # another Registry, another process's view
            writer.decertify(TAG, INSTRUMENT, FILTER, tai_ns(T0_UTC))
            writer.certify(sample.detector_versions[0], TAG, tai_ns(T0_UTC), force=True)

        for conn in conns:  # the same connections, so the same workers
            # Each worker learns the new generation by NOTIFY, milliseconds after the commit.
            # The decertify and the certify are two commits, so a worker may first answer
            # from the generation between them (nothing certified): wait for the last one.
            deadline = time.monotonic() + 5
            while True:
                status, headers, body = _get(conn, path, {"If-None-Match": before[0]})
                settled = status == 200 and (
                    json.loads(body).get("version_id") == sample.detector_versions[0]
                )
                if settled or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            assert status == 200, body  # not 304: the generation moved on
            assert headers["etag"] != before[0]
            assert json.loads(body)["version_id"] == sample.detector_versions[0]
            # A worker that still knew the decertify's generation when it read the certified
            # answer labels it with that generation (the ETag is the generation read *before*
            # the route ran), so the certify's NOTIFY may arrive after and move the ETag once
            # more, with the same answer. Once the worker has caught up, the ETag holds: 304.
            etag = headers["etag"]
            while True:
                again = _get(conn, path, {"If-None-Match": etag})
                if again[0] != 200 or time.monotonic() > deadline:
                    break
                assert json.loads(again[2])["version_id"] == sample.detector_versions[0]
                etag = again[1]["etag"]
                time.sleep(0.01)
            assert again[0] == 304
    finally:
        for conn in conns:
            conn.close()
