// Cut and hash a Blob (a browser File, or a Node Blob) into its chunk list, streaming: memory stays
// flat whatever the file's size. The browser runs this in a Web Worker (scan-worker.js).

import { Chunker } from "./chunker.js";
import { createHasher } from "./hash.js";

/**
 * @typedef {{offset: number, size: number, hash: string}} ChunkRef
 * @typedef {{chunks: ChunkRef[], contentHash: string}} ScanResult
 * @typedef {{onProgress?: (bytesDone: number) => void, signal?: AbortSignal}} ScanOptions
 */

const PIECE = 4 * 1024 * 1024;

/**
 * The Blob's bytes in pieces. Where the stream is a byte stream, a "bring your own buffer" reader
 * refills one buffer again and again: reading a large file then allocates nothing per piece, so
 * memory does not swing with garbage waiting for collection (a default reader allocates a new
 * buffer per read). Each piece is only valid until the next one is asked for.
 * @param {Blob} blob @returns {AsyncGenerator<Uint8Array>}
 */
async function* pieces(blob) {
  const stream = blob.stream();
  /** @type {ReadableStreamBYOBReader | undefined} */
  let byob;
  try {
    byob = stream.getReader({ mode: "byob" });
  } catch {
    byob = undefined;  // not a byte stream here: the default reader below
  }
  if (byob) {
    let buf = new Uint8Array(PIECE);
    try {
      for (;;) {
        const { value, done } = await byob.read(buf);
        if (done || !value) return;
        yield value;
        buf = new Uint8Array(value.buffer, 0, PIECE);  // the same memory, handed back
      }
    } finally {
      byob.releaseLock();
    }
  }
  const reader = stream.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

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
  let done = 0;
  for await (const value of pieces(blob)) {
    signal?.throwIfAborted();
    take(chunker.push(value));
    done += value.byteLength;
    onProgress?.(done);
  }
  take(chunker.finish());
  return { chunks, contentHash: hasher.content(chunks.map((c) => c.hash)) };
}
