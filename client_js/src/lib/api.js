// The REST client: auth and every /api/v1 route of protocol.md, on fetch (browsers and Node 20).

/**
 * @typedef {{id: number, path: string, name: string, kind: "file" | "dir", modified_at: string,
 *            size?: number, content_hash?: string, mime?: string, mtime?: string, rev?: number}} Entry
 * @typedef {{hash: string, size: number, method: string, headers: Record<string, string>, url: string}} MissingChunk
 * @typedef {{upload_id: string, path: string, size: number, chunk_count: number, content_hash: string,
 *            parent_rev: number | null, expires_at: string, missing_count: number, missing: MissingChunk[]}} UploadSession
 * @typedef {{token: string, device_id: number, expires_at: string, user: {id: number, name: string}}} Login
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
  /** @param {number} [ns] @returns {Promise<{ns: number, seq: number, cursor: string}>} */
  latest(ns) { return this.request("GET", "/api/v1/changes/latest", { query: { ns } }); }
  /** @param {string} cursor @param {number} [limit] @returns {Promise<{entries: any[], cursor: string, has_more: boolean}>} */
  changes(cursor, limit) { return this.request("GET", "/api/v1/changes", { query: { cursor, limit } }); }
}
