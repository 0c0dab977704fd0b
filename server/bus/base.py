"""The bus contract. Payloads are bytes (msgpack), never decoded by the bus itself."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

Handler = Callable[[bytes], None]
log = logging.getLogger(__name__)
OnConnect = Callable[[], Coroutine[Any, Any, None]]


class Bus(Protocol):
    async def start(self) -> None:
        """Connect (or not, for memory). Never raises for an unreachable Redis: it keeps retrying."""

    async def close(self) -> None: ...

    def publish(self, channel: str, payload: bytes) -> None:
        """Queue *payload* for every subscriber of *channel* on every node. Never blocks or raises;
        undelivered payloads are retried after a reconnect, and the journal covers the rest."""

    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Call *handler* (on the event loop, quickly) for each payload published to *channel*.
        Returns once the SUBSCRIBE is written (Redis handles it an instant later; the hub's periodic
        reconciliation with the journal covers that instant). If Redis is away it returns at once
        and the reconnect resubscribes, then runs the ``on_connect`` callbacks."""

    def unsubscribe(self, channel: str, handler: Handler) -> None: ...

    def on_connect(self, callback: OnConnect) -> None:
        """Run *callback* after every (re)connect, so listeners can catch up from the journal."""

    @property
    def connected(self) -> bool: ...


class Handlers:
    """Local listeners per channel, shared by the bus implementations."""

    def __init__(self) -> None:
        self._by_channel: dict[str, list[Handler]] = defaultdict(list)

    def add(self, channel: str, handler: Handler) -> bool:
        """Register; True if it is the channel's first listener (subscribe upstream)."""
        first = channel not in self._by_channel
        self._by_channel[channel].append(handler)
        return first

    def remove(self, channel: str, handler: Handler) -> bool:
        """Unregister; True if the channel has no listener left (unsubscribe upstream)."""
        handlers = self._by_channel.get(channel)
        if not handlers or handler not in handlers:
            return False
        handlers.remove(handler)
        if handlers:
            return False
        del self._by_channel[channel]
        return True

    def channels(self) -> list[str]:
        return list(self._by_channel)

    def dispatch(self, channel: str, payload: bytes) -> None:
        for handler in list(self._by_channel.get(channel, ())):
            try:
                handler(payload)
            except Exception:  # one broken listener must not stop the others
                log.exception("bus handler failed on %s", channel)

    def clear(self) -> None:
        self._by_channel.clear()
