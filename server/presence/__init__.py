"""Presence: who (user, device) is at a location (namespace + path) right now.

The contract is ``server.presence.base.Presence``. Two implementations, chosen by URL like the bus:
``memory://`` (one node, members in a dict, the embedded default) and ``redis://`` (members in
Redis hashes with per-member expiry times so every node sees them; join/leave/update events travel
on the bus). Imports are lazy so the embedded default never loads redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.bus.base import Bus
    from server.presence.base import Presence


def open_presence(url: str, bus: Bus, ttl: float) -> Presence:
    """*ttl*: a member not renewed for this long is gone (sessions renew theirs every heartbeat)."""
    if url in ("", "memory://"):
        from server.presence.memory import MemoryPresence

        return MemoryPresence(bus, ttl=ttl)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from server.presence.redis import RedisPresence

        return RedisPresence(url, bus, ttl=ttl)
    # Only the scheme goes into the message: the rest of the URL may hold a password.
    raise ValueError(f"unknown presence URL scheme: {url.split(':', 1)[0]!r} (use memory:// or redis://)")
