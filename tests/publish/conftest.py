"""Fixtures for the publishing tests (issue #5).

Every test runs on SQLite and on PostgreSQL through ``tests/conftest.py``'s ``db_url`` and
``engine`` fixtures; :func:`pub` ingests the real LSSTCam geometry and four simulated flats into
the test's database, and :class:`tests.publish.pubdata.PubDB` makes versions from them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from calibreg.client import Registry
from calibreg.formats import read_stats
from calibreg.services.simulate import simulate_flats
from tests.conftest import LSSTCAM_YAML
from tests.publish.pubdata import INSTRUMENT, PubDB


@pytest.fixture
def pub(engine, db_url: str, lsstcam_spec, tmp_path: Path) -> PubDB:
    """The registry of every publishing test: camera, 4 flats, their statistics (no versions)."""
    Registry(engine=engine).ingest_camera(
        lsstcam_spec, source=str(LSSTCAM_YAML), sha256="camera", instrument=INSTRUMENT
    )
    sim = simulate_flats(lsstcam_spec, n_exposures=4, seed=5, n_missing_frames=1)
    Registry(engine=engine).ingest_exposures(sim.exposures, source="exposures", sha256="exposures")
    path = tmp_path / "stats.csv"
    sim.stats.to_csv(path, index=False)
    Registry(engine=engine).ingest_stats(
        read_stats(path), source=str(path), sha256="stats", instrument=INSTRUMENT
    )
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    return PubDB(url=db_url, engine=engine, sim=sim, tmp_path=tmp_path, backend=backend)
