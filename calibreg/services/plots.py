"""Plots for people: a version's scales on the focal plane, one row's scale over versions.

Detectors are drawn at their focal-plane offsets (mm), sized by bbox × pixel size and rotated
by their yaw; at AMP level each amplifier's assembled bbox is drawn inside its detector.
Rendering uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from calibreg.client import Registry


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
    """Corners (mm) of a rectangle given in detector pixel units, placed on the focal plane."""
    corners = np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]], dtype=float)
    corners[:, 0] = corners[:, 0] * size_x
    corners[:, 1] = corners[:, 1] * size_y
    theta = math.radians(yaw_deg or 0.0)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return corners @ rot.T + np.array([cx, cy])


def focal_plane(registry: Registry, version_id: int, output: str | Path) -> Path:
    """Draw a version's row scales (G) on the focal plane and save to ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Polygon

    version = registry.version(version_id)
    rows = registry.scales(version_id, "row")
    dets, amps = registry.geometry(version["instrument"])
    dets = dets.set_index("id")
    patches, values, flagged = [], [], []
    has_flags = "flags" in rows.columns
    amp_bbox = amps.set_index(["detector_id", "amp_index"])
    for rec in rows.itertuples(index=False):
        det = dets.loc[int(rec.detector)]
        px = det.pixel_size_x if np.isfinite(det.pixel_size_x) else 0.01
        py = det.pixel_size_y if np.isfinite(det.pixel_size_y) else 0.01
        width = det.bbox_x1 - det.bbox_x0 + 1
        height = det.bbox_y1 - det.bbox_y0 + 1
        cx = det.offset_x if np.isfinite(det.offset_x) else 0.0
        cy = det.offset_y if np.isfinite(det.offset_y) else 0.0
        if (
            version["level"] == "AMP"
            and rec.amp_index is not None
            and rec.amp_index == rec.amp_index
        ):
            a = amp_bbox.loc[(int(rec.detector), int(rec.amp_index))]
            x0, y0, w, h = (
                a.bbox_x0 - width / 2,
                a.bbox_y0 - height / 2,
                a.bbox_width,
                a.bbox_height,
            )
        else:
            x0, y0, w, h = -width / 2, -height / 2, width, height
        patches.append(Polygon(_rect(cx, cy, x0, y0, w, h, det.yaw, px, py), closed=True))
        values.append(rec.scale)
        if has_flags and int(rec.flags):
            flagged.append((patches[-1].get_xy(), int(rec.flags)))
    fig, ax = plt.subplots(figsize=(8, 7.2))
    coll = PatchCollection(patches, cmap="viridis", edgecolor="none")
    vals = np.asarray(values, dtype=float)
    coll.set_array(np.ma.masked_invalid(vals))
    finite = vals[np.isfinite(vals)]
    if finite.size:
        lo, hi = np.percentile(finite, [1, 99])
        coll.set_clim(lo, hi)
    ax.add_collection(coll)
    if flagged:
        from calibreg.domain.quality import flag_names

        names = sorted({n for _, f in flagged for n in flag_names(f)})
        for xy, _ in flagged:
            ax.add_patch(Polygon(xy, closed=True, fill=False, edgecolor="red", lw=1.2))
        ax.plot(
            [],
            [],
            "s",
            mfc="none",
            mec="red",
            label=f"flagged ({len(flagged)}): " + ", ".join(names),
        )
        ax.legend(loc="lower left", fontsize=7)
    rafts: dict[str, list[tuple[float, float]]] = {}
    for det_id, det in dets.iterrows():
        name = str(det["name"]) if "name" in det else str(det_id)
        if "_" in name and np.isfinite(det.offset_x) and np.isfinite(det.offset_y):
            rafts.setdefault(name.split("_", 1)[0], []).append((det.offset_x, det.offset_y))
    if len(rafts) > 1:
        for raft, xy in rafts.items():
            cx, cy = np.mean(np.asarray(xy), axis=0)
            ax.text(cx, cy, raft, ha="center", va="center", fontsize=6, color="0.2", alpha=0.8)
    ax.autoscale_view()
    ax.set_aspect("equal")
    ax.set_xlabel("focal plane x (mm)")
    ax.set_ylabel("focal plane y (mm)")
    ax.set_title(
        f"{version['instrument']} {version['physical_filter']} {version['level']} — "
        f"version {version_id} (seq {version['seq']}, {version['method']})"
    )
    fig.colorbar(coll, ax=ax, label="relative response G (count-weighted mean 1)")
    output = Path(output)
    fig.savefig(output, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return output


def history_plot(
    registry: Registry,
    *,
    instrument: str,
    physical_filter: str,
    detector: str,
    amp: str | None,
    output: str | Path,
) -> Path:
    """Plot one row's scale in every version, oldest first, and save to ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = registry.history(
        instrument=instrument, physical_filter=physical_filter, detector=detector, amp=amp
    )
    if frame.empty:
        from calibreg.errors import NotFoundError

        level = "AMP" if amp else "DETECTOR"
        raise NotFoundError(
            f"no {level}-level versions of {instrument} {physical_filter}: nothing to plot"
        )
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(frame["created_at"], frame["scale"], marker="o")
    for rec in frame.itertuples(index=False):
        ax.annotate(
            str(rec.version),
            (rec.created_at, rec.scale),
            fontsize=7,
            textcoords="offset points",
            xytext=(0, 5),
            ha="center",
        )
    ax.set_xlabel("version created (UTC)")
    ax.set_ylabel("relative response G")
    ax.set_title(f"{instrument} {physical_filter} detector {detector}" + (f" {amp}" if amp else ""))
    fig.autofmt_xdate()
    output = Path(output)
    fig.savefig(output, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return output
