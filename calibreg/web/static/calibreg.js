/* calibreg web view: focal-plane maps and scatter plots as inline SVG (no library, no build).
 *
 * Each <figure data-plot="focal-plane|scatter" data-source="ID"> is drawn from the JSON in
 * <script type="application/json" id="ID">, written by calibreg.web.routes. Text goes into the
 * page through textContent only, never innerHTML.
 */
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  // viridis, 10 stops
  const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e",
                   "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];
  // blue - white - red, for ratios around 1
  const DIVERGING = ["#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
                     "#fddbc7", "#f4a582", "#d6604d", "#b2182b"];
  const NO_VALUE = "#c4c8cf";

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, attrs) {
    const node = el("text", Object.assign({ x: x, y: y }, attrs || {}), parent);
    node.textContent = content;
    return node;
  }

  function finite(v) { return typeof v === "number" && isFinite(v); }

  function hexToRgb(hex) {
    const n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function colour(palette, t) {
    if (!finite(t)) return NO_VALUE;
    t = Math.min(1, Math.max(0, t)) * (palette.length - 1);
    const i = Math.min(Math.floor(t), palette.length - 2);
    const f = t - i;
    const a = hexToRgb(palette[i]), b = hexToRgb(palette[i + 1]);
    const c = a.map((v, k) => Math.round(v + (b[k] - v) * f));
    return "rgb(" + c.join(",") + ")";
  }

  function quantile(sorted, q) {
    if (!sorted.length) return NaN;
    const pos = (sorted.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  }

  function fmt(v, digits) {
    if (!finite(v)) return "n/a";
    return Number(v.toPrecision(digits || 5)).toString();
  }

  function fmtErr(v) {
    if (!finite(v)) return "n/a";
    return v.toExponential(2).replace("e-0", "e-").replace("e+0", "e+");
  }

  // ------------------------------------------------------------------ tooltip
  const tooltip = {
    node: null,
    show(lines, event) {
      if (!this.node) this.node = document.getElementById("tooltip");
      if (!this.node) return;
      this.node.textContent = lines.join("\n");
      this.node.hidden = false;
      this.move(event);
    },
    move(event) {
      if (!this.node || this.node.hidden) return;
      const pad = 14;
      let x = event.clientX + pad, y = event.clientY + pad;
      const box = this.node.getBoundingClientRect();
      if (x + box.width > window.innerWidth) x = event.clientX - box.width - pad;
      if (y + box.height > window.innerHeight) y = event.clientY - box.height - pad;
      this.node.style.left = x + "px";
      this.node.style.top = y + "px";
    },
    hide() { if (this.node) this.node.hidden = true; },
  };

  function attachTooltip(svg, selector, linesOf) {
    svg.addEventListener("mouseover", function (event) {
      const target = event.target.closest(selector);
      if (target) tooltip.show(linesOf(target), event);
    });
    svg.addEventListener("mousemove", function (event) { tooltip.move(event); });
    svg.addEventListener("mouseout", function (event) {
      if (!event.relatedTarget || !svg.contains(event.relatedTarget)) tooltip.hide();
    });
  }

  // ------------------------------------------------------------------ focal plane
  function drawFocalPlane(figure, data) {
    const n = data.value.length;
    const diverging = figure.dataset.diverging === "1";
    const palette = diverging ? DIVERGING : VIRIDIS;
    const values = data.value.filter(finite).sort((a, b) => a - b);
    let lo = quantile(values, 0.02), hi = quantile(values, 0.98);
    if (diverging) {
      const m = Math.max(Math.abs(lo - 1), Math.abs(hi - 1)) || 1e-6;
      lo = 1 - m; hi = 1 + m;
    } else if (!(hi > lo)) {
      lo = (lo || 1) * 0.999; hi = (hi || 1) * 1.001;
    }
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      if (!finite(data.x[i])) continue;
      x0 = Math.min(x0, data.x[i]); y0 = Math.min(y0, data.y[i]);
      x1 = Math.max(x1, data.x[i] + data.w[i]); y1 = Math.max(y1, data.y[i] + data.h[i]);
    }
    if (!finite(x0)) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No camera geometry for these rows.";
      figure.appendChild(p);
      return;
    }
    const pad = 0.03 * Math.max(x1 - x0, y1 - y0);
    const wrap = document.createElement("div");
    wrap.className = "fp-wrap";
    figure.appendChild(wrap);
    const svg = el("svg", {
      viewBox: [x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad].join(" "),
      width: 720, height: Math.round(720 * (y1 - y0 + 2 * pad) / (x1 - x0 + 2 * pad)),
      role: "img", "aria-label": "focal-plane map of " + data.label,
    }, wrap);
    const frag = document.createDocumentFragment();
    for (let i = 0; i < n; i++) {
      if (!finite(data.x[i])) continue;
      const flagged = data.flags[i] !== "";
      const rect = el("rect", {
        x: data.x[i], y: data.y[i], width: data.w[i], height: data.h[i],
        fill: colour(palette, (data.value[i] - lo) / (hi - lo)),
        class: flagged ? "amp flagged" : "amp",
        "vector-effect": "non-scaling-stroke",
        "data-i": i,
        "data-key": data.amp[i] ? data.name[i] + "/" + data.amp[i] : data.name[i],
      });
      frag.appendChild(rect);
    }
    svg.appendChild(frag);
    // flagged outlines on top, so neighbours do not hide them
    svg.querySelectorAll("rect.flagged").forEach((r) => svg.appendChild(r));
    attachTooltip(svg, "rect.amp", function (rect) {
      const i = Number(rect.dataset.i);
      const lines = ["detector " + data.name[i] + " (id " + data.det[i] + ")"];
      if (data.amp[i]) lines.push("amplifier " + data.amp[i]);
      let value = data.label + " = " + fmt(data.value[i], 6);
      if (finite(data.error[i])) value += " ± " + fmtErr(data.error[i]);
      lines.push(value);
      lines.push("flags: " + (data.flags[i] || "none"));
      return lines;
    });
    drawLegend(wrap, palette, lo, hi, data.label, diverging);
    const note = document.createElement("figcaption");
    note.className = "hint";
    note.textContent = "Colour range " + fmt(lo, 6) + " to " + fmt(hi, 6) +
      (diverging ? " (symmetric about 1)" : " (2nd to 98th percentile)") +
      "; positions from " + data.placement + "; focal-plane +y up.";
    figure.appendChild(note);
  }

  function drawLegend(parent, palette, lo, hi, label, diverging) {
    const svg = el("svg", { width: 110, height: 320, viewBox: "0 0 110 320", class: "legend",
                             "aria-label": "colour scale" }, parent);
    const id = "grad-" + Math.random().toString(36).slice(2);
    const grad = el("linearGradient", { id: id, x1: 0, y1: 1, x2: 0, y2: 0 }, el("defs", {}, svg));
    palette.forEach((c, k) => el("stop", { offset: k / (palette.length - 1), "stop-color": c }, grad));
    text(svg, 10, 14, label, { "font-weight": 600 });
    el("rect", { x: 10, y: 24, width: 20, height: 220, fill: "url(#" + id + ")", stroke: "#888" }, svg);
    text(svg, 36, 30, fmt(hi, 5));
    text(svg, 36, 138, fmt((lo + hi) / 2, 5));
    text(svg, 36, 246, fmt(lo, 5));
    el("rect", { x: 10, y: 262, width: 20, height: 12, fill: "#fff", stroke: "#c62828", "stroke-width": 2 }, svg);
    text(svg, 36, 272, "flagged");
    el("rect", { x: 10, y: 284, width: 20, height: 12, fill: NO_VALUE }, svg);
    text(svg, 36, 294, "no value");
    if (diverging) text(svg, 10, 314, "1 = unchanged");
  }

  // ------------------------------------------------------------------ scatter
  function niceTicks(lo, hi, count) {
    const span = hi - lo;
    if (!(span > 0)) return [lo];
    const step0 = span / count;
    const mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= count) || 10 * mag;
    const ticks = [];
    const first = Math.ceil(lo / step);
    for (let k = first; k * step <= hi + step * 1e-9; k++) ticks.push(Number((k * step).toPrecision(12)));
    return ticks;
  }

  function isoMinute(ms) {
    return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
  }

  function drawScatter(figure, data) {
    const W = 960, H = 340, L = 80, R = 20, T = 12, B = 46;
    const n = data.y.length;
    const idx = [];
    for (let i = 0; i < n; i++) if (finite(data.x[i]) && finite(data.y[i])) idx.push(i);
    if (!idx.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "Nothing to plot.";
      figure.appendChild(p);
      return;
    }
    let xlo = Infinity, xhi = -Infinity, ylo = Infinity, yhi = -Infinity;
    for (const i of idx) {
      const e = data.yerr && finite(data.yerr[i]) ? data.yerr[i] : 0;
      xlo = Math.min(xlo, data.x[i]); xhi = Math.max(xhi, data.x[i]);
      ylo = Math.min(ylo, data.y[i] - e); yhi = Math.max(yhi, data.y[i] + e);
    }
    if (!(xhi > xlo)) { xlo -= 1; xhi += 1; }
    if (!(yhi > ylo)) { const d = Math.abs(ylo) * 1e-3 || 1; ylo -= d; yhi += d; }
    const xp = 0.03 * (xhi - xlo), yp = 0.08 * (yhi - ylo);
    xlo -= xp; xhi += xp; ylo -= yp; yhi += yp;
    const sx = (v) => L + (v - xlo) / (xhi - xlo) * (W - L - R);
    const sy = (v) => H - B - (v - ylo) / (yhi - ylo) * (H - T - B);
    const svg = el("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img",
                             "aria-label": data.label + " against " + (data.xtime ? "time" : data.xlabel) }, figure);
    for (const v of niceTicks(ylo, yhi, 6)) {
      el("line", { class: "grid", x1: L, x2: W - R, y1: sy(v), y2: sy(v) }, svg);
      text(svg, L - 6, sy(v) + 4, fmt(v, 6), { "text-anchor": "end" });
    }
    let xticks;
    if (data.xtime) {
      xticks = [];
      for (let k = 0; k <= 4; k++) xticks.push(xlo + (xhi - xlo) * (0.05 + 0.9 * k / 4));
    } else {
      const first = Math.ceil(xlo), last = Math.floor(xhi);
      const every = Math.max(1, Math.ceil((last - first + 1) / 12));
      xticks = [];
      for (let v = first; v <= last; v += every) xticks.push(v);
    }
    for (const v of xticks) {
      el("line", { class: "tick", x1: sx(v), x2: sx(v), y1: H - B, y2: H - B + 5 }, svg);
      text(svg, sx(v), H - B + 18, data.xtime ? isoMinute(v) : String(v), { "text-anchor": "middle" });
    }
    el("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }, svg);
    el("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }, svg);
    text(svg, (L + W - R) / 2, H - 6, data.xtime ? "exposure start (UTC)" : data.xlabel, { "text-anchor": "middle" });
    text(svg, 14, (T + H - B) / 2, data.label, { "text-anchor": "middle", transform: "rotate(-90 14 " + (T + H - B) / 2 + ")" });
    const frag = document.createDocumentFragment();
    if (data.yerr) {
      for (const i of idx) {
        if (!finite(data.yerr[i])) continue;
        frag.appendChild(el("line", { class: "err", x1: sx(data.x[i]), x2: sx(data.x[i]),
                                      y1: sy(data.y[i] - data.yerr[i]), y2: sy(data.y[i] + data.yerr[i]) }));
      }
    }
    for (const i of idx) {
      frag.appendChild(el("circle", { class: data.flags[i] ? "pt flagged" : "pt", cx: sx(data.x[i]),
                                      cy: sy(data.y[i]), r: n > 500 ? 2.2 : 3.5, "data-i": i }));
    }
    svg.appendChild(frag);
    attachTooltip(svg, "circle.pt", function (pt) {
      const i = Number(pt.dataset.i);
      const lines = [];
      if (data.xtime) {
        lines.push("exposure " + data.id[i]);
        lines.push(new Date(data.x[i]).toISOString().replace("T", " ").replace("Z", " UTC"));
      } else {
        lines.push((data.xlabel || "x") + " " + data.id[i]);
      }
      let value = data.label + " = " + fmt(data.y[i], 7);
      if (data.yerr && finite(data.yerr[i])) value += " ± " + fmtErr(data.yerr[i]);
      lines.push(value);
      lines.push("flags: " + (data.flags[i] || "none"));
      return lines;
    });
  }

  function init() {
    document.querySelectorAll("figure[data-plot]").forEach(function (figure) {
      const source = document.getElementById(figure.dataset.source);
      if (!source) return;
      const data = JSON.parse(source.textContent);
      if (figure.dataset.plot === "focal-plane") drawFocalPlane(figure, data);
      else if (figure.dataset.plot === "scatter") drawScatter(figure, data);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
