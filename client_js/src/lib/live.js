// The live channel (protocol.md, "WebSocket"): hello/welcome, subscriptions replayed from cursors
// with gap filling from GET /api/v1/changes, presence, pings, and reconnection with capped
// exponential backoff and jitter that resubscribes from the last cursor applied. Incoming frames
// are dispatched through a handler table keyed by message type.

import { backoffDelay } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { CLIENT_MAX_FRAME, CloseCode, decodeFrame, encodeFrame, FrameError, MsgType, RECONNECT, SUBPROTOCOL, VERSION }
  from "./frames.js";

/** An `error` frame answering one of our requests. */
export class LiveError extends Error {
  /** @param {string} code @param {string} message @param {Record<string, any>} [details] */
  constructor(code, message, details = {}) {
    super(message);
    this.name = "LiveError";
    this.code = code;
    this.details = details;
  }
}

/**
 * @typedef {"connecting" | "open" | "reconnecting" | "closed"} LiveStatus
 * @typedef {{ns: number, seq: number | null, cursor: string | null}} Subscription
 * @typedef {{open: any, change: any, presence: any, presence_event: any, status: LiveStatus, resync: any,
 *            revoked: {ns: number, cursor: string, reason: string},
 *            reset: {ns: number, code: string}, closed: {code: number, reason: string},
 *            doc: import("./frames.js").Frame}} LiveEvents
 * @typedef {{WebSocket?: any, url?: string, client?: string, maxDelayMs?: number}} LiveOptions
 */

/** @extends {Emitter<LiveEvents>} */
export class LiveClient extends Emitter {
  /** @param {import("./api.js").Api} api @param {LiveOptions} [options] */
  constructor(api, options = {}) {
    super();
    this.api = api;
    this.WebSocketImpl = options.WebSocket || globalThis.WebSocket;
    const base = new URL(api.server || "/", globalThis.location?.href);
    base.protocol = base.protocol === "https:" ? "wss:" : "ws:";
    base.pathname = base.pathname.replace(/\/$/, "") + "/api/v1/ws";
    this.url = options.url || base.href;
    this.clientName = options.client || "satchel-js/0.1";
    this.maxDelayMs = options.maxDelayMs ?? 10_000;
    /** @type {LiveStatus} */
    this.status = "closed";
    /** @type {any} */
    this.welcome = null;
    /** @type {Map<number, Subscription>} */
    this.subs = new Map();
    /** @type {{ns: number, path: string, state: string | null} | null} */
    this.presenceState = null;
    /** @type {Map<number, {resolve: (body: any) => void, reject: (err: Error) => void}>} */
    this.pending = new Map();
    /** @type {any} */
    this.ws = null;
    this.nextId = 1;
    this.attempt = 0;
    this.wanted = false;  // connect() called and close() not: keep reconnecting
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    this.lastHeard = 0;
    this.applying = Promise.resolve();  // change frames are applied one at a time, in order
    /** @type {Record<number, (frame: import("./frames.js").Frame) => void>} */
    this.handlers = {
      [MsgType.ping]: (f) => this.#send(MsgType.pong, f.id, {}),
      [MsgType.change]: (f) => this.#queueChange(f.body),
      [MsgType.resync]: (f) => this.#onResync(f.body),
      [MsgType.revoked]: (f) => this.#onRevoked(/** @type {LiveEvents["revoked"]} */ (f.body)),
      [MsgType.presence_event]: (f) => this.emit("presence_event", f.body),
      // Co-editing pushes (id 0) go to the document session holding that handle (coedit.js).
      [MsgType.doc_update]: (f) => this.emit("doc", f),
      [MsgType.doc_awareness]: (f) => this.emit("doc", f),
      [MsgType.doc_saved]: (f) => this.emit("doc", f),
      [MsgType.doc_closed]: (f) => this.emit("doc", f),
    };
    /** @type {Map<number, (err: LiveError) => void>} requests without a success reply, by id */
    this.unanswered = new Map();
  }

  /** @param {LiveStatus} status */
  #setStatus(status) {
    if (this.status !== status) {
      this.status = status;
      this.emit("status", status);
    }
  }

  /** Open the session; resolves with the `welcome` body. Reconnects by itself until close(). */
  connect() {
    this.wanted = true;
    return this.#open();
  }

  /** @returns {Promise<any>} */
  #open() {
    this.#setStatus(this.attempt ? "reconnecting" : "connecting");
    return new Promise((resolve, reject) => {
      const ws = new this.WebSocketImpl(this.url, [SUBPROTOCOL]);
      this.ws = ws;
      ws.binaryType = "arraybuffer";
      let welcomed = false;
      ws.onopen = () => {
        const id = this.#id();
        this.pending.set(id, {
          resolve: (body) => {
            welcomed = true;
            this.welcome = body;
            this.#setStatus("open");
            this.#watchdog();
            this.emit("open", body);
            // The backoff restarts only once the subscriptions are back: a session that keeps
            // failing to restore them keeps backing off instead of reconnecting in a tight loop.
            this.#restore().then(() => { this.attempt = 0; }, () => ws.close(CloseCode.normal));
            resolve(body);
          },
          reject,
        });
        this.#send(MsgType.hello, id, { versions: [VERSION], token: this.api.token, client: this.clientName });
      };
      ws.onmessage = (/** @type {{data: ArrayBuffer | string}} */ ev) => this.#onMessage(ev.data);
      ws.onclose = (/** @type {{code: number, reason: string}} */ ev) => {
        if (this.ws !== ws) return;
        this.ws = null;
        clearTimeout(this.timer);
        for (const p of this.pending.values()) p.reject(new LiveError("closed", `connection closed (${ev.code})`));
        this.pending.clear();
        this.unanswered.clear();
        this.emit("closed", { code: ev.code, reason: ev.reason });
        const again = this.wanted && (RECONNECT.has(ev.code) || ev.code === 1006 || ev.code === CloseCode.hello_timeout
                                      || (welcomed && ev.code === CloseCode.normal));
        if (!welcomed) reject(new LiveError("closed", `connection closed before welcome (${ev.code})`));
        if (again) {
          this.#setStatus("reconnecting");
          const delay = Math.min(this.maxDelayMs, backoffDelay(this.attempt++));
          this.timer = setTimeout(() => { if (this.wanted) this.#open().catch(() => {}); }, delay);
        } else {
          this.wanted = false;
          this.#setStatus("closed");
        }
      };
      ws.onerror = () => {};  // onclose follows and decides
    });
  }

  /** Close for good (no reconnect). */
  close() {
    this.wanted = false;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(CloseCode.normal);
    else this.#setStatus("closed");
  }

  #id() {
    this.nextId = this.nextId >= 2 ** 31 - 1 ? 1 : this.nextId + 1;
    return this.nextId;
  }

  /** @param {number} type @param {number} id @param {Record<string, any>} body */
  #send(type, id, body) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(encodeFrame(type, id, body));
  }

  /** One request; resolves with the reply's body, rejects with LiveError. @param {number} type @param {Record<string, any>} body */
  request(type, body) {
    if (!this.ws || this.ws.readyState !== 1) return Promise.reject(new LiveError("closed", "not connected"));
    const id = this.#id();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.#send(type, id, body);
    });
  }

  /**
   * A request that has no reply when it succeeds (`doc_update`, `doc_awareness`): `onError` gets
   * the `error` frame if the server refuses it. Returns false when not connected (nothing sent).
   * @param {number} type @param {Record<string, any>} body @param {(err: LiveError) => void} onError
   */
  post(type, body, onError) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    const id = this.#id();
    this.unanswered.set(id, onError);
    // Success is silent, so ids are forgotten oldest first: a refusal comes back within a round
    // trip, long before 4,096 later requests.
    if (this.unanswered.size > 4096) this.unanswered.delete(/** @type {number} */ (this.unanswered.keys().next().value));
    this.#send(type, id, body);
    return true;
  }

  /** Close when nothing arrives for the idle timeout (the server pings every heartbeat). */
  #watchdog() {
    this.lastHeard = Date.now();
    const idle = this.welcome?.idle_timeout_ms || 45_000;
    const check = () => {
      if (!this.ws) return;
      if (Date.now() - this.lastHeard > idle) this.ws.close(CloseCode.normal, "silent server");
      else this.timer = setTimeout(check, 1000);
    };
    this.timer = setTimeout(check, 1000);
  }

  /** @param {ArrayBuffer | string} data */
  #onMessage(data) {
    this.lastHeard = Date.now();
    let frame;
    try {
      if (typeof data === "string") throw new FrameError("text frame");
      frame = decodeFrame(new Uint8Array(data), CLIENT_MAX_FRAME);  // co-editing frames may pass 1 MiB
    } catch (err) {
      if (err instanceof FrameError) this.ws?.close(CloseCode.bad_frame, "bad frame");
      return;  // an unknown type from a newer server: ignored
    }
    const handler = this.handlers[frame.type];
    if (handler) return handler(frame);
    const waiting = frame.id ? this.pending.get(frame.id) : undefined;
    if (!waiting) {
      const onError = frame.type === MsgType.error ? this.unanswered.get(frame.id) : undefined;
      if (!onError) return;
      this.unanswered.delete(frame.id);
      const { code, message, ...details } = frame.body;
      return onError(new LiveError(code, message, details));
    }
    this.pending.delete(frame.id);
    if (frame.type === MsgType.error) {
      const { code, message, ...details } = frame.body;
      waiting.reject(new LiveError(code, message, details));
    } else {
      waiting.resolve(frame.body);
    }
  }

  // ---- subscriptions

  /**
   * Follow a namespace from `cursor` (replayed first) or from now. Resolves with `subscribed`.
   * @param {number} ns @param {string | null} [cursor]
   */
  async subscribe(ns, cursor = null) {
    this.subs.set(ns, { ns, seq: null, cursor });
    const out = await this.request(MsgType.subscribe, cursor ? { ns, cursor } : { ns });
    await this.applying;
    const sub = this.subs.get(ns);
    if (sub && (sub.seq === null || sub.seq < out.seq)) Object.assign(sub, { seq: out.seq, cursor: out.cursor });
    return out;
  }

  /** @param {number} ns */
  async unsubscribe(ns) {
    this.subs.delete(ns);
    return this.request(MsgType.unsubscribe, { ns });
  }

  /** @param {Record<string, any>} entry */
  #queueChange(entry) {
    this.applying = this.applying.then(() => this.#applyChange(entry)).catch(() => this.ws?.close(CloseCode.normal));
  }

  /** Apply one change in order; fill a gap in seqs from the journal first. @param {Record<string, any>} entry */
  async #applyChange(entry) {
    const sub = this.subs.get(entry.ns);
    if (!sub) return;
    if (sub.seq !== null && entry.seq <= sub.seq) return;  // seen already
    if (sub.seq !== null && sub.cursor && entry.seq > sub.seq + 1) {
      let cursor = sub.cursor;
      for (let more = true; more;) {
        const page = await this.api.changes(cursor);
        for (const e of page.entries) {
          if (e.seq >= entry.seq) break;
          this.#deliver(sub, e);
        }
        cursor = page.cursor;
        more = page.has_more && /** @type {number} */ (sub.seq) < entry.seq - 1;
      }
    }
    this.#deliver(sub, entry);
  }

  /** @param {Subscription} sub @param {Record<string, any>} entry */
  #deliver(sub, entry) {
    sub.seq = entry.seq;
    sub.cursor = entry.cursor;
    this.emit("change", entry);
  }

  /** The server dropped a subscription (slow consumer): subscribe again from the cursor. @param {Record<string, any>} body */
  #onResync(body) {
    this.emit("resync", body);
    const sub = this.subs.get(body.ns);
    if (sub) this.#resubscribe(body.ns, sub.cursor || body.cursor).catch(() => this.ws?.close(CloseCode.normal));
  }

  /** Access to a shared namespace ended: the server dropped the subscription; never resubscribe.
   * @param {LiveEvents["revoked"]} body */
  #onRevoked(body) {
    this.subs.delete(body.ns);
    this.emit("revoked", body);
  }

  /**
   * Subscribe again from `cursor`. A cursor the server no longer accepts (bad_cursor, cursor_expired)
   * means: start from now and emit `reset`, so the application lists the tree in full again.
   * @param {number} ns @param {string | null} cursor
   */
  async #resubscribe(ns, cursor) {
    try {
      return await this.subscribe(ns, cursor);
    } catch (err) {
      if (!(err instanceof LiveError) || (err.code !== "bad_cursor" && err.code !== "cursor_expired")) throw err;
      const out = await this.subscribe(ns, null);
      this.emit("reset", { ns, code: err.code });
      return out;
    }
  }

  /** After a (re)connect: resubscribe from the cursors applied, and say where we are again. */
  async #restore() {
    for (const sub of [...this.subs.values()]) await this.#resubscribe(sub.ns, sub.cursor);
    if (this.presenceState) {
      const { ns, path, state } = this.presenceState;
      this.emit("presence", await this.request(MsgType.presence_set, { ns, path, state }));
    }
  }

  // ---- presence

  /**
   * Say where this session is (`viewing` a folder), or leave with state null. Resolves with the
   * `presence` snapshot {ns, path, members}.
   * @param {number} ns @param {string} path @param {"viewing" | "editing" | null} state
   */
  async setPresence(ns, path, state) {
    this.presenceState = state ? { ns, path, state } : null;
    const out = await this.request(MsgType.presence_set, { ns, path, state });
    this.emit("presence", out);
    return out;
  }
}
