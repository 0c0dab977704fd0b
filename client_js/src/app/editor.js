// The live editor's route (#/edit/<path>) and the Edit action on text files. The editor itself
// (editor-view.js: CodeMirror 6, Yjs) is a separate chunk, fetched the first time a file is opened.

import { h } from "./dom.js";
import { fileType } from "./format.js";
import { rowActions, views } from "./registry.js";

/** @param {string} path */
export const editHash = (path) => `#/edit${path.split("/").map(encodeURIComponent).join("/")}`;

views.set("edit", (ctx, rest) => {
  const el = /** @type {HTMLElement & {dispose?: () => void}} */ (h("div.editor-shell", { "aria-busy": "true" },
    h("p.muted", { text: "Loading the editor…" })));
  /** @type {(() => void) | undefined} */
  let inner;
  let gone = false;
  el.dispose = () => { gone = true; inner?.(); };
  import("./editor-view.js").then(({ editorView }) => {
    if (gone) return;
    const view = editorView(ctx, rest);
    inner = view.dispose;
    el.replaceChildren(view);
    el.removeAttribute("aria-busy");
  }, (err) => {
    el.replaceChildren(h("p.form-error", { role: "alert", text: `Could not load the editor: ${err.message}` }));
    el.removeAttribute("aria-busy");
  });
  return el;
});

rowActions.push({
  id: "edit", label: "Edit",
  applies: (e) => e.kind === "file" && fileType(e) === "text",
  run: (ctx, e) => ctx.navigate(editHash(e.path)),
});
