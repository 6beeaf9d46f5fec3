// The console's shell: the key form, the navigation and a hash router over the page modules.
import { keys } from "./api.js";
import { h } from "./dom.js";
import models from "./pages/models.js";
import chat from "./pages/chat.js";
import speech from "./pages/speech.js";
import vision from "./pages/vision.js";
import knowledge from "./pages/knowledge.js";
import keyAdmin from "./pages/keys.js";
import operations from "./pages/operations.js";
import batches from "./pages/batches.js";

export const PAGES = [models, chat, speech, vision, knowledge, batches, keyAdmin, operations];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let leave = null;

function current() {
  const id = location.hash.replace(/^#\/?/, "");
  return PAGES.find((p) => p.id === id) || PAGES[0];
}

async function route() {
  if (leave) leave.abort();
  leave = new AbortController();
  const page = current();
  const started = performance.now();
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.page === page.id) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${page.title} · multimodel-serve`;
  main.dataset.ready = "0";
  main.dataset.page = page.id;
  const section = h("section", { "aria-labelledby": "page-title" }, h("h2", { id: "page-title" }, page.title));
  main.replaceChildren(section);
  try {
    await page.mount(section, leave.signal);
  } catch (err) {
    section.append(h("p", { class: "error", role: "alert" }, err.message || String(err)));
  }
  // What the tests read as "interactive": the page's first data is in and its controls are live.
  main.dataset.readyMs = (performance.now() - started).toFixed(1);
  main.dataset.ready = "1";
}

function start() {
  nav.replaceChildren(h("ul", {}, PAGES.map((p) => h("li", {}, h("a", { href: `#/${p.id}`, dataset: { page: p.id } }, p.title)))));
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  const state = document.getElementById("key-state");
  const show = () => { state.textContent = keys.api() ? "key set for this tab" : "no key"; };
  input.value = keys.api();
  show();
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    keys.setApi(input.value.trim());
    show();
    route();
  });
  window.addEventListener("hashchange", route);
  route();
}

start();
