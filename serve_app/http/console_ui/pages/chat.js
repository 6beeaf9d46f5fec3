// The chat playground: any LLM, adapter or alias; system prompt, sampling, a JSON schema, tools;
// the answer streams in with its TTFT, tokens/s, the variant that answered and the usage.
import { events, models, send } from "../api.js";
import { busy, button, errorBox, field, h, select } from "../dom.js";

function parseJSON(text, what) {
  if (!text.trim()) return undefined;
  try { return JSON.parse(text); } catch (err) { throw new Error(`${what} is not valid JSON: ${err.message}`); }
}

export default {
  id: "chat",
  title: "Chat",
  async mount(root) {
    const llms = (await models()).filter((m) => m.kind === "llm");
    const model = select(llms.map((m) => ({ value: m.id, label: m.engine === "alias" ? `${m.id} (alias)` : m.parent ? `${m.id} (adapter)` : m.id })), { name: "model" });
    const system = h("textarea", { rows: 2, name: "system" });
    const temperature = h("input", { type: "number", min: 0, max: 2, step: 0.1, value: "0.7", name: "temperature" });
    const maxTokens = h("input", { type: "number", min: 1, step: 1, value: "64", name: "max_tokens" });
    const schema = h("textarea", { rows: 3, name: "schema", placeholder: '{"type": "object", "properties": {…}}' });
    const tools = h("textarea", { rows: 3, name: "tools", placeholder: '[{"type": "function", "function": {…}}]' });
    const message = h("textarea", { rows: 3, name: "message", required: true });
    const box = errorBox();
    const log = h("ol", { class: "chat-log", "aria-live": "polite" });
    const stats = h("dl", { class: "stats", id: "chat-stats" });
    let history = [];

    const stat = (name, value) => [h("dt", {}, name), h("dd", { dataset: { stat: name } }, value)];

    async function run() {
      const text = message.value.trim();
      if (!text) throw new Error("Type a message first.");
      const body = { model: model.value, stream: true, stream_options: { include_usage: true },
        temperature: Number(temperature.value), max_tokens: Number(maxTokens.value) };
      const jsonSchema = parseJSON(schema.value, "The JSON schema");
      if (jsonSchema) body.response_format = { type: "json_schema", json_schema: { name: "answer", schema: jsonSchema } };
      const toolList = parseJSON(tools.value, "The tools");
      if (toolList) body.tools = toolList;
      const messages = [...(system.value.trim() ? [{ role: "system", content: system.value }] : []), ...history, { role: "user", content: text }];
      body.messages = messages;
      log.append(h("li", { class: "user" }, h("strong", {}, "you"), h("p", {}, text)));
      const answer = h("p", { class: "answer" });
      const calls = h("pre", { class: "tool-calls", hidden: true });
      const item = h("li", { class: "assistant" }, h("strong", {}, model.value), answer, calls);
      log.append(item);
      stats.replaceChildren();
      const started = performance.now();
      let first = null;
      let usage = null;
      const toolCalls = [];
      const response = await send("v1/chat/completions", { json: body });
      let variant = response.headers.get("x-model-variant");
      for await (const chunk of events(response)) {
        variant = variant || chunk.model;
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          const delta = choice.delta || {};
          if (delta.content) {
            if (first === null) first = performance.now();
            answer.textContent += delta.content;
          }
          for (const call of delta.tool_calls || []) {
            if (first === null) first = performance.now();
            const slot = toolCalls[call.index] || (toolCalls[call.index] = { name: "", arguments: "" });
            if (call.function?.name) slot.name += call.function.name;
            if (call.function?.arguments) slot.arguments += call.function.arguments;
            calls.hidden = false;
            calls.textContent = JSON.stringify(toolCalls, null, 1);
          }
        }
      }
      const ended = performance.now();
      item.dataset.done = "1";
      history = [...messages.filter((m) => m.role !== "system"), { role: "assistant", content: answer.textContent }];
      message.value = "";
      const tokens = usage ? usage.completion_tokens : null;
      const rate = tokens && first !== null && ended > first ? (tokens - 1) / ((ended - first) / 1000) : null;
      stats.append(...stat("TTFT", first === null ? "–" : `${(first - started).toFixed(0)} ms`),
        ...stat("tokens/s", rate === null || !(rate > 0) ? "–" : rate.toFixed(1)),
        ...stat("variant", variant || "–"),
        ...stat("usage", usage ? `${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion = ${usage.total_tokens} tokens` : "–"));
    }

    const go = h("button", { type: "submit", id: "send" }, "Send");
    const form = h("form", { class: "grid2", onsubmit: (e) => { e.preventDefault(); busy(go, box, run); } },
      h("fieldset", {}, h("legend", {}, "Settings"),
        field("Model, adapter or alias", model), field("System prompt", system),
        h("div", { class: "row" }, field("Temperature", temperature), field("Max tokens", maxTokens)),
        field("JSON schema (structured output)", schema), field("Tools (JSON)", tools)),
      h("div", {}, log, field("Message", message),
        h("div", { class: "row" }, go, button("New conversation", () => { history = []; log.replaceChildren(); stats.replaceChildren(); })),
        box, stats));
    root.append(form);
  },
};
