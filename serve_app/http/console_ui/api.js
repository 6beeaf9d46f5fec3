// Every call the console makes goes through the public API, with the key the user typed.
// The key lives in this tab's sessionStorage only; errors carry the OpenAI envelope's message.

const ROOT = new URL("../", import.meta.url); // the app's root, under any Serve route prefix
const KEY = "mms.apiKey";
const MASTER = "mms.masterKey";

export const keys = {
  api: () => sessionStorage.getItem(KEY) || "",
  master: () => sessionStorage.getItem(MASTER) || "",
  setApi(value) { value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY); },
  setMaster(value) { value ? sessionStorage.setItem(MASTER, value) : sessionStorage.removeItem(MASTER); },
};

export class ApiError extends Error {
  constructor(status, message, detail = {}) {
    super(message);
    this.status = status;
    this.type = detail.type;
    this.param = detail.param;
    this.code = detail.code;
  }
}

export function url(path) {
  return new URL(path.replace(/^\//, ""), ROOT);
}

async function toError(response) {
  const text = await response.text();
  try {
    const error = JSON.parse(text).error;
    if (error && typeof error.message === "string") return new ApiError(response.status, error.message, error);
  } catch { /* not an envelope: fall through */ }
  return new ApiError(response.status, `${response.status} ${response.statusText || "error"}`.trim());
}

// fetch with the key; `json` or `form` as the body; the Response when it is a success, else throws ApiError.
export async function send(path, { method, json, form, key, signal, headers = {} } = {}) {
  const auth = key ?? keys.api();
  const init = { method: method || (json || form ? "POST" : "GET"), headers: { ...headers }, signal };
  if (auth) init.headers.authorization = `Bearer ${auth}`;
  if (json !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }
  const response = await fetch(url(path), init);
  if (!response.ok) throw await toError(response);
  return response;
}

export async function call(path, options) {
  const response = await send(path, options);
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

// The data events of an SSE response, parsed; `data: [DONE]` ends it, an error event throws.
export async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const event = JSON.parse(data);
      if (event && event.error) throw new ApiError(0, event.error.message || "stream error", event.error);
      yield event;
    }
    if (done) return;
  }
}

export async function models() {
  return (await call("v1/models")).data;
}
