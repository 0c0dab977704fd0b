"""The real-time channel end to end: real ``satchel serve`` processes, the SDK's ``LiveSession`` and
``watch_changes``, and raw WebSocket connections for what a broken client would send.

Most tests run on both stacks (``server``); the ones that need a short heartbeat start their own
server. Latencies are printed (``-s`` shows them), never asserted tightly: this machine is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import websockets

from python_client.live import CursorStore, LiveSession, SessionClosed, watch_changes
from server.core.chunking import hash_bytes
from server.core.errors import ErrorCode, SatchelError
from server.ws.protocol import HELLO_TIMEOUT_MS, INLINE_LIMIT, MAX_FRAME, CloseCode, MsgType, make_cursor, parse_cursor
from tests.conftest import User, api, several_chunks
from tests.harness import ws
from tests.harness.server import ServerProcess

MakeUser = Callable[..., Any]


async def pair(make_user: MakeUser, srv: ServerProcess | None = None) -> tuple[User, User, int]:
    """Two devices (A, B) of one new user, and the user's root namespace."""
    a: User = await make_user("A", srv=srv)
    b: User = await make_user("B", name=a.name, srv=srv)
    ns = int((await a.client.account())["root_namespace"])
    return a, b, ns


async def changes_until(live: LiveSession, path: str, timeout: float = 10) -> list[dict[str, Any]]:
    """Change pushes up to and including the first one for *path*."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not out or out[-1]["path"] != path:
            out.append(await ws.next_change(live))
    return out


def rebuild(old: bytes, old_chunks: list[dict[str, Any]], ops: list[list[Any]]) -> bytes:
    """Apply a ``delta`` to the parent's bytes, checking every inline chunk against its name."""
    out = bytearray()
    for op in ops:
        if isinstance(op[0], int):
            start, count = op
            for c in old_chunks[start:start + count]:
                out += old[c["offset"]:c["offset"] + c["size"]]
        else:
            digest, size, data = op
            assert len(data) == size and hash_bytes(data) == digest
            out += data
    return bytes(out)


# ---------------------------------------------------------------- pushes


async def test_upload_is_pushed_with_delta(server: ServerProcess, make_user: MakeUser, tmp_path: Path) -> None:
    a, b, ns = await pair(make_user)
    a_dev = (await a.client.account())["device_id"]
    async with LiveSession.connect(server.url, b.client.token or "") as live:
        assert [n["ns"] for n in live.welcome["namespaces"]] == [ns]
        sub = await live.subscribe(ns)
        assert sub["cursor"] == make_cursor(ns, sub["seq"])

        # a new 1 MiB file: every chunk is new; too big to travel inline
        first = os.urandom(1 << 20)
        (tmp_path / "f").write_bytes(first)
        t0 = time.perf_counter()
        meta = await a.client.upload(tmp_path / "f", "/docs/f.bin")
        t_committed = time.perf_counter()
        got = await changes_until(live, "/docs/f.bin")
        t_pushed = time.perf_counter()
        print(f"\n[{server.data_dir.name}] upload 1 MiB: {1000 * (t_committed - t0):.1f} ms; push arrived "
              f"{1000 * (t_pushed - t_committed):.1f} ms after the commit returned")
        assert [(c["op"], c["kind"], c["path"]) for c in got] == [("mkdir", "dir", "/docs"),
                                                                  ("create", "file", "/docs/f.bin")]
        assert [c["seq"] for c in got] == [sub["seq"] + 1, sub["seq"] + 2]
        entry = got[-1]
        assert entry["cursor"] == make_cursor(ns, entry["seq"]) and entry["ns"] == ns
        assert entry["rev"] == meta["rev"] and entry["size"] == len(first) and entry["parent_rev"] is None
        assert entry["content_hash"] == meta["content_hash"] and entry["device_id"] == a_dev
        old_chunks = (await a.client.chunk_list(meta["id"]))["chunks"]
        assert entry["delta"]["base_rev"] is None
        assert entry["delta"]["ops"] == [[bytes.fromhex(c["hash"]), c["size"]] for c in old_chunks]
        assert sum(op[1] for op in entry["delta"]["ops"]) == len(first)

        # appending a little: the old chunks are kept as ranges, the new tail travels inline
        second = first + os.urandom(20_000)
        (tmp_path / "f").write_bytes(second)
        meta2 = await a.client.upload(tmp_path / "f", "/docs/f.bin")
        t_committed = time.perf_counter()
        (entry2,) = await changes_until(live, "/docs/f.bin")
        print(f"[{server.data_dir.name}] modify push: {1000 * (time.perf_counter() - t_committed):.1f} ms")
        assert entry2["op"] == "modify" and entry2["seq"] == entry["seq"] + 1
        assert entry2["rev"] == meta2["rev"] and entry2["parent_rev"] == meta["rev"]
        ops = entry2["delta"]["ops"]
        assert entry2["delta"]["base_rev"] == meta["rev"]
        assert isinstance(ops[0][0], int) and ops[0][0] == 0 and ops[0][1] >= len(old_chunks) - 2
        assert any(len(op) == 3 for op in ops), "small new chunks travel inline"
        assert rebuild(first, old_chunks, ops) == second

        # a small new file: one inline chunk
        (tmp_path / "s").write_bytes(b"tiny file")
        await a.client.upload(tmp_path / "s", "/docs/s.txt")
        (entry3,) = await changes_until(live, "/docs/s.txt")
        assert entry3["delta"]["ops"] == [[hash_bytes(b"tiny file"), 9, b"tiny file"]]

        # tree operations are pushed too
        await a.client.move("/docs/s.txt", "/docs/t.txt")
        await a.client.delete("/docs/t.txt")
        moved, deleted = await ws.next_change(live), await ws.next_change(live)
        assert (moved["op"], moved["path"], moved["old_path"]) == ("move", "/docs/t.txt", "/docs/s.txt")
        assert (deleted["op"], deleted["path"]) == ("delete", "/docs/t.txt")
        assert deleted["seq"] == moved["seq"] + 1 == entry3["seq"] + 2
        await ws.no_push(live)


async def test_unsubscribe_stops_pushes(server: ServerProcess, make_user: MakeUser) -> None:
    a, b, ns = await pair(make_user)
    async with LiveSession.connect(server.url, b.client.token or "") as live:
        await live.subscribe(ns)
        await a.client.mkdir("/one")
        assert (await ws.next_change(live))["path"] == "/one"
        await live.unsubscribe(ns)
        await a.client.mkdir("/two")
        await ws.no_push(live, 0.5)
        await live.unsubscribe(ns)  # again: harmless
        await live.ping()


# ---------------------------------------------------------------- commit over the socket


async def test_ws_commit(server: ServerProcess, make_user: MakeUser, tmp_path: Path) -> None:
    a, b, ns = await pair(make_user)
    base = several_chunks(300_000)
    (tmp_path / "base").write_bytes(base)
    meta = await a.client.upload(tmp_path / "base", "/w/file.bin")
    chunks = (await a.client.chunk_list(meta["id"]))["chunks"]
    n = len(chunks)
    assert n >= 2
    async with LiveSession.connect(server.url, a.client.token or "") as la, \
            LiveSession.connect(server.url, b.client.token or "") as lb:
        sub = await lb.subscribe(ns)

        # keep every chunk but the last, then new bytes inline
        kept = sum(c["size"] for c in chunks[:-1])
        tail = b"appended over the socket"
        t0 = time.perf_counter()
        entry = await la.commit("/w/file.bin", meta["rev"], kept + len(tail), [[0, n - 1], tail],
                                mime="application/x-test")
        t1 = time.perf_counter()
        push = await ws.next_change(lb)
        print(f"\n[{server.data_dir.name}] ws commit: {1000 * (t1 - t0):.1f} ms; push "
              f"{1000 * (time.perf_counter() - t1):.1f} ms after")
        assert entry["rev"] != meta["rev"] and entry["size"] == kept + len(tail) and entry["path"] == "/w/file.bin"
        assert entry["mime"] == "application/x-test"
        assert push["seq"] == sub["seq"] + 1 and push["rev"] == entry["rev"] and push["parent_rev"] == meta["rev"]
        assert push["delta"]["ops"] == [[0, n - 1], [hash_bytes(tail), len(tail), tail]]
        await a.client.download("/w/file.bin", tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == base[:kept] + tail

        # a new file from inline chunks only, and an empty one
        e2 = await la.commit("/w/new.txt", None, 6, [b"abc", b"def"])
        e3 = await la.commit("/w/empty", None, 0, [])
        await a.client.download("/w/new.txt", tmp_path / "new")
        await a.client.download("/w/empty", tmp_path / "empty")
        assert (tmp_path / "new").read_bytes() == b"abcdef" and (tmp_path / "empty").read_bytes() == b""
        p2, p3 = await ws.next_change(lb), await ws.next_change(lb)
        assert (p2["op"], p2["rev"], p3["rev"]) == ("create", e2["rev"], e3["rev"])
        assert p2["delta"]["ops"] == [[hash_bytes(b"abc"), 3, b"abc"], [hash_bytes(b"def"), 3, b"def"]]

        # naming a chunk the owner already stores, by hash
        first = chunks[0]
        e4 = await la.commit("/w/named", None, first["size"], [[bytes.fromhex(first["hash"]), first["size"]]])
        await a.client.download("/w/named", tmp_path / "named")
        assert (tmp_path / "named").read_bytes() == base[:first["size"]]
        assert (await ws.next_change(lb))["rev"] == e4["rev"]


async def test_ws_commit_refusals(server: ServerProcess, make_user: MakeUser, tmp_path: Path) -> None:
    a, b, ns = await pair(make_user)
    other: User = await make_user("C")  # another user
    data = several_chunks(200_000)
    (tmp_path / "d").write_bytes(data)
    meta = await a.client.upload(tmp_path / "d", "/r/file.bin")
    await a.client.upload(tmp_path / "d", "/r/sibling.bin")
    sibling = await a.client.stat("/r/sibling.bin")
    (tmp_path / "o").write_bytes(os.urandom(100_000))
    foreign = await other.client.upload(tmp_path / "o", "/theirs.bin")
    foreign_chunks = (await other.client.chunk_list(foreign["id"]))["chunks"]
    chunks = (await a.client.chunk_list(meta["id"]))["chunks"]
    n, size = len(chunks), len(data)
    c0 = chunks[0]
    big = os.urandom(INLINE_LIMIT + 1)
    H = bytes.fromhex(c0["hash"])
    cases: list[tuple[str, dict[str, Any], ErrorCode]] = [
        ("range past the parent", {"parent_rev": meta["rev"], "size": size, "ops": [[0, n + 1]]},
         ErrorCode.bad_request),
        ("range before the parent", {"parent_rev": meta["rev"], "size": size, "ops": [[-1, 2]]},
         ErrorCode.bad_request),
        ("empty range", {"parent_rev": meta["rev"], "size": 0, "ops": [[0, 0]]}, ErrorCode.bad_request),
        ("range without a parent", {"parent_rev": None, "size": size, "ops": [[0, n]]}, ErrorCode.bad_request),
        ("parent of another user", {"parent_rev": foreign["rev"], "size": size, "ops": [[0, n]]},
         ErrorCode.conflict),
        ("parent of another file", {"parent_rev": sibling["rev"], "size": size, "ops": [[0, n]]},
         ErrorCode.conflict),
        ("parent that does not exist", {"parent_rev": 2**31 - 1, "size": size, "ops": [[0, n]]},
         ErrorCode.conflict),
        ("no parent for an existing file", {"parent_rev": None, "size": 3, "ops": [b"abc"]}, ErrorCode.conflict),
        ("inline over the limit", {"parent_rev": meta["rev"], "size": len(big), "ops": [big]}, ErrorCode.too_large),
        ("size mismatch", {"parent_rev": meta["rev"], "size": size + 1, "ops": [[0, n]]}, ErrorCode.size_mismatch),
        ("named chunk never stored", {"parent_rev": meta["rev"], "size": 5, "ops": [[b"\x07" * 32, 5]]},
         ErrorCode.missing_chunks),
        ("another user's chunk by name", {"parent_rev": meta["rev"], "size": foreign_chunks[0]["size"],
                                          "ops": [[bytes.fromhex(foreign_chunks[0]["hash"]),
                                                   foreign_chunks[0]["size"]]]}, ErrorCode.missing_chunks),
        ("named chunk with the wrong size", {"parent_rev": meta["rev"], "size": c0["size"] + 1000,
                                             "ops": [[H, c0["size"] + 1000]]}, ErrorCode.size_mismatch),
        ("ops not a list", {"parent_rev": meta["rev"], "size": 0, "ops": "nope"}, ErrorCode.bad_request),
        ("op of a wrong shape", {"parent_rev": meta["rev"], "size": 1, "ops": [[1, 2, 3]]}, ErrorCode.bad_request),
        ("op of a bool", {"parent_rev": meta["rev"], "size": 1, "ops": [[True, True]]}, ErrorCode.bad_request),
        ("negative size", {"parent_rev": meta["rev"], "size": -1, "ops": []}, ErrorCode.bad_request),
        ("empty inline chunk", {"parent_rev": meta["rev"], "size": 0, "ops": [b""]}, ErrorCode.bad_request),
    ]
    path_cases: list[tuple[str, dict[str, Any], ErrorCode]] = [
        ("the root", {"path": "/", "parent_rev": None, "size": 1, "ops": [b"x"]}, ErrorCode.is_a_directory),
        ("a folder", {"path": "/r", "parent_rev": None, "size": 1, "ops": [b"x"]}, ErrorCode.is_a_directory),
        ("a bad path", {"path": "/a/../b", "parent_rev": None, "size": 1, "ops": [b"x"]}, ErrorCode.invalid_path),
        ("no path", {"parent_rev": None, "size": 1, "ops": [b"x"]}, ErrorCode.invalid_path),
        ("under a file", {"path": "/r/file.bin/x", "parent_rev": None, "size": 1, "ops": [b"x"]},
         ErrorCode.not_a_directory),
    ]
    head_before = await ws.head(a.client)
    async with LiveSession.connect(server.url, a.client.token or "") as la, \
            LiveSession.connect(server.url, b.client.token or "") as lb:
        await lb.subscribe(ns)
        for what, body, code in [(w, {"path": "/r/file.bin", **b_}, c) for w, b_, c in cases] + path_cases:
            with pytest.raises(SatchelError) as info:
                await la.request(MsgType.commit, body)
            assert info.value.code is code, f"{what}: {info.value!r}"
        # a stale parent once the file moved on
        tail = b"!"
        kept = size - chunks[-1]["size"]
        entry = await la.commit("/r/file.bin", meta["rev"], kept + 1, [[0, n - 1], tail])
        with pytest.raises(SatchelError) as info:
            await la.commit("/r/file.bin", meta["rev"], kept + 1, [[0, n - 1], tail])
        assert info.value.code is ErrorCode.conflict
        assert info.value.details.get("head_rev") == entry["rev"]
        # nothing but the one good commit was written, and the watcher saw only that
        assert await ws.head(a.client) == head_before + 1
        push = await ws.next_change(lb)
        assert push["rev"] == entry["rev"] and push["seq"] == head_before + 1
        await ws.no_push(lb)
        assert (await a.client.stat("/r/file.bin"))["rev"] == entry["rev"]
        await a.client.download("/r/file.bin", tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == data[:kept] + tail
        assert await la.request(MsgType.ping, {})  # the connection survived every refusal
        assert [e["name"] for e in await a.client.list("/r")] == ["file.bin", "sibling.bin"]


# ---------------------------------------------------------------- replay and cursors


async def test_reconnect_replay(server: ServerProcess, make_user: MakeUser, tmp_path: Path) -> None:
    a, b, ns = await pair(make_user)
    async with LiveSession.connect(server.url, b.client.token or "") as live:
        sub = await live.subscribe(ns)
    cursor = sub["cursor"]
    n = 24
    for i in range(n // 3):
        await a.client.mkdir(f"/off{i}")
        (tmp_path / "f").write_bytes(os.urandom(1000 + i))
        await a.client.upload(tmp_path / "f", f"/off{i}/f")
        await a.client.move(f"/off{i}/f", f"/off{i}/g")
    async with LiveSession.connect(server.url, b.client.token or "") as live:
        sub2 = await live.subscribe(ns, cursor)
        got = []
        while not live.pushes.empty():
            got.append(await ws.next_change(live))
        assert [c["seq"] for c in got] == list(range(sub["seq"] + 1, sub["seq"] + n + 1))
        assert [c["op"] for c in got] == ["mkdir", "create", "move"] * (n // 3)
        assert sub2["seq"] == sub["seq"] + n and sub2["cursor"] == got[-1]["cursor"]
        # then live, once
        await a.client.mkdir("/after")
        live_entry = await ws.next_change(live)
        assert live_entry["seq"] == sub2["seq"] + 1
        await ws.no_push(live)
        # subscribing again from an older cursor restarts the feed from there
        sub3 = await live.subscribe(ns, got[-2]["cursor"])
        again = [await ws.next_change(live), await ws.next_change(live)]
        assert [c["seq"] for c in again] == [got[-1]["seq"], live_entry["seq"]] and sub3["seq"] == live_entry["seq"]
        await ws.no_push(live)
        # from the very beginning
        await live.subscribe(ns, make_cursor(ns, 0))
        everything = []
        while not live.pushes.empty():
            everything.append(await ws.next_change(live))
        assert [c["seq"] for c in everything] == list(range(1, live_entry["seq"] + 1))


async def test_watch_changes_resumes_from_its_cursor_store(server: ServerProcess, make_user: MakeUser,
                                                           tmp_path: Path) -> None:
    a, b, ns = await pair(make_user)
    store_path = tmp_path / "cursors.json"
    got: list[dict[str, Any]] = []

    async def watch(store: CursorStore, want: int) -> None:
        async with contextlib.aclosing(watch_changes(b.client, store)) as changes:
            async for change in changes:
                got.append(change)
                if len(got) >= want:
                    return

    # first run: from now (the cursor of "now" is stored before subscribing: nothing after it is
    # missed even if the subscription is not live yet); sees two changes, stops
    first = asyncio.create_task(watch(CursorStore(store_path), 2))
    while not store_path.exists():
        await asyncio.sleep(0.02)
    await a.client.mkdir("/w1")
    await a.client.mkdir("/w2")
    await asyncio.wait_for(first, 10)
    assert [c["path"] for c in got] == ["/w1", "/w2"]
    assert CursorStore(store_path).get(ns) == got[-1]["cursor"]

    # offline: more changes; a restarted watcher (new store object, same file) gets exactly those
    for i in range(5):
        await a.client.mkdir(f"/x{i}")
    got.clear()
    await asyncio.wait_for(watch(CursorStore(store_path), 5), 10)
    assert [c["path"] for c in got] == [f"/x{i}" for i in range(5)]
    seqs = [c["seq"] for c in got]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert CursorStore(store_path).get(ns) == got[-1]["cursor"] == make_cursor(ns, await ws.head(a.client))


async def test_watch_changes_ends_on_a_refused_subscription(server: ServerProcess, make_user: MakeUser) -> None:
    """A stored cursor the server refuses (here: ahead of the journal, as after restoring an old
    database) ends the watch with bad_cursor at once, instead of waiting for pushes forever."""
    a, _b, ns = await pair(make_user)
    other: User = await make_user("C")
    store = CursorStore()
    store.set(ns, make_cursor(ns, 10**6))
    with pytest.raises(SatchelError) as info:
        await asyncio.wait_for(_drain(watch_changes(a.client, store)), 10)
    assert info.value.code is ErrorCode.bad_cursor
    other_ns = int((await other.client.account())["root_namespace"])
    with pytest.raises(SatchelError) as info:
        await asyncio.wait_for(_drain(watch_changes(a.client, namespaces=[other_ns], from_now=False)), 10)
    assert info.value.code is ErrorCode.not_found


async def test_watch_changes_gives_up_when_reconnecting_cannot_help(server: ServerProcess, make_user: MakeUser,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A close the protocol does not mark as retryable (RECONNECT) ends the watch instead of
    reconnecting forever: here a client speaking only a version the server does not know."""
    import python_client.live

    a: User = await make_user("A")
    monkeypatch.setattr(python_client.live, "VERSION", 99)
    with pytest.raises(SatchelError) as info:
        await asyncio.wait_for(_drain(watch_changes(a.client)), 10)
    assert info.value.code is ErrorCode.bad_request and info.value.details.get("versions") == [1]


async def test_rest_changes(server: ServerProcess, make_user: MakeUser) -> None:
    a, b, ns = await pair(make_user)
    other: User = await make_user("C")
    other_ns = int((await other.client.account())["root_namespace"])
    token = a.client.token
    latest = api(server, "GET", "/api/v1/changes/latest", token).json()
    assert latest == {"ns": ns, "seq": latest["seq"], "cursor": make_cursor(ns, latest["seq"])}
    start = latest["cursor"]
    paths = [f"/rest{i}" for i in range(7)]
    for p in paths:
        await a.client.mkdir(p)
    seen: list[dict[str, Any]] = []
    cursor, pages = start, 0
    while True:
        r = api(server, "GET", "/api/v1/changes", token, params={"cursor": cursor, "limit": 3})
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        seen.extend(page["entries"])
        cursor = page["cursor"]
        assert page["has_more"] == (len(seen) < len(paths))
        if not page["has_more"]:
            break
    assert pages == 3 and [e["path"] for e in seen] == paths
    assert [e["seq"] for e in seen] == list(range(latest["seq"] + 1, latest["seq"] + 8))
    assert cursor == seen[-1]["cursor"] == api(server, "GET", "/api/v1/changes/latest", token).json()["cursor"]
    # at the head: nothing, same cursor
    r = api(server, "GET", "/api/v1/changes", token, params={"cursor": cursor})
    assert r.json() == {"entries": [], "cursor": cursor, "has_more": False}
    # another device of the same user reads the same journal
    assert api(server, "GET", "/api/v1/changes", b.client.token, params={"cursor": start}).json()["entries"] == seen
    # ns of latest
    assert api(server, "GET", "/api/v1/changes/latest", token, params={"ns": ns}).json()["cursor"] == cursor

    bad = [None, "", "nope", "v1.x.1", "v2.1.1", make_cursor(ns, latest["seq"] + 1000),  # ahead of the journal
           make_cursor(other_ns, 0),  # another user's namespace
           make_cursor(2**31 - 1, 0)]  # no such namespace
    for c in bad:
        r = api(server, "GET", "/api/v1/changes", token, params={} if c is None else {"cursor": c})
        assert (r.status_code, r.json()["error"]) == (400, "bad_cursor"), (c, r.text)
    r = api(server, "GET", "/api/v1/changes/latest", token, params={"ns": other_ns})
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    r = api(server, "GET", "/api/v1/changes", None, params={"cursor": start})
    assert r.status_code == 401
    # another user's cursor says nothing about their journal, whoever asks
    r2 = api(server, "GET", "/api/v1/changes", other.client.token, params={"cursor": start})
    assert (r2.status_code, r2.json()["error"]) == (400, "bad_cursor")


# ---------------------------------------------------------------- bad input over the socket


async def _bad_case(conn: websockets.asyncio.client.ClientConnection, case: str, token: str, ns: int,
                    other_ns: int) -> None:
    """Send one kind of bad input on *conn* and check the answer."""
    if case == "not msgpack first":
        await conn.send(b"\xc1garbage")
        assert (await ws.close_code(conn))[0] == CloseCode.bad_frame
        return
    if case == "text first":
        await conn.send("hello")
        assert (await ws.close_code(conn))[0] == CloseCode.bad_frame
        return
    if case == "frame before hello":
        await ws.send(conn, MsgType.ping, 1)
        assert (await ws.close_code(conn))[0] == CloseCode.bad_frame
        return
    if case == "subscribe before hello":
        await ws.send(conn, MsgType.subscribe, 1, {"ns": ns})
        assert (await ws.close_code(conn))[0] == CloseCode.bad_frame
        return
    if case == "bad token":
        await ws.send(conn, MsgType.hello, 1, {"versions": [1], "token": "not-a-token"})
        code, frames = await ws.close_code(conn)
        assert code == CloseCode.unauthorized
        assert [(f.type, f.id, f.body["code"]) for f in frames] == [(MsgType.error, 1, "unauthorized")]
        return
    if case == "no token":
        await ws.send(conn, MsgType.hello, 1, {"versions": [1]})
        assert (await ws.close_code(conn))[0] == CloseCode.unauthorized
        return
    if case == "unsupported version":
        await ws.send(conn, MsgType.hello, 1, {"versions": [2, 99], "token": token})
        code, frames = await ws.close_code(conn)
        assert code == CloseCode.unsupported_version
        assert frames[0].type is MsgType.error and frames[0].body["versions"] == [1]
        return
    if case == "versions not a list":
        await ws.send(conn, MsgType.hello, 1, {"versions": 1, "token": token})
        assert (await ws.close_code(conn))[0] == CloseCode.unsupported_version
        return
    if case == "oversized first":
        assert await _send_oversized(conn, b"\x00" * (MAX_FRAME + 1)) == CloseCode.too_big
        return

    await ws.hello(conn, token)
    if case == "not msgpack":
        await conn.send(b"\x93\x01")  # truncated
        code, frames = await ws.close_code(conn)
        assert code == CloseCode.bad_frame
        assert frames and frames[-1].type is MsgType.error
    elif case == "text frame":
        await conn.send("[3, 1, {}]")
        assert (await ws.close_code(conn))[0] == CloseCode.bad_frame
    elif case == "wrong shape":
        await conn.send(ws.encode_raw([3, 1]))
        assert (await ws.close_code(conn))[0] == CloseCode.bad_frame
    elif case == "oversized":
        frame = ws.encode_raw([int(MsgType.commit), 5, {"ops": [b"x" * MAX_FRAME]}])
        assert await _send_oversized(conn, frame) == CloseCode.too_big
    else:
        expect: dict[str, tuple[MsgType | int, dict[str, Any], str]] = {
            "unknown type": (77, {}, "bad_request"),
            "server-only type": (MsgType.change, {"ns": ns}, "bad_request"),
            "hello again": (MsgType.hello, {"versions": [1], "token": token}, "bad_request"),
            "subscribe to another user's namespace": (MsgType.subscribe, {"ns": other_ns}, "not_found"),
            "subscribe to no namespace": (MsgType.subscribe, {"ns": 2**31 - 1}, "not_found"),
            "subscribe with a cursor of another namespace": (MsgType.subscribe,
                                                             {"ns": ns, "cursor": make_cursor(other_ns, 0)},
                                                             "bad_cursor"),
            "subscribe with a garbage cursor": (MsgType.subscribe, {"ns": ns, "cursor": "v1.x"}, "bad_cursor"),
            "subscribe with a cursor ahead": (MsgType.subscribe, {"ns": ns, "cursor": make_cursor(ns, 10**9)},
                                              "bad_cursor"),
            "subscribe with a list for ns": (MsgType.subscribe, {"ns": [ns]}, "bad_request"),
            "subscribe without ns": (MsgType.subscribe, {}, "bad_request"),
            "commit with a garbage body": (MsgType.commit, {"path": 5, "ops": {"a": 1}}, "invalid_path"),
            "presence with a bad state": (MsgType.presence_set, {"ns": ns, "path": "/", "state": "dancing"},
                                          "bad_request"),
            "presence in another user's namespace": (MsgType.presence_set,
                                                     {"ns": other_ns, "path": "/", "state": "viewing"},
                                                     "not_found"),
        }
        mtype, body, code_ = expect[case]
        await conn.send(ws.encode_raw([int(mtype), 42, body]))
        frame = await ws.recv(conn)
        assert (frame.type, frame.id, frame.body["code"]) == (MsgType.error, 42, code_), frame
        # the connection stays open and answers
        await ws.send(conn, MsgType.ping, 43)
        assert (await ws.recv(conn)).type is MsgType.pong


BAD_CASES = ["not msgpack first", "text first", "frame before hello", "subscribe before hello", "bad token",
             "no token", "unsupported version", "versions not a list", "oversized first", "not msgpack",
             "text frame", "wrong shape", "oversized", "unknown type", "server-only type", "hello again",
             "subscribe to another user's namespace", "subscribe to no namespace",
             "subscribe with a cursor of another namespace", "subscribe with a garbage cursor",
             "subscribe with a cursor ahead", "subscribe with a list for ns", "subscribe without ns",
             "commit with a garbage body", "presence with a bad state", "presence in another user's namespace"]


async def _send_oversized(conn: Any, frame: bytes) -> int:
    """Send a frame over the limit; the close code. The server may close (1009) before the client
    has written the whole frame, which the client then reports as the send failing."""
    try:
        await conn.send(frame)
    except websockets.exceptions.ConnectionClosed as exc:
        assert exc.rcvd is not None
        return int(exc.rcvd.code)
    return int((await ws.close_code(conn))[0])


async def test_bad_input_over_the_socket(server: ServerProcess, make_user: MakeUser) -> None:
    """Every case on a fresh connection while an observer connection of the same user stays
    subscribed: it keeps working, and no bad input writes anything."""
    a, b, ns = await pair(make_user)
    other: User = await make_user("C")
    other_ns = int((await other.client.account())["root_namespace"])
    token = a.client.token or ""
    head = await ws.head(a.client)
    async with LiveSession.connect(server.url, b.client.token or "") as observer:
        await observer.subscribe(ns)
        for case in BAD_CASES:
            conn = await ws.connect(server.url)
            try:
                await _bad_case(conn, case, token, ns, other_ns)
            except AssertionError as exc:
                raise AssertionError(f"case {case!r}: {exc}") from exc
            finally:
                await conn.close()
            await observer.ping()
        assert await ws.head(a.client) == head
        await ws.no_push(observer, 0.1)
        # and the server still serves: a change made now reaches the observer
        await a.client.mkdir("/still-fine")
        assert (await ws.next_change(observer))["path"] == "/still-fine"


async def test_too_many_requests_in_flight(server: ServerProcess, make_user: MakeUser) -> None:
    """Requests sent without waiting for replies: past MAX_IN_FLIGHT some are refused with
    too_many_requests; every request gets exactly one reply and only accepted commits write."""
    a: User = await make_user("A")
    head = await ws.head(a.client)
    total = 200
    conn = await ws.connect(server.url)
    try:
        await ws.hello(conn, a.client.token or "")
        for i in range(1, total + 1):
            # Distinct bytes: rclone's S3 server can fail two concurrent PUTs of one key (a rename race).
            payload = os.urandom(64 * 1024)
            await ws.send(conn, MsgType.commit, i, {"path": f"/burst/{i}", "parent_rev": None,
                                                    "size": len(payload), "ops": [payload]})
        replies: dict[int, Any] = {}
        while len(replies) < total:
            f = await ws.recv(conn, 60)
            assert f.id not in replies, f"two replies to request {f.id}"
            replies[f.id] = f
        committed = [i for i, f in replies.items() if f.type is MsgType.committed]
        refused = [f for f in replies.values() if f.type is MsgType.error]
        assert {f.body["code"] for f in refused} <= {"too_many_requests"}
        print(f"\n[{server.data_dir.name}] {total} commits in one burst: {len(committed)} committed, "
              f"{len(refused)} too_many_requests")
        assert committed and len(committed) + len(refused) == total
        assert refused, "a burst of 200 slow requests should pass the in-flight limit"
        # dir /burst (1) + one entry per accepted commit
        assert await ws.head(a.client) == head + 1 + len(committed)
        names = {e["name"] for e in await a.client.list("/burst")}
        assert names == {str(i) for i in committed}
    finally:
        await conn.close()


# ---------------------------------------------------------------- heartbeat: revocation, idle


@pytest.fixture(scope="module")
def fast_heartbeat(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server("sqlite-local", SATCHEL_WS_HEARTBEAT="1s")


async def test_logged_out_device_is_closed(fast_heartbeat: ServerProcess, make_user: MakeUser) -> None:
    srv = fast_heartbeat
    a, b, ns = await pair(make_user, srv)
    b_dev = (await b.client.account())["device_id"]
    async with LiveSession.connect(srv.url, b.client.token or "") as lb, \
            LiveSession.connect(srv.url, a.client.token or "") as la:
        assert lb.welcome["heartbeat_ms"] == 1000
        await lb.subscribe(ns)
        await la.subscribe(ns)
        await asyncio.sleep(2.5)  # a few heartbeats pass: answered pings keep the sessions open
        await lb.ping()
        watcher = asyncio.create_task(_drain(watch_changes(b.client, CursorStore())))
        await asyncio.sleep(0.3)
        r = api(srv, "DELETE", f"/api/v1/devices/{b_dev}", a.client.token)
        assert r.status_code == 204, r.text
        t0 = time.perf_counter()
        with pytest.raises(SessionClosed) as info:
            while True:
                await lb.next_push(timeout=5)
        took = time.perf_counter() - t0
        print(f"\nlogged-out device closed after {took:.2f} s (heartbeat 1 s)")
        assert info.value.code == CloseCode.unauthorized and not info.value.may_reconnect
        assert took < 2.5
        # watch_changes gives up with unauthorized instead of reconnecting forever
        with pytest.raises(SatchelError) as err:
            await asyncio.wait_for(watcher, 5)
        assert err.value.code is ErrorCode.unauthorized
        # the other device is unaffected
        await la.ping()
        await a.client.mkdir("/after-revoke")
        assert (await ws.next_change(la))["path"] == "/after-revoke"
    # and the revoked token cannot open a new session
    conn = await ws.connect(srv.url)
    await ws.send(conn, MsgType.hello, 1, {"versions": [1], "token": b.client.token})
    assert (await ws.close_code(conn))[0] == CloseCode.unauthorized


async def _drain(it: Any) -> None:
    async for _ in it:
        pass


async def test_silent_connections_are_closed(fast_heartbeat: ServerProcess, make_user: MakeUser) -> None:
    """No hello within HELLO_TIMEOUT_MS: 4003. Pings never answered for 3 heartbeats: 4004."""
    a: User = await make_user("A", srv=fast_heartbeat)
    mute = await ws.connect(fast_heartbeat.url)
    t_mute = time.perf_counter()
    deaf = await ws.connect(fast_heartbeat.url)
    await ws.hello(deaf, a.client.token or "")
    t0 = time.perf_counter()

    async def timed(conn: Any, since: float) -> tuple[int | None, list[Any], float]:
        code, frames = await ws.close_code(conn, 15)
        return code, frames, time.perf_counter() - since

    (code, frames, took), (mute_code, mute_frames, mute_took) = await asyncio.gather(timed(deaf, t0),
                                                                                      timed(mute, t_mute))
    assert code == CloseCode.idle_timeout, code
    assert all(f.type is MsgType.ping for f in frames)
    assert 2.5 < took < 6, took
    assert (mute_code, mute_frames) == (CloseCode.hello_timeout, [])
    assert HELLO_TIMEOUT_MS / 1000 - 0.5 < mute_took < HELLO_TIMEOUT_MS / 1000 + 3


async def test_frozen_client_is_let_go(fast_heartbeat: ServerProcess, make_user: MakeUser) -> None:
    """A client whose TCP connection stays up but which stops reading (a frozen process): once its
    buffers are full the server cannot even send it a close frame, yet after 3 silent heartbeats
    the session must end (and leave presence), not linger until the presence ttl."""
    srv = fast_heartbeat
    a, b, ns = await pair(make_user, srv)
    frozen = await ws.connect(srv.url, small_buffer=True)
    try:
        welcome = await ws.hello(frozen, b.client.token or "")
        await ws.send(frozen, MsgType.presence_set, 2, {"ns": ns, "path": "/f", "state": "viewing"})
        assert (await ws.recv(frozen)).type is MsgType.presence
        await ws.send(frozen, MsgType.subscribe, 3, {"ns": ns})
        assert (await ws.recv(frozen)).type is MsgType.subscribed
        # from here on, `frozen` neither reads nor answers pings
        async with LiveSession.connect(srv.url, a.client.token or "") as la:
            members = await la.presence_set(ns, "/f", "viewing")
            assert len(members) == 2
            t0 = time.perf_counter()
            size = INLINE_LIMIT - 1024
            for i in range(40):  # ~10 MiB of pushes: more than the socket buffers hold
                await la.commit(f"/frozen/{i}", None, size, [os.urandom(size)])
            frames = []
            async with asyncio.timeout(15):
                while not any(f.type is MsgType.presence_event and f.body["event"] == "leave" for f in frames):
                    frames.append(await la.next_push())
            took = time.perf_counter() - t0
            left = [f.body["member"]["key"] for f in frames if f.type is MsgType.presence_event]
            assert len(left) == 1 and left[0].endswith(":" + welcome.body["session"]), left
            print(f"\nfrozen client let go after {took:.1f} s (heartbeat 1 s)")
            assert took < 10
    finally:
        frozen.transport.abort()


# ---------------------------------------------------------------- slow consumer


async def test_slow_consumer_gets_resync(server: ServerProcess, make_user: MakeUser) -> None:
    """One subscriber stops reading while another reads; many big pushes later the reader still
    got every change promptly, and the stalled one finds ``resync`` with the cursor it reached,
    from which a new subscription catches up exactly."""
    a, b, ns = await pair(make_user)
    slow_user: User = await make_user("S", name=a.name)
    slow = await ws.connect(server.url, small_buffer=True)
    try:
        await ws.hello(slow, slow_user.client.token or "")
        await ws.send(slow, MsgType.subscribe, 7, {"ns": ns})
        subscribed = await ws.recv(slow)
        assert subscribed.type is MsgType.subscribed
        start = subscribed.body["seq"]
        # from here on, `slow` is not read

        async with LiveSession.connect(server.url, a.client.token or "") as la, \
                LiveSession.connect(server.url, b.client.token or "") as fast:
            await fast.subscribe(ns)
            committed_at: dict[int, float] = {}  # rev -> when its commit reply arrived
            pushed_at: dict[int, float] = {}  # rev -> when the reader got its push
            received: list[dict[str, Any]] = []

            async def read_fast(n: int) -> None:
                while len(received) < n:
                    c = await ws.next_change(fast, 30)
                    pushed_at[c.get("rev") or 0] = time.perf_counter()
                    if c["path"] != "/slow":  # big pushes (the chunk inline) are what fills the queue
                        assert len(c["delta"]["ops"][0]) == 3, c
                    received.append(c)

            count, size = 150, INLINE_LIMIT - 1024  # ~37 MiB of pushes: far past the 16 MiB queue
            reader = asyncio.create_task(read_fast(count))
            sem = asyncio.Semaphore(8)

            async def one(i: int) -> None:
                async with sem:
                    payload = os.urandom(size)
                    entry = await la.commit(f"/slow/{i}", None, size, [payload])
                    committed_at[entry["rev"]] = time.perf_counter()

            await la.commit("/slow/0", None, 1, [b"0"])  # creates /slow too: keep that out of the burst
            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(1, count - 1)))
            await asyncio.wait_for(reader, 30)
            took = time.perf_counter() - t0
        seqs = [c["seq"] for c in received]
        assert seqs == list(range(start + 1, start + count + 1)), "the reader lost or reordered changes"
        # a push may beat the commit reply (both leave after the transaction): that counts as 0
        lat = sorted(max(0.0, pushed_at[rev] - t) for rev, t in committed_at.items())
        print(f"\n[{server.data_dir.name}] {count - 2} commits of {size // 1024} KiB in {took:.1f} s; reader push "
              f"latency p50 {1000 * lat[len(lat) // 2]:.0f} ms, max {1000 * lat[-1]:.0f} ms")
        assert lat[-1] < 5, "the stalled connection slowed the reader down"

        # now the stalled connection reads: changes from start+1 on, in order, then resync
        head = start + count
        got: list[int] = []
        resync = None
        async with asyncio.timeout(30):
            while resync is None and (not got or got[-1] < head):
                f = await ws.recv(slow)
                if f.type is MsgType.change:
                    got.append(f.body["seq"])
                elif f.type is MsgType.resync:
                    resync = f
        assert resync is not None, f"no resync: the stalled connection got {len(got)} of {count} changes"
        assert got == list(range(start + 1, start + 1 + len(got)))
        assert len(got) < count, "the stalled connection should have been dropped, not sent everything"
        assert resync.body["ns"] == ns and resync.body["reason"] == "slow_consumer"
        reached = got[-1] if got else start
        assert parse_cursor(resync.body["cursor"]) == (ns, reached), (resync.body, reached)
        print(f"stalled connection: {len(got)} changes queued, then resync at seq {reached} of {head}")
        # nothing more for that namespace until it subscribes again, which replays exactly the rest
        await ws.send(slow, MsgType.ping, 8)
        assert (await ws.recv(slow)).type is MsgType.pong
        await ws.send(slow, MsgType.subscribe, 9, {"ns": ns, "cursor": resync.body["cursor"]})
        rest: list[int] = []
        while True:
            f = await ws.recv(slow, 30)
            if f.type is MsgType.change:
                rest.append(f.body["seq"])
            else:
                assert (f.type, f.id, f.body["seq"]) == (MsgType.subscribed, 9, head), f
                break
        assert got + rest == list(range(start + 1, head + 1))
    finally:
        await slow.close()

