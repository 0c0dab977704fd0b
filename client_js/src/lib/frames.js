// The WebSocket frame codec, sans I/O: the JavaScript twin of server/ws/protocol.py.
// Every frame is one binary message holding a msgpack array [type, id, body] (protocol.md, "WebSocket").
// Shared vectors in tests/vectors/frames.json keep both sides byte-identical.

import { Decoder, Encoder } from "@msgpack/msgpack";

export const VERSION = 1;
export const SUBPROTOCOL = "satchel.v1";
export const MAX_FRAME = 1024 * 1024;
/** The most a client accepts from the server: document frames carry a whole document's state
 * (up to `welcome.limits.doc_frame`; protocol.md, "Co-editing", "Frame sizes"). */
export const CLIENT_MAX_FRAME = 256 * 1024 * 1024;

/** Message type codes; retired codes are never reused. */
export const MsgType = Object.freeze({
  hello: 1, welcome: 2, ping: 3, pong: 4, error: 5,
  subscribe: 10, subscribed: 11, unsubscribe: 12, unsubscribed: 13, change: 14, resync: 15, revoked: 16,
  commit: 20, committed: 21, commit_batch: 22, committed_batch: 23, fetch: 24, fetched: 25,
  presence_set: 30, presence: 31, presence_event: 32,
  doc_join: 40, doc_joined: 41, doc_update: 42, doc_awareness: 43, doc_leave: 44, doc_left: 45, doc_saved: 46,
  doc_closed: 47,
});

/** @type {Map<number, string>} */
const TYPE_NAMES = new Map(Object.entries(MsgType).map(([name, code]) => [code, name]));

export const CloseCode = Object.freeze({
  normal: 1000, going_away: 1001, too_big: 1009, bad_frame: 4000, unauthorized: 4001,
  unsupported_version: 4002, hello_timeout: 4003, idle_timeout: 4004, server_error: 4500,
});

/** Close codes after which a client reconnects with backoff (protocol.md, "Heartbeat and closing"). */
/** @type {ReadonlySet<number>} */
export const RECONNECT = new Set([CloseCode.going_away, CloseCode.too_big, CloseCode.idle_timeout,
  CloseCode.server_error]);

/**
 * @typedef {{type: number, id: number, body: Record<string, any>}} Frame
 */

/** The peer sent something the protocol does not allow. */
export class ProtocolError extends Error {
  /** @param {string} message @param {number} [requestId] */
  constructor(message, requestId = 0) {
    super(message);
    this.name = "ProtocolError";
    this.requestId = requestId;
  }
}

/** Not decodable as a frame at all: the connection is closed with 4000. */
export class FrameError extends ProtocolError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "FrameError";
  }
}

// Python's msgpack packs ints minimally, str as str8/16/32 and bytes as bin: so does this encoder.
const encoder = new Encoder({ ignoreUndefined: true });
/** @param {number} limit */
const makeDecoder = (limit) => new Decoder({
  maxStrLength: limit, maxBinLength: limit, maxArrayLength: 100_000, maxMapLength: 1_000,
  maxExtLength: 0, useBigInt64: false,
});
/** @type {Map<number, Decoder>} one decoder per frame limit in use */
const decoders = new Map([[MAX_FRAME, makeDecoder(MAX_FRAME)]]);

/** @param {number} code @returns {string | undefined} the message type's name */
export function typeName(code) {
  return TYPE_NAMES.get(code);
}

/**
 * Encode one frame.
 * @param {number} type @param {number} id @param {Record<string, any>} [body]
 * @returns {Uint8Array}
 */
export function encodeFrame(type, id, body = {}) {
  return encoder.encode([type, id, body]);
}

/** @param {unknown} v @returns {v is number} */
const isInt = (v) => typeof v === "number" && Number.isInteger(v);

/**
 * Parse one frame. Throws FrameError for anything that is not [int type, int id >= 0, map body],
 * ProtocolError (with the request id) for a well-formed frame of an unknown type.
 * @param {Uint8Array | ArrayBuffer} data
 * @param {number} [limit] the largest frame accepted: MAX_FRAME (what a client may send), or
 *   more for frames from the server (CLIENT_MAX_FRAME, `welcome.limits.doc_frame`)
 * @returns {Frame}
 */
export function decodeFrame(data, limit = MAX_FRAME) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.byteLength > limit) throw new FrameError("frame too large");
  let decoder = decoders.get(limit);
  if (!decoder) decoders.set(limit, decoder = makeDecoder(limit));
  /** @type {unknown} */
  let obj;
  try {
    obj = decoder.decode(bytes);
  } catch (err) {
    throw new FrameError(`not a msgpack frame: ${/** @type {Error} */ (err).message}`);
  }
  if (!Array.isArray(obj) || obj.length !== 3) throw new FrameError("a frame is a 3-element array [type, id, body]");
  const [type, id, body] = obj;
  if (!isInt(type) || !isInt(id) || id < 0 || id >= 2 ** 31 || body === null || typeof body !== "object"
      || Array.isArray(body) || body instanceof Uint8Array) {
    throw new FrameError("a frame is [int type, int id >= 0, map body]");
  }
  if (!TYPE_NAMES.has(type)) throw new ProtocolError(`unknown message type ${type}`, id);
  return { type, id, body: /** @type {Record<string, any>} */ (body) };
}

/**
 * A cursor's namespace and seq, or null when it is not a cursor.
 * @param {string} cursor @returns {{ns: number, seq: number} | null}
 */
export function parseCursor(cursor) {
  const m = /^v1\.(\d{1,18})\.(\d{1,18})$/.exec(cursor);
  return m ? { ns: Number(m[1]), seq: Number(m[2]) } : null;
}
