"""Presence: one conformance suite run against every backend, plus multi-node tests for Redis.

Backends: ``memory`` (MemoryPresence + MemoryBus) and ``redis`` (RedisPresence + RedisBus on a real
Redis at $SATCHEL_TEST_REDIS, default redis://127.0.0.1:6379/0). An unreachable Redis fails these
tests, never skips them. Each test uses a random namespace id, so runs never see each other's keys
(which expire on their own anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import redis
from redis.exceptions import RedisError

from server.bus.base import Bus
from server.bus.memory import MemoryBus
from server.bus.redis import RedisBus
from server.core.errors import ErrorCode, SatchelError
from server.presence import open_presence
from server.presence.base import Member, Presence, Watcher
from server.presence.memory import MemoryPresence
from server.presence.redis import RedisPresence

REDIS_URL = os.environ.get("SATCHEL_TEST_REDIS", "redis://127.0.0.1:6379/0")
TTL = 1.0
INTERVAL = 0.2
# A leave for an expired member must arrive within ttl + 2 sweep intervals; SLACK covers event
# delivery and a loaded test machine.
SLACK = 0.4
BACKENDS = ["memory", "redis"]


def member(key: str, state: str = "viewing", since_ms: int | None = None, user_id: int = 1) -> Member:
    return Member(key=key, user_id=user_id, user_name=f"user{user_id}", device_id=7, device_name="laptop",
                  device_kind="desktop", state=state,
                  since_ms=since_ms if since_ms is not None else time.time_ns() // 1_000_000)


async def wait_until(predicate: Callable[[], bool], timeout: float = 3.0, what: str = "condition") -> float:
    """Poll until *predicate* holds; return the seconds it took. Fails the test on timeout."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


@dataclass
class Recorder:
    """A watcher that records (event, member key, state)."""

    events: list[tuple[str, str, str]] = field(default_factory=list)

    def __call__(self, event: str, m: Member) -> None:
        self.events.append((event, m.key, m.state))

    def count(self, event: str, key: str) -> int:
        return sum(1 for e, k, _ in self.events if e == event and k == key)

    async def wait(self, event: str, key: str, timeout: float = 3.0) -> float:
        return await wait_until(lambda: self.count(event, key) > 0, timeout, f"{event} of {key}")


@dataclass
class Node:
    presence: Presence
    bus: Bus


NodeFactory = Callable[..., Awaitable[Node]]


async def _open_redis_node(sweep_interval: float = INTERVAL) -> Node:
    bus = RedisBus(REDIS_URL)
    presence = RedisPresence(REDIS_URL, bus, ttl=TTL, sweep_interval=sweep_interval)
    await bus.start()
    await presence.start()
    # The bus subscribes only once its reader is connected; publishing before that would be lost.
    await wait_until(lambda: bus.connected, 5.0, "the redis bus to connect")
    return Node(presence, bus)


async def _open_memory_node(sweep_interval: float = INTERVAL) -> Node:
    bus = MemoryBus()
    presence = MemoryPresence(bus, ttl=TTL, sweep_interval=sweep_interval)
    await bus.start()
    await presence.start()
    return Node(presence, bus)


@pytest.fixture(scope="session")
def redis_reachable() -> None:
    """Fail (not skip) with a clear message when the test Redis is not there. Sync, so the async
    ``node`` fixture can request it by name for its redis parameter only."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        pytest.fail(f"test Redis at $SATCHEL_TEST_REDIS is unreachable ({type(exc).__name__})")
    finally:
        client.close()


@contextlib.asynccontextmanager
async def _nodes(opener: NodeFactory) -> AsyncIterator[NodeFactory]:
    nodes: list[Node] = []

    async def make(sweep_interval: float = INTERVAL) -> Node:
        node = await opener(sweep_interval)
        nodes.append(node)
        return node

    try:
        yield make
    finally:
        for node in nodes:
            await node.presence.close()  # idempotent: a test may have "crashed" the node already
            if isinstance(node.bus, RedisBus):
                # Workaround: RedisBus.close() cancels its publisher, and on Python 3.11 the
                # asyncio.wait_for() in RedisBus._wait_more swallows a cancel that lands just as a
                # publish wakes it, so close() would wait forever. Let the last publications settle,
                # and turn any remaining hang into a failure.
                await asyncio.sleep(0.05)
            async with asyncio.timeout(10):
                await node.bus.close()


@pytest.fixture(params=BACKENDS)
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[NodeFactory]:
    """Opens nodes of the backend under test (a memory "node" shares nothing with another)."""
    if request.param == "redis":
        request.getfixturevalue("redis_reachable")
    async with _nodes(_open_redis_node if request.param == "redis" else _open_memory_node) as make:
        yield make


@pytest.fixture
async def node(nodes: NodeFactory) -> Node:
    return await nodes()


@pytest.fixture
async def redis_nodes(redis_reachable: None) -> AsyncIterator[NodeFactory]:
    async with _nodes(_open_redis_node) as make:
        yield make


@pytest.fixture
def ns() -> int:
    return 10**12 + secrets.randbelow(10**12)


async def watch(p: Presence, ns: int, path: str, recorder: Watcher) -> None:
    """watch(), then members(): the documented way to be sure the subscription is live."""
    p.watch(ns, path, recorder)
    await p.members(ns, path)


async def keep_touching(p: Presence, ns: int, path: str, key: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await p.touch(ns, path, key)
        await asyncio.sleep(TTL / 4)


# -- the shared conformance suite (every backend)


async def test_set_returns_everyone_including_self_oldest_first(node: Node, ns: int) -> None:
    p = node.presence
    a, b = member("n:a", since_ms=1000), member("n:b", since_ms=2000, user_id=2)
    assert await p.set(ns, "/doc", b) == [b]
    assert await p.set(ns, "/doc", a) == [a, b]  # oldest first, whatever the join order
    assert await p.members(ns, "/doc") == [a, b]
    assert await p.members(ns, "/elsewhere") == []


async def test_join_of_a_second_member_is_seen_by_a_watcher(node: Node, ns: int) -> None:
    p, rec = node.presence, Recorder()
    await p.set(ns, "/doc", member("n:a"))
    await watch(p, ns, "/doc", rec)
    await p.set(ns, "/doc", member("n:b", user_id=2))
    await rec.wait("join", "n:b")
    # A watcher may also hear events published just before it started watching (the bus sends
    # asynchronously), so it treats a join as "is here"; what it must not get is anything else.
    assert ("join", "n:b", "viewing") in rec.events
    assert set(rec.events) <= {("join", "n:a", "viewing"), ("join", "n:b", "viewing")}


async def test_state_change_is_an_update_and_keeps_the_arrival_time(node: Node, ns: int) -> None:
    p, rec = node.presence, Recorder()
    await watch(p, ns, "/doc", rec)
    first = member("n:a", since_ms=1000)
    await p.set(ns, "/doc", first)
    await p.set(ns, "/doc", member("n:a", "editing", since_ms=5000))
    await rec.wait("update", "n:a")
    assert rec.events == [("join", "n:a", "viewing"), ("update", "n:a", "editing")]
    [now] = await p.members(ns, "/doc")
    assert (now.state, now.since_ms) == ("editing", 1000)
    # Setting the same state again is a refresh, not an event. A later join on the same node shows
    # that anything published before it has arrived.
    await p.set(ns, "/doc", member("n:a", "editing"))
    await p.set(ns, "/doc", member("n:z"))
    await rec.wait("join", "n:z")
    assert rec.count("update", "n:a") == 1


async def test_leave_is_reported_and_the_member_is_gone(node: Node, ns: int) -> None:
    p, rec = node.presence, Recorder()
    await watch(p, ns, "/doc", rec)
    a, b = member("n:a", since_ms=1), member("n:b", since_ms=2)
    await p.set(ns, "/doc", a)
    await p.set(ns, "/doc", b)
    await p.leave(ns, "/doc", "n:a")
    await rec.wait("leave", "n:a")
    assert await p.members(ns, "/doc") == [b]
    await p.leave(ns, "/doc", "n:a")  # unknown members are ignored: no second leave
    await p.leave(ns, "/nowhere", "n:a")
    await p.set(ns, "/doc", member("n:z"))
    await rec.wait("join", "n:z")
    assert rec.count("leave", "n:a") == 1


async def test_member_whose_ttl_runs_out_leaves_once(node: Node, ns: int) -> None:
    p, rec = node.presence, Recorder()
    await watch(p, ns, "/doc", rec)
    stop = asyncio.Event()
    await p.set(ns, "/doc", member("n:stays"))
    toucher = asyncio.create_task(keep_touching(p, ns, "/doc", "n:stays", stop))
    try:
        await p.set(ns, "/doc", member("n:silent"))
        start = time.monotonic()
        await rec.wait("leave", "n:silent", timeout=TTL + 2 * INTERVAL + SLACK)
        assert time.monotonic() - start >= TTL * 0.9  # not before its ttl ran out
        assert [m.key for m in await p.members(ns, "/doc")] == ["n:stays"]
        await asyncio.sleep(3 * INTERVAL)  # more sweeps must not report it again
        assert rec.count("leave", "n:silent") == 1
        assert rec.count("leave", "n:stays") == 0
    finally:
        stop.set()
        await toucher


async def test_touch_keeps_a_member_alive_past_its_ttl(node: Node, ns: int) -> None:
    p, rec = node.presence, Recorder()
    await watch(p, ns, "/doc", rec)
    stop = asyncio.Event()
    await p.set(ns, "/doc", member("n:a"))
    toucher = asyncio.create_task(keep_touching(p, ns, "/doc", "n:a", stop))
    try:
        await asyncio.sleep(1.6 * TTL)  # well past the ttl and several sweeps
        assert [m.key for m in await p.members(ns, "/doc")] == ["n:a"]
        assert rec.count("leave", "n:a") == 0
    finally:
        stop.set()
        await toucher


async def test_touch_does_not_revive_an_expired_member(node: Node, ns: int) -> None:
    p, rec = node.presence, Recorder()
    await watch(p, ns, "/doc", rec)
    await p.set(ns, "/doc", member("n:a"))
    await rec.wait("leave", "n:a", timeout=TTL + 2 * INTERVAL + SLACK)
    await p.touch(ns, "/doc", "n:a")
    await p.touch(ns, "/doc", "n:never-set")
    assert await p.members(ns, "/doc") == []
    assert [e for e, _, _ in rec.events] == ["join", "leave"]


async def test_locations_are_independent(node: Node, ns: int) -> None:
    p = node.presence
    doc, other_path, other_ns = Recorder(), Recorder(), Recorder()
    await watch(p, ns, "/doc", doc)
    await watch(p, ns, "/other", other_path)
    await watch(p, ns + 1, "/doc", other_ns)
    a = member("n:a")
    await p.set(ns, "/doc", a)
    await p.set(ns, "/other", member("n:b"))
    await p.set(ns + 1, "/doc", member("n:c"))
    await doc.wait("join", "n:a")
    await other_path.wait("join", "n:b")
    await other_ns.wait("join", "n:c")
    await p.leave(ns, "/other", "n:b")
    await other_path.wait("leave", "n:b")
    assert doc.events == [("join", "n:a", "viewing")]
    assert other_ns.events == [("join", "n:c", "viewing")]
    assert await p.members(ns, "/doc") == [a]
    assert await p.members(ns, "/other") == []


async def test_unwatch_stops_events(node: Node, ns: int) -> None:
    p = node.presence
    gone, stays = Recorder(), Recorder()
    await watch(p, ns, "/doc", gone)
    await watch(p, ns, "/doc", stays)
    await p.set(ns, "/doc", member("n:a"))
    await gone.wait("join", "n:a")
    p.unwatch(ns, "/doc", gone)
    p.unwatch(ns, "/doc", Recorder())  # unknown watchers are ignored
    await p.set(ns, "/doc", member("n:b"))
    await p.leave(ns, "/doc", "n:a")
    await stays.wait("leave", "n:a")
    assert gone.events == [("join", "n:a", "viewing")]
    # Unwatching the last watcher, then watching again, still works (no stale subscription state).
    p.unwatch(ns, "/doc", stays)
    await asyncio.sleep(2 * INTERVAL)  # let a sweep round drop the idle subscription
    again = Recorder()
    await watch(p, ns, "/doc", again)
    await p.leave(ns, "/doc", "n:b")
    await again.wait("leave", "n:b")
    assert stays.count("leave", "n:b") == 0


async def test_a_failing_watcher_does_not_stop_the_others(node: Node, ns: int, caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    p, rec = node.presence, Recorder()

    def broken(event: str, m: Member) -> None:
        raise RuntimeError("watcher bug")

    await watch(p, ns, "/doc", broken)
    await watch(p, ns, "/doc", rec)
    with caplog.at_level(logging.ERROR):
        await p.set(ns, "/doc", member("n:a"))
        await rec.wait("join", "n:a")
    assert "presence watcher failed" in caplog.text


async def test_setting_again_after_the_ttl_ran_out_is_a_leave_then_a_join(nodes: NodeFactory, ns: int) -> None:
    """Expired but not yet swept (the sweeper is slow here): watchers never heard the leave, so a
    new set reports it before the join, and the member counts as newly arrived."""
    p, rec = (await nodes(sweep_interval=60.0)).presence, Recorder()
    await watch(p, ns, "/doc", rec)
    await p.set(ns, "/doc", member("n:a", since_ms=1))
    await asyncio.sleep(TTL + 0.1)
    assert await p.members(ns, "/doc") == []  # expired members are not listed, swept or not
    await p.set(ns, "/doc", member("n:a", since_ms=2))
    await rec.wait("join", "n:a")
    await wait_until(lambda: len(rec.events) == 3, what="leave and join")
    assert rec.events == [("join", "n:a", "viewing"), ("leave", "n:a", "viewing"), ("join", "n:a", "viewing")]
    assert [m.since_ms for m in await p.members(ns, "/doc")] == [2]


# -- Redis: several nodes


async def test_events_cross_nodes(redis_nodes: NodeFactory, ns: int) -> None:
    a, b = await redis_nodes(), await redis_nodes()
    rec = Recorder()
    await watch(b.presence, ns, "/doc", rec)
    m = member("a:1", since_ms=1)
    assert await a.presence.set(ns, "/doc", m) == [m]
    await rec.wait("join", "a:1")
    assert await b.presence.members(ns, "/doc") == [m]  # node B sees node A's member
    await a.presence.set(ns, "/doc", member("a:1", "editing"))
    await rec.wait("update", "a:1")
    await a.presence.leave(ns, "/doc", "a:1")
    await rec.wait("leave", "a:1")
    assert rec.events == [("join", "a:1", "viewing"), ("update", "a:1", "editing"), ("leave", "a:1", "editing")]
    assert await b.presence.members(ns, "/doc") == []


async def test_member_of_a_crashed_node_leaves_exactly_once_everywhere(redis_nodes: NodeFactory, ns: int) -> None:
    """Node A dies without a leave; the sweepers of B and C race to remove its member, and each
    watcher on each surviving node hears exactly one "leave"."""
    a, b, c = await redis_nodes(), await redis_nodes(), await redis_nodes()
    watchers = {"b1": Recorder(), "b2": Recorder(), "c1": Recorder()}
    await watch(b.presence, ns, "/doc", watchers["b1"])
    await watch(b.presence, ns, "/doc", watchers["b2"])
    await watch(c.presence, ns, "/doc", watchers["c1"])
    await a.presence.set(ns, "/doc", member("a:1"))
    for rec in watchers.values():
        await rec.wait("join", "a:1")
    await a.presence.close()  # the crash: no leave, no more touches
    start = time.monotonic()
    for rec in watchers.values():
        await rec.wait("leave", "a:1", timeout=TTL + 2 * INTERVAL + SLACK - (time.monotonic() - start))
    assert await b.presence.members(ns, "/doc") == []
    assert await c.presence.members(ns, "/doc") == []
    await asyncio.sleep(4 * INTERVAL)  # later sweeps on either node must not repeat it
    for name, rec in watchers.items():
        assert rec.events == [("join", "a:1", "viewing"), ("leave", "a:1", "viewing")], name


async def test_redis_errors_become_unavailable_and_the_sweeper_survives(
        ns: int, caplog: pytest.LogCaptureFixture) -> None:
    secret = "hunter2-not-to-be-logged"
    url = f"redis://:{secret}@127.0.0.1:1/0"  # nothing listens on port 1
    p = RedisPresence(url, MemoryBus(), ttl=TTL, sweep_interval=INTERVAL)
    with caplog.at_level(logging.DEBUG):
        await p.start()
        try:
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: p.set(ns, "/doc", member("n:a")), lambda: p.leave(ns, "/doc", "n:a"),
                lambda: p.touch(ns, "/doc", "n:a"), lambda: p.members(ns, "/doc")]
            for call in calls:
                with pytest.raises(SatchelError) as info:
                    await call()
                assert info.value.code is ErrorCode.unavailable
                assert isinstance(info.value.__cause__, RedisError | OSError)
            p.watch(ns, "/doc", Recorder())  # gives the sweeper something to read
            await asyncio.sleep(3 * INTERVAL)
            assert p._sweeper is not None and not p._sweeper.done()
            assert "presence sweep failed" in caplog.text
        finally:
            await p.close()
    assert secret not in caplog.text
    assert secret not in repr(p)


def test_open_presence_chooses_by_scheme() -> None:
    bus = MemoryBus()
    assert isinstance(open_presence("", bus, 30), MemoryPresence)
    assert isinstance(open_presence("memory://", bus, 30), MemoryPresence)
    assert isinstance(open_presence("redis://127.0.0.1:6379/0", bus, 30), RedisPresence)
    with pytest.raises(ValueError, match="unknown presence URL scheme") as info:
        open_presence("mongodb://user:s3cret@host/db", bus, 30)
    assert "s3cret" not in str(info.value)
