"""No silent wrong answers (issue 13): every hostile input ends in one line, nothing changed.

Each example of the issue is a test here, on both backends, plus a Hypothesis fuzz of every
command with hostile values. "Unchanged" is checked on the database's content: every row of
every calibreg table, read before and after.
"""

from __future__ import annotations

import os
import threading

import pytest
from calibreg_cli.main import app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from calibreg.client import Registry
from calibreg.errors import InputError, NotFoundError
from calibreg.formats.timescale import format_instant
from tests.publish.pubdata import FILTER, INSTRUMENT, T_BASE

runner = CliRunner()
TAG = "flat-norm/recommended"

#: With this set, each hostile case appends "backend ok|fail" to that file (for the counts
#: in the closing notes): ``CALIBREG_HOSTILE_LOG=/tmp/h.log pytest tests/publish/test_hostile.py``.
LOG = os.environ.get("CALIBREG_HOSTILE_LOG")


def snapshot(engine) -> dict[str, list]:
    """Every row of every table (sorted), the database's whole content."""
    with engine.connect() as conn:
        names = sorted(t for t in inspect(conn).get_table_names() if t != "alembic_version")
        return {t: sorted(map(repr, conn.execute(text(f"SELECT * FROM {t}")).all())) for t in names}


@pytest.fixture
def reg(pub):
    """``pub`` with a DETECTOR version certified in TAG from T_BASE on, and an AMP version."""
    v = pub.solve()
    pub.registry.certify(v, TAG, T_BASE, None)
    pub.amp_version = pub.solve(level="AMP")
    pub.version = v
    return pub


def hostile(pub, *args: str, match: str | None = None) -> str:
    """Run the CLI; assert a non-zero exit, one line on stderr, no traceback, nothing changed."""
    before = snapshot(pub.engine)
    result = runner.invoke(app, [*map(str, args), "--db", pub.url])
    after = snapshot(pub.engine)
    err = result.stderr
    if LOG:
        good = result.exit_code != 0 and len(err.strip().splitlines()) == 1 and after == before
        with open(LOG, "a") as fh:
            fh.write(f"cli {pub.backend} {'ok' if good else 'FAIL'} {args[0]}\n")
    assert result.exit_code not in (0, None), ("ACCEPTED: " + repr(args), err)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), (args, result.exception)
    lines = err.strip().splitlines()
    assert len(lines) == 1, (args, err)
    assert lines[0].startswith("error: ") and "internal error" not in lines[0], (args, err)
    assert "Traceback" not in err + result.stdout
    assert after == before, args
    if match is not None:
        assert match in lines[0], (match, lines[0])
    return lines[0]


def ok(pub, *args: str) -> str:
    result = runner.invoke(app, [*map(str, args), "--db", pub.url])
    assert result.exit_code == 0, (args, result.stdout, result.stderr, result.exception)
    return result.stdout


# --------------------------------------------------------------------------- kind 6: one line


def test_bad_times_name_the_real_reason(reg) -> None:
    hostile(reg, "solve", "-i", INSTRUMENT, "-f", FILTER, "--time", "garbage", match="--time")
    for when in ("1960-01-01", "2300-01-01"):
        hostile(reg, "lookup", "-i", INSTRUMENT, "-t", TAG, "-f", FILTER, "--time", when)
    line = hostile(reg, "certify", str(reg.version), "-t", "x", "--begin", "1970-01-01")
    assert "1972" in line and "not an ISO-8601" not in line
    line = hostile(reg, "certify", str(reg.version), "-t", "x", "--begin", "2300-01-01")
    assert "int64" in line
    hostile(reg, "solve", "-i", INSTRUMENT, "-f", FILTER, "--time", "2300-01-01/2301-01-01")


def test_export_to_a_directory_is_one_line(reg, tmp_path) -> None:
    hostile(reg, "export", str(reg.version), "-o", str(tmp_path), match=str(tmp_path))


def test_bad_databases_are_one_line(reg, tmp_path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database" * 100)
    cases = [
        ("::not a url::", "not a database URL"),
        ("postgresql://nobody@127.0.0.1:1/none", "cannot reach"),
        (f"sqlite:///{junk}", "not a SQLite database"),
        (f"sqlite:///{tmp_path}/missing/dir/r.sqlite3", "no registry at"),
    ]
    for url, match in cases:
        result = runner.invoke(app, ["instruments", "--db", url])
        assert result.exit_code != 0
        assert result.stderr.count("\n") == 1 and match in result.stderr, result.stderr
    # A read-only command with a mistyped SQLite path creates nothing.
    typo = tmp_path / "typo.sqlite3"
    result = runner.invoke(app, ["instruments", "--db", f"sqlite:///{typo}"])
    assert result.exit_code != 0 and "no registry at" in result.stderr
    assert not typo.exists()


def test_unknown_revision_and_guarded_downgrade(reg) -> None:
    hostile(reg, "db", "upgrade", "nope", match="unknown schema revision 'nope'")
    line = hostile(reg, "db", "downgrade", "0002", match="would destroy")
    assert "certification rows" in line and "--destroy-data" in line
    line = hostile(reg, "db", "downgrade", "base")
    assert "calibration_version rows" in line and "detector_stats rows" in line


def test_version_ids_outside_the_id_column_are_not_found(reg) -> None:
    for vid in (2**31, 2**63 - 1, 0):
        hostile(reg, "versions", "show", str(vid), match="no calibration version")
    for vid in (2**31, 2**40):
        with pytest.raises(NotFoundError):
            reg.registry.version(vid)
        with pytest.raises(NotFoundError):
            reg.registry.cp_pipe(vid)
    with pytest.raises(TypeError):
        reg.registry.version(1.0)  # type: ignore[arg-type]


def test_text_over_the_column_length_is_refused_on_both_backends(reg) -> None:
    line = hostile(reg, "certify", str(reg.version), "-t", "x" * 200, "--begin", "2030-01-01")
    assert "longer than the 128 allowed" in line
    with pytest.raises(InputError, match="longer than the 128"):
        reg.registry.certify(reg.version, "y" * 5000, "2031-01-01")
    # Below the interfaces, the column type itself refuses on SQLite as PostgreSQL does.
    from sqlalchemy import insert

    from calibreg.db.models import Tag
    from calibreg.db.session import transaction
    from calibreg.db.types import utcnow

    before = snapshot(reg.engine)
    with (
        pytest.raises(InputError, match="longer than the column's 128"),
        transaction(reg.engine) as conn,
    ):
        conn.execute(insert(Tag).values(name="z" * 200, created_at=utcnow()))
    assert snapshot(reg.engine) == before


def test_max_change_must_be_a_finite_threshold(reg) -> None:
    for bad in ("nan", "inf", "-0.1"):
        hostile(
            reg,
            "certify",
            str(reg.amp_version),
            "-t",
            TAG,
            "--begin",
            "2030-01-01",
            "--max-change",
            bad,
            match="max_change",
        )


def test_all_filters_reports_the_failed_filter_and_keeps_the_others(reg, tmp_path) -> None:
    # A second filter with one exposure and no statistics: its solve fails.
    exp = reg.sim.exposures.iloc[[0]].copy()
    exp["id"] = 9_000_000_000_001
    exp["obs_id"] = "other-filter"
    exp["physical_filter"] = "g_6"
    path = tmp_path / "g.csv"
    exp.to_csv(path, index=False)
    ok(reg, "ingest", "exposures", path)
    n = len(reg.registry.versions())
    result = runner.invoke(app, ["solve", "-i", INSTRUMENT, "--all-filters", "--db", reg.url])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: solved 1 of 2 filters; failed: g_6: ")
    assert len(reg.registry.versions()) == n + 1  # r_57's version is kept and was reported
    assert "version" in result.stdout


def test_identical_ingests_racing_both_succeed(reg, tmp_path) -> None:
    exp = reg.sim.exposures.copy()
    exp["id"] = exp["id"] + 10_000
    exp["obs_id"] = exp["obs_id"] + "-race"
    path = tmp_path / "race.csv"
    exp.to_csv(path, index=False)
    from calibreg.formats import read_exposures

    frame = read_exposures(path)
    barrier = threading.Barrier(2)
    reports, errors = [], []

    def ingest() -> None:
        with Registry(reg.url) as r:
            r.versions()
            barrier.wait(timeout=30)
            try:
                reports.append(r.ingest_exposures(frame, source=str(path), sha256="race"))
            except Exception as err:
                errors.append(err)

    threads = [threading.Thread(target=ingest) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(r.n_inserted for r in reports) == [0, len(exp)]


def test_reingest_with_blank_optional_integers(reg, tmp_path) -> None:
    exp = reg.sim.exposures.iloc[[0, 1]].copy()
    exp["id"] = exp["id"] + 20_000
    exp["obs_id"] = exp["obs_id"] + "-blank"
    exp["seq_num"] = [None, 3]
    exp["day_obs"] = [20260115, None]
    path = tmp_path / "blank.csv"
    exp.to_csv(path, index=False)
    ok(reg, "ingest", "exposures", path)
    assert "nothing changed" in ok(reg, "ingest", "exposures", path)


# --------------------------------------------------------------------------- kind 7: not ignored


def test_unknown_names_and_conflicting_options_are_errors(reg) -> None:
    hostile(
        reg,
        "history",
        "-i",
        INSTRUMENT,
        "-f",
        FILTER,
        "--detector",
        "0",
        "--amp",
        "C99",
        match="no amplifier 'C99'",
    )
    hostile(
        reg,
        "plot",
        "history",
        "-i",
        INSTRUMENT,
        "-f",
        "g_6",
        "--detector",
        "0",
        match="nothing to plot",
    )
    x = int(reg.sim.exposures["id"].iloc[0])
    hostile(
        reg,
        "lookup",
        "-i",
        INSTRUMENT,
        "-t",
        TAG,
        "--exposure",
        str(x),
        "--time",
        "2026-01-15T03:00:00Z",
        match="not both",
    )
    hostile(reg, "solve", "-i", INSTRUMENT, "-f", FILTER, "--level", "amplifier")
    # Vocabularies parse case-insensitively everywhere.
    out = ok(reg, "solve", "-i", INSTRUMENT, "-f", FILTER, "--level", "amp", "--format", "json")
    assert '"level": "AMP"' in out


def test_run_quantum_refuses_a_conflicting_level(reg) -> None:
    from calibreg.task import FlatNormalizationTask

    task = FlatNormalizationTask()
    before = snapshot(reg.engine)
    with pytest.raises(InputError, match=r"conflicts with config\.level DETECTOR"):
        task.runQuantum(
            reg.registry, {"instrument": INSTRUMENT, "physical_filter": FILTER, "level": "AMP"}
        )
    with pytest.raises(InputError, match="unknown key"):
        task.runQuantum(
            reg.registry, {"instrument": INSTRUMENT, "physical_filter": FILTER, "levle": "AMP"}
        )
    assert snapshot(reg.engine) == before


# --------------------------------------------------------------------------- kind 8: the client


def test_client_times_are_validated_never_a_wrong_version(reg) -> None:
    r = reg.registry
    with pytest.raises(InputError, match="1972"):
        r.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns="1900-01-01")
    with pytest.raises(TypeError):
        r.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=1.8e18)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        r.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=True)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="int64"):
        r.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=2**63)
    import datetime as dt

    with pytest.raises(InputError, match="naive"):
        r.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=dt.datetime(2030, 1, 1))
    when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    by_dt = r.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns=when)
    by_iso = r.lookup(INSTRUMENT, FILTER, TAG, time_tai_ns="2030-01-01T00:00:00Z")
    assert by_dt["version_id"] == by_iso["version_id"] == reg.version
    assert by_dt["time_tai_ns"] == by_iso["time_tai_ns"]


# --------------------------------------------------------------------------- kind 9, 10: times


def test_people_read_iso_times_everywhere(reg) -> None:
    line = hostile(reg, "certify", str(reg.version), "-t", TAG, "--begin", "2030-01-01")
    assert format_instant(T_BASE) in line and str(T_BASE) not in line
    out = ok(reg, "lookup", "-i", INSTRUMENT, "-t", TAG, "-f", FILTER, "--time", "2030-01-01")
    assert "2030-01-01T00:00:00.000000000Z" in out and format_instant(T_BASE) in out
    import json

    got = json.loads(
        ok(
            reg,
            "lookup",
            "-i",
            INSTRUMENT,
            "-t",
            TAG,
            "-f",
            FILTER,
            "--time",
            "2030-01-01",
            "--format",
            "json",
        )
    )
    cert = got["certification"]
    assert cert["valid_begin"] == T_BASE and cert["valid_begin_str"] == str(T_BASE)
    assert cert["valid_begin_utc"] == format_instant(T_BASE)
    assert cert["valid_end"] is None and cert["valid_end_utc"] is None


def test_unbounded_begin_on_every_interface(reg) -> None:
    ok(
        reg,
        "certify",
        str(reg.amp_version),
        "-t",
        "curated",
        "--begin",
        "unbounded",
        "--end",
        "2020-01-01",
    )
    out = ok(reg, "tags", "--tag", "curated", "--format", "csv")
    assert "unbounded" in out
    out = ok(
        reg,
        "lookup",
        "-i",
        INSTRUMENT,
        "-t",
        "curated",
        "-f",
        FILTER,
        "--time",
        "1999-01-01",
        "--explain",
    )
    assert "unbounded" in out and str(reg.amp_version) in out
    # Decertify is repeatable (a no-op where nothing is certified), across every filter.
    assert "closed certification" in ok(
        reg, "decertify", "-t", "curated", "-i", INSTRUMENT, "--begin", "unbounded"
    )
    for _ in range(2):
        assert "nothing to decertify" in ok(
            reg, "decertify", "-t", "curated", "-i", INSTRUMENT, "--begin", "unbounded"
        )


# --------------------------------------------------------------------------- kind 5: the demo


def test_demo_never_touches_the_configured_registry(reg, tmp_path, monkeypatch) -> None:
    from calibreg.services.demo import run_demo

    monkeypatch.setenv("CALIBREG_DATABASE_URL", reg.url)
    before = snapshot(reg.engine)
    with pytest.raises(Exception, match="already holds calibreg data"):
        run_demo(reg.url, n_exposures=3, workdir=tmp_path / "d")
    assert snapshot(reg.engine) == before


# --------------------------------------------------------------------------- the fuzz

NOT_TIME = st.one_of(
    st.text(max_size=40).filter(
        lambda s: (
            not s[:4].isdigit()
            and s.strip().lower()
            not in ("unbounded", "-inf", "min", "beginning", "open", "inf", "+inf", "max")
        )
    ),
    st.integers(1, 1971).map(lambda y: f"{y:04d}-06-01T00:00:00Z"),
    st.integers(2263, 9999).map(lambda y: f"{y:04d}-06-01"),
    st.sampled_from(["nan", "NaT", "2026-13-01", "2026-02-30", "2026-01-01T25:00", "1e18"]),
)
NOT_WALLCLOCK = st.one_of(
    st.text(max_size=40).filter(lambda s: not s[:4].isdigit()),
    st.sampled_from(["2026-13-01", "2026-02-30", "2026-01-01T25:00", "nan", "1e18"]),
)
BAD_ID = st.one_of(
    st.integers(min_value=2**31, max_value=2**70),
    st.integers(max_value=0, min_value=-(2**70)),
    st.integers(1000, 2**31 - 1),  # legal but absent
)
NOT_NAME = st.text(min_size=1, max_size=300).filter(
    lambda s: s not in (INSTRUMENT, FILTER) and not s.startswith("-")
)
NOT_FLOAT_OK = st.sampled_from(["nan", "inf", "-inf", "-1", "abc", "1e999"])


def _cases(v: int) -> st.SearchStrategy[list[str]]:
    """A command line with one hostile value, drawn per command."""
    return st.one_of(
        NOT_TIME.map(lambda t: ["solve", "-i", INSTRUMENT, "-f", FILTER, "--time", f"{t}/{t}"]),
        NOT_TIME.map(lambda t: ["lookup", "-i", INSTRUMENT, "-t", TAG, "-f", FILTER, "--time", t]),
        NOT_TIME.map(lambda t: ["certify", str(v), "-t", "fz", "--begin", t]),
        NOT_TIME.map(lambda t: ["decertify", "-t", TAG, "-i", INSTRUMENT, "--begin", t]),
        NOT_WALLCLOCK.map(
            lambda t: [
                "lookup",
                "-i",
                INSTRUMENT,
                "-t",
                TAG,
                "-f",
                FILTER,
                "--time",
                "2030-01-01",
                "--as-of",
                t,
            ]
        ),
        BAD_ID.map(lambda i: ["versions", "show", str(i)]),
        BAD_ID.map(lambda i: ["scales", str(i)]),
        BAD_ID.map(lambda i: ["export", str(i)]),
        BAD_ID.map(lambda i: ["versions", "verify", str(i)]),
        BAD_ID.map(lambda i: ["certify", str(i), "-t", "fz", "--begin", "2030-01-01"]),
        NOT_NAME.map(lambda n: ["exposures", "-i", n]),
        NOT_NAME.map(lambda n: ["solve", "-i", n, "-f", FILTER]),
        NOT_NAME.map(lambda n: ["solve", "-i", INSTRUMENT, "-f", n]),
        NOT_NAME.map(lambda n: ["history", "-i", INSTRUMENT, "-f", FILTER, "--detector", n]),
        NOT_NAME.map(
            lambda n: ["lookup", "-i", INSTRUMENT, "-t", n, "-f", FILTER, "--time", "2030-01-01"]
        ),
        NOT_NAME.map(lambda n: ["solve", "-i", INSTRUMENT, "-f", FILTER, "--method", n]),
        NOT_NAME.map(lambda n: ["solve", "-i", INSTRUMENT, "-f", FILTER, "--weights", n]),
        NOT_NAME.map(lambda n: ["db", "upgrade", n]),
        NOT_NAME.map(lambda n: ["db", "downgrade", n]),
        NOT_NAME.map(lambda n: ["ingest", "stats", f"/nonexistent/{n}"]),
        NOT_FLOAT_OK.map(
            lambda f: ["certify", str(v), "-t", TAG, "--begin", "2040-01-01", "--max-change", f]
        ),
        NOT_FLOAT_OK.map(lambda f: ["solve", "-i", INSTRUMENT, "-f", FILTER, "--tol", f]),
        NOT_FLOAT_OK.map(lambda f: ["solve", "-i", INSTRUMENT, "-f", FILTER, "--clip-sigma", f]),
        st.text(max_size=30).map(
            lambda s: ["solve", "-i", INSTRUMENT, "-f", FILTER, "--exposures", s + ",x"]
        ),
        st.text(max_size=30).map(
            lambda s: ["solve", "-i", INSTRUMENT, "-f", FILTER, "--day-obs", "x" + s]
        ),
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzz_every_command_with_hostile_values(reg, data) -> None:
    args = data.draw(_cases(reg.version))
    hostile(reg, *args)


def test_versions_show_gives_the_selection_times_readably_and_verify_still_works(reg) -> None:
    import json

    out = ok(
        reg,
        "solve",
        "-i",
        INSTRUMENT,
        "-f",
        FILTER,
        "--time",
        "2026-01-15T00:00:00Z/2026-01-16T00:00:00Z",
        "--format",
        "json",
    )
    v = json.loads(out)["version_id"]
    shown = json.loads(ok(reg, "versions", "show", str(v), "--format", "json"))
    sel = shown["selection"]
    assert sel["time_begin_utc"] == "2026-01-15T00:00:00.000000000Z"
    assert sel["time_begin_str"] == str(sel["time_begin"])
    assert json.loads(ok(reg, "versions", "verify", str(v), "--format", "json"))["ok"] is True


def test_found_by_a_fresh_user(reg) -> None:
    """What a new user broke: each is now one line and nothing changed."""
    # An empty or unknown filter is not "nothing to decertify".
    for bad in ("", "nosuchfilter", " r_57"):
        hostile(
            reg,
            "decertify",
            "-t",
            TAG,
            "-i",
            INSTRUMENT,
            "-f",
            bad,
            "--begin",
            "unbounded",
            match="unknown filter",
        )
    # Tag names people can type back.
    for bad, why in [
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("a\nb", "control"),
        ("a\x1b[31mred", "control"),
        (" padded", "leading"),
        ("x" * 100_000, "longer than the 128"),
    ]:
        hostile(reg, "certify", str(reg.version), "-t", bad, "--begin", "2030-01-01", match=why)
    # Integers beyond 64 bits are input errors, not internal ones.
    for args in (
        ["lookup", "-i", INSTRUMENT, "-t", TAG, "--exposure", str(10**23)],
        ["history", "-i", INSTRUMENT, "-f", FILTER, "--detector", str(10**20)],
    ):
        line = hostile(reg, *args)
        assert "64-bit" in line or "out of range" in line, line
    hostile(
        reg, "solve", "-i", INSTRUMENT, "-f", FILTER, "--exposures", "1,1,1", match="given twice"
    )
