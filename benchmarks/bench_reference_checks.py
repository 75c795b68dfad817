"""The PostgreSQL reference checks of ``amp_stats``: the trigger function's own time, per revision.

Run as a script (not collected by pytest)::

    python benchmarks/bench_reference_checks.py [--pg-url URL] [--exposures 200,2000] [--repeat 3]

For each size, a fresh schema migrated to revision 0007 (the checks of migration 0001: two
``SELECT DISTINCT`` passes over the statement's rows per parent) and one migrated to head (one
pass per parent, migration 0008), interleaved, each gets one ``INSERT ... SELECT`` of
``exposures`` x 3,024 amplifier rows. Printed: the statement's wall time and the trigger
function's own time as PostgreSQL counts it (``track_functions = 'pl'``,
``pg_stat_xact_user_functions.self_time``), medians, and head's over 0007's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine, transaction

AMPLIFIERS = 3024


def run(base: str, revision: str, exposures: int) -> tuple[float, float]:
    """One statement of ``exposures`` x 3,024 rows on a fresh schema at ``revision``."""
    schema = f"refs_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema},public"})
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        upgrade(engine, revision)
        with transaction(engine) as conn:
            conn.execute(
                text("INSERT INTO instrument (id, name, created_at) VALUES (1, 'C', now())")
            )
            conn.execute(
                text(
                    "INSERT INTO ingest_batch (id, kind, instrument_id, source, sha256, n_rows, "
                    "n_inserted, n_replaced, n_unchanged, started_at, finished_at, user_name, "
                    "host, software_version) VALUES (1, 'camera', 1, 'x', 'x', 1, 1, 0, 0, now(), "
                    "now(), 'u', 'h', '0')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO detector (instrument_id, id, name, purpose, bbox_x0, bbox_y0, "
                    "bbox_x1, bbox_y1, n_amplifiers, batch_id) "
                    "VALUES (1, 7, 'D', 'SCIENCE', 0, 0, 1, 1, 1, 1)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO exposure (instrument_id, id, physical_filter, batch_id) "
                    f"SELECT 1, g, 'r', 1 FROM generate_series(1, {exposures}) g"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO amplifier (instrument_id, detector_id, amp_index, name, bbox_x0, "
                    "bbox_y0, bbox_width, bbox_height) SELECT 1, 7, a, 'C' || a, 0, 0, 5, 5 "
                    f"FROM generate_series(0, {AMPLIFIERS - 1}) a"
                )
            )
        with transaction(engine) as conn:
            conn.execute(text("SET LOCAL track_functions = 'pl'"))
            start = time.perf_counter()
            conn.execute(
                text(
                    "INSERT INTO amp_stats SELECT 1, e, 7, a, 1.0, 0.1, 10, 1 "
                    f"FROM generate_series(1, {exposures}) e, "
                    f"generate_series(0, {AMPLIFIERS - 1}) a"
                )
            )
            wall = time.perf_counter() - start
            ms = conn.execute(
                text(
                    "SELECT self_time FROM pg_stat_xact_user_functions "
                    "WHERE funcname = 'calibreg_amp_stats_refs'"
                )
            ).scalar_one()
        return wall, ms / 1000
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "CALIBREG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--exposures", default="200,2000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = make_url(args.pg_url)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    base_url = base.render_as_string(hide_password=False)
    print(f"{'rows':>10} {'revision':>9} {'statement s':>12} {'trigger s':>10} {'x 0007':>7}")
    for exposures in (int(x) for x in args.exposures.split(",")):
        times: dict[str, list[tuple[float, float]]] = {"0007": [], "head": []}
        for _ in range(args.repeat):
            for revision in times:
                times[revision].append(run(base_url, revision, exposures))
        old = statistics.median(t for _, t in times["0007"])
        for revision, runs in times.items():
            wall = statistics.median(w for w, _ in runs)
            trigger = statistics.median(t for _, t in runs)
            print(
                f"{exposures * AMPLIFIERS:>10,} {revision:>9} {wall:12.2f} {trigger:10.3f} "
                f"{trigger / old:7.2f}"
            )


if __name__ == "__main__":
    main()
