"""The bus contract. Payloads are bytes (msgpack), never decoded by the bus itself."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

Handler = Callable[[bytes], None]
OnConnect = Callable[[], Coroutine[Any, Any, None]]


class Bus(Protocol):
    async def start(self) -> None:
        """Connect (or not, for memory). Never raises for an unreachable Redis: it keeps retrying."""

    async def close(self) -> None: ...

    def publish(self, channel: str, payload: bytes) -> None:
        """Queue *payload* for every subscriber of *channel* on every node. Never blocks or raises;
        undelivered payloads are retried after a reconnect, and the journal covers the rest."""

    def subscribe(self, channel: str, handler: Handler) -> None:
        """Call *handler* (on the event loop, quickly) for each payload published to *channel*."""

    def unsubscribe(self, channel: str, handler: Handler) -> None: ...

    def on_connect(self, callback: OnConnect) -> None:
        """Run *callback* after every (re)connect, so listeners can catch up from the journal."""

    @property
    def connected(self) -> bool: ...
