"""Two ``satchel serve`` nodes sharing one PostgreSQL database, one S3 bucket prefix and a private
Redis: pushes and presence across nodes, and a Redis restart in the middle of a stream of commits.

Node 1 comes from ``start_server("pg-s3", ...)`` (a fresh database, dropped at the end of the
session); node 2 is a second process with node 1's database, blob store and secret key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from python_client.live import CursorStore, LiveSession, watch_changes
from server.ws.protocol import MsgType
from tests.conftest import User
from tests.harness import ws
from tests.harness.redis import RedisServer
from tests.harness.server import ServerProcess

MakeUser = Callable[..., Any]
SHARED = ("DATABASE_URL", "SATCHEL_BLOB_URL", "SATCHEL_S3_ENDPOINT", "SATCHEL_S3_ACCESS_KEY",
          "SATCHEL_S3_SECRET_KEY", "SATCHEL_SECRET_KEY", "SATCHEL_REDIS_URL", "SATCHEL_WS_HEARTBEAT")


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


HEARTBEAT = 1.0  # the nodes' SATCHEL_WS_HEARTBEAT
PRESENCE_TTL = 2 * HEARTBEAT + 5  # members are renewed every heartbeat, gone after two missed + 5 s


@pytest.fixture(scope="module")
def nodes(start_server: Callable[..., ServerProcess], redis: RedisServer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    node1 = start_server("pg-s3", SATCHEL_REDIS_URL=redis.url, SATCHEL_NODE_ID="n1",
                         SATCHEL_WS_HEARTBEAT=f"{HEARTBEAT:.0f}s", SATCHEL_SECRET_KEY="cluster-" + os.urandom(16).hex())
    env = {k: node1.env[k] for k in SHARED} | {"SATCHEL_NODE_ID": "n2"}
    node2 = ServerProcess(tmp_path_factory.mktemp("node2"), env).start()
    try:
        yield node1, node2
    finally:
        node2.stop()  # before start_server's teardown drops the database


async def on_both(make_user: MakeUser, nodes: tuple[ServerProcess, ServerProcess]) -> tuple[User, User, int]:
    """One user with device A logged in on node 1 and device B on node 2."""
    a: User = await make_user("A", srv=nodes[0])
    b: User = await make_user("B", name=a.name, srv=nodes[1])
    return a, b, int((await a.client.account())["root_namespace"])


async def test_commit_on_one_node_reaches_a_watcher_on_the_other(nodes: tuple[ServerProcess, ServerProcess],
                                                                 make_user: MakeUser, tmp_path: Path) -> None:
    node1, node2 = nodes
    a, b, ns = await on_both(make_user, nodes)
    async with LiveSession.connect(node2.url, b.client.token or "") as watcher, \
            LiveSession.connect(node1.url, a.client.token or "") as committer:
        sub = await watcher.subscribe(ns)
        data = os.urandom(150_000)
        (tmp_path / "f").write_bytes(data)
        t0 = time.perf_counter()
        meta = await a.client.upload(tmp_path / "f", "/c/f.bin")  # REST on node 1
        t1 = time.perf_counter()
        d, f = await ws.next_change(watcher), await ws.next_change(watcher)
        t2 = time.perf_counter()
        assert (d["op"], f["op"], f["path"], f["rev"]) == ("mkdir", "create", "/c/f.bin", meta["rev"])
        assert [d["seq"], f["seq"]] == [sub["seq"] + 1, sub["seq"] + 2]
        assert b"".join(op[2] for op in f["delta"]["ops"]) == data  # small enough to travel inline
        print(f"\nupload on node 1: {1000 * (t1 - t0):.1f} ms; push on node 2 {1000 * (t2 - t1):.1f} ms later")

        lat = []
        for i in range(20):
            t0 = time.perf_counter()
            entry = await committer.commit(f"/c/{i}", None, 5, [b"%05d" % i])
            t1 = time.perf_counter()
            push = await ws.next_change(watcher)
            lat.append(time.perf_counter() - t1)
            assert push["rev"] == entry["rev"] and push["delta"]["ops"][0][2] == b"%05d" % i
        lat.sort()
        print(f"ws commit on node 1 -> push on node 2: p50 {1000 * lat[10]:.1f} ms, max {1000 * lat[-1]:.1f} ms")
        await ws.no_push(watcher)


async def test_redis_restart_loses_nothing(nodes: tuple[ServerProcess, ServerProcess], redis: RedisServer,
                                           make_user: MakeUser) -> None:
    """Commits keep going on node 1 while Redis stops and starts again (same port); a subscriber on
    node 2 still gets every change once, in order: the hubs catch up from the journal."""
    node1, node2 = nodes
    a, b, ns = await on_both(make_user, nodes)
    received: list[dict[str, Any]] = []
    watched: list[dict[str, Any]] = []

    async def watch() -> None:
        async with contextlib.aclosing(watch_changes(b.client, CursorStore(), max_backoff=0.5)) as it:
            async for change in it:
                watched.append(change)

    async with LiveSession.connect(node2.url, b.client.token or "") as raw:
        sub = await raw.subscribe(ns)
        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)

        async def read() -> None:
            while True:
                received.append(await ws.next_change(raw, 60))

        reader = asyncio.create_task(read())
        made: list[str] = []

        async def commit_for(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                path = f"/r{len(made)}"
                await a.client.mkdir(path)
                made.append(path)
                await asyncio.sleep(0.03)

        async def caught_up(limit: float) -> float:
            t0 = time.perf_counter()
            deadline = time.monotonic() + limit
            while len(received) < len(made) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return time.perf_counter() - t0

        await commit_for(1.0)
        before = len(received)
        # 1. commits only while Redis is away: nothing after the restart rings a doorbell, so
        #    node 2 must notice by itself (bus reconnect catch-up, or the reconciliation)
        redis.stop()
        t_down = time.perf_counter()
        await commit_for(2.0)
        during = len(made) - before
        redis.start()
        down = time.perf_counter() - t_down
        recovered = await caught_up(12)
        got_then = len(received)
        # 2. the same with commits going on across the restart
        redis.stop()
        await commit_for(1.0)
        redis.start()
        await commit_for(1.0)
        recovered2 = await caught_up(12)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        paths = [c["path"] for c in received]
        print(f"\nredis down {down:.1f} s with {during} commits on node 1: node 2 had them all {recovered:.2f} s "
              f"after redis came back ({got_then - before} of them); restart with commits across it: "
              f"caught up {recovered2:.2f} s after the last commit")
        assert got_then == before + during
        assert paths == made, f"lost or reordered: got {len(paths)} of {len(made)}"
        assert [c["seq"] for c in received] == list(range(sub["seq"] + 1, sub["seq"] + len(made) + 1))
        # watch_changes saw the same (it would also fill gaps itself; the raw subscription shows the
        # server had none)
        deadline = time.monotonic() + 5
        while len(watched) < len(made) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        assert [c["path"] for c in watched] == made
        # and both nodes serve pushes normally again
        async with LiveSession.connect(node1.url, a.client.token or "") as on1:
            await on1.subscribe(ns)
            await a.client.mkdir("/after-restart")
            assert (await ws.next_change(on1))["path"] == "/after-restart"
        assert (await ws.next_change(raw))["path"] == "/after-restart"


def _events(frames: list[Any], event: str) -> list[dict[str, Any]]:
    return [f.body["member"] for f in frames if f.type is MsgType.presence_event and f.body["event"] == event]


async def presence_events(live: LiveSession, want: Callable[[list[Any]], bool], timeout: float) -> list[Any]:
    """Presence pushes until *want(frames)* holds."""
    frames: list[Any] = []
    async with asyncio.timeout(timeout):
        while not want(frames):
            frame = await live.next_push()
            if frame.type is MsgType.presence_event:
                frames.append(frame)
    return frames


async def test_presence_across_nodes(nodes: tuple[ServerProcess, ServerProcess], make_user: MakeUser) -> None:
    node1, node2 = nodes
    a, b, ns = await on_both(make_user, nodes)
    async with LiveSession.connect(node1.url, a.client.token or "") as p1, \
            LiveSession.connect(node2.url, b.client.token or "") as p2:
        me1 = f"n1:{p1.welcome['session']}"
        me2 = f"n2:{p2.welcome['session']}"
        members = await p1.presence_set(ns, "/doc.txt", "viewing")
        assert [m["key"] for m in members] == [me1]
        t0 = time.perf_counter()
        members = await p2.presence_set(ns, "/doc.txt", "editing")
        assert {m["key"]: m["state"] for m in members} == {me1: "viewing", me2: "editing"}
        (joined,) = _events(await presence_events(p1, lambda f: bool(_events(f, "join")), 5), "join")
        print(f"\npresence join node 2 -> node 1: {1000 * (time.perf_counter() - t0):.1f} ms")
        assert (joined["key"], joined["state"], joined["device"]) == (me2, "editing", "B")
        await p2.presence_set(ns, "/doc.txt", "viewing")
        (updated,) = _events(await presence_events(p1, lambda f: bool(_events(f, "update")), 5), "update")
        assert (updated["key"], updated["state"]) == (me2, "viewing")
        # node 1's member is seen from node 2 too, and its leave reaches node 2
        await p1.presence_set(ns, "/doc.txt", None)
        (left,) = _events(await presence_events(p2, lambda f: bool(_events(f, "leave")), 5), "leave")
        assert left["key"] == me1
        await p1.presence_set(ns, "/doc.txt", "viewing")
        await p2.presence_set(ns, "/doc.txt", None)
        frames = await presence_events(p1, lambda f: bool(_events(f, "leave")), 5)
        assert [m["key"] for m in _events(frames, "leave")] == [me2]
        # another location is another room
        assert [m["key"] for m in await p2.presence_set(ns, "/other.txt", "viewing")] == [me2]
        await ws.no_push(p1, 0.5)

        # a node-2 client that goes silent (no close, no pong) is closed after 3 heartbeats and leaves
        silent = await ws.connect(node2.url)
        await ws.hello(silent, b.client.token or "")
        await ws.send(silent, MsgType.presence_set, 2, {"ns": ns, "path": "/doc.txt", "state": "viewing"})
        reply = await ws.recv(silent)
        assert reply.type is MsgType.presence and len(reply.body["members"]) == 2
        t0 = time.perf_counter()
        frames = await presence_events(p1, lambda f: bool(_events(f, "leave")), 10)
        took = time.perf_counter() - t0
        joined, left = _events(frames, "join"), _events(frames, "leave")
        assert [m["key"] for m in left] == [m["key"] for m in joined] and len(left) == 1
        print(f"silent client on node 2 left after {took:.1f} s (heartbeat 1 s)")
        await silent.close()


async def test_presence_of_a_crashed_node_expires(nodes: tuple[ServerProcess, ServerProcess],
                                                  make_user: MakeUser) -> None:
    """Node 2 is killed (SIGKILL: no goodbye): its member leaves for node 1 once the ttl ran out.
    Runs last: node 2 is restarted on the same port for whatever follows."""
    node1, node2 = nodes
    a, b, ns = await on_both(make_user, nodes)
    async with LiveSession.connect(node1.url, a.client.token or "") as p1:
        await p1.presence_set(ns, "/crash.txt", "viewing")
        async with LiveSession.connect(node2.url, b.client.token or "") as p2:
            me2 = f"n2:{p2.welcome['session']}"
            await p2.presence_set(ns, "/crash.txt", "editing")
            await presence_events(p1, lambda f: bool(_events(f, "join")), 5)
            node2.kill()
            t0 = time.perf_counter()
            frames = await presence_events(p1, lambda f: bool(_events(f, "leave")), PRESENCE_TTL + 10)
        took = time.perf_counter() - t0
        print(f"\nnode 2 killed: its member left for node 1 after {took:.1f} s (ttl {PRESENCE_TTL:.0f} s)")
        assert [m["key"] for m in _events(frames, "leave")] == [me2]
        assert PRESENCE_TTL - 1.5 < took < PRESENCE_TTL + 6  # the ttl, then the next sweep (2 s)
        assert [m["key"] for m in await p1.presence_set(ns, "/crash.txt", "viewing")] == [f"n1:{p1.welcome['session']}"]
    node2.start()
