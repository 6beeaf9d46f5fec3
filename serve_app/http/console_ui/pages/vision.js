// Vision: boxes with labels and scores over the image (the slider re-filters without a new request),
// and image-RAG: the question, the retrieved items beside the streamed answer.
import { call, events, models, send } from "../api.js";
import { busy, button, dropZone, errorBox, field, h, select, svg } from "../dom.js";

function overlay(url, width, height, detections, minScore) {
  const kept = detections.filter((d) => d.score >= minScore);
  return h("figure", { class: "boxes" }, h("img", { src: url, alt: "the uploaded image" }),
    svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", "aria-label": `${kept.length} detections` },
      kept.map((d, i) => svg("g", { class: `box s${d.class_id % 8}`, dataset: { label: d.label, score: d.score, x1: d.box.x1, y1: d.box.y1, x2: d.box.x2, y2: d.box.y2 } },
        svg("rect", { x: d.box.x1, y: d.box.y1, width: d.box.x2 - d.box.x1, height: d.box.y2 - d.box.y1 }),
        svg("text", { x: d.box.x1 + 2, y: Math.max(d.box.y1 - 3, 10) }, `${d.label} ${d.score.toFixed(2)}`),
        svg("title", {}, `#${i} ${d.label} ${d.score.toFixed(3)}`)))),
    h("figcaption", {}, `${kept.length} of ${detections.length} detections at score ≥ ${minScore.toFixed(2)}`));
}

export default {
  id: "vision",
  title: "Vision",
  async mount(root) {
    const all = await models();
    const detector = select(all.filter((m) => m.kind === "detector").map((m) => m.id), { name: "model" });
    const llm = select(["", ...all.filter((m) => m.kind === "llm").map((m) => m.id)].map((v) => ({ value: v, label: v || "(configured)" })), { name: "llm" });
    const collections = (await call("v1/collections")).data;
    const collection = select(collections.map((c) => c.name), { name: "collection" });
    const conf = h("input", { type: "range", min: 0.05, max: 1, step: 0.05, value: "0.25", name: "conf", id: "conf" });
    const confShown = h("output", { for: "conf" }, "0.25");
    const question = h("input", { name: "question", placeholder: "What is in this image?", size: 30 });
    const box = errorBox();
    const chosen = h("p", { class: "muted", role: "status" }, "no image yet");
    const view = h("div", { id: "detections" });
    const rag = h("div", { id: "rag", class: "grid2" });
    let file = null, url = null, result = null, requested = 0.25;

    const draw = () => {
      const min = Number(conf.value);
      confShown.textContent = min.toFixed(2);
      if (!result) return;
      view.replaceChildren(overlay(url, result.width, result.height, result.detections, min));
      if (min < requested) view.append(h("p", { class: "muted" }, `Detected at ${requested.toFixed(2)}: detect again to see boxes below it.`));
    };
    conf.addEventListener("input", draw);
    const zone = dropZone("Image", "image/*", (f) => {
      file = f;
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(f);
      result = null;
      view.replaceChildren();
      chosen.textContent = `${f.name} (${f.size} bytes)`;
    });
    const need = () => { if (!file) throw new Error("Choose an image first."); };

    async function detect() {
      need();
      requested = Number(conf.value);
      const form = new FormData();
      form.append("image", file, file.name);
      form.append("model", detector.value);
      form.append("conf", String(requested));
      result = await call("v1/detections", { form });
      draw();
    }

    async function ask() {
      need();
      const form = new FormData();
      form.append("image", file, file.name);
      form.append("stream", "true");
      if (question.value.trim()) form.append("question", question.value.trim());
      if (collection.value) form.append("collection", collection.value);
      if (llm.value) form.append("model", llm.value);
      const answer = h("p", { class: "answer", "aria-live": "polite" });
      const items = h("ol", { class: "retrieved" });
      const meta = h("p", { class: "muted" });
      rag.replaceChildren(h("div", {}, h("h3", {}, "Retrieved"), items), h("div", {}, h("h3", {}, "Answer"), answer, meta));
      for await (const event of events(await send("v1/pipelines/image-rag", { form }))) {
        if (event.object === "pipeline.image_rag.context") {
          items.replaceChildren(...event.retrieved.map((r) => h("li", {}, h("strong", {}, `${r.score.toFixed(3)} `), `${r.item.id} (${r.item.kind}, ${r.source}) `,
            r.item.text ? h("q", {}, r.item.text) : null, Object.keys(r.item.metadata || {}).length ? h("code", {}, JSON.stringify(r.item.metadata)) : null)));
          if (!event.retrieved.length) items.append(h("li", { class: "muted" }, "nothing retrieved"));
        } else if (event.object === "pipeline.image_rag.delta") {
          answer.textContent += event.delta;
        } else if (event.object === "pipeline.image_rag.done") {
          const t = event.timings || {};
          meta.textContent = `${event.usage ? event.usage.total_tokens : "?"} tokens · detect ${t.detect_ms?.toFixed(0)} ms · embed ${t.embed_ms?.toFixed(0)} ms · retrieve ${t.retrieve_ms?.toFixed(0)} ms · generate ${t.generate_ms?.toFixed(0)} ms`;
          rag.dataset.done = "1";
        }
      }
    }

    root.append(h("div", { class: "controls" }, zone, chosen,
      h("div", { class: "row" }, field("Detector", detector), field("Minimum score", conf), confShown),
      h("div", { class: "row" }, button("Detect", (e) => busy(e.currentTarget, box, detect)))),
    box, view,
    h("fieldset", {}, h("legend", {}, "Image RAG"),
      h("div", { class: "row" }, field("Question", question), field("Collection", collection), field("LLM", llm)),
      button("Ask about the image", (e) => busy(e.currentTarget, box, ask))), rag);
  },
};
