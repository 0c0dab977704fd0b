// The REST client: auth and every /api/v1 route of protocol.md, on fetch (browsers and Node 20).

/**
 * @typedef {{id: number, path: string, name: string, kind: "file" | "dir", modified_at: string,
 *            size?: number, content_hash?: string, mime?: string, mtime?: string, rev?: number,
 *            share?: {ns: number, role: string, owner_id: number, can_reshare: boolean}}} Entry
 *   (a shared folder's mount: `share` is set, and `id`/`modified_at` are null)
 * @typedef {{hash: string, size: number, method?: string, headers?: Record<string, string>, url?: string}} MissingChunk
 *   (no url, method or headers when the announce said `urls: false` and the session has a pack_url)
 * @typedef {{upload_id: string, path: string, size: number, chunk_count: number, content_hash: string,
 *            parent_rev: number | null, expires_at: string, missing_count: number, missing: MissingChunk[],
 *            pack_url?: string | null}} UploadSession
 * @typedef {{token: string, device_id: number, expires_at: string, user: {id: number, name: string}}} Login
 * @typedef {{rev: number, parent_rev: number | null, size: number, content_hash: string, mime: string | null,
 *            mtime: string | null, created_at: string, user_id: number, user: string, device_id: number | null,
 *            device: string | null, current: boolean}} Revision
 * @typedef {Entry & {deleted_at: string, items: number, total_size: number}} TrashItem
 * @typedef {{used: number, reserved: number, limit: number, available: number | null}} Quota
 * @typedef {{user_id: number, user: string, role: "viewer" | "editor" | "owner", can_reshare: boolean, added_at: string}} Member
 * @typedef {{ns: number, path: string, role: string, members: Member[]}} Members
 * @typedef {{id: number, path: string, ns: number, mode: "download" | "upload", has_password: boolean,
 *            created_at: string, expires_at: string | null, created_by: number, token?: string, url?: string}} Link
 */

/** An error answer from the server (or a network failure, code "network"). */
export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message @param {Record<string, any>} [details] */
  constructor(status, code, message, details = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** Worth retrying with backoff: network failures, `unavailable`, `internal` (protocol.md, "Errors"). */
  get retryable() {
    return this.code === "network" || this.status >= 500 && this.status !== 507;
  }
}

/** @param {Response} resp @returns {Promise<ApiError>} */
export async function errorFrom(resp) {
  /** @type {any} */
  let body = {};
  try {
    body = await resp.json();
  } catch {
    // not JSON (a proxy's page, an object store's XML): the status speaks alone
  }
  const { error, message, ...details } = body && typeof body === "object" ? body : {};
  return new ApiError(resp.status, error || `http_${resp.status}`, message || resp.statusText, details);
}

export class Api {
  /**
   * @param {string} server base URL ("" = same origin, in the browser)
   * @param {{token?: string | null, fetch?: typeof fetch}} [options]
   */
  constructor(server = "", { token = null, fetch: fetchImpl } = {}) {
    this.server = server.replace(/\/$/, "");
    /** @type {string | null} */
    this.token = token;
    this.fetch = fetchImpl || globalThis.fetch.bind(globalThis);
  }

  /** @param {Record<string, string>} [extra] */
  headers(extra = {}) {
    return this.token ? { Authorization: `Bearer ${this.token}`, ...extra } : { ...extra };
  }

  /**
   * One JSON request. Resolves to the parsed body (null for 204), rejects with ApiError.
   * @param {string} method @param {string} path
   * @param {{json?: unknown, query?: Record<string, string | number | null | undefined>, signal?: AbortSignal}} [opts]
   * @returns {Promise<any>}
   */
  async request(method, path, { json, query, signal } = {}) {
    const url = new URL(this.server + path, globalThis.location?.href);
    for (const [k, v] of Object.entries(query || {})) if (v !== null && v !== undefined) url.searchParams.set(k, String(v));
    /** @type {Response} */
    let resp;
    try {
      resp = await this.fetch(url, {
        method, signal,
        headers: this.headers(json === undefined ? {} : { "Content-Type": "application/json" }),
        body: json === undefined ? undefined : JSON.stringify(json),
      });
    } catch (err) {
      if (/** @type {Error} */ (err).name === "AbortError") throw err;
      throw new ApiError(0, "network", /** @type {Error} */ (err).message);
    }
    if (!resp.ok) throw await errorFrom(resp);
    return resp.status === 204 ? null : resp.json();
  }

  // ---- accounts
  /** @param {string} name @param {string} password */
  signup(name, password) { return this.request("POST", "/api/v1/auth/signup", { json: { name, password } }); }

  /** @param {string} name @param {string} password @param {string} deviceName @param {string} [kind] @returns {Promise<Login>} */
  async login(name, password, deviceName, kind = "browser") {
    const out = await this.request("POST", "/api/v1/auth/login",
      { json: { name, password, device_name: deviceName, device_kind: kind } });
    this.token = out.token;
    return out;
  }

  async logout() {
    await this.request("POST", "/api/v1/auth/logout");
    this.token = null;
  }

  account() { return this.request("GET", "/api/v1/account"); }

  // ---- tree
  /** Every entry of a folder (all pages). @param {string} path @returns {Promise<{entry: Entry, entries: Entry[]}>} */
  async list(path = "/") {
    const out = await this.request("GET", "/api/v1/list", { query: { path } });
    const entries = [...out.entries];
    for (let next = out.next; next;) {
      const page = await this.request("GET", "/api/v1/list", { query: { path, after: next } });
      entries.push(...page.entries);
      next = page.next;
    }
    return { entry: out.entry, entries };
  }

  /** @param {string} path @returns {Promise<Entry>} */
  stat(path) { return this.request("GET", "/api/v1/stat", { query: { path } }); }
  /** @param {string} path @returns {Promise<Entry>} */
  mkdir(path) { return this.request("POST", "/api/v1/mkdir", { json: { path } }); }
  /** @param {string} from @param {string} to @returns {Promise<Entry>} */
  move(from, to) { return this.request("POST", "/api/v1/move", { json: { from, to } }); }
  /** @param {string} path @returns {Promise<Entry>} */
  delete(path) { return this.request("POST", "/api/v1/delete", { json: { path } }); }
  /** @param {number} id @returns {Promise<Entry>} */
  file(id) { return this.request("GET", `/api/v1/files/${id}`); }

  // ---- uploads
  /** @param {Record<string, unknown>} body @param {AbortSignal} [signal] @returns {Promise<UploadSession>} */
  announce(body, signal) { return this.request("POST", "/api/v1/files", { json: body, signal }); }
  /** @param {string} id @param {AbortSignal} [signal] @returns {Promise<UploadSession>} */
  uploadSession(id, signal) { return this.request("GET", `/api/v1/uploads/${encodeURIComponent(id)}`, { signal }); }
  /** @param {string} id @param {AbortSignal} [signal] @returns {Promise<Entry>} */
  commit(id, signal) { return this.request("POST", `/api/v1/uploads/${encodeURIComponent(id)}/commit`, { signal }); }
  /** @param {string} id */
  abandon(id) { return this.request("DELETE", `/api/v1/uploads/${encodeURIComponent(id)}`); }

  // ---- downloads and changes
  /** @param {number} id */
  contentUrl(id) { return new URL(`${this.server}/api/v1/files/${id}/content`, globalThis.location?.href).href; }
  /** A short-lived signed URL of a revision's bytes that needs no token: what a browser hands its download
   * manager (streamed to disk, resumed with Range). @param {number} id @param {number} [rev]
   * @returns {Promise<{url: string, rev: number, size: number, expires_at: string}>} */
  contentLink(id, rev) { return this.request("GET", `/api/v1/files/${id}/content-url`, { query: { rev } }); }
  /** @param {number} [ns] @returns {Promise<{ns: number, seq: number, cursor: string}>} */
  latest(ns) { return this.request("GET", "/api/v1/changes/latest", { query: { ns } }); }
  /** @param {string} cursor @param {number} [limit] @returns {Promise<{entries: any[], cursor: string, has_more: boolean}>} */
  changes(cursor, limit) { return this.request("GET", "/api/v1/changes", { query: { cursor, limit } }); }

  // ---- history, trash, quota, search (protocol.md "History, trash and rewind", "Quota", "Search")
  /** Revisions of a file, newest first (one page). @param {number} id @param {{before?: number, limit?: number}} [opts]
   * @returns {Promise<{entry: Entry, revisions: Revision[], next: number | null}>} */
  revisions(id, { before, limit } = {}) { return this.request("GET", `/api/v1/files/${id}/revisions`, { query: { before, limit } }); }
  /** Write revision `rev`'s content as a new revision. @param {number} id @param {number} rev @returns {Promise<Entry>} */
  restoreRevision(id, rev) { return this.request("POST", `/api/v1/files/${id}/restore`, { json: { rev } }); }
  /** Trash items at or below `path`, most recently deleted first.
   * @param {{path?: string, offset?: number, limit?: number}} [opts] @returns {Promise<{entries: TrashItem[], next: number | null}>} */
  trash({ path, offset, limit } = {}) { return this.request("GET", "/api/v1/trash", { query: { path, offset, limit } }); }
  /** Put a trash item back (by its id, or the latest one deleted at a path).
   * @param {{id: number} | {path: string}} item @returns {Promise<Entry & {restored: number}>} */
  restoreTrash(item) { return this.request("POST", "/api/v1/trash/restore", { json: item }); }
  /** Erase a trash item for good. @param {{id: number} | {path: string}} item
   * @returns {Promise<{id: number, path: string, kind: string, purged: number}>} */
  purgeTrash(item) { return this.request("POST", "/api/v1/trash/purge", { json: item }); }
  /** @returns {Promise<Quota>} */
  quota() { return this.request("GET", "/api/v1/quota"); }
  /** Files and folders matching every word (as a prefix), best first.
   * @param {string} query @param {{path?: string, offset?: number, limit?: number}} [opts]
   * @returns {Promise<{entries: (Entry & {score: number})[], next: number | null}>} */
  search(query, { path, offset, limit } = {}) { return this.request("POST", "/api/v1/files/search", { json: { query, path, offset, limit } }); }

  // ---- sharing (protocol.md "Sharing")
  /** Share a folder (or add members to a shared one).
   * @param {string} path @param {{user: string, role: "viewer" | "editor", can_reshare?: boolean}[]} members @returns {Promise<Members>} */
  share(path, members) { return this.request("POST", "/api/v1/shares", { json: { path, members } }); }
  /** The caller's shared folders. @returns {Promise<{shares: {ns: number, path: string, role: string, owner_id: number, can_reshare: boolean}[]}>} */
  shares() { return this.request("GET", "/api/v1/shares"); }
  /** @param {number} ns @returns {Promise<Members>} */
  members(ns) { return this.request("GET", `/api/v1/shares/${ns}/members`); }
  /** @param {number} ns @param {number} userId @param {"viewer" | "editor"} role @param {boolean} [canReshare] @returns {Promise<Members>} */
  setMemberRole(ns, userId, role, canReshare) {
    return this.request("PATCH", `/api/v1/shares/${ns}/members/${userId}`, { json: { role, can_reshare: canReshare } });
  }
  /** @param {number} ns @param {number} userId */
  removeMember(ns, userId) { return this.request("DELETE", `/api/v1/shares/${ns}/members/${userId}`); }
  /** @param {number} ns */
  leaveShare(ns) { return this.request("POST", `/api/v1/shares/${ns}/leave`); }
  /** Make a link; its `token` and `url` are in this answer only.
   * @param {{path: string, mode?: "download" | "upload", expires?: string | number, password?: string}} body @returns {Promise<Link>} */
  createLink(body) { return this.request("POST", "/api/v1/links", { json: body }); }
  /** @returns {Promise<{links: Link[]}>} */
  links() { return this.request("GET", "/api/v1/links"); }
  /** @param {number} id */
  revokeLink(id) { return this.request("DELETE", `/api/v1/links/${id}`); }

  // ---- public links (no bearer token: the link is the permission)
  /** The link's file entry or folder listing. @param {string} token @param {{path?: string, after?: string, password?: string}} [opts] */
  publicLink(token, { path, after, password } = {}) {
    return this.#public(`/api/v1/public/links/${encodeURIComponent(token)}`, { path, after }, password).then((r) => r.json());
  }
  /** The link's content URL (for a link without a password). @param {string} token */
  publicContentUrl(token) { return `${this.server}/api/v1/public/links/${encodeURIComponent(token)}/content`; }
  /** A signed URL of the link's file (or of `path` in its folder) that needs no password header,
   * for the browser's download manager. @param {string} token @param {{path?: string, password?: string}} [opts]
   * @returns {Promise<{url: string, size: number, expires_at: string}>} */
  publicContentLink(token, { path, password } = {}) {
    return this.#public(`/api/v1/public/links/${encodeURIComponent(token)}/content-url`, { path }, password).then((r) => r.json());
  }
  /** The bytes of the link's file (or of `path` in its folder), as a Response to stream or read.
   * @param {string} token @param {{path?: string, password?: string}} [opts] @returns {Promise<Response>} */
  publicContent(token, { path, password } = {}) {
    return this.#public(`/api/v1/public/links/${encodeURIComponent(token)}/content`, { path }, password);
  }

  /** A file request: add a new file to the link's folder (a taken name gets " (2)"). @param {string} token
   * @param {string} name @param {Blob} body @param {{password?: string}} [opts] @returns {Promise<{name: string, size: number, content_hash: string}>} */
  publicUpload(token, name, body, { password } = {}) {
    return this.#public(`/api/v1/public/links/${encodeURIComponent(token)}/files/${encodeURIComponent(name)}`, {}, password,
      { method: "PUT", body, contentType: body.type || "application/octet-stream" }).then((r) => r.json());
  }

  /** @param {string} route @param {Record<string, string | undefined>} query @param {string | undefined} password
   * @param {{method?: string, body?: Blob, contentType?: string}} [send] */
  async #public(route, query, password, { method = "GET", body, contentType } = {}) {
    const url = new URL(this.server + route, globalThis.location?.href);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    /** @type {Response} */
    let resp;
    try {
      /** @type {Record<string, string>} */
      const headers = {};
      // RFC 8187 form: fetch refuses header values outside Latin-1, so a password like "日本" is percent-encoded UTF-8.
      if (password !== undefined) headers["X-Satchel-Link-Password*"] = `UTF-8''${encodeURIComponent(password)}`;
      if (contentType) headers["Content-Type"] = contentType;
      resp = await this.fetch(url, { method, headers, body });
    } catch (err) {
      throw new ApiError(0, "network", /** @type {Error} */ (err).message);
    }
    if (!resp.ok) throw await errorFrom(resp);
    return resp;
  }
}
