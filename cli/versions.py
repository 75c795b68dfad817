"""'calibreg versions', 'scales', 'history', 'export': reading versions."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from calibreg_cli.common import DbOption, errors, open_registry, progress_bars
from calibreg_cli.output import (
    Column,
    Format,
    ObjFormat,
    print_frame,
    print_json,
    print_mapping,
    print_rows,
    short_hash,
    short_time,
)

from calibreg.domain.provenance import SIDECAR_FIELDS
from calibreg.domain.vocabulary import Level

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(help="List, show, compare and verify calibration versions.", no_args_is_help=True)
FormatOpt = typer.Option(Format.table, "--format", help="table, json or csv.")


@app.command("list")
def list_(
    instrument: str | None = typer.Option(None, "--instrument", "-i"),
    physical_filter: str | None = typer.Option(None, "--filter", "-f"),
    level: Level | None = typer.Option(None, "--level", case_sensitive=False),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Only the newest N versions (still listed oldest first)."
    ),
    wide: bool = typer.Option(
        False,
        "--wide",
        "-w",
        help="Also hash, sizes, rms, iterations (as many as the terminal's width holds).",
    ),
    db: DbOption = None,
    fmt: Format = FormatOpt,
) -> None:
    """List versions, oldest first, with the tags each is certified in.

    The table shows the columns a person scans (id, quantum, seq, method, created, certified
    in); '--wide' adds the rest, the content hash abbreviated. JSON and CSV carry every
    column, the full hash and 'certified_in' (active certifications' tags).
    """
    from calibreg.client import VERSION_FIELDS

    with errors(), open_registry(db) as reg:  # plain rows: this command loads no pandas
        rows = reg.version_records(
            instrument=instrument,
            physical_filter=physical_filter,
            level=level.value if level else None,
            newest=limit,
        )
        tags: dict[int, set[str]] = {}
        for cert in reg.certifications():
            tags.setdefault(int(cert["version_id"]), set()).add(cert["tag"])
    certified = [sorted(tags.get(int(row["id"]), ())) for row in rows]
    fields = [*VERSION_FIELDS, "certified_in"]
    if fmt == Format.json:
        rows = [{**row, "certified_in": t} for row, t in zip(rows, certified, strict=True)]
        print_rows(rows, fields, fmt)
        return
    if fmt == Format.csv:
        rows = [
            {**row, "certified_in": " ".join(t)} for row, t in zip(rows, certified, strict=True)
        ]
        print_rows(rows, fields, fmt)
        return
    rows = [
        {
            **row,
            "certified_in": "\n".join(t),  # a tag a line, each whole
            "quantum": f"{row['instrument']} {row['physical_filter']} {row['level']}",
            "created": short_time(row["created_at"]),
            "hash": short_hash(row["content_hash"], 10),
        }
        for row, t in zip(rows, certified, strict=True)
    ]
    fields += ["quantum", "created", "hash"]
    # Number columns right-align even when no row has a value; on an empty listing the made-up
    # text columns' headings do too (as when they were empty, float64, pandas columns).
    empty = not rows
    columns = [
        Column("id", whole=True, numeric=True),
        Column("quantum", whole=False, numeric=empty),  # wraps at its spaces when narrow
        Column("seq", whole=True, numeric=True),
        Column("method", whole=True),
        *(
            [  # at a narrow terminal the last ones are left out first (a note says so)
                Column("hash", whole=True, optional=True, numeric=empty),
                Column("n_exposures", "exps", optional=True, numeric=True),
                Column("n_rows", "rows", optional=True, numeric=True),
                Column("rms", digits=3, optional=True, numeric=True),
                Column("iterations", "iter", optional=True, numeric=True),
                Column("converged", "conv", optional=True),
            ]
            if wide
            else []
        ),
        Column("created", "created (UTC)", whole=False, numeric=empty),
        Column("certified_in", "certified in", whole=True, numeric=empty),
    ]
    print_rows(rows, fields, fmt, title="calibration versions", columns=columns)


@app.command()
def show(
    version: int = typer.Argument(...),
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format"),
    metadata: bool = typer.Option(False, "--metadata", help="Include the full task metadata."),
) -> None:
    """Show one version: quantum, config, provenance, diagnostics."""
    with errors(), open_registry(db) as reg:
        rec = reg.version(version)
        if fmt != ObjFormat.table:
            print_mapping(rec, fmt, title=f"version {version}")
            return
        if not metadata:
            rec = {k: v for k, v in rec.items() if k != "task_metadata"}
        flagged = rec.pop("flagged", {"rows": [], "exposures": []})
        print_mapping(rec, fmt, title=f"version {version}")
        print_flagged(version, flagged)


#: Flagged rows/exposures `versions show` lists before "... and N more".
SHOW_FLAGGED = 20


def print_flagged(version: int, flagged: dict) -> None:
    """Print a version's flagged rows and exposures by name, with the flags' meaning.

    Parameters
    ----------
    version
        The version's id (for the hints).
    flagged
        ``{"rows": [{"detector_name", "amp", "flags": [names]}], "exposures": [{"exposure",
        "flags"}]}`` as :meth:`calibreg.Registry.version` returns it under 'flagged'.
    """
    rows, exposures = flagged.get("rows", []), flagged.get("exposures", [])
    if not rows and not exposures:
        typer.echo(f"quality flags: none (version {version})")
        return
    typer.echo(f"quality flags: {len(rows)} row(s), {len(exposures)} exposure(s)")
    if rows:
        print_flag_table(rows[:SHOW_FLAGGED], title="flagged rows", legend=False)
        if len(rows) > SHOW_FLAGGED:
            typer.echo(
                f"... and {len(rows) - SHOW_FLAGGED} more rows "
                f"(calibreg scales {version} --flagged)"
            )
    if exposures:
        import pandas as pd

        frame = pd.DataFrame(
            {
                "exposure": [int(e["exposure"]) for e in exposures[:SHOW_FLAGGED]],
                "flags": [" ".join(e["flags"]) for e in exposures[:SHOW_FLAGGED]],
            }
        )
        print_frame(
            frame,
            Format.table,
            title="flagged exposures",
            columns=[Column("exposure", whole=True), Column("flags", whole=False)],
        )
        if len(exposures) > SHOW_FLAGGED:
            typer.echo(
                f"... and {len(exposures) - SHOW_FLAGGED} more exposures "
                f"(calibreg scales {version} --kind exposure --flagged)"
            )
    print_flag_legend(name for item in [*rows, *exposures] for name in item["flags"])


def print_flag_table(items: list[dict], *, title: str, legend: bool = True) -> None:
    """Print flagged rows by detector and amplifier name with their flags (and their meaning).

    Parameters
    ----------
    items
        Dicts with 'detector_name', 'amp' ('None' at DETECTOR level) and 'flags' (a
        list of flag names).
    title
        The table's title.
    legend
        Also print one line per flag name saying what it means.
    """
    import pandas as pd

    frame = pd.DataFrame(
        {
            "detector": [i["detector_name"] for i in items],
            "amp": [i.get("amp") or "" for i in items],
            "flags": [" ".join(i["flags"]) for i in items],
            "had": [" ".join(i.get("had") or ()) for i in items],
        }
    )
    columns = [Column("detector", whole=True), Column("amp", whole=True)]
    columns.append(Column("flags", whole=False))
    if any(i.get("had") for i in items):
        columns.append(Column("had", "flags before", whole=False))
    if not frame["amp"].any():
        columns = [c for c in columns if c.name != "amp"]
    print_frame(frame, Format.table, title=title, columns=columns)
    if legend:
        print_flag_legend(name for i in items for name in i["flags"])


def print_flag_legend(names: Iterable[str]) -> None:
    """Print what each quality flag among 'names' means, one line each (not wrapped)."""
    from calibreg.domain.quality import FLAG_HELP, FLAGS

    seen = set(names)
    for name in (n for n in FLAGS if n in seen):  # one line each, so it can be grepped
        typer.echo(f"  {name}: {FLAG_HELP.get(name, '')}")


@app.command()
def diff(
    v1: int = typer.Argument(...),
    v2: int = typer.Argument(...),
    top: int = typer.Option(
        20, "--top", "-n", min=1, help="How many of the largest changes the table shows."
    ),
    all_rows: bool = typer.Option(False, "--all", help="Every matched row in the table."),
    db: DbOption = None,
    fmt: Format = FormatOpt,
) -> None:
    """Compare two versions row by row: the summary, then the largest changes of v2/v1.

    The table lists the '--top' rows with the largest relative change (|v2/v1 - 1|), largest
    first, or every row with '--all'; '--format csv' and 'json' carry every row and column.
    """
    with errors(), open_registry(db) as reg:
        cmp = reg.compare(v1, v2)
    if not cmp.get("comparable", True):
        from calibreg_cli.output import fail

        fail(f"versions {v1} and {v2} are not comparable: {cmp['reason']}")
    table = cmp.pop("table")
    if fmt == Format.json:
        print_json({**cmp, "rows": table.to_dict("records")})
        return
    if fmt == Format.csv:
        print_frame(table, fmt)
        return
    newly = cmp.get("newly_flagged", [])
    summary = {k: v for k, v in cmp.items() if k not in ("worst", "newly_flagged", "comparable")}
    for key in ("max_abs_rel_change", "rms_rel_change"):
        summary[key] = _percent(summary.get(key))
    print_mapping(summary, ObjFormat.table, title=f"version {v2} against version {v1}")
    if newly:
        print_flag_table(newly, title=f"newly flagged in version {v2}")
    _print_changes(table, v1, v2, None if all_rows else top)


def _percent(value: object, sign: str = "") -> str:
    """A relative change as a percentage, 3 significant digits ('nan' when undefined)."""
    import math

    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "nan"
    return f"{value * 100:{sign}.3g}%"


def _print_changes(table: pd.DataFrame, v1: int, v2: int, top: int | None) -> None:
    """The matched rows, largest |relative change| first ('top' of them, or all)."""
    import numpy as np

    frame = table.copy()
    size = np.nan_to_num(frame["rel_change"].abs().to_numpy(float), nan=-1.0)  # NaN last
    order = np.argsort(-size, kind="stable")
    frame = frame.iloc[order, :]
    n = len(frame)
    if top is not None:
        frame = frame.head(top)
    frame["change"] = [_percent(v, "+") for v in frame["rel_change"]]
    frame["flags"] = [
        _flag_text(a, b) for a, b in zip(frame["flags_a"], frame["flags_b"], strict=True)
    ]
    shown = f"the {len(frame)} largest of {n} changes" if len(frame) < n else f"all {n} rows"
    columns: list[Column] = [
        Column("detector_name", "detector", whole=True),
        Column("amp", whole=True),
        Column("scale_a", f"v{v1}"),
        Column("scale_b", f"v{v2}"),
        Column("change", whole=True),
        Column("significance", "σ", digits=3),
        Column("flags", whole=False),
    ]
    if not frame["amp"].fillna("").astype(bool).any():  # DETECTOR level
        columns = [c for c in columns if c.name != "amp"]
    print_frame(frame, Format.table, title=f"row scales, {shown}", columns=columns)
    if len(frame) < n:
        typer.echo("(--all or --format csv for every row, --top N for more)", err=True)


def _flag_text(a: object, b: object) -> str:
    """A row's flags in both versions: 'name' if in both, '+name' gained, '-name' lost."""
    import pandas as pd

    from calibreg.domain.quality import flag_names

    fa = 0 if a is None or pd.isna(a) else int(a)
    fb = 0 if b is None or pd.isna(b) else int(b)
    both = list(flag_names(fa & fb))
    gained = [f"+{n}" for n in flag_names(fb & ~fa)]
    lost = [f"-{n}" for n in flag_names(fa & ~fb)]
    return " ".join([*both, *gained, *lost])


@app.command()
def verify(
    version: int = typer.Argument(...),
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format"),
) -> None:
    """Re-solve a version from the registry's inputs; report the difference and input changes."""
    with errors(), open_registry(db) as reg:
        from calibreg.services.solve import verify_version

        with progress_bars() as advance:
            result = verify_version(reg, version, progress=advance)
        print_mapping(result, fmt, title=f"verify version {version}")
        if not result["ok"]:
            raise typer.Exit(1)


class Kind(enum.StrEnum):
    """Which scales."""

    exposure = "exposure"
    row = "row"


def scales(
    version: int = typer.Argument(...),
    kind: Kind = typer.Option(Kind.row, "--kind"),
    flagged: bool = typer.Option(False, "--flagged", help="Only rows/exposures with a flag."),
    rejected: bool = typer.Option(
        False, "--rejected", help="The entries the robust fit rejected instead of the scales."
    ),
    db: DbOption = None,
    fmt: Format = FormatOpt,
) -> None:
    """Print a version's scales with errors and flags: per row (G) or per exposure (E).

    'error' is the standard error (same units as the scale), 'χ²/dof' the row's or
    exposure's reduced χ², 'flags' its quality flags by name, explained below the table.
    Rows are named by detector and amplifier. JSON and CSV carry every column ('flags' as a
    bitmask and 'flag_names').
    """
    with errors(), open_registry(db) as reg:
        if rejected:
            frame = reg.rejected(version)
            columns = [
                Column("detector_name", "detector", whole=True),
                Column("amp", whole=True),
                Column("exposure", whole=True),
                Column("residual", "log residual", digits=4),
                Column("reason", whole=True),
            ]
            print_frame(frame, fmt, title=f"version {version}: rejected entries", columns=columns)
            return
        frame = reg.scales(version, kind.value)
    if flagged:
        frame = frame[frame["flags"] != 0]
    if fmt != Format.table:
        print_frame(frame, fmt)
        return
    frame = frame.assign(flags_text=[n.replace(",", " ") for n in frame["flag_names"]])
    columns = [
        Column("exposure", whole=True),
        Column("detector_name", "detector", whole=True),
        Column("amp", whole=True),
        Column("scale"),
        Column("error", digits=3),
        Column("reduced_chi2", "χ²/dof", digits=3),
        Column("n_used", "n_used"),
        Column("flags_text", "flags", whole=False),
    ]
    if "amp" in frame.columns and not frame["amp"].fillna("").astype(bool).any():
        columns = [c for c in columns if c.name != "amp"]  # DETECTOR level
    what = "row" if kind == Kind.row else "exposure"
    title = f"version {version}: {what} scales" + (" (flagged only)" if flagged else "")
    print_frame(frame, fmt, title=title, columns=columns)
    n_flagged = int((frame["flags"] != 0).sum())
    typer.echo(f"{n_flagged} of {len(frame)} {what}(s) flagged")
    print_flag_legend(n for names in frame["flag_names"] for n in names.split(",") if n)


def history(
    instrument: str = typer.Option(..., "--instrument", "-i"),
    physical_filter: str = typer.Option(..., "--filter", "-f"),
    detector: str = typer.Option(..., "--detector", "-d", help="Detector id or name."),
    amp: str | None = typer.Option(None, "--amp", help="Amplifier name (AMP-level versions)."),
    db: DbOption = None,
    fmt: Format = FormatOpt,
) -> None:
    """One detector's (or amplifier's) scale in every version, oldest first, with its flags.

    JSON and CSV carry every column: 'detector_name', 'error', 'flags' (bitmask) and
    'flag_names' besides the scale.
    """
    with errors(), open_registry(db) as reg:
        frame = reg.history_with_flags(
            instrument=instrument, physical_filter=physical_filter, detector=detector, amp=amp
        )
    if fmt != Format.table:
        print_frame(frame, fmt)
        return
    name = frame["detector_name"].iloc[0] if len(frame) else detector
    frame = frame.assign(
        created=[short_time(t) for t in frame["created_at"]],
        flags_text=[n.replace(",", " ") for n in frame["flag_names"]],
    )
    columns = [
        Column("version", whole=True),
        Column("seq", whole=True),
        Column("method", whole=True),
        Column("created", "created (UTC)", whole=False),
        Column("scale"),
        Column("error", digits=3),
        Column("flags_text", "flags", whole=False),
    ]
    level = "AMP" if amp else "DETECTOR"
    title = f"{instrument} {physical_filter} {name}{' ' + amp if amp else ''} ({level} level)"
    print_frame(frame, fmt, title=title, columns=columns)
    n_flagged = int((frame["flags"] != 0).sum())
    if n_flagged:
        typer.echo(f"flagged in {n_flagged} of {len(frame)} version(s)")
    print_flag_legend(n for names in frame["flag_names"] for n in names.split(",") if n)


class ExportFormat(enum.StrEnum):
    """Export structures."""

    cp_pipe = "cp_pipe"


def export(
    version: int = typer.Argument(...),
    fmt: ExportFormat = typer.Option(ExportFormat.cp_pipe, "--format"),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="File to write (.yaml/.yml or .json); default stdout JSON."
    ),
    sidecar: bool = typer.Option(
        True,
        "--sidecar/--no-sidecar",
        help="With --output, also write FILE's provenance and quality flags beside it "
        "(NAME.calibreg.yaml or .json).",
    ),
    db: DbOption = None,
) -> None:
    """Export a version as cp_pipe's cpFlatNormScales structure (YAML or JSON by suffix).

    The structure is exactly cp_pipe's, so it has no room for calibreg's provenance or
    quality flags: with '--output' a sidecar file beside it carries them (version id, seq,
    content hash, input fingerprint, config, provenance, and the flagged rows by detector and
    amplifier name with the reason of each flag).
    """
    with errors(), open_registry(db) as reg:
        from calibreg.formats.cp_pipe import dump_cp_pipe

        kind = "yaml" if output and output.suffix in (".yaml", ".yml") else "json"
        with progress_bars() as advance:
            steps = 3 if output is not None else 2
            advance("export", 0, steps, unit="steps", detail="reading the scales")
            structure = reg.cp_pipe(version)
            record = reg.version(version) if output is not None and sidecar else None
            advance("export", 1, steps, unit="steps", detail=f"encoding {kind}")
            text = dump_cp_pipe(structure, kind)
            advance("export", 2, steps, unit="steps", detail=f"{len(text):,} bytes")
            if output is not None:
                output.write_text(text)
                advance("export", 3, steps, unit="steps", detail=f"written to {output.name}")
        if output is None:
            typer.echo(text, nl=False)
            return
        typer.echo(f"wrote version {version} as cp_pipe scales to {output}", err=True)
        if record is not None:
            path = sidecar_path(output)
            path.write_text(_dump_sidecar(export_sidecar(record, reg.database, output), kind))
            report = record.get("flagged") or {}
            typer.echo(
                f"wrote its provenance and quality flags ({len(report.get('rows', []))} "
                f"flagged row(s), {len(report.get('exposures', []))} flagged exposure(s)) "
                f"to {path}",
                err=True,
            )


def sidecar_path(output: Path) -> Path:
    """Where the sidecar of an exported file goes: 'scales.yaml' → 'scales.calibreg.yaml'."""
    return output.with_name(f"{output.stem}.calibreg{output.suffix or '.json'}")


def export_sidecar(record: dict, database: str, output: Path) -> dict:
    """The sidecar of an exported version: identity, provenance and quality flags.

    Parameters
    ----------
    record
        :meth:`calibreg.Registry.version`'s record of the version.
    database
        The registry's URL, password masked.
    output
        The exported file (named in the sidecar).

    Returns
    -------
    dict
        JSON-able: 'calibreg_version_id', 'instrument', 'physical_filter', the
        :data:`calibreg.domain.provenance.SIDECAR_FIELDS`, 'database', 'scales_file',
        'exported_at' and 'quality_flags' (:func:`calibreg.domain.quality.flag_report`:
        the flagged rows by detector and amplifier name, the flagged exposures, and what each
        flag means).
    """
    import datetime as dt

    from calibreg.domain.jsonable import jsonable
    from calibreg.domain.quality import flag_report

    return jsonable(
        {
            "calibreg_version_id": int(record["id"]),
            "instrument": record["instrument"],
            "physical_filter": record["physical_filter"],
            **{key: record.get(key) for key in SIDECAR_FIELDS},
            "database": database,
            "scales_file": output.name,
            "exported_at": dt.datetime.now(dt.UTC),
            "quality_flags": flag_report(record.get("flagged")),
        }
    )


def _dump_sidecar(obj: dict, kind: str) -> str:
    from calibreg.domain.jsonable import dumps

    if kind == "json":
        return dumps(obj, indent=2) + "\n"
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)
