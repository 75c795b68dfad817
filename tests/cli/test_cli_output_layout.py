"""The terminal table layout of :func:`calibreg_cli.output.print_frame`, without a database."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from calibreg_cli.output import Column, Format, print_frame, short_instant

from calibreg.formats.timescale import format_instant, parse_time

SENTENCE = (
    "the lamp level drifted during the sequence so every exposure carries its own scale "
    "and each amplifier its gain ratio times the vignetting of the focal plane"
)
WORDS = SENTENCE.split()


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "exposure": [2026011500100 + i for i in range(4)],
            "detector": ["R22_S11", "R00_SG0", "R44_SW1", "R01_S00"],
            "note": [" ".join(WORDS[i : i + 9]) for i in range(4)],
            "scale": [1.0123456789, 0.987654321, float("nan"), 12345.678],
            "obs_id": [f"MC_C_20260115_{i:06d}" for i in range(4)],
        }
    )


COLUMNS = [
    Column("exposure", whole=True),
    Column("detector", whole=True),
    Column("scale"),
    Column("note", "what happened", whole=False),
    Column("obs_id", "observation id", whole=True, optional=True),
]


def render(monkeypatch, capsys, width: int, columns=COLUMNS, fmt=Format.table):
    monkeypatch.setenv("COLUMNS", str(width))
    print_frame(frame(), fmt, title="a table", columns=columns)
    return capsys.readouterr()


@pytest.mark.parametrize("width", [60, 72, 80, 100, 140])
def test_table_fits_and_cuts_no_word(monkeypatch, capsys, width) -> None:
    out = render(monkeypatch, capsys, width).out
    lines = out.splitlines()
    assert max(len(ln) for ln in lines) <= width
    assert "…" not in out
    tokens = {t for ln in lines for t in ln.split()}
    for word in WORDS[:12]:  # every word of the wrapped column is still one word
        assert word in tokens, (word, out)
    for value in ("2026011500100", "R44_SW1", "1.012346", "12345.68"):
        assert value in tokens, (value, out)


def test_optional_column_left_out_only_when_narrow(monkeypatch, capsys) -> None:
    wide = render(monkeypatch, capsys, 140)
    assert "MC_C_20260115_000003" in wide.out and not wide.err
    narrow = render(monkeypatch, capsys, 60)
    assert "MC_C_20260115_000003" not in narrow.out
    assert "left out at 60 columns: observation id" in narrow.err


def test_machine_formats_carry_every_column_exactly(monkeypatch, capsys) -> None:
    records = json.loads(render(monkeypatch, capsys, 40, fmt=Format.json).out)
    assert list(records[0]) == list(frame().columns)  # obs_id kept, no renames
    assert records[0]["scale"] == 1.0123456789 and records[2]["scale"] is None
    csv = render(monkeypatch, capsys, 40, fmt=Format.csv).out
    assert csv.splitlines()[0] == ",".join(frame().columns)
    assert "1.0123456789" in csv


def test_values_are_not_read_as_markup(monkeypatch, capsys) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    print_frame(pd.DataFrame({"tag": ["[bold]x[/bold]", "a[/]"]}), Format.table)
    out = capsys.readouterr().out
    assert "[bold]x[/bold]" in out and "a[/]" in out


@pytest.mark.parametrize(
    "ns",
    [
        1_768_446_000 * 10**9,  # whole minute
        1_768_446_023 * 10**9,  # whole second
        1_768_446_023 * 10**9 + 500_000_000,
        1_768_446_023 * 10**9 + 1,  # one nanosecond
        1_767_225_637 * 10**9,
    ],
)
def test_short_instant_is_exact(ns) -> None:
    text = format_instant(ns)
    short = short_instant(text)
    assert len(short) <= len(text)
    assert parse_time(short, field="t") == ns  # the same instant, to the nanosecond


def test_short_instant_leaves_other_text() -> None:
    assert short_instant("open") == "open"
    assert short_instant(None) == ""
    tai = "1960-01-01T00:00:00.000000000 TAI"
    assert short_instant(tai) == tai
