"""The live channel: a WebSocket session to the server (protocol.md, "WebSocket").

    async with LiveSession.connect(server, token) as live:
        await live.subscribe(ns, cursor)            # replay after cursor, then live pushes
        frame = await live.next_push()               # change / resync / presence_event frames

    async for change in watch_changes(client, cursors):   # reconnects, resumes, fills gaps
        ...

``watch_changes`` is what sync clients use: it keeps a cursor per namespace (in a ``CursorStore``,
so a restarted client resumes where it stopped), reconnects with capped exponential backoff and
jitter, detects a gap in ``seq`` (or a ``resync``) and fills it from ``GET /api/v1/changes``, so
every change arrives once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from python_client.api import SatchelClient
from server.core.errors import ErrorCode, SatchelError
from server.ws.protocol import (
    CLIENT_MAX_FRAME,
    RECONNECT,
    SUBPROTOCOL,
    VERSION,
    CloseCode,
    Frame,
    MsgType,
    decode,
    encode,
    parse_cursor,
)

log = logging.getLogger(__name__)
REPLIES = {MsgType.welcome, MsgType.pong, MsgType.subscribed, MsgType.unsubscribed, MsgType.committed,
           MsgType.presence, MsgType.error, MsgType.doc_joined, MsgType.doc_left}
DOC_PUSHES = {MsgType.doc_update, MsgType.doc_awareness, MsgType.doc_saved, MsgType.doc_closed}


class SessionClosed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed ({code}): {reason}")
        self.code, self.reason = code, reason

    @property
    def may_reconnect(self) -> bool:
        return self.code is None or self.code in RECONNECT or self.code < 4000


def ws_url(server: str) -> str:
    base = server.rstrip("/")
    return ("wss://" + base[8:] if base.startswith("https://") else "ws://" + base.removeprefix("http://")) \
        + "/api/v1/ws"


class LiveSession:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.welcome: dict[str, Any] = {}
        self._next_id = 1
        self._waiting: dict[int, asyncio.Future[Frame]] = {}
        self.pushes: asyncio.Queue[Frame | SessionClosed] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        # Co-editing (python_client/coedit.py): pushes per doc handle, and errors of the
        # fire-and-forget doc_update / doc_awareness requests, go to their document session.
        self.doc_routes: dict[int, Callable[[Frame], None]] = {}
        self.doc_requests: dict[int, int] = {}  # request id -> doc handle
        self._doc_early: list[Frame] = []  # pushes that overtook the caller's registration of the handle

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, server: str, token: str, timeout: float = 10) -> AsyncIterator[LiveSession]:
        conn = await websockets.connect(ws_url(server), subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                                        max_size=CLIENT_MAX_FRAME, compression=None, open_timeout=timeout,
                                        ping_interval=None)
        session = cls(conn)
        session._reader = asyncio.create_task(session._read_loop())
        try:
            welcome = await session.request(MsgType.hello, {"versions": [VERSION], "token": token})
            session.welcome = welcome.body
            yield session
        finally:
            await session.close()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.conn.close()
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read_loop(self) -> None:
        closed: SessionClosed
        try:
            async for data in self.conn:
                if isinstance(data, str):
                    continue
                frame = decode(data, CLIENT_MAX_FRAME)
                if frame.type is MsgType.ping:
                    await self.conn.send(encode(Frame(MsgType.pong, frame.id)))
                    continue
                if self._route_doc(frame):
                    continue
                waiter = self._waiting.pop(frame.id, None) if frame.id and frame.type in REPLIES else None
                if waiter is not None:
                    if not waiter.done():
                        waiter.set_result(frame)
                else:
                    self.pushes.put_nowait(frame)
            closed = SessionClosed(self.conn.close_code, self.conn.close_reason or "connection closed")
        except websockets.ConnectionClosed as exc:
            closed = SessionClosed(exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else str(exc))
        except Exception as exc:  # a broken frame from the server: treat as a lost connection
            closed = SessionClosed(None, f"{type(exc).__name__}: {exc}")
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(closed)
        self._waiting.clear()
        self.pushes.put_nowait(closed)

    def _route_doc(self, frame: Frame) -> bool:
        if frame.type in DOC_PUSHES:
            route = self.doc_routes.get(frame.body.get("doc"))  # type: ignore[arg-type]
        elif frame.type is MsgType.error and frame.id in self.doc_requests:
            route = self.doc_routes.get(self.doc_requests.pop(frame.id))
        else:
            return False
        if route is not None:
            route(frame)
        elif frame.type in DOC_PUSHES and len(self._doc_early) < 10_000:
            self._doc_early.append(frame)
        return True

    def route_doc(self, handle: int, route: Callable[[Frame], None]) -> None:
        """Send *handle*'s pushes (and refusals) to *route*, starting with any that came early."""
        self.doc_routes[handle] = route
        early = [f for f in self._doc_early if f.body.get("doc") == handle]
        self._doc_early = [f for f in self._doc_early if f.body.get("doc") != handle]
        for frame in early:
            route(frame)

    async def send_doc(self, mtype: MsgType, handle: int, update: bytes) -> None:
        """A doc_update / doc_awareness: no reply; a refusal goes to the document's route."""
        rid = self._next_id
        self._next_id += 1
        self.doc_requests[rid] = handle
        if len(self.doc_requests) > 10_000:  # successes leave no trace: forget the oldest ids
            for old in list(self.doc_requests)[:5_000]:
                del self.doc_requests[old]
        await self.conn.send(encode(Frame(mtype, rid, {"doc": handle, "update": update})))

    async def request(self, mtype: MsgType, body: dict[str, Any], timeout: float = 30) -> Frame:
        """Send a request and wait for its reply; an ``error`` reply raises ``SatchelError``."""
        rid = self._next_id
        self._next_id += 1
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            await self.conn.send(encode(Frame(mtype, rid, body)))
            async with asyncio.timeout(timeout):
                frame = await fut
        finally:
            self._waiting.pop(rid, None)  # a timed-out or failed request leaves no waiter behind
        if frame.type is MsgType.error:
            details = {k: v for k, v in frame.body.items() if k not in ("code", "message")}
            raise SatchelError(_code(frame.body.get("code")), str(frame.body.get("message", "")), **details)
        return frame

    async def next_push(self, timeout: float | None = None) -> Frame:
        async with asyncio.timeout(timeout):
            item = await self.pushes.get()
        if isinstance(item, SessionClosed):
            self.pushes.put_nowait(item)  # stays closed for every later call
            raise item
        return item

    async def subscribe(self, ns: int, cursor: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"ns": ns}
        if cursor is not None:
            body["cursor"] = cursor
        return (await self.request(MsgType.subscribe, body, timeout=120)).body

    async def unsubscribe(self, ns: int) -> None:
        await self.request(MsgType.unsubscribe, {"ns": ns})

    async def ping(self) -> None:
        await self.request(MsgType.ping, {})

    async def commit(self, path: str, parent_rev: int | None, size: int, ops: list[Any],
                     mtime: int | None = None, mime: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"path": path, "parent_rev": parent_rev, "size": size, "ops": ops}
        if mtime is not None:
            body["mtime"] = mtime
        if mime is not None:
            body["mime"] = mime
        entry: dict[str, Any] = (await self.request(MsgType.commit, body)).body["entry"]
        return entry

    async def presence_set(self, ns: int, path: str, state: str | None) -> list[dict[str, Any]]:
        members: list[dict[str, Any]] = (await self.request(
            MsgType.presence_set, {"ns": ns, "path": path, "state": state})).body["members"]
        return members


def _code(raw: object) -> ErrorCode:
    try:
        return ErrorCode(str(raw))
    except ValueError:
        return ErrorCode.internal


class CursorStore:
    """Cursors per namespace, in memory or in a JSON file (written atomically)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.cursors: dict[int, str] = {}
        if path and path.exists():
            self.cursors = {int(k): v for k, v in json.loads(path.read_text()).items()}

    def get(self, ns: int) -> str | None:
        return self.cursors.get(ns)

    def set(self, ns: int, cursor: str) -> None:
        self.cursors[ns] = cursor
        if self.path:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({str(k): v for k, v in self.cursors.items()}))
            os.replace(tmp, self.path)


async def watch_changes(client: SatchelClient, store: CursorStore | None = None, *,
                        namespaces: list[int] | None = None, from_now: bool = True,
                        max_backoff: float = 10.0) -> AsyncIterator[dict[str, Any]]:
    """Every change of the given namespaces (default: all readable), once each, in order per
    namespace, across disconnects. Without a stored cursor, starts from now (``from_now``) or
    from the beginning of the journal.

    One loop handles every push: a change at ``last + 1`` is new; at or below ``last`` a duplicate
    (replay and live overlap); further ahead a gap, filled from ``GET /api/v1/changes`` first. A
    ``resync`` re-subscribes from the stored cursor, so the server replays what was dropped.

    Shared folders: a ``revoked`` push ends that namespace's feed (access was removed). Watching
    every namespace (no *namespaces*), the root journal's ``mount`` entry subscribes to the new
    shared folder (from now) and ``unmount`` drops it.
    """
    assert client.token, "log in first"
    store = store or CursorStore()
    wanted = None if namespaces is None else list(namespaces)
    attempt = 0
    while True:
        try:
            async with LiveSession.connect(client.server, client.token) as live:
                attempt = 0
                targets = wanted if wanted is not None else [n["ns"] for n in live.welcome["namespaces"]]
                root = next(n["ns"] for n in live.welcome["namespaces"] if n["path"] == "/") \
                    if wanted is None else None
                feeds = _Feeds(client, live, store)
                last, pending = feeds.last, feeds.pending
                for ns in targets:
                    await feeds.follow(ns, from_start=not from_now)
                while True:
                    frame = await _next_push(live, pending)
                    ns = int(frame.body.get("ns", -1))
                    if frame.type is MsgType.resync and ns in last:
                        pending.add(asyncio.create_task(live.subscribe(ns, store.get(ns))))
                        continue
                    if frame.type is MsgType.revoked and ns in last:
                        log.info("access to namespace %d ended (%s)", ns, frame.body.get("reason"))
                        del last[ns]
                        if wanted is not None:
                            wanted.remove(ns)
                        continue
                    if frame.type is not MsgType.change or ns not in last:
                        continue
                    entry = frame.body
                    if entry["seq"] <= last[ns]:
                        continue
                    if entry["seq"] > last[ns] + 1:
                        async for missed in _fill_gap(client, ns, store.get(ns), entry["seq"]):
                            last[ns] = missed["seq"]
                            store.set(ns, missed["cursor"])
                            yield missed
                            if ns == root and missed["kind"] == "mount":
                                await feeds.mount_changed(missed)
                    last[ns] = entry["seq"]
                    store.set(ns, entry["cursor"])
                    yield entry
                    if ns == root and entry["kind"] == "mount":
                        await feeds.mount_changed(entry)
        except SessionClosed as exc:
            if exc.code == CloseCode.unauthorized:
                raise SatchelError(ErrorCode.unauthorized, exc.reason) from exc
            if not exc.may_reconnect:  # e.g. 4002: reconnecting would only be refused again
                raise SatchelError(ErrorCode.bad_request, f"the server ended the session: {exc}") from exc
            log.info("live session closed (%s); reconnecting", exc)
        except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed, TimeoutError) as exc:
            log.info("live session failed (%s); reconnecting", type(exc).__name__)
        attempt += 1
        await asyncio.sleep(min(max_backoff, 0.1 * 2**attempt) * (0.5 + random.random()))


class _Feeds:
    """The namespaces one session follows: the last seq seen of each, and subscriptions in flight."""

    def __init__(self, client: SatchelClient, live: LiveSession, store: CursorStore) -> None:
        self.client, self.live, self.store = client, live, store
        self.last: dict[int, int] = {}
        self.pending: set[asyncio.Task[dict[str, Any]]] = set()

    async def follow(self, ns: int, *, from_start: bool, strict: bool = True) -> None:
        cursor = self.store.get(ns)
        if cursor is None:
            cursor = f"v1.{ns}.0" if from_start else (await self.client.request(
                "GET", "/api/v1/changes/latest", params={"ns": ns}))["cursor"]
            self.store.set(ns, cursor)
        self.last[ns] = parse_cursor(cursor)[1]
        sub = self.live.subscribe(ns, cursor) if strict else self._subscribe_mount(ns, cursor)
        self.pending.add(asyncio.create_task(sub))

    async def _subscribe_mount(self, ns: int, cursor: str) -> dict[str, Any]:
        """A shared folder removed again meanwhile is dropped (its ``unmount`` follows in the
        root journal), not an error that ends the watch."""
        try:
            return await self.live.subscribe(ns, cursor)
        except SatchelError as exc:
            if exc.code not in (ErrorCode.not_found, ErrorCode.bad_cursor):
                raise
            log.info("cannot follow the shared folder %d: %s", ns, exc.message)
            self.last.pop(ns, None)
            return {}

    async def mount_changed(self, entry: dict[str, Any]) -> None:
        """A shared folder came (follow it from now) or went (its feed ends) in the user's tree."""
        ns = int(entry["id"])
        if entry["op"] == "mount" and ns not in self.last:
            try:
                await self.follow(ns, from_start=False, strict=False)
            except SatchelError as exc:  # removed again meanwhile: its unmount follows
                log.info("cannot follow the new shared folder %d: %s", ns, exc.message)
        elif entry["op"] == "unmount" and self.last.pop(ns, None) is not None:
            with contextlib.suppress(SatchelError):  # the server may have ended the feed already
                await self.live.unsubscribe(ns)


async def _next_push(live: LiveSession, pending: set[asyncio.Task[dict[str, Any]]]) -> Frame:
    """The next push, or the error of a refused subscription (bad_cursor, not_found), which ends
    the watch. Waits on both: a refusal must not wait for a push that may never come."""
    while True:
        for task in [t for t in pending if t.done()]:
            pending.discard(task)
            task.result()
        if not pending:
            return await live.next_push()
        getter = asyncio.ensure_future(live.next_push())
        done, _ = await asyncio.wait({getter, *pending}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()  # a cancelled Queue.get leaves its item in the queue


async def _fill_gap(client: SatchelClient, ns: int, cursor: str | None, upto: int) -> AsyncIterator[dict[str, Any]]:
    if cursor is None:
        return
    while True:
        page = await client.request("GET", "/api/v1/changes", params={"cursor": cursor})
        for entry in page["entries"]:
            if entry["seq"] >= upto:
                return
            yield entry
        cursor = page["cursor"]
        if not page["has_more"]:
            return
