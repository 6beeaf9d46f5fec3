// Operations: request rate, 5xx ratio, p50/p99 latency and TTFT per model, live, from the app's own
// Prometheus metrics as the Ingress summarises them (/console/metrics): never Ray's ports.
import { call } from "../api.js";
import { lineChart } from "../chart.js";
import { errorBox, every, h } from "../dom.js";

const CHARTS = [
  ["Requests per second", "rps", (v) => v.toFixed(2)],
  ["5xx error ratio", "error_ratio", (v) => `${(v * 100).toFixed(0)}%`],
  ["Latency p50", "p50_s", (v) => `${(v * 1000).toFixed(0)} ms`],
  ["Latency p99", "p99_s", (v) => `${(v * 1000).toFixed(0)} ms`],
  ["Time to first token p50", "ttft_p50_s", (v) => `${(v * 1000).toFixed(0)} ms`],
  ["Time to first token p99", "ttft_p99_s", (v) => `${(v * 1000).toFixed(0)} ms`],
];

export default {
  id: "operations",
  title: "Operations",
  async mount(root, signal) {
    const box = errorBox();
    const state = h("p", { class: "muted", role: "status" });
    const charts = h("div", { class: "charts", id: "charts" });
    root.append(box, state, charts);
    const refresh = async () => {
      try {
        const doc = await call("console/metrics");
        const names = [...new Set(doc.points.flatMap((p) => Object.keys(p.models)))].sort();
        charts.replaceChildren(...CHARTS.map(([title, key, format]) => lineChart(title,
          names.map((name) => ({ name: name === "none" ? "(no model)" : name, points: doc.points.map((p) => [p.t, p.models[name] ? p.models[name][key] : null]) })),
          { format })));
        state.textContent = `${doc.points.length} points · ${doc.sources} exporter(s) · every ${doc.interval_s} s or slower`;
        box.clear();
      } catch (err) {
        box.show(err);
      }
    };
    await every(5000, signal, refresh);
  },
};
