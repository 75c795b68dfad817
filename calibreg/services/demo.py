"""``calibreg demo``: the whole job, end to end, on simulated flats of the real LSSTCam.

1. migrate the database (the embedded SQLite default unless ``--db``);
2. ingest the bundled LSSTCam geometry (obs_lsst ``lsstCamSim.yaml``, 205 detectors);
3. simulate a flat sequence (lamp drift, per-amplifier gains and vignetting, pixel counts,
   noise, a dead amplifier, missing frames), write it as ordinary input files and ingest them
   through the same code as ``calibreg ingest``;
4. solve DETECTOR and AMP level (exact) through the Task, compare with the generating truth;
5. verify the AMP version by re-solving it, certify it in ``flat-norm/recommended``, look it
   up by exposure, and export it in cp_pipe's structure.

It is a tour: it works in its own folder (``./calibreg-demo`` or the one given), prints before
each step the ``calibreg`` command a user would type for it (``$ calibreg ingest camera ...``),
and ends with three commands to look at the result: a plot, a lookup and the SQL view of the
certifications. Nothing is wrapped (Rich's soft wrap), so a piped path stays on one line.
"""

from __future__ import annotations

import shlex
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
#: The demo's folder when none is given (relative to the current directory).
DEMO_DIR = "calibreg-demo"


def shown_path(path: Path) -> str:
    """Return ``path`` as a user would type it: relative to the current directory if inside."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


class Tour:
    """Prints a step's command (``$ calibreg ...``), then what the step did, never wrapped.

    Parameters
    ----------
    console
        Where to print (built with ``soft_wrap=True``: a path is never broken across lines).
    db
        The ``--db`` value the printed commands carry (the URL, password masked).
    """

    def __init__(self, console: Console, db: str) -> None:
        self.console = console
        self.db = db
        #: Every command printed, as argument lists (for tests and the closing summary).
        self.commands: list[list[str]] = []

    def command(self, *args: object, db: bool = True) -> None:
        """Print ``$ calibreg ARGS... --db DB`` (arguments quoted as a shell needs)."""
        from rich.text import Text

        argv = ["calibreg", *(str(a) for a in args), *(["--db", self.db] if db else [])]
        self.commands.append(argv)
        self.console.print(Text("$ " + shlex.join(argv), style="bold cyan"))

    def note(self, text: str) -> None:
        """Print a step that has no command of its own (the simulation, the comparison)."""
        from rich.text import Text

        self.console.print(Text("# " + text, style="dim"))

    def done(self, text: str) -> None:
        """Print a step's result line."""
        from rich.text import Text

        self.console.print(Text.assemble(("✓ ", "green"), text))


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
    """Run the demo and print what it did, as the commands a user would type.

    The demo writes simulated flats and certifies them, so it never touches the configured
    registry (``$CALIBREG_DATABASE_URL`` is ignored): by default it uses its own SQLite file
    ``calibreg-demo/demo.sqlite3``, made afresh on every run. An explicit ``url`` must name an
    empty database. Every file it writes is inside ``workdir`` (default ``./calibreg-demo``).

    Raises
    ------
    ConflictError
        If ``url`` names a database that already holds calibreg data.

    Returns
    -------
    dict
        The key numbers (version ids, recovery errors, verify result, lookup, export path,
        elapsed seconds), the ``commands`` printed (argument lists; ``final`` the last three),
        for tests.
    """
    from rich.console import Console

    from calibreg.client import Registry

    console = Console(soft_wrap=True)
    t_start = time.perf_counter()
    workdir = Path(workdir) if workdir is not None else Path.cwd() / DEMO_DIR
    workdir.mkdir(parents=True, exist_ok=True)
    if url is None:
        own = workdir / DEMO_DB
        own.unlink(missing_ok=True)  # the demo's own file: each run starts afresh
        for extra in ("-wal", "-shm"):
            Path(f"{own}{extra}").unlink(missing_ok=True)
        url = f"sqlite:///{own}"
        shown_db = f"sqlite:///{shown_path(own)}"
    else:
        shown_db = None
    console.rule("[bold]calibreg demo")
    with Registry(url, check_schema=False) as registry:
        _require_empty(registry)
        tour = Tour(console, shown_db or registry.database)
        tour.note(f"working in {shown_path(workdir)}/ (the registry and every file written)")
        tour.command("db", "upgrade")
        registry.upgrade()
        tour.done(f"schema at head ({registry.schema_revision()})")
        sim = _ingest_inputs(registry, tour, workdir, n_exposures, seed)
        results = _solve_levels(registry, tour, sim.physical_filter)
        amp_v = results["AMP"]["version_id"]
        recovery = _recovery(registry, tour, sim, amp_v, n_exposures)
        published = _verify_certify_export(registry, tour, sim, amp_v, workdir)
        final = _look_at_it(registry, tour, sim, amp_v, workdir, url)
    elapsed = time.perf_counter() - t_start
    console.rule(f"done in {elapsed:.1f} s")
    return {
        "versions": {k: v["version_id"] for k, v in results.items()},
        **recovery,
        **published,
        "commands": tour.commands,
        "final": final,
        "elapsed": elapsed,
    }


def _look_at_it(
    registry: Registry, tour: Tour, sim: SimulatedFlats, amp_v: int, workdir: Path, url: str
) -> list[list[str]]:
    """Print the three commands that show the result: a plot, a lookup, the SQL view."""
    from rich.text import Text

    from calibreg.formats.timescale import format_instant

    begins = sim.exposures["timespan_begin"].astype("int64")
    middle = format_instant(int(begins.iloc[len(begins) // 2]))
    png = workdir / f"focal-plane-v{amp_v}.png"
    sql = (
        "SELECT tag, instrument, physical_filter, version_id, valid_begin, valid_end "
        "FROM active_certification"
    )
    final = [
        ["calibreg", "plot", "focal-plane", str(amp_v), "-o", shown_path(png), "--db", tour.db],
        [
            "calibreg", "lookup", "-i", INSTRUMENT, "-t", TAG, "-f", sim.physical_filter,
            "--time", str(middle), "--db", tour.db,
        ],
    ]  # fmt: skip
    if registry.backend == "sqlite":
        db_file = url.removeprefix("sqlite:///")
        final.append(["sqlite3", "-header", "-column", shown_path(Path(db_file)), sql])
    else:
        final.append(["psql", tour.db, "-c", sql])
    tour.console.print()
    tour.console.print(Text("Look at the result:", style="bold"))
    for argv in final:
        tour.console.print(Text("  $ " + shlex.join(argv), style="bold cyan"))
    return final


def _ingest_inputs(
    registry: Registry, tour: Tour, workdir: Path, n_exposures: int, seed: int
) -> SimulatedFlats:
    """Ingest the camera, simulate the flats, write them as files and ingest those."""
    from calibreg.domain.hashing import sha256_files
    from calibreg.formats import read_camera, read_exposures, read_stats
    from calibreg.services.simulate import simulate_flats

    cam_path = _camera_path()
    tour.command("ingest", "camera", shown_path(cam_path), "--instrument", INSTRUMENT)
    camera = read_camera(cam_path, instrument=INSTRUMENT)
    rep = registry.ingest_camera(
        camera, source=str(cam_path), sha256=sha256_files([cam_path]), instrument=INSTRUMENT
    )
    tour.done(f"camera: {rep.message()}")

    exp_file = workdir / "exposures.csv"
    stats_file = workdir / "stats.parquet"
    tour.note(
        f"simulate {n_exposures} flats (the demo's own step): {shown_path(exp_file)}, "
        f"{shown_path(stats_file)}"
    )
    sim = simulate_flats(camera, n_exposures=n_exposures, seed=seed)
    sim.exposures.copy().to_csv(exp_file, index=False)
    sim.stats.to_parquet(stats_file, index=False)
    tour.done(
        f"simulated {n_exposures} flats x 189 science detectors x 16 amplifiers; dead "
        f"amplifier {sim.dead[0]}/{sim.dead[1]}; {len(sim.missing)} frames missing"
    )
    tour.command("ingest", "exposures", shown_path(exp_file))
    rep = registry.ingest_exposures(
        read_exposures(exp_file), source=str(exp_file), sha256=sha256_files([exp_file])
    )
    tour.done(f"exposures: {rep.message()}")
    tour.command("ingest", "stats", shown_path(stats_file), "--instrument", INSTRUMENT)
    rep = registry.ingest_stats(
        read_stats(stats_file),
        source=str(stats_file),
        sha256=sha256_files([stats_file]),
        instrument=INSTRUMENT,
    )
    tour.done(f"statistics: {rep.message()}")
    return sim


def _solve_levels(
    registry: Registry, tour: Tour, physical_filter: str
) -> dict[str, dict[str, Any]]:
    """Solve DETECTOR and AMP level (exact) through the Task; print one line each."""
    from calibreg.domain.vocabulary import Level
    from calibreg.services.solve import SolveRequest, solve_quantum

    results = {}
    for level in Level:
        tour.command("solve", "-i", INSTRUMENT, "-f", physical_filter, "--level", level.value)
        t0 = time.perf_counter()
        res = solve_quantum(registry, SolveRequest(INSTRUMENT, physical_filter, level=level.value))
        res["seconds"] = time.perf_counter() - t0
        results[level.value] = res
        tour.done(
            f"solved {level.value:<8} → version {res['version_id']} "
            f"(seq {res['seq']}): {res['rows']} rows x {res['exposures']} exposures, "
            f"{res['missing']} missing, rms {res['rms']:.2e}, {res['flagged_rows']} flagged "
            f"row(s), {res['seconds']:.2f} s"
        )
    return results


def _recovery(
    registry: Registry, tour: Tour, sim: SimulatedFlats, amp_v: int, n_exposures: int
) -> dict[str, float]:
    """Compare the AMP-level solve with the generating truth; print a table."""
    from rich.table import Table

    tour.note("compare the AMP version with the simulation's truth (the demo's own step)")
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
    tour.console.print(table)
    return {"rms_g": rms_g, "rms_e": rms_e, "expected": expected}


def _verify_certify_export(
    registry: Registry, tour: Tour, sim: SimulatedFlats, amp_v: int, workdir: Path
) -> dict[str, Any]:
    """Verify the AMP version, certify it open-ended, look it up, export it for cp_pipe."""
    from calibreg.errors import ConflictError
    from calibreg.formats.cp_pipe import dump_cp_pipe
    from calibreg.formats.timescale import format_instant
    from calibreg.services.solve import verify_version

    tour.command("versions", "verify", amp_v)
    ver = verify_version(registry, amp_v)
    tour.done(
        f"versions verify {amp_v}: max relative difference "
        f"{ver['max_rel_diff']:.1e}, inputs changed: {ver['inputs_changed']}"
    )
    begin = int(sim.exposures["timespan_begin"].min())
    tour.command("certify", amp_v, "--tag", TAG, "--begin", format_instant(begin))
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
    tour.done(f"certified version {amp_v} in {TAG!r} from the first flat, open-ended{note}")
    probe = int(sim.exposures["id"].iloc[len(sim.exposures) // 2])
    tour.command("lookup", "-i", INSTRUMENT, "-t", TAG, "--exposure", probe)
    found = registry.lookup(INSTRUMENT, None, TAG, exposure=probe)
    tour.done(f"lookup by exposure {probe}: version {found['version_id']}")
    out = workdir / f"cpFlatNormScales_v{amp_v}.yaml"
    tour.command("export", amp_v, "--format", "cp_pipe", "-o", shown_path(out))
    structure = registry.cp_pipe(amp_v)
    out.write_text(dump_cp_pipe(structure, "yaml"))
    n_entries = sum(len(e) for amps in structure["expScale"].values() for e in amps.values())
    tour.done(
        f"exported cp_pipe scales to {shown_path(out)} ({len(structure['detScale'])} "
        f"detectors, {n_entries} expScale entries)"
    )
    return {"verify": ver, "lookup_version": found["version_id"], "export": str(out)}
