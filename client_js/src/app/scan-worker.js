// Web Worker: cut and hash a File off the main thread, so the page stays responsive while a
// large file is scanned. Messages in: {blob}; out: {progress} ..., then {result} or {error}.
import { scanBlob } from "../lib/scan.js";

const scope = /** @type {any} */ (self);
scope.onmessage = async (/** @type {MessageEvent} */ ev) => {
  let last = 0;
  try {
    const result = await scanBlob(ev.data.blob, {
      onProgress: (n) => {
        const now = Date.now();
        if (now - last > 100) { last = now; scope.postMessage({ progress: n }); }
      },
    });
    scope.postMessage({ result });
  } catch (err) {
    scope.postMessage({ error: String(/** @type {Error} */ (err).message || err) });
  }
};
