"""What a person sees: every table fits 80 columns, flagged rows are named wherever scales are.

One sample registry per backend (LSSTCam, 5 simulated flats with a dead amplifier and a lost
frame; DETECTOR, AMP and a deliberately unconverged DETECTOR version; two tags), and every
table command run through Typer's runner at ``COLUMNS=80`` (Rich takes its width from it).
A table "fits" when no line is longer than the width, nothing was cut short (Rich's ``…``)
and the values a person needs (ids, names, tags) appear whole on one line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from io import StringIO

import pandas as pd
import pytest
import yaml
from calibreg_cli.main import app
from typer.testing import CliRunner

from calibreg.services.simulate import simulate_flats
from tests.conftest import LSSTCAM_YAML, _postgres_schema_url

runner = CliRunner()

TAG = "flat-norm/recommended"
LONG_TAG = "flat-norm/amp-level-recommended"


def cli(*args: object, width: int = 80, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": str(width)})
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def sample(request, tmp_path_factory, lsstcam_spec) -> Iterator[dict]:
    """The sample registry, built once per backend through the command line."""
    tmp = tmp_path_factory.mktemp("tables")
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp / 'registry.sqlite3'}"])
    else:
        urls = _postgres_schema_url(request.getfixturevalue("postgres_base_url"))
    db = next(urls)
    cli("db", "upgrade", "--db", db)
    cli("ingest", "camera", LSSTCAM_YAML, "--instrument", "LSSTCam", "--db", db)
    sim = simulate_flats(lsstcam_spec, n_exposures=5, seed=7, n_missing_frames=1)
    sim.exposures.to_csv(tmp / "exposures.csv", index=False)
    sim.stats.to_csv(tmp / "stats.csv", index=False)
    cli("ingest", "exposures", tmp / "exposures.csv", "--db", db)
    cli("ingest", "stats", tmp / "stats.csv", "--instrument", "LSSTCam", "--db", db)

    def solve(*extra: str) -> int:
        out = cli("solve", "-i", "LSSTCam", "-f", "r_57", *extra, "--db", db, "--format", "json")
        return int(json.loads(out.stdout)["version_id"])

    det = solve()
    amp = solve("--level", "AMP", "--method", "robust")
    rough = solve("--method", "alternating", "--max-iter", "2", "--tol", "0")
    cli("certify", det, "--tag", TAG, "--begin", "2026-01-01T00:00:00", "--db", db)
    cli(
        "certify",
        amp,
        "--tag",
        LONG_TAG,
        "--begin",
        "2026-01-01",
        "--end",
        "2026-06-01",
        "--db",
        db,
    )
    dets = json.loads(cli("detectors", "-i", "LSSTCam", "--db", db, "--format", "json").stdout)
    names = {int(d["id"]): d["name"] for d in dets}
    dead_det, dead_amp = sim.dead
    yield {
        "db": db,
        "sim": sim,
        "det": det,
        "amp": amp,
        "rough": rough,
        "dead_name": names[dead_det],
        "dead_detector": dead_det,
        "dead_amp": dead_amp,
        "detectors": dets,
        "tmp": tmp,
    }
    for _ in urls:  # drop the PostgreSQL schema
        pass


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def assert_fits(text: str, width: int, whole: list[str]) -> None:
    """No line longer than ``width``, nothing cut with an ellipsis, ``whole`` values on a line."""
    lines = lines_of(text)
    assert lines, "no output"
    too_long = [ln for ln in lines if len(ln) > width]
    assert not too_long, too_long
    assert "…" not in text, text
    for value in whole:
        assert any(value in ln for ln in lines), f"{value!r} not whole in:\n{text}"


def table_commands(s: dict) -> list[tuple[list[object], list[str]]]:
    """Every table command with the values its table must show whole."""
    exp_ids = [str(e) for e in s["sim"].exposures["id"]]
    obs_ids = list(s["sim"].exposures["obs_id"])
    dead = [s["dead_name"], s["dead_amp"], "no_data"]
    day = str(int(s["sim"].exposures["day_obs"].iloc[0]))
    serials = [d["serial"] for d in s["detectors"] if d["serial"]]
    names = [d["name"] for d in s["detectors"]]
    return [
        (["instruments"], ["LSSTCam", "3216"]),
        (["detectors", "-i", "LSSTCam"], names + serials),
        (["exposures", "-i", "LSSTCam"], exp_ids + obs_ids),
        (["exposures", "-i", "LSSTCam", "-f", "r_57"], exp_ids),
        (["versions", "list"], [TAG, LONG_TAG, "LSSTCam", "alternating"]),
        (["versions", "list", "--wide"], [TAG, LONG_TAG]),
        (["versions", "list", "--limit", "2"], [LONG_TAG, "alternating"]),
        (["versions", "show", s["amp"]], [*dead, "robust"]),
        (["versions", "diff", s["det"], s["rough"]], ["n_matched", "largest"]),
        (["versions", "diff", s["det"], s["rough"], "--all"], ["R01_S00", "R43_S22"]),
        (["scales", s["det"]], ["R01_S00", "R43_S22"]),
        (["scales", s["amp"]], [*dead, "R01_S00"]),
        (["scales", s["amp"], "--flagged"], dead),
        (["scales", s["det"], "--kind", "exposure"], exp_ids),
        (["scales", s["amp"], "--rejected"], ["clipped"]),
        (
            ["history", "-i", "LSSTCam", "-f", "r_57", "-d", s["dead_name"]],
            [s["dead_name"], "alternating"],
        ),
        (
            [
                "history",
                "-i",
                "LSSTCam",
                "-f",
                "r_57",
                "-d",
                s["dead_name"],
                "--amp",
                s["dead_amp"],
            ],
            dead,
        ),
        (["tags"], [TAG, LONG_TAG]),
        (["tags", "--history"], [TAG, LONG_TAG]),
        (["lookup", "-i", "LSSTCam", "-t", TAG, "--day-obs", day], exp_ids),
        (
            [
                "lookup",
                "-i",
                "LSSTCam",
                "-t",
                TAG,
                "-f",
                "r_57",
                "--time",
                "2026-03-01",
                "--explain",
            ],
            [TAG, "2026-01-01T00:00Z"],
        ),
    ]


def test_every_table_fits_80_columns_with_its_values_whole(sample) -> None:
    for args, whole in table_commands(sample):
        out = cli(*args, "--db", sample["db"], width=80).stdout
        try:
            assert_fits(out, 80, whole)
        except AssertionError as err:
            raise AssertionError(f"calibreg {' '.join(map(str, args))}: {err}") from None


def test_tags_fit_100_columns_with_every_column(sample) -> None:
    out = cli("tags", "--db", sample["db"], width=100).stdout
    assert_fits(out, 100, [TAG, LONG_TAG, "2026-01-01T00:00Z", "2026-06-01T00:00Z"])
    assert "certified" in out
    rows = json.loads(cli("tags", "--db", sample["db"], "--format", "json").stdout)
    for row in rows:  # who certified is shown at 100 columns (left out at 80)
        assert row["certified_by"] in out
    narrow = cli("tags", "--db", sample["db"], width=80)
    assert "left out at 80 columns: certified" in narrow.stderr


def test_versions_list_limit_gives_the_newest(sample) -> None:
    db = sample["db"]
    every = json.loads(cli("versions", "list", "--db", db, "--format", "json").stdout)
    ids = [v["id"] for v in every]
    assert ids == sorted(ids) and len(ids) == 3
    newest = json.loads(
        cli("versions", "list", "--limit", "2", "--db", db, "--format", "json").stdout
    )
    assert [v["id"] for v in newest] == ids[-2:]
    table = cli("versions", "list", "--limit", "1", "--db", db).stdout
    rows = [ln for ln in lines_of(table) if re.match(r"^\s*\d+\s", ln)]
    assert [int(r.split()[0]) for r in rows] == ids[-1:]


def test_versions_list_machine_output_keeps_every_column(sample) -> None:
    db = sample["db"]
    listed = json.loads(cli("versions", "list", "--db", db, "--format", "json").stdout)
    by_id = {v["id"]: v for v in listed}
    assert by_id[sample["det"]]["certified_in"] == [TAG]
    assert by_id[sample["amp"]]["certified_in"] == [LONG_TAG]
    assert by_id[sample["rough"]]["certified_in"] == []
    full_hash = by_id[sample["det"]]["content_hash"]
    assert re.fullmatch(r"[0-9a-f]{64}", full_hash)
    csv = pd.read_csv(StringIO(cli("versions", "list", "--db", db, "--format", "csv").stdout))
    for column in ("id", "seq", "instrument", "physical_filter", "level", "method"):
        assert column in csv.columns
    for column in ("n_exposures", "n_rows", "iterations", "converged", "rms", "content_hash"):
        assert column in csv.columns
    assert set(csv["content_hash"]) == {v["content_hash"] for v in listed}
    wide = cli("versions", "list", "--wide", "--db", db, width=160).stdout
    assert full_hash[:10] in wide and full_hash not in wide  # abbreviated for a person
    assert "rms" in wide and "iter" in wide


def _data_rows(text: str, first_column: set[str]) -> list[list[str]]:
    return [ln.split() for ln in lines_of(text) if ln.split() and ln.split()[0] in first_column]


def test_diff_summary_first_then_the_largest_changes(sample) -> None:
    db, det, rough = sample["db"], sample["det"], sample["rough"]
    rows = json.loads(cli("versions", "diff", det, rough, "--db", db, "--format", "json").stdout)[
        "rows"
    ]
    assert len(rows) == 189
    truth = sorted(rows, key=lambda r: -abs(r["rel_change"]))
    names = {r["detector_name"] for r in rows}
    out = cli("versions", "diff", det, rough, "--top", "5", "--db", db)
    text = out.stdout
    assert text.index("n_matched") < text.index("largest")  # the summary comes first
    shown = [r[0] for r in _data_rows(text, names)]
    assert shown == [r["detector_name"] for r in truth[:5]]
    assert "--all" in out.stderr
    default = _data_rows(cli("versions", "diff", det, rough, "--db", db).stdout, names)
    assert [r[0] for r in default] == [r["detector_name"] for r in truth[:20]]
    every = _data_rows(cli("versions", "diff", det, rough, "--all", "--db", db).stdout, names)
    assert sorted(r[0] for r in every) == sorted(names)
    csv = pd.read_csv(
        StringIO(cli("versions", "diff", det, rough, "--db", db, "--format", "csv").stdout)
    )
    assert len(csv) == 189 and {"scale_a", "scale_b", "rel_change", "flags_b"} <= set(csv)


def _line_with(text: str, *values: str) -> str:
    found = [ln for ln in lines_of(text) if all(v in ln for v in values)]
    assert found, f"no line with {values} in:\n{text}"
    return found[0]


def test_flagged_amplifier_named_with_its_reason_in_scales_history_show(sample) -> None:
    db, amp, name, dead = sample["db"], sample["amp"], sample["dead_name"], sample["dead_amp"]
    legend = "no_data: no usable entry"
    scales = cli("scales", amp, "--db", db).stdout
    _line_with(scales, name, dead, "no_data")
    assert legend in scales and "1 of 3024 row(s) flagged" in scales
    flagged_rows = json.loads(
        cli("scales", amp, "--flagged", "--db", db, "--format", "json").stdout
    )
    assert [(r["detector"], r["amp"], r["flag_names"]) for r in flagged_rows] == [
        (sample["dead_detector"], dead, "no_data")
    ]

    hist_args = ["history", "-i", "LSSTCam", "-f", "r_57", "-d", name, "--amp", dead]
    hist = cli(*hist_args, "--db", db).stdout
    assert name in hist and dead in hist
    _line_with(hist, str(amp), "robust", "no_data")
    assert legend in hist
    rows = json.loads(cli(*hist_args, "--db", db, "--format", "json").stdout)
    assert [(r["version"], r["detector_name"], r["flag_names"]) for r in rows] == [
        (amp, name, "no_data")
    ]
    # the same detector at DETECTOR level has live amplifiers: not flagged, no legend
    det_hist = cli("history", "-i", "LSSTCam", "-f", "r_57", "-d", name, "--db", db).stdout
    assert "no_data" not in det_hist

    show = cli("versions", "show", amp, "--db", db).stdout
    _line_with(show, name, dead, "no_data")
    assert legend in show
    assert "quality flags: none" in cli("versions", "show", sample["det"], "--db", db).stdout


def test_export_sidecar_names_flagged_rows_and_why(sample) -> None:
    db, amp = sample["db"], sample["amp"]
    out = sample["tmp"] / "amp_scales.yaml"
    res = cli("export", amp, "-o", out, "--db", db)
    side_path = out.with_name("amp_scales.calibreg.yaml")
    assert str(side_path) in res.stderr
    side = yaml.safe_load(side_path.read_text())
    record = json.loads(cli("versions", "show", amp, "--db", db, "--format", "json").stdout)
    assert side["calibreg_version_id"] == amp
    assert side["content_hash"] == record["content_hash"]
    assert side["scales_file"] == out.name
    flags = side["quality_flags"]
    assert flags["rows"] == [
        {
            "detector": sample["dead_detector"],
            "detector_name": sample["dead_name"],
            "amp": sample["dead_amp"],
            "flags": ["no_data"],
        }
    ]
    assert flags["n_rows"] == 1 and flags["exposures"] == []
    assert flags["help"]["no_data"].startswith("no usable entry")
    # JSON export: a JSON sidecar; --no-sidecar: none; stdout: the structure only
    as_json = sample["tmp"] / "det.json"
    cli("export", sample["det"], "-o", as_json, "--db", db)
    side_json = json.loads(as_json.with_name("det.calibreg.json").read_text())
    assert side_json["quality_flags"]["rows"] == [] and side_json["quality_flags"]["help"] == {}
    bare = sample["tmp"] / "bare.yaml"
    cli("export", amp, "-o", bare, "--no-sidecar", "--db", db)
    assert not bare.with_name("bare.calibreg.yaml").exists()
    assert set(json.loads(cli("export", amp, "--db", db).stdout)) == {"expScale", "detScale"}


def test_unknown_version_is_one_line(sample) -> None:
    for args in (["versions", "diff", 1, 999], ["scales", 999], ["versions", "list", "--limit", 0]):
        res = cli(*args, "--db", sample["db"], ok=False)
        assert res.exit_code != 0
        assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1, res.stderr
        assert "Traceback" not in res.output
