// Chunked, resumable uploads (protocol.md, "Uploading a file"): scan (cut + hash), announce, PUT the
// chunks the server lacks (a few in parallel, in packs when the server offers a pack URL; each body is
// a slice of the Blob that the browser reads only as it sends it, so memory stays flat), commit.
// Network failures and server errors are retried with backoff; an interrupted upload resumes by
// announcing again, which returns the same session with only the missing chunks.

import { ApiError, errorFrom } from "./api.js";
import { backoffDelay, sleep } from "./backoff.js";
import { hexToBytes } from "./hash.js";
import { scanBlob } from "./scan.js";

/**
 * @typedef {"hashing" | "uploading" | "committing" | "done"} UploadPhase
 * @typedef {{phase: UploadPhase, hashed: number, sent: number, total: number, uploadId?: string}} UploadProgress
 * @typedef {(blob: Blob, opts: import("./scan.js").ScanOptions) => Promise<import("./scan.js").ScanResult>} Scanner
 * @typedef {{parentRev?: number | null, mtime?: number, mime?: string, scan?: Scanner,
 *            onProgress?: (p: UploadProgress) => void, signal?: AbortSignal, concurrency?: number,
 *            maxFailures?: number, packs?: boolean}} UploadOptions
 */

/**
 * Upload `blob` to `path`; resolves to the committed entry.
 * @param {import("./api.js").Api} api
 * @param {Blob} blob
 * @param {string} path
 * @param {UploadOptions} [options]
 * @returns {Promise<import("./api.js").Entry>}
 */
export async function uploadBlob(api, blob, path, options = {}) {
  const { parentRev = null, mtime, mime, scan = scanBlob, onProgress, signal, concurrency = 4, maxFailures = 30,
    packs = true } = options;
  const total = blob.size;
  /** @type {UploadProgress} */
  const progress = { phase: "hashing", hashed: 0, sent: 0, total };
  const report = () => onProgress?.({ ...progress });
  report();
  const { chunks } = await scan(blob, { signal, onProgress: (n) => { progress.hashed = n; report(); } });
  /** @type {Map<string, {offset: number, size: number}>} */
  const where = new Map();
  for (const c of chunks) if (!where.has(c.hash)) where.set(c.hash, c);

  let failures = 0;
  /** Run `fn`, retrying what is worth retrying; gives up after `maxFailures` failures in a row. @template T @param {() => Promise<T>} fn */
  const retrying = async (fn) => {
    for (;;) {
      try {
        const out = await fn();
        failures = 0;
        return out;
      } catch (err) {
        if (!(err instanceof ApiError) || !err.retryable || ++failures > maxFailures) throw err;
        await sleep(backoffDelay(failures - 1), signal);
      }
    }
  };

  const body = {
    path, size: total, parent_rev: parentRev, chunks: chunks.map((c) => [c.hash, c.size]),
    ...(mtime === undefined ? {} : { mtime: Math.max(0, Math.round(mtime)) }), ...(mime ? { mime } : {}),
    // Packing: no URL per chunk needed (a direct object store's come anyway).
    ...(packs ? { urls: false } : {}),
  };
  let session = await retrying(() => api.announce(body, signal));
  progress.phase = "uploading";
  progress.uploadId = session.upload_id;  // a caller that cancels for good may abandon it
  for (;;) {
    const missingBytes = session.missing.reduce((n, m) => n + m.size, 0);
    // Deduplicated and already-stored chunks count as sent.
    progress.sent = total - missingBytes;
    report();
    // With a pack URL (a server that stores chunks itself) many chunks travel in one request;
    // otherwise each chunk goes to its own (presigned) URL.
    const packUrl = packs ? session.pack_url : null;
    const queue = packUrl ? packsOf(session.missing) : session.missing.map((m) => [m]);
    let refresh = false;
    const worker = async () => {
      for (let unit = queue.shift(); unit && !refresh; unit = queue.shift()) {
        const slices = unit.map((m) => {
          const at = /** @type {{offset: number, size: number}} */ (where.get(m.hash.toLowerCase()));
          return blob.slice(at.offset, at.offset + m.size);
        });
        try {
          await retrying(() => packUrl ? putPack(api, packUrl, unit, slices, signal)
            : putChunk(api, unit[0], slices[0], signal));
        } catch (err) {
          // An expired or refused URL: fetch fresh URLs for what is still missing.
          if (err instanceof ApiError && (err.code === "url_expired" || err.status === 403 || err.status === 400)
              && err.code !== "hash_mismatch" && err.code !== "size_mismatch") {
            refresh = true;
            return;
          }
          throw err;
        }
        progress.sent += unit.reduce((n, m) => n + m.size, 0);
        report();
      }
    };
    const workers = Math.max(1, packUrl ? Math.min(concurrency, PACK_PARALLEL) : concurrency);
    await Promise.all(Array.from({ length: workers }, worker));
    if (refresh) {
      if (++failures > maxFailures) throw new ApiError(403, "url_expired", "chunk URLs keep being refused");
      session = await retrying(() => api.uploadSession(session.upload_id, signal));
      continue;
    }
    progress.phase = "committing";
    report();
    try {
      const entry = await retrying(() => api.commit(session.upload_id, signal));
      progress.phase = "done";
      progress.sent = total;
      report();
      return entry;
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== "missing_chunks" || ++failures > maxFailures) throw err;
      session = await retrying(() => api.uploadSession(session.upload_id, signal));
      progress.phase = "uploading";
    }
  }
}

const PACK_BYTES = 8 * 1024 * 1024;  // about this much per pack request, as the Python client sends
const PACK_PARALLEL = 3;
const MAX_PACK_CHUNKS = 4096;
export const PACK_TYPE = "application/vnd.satchel.pack";

/**
 * Group missing chunks, in order, into packs of about PACK_BYTES (protocol.md, "Chunk packs").
 * @param {import("./api.js").MissingChunk[]} missing @returns {import("./api.js").MissingChunk[][]}
 */
export function packsOf(missing) {
  /** @type {import("./api.js").MissingChunk[][]} */
  const packs = [];
  let bytes = 0;
  for (const m of missing) {
    const last = packs[packs.length - 1];
    if (!last || bytes + m.size > PACK_BYTES || last.length >= MAX_PACK_CHUNKS) {
      packs.push([m]);
      bytes = m.size;
    } else {
      last.push(m);
      bytes += m.size;
    }
  }
  return packs;
}

/**
 * A pack's table: count:u32, then (hash: 32 bytes, size: u32) per chunk, big-endian.
 * @param {{hash: string, size: number}[]} chunks @returns {Uint8Array<ArrayBuffer>}
 */
export function packHeader(chunks) {
  const out = new Uint8Array(4 + chunks.length * 36);
  const view = new DataView(out.buffer);
  view.setUint32(0, chunks.length);
  chunks.forEach((c, i) => {
    const at = 4 + i * 36;
    out.set(hexToBytes(c.hash), at);
    view.setUint32(at + 32, c.size);
  });
  return out;
}

/**
 * PUT a pack: the table, then the chunks' Blob slices (a Blob of slices: read from disk as sent).
 * @param {import("./api.js").Api} api @param {string} url @param {import("./api.js").MissingChunk[]} chunks
 * @param {Blob[]} slices @param {AbortSignal} [signal]
 */
async function putPack(api, url, chunks, slices, signal) {
  const body = new Blob([packHeader(chunks), ...slices]);
  await send(api, url, { method: "PUT", headers: { "Content-Type": PACK_TYPE }, body, signal });
}

/**
 * PUT one chunk's bytes to its signed URL.
 * @param {import("./api.js").Api} api @param {import("./api.js").MissingChunk} m @param {Blob} bytes @param {AbortSignal} [signal]
 */
async function putChunk(api, m, bytes, signal) {
  // The Blob slice itself (not its bytes read into the page, nor a stream): the browser sends it
  // from the file on disk with a Content-Length, and can send it again on a retry.
  if (!m.url) throw new Error(`no upload URL for chunk ${m.hash}`);  // only sessions with a pack_url omit them
  await send(api, m.url, { method: m.method || "PUT", headers: m.headers || {}, body: bytes, signal });
}

/** @param {import("./api.js").Api} api @param {string} url @param {RequestInit} init */
async function send(api, url, init) {
  let resp;
  try {
    resp = await api.fetch(url, init);
  } catch (err) {
    if (/** @type {Error} */ (err).name === "AbortError") throw err;
    throw new ApiError(0, "network", /** @type {Error} */ (err).message);
  }
  if (!resp.ok) throw await errorFrom(resp);
  await resp.body?.cancel();
}
