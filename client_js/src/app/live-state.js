// The app's live channel: one LiveClient following the user's root namespace from a cursor taken
// before the first listing (so nothing between listing and subscribing is missed), the namespace
// of every mounted shared folder, and presence for the folder on screen. Entries of a shared
// namespace carry paths inside it (protocol.md, "Sharing"): they are re-emitted with the user's
// paths, so the views deal in one tree. A shared file's namespace holds just that file, mounted as
// the file itself: its entries all carry the mount's path.

import { Emitter } from "../lib/emitter.js";
import { LiveClient } from "../lib/live.js";

/** @typedef {import("../lib/live.js").LiveStatus} LiveStatus */
/**
 * @typedef {{change: Record<string, any>, presence: any, presence_event: any,
 *            relist: {ns: number, path: string}, ended: {ns: number, path: string}}} AppLiveEvents
 */

/** The user's path for `inner`, a path inside the namespace mounted at `mount` (`file`: a shared file's).
 * @param {string} mount @param {string} inner @param {boolean} [file] */
const outside = (mount, inner, file = false) => (file || inner === "/" ? mount : mount === "/" ? inner : mount + inner);

/** @param {string} path @param {string} top */
const within = (path, top) => path === top || path.startsWith(`${top}/`);

/** @extends {Emitter<AppLiveEvents>} */
export class LiveState extends Emitter {
  /** @param {import("../lib/api.js").Api} api @param {number} ns the root namespace */
  constructor(api, ns) {
    super();
    this.ns = ns;
    this.api = api;
    this.client = new LiveClient(api, { client: "satchel-web/0.1" });
    /** @type {Map<number, string>} shared namespace -> where it is mounted in the user's tree */
    this.mounts = new Map();
    /** @type {Set<number>} the shared namespaces that are one shared file */
    this.files = new Set();
    /** @type {string | null} */
    this.here = null;  // the folder whose presence we hold (the user's path)
    /** @type {{ns: number, path: string} | null} */
    this.place = null;  // ... and where that is for the server
    this.client.on("change", (e) => this.#onChange(e));
    this.client.on("revoked", (r) => this.#end(r.ns));
    this.client.on("presence", (p) => this.emit("presence", { ...p, path: this.visible(p.ns, p.path) }));
    this.client.on("presence_event", (p) => this.emit("presence_event", { ...p, path: this.visible(p.ns, p.path) }));
  }

  /** Connect and follow the namespace from `cursor` (replayed first). @param {string} cursor */
  async start(cursor) {
    this.client.subs.set(this.ns, { ns: this.ns, seq: null, cursor });  // (re)subscribed on every welcome
    this.client.on("open", (welcome) => {
      this.#syncMounts(welcome.namespaces || []);
      // A folder shown before the first welcome: say so now (later reconnects restore it themselves).
      if (this.here && !this.client.presenceState) this.view(this.here).catch(() => {});
    });
    await this.client.connect();
  }

  /**
   * The welcome lists the mounts as they are now: follow new ones, forget removed ones. This runs
   * before the client resubscribes from its cursors, so a forgotten namespace is not resubscribed.
   * @param {{ns: number, path: string, kind?: string}[]} namespaces
   */
  #syncMounts(namespaces) {
    const now = new Map(namespaces.filter((n) => n.ns !== this.ns).map((n) => [n.ns, n.path]));
    for (const n of namespaces) if (n.kind === "file") this.files.add(n.ns);
    for (const ns of [...this.mounts.keys()]) if (!now.has(ns)) this.#end(ns);  // removed while we were away
    for (const [ns, path] of now) {
      const known = this.mounts.has(ns);
      this.mounts.set(ns, path);
      if (!known) queueMicrotask(() => this.#follow(ns));  // after the client's own resubscriptions start
    }
  }

  /** Follow a newly known shared namespace from now, then have the views list it again. @param {number} ns */
  async #follow(ns) {
    try {
      await this.client.subscribe(ns, null);
    } catch {
      return;  // the channel dropped (the next welcome retries) or access already ended
    }
    const path = this.mounts.get(ns);
    if (path === undefined) return;
    if (!this.files.has(ns)) {  // a mount journal entry does not say whether it is a file: ask once
      try { if ((await this.api.stat(path)).kind === "file") this.files.add(ns); } catch { /* gone again */ }
    }
    this.emit("relist", { ns, path });
  }

  /** Access to a shared namespace ended (revoked, unmounted, or left). @param {number} ns */
  #end(ns) {
    const path = this.mounts.get(ns);
    if (path === undefined) return;  // told already (revoked and unmount both say it)
    this.mounts.delete(ns);
    this.files.delete(ns);
    if (this.client.subs.has(ns)) this.client.unsubscribe(ns).catch(() => {});
    this.emit("ended", { ns, path });
  }

  /** @param {Record<string, any>} e */
  #onChange(e) {
    if (e.ns === this.ns && e.kind === "mount") {
      if (e.op === "mount") {
        const known = this.mounts.has(e.id);
        this.mounts.set(e.id, e.path);
        if (!known) this.#follow(e.id);
      } else if (e.op === "unmount") {
        this.#end(e.id);
      } else if (e.op === "move" && this.mounts.has(e.id)) {
        this.mounts.set(e.id, e.path);
      }
    }
    if (e.ns === this.ns) return this.emit("change", e);
    const mount = this.mounts.get(e.ns);
    if (mount === undefined) return;  // a namespace we no longer follow
    const file = this.files.has(e.ns);
    this.emit("change", { ...e, path: outside(mount, e.path, file), ...(e.old_path ? { old_path: outside(mount, e.old_path, file) } : {}) });
  }

  /** The user's path for `inner` in namespace `ns`. @param {number} ns @param {string} inner */
  visible(ns, inner) {
    const mount = ns === this.ns ? "/" : this.mounts.get(ns);
    return mount === undefined ? inner : outside(mount, inner, this.files.has(ns));
  }

  /** Where a path of the user's tree lives: its namespace and the path inside. @param {string} path */
  locate(path) {
    for (const [ns, mount] of this.mounts) {
      if (within(path, mount)) return { ns, path: path === mount ? "/" : path.slice(mount.length) };
    }
    return { ns: this.ns, path };
  }

  get status() {
    return this.client.status;
  }

  /** @returns {string} this session's presence key suffix, to tell ourselves apart from others */
  get sessionKey() {
    return this.client.welcome ? `:${this.client.welcome.session}` : "\0";
  }

  /**
   * Say we are viewing `path` (leaving the folder before), in the namespace it lives in: in a
   * shared folder, every member viewing it meets there. @param {string} path @returns {Promise<any[]>} members
   */
  async view(path) {
    const before = this.place;
    const place = this.locate(path);
    this.here = path;
    this.place = place;
    if (this.client.status !== "open") return [];
    if (before && (before.ns !== place.ns || before.path !== place.path)) {
      await this.client.setPresence(before.ns, before.path, null).catch(() => {});  // gone already if access ended
    }
    try {
      const snap = await this.client.setPresence(place.ns, place.path, "viewing");
      return snap.members;
    } catch {
      return [];  // the channel dropped: presence is restored on reconnect
    }
  }

  stop() {
    this.client.close();
  }
}
