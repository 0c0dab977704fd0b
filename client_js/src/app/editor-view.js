// The live editor's view, loaded on first use by editor.js (CodeMirror and Yjs stay out of the
// app's first download): a text file co-edited through DocSession (lib/coedit.js) in
// CodeMirror 6 bound to the Y.Text by y-codemirror.next, with everyone's cursors and selections,
// a saved indicator, read-only for viewers, and a clear refusal for files that cannot be edited.

import { defaultKeymap, indentWithTab } from "@codemirror/commands";
import { EditorState } from "@codemirror/state";
import { drawSelection, EditorView, highlightActiveLine, keymap, lineNumbers } from "@codemirror/view";
import * as Y from "yjs";
import { yCollab, ySyncAnnotation, yUndoManagerKeymap } from "y-codemirror.next";

import { DocSession, MAX_UPDATE } from "../lib/coedit.js";
import { LiveError } from "../lib/live.js";
import { h, mount } from "./dom.js";
import { basename, dirname, formatSize } from "./format.js";
import { folderHash } from "./files.js";

// Cursor colours with enough contrast for white name labels; each user keeps one (by user id).
const COLOURS = ["#1f6feb", "#c2410c", "#15803d", "#9333ea", "#be123c", "#0e7490", "#a16207", "#4338ca"];

const REFUSED = /** @type {Record<string, string>} */ ({
  not_text: "This file cannot be edited here: it is not a text file.",
  too_large: "This file cannot be edited here: it is too large to edit live",
  not_found: "This file does not exist, or you have no access to it.",
  is_a_directory: "This is a folder, not a file.",
});

const CLOSED = /** @type {Record<string, string>} */ ({
  deleted: "The file was deleted. Editing has stopped.",
  access_removed: "Your access to this file ended.",
  not_text: "The file was replaced by one that is not text. Editing has stopped.",
  too_large: "The file became too large to edit live. Editing has stopped.",
  too_large_edit: "That change would make the file larger than live editing allows, so it was not saved. Open the file again to go on from the saved text.",
});

/**
 * @param {import("./registry.js").AppContext} ctx @param {string} rest the path without its leading "/"
 * @returns {HTMLElement & {dispose?: () => void}}
 */
export function editorView(ctx, rest) {
  const path = `/${rest.split("/").filter(Boolean).join("/")}`;
  const name = basename(path);
  document.title = `${name} – Satchel`;
  const saved = h("span.doc-saved", { role: "status", id: "doc-saved", text: "Connecting…" });
  const roleBadge = h("span.badge.readonly", { hidden: true, id: "doc-readonly", text: "Read-only: you can view this file but not change it" });
  const people = h("ul.doc-people", { "aria-label": "People in this file", id: "doc-people" });
  const message = h("p.doc-message", { role: "alert", id: "doc-message", hidden: true });
  const host = h("div.editor-host", { id: "editor" });
  // CodeMirror and y-codemirror style themselves through style-mod, which inserts <style> elements
  // into a document (refused by the app's Content-Security-Policy: style-src 'self') but uses
  // constructed, adopted style sheets in a shadow root: so the editor lives in one.
  const root = host.attachShadow({ mode: "open" });
  const el = /** @type {HTMLElement & {dispose?: () => void}} */ (h("main.editor-page", { id: "main" },
    h("div.editor-head", {},
      h("a.back", { href: folderHash(dirname(path)), text: "← Back to folder" }),
      h("h1", { id: "doc-title", text: name }), roleBadge, saved),
    people, message, host,
    h("p.muted.editor-keys", { id: "editor-keys", text: "Tab indents; press Esc, then Tab, to move on from the editor. Ctrl+Z undoes your own edits only." })));

  const user = { name: ctx.account.name, color: COLOURS[Number(ctx.account.id) % COLOURS.length] };
  const session = new DocSession(ctx.live.client, path, { user: { ...user, colorLight: `${user.color}33` } });
  /** @type {EditorView | null} */
  let view = null;
  let unsentOffline = false;  // typed while offline: kept in memory until the next join sends it

  const showMessage = (/** @type {string} */ text) => { message.textContent = text; message.hidden = false; };
  const renderPeople = () => {
    const others = [...session.awareness.getStates().entries()]
      .filter(([id, s]) => id !== session.ydoc.clientID && s.user)
      .map(([id, s]) => h("li.doc-person", { "data-client": String(id) },
        swatch(s.user.color),
        `${s.user.name}${s.role === "viewer" ? " (viewing)" : ""}`));
    mount(people, others.length ? [h("li.muted", { text: "Also here:" }), ...others] : []);
  };

  session.on("status", (s) => {
    if (s === "offline") saved.textContent = "Offline: your edits are kept and sent when the connection is back";
    else if (s === "joining") saved.textContent = "Connecting…";
    document.body.classList.toggle("doc-offline", s === "offline");
  });
  session.on("update", ({ remote }) => {
    if (session.status === "synced") saved.textContent = "Edited";
    else if (!remote) unsentOffline = true;
  });
  session.on("saved", () => { saved.textContent = "Saved"; });
  session.on("closed", ({ reason, details }) => {
    saved.textContent = view ? "Closed" : "";
    // The text stays on screen, read-only (what was not saved can still be copied).
    view?.setState(EditorState.create({ doc: view.state.doc, extensions: [lineNumbers(), EditorView.lineWrapping, THEME,
      EditorState.readOnly.of(true), EditorView.editable.of(false),
      EditorView.contentAttributes.of({ "aria-label": `Contents of ${name} (closed)` })] }));
    const limit = details.limit ? ` (the limit is ${formatSize(details.limit)})` : "";
    showMessage(view ? CLOSED[reason] || `Editing stopped (${reason}).`
      : reason === "too_large" ? `${REFUSED.too_large}${limit}.` : REFUSED[reason] || `Could not open ${name} (${reason}).`);
    if (view && reason !== "deleted" && reason !== "access_removed") {
      message.after(h("button.small.reopen", { type: "button", text: "Open again", onclick: () => ctx.navigate(location.hash) }));
    }
  });
  session.on("error", (err) => {
    if (err.code === "frame_too_large") ctx.notify("That change is too large to send at once: paste it in smaller pieces.", "error");
  });
  session.awareness.on("change", renderPeople);

  const start = (/** @type {import("../lib/coedit.js").Joined} */ joined) => {
    const readOnly = joined.role !== "editor";
    session.awareness.setLocalStateField("role", joined.role);
    roleBadge.hidden = !readOnly;
    // Edits typed offline were just sent with the join: saved once the server says so.
    saved.textContent = unsentOffline && !readOnly ? "Edited" : "Saved";
    unsentOffline = false;
    if (view) return;  // a rejoin: the editor stays, the Y.Text carries on
    const undo = new Y.UndoManager(session.text);
    view = new EditorView({
      parent: root, root,
      state: EditorState.create({
        doc: session.text.toString(),
        extensions: [
          lineNumbers(), drawSelection(), highlightActiveLine(), EditorView.lineWrapping, THEME,
          keymap.of([...yUndoManagerKeymap, ...defaultKeymap, indentWithTab]),
          EditorState.readOnly.of(readOnly), EditorView.editable.of(!readOnly),
          EditorView.contentAttributes.of({ "aria-label": `Contents of ${name}${readOnly ? " (read-only)" : ""}` }),
          // One frame holds one edit: a giant paste is refused here rather than failing to send.
          // Changes coming from the document (others' edits, merged revisions) always pass.
          EditorState.transactionFilter.of((tr) => {
            if (!tr.docChanged || tr.annotation(ySyncAnnotation)) return tr;
            let big = false;
            tr.changes.iterChanges((_a, _b, _c, _d, inserted) => { if (inserted.length * 3 > MAX_UPDATE) big = true; });
            if (!big) return tr;
            ctx.notify("That paste is too large to send at once: paste it in smaller pieces.", "error");
            return [];
          }),
          yCollab(session.text, session.awareness, { undoManager: undo }),
        ],
      }),
    });
  };

  session.on("joined", (j) => {
    if (view && j.role !== (view.state.readOnly ? "viewer" : "editor")) {
      // The role changed (rejoined after role_changed): rebuild the editor for it.
      view.destroy();
      view = null;
      root.replaceChildren();
    }
    start(j);
  });

  // A refusal shows through the `closed` event; while the connection is down, the next welcome joins.
  session.join().catch((err) => { if (!(err instanceof LiveError)) showMessage(`Could not open ${name}: ${err.message}`); });

  const flushOnHide = () => session.flush();
  const warnUnsent = (/** @type {BeforeUnloadEvent} */ ev) => { if (unsentOffline && session.status !== "synced") ev.preventDefault(); };
  window.addEventListener("pagehide", flushOnHide);
  window.addEventListener("beforeunload", warnUnsent);
  el.dispose = () => {
    window.removeEventListener("pagehide", flushOnHide);
    window.removeEventListener("beforeunload", warnUnsent);
    document.body.classList.remove("doc-offline");
    view?.destroy();
    session.destroy().catch(() => {});
  };
  return el;
}

// The page's styles.css does not reach into the shadow root; custom properties (colours) do.
const THEME = EditorView.theme({
  "&": { minHeight: "20rem", maxHeight: "calc(100vh - 12rem)", fontSize: ".95rem", backgroundColor: "var(--card)" },
  "&.cm-focused": { outline: "3px solid var(--focus)", outlineOffset: "-3px" },
  ".cm-scroller": { fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace" },
  ".cm-content": { minHeight: "20rem", paddingTop: "1.1rem" },  // room for a name label above line 1
  // Names on remote cursors stay visible (y-codemirror shows them only on hover).
  ".cm-ySelectionInfo": { opacity: "1 !important", transitionDelay: "0s !important", fontFamily: "system-ui, sans-serif" },
});

/** A user's colour dot. The colour comes from another client: only #rgb / #rrggbb is used.
 * @param {unknown} c */
function swatch(c) {
  const dot = h("span.swatch", { "aria-hidden": "true" });
  dot.style.background = typeof c === "string" && /^#[0-9a-f]{3}([0-9a-f]{3})?$/i.test(c) ? c : "#666";
  return dot;
}
