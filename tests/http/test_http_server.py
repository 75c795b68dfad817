"""End to end: a real ``calibreg serve`` process on loopback, driven with httpx.

The in-process tests cover the app's logic; this suite proves the shipped entry point works as
deployed: the CLI wiring, uvicorn's HTTP handling (HEAD, keep-alive, Content-Length), and a
registry opened from a URL in another process. The server is always terminated by the fixture.
"""

from __future__ import annotations

import hashlib
import io
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from http_sample import FILTER, INSTRUMENT, TAG, Sample

import calibreg
from calibreg.client import Registry
from calibreg.http.encoding import IMMUTABLE, NO_CACHE, lookup_cache_control

STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_health(base: str, proc: subprocess.Popen, log: Path) -> None:
    """Poll /health until the server answers; fail with its log if it dies or hangs."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"calibreg serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"calibreg serve did not answer within {STARTUP_TIMEOUT} s:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    """Terminate the server (SIGTERM: uvicorn shuts down cleanly), killing it if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def server(db_url_with_sample: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running ``calibreg serve`` over the sample database."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    cmd = [
        sys.executable,
        "-m",
        "calibreg_cli.main",
        "serve",
        "--db",
        db_url_with_sample,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base, proc, log)
        yield base
    finally:
        stop(proc)


@pytest.fixture
def http(server: str) -> Iterator[httpx.Client]:
    """A keep-alive client of the real server."""
    with httpx.Client(base_url=server, timeout=10.0) as client:
        yield client


def test_health(http: httpx.Client) -> None:
    resp = http.get("/health")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"
    assert resp.json()["version"] == calibreg.__version__
    assert resp.headers["cache-control"] == NO_CACHE


def test_listings(http: httpx.Client, sample: Sample) -> None:
    assert [i["instrument"] for i in http.get("/instruments").json()["items"]] == [INSTRUMENT]
    page = http.get("/versions", params={"limit": 2}).json()
    assert [v["id"] for v in page["items"]] == list(sample.all_versions[:2])
    assert page["has_more"] is True
    resp = http.get(
        "/history", params={"instrument": INSTRUMENT, "filter": FILTER, "detector": "R00_S00"}
    )
    assert [i["version"] for i in resp.json()["items"]] == list(sample.detector_versions)
    assert resp.headers["cache-control"] == NO_CACHE


def test_version_etag_and_304(http: httpx.Client, sample: Sample) -> None:
    resp = http.get(f"/versions/{sample.amp_version}")
    assert resp.status_code == 200, resp.text
    etag = resp.headers["etag"]
    assert etag == f'"{hashlib.sha256(resp.content).hexdigest()}"'
    assert resp.headers["cache-control"] == IMMUTABLE
    again = http.get(f"/versions/{sample.amp_version}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag


def test_scales_representations(http: httpx.Client, registry: Registry, sample: Sample) -> None:
    url = f"/versions/{sample.amp_version}/scales"
    stored = registry.scales(sample.amp_version)
    as_json = http.get(url).json()["items"]
    as_csv = pd.read_csv(io.StringIO(http.get(url, headers={"Accept": "text/csv"}).text))
    parquet = http.get(url, headers={"Accept": "application/vnd.apache.parquet"})
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    as_parquet = pd.read_parquet(io.BytesIO(parquet.content))
    for got in (
        [r["scale"] for r in as_json],
        as_csv["scale"].tolist(),
        as_parquet["scale"].tolist(),
    ):
        assert got == stored["scale"].tolist()
    resp = http.get(
        url,
        headers={
            "Accept": "text/csv",
            "If-None-Match": http.get(url, headers={"Accept": "text/csv"}).headers["etag"],
        },
    )
    assert resp.status_code == 304


@pytest.mark.skipif(not hasattr(Registry, "cp_pipe"), reason="Registry.cp_pipe not available")
def test_cp_pipe(http: httpx.Client, sample: Sample) -> None:
    resp = http.get(f"/versions/{sample.detector_versions[0]}/cp_pipe")
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"expScale", "detScale"}
    assert resp.headers["cache-control"] == IMMUTABLE


def test_lookup(http: httpx.Client, certified: Sample) -> None:
    resp = http.get(
        "/lookup",
        params={
            "instrument": INSTRUMENT,
            "filter": FILTER,
            "tag": TAG,
            "time": "2024-03-01T18:00:00Z",
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["version_id"] == certified.detector_versions[-1]
    assert resp.headers["cache-control"] == lookup_cache_control()


def test_errors(http: httpx.Client) -> None:
    resp = http.get("/versions/987654")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == 404
    resp = http.get("/versions", params={"limit": 5000})
    assert resp.status_code == 422
    assert resp.json()["error"]["details"]
    resp = http.get("/lookup", params={"instrument": INSTRUMENT, "tag": TAG, "time": "never"})
    assert resp.status_code == 422


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_writes_refused(http: httpx.Client, method: str) -> None:
    resp = http.request(method, "/versions", json={"id": 1})
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, HEAD"
    assert resp.json()["error"]["code"] == 405


def test_head(http: httpx.Client, sample: Sample) -> None:
    url = f"/versions/{sample.detector_versions[0]}/scales"
    got = http.get(url)
    head = http.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-length"] == got.headers["content-length"]


def test_openapi(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    assert doc["info"]["title"] == "calibreg"
    assert "/lookup" in doc["paths"]
