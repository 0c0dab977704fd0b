// Content-defined chunking: FastCDC 2020 cut exactly as pyfastcdc cuts (normalized chunking level 1,
// default gear table, seed 0) and the same size tiers as server/core/chunking.py, so the browser,
// the Python client and the server cut the same bytes into the same chunks (protocol.md, "Chunks").
// tests/vectors/chunks.json, generated from the Python chunker, pins this down.

import { GEAR, MASKS } from "./gear.js";

export const MIN_AVG_CHUNK = 64 * 1024;
export const MAX_AVG_CHUNK = 4 * 1024 * 1024;
export const MAX_CHUNK_SIZE = 4 * MAX_AVG_CHUNK;
const TARGET_CHUNKS = 4096;
const NORMALIZATION = 1;

/**
 * Average chunk size for a file of `fileSize` bytes: the smallest power of two in [64 KiB, 4 MiB]
 * with avg * 4096 >= fileSize.
 * @param {number} fileSize
 */
export function avgChunkSize(fileSize) {
  let avg = MIN_AVG_CHUNK;
  while (avg < MAX_AVG_CHUNK && avg * TARGET_CHUNKS < fileSize) avg *= 2;
  return avg;
}

// The gear table split into high and low 32-bit halves, and its left shift by one (GEAR_LS).
const G_HI = new Int32Array(256), G_LO = new Int32Array(256);
const GL_HI = new Int32Array(256), GL_LO = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  const hi = GEAR[2 * i], lo = GEAR[2 * i + 1];
  G_HI[i] = hi; G_LO[i] = lo;
  GL_HI[i] = ((hi << 1) | (lo >>> 31)) >>> 0; GL_LO[i] = (lo << 1) >>> 0;
}

/**
 * @typedef {{avg: number, min: number, max: number, sHi: number, sLo: number, lHi: number, lLo: number,
 *            sLsHi: number, sLsLo: number, lLsHi: number, lLsLo: number}} CdcConfig
 * @typedef {{offset: number, size: number, data: Uint8Array}} Chunk
 */

/** @param {number} avg a power of two in [256, 4 MiB] @returns {CdcConfig} */
export function cdcConfig(avg) {
  const bits = Math.round(Math.log2(avg));
  if (2 ** bits !== avg || avg < 256 || avg > MAX_AVG_CHUNK) throw new RangeError(`bad average chunk size ${avg}`);
  const s = bits + NORMALIZATION, l = bits - NORMALIZATION;
  const sHi = MASKS[2 * s], sLo = MASKS[2 * s + 1], lHi = MASKS[2 * l], lLo = MASKS[2 * l + 1];
  return {
    avg, min: avg / 4, max: avg * 4, sHi, sLo, lHi, lLo,
    sLsHi: ((sHi << 1) | (sLo >>> 31)) >>> 0, sLsLo: (sLo << 1) >>> 0,
    lLsHi: ((lHi << 1) | (lLo >>> 31)) >>> 0, lLsLo: (lLo << 1) >>> 0,
  };
}

/**
 * Length of the next chunk of buf[start, end): pyfastcdc's _cut_gear, with the 64-bit gear hash
 * kept as two 32-bit halves in int32 arithmetic (what V8 runs fastest). Two passes as in FastCDC:
 * the stricter mask below the average size, the looser one after it (normalized chunking).
 * @param {CdcConfig} c @param {Uint8Array} buf @param {number} start @param {number} end
 */
export function cut(c, buf, start, end) {
  let remaining = end - start;
  if (remaining <= c.min) return remaining;
  let center = c.avg;
  if (remaining > c.max) remaining = c.max;
  else if (remaining < center) center = remaining;
  const gHi = G_HI, gLo = G_LO, glHi = GL_HI, glLo = GL_LO;
  let hi = 0, lo = 0;
  let mLsHi = c.sLsHi | 0, mLsLo = c.sLsLo | 0, mHi = c.sHi | 0, mLo = c.sLo | 0;
  let pos = c.min & ~1;
  let stop = center & ~1;
  for (let pass = 0; pass < 2; pass++) {
    for (; pos < stop; pos += 2) {
      // hash = (hash << 2) + GEAR_LS[byte]   (mod 2^64)
      // The carry out of the low halves is the top bit of (x>>>1) + (y>>>1) + (x & y & 1).
      let b = buf[start + pos];
      let x = lo << 2;
      let y = glLo[b];
      hi = (((hi << 2) | (lo >>> 30)) + glHi[b] + (((x >>> 1) + (y >>> 1) + (x & y & 1)) >>> 31)) | 0;
      lo = (x + y) | 0;
      if ((lo & mLsLo) === 0 && (hi & mLsHi) === 0) return pos;
      // hash = hash + GEAR[next byte]
      b = buf[start + pos + 1];
      y = gLo[b];
      hi = (hi + gHi[b] + (((lo >>> 1) + (y >>> 1) + (lo & y & 1)) >>> 31)) | 0;
      lo = (lo + y) | 0;
      if ((lo & mLo) === 0 && (hi & mHi) === 0) return pos + 1;
    }
    mLsHi = c.lLsHi | 0; mLsLo = c.lLsLo | 0; mHi = c.lHi | 0; mLo = c.lLo | 0;
    stop = remaining & ~1;
  }
  return remaining;
}

/**
 * A streaming chunker: feed bytes with push(), then finish(). It holds at most about two maximum-size
 * chunks, so a 10 GB file is cut in constant memory. A yielded chunk's `data` is a view into the
 * chunker's buffer, valid until the next push() or finish() step: hash it before asking for more.
 */
export class Chunker {
  /** @param {number} fileSize the total size (it picks the average chunk size) @param {number} [avg] */
  constructor(fileSize, avg = avgChunkSize(fileSize)) {
    this.config = cdcConfig(avg);
    this.buf = new Uint8Array(this.config.max * 2);
    this.read = 0;   // start of unconsumed bytes in buf
    this.write = 0;  // end of bytes in buf
    this.offset = 0; // file offset of buf[read]
  }

  /** @param {Uint8Array} data @returns {Generator<Chunk>} */
  *push(data) {
    let at = 0;
    while (at < data.length) {
      if (this.write === this.buf.length) this.#compact();
      const n = Math.min(data.length - at, this.buf.length - this.write);
      this.buf.set(data.subarray(at, at + n), this.write);
      this.write += n;
      at += n;
      // Cut only with a maximum chunk's worth in hand, as pyfastcdc's stream chunker does.
      while (this.write - this.read >= this.config.max) yield this.#next();
    }
  }

  /** @returns {Generator<Chunk>} the chunks of whatever is left */
  *finish() {
    while (this.write > this.read) yield this.#next();
  }

  #compact() {
    this.buf.copyWithin(0, this.read, this.write);
    this.write -= this.read;
    this.read = 0;
  }

  /** @returns {Chunk} */
  #next() {
    const n = cut(this.config, this.buf, this.read, this.write);
    const chunk = { offset: this.offset, size: n, data: this.buf.subarray(this.read, this.read + n) };
    this.read += n;
    this.offset += n;
    return chunk;
  }
}
