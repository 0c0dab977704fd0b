// The JS chunker and hasher against the Python chunker: same boundaries, same BLAKE3 hashes.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { avgChunkSize, Chunker } from "../src/lib/chunker.js";
import { createHasher } from "../src/lib/hash.js";
import { scanBlob } from "../src/lib/scan.js";

const vectors = JSON.parse(readFileSync(new URL("../../tests/vectors/chunks.json", import.meta.url), "utf8"));

/** The vectors' input: SHAKE-256(seed as u64le), size bytes long; seed 0 = zeros. */
function input(seed, size) {
  if (seed === 0 || size === 0) return new Uint8Array(size);
  const key = Buffer.alloc(8);
  key.writeBigUInt64LE(BigInt(seed));
  return new Uint8Array(createHash("shake256", { outputLength: size }).update(key).digest());
}

test("size tiers match server/core/chunking.py", () => {
  assert.ok(vectors.tiers.length > 5);
  for (const [size, avg] of vectors.tiers) assert.equal(avgChunkSize(size), avg, `size ${size}`);
});

for (const c of vectors.cases) {
  test(`chunks match the Python chunker: ${c.name} (${c.size} bytes, avg ${c.avg})`, async () => {
    const data = input(c.seed, c.size);
    const hasher = await createHasher();
    // Feed in uneven pieces, so the streaming buffer's refills and compaction are exercised too.
    const chunker = new Chunker(c.size, c.avg);
    const got = [];
    for (let at = 0, step = 1; at < data.length; at += step, step = (step * 7 + 13) % 3_000_001) {
      for (const k of chunker.push(data.subarray(at, at + step))) got.push([k.offset, k.size, hasher.hash(k.data)]);
    }
    for (const k of chunker.finish()) got.push([k.offset, k.size, hasher.hash(k.data)]);
    assert.deepEqual(got, c.chunks);
    assert.equal(hasher.content(got.map((g) => g[2])), c.content_hash);
  });
}

test("scanBlob streams a Blob to the same chunk list", async () => {
  const c = vectors.cases.find((x) => x.name === "medium");
  const progress = [];
  const res = await scanBlob(new Blob([input(c.seed, c.size)]), { onProgress: (n) => progress.push(n) });
  assert.deepEqual(res.chunks.map((k) => [k.offset, k.size, k.hash]), c.chunks);
  assert.equal(res.contentHash, c.content_hash);
  assert.equal(progress.at(-1), c.size);
});

test("scanBlob of an empty blob is the empty file's content hash", async () => {
  const res = await scanBlob(new Blob([]));
  assert.deepEqual(res.chunks, []);
  assert.equal(res.contentHash, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
});

test("scanBlob stops when aborted", async () => {
  const ctl = new AbortController();
  ctl.abort();
  await assert.rejects(scanBlob(new Blob([input(3, 1000)]), { signal: ctl.signal }), { name: "AbortError" });
});
