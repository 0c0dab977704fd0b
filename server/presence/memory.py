"""In-process presence for a single node (the embedded default).

Members live in a dict per location with a monotonic expiry time; events go straight to this
node's watchers (there is no other node to tell). A sweeper task removes members whose ttl ran out
and tells the watchers "leave" exactly once: removal from the dict is the one place a departure is
decided, and whoever removes the entry (``leave`` or the sweeper) is the one that reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass

from server.bus.base import Bus
from server.presence.base import DEFAULT_TTL, Member, Watcher

log = logging.getLogger(__name__)

Location = tuple[int, str]


@dataclass(slots=True)
class _Entry:
    member: Member
    expires_at: float  # time.monotonic()


class MemoryPresence:
    def __init__(self, bus: Bus, *, ttl: float = DEFAULT_TTL, sweep_interval: float = 2.0) -> None:
        # The bus is not used: one node delivers to its own watchers directly. It is taken so both
        # implementations open the same way (``open_presence(url, bus, ttl)``).
        self._bus = bus
        self.ttl = ttl
        self.sweep_interval = sweep_interval
        self._locations: dict[Location, dict[str, _Entry]] = {}
        self._watchers: dict[Location, list[Watcher]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="presence-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._locations.clear()
        self._watchers.clear()

    async def set(self, ns: int, path: str, member: Member) -> list[Member]:
        loc = (ns, path)
        now = time.monotonic()
        entries = self._locations.setdefault(loc, {})
        old = entries.get(member.key)
        if old is not None and old.expires_at > now:
            # Still here: keep the arrival time, report only a real change.
            member = dataclasses.replace(member, since_ms=old.member.since_ms)
            entries[member.key] = _Entry(member, now + self.ttl)
            if member != old.member:
                self._emit(loc, "update", member)
        else:
            entries[member.key] = _Entry(member, now + self.ttl)
            if old is not None:
                # Its ttl ran out but the sweeper has not reported it yet: close that stay first so
                # watchers see leave/join pairs, never two joins in a row.
                self._emit(loc, "leave", old.member)
            self._emit(loc, "join", member)
        return self._alive(loc, now)

    async def leave(self, ns: int, path: str, member_key: str) -> None:
        loc = (ns, path)
        entries = self._locations.get(loc)
        if entries is None:
            return
        old = entries.pop(member_key, None)
        if not entries:
            del self._locations[loc]
        if old is not None:  # even if already expired: nobody reported it yet
            self._emit(loc, "leave", old.member)

    async def touch(self, ns: int, path: str, member_key: str) -> None:
        entry = self._locations.get((ns, path), {}).get(member_key)
        now = time.monotonic()
        # An expired member is not revived (the sweeper will report its leave); the client sets again.
        if entry is not None and entry.expires_at > now:
            entry.expires_at = now + self.ttl

    async def members(self, ns: int, path: str) -> list[Member]:
        return self._alive((ns, path), time.monotonic())

    def watch(self, ns: int, path: str, watcher: Watcher) -> None:
        self._watchers.setdefault((ns, path), []).append(watcher)

    def unwatch(self, ns: int, path: str, watcher: Watcher) -> None:
        loc = (ns, path)
        watchers = self._watchers.get(loc)
        if watchers and watcher in watchers:
            watchers.remove(watcher)
            if not watchers:
                del self._watchers[loc]

    # -- internals
    def _alive(self, loc: Location, now: float) -> list[Member]:
        entries = self._locations.get(loc, {})
        alive = [e.member for e in entries.values() if e.expires_at > now]
        alive.sort(key=lambda m: (m.since_ms, m.key))
        return alive

    def _emit(self, loc: Location, event: str, member: Member) -> None:
        for watcher in list(self._watchers.get(loc, ())):
            try:
                watcher(event, member)
            except Exception:  # one broken watcher must not stop the others
                log.exception("presence watcher failed")

    def sweep(self) -> None:
        """Remove members whose ttl ran out and report them as "leave" (also run by the sweeper)."""
        now = time.monotonic()
        for loc, entries in list(self._locations.items()):
            gone = [key for key, e in entries.items() if e.expires_at <= now]
            for key in gone:
                self._emit(loc, "leave", entries.pop(key).member)
            if not entries:
                del self._locations[loc]

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                self.sweep()
            except Exception:  # the sweeper must outlive any one bad round
                log.exception("presence sweep failed")
