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
    // The cards first, then each deployment's health and replicas as Serve reports them (a slower call).
    const render = (cards, health) => {
      body.replaceChildren(table(["id", "kind", "engine", "version", "base / targets", "deployment", "status", "replicas"],
        cards.map((c) => {
          const d = health ? health.get(c.id) || {} : {};
          const targets = c.targets ? c.targets.map((t) => `${t.model} ${t.weight}%`).join(", ") + (c.fallback ? ` (fallback ${c.fallback})` : "") : c.parent || "";
          return [c.id, c.kind, c.engine, c.version, targets, health ? d.deployment || "Ingress" : "…",
            h("span", { class: `status ${String(d.status || "").toLowerCase()}` }, health ? d.status || "?" : "…"), health ? d.replicas ?? "–" : "…"];
        }), "Served models"));
    };
    let first = await models(); // interactive once the cards are in; health and replicas follow
    render(first, null);
    const refresh = async () => {
      try {
        const deployments = call("console/deployments");
        deployments.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
        const cards = first || (await models());
        first = null;
        render(cards, new Map((await deployments).data.map((d) => [d.id, d])));
        body.dataset.health = "1";
        stamp.textContent = `${cards.length} models · refreshed ${new Date().toLocaleTimeString()}`;
        box.clear();
      } catch (err) {
        box.show(err);
      }
    };
    every(10000, signal, refresh);
  },
};
