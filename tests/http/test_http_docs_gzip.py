"""Offline ``/docs`` and ``/redoc``, and gzip of large JSON bodies (issue 10, item 5).

The documentation pages must work on a network without internet: every asset they load is
served by the app itself, and the HTML names no outside URL. Large JSON answers are gzipped
when (and only when) the client accepts it; the compressed body is smaller and decompresses
to exactly the plain body.
"""

from __future__ import annotations

import gzip
import json
import re

import pytest
from fastapi.testclient import TestClient

from calibreg.http.docs import ASSETS, FILES

URL_ATTR = re.compile(r'(?:src|href)="([^"]*)"')


@pytest.mark.parametrize(
    ("page", "needs"),
    [
        ("/docs", {FILES["swagger_js"], FILES["swagger_css"], FILES["favicon"]}),
        ("/redoc", {FILES["redoc_js"], FILES["favicon"]}),
    ],
)
def test_docs_pages_load_only_their_own_assets(client: TestClient, page, needs) -> None:
    resp = client.get(page)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert "http://" not in html and "https://" not in html  # no CDN, no font service
    assert "fonts.googleapis" not in html and "cdn.jsdelivr" not in html
    assert '"validatorUrl": null' in html or page == "/redoc"
    loaded = URL_ATTR.findall(html)
    assert {u.rsplit("/", 1)[-1] for u in loaded} == needs
    for url in loaded:
        assert url.startswith(f"{ASSETS}/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        if url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"]
            assert len(asset.content) > 100_000  # the real bundle, not a stub
        elif url.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css")
        else:
            assert asset.content.startswith(b"\x89PNG")
    spec = re.search(r"""(?:url: '|spec-url=")(/[^'"]+)""", html).group(1)
    assert spec == "/openapi.json"
    assert client.get(spec).json()["info"]["title"] == "calibreg"


def test_docs_are_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]


def _raw(client: TestClient, url: str, encoding: str) -> tuple[dict, bytes]:
    """Headers and the bytes on the wire (not decoded by the client)."""
    with client.stream("GET", url, headers={"Accept-Encoding": encoding}) as resp:
        assert resp.status_code == 200, url
        return dict(resp.headers), b"".join(resp.iter_raw())


@pytest.fixture(scope="module")
def big(tmp_path_factory, lsstcam_spec):
    """A client over LSSTCam with an AMP version of 10 simulated flats (cp_pipe ~1 MB)."""
    from calibreg.client import Registry
    from calibreg.http.app import create_app
    from calibreg.services.simulate import simulate_flats
    from calibreg.services.solve import SolveRequest, solve_quantum

    url = f"sqlite:///{tmp_path_factory.mktemp('gzip') / 'reg.sqlite3'}"
    reg = Registry(url, check_schema=False)
    reg.upgrade()
    reg.ingest_camera(lsstcam_spec, source="camera", sha256="camera", instrument="LSSTCam")
    sim = simulate_flats(lsstcam_spec, n_exposures=10, seed=3, n_missing_frames=0)
    reg.ingest_exposures(sim.exposures, source="exposures", sha256="exposures")
    reg.ingest_stats(sim.stats, source="stats", sha256="stats", instrument="LSSTCam")
    version = solve_quantum(reg, SolveRequest("LSSTCam", "r_57", level="AMP"))["version_id"]
    with TestClient(create_app(reg)) as test_client:
        yield test_client, int(version)
    reg.close()


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("path", ["/versions/{v}/cp_pipe", "/versions/{v}/scales"])
def test_large_json_is_gzipped_when_accepted(big, monkeypatch, path, streamed) -> None:
    client, version = big
    if streamed:  # the bodies past STREAM_THRESHOLD values, sent in chunks
        monkeypatch.setattr("calibreg.http.app.STREAM_THRESHOLD", 1000)
    url = path.format(v=version)
    plain_headers, plain = _raw(client, url, "identity")
    assert "content-encoding" not in plain_headers
    assert plain_headers.get("content-type", "").startswith("application/json")
    assert len(plain) > 500_000
    # cp_pipe JSON streams past the threshold; JSON scales are always built whole.
    assert ("content-length" not in plain_headers) == (streamed and "cp_pipe" in path)
    headers, wire = _raw(client, url, "gzip, deflate")
    assert headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in headers.get("vary", "")
    assert len(wire) < 0.7 * len(plain)
    assert gzip.decompress(wire) == plain
    assert json.loads(gzip.decompress(wire)) == json.loads(plain)


def test_small_answers_stay_plain(client: TestClient) -> None:
    headers, wire = _raw(client, "/health", "gzip")
    assert "content-encoding" not in headers
    assert json.loads(wire)["status"] == "ok"
