"""The WebSocket protocol, sans I/O: message types, the msgpack codec, close codes, limits.

No asyncio, Starlette or Redis here: the server's endpoint (``server/ws/endpoint.py``) and the
Python client (``python_client/live.py``) both wrap this module, and it is fuzzed without sockets.
protocol.md ("WebSocket") is the prose version of this file.

Every frame is one binary WebSocket message holding a msgpack array ``[type, id, body]``:
``type`` a ``MsgType``, ``id`` the request id (0 = unsolicited), ``body`` a map with string keys.
Unknown body keys are ignored; unknown types are answered with an ``error`` frame.

Exceptions::

    ProtocolError            the peer sent something this protocol does not allow
     └── FrameError          not decodable as a frame at all (the connection closes, 4000)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import msgpack

from server.core.errors import ErrorCode

VERSION = 1
SUBPROTOCOL = "satchel.v1"  # the major version travels in Sec-WebSocket-Protocol too
MAX_FRAME = 1024 * 1024  # bytes; larger frames close the connection with 1009
INLINE_LIMIT = 256 * 1024  # new chunk bytes one commit frame may carry inline
MAX_SUBSCRIPTIONS = 256
MAX_IN_FLIGHT = 32
# The heartbeat is a server setting (SATCHEL_WS_HEARTBEAT, default 15 s) announced in ``welcome``;
# a connection silent for three heartbeats is closed (4004).
HELLO_TIMEOUT_MS = 10_000


class MsgType(IntEnum):
    """Message type codes. Retired codes are never reused (see protocol.md, "Changelog")."""

    hello = 1  # C->S  {versions, token, client?}
    welcome = 2  # S->C {version, user, device_id, session, heartbeat_ms, limits, namespaces}
    ping = 3  # both   {}
    pong = 4  # both   {}  (same id as the ping)
    error = 5  # S->C  {code, message, ...}  (id = the failed request, 0 if none)
    subscribe = 10  # C->S {ns, cursor?}
    subscribed = 11  # S->C {ns, seq, cursor}: replay done, live from here
    unsubscribe = 12  # C->S {ns}
    unsubscribed = 13  # S->C {ns}
    change = 14  # S->C {ns, seq, cursor, op, ...entry}
    resync = 15  # S->C {ns, cursor, reason}: fetch /changes from cursor, then resubscribe
    revoked = 16  # S->C {ns, cursor, reason}: access to the namespace ended; the subscription is gone
    commit = 20  # C->S {path, parent_rev, size, ops, mtime?, mime?}
    committed = 21  # S->C {entry}
    commit_batch = 22  # C->S {items: [commit body, ...]}
    committed_batch = 23  # S->C {results: [{entry} | {error}, ...]}
    fetch = 24  # C->S {items: [{path, rev?}, ...]}
    fetched = 25  # S->C {results: [{path, id, rev, size, content_hash, mtime, data} | {error}, ...]}
    presence_set = 30  # C->S {ns, path, state}  (state None = leave)
    presence = 31  # S->C {ns, path, members}  (snapshot, the reply to presence_set)
    presence_event = 32  # S->C {ns, path, event: join|leave|update, member}
    doc_join = 40  # C->S {path, ns?, sv?}
    doc_joined = 41  # S->C {doc, ns, path, file_id, role, update, sv, rev}
    doc_update = 42  # both {doc, update}  (Yjs v1 update; no reply)
    doc_awareness = 43  # both {doc, update}  (y-protocols awareness update; no reply)
    doc_leave = 44  # C->S {doc}
    doc_left = 45  # S->C {doc}
    doc_saved = 46  # S->C {doc, rev}
    doc_closed = 47  # S->C {doc, reason}


REQUESTS = {MsgType.hello, MsgType.ping, MsgType.subscribe, MsgType.unsubscribe, MsgType.commit,
            MsgType.commit_batch, MsgType.fetch, MsgType.presence_set, MsgType.pong, MsgType.doc_join,
            MsgType.doc_update, MsgType.doc_awareness, MsgType.doc_leave}
#: Requests handled in the reader itself, in arrival order, without a reply on success.
INLINE = {MsgType.doc_update, MsgType.doc_awareness}
MAX_DOCS = 32  # documents one connection may have open
CLIENT_MAX_FRAME = 256 * 1024 * 1024  # what clients accept from the server: a whole document's state fits


def doc_frame_limit(max_doc_bytes: int) -> int:
    """The largest frame the server sends for a document (``welcome.limits.doc_frame``): a Yjs
    state carries per-insert metadata on top of the text, so this is generous; a document whose
    state would not fit is refused with ``too_large`` at join."""
    return 4 * max_doc_bytes + MAX_FRAME


class CloseCode(IntEnum):
    normal = 1000
    going_away = 1001  # server shutting down: reconnect elsewhere / later
    too_big = 1009  # a frame over MAX_FRAME
    bad_frame = 4000  # not msgpack, not [type, id, body], or a frame before hello
    unauthorized = 4001  # hello without a valid token, or the device was logged out
    unsupported_version = 4002  # no common protocol version
    hello_timeout = 4003
    idle_timeout = 4004  # nothing received for three heartbeats
    server_error = 4500  # a bug; reconnect with backoff


#: Close codes after which a client should reconnect (with backoff) rather than give up.
RECONNECT = {CloseCode.going_away, CloseCode.idle_timeout, CloseCode.server_error, CloseCode.too_big}


class ProtocolError(Exception):
    """The peer broke the protocol. ``code`` is the error frame's code; ``close`` is set when the
    connection must close rather than answer with an error frame."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.bad_request,
                 close: CloseCode | None = None, request_id: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.close = close
        self.request_id = request_id


class FrameError(ProtocolError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.bad_request, CloseCode.bad_frame)


@dataclass(frozen=True, slots=True)
class Frame:
    type: MsgType
    id: int = 0
    body: dict[str, Any] = field(default_factory=dict)


def encode(frame: Frame) -> bytes:
    data: bytes = msgpack.packb([int(frame.type), frame.id, frame.body], use_bin_type=True)
    return data


def unpack_limits(limit: int) -> dict[str, int]:
    """msgpack.unpackb's limits for a message of at most *limit* bytes (also the REST msgpack bodies)."""
    return {"max_str_len": limit, "max_bin_len": limit, "max_array_len": 100_000, "max_map_len": 1_000,
            "max_ext_len": 0}


def decode(data: bytes | bytearray | memoryview, limit: int = MAX_FRAME) -> Frame:
    """Parse one frame. Raises ``FrameError`` for anything that is not ``[type, id, body]``,
    ``ProtocolError`` (no close) for an unknown type, which the session answers with an error.
    *limit*: MAX_FRAME for what clients send; clients pass CLIENT_MAX_FRAME (document states)."""
    if len(data) > limit:
        raise ProtocolError("frame too large", ErrorCode.too_large, CloseCode.too_big)
    try:
        obj = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, use_list=True, **unpack_limits(limit))
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError,
            UnicodeDecodeError, RecursionError) as exc:
        raise FrameError(f"not a msgpack frame: {type(exc).__name__}") from exc
    if not (isinstance(obj, list) and len(obj) == 3):
        raise FrameError("a frame is a 3-element array [type, id, body]")
    mtype, rid, body = obj
    if not (isinstance(mtype, int) and not isinstance(mtype, bool) and isinstance(rid, int)
            and not isinstance(rid, bool) and 0 <= rid < 2**31 and isinstance(body, dict)):
        raise FrameError("a frame is [int type, int id >= 0, map body]")
    try:
        kind = MsgType(mtype)
    except ValueError as exc:
        raise ProtocolError(f"unknown message type {mtype}", ErrorCode.bad_request, request_id=rid) from exc
    return Frame(kind, rid, body)


def error_frame(request_id: int, code: ErrorCode, message: str, **details: Any) -> Frame:
    return Frame(MsgType.error, request_id, {"code": code.value, "message": message, **details})


# ------------------------------------------------------------------ body field access

def field_int(frame: Frame, key: str, *, required: bool = True, minimum: int = 0,
              maximum: int = 2**63 - 1) -> int | None:
    val = frame.body.get(key)
    if val is None and not required:
        return None
    if not isinstance(val, int) or isinstance(val, bool) or not minimum <= val <= maximum:
        raise ProtocolError(f"'{key}' must be an integer in [{minimum}, {maximum}]", request_id=frame.id)
    return val


def field_str(frame: Frame, key: str, *, required: bool = True, max_len: int = 4096) -> str | None:
    val = frame.body.get(key)
    if val is None and not required:
        return None
    if not isinstance(val, str) or len(val) > max_len:
        raise ProtocolError(f"'{key}' must be a string of at most {max_len} characters", request_id=frame.id)
    return val


# ------------------------------------------------------------------ cursors

def make_cursor(ns: int, seq: int) -> str:
    """An opaque-to-clients journal position. Clients store it and hand it back unchanged."""
    return f"v1.{ns}.{seq}"


def parse_cursor(cursor: object) -> tuple[int, int]:
    """(namespace, seq) of a cursor, or ``ProtocolError(bad_cursor)``."""
    if isinstance(cursor, str):
        parts = cursor.split(".")
        if len(parts) == 3 and parts[0] == "v1" and all(p.isascii() and p.isdigit() and len(p) < 19
                                                          for p in parts[1:]):
            return int(parts[1]), int(parts[2])
    raise ProtocolError("not a valid cursor; list the folder in full and start from GET /api/v1/changes/latest",
                        ErrorCode.bad_cursor)
