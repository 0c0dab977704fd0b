"""In-process bus for a single node (the embedded default)."""

from __future__ import annotations

from server.bus.base import Handler, Handlers, OnConnect


class MemoryBus:
    def __init__(self) -> None:
        self._handlers = Handlers()
        self._on_connect: list[OnConnect] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()

    @property
    def connected(self) -> bool:
        return True

    def publish(self, channel: str, payload: bytes) -> None:
        self._handlers.dispatch(channel, payload)

    async def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers.add(channel, handler)

    def unsubscribe(self, channel: str, handler: Handler) -> None:
        self._handlers.remove(channel, handler)

    def on_connect(self, callback: OnConnect) -> None:
        self._on_connect.append(callback)
