"""Presence in Redis, for several nodes.

Storage: one hash per location, ``satchel:presence:{ns}:{sha1(path)[:16]}``, mapping member key ->
msgpack ``{member fields..., "expires_at_ms": wall-clock ms}``. Redis 7.0 has no per-field expiry,
so readers ignore expired fields and a sweeper deletes them; the hash key also gets a PEXPIRE
(ttl + a minute, only ever extended) so a location nobody watches does not linger forever.

Events: join/update/leave are published on the bus, channel ``presence.{ns}.{sha1(path)[:16]}``.
Each node subscribes to a location's channel while it has local watchers there, and delivers to
its watchers only what arrives from the bus (its own publications included), never directly, so
no watcher sees an event twice.

Exactly once: every change of a field is a compare-and-set in a Lua script (Redis runs a script
atomically), and the one caller whose script succeeds publishes the event. In particular the
sweepers of all nodes may race for an expired member, but only the node whose conditional HDEL
returns 1 publishes its "leave", so each watcher on each node gets one "leave" per departure,
also when the member's own node crashed. ``touch`` rewrites a field only if it is unchanged and
not expired, so it never revives a member whose "leave" is already on its way.

Expiry times are wall-clock milliseconds of the writing node (nodes are assumed NTP-synced; a skew
of a second against the ttl, two heartbeats + 5 s, is harmless). Redis errors become ``SatchelError(unavailable)`` in
the calling method; the sweeper logs them and tries again next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from server.bus.base import Bus
from server.core.errors import ErrorCode, SatchelError
from server.presence.base import DEFAULT_TTL, Member, Watcher

log = logging.getLogger(__name__)

KEY_PREFIX = "satchel:presence:"
CHANNEL_PREFIX = "presence."
KEY_TTL_SLACK_MS = 60_000  # the hash key outlives its newest member by this much (safety net only)
CAS_ATTEMPTS = 5  # a field changes under us only if its own session races itself or a sweeper
SWEEP_BATCH = 200  # HGETALLs per pipeline round trip
EVENTS = ("join", "leave", "update")
_FIELDS = tuple(f.name for f in dataclasses.fields(Member))
_INT_FIELDS = frozenset({"user_id", "device_id", "since_ms"})

# Write ARGV[4] into field ARGV[1] if the field is absent (ARGV[2] == "absent") or still holds
# exactly ARGV[3]; extend the key's expiry to at least ARGV[5] ms; with ARGV[6] == "1" also return
# the whole hash (the snapshot ``set`` returns). Seeing our own value already there counts as
# success, so a command retried after a lost reply does not report a false conflict.
# Returns {1, [snapshot]} or {0}. Strings are compared with ``==`` (byte equality).
_CAS_SET = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur ~= ARGV[4] then
  if ARGV[2] == 'absent' then
    if cur then return {0} end
  elseif cur ~= ARGV[3] then
    return {0}
  end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
if ARGV[6] == '1' then
  return {1, redis.call('HGETALL', KEYS[1])}
end
return {1}
"""

# Delete field ARGV[1] and return what it held (nil if absent): the caller that gets the value
# is the one that reports the "leave".
_TAKE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return cur
"""

# Delete field ARGV[1] only if it still holds exactly ARGV[2] (the expired value the sweeper
# read): a member that set itself again in between is left alone. Returns 1 if deleted.
_CAS_DEL = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _digest(path: str) -> str:
    # Hashing bounds the key length and keeps odd characters out of keys and channel names.
    return hashlib.sha1(path.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()[:16]


def _member_fields(member: Member) -> dict[str, Any]:
    return {name: getattr(member, name) for name in _FIELDS}


def _member_from_fields(data: Any) -> Member:
    """Build a Member from decoded msgpack; unknown fields are ignored (a newer node may add some)."""
    if not isinstance(data, dict):
        raise ValueError("member is not a map")
    values: dict[str, Any] = {}
    for name in _FIELDS:
        value = data.get(name)
        expected = int if name in _INT_FIELDS else str
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ValueError(f"member field {name!r} missing or of the wrong type")
        values[name] = value
    return Member(**values)


def _pack_entry(member: Member, expires_at_ms: int) -> bytes:
    packed: bytes = msgpack.packb({**_member_fields(member), "expires_at_ms": expires_at_ms})
    return packed


def _unpack_entry(raw: bytes | str | None) -> tuple[Member, int] | None:
    """(member, expires_at_ms), or None for an absent or unreadable field."""
    if raw is None:
        return None
    try:
        data = msgpack.unpackb(_bytes(raw))
        expires = data.get("expires_at_ms") if isinstance(data, dict) else None
        if not isinstance(expires, int):
            return None
        return _member_from_fields(data), expires
    except (ValueError, TypeError, msgpack.UnpackException):
        return None


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _alive(fields: dict[bytes, bytes], now_ms: int) -> list[Member]:
    members = []
    for raw in fields.values():
        entry = _unpack_entry(raw)
        if entry is not None and entry[1] > now_ms:
            members.append(entry[0])
    members.sort(key=lambda m: (m.since_ms, m.key))
    return members


def _pairs(flat: list[Any]) -> dict[bytes, bytes]:
    """HGETALL as returned from inside a script: a flat [field, value, ...] list."""
    return {_bytes(flat[i]): _bytes(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


@contextlib.contextmanager
def _translate() -> Iterator[None]:
    """Redis trouble is the caller's ``unavailable`` (retry later), never a raw redis exception."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise SatchelError(ErrorCode.unavailable, "presence store unavailable") from exc


class _Location:
    """A location this node watches: its local watchers and its bus subscription."""

    def __init__(self, ns: int, path: str) -> None:
        self.where = (ns, path)
        digest = _digest(path)
        self.key = f"{KEY_PREFIX}{ns}:{digest}"
        self.channel = f"{CHANNEL_PREFIX}{ns}.{digest}"
        self.watchers: list[Watcher] = []
        # Held so the task is not garbage-collected, awaited by set/members (see _ready), and
        # cancelled by close().
        self.subscribing: asyncio.Task[None] | None = None

    def on_payload(self, payload: bytes) -> None:
        """Bus handler: decode one event and hand it to the local watchers."""
        try:
            data = msgpack.unpackb(payload)
            event = data["event"]
            if event not in EVENTS:
                raise ValueError(f"unknown presence event {event!r}")
            member = _member_from_fields(data["member"])
        except (ValueError, TypeError, KeyError, msgpack.UnpackException):
            log.warning("dropped a malformed presence event on %s", self.channel)
            return
        for watcher in list(self.watchers):
            try:
                watcher(event, member)
            except Exception:  # one broken watcher must not stop the others
                log.exception("presence watcher failed")


class RedisPresence:
    """Presence shared by every node through Redis (see the module docstring).

    ``watch`` subscribes in the background; ``set``/``members`` on a location this node has just
    started watching wait for that subscription first, so "watch, then set (or members)" yields a
    snapshot with no event lost after it. A watcher may still hear an event published just before
    it started watching (the bus sends asynchronously): treat "join" as "is here".
    """

    def __init__(self, url: str, bus: Bus, *, ttl: float = DEFAULT_TTL, sweep_interval: float = 2.0) -> None:
        self._url = url  # may hold a password: never logged
        self._bus = bus
        self.ttl = ttl
        self.sweep_interval = sweep_interval
        self._ttl_ms = max(1, round(ttl * 1000))
        self._key_ttl_ms = self._ttl_ms + KEY_TTL_SLACK_MS
        self._redis: aioredis.Redis | None = None
        self._cas_set: Any = None  # AsyncScript objects (EVALSHA, falling back to EVAL)
        self._take: Any = None
        self._cas_del: Any = None
        self._locations: dict[tuple[int, str], _Location] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def __repr__(self) -> str:  # never show the URL (password)
        return f"<RedisPresence ttl={self.ttl} locations={len(self._locations)}>"

    async def start(self) -> None:
        """Create the client (no connection yet: an unreachable Redis does not stop the node)."""
        if self._redis is not None:
            return
        # Retry once on a dropped connection (e.g. a pooled socket from before a Redis restart), but
        # not on timeouts: a timed-out script may have run, and running it again could lose an event.
        retry = Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.05), 1, (RedisConnectionError,))
        self._redis = aioredis.from_url(self._url, socket_timeout=5, socket_connect_timeout=5, retry=retry,
                                        health_check_interval=30)
        self._cas_set = self._redis.register_script(_CAS_SET)
        self._take = self._redis.register_script(_TAKE)
        self._cas_del = self._redis.register_script(_CAS_DEL)
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="presence-sweeper")

    async def close(self) -> None:
        """Stop sweeping and listening. Members are left in Redis: they expire (a closing node is
        like a crashed one; sessions that end cleanly call ``leave`` first)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for loc in list(self._locations.values()):
            await self._drop(loc)
        self._locations.clear()
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.aclose()
            self._redis = None

    # -- the contract
    async def set(self, ns: int, path: str, member: Member) -> list[Member]:
        redis = self._client()
        await self._ready(ns, path)
        loc_key, channel = self._names(ns, path)
        with _translate():
            for _ in range(CAS_ATTEMPTS):
                raw_old = await redis.hget(loc_key, member.key)
                old = _unpack_entry(raw_old)
                now = _now_ms()
                if old is not None and old[1] > now:
                    member = dataclasses.replace(member, since_ms=old[0].since_ms)  # keep the arrival time
                mode = "absent" if raw_old is None else "equal"
                reply = await self._cas_set(keys=[loc_key], args=[member.key, mode, raw_old or b"",
                                                                  _pack_entry(member, now + self._ttl_ms),
                                                                  self._key_ttl_ms, 1])
                if reply[0] == 1:
                    break
            else:
                raise SatchelError(ErrorCode.unavailable, "presence store busy; retry")
        if old is None:
            self._publish(channel, "join", member)
        elif old[1] <= now:
            # Expired but not yet swept, so nobody reported its leave: close that stay first, so
            # watchers see leave/join pairs, never two joins in a row.
            self._publish(channel, "leave", old[0])
            self._publish(channel, "join", member)
        elif old[0] != member:
            self._publish(channel, "update", member)
        return _alive(_pairs(reply[1]), now)

    async def leave(self, ns: int, path: str, member_key: str) -> None:
        self._client()
        loc_key, channel = self._names(ns, path)
        with _translate():
            raw = await self._take(keys=[loc_key], args=[member_key])
        entry = _unpack_entry(raw)
        if entry is not None:  # even if already expired: no sweeper reported it (we deleted it)
            self._publish(channel, "leave", entry[0])

    async def touch(self, ns: int, path: str, member_key: str) -> None:
        redis = self._client()
        loc_key, _ = self._names(ns, path)
        with _translate():
            for _ in range(CAS_ATTEMPTS):
                raw_old = await redis.hget(loc_key, member_key)
                old = _unpack_entry(raw_old)
                now = _now_ms()
                if raw_old is None or old is None or old[1] <= now:
                    return  # unknown, or already gone (its leave is reported by a sweeper)
                reply = await self._cas_set(keys=[loc_key], args=[member_key, "equal", raw_old,
                                                                  _pack_entry(old[0], now + self._ttl_ms),
                                                                  self._key_ttl_ms, 0])
                if reply[0] == 1:
                    return
            raise SatchelError(ErrorCode.unavailable, "presence store busy; retry")

    async def members(self, ns: int, path: str) -> list[Member]:
        redis = self._client()
        await self._ready(ns, path)
        loc_key, _ = self._names(ns, path)
        with _translate():
            fields = await redis.hgetall(loc_key)
        return _alive({_bytes(k): _bytes(v) for k, v in fields.items()}, _now_ms())

    def watch(self, ns: int, path: str, watcher: Watcher) -> None:
        loc = self._locations.get((ns, path))
        if loc is None:
            loc = self._locations[(ns, path)] = _Location(ns, path)
        loc.watchers.append(watcher)
        if loc.subscribing is None:
            # Bus.subscribe is async (it waits for Redis to confirm); watch is sync, so it runs as a
            # task. set()/members() on this location wait for it (see _ready).
            loc.subscribing = asyncio.get_running_loop().create_task(
                self._bus.subscribe(loc.channel, loc.on_payload), name="presence-subscribe")

    def unwatch(self, ns: int, path: str, watcher: Watcher) -> None:
        loc = self._locations.get((ns, path))
        if loc is not None and watcher in loc.watchers:
            # Events stop at once; the bus subscription is dropped by the next sweep, so a quick
            # unwatch/watch (a client flipping between views) does not churn SUBSCRIBE/UNSUBSCRIBE.
            loc.watchers.remove(watcher)

    # -- sweeping
    async def sweep(self) -> None:
        """One sweeper round: delete expired members of every locally watched location, publish a
        "leave" for each one this node deleted, and drop subscriptions nobody watches any more.
        Raises RedisError/OSError (the loop logs them and tries again)."""
        redis = self._client()
        for loc in list(self._locations.values()):
            if not loc.watchers and loc.subscribing is not None and loc.subscribing.done():
                await self._drop(loc)
        watched = [loc for loc in self._locations.values() if loc.watchers]
        for i in range(0, len(watched), SWEEP_BATCH):
            batch = watched[i:i + SWEEP_BATCH]
            async with redis.pipeline(transaction=False) as pipe:
                for loc in batch:
                    pipe.hgetall(loc.key)
                results = await pipe.execute()
            now = _now_ms()
            for loc, fields in zip(batch, results, strict=True):
                for field, raw in fields.items():
                    entry = _unpack_entry(raw)
                    if entry is not None and entry[1] > now:
                        continue
                    # Only the node whose conditional delete wins reports the leave (exactly once).
                    if await self._cas_del(keys=[loc.key], args=[field, raw]) == 1:
                        if entry is not None:
                            self._publish(loc.channel, "leave", entry[0])
                        else:
                            log.warning("removed an unreadable presence entry from %s", loc.key)

    async def _sweep_loop(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except (RedisError, OSError) as exc:
                failures += 1
                if failures == 1 or failures % 100 == 0:  # one line per outage, not one per round
                    log.warning("presence sweep failed (%s); retrying every %.1f s",
                                type(exc).__name__, self.sweep_interval)
                continue
            except Exception:  # the sweeper must outlive any one bad round
                log.exception("presence sweep failed")
                continue
            if failures:
                log.info("presence sweep recovered after %d failed rounds", failures)
                failures = 0

    # -- internals
    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("RedisPresence used before start() or after close()")
        return self._redis

    @staticmethod
    def _names(ns: int, path: str) -> tuple[str, str]:
        digest = _digest(path)
        return f"{KEY_PREFIX}{ns}:{digest}", f"{CHANNEL_PREFIX}{ns}.{digest}"

    async def _ready(self, ns: int, path: str) -> None:
        """If watch() on this location is still subscribing, wait for it, so that "watch, then
        set/members" gives a snapshot with no event missing after it."""
        loc = self._locations.get((ns, path))
        if loc is not None and loc.subscribing is not None and not loc.subscribing.done():
            # asyncio.wait neither raises the task's error nor cancels the task if we are cancelled.
            await asyncio.wait({loc.subscribing})

    async def _drop(self, loc: _Location) -> None:
        task = loc.subscribing
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._bus.unsubscribe(loc.channel, loc.on_payload)
        if self._locations.get(loc.where) is loc:
            del self._locations[loc.where]

    def _publish(self, channel: str, event: str, member: Member) -> None:
        self._bus.publish(channel, msgpack.packb({"event": event, "member": _member_fields(member)}))
