// DOM helpers: every string becomes a text node (never HTML), so model output, transcripts, file
// names, metadata and error messages cannot run as markup.

const SVG = "http://www.w3.org/2000/svg";
let counter = 0;

function set(el, props) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.setAttribute("class", value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "value" || name === "checked") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
}

export function add(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  set(el, props);
  return add(el, children);
}

export function svg(tag, props, ...children) {
  const el = document.createElementNS(SVG, tag);
  set(el, props);
  return add(el, children);
}

export function uid(prefix = "f") {
  counter += 1;
  return `${prefix}-${counter}`;
}

// A labelled control: the label names it for screen readers and keyboard users.
export function field(label, control, hint) {
  control.id = control.id || uid();
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hint ? h("small", { class: "muted" }, hint) : null);
}

export function select(options, props = {}) {
  return h("select", props, options.map((o) => (typeof o === "string" ? h("option", { value: o }, o) : h("option", { value: o.value }, o.label))));
}

export function button(label, onclick, props = {}) {
  return h("button", { type: "button", onclick, ...props }, label);
}

export function errorBox() {
  const box = h("p", { class: "error", role: "alert", hidden: true });
  box.show = (err) => { box.textContent = err && err.message ? err.message : String(err); box.hidden = false; };
  box.clear = () => { box.textContent = ""; box.hidden = true; };
  return box;
}

// Runs `work` with the button disabled, its failure shown in `box`.
export async function busy(control, box, work) {
  control.disabled = true;
  box.clear();
  try {
    return await work();
  } catch (err) {
    box.show(err);
    return undefined;
  } finally {
    control.disabled = false;
  }
}

export function table(headers, rows, caption) {
  return h("div", { class: "scroll" }, h("table", {}, caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
}

export function download(name, text, type = "text/plain") {
  const link = h("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// A drop zone around a file input: drop a file on it, or pick one with the keyboard.
export function dropZone(label, accept, onfile) {
  const input = h("input", { type: "file", accept, onchange: () => input.files[0] && onfile(input.files[0]) });
  const zone = h("div", { class: "drop" }, field(label, input), h("small", { class: "muted" }, "or drop a file here"));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) onfile(file);
  });
  zone.input = input;
  return zone;
}

export const fmt = {
  ms: (s) => (s === null || s === undefined ? "–" : `${(s * 1000).toFixed(s < 0.1 ? 1 : 0)} ms`),
  num: (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d)),
  time: (t) => new Date(t * 1000).toLocaleTimeString(),
};

// A poller that stops when the page is left (its signal aborts).
export function every(ms, signal, tick) {
  let timer = null;
  const run = async () => {
    if (signal.aborted) return;
    try { await tick(); } finally { if (!signal.aborted) timer = setTimeout(run, ms); }
  };
  signal.addEventListener("abort", () => clearTimeout(timer));
  return run();
}
