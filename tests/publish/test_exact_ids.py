"""Integers are exact end to end (issue 13, kind 1): ids and TAI ns never pass through float64.

Ids near 2**62 are legal int64 values that float64 cannot tell apart (its spacing there is
1024), so any float step in assembly, listing, client, CLI or HTTP shows up here as a wrong
or missing row.
"""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from calibreg_cli.main import app
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from calibreg.formats import read_exposures, read_stats
from calibreg.formats.timescale import format_instant
from calibreg.http.app import create_app
from calibreg.services.solve import SolveRequest, solve_quantum
from tests.publish.pubdata import FILTER, INSTRUMENT

runner = CliRunner()
BIG = 2**62


def _big_copy(pub, tmp_path, filt: str, base: int) -> list[int]:
    """Ingest the flats again as new exposures with ids ``base + 3k`` in filter ``filt``."""
    sim = pub.sim
    old = [int(x) for x in sim.exposures["id"]]
    new = {o: base + 3 * k for k, o in enumerate(sorted(old))}
    exp = sim.exposures.copy()
    exp["id"] = [new[int(x)] for x in exp["id"]]
    exp["obs_id"] = exp["obs_id"] + f"-{filt}"
    exp["physical_filter"] = filt
    stats = sim.stats.copy()
    stats["exposure"] = [new[int(x)] for x in stats["exposure"]]
    # Write ids as text so the files hold them exactly (pandas writes int64 columns exactly).
    epath, spath = tmp_path / f"{filt}-exp.csv", tmp_path / f"{filt}-stats.csv"
    exp.to_csv(epath, index=False)
    stats.to_csv(spath, index=False)
    pub.registry.ingest_exposures(read_exposures(epath), source=str(epath), sha256=filt)
    pub.registry.ingest_stats(
        read_stats(spath), source=str(spath), sha256=filt + "s", instrument=INSTRUMENT
    )
    return sorted(new.values())


def test_quantum_with_ids_near_2_62_is_assembled_exactly(pub, tmp_path) -> None:
    ids = _big_copy(pub, tmp_path, "big_ids", BIG + 1)
    assert len({float(i) for i in ids}) < len(ids)  # float64 would merge some of these ids
    ref = solve_quantum(pub.registry, SolveRequest(INSTRUMENT, FILTER))["version_id"]
    got = solve_quantum(pub.registry, SolveRequest(INSTRUMENT, "big_ids"))["version_id"]
    a, b = pub.registry.version(ref), pub.registry.version(got)
    assert b["n_missing"] == a["n_missing"]
    ga, gb = pub.registry.scales(ref), pub.registry.scales(got)
    np.testing.assert_array_equal(ga["scale"].to_numpy(), gb["scale"].to_numpy())
    ea, eb = pub.registry.scales(ref, kind="exposure"), pub.registry.scales(got, kind="exposure")
    assert list(eb["exposure"]) == ids  # exact, in order
    np.testing.assert_array_equal(ea["scale"].to_numpy(), eb["scale"].to_numpy())
    # The HTTP API hands the same ids over in JSON, CSV and Parquet.
    with TestClient(create_app(pub.registry)) as http:
        body = http.get(f"/versions/{got}/scales", params={"kind": "exposure"}).json()
        assert [item["exposure"] for item in body["items"]] == ids
        csv = http.get(f"/versions/{got}/scales", params={"kind": "exposure", "format": "csv"})
        assert [int(x) for x in csv.text.splitlines()[1:] for x in [x.split(",")[0]]] == ids
        raw = http.get(
            f"/versions/{got}/scales", params={"kind": "exposure", "format": "parquet"}
        ).content
        assert pq.read_table(io.BytesIO(raw)).column("exposure").to_pylist() == ids
        exported = http.get(f"/versions/{got}/cp_pipe").json()
        det = next(iter(exported["expScale"]))  # {det: {amp: {exposure: E}}}
        amp = next(iter(exported["expScale"][det]))
        assert sorted(int(k) for k in exported["expScale"][det][amp]) == ids


INT64 = st.integers(-(2**63), 2**63 - 1)
EXPOSURE_ID = st.integers(0, 2**63 - 1)  # butler exposure ids are non-negative


@st.composite
def _row(draw: st.DrawFn) -> tuple[int, int | None, int | None]:
    """(id, begin, end) with end >= begin when both are set, each end possibly missing."""
    begin = draw(st.one_of(st.none(), INT64))
    if begin is None:
        end = draw(st.one_of(st.none(), INT64))
    else:
        end = draw(st.one_of(st.none(), st.integers(begin, 2**63 - 1)))
    return draw(EXPOSURE_ID), begin, end


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(
        _row(),
        min_size=1,
        max_size=6,
        unique_by=lambda r: r[0],
    )
)
def test_int64_ids_and_tai_ns_round_trip_through_every_listing(pub, tmp_path, rows) -> None:
    """Random int64 ids and TAI ns, some missing: client, CLI json/csv, all exact."""
    inst = f"R{uuid.uuid4().hex[:12]}"
    frame = pd.DataFrame(
        {
            "instrument": inst,
            "id": pd.array([r[0] for r in rows], dtype="Int64"),
            "physical_filter": "f",
            "timespan_begin": pd.array([r[1] for r in rows], dtype="Int64"),
            "timespan_end": pd.array([r[2] for r in rows], dtype="Int64"),
        }
    )
    path = tmp_path / f"{inst}.csv"
    frame.to_csv(path, index=False)
    pub.registry.ingest_exposures(read_exposures(path), source=str(path), sha256=inst)
    want = sorted(rows)
    listed = pub.registry.exposures(inst)
    got = [
        (int(i), None if pd.isna(b) else int(b), None if pd.isna(e) else int(e))
        for i, b, e in zip(
            listed["id"], listed["timespan_begin"], listed["timespan_end"], strict=True
        )
    ]
    assert got == want
    out = runner.invoke(app, ["exposures", "-i", inst, "--format", "json", "--db", pub.url])
    assert out.exit_code == 0, out.stderr
    records = json.loads(out.stdout)
    assert [(r["id"], r["timespan_begin"], r["timespan_end"]) for r in records] == want
    for r, (_, b, _e) in zip(records, want, strict=True):
        assert r["timespan_begin_str"] == (None if b is None else str(b))
        assert r["timespan_begin_utc"] == format_instant(b)
    out = runner.invoke(app, ["exposures", "-i", inst, "--format", "csv", "--db", pub.url])
    assert out.exit_code == 0, out.stderr
    table = pd.read_csv(io.StringIO(out.stdout), dtype=str, keep_default_na=False)
    assert [int(x) for x in table["id"]] == [r[0] for r in want]
    assert list(table["timespan_begin"]) == [format_instant(b) or "" for _, b, _ in want]
