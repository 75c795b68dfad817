"""Plots for people: a version's scales on the focal plane, one row's scale over versions.

Detectors are drawn at their focal-plane offsets (mm), sized by bbox × pixel size and rotated
by their yaw; at AMP level each amplifier's assembled bbox is drawn inside its detector. The
corner rafts' guider (``SG0``/``SG1``) and wavefront (``SW0``/``SW1``) detectors, which carry
no flat-field scale, are drawn as outlines so the picture shows the whole camera.

Each plot has a ``*_figure`` function returning the :class:`matplotlib.figure.Figure` (for
tests, notebooks and reports) and a function that writes it as PNG, PDF or SVG by the
output's suffix. Rendering uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calibreg.errors import InputError, NotFoundError
from calibreg.services.fit_plots import check_output

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from calibreg.client import Registry

__all__ = [
    "focal_plane",
    "focal_plane_figure",
    "history_figure",
    "history_plot",
    "save_figure",
]

#: Outline style of the detectors that carry no flat-field scale, by purpose.
OUTLINES = {
    "GUIDER": {"edgecolor": "tab:green", "linestyle": "--", "label": "guider (SG0, SG1)"},
    "WAVEFRONT": {"edgecolor": "tab:purple", "linestyle": ":", "label": "wavefront (SW0, SW1)"},
}
#: Colour of the outline and marker of a flagged detector or amplifier.
FLAG_COLOUR = "black"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, output: str | Path) -> Path:
    """Write ``fig`` to ``output`` (PNG, PDF or SVG by its suffix) and close it.

    Raises
    ------
    InputError
        For a suffix other than ``.png``, ``.pdf`` or ``.svg`` (nothing is written).
    """
    path = check_output(output)
    try:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


def _rect(
    cx: float,
    cy: float,
    x0: float,
    y0: float,
    w: float,
    h: float,
    yaw_deg: float,
    size_x: float,
    size_y: float,
) -> np.ndarray:
    """Corners (mm), shape (4, 2), of a rectangle in detector pixels placed on the focal plane."""
    corners = np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]], dtype=float)
    corners[:, 0] = corners[:, 0] * size_x
    corners[:, 1] = corners[:, 1] * size_y
    theta = math.radians(yaw_deg or 0.0)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return corners @ rot.T + np.array([cx, cy])


def _finite(value: float, default: float) -> float:
    return float(value) if value is not None and np.isfinite(value) else default


def _detector_corners(det: Any, box: tuple[float, float, float, float] | None = None) -> Any:
    """Corners (mm) of a detector (``box`` None) or of a pixel box inside it."""
    px = _finite(det.pixel_size_x, 0.01)
    py = _finite(det.pixel_size_y, 0.01)
    width = det.bbox_x1 - det.bbox_x0 + 1
    height = det.bbox_y1 - det.bbox_y0 + 1
    cx, cy = _finite(det.offset_x, 0.0), _finite(det.offset_y, 0.0)
    if box is None:
        x0, y0, w, h = -width / 2, -height / 2, width, height
    else:
        x0, y0, w, h = box[0] - width / 2, box[1] - height / 2, box[2], box[3]
    return _rect(cx, cy, x0, y0, w, h, _finite(det.yaw, 0.0), px, py)


def _row_values(
    registry: Registry, version_id: int, compare: int | None
) -> tuple[pd.DataFrame, dict[str, Any], str]:
    """Return the rows to draw (``value``, ``flags`` columns), the version, the colour label."""
    version = registry.version(version_id)
    rows = registry.scales(version_id, "row").copy()
    rows["value"] = rows["scale"].astype(float)
    rows["flags"] = rows["flags"].fillna(0).astype(int)
    label = "relative response G (count-weighted mean 1)"
    if compare is None:
        return rows, version, label
    other = registry.version(compare)
    for key in ("instrument", "level"):
        if other[key] != version[key]:
            raise InputError(
                str(compare),
                f"cannot compare version {compare} ({other[key]}) with version {version_id} "
                f"({version[key]}): both must have the same {key}",
                field="compare",
            )
    new = registry.scales(compare, "row")
    key = ["detector", "amp"] if version["level"] == "AMP" else ["detector"]
    merged = rows.merge(
        new[[*key, "scale", "flags"]].rename(columns={"scale": "scale_new", "flags": "flags_new"}),
        on=key,
        how="left",
    )
    merged["value"] = merged["scale_new"].astype(float) / merged["scale"].astype(float)
    merged["flags"] = merged["flags"] | merged["flags_new"].fillna(0).astype(int)
    return merged, version, f"ratio G(v{compare}) / G(v{version_id})"


def focal_plane_figure(
    registry: Registry, version_id: int, *, compare: int | None = None
) -> Figure:
    """Return a figure of a version's row scales G on the focal plane.

    The colour scale is symmetric around 1 (1 ± the largest deviation of the finite values,
    clipped at their 99.5th percentile so one dead amplifier does not wash out the rest); its
    range is in the title. Flagged detectors/amplifiers are outlined in black with an ``×``;
    rafts and detectors are labelled; guider and wavefront detectors are drawn as outlines.

    Parameters
    ----------
    registry
        The registry to read.
    version_id
        The version to draw.
    compare
        Another version of the same instrument and level: draw the ratio
        ``G(compare) / G(version_id)`` per detector/amplifier instead.

    Raises
    ------
    NotFoundError
        If either version does not exist.
    InputError
        If ``compare`` has another instrument or level.
    """
    plt = _pyplot()
    from matplotlib.collections import PatchCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Polygon

    rows, version, colour_label = _row_values(registry, version_id, compare)
    dets, amps = registry.geometry(version["instrument"])
    by_id = dets.set_index("id")
    amp_bbox = amps.set_index(["detector_id", "amp_index"])
    at_amp = version["level"] == "AMP"
    patches, values, flagged = [], [], []
    for rec in rows.itertuples(index=False):
        det = by_id.loc[int(rec.detector)]
        box = None
        if at_amp and rec.amp_index is not None and rec.amp_index == rec.amp_index:
            a = amp_bbox.loc[(int(rec.detector), int(rec.amp_index))]
            box = (a.bbox_x0, a.bbox_y0, a.bbox_width, a.bbox_height)
        corners = _detector_corners(det, box)
        patches.append(Polygon(corners, closed=True))
        values.append(rec.value)
        if int(rec.flags):
            flagged.append((corners, int(rec.flags)))

    fig, ax = plt.subplots(figsize=(9, 8.2))
    vals = np.asarray(values, dtype=float)
    finite = vals[np.isfinite(vals)]
    half = float(np.percentile(np.abs(finite - 1.0), 99.5)) if finite.size else 0.0
    half = half if half > 0 else 1e-6
    import matplotlib

    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.75")  # grey: no valid value
    coll = PatchCollection(patches, cmap=cmap, edgecolor="none")
    coll.set_array(np.ma.masked_invalid(vals))
    coll.set_clim(1.0 - half, 1.0 + half)
    ax.add_collection(coll)

    # Every detector's outline: science thin grey, guider/wavefront in their own style.
    handles: list[Any] = []
    seen_purposes = set()
    drawn = set(rows["detector"].astype(int))
    for det in dets.itertuples(index=False):
        corners = _detector_corners(det)
        style = OUTLINES.get(str(det.purpose).upper())
        if style is None:
            ax.add_patch(
                Polygon(
                    corners,
                    closed=True,
                    fill=int(det.id) not in drawn,
                    facecolor="0.92",
                    edgecolor="0.45",
                    lw=0.3,
                )
            )
            continue
        ax.add_patch(
            Polygon(
                corners,
                closed=True,
                fill=False,
                edgecolor=style["edgecolor"],
                linestyle=style["linestyle"],
                lw=0.9,
            )
        )
        if det.purpose not in seen_purposes:
            seen_purposes.add(det.purpose)
            handles.append(
                Patch(
                    fill=False,
                    edgecolor=style["edgecolor"],
                    linestyle=style["linestyle"],
                    label=style["label"],
                )
            )
    _label_rafts_and_detectors(ax, dets)

    if flagged:
        from calibreg.domain.quality import flag_names

        for corners, _ in flagged:
            ax.add_patch(
                Polygon(corners, closed=True, fill=False, edgecolor=FLAG_COLOUR, lw=1.3, zorder=4)
            )
        centre = np.array([c.mean(axis=0) for c, _ in flagged])
        ax.plot(
            centre[:, 0],
            centre[:, 1],
            "x",
            color=FLAG_COLOUR,
            ms=5,
            mew=1.2,
            zorder=5,
            gid="flagged",
        )
        names = sorted({n for _, f in flagged for n in flag_names(f)})
        what = "amplifiers" if at_amp else "detectors"
        handles.append(
            Line2D(
                [],
                [],
                marker="x",
                color=FLAG_COLOUR,
                linestyle="none",
                label=f"flagged {what} ({len(flagged)}): " + ", ".join(names),
            )
        )
    if handles:
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.08),
            ncol=3,
            fontsize=7,
            frameon=False,
        )
    ax.autoscale_view()
    ax.set_aspect("equal")
    ax.set_xlabel("focal plane x (mm)")
    ax.set_ylabel("focal plane y (mm)")
    what = (
        f"G(v{compare}) / G(v{version_id})"
        if compare is not None
        else f"version {version_id} (seq {version['seq']}, {version['method']})"
    )
    # Plain decimals, enough of them to tell the range's ends apart (no "1e-8+1" offset).
    digits = max(2, math.ceil(-math.log10(half)) + 1)
    ax.set_title(
        f"{version['instrument']} {version['physical_filter']} {version['level']} — {what}\n"
        f"colour range 1 ± {half:.3g}  ({1 - half:.{digits}f} … {1 + half:.{digits}f}), "
        f"median {np.median(finite) if finite.size else np.nan:.{digits}f}",
        fontsize=10,
    )
    from matplotlib.ticker import FuncFormatter

    bar = fig.colorbar(coll, ax=ax, label=colour_label, shrink=0.85, extend="both")
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.{digits}f}"))
    return fig


def _label_rafts_and_detectors(ax: Any, dets: pd.DataFrame) -> None:
    """Write each raft's name above it and each detector's short name inside it."""
    rafts: dict[str, list[np.ndarray]] = {}
    for det in dets.itertuples(index=False):
        name = str(det.name)
        if not (np.isfinite(det.offset_x) and np.isfinite(det.offset_y)):
            continue
        corners = _detector_corners(det)
        if "_" in name:
            raft, short = name.split("_", 1)
            rafts.setdefault(raft, []).append(corners)
        else:
            short = name
        cx, cy = corners.mean(axis=0)
        ax.text(cx, cy, short, ha="center", va="center", fontsize=3.5, color="0.15", zorder=3)
    if len(rafts) < 2:
        return
    for raft, corners in rafts.items():
        xy = np.vstack(corners)
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        ax.add_patch(
            _pyplot().Rectangle(lo, *(hi - lo), fill=False, edgecolor="0.3", lw=0.6, zorder=2)
        )
        ax.text(
            lo[0] + 1.5,
            hi[1] - 1.5,
            raft,
            ha="left",
            va="top",
            fontsize=5,
            fontweight="bold",
            color="0.1",
            zorder=3,
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7},
        )


def focal_plane(
    registry: Registry, version_id: int, output: str | Path, *, compare: int | None = None
) -> Path:
    """Draw :func:`focal_plane_figure` and write it to ``output`` (PNG, PDF or SVG).

    Raises
    ------
    InputError
        For an output suffix other than ``.png``, ``.pdf``, ``.svg`` (checked first), or a
        ``compare`` version of another instrument or level.
    NotFoundError
        If a version does not exist.
    """
    check_output(output)
    return save_figure(focal_plane_figure(registry, version_id, compare=compare), output)


def _input_dates(registry: Registry, instrument: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Per version of ``frame``: first, median and last observation instant of its inputs (UTC)."""
    import pandas as pd

    from calibreg.formats.timescale import tai_ns_to_utc

    exposures = registry.exposures(instrument).set_index("id")["timespan_begin"]
    out = []
    for version in frame["version"].unique():
        ids = registry.scales(int(version), "exposure")["exposure"]
        begins = exposures.reindex(ids).dropna().astype("int64").to_numpy()
        if begins.size == 0:
            out.append((int(version), pd.NaT, pd.NaT, pd.NaT))
            continue
        mid = int(np.median(begins))
        out.append(
            (
                int(version),
                tai_ns_to_utc(int(begins.min())),
                tai_ns_to_utc(mid),
                tai_ns_to_utc(int(begins.max())),
            )
        )
    return pd.DataFrame(out, columns=["version", "first", "median", "last"])


def _series_name(registry: Registry, version: int) -> str:
    """Name a version's series: its method plus its exposure selection, if any."""
    record = registry.version(version)
    selection = record.get("selection") or {}
    parts = []
    for key, value in sorted(selection.items()):
        if value in (None, "", [], ()):
            continue
        if isinstance(value, list | tuple):  # explicit exposure ids: say how many
            value = f"{len(value)} ids" if len(value) > 3 else ",".join(map(str, value))
        parts.append(f"{key}={value}")
    text = ", ".join(parts)
    return record["method"] + (f" [{text}]" if text else "")


def history_figure(
    registry: Registry,
    *,
    instrument: str,
    physical_filter: str,
    detector: str,
    amp: str | None = None,
) -> Figure:
    """Return a figure of one detector's (or amplifier's) scale G in every version.

    x is the observation date of each version's inputs (UTC; the median exposure start, with
    a bar from the first to the last input exposure), y the scale G (plain numbers, no offset
    notation). One series per solve method and exposure selection; flagged versions (the row
    carried a quality flag) are drawn as open black squares; each point is labelled with its
    version id, alternately above and below so labels of close points do not overprint.

    Raises
    ------
    NotFoundError
        If there is no such instrument, detector or amplifier, or no version holds that row:
        nothing to draw.
    """
    plt = _pyplot()
    import matplotlib.dates as mdates

    frame = registry.history(
        instrument=instrument, physical_filter=physical_filter, detector=detector, amp=amp
    )
    row = f"detector {detector}" + (f" amplifier {amp}" if amp else "")
    if frame.empty:
        level = "AMP" if amp else "DETECTOR"
        raise NotFoundError(
            f"no {level}-level version of {instrument} {physical_filter} has {row}: nothing to plot"
        )
    dates = _input_dates(registry, instrument, frame)
    frame = frame.merge(dates, on="version", how="left")
    frame["series"] = [_series_name(registry, int(v)) for v in frame["version"]]
    if frame["median"].isna().all():
        raise NotFoundError(
            f"the versions of {instrument} {physical_filter} holding {row} have no input "
            "exposure with an observation time: nothing to plot"
        )
    frame = frame.dropna(subset=["median"]).sort_values(["median", "version"])

    fig, ax = plt.subplots(figsize=(9, 4.8))
    for series, group in frame.groupby("series", sort=True):
        x = group["median"].to_list()
        days = np.timedelta64(1, "D")
        xerr = np.array(
            [
                (group["median"] - group["first"]).to_numpy() / days,
                (group["last"] - group["median"]).to_numpy() / days,
            ],
            dtype=float,
        )
        ax.errorbar(
            mdates.date2num(x),
            group["scale"].astype(float),
            xerr=xerr,
            fmt="o-",
            ms=5,
            lw=1,
            capsize=3,
            label=f"{series} ({len(group)})",
        )
    bad = frame[frame["flagged"].astype(bool)]
    if len(bad):
        ax.plot(
            mdates.date2num(bad["median"].to_list()),
            bad["scale"].astype(float),
            "s",
            mfc="none",
            mec=FLAG_COLOUR,
            ms=11,
            mew=1.3,
            label=f"flagged ({len(bad)})",
            gid="flagged",
        )
    _label_versions(ax, frame)
    # Every tick label carries year and month (or sits beside a midnight tick that does):
    # the axis spans at least two days, so an hour-level axis always has a dated tick.
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    formatter = mdates.ConciseDateFormatter(
        locator,
        formats=["%Y", "%Y-%m", "%Y-%m-%d", "%H:%M", "%H:%M", "%H:%M:%S"],
        zero_formats=["", "%Y", "%Y-%m", "%Y-%m-%d", "%Y-%m-%d", "%Y-%m-%d %H:%M"],
        show_offset=False,
    )
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.margins(x=0.08, y=0.15)
    lo = mdates.date2num(frame["first"].min())
    hi = mdates.date2num(frame["last"].max())
    if hi - lo < 2:
        centre = (lo + hi) / 2
        ax.set_xlim(centre - 1, centre + 1)
    ax.set_xlabel("observation date of the inputs (UTC; median exposure, bar: first–last)")
    ax.set_ylabel("relative response G")
    ax.grid(alpha=0.3)
    ax.set_title(f"{instrument} {physical_filter} {row}: G in {len(frame)} version(s)")
    ax.legend(fontsize=7, loc="best")
    return fig


def _label_versions(ax: Any, frame: pd.DataFrame) -> None:
    """Label the points with their version ids without overprinting.

    Points drawn on top of each other (same input date, scale within 2 % of the y range) get
    one label ``v2, v4``; successive labels alternate above and below their point.
    """
    import matplotlib.dates as mdates

    x = np.asarray(mdates.date2num(frame["median"].to_list()), dtype=float)
    y = frame["scale"].astype(float).to_numpy()
    finite = np.isfinite(y)
    span_y = float(np.ptp(y[finite])) if finite.any() else 0.0
    tol_y = 0.02 * span_y if span_y > 0 else np.inf
    tol_x = 0.01 * max(float(np.ptp(x)), 2.0)
    clusters: list[list[int]] = []
    for i in np.lexsort((y, x)):
        last = clusters[-1][-1] if clusters else None
        if (
            last is not None
            and abs(x[i] - x[last]) <= tol_x
            and (abs(y[i] - y[last]) <= tol_y or not (finite[i] and finite[last]))
        ):
            clusters[-1].append(int(i))
        else:
            clusters.append([int(i)])
    if len(clusters) > 60:  # too many to read: the legend and the axes say enough
        return
    versions = frame["version"].to_numpy()
    for k, members in enumerate(clusters):
        text = ", ".join(f"v{versions[i]}" for i in sorted(members, key=lambda i: versions[i]))
        i = members[0]
        if not finite[i]:
            continue
        ax.annotate(
            text,
            (x[i], y[i]),
            fontsize=7,
            textcoords="offset points",
            xytext=(0, 9 if k % 2 == 0 else -14),
            ha="center",
            color="0.25",
        )


def history_plot(
    registry: Registry,
    *,
    instrument: str,
    physical_filter: str,
    detector: str,
    amp: str | None,
    output: str | Path,
) -> Path:
    """Draw :func:`history_figure` and write it to ``output`` (PNG, PDF or SVG).

    Raises
    ------
    InputError
        For an output suffix other than ``.png``, ``.pdf``, ``.svg`` (checked first).
    NotFoundError
        When there is nothing to draw (see :func:`history_figure`); nothing is written.
    """
    check_output(output)
    fig = history_figure(
        registry,
        instrument=instrument,
        physical_filter=physical_filter,
        detector=detector,
        amp=amp,
    )
    return save_figure(fig, output)
