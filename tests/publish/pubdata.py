"""Helpers of the publishing tests (issue #5): a test registry that makes versions cheaply."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
from sqlalchemy import func, select, text

from calibreg.client import Registry
from calibreg.formats import read_stats
from calibreg.services.simulate import SimulatedFlats
from calibreg.services.solve import SolveRequest, solve_quantum

INSTRUMENT = "LSSTCam"
FILTER = "r_57"
#: An arbitrary validity instant (TAI ns, 2027), far from the simulated exposures.
T_BASE = 1_800_000_000 * 1_000_000_000


@dataclasses.dataclass
class PubDB:
    """A migrated test database holding LSSTCam, four flats and their statistics."""

    url: str
    engine: object
    sim: SimulatedFlats
    tmp_path: Path
    backend: str

    @property
    def registry(self) -> Registry:
        """A client sharing the test's engine (not closed by the test)."""
        return Registry(self.url, engine=self.engine)

    def solve(self, level: str = "DETECTOR", **kwargs: object) -> int:
        """Solve the flats' quantum once more; returns the new version id."""
        return int(
            solve_quantum(self.registry, SolveRequest(INSTRUMENT, FILTER, level=level, **kwargs))[
                "version_id"
            ]
        )

    def replace_stats(self, frame: pd.DataFrame, name: str) -> None:
        """Ingest ``frame`` (the simulator's long-table columns) with ``replace=True``."""
        path = self.tmp_path / f"{name}.csv"
        frame.to_csv(path, index=False)
        self.registry.ingest_stats(
            read_stats(path),
            source=str(path),
            sha256=name,
            instrument=INSTRUMENT,
            replace=True,
        )

    def scale_detector(self, detector: int, factor: float, name: str = "scaled") -> None:
        """Replace one detector's detector-level medians (every exposure) by ``factor`` x."""
        stats = self.sim.stats
        pick = stats[(stats["detector"] == detector) & stats["amp"].isna()].copy()
        assert len(pick) > 0
        pick["median"] = pick["median"] * factor
        self.replace_stats(pick, name)

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())

    def rows(self, table: str, order: str = "id") -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))]


def version_count(engine) -> int:
    """Rows in calibration_version."""
    from calibreg.db.models import CalibrationVersion

    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(CalibrationVersion)).scalar_one())
