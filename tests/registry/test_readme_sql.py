"""The README's example SQL queries run, exactly as written, on both backends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import text

from calibreg.client import Registry
from calibreg.domain.quantum import QuantumSpec
from calibreg.formats import read_stats
from calibreg.services.simulate import simulate_flats
from calibreg.task import FlatNormalizationTask
from tests.conftest import LSSTCAM_YAML

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_queries() -> list[str]:
    """The ```sql blocks of the README's 'SQL for analysts' section."""
    section = README.read_text().split("## SQL for analysts", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.S)


def test_readme_has_five_queries() -> None:
    assert len(readme_queries()) == 5


@pytest.fixture
def populated(engine, lsstcam_spec, tmp_path):
    Registry(engine=engine).ingest_camera(
        lsstcam_spec, source=str(LSSTCAM_YAML), sha256="c", instrument="LSSTCam"
    )
    sim = simulate_flats(lsstcam_spec, n_exposures=4, seed=3, n_missing_frames=1)
    Registry(engine=engine).ingest_exposures(sim.exposures, source="e", sha256="e")
    path = tmp_path / "stats.csv"
    sim.stats.to_csv(path, index=False)
    Registry(engine=engine).ingest_stats(
        read_stats(path), source=str(path), sha256="s", instrument="LSSTCam"
    )
    reg = Registry(str(engine.url.render_as_string(hide_password=False)), engine=engine)
    task = FlatNormalizationTask()
    v1 = task.runQuantum(reg, QuantumSpec("LSSTCam", "r_57", "DETECTOR")).version
    task.config.method = "alternating"
    task.config.scaleMaxIter = 3
    task.config.tolerance = 0.0
    v2 = task.runQuantum(reg, QuantumSpec("LSSTCam", "r_57", "DETECTOR")).version
    amp_task = FlatNormalizationTask()
    amp_task.config.level = "AMP"
    v3 = amp_task.runQuantum(reg, QuantumSpec("LSSTCam", "r_57", "AMP")).version
    begin = int(sim.exposures["timespan_begin"].min())
    reg.certify(v2.id, "flat-norm/recommended", begin)
    reg.certify(v3.id, "flat-norm/amp", begin)
    return {"engine": engine, "sim": sim, "versions": (v1, v2, v3)}


def test_readme_queries_run_on_both_backends(populated) -> None:
    engine = populated["engine"]
    v1, v2, v3 = populated["versions"]
    q1, q2, q3, q4, q5 = readme_queries()
    with engine.connect() as conn:
        rows = conn.execute(text(q1), {"since": "2000-01-01", "until": "2100-01-01"}).all()
        assert [r.version_id for r in rows] == [v1.id, v2.id]
        assert all(r.scale > 0 for r in rows)

        rows = conn.execute(text(q2)).all()
        assert {(r.tag, r.version_id) for r in rows} == {
            ("flat-norm/recommended", v2.id),
            ("flat-norm/amp", v3.id),
        }
        assert all(r.valid_end is None for r in rows)

        rows = conn.execute(text(q3)).all()
        assert 0 < len(rows) <= 10
        assert {(r.version_id, r.previous_version) for r in rows} == {(v2.id, v1.id)}
        changes = [abs(r.rel_change) for r in rows]
        assert changes == sorted(changes, reverse=True)

        rows = conn.execute(text(q4)).all()
        assert len(rows) == 4
        assert [r.exposure for r in rows] == sorted(
            int(e) for e in populated["sim"].exposures["id"]
        )

        rows = conn.execute(text(q5)).all()
        _dead_det, dead_amp = populated["sim"].dead
        assert [(r.amplifier, r.versions) for r in rows] == [(dead_amp, 1)]
