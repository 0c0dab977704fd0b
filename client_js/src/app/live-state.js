// The app's live channel: one LiveClient following the user's root namespace from a cursor taken
// before the first listing (so nothing between listing and subscribing is missed), and presence
// for the folder on screen.

import { LiveClient } from "../lib/live.js";

/** @typedef {import("../lib/live.js").LiveStatus} LiveStatus */

export class LiveState {
  /** @param {import("../lib/api.js").Api} api @param {number} ns the root namespace */
  constructor(api, ns) {
    this.ns = ns;
    this.client = new LiveClient(api, { client: "satchel-web/0.1" });
    /** @type {string | null} */
    this.here = null;  // the folder whose presence we hold
  }

  /** Connect and follow the namespace from `cursor` (replayed first). @param {string} cursor */
  async start(cursor) {
    this.client.subs.set(this.ns, { ns: this.ns, seq: null, cursor });  // (re)subscribed on every welcome
    // A folder shown before the first welcome: say so now (later reconnects restore it themselves).
    this.client.on("open", () => {
      if (this.here && !this.client.presenceState) this.client.setPresence(this.ns, this.here, "viewing").catch(() => {});
    });
    await this.client.connect();
  }

  get status() {
    return this.client.status;
  }

  /** @returns {string} this session's presence key suffix, to tell ourselves apart from others */
  get sessionKey() {
    return this.client.welcome ? `:${this.client.welcome.session}` : "\0";
  }

  /** Say we are viewing `path` (leaving the folder before). @param {string} path @returns {Promise<any[]>} members */
  async view(path) {
    const before = this.here;
    this.here = path;
    if (this.client.status !== "open") return [];
    try {
      if (before && before !== path) await this.client.setPresence(this.ns, before, null);
      const snap = await this.client.setPresence(this.ns, path, "viewing");
      return snap.members;
    } catch {
      return [];  // the channel dropped: presence is restored on reconnect
    }
  }

  stop() {
    this.client.close();
  }
}
