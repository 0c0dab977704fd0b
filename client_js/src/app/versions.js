// A file's versions: who saved each one, when, how big; restore an older one as the newest.

import { ApiError } from "../lib/api.js";
import { refocus } from "./dialogs.js";
import { h, mount } from "./dom.js";
import { formatDate, formatSize } from "./format.js";
import { rowActions } from "./registry.js";

/** @typedef {import("../lib/api.js").Entry} Entry @typedef {import("../lib/api.js").Revision} Revision */

/** @param {import("./registry.js").AppContext} ctx @param {Entry} entry */
export function openVersions(ctx, entry) {
  const opener = /** @type {HTMLElement | null} */ (document.activeElement);
  const list = h("ol.versions", { "aria-label": "Versions, newest first" });
  const more = h("button", { type: "button", hidden: true, text: "Older versions", onclick: () => load(next) });
  const dialog = /** @type {HTMLDialogElement} */ (h("dialog.versions-dialog", { "aria-labelledby": "versions-title" },
    h("div.preview-head", {},
      h("h2", { id: "versions-title", text: `Versions of ${entry.name}` }),
      h("button.small", { type: "button", text: "Close", onclick: () => dialog.close() })),
    list, more));
  /** @type {number | null} */
  let next = null;

  /** @param {Revision} r */
  const item = (r) => h("li.version", { "data-rev": String(r.rev) },
    h("div", {},
      h("strong", { text: `Version ${r.rev}` }), r.current ? h("span.badge", { text: "current" }) : null,
      h("div.muted", {}, h("time", { datetime: r.created_at, text: formatDate(r.created_at) }),
        ` · ${formatSize(r.size)} · ${r.user}${r.device ? ` on ${r.device}` : ""}`)),
    r.current ? null : h("button.small", { type: "button", text: "Restore", "aria-label": `Restore version ${r.rev}`,
      onclick: () => restore(r) }));

  /** @param {number | null} before */
  const load = async (before) => {
    try {
      const page = await ctx.api.revisions(entry.id, { before: before ?? undefined, limit: 50 });
      if (before === null) mount(list);
      list.append(...page.revisions.map(item));
      next = page.next;
      more.hidden = next === null;
    } catch (err) {
      ctx.notify(`Could not list the versions of ${entry.name}: ${/** @type {Error} */ (err).message}`, "error");
    }
  };

  /** @param {Revision} r */
  const restore = async (r) => {
    try {
      const out = await ctx.api.restoreRevision(entry.id, r.rev);
      ctx.notify(`Restored version ${r.rev} of ${entry.name} (now version ${out.rev})`);
      await load(null);
      /** @type {HTMLElement | null} */ (list.querySelector("button"))?.focus();
    } catch (err) {
      ctx.notify(err instanceof ApiError && err.code === "quota_exceeded" ? `Restoring would pass your quota.`
        : `Could not restore version ${r.rev}: ${/** @type {Error} */ (err).message}`, "error");
    }
  };

  dialog.addEventListener("close", () => { dialog.remove(); refocus(opener); });
  document.body.append(dialog);
  dialog.showModal();
  load(null);
  return dialog;
}

rowActions.push({ id: "versions", label: "Versions", applies: (e) => e.kind === "file", run: openVersions });
