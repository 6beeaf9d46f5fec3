// Small SVG line charts: one line per series, a legend in text, no library.
import { h, svg } from "./dom.js";

const W = 480, H = 180, PAD = { l: 48, r: 8, t: 8, b: 22 };

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
}

// series: [{name, points: [[x, y|null], ...]}]; x in seconds (time) or any number.
export function lineChart(title, series, { format = (v) => v.toFixed(2), xLabel = (x) => new Date(x * 1000).toLocaleTimeString() } = {}) {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]).filter((v) => v !== null && Number.isFinite(v)));
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, title));
  if (!xs.length || !ys.length) {
    figure.append(h("p", { class: "muted empty" }, "no data yet"));
    return figure;
  }
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const top = niceMax(Math.max(...ys));
  const px = (x) => PAD.l + ((x - x0) / (x1 - x0)) * (W - PAD.l - PAD.r);
  const py = (y) => H - PAD.b - (y / top) * (H - PAD.t - PAD.b);
  const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title },
    [0, 0.5, 1].map((f) => [
      svg("line", { class: "grid", x1: PAD.l, x2: W - PAD.r, y1: py(top * f), y2: py(top * f) }),
      svg("text", { class: "tick", x: PAD.l - 4, y: py(top * f) + 4, "text-anchor": "end" }, format(top * f)),
    ]),
    svg("text", { class: "tick", x: PAD.l, y: H - 6 }, xLabel(x0)),
    svg("text", { class: "tick", x: W - PAD.r, y: H - 6, "text-anchor": "end" }, xLabel(x1)),
    series.map((s, i) => {
      const runs = [[]];
      for (const [x, y] of s.points) {
        if (y === null || !Number.isFinite(y)) { if (runs[runs.length - 1].length) runs.push([]); } else runs[runs.length - 1].push(`${px(x).toFixed(1)},${py(y).toFixed(1)}`);
      }
      return runs.filter((r) => r.length).map((r) => (r.length === 1
        ? svg("circle", { class: `s${i % 8}`, cx: r[0].split(",")[0], cy: r[0].split(",")[1], r: 2.5 })
        : svg("polyline", { class: `line s${i % 8}`, points: r.join(" ") })));
    }));
  figure.append(plot, h("ul", { class: "legend" }, series.map((s, i) => {
    const last = [...s.points].reverse().find((p) => p[1] !== null && Number.isFinite(p[1]));
    return h("li", {}, h("span", { class: `swatch s${i % 8}`, "aria-hidden": "true" }), `${s.name}: ${last ? format(last[1]) : "–"}`);
  })));
  return figure;
}

// Horizontal bars laid end to end: a pipeline's stages as a waterfall.
export function waterfall(title, stages) {
  const total = stages.reduce((a, s) => a + s.seconds, 0) || 1;
  const rowH = 22, width = 480, left = 90;
  let start = 0;
  const rows = stages.map((s, i) => {
    const x = left + (start / total) * (width - left - 60);
    const w = Math.max((s.seconds / total) * (width - left - 60), 1);
    start += s.seconds;
    return svg("g", { class: "stage", dataset: { stage: s.name } },
      svg("text", { x: 0, y: i * rowH + 15 }, s.name),
      svg("rect", { class: `s${i % 8}`, x, y: i * rowH + 4, width: w, height: rowH - 8 }),
      svg("text", { class: "tick", x: x + w + 4, y: i * rowH + 15 }, `${(s.seconds * 1000).toFixed(0)} ms`));
  });
  return h("figure", { class: "chart waterfall" }, h("figcaption", {}, title),
    svg("svg", { viewBox: `0 0 ${width} ${stages.length * rowH + 4}`, role: "img", "aria-label": title }, rows));
}
