// Satchel's JavaScript client library: REST, uploads, downloads and the live WebSocket channel.
export { Api, ApiError } from "./api.js";
export { backoffDelay, sleep } from "./backoff.js";
export { avgChunkSize, Chunker, MAX_CHUNK_SIZE } from "./chunker.js";
export { downloadBlob } from "./download.js";
export { CLIENT_MAX_FRAME, CloseCode, decodeFrame, encodeFrame, FrameError, MsgType, ProtocolError, SUBPROTOCOL, VERSION } from "./frames.js";
export { createHasher } from "./hash.js";
export { DocSession } from "./coedit.js";
export { LiveClient, LiveError } from "./live.js";
export { scanBlob } from "./scan.js";
export { uploadBlob } from "./upload.js";
