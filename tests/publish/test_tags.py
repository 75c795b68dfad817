"""Certify, decertify and lookup semantics (issue #5), on SQLite and PostgreSQL.

Validity ranges are half-open ``[begin, end)`` in TAI ns; ``end=None`` is open. Active ranges of
one (tag, instrument, filter) never overlap; decertify closes rows and inserts the remaining
pieces; ``as_of`` reads a past state of a tag.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import select

from calibreg.db.models import Certification
from calibreg.errors import AmbiguousLookupError, ConflictError, InputError, NotFoundError
from tests.publish.pubdata import FILTER, INSTRUMENT, T_BASE

S = 1_000_000_000  # one second in ns
TAG = "flat-norm/recommended"


def _active(reg, tag=TAG) -> list[tuple]:
    return sorted(
        (c["valid_begin"], c["valid_end"], c["version_id"]) for c in reg.certifications(tag)
    )


def _lookup_version(reg, t: int, **kw) -> int:
    return reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=t, **kw)["version_id"]


def _pause() -> None:
    """Make successive wall-clock bookkeeping instants strictly distinct."""
    time.sleep(0.02)


# --------------------------------------------------------------------------- 1. overlaps
def test_overlap_refused_and_touching_ranges_allowed(pub) -> None:
    reg = pub.registry
    v1, v2 = pub.solve(), pub.solve()
    a, b, c = T_BASE, T_BASE + 100 * S, T_BASE + 200 * S
    reg.certify(v1, TAG, a, b)
    # [b, c) touches [a, b) at b: allowed (end is exclusive), with another version.
    reg.certify(v2, TAG, b, c)
    assert _active(reg) == [(a, b, v1), (b, c, v2)]

    clashes = [
        (a, b),  # identical
        (a + 1, a + 2),  # inside
        (a - 10 * S, a + 1),  # overlaps the start by 1 ns
        (b - 1, b + 1),  # straddles the shared edge
        (c - 1, None),  # open-ended, overlaps the last ns
        (a - 10 * S, None),  # covers everything
        (a - 10 * S, c + 10 * S),
    ]
    for begin, end in clashes:
        for version in (v1, v2):
            with pytest.raises(ConflictError, match="overlaps"):
                reg.certify(version, TAG, begin, end)
    # Nothing was written by the refusals.
    assert _active(reg) == [(a, b, v1), (b, c, v2)]
    assert len(reg.certifications(TAG, include_closed=True)) == 2

    # Touching on the other side and an open range after c are fine too.
    reg.certify(v2, TAG, a - 50 * S, a)
    reg.certify(v1, TAG, c, None)
    assert _active(reg) == [(a - 50 * S, a, v2), (a, b, v1), (b, c, v2), (c, None, v1)]
    # After c everything is taken now.
    with pytest.raises(ConflictError):
        reg.certify(v2, TAG, c + 1000 * S, c + 2000 * S)
    # Other tags are independent.
    reg.certify(v2, "other-tag", a, None)
    assert _active(reg, "other-tag") == [(a, None, v2)]
    # Empty or reversed ranges are bad input, not conflicts.
    with pytest.raises(InputError):
        reg.certify(v1, "third", a, a)
    with pytest.raises(InputError):
        reg.certify(v1, "third", b, a)


# --------------------------------------------------------------------------- 2. decertify split
def test_decertify_splits_an_open_range(pub) -> None:
    reg = pub.registry
    v1 = pub.solve()
    t0, t1, t2 = T_BASE, T_BASE + 100 * S, T_BASE + 300 * S
    first = reg.certify(v1, TAG, t0, None)
    changes = reg.decertify(TAG, INSTRUMENT, FILTER, t1, t2)
    assert len(changes) == 1
    assert changes[0]["closed"] == first["certification_id"]
    assert changes[0]["pieces"] == [[t0, t1], [t2, None]]

    assert _active(reg) == [(t0, t1, v1), (t2, None, v1)]
    every = {c["certification_id"]: c for c in reg.certifications(TAG, include_closed=True)}
    assert len(every) == 3
    old = every[first["certification_id"]]
    assert old["decertified_at"] is not None
    assert old["decertified_at"].tzinfo is not None
    assert old["decertified_by"]
    assert (old["valid_begin"], old["valid_end"]) == (t0, None)  # the closed row is kept as-is
    pieces = [c for c in every.values() if c["certification_id"] != old["certification_id"]]
    for piece in pieces:
        assert piece["replaces_id"] == old["certification_id"]
        assert piece["version_id"] == v1
        assert piece["decertified_at"] is None
        assert piece["certified_at"] == old["decertified_at"]
    assert sorted(c["certification_id"] for c in pieces) == sorted(changes[0]["new_ids"])

    assert _lookup_version(reg, t0) == v1
    assert _lookup_version(reg, t1 - 1) == v1
    with pytest.raises(NotFoundError):
        reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=t1)
    with pytest.raises(NotFoundError):
        reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=t2 - 1)
    assert _lookup_version(reg, t2) == v1
    assert _lookup_version(reg, t2 + 10**9 * S) == v1
    with pytest.raises(NotFoundError):
        reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=t0 - 1)

    # The hole can be filled by another version now, exactly, and nothing overlaps it.
    v2 = pub.solve()
    reg.certify(v2, TAG, t1, t2)
    assert _lookup_version(reg, t1) == v2
    assert _lookup_version(reg, t2 - 1) == v2
    assert _lookup_version(reg, t2) == v1


def test_decertify_across_several_ranges_and_nothing_certified(pub) -> None:
    reg = pub.registry
    v1, v2 = pub.solve(), pub.solve()
    a, b, c = T_BASE, T_BASE + 10 * S, T_BASE + 20 * S
    reg.certify(v1, TAG, a, b)
    reg.certify(v2, TAG, b, c)
    # Cut [a+5s, b+5s): the tail of the first and the head of the second go.
    changes = reg.decertify(TAG, INSTRUMENT, FILTER, a + 5 * S, b + 5 * S)
    assert [ch["pieces"] for ch in changes] == [[[a, a + 5 * S]], [[b + 5 * S, c]]]
    assert _active(reg) == [(a, a + 5 * S, v1), (b + 5 * S, c, v2)]
    # Decertifying everything from before a, open-ended, leaves no piece at all.
    changes = reg.decertify(TAG, INSTRUMENT, FILTER, a - S, None)
    assert all(ch["pieces"] == [] for ch in changes)
    assert _active(reg) == []
    assert len(reg.certifications(TAG, include_closed=True)) == 4  # 2 closed + 2 pieces
    # The butler's semantics: decertifying where nothing is certified is a no-op, repeatable.
    before = pub.rows("certification")
    assert reg.decertify(TAG, INSTRUMENT, FILTER, a, c) == []
    assert reg.decertify(TAG, INSTRUMENT, None, None, None) == []  # every filter, all time
    assert pub.rows("certification") == before
    with pytest.raises(NotFoundError):
        reg.decertify("no-such-tag", INSTRUMENT, FILTER, a, c)
    with pytest.raises(InputError):
        reg.decertify(TAG, INSTRUMENT, FILTER, c, a)


# --------------------------------------------------------------------------- 3. edges
def test_lookup_range_edges_are_exact_to_the_nanosecond(pub) -> None:
    reg = pub.registry
    v1, v2 = pub.solve(), pub.solve()
    with pytest.raises(NotFoundError, match="nothing certified"):
        reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=T_BASE)  # no such tag yet
    b, m, e = T_BASE + 123_456_789, T_BASE + 777 * S + 1, T_BASE + 999 * S + 7
    reg.certify(v1, TAG, b, m)
    reg.certify(v2, TAG, m, e)
    with pytest.raises(NotFoundError, match="nothing certified"):
        reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=b - 1)
    assert _lookup_version(reg, b) == v1  # begin inclusive
    assert _lookup_version(reg, m - 1) == v1
    assert _lookup_version(reg, m) == v2  # end exclusive: the next range owns m
    assert _lookup_version(reg, e - 1) == v2
    with pytest.raises(NotFoundError):
        reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=e)
    hit = reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=m)
    assert hit["certification"]["valid_begin"] == m
    assert hit["certification"]["valid_end"] == e
    assert hit["seq"] == 2
    assert hit["level"] == "DETECTOR"
    # Another filter, instrument or tag has nothing.
    with pytest.raises(NotFoundError):
        reg.lookup(INSTRUMENT, "g_6", TAG, time_tai_ns=b)
    with pytest.raises(NotFoundError):
        reg.lookup(INSTRUMENT, FILTER, "nope", time_tai_ns=b)
    with pytest.raises(NotFoundError):
        reg.lookup("HSC", FILTER, TAG, time_tai_ns=b)
    with pytest.raises(InputError):
        reg.lookup(INSTRUMENT, FILTER, TAG)  # neither time nor exposure


# --------------------------------------------------------------------------- 4. by exposure
def test_lookup_by_exposure_matches_its_whole_timespan_and_checks_the_filter(pub) -> None:
    reg = pub.registry
    v1, v2 = pub.solve(), pub.solve()
    exps = pub.sim.exposures.sort_values("timespan_begin")
    ids = [int(x) for x in exps["id"]]
    starts = [int(x) for x in exps["timespan_begin"]]
    ends = [int(x) for x in exps["timespan_end"]]
    assert all(b < e for b, e in zip(starts, ends, strict=True))
    # v1 up to (excluding) the third exposure's start, v2 from exactly that instant.
    reg.certify(v1, TAG, starts[0], starts[2])
    reg.certify(v2, TAG, starts[2], None)
    got = [reg.lookup(INSTRUMENT, FILTER, TAG, exposure=i)["version_id"] for i in ids]
    assert got == [v1, v1, v2, v2]
    hit = reg.lookup(INSTRUMENT, None, TAG, exposure=ids[1])  # filter from the exposure
    assert hit["version_id"] == v1
    assert hit["physical_filter"] == FILTER
    assert hit["time_tai_ns"] == starts[1]
    assert hit["exposure_timespan"] == [starts[1], ends[1]]
    assert hit["exposure"] == ids[1]
    with pytest.raises(InputError, match=f"taken in {FILTER}"):
        reg.lookup(INSTRUMENT, "g_6", TAG, exposure=ids[0])
    with pytest.raises(NotFoundError, match="unknown exposure"):
        reg.lookup(INSTRUMENT, FILTER, TAG, exposure=1)
    with pytest.raises(InputError, match="not both"):
        reg.lookup(INSTRUMENT, FILTER, TAG, exposure=ids[0], time_tai_ns=starts[0])
    # Cutting out the single ns at the second exposure's start: the rest of its timespan is
    # still covered by v1, so the exposure still finds v1 (the butler's overlap rule).
    reg.decertify(TAG, INSTRUMENT, FILTER, starts[1], starts[1] + 1)
    assert reg.lookup(INSTRUMENT, FILTER, TAG, exposure=ids[1])["version_id"] == v1
    # Cutting out its whole timespan leaves it uncovered.
    reg.decertify(TAG, INSTRUMENT, FILTER, starts[1], ends[1])
    with pytest.raises(NotFoundError, match=f"exposure {ids[1]}"):
        reg.lookup(INSTRUMENT, FILTER, TAG, exposure=ids[1])
    assert reg.lookup(INSTRUMENT, FILTER, TAG, exposure=ids[0])["version_id"] == v1


def test_lookup_by_exposure_straddling_a_boundary_is_ambiguous(pub) -> None:
    reg = pub.registry
    v1, v2 = pub.solve(), pub.solve()
    exps = pub.sim.exposures.sort_values("timespan_begin")
    x = int(exps["id"].iloc[1])
    begin, end = int(exps["timespan_begin"].iloc[1]), int(exps["timespan_end"].iloc[1])
    mid = (begin + end) // 2
    reg.certify(v1, TAG, None, mid)  # unbounded begin: valid from the beginning
    reg.certify(v2, TAG, mid, None)
    with pytest.raises(AmbiguousLookupError, match=rf"versions {v1} .*, {v2} .*ambiguous") as info:
        reg.lookup(INSTRUMENT, FILTER, TAG, exposure=x)
    assert [c["version_id"] for c in info.value.candidates] == [v1, v2]
    # An instant is never ambiguous: just before mid is v1, mid itself v2.
    assert reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=mid - 1)["version_id"] == v1
    assert reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=mid)["version_id"] == v2
    # An exposure starting just before a range begins still matches it.
    reg.certify(v1, "late", begin + 1, None)
    assert reg.lookup(INSTRUMENT, FILTER, "late", exposure=x)["version_id"] == v1


# --------------------------------------------------------------------------- 5. as_of, explain
def test_as_of_reads_the_tag_before_and_after_a_decertify(pub) -> None:
    reg = pub.registry
    v1, v2 = pub.solve(), pub.solve()
    t0, t1, t2 = T_BASE, T_BASE + 100 * S, T_BASE + 200 * S
    before_all = dt.datetime.now(dt.UTC)
    _pause()
    first = reg.certify(v1, TAG, t0, None)
    _pause()
    after_certify = dt.datetime.now(dt.UTC)
    _pause()
    reg.decertify(TAG, INSTRUMENT, FILTER, t1, t2)
    _pause()
    after_decertify = dt.datetime.now(dt.UTC)
    _pause()
    reg.certify(v2, TAG, t1, t2)
    _pause()
    after_refill = dt.datetime.now(dt.UTC)

    mid = t1 + 5 * S
    with pytest.raises(NotFoundError, match="as of"):
        reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=mid, as_of=before_all)
    old = reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=mid, as_of=after_certify)
    assert old["version_id"] == v1
    assert old["certification"]["certification_id"] == first["certification_id"]
    with pytest.raises(NotFoundError):
        reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=mid, as_of=after_decertify)
    assert _lookup_version(reg, mid, as_of=after_refill) == v2
    assert _lookup_version(reg, mid) == v2  # the present
    # Outside the hole the answer is v1 throughout, from the original row, then from a piece.
    early = reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=t0, as_of=after_certify)
    late = reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=t0, as_of=after_decertify)
    assert early["version_id"] == late["version_id"] == v1
    assert early["certification"]["certification_id"] == first["certification_id"]
    assert late["certification"]["replaces_id"] == first["certification_id"]
    # The same instant with another UTC offset gives the same answer.
    shifted = after_certify.astimezone(dt.timezone(dt.timedelta(hours=-7)))
    assert _lookup_version(reg, mid, as_of=shifted) == v1
    shifted = after_decertify.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    with pytest.raises(NotFoundError):
        reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=mid, as_of=shifted)


def test_explain_lists_every_range_with_its_reason(pub) -> None:
    reg = pub.registry
    v1 = pub.solve()
    t0, t1, t2 = T_BASE, T_BASE + 100 * S, T_BASE + 200 * S
    first = reg.certify(v1, TAG, t0, None)
    _pause()
    between = dt.datetime.now(dt.UTC)
    _pause()
    reg.decertify(TAG, INSTRUMENT, FILTER, t1, t2)

    res = reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=t2, explain=True)
    considered = {c["certification_id"]: c for c in res["explain"]}
    assert len(considered) == 3
    closed = considered[first["certification_id"]]
    assert closed["matched"] is False
    assert closed["why"].startswith("decertified at")
    matched = [c for c in considered.values() if c["matched"]]
    assert len(matched) == 1
    assert matched[0]["certification_id"] == res["certification"]["certification_id"]
    assert (matched[0]["valid_begin"], matched[0]["valid_end"]) == (t2, None)
    assert matched[0]["why"] == "valid range contains the time"
    head = next(c for c in considered.values() if c["valid_end"] == t1)
    assert head["matched"] is False
    assert "end is exclusive" in head["why"]

    # A miss carries the explanation on the error.
    with pytest.raises(NotFoundError) as info:
        reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=t1, explain=True)
    whys = sorted(c["why"] for c in info.value.considered)
    assert len(whys) == 3
    assert not any(c["matched"] for c in info.value.considered)
    assert any("end is exclusive" in w for w in whys)
    assert any("begin is inclusive" in w for w in whys)
    assert any(w.startswith("decertified at") for w in whys)

    # As of before the decertify, the pieces were not there yet and the original matched.
    res = reg.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=t1, as_of=between, explain=True)
    assert res["certification"]["certification_id"] == first["certification_id"]
    by_id = {c["certification_id"]: c for c in res["explain"]}
    assert by_id[first["certification_id"]]["matched"] is True
    later = [c for k, c in by_id.items() if k != first["certification_id"]]
    assert [c["why"] for c in later] == ["certified after the as-of instant"] * 2


# --------------------------------------------------------------------------- 8. comparison gate
def test_comparison_gate_refuses_a_large_change_without_force(pub) -> None:
    reg = pub.registry
    v1 = pub.solve()
    det = int(reg.scales(v1)["detector"].iloc[10])
    pub.scale_detector(det, 1.3)  # that detector's response is 30% higher in the new inputs
    v2 = pub.solve()
    cmp = reg.compare(v1, v2)
    assert cmp["max_abs_rel_change"] > 0.25
    worst = cmp["worst"][0]
    assert int(worst["detector"]) == det

    t0, t1 = T_BASE, T_BASE + 100 * S
    reg.certify(v1, TAG, t0, t1)
    n_rows = len(reg.certifications(TAG, include_closed=True))
    with pytest.raises(ConflictError, match="--force") as info:
        reg.certify(v2, TAG, t1, None)
    assert f"version {v1}" in str(info.value)
    assert len(reg.certifications(TAG, include_closed=True)) == n_rows  # nothing written
    # A looser threshold lets it through without force (in another tag, same neighbour set-up).
    reg.certify(v1, "loose", t0, t1)
    loose = reg.certify(v2, "loose", t1, None, max_change=0.5)
    assert loose["comparison"]["exceeds_threshold"] is False

    res = reg.certify(v2, TAG, t1, None, force=True)
    assert res["comparison"]["old_version"] == v1
    assert res["comparison"]["new_version"] == v2
    assert res["comparison"]["exceeds_threshold"] is True
    with pub.engine.connect() as conn:
        stored = conn.execute(
            select(Certification.comparison).where(Certification.id == res["certification_id"])
        ).scalar_one()
        first_cmp = (
            conn.execute(select(Certification.comparison).where(Certification.valid_begin == t0))
            .scalars()
            .all()
        )
    assert first_cmp == [None, None]  # no neighbour, nothing to compare with
    assert stored["old_version"] == v1
    assert stored["new_version"] == v2
    assert stored["comparable"] is True
    assert stored["exceeds_threshold"] is True
    assert stored["threshold"] == pytest.approx(0.05)
    assert stored["max_abs_rel_change"] == pytest.approx(cmp["max_abs_rel_change"], rel=1e-12)
    assert stored["rms_rel_change"] == pytest.approx(cmp["rms_rel_change"], rel=1e-12)
    assert stored["n_matched"] == len(reg.scales(v1))
    assert int(stored["worst"][0]["detector"]) == det
    assert "table" not in stored
    assert _lookup_version(reg, t1) == v2


def test_comparison_gate_uses_the_following_range_when_none_precedes(pub) -> None:
    reg = pub.registry
    v1 = pub.solve()
    pub.scale_detector(int(reg.scales(v1)["detector"].iloc[0]), 0.8)
    v2 = pub.solve()
    t0, t1 = T_BASE, T_BASE + 100 * S
    reg.certify(v2, TAG, t1, None)
    with pytest.raises(ConflictError, match="--force"):
        reg.certify(v1, TAG, t0, t1)
    res = reg.certify(v1, TAG, t0, t1, force=True)
    assert res["comparison"]["old_version"] == v2
    # A version identical to its neighbour passes (the same solve again).
    v3 = pub.solve()
    assert reg.compare(v2, v3)["max_abs_rel_change"] == 0.0
    reg.decertify(TAG, INSTRUMENT, FILTER, t1 + 50 * S, None)
    res = reg.certify(v3, TAG, t1 + 50 * S, None)
    assert res["comparison"]["old_version"] == v2
    assert res["comparison"]["exceeds_threshold"] is False
