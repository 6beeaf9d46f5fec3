// Batches, in OpenAI's Batch API shapes: upload a JSONL (/v1/files, purpose=batch), create a batch,
// a live progress bar with completed and failed counts, cancel, download the output and error files.
import { call, send } from "../api.js";
import { busy, button, download, dropZone, errorBox, every, field, h, select, table } from "../dom.js";

const DONE = new Set(["completed", "failed", "expired", "cancelled"]);

function progress(batch) {
  const c = batch.request_counts || { total: 0, completed: 0, failed: 0 };
  const settled = c.completed + c.failed;
  const bar = h("progress", { max: c.total || 1, value: settled, "aria-label": `batch ${batch.id} progress` });
  bar.dataset.percent = c.total ? String(Math.round((settled / c.total) * 100)) : (batch.status === "completed" ? "100" : "0");
  return h("span", { class: "row" }, bar, `${c.completed} completed · ${c.failed} failed · ${c.total} total`);
}

export default {
  id: "batches",
  title: "Batches",
  async mount(root, signal) {
    const box = errorBox();
    const endpoint = select(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"], { name: "endpoint" });
    const chosen = h("p", { class: "muted", role: "status" }, "no file yet");
    const list = h("div", { id: "batches" });
    const made = h("p", { role: "status" });
    let file = null;
    const zone = dropZone("Requests (JSONL)", ".jsonl,application/jsonl,text/plain", (f) => { file = f; chosen.textContent = `${f.name} (${f.size} bytes)`; });
    const fetchFile = async (id, name) => download(name, await (await send(`v1/files/${encodeURIComponent(id)}/content`)).text(), "application/jsonl");

    async function refresh() {
      const batches = (await call("v1/batches?limit=20")).data;
      list.replaceChildren(table(["id", "endpoint", "status", "progress", ""], batches.map((b) => [b.id, b.endpoint, b.status, progress(b),
        h("span", { class: "row" },
          DONE.has(b.status) ? null : button("Cancel", (e) => busy(e.currentTarget, box, async () => { await call(`v1/batches/${encodeURIComponent(b.id)}/cancel`, { method: "POST" }); await refresh(); }), { "aria-label": `Cancel ${b.id}` }),
          b.output_file_id ? button("Output", (e) => busy(e.currentTarget, box, () => fetchFile(b.output_file_id, `${b.id}-output.jsonl`)), { "aria-label": `Download the output of ${b.id}` }) : null,
          b.error_file_id ? button("Errors", (e) => busy(e.currentTarget, box, () => fetchFile(b.error_file_id, `${b.id}-errors.jsonl`)), { "aria-label": `Download the errors of ${b.id}` }) : null)]),
      "Batches"));
    }

    async function create() {
      if (!file) throw new Error("Choose a JSONL file of requests first.");
      const form = new FormData();
      form.append("purpose", "batch");
      form.append("file", file, file.name);
      const uploaded = await call("v1/files", { form });
      const batch = await call("v1/batches", { json: { input_file_id: uploaded.id, endpoint: endpoint.value, completion_window: "24h" } });
      made.replaceChildren("Created ", h("code", { id: "created-batch" }, batch.id), ` from ${uploaded.filename || file.name}`);
      await refresh();
    }

    root.append(h("div", { class: "controls" }, zone, chosen, h("div", { class: "row" }, field("Endpoint", endpoint),
      button("Create batch", (e) => busy(e.currentTarget, box, create))), made), box, list);
    await every(2000, signal, () => refresh().catch((err) => box.show(err)));
  },
};
