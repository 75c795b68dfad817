"""``/lookup/batch`` (GET by day/range, POST by id list), lookup ETags and 304s, gzip, streaming.

The batch answers are checked against ``GET /lookup?exposure=`` for each exposure (the single
lookup is the ground truth). Tests that certify use a database of their own; the shared sample
is only read.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import time

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from http_sample import EXPOSURE_IDS, FILTER, INSTRUMENT, T0_UTC, TAG, Sample, build_sample, tai_ns

import calibreg.http.app as app_module
from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine
from calibreg.http.app import create_app
from calibreg.http.encoding import lookup_cache_control

BATCH = "/lookup/batch"


def assert_error(resp, status: int) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == status
    assert "Traceback" not in resp.text
    return body["error"]["message"]


def post(client: TestClient, exposures, **extra):
    return client.post(
        BATCH, json={"instrument": INSTRUMENT, "tag": TAG, "exposures": exposures, **extra}
    )


def test_post_matches_single_lookup(client: TestClient, certified: Sample) -> None:
    ids = [*EXPOSURE_IDS, 7, EXPOSURE_IDS[0]]
    resp = post(client, ids)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == lookup_cache_control()
    assert resp.headers["etag"].startswith('"g')
    body = resp.json()
    assert body["n"] == 5 and body["counts"] == {"ok": 4, "unknown_exposure": 1}
    items = body["items"]
    assert [i["exposure"] for i in items] == [*EXPOSURE_IDS, 7]  # duplicates answered once
    for item in items:
        single = client.get(
            "/lookup", params={"instrument": INSTRUMENT, "tag": TAG, "exposure": item["exposure"]}
        )
        if item["status"] == "unknown_exposure":
            assert single.status_code == 404
            assert item["version_id"] is None
            continue
        truth = single.json()
        assert item["version_id"] == truth["version_id"]
        assert item["certification_id"] == truth["certification"]["certification_id"]
        assert item["content_hash"] == truth["content_hash"]
        assert [item["exposure_begin"], item["exposure_end"]] == [
            truth["exposure_begin"],
            truth["exposure_end"],
        ]
        assert item["physical_filter"] == FILTER


def test_get_by_day_and_range(client: TestClient, certified: Sample) -> None:
    by_day = client.get(BATCH, params={"instrument": INSTRUMENT, "tag": TAG, "day_obs": 20240301})
    assert by_day.status_code == 200, by_day.text
    by_post = post(client, list(EXPOSURE_IDS))
    assert by_day.json()["items"] == by_post.json()["items"]
    rng = client.get(
        BATCH,
        params={
            "instrument": INSTRUMENT,
            "tag": TAG,
            "exposure_min": EXPOSURE_IDS[1],
            "exposure_max": EXPOSURE_IDS[2],
        },
    )
    assert [i["exposure"] for i in rng.json()["items"]] == list(EXPOSURE_IDS[1:3])
    csv = client.get(
        BATCH, params={"instrument": INSTRUMENT, "tag": TAG, "day_obs": 20240301, "format": "csv"}
    )
    assert csv.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(csv.text))
    assert list(frame["exposure"]) == list(EXPOSURE_IDS) and set(frame["status"]) == {"ok"}
    empty = client.get(BATCH, params={"instrument": INSTRUMENT, "tag": TAG, "day_obs": 19990101})
    assert empty.json()["n"] == 0
    past = client.get(
        BATCH,
        params={
            "instrument": INSTRUMENT,
            "tag": TAG,
            "day_obs": 20240301,
            "as_of": "2000-01-01T00:00:00Z",
        },
    )
    assert past.json()["counts"] == {"nothing_certified": 4}


def test_etag_304_and_head(client: TestClient, certified: Sample) -> None:
    url = f"/lookup?instrument={INSTRUMENT}&tag={TAG}&exposure={EXPOSURE_IDS[0]}"
    first = client.get(url)
    again = client.get(url)
    assert first.status_code == again.status_code == 200
    assert first.headers["etag"] == again.headers["etag"]
    assert first.content == again.content  # the cached bytes are the route's bytes
    other = client.get(f"/lookup?instrument={INSTRUMENT}&tag={TAG}&exposure={EXPOSURE_IDS[1]}")
    assert other.headers["etag"] != first.headers["etag"]
    not_modified = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == first.headers["etag"]
    assert not_modified.headers["cache-control"] == lookup_cache_control()
    assert client.get(url, headers={"If-None-Match": '"g0-nope"'}).status_code == 200
    head = client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == first.headers["etag"]
    # Errors carry no ETag and are never cached.
    missing = client.get(f"/lookup?instrument={INSTRUMENT}&tag={TAG}&exposure=1")
    assert missing.status_code == 404 and "etag" not in missing.headers
    assert missing.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not json", 422, "not JSON"),
        (b"[1, 2]", 422, "JSON object"),
        (b'{"instrument": "TestCam", "tag": "x"}', 422, "exposures"),
        (b'{"instrument": "TestCam", "tag": "x", "exposures": "1,2"}', 422, "exposures"),
        (b'{"instrument": 3, "tag": "x", "exposures": []}', 422, "instrument"),
        (b'{"instrument": "TestCam", "tag": "x", "exposures": [], "oops": 1}', 422, "oops"),
        (b'{"instrument": "TestCam", "tag": "x", "exposures": [], "as_of": 5}', 422, "as_of"),
    ],
)
def test_post_hostile_bodies(client: TestClient, body: bytes, status: int, message: str) -> None:
    resp = client.post(BATCH, content=body, headers={"content-type": "application/json"})
    assert message in assert_error(resp, status)


@pytest.mark.parametrize(
    ("exposures", "message"),
    [
        ([1, "2"], "not an integer"),
        ([1, 2.5], "not an integer"),
        ([True], "not an integer"),
        ([None], "not an integer"),
        ([2**63], "64-bit"),
        ([[1]], "not an integer"),
    ],
)
def test_post_non_integers(client: TestClient, certified: Sample, exposures, message) -> None:
    assert message in assert_error(post(client, exposures), 422)


def test_post_sizes_and_names(client: TestClient, certified: Sample) -> None:
    empty = post(client, [])
    assert empty.status_code == 200 and empty.json()["n"] == 0
    big = post(client, list(range(1, 100_001)))
    assert big.status_code == 200, big.text[:300]
    assert big.json()["counts"] == {"unknown_exposure": 100_000}
    assert "100,000" in assert_error(post(client, list(range(1, 100_002))), 422)
    huge = client.post(BATCH, content=b"[" + b"1," * (5 * 2**20) + b"1]")
    assert "MiB" in assert_error(huge, 413)
    assert "unknown instrument" in assert_error(
        client.post(BATCH, json={"instrument": "NoCam", "tag": TAG, "exposures": [1]}), 404
    )
    assert "no tag" in assert_error(
        client.post(BATCH, json={"instrument": INSTRUMENT, "tag": "nope", "exposures": [1]}), 404
    )


def test_get_hostile_parameters(client: TestClient, certified: Sample) -> None:
    base = {"instrument": INSTRUMENT, "tag": TAG}
    assert_error(client.get(BATCH, params=base), 422)
    assert_error(client.get(BATCH, params={**base, "day_obs": "today"}), 422)
    assert_error(client.get(BATCH, params={**base, "exposure_min": 1}), 422)
    assert_error(
        client.get(BATCH, params={**base, "day_obs": 1, "exposure_min": 1, "exposure_max": 2}),
        422,
    )
    assert_error(client.get(BATCH, params={**base, "day_obs": 20240301, "bogus": 1}), 422)
    assert_error(client.get(BATCH, params={**base, "exposure_min": 9, "exposure_max": 1}), 422)
    assert_error(client.get(BATCH, params={"instrument": "NoCam", "tag": TAG, "day_obs": 1}), 404)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_batch_allows_only_reads_and_the_query_post(client: TestClient, method: str) -> None:
    resp = client.request(method, BATCH, json={})
    assert_error(resp, 405)
    assert resp.headers["allow"] == "GET, HEAD, POST"
    assert client.post("/lookup", json={}).status_code == 405  # other paths stay GET-only


# --------------------------------------------------------------------------- invalidation


@pytest.fixture
def own(db_url: str) -> tuple[str, Sample]:
    """A database of this test's own (it certifies), with the sample certified."""
    engine = make_engine(db_url)
    upgrade(engine)
    with Registry(db_url, engine=engine) as reg:
        sample = build_sample(reg, certify=True)
    engine.dispose()
    return db_url, sample


def test_a_certification_elsewhere_changes_etag_and_answer(own) -> None:
    url, sample = own
    with Registry(url) as served, Registry(url) as writer:
        client = TestClient(create_app(served))
        lookup = f"/lookup?instrument={INSTRUMENT}&tag={TAG}&exposure={EXPOSURE_IDS[0]}"
        before = client.get(lookup)
        batch_before = post(client, list(EXPOSURE_IDS))
        assert before.json()["version_id"] == sample.detector_versions[-1]
        assert (
            client.get(lookup, headers={"If-None-Match": before.headers["etag"]}).status_code == 304
        )
        writer.decertify(TAG, INSTRUMENT, FILTER, tai_ns(T0_UTC))
        writer.certify(sample.detector_versions[0], TAG, tai_ns(T0_UTC), force=True)
        # PostgreSQL: the new generation arrives by NOTIFY, milliseconds after the commit.
        deadline = time.monotonic() + 5
        while True:
            after = client.get(lookup, headers={"If-None-Match": before.headers["etag"]})
            if after.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert after.status_code == 200
        assert after.headers["etag"] != before.headers["etag"]
        assert after.json()["version_id"] == sample.detector_versions[0]
        batch_after = post(client, list(EXPOSURE_IDS))
        assert batch_after.headers["etag"] != batch_before.headers["etag"]
        assert {i["version_id"] for i in batch_after.json()["items"]} == {
            sample.detector_versions[0]
        }
        # as_of before the change still answers the old version (reproducible reads).
        when = dt.datetime.now(dt.UTC).isoformat()
        writer.decertify(TAG, INSTRUMENT, FILTER, tai_ns(T0_UTC))
        deadline = time.monotonic() + 5
        while client.get(lookup).status_code != 404 and time.monotonic() < deadline:
            time.sleep(0.01)
        old = client.get(
            "/lookup",
            params={
                "instrument": INSTRUMENT,
                "tag": TAG,
                "exposure": EXPOSURE_IDS[0],
                "as_of": when,
            },
        )
        assert old.status_code == 200, old.text
        assert old.json()["version_id"] == sample.detector_versions[0]
        assert client.get(lookup).status_code == 404  # nothing certified now


# --------------------------------------------------------------------------- big bodies


def test_gzip_when_accepted(client: TestClient, sample: Sample) -> None:
    url = f"/versions/{sample.amp_version}/scales?format=csv"
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    zipped = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    if len(plain.content) >= app_module.GZIP_MINIMUM:
        assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # httpx decodes; same bytes underneath
    assert zipped.headers["etag"] == plain.headers["etag"]
    raw = client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"


def test_big_bodies_are_streamed(
    client: TestClient, registry: Registry, sample: Sample, monkeypatch: pytest.MonkeyPatch
) -> None:
    vid = sample.amp_version
    buffered = {
        "cp_pipe": client.get(f"/versions/{vid}/cp_pipe"),
        "csv": client.get(f"/versions/{vid}/scales?format=csv"),
        "parquet": client.get(f"/versions/{vid}/scales?format=parquet"),
    }
    monkeypatch.setattr(app_module, "STREAM_THRESHOLD", 0)
    content_hash = registry.version(vid)["content_hash"]
    for kind, old in buffered.items():
        url = f"/versions/{vid}/cp_pipe" if kind == "cp_pipe" else f"/versions/{vid}/scales"
        params = {} if kind == "cp_pipe" else {"format": kind}
        with client.stream("GET", url, params=params, headers={"Accept-Encoding": "gzip"}) as r:
            assert r.status_code == 200
            assert "content-length" not in r.headers  # streamed, not built
            raw = b"".join(r.iter_raw())
            etag = r.headers["etag"]
        body = gzip.decompress(raw) if r.headers.get("content-encoding") == "gzip" else raw
        assert content_hash in etag
        if kind == "parquet":
            pd.testing.assert_frame_equal(
                pd.read_parquet(io.BytesIO(body)), pd.read_parquet(io.BytesIO(old.content))
            )
        elif kind == "cp_pipe":
            assert json.loads(body) == old.json()
        else:
            assert body == old.content
        again = client.get(url, params=params, headers={"If-None-Match": etag})
        assert again.status_code == 304


def test_cached_answer_keeps_its_own_headers_across_encodings(
    client: TestClient, certified: Sample
) -> None:
    # gzip edits response headers in place: a cached answer first sent compressed must still
    # go out uncompressed, with its own Content-Length, to a client that does not accept gzip.
    ids = [*EXPOSURE_IDS, *range(1, 200)]
    zipped = client.post(
        BATCH,
        json={"instrument": INSTRUMENT, "tag": TAG, "exposures": ids},
        headers={"Accept-Encoding": "gzip"},
    )
    assert zipped.headers["content-encoding"] == "gzip"
    for _ in range(2):
        plain = client.post(
            BATCH,
            json={"instrument": INSTRUMENT, "tag": TAG, "exposures": ids},
            headers={"Accept-Encoding": "identity"},
        )
        assert "content-encoding" not in plain.headers
        assert int(plain.headers["content-length"]) == len(plain.content)
        assert plain.json() == zipped.json()
