"""In-process tests of the read-only API (TestClient), on SQLite and PostgreSQL.

Each endpoint is checked for its content, its cache semantics (strong ETag + immutable for
versions, no-cache for the rest) and its error paths, all of which share one JSON error shape.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from http_sample import AMPS, DEAD_AMP, FILTER, INSTRUMENT, T0_UTC, TAG, Sample

import calibreg
from calibreg.client import Registry
from calibreg.http.app import create_app
from calibreg.http.encoding import (
    IMMUTABLE,
    NO_CACHE,
    etag_matches,
    lookup_cache_control,
    negotiate,
)

PARQUET = "application/vnd.apache.parquet"


def assert_error(resp, code: int) -> dict:
    """The response is an error of ``code`` in the one JSON error shape; returns its body."""
    assert resp.status_code == code, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return body["error"]


def assert_immutable(resp, body: bytes | None = None) -> str:
    """Strong ETag = quoted sha256 of the body, cacheable forever; returns the ETag."""
    assert resp.status_code == 200, resp.text
    etag = resp.headers["etag"]
    assert not etag.startswith("W/")
    content = resp.content if body is None else body
    assert etag == f'"{hashlib.sha256(content).hexdigest()}"'
    assert resp.headers["cache-control"] == IMMUTABLE
    return etag


def no_nan(text: str) -> bool:
    """Valid JSON for every client: no bare NaN/Infinity tokens."""
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    return True


# --------------------------------------------------------------------------- service


def test_health(client: TestClient) -> None:
    from calibreg.db.migrate import head_revision

    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == NO_CACHE
    body = resp.json()
    assert body["status"] == "ok"
    assert body["schema_revision"] == head_revision()
    assert body["version"] == calibreg.__version__


def test_instruments(client: TestClient) -> None:
    resp = client.get("/instruments")
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == NO_CACHE
    (item,) = resp.json()["items"]
    assert item == {
        "instrument": INSTRUMENT,
        "detectors": len(AMPS),
        "amplifiers": sum(len(a) for a in AMPS.values()),
        "exposures": 4,
    }


def test_openapi_documents_every_endpoint_read_only(client: TestClient) -> None:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["info"]["title"] == "calibreg"
    assert doc["info"]["version"] == calibreg.__version__
    assert doc["info"]["description"]
    expected = {
        "/health",
        "/instruments",
        "/versions",
        "/versions/{version_id}",
        "/versions/{version_id}/scales",
        "/versions/{version_id}/cp_pipe",
        "/lookup",
        "/history",
    }
    assert expected <= set(doc["paths"])
    for path, ops in doc["paths"].items():
        # The one POST is a read-only query whose id list travels in the body.
        assert set(ops) == ({"get", "post"} if path == "/lookup/batch" else {"get"}), path
        for op in ops.values():
            assert op["summary"], path
            assert op["description"], path


# --------------------------------------------------------------------------- versions


def test_versions_list(client: TestClient, sample: Sample) -> None:
    resp = client.get("/versions")
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == NO_CACHE
    body = resp.json()
    assert [v["id"] for v in body["items"]] == list(sample.all_versions)
    assert body["limit"] == 100
    assert body["offset"] == 0
    assert body["has_more"] is False
    assert body["next_offset"] is None
    first = body["items"][0]
    assert first["instrument"] == INSTRUMENT
    assert first["physical_filter"] == FILTER
    assert dt.datetime.fromisoformat(first["created_at"]).tzinfo is not None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("level=AMP", "amp"),
        ("level=amp", "amp"),
        ("level=DETECTOR", "detector"),
        (f"instrument={INSTRUMENT}&filter={FILTER}", "all"),
        (f"filter={FILTER}x", "none"),
    ],
)
def test_versions_filters(client: TestClient, sample: Sample, query: str, expected: str) -> None:
    wanted = {
        "amp": [sample.amp_version],
        "detector": list(sample.detector_versions),
        "all": list(sample.all_versions),
        "none": [],
    }[expected]
    resp = client.get(f"/versions?{query}")
    assert resp.status_code == 200, resp.text
    assert [v["id"] for v in resp.json()["items"]] == wanted


def test_versions_pagination(client: TestClient, sample: Sample) -> None:
    ids = list(sample.all_versions)
    page1 = client.get("/versions?limit=2").json()
    assert [v["id"] for v in page1["items"]] == ids[:2]
    assert page1["has_more"] is True
    assert page1["next_offset"] == 2
    page2 = client.get(f"/versions?limit=2&offset={page1['next_offset']}").json()
    assert [v["id"] for v in page2["items"]] == ids[2:]
    assert page2["has_more"] is False
    assert page2["next_offset"] is None
    assert client.get("/versions?offset=50").json()["items"] == []


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "offset=-1", "limit=abc", "level=PIXEL"]
)
def test_versions_bad_parameters(client: TestClient, query: str) -> None:
    error = assert_error(client.get(f"/versions?{query}"), 422)
    assert error["details"], "FastAPI's validation details are kept"
    assert error["details"][0]["loc"][0] == "query"


def test_versions_unknown_instrument(client: TestClient) -> None:
    error = assert_error(client.get("/versions?instrument=NoCam"), 404)
    assert "NoCam" in error["message"]


def test_version_record(client: TestClient, registry: Registry, sample: Sample) -> None:
    vid = sample.amp_version
    resp = client.get(f"/versions/{vid}")
    assert_immutable(resp)
    assert no_nan(resp.text)
    body = resp.json()
    stored = registry.version(vid)
    assert body["id"] == vid
    assert body["level"] == "AMP"
    assert body["instrument"] == INSTRUMENT
    assert body["content_hash"] == stored["content_hash"]
    assert dt.datetime.fromisoformat(body["created_at"]) == stored["created_at"]
    assert body["provenance"]["quantum"]["level"] == "AMP"
    # Two reads of an immutable resource are byte-identical (the ETag is stable).
    assert client.get(f"/versions/{vid}").content == resp.content


def test_version_conditional_requests(client: TestClient, sample: Sample) -> None:
    url = f"/versions/{sample.detector_versions[0]}"
    etag = assert_immutable(client.get(url))
    for header in (etag, "*", f'"nope", {etag}', f"W/{etag}"):
        resp = client.get(url, headers={"If-None-Match": header})
        assert resp.status_code == 304, header
        assert resp.content == b""
        assert resp.headers["etag"] == etag
        assert resp.headers["cache-control"] == IMMUTABLE
    assert client.get(url, headers={"If-None-Match": '"nope"'}).status_code == 200
    # Another version's ETag does not match this one.
    other = client.get(f"/versions/{sample.amp_version}").headers["etag"]
    assert other != etag
    assert client.get(url, headers={"If-None-Match": other}).status_code == 200


def test_version_errors(client: TestClient) -> None:
    error = assert_error(client.get("/versions/999999"), 404)
    assert "999999" in error["message"]
    assert client.get("/versions/999999").headers["cache-control"] == NO_CACHE
    for bad in ("abc", "0", "-3", "1.5", str(2**63)):
        assert_error(client.get(f"/versions/{bad}"), 422)


# --------------------------------------------------------------------------- scales


def test_scales_json(client: TestClient, registry: Registry, sample: Sample) -> None:
    vid = sample.amp_version
    resp = client.get(f"/versions/{vid}/scales")
    assert_immutable(resp)
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["vary"].split(", ")[0] == "Accept"  # then Accept-Encoding (gzip)
    assert no_nan(resp.text)
    body = resp.json()
    assert body["version"] == vid
    assert body["kind"] == "row"
    rows = body["items"]
    stored = registry.scales(vid)
    assert len(rows) == len(stored) == sum(len(a) for a in AMPS.values())
    assert [r["scale"] for r in rows] == stored["scale"].tolist()
    dead = next(r for r in rows if (r["detector"], r["amp"]) == DEAD_AMP)
    assert dead["flagged"] is True
    assert dead["rms"] is None  # NaN → null


def test_scales_exposure_kind(client: TestClient, registry: Registry, sample: Sample) -> None:
    vid = sample.detector_versions[0]
    body = client.get(f"/versions/{vid}/scales?kind=exposure").json()
    assert body["kind"] == "exposure"
    stored = registry.scales(vid, kind="exposure")
    assert [r["exposure"] for r in body["items"]] == list(sample.exposure_ids)
    assert [r["scale"] for r in body["items"]] == stored["scale"].tolist()


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"Accept": "text/csv"}, "", "csv"),
        ({}, "format=csv", "csv"),
        ({"Accept": PARQUET}, "", "parquet"),
        ({"Accept": "application/x-parquet"}, "", "parquet"),
        ({}, "format=parquet", "parquet"),
        ({"Accept": "text/csv"}, "format=json", "json"),  # the query parameter wins
        ({"Accept": "text/csv;q=0.5, application/json"}, "", "json"),
        ({"Accept": "text/csv, */*;q=0.1"}, "", "csv"),
        ({"Accept": "*/*"}, "", "json"),
    ],
)
def test_scales_representations(
    client: TestClient,
    registry: Registry,
    sample: Sample,
    headers: dict,
    query: str,
    expected: str,
) -> None:
    vid = sample.amp_version
    resp = client.get(f"/versions/{vid}/scales?{query}", headers=headers)
    assert_immutable(resp)
    stored = registry.scales(vid)
    if expected == "json":
        assert resp.headers["content-type"] == "application/json"
        got = pd.DataFrame(resp.json()["items"])
    elif expected == "csv":
        assert resp.headers["content-type"].startswith("text/csv")
        got = pd.read_csv(io.StringIO(resp.text))
    else:
        assert resp.headers["content-type"] == PARQUET
        got = pd.read_parquet(io.BytesIO(resp.content))
    assert list(got.columns) == list(stored.columns)
    # Every bit of every scale survives each representation.
    assert got["scale"].tolist() == stored["scale"].tolist()
    assert got["detector"].tolist() == stored["detector"].tolist()
    assert got["rms"].isna().tolist() == stored["rms"].isna().tolist()
    assert got["flagged"].astype(bool).tolist() == stored["flagged"].tolist()


def test_scales_etags_differ_per_representation(client: TestClient, sample: Sample) -> None:
    url = f"/versions/{sample.amp_version}/scales"
    tags = {
        fmt: client.get(f"{url}?format={fmt}").headers["etag"] for fmt in ("json", "csv", "parquet")
    }
    assert len(set(tags.values())) == 3
    # Parquet output is deterministic, so its strong ETag is stable and revalidates.
    assert client.get(url, headers={"Accept": PARQUET}).headers["etag"] == tags["parquet"]
    resp = client.get(url, headers={"Accept": PARQUET, "If-None-Match": tags["parquet"]})
    assert resp.status_code == 304
    assert resp.content == b""
    # A JSON ETag does not revalidate the CSV representation.
    assert (
        client.get(f"{url}?format=csv", headers={"If-None-Match": tags["json"]}).status_code == 200
    )


def test_scales_errors(client: TestClient, sample: Sample) -> None:
    assert_error(client.get("/versions/999999/scales"), 404)
    assert_error(client.get(f"/versions/{sample.amp_version}/scales?kind=pixel"), 422)
    assert_error(client.get(f"/versions/{sample.amp_version}/scales?format=xml"), 422)
    resp = client.get(f"/versions/{sample.amp_version}/scales", headers={"Accept": "image/png"})
    assert_error(resp, 406)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "json"),
        ("", "json"),
        ("application/json", "json"),
        ("text/*", "csv"),
        ("application/*", "json"),
        ("application/x-parquet;q=0.9, text/csv;q=0.8", "parquet"),
        ("text/csv;q=0, */*", "json"),
        ("text/csv;q=0", None),
        ("image/png, text/html", None),
        ("TEXT/CSV", "csv"),
    ],
)
def test_negotiate(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("*", True),
        ('"a"', True),
        ('W/"a"', True),
        ('"b", "a"', True),
        ('"b"', False),
        ('"ab"', False),
    ],
)
def test_etag_matches(header: str | None, expected: bool) -> None:
    assert etag_matches(header, '"a"') is expected


# --------------------------------------------------------------------------- cp_pipe

needs_cp_pipe = pytest.mark.skipif(
    not hasattr(Registry, "cp_pipe"), reason="Registry.cp_pipe is not available yet"
)


@needs_cp_pipe
def test_cp_pipe_detector_level(client: TestClient, registry: Registry, sample: Sample) -> None:
    vid = sample.detector_versions[0]
    resp = client.get(f"/versions/{vid}/cp_pipe")
    assert_immutable(resp)
    body = resp.json()
    stored = registry.scales(vid)
    exps = registry.scales(vid, kind="exposure")
    assert body["detScale"] == {
        str(d): s for d, s in zip(stored["detector"], stored["scale"], strict=True)
    }
    for det, amps in AMPS.items():
        assert set(body["expScale"][str(det)]) == set(amps)
        for amp in amps:
            assert body["expScale"][str(det)][amp] == {
                str(e): s for e, s in zip(exps["exposure"], exps["scale"], strict=True)
            }
    etag = resp.headers["etag"]
    assert (
        client.get(f"/versions/{vid}/cp_pipe", headers={"If-None-Match": etag}).status_code == 304
    )


@needs_cp_pipe
def test_cp_pipe_amp_level(client: TestClient, registry: Registry, sample: Sample) -> None:
    body = client.get(f"/versions/{sample.amp_version}/cp_pipe").json()
    stored = registry.scales(sample.amp_version)
    for det, amp, scale in zip(stored["detector"], stored["amp"], stored["scale"], strict=True):
        assert body["detScale"][str(det)][amp] == scale


def test_cp_pipe_unknown_version(client: TestClient) -> None:
    assert_error(
        client.get("/versions/999999/cp_pipe"), 404 if hasattr(Registry, "cp_pipe") else 501
    )


# --------------------------------------------------------------------------- lookup

needs_lookup = pytest.mark.skipif(
    not (hasattr(Registry, "lookup") and hasattr(Registry, "certify")),
    reason="Registry.lookup/certify are not available yet",
)
LOOKUP = f"/lookup?instrument={INSTRUMENT}&tag={TAG}"


@needs_lookup
def test_lookup_by_time(client: TestClient, certified: Sample) -> None:
    when = (T0_UTC + dt.timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    resp = client.get(f"{LOOKUP}&filter={FILTER}&time={when}")
    assert resp.status_code == 200, resp.text
    # Lookups are fresh for a few seconds and revalidate by a generation ETag (issue 12).
    assert resp.headers["cache-control"] == lookup_cache_control()
    assert resp.headers["etag"].startswith('"g')
    body = resp.json()
    assert body["version_id"] == certified.detector_versions[1]
    assert body["tag"] == TAG
    assert no_nan(resp.text)


@needs_lookup
def test_lookup_by_exposure(client: TestClient, certified: Sample) -> None:
    resp = client.get(f"{LOOKUP}&exposure={certified.exposure_ids[1]}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["version_id"] == certified.detector_versions[1]


@needs_lookup
def test_lookup_explain(client: TestClient, certified: Sample) -> None:
    resp = client.get(f"{LOOKUP}&filter={FILTER}&time=2030-01-01T00:00:00Z&explain=true")
    assert resp.status_code == 200, resp.text
    assert resp.json()["explain"]


@needs_lookup
def test_lookup_nothing_certified(client: TestClient, certified: Sample) -> None:
    before = (T0_UTC - dt.timedelta(days=1)).isoformat()  # "+00:00" must be URL-encoded
    params = {"instrument": INSTRUMENT, "tag": TAG, "filter": FILTER, "time": before}
    assert_error(client.get("/lookup", params=params), 404)
    assert_error(
        client.get(
            f"/lookup?instrument={INSTRUMENT}&tag=no/such&filter={FILTER}&time=2024-03-02T00:00:00Z"
        ),
        404,
    )
    # As the tag stood before anything was certified, nothing was.
    resp = client.get(
        f"{LOOKUP}&filter={FILTER}&time=2024-03-02T00:00:00Z&as_of=2000-01-01T00:00:00Z"
    )
    assert_error(resp, 404)


@needs_lookup
def test_lookup_through_the_validity_index_answers_the_same(
    client: TestClient, certified: Sample, sample_db
) -> None:
    """``calibreg serve`` answers lookups from the validity index: same status, same body."""
    queries = [
        f"&filter={FILTER}&time={(T0_UTC + dt.timedelta(minutes=m)).isoformat()}"
        for m in (-1440, -1, 0, 1, 90, 600)
    ]
    queries += [f"&exposure={e}" for e in (*certified.exposure_ids, 1, 2**40)]
    queries += [
        f"&filter=nope&time={T0_UTC.isoformat()}",
        f"&filter={FILTER}&time={T0_UTC.isoformat()}&explain=true",
        f"&exposure={certified.exposure_ids[0]}&filter=nope",
    ]
    with (
        Registry(sample_db[0], validity_index=True) as indexed,
        TestClient(create_app(indexed)) as fast,
    ):
        for query in queries:
            url = f"{LOOKUP}{query}".replace("+", "%2B")
            plain, via_index = client.get(url), fast.get(url)
            assert (via_index.status_code, via_index.json()) == (
                plain.status_code,
                plain.json(),
            ), query
        assert indexed._validity.loads >= 1  # the index did answer


@pytest.mark.parametrize(
    "query",
    [
        f"&filter={FILTER}",  # neither time nor exposure
        f"&filter={FILTER}&time=2024-03-02T00:00:00Z&exposure=1",  # both
        f"&filter={FILTER}&time=yesterday",
        f"&filter={FILTER}&time=2024-03-02T00:00:00Z&as_of=soon",
        f"&filter={FILTER}&exposure=abc",
    ],
)
def test_lookup_bad_parameters(client: TestClient, query: str) -> None:
    error = assert_error(client.get(f"{LOOKUP}{query}"), 422)
    assert error["details"]


def test_lookup_missing_required(client: TestClient) -> None:
    error = assert_error(client.get(f"/lookup?filter={FILTER}&time=2024-03-02T00:00:00Z"), 422)
    assert {tuple(d["loc"]) for d in error["details"]} == {
        ("query", "instrument"),
        ("query", "tag"),
    }


# --------------------------------------------------------------------------- history


@pytest.mark.parametrize("detector", ["1", "R00_S01"])
def test_history_detector(client: TestClient, sample: Sample, detector: str) -> None:
    resp = client.get(f"/history?instrument={INSTRUMENT}&filter={FILTER}&detector={detector}")
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == NO_CACHE
    items = resp.json()["items"]
    assert [i["version"] for i in items] == list(sample.detector_versions)
    assert all(i["level"] == "DETECTOR" and i["detector"] == 1 for i in items)


def test_history_amp(client: TestClient, sample: Sample) -> None:
    det, amp = DEAD_AMP
    resp = client.get(f"/history?instrument={INSTRUMENT}&filter={FILTER}&detector={det}&amp={amp}")
    (item,) = resp.json()["items"]
    assert item["version"] == sample.amp_version
    assert item["amp"] == amp
    assert item["flagged"] is True


def test_history_errors(client: TestClient) -> None:
    base = f"/history?instrument={INSTRUMENT}&filter={FILTER}"
    assert_error(client.get(f"{base}&detector=R99_S99"), 404)
    assert_error(client.get(f"/history?instrument=NoCam&filter={FILTER}&detector=1"), 404)
    error = assert_error(client.get(base), 422)
    assert error["details"][0]["loc"] == ["query", "detector"]


# --------------------------------------------------------------------------- read-only


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("path", ["/versions", "/versions/1", "/lookup", "/no/such/path"])
def test_writes_are_refused(client: TestClient, method: str, path: str) -> None:
    resp = client.request(method, path, json={"scale": 2.0})
    assert_error(resp, 405)
    assert resp.headers["allow"] == "GET, HEAD"


def test_head_is_get_without_body(client: TestClient, sample: Sample) -> None:
    url = f"/versions/{sample.amp_version}/scales?format=csv"
    got = client.get(url)
    head = client.head(url)
    assert head.status_code == 200
    assert head.content == b""
    for name in ("etag", "cache-control", "content-type", "content-length"):
        assert head.headers[name] == got.headers[name]
    assert client.head(url, headers={"If-None-Match": got.headers["etag"]}).status_code == 304
    assert client.head("/health").status_code == 200


def test_unknown_path(client: TestClient) -> None:
    error = assert_error(client.get("/no/such/path"), 404)
    assert "/no/such/path" in error["message"]


# --------------------------------------------------------------------------- error mapping


class _FailingRegistry:
    """Stands in for a Registry whose every read raises ``error`` (no database needed)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    @property
    def backend(self) -> str:
        raise self.error

    def schema_revision(self) -> str:
        raise self.error

    def instruments(self) -> pd.DataFrame:
        raise self.error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("NotFoundError", 404),
        ("InputError", 422),
        ("ConflictError", 409),
        ("SchemaError", 503),
        ("SolveError", 400),
        ("CalibregError", 400),
    ],
)
def test_domain_errors_map_to_status(error: str, code: int) -> None:
    from calibreg import errors

    kind = getattr(errors, error)
    exc = (
        kind("data.csv", "bad value", row=3, field="x")
        if kind is errors.InputError
        else kind("something is wrong")
    )
    with TestClient(create_app(_FailingRegistry(exc))) as tc:  # type: ignore[arg-type]
        body = assert_error(tc.get("/instruments"), code)
    assert body["message"] == str(exc)
    if kind is errors.InputError:
        assert body["details"] == [{"loc": ["data.csv", "x"], "msg": "bad value"}]


def test_unexpected_error_is_500_without_internals() -> None:
    app = create_app(_FailingRegistry(RuntimeError("secret connection string")))  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as tc:
        body = assert_error(tc.get("/instruments"), 500)
    assert "secret" not in body["message"]


def test_health_reports_unreachable_database() -> None:
    app = create_app(_FailingRegistry(OSError("connection refused")))  # type: ignore[arg-type]
    with TestClient(app) as tc:
        body = assert_error(tc.get("/health"), 503)
    assert "connection refused" in body["message"]
