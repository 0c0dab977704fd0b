"""Generate the shared test vectors that the Python and JavaScript test suites both load.

    python -m tests.vectors.make_vectors          rewrite frames.json and chunks.json
    tests/test_vectors.py                         fails when the files drift from this code

frames.json: WebSocket frames encoded by ``server.ws.protocol.encode`` (hex msgpack) beside their
decoded meaning (bytes as ``{"$bin": hex}``), plus byte strings that must be refused and why.
chunks.json: chunk boundaries and BLAKE3 hashes from ``server.core.chunking`` over deterministic
inputs (SHAKE-256 output, reproducible in any language), and the average-size tiers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgpack
from pyfastcdc import FastCDC

from server.core import chunking
from server.ws import protocol
from server.ws.protocol import Frame, MsgType

HERE = Path(__file__).parent
HASH = bytes(range(32))  # a recognizable 32-byte chunk hash
AWARE = b'{"user":{"name":"alice","color":"#1f6feb"}}'  # one awareness state (client 1, clock 1)


def pseudo_random(seed: int, size: int) -> bytes:
    """SHAKE-256 of the seed (8 bytes, little-endian), *size* bytes long: one call in any language."""
    return hashlib.shake_256(seed.to_bytes(8, "little")).digest(size)


def to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bin": value.hex()}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


FRAMES: list[tuple[str, Frame]] = [
    ("hello", Frame(MsgType.hello, 1, {"versions": [1], "token": "sat_" + "A" * 43, "client": "satchel-web/0.1"})),
    ("welcome", Frame(MsgType.welcome, 1, {
        "version": 1, "session": "q3Yk7", "user": {"id": 7, "name": "alice"}, "device_id": 12,
        "heartbeat_ms": 15000, "idle_timeout_ms": 45000,
        "limits": {"max_frame": protocol.MAX_FRAME, "inline": protocol.INLINE_LIMIT,
                   "subscriptions": protocol.MAX_SUBSCRIPTIONS, "in_flight": protocol.MAX_IN_FLIGHT},
        "namespaces": [{"ns": 7, "path": "/", "role": "owner"}]})),
    ("ping", Frame(MsgType.ping, 0, {})),
    ("pong", Frame(MsgType.pong, 2**31 - 1, {})),
    ("error", Frame(MsgType.error, 4, {"code": "bad_cursor", "message": "not a valid cursor"})),
    ("subscribe", Frame(MsgType.subscribe, 2, {"ns": 7, "cursor": "v1.7.41"})),
    ("subscribe-now", Frame(MsgType.subscribe, 3, {"ns": 7})),
    ("subscribed", Frame(MsgType.subscribed, 2, {"ns": 7, "seq": 42, "cursor": "v1.7.42"})),
    ("unsubscribe", Frame(MsgType.unsubscribe, 5, {"ns": 7})),
    ("unsubscribed", Frame(MsgType.unsubscribed, 5, {"ns": 7})),
    ("change", Frame(MsgType.change, 0, {
        "ns": 7, "seq": 42, "cursor": "v1.7.42", "op": "modify", "kind": "file", "id": 90,
        "path": "/notes/día.md", "at": "2026-11-24T15:31:58.387Z", "user_id": 7, "device_id": 12,
        "rev": 311, "parent_rev": 305, "size": 5_000_000_005, "content_hash": "ab" * 32,
        "mtime": "2026-11-24T15:30:00.000Z", "mime": "text/markdown",
        "delta": {"base_rev": 305, "ops": [[0, 1], [HASH, 5, b"hello"]]}})),
    ("change-move", Frame(MsgType.change, 0, {
        "ns": 7, "seq": 43, "cursor": "v1.7.43", "op": "move", "kind": "dir", "id": 91,
        "path": "/b", "old_path": "/a", "at": "2026-11-24T15:32:00.000Z", "user_id": 7, "device_id": 13})),
    ("resync", Frame(MsgType.resync, 0, {"ns": 7, "cursor": "v1.7.40", "reason": "slow_consumer"})),
    ("commit", Frame(MsgType.commit, 6, {"path": "/notes.md", "parent_rev": 305, "size": 70005,
                                         "ops": [[0, 1], b"hello", [HASH, 70000]], "mtime": 1764000000000,
                                         "mime": "text/markdown"})),
    ("commit-new", Frame(MsgType.commit, 7, {"path": "/new.txt", "parent_rev": None, "size": 3,
                                             "ops": [b"abc"]})),
    ("committed", Frame(MsgType.committed, 6, {"entry": {"id": 90, "path": "/notes.md", "name": "notes.md",
                                                         "kind": "file", "rev": 312, "size": 70005}})),
    ("presence_set", Frame(MsgType.presence_set, 8, {"ns": 7, "path": "/Work", "state": "viewing"})),
    ("presence_set-leave", Frame(MsgType.presence_set, 9, {"ns": 7, "path": "/Work", "state": None})),
    ("presence", Frame(MsgType.presence, 8, {"ns": 7, "path": "/Work", "members": [
        {"key": "n1:s1", "user_id": 7, "user": "alice", "device_id": 12, "device": "laptop",
         "kind": "browser", "state": "viewing", "since_ms": 1764000000000}]})),
    ("presence_event", Frame(MsgType.presence_event, 0, {"ns": 7, "path": "/Work", "event": "leave", "member": {
        "key": "n1:s2", "user_id": 8, "user": "bob", "device_id": 14, "device": "phone",
        "kind": "mobile", "state": None, "since_ms": 1764000000500}})),
    # Co-editing: Yjs v1 bytes (an update inserting "hé👍" into Y.Text "text" by client 1, its state
    # vector) and a y-protocols awareness update, all msgpack bin.
    ("doc_join", Frame(MsgType.doc_join, 10, {"path": "/Apollo/notes.md", "sv": b"\x00"})),
    ("doc_join-ns", Frame(MsgType.doc_join, 11, {"path": "/notes.md", "ns": 31, "sv": b"\x01\x01\x05"})),
    ("doc_joined", Frame(MsgType.doc_joined, 10, {
        "doc": 1, "ns": 31, "path": "/notes.md", "file_id": 90, "role": "editor",
        "update": bytes.fromhex("01010100040104746578740768c3a9f09f918d00"), "sv": b"\x01\x01\x04", "rev": 311})),
    ("doc_update", Frame(MsgType.doc_update, 12, {"doc": 1, "update": bytes.fromhex("0101010404010474657874016100")})),
    ("doc_update-push", Frame(MsgType.doc_update, 0, {
        "doc": 1, "update": bytes.fromhex("0101020004010474657874016200")})),
    ("doc_awareness", Frame(MsgType.doc_awareness, 13, {"doc": 1, "update": bytes([1, 1, 1, len(AWARE)]) + AWARE})),
    ("doc_leave", Frame(MsgType.doc_leave, 14, {"doc": 1})),
    ("doc_left", Frame(MsgType.doc_left, 14, {"doc": 1})),
    ("doc_saved", Frame(MsgType.doc_saved, 0, {"doc": 1, "rev": 312})),
    ("doc_closed", Frame(MsgType.doc_closed, 0, {"doc": 1, "reason": "moved"})),
]


def bad_frames() -> list[dict[str, Any]]:
    """Byte strings a decoder must refuse; ``error`` names the class of refusal."""
    pack = msgpack.packb
    cases: list[tuple[str, bytes]] = [
        ("not msgpack", b"\xc1"),
        ("truncated", pack([1, 1, {"versions": [1]}])[:-2]),
        ("trailing bytes", pack([3, 0, {}]) + b"\x00"),
        ("not an array", pack({"type": 1})),
        ("two elements", pack([3, 0])),
        ("string type", pack(["ping", 0, {}])),
        ("negative id", pack([3, -1, {}])),
        ("id too large", pack([3, 2**31, {}])),
        ("body not a map", pack([3, 0, []])),
        ("boolean type", pack([True, 0, {}])),
        ("unknown type", pack([99, 5, {}])),
    ]
    out = []
    for name, data in cases:
        try:
            protocol.decode(data)
        except protocol.FrameError:
            kind, rid = "frame_error", 0
        except protocol.ProtocolError as exc:
            kind, rid = "unknown_type", exc.request_id
        else:
            raise AssertionError(f"bad frame {name!r} decoded")
        out.append({"name": name, "hex": data.hex(), "error": kind, "request_id": rid})
    return out


def frames_document() -> dict[str, Any]:
    frames = []
    for name, frame in FRAMES:
        data = protocol.encode(frame)
        assert protocol.decode(data) == frame
        frames.append({"name": name, "type": int(frame.type), "type_name": frame.type.name, "id": frame.id,
                       "body": to_json(frame.body), "hex": data.hex()})
    return {
        "comment": "Generated by tests/vectors/make_vectors.py from server/ws/protocol.py; do not edit.",
        "version": protocol.VERSION,
        "subprotocol": protocol.SUBPROTOCOL,
        "max_frame": protocol.MAX_FRAME,
        "client_max_frame": protocol.CLIENT_MAX_FRAME,
        "types": {t.name: int(t) for t in MsgType},
        "close_codes": {c.name: int(c) for c in protocol.CloseCode},
        "reconnect": sorted(int(c) for c in protocol.RECONNECT),
        "frames": frames,
        "bad_frames": bad_frames(),
    }


# (name, seed, size, avg): avg None = the tier server.core.chunking picks for this size.
CHUNK_CASES: list[tuple[str, int, int, int | None]] = [
    ("empty", 1, 0, None),
    ("one byte", 2, 1, None),
    ("under min", 3, 16_000, None),
    ("exactly min", 4, 16_384, None),
    ("small", 5, 300_000, None),
    ("medium", 6, 2_000_000, None),
    ("odd size", 7, 1_234_567, None),
    ("avg 256 KiB", 8, 3_000_000, 256 * 1024),
    ("avg 1 MiB", 9, 9_000_001, 1024 * 1024),
    ("avg 4 MiB", 10, 20_000_000, 4 * 1024 * 1024),
]


def chunk_case(name: str, seed: int, size: int, avg: int | None) -> dict[str, Any]:
    data = b"\0" * size if seed == 0 else pseudo_random(seed, size)
    if avg is None:
        refs = chunking.chunk_bytes(data)
        avg = chunking.avg_chunk_size(size)
    else:
        refs = [chunking.ChunkRef(c.offset, c.length, chunking.hash_bytes(c.data))
                for c in FastCDC(avg).cut_buf(data)]
    return {"name": name, "seed": seed, "size": size, "avg": avg,
            "chunks": [[r.offset, r.size, r.hex] for r in refs],
            "content_hash": chunking.content_hash(r.digest for r in refs)}


def chunks_document() -> dict[str, Any]:
    cases = [chunk_case(*c) for c in CHUNK_CASES]
    cases.append(chunk_case("zeros (max-size cuts)", 0, 1_100_000, None))
    sizes = [0, 1, 2**28 - 1, 2**28, 2**28 + 1, 2**29, 2**30 + 7, 2**34, 2**34 + 1, 2**36]
    return {
        "comment": "Generated by tests/vectors/make_vectors.py from server/core/chunking.py; do not edit. "
                   "Input bytes: SHAKE-256(seed as u64le), size bytes long; seed 0 = zeros.",
        "tiers": [[s, chunking.avg_chunk_size(s)] for s in sizes],
        "cases": cases,
    }


DOCUMENTS = {"frames.json": frames_document, "chunks.json": chunks_document}


def render(name: str) -> str:
    return json.dumps(DOCUMENTS[name](), indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    for name in DOCUMENTS:
        (HERE / name).write_text(render(name), encoding="utf-8")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
