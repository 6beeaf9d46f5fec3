// Every model, adapter and alias: kind, engine, version, the deployment behind it, its health and replicas, live.
import { call, models } from "../api.js";
import { errorBox, every, h, table } from "../dom.js";

export default {
  id: "models",
  title: "Models",
  async mount(root, signal) {
    const box = errorBox();
    const body = h("div", { id: "models-table" });
    const stamp = h("p", { class: "muted", role: "status" });
    root.append(box, stamp, body);
    const refresh = async () => {
      try {
        const [cards, deployments] = await Promise.all([models(), call("console/deployments")]);
        const health = new Map(deployments.data.map((d) => [d.id, d]));
        body.replaceChildren(table(["id", "kind", "engine", "version", "base / targets", "deployment", "status", "replicas"],
          cards.map((c) => {
            const d = health.get(c.id) || {};
            const targets = c.targets ? c.targets.map((t) => `${t.model} ${t.weight}%`).join(", ") + (c.fallback ? ` (fallback ${c.fallback})` : "") : c.parent || "";
            return [c.id, c.kind, c.engine, c.version, targets, d.deployment || "Ingress",
              h("span", { class: `status ${String(d.status || "").toLowerCase()}` }, d.status || "?"), d.replicas ?? "–"];
          }), "Served models"));
        stamp.textContent = `${cards.length} models · refreshed ${new Date().toLocaleTimeString()}`;
        box.clear();
      } catch (err) {
        box.show(err);
      }
    };
    await every(10000, signal, refresh);
  },
};
