"""One co-edited document on one node: the Y.Doc, the local sessions, saving, merging, relaying.

    client update  -> check role (access.py) and size -> apply -> other local sessions + bus
    bus update     -> apply -> every local session
    journal change -> of this file: a coedit save (the row says so) is adopted, any other revision
                      is merged (merge.py); a delete closes the sessions; a member change re-checks
    quiet period / last leave -> save: the text as a revision (conflict: catch up, retry) + state

Everything that changes the document runs on the event loop without awaiting in between, so a
Y.Doc is never used by two coroutines at once; saving and merging hold ``lock`` across their
awaits so that they never interleave with each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack
from pycrdt import Doc, merge_updates

from server.coedit import awareness, merge, store
from server.coedit.text import UNIT_BYTES, YDoc, text_of
from server.core import paths
from server.core.errors import ErrorCode, SatchelError
from server.services import access, accounts
from server.services.access import Perm
from server.services.context import Principal, Services
from server.ws.protocol import Frame, MsgType, encode

log = logging.getLogger(__name__)
EMPTY_UPDATE = b"\x00\x00"
SAVE_RETRIES = 5


class Peer(Protocol):
    """What a room needs of a WebSocket connection (server/ws/endpoint.py ``Connection``)."""

    member_key: str
    who: Principal | None
    token: str

    def offer(self, frame: bytes) -> bool: ...

    def send(self, frame: Frame) -> None: ...

    def doc_gone(self, handle: int) -> None: ...


@dataclass(eq=False)
class Member:
    peer: Peer
    handle: int
    who: Principal
    role: str  # editor | viewer

    @property
    def key(self) -> str:
        return f"{self.peer.member_key}:{self.handle}"


@dataclass
class Settings:
    save_delay: float = 2.0
    max_bytes: int = 5 * 1024 * 1024
    awareness_timeout: float = awareness.TIMEOUT


@dataclass(eq=False)
class Room:
    svc: Services
    settings: Settings
    file_id: int
    ns_id: int
    path: str
    publish: Callable[[str, bytes], None]  # (kind, data) onto the bus channel of this document
    on_empty: Callable[[Room], None]
    on_moved: Callable[[Room, int], Awaitable[None]]  # (room, old namespace): follow the new one
    doc: YDoc = field(default_factory=Doc)
    members: dict[str, Member] = field(default_factory=dict)
    table: awareness.Table = field(default_factory=awareness.Table)
    base_rev: int | None = None
    base_state: bytes = b""
    base_text: str = ""
    dirty: bool = False
    edits: int = 0  # counts changes, so a save knows whether more came while it ran
    deadline: float = 0.0
    last_editor: Member | None = None
    closed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _saver: asyncio.Task[None] | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _changes: list[bytes] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        # What each transaction really changed (Yrs reports only changes: an update that brings
        # nothing new reports nothing; one that only deletes does report them, unlike a
        # state-vector comparison).
        self._observer = self.doc.observe(lambda event: self._changes.append(event.update))

    # ------------------------------------------------------------ opening

    async def open(self) -> None:
        """Load the stored state (or make it from the file's head), then merge a revision made
        while nobody had the document open."""
        head = await store.head(self.svc, self.file_id)
        if head is None or head.rev is None:
            raise SatchelError(ErrorCode.not_found, "no such file")
        self.ns_id, self.path = head.ns_id, head.path  # as it is now (the caller may have looked before a share)
        if head.size > self.settings.max_bytes:
            raise SatchelError(ErrorCode.too_large, f"co-editing is limited to files of {self.settings.max_bytes} "
                               "bytes", limit=self.settings.max_bytes)
        row = await store.load(self.svc, self.file_id)
        if row is None:
            text = await store.read_text(self.svc, head.owner_id, head.rev, self.settings.max_bytes)
            state = merge.initial(self.file_id, head.rev, text)
            await store.create_if_absent(self.svc, self.file_id, self.ns_id, store.Row(state, head.rev, state))
            row = await store.load(self.svc, self.file_id)
            assert row is not None
        self._apply(row.state)
        self._set_base(row.base_rev, row.base_state)
        if head.rev != self.base_rev:
            await self._merge_revision(head.rev, row, opening=True)

    def _set_base(self, rev: int | None, state: bytes) -> None:
        self.base_rev, self.base_state = rev, state
        self.base_text = merge.text_of_state(state)

    # ------------------------------------------------------------ sessions

    def join(self, member: Member, sv: bytes) -> dict[str, Any]:
        try:
            update = self.doc.get_update(sv) if sv else self.doc.get_update()
        except ValueError:
            raise SatchelError(ErrorCode.bad_request, "'sv' is not a Yjs state vector", field="sv") from None
        self.members[member.key] = member
        return {"update": update, "sv": self.doc.get_state(), "rev": self.base_rev}

    def awareness_snapshot(self) -> bytes | None:
        return self.table.snapshot()

    def leave(self, member: Member) -> None:
        if self.members.pop(member.key, None) is None:
            return
        gone = self.table.drop_owner(member.key)
        if gone is not None:
            self._to_local(MsgType.doc_awareness, gone)
            self.publish("a", gone)
        if self.last_editor is member:
            self.last_editor = next((m for m in self.members.values() if m.role == "editor"), member)
        if not any(m.role == "editor" for m in self.members.values()) and self.dirty:
            self.deadline = 0.0  # the last editor left: save now
            self._wake.set()
            self._ensure_saver()
        if not self.members:
            self._spawn(self._close_when_idle())

    def _to_local(self, mtype: MsgType, data: bytes, skip: Member | None = None) -> None:
        for m in list(self.members.values()):
            if m is skip:
                continue
            frame = encode(Frame(mtype, 0, {"doc": m.handle, "update": data}))
            if not m.peer.offer(frame):
                self.close_member(m, "slow_consumer")

    def close_member(self, m: Member, reason: str) -> None:
        if self.members.get(m.key) is not m:
            return
        m.peer.send(Frame(MsgType.doc_closed, 0, {"doc": m.handle, "reason": reason}))
        m.peer.doc_gone(m.handle)
        self.leave(m)

    def close_all(self, reason: str) -> None:
        for m in list(self.members.values()):
            self.close_member(m, reason)

    # ------------------------------------------------------------ updates

    def client_update(self, member: Member, update: bytes) -> None:
        """A session's edit: authorized through access.py, applied, relayed."""
        if member.role != "editor":
            raise SatchelError(ErrorCode.forbidden, "you are a viewer here: write is not allowed", role=member.role)
        access.check_ns(member.who, self.ns_id, Perm.WRITE)
        # An update adds at most its own length of text: refuse before applying what might pass the limit.
        if self._size() + len(update) > self.settings.max_bytes:
            raise SatchelError(ErrorCode.too_large, "the document would pass the co-editing size limit",
                               limit=self.settings.max_bytes)
        change = self._apply(update)
        if change is None:
            return  # nothing new (a resend after a reconnect), or waiting for what it depends on
        # What changed may be more than the update: parts that waited for it (pending structs).
        self._to_local(MsgType.doc_update, change, skip=None if change != update else member)
        self.publish("u", change)
        self.last_editor = member
        self._touched(self.settings.save_delay)

    def remote_update(self, update: bytes) -> None:
        """An update another node relayed: its node saves it; this one does too if that node does not."""
        change = self._apply(update)
        if change is not None:
            self._to_local(MsgType.doc_update, change)
            self._touched(3 * self.settings.save_delay)

    def _size(self) -> int:
        """The text's size in UTF-8 bytes (cheap when pycrdt counts in bytes, as 0.14 does)."""
        text = text_of(self.doc)
        return len(text) if UNIT_BYTES else len(str(text).encode())

    def _apply(self, update: bytes) -> bytes | None:
        """Apply *update*; return what it changed (None: nothing new)."""
        self._changes.clear()
        try:
            self.doc.apply_update(update)
        except Exception as exc:
            raise SatchelError(ErrorCode.bad_request, f"not a Yjs v1 update ({exc})", field="update") from None
        except BaseException as exc:  # a Rust panic in Yrs arrives as pyo3's PanicException
            if type(exc).__name__ != "PanicException":
                raise
            raise SatchelError(ErrorCode.bad_request, "not a Yjs v1 update", field="update") from None
        changes, self._changes = self._changes, []
        if not changes:
            return None
        return changes[0] if len(changes) == 1 else merge_updates(*changes)

    def _touched(self, delay: float) -> None:
        self.edits += 1
        self.dirty = True
        self.deadline = time.monotonic() + delay
        self._ensure_saver()

    def client_awareness(self, member: Member, update: bytes) -> None:
        try:
            states = awareness.decode(update)
        except awareness.AwarenessError as exc:
            raise SatchelError(ErrorCode.bad_request, str(exc), field="update") from None
        self.table.apply(states, member.key, time.monotonic())
        self._to_local(MsgType.doc_awareness, update, skip=member)
        self.publish("a", update)

    def remote_awareness(self, node: str, update: bytes) -> None:
        try:
            states = awareness.decode(update)
        except awareness.AwarenessError:
            log.warning("ignoring malformed awareness relayed by node %s", node)
            return
        self.table.apply(states, f"node:{node}", time.monotonic())
        self._to_local(MsgType.doc_awareness, update)

    def local_awareness(self) -> bytes | None:
        """The states of this node's own sessions (for a node that just opened the document)."""
        mine = [(c, e.clock, e.state) for c, e in self.table.entries.items() if not e.owner.startswith("node:")]
        return awareness.encode(mine) if mine else None

    def remote_state_vector(self, sv: bytes) -> None:
        """Another node's state vector: send it what it lacks (repairs a lost relay)."""
        try:
            missing = self.doc.get_update(sv)
        except ValueError:
            return
        if missing != EMPTY_UPDATE:
            self.publish("u", missing)

    def tick(self) -> None:
        """Every few seconds: drop stale awareness, and tell the other nodes what this one has."""
        gone = self.table.expire(time.monotonic(), self.settings.awareness_timeout)
        if gone is not None:
            self._to_local(MsgType.doc_awareness, gone)
        self.publish("sv", self.doc.get_state())

    # ------------------------------------------------------------ the journal

    def journal(self, entry: dict[str, Any]) -> None:
        """A change of this document's namespace (from the hub)."""
        op = entry.get("op")
        if entry.get("kind") == "mount" and op == "mount" and isinstance(entry.get("path"), str) \
                and paths.is_within(self.path, entry["path"]):
            self._spawn(self.follow_file())  # the file, or a folder holding it, became shared
            return
        if entry.get("id") != self.file_id or entry.get("kind") != "file":
            return
        if op in ("delete", "purge"):
            self.close_all("deleted")
        elif op == "move" and isinstance(entry.get("path"), str):
            self.path = entry["path"]
        elif op in ("create", "modify") and isinstance(entry.get("rev"), int):
            self._spawn(self._revision_seen(entry["rev"]))

    async def follow_file(self) -> None:
        """The file may live in another namespace now (it, or a folder holding it, was shared):
        the document follows it there, sessions and all, as it follows a rename. Each member's
        grants are reloaded first, so their next edit is checked against the new namespace."""
        async with self.lock:
            if self.closed:
                return
            head = await store.head(self.svc, self.file_id)
            if head is None:
                self.close_all("deleted")
                return
            if head.ns_id == self.ns_id:
                self.path = head.path
                return
            fresh: dict[str, Principal | None] = {}
            for key, m in list(self.members.items()):
                try:
                    fresh[key] = await accounts.authenticate(self.svc, m.peer.token)
                except SatchelError:
                    fresh[key] = None  # a logged-out device is closed by its heartbeat
            old_ns = self.ns_id
            self.ns_id, self.path = head.ns_id, head.path
            for key, who in fresh.items():
                member = self.members.get(key)
                if member is None or who is None:
                    continue
                member.who = who
                grant = access.grant(who, self.ns_id)
                if grant is None:
                    self.close_member(member, "access_removed")
                elif ("editor" if Perm.WRITE in access.perms(grant) else "viewer") != member.role:
                    self.close_member(member, "role_changed")
            await self.on_moved(self, old_ns)
            log.info("document %d: followed the file from namespace %d to %d", self.file_id, old_ns, self.ns_id)
        # Entries of the new namespace written before the room listened there: a revision made
        # meanwhile is merged now (members' grants were reloaded above).
        if head.rev is not None and head.rev != self.base_rev:
            await self._revision_seen(head.rev)

    def member_changed(self, user_id: int) -> None:
        for m in list(self.members.values()):
            if m.who.user_id == user_id:
                self._spawn(self._recheck(m))

    async def _recheck(self, m: Member) -> None:
        try:
            who = await accounts.authenticate(self.svc, m.peer.token)
        except SatchelError:
            return  # a logged-out device is closed by its heartbeat
        grant = access.grant(who, self.ns_id)
        if grant is None:
            self.close_member(m, "access_removed")
        elif ("editor" if Perm.WRITE in access.perms(grant) else "viewer") != m.role:
            self.close_member(m, "role_changed")
        else:
            m.who = who

    async def _revision_seen(self, rev: int) -> None:
        async with self.lock:
            if self.closed or rev == self.base_rev:
                return
            head = await store.head(self.svc, self.file_id)
            if head is None:
                self.close_all("deleted")
                return
            if head.rev is None or head.rev == self.base_rev:
                return  # an older revision, already passed
            row = await store.load(self.svc, self.file_id)
            if row is not None and row.base_rev == head.rev:
                self._adopt(row)
            else:
                await self._merge_revision(head.rev, row)

    def _adopt(self, row: store.Row) -> None:
        """Another node saved: take its state and base (their text is the saved revision)."""
        change = self._apply(row.state)
        if change is not None:
            self._to_local(MsgType.doc_update, change)
        self._set_base(row.base_rev, row.base_state)
        if str(text_of(self.doc)) == self.base_text:
            self.dirty = False
        self._saved()

    def _saved(self) -> None:
        for m in list(self.members.values()):
            m.peer.send(Frame(MsgType.doc_saved, 0, {"doc": m.handle, "rev": self.base_rev}))

    async def _merge_revision(self, rev: int, row: store.Row | None, opening: bool = False) -> None:
        """Merge revision *rev*, made outside the document, as a diff against the base."""
        head = await store.head(self.svc, self.file_id)
        if head is None:
            self.close_all("deleted")
            return
        try:
            new_text = await store.read_text(self.svc, head.owner_id, rev, self.settings.max_bytes)
        except SatchelError as exc:
            if exc.code in (ErrorCode.too_large, ErrorCode.not_text) and not opening:
                log.info("document %d: revision %d is %s; closing", self.file_id, rev, exc.code.value)
                self.close_all(exc.code.value)
                self._end()
                return
            raise
        base_state = row.base_state if row is not None else self.base_state
        update, new_base = merge.revision_update(base_state, self.file_id, rev, new_text)
        if self._apply(update) is not None:
            self._to_local(MsgType.doc_update, update)
            self.publish("u", update)
        self._set_base(rev, new_base)
        state = self.doc.get_update()
        await store.save_state(self.svc, self.file_id, state, (rev, new_base),
                               expect_base=row.base_rev if row is not None else self.base_rev)
        log.info("document %d: merged external revision %d", self.file_id, rev)
        if str(text_of(self.doc)) != new_text:  # edits made meanwhile: save the merged text
            self._touched(self.settings.save_delay)

    # ------------------------------------------------------------ saving

    def _ensure_saver(self) -> None:
        if self._saver is None or self._saver.done():
            self._saver = self._spawn(self._save_loop())

    async def _save_loop(self) -> None:
        while self.dirty and not self.closed:
            wait = self.deadline - time.monotonic()
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):  # woken early: the last editor left
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                continue
            try:
                await self.save()
            except Exception:  # never lose the loop: the state is in memory, try again later
                log.exception("document %d: save failed; retrying", self.file_id)
                self.deadline = time.monotonic() + max(1.0, 5 * self.settings.save_delay)

    async def save(self) -> None:
        """Commit the text as a revision (if it changed) and store the CRDT state with it."""
        async with self.lock:
            for _ in range(SAVE_RETRIES):
                if not self.dirty or self.closed:
                    return
                edits = self.edits
                text, state = str(text_of(self.doc)), self.doc.get_update()
                who = await self._writer()
                if text == self.base_text or who is None or self.base_rev is None:
                    # Nothing to commit (or nobody allowed to): keep the CRDT state at least.
                    if not await store.save_state(self.svc, self.file_id, state):
                        self.close_all("deleted")
                        return
                    if self.edits == edits:
                        self.dirty = False
                    return
                try:
                    rev = await store.save_revision(self.svc, who, self.file_id, text,
                                                    self.base_rev, state)
                except SatchelError as exc:
                    if exc.code is not ErrorCode.conflict:
                        raise
                    await self._catch_up()
                    continue
                if rev is None:
                    self.close_all("deleted")
                    return
                self.base_rev, self.base_state, self.base_text = rev, state, text
                if self.edits == edits:
                    self.dirty = False
                log.info("document %d: saved as revision %d (%d characters)", self.file_id, rev, len(text))
                self._saved()
                return
            raise SatchelError(ErrorCode.conflict, "the file kept changing during the save")

    async def _catch_up(self) -> None:
        """The head moved on: adopt another node's save, or merge an external revision."""
        head = await store.head(self.svc, self.file_id)
        if head is None or head.rev is None:
            return
        row = await store.load(self.svc, self.file_id)
        if row is not None and row.base_rev == head.rev:
            self._adopt(row)
        else:
            await self._merge_revision(head.rev, row)

    async def _writer(self) -> Principal | None:
        """Whom the revision is credited to: the latest editor still allowed to write."""
        candidates = [self.last_editor] if self.last_editor else []
        candidates += [m for m in self.members.values() if m.role == "editor" and m is not self.last_editor]
        for m in candidates:
            assert m is not None
            try:
                who = await accounts.authenticate(self.svc, m.peer.token)
                access.check_ns(who, self.ns_id, Perm.WRITE)
                return who
            except SatchelError:
                continue
        return None

    # ------------------------------------------------------------ closing

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("document %d: task failed", self.file_id, exc_info=task.exception())

    async def _close_when_idle(self) -> None:
        if self._saver is not None and not self._saver.done():
            with contextlib.suppress(Exception):
                await self._saver
        if not self.members and not self.closed:
            self._end()

    def _end(self) -> None:
        """No more sessions here: the manager forgets the room (a new join opens a fresh one)."""
        if not self.closed:
            self.closed = True
            self.on_empty(self)

    async def shutdown(self) -> None:
        """The node is stopping: save what is unsaved, tell the sessions."""
        self.deadline = 0.0
        if self.dirty:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await self.save()
        self.close_all("shutdown")
        self.closed = True
        for t in list(self._tasks):
            t.cancel()


def relay(node: str, kind: str, data: bytes) -> bytes:
    packed: bytes = msgpack.packb({"node": node, "kind": kind, "data": data}, use_bin_type=True)
    return packed
