"""``calibreg demo``: the whole job, end to end, on simulated flats of the real LSSTCam.

1. migrate the database (the embedded SQLite default unless ``--db``);
2. ingest the bundled LSSTCam geometry (obs_lsst ``lsstCamSim.yaml``, 205 detectors);
3. simulate a flat sequence (lamp drift, per-amplifier gains and vignetting, pixel counts,
   noise, a dead amplifier, missing frames), write it as ordinary input files and ingest them
   through the same code as ``calibreg ingest``;
4. solve DETECTOR and AMP level (exact) through the Task, compare with the generating truth;
5. verify the AMP version by re-solving it, certify it in ``flat-norm/recommended``, look it
   up by exposure, and export it in cp_pipe's structure.

Running it again on the same database is safe: inputs are unchanged (the ingest says so) and
the solves become new versions of the same quanta.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rich.console import Console

    from calibreg.client import Registry
    from calibreg.services.simulate import SimulatedFlats

TAG = "flat-norm/recommended"
INSTRUMENT = "LSSTCam"


def _camera_path() -> Path:
    return Path(str(resources.files("calibreg") / "data" / "cameras" / "lsstCamSim.yaml"))


#: The demo's own database file, inside its working folder.
DEMO_DB = "demo.sqlite3"


def _require_empty(registry: Registry) -> None:
    """Refuse a database that holds calibreg data: the demo would mix simulated flats in."""
    from calibreg.errors import ConflictError

    if registry.schema_revision() is None:
        return
    found = registry.instruments()
    if len(found):
        raise ConflictError(
            f"{registry.database} already holds calibreg data "
            f"({', '.join(found['instrument'])}): the demo writes simulated flats and "
            "certifies them, so it runs only on an empty database (omit --db to use its own)"
        )


def run_demo(
    url: str | None, *, n_exposures: int = 40, seed: int = 20261123, workdir: Path | None = None
) -> dict[str, Any]:
    """Run the demo and print what it did.

    The demo writes simulated flats and certifies them, so it never touches the configured
    registry (``$CALIBREG_DATABASE_URL`` is ignored): by default it uses its own SQLite file
    ``calibreg-demo/demo.sqlite3``, made afresh on every run. An explicit ``url`` must name an
    empty database.

    Raises
    ------
    ConflictError
        If ``url`` names a database that already holds calibreg data.

    Returns
    -------
    dict
        The key numbers (version ids, recovery errors, verify result, lookup, export path,
        elapsed seconds), for tests.
    """
    from rich.console import Console

    from calibreg.client import Registry

    console = Console()
    t_start = time.perf_counter()
    workdir = Path(workdir) if workdir is not None else Path.cwd() / "calibreg-demo"
    workdir.mkdir(parents=True, exist_ok=True)
    if url is None:
        own = workdir / DEMO_DB
        own.unlink(missing_ok=True)  # the demo's own file: each run starts afresh
        for extra in ("-wal", "-shm"):
            Path(f"{own}{extra}").unlink(missing_ok=True)
        url = f"sqlite:///{own}"
    console.rule("[bold]calibreg demo")
    with Registry(url, check_schema=False) as registry:
        _require_empty(registry)
        console.print(f"registry: {registry.database}   files: {workdir}")
        registry.upgrade()
        console.print("[green]✓[/] schema at head")
        sim = _ingest_inputs(registry, console, workdir, n_exposures, seed)
        results = _solve_levels(registry, console, sim.physical_filter)
        amp_v = results["AMP"]["version_id"]
        recovery = _recovery(registry, console, sim, amp_v, n_exposures)
        published = _verify_certify_export(registry, console, sim, amp_v, workdir)
    elapsed = time.perf_counter() - t_start
    console.rule(f"done in {elapsed:.1f} s")
    return {
        "versions": {k: v["version_id"] for k, v in results.items()},
        **recovery,
        **published,
        "elapsed": elapsed,
    }


def _ingest_inputs(
    registry: Registry, console: Console, workdir: Path, n_exposures: int, seed: int
) -> SimulatedFlats:
    """Ingest the camera, simulate the flats, write them as files and ingest those."""
    from calibreg.domain.hashing import sha256_files
    from calibreg.formats import read_camera, read_exposures, read_stats
    from calibreg.services.simulate import simulate_flats

    cam_path = _camera_path()
    camera = read_camera(cam_path, instrument=INSTRUMENT)
    rep = registry.ingest_camera(
        camera, source=str(cam_path), sha256=sha256_files([cam_path]), instrument=INSTRUMENT
    )
    console.print(f"[green]✓[/] camera: {rep.message()}")

    sim = simulate_flats(camera, n_exposures=n_exposures, seed=seed)
    exp_file = workdir / "exposures.csv"
    stats_file = workdir / "stats.parquet"
    sim.exposures.copy().to_csv(exp_file, index=False)
    sim.stats.to_parquet(stats_file, index=False)
    rep = registry.ingest_exposures(
        read_exposures(exp_file), source=str(exp_file), sha256=sha256_files([exp_file])
    )
    console.print(f"[green]✓[/] exposures: {rep.message()}")
    rep = registry.ingest_stats(
        read_stats(stats_file),
        source=str(stats_file),
        sha256=sha256_files([stats_file]),
        instrument=INSTRUMENT,
    )
    console.print(f"[green]✓[/] statistics: {rep.message()}")
    console.print(
        f"  simulated {n_exposures} flats x 189 science detectors x 16 amplifiers; dead "
        f"amplifier {sim.dead[0]}/{sim.dead[1]}; {len(sim.missing)} frames missing"
    )
    return sim


def _solve_levels(
    registry: Registry, console: Console, physical_filter: str
) -> dict[str, dict[str, Any]]:
    """Solve DETECTOR and AMP level (exact) through the Task; print one line each."""
    from calibreg.domain.vocabulary import Level
    from calibreg.services.solve import SolveRequest, solve_quantum

    results = {}
    for level in Level:
        t0 = time.perf_counter()
        res = solve_quantum(registry, SolveRequest(INSTRUMENT, physical_filter, level=level.value))
        res["seconds"] = time.perf_counter() - t0
        results[level.value] = res
        console.print(
            f"[green]✓[/] solved {level.value:<8} → version {res['version_id']} "
            f"(seq {res['seq']}): {res['rows']} rows x {res['exposures']} exposures, "
            f"{res['missing']} missing, rms {res['rms']:.2e}, {res['flagged_rows']} flagged "
            f"row(s), {res['seconds']:.2f} s"
        )
    return results


def _recovery(
    registry: Registry, console: Console, sim: SimulatedFlats, amp_v: int, n_exposures: int
) -> dict[str, float]:
    """Compare the AMP-level solve with the generating truth; print a table."""
    from rich.table import Table

    from calibreg.domain.quantum import QuantumSpec
    from calibreg.services.simulate import normalize_like_solution

    rows = registry.scales(amp_v, "row")
    exps = registry.scales(amp_v, "exposure")
    data = registry.assemble(QuantumSpec(INSTRUMENT, sim.physical_filter, "AMP"))
    truth = sim.amp_truth.set_index(["detector", "amp"])["g"]
    g_true = truth.reindex(list(zip(rows["detector"], rows["amp"], strict=True))).to_numpy()
    valid = np.isfinite(data.background) & (data.counts > 0) & (data.background > 0)
    g_true_n = normalize_like_solution(g_true, data.counts, valid)
    live = ~rows["flagged"].to_numpy(bool)
    rel = rows["scale"].to_numpy(float)[live] / g_true_n[live] - 1.0
    rms_g = float(np.sqrt(np.mean(rel**2)))
    # E absorbs the level: compare up to the same normalization constant.
    e_true = sim.exp_truth.set_index("exposure")["e"].reindex(exps["exposure"]).to_numpy()
    ratio = exps["scale"].to_numpy(float) / e_true
    rms_e = float(np.std(ratio / np.mean(ratio)))
    expected = sim.entry_noise / np.sqrt(n_exposures)
    table = Table(title="AMP-level recovery of the generating truth")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("rms relative error of amplifier scales G", f"{rms_g:.2e}")
    table.add_row("expected from the simulated noise (~σ/√n_exp)", f"{expected:.2e}")
    table.add_row("rms relative error of exposure scales E", f"{rms_e:.2e}")
    dead_row = rows[(rows["detector"] == sim.dead[0]) & (rows["amp"] == sim.dead[1])]
    table.add_row(
        f"dead amplifier {sim.dead[0]}/{sim.dead[1]} flagged",
        str(bool(dead_row["flagged"].iloc[0])),
    )
    console.print(table)
    return {"rms_g": rms_g, "rms_e": rms_e, "expected": expected}


def _verify_certify_export(
    registry: Registry, console: Console, sim: SimulatedFlats, amp_v: int, workdir: Path
) -> dict[str, Any]:
    """Verify the AMP version, certify it open-ended, look it up, export it for cp_pipe."""
    from calibreg.errors import ConflictError
    from calibreg.formats.cp_pipe import dump_cp_pipe
    from calibreg.services.solve import verify_version

    ver = verify_version(registry, amp_v)
    console.print(
        f"[green]✓[/] versions verify {amp_v}: max relative difference "
        f"{ver['max_rel_diff']:.1e}, inputs changed: {ver['inputs_changed']}"
    )
    begin = int(sim.exposures["timespan_begin"].min())
    try:
        cert = registry.certify(amp_v, TAG, begin, None)
    except ConflictError:
        registry.decertify(TAG, INSTRUMENT, sim.physical_filter, begin, None)
        cert = registry.certify(amp_v, TAG, begin, None, force=True)
    cmp = cert.get("comparison")
    note = (
        f"; vs version {cmp['old_version']}: max change {cmp['max_abs_rel_change']:.1e}"
        if cmp and cmp.get("comparable")
        else ""
    )
    console.print(
        f"[green]✓[/] certified version {amp_v} in {TAG!r} from the first flat, open-ended{note}"
    )
    probe = int(sim.exposures["id"].iloc[len(sim.exposures) // 2])
    found = registry.lookup(INSTRUMENT, None, TAG, exposure=probe)
    console.print(f"[green]✓[/] lookup by exposure {probe}: version {found['version_id']}")
    structure = registry.cp_pipe(amp_v)
    out = workdir / f"cpFlatNormScales_v{amp_v}.yaml"
    out.write_text(dump_cp_pipe(structure, "yaml"))
    n_entries = sum(len(e) for amps in structure["expScale"].values() for e in amps.values())
    console.print(
        f"[green]✓[/] exported cp_pipe scales to {out} ({len(structure['detScale'])} "
        f"detectors, {n_entries} expScale entries)"
    )
    return {"verify": ver, "lookup_version": found["version_id"], "export": str(out)}
