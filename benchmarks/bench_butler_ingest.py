"""Butler ingest benchmark: 200 LSSTCam exposures (604,800 amplifier statistics), butler vs CSV.

One run builds a simulated 200-exposure flat sequence on the real LSSTCam geometry (189 science
detectors × 16 amplifiers) and measures, into fresh databases:

* **CSV**: what ``calibreg ingest exposures exposures.csv`` + ``calibreg ingest stats
  stats.csv`` do (read, validate, resolve, bulk write; two transactions);
* **butler**: what ``calibreg ingest butler REPO`` does on a real butler repository holding the
  same data as exposure dimension records and 37,800 ``cpFlatProc_metadata`` PropertyList files
  (one per exposure × detector): query the registry, locate the files through the datastore,
  parse them with calibreg's PropertyList reader in worker processes, one transaction. Its
  time is shown in its two parts (reading from the butler, writing into calibreg).

Building the repository (files, ``butler ingest``) is set-up and is reported, not measured.

Measured here (2 cores shared with other test runs, load average 3-6; lsst-daf-butler
30.2026.4300): SQLite CSV 19.5 s, butler 340.6 s (335.7 s reading, 4.9 s writing); PostgreSQL
CSV 8.3 s, butler 392.4 s (383.8 s reading, 8.7 s writing). Reading is parsing 37,800 YAML files
with calibreg's PropertyList reader (about 7 ms a file on an idle core, PyYAML's C loader being
half of it) plus the butler's dataset query and file lookup; writing is the same bulk path as
the CSV ingest.

Usage::

    python benchmarks/bench_butler_ingest.py [--exposures 200] [--jobs N]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
import uuid
from pathlib import Path

from calibreg.butler import read_butler_inputs
from calibreg.butler._lsst import tai_ns_timespan
from calibreg.butler.ingest import match_detectors
from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine
from calibreg.formats import read_camera, read_exposures, read_propertylist, read_stats
from calibreg.formats.stats import write_propertylist
from calibreg.services.simulate import simulate_flats

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "tests" / "data" / "cameras" / "obs_lsst" / "policy"
EXPORT = ROOT / "tests" / "data" / "butler" / "lsstcam-subset.yaml"
RUN = "LSSTCam/calib/cpFlatMeasure/bench"
FILTER = "z_20"


def _number(value: float) -> str:
    """A float as PyYAML writes it in write_propertylist (repr, ``.nan``)."""
    if math.isnan(value):
        return ".nan"
    text = repr(float(value))
    return text if ("." in text or "e" in text or "inf" in text) else text + ".0"


def _int(value: int) -> tuple[str, str]:
    return ("Int" if -(2**31) <= value < 2**31 else "LongLong"), str(value)


def propertylist_text(rows: dict) -> str:
    """The document write_propertylist writes (checked against it once below), made fast."""
    lines = ["!<lsst.daf.base.PropertyList>"]
    for key, value in rows.items():
        if isinstance(value, str):
            lines.append(f"- [{key}, String, {value}, '']")
        elif isinstance(value, int):
            kind, text = _int(value)
            lines.append(f"- [{key}, {kind}, {text}, '']")
        else:
            lines.append(f"- [{key}, Double, {_number(value)}, '']")
    return "\n".join(lines) + "\n"


def build_repo(root: Path, files: Path, camera, sim) -> float:
    from lsst.daf.butler import Butler, DatasetRef, DatasetType, FileDataset

    t0 = time.perf_counter()
    Butler.makeRepo(str(root))
    butler = Butler.from_config(str(root), writeable=True)
    butler.import_(filename=str(EXPORT), transfer=None)
    reg = butler.registry
    have = {r.id for r in butler.query_dimension_records("detector", instrument="LSSTCam")}
    reg.insertDimensionData(
        "detector",
        *[
            {
                "instrument": "LSSTCam",
                "id": d.id,
                "full_name": d.name,
                "raft": d.name.split("_")[0],
                "name_in_raft": d.name.split("_")[1],
                "purpose": d.purpose,
            }
            for d in camera.detectors
            if d.id not in have
        ],
    )
    exps = sim.exposures
    day0 = int(exps["timespan_begin"].min()) - 3_600_000_000_000
    reg.insertDimensionData(
        "day_obs",
        {
            "instrument": "LSSTCam",
            "id": int(exps["day_obs"].iloc[0]),
            "timespan": tai_ns_timespan(day0, day0 + 86_400_000_000_000),
        },
    )
    reg.insertDimensionData("group", *[{"instrument": "LSSTCam", "name": g} for g in exps["group"]])
    reg.insertDimensionData(
        "exposure",
        *[
            {
                "instrument": "LSSTCam",
                "id": int(e.id),
                "physical_filter": FILTER,
                "obs_id": e.obs_id,
                "observation_type": e.observation_type,
                "observation_reason": e.observation_reason,
                "science_program": e.science_program,
                "group": e.group,
                "target_name": e.target_name,
                "day_obs": int(e.day_obs),
                "seq_num": int(e.seq_num),
                "seq_start": int(e.seq_num),
                "seq_end": int(e.seq_num),
                "exposure_time": float(e.exposure_time),
                "dark_time": float(e.dark_time),
                "timespan": tai_ns_timespan(int(e.timespan_begin), int(e.timespan_end)),
            }
            for e in exps.itertuples(index=False)
        ],
    )
    dtype = DatasetType(
        "cpFlatProc_metadata",
        ("instrument", "exposure", "detector"),
        "PropertyList",
        universe=butler.dimensions,
    )
    reg.registerDatasetType(dtype)
    reg.registerRun(RUN)
    files.mkdir(parents=True, exist_ok=True)
    amp_order = {
        d.id: [a.name for a in sorted(d.amplifiers, key=lambda a: a.index)]
        for d in camera.detectors
    }
    stats = sim.stats
    det_level = stats[stats["amp"].isna()].set_index(["exposure", "detector"])
    amp_level = stats[stats["amp"].notna()].set_index(["exposure", "detector", "amp"]).sort_index()
    datasets, checked = [], False
    for (exp, det), drow in det_level.iterrows():
        values: dict = {
            "DETECTOR_MEDIAN": float(drow["median"]),
            "DETECTOR_SIGMA": float(drow["sigma"]),
            "DETECTOR_N": int(drow["n_pixels"]),
        }
        amps = amp_level.loc[(exp, det)]
        for i, name in enumerate(amp_order[det]):
            arow = amps.loc[name]
            values[f"AMP_NAME_{i}"] = name
            values[f"AMP_MEDIAN_{i}"] = float(arow["median"])
            values[f"AMP_SIGMA_{i}"] = float(arow["sigma"])
            values[f"AMP_N_{i}"] = int(arow["n_pixels"])
        path = files / f"flat_{exp}_{det}.yaml"
        path.write_text(propertylist_text(values))
        if not checked:  # the fast writer writes exactly what calibreg's writer writes
            ref_path = files / "reference.yaml"
            write_propertylist(ref_path, values)
            assert ref_path.read_text() == path.read_text(), "fast writer differs"
            assert read_propertylist(path, exposure=1, detector=det).shape[0] == 17
            ref_path.unlink()
            checked = True
        ref = DatasetRef(
            dtype, {"instrument": "LSSTCam", "exposure": int(exp), "detector": int(det)}, run=RUN
        )
        datasets.append(FileDataset(path=str(path), refs=[ref]))
    butler.ingest(*datasets, transfer="direct")
    return time.perf_counter() - t0


def fresh_registry(url: str | None, workdir: Path, camera) -> Registry:
    if url is None:
        url = f"sqlite:///{workdir / f'r-{uuid.uuid4().hex}.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    reg = Registry(engine=engine)
    reg.ingest_camera(camera, source="policy/lsstCam", sha256="camera")
    return reg


def pg_schema_url(base: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    parsed = make_url(base)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public"))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = parsed.update_query_dict({"options": f"-csearch_path={schema},public"})
    return url.render_as_string(hide_password=False), schema


def drop_schema(base: str, schema: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    parsed = make_url(base)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def run_csv(reg: Registry, exposures_csv: Path, stats_csv: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    first = reg.ingest_exposures(
        read_exposures(exposures_csv), source=str(exposures_csv), sha256="e"
    )
    report = reg.ingest_stats(
        read_stats(stats_csv), source=str(stats_csv), sha256="s", instrument="LSSTCam"
    )
    return time.perf_counter() - t0, first.n_inserted + report.n_inserted


def run_butler(reg: Registry, repo: Path, jobs: int | None) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    inputs = read_butler_inputs(str(repo), instrument="LSSTCam", collections=[RUN], jobs=jobs)
    t_read = time.perf_counter() - t0
    match_detectors(inputs.detectors, reg.detectors("LSSTCam"), "LSSTCam", inputs.source)
    report = reg.ingest_inputs(
        inputs.exposures,
        inputs.stats,
        instrument="LSSTCam",
        source=inputs.source,
        sha256=inputs.sha256,
        options=inputs.options,
    )
    return t_read, time.perf_counter() - t0 - t_read, report.n_inserted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exposures", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=None, help="parsing processes (default: cores)")
    ap.add_argument("--postgres", help="also measure on this PostgreSQL server")
    args = ap.parse_args()

    camera = read_camera(POLICY / "lsstCam")
    sim = simulate_flats(
        camera, physical_filter=FILTER, n_exposures=args.exposures, seed=1, n_missing_frames=0
    )
    n_amp = int(sim.stats["amp"].notna().sum())
    n_det = int(sim.stats["amp"].isna().sum())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        exposures_csv, stats_csv = work / "exposures.csv", work / "stats.csv"
        sim.exposures.to_csv(exposures_csv, index=False)
        sim.stats.to_csv(stats_csv, index=False)
        setup = build_repo(work / "repo", work / "files", camera, sim)
        print(
            f"{args.exposures} exposures, {n_det:,} PropertyList files, {n_amp:,} amplifier + "
            f"{n_det:,} detector statistics; repository set-up {setup:.1f} s (not measured); "
            f"{os.cpu_count()} cores, parsing jobs {args.jobs or os.cpu_count()}"
        )
        backends: list[tuple[str, str | None]] = [("sqlite", None)]
        if args.postgres:
            backends.append(("postgresql", args.postgres))
        print(
            f"{'backend':<11} {'source':<7} {'rows':>9} {'read s':>8} {'write s':>8} "
            f"{'total s':>8} {'vs CSV':>7}"
        )
        for name, base in backends:
            schemas = []
            urls = []
            for _ in range(2):
                if base is None:
                    urls.append(None)
                else:
                    url, schema = pg_schema_url(base)
                    urls.append(url)
                    schemas.append(schema)
            try:
                reg = fresh_registry(urls[0], work, camera)
                t_csv, rows_csv = run_csv(reg, exposures_csv, stats_csv)
                reg.close()
                reg = fresh_registry(urls[1], work, camera)
                t_read, t_write, rows_b = run_butler(reg, work / "repo", args.jobs)
                reg.close()
            finally:
                for schema in schemas:
                    drop_schema(base, schema)
            total = t_read + t_write
            print(f"{name:<11} {'CSV':<7} {rows_csv:>9,} {'':>8} {'':>8} {t_csv:>8.1f} {1.0:>7.2f}")
            print(
                f"{name:<11} {'butler':<7} {rows_b:>9,} {t_read:>8.1f} {t_write:>8.1f} "
                f"{total:>8.1f} {total / t_csv:>7.2f}"
            )


if __name__ == "__main__":
    main()
