"""``calibreg certify | decertify | lookup | tags``: publishing versions in tags."""

from __future__ import annotations

import typer
from calibreg_cli.common import DbOption, errors, open_registry
from calibreg_cli.output import (
    Column,
    Format,
    ObjFormat,
    fail,
    print_frame,
    print_json,
    print_mapping,
    short_instant,
    short_time,
)

from calibreg.domain.quality import DEFAULT_MAX_CHANGE


def _tai(value: str | None, option: str) -> int | None:
    """An ISO-8601 instant (UTC unless it carries an offset) as TAI ns."""
    if value is None:
        return None
    from calibreg.formats.timescale import parse_time

    return parse_time(value, field=option, source=f"--{option}")


def _bound(value: str | None, side: str) -> int | None:
    """One end of a validity range: ISO-8601, or ``unbounded`` / ``open``."""
    from calibreg.formats.timescale import parse_bound

    return parse_bound(value, side=side, field=side, source=f"--{side}")


def _utc(ns: int | None, missing: str | None = None) -> str | None:
    from calibreg.formats.timescale import format_instant

    return format_instant(ns, missing=missing)


def _range(begin: int | None, end: int | None) -> str:
    from calibreg.formats.timescale import format_range

    return format_range(begin, end)


def _with_instants(obj: dict, *names: str) -> dict:
    from calibreg.formats.timescale import with_instant_fields

    return with_instant_fields(obj, *names)


def _show_comparison(cmp: dict | None) -> None:
    if not cmp:
        typer.echo("no certified neighbour to compare with", err=True)
        return
    if not cmp.get("comparable", True):
        typer.echo(f"comparison with version {cmp['old_version']}: {cmp['reason']}", err=True)
        return
    typer.echo(
        f"comparison with version {cmp['old_version']}: max |change| "
        f"{cmp['max_abs_rel_change']:.4%}, rms {cmp['rms_rel_change']:.4%} over "
        f"{cmp['n_matched']} rows (threshold {cmp.get('threshold', float('nan')):.2%})",
        err=True,
    )
    for w in cmp.get("worst", [])[:5]:
        amp = f" {w['amp']}" if w.get("amp") else ""
        typer.echo(
            f"  {w['detector_name']}{amp}: {w['scale_a']:.6g} -> {w['scale_b']:.6g} "
            f"({w['rel_change']:+.4%})",
            err=True,
        )
    newly = cmp.get("newly_flagged", [])
    if newly:
        typer.echo(
            f"  {len(newly)} row(s) newly flagged in version {cmp['new_version']}:", err=True
        )
        for item in newly[:10]:
            amp = f"/{item['amp']}" if item.get("amp") else ""
            had = f" (had {', '.join(item['had'])})" if item.get("had") else ""
            typer.echo(
                f"    {item['detector_name']}{amp}: {', '.join(item['flags'])}{had}", err=True
            )
        if len(newly) > 10:
            typer.echo(f"    ... and {len(newly) - 10} more", err=True)


def certify(
    version: int = typer.Argument(...),
    tag: str = typer.Option(..., "--tag", "-t"),
    begin: str = typer.Option(
        ...,
        "--begin",
        help="Start of validity, ISO-8601 (UTC unless an offset is given), or 'unbounded' "
        "(valid from the beginning).",
    ),
    end: str | None = typer.Option(
        None, "--end", help="End of validity (exclusive), ISO-8601; default: open."
    ),
    force: bool = typer.Option(False, "--force", help="Certify despite a large change."),
    max_change: float = typer.Option(
        DEFAULT_MAX_CHANGE,
        "--max-change",
        help="Refuse if any row scale changes by more than this.",
    ),
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format"),
) -> None:
    """Certify VERSION in TAG for [BEGIN, END), after comparing it with its neighbour."""
    from calibreg.errors import CertificationGateError

    with errors(), open_registry(db) as reg:
        b, e = _bound(begin, "begin"), _bound(end, "end")
        try:
            res = reg.certify(version, tag, b, e, force=force, max_change=max_change)
        except CertificationGateError as err:
            _show_comparison(err.comparison)  # show the comparison behind a refusal too
            raise
        cmp = res.pop("comparison")
        _show_comparison(cmp)
        if fmt == ObjFormat.json:
            if cmp:
                cmp.pop("table", None)
            print_json({**_with_instants(res, "valid_begin", "valid_end"), "comparison": cmp})
        else:
            res["valid_begin"] = _utc(b, "unbounded")
            res["valid_end"] = _utc(e, "open")
            print_mapping(res, fmt, title="certified")


def decertify(
    tag: str = typer.Option(..., "--tag", "-t"),
    instrument: str = typer.Option(..., "--instrument", "-i"),
    physical_filter: str | None = typer.Option(
        None, "--filter", "-f", help="Only this filter (default: every filter)."
    ),
    begin: str = typer.Option(
        ..., "--begin", help="Start, ISO-8601 (UTC), or 'unbounded' (from the beginning)."
    ),
    end: str | None = typer.Option(None, "--end", help="End (exclusive); default: open."),
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format"),
) -> None:
    """Remove [BEGIN, END) from TAG, splitting ranges that straddle it (history is kept).

    Where nothing is certified it says so and succeeds (the butler's rule), so a decertify
    can be repeated.
    """
    with errors(), open_registry(db) as reg:
        b, e = _bound(begin, "begin"), _bound(end, "end")
        changes = reg.decertify(tag, instrument, physical_filter, b, e)
        if fmt == ObjFormat.json:
            print_json(changes)
            return
        if not changes:
            where = physical_filter or "any filter"
            typer.echo(
                f"nothing to decertify in tag {tag!r} for {instrument} {where} in {_range(b, e)}"
            )
        for ch in changes:
            pieces = "; ".join(_range(p[0], p[1]) for p in ch["pieces"])
            typer.echo(
                f"closed certification {ch['closed']} (version {ch['version_id']}, "
                f"{ch['physical_filter']}, {_range(*ch['was'])}); kept: {pieces or 'nothing'}"
            )


def lookup(
    instrument: str = typer.Option(..., "--instrument", "-i"),
    tag: str = typer.Option(..., "--tag", "-t"),
    physical_filter: str | None = typer.Option(None, "--filter", "-f"),
    time: str | None = typer.Option(None, "--time", help="Instant, ISO-8601 (UTC)."),
    exposure: int | None = typer.Option(
        None, "--exposure", help="Match this exposure's whole timespan (not with --time)."
    ),
    exposures: str | None = typer.Option(
        None,
        "--exposures",
        help="Many exposures at once: ids and ranges ('1,5,100-200'), a file of one id (or "
        "range) per line, or '-' for standard input. One query answers all; prints a table.",
    ),
    day_obs: str | None = typer.Option(
        None, "--day-obs", help="Every exposure of a day (YYYYMMDD) or days ('D1-D2')."
    ),
    as_of: str | None = typer.Option(None, "--as-of", help="Answer as the tag stood then."),
    explain: bool = typer.Option(False, "--explain", help="List the ranges considered."),
    db: DbOption = None,
    fmt: Format = typer.Option(
        Format.table, "--format", help="table or json; csv too with --exposures/--day-obs."
    ),
) -> None:
    """Which version is valid for INSTRUMENT/FILTER at TIME (or EXPOSURE) in TAG.

    With --exposures or --day-obs: the version for each of many exposures, one row each, with
    a status (ok, unknown_exposure, no_timespan, nothing_certified, ambiguous).
    """
    from calibreg.errors import NothingCertifiedError
    from calibreg.formats.timescale import parse_wallclock

    if exposures is not None or day_obs is not None:
        _lookup_many(
            instrument,
            tag,
            exposures,
            day_obs,
            physical_filter,
            time,
            exposure,
            as_of,
            explain,
            db,
            fmt,
        )
        return
    with errors(), open_registry(db) as reg:
        if fmt == Format.csv:
            fail("--format csv needs --exposures or --day-obs (one lookup prints table or json)")
        when = None if as_of is None else parse_wallclock(as_of, field="as_of", source="--as-of")
        try:
            res = reg.lookup(
                instrument,
                physical_filter,
                tag,
                time_tai_ns=_tai(time, "time"),
                exposure=exposure,
                as_of=when,
                explain=explain,
            )
        except NothingCertifiedError as err:
            if explain:
                _print_explain(err.considered)
            raise
        considered = res.pop("explain", None)
        cert = res.pop("certification")
        if fmt == Format.json:
            res = _with_instants(res, "time_tai_ns")
            res["certification"] = _with_instants(cert, "valid_begin", "valid_end")
            print_json({**res, **({"explain": considered} if considered is not None else {})})
            return
        res["time"] = _utc(res.pop("time_tai_ns"))
        span = res.pop("exposure_timespan", None)
        if span is not None:
            res["exposure_timespan"] = _range(*span)
        res["valid"] = _range(cert["valid_begin"], cert["valid_end"])
        res["certification"] = cert["certification_id"]
        print_mapping(res, fmt, title="lookup")
        if considered is not None:
            _print_explain(considered)


#: The most ids a range in --exposures may expand to (the bulk lookup's own limit).
MAX_IDS = 100_000


def _parse_ids(text: str, where: str, ids: list[int]) -> None:
    """Append the ids of one comma list (``1,5,100-200``) to ``ids``; one-line errors."""
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        lo, sep, hi = item.partition("-") if not item.startswith("-") else (item, "", "")
        try:
            first = int(lo)
            last = int(hi) if sep else first
        except ValueError:
            fail(
                f"{where}: {item[:40]!r} is not an exposure id or a range like 100-200"
                + (" (nor a file)" if where == "--exposures" else "")
            )
        if last < first:
            fail(f"{where}: empty range {item[:40]!r}")
        if last - first + 1 + len(ids) > MAX_IDS:
            fail(f"{where}: more than {MAX_IDS:,} exposure ids: split the list")
        ids.extend(range(first, last + 1))


def read_exposure_ids(spec: str) -> list[int]:
    """The ids of ``--exposures``: a comma list with ranges, a file, or '-' (stdin)."""
    import pathlib
    import sys

    if spec == "-":
        lines = sys.stdin.read().splitlines()
        source = "stdin"
    elif (
        pathlib.Path(spec).is_file()
        or any(c in spec for c in "/\\")
        or pathlib.Path(spec).suffix.lower() in (".txt", ".csv", ".lst", ".ids")
    ):
        path = pathlib.Path(spec)
        try:
            lines = path.read_text().splitlines()
        except UnicodeDecodeError:
            fail(f"{spec}: not a text file of exposure ids")
        source = spec
    else:
        ids: list[int] = []
        _parse_ids(spec, "--exposures", ids)
        return ids
    ids = []
    for number, line in enumerate(lines, start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            _parse_ids(line, f"{source} line {number}", ids)
    return ids


def _day_obs(text: str) -> int | tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        return (int(lo), int(hi)) if sep else int(lo)
    except ValueError:
        fail(f"--day-obs: {text[:40]!r} is not a day (YYYYMMDD) or a range D1-D2")


def _lookup_many(
    instrument: str,
    tag: str,
    exposures: str | None,
    day_obs: str | None,
    physical_filter: str | None,
    time: str | None,
    exposure: int | None,
    as_of: str | None,
    explain: bool,
    db: str | None,
    fmt: Format,
) -> None:
    """``calibreg lookup --exposures/--day-obs``: one row per exposure."""
    from calibreg.formats.timescale import parse_wallclock

    with errors():
        if exposures is not None and day_obs is not None:
            fail("give --exposures or --day-obs, not both")
        clash = [
            name
            for name, value in (
                ("--time", time),
                ("--exposure", exposure),
                ("--filter", physical_filter),
                ("--explain", explain or None),
            )
            if value is not None
        ]
        if clash:
            fail(f"{', '.join(clash)} cannot be combined with --exposures/--day-obs")
        ids = None if exposures is None else read_exposure_ids(exposures)
        if ids is not None and not ids:
            fail(f"no exposure ids in {exposures!r}")
        days = None if day_obs is None else _day_obs(day_obs)
        when = None if as_of is None else parse_wallclock(as_of, field="as_of", source="--as-of")
        with open_registry(db) as reg:
            frame = reg.lookup_many(instrument, tag, ids, day_obs=days, as_of=when)
        if fmt == Format.table:
            frame = frame.copy()
            frame["valid"] = [
                "" if s != "ok" else _short_range(_int(b), _int(e))
                for s, b, e in zip(
                    frame["status"], frame["valid_begin"], frame["valid_end"], strict=True
                )
            ]
            frame["ambiguous_versions"] = [
                "" if v is None else " ".join(map(str, v)) for v in frame["ambiguous_versions"]
            ]
            print_frame(
                frame,
                fmt,
                title=f"{instrument} in {tag}",
                columns=[
                    Column("exposure", whole=True),
                    Column("status", whole=True),
                    Column("physical_filter", "filter", whole=True),
                    Column("version_id", "version", whole=True),
                    Column("seq", whole=True),
                    Column("certification_id", "cert", whole=True),
                    Column("valid", "valid [from → until)", whole=False),
                    Column("ambiguous_versions", "ambiguous", whole=False),
                ],
            )
        elif fmt == Format.csv:
            frame = frame.copy()
            frame["ambiguous_versions"] = [
                None if v is None else " ".join(map(str, v)) for v in frame["ambiguous_versions"]
            ]
            print_frame(frame, fmt)
        else:
            print_frame(frame, fmt)
        counts = frame["status"].value_counts()
        summary = ", ".join(f"{counts[s]} {s}" for s in counts.index)
        typer.echo(f"{len(frame)} exposure(s): {summary or 'none'}", err=True)


def _int(value: object) -> int | None:
    import pandas as pd

    return None if value is None or pd.isna(value) else int(value)


def _print_explain(considered: list[dict]) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        [
            {
                "certification": c["certification_id"],
                "version": c["version_id"],
                "begin": short_instant(_utc(c["valid_begin"], "unbounded")),
                "end": short_instant(_utc(c["valid_end"], "open")),
                "decertified_at": short_time(c["decertified_at"]),
                "matched": "yes" if c["matched"] else "no",
                "why": c["why"],
            }
            for c in considered
        ]
    )
    columns = [
        Column("certification", "cert", whole=True),
        Column("version", whole=True),
        Column("begin", "valid from", whole=True),
        Column("end", "until", whole=True),
        Column("decertified_at", "decertified", whole=False),
        Column("matched", whole=True),
        Column("why", whole=False),
    ]
    print_frame(frame, Format.table, title="ranges considered", columns=columns)


def _short_range(begin: int | None, end: int | None) -> str:
    """``[begin, end)`` for a table: ``2026-01-01T00:00Z → open`` (wraps at the arrow)."""
    return f"{short_instant(_utc(begin, 'unbounded'))} → {short_instant(_utc(end, 'open'))}"


def tags_list(
    tag: str | None = typer.Option(None, "--tag", "-t"),
    history: bool = typer.Option(False, "--history", help="Include closed certifications."),
    db: DbOption = None,
    fmt: Format = typer.Option(Format.table, "--format"),
) -> None:
    """List certifications (active ones unless --history)."""
    import pandas as pd

    with errors(), open_registry(db) as reg:
        rows = reg.certifications(tag, include_closed=history)
        if fmt == Format.json:
            print_json([_with_instants(r, "valid_begin", "valid_end") for r in rows])
            return
        frame = pd.DataFrame(rows, dtype=object)
        if fmt == Format.csv:
            if not frame.empty:
                frame["valid_begin"] = [_utc(v, "unbounded") for v in frame["valid_begin"]]
                frame["valid_end"] = [_utc(v, "open") for v in frame["valid_end"]]
            print_frame(frame, fmt)
            return
        if frame.empty:
            typer.echo("no certifications" + (f" in tag {tag!r}" if tag else ""), err=True)
            return
        frame["quantum"] = [
            f"{i} {f}" for i, f in zip(frame["instrument"], frame["physical_filter"], strict=True)
        ]
        frame["valid"] = [
            _short_range(b, e)
            for b, e in zip(frame["valid_begin"], frame["valid_end"], strict=True)
        ]
        frame["certified"] = [
            f"{short_time(t)} {who}"
            for t, who in zip(frame["certified_at"], frame["certified_by"], strict=True)
        ]
        frame["decertified"] = [
            "" if t is None or pd.isna(t) else f"{short_time(t)} {who or ''}".strip()
            for t, who in zip(frame["decertified_at"], frame["decertified_by"], strict=True)
        ]
        columns = [
            Column("certification_id", "id", whole=True),
            Column("tag", whole=True),
            Column("quantum", "instrument filter", whole=False),
            Column("version_id", "version", whole=True),
            Column("valid", "valid [from → until)", whole=False),
            Column("certified", "certified (UTC, by)", whole=False, optional=True),
        ]
        if history:
            columns.append(Column("decertified", whole=False, optional=True))
            columns.append(Column("replaces_id", "replaces", whole=True, optional=True))
        print_frame(frame, fmt, title="certifications", columns=columns)
