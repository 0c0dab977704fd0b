"""Presence contract: who (user, device) is at a location (namespace + path) right now.

A location is ``(ns, path)``: a folder or file someone is viewing or editing. A member is one
device's session there. Members refresh themselves (``touch``) every heartbeat; a member not
refreshed for ``ttl`` seconds is gone (a device that vanished without saying goodbye).

Implementations (``open_presence(url, bus, ttl)``): ``memory://`` (one node) and ``redis://`` (members in
Redis hashes with expiry times, events across nodes on the bus). Both pass
``tests/test_presence.py``'s shared suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_TTL = 30.0  # seconds without a touch after which a member is gone (servers: 2 heartbeats)


@dataclass(frozen=True, slots=True)
class Member:
    key: str  # unique per session, e.g. "<node>:<session id>"
    user_id: int
    user_name: str
    device_id: int
    device_name: str
    device_kind: str
    state: str  # "viewing" | "editing"
    since_ms: int  # when the member arrived at this location

    def to_wire(self) -> dict[str, Any]:
        return {"key": self.key, "user_id": self.user_id, "user": self.user_name, "device_id": self.device_id,
                "device": self.device_name, "kind": self.device_kind, "state": self.state,
                "since_ms": self.since_ms}


#: (event, member) with event "join" | "leave" | "update"
Watcher = Callable[[str, Member], None]


class Presence(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def set(self, ns: int, path: str, member: Member) -> list[Member]:
        """Put *member* at the location (join, or update its state); return everyone there now,
        *member* included. Watchers of the location get "join" (new) or "update" (state change)."""

    async def leave(self, ns: int, path: str, member_key: str) -> None:
        """Remove the member; watchers get "leave". Unknown members are ignored."""

    async def touch(self, ns: int, path: str, member_key: str) -> None:
        """Keep the member alive for another ttl."""

    async def members(self, ns: int, path: str) -> list[Member]:
        """Everyone at the location whose ttl has not run out, oldest first."""

    def watch(self, ns: int, path: str, watcher: Watcher) -> None:
        """Call *watcher* for join/leave/update events at the location, from any node, including
        "leave" for members whose ttl ran out (within ttl + a few seconds)."""

    def unwatch(self, ns: int, path: str, watcher: Watcher) -> None: ...
