"""Hostile HTTP requests (issue 13): always a JSON 4xx in one line, never a silent default."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CASES = [
    ("/versions", {"physical_filter": "nope"}, 422, "unknown parameter(s) physical_filter"),
    ("/versions", {"filtre": "r"}, 422, "unknown parameter(s) filtre"),
    ("/versions", [("instrument", "a"), ("instrument", "b")], 422, "more than once: instrument"),
    (
        "/lookup",
        [("instrument", "X"), ("tag", "t"), ("exposure", "1"), ("exposure", "2")],
        422,
        "more than once: exposure",
    ),
    ("/versions/2147483648", {}, 404, "no calibration version 2147483648"),
    ("/versions/9223372036854775807/scales", {}, 404, "no calibration version"),
    ("/versions/1", {"verbose": "1"}, 422, "unknown parameter(s) verbose"),
    ("/lookup", {"instrument": "X", "tag": "t", "time": "1960-01-01"}, 422, "1972"),
    ("/lookup", {"instrument": "X", "tag": "t", "time": "garbage"}, 422, "garbage"),
    ("/versions", {"level": "amplifier"}, 422, "not a level"),
]


@pytest.mark.parametrize(("path", "params", "status", "text"), CASES)
def test_hostile_requests_get_one_line_json_errors(
    client: TestClient, path: str, params, status: int, text: str
) -> None:
    r = client.get(path, params=params)
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    assert text in message and "\n" not in message


def test_levels_parse_case_insensitively(client: TestClient) -> None:
    upper = client.get("/versions", params={"level": "AMP"})
    lower = client.get("/versions", params={"level": "amp"})
    assert upper.status_code == lower.status_code == 200
    assert upper.json()["items"] == lower.json()["items"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.text(min_size=1, max_size=20).filter(
        lambda s: s not in {"instrument", "filter", "level", "limit", "offset"}
    ),
    value=st.text(max_size=20),
)
def test_fuzz_unknown_parameters_are_refused(client: TestClient, name: str, value: str) -> None:
    r = client.get("/versions", params={name: value})
    assert r.status_code == 422, (name, r.text)
    assert r.json()["error"]["code"] == 422


def test_integers_beyond_64_bits_are_422_not_500(client: TestClient) -> None:
    r = client.get(
        "/history", params={"instrument": "LSSTCam", "filter": "r_57", "detector": str(10**20)}
    )
    assert r.status_code in (404, 422), r.text
