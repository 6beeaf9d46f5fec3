// Keys and usage (the gateway's LiteLLM-style routes): create, block, unblock and delete keys with
// their limits, and each key's usage per model over time. Needs the master key, asked for here and
// kept in this tab's sessionStorage; nothing is called before it is given.
import { call, keys } from "../api.js";
import { lineChart } from "../chart.js";
import { busy, button, errorBox, field, h, table } from "../dom.js";

const num = (input) => (input.value.trim() === "" ? undefined : Number(input.value));

// Cumulative tokens per key and model, one point per request.
function usageSeries(entries) {
  const by = new Map();
  for (const e of [...entries].sort((a, b) => a.created - b.created)) {
    const name = `${e.key_alias || e.token.slice(0, 8)} · ${e.model || "(none)"}`;
    const s = by.get(name) || { name, points: [], total: 0 };
    s.total += e.total_tokens;
    s.points.push([e.created, s.total]);
    by.set(name, s);
  }
  return [...by.values()];
}

export default {
  id: "keys",
  title: "Keys and usage",
  async mount(root) {
    const box = errorBox();
    const master = h("input", { type: "password", name: "master", autocomplete: "off", value: keys.master() });
    const list = h("div", { id: "key-list" });
    const created = h("div", { id: "created-key", role: "status" });
    const usage = h("div", { id: "usage" });
    const alias = h("input", { name: "key_alias" });
    const allowed = h("input", { name: "models", placeholder: "all" });
    const rpm = h("input", { type: "number", min: 0, name: "rpm_limit" });
    const tpm = h("input", { type: "number", min: 0, name: "tpm_limit" });
    const budget = h("input", { type: "number", min: 0, name: "max_budget" });
    const duration = h("input", { name: "duration", placeholder: "30d", size: 6 });
    const admin = (path, options = {}) => call(path, { ...options, key: keys.master() });

    async function refresh() {
      const found = (await admin("key/list?return_full_object=true")).keys;
      list.replaceChildren(table(["alias", "key", "models", "rpm", "tpm", "budget (tokens)", "spent", "expires", "state", ""],
        found.map((k) => [k.key_alias || "", k.key_name, k.models.join(", ") || "all", k.rpm_limit ?? "–", k.tpm_limit ?? "–", k.max_budget ?? "–", k.spend,
          k.expires || "never", k.blocked ? "blocked" : "active",
          h("span", { class: "row" },
            button(k.blocked ? "Unblock" : "Block", (e) => busy(e.currentTarget, box, async () => { await admin(k.blocked ? "key/unblock" : "key/block", { json: { key: k.token } }); await refresh(); }), { "aria-label": `${k.blocked ? "Unblock" : "Block"} ${k.key_alias || k.key_name}` }),
            button("Delete", (e) => busy(e.currentTarget, box, async () => { await admin("key/delete", { json: { keys: [k.token] } }); await refresh(); }), { "aria-label": `Delete ${k.key_alias || k.key_name}` }))]),
        `${found.length} keys`));
      const log = await admin("usage?limit=1000");
      const t = log.totals;
      usage.replaceChildren(lineChart("Tokens per key and model (cumulative)", usageSeries(log.data), { format: (v) => v.toFixed(0) }),
        h("p", { class: "muted" }, `${t.requests} requests · ${t.total_tokens} tokens · ${t.audio_seconds.toFixed(1)} s audio · ${t.images} images · ${t.cache_hits} cache hits`));
    }

    async function create() {
      const body = { key_alias: alias.value.trim() || undefined, rpm_limit: num(rpm), tpm_limit: num(tpm), max_budget: num(budget), duration: duration.value.trim() || undefined };
      const names = allowed.value.split(",").map((s) => s.trim()).filter(Boolean);
      if (names.length) body.models = names;
      const key = await admin("key/generate", { json: body });
      created.replaceChildren(h("p", {}, "New key (shown once): ", h("code", { id: "new-key" }, key.key)),
        button("Use it as this tab's API key", () => { keys.setApi(key.key); document.getElementById("api-key").value = key.key; document.getElementById("key-state").textContent = "key set for this tab"; }));
      await refresh();
    }

    const load = h("button", { type: "submit" }, "Use master key");
    root.append(
      h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); keys.setMaster(master.value.trim()); busy(load, box, refresh); } },
        field("Master key", master), load),
      box,
      h("fieldset", {}, h("legend", {}, "New key"),
        h("div", { class: "row" }, field("Alias", alias), field("Models (comma-separated)", allowed), field("Requests per minute", rpm),
          field("Tokens per minute", tpm), field("Budget (tokens)", budget), field("Lifetime", duration)),
        button("Create key", (e) => busy(e.currentTarget, box, create)), created),
      list, usage);
    if (keys.master()) await busy(load, box, refresh);
  },
};
