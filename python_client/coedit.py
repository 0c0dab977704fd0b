"""Co-editing a text file live (protocol.md, "Co-editing"), with a pycrdt document.

    async with LiveSession.connect(server, token) as live:
        doc = await DocSession.join(live, "/notes.md")
        doc.insert(0, "hello ")                  # positions in code points (str indices)
        await doc.wait_for(lambda text: "bye" in text)
        doc.set_awareness({"user": {"name": "bot"}})
        await doc.leave()

Local edits go through ``doc.doc`` (a pycrdt ``Doc`` with one ``Text`` named ``text``); each
transaction is sent as one ``doc_update``. Remote updates are applied as they arrive. After a lost
connection, ``rejoin(new_live)`` syncs both ways with state vectors: nothing typed is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from pycrdt import Doc, Text, TransactionEvent

from python_client.live import LiveSession
from server.coedit import awareness
from server.coedit.text import TEXT, YDoc, apply_diff, units
from server.core.errors import ErrorCode, SatchelError
from server.ws.protocol import Frame, MsgType

log = logging.getLogger(__name__)
AWARENESS_RENEW = 15.0  # seconds, as Yjs does (the server drops states not renewed for 30 s)


class DocClosed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(f"the document was closed: {reason}")
        self.reason = reason


class DocSession:
    def __init__(self, live: LiveSession, path: str, ns: int | None, doc: YDoc | None = None) -> None:
        self.live, self.path, self.ns = live, path, ns
        self.doc: YDoc = doc if doc is not None else Doc()
        self.text: Text = self.doc.get(TEXT, type=Text)
        self.handle = 0
        self.file_id = 0
        self.role = ""
        self.rev: int | None = None
        self.saved: list[int] = []  # revisions announced by doc_saved, in order
        self.errors: list[SatchelError] = []  # refusals of our updates (e.g. a viewer's edit)
        self.peers: dict[int, Any] = {}  # awareness client id -> state of the others
        self.closed: str | None = None
        self._changed = asyncio.Event()
        self._remote = False
        self._outbox: asyncio.Queue[tuple[MsgType, bytes]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._aw_clock = 0
        self._aw_state: Any = None
        self._sub = self.doc.observe(self._on_transaction)

    # ------------------------------------------------------------ joining

    @classmethod
    async def join(cls, live: LiveSession, path: str, ns: int | None = None, doc: YDoc | None = None) -> DocSession:
        session = cls(live, path, ns, doc)
        await session._join()
        return session

    async def _join(self) -> None:
        body: dict[str, Any] = {"path": self.path, "sv": self.doc.get_state()}
        if self.file_id:  # joined before: the file's document wherever the file is now
            body["file_id"] = self.file_id
        elif self.ns is not None:
            body["ns"] = self.ns
        reply = await self.live.request(MsgType.doc_join, body)
        b = reply.body
        self.handle, self.file_id, self.role, self.rev = b["doc"], b["file_id"], b["role"], b.get("rev")
        self.ns, self.path, self.closed = b["ns"], b["path"], None
        self._apply_remote(b["update"])
        self.live.route_doc(self.handle, self._on_frame)
        self._sender = asyncio.create_task(self._send_loop())
        if self.role == "editor":
            missing = self.doc.get_update(b["sv"])
            if missing != b"\x00\x00":
                self._outbox.put_nowait((MsgType.doc_update, missing))
        if self._aw_state is not None:
            self._send_awareness()

    async def rejoin(self, live: LiveSession) -> None:
        """Join again on a new connection (after a disconnect or a server restart)."""
        self._stop_tasks()
        self.live.doc_routes.pop(self.handle, None)
        self.live = live
        await self._join()

    async def leave(self) -> None:
        self._stop_tasks(flush=True)
        if self._aw_state is not None:
            self._aw_state = None
            with contextlib.suppress(Exception):
                await self.live.send_doc(MsgType.doc_awareness, self.handle, self._awareness_update())
        with contextlib.suppress(SatchelError):
            await self.live.request(MsgType.doc_leave, {"doc": self.handle})
        self.live.doc_routes.pop(self.handle, None)

    def _stop_tasks(self, flush: bool = False) -> None:
        for task in (self._sender, self._renewer):
            if task is not None:
                task.cancel()
        self._sender = self._renewer = None

    # ------------------------------------------------------------ edits

    @property
    def value(self) -> str:
        return str(self.text)

    def insert(self, index: int, s: str) -> None:
        """Insert *s* before code point *index* (converted to pycrdt's units)."""
        current = str(self.text)
        self.text.insert(units(current[:index]), s)

    def delete(self, start: int, end: int) -> None:
        """Delete code points start..end."""
        current = str(self.text)
        a = units(current[:start])
        del self.text[a:a + units(current[start:end])]

    def replace_all(self, new: str) -> None:
        """Make the text *new* with a minimal diff (as the server merges external revisions)."""
        with self.doc.transaction():
            apply_diff(self.text, str(self.text), new)

    def _on_transaction(self, event: TransactionEvent) -> None:
        if self._remote or event.update == b"\x00\x00":
            return
        self._outbox.put_nowait((MsgType.doc_update, event.update))
        self._changed.set()

    async def _send_loop(self) -> None:
        while True:
            mtype, data = await self._outbox.get()
            try:
                await self.live.send_doc(mtype, self.handle, data)
            except Exception as exc:  # the connection is gone: keep it for rejoin (state vectors cover it)
                log.debug("document %d: send failed (%s)", self.handle, exc)
                return
            finally:
                self._outbox.task_done()

    async def flush(self) -> None:
        """Wait until every local edit was handed to the connection."""
        if self._sender is not None and not self._sender.done():
            await self._outbox.join()

    # ------------------------------------------------------------ remote

    def _apply_remote(self, update: bytes) -> None:
        self._remote = True
        try:
            self.doc.apply_update(update)
        finally:
            self._remote = False
        self._changed.set()

    def _on_frame(self, frame: Frame) -> None:
        b = frame.body
        if frame.type is MsgType.doc_update and isinstance(b.get("update"), bytes):
            self._apply_remote(b["update"])
        elif frame.type is MsgType.doc_awareness and isinstance(b.get("update"), bytes):
            for client, _clock, state in awareness.decode(b["update"]):
                if client == self.doc.client_id:
                    continue
                if state == awareness.NULL:
                    self.peers.pop(client, None)
                else:
                    self.peers[client] = json.loads(state)
        elif frame.type is MsgType.doc_saved:
            self.rev = b.get("rev")
            if isinstance(self.rev, int):
                self.saved.append(self.rev)
        elif frame.type is MsgType.doc_closed:
            self.closed = str(b.get("reason"))
            self._stop_tasks()
        elif frame.type is MsgType.error:
            self.errors.append(SatchelError(_code(b.get("code")), str(b.get("message", ""))))
        self._changed.set()

    async def wait_for(self, pred: Callable[[str], bool], timeout: float = 10) -> str:
        """Wait until pred(text) holds (or the document closes: ``DocClosed``)."""
        async with asyncio.timeout(timeout):
            while True:
                self._changed.clear()
                text = str(self.text)
                if pred(text):
                    return text
                if self.closed is not None:
                    raise DocClosed(self.closed)
                await self._changed.wait()

    async def wait_until(self, pred: Callable[[], bool], timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                self._changed.clear()
                if pred():
                    return
                await self._changed.wait()

    # ------------------------------------------------------------ awareness

    def set_awareness(self, state: Any) -> None:
        """Publish this session's awareness state (cursor, user…); None removes it."""
        self._aw_state = state
        self._send_awareness()
        if state is not None and (self._renewer is None or self._renewer.done()):
            self._renewer = asyncio.create_task(self._renew_loop())

    def _awareness_update(self) -> bytes:
        self._aw_clock += 1
        return awareness.encode([(self.doc.client_id, self._aw_clock, json.dumps(self._aw_state))])

    def _send_awareness(self) -> None:
        self._outbox.put_nowait((MsgType.doc_awareness, self._awareness_update()))

    async def _renew_loop(self) -> None:
        while self._aw_state is not None:
            await asyncio.sleep(AWARENESS_RENEW)
            self._send_awareness()


def _code(raw: object) -> ErrorCode:
    try:
        return ErrorCode(str(raw))
    except ValueError:
        return ErrorCode.internal
