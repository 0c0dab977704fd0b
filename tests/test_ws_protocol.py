"""The WebSocket protocol without sockets: codec, cursors, session state table, and a fuzz of both.

``server.ws.protocol`` and ``server.ws.session`` are sans-I/O, so everything here is plain function
calls. The fuzz feeds random bytes and random (msgpack-valid) frames through ``decode`` and
``SessionState.receive`` and accepts only the documented outcomes: a ``Frame``, or a
``ProtocolError`` (``FrameError``) carrying a valid ``ErrorCode`` and a ``CloseCode`` or None.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.core.errors import ErrorCode
from server.ws.protocol import (
    MAX_FRAME,
    MAX_IN_FLIGHT,
    MAX_SUBSCRIPTIONS,
    REQUESTS,
    CloseCode,
    Frame,
    FrameError,
    MsgType,
    ProtocolError,
    decode,
    encode,
    error_frame,
    field_int,
    field_str,
    make_cursor,
    parse_cursor,
)
from server.ws.session import SessionState, State

H = bytes(range(32))  # a chunk-hash-shaped value

# One representative body per message type, shaped as the protocol.py comments describe.
BODIES: dict[MsgType, dict[str, Any]] = {
    MsgType.hello: {"versions": [1], "token": "tok", "client": "pytest"},
    MsgType.welcome: {"version": 1, "user": {"id": 1, "name": "u"}, "device_id": 2, "session": "s",
                      "heartbeat_ms": 15000, "limits": {"max_frame": MAX_FRAME},
                      "namespaces": [{"ns": 1, "path": "/", "role": "owner"}]},
    MsgType.ping: {},
    MsgType.pong: {},
    MsgType.error: {"code": "bad_request", "message": "nope", "field": "ops"},
    MsgType.subscribe: {"ns": 7, "cursor": "v1.7.3"},
    MsgType.subscribed: {"ns": 7, "seq": 3, "cursor": "v1.7.3"},
    MsgType.unsubscribe: {"ns": 7},
    MsgType.unsubscribed: {"ns": 7},
    MsgType.change: {"ns": 7, "seq": 4, "cursor": "v1.7.4", "op": "modify", "kind": "file", "path": "/a",
                     "delta": {"base_rev": 3, "ops": [[0, 2], [H, 5, b"hello"]]}},
    MsgType.resync: {"ns": 7, "cursor": "v1.7.4", "reason": "slow_consumer"},
    MsgType.revoked: {"ns": 7, "cursor": "v1.7.4", "reason": "access_removed"},
    MsgType.commit: {"path": "/a", "parent_rev": 3, "size": 10, "ops": [[0, 1], b"hello"], "mtime": 1},
    MsgType.committed: {"entry": {"id": 1, "path": "/a", "rev": 4}},
    MsgType.presence_set: {"ns": 7, "path": "/a", "state": "viewing"},
    MsgType.presence: {"ns": 7, "path": "/a", "members": [{"key": "n:s", "state": "viewing"}]},
    MsgType.presence_event: {"ns": 7, "path": "/a", "event": "join", "member": {"key": "n:s"}},
    MsgType.doc_join: {"path": "/notes.md", "ns": 7, "sv": b"\x00"},
    MsgType.doc_joined: {"doc": 1, "ns": 7, "path": "/notes.md", "file_id": 9, "role": "editor",
                         "update": b"\x00\x00", "sv": b"\x00", "rev": 3},
    MsgType.doc_update: {"doc": 1, "update": b"\x00\x00"},
    MsgType.doc_awareness: {"doc": 1, "update": b"\x00"},
    MsgType.doc_leave: {"doc": 1},
    MsgType.doc_left: {"doc": 1},
    MsgType.doc_saved: {"doc": 1, "rev": 4},
    MsgType.doc_closed: {"doc": 1, "reason": "deleted"},
}
CLIENT_ONLY = {t for t in MsgType if t in REQUESTS}
SERVER_ONLY = set(MsgType) - REQUESTS


def test_every_type_has_a_body_here() -> None:
    assert set(BODIES) == set(MsgType)


# ---------------------------------------------------------------- codec


@pytest.mark.parametrize("mtype", list(MsgType), ids=lambda t: t.name)
def test_round_trip(mtype: MsgType) -> None:
    frame = Frame(mtype, 42, BODIES[mtype])
    data = encode(frame)
    assert isinstance(data, bytes)
    back = decode(data)
    assert back == frame
    assert back.type is mtype and isinstance(back.type, MsgType)
    # The wire shape is exactly [type, id, body] (spec examples are generated from this).
    assert msgpack.unpackb(data, raw=False) == [int(mtype), 42, BODIES[mtype]]


def test_round_trip_accepts_memoryview_and_bytearray() -> None:
    data = encode(Frame(MsgType.ping, 3))
    assert decode(bytearray(data)) == decode(memoryview(data)) == Frame(MsgType.ping, 3, {})


def test_bytes_and_str_stay_apart() -> None:
    frame = decode(encode(Frame(MsgType.commit, 1, {"path": "/x", "ops": [b"\x00\xff", "text"]})))
    assert frame.body["ops"] == [b"\x00\xff", "text"]
    assert type(frame.body["ops"][0]) is bytes and type(frame.body["ops"][1]) is str


def pack(obj: object) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


GARBAGE = [
    b"",  # nothing
    b"\xc1",  # the one byte msgpack never uses
    b"\xc1garbage",
    b"\x93\x01",  # truncated array
    pack([1, 1, {"a": 1}])[:-1],  # truncated map value
    pack([1, 1, {}]) + b"\x00",  # trailing data
    b"\xdd\xff\xff\xff\xff",  # array32 claiming 4G elements
    b"\xdf\xff\xff\xff\xff",  # map32 claiming 4G pairs
    b"\x91" * 5000 + b"\x00",  # nested far too deep
    pack([1, 1, {1: 2}]),  # non-string map key
    pack([1, 1, {"a": {3: 4}}]),  # non-string key deeper down
    b"\x93\x01\x01\x81\xa1a\xc7\x01\x05x",  # ext type
    b"\x93\x01\x01\x81\xa1a\xd6\xff\x00\x00\x00\x00",  # msgpack timestamp ext
    b"\x93\x01\x01\x81\xa2\xff\xfe\x00",  # invalid UTF-8 in a str
]
WRONG_SHAPE = [
    pack(None), pack(1), pack("hello"), pack(b"bin"), pack({"type": 1}),
    pack([]), pack([1]), pack([1, 1]), pack([1, 1, {}, 0]),
    pack([1, 1, []]), pack([1, 1, None]), pack([1, 1, "body"]),
    pack(["1", 1, {}]), pack([1.0, 1, {}]), pack([True, 1, {}]), pack([None, 1, {}]),
    pack([1, "1", {}]), pack([1, -1, {}]), pack([1, 2**31, {}]), pack([1, 2**64 - 1, {}]), pack([1, False, {}]),
    pack([1, 1.5, {}]), pack([1, None, {}]),
]


BAD_IDS = [f"garbage{i}" for i in range(len(GARBAGE))] + [f"shape{i}" for i in range(len(WRONG_SHAPE))]


@pytest.mark.parametrize("data", GARBAGE + WRONG_SHAPE, ids=BAD_IDS)
def test_bad_frames_raise_frame_error(data: bytes) -> None:
    with pytest.raises(FrameError) as info:
        decode(data)
    assert info.value.close is CloseCode.bad_frame
    assert info.value.code is ErrorCode.bad_request


def test_oversized_frame_closes_1009() -> None:
    data = pack([int(MsgType.commit), 1, {"ops": [b"x" * MAX_FRAME]}])
    assert len(data) > MAX_FRAME
    with pytest.raises(ProtocolError) as info:
        decode(data)
    assert not isinstance(info.value, FrameError)
    assert info.value.close is CloseCode.too_big and info.value.code is ErrorCode.too_large


def test_frame_of_exactly_max_size_decodes() -> None:
    head = pack([int(MsgType.commit), 1, {"ops": [b""]}])
    pad = MAX_FRAME - len(head) - 3  # the bin8 header (2 bytes) becomes bin32 (5 bytes)
    data = pack([int(MsgType.commit), 1, {"ops": [b"x" * pad]}])
    assert len(data) == MAX_FRAME
    assert decode(data).type is MsgType.commit


@pytest.mark.parametrize("mtype", [0, 6, 9, 17, 19, 22, 29, 33, 99, -1, 2**40])
def test_unknown_type_is_an_error_not_a_close(mtype: int) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(pack([mtype, 17, {}]))
    assert not isinstance(info.value, FrameError)
    assert info.value.close is None
    assert info.value.code is ErrorCode.bad_request
    assert info.value.request_id == 17  # the error frame answers the right request


def test_unknown_body_keys_are_kept_for_the_handler_to_ignore() -> None:
    frame = decode(pack([int(MsgType.ping), 1, {"future_field": [1, 2, 3]}]))
    assert frame.type is MsgType.ping


def test_error_frame_shape() -> None:
    frame = error_frame(9, ErrorCode.bad_cursor, "bad", ns=3)
    assert frame == Frame(MsgType.error, 9, {"code": "bad_cursor", "message": "bad", "ns": 3})
    assert decode(encode(frame)).body["code"] == "bad_cursor"


def test_field_accessors() -> None:
    f = Frame(MsgType.subscribe, 5, {"ns": 3, "neg": -1, "flag": True, "s": "abc", "long": "x" * 10})
    assert field_int(f, "ns") == 3
    assert field_int(f, "missing", required=False) is None
    assert field_str(f, "s") == "abc"
    assert field_str(f, "missing", required=False) is None
    for key in ("neg", "flag", "s", "missing"):
        with pytest.raises(ProtocolError) as info:
            field_int(f, key)
        assert info.value.request_id == 5 and info.value.close is None
    with pytest.raises(ProtocolError):
        field_int(f, "ns", maximum=2)
    with pytest.raises(ProtocolError):
        field_str(f, "ns")
    with pytest.raises(ProtocolError):
        field_str(f, "long", max_len=5)


# ---------------------------------------------------------------- cursors


@pytest.mark.parametrize(("ns", "seq"), [(1, 0), (7, 42), (2**31 - 1, 10**18 - 1)])
def test_cursor_round_trip(ns: int, seq: int) -> None:
    cursor = make_cursor(ns, seq)
    assert isinstance(cursor, str) and cursor.isascii()
    assert parse_cursor(cursor) == (ns, seq)


BAD_CURSORS: list[object] = [
    None, 5, 5.0, b"v1.1.2", ["v1", 1, 2], {"ns": 1}, "", "v1", "v1.1", "v1.1.2.3", "v2.1.2", "V1.1.2",
    "v1..2", "v1.1.", "v1.-1.2", "v1.1.-2", "v1.+1.2", "v1. 1.2", "v1.1.2 ", " v1.1.2", "v1.1.2\n",
    "v1.0x1.2", "v1.1e3.2", "v1.\u0661.2",  # Arabic-Indic digit one: isdigit() but not ASCII
    "v1.\uff11.2",  # fullwidth digit one
    "v1.1.99999999999999999999",  # 20 digits: past any seq
    "v1.1.2\x00",
]


@pytest.mark.parametrize("cursor", BAD_CURSORS, ids=repr)
def test_bad_cursors(cursor: object) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_cursor(cursor)
    assert info.value.code is ErrorCode.bad_cursor
    assert info.value.close is None


# ---------------------------------------------------------------- session state


def hello(rid: int = 1) -> Frame:
    return Frame(MsgType.hello, rid, {"versions": [1], "token": "t"})


def open_session() -> SessionState:
    s = SessionState()
    s.receive(hello())
    s.welcomed()
    assert s.state is State.OPEN
    return s


@pytest.mark.parametrize("mtype", [t for t in MsgType if t is not MsgType.hello], ids=lambda t: t.name)
def test_any_frame_before_hello_closes_4000(mtype: MsgType) -> None:
    s = SessionState()
    with pytest.raises(ProtocolError) as info:
        s.receive(Frame(mtype, 3, BODIES[mtype]))
    assert info.value.close is CloseCode.bad_frame
    assert s.state is State.AWAIT_HELLO


def test_hello_is_accepted_first() -> None:
    s = SessionState()
    frame = hello()
    assert s.receive(frame) is frame
    s.welcomed()
    assert s.state is State.OPEN


def test_hello_twice_is_an_error_not_a_close() -> None:
    s = open_session()
    with pytest.raises(ProtocolError) as info:
        s.receive(hello(2))
    assert info.value.close is None and info.value.code is ErrorCode.bad_request and info.value.request_id == 2
    assert s.state is State.OPEN


@pytest.mark.parametrize("mtype", sorted(SERVER_ONLY), ids=lambda t: t.name)
def test_server_only_types_from_the_client_are_errors(mtype: MsgType) -> None:
    s = open_session()
    with pytest.raises(ProtocolError) as info:
        s.receive(Frame(mtype, 4, BODIES[mtype]))
    assert info.value.close is None and info.value.code is ErrorCode.bad_request and info.value.request_id == 4
    assert s.state is State.OPEN


@pytest.mark.parametrize("mtype", sorted(CLIENT_ONLY - {MsgType.hello}), ids=lambda t: t.name)
def test_client_requests_pass_when_open(mtype: MsgType) -> None:
    s = open_session()
    frame = Frame(mtype, 4, BODIES[mtype])
    assert s.receive(frame) is frame


def test_in_flight_limit() -> None:
    s = open_session()
    for i in range(MAX_IN_FLIGHT):
        s.receive(Frame(MsgType.commit, i + 1, {}))
        s.started()
    with pytest.raises(ProtocolError) as info:
        s.receive(Frame(MsgType.commit, 99, {}))
    assert info.value.code is ErrorCode.too_many_requests and info.value.close is None
    assert info.value.request_id == 99
    with pytest.raises(ProtocolError):
        s.receive(Frame(MsgType.subscribe, 100, {"ns": 1}))
    # ping/pong are answered even at the limit: they are how liveness is measured
    s.receive(Frame(MsgType.ping, 101))
    s.receive(Frame(MsgType.pong, 0))
    s.finished()
    s.receive(Frame(MsgType.commit, 102, {}))


def test_document_updates_are_never_in_flight() -> None:
    """doc_update / doc_awareness are handled in order by the reader: a full in-flight budget
    (32 slow joins) never refuses a keystroke."""
    s = open_session()
    s.in_flight = MAX_IN_FLIGHT
    for mtype in (MsgType.doc_update, MsgType.doc_awareness):
        frame = Frame(mtype, 5, BODIES[mtype])
        assert s.receive(frame) is frame
    with pytest.raises(ProtocolError):
        s.receive(Frame(MsgType.doc_join, 6, BODIES[MsgType.doc_join]))


def test_subscription_limit() -> None:
    s = open_session()
    s.subscriptions.update(range(MAX_SUBSCRIPTIONS))
    with pytest.raises(ProtocolError) as info:
        s.receive(Frame(MsgType.subscribe, 7, {"ns": MAX_SUBSCRIPTIONS}))
    assert info.value.code is ErrorCode.too_many_requests and info.value.request_id == 7
    # re-subscribing to a namespace already subscribed (a restart from a cursor) is always allowed
    s.receive(Frame(MsgType.subscribe, 8, {"ns": 0, "cursor": "v1.0.0"}))
    # so is unsubscribing
    s.receive(Frame(MsgType.unsubscribe, 9, {"ns": 0}))


@pytest.mark.parametrize("ns", [[1], {"a": 1}, None, "1", 1.5, b"x"], ids=repr)
def test_subscribe_with_a_malformed_ns_passes_the_state_check(ns: object) -> None:
    """Field validation is the handler's (it answers bad_request); the state check must not crash."""
    s = open_session()
    s.subscriptions.update(range(MAX_SUBSCRIPTIONS))
    try:
        s.receive(Frame(MsgType.subscribe, 1, {"ns": ns}))
    except ProtocolError as exc:
        assert exc.code in (ErrorCode.too_many_requests, ErrorCode.bad_request)


def test_closed_session_refuses_everything() -> None:
    s = open_session()
    s.closed()
    assert s.state is State.CLOSED
    with pytest.raises(ProtocolError) as info:
        s.receive(Frame(MsgType.ping, 1))
    assert info.value.close is CloseCode.normal
    s.closed()  # closing twice is harmless (cleanup paths may race)
    s2 = SessionState()
    s2.closed()  # closing before the hello (timeout, bad frame)
    assert s2.state is State.CLOSED


def test_illegal_transitions_are_local_errors() -> None:
    """Misuse by our own code is a RuntimeError, never a ProtocolError blamed on the peer."""
    s = open_session()
    with pytest.raises(RuntimeError):
        s.welcomed()
    s.closed()
    with pytest.raises(RuntimeError):
        s.welcomed()


# ---------------------------------------------------------------- fuzz

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=10,
)
type_codes = st.sampled_from([int(t) for t in MsgType]) | st.integers(-(2**63), 2**64 - 1)
request_ids = st.sampled_from([0, 1, 2**31 - 1, 2**31, -1]) | st.integers(-(2**63), 2**64 - 1)
body_keys = st.sampled_from(["ns", "cursor", "path", "ops", "size", "parent_rev", "state", "versions", "token",
                             "doc", "update", "sv"])
bodies = st.dictionaries(body_keys | st.text(max_size=6), msgpack_values, max_size=5)
# Mostly almost-right frames (a known type, a valid id, the keys handlers read), some anything.
likely_frames = st.tuples(st.sampled_from([int(t) for t in REQUESTS]), st.integers(0, 2**31 - 1),
                          st.dictionaries(body_keys, msgpack_values, min_size=1, max_size=4))
frames = (likely_frames | st.tuples(type_codes, request_ids, bodies | msgpack_values)).map(lambda t: pack(list(t)))
mutated = frames.flatmap(lambda b: st.tuples(st.just(b), st.integers(0, max(0, len(b) - 1)), st.binary(max_size=3))
                         ).map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):])
fuzz_inputs = st.binary(max_size=64) | frames | mutated

FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_error(exc: ProtocolError) -> None:
    assert isinstance(exc.code, ErrorCode)
    assert exc.close is None or isinstance(exc.close, CloseCode)
    assert isinstance(exc.message, str) and exc.message
    assert isinstance(exc.request_id, int)
    if isinstance(exc, FrameError):
        assert exc.close is CloseCode.bad_frame


@FUZZ
@given(data=fuzz_inputs, subscribed=st.integers(0, MAX_SUBSCRIPTIONS), in_flight=st.integers(0, MAX_IN_FLIGHT))
def test_fuzz_decode_and_receive(data: bytes, subscribed: int, in_flight: int) -> None:
    try:
        frame = decode(data)
    except ProtocolError as exc:
        check_error(exc)
        return
    assert isinstance(frame, Frame) and isinstance(frame.type, MsgType) and isinstance(frame.body, dict)
    assert 0 <= frame.id < 2**31
    assert encode(decode(encode(frame))) == encode(frame)  # bytes: NaN != NaN
    fresh, opened = SessionState(), open_session()
    opened.subscriptions.update(range(subscribed))
    opened.in_flight = in_flight
    for session in (fresh, opened):
        try:
            assert session.receive(frame) is frame
        except ProtocolError as exc:
            check_error(exc)
