"""Per-node fan-out of journal entries to the sessions subscribed to each namespace.

Publishing: after a transaction that appended journal entries commits, ``Database`` calls
``Hub.committed(entries)``; the hub builds each entry's wire form (for a new revision: the chunk
delta against its parent, with the new chunks' bytes inline when they are small) and rings the
bus doorbell ``ns.<id>``, in commit order.

Delivering: the hub subscribes to a namespace's doorbell while some local session listens to it,
and keeps the last seq it delivered. A doorbell with the next seq is fanned out as is (encoded
once, the same bytes to every session); a gap, a doorbell without its entry, a bus reconnect or
the periodic reconciliation make the hub read the missing entries from the journal, so every
session sees every seq, in order, even when doorbells are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any, Protocol

import msgpack
from sqlalchemy import select

from server.bus.base import Bus
from server.services.changes import PAGE, entries_after, entry_wire, revision_delta
from server.storage.blobs.base import BlobKey, BlobStore
from server.storage.db import Database
from server.storage.models import JournalEntry, Namespace, Revision
from server.ws.protocol import INLINE_LIMIT, Frame, MsgType, encode

log = logging.getLogger(__name__)
MAX_DOORBELL = 512 * 1024  # bigger entries travel without their body; receivers read the journal
# A transaction with more new revisions than this (a commit_batch) rings without deltas: computing
# and reading them per file would cost the server more than the batch's commit itself.
DELTA_MAX_REVISIONS = 32
PUBLISH_ORDER_WAIT = 5.0
RECONCILE_INTERVAL = 2.5  # a lost doorbell is found within 1-2 intervals


def channel(ns: int) -> str:
    return f"ns.{ns}"


MEMBER_OPS = ("member_add", "member_role", "member_remove")


class Subscriber(Protocol):
    def push(self, ns: int, seq: int, frame: bytes) -> None:
        """Take one encoded ``change`` frame. Must not block (queue it or give up on it)."""

    def member_changed(self, ns: int, user_id: int) -> None:
        """A membership entry about *user_id* in *ns* was delivered: access may have changed."""


class Hub:
    def __init__(self, db: Database, blobs: BlobStore, bus: Bus,
                 reconcile_interval: float = RECONCILE_INTERVAL) -> None:
        self.db, self.blobs, self.bus = db, blobs, bus
        self.reconcile_interval = reconcile_interval
        self._subs: dict[int, set[Subscriber]] = defaultdict(set)
        self._last: dict[int, int] = {}
        self._on_bus: set[int] = set()  # namespaces whose doorbell channel this hub subscribed to
        self._locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconciler: asyncio.Task[None] | None = None
        self._last_publish: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.bus.on_connect(self._catch_up_all)
        self._reconciler = asyncio.create_task(self._reconcile_loop(), name="hub-reconcile")

    async def close(self) -> None:
        if self._reconciler:
            self._reconciler.cancel()
        for t in [*self._tasks, *([self._reconciler] if self._reconciler else [])]:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------ publishing

    def committed(self, entries: list[JournalEntry]) -> None:
        """Called right after a transaction with journal entries committed (in commit order)."""
        self._last_publish = self._spawn(self._publish(entries, self._last_publish))

    async def _publish(self, entries: list[JournalEntry], previous: asyncio.Task[None] | None) -> None:
        try:
            wires = await self._wire(entries)
        except Exception:  # the journal has them: receivers catch up from it
            log.exception("building doorbells failed; receivers will read the journal")
            wires = [None] * len(entries)
        # Wires are built concurrently but rung in commit order: a doorbell overtaking its
        # predecessor looks like a gap to receivers, who then read the journal (and lose the delta).
        # A stuck predecessor (a hung blob read) holds the others up for a few seconds at most.
        if previous is not None:
            await asyncio.wait([previous], timeout=PUBLISH_ORDER_WAIT)
        for e, wire in zip(entries, wires, strict=True):
            payload = msgpack.packb({"ns": e.ns_id, "seq": e.seq, "entry": wire}, use_bin_type=True)
            if len(payload) > MAX_DOORBELL:
                payload = msgpack.packb({"ns": e.ns_id, "seq": e.seq, "entry": None})
            self.bus.publish(channel(e.ns_id), payload)

    async def _wire(self, entries: list[JournalEntry]) -> list[dict[str, Any] | None]:
        rev_ids = [e.rev_id for e in entries if e.rev_id is not None and e.op in ("create", "modify")]
        out: list[dict[str, Any] | None] = []
        async with self.db.read() as s:
            revs = {r.id: r for r in (await s.execute(select(Revision).where(Revision.id.in_(rev_ids))))
                    .scalars()} if rev_ids else {}
            owners = dict((await s.execute(select(Namespace.id, Namespace.owner_id).where(
                Namespace.id.in_({e.ns_id for e in entries})))).tuples().all())
            for e in entries:
                rev = revs.get(e.rev_id) if e.rev_id is not None else None
                wire = entry_wire(e, rev)
                if rev is not None and len(rev_ids) <= DELTA_MAX_REVISIONS:
                    delta = await revision_delta(s, e.parent_rev_id, rev.id)
                    if delta is not None:
                        await self._inline_small_chunks(owners[e.ns_id], delta)
                        wire["delta"] = delta
                out.append(wire)
        return out

    async def _inline_small_chunks(self, owner_id: int, delta: dict[str, Any]) -> None:
        """Put the new chunks' bytes into the delta when they add up to at most INLINE_LIMIT."""
        new = [op for op in delta["ops"] if isinstance(op[0], bytes)]
        if not new or sum(op[1] for op in new) > INLINE_LIMIT:
            return
        for op in new:
            data = b"".join([piece async for piece in self.blobs.read(BlobKey(owner_id, op[0]))])
            op.append(data)

    # ------------------------------------------------------------ delivering

    async def attach(self, ns: int, sub: Subscriber) -> None:
        """Deliver *ns*'s future entries to *sub*. The caller replays older ones from the journal."""
        first = not self._subs.get(ns)
        self._subs[ns].add(sub)
        if not first:
            return
        if ns not in self._on_bus:  # still subscribed when a detach's unsubscribe has not run yet
            self._on_bus.add(ns)
            await self.bus.subscribe(channel(ns), self._on_doorbell)
        async with self._locks[ns]:
            if ns in self._subs and ns not in self._last:  # (everyone may have left meanwhile)
                async with self.db.read() as s:
                    seq = (await s.execute(select(Namespace.seq).where(Namespace.id == ns))).scalar_one()
                self._last[ns] = int(seq)

    def detach(self, ns: int, sub: Subscriber) -> None:
        subs = self._subs.get(ns)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[ns]
            self._last.pop(ns, None)
            self._spawn(self._unsubscribe(ns))

    async def _unsubscribe(self, ns: int) -> None:
        if ns not in self._subs and ns in self._on_bus:  # nobody came back meanwhile
            self._on_bus.discard(ns)
            self.bus.unsubscribe(channel(ns), self._on_doorbell)

    def _on_doorbell(self, payload: bytes) -> None:
        try:
            msg = msgpack.unpackb(payload, raw=False)
            ns, seq, entry = int(msg["ns"]), int(msg["seq"]), msg.get("entry")
        except Exception:  # a foreign or broken publisher: the journal is the truth anyway
            log.warning("ignoring a malformed doorbell")
            return
        if ns in self._subs:
            self._spawn(self._ingest(ns, seq, entry))

    async def _ingest(self, ns: int, seq: int | None, entry: dict[str, Any] | None) -> None:
        """Fan out everything after the last delivered seq up to *seq* (None: up to the head),
        reading the journal for what no doorbell brought; *entry* (seq's wire form) is used as is."""
        async with self._locks[ns]:
            last = self._last.get(ns)
            if last is None or (seq is not None and seq <= last):
                return
            # Read only up to the entry in hand: a journal entry has no delta, the doorbell's has.
            upto = seq - 1 if seq is not None and entry is not None else seq
            while upto is None or last < upto:
                limit = PAGE if upto is None else min(PAGE, upto - last)
                async with self.db.read() as s:
                    page = await entries_after(s, ns, last, limit)
                if page:
                    self._fan_out(ns, page)
                    last = page[-1]["seq"]
                if len(page) < limit:
                    break
            if entry is not None and seq == last + 1:
                self._fan_out(ns, [entry])

    def _fan_out(self, ns: int, entries: list[dict[str, Any]]) -> None:
        subs = list(self._subs.get(ns, ()))
        for entry in entries:
            frame = encode(Frame(MsgType.change, 0, entry))
            for sub in subs:
                sub.push(ns, entry["seq"], frame)
                if entry.get("op") in MEMBER_OPS:
                    sub.member_changed(ns, int(entry["id"]))
            if ns in self._subs:  # a namespace nobody serves any more starts afresh from the database
                self._last[ns] = entry["seq"]

    async def _catch_up_all(self) -> None:
        for ns in list(self._subs):
            await self._ingest(ns, None, None)

    async def _reconcile_loop(self) -> None:
        """Safety net for doorbells lost in ways the bus cannot see: compare heads every few seconds.
        Only entries already in the journal at the previous round count as lost: newer ones may
        have their doorbell on its way (reading them from the journal would strip their delta)."""
        seen: dict[int, int] = {}  # namespace -> head at the previous round
        while True:
            await asyncio.sleep(self.reconcile_interval)
            try:
                served = list(self._subs)
                heads: dict[int, int] = {}
                if served:
                    async with self.db.read() as s:
                        heads = dict((await s.execute(select(Namespace.id, Namespace.seq)
                                                      .where(Namespace.id.in_(served)))).tuples().all())
                for ns, head in heads.items():
                    due = min(head, seen.get(ns, 0))
                    last = self._last.get(ns)
                    if last is not None and due > last:
                        log.info("namespace %d: catching up %d missed entries", ns, due - last)
                        await self._ingest(ns, due, None)
                seen = heads
            except Exception:  # never let the safety net die
                log.exception("hub reconciliation failed")
