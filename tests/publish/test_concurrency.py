"""Racing writers and interrupted solves (issue #5), on SQLite and PostgreSQL.

* two processes certifying overlapping ranges in one tag at the same instant: exactly one wins,
  the other gets a clean ConflictError (PostgreSQL: exclusion constraint; SQLite: the write
  lock serializes the two transactions);
* eight ``calibreg solve`` processes on one quantum: all succeed, with sequence numbers 1..8;
* a solve failing (exception) or dying (SIGKILL) while persisting leaves no partial version.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

import calibreg.registry.versions as versions_module
from tests.publish import workers
from tests.publish.pubdata import FILTER, INSTRUMENT, T_BASE

S = 1_000_000_000
CALIBREG = Path(sys.executable).with_name("calibreg")
VERSION_TABLES = ("calibration_version", "version_exposure", "version_row", "quantum")


def _counts(pub) -> dict[str, int]:
    return {t: pub.count(t) for t in VERSION_TABLES}


# --------------------------------------------------------------------------- 7. certify race
def test_parallel_certify_race_has_exactly_one_winner_per_round(pub) -> None:
    reg = pub.registry
    v1, v2 = pub.solve(), pub.solve()  # identical scales: the comparison gate passes
    rounds = 4
    tag = "race"  # one tag for every round (round 0 also races to create the tag)
    base = [T_BASE + r * 1000 * S for r in range(rounds)]
    ranges = {
        v1: [(tag, b, b + 100 * S) for b in base],
        v2: [(tag, b + 50 * S, b + 150 * S if r % 2 else None) for r, b in enumerate(base)],
    }
    # The open-ended ranges of v2 would swallow later rounds: give each round its own tag then.
    for r in range(rounds):
        if r % 2 == 0:
            ranges[v1][r] = (f"{tag}-{r}", *ranges[v1][r][1:])
            ranges[v2][r] = (f"{tag}-{r}", *ranges[v2][r][1:])
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=workers.certify_rounds, args=(pub.url, v, ranges[v], barrier, queue))
        for v in (v1, v2)
    ]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=120) for _ in range(2 * rounds)]
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()

    winners = {}
    for rnd in range(rounds):
        got = sorted((r for r in results if r[0] == rnd), key=lambda r: r[2] != "ok")
        assert len(got) == 2, got
        (_, win, ok, _), (_, lose, err, msg) = got
        assert ok == "ok", got
        assert err == "ConflictError", got
        assert "overlap" in msg.lower(), msg
        assert "\n" not in msg
        winners[rnd] = (win, lose)

    for rnd, (tag_name, begin, _) in enumerate(ranges[v1]):
        active = [
            c for c in reg.certifications(tag_name) if c["valid_begin"] in (begin, begin + 50 * S)
        ]
        assert len(active) == 1, (rnd, active)
        assert active[0]["version_id"] == winners[rnd][0]
        assert (
            len(
                [
                    c
                    for c in reg.certifications(tag_name, include_closed=True)
                    if c["valid_begin"] in (begin, begin + 50 * S)
                ]
            )
            == 1
        )
    # Lookups agree with the winner of each round.
    for rnd, b in enumerate(base):
        tag_name = ranges[v1][rnd][0]
        assert (
            reg.lookup(INSTRUMENT, FILTER, tag_name, time_tai_ns=b + 60 * S)["version_id"]
            == winners[rnd][0]
        )


# --------------------------------------------------------------------------- 9. eight solves
def test_eight_concurrent_cli_solves_get_sequence_numbers_1_to_8(pub) -> None:
    """Eight on PostgreSQL (the shared registry); four on SQLite, whose single writer lock
    serializes the persists anyway (eight there only cost time on a small machine)."""
    assert CALIBREG.exists()
    n = 8 if pub.backend == "postgresql" else 4
    cmd = [
        str(CALIBREG),
        "solve",
        "-i",
        INSTRUMENT,
        "-f",
        FILTER,
        "--db",
        pub.url,
        "--format",
        "json",
    ]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=180)
            outputs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for rc, _out, err in outputs:
        assert rc == 0, err
    results = [json.loads(out) for _, out, _ in outputs]
    assert sorted(r["seq"] for r in results) == list(range(1, n + 1))
    ids = {r["version_id"] for r in results}
    assert len(ids) == n
    assert len({r["content_hash"] for r in results}) == 1  # the same inputs, the same result
    frame = pub.registry.versions()
    assert len(frame) == n
    assert sorted(frame["seq"]) == list(range(1, n + 1))
    assert pub.count("quantum") == 1
    from sqlalchemy import text

    with pub.engine.connect() as conn:
        quanta = conn.execute(text("SELECT DISTINCT quantum_id FROM calibration_version")).all()
        per_version = conn.execute(
            text("SELECT version_id, count(*) FROM version_row GROUP BY version_id")
        ).all()
    assert len(quanta) == 1
    assert sorted(int(i) for i, _ in per_version) == sorted(ids)
    assert {int(n) for _, n in per_version} == {results[0]["rows"]}


# --------------------------------------------------------------------------- 10. atomic persist
def test_failure_during_persist_leaves_no_partial_version(pub, monkeypatch) -> None:
    v1 = pub.solve()
    before = _counts(pub)
    real = versions_module.bulk_insert
    calls: list[str] = []

    def failing(conn, table, frame, columns):
        calls.append(table)
        if len(calls) >= 2:
            raise RuntimeError("disk full (simulated)")
        return real(conn, table, frame, columns)

    monkeypatch.setattr(versions_module, "bulk_insert", failing)
    # An existing quantum: the second version of it.
    with pytest.raises(RuntimeError, match="simulated"):
        pub.solve()
    assert calls == ["version_exposure", "version_row"]
    assert _counts(pub) == before
    # A new quantum (AMP level): its quantum row goes too, having been written in the same
    # transaction.
    calls.clear()
    with pytest.raises(RuntimeError, match="simulated"):
        pub.solve(level="AMP")
    assert _counts(pub) == before
    monkeypatch.setattr(versions_module, "bulk_insert", real)

    # Nothing is left behind: the next solves take the next sequence numbers, complete.
    v2 = pub.solve()
    v3 = pub.solve(level="AMP")
    reg = pub.registry
    assert reg.version(v1)["seq"] == 1
    assert reg.version(v2)["seq"] == 2
    assert reg.version(v3)["seq"] == 1
    assert len(reg.scales(v2)) == len(reg.scales(v1))
    assert len(reg.scales(v2, "exposure")) == len(pub.sim.exposures)


def test_solve_killed_during_persist_leaves_no_partial_version(pub) -> None:
    before = _counts(pub)
    proc = subprocess.run(
        [sys.executable, workers.__file__, pub.url],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == -9, (proc.returncode, proc.stdout, proc.stderr)
    assert "survived" not in proc.stdout
    assert _counts(pub) == before == dict.fromkeys(VERSION_TABLES, 0)
    # The registry is usable at once: no lock or half-written row remains.
    res = pub.solve()
    reg = pub.registry
    assert reg.version(res)["seq"] == 1
    assert len(reg.scales(res, "exposure")) == len(pub.sim.exposures)
    assert pub.count("quantum") == 1


# --------------------------------------------------------------------------- racing decertify
# Regression: a second decertify of the same range used to fail on PostgreSQL.


def test_concurrent_decertify_of_one_range_is_serialized(pub, request) -> None:
    import threading
    import time

    from sqlalchemy import text

    from calibreg.db.session import make_engine, transaction
    from calibreg.registry import tags

    reg = pub.registry
    v1 = pub.solve()
    t0 = T_BASE
    reg.certify(v1, "t", t0, None)
    other = make_engine(pub.url)
    outcome: dict = {}

    def second() -> None:
        try:
            with transaction(other) as conn:
                if conn.dialect.name == "postgresql":
                    outcome["pid"] = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                tags.decertify(conn, "t", INSTRUMENT, FILTER, t0 + 30 * S, t0 + 40 * S, user="test")
            outcome["ok"] = True
        except Exception as err:
            outcome["error"] = err

    thread = threading.Thread(target=second)
    try:
        with transaction(pub.engine) as conn:
            tags.decertify(conn, "t", INSTRUMENT, FILTER, t0 + 10 * S, t0 + 20 * S, user="test")
            thread.start()
            # Commit only once the second writer is waiting for us.
            deadline = time.monotonic() + 20
            if pub.backend == "postgresql":
                with pub.engine.connect() as watch:
                    while time.monotonic() < deadline:
                        pid = outcome.get("pid")
                        state = (
                            pid
                            and watch.execute(
                                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"),
                                {"p": pid},
                            ).scalar_one_or_none()
                        )
                        if state == "Lock" or "error" in outcome:
                            break
                        time.sleep(0.05)
            else:
                time.sleep(0.5)  # the second BEGIN IMMEDIATE waits on busy_timeout
            assert "ok" not in outcome
        thread.join(timeout=60)
    finally:
        thread.join(timeout=60)
        other.dispose()
    assert outcome.get("ok") is True, outcome.get("error")
    active = sorted((c["valid_begin"], c["valid_end"]) for c in reg.certifications("t"))
    assert active == [(t0, t0 + 10 * S), (t0 + 20 * S, t0 + 30 * S), (t0 + 40 * S, None)]
