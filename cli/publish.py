"""``calibreg certify | decertify | lookup | tags``: publishing versions in tags."""

from __future__ import annotations

import typer
from calibreg_cli.common import DbOption, errors, open_registry
from calibreg_cli.output import Format, ObjFormat, print_frame, print_json, print_mapping


def _tai(value: str | None, option: str) -> int | None:
    """An ISO-8601 instant (UTC unless it carries an offset) as TAI ns."""
    if value is None:
        return None
    from calibreg.formats.timescale import parse_time

    return parse_time(value, field=option, source=f"--{option}")


def _utc(ns: int | None) -> str | None:
    from calibreg.formats.timescale import tai_ns_to_utc_iso

    return None if ns is None else tai_ns_to_utc_iso(int(ns))


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


def certify(
    version: int = typer.Argument(...),
    tag: str = typer.Option(..., "--tag", "-t"),
    begin: str = typer.Option(..., "--begin", help="Start of validity, ISO-8601 (UTC)."),
    end: str | None = typer.Option(None, "--end", help="End of validity (exclusive); open."),
    force: bool = typer.Option(False, "--force", help="Certify despite a large change."),
    max_change: float = typer.Option(
        0.05, "--max-change", help="Refuse if any row scale changes by more than this."
    ),
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format"),
) -> None:
    """Certify VERSION in TAG for [BEGIN, END), after comparing it with its neighbour."""
    from calibreg.errors import CertificationGateError

    with errors(), open_registry(db) as reg:
        b, e = _tai(begin, "begin"), _tai(end, "end")
        try:
            res = reg.certify(version, tag, b, e, force=force, max_change=max_change)
        except CertificationGateError as err:
            _show_comparison(err.comparison)  # show the comparison behind a refusal too
            raise
        cmp = res.pop("comparison")
        _show_comparison(cmp)
        res["valid_begin_utc"], res["valid_end_utc"] = _utc(b), _utc(e)
        if fmt == ObjFormat.json:
            if cmp:
                cmp.pop("table", None)
            print_json({**res, "comparison": cmp})
        else:
            print_mapping(res, fmt, title="certified")


def decertify(
    tag: str = typer.Option(..., "--tag", "-t"),
    instrument: str = typer.Option(..., "--instrument", "-i"),
    physical_filter: str = typer.Option(..., "--filter", "-f"),
    begin: str = typer.Option(..., "--begin"),
    end: str | None = typer.Option(None, "--end"),
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format"),
) -> None:
    """Remove [BEGIN, END) from TAG, splitting ranges that straddle it (history is kept)."""
    with errors(), open_registry(db) as reg:
        changes = reg.decertify(
            tag, instrument, physical_filter, _tai(begin, "begin"), _tai(end, "end")
        )
        if fmt == ObjFormat.json:
            print_json(changes)
            return
        for ch in changes:
            was = ", ".join(_utc(x) or "open" for x in ch["was"])
            pieces = "; ".join(f"[{_utc(p[0])}, {_utc(p[1]) or 'open'})" for p in ch["pieces"])
            typer.echo(
                f"closed certification {ch['closed']} (version {ch['version_id']}, "
                f"[{was})); kept: {pieces or 'nothing'}"
            )


def lookup(
    instrument: str = typer.Option(..., "--instrument", "-i"),
    tag: str = typer.Option(..., "--tag", "-t"),
    physical_filter: str | None = typer.Option(None, "--filter", "-f"),
    time: str | None = typer.Option(None, "--time", help="Instant, ISO-8601 (UTC)."),
    exposure: int | None = typer.Option(None, "--exposure", help="Use this exposure's start."),
    as_of: str | None = typer.Option(None, "--as-of", help="Answer as the tag stood then."),
    explain: bool = typer.Option(False, "--explain", help="List the ranges considered."),
    db: DbOption = None,
    fmt: ObjFormat = typer.Option(ObjFormat.table, "--format"),
) -> None:
    """Which version is valid for INSTRUMENT/FILTER at TIME (or EXPOSURE) in TAG."""
    from calibreg.errors import NothingCertifiedError
    from calibreg.formats.timescale import parse_wallclock

    with errors(), open_registry(db) as reg:
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
        res["time_utc"] = _utc(res["time_tai_ns"])
        considered = res.pop("explain", None)
        if fmt == ObjFormat.json:
            print_json({**res, **({"explain": considered} if considered is not None else {})})
            return
        print_mapping(res, fmt, title="lookup")
        if considered is not None:
            _print_explain(considered)


def _print_explain(considered: list[dict]) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        [
            {
                "certification": c["certification_id"],
                "version": c["version_id"],
                "begin": _utc(c["valid_begin"]),
                "end": _utc(c["valid_end"]) or "open",
                "decertified_at": c["decertified_at"],
                "matched": c["matched"],
                "why": c["why"],
            }
            for c in considered
        ]
    )
    print_frame(frame, Format.table, title="ranges considered")


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
        frame = pd.DataFrame(rows)
        if not frame.empty:
            frame["valid_begin"] = [_utc(v) for v in frame["valid_begin"]]
            frame["valid_end"] = [
                _utc(v) if v == v and v is not None else None for v in frame["valid_end"]
            ]
        print_frame(frame, fmt, title="certifications")
