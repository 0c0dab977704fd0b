// Search: a box in the header; results (best first) link to the folder each one is in.

import { ApiError } from "../lib/api.js";
import { h, mount } from "./dom.js";
import { folderHash } from "./files.js";
import { dirname, fileType, formatDate, formatSize } from "./format.js";
import { headerItems, views } from "./registry.js";

const searchHash = (/** @type {string} */ q) => `#/search/${encodeURIComponent(q)}`;

/** @param {import("./registry.js").AppContext} ctx */
function searchBox(ctx) {
  const input = /** @type {HTMLInputElement} */ (h("input", { type: "search", id: "search-input", name: "q", placeholder: "Search files",
    "aria-label": "Search files", autocomplete: "off", maxlength: 1000 }));
  return h("form.search", { role: "search", onsubmit: (/** @type {Event} */ ev) => {
    ev.preventDefault();
    if (input.value.trim()) ctx.navigate(searchHash(input.value.trim()));
  } }, input, h("button.small", { type: "submit", text: "Search" }));
}

/** @param {import("./registry.js").AppContext} ctx @param {string} query */
function searchView(ctx, query) {
  const results = h("ol.results", { "aria-labelledby": "search-title" });
  const status = h("p.muted", { role: "status", text: "Searching…" });
  const more = h("button", { type: "button", hidden: true, text: "More results", onclick: () => load(next) });
  const el = h("main.files.search-results", { id: "main", tabindex: "-1" },
    h("h1", { id: "search-title", text: `Search: ${query}` }), status, results, more);
  document.title = `Search: ${query} – Satchel`;
  const box = /** @type {HTMLInputElement | null} */ (document.getElementById("search-input"));
  if (box && box.value !== query) box.value = query;
  /** @type {number | null} */
  let next = null;

  /** @param {import("../lib/api.js").Entry} e */
  const item = (e) => {
    const folder = e.kind === "dir" ? e.path : dirname(e.path);
    return h("li.result", { "data-name": e.name },
      h(`span.icon.icon-${fileType(e)}`, { role: "img", "aria-label": e.kind === "dir" ? "Folder" : "File" }),
      h("div", {},
        h("a", { href: folderHash(folder), text: e.name, "aria-label": `${e.name}, in ${dirname(e.path)}` }),
        h("div.muted", { text: `${dirname(e.path)}${e.kind === "file" ? ` · ${formatSize(e.size)}` : ""} · ${formatDate(e.modified_at)}` })));
  };

  /** @param {number | null} offset */
  const load = async (offset) => {
    try {
      const page = await ctx.api.search(query, { offset: offset ?? undefined });
      results.append(...page.entries.map(item));
      next = page.next;
      more.hidden = next === null;
      const n = results.childElementCount;
      status.textContent = n ? `${n}${next === null ? "" : "+"} found` : "Nothing matches every word.";
    } catch (err) {
      status.textContent = err instanceof ApiError && err.code === "bad_request" ? `Not a search Satchel can run: ${err.message}`
        : `Search failed: ${/** @type {Error} */ (err).message}`;
    }
  };
  mount(results);
  load(null);
  return el;
}

headerItems.push(searchBox);
views.set("search", searchView);
