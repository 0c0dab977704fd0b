"""Every co-edited document of this node, and their relay across nodes.

A room exists while some local session has its document open. Each room listens on the bus
channel ``doc.<file_id>``: updates (``u``), awareness (``a``) and state vectors (``sv``, every
``TICK`` seconds and after a bus reconnect: a node answers with what the sender lacks) from the
other nodes. A room also follows its namespace's journal through the hub (saves, external
revisions, deletes, membership changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

import msgpack

from server.bus.base import Bus
from server.coedit.room import Room, Settings, relay
from server.core.errors import SatchelError
from server.services.context import Services
from server.ws.hub import MEMBER_OPS, Hub

log = logging.getLogger(__name__)
TICK = 5.0


def channel(file_id: int) -> str:
    return f"doc.{file_id}"


class _Follower:
    """A room's subscription to its namespace's journal (the hub's ``Subscriber``)."""

    def __init__(self, room: Room, ns: int) -> None:
        self.room = room
        self.ns = ns  # the namespace it is attached to (the room's may move on first: see _follow)

    def push(self, ns: int, seq: int, frame: bytes) -> None:
        try:
            _type, _id, entry = msgpack.unpackb(frame, raw=False)
        except Exception:
            return
        if isinstance(entry, dict) and entry.get("op") not in MEMBER_OPS:
            self.room.journal(entry)

    def member_changed(self, ns: int, user_id: int) -> None:
        self.room.member_changed(user_id)


class Coedit:
    def __init__(self, svc: Services, hub: Hub, bus: Bus, node: str) -> None:
        self.svc, self.hub, self.bus, self.node = svc, hub, bus, node
        self.settings = Settings(svc.config.coedit_save_delay, svc.config.coedit_max_bytes,
                                 svc.config.coedit_awareness_timeout)
        self.rooms: dict[int, Room] = {}
        self._followers: dict[int, _Follower] = {}
        self._handlers: dict[int, Any] = {}
        self._opening: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.bus.on_connect(self._reconnected)
        self._ticker = asyncio.create_task(self._tick_loop(), name="coedit-tick")

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for room in list(self.rooms.values()):
            await room.shutdown()
            self._forget(room)

    async def room(self, file_id: int, ns_id: int, path: str) -> Room:
        """The open room of *file_id*, opened (state loaded, relays started) if needed."""
        async with self._opening[file_id]:
            room = self.rooms.get(file_id)
            if room is not None and not room.closed:
                if room.ns_id != ns_id:  # the caller found the file in a namespace the room has not followed yet
                    await room.follow_file()
                return room
            room = Room(self.svc, self.settings, file_id, ns_id, path,
                        publish=lambda kind, data: self.bus.publish(channel(file_id), relay(self.node, kind, data)),
                        on_empty=self._forget, on_moved=self._moved)
            handler = self._bus_handler(room)
            # Listen before loading, so nothing relayed meanwhile is missed (updates are idempotent).
            await self.bus.subscribe(channel(file_id), handler)
            follower = _Follower(room, ns_id)
            self._followers[file_id] = follower  # so a move seen during open() moves it too
            await self.hub.attach(ns_id, follower)
            try:
                await room.open()
                await self._follow(follower)  # open() found the file in another namespace
            except BaseException:
                self.bus.unsubscribe(channel(file_id), handler)
                self.hub.detach(follower.ns, follower)
                if self._followers.get(file_id) is follower:
                    del self._followers[file_id]
                raise
            self.rooms[file_id] = room
            self._handlers[file_id] = handler
            room.publish("hi", room.doc.get_state())  # other nodes: send what I lack, and your awareness
            return room

    def _forget(self, room: Room) -> None:
        if self.rooms.get(room.file_id) is not room:
            return
        del self.rooms[room.file_id]
        handler = self._handlers.pop(room.file_id, None)
        if handler is not None:
            self.bus.unsubscribe(channel(room.file_id), handler)
        follower = self._followers.pop(room.file_id, None)
        if follower is not None:
            self.hub.detach(follower.ns, follower)

    async def _moved(self, room: Room, old_ns: int) -> None:
        """The room's file moved to another namespace: follow that namespace's journal instead."""
        follower = self._followers.get(room.file_id)
        if follower is not None and follower.room is room:
            await self._follow(follower)

    async def _follow(self, follower: _Follower) -> None:
        """Attach *follower* to its room's namespace if it is elsewhere."""
        while follower.ns != follower.room.ns_id:
            old, follower.ns = follower.ns, follower.room.ns_id
            await self.hub.attach(follower.ns, follower)  # attach first: no entry falls between
            self.hub.detach(old, follower)

    def _bus_handler(self, room: Room) -> Any:
        def on_message(payload: bytes) -> None:
            try:
                msg = msgpack.unpackb(payload, raw=False)
                node, kind, data = msg["node"], msg["kind"], msg["data"]
                if not isinstance(data, bytes):
                    raise TypeError("data")
            except Exception:
                log.warning("ignoring a malformed document relay")
                return
            if node == self.node or room.closed:
                return
            try:
                if kind == "u":
                    room.remote_update(data)
                elif kind == "a":
                    room.remote_awareness(node, data)
                elif kind in ("sv", "hi"):
                    room.remote_state_vector(data)
                    mine = room.local_awareness() if kind == "hi" else None
                    if mine is not None:
                        room.publish("a", mine)
            except SatchelError as exc:
                log.warning("document %d: a relay from %s was refused: %s", room.file_id, node, exc)

        return on_message

    async def _reconnected(self) -> None:
        for room in list(self.rooms.values()):
            room.publish("hi", room.doc.get_state())

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            for room in list(self.rooms.values()):
                try:
                    room.tick()
                except Exception:
                    log.exception("document %d: tick failed", room.file_id)
