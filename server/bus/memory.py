"""In-process bus for a single node (the embedded default)."""

from __future__ import annotations

import logging
from collections import defaultdict

from server.bus.base import Handler, OnConnect

log = logging.getLogger(__name__)


class MemoryBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._on_connect: list[OnConnect] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()

    @property
    def connected(self) -> bool:
        return True

    def publish(self, channel: str, payload: bytes) -> None:
        for handler in list(self._handlers.get(channel, ())):
            try:
                handler(payload)
            except Exception:  # one broken listener must not stop the others
                log.exception("bus handler failed on %s", channel)

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers[channel].append(handler)

    def unsubscribe(self, channel: str, handler: Handler) -> None:
        handlers = self._handlers.get(channel)
        if handlers and handler in handlers:
            handlers.remove(handler)
            if not handlers:
                del self._handlers[channel]

    def on_connect(self, callback: OnConnect) -> None:
        self._on_connect.append(callback)
