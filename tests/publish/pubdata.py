"""Helpers of the publishing tests (issue #5): a test registry that makes versions cheaply."""

from __future__ import annotations

import contextlib
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

    def scale_detector(self, detector: int, factor: float, exposure: int | None = None) -> None:
        """Multiply one detector's detector-level medians (every exposure, or one) by ``factor``.

        Statistics a version was solved from are protected (ingest refuses, the database's
        triggers refuse); this stands for what slips past that: an owner who disables the
        triggers and edits the table by hand.
        """
        where = "detector_id = :d" + ("" if exposure is None else " AND exposure_id = :x")
        with unprotected_inputs(self.engine) as conn:
            n = conn.execute(
                text(f"UPDATE detector_stats SET median = median * :f WHERE {where}"),
                {"f": factor, "d": detector, "x": exposure},
            ).rowcount
        assert n > 0

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())

    def rows(self, table: str, order: str = "id") -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))]


USED_TRIGGERS = [
    f"trg_{t}_used_{e}" for t in ("detector_stats", "amp_stats") for e in ("update", "delete")
]


@contextlib.contextmanager
def unprotected_inputs(engine):
    """A transaction with the inputs-of-a-version triggers off (what an owner role can do)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for name in USED_TRIGGERS:
                table = name.removeprefix("trg_").rsplit("_used_", 1)[0]
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {name}"))
            yield conn
            for name in USED_TRIGGERS:
                table = name.removeprefix("trg_").rsplit("_used_", 1)[0]
                conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {name}"))
        else:
            sqls = [
                conn.execute(
                    text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :n"),
                    {"n": name},
                ).scalar_one()
                for name in USED_TRIGGERS
            ]
            for name in USED_TRIGGERS:
                conn.execute(text(f"DROP TRIGGER {name}"))
            yield conn
            for sql in sqls:
                conn.execute(text(sql))


def version_count(engine) -> int:
    """Rows in calibration_version."""
    from calibreg.db.models import CalibrationVersion

    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(CalibrationVersion)).scalar_one())
