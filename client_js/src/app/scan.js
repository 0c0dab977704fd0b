// Scan a Blob in a Web Worker (scan-worker.js); the worker's URL is injected by build.mjs.

/* global SCAN_WORKER_URL */
/** @type {string} */
// @ts-ignore defined at build time
const WORKER_URL = SCAN_WORKER_URL;

/** @type {import("../lib/upload.js").Scanner} */
export function scanInWorker(blob, { onProgress, signal } = {}) {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const worker = new Worker(WORKER_URL, { type: "module" });
    const stop = () => { worker.terminate(); reject(signal?.reason); };
    signal?.addEventListener("abort", stop, { once: true });
    const finish = () => { worker.terminate(); signal?.removeEventListener("abort", stop); };
    worker.onmessage = (ev) => {
      const m = ev.data;
      if (m.progress !== undefined) onProgress?.(m.progress);
      else if (m.result) { finish(); onProgress?.(blob.size); resolve(m.result); }
      else { finish(); reject(new Error(m.error)); }
    };
    worker.onerror = (ev) => { finish(); reject(new Error(ev.message || "scan worker failed")); };
    worker.postMessage({ blob });
  });
}
