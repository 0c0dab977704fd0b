// The trash: what was deleted, from where and when, with restore and erase-for-good.

import { ApiError } from "../lib/api.js";
import { confirmDialog } from "./dialogs.js";
import { h, mount } from "./dom.js";
import { folderHash } from "./files.js";
import { dirname, formatDate, formatSize } from "./format.js";
import { navItems, views } from "./registry.js";

/** @typedef {import("../lib/api.js").TrashItem} TrashItem */

/** @param {import("./registry.js").AppContext} ctx */
function trashView(ctx) {
  const tbody = h("tbody");
  const empty = h("p.empty", { hidden: true, text: "The trash is empty." });
  const more = h("button", { type: "button", hidden: true, text: "Show more", onclick: () => load(next) });
  /** @type {number | null} */
  let next = null;
  const el = h("main.files.trash", { id: "main", tabindex: "-1" },
    h("h1", { id: "trash-title", text: "Trash" }),
    h("p.muted", { text: "Deleted files and folders stay here for a while; restore puts them back where they were." }),
    h("div.drop-zone", {},
      h("table.listing", { "aria-labelledby": "trash-title" },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col", text: "Name" }), h("th", { scope: "col", text: "Was in" }),
          h("th.col-date", { scope: "col", text: "Deleted" }), h("th.col-size", { scope: "col", text: "Size" }),
          h("th.col-actions", { scope: "col" }, h("span.visually-hidden", { text: "Actions" })))),
        tbody),
      empty),
    more);
  document.title = "Trash – Satchel";

  /** @param {TrashItem} item */
  const row = (item) => {
    const act = (/** @type {string} */ label, /** @type {() => void} */ fn, cls = "") => h(`button.small${cls}`,
      { type: "button", text: label, "aria-label": `${label} ${item.name}`, onclick: fn });
    const folder = dirname(item.path);
    return h("tr", { "data-id": String(item.id), "data-name": item.name, "data-kind": item.kind },
      h("td.col-name", {}, h("div.name-wrap", {}, h(`span.icon.icon-${item.kind === "dir" ? "dir" : "file"}`,
        { role: "img", "aria-label": item.kind === "dir" ? "Folder" : "File" }), item.name,
      item.kind === "dir" ? h("span.muted", { text: ` (${item.items - 1} inside)` }) : null)),
      h("td.col-where", {}, h("a", { href: folderHash(folder), text: folder })),
      h("td.col-date", {}, h("time", { datetime: item.deleted_at, text: formatDate(item.deleted_at) })),
      h("td.col-size", { text: formatSize(item.total_size) }),
      h("td.col-actions", {},
        act("Restore", () => restore(item)),
        act("Erase", () => erase(item), ".danger")));
  };

  /** @param {number | null} offset */
  const load = async (offset) => {
    try {
      const page = await ctx.api.trash({ offset: offset ?? undefined });
      if (!offset) tbody.replaceChildren();
      tbody.append(...page.entries.map(row));
      next = page.next;
      more.hidden = next === null;
      empty.hidden = tbody.childElementCount > 0;
    } catch (err) {
      ctx.notify(`Could not read the trash: ${/** @type {Error} */ (err).message}`, "error");
    }
  };

  /** @param {TrashItem} item */
  const restore = async (item) => {
    try {
      const back = await ctx.api.restoreTrash({ id: item.id });
      ctx.notify(back.path === item.path ? `Restored ${item.path}` : `Restored as ${back.path} (the old name is taken)`);
      await load(null);
      focusFirst();
    } catch (err) {
      ctx.notify(err instanceof ApiError && err.code === "quota_exceeded" ? `Restoring ${item.name} would pass your quota.`
        : `Could not restore ${item.name}: ${/** @type {Error} */ (err).message}`, "error");
    }
  };

  /** @param {TrashItem} item */
  const erase = async (item) => {
    if (!await confirmDialog(`Erase ${item.name}?`, "It will be gone for good; this cannot be undone.", "Erase")) return;
    try {
      await ctx.api.purgeTrash({ id: item.id });
      ctx.notify(`Erased ${item.name}`);
      await load(null);
      focusFirst();
    } catch (err) {
      ctx.notify(`Could not erase ${item.name}: ${/** @type {Error} */ (err).message}`, "error");
    }
  };

  // The row pressed on is gone: keep the keyboard user in the list.
  const focusFirst = () => (/** @type {HTMLElement | null} */ (tbody.querySelector("button")) || el).focus();
  mount(tbody);
  load(null);
  return el;
}

navItems.push({ id: "trash", label: "Trash", href: "#/trash" });
views.set("trash", trashView);
