"""The change bus: a doorbell ("namespace N reached seq S", with the entry when small) from the
node that committed to every node with subscribers. Two implementations, chosen by URL:
``memory://`` (in-process, the embedded default) and ``redis://`` (pub/sub across nodes).

The journal is the source of truth; the bus only makes delivery fast. A doorbell lost while Redis
restarts is recovered from the journal: after every (re)connect the bus calls ``on_connect``
callbacks, and the hub re-reads each namespace it serves from the last seq it delivered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.bus.base import Bus


def open_bus(url: str) -> Bus:
    if url in ("", "memory://"):
        from server.bus.memory import MemoryBus

        return MemoryBus()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from server.bus.redis import RedisBus

        return RedisBus(url)
    raise ValueError(f"unknown bus URL scheme: {url.split(':', 1)[0]!r} (use memory:// or redis://)")
