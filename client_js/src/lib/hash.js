// BLAKE3-256 through hash-wasm (WebAssembly): chunk hashes and content hashes (protocol.md, "Chunks").

import { createBLAKE3 } from "hash-wasm";

/** @typedef {{hash(data: Uint8Array): string, content(hexes: string[]): string}} Hasher */

/** @param {string} hex */
export function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * A reusable BLAKE3 hasher (one WASM instance; synchronous once created).
 * @returns {Promise<Hasher>}
 */
export async function createHasher() {
  const h = await createBLAKE3(256);
  return {
    hash(data) {
      h.init();
      h.update(data);
      return /** @type {string} */ (h.digest("hex"));
    },
    // A revision's content hash: BLAKE3 of the concatenated 32-byte chunk hashes.
    content(hexes) {
      h.init();
      for (const x of hexes) h.update(hexToBytes(x));
      return /** @type {string} */ (h.digest("hex"));
    },
  };
}
