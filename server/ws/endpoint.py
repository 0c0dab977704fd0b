"""The WebSocket endpoint ``/api/v1/ws``: one ``Connection`` per client around the sans-I/O session.

    reader  -> decode -> SessionState.receive -> handler task (bounded by MAX_IN_FLIGHT)
    handlers/hub -> outbound queue (bounded) -> writer -> socket
    heartbeat: ping every SATCHEL_WS_HEARTBEAT, close 4004 after 3 heartbeats of silence,
               re-check the device token (a logged-out device is closed with 4001)

A client too slow to take its pushes never slows anyone else: when its queue is full, its
subscription to that namespace is dropped and it gets ``resync`` with the cursor it had reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from server.coedit.manager import Coedit
from server.coedit.room import Member as DocMember
from server.coedit.room import Room
from server.core import paths
from server.core.errors import ErrorCode, SatchelError
from server.presence.base import Member, Presence, Watcher
from server.services import access, accounts, batch, changes, tree, uploads
from server.services.access import Perm
from server.services.context import Principal, Services
from server.storage.db import now_ms
from server.storage.models import Node
from server.ws.hub import Hub
from server.ws.protocol import (
    HELLO_TIMEOUT_MS,
    INLINE,
    INLINE_LIMIT,
    MAX_DOCS,
    MAX_FRAME,
    MAX_IN_FLIGHT,
    MAX_SUBSCRIPTIONS,
    SUBPROTOCOL,
    VERSION,
    CloseCode,
    Frame,
    FrameError,
    MsgType,
    ProtocolError,
    decode,
    doc_frame_limit,
    encode,
    error_frame,
    field_int,
    field_str,
    make_cursor,
    parse_cursor,
)
from server.ws.session import SessionState

log = logging.getLogger(__name__)
QUEUE_FRAMES = 2048
QUEUE_BYTES = 16 * 1024 * 1024
CLOSE_TIMEOUT = 2.0  # seconds a close frame may wait for a peer that stopped reading


class Transport(Protocol):
    async def send(self, data: bytes) -> None: ...

    async def recv(self) -> bytes | None:
        """The next binary message, or None when the peer has gone."""

    async def close(self, code: int, reason: str) -> None: ...


class StarletteTransport:
    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def recv(self) -> bytes | None:
        msg = await self.ws.receive()
        if msg["type"] == "websocket.disconnect":
            return None
        data = msg.get("bytes")
        if data is None:
            raise FrameError("frames are binary msgpack, not text")
        return data  # type: ignore[no-any-return]

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state != WebSocketState.DISCONNECTED:
            # A peer that stopped reading blocks even the close frame: give up after a moment
            # (the endpoint then returns, and the server drops the connection).
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.ws.close(code, reason[:120])


class _Close(Exception):
    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class Feed:
    """One connection's subscription to one namespace: the hub pushes, the feed orders and queues."""

    def __init__(self, conn: Connection, ns: int) -> None:
        self.conn, self.ns = conn, ns
        self.replaying = True
        self.buffer: list[tuple[int, bytes]] = []
        self.last = 0
        self.dead = False

    def push(self, ns: int, seq: int, frame: bytes) -> None:
        if self.dead:
            return
        if self.replaying:
            self.buffer.append((seq, frame))
        elif seq > self.last:
            # last = what the client will get: a dropped frame must not move the resync cursor past it
            if not self.conn.offer(frame):
                self.conn.resync(self, "slow_consumer")
                return
            self.last = seq

    def member_changed(self, ns: int, user_id: int) -> None:
        if not self.dead and self.conn.who is not None and user_id == self.conn.who.user_id:
            self.conn.recheck_soon()


class Connection:
    def __init__(self, svc: Services, hub: Hub, presence: Presence, transport: Transport, node: str,
                 coedit: Coedit) -> None:
        self.svc, self.hub, self.presence, self.t = svc, hub, presence, transport
        self.coedit = coedit
        self.session = SessionState()
        self.id = secrets.token_urlsafe(9)
        self.member_key = f"{node}:{self.id}"
        self.who: Principal | None = None
        self.token = ""
        self.device: dict[str, Any] = {}
        self.feeds: dict[int, Feed] = {}
        self.places: dict[tuple[int, str], tuple[Member, Watcher]] = {}
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.room = asyncio.Event()
        self.last_recv = time.monotonic()
        self.heartbeat = svc.config.ws_heartbeat
        self.tasks: set[asyncio.Task[Any]] = set()
        self.docs: dict[int, tuple[Room, DocMember]] = {}  # doc handle -> its room and this session there
        self.doc_handles: dict[int, int] = {}  # file id -> doc handle
        self.next_doc = 1

    # ------------------------------------------------------------ outbound

    def offer(self, frame: bytes) -> bool:
        """Queue a push unless the queue is full (then the caller resyncs the client)."""
        if len(self.queue) >= QUEUE_FRAMES or self.queued_bytes + len(frame) > QUEUE_BYTES:
            return False
        self._enqueue(frame)
        return True

    def send(self, frame: Frame) -> None:
        """Queue a reply or control frame: bounded by the requests in flight, so always taken."""
        self._enqueue(encode(frame))

    def _enqueue(self, data: bytes) -> None:
        self.queue.append(data)
        self.queued_bytes += len(data)
        if self.queued_bytes > QUEUE_BYTES // 2:
            self.room.clear()
        self.wake.set()

    async def _writer(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                data = self.queue.popleft()
                self.queued_bytes -= len(data)
                if self.queued_bytes <= QUEUE_BYTES // 2:
                    self.room.set()
                try:
                    await self.t.send(data)
                except WebSocketDisconnect:
                    return  # the peer is gone; the reader sees the close and ends the session

    async def wait_for_room(self) -> None:
        """Backpressure for bulk sends (replays): wait until the queue is at most half full."""
        while self.queued_bytes > QUEUE_BYTES // 2 or len(self.queue) > QUEUE_FRAMES // 2:
            self.room.clear()
            await self.room.wait()

    def resync(self, feed: Feed, reason: str) -> None:
        if feed.dead:
            return
        self._drop(feed)
        log.info("session %s: resync namespace %d at seq %d (%s)", self.id, feed.ns, feed.last, reason)
        self.send(Frame(MsgType.resync, 0, {"ns": feed.ns, "cursor": make_cursor(feed.ns, feed.last),
                                            "reason": reason}))

    def recheck_soon(self) -> None:
        self._spawn(self._recheck_access())

    async def _recheck_access(self) -> None:
        """After a membership change about this user: reload their shares and end, at once, every
        subscription (and presence) in a namespace they can no longer read."""
        try:
            self.who = await accounts.authenticate(self.svc, self.token)
        except SatchelError:
            return  # a logged-out device is closed by the heartbeat
        for feed in list(self.feeds.values()):
            if access.grant(self.who, feed.ns) is None:
                self._drop(feed)
                self.send(Frame(MsgType.revoked, 0, {"ns": feed.ns, "cursor": make_cursor(feed.ns, feed.last),
                                                     "reason": "access_removed"}))
        for (ns, path), (_member, watcher) in list(self.places.items()):
            if access.grant(self.who, ns) is None:
                del self.places[(ns, path)]
                self.presence.unwatch(ns, path, watcher)
                with contextlib.suppress(SatchelError):
                    await self.presence.leave(ns, path, self.member_key)

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        close = (CloseCode.normal, "bye")
        try:
            await self._handshake()
            self._spawn(self._writer())
            # The session ends when the peer does (reader) or the heartbeat says so (idle, logged
            # out); either way the one close below runs, after cleanup (presence leave) -- the
            # heartbeat never closes by itself, as a close to a peer that stopped reading may hang.
            ends = {self._spawn(self._read_loop()), self._spawn(self._heartbeat())}
            done, _ = await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        except _Close as c:
            close = (c.code, c.reason)
        except ProtocolError as exc:
            close = (exc.close or CloseCode.bad_frame, exc.message)
        except (WebSocketDisconnect, OSError):
            pass
        except Exception:
            log.exception("session %s failed", self.id)
            close = (CloseCode.server_error, "internal error")
        finally:
            await self._cleanup()
            await self._flush_briefly()
            self.session.closed()
            await self.t.close(close[0], close[1])

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _cleanup(self) -> None:
        for feed in list(self.feeds.values()):
            feed.dead = True
            self.hub.detach(feed.ns, feed)
        self.feeds.clear()
        for (ns, path), (_member, watcher) in list(self.places.items()):
            self.presence.unwatch(ns, path, watcher)
            with contextlib.suppress(SatchelError):
                await self.presence.leave(ns, path, self.member_key)
        self.places.clear()
        for room, member in list(self.docs.values()):
            room.leave(member)
        self.docs.clear()
        self.doc_handles.clear()
        writer_and_others = list(self.tasks)
        for t in writer_and_others:
            t.cancel()

    async def _flush_briefly(self) -> None:
        """Send what is queued (an error frame before a close) for a moment; never wait long."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                while self.queue:
                    await self.t.send(self.queue.popleft())

    async def _recv_frame(self) -> Frame | None:
        data = await self.t.recv()
        if data is None:
            return None
        self.last_recv = time.monotonic()
        return decode(data)

    async def _handshake(self) -> None:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_MS / 1000):
                frame = await self._recv_frame()
        except TimeoutError:
            raise _Close(CloseCode.hello_timeout, "no hello in time") from None
        if frame is None:
            raise _Close(CloseCode.normal, "gone before hello")
        self.session.receive(frame)
        versions = frame.body.get("versions")
        if not isinstance(versions, list) or VERSION not in versions:
            self.send(error_frame(frame.id, ErrorCode.bad_request, f"this server speaks version {VERSION}",
                                  versions=[VERSION]))
            raise _Close(CloseCode.unsupported_version, f"this server speaks version {VERSION}")
        token = frame.body.get("token")
        try:
            if not isinstance(token, str) or not token:
                raise SatchelError(ErrorCode.unauthorized, "hello needs a device token")
            self.who = await accounts.authenticate(self.svc, token)
        except SatchelError as exc:
            self.send(error_frame(frame.id, exc.code, exc.message))
            raise _Close(CloseCode.unauthorized, exc.message) from None
        self.token = token
        self.device = await accounts.device_info(self.svc, self.who)
        self.session.welcomed()
        self.send(Frame(MsgType.welcome, frame.id, {
            "version": VERSION, "session": self.id,
            "user": {"id": self.who.user_id, "name": self.who.user_name}, "device_id": self.who.device_id,
            "heartbeat_ms": int(self.heartbeat * 1000), "idle_timeout_ms": int(self.heartbeat * 3000),
            "limits": {"max_frame": MAX_FRAME, "inline": INLINE_LIMIT, "subscriptions": MAX_SUBSCRIPTIONS,
                       "doc_frame": doc_frame_limit(self.svc.config.coedit_max_bytes),
                       "in_flight": MAX_IN_FLIGHT},
            "namespaces": [{"ns": self.who.root_ns_id, "path": "/", "role": "owner"},
                           *({"ns": m.ns_id, "path": m.path, "role": m.role}
                              | ({"kind": "file"} if m.file is not None else {}) for m in self.who.mounts)],
        }))

    async def _read_loop(self) -> None:
        while True:
            try:
                frame = await self._recv_frame()
                if frame is None:
                    return
                frame = self.session.receive(frame)
            except ProtocolError as exc:
                if exc.close is not None:
                    self.send(error_frame(exc.request_id, exc.code, exc.message))
                    raise
                self.send(error_frame(exc.request_id, exc.code, exc.message))
                continue
            if frame.type is MsgType.ping:
                self.send(Frame(MsgType.pong, frame.id))
            elif frame.type in INLINE:
                self._doc_inline(frame)
            elif frame.type is not MsgType.pong:
                self.session.started()
                self._spawn(self._handle(frame))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            if time.monotonic() - self.last_recv > 3 * self.heartbeat:
                raise _Close(CloseCode.idle_timeout, "no frame received in time")
            try:
                await accounts.authenticate(self.svc, self.token)  # logged out since? (checked per heartbeat)
            except SatchelError as exc:
                if exc.code is ErrorCode.unauthorized:
                    self.send(error_frame(0, exc.code, exc.message))
                    raise _Close(CloseCode.unauthorized, exc.message) from None
            for (ns, path), (member, _watcher) in list(self.places.items()):
                # set, not touch: it also brings back a member that expired during an outage
                # (same state again sends no event).
                with contextlib.suppress(SatchelError):
                    await self.presence.set(ns, path, member)
            self.send(Frame(MsgType.ping, 0))

    # ------------------------------------------------------------ requests

    async def _handle(self, frame: Frame) -> None:
        try:
            # Every request is authorized against the shares as they are now, not as at hello (a
            # logged-out device gets ``unauthorized`` here, and the heartbeat closes it with 4001).
            self.who = await accounts.authenticate(self.svc, self.token)
            handler = {
                MsgType.subscribe: self._subscribe,
                MsgType.unsubscribe: self._unsubscribe,
                MsgType.commit: self._commit,
                MsgType.commit_batch: self._commit_batch,
                MsgType.fetch: self._fetch,
                MsgType.presence_set: self._presence_set,
                MsgType.doc_join: self._doc_join,
                MsgType.doc_leave: self._doc_leave,
            }[frame.type]
            await handler(frame)
        except ProtocolError as exc:
            self.send(error_frame(frame.id, exc.code, exc.message))
        except SatchelError as exc:
            self.send(error_frame(frame.id, exc.code, exc.message, **_plain(exc.details)))
        except Exception:
            log.exception("session %s: %s failed", self.id, frame.type.name)
            self.send(error_frame(frame.id, ErrorCode.internal, "internal error"))
        finally:
            self.session.finished()

    async def _subscribe(self, frame: Frame) -> None:
        assert self.who is not None
        ns = field_int(frame, "ns", maximum=2**31 - 1)
        assert ns is not None
        changes.check_readable(self.who, ns)
        cursor = frame.body.get("cursor")
        start: int | None = None
        if cursor is not None:
            cns, start = parse_cursor(cursor)
            if cns != ns:
                raise SatchelError(ErrorCode.bad_cursor, "this cursor belongs to another namespace")
        old = self.feeds.pop(ns, None)
        if old is not None:  # subscribing again restarts the feed from the given cursor
            old.dead = True
            self.hub.detach(ns, old)
        feed = Feed(self, ns)
        self.feeds[ns] = feed
        self.session.subscriptions.add(ns)
        await self.hub.attach(ns, feed)
        async with self.svc.db.read() as s:
            head = await changes.head_seq(s, ns)
        if start is None:
            feed.last = head
        elif start > head:
            self._drop(feed)
            raise SatchelError(ErrorCode.bad_cursor, "this cursor is ahead of the journal")
        else:
            feed.last = start
            while feed.last < head and not feed.dead:
                async with self.svc.db.read() as s:
                    page = await changes.entries_after(s, ns, feed.last, changes.PAGE)
                for entry in page:
                    self._enqueue(encode(Frame(MsgType.change, 0, entry)))
                    feed.last = entry["seq"]
                if not page:
                    break
                await self.wait_for_room()
        if feed.dead:
            return
        feed.replaying = False
        for seq, data in feed.buffer:
            if seq > feed.last:
                feed.last = seq
                self._enqueue(data)
        feed.buffer.clear()
        self.send(Frame(MsgType.subscribed, frame.id, {"ns": ns, "seq": feed.last,
                                                       "cursor": make_cursor(ns, feed.last)}))

    def _drop(self, feed: Feed) -> None:
        feed.dead = True
        self.hub.detach(feed.ns, feed)
        if self.feeds.get(feed.ns) is feed:
            del self.feeds[feed.ns]
        self.session.subscriptions.discard(feed.ns)

    async def _unsubscribe(self, frame: Frame) -> None:
        ns = field_int(frame, "ns", maximum=2**31 - 1)
        assert ns is not None
        feed = self.feeds.get(ns)
        if feed is not None:
            self._drop(feed)
        self.send(Frame(MsgType.unsubscribed, frame.id, {"ns": ns}))

    async def _commit(self, frame: Frame) -> None:
        assert self.who is not None
        entry = await uploads.commit_ops(self.svc, self.who, frame.body)
        self.send(Frame(MsgType.committed, frame.id, {"entry": entry}))

    async def _commit_batch(self, frame: Frame) -> None:
        assert self.who is not None
        results = await batch.commit_batch(self.svc, self.who, frame.body)
        self.send(Frame(MsgType.committed_batch, frame.id, {"results": results}))

    async def _fetch(self, frame: Frame) -> None:
        assert self.who is not None
        results = await batch.fetch(self.svc, self.who, frame.body)
        self.send(Frame(MsgType.fetched, frame.id, {"results": results}))

    async def _presence_set(self, frame: Frame) -> None:
        assert self.who is not None
        ns = field_int(frame, "ns", maximum=2**31 - 1)
        assert ns is not None
        changes.check_readable(self.who, ns)
        path = paths.normalize(frame.body.get("path"))
        state = field_str(frame, "state", required=False, max_len=16)
        if state not in (None, "viewing", "editing"):
            raise SatchelError(ErrorCode.bad_request, "state is 'viewing', 'editing' or nil (leave)")
        place = (ns, path)
        if state is None:
            if place in self.places:
                _member, watcher = self.places.pop(place)
                self.presence.unwatch(ns, path, watcher)
                await self.presence.leave(ns, path, self.member_key)
            self.send(Frame(MsgType.presence, frame.id, {"ns": ns, "path": path, "members": []}))
            return
        old = self.places.get(place)
        member = Member(self.member_key, self.who.user_id, self.who.user_name, self.who.device_id,
                        self.device["name"], self.device["kind"], state, old[0].since_ms if old else now_ms())
        if old is None:
            watcher = self._presence_watcher(ns, path)
            self.presence.watch(ns, path, watcher)
        else:
            watcher = old[1]
        self.places[place] = (member, watcher)
        members = await self.presence.set(ns, path, member)
        self.send(Frame(MsgType.presence, frame.id, {"ns": ns, "path": path,
                                                     "members": [m.to_wire() for m in members]}))

    def _presence_watcher(self, ns: int, path: str) -> Watcher:
        def on_event(event: str, member: Member) -> None:
            if member.key != self.member_key:  # a client knows its own moves
                self.offer(encode(Frame(MsgType.presence_event, 0, {
                    "ns": ns, "path": path, "event": event, "member": member.to_wire()})))

        return on_event


    # ------------------------------------------------------------ co-editing (server/coedit/)

    def _doc_role(self, ns: int) -> str:
        """The caller's role in a document of namespace *ns* (refused without read access)."""
        assert self.who is not None
        grant = access.check_ns(self.who, ns, Perm.READ)
        return "editor" if Perm.WRITE in access.perms(grant) else "viewer"

    async def _doc_join(self, frame: Frame) -> None:
        assert self.who is not None
        ns = field_int(frame, "ns", required=False, maximum=2**31 - 1)
        file_id = field_int(frame, "file_id", required=False, maximum=2**31 - 1)
        sv = frame.body.get("sv", b"")
        if not isinstance(sv, bytes):
            raise SatchelError(ErrorCode.bad_request, "'sv' must be bin (a Yjs state vector)", field="sv")
        node: Node | None
        if file_id is not None:
            # By id: the document of that file wherever it is now (moved, renamed, shared since).
            async with self.svc.db.read() as s:
                node = await tree.get_node_by_id(s, self.who, file_id, need=Perm.READ)
            ns, inner = node.ns_id, node.path
        else:
            if ns is None:
                loc = tree.locate(self.who, frame.body.get("path"), need=Perm.READ)
                ns, inner = loc.ns_id, loc.path
            else:
                access.check_ns(self.who, ns, Perm.READ)
                inner = paths.normalize(frame.body.get("path"))
            async with self.svc.db.read() as s:
                node = await tree.get_node(s, ns, inner)
            if node is None:
                raise SatchelError(ErrorCode.not_found, "no such file", path=inner)
        if node.kind != "file":
            raise SatchelError(ErrorCode.is_a_directory, f"{inner} is a folder", path=inner)
        handle = self.doc_handles.get(node.id)
        if handle is None and len(self.docs) >= MAX_DOCS:
            raise SatchelError(ErrorCode.too_many_requests, f"at most {MAX_DOCS} documents per connection")
        role = self._doc_role(ns)
        room = await self.coedit.room(node.id, ns, inner)
        for _ in range(3):
            if not room.closed:
                break
            # It emptied and closed while this join waited: open it afresh.
            room = await self.coedit.room(node.id, ns, inner)
        else:
            raise SatchelError(ErrorCode.unavailable, "the document keeps closing; try again")
        if room.ns_id != ns:  # the file was shared while this join looked it up: go by the share
            self.who = await accounts.authenticate(self.svc, self.token)
            role = self._doc_role(room.ns_id)
        if handle is not None:  # joining again: a fresh sync on the same handle
            previous = self.docs.pop(handle, None)
            if previous is not None:
                previous[0].leave(previous[1])
        else:
            handle = self.next_doc
            self.next_doc += 1
        member = DocMember(self, handle, self.who, role)
        synced = room.join(member, sv)
        if len(synced["update"]) > doc_frame_limit(self.svc.config.coedit_max_bytes):
            room.leave(member)
            raise SatchelError(ErrorCode.too_large, "this document's state is too large to send",
                               limit=self.svc.config.coedit_max_bytes)
        self.docs[handle] = (room, member)
        self.doc_handles[node.id] = handle
        self.send(Frame(MsgType.doc_joined, frame.id, {"doc": handle, "ns": room.ns_id, "path": room.path,
                                                       "file_id": node.id, "role": role, **synced}))
        snapshot = room.awareness_snapshot()
        if snapshot is not None:
            self.send(Frame(MsgType.doc_awareness, 0, {"doc": handle, "update": snapshot}))

    async def _doc_leave(self, frame: Frame) -> None:
        handle = field_int(frame, "doc", maximum=2**31 - 1)
        assert handle is not None
        entry = self.docs.pop(handle, None)
        if entry is None:
            raise SatchelError(ErrorCode.not_found, "no such document handle")
        room, member = entry
        self.doc_handles.pop(room.file_id, None)
        room.leave(member)
        self.send(Frame(MsgType.doc_left, frame.id, {"doc": handle}))

    def doc_gone(self, handle: int) -> None:
        """The room ended this session (doc_closed was sent)."""
        entry = self.docs.pop(handle, None)
        if entry is not None:
            self.doc_handles.pop(entry[0].file_id, None)

    def _doc_inline(self, frame: Frame) -> None:
        """doc_update / doc_awareness: handled in arrival order, no reply unless refused."""
        try:
            handle = field_int(frame, "doc", maximum=2**31 - 1)
            update = frame.body.get("update")
            if not isinstance(update, bytes):
                raise SatchelError(ErrorCode.bad_request, "'update' must be bin", field="update")
            entry = self.docs.get(handle) if handle is not None else None
            if entry is None:
                raise SatchelError(ErrorCode.not_found, "no such document handle")
            room, member = entry
            if frame.type is MsgType.doc_update:
                room.client_update(member, update)
            else:
                room.client_awareness(member, update)
        except ProtocolError as exc:
            self.send(error_frame(frame.id, exc.code, exc.message))
        except SatchelError as exc:
            self.send(error_frame(frame.id, exc.code, exc.message, **_plain(exc.details)))
        except Exception:
            log.exception("session %s: %s failed", self.id, frame.type.name)
            self.send(error_frame(frame.id, ErrorCode.internal, "internal error"))


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if isinstance(v, str | int | float | bool | list | None)}


async def websocket_endpoint(ws: WebSocket) -> None:
    svc: Services = ws.app.state.services
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    conn = Connection(svc, ws.app.state.hub, ws.app.state.presence, StarletteTransport(ws), ws.app.state.node,
                      ws.app.state.coedit)
    await conn.run()
