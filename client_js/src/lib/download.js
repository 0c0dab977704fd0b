// Downloads through HTTP Range (protocol.md, "Downloading a file"): the content is fetched in
// segments, so a dropped connection resumes from the last byte received, and a file changed
// meanwhile (another ETag) is detected instead of being spliced from two revisions (pass `rev`
// to pin one revision).

import { ApiError, errorFrom } from "./api.js";
import { backoffDelay, sleep } from "./backoff.js";

const SEGMENT = 8 * 1024 * 1024;

/**
 * @param {import("./api.js").Api} api
 * @param {number} id the file's id
 * @param {{rev?: number, start?: number, end?: number, onProgress?: (done: number, total: number) => void,
 *          signal?: AbortSignal, maxFailures?: number, segment?: number}} [options] `end` is exclusive
 * @returns {Promise<{blob: Blob, etag: string, size: number}>}
 */
export async function downloadBlob(api, id, options = {}) {
  const { rev, onProgress, signal, maxFailures = 30, segment = SEGMENT } = options;
  const url = new URL(api.contentUrl(id));
  if (rev !== undefined) url.searchParams.set("rev", String(rev));
  /** @type {BlobPart[]} */
  const parts = [];
  let pos = options.start || 0;
  let end = options.end;  // unknown until the first answer
  let etag = "";
  let size = 0;
  let failures = 0;
  while (end === undefined || pos < end) {
    const last = (end === undefined ? pos + segment : Math.min(end, pos + segment)) - 1;
    try {
      const headers = api.headers({ Range: `bytes=${pos}-${last}` });
      let resp;
      try {
        resp = await api.fetch(url, { headers, signal });
      } catch (err) {
        if (/** @type {Error} */ (err).name === "AbortError") throw err;
        throw new ApiError(0, "network", /** @type {Error} */ (err).message);
      }
      if (resp.status === 416) {  // an empty file, or nothing past pos
        await resp.body?.cancel();
        size = Number(resp.headers.get("Content-Range")?.split("/")[1] || 0);
        break;
      }
      if (!resp.ok) throw await errorFrom(resp);
      const tag = resp.headers.get("ETag") || "";
      if (etag && tag !== etag) throw new ApiError(409, "conflict", "the file changed during the download");
      etag = tag;
      if (resp.status === 200) {  // no range support or a whole answer: take it all
        parts.length = 0;
        pos = 0;
        const blob = await resp.blob();
        parts.push(blob);
        size = blob.size;
        pos = end = blob.size;
        onProgress?.(pos, size);
        break;
      }
      size = Number(resp.headers.get("Content-Range")?.split("/")[1]);
      if (end === undefined) end = size;
      const blob = await resp.blob();
      parts.push(blob);
      pos += blob.size;
      failures = 0;
      onProgress?.(pos - (options.start || 0), end - (options.start || 0));
    } catch (err) {
      if (!(err instanceof ApiError) || !err.retryable || ++failures > maxFailures) throw err;
      await sleep(backoffDelay(failures - 1), signal);
    }
  }
  return { blob: new Blob(parts), etag, size };
}
