"""Bulk lookup (``Registry.lookup_many``) against the single lookup, exposure by exposure.

The single ``Registry.lookup(..., exposure=...)`` is the ground truth: for every exposure of a
registry built to hold every case (ranges valid from the beginning, open ranges, gaps, a range
boundary inside an exposure's span, the same version on both sides of a boundary, exposures
without an end or without a timespan, another filter, unknown ids, a split by decertify and
an ``as_of`` before it), the bulk answer must say what the single lookup says.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine
from calibreg.errors import (
    AmbiguousLookupError,
    InputError,
    NotFoundError,
    NothingCertifiedError,
)
from tests.http.http_sample import FILTER, INSTRUMENT, T0_UTC, build_sample, tai_ns

TAG = "bulk/test"
MIN = 60 * 10**9
SEC = 10**9
N_EXPOSURES = 240
T0 = None  # set by the fixture


def _exposures(t0: int) -> pd.DataFrame:
    """Exposures 1..N, one a minute from ``t0`` - 1 h, 15 s long; a few odd ones."""
    rows = []
    for i in range(1, N_EXPOSURES + 1):
        begin = t0 - 60 * MIN + i * MIN
        end = begin + 15 * SEC
        if i % 37 == 0:
            end = None  # no end: matched as an instant
        if i % 53 == 0:
            begin = end = None  # no timespan at all
        rows.append(
            {
                "instrument": INSTRUMENT,
                "id": i,
                "physical_filter": "g_01" if i % 11 == 0 else FILTER,
                "obs_id": f"B_{i}",
                "observation_type": "flat",
                "observation_reason": "flat",
                "science_program": None,
                "group": None,
                "target_name": None,
                "day_obs": 20240301 if i <= N_EXPOSURES // 2 else 20240302,
                "seq_num": i,
                "exposure_time": 15.0,
                "dark_time": 15.0,
                "timespan_begin": begin,
                "timespan_end": end,
            }
        )
    frame = pd.DataFrame(rows)
    for col in ("day_obs", "seq_num", "timespan_begin", "timespan_end"):
        frame[col] = frame[col].astype("Int64")
    return frame


def _exposure_start(t0: int, i: int) -> int:
    return t0 - 60 * MIN + i * MIN


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def bulk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """``(registry, versions, as_of_before_split)`` over a registry holding every case."""
    if request.param == "sqlite":
        urls: Iterator[str] = iter(
            [f"sqlite:///{tmp_path_factory.mktemp('bulk') / 'registry.sqlite3'}"]
        )
    else:
        from tests.conftest import _postgres_schema_url

        urls = _postgres_schema_url(request.getfixturevalue("postgres_base_url"))
    url = next(urls)
    engine = make_engine(url)
    try:
        upgrade(engine)
        reg = Registry(url, engine=engine)
        sample = build_sample(reg, certify=False)
        t0 = tai_ns(T0_UTC)
        reg.ingest_exposures(_exposures(t0), source="bulk.csv", sha256="3" * 64)
        v1, v2 = sample.detector_versions
        start = lambda i: _exposure_start(t0, i)  # noqa: E731
        # v1 from the beginning to 5 s into exposure 40 (ambiguous with v2 there) ...
        reg.certify(v1, TAG, None, start(40) + 5 * SEC)
        reg.certify(v2, TAG, start(40) + 5 * SEC, start(80))
        # ... a gap from exposure 80 to 100, then v1 again, v2 from 3 s into exposure 150 ...
        reg.certify(v1, TAG, start(100), start(150) + 3 * SEC, force=True)
        reg.certify(v2, TAG, start(150) + 3 * SEC, None, force=True)
        time.sleep(0.01)
        before_split = dt.datetime.now(dt.UTC)
        time.sleep(0.01)
        # ... split v2's open range (history kept), and put v2 back on half of the hole:
        # exposure 190 then straddles two ranges of the same version (not ambiguous).
        reg.decertify(TAG, INSTRUMENT, FILTER, start(180), start(200))
        reg.certify(v2, TAG, start(190) + 7 * SEC, start(200), force=True)
        reg.certify(v2, TAG, start(180), start(190) + 7 * SEC, force=True)
        yield reg, (v1, v2), before_split
        engine.dispose()
    finally:
        engine.dispose()
        for _ in urls:
            pass


def _truth(reg: Registry, exposure: int, as_of: dt.datetime | None) -> dict:
    """What the single lookup says, as a bulk row would."""
    try:
        res = reg.lookup(INSTRUMENT, None, TAG, exposure=exposure, as_of=as_of)
    except AmbiguousLookupError as err:
        return {
            "status": "ambiguous",
            "versions": sorted({c["version_id"] for c in err.candidates}),
        }
    except NothingCertifiedError:
        return {"status": "nothing_certified"}
    except NotFoundError as err:
        return {"status": "unknown_exposure" if "unknown exposure" in str(err) else str(err)}
    except InputError as err:
        return {"status": "no_timespan" if "no timespan" in str(err) else str(err)}
    return {
        "status": "ok",
        "version_id": res["version_id"],
        "certification_id": res["certification"]["certification_id"],
        "valid": (res["certification"]["valid_begin"], res["certification"]["valid_end"]),
        "span": tuple(res["exposure_timespan"]),
        "seq": res["seq"],
        "content_hash": res["content_hash"],
        "physical_filter": res["physical_filter"],
    }


def _none(v: object) -> object:
    return None if v is None or pd.isna(v) else int(v)


def _check_against_truth(reg: Registry, frame: pd.DataFrame, as_of: dt.datetime | None) -> None:
    seen = set()
    for row in frame.to_dict("records"):
        truth = _truth(reg, int(row["exposure"]), as_of)
        assert row["status"] == truth["status"], (row, truth)
        seen.add(truth["status"])
        if truth["status"] == "ok":
            assert int(row["version_id"]) == truth["version_id"]
            assert int(row["certification_id"]) == truth["certification_id"]
            assert (_none(row["valid_begin"]), _none(row["valid_end"])) == truth["valid"]
            assert (int(row["exposure_begin"]), int(row["exposure_end"])) == truth["span"]
            assert int(row["seq"]) == truth["seq"]
            assert row["content_hash"] == truth["content_hash"]
            assert row["physical_filter"] == truth["physical_filter"]
        else:
            assert pd.isna(row["version_id"])
        if truth["status"] == "ambiguous":
            assert list(row["ambiguous_versions"]) == truth["versions"]
    return seen


def test_every_exposure_matches_the_single_lookup(bulk) -> None:
    reg, _versions, _ = bulk
    ids = [*range(1, N_EXPOSURES + 1), *range(10_000, 10_005), *sample_ids(reg)]
    frame = reg.lookup_many(INSTRUMENT, TAG, ids)
    assert list(frame["exposure"]) == ids  # the order asked
    seen = _check_against_truth(reg, frame, None)
    assert seen == {"ok", "ambiguous", "nothing_certified", "unknown_exposure", "no_timespan"}
    # The deliberate cases, spelled out.
    status = dict(zip(frame["exposure"], frame["status"], strict=True))
    assert status[40] == "ambiguous" and status[150] == "ambiguous"
    assert status[190] == "ok" and status[85] == "nothing_certified" and status[53] == "no_timespan"
    assert status[22] == "nothing_certified"  # another filter: nothing certified for it


def sample_ids(reg: Registry) -> list[int]:
    return [int(i) for i in reg.exposures(INSTRUMENT)["id"] if i > 10**6]


def test_as_of_matches_the_single_lookup(bulk) -> None:
    reg, _versions, before_split = bulk
    ids = list(range(170, 210))
    old = reg.lookup_many(INSTRUMENT, TAG, ids, as_of=before_split)
    _check_against_truth(reg, old, before_split)
    now = reg.lookup_many(INSTRUMENT, TAG, ids)
    # Before the split exposure 185 lay in v2's open range; now in a re-certified piece.
    assert not old.set_index("exposure")["certification_id"].equals(
        now.set_index("exposure")["certification_id"]
    )
    long_ago = reg.lookup_many(INSTRUMENT, TAG, ids, as_of=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    assert set(long_ago["status"]) <= {"nothing_certified", "no_timespan"}


def test_day_obs_and_range_selections(bulk) -> None:
    reg, _versions, _ = bulk
    day1 = reg.lookup_many(INSTRUMENT, TAG, day_obs=20240301)
    assert list(day1["exposure"]) == [*range(1, N_EXPOSURES // 2 + 1), *sample_ids(reg)]
    both = reg.lookup_many(INSTRUMENT, TAG, day_obs=(20240301, 20240302))
    assert len(both) == N_EXPOSURES + len(sample_ids(reg))
    _check_against_truth(reg, both, None)
    rng = reg.lookup_many(INSTRUMENT, TAG, exposure_range=(30, 60))
    assert list(rng["exposure"]) == list(range(30, 61))
    by_ids = reg.lookup_many(INSTRUMENT, TAG, list(range(30, 61)))
    pd.testing.assert_frame_equal(rng, by_ids)
    assert reg.lookup_many(INSTRUMENT, TAG, day_obs=19990101).empty


def test_duplicates_empty_and_numpy_ids(bulk) -> None:
    reg, _versions, _ = bulk
    frame = reg.lookup_many(INSTRUMENT, TAG, [5, 5, 3, 5, 3])
    assert list(frame["exposure"]) == [5, 3]
    empty = reg.lookup_many(INSTRUMENT, TAG, [])
    assert empty.empty and list(empty.columns) == list(frame.columns)
    arr = reg.lookup_many(INSTRUMENT, TAG, np.array([3, 5], dtype=np.int64))
    assert list(arr["exposure"]) == [3, 5]


def test_hundred_thousand_ids_in_one_query(bulk) -> None:
    reg, _versions, _ = bulk
    ids = list(range(1, 100_001))
    start = time.perf_counter()
    frame = reg.lookup_many(INSTRUMENT, TAG, ids)
    elapsed = time.perf_counter() - start
    assert len(frame) == 100_000
    assert (frame["status"].iloc[N_EXPOSURES:] == "unknown_exposure").all()
    assert elapsed < 30  # generous: a sanity bound, the benchmark measures
    with pytest.raises(InputError, match="more than 100,000"):
        reg.lookup_many(INSTRUMENT, TAG, range(1, 100_002))


@pytest.mark.parametrize(
    ("exposures", "message"),
    [
        ([1, "2"], "not an integer"),
        ([1, 2.0], "not an integer"),
        ([True], "not an integer"),
        ([2**63], "64-bit"),
        ("1,2", "list of int"),
    ],
)
def test_hostile_ids(bulk, exposures, message) -> None:
    reg, _versions, _ = bulk
    with pytest.raises(InputError, match=message):
        reg.lookup_many(INSTRUMENT, TAG, exposures)


def test_unknown_names_and_bad_selections(bulk) -> None:
    reg, _versions, _ = bulk
    with pytest.raises(NotFoundError, match="unknown instrument"):
        reg.lookup_many("NoCam", TAG, [1])
    with pytest.raises(NotFoundError, match="no tag"):
        reg.lookup_many(INSTRUMENT, "no/such/tag", [1])
    with pytest.raises(InputError, match="exactly one"):
        reg.lookup_many(INSTRUMENT, TAG)
    with pytest.raises(InputError, match="exactly one"):
        reg.lookup_many(INSTRUMENT, TAG, [1], day_obs=20240301)
    with pytest.raises(InputError, match="empty"):
        reg.lookup_many(INSTRUMENT, TAG, exposure_range=(10, 5))


def test_generation_counts_certifications_and_exposure_writes(bulk) -> None:
    reg, (v1, _v2), _ = bulk
    g0 = reg.certification_generation()
    assert g0 == reg.certification_generation()  # reads change nothing
    reg.lookup_many(INSTRUMENT, TAG, [1, 2])
    assert reg.certification_generation() == g0
    tag = "bulk/generation"
    reg.certify(v1, tag, tai_ns(T0_UTC) + 10**15)
    g1 = reg.certification_generation()
    assert g1 > g0
    reg.decertify(tag, INSTRUMENT, FILTER, None)
    assert reg.certification_generation() > g1
    g2 = reg.certification_generation()
    reg.decertify(tag, INSTRUMENT, FILTER, None)  # nothing to close: no change needed
    assert reg.certification_generation() >= g2
