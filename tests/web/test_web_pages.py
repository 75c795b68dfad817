"""The web pages in process: status, caching, escaping, privacy and the numbers they show."""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from web_sample import FILTER, INSTRUMENT, TAG, XSS_TAG, WebSample

from calibreg.client import Registry
from calibreg.formats.timescale import format_instant
from calibreg.http.app import create_app


@pytest.fixture(scope="module")
def client(web_registry: Registry) -> Iterator[TestClient]:
    with TestClient(create_app(web_registry)) as test_client:
        yield test_client


def page_urls(sample: WebSample) -> list[str]:
    """One URL of every page (and of the lookup answer)."""
    return [
        "/ui/",
        f"/ui/?instrument={INSTRUMENT}&tag={urllib.parse.quote(TAG)}&exposure={sample.exposure_ids[3]}",
        f"/ui/versions/{sample.amp_version}",
        f"/ui/versions/{sample.detector_version}",
        f"/ui/compare/{sample.amp_version}/{sample.amp_subset_version}",
        f"/ui/tags/{urllib.parse.quote(TAG)}",
        f"/ui/tags/{urllib.parse.quote(XSS_TAG, safe='')}",
        "/ui/history",
        f"/ui/history?instrument={INSTRUMENT}&filter={FILTER}&detector=R22_S11&amp=C10",
    ]


def test_every_page_is_html_and_private(client: TestClient, web_db, web_sample) -> None:
    url, _ = web_db
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    secrets = [url, parsed.render_as_string(hide_password=True)]
    if parsed.password:
        secrets.append(str(parsed.password))
    if parsed.get_backend_name() == "sqlite":
        secrets.append(str(parsed.database))  # the file's path
    else:
        secrets.append(parsed.query["options"].split("=", 1)[1])  # the schema
        secrets.append(f"{parsed.host}:{parsed.port}")
    for path in page_urls(web_sample):
        resp = client.get(path)
        assert resp.status_code == 200, (path, resp.text[:300])
        assert resp.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in resp.headers["content-security-policy"]
        for secret in secrets:
            assert secret not in resp.text, (path, secret)
        # every asset comes from this server: no CDN, no other host
        assert not re.search(r'(src|href)="(https?:)?//', resp.text), path


def test_assets_come_from_the_package(client: TestClient) -> None:
    for name, kind in (("calibreg.css", "text/css"), ("calibreg.js", "text/javascript")):
        resp = client.get(f"/ui/static/{name}")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(kind)
        again = client.get(f"/ui/static/{name}", headers={"If-None-Match": resp.headers["etag"]})
        assert again.status_code == 304
    assert client.get("/ui/static/../app.py").status_code == 404
    assert client.get("/ui/static/nope.js").status_code == 404


def test_version_pages_revalidate_with_a_strong_etag(client: TestClient, web_sample) -> None:
    for path in (
        f"/ui/versions/{web_sample.amp_version}",
        f"/ui/compare/{web_sample.amp_version}/{web_sample.amp_subset_version}",
    ):
        first = client.get(path)
        etag = first.headers["etag"]
        assert re.fullmatch(r'"[0-9a-f]{64}"', etag)
        assert first.headers["cache-control"] == "no-cache"
        assert client.get(path).headers["etag"] == etag  # same body, same tag
        again = client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
        assert client.head(path).status_code == 200


def test_read_only(client: TestClient, web_sample) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        resp = client.request(method, f"/ui/versions/{web_sample.amp_version}")
        assert resp.status_code == 405


def test_injected_tag_name_is_text(client: TestClient) -> None:
    for path in ("/ui/", f"/ui/tags/{urllib.parse.quote(XSS_TAG, safe='')}"):
        body = client.get(path).text
        assert XSS_TAG not in body
        assert html.escape(XSS_TAG, quote=False) in body or html.escape(XSS_TAG) in body


def test_unknown_things_are_one_line_404s(client: TestClient) -> None:
    for path, status in (
        ("/ui/versions/999999", 404),
        ("/ui/compare/1/999999", 404),
        ("/ui/tags/no-such-tag", 404),
        ("/ui/versions/0", 422),
        ("/ui/versions/abc", 422),
        ("/ui/versions/99999999999999999999", 422),
        ("/ui/compare/x/1", 422),
    ):
        resp = client.get(path)
        assert resp.status_code == status, path
        assert resp.headers["content-type"].startswith("text/html")
        assert "Traceback" not in resp.text
        assert re.search(r'<p class="problem">[^<\n]+</p>', resp.text)


def test_lookup_form_answers_what_the_registry_does(
    client: TestClient, web_registry: Registry, web_sample
) -> None:
    for exposure, expected in (
        (web_sample.exposure_ids[2], web_sample.amp_version),
        (web_sample.exposure_ids[9], web_sample.amp_subset_version),
    ):
        truth = web_registry.lookup(INSTRUMENT, None, TAG, exposure=exposure)
        assert truth["version_id"] == expected
        resp = client.get(
            "/ui/", params={"instrument": INSTRUMENT, "tag": TAG, "exposure": exposure}
        )
        found = re.search(r'id="answer-version" href="/ui/versions/(\d+)">(\d+)<', resp.text)
        assert found and int(found.group(1)) == int(found.group(2)) == expected
        cert = re.search(r'id="answer-certification">(\d+)<', resp.text)
        assert int(cert.group(1)) == truth["certification"]["certification_id"]
        # the --explain reasoning: every certification of the tag, the matching one marked
        assert resp.text.count('<tr class="matched">') == 1
        n_considered = len(web_registry.certifications(TAG, include_closed=True))
        assert resp.text.count('<tr class="unmatched">') == n_considered - 1


def test_lookup_form_problems_are_one_line(client: TestClient) -> None:
    for params, words in (
        ({"instrument": INSTRUMENT, "tag": TAG, "exposure": "abc"}, "integer"),
        ({"instrument": INSTRUMENT, "tag": TAG}, "exactly one of time or exposure"),
        (
            {
                "instrument": INSTRUMENT,
                "tag": TAG,
                "filter": FILTER,
                "time": "1999-01-01T00:00:00Z",
            },
            "",
        ),
        ({"instrument": INSTRUMENT, "tag": TAG, "filter": FILTER, "time": "yesterday"}, "time"),
    ):
        resp = client.get("/ui/", params=params)
        assert resp.status_code == 200
        problem = re.search(r'<p class="problem" id="lookup-problem">([^<]*)</p>', resp.text)
        assert problem and words in problem.group(1), (params, resp.text[-2000:])


def test_version_page_shows_the_record(
    client: TestClient, web_registry: Registry, web_sample
) -> None:
    v = web_registry.version(web_sample.amp_version)
    body = client.get(f"/ui/versions/{web_sample.amp_version}").text
    assert v["content_hash"] in body
    assert f"{v['chi2']:.5g}" in body and f"{v['rms']:.4g}" in body
    # the dead amplifier is in the flagged-rows table with its flag
    det, amp = web_sample.dead
    row = re.search(r'<table class="flags" id="flagged-rows">(.*?)</table>', body, re.S).group(1)
    name = web_registry.detectors(INSTRUMENT).set_index("id").loc[det, "name"]
    assert f"{name} (id {det})" in row and f"<td>{amp}</td>" in row and "no_data" in row
    # every download link answers
    for link in set(re.findall(r'href="(/versions/[^"]+)"', body)):
        assert client.get(html.unescape(link)).status_code == 200, link


def test_tag_page_lists_the_certifications(client: TestClient, web_registry: Registry) -> None:
    body = client.get(f"/ui/tags/{urllib.parse.quote(TAG)}").text
    certs = web_registry.certifications(TAG, include_closed=True)
    bars = re.findall(r'<g class="bar (active|decertified)" data-version="(\d+)"', body)
    assert sorted(bars) == sorted(
        ("decertified" if c["decertified_at"] else "active", str(c["version_id"])) for c in certs
    )
    for c in certs:
        if c["valid_begin"] is not None:
            assert format_instant(c["valid_begin"]).replace(".000000000Z", "Z") in body
    # as of before anything was certified: no bar
    early = client.get(f"/ui/tags/{urllib.parse.quote(TAG)}", params={"as_of": "2001-01-01"}).text
    assert '<g class="bar' not in early
    bad = client.get(f"/ui/tags/{urllib.parse.quote(TAG)}", params={"as_of": "soon"}).text
    assert '<p class="problem">' in bad


def test_history_page_values(client: TestClient, web_registry: Registry) -> None:
    params = {"instrument": INSTRUMENT, "filter": FILTER, "detector": "R22_S11", "amp": "C10"}
    body = client.get("/ui/history", params=params).text
    truth = web_registry.history(
        instrument=INSTRUMENT, physical_filter=FILTER, detector="R22_S11", amp="C10"
    )
    assert len(truth) == 2
    table = re.search(r'<table id="history-table">(.*?)</table>', body, re.S).group(1)
    for version, scale in zip(truth["version"], truth["scale"], strict=True):
        assert f'href="/ui/versions/{version}"' in table
        assert f"{scale:.7g}" in table


def test_versions_that_cannot_be_compared_say_why(client: TestClient, web_sample) -> None:
    resp = client.get(f"/ui/compare/{web_sample.detector_version}/{web_sample.amp_version}")
    assert resp.status_code == 200
    assert re.search(r'<p class="problem">levels differ[^<]*</p>', resp.text)
    assert 'id="fp-map"' not in resp.text
