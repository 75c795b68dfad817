"""The command line, end to end on both backends: outputs, formats, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from calibreg_cli.main import app
from typer.testing import CliRunner

from calibreg.formats.cp_pipe import load_cp_pipe
from calibreg.services.simulate import simulate_flats
from tests.conftest import LSSTCAM_YAML

runner = CliRunner()


def cli(*args: str, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture
def loaded(db_url, lsstcam_spec, tmp_path):
    """A registry with LSSTCam, 5 simulated flats and their statistics, via the CLI."""
    cli("db", "upgrade", "--db", db_url)
    cli("ingest", "camera", LSSTCAM_YAML, "--instrument", "LSSTCam", "--db", db_url)
    sim = simulate_flats(lsstcam_spec, n_exposures=5, seed=7, n_missing_frames=1)
    exp = tmp_path / "exposures.csv"
    sim.exposures.to_csv(exp, index=False)
    stats = tmp_path / "stats.csv"
    sim.stats.to_csv(stats, index=False)
    cli("ingest", "exposures", exp, "--db", db_url)
    cli("ingest", "stats", stats, "--instrument", "LSSTCam", "--db", db_url)
    return {"db": db_url, "sim": sim, "stats": stats, "exposures": exp}


def test_listings_in_three_formats(loaded) -> None:
    db = loaded["db"]
    out = json.loads(cli("instruments", "--db", db, "--format", "json").stdout)
    assert out == [{"instrument": "LSSTCam", "detectors": 205, "amplifiers": 3216, "exposures": 5}]
    dets = json.loads(cli("detectors", "-i", "LSSTCam", "--db", db, "--format", "json").stdout)
    assert len(dets) == 205 and dets[0]["name"] == "R01_S00"
    csv = cli("exposures", "-i", "LSSTCam", "-f", "r_57", "--db", db, "--format", "csv").stdout
    frame = pd.read_csv(pd.io.common.StringIO(csv))
    assert len(frame) == 5 and frame["timespan_begin"].str.endswith("Z").all()
    assert "LSSTCam exposures" in cli("exposures", "-i", "LSSTCam", "--db", db).stdout


def test_reingest_says_nothing_changed(loaded) -> None:
    out = cli(
        "ingest", "stats", loaded["stats"], "--instrument", "LSSTCam", "--db", loaded["db"]
    ).stdout
    assert "nothing changed" in out


def test_bad_input_is_one_line_without_traceback(loaded, tmp_path) -> None:
    bad = pd.read_csv(loaded["stats"])
    bad["median"] = bad["median"].astype(object)
    bad.loc[7, "median"] = "abc"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    res = cli("ingest", "stats", path, "--instrument", "LSSTCam", "--db", loaded["db"], ok=False)
    assert res.exit_code != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert str(path) in lines[0] and "row 8" in lines[0] and "median" in lines[0]
    assert "Traceback" not in res.output
    missing = cli("ingest", "camera", tmp_path / "nope.yaml", "--db", loaded["db"], ok=False)
    assert missing.exit_code != 0 and "nope.yaml" in missing.stderr


def test_solve_versions_scales_history_export(loaded, tmp_path) -> None:
    db = loaded["db"]
    first = json.loads(
        cli("solve", "-i", "LSSTCam", "-f", "r_57", "--db", db, "--format", "json").stdout
    )
    assert first["shape"] == [189, 5] and first["converged"] and first["seq"] == 1
    amp = json.loads(
        cli(
            "solve",
            "-i",
            "LSSTCam",
            "-f",
            "r_57",
            "--level",
            "AMP",
            "--method",
            "robust",
            "--db",
            db,
            "--format",
            "json",
        ).stdout
    )
    assert amp["shape"] == [3024, 5] and amp["flagged_rows"] == 1
    second = json.loads(
        cli(
            "solve",
            "-i",
            "LSSTCam",
            "-f",
            "r_57",
            "--method",
            "alternating",
            "--db",
            db,
            "--format",
            "json",
        ).stdout
    )
    assert second["seq"] == 2

    listed = json.loads(cli("versions", "list", "--db", db, "--format", "json").stdout)
    assert [v["id"] for v in listed] == [
        first["version_id"],
        amp["version_id"],
        second["version_id"],
    ]
    shown = json.loads(
        cli("versions", "show", first["version_id"], "--db", db, "--format", "json").stdout
    )
    assert shown["provenance"]["inputs"]["exposures"] == sorted(
        int(e) for e in loaded["sim"].exposures["id"]
    )
    assert "flatNorm:solve" in shown["task_metadata"]["metadata"]
    assert shown["provenance"]["database"].split("?")[0] in db

    diff = json.loads(
        cli(
            "versions",
            "diff",
            first["version_id"],
            second["version_id"],
            "--db",
            db,
            "--format",
            "json",
        ).stdout
    )
    assert diff["n_matched"] == 189 and diff["max_abs_rel_change"] < 1e-6

    ver = json.loads(
        cli("versions", "verify", amp["version_id"], "--db", db, "--format", "json").stdout
    )
    assert ver["ok"] and ver["max_rel_diff"] <= 1e-12

    rows = json.loads(cli("scales", first["version_id"], "--db", db, "--format", "json").stdout)
    assert len(rows) == 189
    exps = json.loads(
        cli(
            "scales", first["version_id"], "--kind", "exposure", "--db", db, "--format", "json"
        ).stdout
    )
    assert len(exps) == 5

    hist = json.loads(
        cli(
            "history",
            "-i",
            "LSSTCam",
            "-f",
            "r_57",
            "--detector",
            "R22_S11",
            "--db",
            db,
            "--format",
            "json",
        ).stdout
    )
    assert [h["version"] for h in hist] == [first["version_id"], second["version_id"]]
    hist_amp = json.loads(
        cli(
            "history",
            "-i",
            "LSSTCam",
            "-f",
            "r_57",
            "--detector",
            "94",
            "--amp",
            "C10",
            "--db",
            db,
            "--format",
            "json",
        ).stdout
    )
    assert [h["version"] for h in hist_amp] == [amp["version_id"]]

    out = tmp_path / "amp.yaml"
    cli("export", amp["version_id"], "--format", "cp_pipe", "-o", out, "--db", db)
    structure = load_cp_pipe(out.read_text())
    assert set(structure) == {"expScale", "detScale"}
    assert len(structure["detScale"]) == 189
    assert all(len(a) == 16 for a in structure["detScale"].values())
    det = next(iter(structure["expScale"]))
    assert isinstance(det, int)
    amp_name = next(iter(structure["expScale"][det]))
    assert isinstance(amp_name, str) and len(structure["expScale"][det][amp_name]) == 5
    for v in (first["version_id"], amp["version_id"]):
        png = tmp_path / f"fp{v}.png"
        cli("plot", "focal-plane", v, "-o", png, "--db", db)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hist_png = tmp_path / "h.png"
    cli(
        "plot",
        "history",
        "-i",
        "LSSTCam",
        "-f",
        "r_57",
        "-d",
        "R22_S11",
        "-o",
        hist_png,
        "--db",
        db,
    )
    assert hist_png.stat().st_size > 1000
    as_json = cli("export", first["version_id"], "--db", db).stdout
    det_struct = json.loads(as_json)
    assert all(isinstance(v, float) for v in det_struct["detScale"].values())


def test_certify_lookup_decertify(loaded) -> None:
    db = loaded["db"]
    v = json.loads(
        cli("solve", "-i", "LSSTCam", "-f", "r_57", "--db", db, "--format", "json").stdout
    )["version_id"]
    cli(
        "certify", v, "--tag", "flat-norm/recommended", "--begin", "2026-01-01T00:00:00", "--db", db
    )
    exp = int(loaded["sim"].exposures["id"].iloc[2])
    hit = json.loads(
        cli(
            "lookup",
            "-i",
            "LSSTCam",
            "-t",
            "flat-norm/recommended",
            "--exposure",
            exp,
            "--db",
            db,
            "--format",
            "json",
        ).stdout
    )
    assert hit["version_id"] == v
    hit = json.loads(
        cli(
            "lookup",
            "-i",
            "LSSTCam",
            "-t",
            "flat-norm/recommended",
            "-f",
            "r_57",
            "--time",
            "2026-06-01T00:00:00Z",
            "--explain",
            "--db",
            db,
            "--format",
            "json",
        ).stdout
    )
    assert hit["version_id"] == v and hit["explain"][0]["matched"]
    miss = cli(
        "lookup",
        "-i",
        "LSSTCam",
        "-t",
        "flat-norm/recommended",
        "-f",
        "r_57",
        "--time",
        "2025-06-01T00:00:00Z",
        "--db",
        db,
        ok=False,
    )
    assert miss.exit_code != 0 and "nothing certified" in miss.stderr
    clash = cli(
        "certify",
        v,
        "--tag",
        "flat-norm/recommended",
        "--begin",
        "2026-03-01",
        "--db",
        db,
        ok=False,
    )
    assert clash.exit_code != 0 and "overlaps" in clash.stderr
    out = cli(
        "decertify",
        "--tag",
        "flat-norm/recommended",
        "-i",
        "LSSTCam",
        "-f",
        "r_57",
        "--begin",
        "2026-03-01",
        "--end",
        "2026-04-01",
        "--db",
        db,
    ).stdout
    assert "closed certification" in out
    tags = json.loads(cli("tags", "--db", db, "--format", "json").stdout)
    assert len(tags) == 2
    # The comparison gate: a new version for a later range is compared with its neighbour.
    v2 = json.loads(
        cli(
            "solve",
            "-i",
            "LSSTCam",
            "-f",
            "r_57",
            "--method",
            "alternating",
            "--max-iter",
            "2",
            "--tol",
            "0",
            "--db",
            db,
            "--format",
            "json",
        ).stdout
    )["version_id"]
    refused = cli(
        "certify",
        v2,
        "--tag",
        "flat-norm/recommended",
        "--begin",
        "2026-03-10",
        "--end",
        "2026-03-20",
        "--max-change",
        "0",
        "--db",
        db,
        ok=False,
    )
    assert refused.exit_code != 0 and "--force" in refused.stderr
    assert f"comparison with version {v}" in refused.stderr
    forced = cli(
        "certify",
        v2,
        "--tag",
        "flat-norm/recommended",
        "--begin",
        "2026-03-10",
        "--end",
        "2026-03-20",
        "--max-change",
        "0",
        "--force",
        "--db",
        db,
    )
    assert f"comparison with version {v}" in forced.stderr


def test_solve_with_no_matching_exposures_is_a_clear_error(loaded) -> None:
    res = cli(
        "solve",
        "-i",
        "LSSTCam",
        "-f",
        "r_57",
        "--select",
        "observation_reason=science",
        "--db",
        loaded["db"],
        ok=False,
    )
    assert res.exit_code != 0 and "no input exposures match" in res.stderr
    res = cli(
        "solve",
        "-i",
        "LSSTCam",
        "-f",
        "r_57",
        "--select",
        "colour=red",
        "--db",
        loaded["db"],
        ok=False,
    )
    assert res.exit_code != 0 and "cannot select on 'colour'" in res.stderr
    ok = json.loads(
        cli(
            "solve",
            "-i",
            "LSSTCam",
            "-f",
            "r_57",
            "--select",
            "observation_reason=FLAT",
            "--db",
            loaded["db"],
            "--format",
            "json",
        ).stdout
    )
    assert ok["exposures"] == 5


def test_out_of_date_schema_refused(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    res = cli("instruments", "--db", db, ok=False)
    assert res.exit_code != 0 and "calibreg db upgrade" in res.stderr


def test_help_is_fast_and_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, calibreg_cli.main\n"
        "heavy = [m for m in ('pandas', 'sqlalchemy', 'numpy', 'scipy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_console_script_error_exit(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("calibreg")
    if not exe.exists():
        pytest.skip("calibreg console script not installed next to this Python")
    res = subprocess.run(
        [
            str(exe),
            "ingest",
            "camera",
            str(tmp_path / "x.yaml"),
            "--db",
            f"sqlite:///{tmp_path / 'r.sqlite3'}",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_all_filters_in_parallel_workers(db_url, lsstcam_spec, tmp_path) -> None:
    cli("db", "upgrade", "--db", db_url)
    cli("ingest", "camera", LSSTCAM_YAML, "--instrument", "LSSTCam", "--db", db_url)
    for i, band in enumerate(("g_6", "r_57", "i_39")):
        sim = simulate_flats(lsstcam_spec, n_exposures=3, seed=i, physical_filter=band,
                             first_exposure=2026011500100 + 100 * i)  # fmt: skip
        sim.exposures["obs_id"] = [f"MC_C_{band}_{k}" for k in range(3)]
        exp, stats = tmp_path / f"e{i}.csv", tmp_path / f"s{i}.csv"
        sim.exposures.to_csv(exp, index=False)
        sim.stats.to_csv(stats, index=False)
        cli("ingest", "exposures", exp, "--db", db_url)
        cli("ingest", "stats", stats, "--db", db_url)
    out = json.loads(
        cli(
            "solve", "-i", "LSSTCam", "--all-filters", "-j", "2", "--db", db_url, "--format", "json"
        ).stdout
    )
    assert sorted(r["physical_filter"] for r in out) == ["g_6", "i_39", "r_57"]
    assert all("error" not in r and r["seq"] == 1 for r in out)
    assert len({r["version_id"] for r in out}) == 3


def test_no_command_help_shows_docstring_markup() -> None:
    """Help is for people: no reST ``literal`` or :role: markup leaks into any command's help."""
    import typer.main

    def commands(group, path):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):  # a group (Typer vendors its own Click)
                yield from commands(cmd, [*path, name])
            else:
                yield [*path, name]

    root = typer.main.get_command(app)
    seen = list(commands(root, []))
    assert len(seen) >= 30  # every leaf command, not an empty walk
    for path in seen:
        out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"}).stdout
        for markup in ("``", ":class:", ":func:", ":meth:", ":mod:"):
            assert markup not in out, (path, markup)


def test_command_help_paragraphs_wrap_as_paragraphs() -> None:
    """A docstring paragraph is one paragraph on screen, wrapped to the terminal's width.

    Typer kept the source's line breaks: at 80 columns each 96-column source line wrapped
    on its own ("... created,\\n certified\\n in); ..."). At 250 columns every prose paragraph
    must now be one line, and at 80 no prose line may be followed by a word that fits on it.
    """
    import inspect
    import itertools

    import typer.main

    def commands(group, path):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from commands(cmd, [*path, name])
            else:
                yield [*path, name], cmd

    root = typer.main.get_command(app)
    checked = 0
    for path, cmd in commands(root, []):
        doc = inspect.cleandoc(cmd.callback.__doc__ or "")
        wide = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"}).stdout
        lines = [line.strip() for line in wide.splitlines()]
        for para in doc.split("\n\n")[1:]:
            src = para.split("\n")
            if len(src) < 2 or any(s[:1].isspace() or s.startswith(("- ", "* ")) for s in src):
                continue
            joined = " ".join(s.strip() for s in src)
            if len(joined) > 240 or "[" in joined:  # longer than a line; Rich markup
                continue
            assert joined in lines, (path, joined)
            checked += 1
        narrow = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"}).stdout
        prose = [
            line for line in narrow.splitlines() if not line.lstrip().startswith(("│", "╭", "╰"))
        ]
        for line, nxt in itertools.pairwise(prose):
            words = nxt.split()
            if line.strip() and words and not line.strip().startswith("Usage:"):
                # Rich pads a side each: a line holds 78 characters after the first space.
                assert len(line.rstrip()) + 1 + len(words[0]) > 78, (path, line, nxt)
    assert checked >= 5  # multi-line paragraphs were found and checked
