"""Plots of one version's fit: residual image, one row against signal, E against exposure time.

Each takes a :class:`calibreg.domain.fit.VersionFit` (``Registry.fit``): the ``*_figure``
functions return the matplotlib Figure, the others write it as PNG, PDF or SVG by the output's
suffix (matplotlib's Agg backend; no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calibreg.domain.fit import VersionFit
from calibreg.domain.quality import flag_names
from calibreg.errors import InputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "SUFFIXES",
    "check_output",
    "exposures_figure",
    "exposures_plot",
    "residual_figure",
    "residual_image",
    "row_figure",
    "row_plot",
]

#: What the plots can write, by suffix.
SUFFIXES = (".png", ".pdf", ".svg")


def check_output(output: str | Path) -> Path:
    """Return ``output`` as a Path, or raise InputError for a suffix other than SUFFIXES."""
    path = Path(output)
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(
            str(path),
            f"cannot write {path.suffix or 'a file without suffix'}: use " + ", ".join(SUFFIXES),
            field="output",
        )
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(fit: VersionFit) -> str:
    return (
        f"{fit.instrument} {fit.physical_filter} {fit.level} — version {fit.version_id} "
        f"({fit.method}, {fit.weights})"
    )


def _save(fig: Any, output: Path) -> Path:
    try:
        fig.savefig(output, dpi=150, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return output


def residual_image(fit: VersionFit, output: str | Path) -> Path:
    """Write :func:`residual_figure` to ``output`` (PNG, PDF or SVG).

    Raises
    ------
    InputError
        For another suffix (nothing is drawn or written).
    """
    output = check_output(output)
    return _save(residual_figure(fit), output)


def residual_figure(fit: VersionFit) -> Figure:
    """Return a figure of the row × exposure image of log residuals.

    The colour scale is symmetric around 0 (±the 99th percentile of the used residuals);
    rejected entries are outlined in black crosses, missing ones drawn grey; rows carrying a
    quality flag are marked at the left edge.
    """
    plt = _pyplot()
    from matplotlib.colors import ListedColormap

    n_row = fit.shape[0]
    used = np.where(fit.used, fit.log_residuals, np.nan)
    finite = np.abs(used[np.isfinite(used)])
    lim = float(np.percentile(finite, 99)) if finite.size else 1e-3
    lim = lim if lim > 0 else 1e-6
    fig, ax = plt.subplots(figsize=(9, max(4.0, min(12.0, 2 + n_row / 40))))
    im = ax.imshow(used, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.imshow(
        np.where(fit.missing, 1.0, np.nan),
        aspect="auto",
        cmap=ListedColormap(["0.6"]),
        interpolation="nearest",
    )
    rr, cc = np.nonzero(fit.rejected)
    if rr.size:
        ax.scatter(cc, rr, marker="x", s=12, c="k", label=f"rejected ({rr.size})")
    if fit.missing.any():
        ax.scatter([], [], marker="s", c="0.6", label=f"missing ({int(fit.missing.sum())})")
    flagged = np.flatnonzero(fit.row_flags)
    if flagged.size:
        ax.scatter(
            np.full(flagged.size, -0.5),
            flagged,
            marker=">",
            s=14,
            c="tab:orange",
            label=f"flagged rows ({flagged.size})",
            clip_on=False,
        )
    step = max(1, n_row // 30)
    ax.set_yticks(range(0, n_row, step))
    ax.set_yticklabels([fit.row_label(i) for i in range(0, n_row, step)], fontsize=6)
    ax.set_xlabel("exposure (index in the version)")
    ax.set_ylabel("row (detector/amplifier)")
    ax.set_title(_title(fit) + f"\nlog residuals, colour range ±{lim:.2g}", fontsize=9)
    fig.colorbar(im, ax=ax, label="log B − log(G·E)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=7)
    return fig


def row_plot(
    fit: VersionFit, output: str | Path, *, detector: int | str, amp: str | None = None
) -> Path:
    """Write :func:`row_figure` to ``output`` (PNG, PDF or SVG).

    Raises
    ------
    InputError
        For another suffix (nothing is drawn or written).
    KeyError
        If the version has no such detector or amplifier.
    """
    output = check_output(output)
    return _save(row_figure(fit, detector=detector, amp=amp), output)


def row_figure(fit: VersionFit, *, detector: int | str, amp: str | None = None) -> Figure:
    """Return a figure of one row's (or a detector's amplifiers') log residual against B.

    Non-linearity shows as a trend, saturation as a drop at the high end; rejected entries
    are drawn as crosses.

    Raises
    ------
    KeyError
        If the version has no such detector or amplifier.
    """
    rows = fit.find_rows(detector, amp)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if rows.size > 10:  # 16 amplifiers: 20 colours, so no two share one
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    for r in rows:
        b, res = fit.background[r], fit.log_residuals[r]
        use, rej = fit.used[r], fit.rejected[r]
        names = flag_names(int(fit.row_flags[r]))
        label = fit.row_label(r) + (f" [{', '.join(names)}]" if names else "")
        line = ax.plot(b[use], res[use], "o", ms=3, label=label)[0]
        if rej.any():
            ax.plot(b[rej], res[rej], "x", color=line.get_color(), ms=6)
    if fit.rejected[rows].any():
        ax.plot([], [], "x", color="k", label="rejected")
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xlabel("background B (input units, e.g. ADU)")
    ax.set_ylabel("log residual  log B − log(G·E)")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_title(_title(fit) + f"\n{fit.row_label(int(rows[0])).split('/')[0]}", fontsize=9)
    # Beside the axes: a legend of 16 amplifiers inside them hides the points.
    ax.legend(
        fontsize=6,
        ncol=2 if rows.size > 8 else 1,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
    )
    return fig


def exposures_plot(fit: VersionFit, output: str | Path) -> Path:
    """Write :func:`exposures_figure` to ``output`` (PNG, PDF or SVG).

    Raises
    ------
    InputError
        For another suffix (nothing is drawn or written).
    """
    output = check_output(output)
    return _save(exposures_figure(fit), output)


def exposures_figure(fit: VersionFit) -> Figure:
    """Return a figure of E (with its error) against exposure time, flagged exposures marked.

    Falls back to the sequence number, then to the exposure's order in the version, when the
    exposure times are unknown; the x label says which.
    """
    plt = _pyplot()
    times = fit.exposure_time
    one_time = np.isfinite(times).all() and np.unique(times).size == 1 and times.size > 1
    if np.isfinite(times).all() and not one_time:
        x, xlabel = times, "exposure time (s)"
    elif one_time and np.isfinite(fit.seq_num).all():
        # Equal exposure times would stack every point on one x: spread them by sequence.
        x, xlabel = fit.seq_num, f"sequence number (every exposure {times[0]:g} s)"
    elif np.isfinite(fit.seq_num).all():
        x, xlabel = fit.seq_num, "sequence number"
    else:
        x, xlabel = np.arange(fit.shape[1], dtype=float), "exposure (order in the version)"
    fig, ax = plt.subplots(figsize=(8, 4.5))
    err = np.where(np.isfinite(fit.exp_errors), fit.exp_errors, 0.0)
    ax.errorbar(x, fit.exp_scales, yerr=err, fmt="o", ms=3, capsize=2, label="E ± error")
    flagged = fit.exp_flags != 0
    if flagged.any():
        ax.plot(
            x[flagged],
            fit.exp_scales[flagged],
            "s",
            mfc="none",
            mec="tab:red",
            ms=9,
            label=f"flagged ({int(flagged.sum())})",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("exposure scale E (input units)")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_title(_title(fit), fontsize=9)
    ax.legend(fontsize=7)
    return fig
