// The knowledge base: collections, their items (text, image, vector) and search, through /v1/collections.
import { call, models } from "../api.js";
import { busy, button, errorBox, field, h, select, table } from "../dom.js";

const path = (name, rest = "") => `v1/collections/${encodeURIComponent(name)}${rest}`;

function readDataURL(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function metadataOf(text) {
  if (!text.trim()) return {};
  try { return JSON.parse(text); } catch (err) { throw new Error(`Metadata is not valid JSON: ${err.message}`); }
}

export default {
  id: "knowledge",
  title: "Knowledge base",
  async mount(root) {
    const embedders = (await models()).filter((m) => m.kind === "embedding");
    const box = errorBox();
    const list = h("div", { id: "collections" });
    const detail = h("div", { id: "collection" });
    const name = h("input", { name: "name", pattern: "[A-Za-z0-9_-]+", placeholder: "docs" });
    const model = select(embedders.map((m) => ({ value: m.id, label: `${m.id} (${(m.input_modalities || ["text"]).join(", ")})` })), { name: "embedder" });
    let open = null;

    async function refresh() {
      const collections = (await call("v1/collections")).data;
      list.replaceChildren(table(["name", "model", "dimension", "items", ""], collections.map((c) => [
        c.name, c.model, c.dimension, c.items_count,
        h("span", { class: "row" }, button("Open", (e) => busy(e.currentTarget, box, () => show(c.name)), { "aria-label": `Open ${c.name}` }),
          button("Delete", (e) => busy(e.currentTarget, box, async () => { await call(path(c.name), { method: "DELETE" }); if (open === c.name) detail.replaceChildren(); await refresh(); }), { "aria-label": `Delete ${c.name}` })),
      ]), "Collections"));
    }

    async function show(collection) {
      open = collection;
      const items = (await call(path(collection, "/items?limit=100"))).data;
      const text = h("textarea", { rows: 2, name: "text" });
      const meta = h("input", { name: "metadata", placeholder: '{"source": "…"}', size: 24 });
      const image = h("input", { type: "file", accept: "image/*", name: "image" });
      const query = h("input", { name: "query", size: 24 });
      const hits = h("div", { id: "hits" });
      const add = async () => {
        const item = { metadata: metadataOf(meta.value) };
        if (image.files[0]) item.image = await readDataURL(image.files[0]);
        else if (text.value.trim()) item.text = text.value;
        else throw new Error("Type a text or choose an image to add.");
        await call(path(collection, "/items"), { json: { items: [item] } });
        await refresh();
        await show(collection);
      };
      const search = async () => {
        const found = await call(path(collection, "/search"), { json: { query: query.value, top_k: 5 } });
        hits.replaceChildren(table(["score", "id", "kind", "text", "metadata"], found.data.map((hit) => [
          hit.score.toFixed(3), hit.item.id, hit.item.kind, hit.item.text ?? "", JSON.stringify(hit.item.metadata || {})]), "Search results"));
      };
      detail.replaceChildren(h("h3", {}, `Collection ${collection}`),
        table(["id", "kind", "text", "metadata", "detections", ""], items.map((it) => [
          it.id, it.kind === "image" ? h("span", { class: "tag" }, "image") : it.kind, it.text ?? "", h("code", {}, JSON.stringify(it.metadata || {})),
          it.detections ? it.detections.map((d) => d.label).join(", ") : "",
          button("Delete", (e) => busy(e.currentTarget, box, async () => { await call(path(collection, `/items/${encodeURIComponent(it.id)}`), { method: "DELETE" }); await refresh(); await show(collection); }), { "aria-label": `Delete item ${it.id}` }),
        ]), `${items.length} items`),
        h("fieldset", {}, h("legend", {}, "Add an item"), h("div", { class: "row" }, field("Text", text), field("or an image", image), field("Metadata (JSON)", meta)),
          button("Add", (e) => busy(e.currentTarget, box, add))),
        h("fieldset", {}, h("legend", {}, "Search"), h("div", { class: "row" }, field("Query", query), button("Search", (e) => busy(e.currentTarget, box, search))), hits));
    }

    const create = async () => {
      await call("v1/collections", { json: { name: name.value.trim(), model: model.value } });
      await refresh();
      await show(name.value.trim());
    };
    root.append(box, list, h("fieldset", {}, h("legend", {}, "New collection"),
      h("div", { class: "row" }, field("Name", name), field("Embedding model", model), button("Create", (e) => busy(e.currentTarget, box, create)))), detail);
    await refresh();
  },
};
