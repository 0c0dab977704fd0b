// Chunked, resumable uploads (protocol.md, "Uploading a file"): scan (cut + hash), announce, PUT the
// chunks the server lacks (a few in parallel, each read from the Blob only when sent, so memory stays
// flat), commit. Network failures and server errors are retried with backoff; an interrupted upload
// resumes by announcing again, which returns the same session with only the missing chunks.

import { ApiError, errorFrom } from "./api.js";
import { backoffDelay, sleep } from "./backoff.js";
import { scanBlob } from "./scan.js";

/**
 * @typedef {"hashing" | "uploading" | "committing" | "done"} UploadPhase
 * @typedef {{phase: UploadPhase, hashed: number, sent: number, total: number, uploadId?: string}} UploadProgress
 * @typedef {(blob: Blob, opts: import("./scan.js").ScanOptions) => Promise<import("./scan.js").ScanResult>} Scanner
 * @typedef {{parentRev?: number | null, mtime?: number, mime?: string, scan?: Scanner,
 *            onProgress?: (p: UploadProgress) => void, signal?: AbortSignal, concurrency?: number,
 *            maxFailures?: number}} UploadOptions
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
  const { parentRev = null, mtime, mime, scan = scanBlob, onProgress, signal, concurrency = 4, maxFailures = 30 }
    = options;
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
  };
  let session = await retrying(() => api.announce(body, signal));
  progress.phase = "uploading";
  progress.uploadId = session.upload_id;  // a caller that cancels for good may abandon it
  for (;;) {
    const missingBytes = session.missing.reduce((n, m) => n + m.size, 0);
    // Deduplicated and already-stored chunks count as sent.
    progress.sent = total - missingBytes;
    report();
    const queue = [...session.missing];
    let refresh = false;
    const worker = async () => {
      for (let m = queue.shift(); m && !refresh; m = queue.shift()) {
        const at = /** @type {{offset: number, size: number}} */ (where.get(m.hash.toLowerCase()));
        try {
          await retrying(() => putChunk(api, m, blob.slice(at.offset, at.offset + m.size), signal));
        } catch (err) {
          // An expired or refused URL: fetch fresh URLs for what is still missing.
          if (err instanceof ApiError && (err.code === "url_expired" || err.status === 403 || err.status === 400)
              && err.code !== "hash_mismatch" && err.code !== "size_mismatch") {
            refresh = true;
            return;
          }
          throw err;
        }
        progress.sent += m.size;
        report();
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
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

/**
 * PUT one chunk's bytes to its signed URL.
 * @param {import("./api.js").Api} api @param {import("./api.js").MissingChunk} m @param {Blob} bytes @param {AbortSignal} [signal]
 */
async function putChunk(api, m, bytes, signal) {
  let resp;
  try {
    // The Blob slice itself (not its bytes read into the page, nor a stream): the browser sends it
    // from the file on disk with a Content-Length, and can send it again on a retry.
    resp = await api.fetch(m.url, { method: m.method || "PUT", headers: m.headers || {}, body: bytes, signal });
  } catch (err) {
    if (/** @type {Error} */ (err).name === "AbortError") throw err;
    throw new ApiError(0, "network", /** @type {Error} */ (err).message);
  }
  if (!resp.ok) throw await errorFrom(resp);
  await resp.body?.cancel();
}
