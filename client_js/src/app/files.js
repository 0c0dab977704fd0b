// The files view: breadcrumbs, a sortable listing updated live from the change feed, upload by
// file input, folder input or drag and drop, download, new folder, rename, move, delete, preview,
// and who else is looking at this folder (presence).

import { ApiError } from "../lib/api.js";
import { confirmDialog, promptDialog } from "./dialogs.js";
import { h, mount } from "./dom.js";
import { basename, dirname, fileType, formatDate, formatSize, join } from "./format.js";
import { openPreview } from "./preview.js";
import { rowActions, toolbarActions } from "./registry.js";
import { Transfers } from "./transfers.js";

/** @typedef {import("../lib/api.js").Entry} Entry */
/** @typedef {"name" | "size" | "modified_at"} SortKey */

const TYPE_LABEL = { dir: "Folder", image: "Image", pdf: "PDF", text: "Text", audio: "Audio", video: "Video", archive: "Archive", file: "File" };

/** Whether `path` is `top` or inside it. @param {string} path @param {string} top */
const within = (path, top) => path === top || path.startsWith(`${top}/`);

/** @param {string} path */
export const folderHash = (path) => `#/files${path === "/" ? "/" : path.split("/").map(encodeURIComponent).join("/")}`;

export class FilesView {
  /** @param {import("./registry.js").AppContext} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    this.path = "/";
    /** @type {Map<number, Entry>} by node id */
    this.entries = new Map();
    /** @type {Set<number>} ids whose newer revision is announced but not yet shown */
    this.stale = new Set();
    /** @type {{key: SortKey, asc: boolean}} */
    this.sort = { key: "name", asc: true };
    /** @type {any[]} */
    this.members = [];
    /** @type {{entry: Entry, markStale: (rev: number) => void} | null} */
    this.preview = null;
    this.transfers = new Transfers(ctx);
    this.crumbs = h("nav.breadcrumbs", { "aria-label": "Folder path" });
    this.presence = h("ul.presence", { "aria-label": "Also viewing this folder" });
    this.tbody = h("tbody");
    this.thead = h("thead");
    this.empty = h("p.empty", { hidden: true, text: "This folder is empty. Drop files here or use Upload." });
    this.fileInput = /** @type {HTMLInputElement} */ (h("input.visually-hidden", { type: "file", multiple: true, id: "upload-files", tabindex: "-1",
      onchange: () => this.#uploadInput(this.fileInput) }));
    this.folderInput = /** @type {HTMLInputElement} */ (h("input.visually-hidden", { type: "file", multiple: true, id: "upload-folder", tabindex: "-1",
      webkitdirectory: true, onchange: () => this.#uploadInput(this.folderInput) }));
    this.dropHint = h("div.drop-hint", { hidden: true, "aria-hidden": "true", text: "Drop files or folders to upload here" });
    const table = h("table.listing", { "aria-labelledby": "folder-title" }, h("caption.visually-hidden", { text: "Files and folders" }), this.thead, this.tbody);
    this.title = h("h1", { id: "folder-title" });
    this.el = h("main.files", { id: "main", tabindex: "-1" },
      h("div.files-head", {}, this.title, this.presence),
      this.crumbs,
      h("div.toolbar", { role: "toolbar", "aria-label": "Folder actions" },
        h("button", { type: "button", text: "New folder", onclick: () => this.newFolder() }),
        h("button.primary", { type: "button", text: "Upload files", onclick: () => this.fileInput.click() }),
        h("button", { type: "button", text: "Upload folder", onclick: () => this.folderInput.click() }),
        toolbarActions.map((a) => h("button", { type: "button", text: a.label, "data-action": a.id, onclick: () => a.run(ctx, this.path) })),
        this.fileInput, this.folderInput),
      h("div.drop-zone", { id: "drop-zone" }, table, this.empty, this.dropHint),
      this.transfers.el);
    this.#dragAndDrop();
    this.unlisten = [
      // Changes and presence come with the user's paths, shared folders' included (live-state.js).
      ctx.live.on("change", (e) => this.#onChange(e)),
      ctx.live.on("presence_event", (e) => this.#onPresenceEvent(e)),
      ctx.live.on("presence", (p) => { if (p.path === this.path) this.#setMembers(p.members); }),
      ctx.live.on("relist", (m) => { if (within(this.path, m.path)) this.show(this.path); }),  // a share now followed
      ctx.live.on("ended", (m) => { if (within(this.path, m.path)) this.ctx.navigate(folderHash(dirname(m.path))); }),
      ctx.live.client.on("open", () => this.#refreshAfterReconnect()),
      ctx.live.client.on("reset", () => this.show(this.path)),  // the feed restarted from now: list again
    ];
  }

  destroy() {
    for (const off of this.unlisten) off();
  }

  /** Show a folder. @param {string} path */
  async show(path) {
    this.path = path;
    this.title.textContent = path === "/" ? "All files" : basename(path);
    document.title = `${this.title.textContent} – Satchel`;
    this.#crumbs();
    try {
      const { entries } = await this.ctx.api.list(path);
      if (this.path !== path) return;
      // Mounts of shared folders have no node id here: give them keys no node can have.
      this.entries = new Map(entries.map((e, i) => [e.id ?? -1 - i, e]));
      this.stale.clear();
      this.render();
    } catch (err) {
      if (err instanceof ApiError && (err.code === "not_found" || err.code === "not_a_directory") && path !== "/") {
        this.ctx.notify(`${path} is gone; showing its parent.`);
        this.ctx.navigate(folderHash(dirname(path)));
        return;
      }
      this.ctx.notify(`Could not list ${path}: ${/** @type {Error} */ (err).message}`, "error");
    }
    this.#setMembers(await this.ctx.live.view(path));
  }

  #crumbs() {
    const parts = this.path === "/" ? [] : this.path.slice(1).split("/");
    const items = [h("li", {}, h("a", { href: folderHash("/"), text: "All files", "aria-current": parts.length ? null : "page" }))];
    parts.forEach((name, i) => {
      const p = `/${parts.slice(0, i + 1).join("/")}`;
      items.push(h("li", {}, h("a", { href: folderHash(p), text: name, "aria-current": i === parts.length - 1 ? "page" : null })));
    });
    mount(this.crumbs, h("ol", {}, items));
    this.crumbs.hidden = parts.length === 0;  // at the top the heading says it all
  }

  /** @param {SortKey} key */
  sortBy(key) {
    this.sort = { key, asc: this.sort.key === key ? !this.sort.asc : true };
    this.render();
    /** @type {HTMLElement | null} */ (this.thead.querySelector(`[data-sort="${key}"]`))?.focus();
  }

  sorted() {
    const { key, asc } = this.sort;
    const dir = asc ? 1 : -1;
    return [...this.entries.values()].sort((a, b) => {
      if (a.kind !== b.kind) return a.kind === "dir" ? -1 : 1;  // folders first, whichever the order
      const x = key === "size" ? (a.size || 0) - (b.size || 0)
        : key === "modified_at" ? Date.parse(a.modified_at) - Date.parse(b.modified_at)
          : a.name.localeCompare(b.name, undefined, { numeric: true, sensitivity: "base" });
      return (x || a.name.localeCompare(b.name)) * dir;
    });
  }

  render() {
    /** @param {SortKey} key @param {string} label @param {string} [cls] */
    const th = (key, label, cls = "") => h(`th${cls}`, { scope: "col", "aria-sort": this.sort.key === key ? (this.sort.asc ? "ascending" : "descending") : "none" },
      h("button.sort", { type: "button", "data-sort": key, onclick: () => this.sortBy(key) }, label,
        h("span.sort-mark", { "aria-hidden": "true", text: this.sort.key === key ? (this.sort.asc ? " ▲" : " ▼") : "" })));
    mount(this.thead, h("tr", {}, th("name", "Name"), th("size", "Size", ".col-size"), th("modified_at", "Modified", ".col-date"),
      h("th.col-actions", { scope: "col" }, h("span.visually-hidden", { text: "Actions" }))));
    const focused = /** @type {HTMLElement | null} */ (document.activeElement)?.closest?.("tr")?.dataset.id;
    mount(this.tbody, this.sorted().map((e) => this.#row(e)));
    this.empty.hidden = this.entries.size > 0;
    if (focused) /** @type {HTMLElement | null} */ (this.tbody.querySelector(`tr[data-id="${focused}"] .name-button`))?.focus();
  }

  /** @param {Entry} e */
  #row(e) {
    const type = fileType(e);
    const open = e.kind === "dir"
      ? h("a.name-button", { href: folderHash(e.path) }, e.name)
      : h("button.name-button.link", { type: "button", onclick: () => this.openPreview(e), "aria-label": `Preview ${e.name}` }, e.name);
    const act = (/** @type {string} */ label, /** @type {() => void} */ fn, cls = "") => h(`button.small${cls}`,
      { type: "button", text: label, "aria-label": `${label} ${e.name}`, onclick: fn });
    return h("tr", { "data-id": String(e.id ?? `mount-${e.path}`), "data-name": e.name, "data-kind": e.kind },
      h("td.col-name", {}, h("div.name-wrap", {},
        h(`span.icon.icon-${type}`, { role: "img", "aria-label": TYPE_LABEL[type] }),
        open,
        this.stale.has(e.id) ? h("span.badge.stale", { title: "A newer version is on its way", text: "stale" }) : null,
        e.share ? h("span.badge.shared", { title: `Shared ${e.kind === "dir" ? "folder" : "file"} (you are ${e.share.role === "owner" ? "its owner" : `a ${e.share.role}`})`,
          text: e.share.role === "owner" ? "shared" : `shared · ${e.share.role}` }) : null)),
      h("td.col-size", { text: e.kind === "dir" ? "—" : formatSize(e.size) }),
      h("td.col-date", {}, h("time", { datetime: e.modified_at, text: formatDate(e.modified_at) })),
      h("td.col-actions", {},
        e.kind === "file" ? act("Download", () => this.download(e)) : null,
        act("Rename", () => this.rename(e)),
        act("Move", () => this.move(e)),
        act("Delete", () => this.remove(e), ".danger"),
        rowActions.filter((a) => a.applies(e)).map((a) => act(a.label, () => a.run(this.ctx, e)))));
  }

  // ---- live updates

  /** Apply a journal entry to the listing in place. @param {Record<string, any>} c */
  #onChange(c) {
    const inHere = (/** @type {string | undefined} */ p) => p !== undefined && p !== "/" && dirname(p) === this.path;
    const under = (/** @type {string} */ p) => within(this.path, p);
    if (c.kind === "mount") {  // a folder was shared, or a share mounted, moved or left: list again
      if (c.op === "move" && under(c.old_path)) this.ctx.navigate(folderHash(c.path + this.path.slice(c.old_path.length)));
      else if (inHere(c.path) || inHere(c.old_path)) this.show(this.path);
      return;
    }
    if (c.kind === "member") return;  // who is in a share: the share dialog's business
    if (this.preview && this.preview.entry.id === c.id && c.rev) this.preview.markStale(c.rev);
    if ((c.op === "delete" && under(c.path)) || (c.op === "move" && under(c.old_path))) {
      // The folder on screen was deleted or moved away: follow it, or go up.
      const moved = c.op === "move" ? c.path + this.path.slice(c.old_path.length) : null;
      this.ctx.navigate(folderHash(moved || dirname(c.path)));
      return;
    }
    let changed = false;
    if (inHere(c.old_path) || (c.op === "delete" && inHere(c.path))) changed = this.entries.delete(c.id) || changed;
    if (c.op !== "delete" && inHere(c.path)) {
      const old = this.entries.get(c.id);
      /** @type {Entry} */
      const entry = {
        ...(old || {}), id: c.id, path: c.path, name: basename(c.path), kind: c.kind,
        modified_at: c.op === "move" && old ? old.modified_at : c.at,
        ...(c.kind === "file" && c.rev !== undefined
          ? { size: c.size, rev: c.rev, content_hash: c.content_hash, mime: c.mime ?? old?.mime, mtime: c.mtime ?? old?.mtime } : {}),
      };
      this.entries.set(c.id, entry);
      // The change names the new revision; until its entry is fetched it is marked stale.
      if (c.op === "modify") this.#refreshEntry(entry);
      changed = true;
    }
    if (changed) this.render();
  }

  /** @param {Entry} entry */
  async #refreshEntry(entry) {
    this.stale.add(entry.id);
    try {
      const fresh = await this.ctx.api.file(entry.id);
      if (this.entries.has(entry.id) && fresh.path === entry.path) this.entries.set(entry.id, fresh);
      this.stale.delete(entry.id);
    } catch {
      // left marked stale: the next listing settles it
    }
    this.render();
  }

  /** After a reconnect the subscription replays what was missed; presence is restored by the client. */
  #refreshAfterReconnect() {
    document.body.classList.remove("offline");
  }

  // ---- presence

  /** @param {any[]} members */
  #setMembers(members) {
    const me = this.ctx.live.sessionKey;
    this.members = members.filter((m) => !m.key.endsWith(me));
    this.#renderMembers();
  }

  /** @param {Record<string, any>} ev */
  #onPresenceEvent(ev) {
    if (ev.path !== this.path) return;
    this.members = this.members.filter((m) => m.key !== ev.member.key);
    if (ev.event !== "leave") this.members.push(ev.member);
    this.#renderMembers();
  }

  #renderMembers() {
    mount(this.presence, this.members.map((m) => {
      const who = `${m.user} on ${m.device}`;
      return h("li.avatar", { title: who, "data-key": m.key },
        h("span", { "aria-hidden": "true", text: String(m.user).slice(0, 2).toUpperCase() }),
        h("span.visually-hidden", { text: who }));
    }));
  }

  // ---- actions

  /** @param {Entry} e */
  openPreview(e) {
    const p = openPreview(this.ctx, e);
    this.preview = { entry: e, markStale: p.markStale };
    p.dialog.addEventListener("close", () => { if (this.preview?.entry === e) this.preview = null; });
  }

  /** @param {Entry} e */
  async download(e) {
    try {
      // The browser's download manager fetches a signed URL: it streams the bytes to disk (never the
      // whole file in the page's memory) and resumes an interrupted download with Range. The URL names
      // this revision, so a resumed download cannot mix in a newer one.
      const { url } = await this.ctx.api.contentLink(e.id, e.rev);
      const a = h("a", { href: url, download: e.name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      this.ctx.notify(`Downloading ${e.name}`);
    } catch (err) {
      this.ctx.notify(`Could not download ${e.name}: ${/** @type {Error} */ (err).message}`, "error");
    }
  }

  async newFolder() {
    const name = await promptDialog("New folder", "Folder name", "", "Create");
    if (name) await this.#act(() => this.ctx.api.mkdir(join(this.path, name)), `Created folder ${name}`);
  }

  /** @param {Entry} e */
  async rename(e) {
    const name = await promptDialog(`Rename ${e.name}`, "New name", e.name, "Rename");
    if (name && name !== e.name) await this.#act(() => this.ctx.api.move(e.path, join(dirname(e.path), name)), `Renamed to ${name}`);
  }

  /** @param {Entry} e */
  async move(e) {
    const to = await promptDialog(`Move ${e.name}`, "Destination folder (a path like /Photos)", dirname(e.path), "Move");
    if (to) await this.#act(() => this.ctx.api.move(e.path, join(to.startsWith("/") ? to.replace(/\/$/, "") || "/" : `/${to}`, e.name)), `Moved ${e.name} to ${to}`);
  }

  /** @param {Entry} e */
  async remove(e) {
    if (await confirmDialog(`Delete ${e.name}?`, `${e.kind === "dir" ? "The folder and everything in it" : "The file"} will be moved to the trash.`, "Delete")) {
      let trashed = 0;  // set before Undo can be pressed (the notice comes after the delete)
      await this.#act(async () => { trashed = (await this.ctx.api.delete(e.path)).id; }, `Deleted ${e.name}`, {
        label: "Undo", run: () => this.#act(() => this.ctx.api.restoreTrash({ id: trashed }), `Restored ${e.name}`),
      });
    }
  }

  /**
   * Run one change, then list again (the live feed would do it too, a moment later). An undo
   * action rides on the notice, and takes the focus (the row it was pressed on is gone).
   * @template T @param {() => Promise<T>} fn @param {string} done @param {{label: string, run: () => void}} [undo]
   * @returns {Promise<T | undefined>}
   */
  async #act(fn, done, undo) {
    try {
      const out = await fn();
      const toast = this.ctx.notify(done, "info", undo);
      /** @type {HTMLElement | null | undefined} */ (toast?.querySelector("button"))?.focus();
      await this.show(this.path);
      return out;
    } catch (err) {
      const msg = err instanceof ApiError && err.code === "path_exists" ? "Something with that name is already there."
        : /** @type {Error} */ (err).message;
      this.ctx.notify(msg, "error");
    }
  }

  // ---- uploads

  /** @param {HTMLInputElement} input */
  #uploadInput(input) {
    const files = [...(input.files || [])];
    input.value = "";
    this.upload(files.map((f) => ({ file: f, rel: f.webkitRelativePath || f.name })));
  }

  /** @param {{file: File, rel: string}[]} items paths relative to the folder on screen */
  upload(items) {
    const byName = new Map([...this.entries.values()].map((e) => [e.name, e]));
    this.transfers.add(items.map(({ file, rel }) => ({
      file, path: join(this.path, rel), parentRev: rel.includes("/") ? null : byName.get(rel)?.rev ?? null,
    })));
  }

  #dragAndDrop() {
    const zone = this.el;
    let depth = 0;
    zone.addEventListener("dragenter", (ev) => { if (hasFiles(ev)) { depth++; this.dropHint.hidden = false; zone.classList.add("dragging"); } });
    zone.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; this.dropHint.hidden = true; zone.classList.remove("dragging"); } });
    zone.addEventListener("dragover", (ev) => { if (hasFiles(ev)) { ev.preventDefault(); if (ev.dataTransfer) ev.dataTransfer.dropEffect = "copy"; } });
    zone.addEventListener("drop", async (ev) => {
      if (!hasFiles(ev)) return;
      ev.preventDefault();
      depth = 0;
      this.dropHint.hidden = true;
      zone.classList.remove("dragging");
      const folders = [];
      try {
        const { files, dirs } = await droppedFiles(/** @type {DataTransfer} */ (ev.dataTransfer));
        folders.push(...dirs);
        for (const d of dirs) await this.ctx.api.mkdir(join(this.path, d));  // empty folders come along too
        this.upload(files);
      } catch (err) {
        this.ctx.notify(`Could not read the dropped files: ${/** @type {Error} */ (err).message}`, "error");
      }
      if (folders.length) await this.show(this.path);
    });
  }
}

/** @param {DragEvent} ev */
const hasFiles = (ev) => !!ev.dataTransfer && [...ev.dataTransfer.types].includes("Files");

/**
 * Files from a drop, walking dropped folders (relative paths keep the folder structure).
 * @param {DataTransfer} dt @returns {Promise<{files: {file: File, rel: string}[], dirs: string[]}>}
 */
async function droppedFiles(dt) {
  /** @type {{file: File, rel: string}[]} */
  const files = [];
  /** @type {string[]} */
  const dirs = [];
  const entries = [...dt.items].map((it) => (it.kind === "file" ? it.webkitGetAsEntry?.() : null));
  if (!entries.length || entries.some((e) => !e)) {  // no entry API (or a synthetic drop): the flat file list
    return { files: [...dt.files].map((f) => ({ file: f, rel: f.name })), dirs };
  }
  /** @param {FileSystemEntry} entry @param {string} prefix */
  const walk = async (entry, prefix) => {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isFile) {
      const file = await new Promise((res, rej) => /** @type {FileSystemFileEntry} */ (entry).file(res, rej));
      files.push({ file, rel });
    } else if (entry.isDirectory) {
      const reader = /** @type {FileSystemDirectoryEntry} */ (entry).createReader();
      let n = 0;
      for (;;) {  // readEntries returns a batch at a time until an empty one
        const batch = /** @type {FileSystemEntry[]} */ (await new Promise((res, rej) => reader.readEntries(res, rej)));
        if (!batch.length) break;
        n += batch.length;
        for (const child of batch) await walk(child, rel);
      }
      if (n === 0) dirs.push(rel);
    }
  };
  for (const e of entries) await walk(/** @type {FileSystemEntry} */ (e), "");
  return { files, dirs };
}
