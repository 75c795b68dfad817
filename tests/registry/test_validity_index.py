"""The validity index (``Registry(validity_index=True)``) against the database's own lookup.

Ground truth is :func:`calibreg.registry.tags.lookup` through a registry without the index: for
every exposure and for instants at, around and between every range edge of a registry holding
every case (ranges valid from the beginning, open ranges, gaps, a boundary inside an exposure,
a split by decertify, another filter, unknown names), the indexed registry must give the same
answer, or raise the same error with the same words. Then: a certify or decertify made through
*another* registry is seen by the next lookup (the certification generation), inside a
transaction the index is not used, and the pure interval search is checked against brute force.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine
from calibreg.errors import NothingCertifiedError
from calibreg.registry.validity import Ranges
from tests.conftest import wait_for
from tests.http.http_sample import FILTER, INSTRUMENT, T0_UTC, build_sample, tai_ns
from tests.registry.test_lookup_many import (  # noqa: F401  (the module fixture)
    MIN,
    N_EXPOSURES,
    SEC,
    TAG,
    bulk,
)


def _outcome(reg: Registry, **kwargs: object) -> tuple:
    """A lookup's answer, or its error's type and words."""
    try:
        physical_filter = kwargs.pop("physical_filter", FILTER)
        return ("ok", reg.lookup(INSTRUMENT, physical_filter, TAG, **kwargs))
    except Exception as err:  # every error must match, type and message
        return (type(err).__name__, str(err))


@pytest.fixture(scope="module")
def indexed(bulk) -> Iterator[tuple[Registry, Registry]]:  # noqa: F811
    """``(plain, indexed)`` registries over the bulk-lookup registry's database."""
    plain, _versions, _ = bulk
    reg = Registry(plain.url, engine=plain.engine, validity_index=True)
    yield plain, reg
    reg.close()


def _instants(plain: Registry) -> list[int]:
    """Every range edge of the tag, one ns either side, and a point every 7 minutes."""
    edges = set()
    for cert in plain.certifications(TAG, include_closed=True):
        for edge in (cert["valid_begin"], cert["valid_end"]):
            if edge is not None:
                edges.update((edge - 1, edge, edge + 1))
    t0 = tai_ns(T0_UTC)
    grid = range(t0 - 90 * MIN, t0 + (N_EXPOSURES + 30) * MIN, 7 * MIN)
    return sorted(edges | set(grid))


def test_every_instant_matches_the_database(indexed) -> None:
    plain, reg = indexed
    instants = _instants(plain)
    assert len(instants) > 50
    kinds = set()
    for t in instants:
        truth = _outcome(plain, time_tai_ns=t)
        assert _outcome(reg, time_tai_ns=t) == truth, t
        kinds.add(truth[0])
    assert kinds == {"ok", "NothingCertifiedError"}
    assert reg._validity.loads == 1  # one load answered them all (nothing changed)


def test_every_exposure_matches_the_database(indexed) -> None:
    plain, reg = indexed
    ids = [*range(1, N_EXPOSURES + 1), 10**9]
    kinds = set()
    for e in ids:
        truth = _outcome(plain, exposure=e, physical_filter=None)
        assert _outcome(reg, exposure=e, physical_filter=None) == truth, e
        kinds.add(truth[0])
    # ok, ambiguous, nothing certified, unknown exposure, no timespan: all the kinds.
    assert kinds == {
        "ok",
        "AmbiguousLookupError",
        "NothingCertifiedError",
        "NotFoundError",
        "InputError",
    }
    # The filter given with an exposure is checked as the database path checks it.
    for e, given_filter in ((1, FILTER), (1, "g_01"), (11, "g_01"), (11, FILTER)):
        truth = _outcome(plain, exposure=e, physical_filter=given_filter)
        assert _outcome(reg, exposure=e, physical_filter=given_filter) == truth


@pytest.mark.parametrize(
    ("instrument", "physical_filter", "tag"),
    [
        ("NoSuchCam", FILTER, TAG),
        (INSTRUMENT, "no_such_filter", TAG),
        (INSTRUMENT, FILTER, "no/such/tag"),
        (INSTRUMENT, "g_01", TAG),
        (INSTRUMENT, None, TAG),
    ],
)
def test_unknown_names_give_the_database_errors(indexed, instrument, physical_filter, tag) -> None:
    plain, reg = indexed
    t = tai_ns(T0_UTC)

    def outcome(r: Registry) -> tuple:
        try:
            return ("ok", r.lookup(instrument, physical_filter, tag, time_tai_ns=t))
        except Exception as err:
            return (type(err).__name__, str(err))

    truth = outcome(plain)
    assert truth[0] != "ok"
    assert outcome(reg) == truth


def test_as_of_and_explain_go_to_the_database(indexed) -> None:
    plain, reg = indexed
    t = tai_ns(T0_UTC) - 30 * MIN  # in v1's range valid from the beginning
    when = dt.datetime.now(dt.UTC)
    assert _outcome(reg, time_tai_ns=t, as_of=when) == _outcome(plain, time_tai_ns=t, as_of=when)
    explained = reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=t, explain=True)
    assert explained == plain.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=t, explain=True)
    assert explained["explain"]


# --------------------------------------------------------------------------- invalidation


@pytest.fixture
def fresh(db_url: str) -> Iterator[tuple[Registry, Registry, object]]:
    """``(writer, indexed reader, sample)`` on separate engines, as a service and a curator."""
    engine = make_engine(db_url)
    upgrade(engine)
    engine.dispose()
    writer = Registry(db_url)
    sample = build_sample(writer, certify=False)
    reader = Registry(db_url, validity_index=True)
    yield writer, reader, sample
    reader.close()
    writer.close()


def test_a_certification_made_elsewhere_is_seen_by_the_next_lookup(fresh) -> None:
    writer, reader, sample = fresh
    v1, v2 = sample.detector_versions
    t0 = tai_ns(T0_UTC)
    tag = "index/test"
    writer.certify(v1, tag, t0, None)
    assert reader.lookup(INSTRUMENT, FILTER, tag, time_tai_ns=t0 + MIN)["version_id"] == v1
    assert reader.lookup_in_memory(INSTRUMENT, FILTER, tag, time_tai_ns=t0 + MIN) is not None
    loads = reader._validity.loads
    # Replace the tail of the range with v2 (decertify, then certify), from another registry.
    writer.decertify(tag, INSTRUMENT, FILTER, t0 + 10 * MIN, None)
    assert wait_for(
        lambda: reader.lookup_in_memory(INSTRUMENT, FILTER, tag, time_tai_ns=t0) is None
    )
    with pytest.raises(Exception, match="nothing certified"):
        reader.lookup(INSTRUMENT, FILTER, tag, time_tai_ns=t0 + 20 * MIN)
    writer.certify(v2, tag, t0 + 10 * MIN, None, force=True)
    assert wait_for(lambda: _version(reader, tag, t0 + 20 * MIN) == v2), (
        "the index kept the range a decertify closed"
    )
    assert reader.lookup(INSTRUMENT, FILTER, tag, time_tai_ns=t0 + MIN)["version_id"] == v1
    assert reader._validity.loads > loads
    # Nothing changes: no reload.
    loads = reader._validity.loads
    for k in range(20):
        reader.lookup(INSTRUMENT, FILTER, tag, time_tai_ns=t0 + k * MIN)
    assert reader._validity.loads == loads


def _version(reg: Registry, tag: str, t: int) -> int | None:
    try:
        return reg.lookup(INSTRUMENT, FILTER, tag, time_tai_ns=t)["version_id"]
    except Exception:
        return None


def test_inside_a_transaction_the_index_is_not_used(fresh) -> None:
    _writer, reader, sample = fresh
    v1 = sample.detector_versions[0]
    t0 = tai_ns(T0_UTC)
    tag = "index/tx"
    reader.certify(v1, tag, t0, None)
    assert reader.lookup(INSTRUMENT, FILTER, tag, time_tai_ns=t0)["version_id"] == v1

    def decertify_and_look() -> None:
        with reader.transaction():
            reader.decertify(tag, INSTRUMENT, FILTER, t0, None)
            # The transaction's own (uncommitted) decertify is what its lookups see.
            assert reader.lookup_in_memory(INSTRUMENT, FILTER, tag, time_tai_ns=t0) is None
            with pytest.raises(NothingCertifiedError):
                reader.lookup(INSTRUMENT, FILTER, tag, time_tai_ns=t0)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        decertify_and_look()
    assert reader.lookup(INSTRUMENT, FILTER, tag, time_tai_ns=t0)["version_id"] == v1


def test_without_the_index_nothing_is_answered_in_memory(fresh) -> None:
    writer, _reader, sample = fresh
    writer.certify(sample.detector_versions[0], "index/none", tai_ns(T0_UTC), None)
    t = tai_ns(T0_UTC)
    assert writer.lookup_in_memory(INSTRUMENT, FILTER, "index/none", time_tai_ns=t) is None
    assert writer.lookup(INSTRUMENT, FILTER, "index/none", time_tai_ns=t)["version_id"]


# --------------------------------------------------------------------------- the search itself

_EDGE = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@st.composite
def _ranges(draw: st.DrawFn) -> list[SimpleNamespace]:
    """Non-overlapping ranges, sorted, either end possibly unbounded (None)."""
    cuts = sorted(set(draw(st.lists(_EDGE, min_size=0, max_size=12))))
    rows = []
    i = 0
    pairs = []
    while i + 1 < len(cuts):
        if draw(st.booleans()):
            pairs.append([cuts[i], cuts[i + 1]])
        i += draw(st.integers(1, 2))
    if pairs and draw(st.booleans()):
        pairs[0][0] = None
    if pairs and draw(st.booleans()):
        pairs[-1][1] = None
    if not pairs and draw(st.booleans()):
        pairs = [[None, None]]
    for k, (b, e) in enumerate(pairs):
        rows.append(SimpleNamespace(id=k, version_id=k % 3, valid_begin=b, valid_end=e))
    return rows


def _brute(rows: list[SimpleNamespace], begin: int, end: int) -> list[int]:
    return [
        r.id
        for r in rows
        if (r.valid_end is None or r.valid_end > begin)
        and (r.valid_begin is None or r.valid_begin < end)
    ]


@settings(max_examples=400, deadline=None)
@given(rows=_ranges(), begin=_EDGE, length=st.integers(1, 2**62))
def test_interval_search_matches_brute_force(rows, begin, length) -> None:
    end = begin + length
    ranges = Ranges(rows)
    assert [r.id for r in ranges.over(begin, end)] == _brute(rows, begin, end)
    for r in rows:  # at every edge, where off-by-one errors live
        for edge in (r.valid_begin, r.valid_end):
            if edge is not None:
                for b in (edge - 1, edge, edge + 1):
                    assert [x.id for x in ranges.over(b, b + 1)] == _brute(rows, b, b + 1)


def test_overlapping_ranges_are_refused() -> None:
    rows = [
        SimpleNamespace(id=1, version_id=1, valid_begin=0, valid_end=10),
        SimpleNamespace(id=2, version_id=2, valid_begin=5, valid_end=None),
    ]
    with pytest.raises(ValueError, match="overlap"):
        Ranges(rows)
    touching = [rows[0], SimpleNamespace(id=3, version_id=2, valid_begin=10, valid_end=None)]
    assert [r.id for r in Ranges(touching).over(9, 11)] == [1, 3]
    assert [r.id for r in Ranges(touching).over(10, 11)] == [3]
    assert SEC  # (imported for the shared fixture's units)
