// A Yjs provider over the live channel (protocol.md, "Co-editing (40–47)"): joins a document with
// the local state vector, applies what the server has that we lack, sends what the server lacks,
// then streams local updates (batched) and applies remote ones; awareness (cursors, selections,
// user name and colour) through y-protocols. After the socket reconnects it joins again with the
// state vector, so nothing typed while offline is lost: the server's `doc_joined` says what it
// has, and we send the difference.

import * as Y from "yjs";
import { applyAwarenessUpdate, Awareness, encodeAwarenessUpdate, removeAwarenessStates } from "y-protocols/awareness";

import { Emitter } from "./emitter.js";
import { LiveError } from "./live.js";
import { MAX_FRAME, MsgType } from "./frames.js";

/** The name of the document's one Y.Text (the file's content). */
export const TEXT = "text";
/** How long local updates gather before they are sent as one frame, after the first goes at once. */
export const BATCH_MS = 20;
/** The largest update sent in one frame (the rest of the frame is a few bytes of msgpack). */
export const MAX_UPDATE = MAX_FRAME - 1024;

/** The most local updates kept between joins (bytes). */
const LOG_LIMIT = 64 * 1024 * 1024;

/** Closing reasons after which joining again is the right answer (protocol.md, "Closing"). */
const REJOIN = new Set(["role_changed", "slow_consumer", "shutdown"]);

/**
 * @typedef {"joining" | "synced" | "offline" | "closed"} DocStatus
 * @typedef {{doc: number, ns: number, path: string, file_id: number, role: "editor" | "viewer", rev: number}} Joined
 * @typedef {{status: DocStatus, joined: Joined, saved: {rev: number}, closed: {reason: string, details: Record<string, any>},
 *            error: LiveError, update: {remote: boolean}}} DocEvents
 * @typedef {{ns?: number, doc?: Y.Doc, awareness?: Awareness, user?: {name: string, color: string, colorLight?: string}}} DocOptions
 */

/**
 * One co-edited file. `ydoc.getText("text")` is the content; `awareness` carries presence.
 * @extends {Emitter<DocEvents>}
 */
export class DocSession extends Emitter {
  /** @param {import("./live.js").LiveClient} live @param {string} path @param {DocOptions} [options] */
  constructor(live, path, options = {}) {
    super();
    this.live = live;
    this.path = path;
    this.ns = options.ns;
    this.ydoc = options.doc || new Y.Doc();
    this.text = this.ydoc.getText(TEXT);
    this.awareness = options.awareness || new Awareness(this.ydoc);
    if (options.user) this.awareness.setLocalStateField("user", options.user);
    /** @type {DocStatus} */
    this.status = "offline";
    /** @type {number | null} the server's handle while joined */
    this.handle = null;
    /** @type {"editor" | "viewer" | null} */
    this.role = null;
    /** @type {Joined | null} */
    this.info = null;
    this.wanted = false;  // join() called and leave() not: join again after reconnects
    /** @type {Uint8Array[]} */
    this.queue = [];
    /** @type {import("./frames.js").Frame[]} doc frames that arrived while joining */
    this.early = [];
    /** @type {Uint8Array[]} local updates since the last join, for a rejoin whose difference is
     * over one frame (see #sendMissing) */
    this.log = [];
    this.logBytes = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    this.scheduled = false;  // a flush is on its way (timer or microtask)
    this.lastSent = 0;
    /** @type {Set<number>} remote awareness clients, dropped while we are offline */
    this.remoteClients = new Set();

    /** @param {Uint8Array} update @param {any} origin */
    this.onUpdate = (update, origin) => {
      if (origin === this) return;  // applied from the server: never echoed back
      this.#remember(update);
      this.emit("update", { remote: false });
      if (this.status !== "synced" || this.role !== "editor") return;  // the next join's diff carries it
      this.queue.push(update);
      this.#schedule();
    };
    /** @param {{added: number[], updated: number[], removed: number[]}} changes @param {any} origin */
    this.onAwareness = ({ added, updated, removed }, origin) => {
      if (origin === this) return;
      const changed = added.concat(updated, removed);
      if (this.status === "synced" && changed.length) this.#postAwareness(changed);
    };
    this.offFrames = live.on("doc", (f) => this.#onFrame(f));
    // Failures surface as the `closed` event (or `offline` until the next welcome).
    this.offOpen = live.on("open", () => { if (this.wanted) this.#join().catch(() => {}); });
    this.offClosed = live.on("closed", () => this.#offline());
    // A renamed or moved file keeps its document (protocol.md): follow its path for display.
    this.offChange = live.on("change", (e) => {
      if (this.info && e.ns === this.info.ns && e.id === this.info.file_id && e.op === "move") {
        this.path = e.path;
        this.info.path = e.path;
      }
    });
    this.ydoc.on("update", this.onUpdate);
    this.awareness.on("update", this.onAwareness);
  }

  /** @param {DocStatus} status */
  #setStatus(status) {
    if (this.status !== status) {
      this.status = status;
      this.emit("status", status);
    }
  }

  /** Join the document; resolves with `doc_joined`'s description. Rejects with the server's error
   * (`not_found`, `not_text`, `too_large`, ...), after which the session is closed (`closed` event),
   * or with `closed` when the connection is down: then it joins on the next welcome. */
  async join() {
    this.wanted = true;
    return this.#join();
  }

  /** @returns {Promise<Joined>} */
  async #join() {
    this.early = [];
    this.#setStatus("joining");
    const sv = Y.encodeStateVector(this.ydoc);
    let out;
    try {
      // Joined before: name the file by id, so a rejoin finds it wherever it is now (moved,
      // renamed, or shared into a namespace of its own meanwhile).
      const where = this.info ? { file_id: this.info.file_id }
        : { path: this.path, ...(this.ns !== undefined ? { ns: this.ns } : {}) };
      out = await this.live.request(MsgType.doc_join, { ...where, sv });
    } catch (err) {
      if (err instanceof LiveError && err.code === "closed") {
        this.#setStatus("offline");  // the next welcome joins again
      } else if (this.wanted) {
        this.#end(err instanceof LiveError ? err.code : "error", err instanceof LiveError ? err.details : {});
      }
      throw err;
    }
    if (!this.wanted) {  // left while joining
      this.live.request(MsgType.doc_leave, { doc: out.doc }).catch(() => {});
      throw new LiveError("closed", "left");
    }
    this.handle = out.doc;
    this.role = out.role;
    this.ns = out.ns;
    this.path = out.path;
    this.info = { doc: out.doc, ns: out.ns, path: out.path, file_id: out.file_id, role: out.role, rev: out.rev };
    this.queue = [];  // whatever was queued is in the difference below
    Y.applyUpdate(this.ydoc, out.update, this);
    const early = this.early;
    this.early = [];
    if (this.role === "editor") this.#sendMissing(out.sv);
    this.log = [];  // the server has everything before this join now
    this.logBytes = 0;
    this.#setStatus("synced");
    for (const f of early) this.#onFrame(f);
    if (this.awareness.getLocalState() !== null) this.#postAwareness([this.ydoc.clientID]);
    this.emit("joined", this.info);
    return this.info;
  }

  /** @param {import("./frames.js").Frame} f */
  #onFrame(f) {
    if (this.handle === null && this.status === "joining") {
      // Frames right behind doc_joined can be dispatched before our `await` resumes (Node's ws
      // emits every message of one read in a row): keep them until the handle is known.
      if (this.early.length < 10_000) this.early.push(f);
      return;
    }
    if (this.handle === null || f.body.doc !== this.handle) return;
    switch (f.type) {
      case MsgType.doc_update:
        Y.applyUpdate(this.ydoc, f.body.update, this);
        this.emit("update", { remote: true });
        break;
      case MsgType.doc_awareness:
        applyAwarenessUpdate(this.awareness, f.body.update, this);
        for (const id of this.awareness.getStates().keys()) if (id !== this.ydoc.clientID) this.remoteClients.add(id);
        break;
      case MsgType.doc_saved:
        if (this.info) this.info.rev = f.body.rev;
        this.emit("saved", { rev: f.body.rev });
        break;
      case MsgType.doc_closed: {
        const reason = String(f.body.reason);
        this.handle = null;
        this.#dropRemote();
        if (REJOIN.has(reason) && this.wanted) {
          // shutdown: the socket closes next and the welcome joins again; otherwise join now.
          if (reason === "shutdown") this.#setStatus("offline");
          else this.#join().catch(() => {});
        } else {
          this.#end(reason);
        }
        break;
      }
    }
  }

  #schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    // The first keystroke after a pause goes at once, in a microtask (updates of the same task
    // still merge; a timer would wait milliseconds on a busy page); a burst gathers for BATCH_MS.
    const wait = this.lastSent + BATCH_MS - Date.now();
    if (wait <= 0) queueMicrotask(() => this.flush());
    else this.timer = setTimeout(() => this.flush(), wait);
  }

  /** Send the queued local updates now, merged into one frame where they fit. */
  flush() {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.scheduled = false;
    if (!this.queue.length || this.status !== "synced") return;
    const updates = this.queue;
    this.queue = [];
    const merged = updates.length === 1 ? updates[0] : Y.mergeUpdates(updates);
    if (merged.byteLength <= MAX_UPDATE) this.#postUpdate(merged);
    else for (const u of updates) this.#postUpdate(u);
    this.lastSent = Date.now();
  }

  /** @param {Uint8Array} update a local update, kept until the next join */
  #remember(update) {
    this.log.push(update);
    this.logBytes += update.byteLength;
    // Bounded: past this, a rejoin whose difference is over one frame cannot be split (rare: a
    // long session offline); the oldest go first.
    while (this.logBytes > LOG_LIMIT && this.log.length > 1) this.logBytes -= /** @type {Uint8Array} */ (this.log.shift()).byteLength;
  }

  /**
   * After a join: send what the server (state vector `sv`) lacks. One frame when it fits, else
   * (a long session offline) the local updates since the last join, each cut down to what the
   * server lacks and packed into frames under the limit (protocol.md: clients send a bigger
   * change as several updates).
   * @param {Uint8Array} sv
   */
  #sendMissing(sv) {
    const missing = Y.encodeStateAsUpdate(this.ydoc, sv);
    if (isEmptyUpdate(missing)) return;
    if (missing.byteLength <= MAX_UPDATE) return this.#postUpdate(missing);
    /** @type {Uint8Array[]} */
    let batch = [];
    let size = 0;
    const send = () => {
      if (batch.length) this.#postUpdate(batch.length === 1 ? batch[0] : Y.mergeUpdates(batch));
      batch = [];
      size = 0;
    };
    for (const u of this.log) {
      const part = Y.diffUpdate(u, sv);
      if (isEmptyUpdate(part)) continue;
      if (size + part.byteLength > MAX_UPDATE) send();
      batch.push(part);
      size += part.byteLength;
    }
    send();
  }

  /** @param {Uint8Array} update */
  #postUpdate(update) {
    if (update.byteLength > MAX_UPDATE) {
      // One edit over a frame cannot be sent; the editor keeps pastes smaller (app/editor.js).
      // Joining again later sends it through the state-vector difference if that fits by then.
      this.emit("error", new LiveError("frame_too_large", "an edit too large to send at once", { limit: MAX_UPDATE }));
      return;
    }
    const sent = this.live.post(MsgType.doc_update, { doc: this.handle, update }, (err) => this.#refused(err));
    // Not connected: the reconnect's join sends the difference, so nothing is lost.
    if (!sent) this.#offline();
  }

  /** @param {number[]} clients */
  #postAwareness(clients) {
    const update = encodeAwarenessUpdate(this.awareness, clients);
    this.live.post(MsgType.doc_awareness, { doc: this.handle, update }, (err) => this.#refused(err));
  }

  /** The server refused an update or awareness frame. @param {LiveError} err */
  #refused(err) {
    this.emit("error", err);
    if (err.code === "too_large") {
      // The server's document stays under its limit without our edit, and later edits would build
      // on it: stop here (the app says so) rather than drift apart from what is saved.
      this.#end("too_large_edit", err.details);
    } else if (err.code === "forbidden" && this.role === "editor" && this.wanted) {
      this.#join().catch(() => {});  // our role changed under us: join again to learn it
    } else if (err.code === "not_found" && this.wanted) {
      this.#join().catch(() => {});  // an unknown handle (a restarted node) or access gone: join says which
    }
  }

  /** Forget other people's cursors (they come back with the next join's awareness). */
  #dropRemote() {
    const gone = [...this.remoteClients].filter((id) => this.awareness.getStates().has(id));
    this.remoteClients.clear();
    if (gone.length) removeAwarenessStates(this.awareness, gone, this);
  }

  #offline() {
    if (this.status === "closed") return;
    this.handle = null;
    this.queue = [];
    clearTimeout(this.timer);
    this.timer = undefined;
    this.scheduled = false;
    this.#dropRemote();
    this.#setStatus("offline");
  }

  /** The server ended the session for good (or refused to open it).
   * @param {string} reason @param {Record<string, any>} [details] the error's fields (e.g. `limit`) */
  #end(reason, details = {}) {
    if (this.status === "closed") return;  // the refusal and the server's close can both end it: tell once
    this.wanted = false;
    this.handle = null;
    this.queue = [];
    clearTimeout(this.timer);
    this.scheduled = false;
    this.#dropRemote();
    this.#setStatus("closed");
    this.emit("closed", { reason, details });
  }

  /** Send what is queued, leave the document and stop following it. */
  async leave() {
    this.flush();
    this.wanted = false;
    const handle = this.handle;
    this.handle = null;
    this.#setStatus("closed");
    this.#detach();
    if (handle !== null) await this.live.request(MsgType.doc_leave, { doc: handle }).catch(() => {});
  }

  #detach() {
    this.offFrames();
    this.offOpen();
    this.offClosed();
    this.offChange();
    this.ydoc.off("update", this.onUpdate);
    this.awareness.off("update", this.onAwareness);
    clearTimeout(this.timer);
  }

  /** Leave and free the document and its awareness timers. */
  async destroy() {
    await this.leave();
    this.awareness.destroy();
    this.ydoc.destroy();
  }
}

/** Yjs's empty v1 update is two zero bytes (no structs, empty delete set). @param {Uint8Array} u */
function isEmptyUpdate(u) {
  return u.byteLength === 2 && u[0] === 0 && u[1] === 0;
}
