"""What the web pages draw, computed from what the Registry returns (no HTML here).

* :func:`focal_plane`: one rectangle per row of a version (a detector, or an amplifier) on the
  focal plane, in millimetres, from the camera geometry the registry holds;
* :func:`timeline`: the validity ranges of a tag as bars on a time axis, per quantum;
* :func:`utc_ms`: TAI nanoseconds as UTC milliseconds since 1970 (what a browser's ``Date``
  takes).

All of it is plain data, embedded in the pages as JSON (:func:`script_json`) or SVG
attributes, so it can be tested without a browser.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import numpy as np
import orjson
import pandas as pd
from markupsafe import Markup

from calibreg.formats.timescale import format_instant, tai_ns_to_utc

#: Centre-to-centre spacing (mm) of LSSTCam's science detectors, for cameras registered
#: without focal-plane offsets but with LSST-style names ``R{xy}_S{xy}``.
RAFT_PITCH_MM = 42.25
_RAFT_NAME = re.compile(r"^R(\d)(\d)_S(\d)(\d)$")


def script_json(value: Any) -> Markup:
    r"""Serialize ``value`` as JSON that is safe inside a ``<script type="application/json">``.

    ``<``, ``>``, ``&`` and ``'`` become ``\\u00XX`` escapes (as Jinja's ``tojson`` does), so a
    value holding ``</script><script>`` cannot end the block; NaN becomes ``null``.

    Parameters
    ----------
    value
        Anything :mod:`orjson` serializes (NumPy arrays included).

    Returns
    -------
    markupsafe.Markup
        The JSON text, marked safe for the template.
    """
    text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    out = (
        text.decode()
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("'", "\\u0027")
    )
    return Markup(out)


def utc_ms(tai_ns: Any) -> float | None:
    """Return a TAI-nanosecond instant as UTC milliseconds since 1970 (``None`` if missing).

    Parameters
    ----------
    tai_ns : int or None
        TAI ns since 1970-01-01 TAI.

    Returns
    -------
    float or None
        Milliseconds of UTC since the Unix epoch (microsecond resolution), or ``None``.
    """
    if tai_ns is None or (isinstance(tai_ns, float) and math.isnan(tai_ns)) or pd.isna(tai_ns):
        return None
    return tai_ns_to_utc(int(tai_ns)).timestamp() * 1000.0


def _centres(dets: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, str]:
    """Detector centres (mm): the stored offsets, else the raft grid of the names, else a grid."""
    ox = dets["offset_x"].to_numpy(float)
    oy = dets["offset_y"].to_numpy(float)
    if len(dets) and np.isfinite(ox).all() and np.isfinite(oy).all():
        return ox, oy, "offsets"
    names = [str(n) for n in dets["name"]]
    parsed = [_RAFT_NAME.match(n) for n in names]
    if len(dets) and all(parsed):
        # Raft R{x}{y}, sensor S{x}{y}: 3 x 3 sensors per raft, 5 x 5 rafts around (0, 0).
        gx = np.array([int(m.group(2)) * 3 + int(m.group(4)) for m in parsed], float)  # type: ignore[union-attr]
        gy = np.array([int(m.group(1)) * 3 + int(m.group(3)) for m in parsed], float)  # type: ignore[union-attr]
        return (gx - 7) * RAFT_PITCH_MM, (gy - 7) * RAFT_PITCH_MM, "raft grid of the names"
    n = len(dets)
    ncol = max(1, math.ceil(math.sqrt(n)))
    idx = np.arange(n)
    return (idx % ncol) * RAFT_PITCH_MM, -(idx // ncol) * RAFT_PITCH_MM, "grid by detector id"


def focal_plane(rows: pd.DataFrame, dets: pd.DataFrame, amps: pd.DataFrame) -> dict[str, Any]:
    """Place each row of a version (a detector, or a detector's amplifier) on the focal plane.

    Detector centres come from their focal-plane offsets (mm) and their size from the pixel
    bounding box times the pixel size; amplifiers from their bounding boxes inside the
    detector, turned by the detector's yaw. A camera registered without pixel sizes gets
    detectors scaled to 95 % of the closest centre spacing; without offsets, positions from
    LSST names ``R{xy}_S{xy}`` or else a grid (the result's ``placement`` says which).

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per drawn rectangle, with ``detector`` (id) and ``amp`` (name; empty or
        missing for a whole detector), e.g. :meth:`calibreg.client.Registry.scales`.
    dets, amps : pandas.DataFrame
        :meth:`calibreg.client.Registry.geometry` of the instrument.

    Returns
    -------
    dict
        ``x``, ``y``, ``w``, ``h``: NumPy float arrays of shape ``(len(rows),)``, the
        rectangles' top-left corners and sizes in mm in SVG orientation (focal-plane ``+y``
        up, so ``y`` is negated); ``placement`` (str). A row whose detector or amplifier the
        geometry lacks gets NaN.
    """
    n = len(rows)
    out = {k: np.full(n, np.nan) for k in ("x", "y", "w", "h")}
    if len(dets) == 0 or n == 0:
        return {**out, "placement": "none"}
    dets = dets.sort_values("id").reset_index(drop=True)
    cx, cy, placement = _centres(dets)
    width_px = (dets["bbox_x1"] - dets["bbox_x0"] + 1).to_numpy(float)
    height_px = (dets["bbox_y1"] - dets["bbox_y0"] + 1).to_numpy(float)
    pix_x = dets["pixel_size_x"].to_numpy(float)
    pix_y = dets["pixel_size_y"].to_numpy(float)
    pix_x = np.where(np.isfinite(pix_y) & ~np.isfinite(pix_x), pix_y, pix_x)
    pix_y = np.where(np.isfinite(pix_x) & ~np.isfinite(pix_y), pix_x, pix_y)
    unknown = ~np.isfinite(pix_x)
    if unknown.any() or placement != "offsets":
        if len(dets) > 1:
            d = np.hypot(cx[:, None] - cx[None, :], cy[:, None] - cy[None, :])
            d[np.diag_indices_from(d)] = np.inf
            spacing = float(d.min())
        else:
            spacing = float(max(width_px.max(), height_px.max()))
        unit = 0.95 * spacing / float(np.nanmax(np.maximum(width_px, height_px)))
        if placement != "offsets":  # sizes must match the invented positions
            unknown[:] = True
        pix_x = np.where(unknown, unit, pix_x)
        pix_y = np.where(unknown, unit, pix_y)
    yaw = np.deg2rad(np.nan_to_num(dets["yaw"].to_numpy(float)))
    det_x0 = dets["bbox_x0"].to_numpy(float)
    det_y0 = dets["bbox_y0"].to_numpy(float)

    # Which detector, and which amplifier box (or the whole detector), each row is.
    i = pd.Index(dets["id"].astype(int)).get_indexer(rows["detector"].astype(int))
    amp_col = (
        rows["amp"].astype(object).where(rows["amp"].notna(), "").astype(str).to_numpy()
        if "amp" in rows.columns
        else np.full(n, "")
    )
    whole = amp_col == ""
    keys = pd.MultiIndex.from_arrays([amps["detector_id"].astype(int), amps["name"].astype(str)])
    j = keys.get_indexer(pd.MultiIndex.from_arrays([rows["detector"].astype(int), amp_col]))
    ok = (i >= 0) & (whole | (j >= 0))
    i, j, whole = i[ok], j[ok], whole[ok]
    wd, hd = width_px[i], height_px[i]
    ax0 = amps["bbox_x0"].to_numpy(float)[j]
    ay0 = amps["bbox_y0"].to_numpy(float)[j]
    aw = amps["bbox_width"].to_numpy(float)[j]
    ah = amps["bbox_height"].to_numpy(float)[j]
    w = np.where(whole, wd, aw)
    h = np.where(whole, hd, ah)
    lx = np.where(whole, 0.0, ax0 - det_x0[i] + aw / 2 - wd / 2)  # box centre - detector centre
    ly = np.where(whole, 0.0, ay0 - det_y0[i] + ah / 2 - hd / 2)
    c, s = np.cos(yaw[i]), np.sin(yaw[i])
    rx, ry = lx * c - ly * s, lx * s + ly * c
    quarter = np.abs(s) > np.abs(c)  # a quarter turn: the box's sides swap
    w, h = np.where(quarter, h, w), np.where(quarter, w, h)
    gx = cx[i] + rx * pix_x[i]
    gy = cy[i] + ry * pix_y[i]
    ww, hh = w * pix_x[i], h * pix_y[i]
    out["x"][ok] = gx - ww / 2
    out["y"][ok] = -gy - hh / 2
    out["w"][ok] = ww
    out["h"][ok] = hh
    return {**{k: np.round(v, 3) for k, v in out.items()}, "placement": placement}


def _active_at(cert: dict[str, Any], when: dt.datetime | None) -> str | None:
    """``"active"``, ``"decertified"`` or ``None`` (not yet certified) at ``when``."""
    if when is None:
        return "active" if cert.get("decertified_at") is None else "decertified"
    if cert["certified_at"] > when:
        return None
    gone = cert.get("decertified_at")
    return "decertified" if gone is not None and gone <= when else "active"


def timeline(
    certifications: list[dict[str, Any]],
    *,
    as_of: dt.datetime | None = None,
    width: float = 1000.0,
) -> dict[str, Any]:
    """Lay a tag's certifications out as bars on a shared time axis, one group per quantum.

    Each quantum (instrument, physical_filter) gets a lane of the ranges certified (at
    ``as_of``, or now) and a lane of the decertified history (drawn faded). Unbounded ends run
    to the edge of the axis and are marked open.

    Parameters
    ----------
    certifications : list of dict
        :meth:`calibreg.client.Registry.certifications` rows (``include_closed=True``).
    as_of : datetime.datetime, optional
        Aware instant: show the tag as it stood then (later certifications are left out).
    width : float
        Axis length in SVG units.

    Returns
    -------
    dict
        ``groups``: list of ``{"instrument", "physical_filter", "lanes": [{"kind", "bars"}]}``
        where a bar has ``x``, ``w`` (SVG units), ``version_id``, ``certification_id``,
        ``kind`` (``active``/``decertified``), ``begin``/``end`` (UTC text, ``None`` =
        unbounded), ``open_begin``/``open_end`` and ``title``; ``ticks``: ``[{"x", "label"}]``;
        ``width``; ``n_shown``.
    """
    shown = []
    for cert in certifications:
        kind = _active_at(cert, as_of)
        if kind is not None:
            shown.append((kind, cert))
    finite = [
        int(v)
        for _kind, c in shown
        for v in (c.get("valid_begin"), c.get("valid_end"))
        if v is not None and not pd.isna(v)
    ]
    if finite:
        lo, hi = min(finite), max(finite)
    else:
        lo, hi = 0, 1
    span = max(hi - lo, 60 * 10**9)  # at least a minute wide
    lo -= span // 10  # room for ranges unbounded on either side
    hi += span // 5

    def pos(ns: int | None, default: float) -> float:
        if ns is None or pd.isna(ns):
            return default
        return round((int(ns) - lo) / (hi - lo) * width, 2)

    groups: dict[tuple[str, str | None], dict[str, list[dict[str, Any]]]] = {}
    for kind, c in sorted(
        shown, key=lambda kc: (kc[1]["instrument"], str(kc[1].get("physical_filter")))
    ):
        key = (c["instrument"], c.get("physical_filter"))
        lanes = groups.setdefault(key, {"active": [], "decertified": []})
        x0 = pos(c.get("valid_begin"), 0.0)
        x1 = pos(c.get("valid_end"), width)
        begin = format_instant(c.get("valid_begin"))
        end = format_instant(c.get("valid_end"))
        title = (
            f"version {c['version_id']} (certification {c['certification_id']}): "
            f"[{begin or '-inf'}, {end or '+inf (open)'}) certified "
            f"{c['certified_at']:%Y-%m-%d %H:%M:%S} UTC by {c.get('certified_by')}"
        )
        if c.get("decertified_at") is not None and kind == "decertified":
            title += (
                f"; decertified {c['decertified_at']:%Y-%m-%d %H:%M:%S} UTC"
                f" by {c.get('decertified_by')}"
            )
        lanes[kind].append(
            {
                "x": x0,
                "w": max(round(x1 - x0, 2), 1.0),
                "version_id": int(c["version_id"]),
                "certification_id": int(c["certification_id"]),
                "kind": kind,
                "begin": begin,
                "end": end,
                "open_begin": c.get("valid_begin") is None,
                "open_end": c.get("valid_end") is None,
                "title": title,
            }
        )
    ticks = []
    for k in range(6):
        ns = lo + (hi - lo) * k // 5
        label = (format_instant(ns) or "")[:19].replace("T", " ")
        ticks.append({"x": round(width * k / 5, 2), "label": label})
    return {
        "groups": [
            {
                "instrument": inst,
                "physical_filter": filt,
                "lanes": [{"kind": kind, "bars": bars} for kind, bars in lanes.items() if bars],
            }
            for (inst, filt), lanes in groups.items()
        ],
        "ticks": ticks,
        "width": width,
        "n_shown": len(shown),
    }
