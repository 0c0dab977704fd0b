// Cut and hash a Blob (a browser File, or a Node Blob) into its chunk list, streaming: memory stays
// flat whatever the file's size. The browser runs this in a Web Worker (scan-worker.js).

import { Chunker } from "./chunker.js";
import { createHasher } from "./hash.js";

/**
 * @typedef {{offset: number, size: number, hash: string}} ChunkRef
 * @typedef {{chunks: ChunkRef[], contentHash: string}} ScanResult
 * @typedef {{onProgress?: (bytesDone: number) => void, signal?: AbortSignal}} ScanOptions
 */

/**
 * @param {Blob} blob
 * @param {ScanOptions} [options]
 * @returns {Promise<ScanResult>}
 */
export async function scanBlob(blob, { onProgress, signal } = {}) {
  const hasher = await createHasher();
  const chunker = new Chunker(blob.size);
  /** @type {ChunkRef[]} */
  const chunks = [];
  const take = (/** @type {Iterable<import("./chunker.js").Chunk>} */ cuts) => {
    for (const c of cuts) chunks.push({ offset: c.offset, size: c.size, hash: hasher.hash(c.data) });
  };
  const reader = blob.stream().getReader();
  let done = 0;
  try {
    for (;;) {
      signal?.throwIfAborted();
      const { value, done: end } = await reader.read();
      if (end) break;
      take(chunker.push(value));
      done += value.byteLength;
      onProgress?.(done);
    }
  } finally {
    reader.releaseLock();
  }
  take(chunker.finish());
  return { chunks, contentHash: hasher.content(chunks.map((c) => c.hash)) };
}
