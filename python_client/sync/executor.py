"""Runs the planner's actions against the disk and the server, recording each success in the state.

Data safety: a download lands in a part file that replaces the target only if the target still is
what the plan saw; a local delete moves the file into ``.satchel/trash``; a server delete names
the revision it saw (``rev``), so an edit it has not seen is never trashed. A refusal that the next
round will see through (``conflict``, a path taken or gone meanwhile) just leaves the path for it;
a refusal that retrying will not fix (quota, permission, invalid name, unknown) blocks the path
(shown by ``satchel status``, retried later with backoff); network failures end the round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets

from python_client.api import SatchelClient
from python_client.batching import SMALL_MAX, commit_body, fsync_dir
from python_client.live import LiveSession, SessionClosed
from python_client.sync import batches
from python_client.sync.model import DIR, FILE, Action, LocalNode, Op, Stale, SyncedNode
from python_client.sync.scanner import Scan, local_path
from python_client.sync.state import State, state_dir
from python_client.transfer import TransferStats, download_file, upload_file
from server.core import paths
from server.core.chunking import ChunkRef
from server.core.errors import ErrorCode, SatchelError

log = logging.getLogger(__name__)

# The server or the disk moved on since the plan: the next round (after a pull and a scan) decides again.
REPLAN = {ErrorCode.conflict, ErrorCode.not_found, ErrorCode.path_exists, ErrorCode.not_a_directory,
          ErrorCode.is_a_directory, ErrorCode.missing_chunks, ErrorCode.upload_expired,
          ErrorCode.upload_committed, ErrorCode.url_expired, ErrorCode.hash_mismatch,
          ErrorCode.size_mismatch, ErrorCode.too_many_requests}
# Worth retrying soon: the round ends and the daemon backs off.
TRANSIENT = {ErrorCode.unavailable}
TRANSFERS = 8  # uploads or downloads in flight at once
INLINE_MAX = SMALL_MAX  # files up to this size commit over the WebSocket (frame: 1 MiB)
DELTA_INLINE_MAX = 192 * 1024  # new bytes of an edit sent inline in one commit (the limit: 256 KiB)
MAX_STRIKES = 5  # the same path refused this many rounds in a row: blocked, not retried at once


TRASH_DAYS = 30  # files the server deleted stay in .satchel/trash this long


def purge_trash(root: Path, days: int = TRASH_DAYS) -> None:
    """Empty the trash folders (one per day) older than *days*."""
    trash = state_dir(root) / "trash"
    cutoff = time.strftime("%Y-%m-%d", time.localtime(time.time() - days * 86400))
    for day in sorted(trash.iterdir()) if trash.is_dir() else []:
        if day.is_dir() and len(day.name) == 10 and day.name < cutoff:
            log.info("emptying %s (older than %d days)", day, days)
            shutil.rmtree(day, ignore_errors=True)


@dataclass
class Outcome:
    done: int = 0
    replan: int = 0
    blocked: int = 0
    batched: int = 0  # files moved in WebSocket batches (commit_batch, fetch)
    stats: TransferStats = field(default_factory=TransferStats)


def _stat(root: Path, path: str) -> os.stat_result | None:
    try:
        return os.stat(local_path(root, path), follow_symlinks=False)
    except FileNotFoundError:
        return None


def _still(root: Path, path: str, ln: LocalNode | None) -> bool:
    """Is the disk at *path* still what the scan saw (``None``: nothing)?"""
    st = _stat(root, path)
    if ln is None or st is None:
        return ln is None and st is None
    if ln.kind == DIR:
        return st.st_ino == ln.inode
    return (st.st_size, st.st_mtime_ns, st.st_ino) == (ln.size, ln.mtime_ns, ln.inode)


class Executor:
    def __init__(self, client: SatchelClient, state: State, root: Path,
                 on_action: Callable[[Action], None] | None = None) -> None:
        self.client, self.state, self.root = client, state, root
        self.on_action = on_action
        self.totals = TransferStats()  # bytes sent, received and reused since start
        self.strikes: dict[str, int] = {}  # consecutive "decide again" refusals per path
        self._stack = contextlib.AsyncExitStack()
        self._session: LiveSession | None = None
        self._live_retry = 0.0
        self._no_batches = False  # the server refused a batch message: one file at a time
        self.delta_commits = 0  # edits of big files committed as one WebSocket frame

    async def run(self, actions: list[Action], scan: Scan) -> Outcome:
        """Run *actions* in order; consecutive transfers (uploads, then downloads) run
        ``TRANSFERS`` at a time: many small files are bound by round trips, not bandwidth."""
        out = Outcome()
        self._by_hash: dict[str, str] | None = None
        failed: list[str] = []  # paths whose action failed: their folders must stay
        gate = asyncio.Semaphore(TRANSFERS)

        async def gated(b: Action) -> None:
            async with gate:
                await self._guarded(b, scan, out, failed)

        i = 0
        while i < len(actions):
            a = actions[i]
            if a.op in (Op.upload, Op.download):
                j = i
                while j < len(actions) and actions[j].op is a.op:
                    j += 1
                small, rest = await self._small_first(actions[i:j])
                async with asyncio.TaskGroup() as tg:
                    for group in batches.groups(small):
                        tg.create_task(self._batch(a.op, group, scan, out, failed, gate))
                    for b in rest:
                        tg.create_task(gated(b))
                i = j
                continue
            if not (a.op is Op.delete_remote and any(paths.is_within(f, a.path) for f in failed)):
                await self._guarded(a, scan, out, failed)
            i += 1
        for name in ("bytes_sent", "bytes_received", "bytes_reused"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(out.stats, name))
        return out

    async def _guarded(self, a: Action, scan: Scan, out: Outcome, failed: list[str]) -> None:
        """One action, its outcome counted and committed; refusals sorted into replan or blocked."""
        try:
            await self._one(a, scan, out.stats)
        except (Stale, SatchelError, PermissionError) as exc:
            self._settle(a, exc, out, failed)
        else:
            self._settle(a, None, out, failed)
        self.state.commit()

    def _settle(self, a: Action, exc: Exception | None, out: Outcome, failed: list[str]) -> None:
        """Count *a*'s outcome (*exc*: how it failed, None: done); transient failures re-raise."""
        if exc is None:
            self.state.unblock(a.path)
            self.strikes.pop(a.path, None)
            out.done += 1
            if self.on_action:
                self.on_action(a)
        elif isinstance(exc, Stale):
            out.replan += 1
            failed.append(a.path)
        elif isinstance(exc, SatchelError):
            if exc.code in TRANSIENT:
                raise exc
            failed.append(a.path)
            strikes = self.strikes[a.path] = self.strikes.get(a.path, 0) + 1
            if exc.code in REPLAN and strikes < MAX_STRIKES:
                log.info("%s: %s (%s); next round decides again", a, exc.message, exc.code.value)
                out.replan += 1
            else:  # refused for good, or the same refusal round after round: stop trying for a while
                log.warning("%s refused: %s [%s]", a, exc.message, exc.code.value)
                self.state.block(a.path, exc.code.value, exc.message, a.local)
                out.blocked += 1
        else:
            failed.append(a.path)
            log.warning("%s: %s", a, exc)
            self.state.block(a.path, "permission_denied", str(exc), a.local)
            out.blocked += 1

    # -- small files in batches (protocol.md, "Batches")
    async def _small_first(self, run: list[Action]) -> tuple[list[Action], list[Action]]:
        """Split a run of uploads or downloads into small files that go in batches over the
        WebSocket (even one: a round trip instead of three requests) and the rest (one transfer
        each); all go one by one without a session."""
        small = [a for a in run if batches.is_small(a)]
        if not small or self._no_batches or await self._live() is None:
            return [], run
        rest = [a for a in run if not batches.is_small(a)]
        return small, rest

    async def _batch(self, op: Op, group: list[Action], scan: Scan, out: Outcome, failed: list[str],
                     gate: asyncio.Semaphore) -> None:
        async with gate:
            live = await self._live()
            results: list[tuple[Action, Exception | None]] | None = None
            if live is not None and not self._no_batches:
                try:
                    run = batches.upload if op is Op.upload else batches.download
                    results = await run(live, self.root, self.state, group, out.stats,
                                        lambda a: _still(self.root, a.path, a.local))
                except (SessionClosed, TimeoutError, OSError, websockets.WebSocketException) as exc:
                    log.info("WebSocket batch failed (%s); one file at a time", exc)
                    self._session = None
                except SatchelError as exc:
                    if exc.code in TRANSIENT:
                        raise
                    log.warning("the server refused a batch (%s: %s); one file at a time", exc.code.value,
                                exc.message)
                    self._no_batches = True  # e.g. a server older than protocol 0.8 (batches)
        if results is None:
            for a in group:
                async with gate:
                    await self._guarded(a, scan, out, failed)
            return
        out.batched += len(results)
        for a, failure in results:
            self._settle(a, failure, out, failed)
        self.state.commit()

    async def _one(self, a: Action, scan: Scan, stats: TransferStats) -> None:
        log.debug("%s", a)
        handler = getattr(self, "_" + a.op.name)
        await handler(a, scan, stats)

    def _path(self, path: str) -> Path:
        return local_path(self.root, path)

    def _rename(self, src: str, dst: str) -> None:
        """Move *src* to *dst* on disk; Stale (plan again) when the disk is not as the plan saw
        it: the target taken, the source gone (e.g. moved with its folder earlier in the round),
        a file where a folder must be."""
        target, source = self._path(dst), self._path(src)
        if target.exists() or target.is_symlink():
            raise Stale()
        try:
            if paths.is_within(dst, src):
                # Into a folder that took its old name on the server (moved away, a folder made
                # at the name, moved into it): step aside first. The stopover keeps the inode
                # in the synced folder, so a crash in between reads as a move, never a delete.
                hop = source.with_name(f"{source.name}.satchel-moving-{os.urandom(4).hex()}")
                os.rename(source, hop)
                source = hop
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(source, target)
        except (FileNotFoundError, NotADirectoryError, FileExistsError) as exc:
            if source != self._path(src):  # left at the stopover: put it back where it was
                with contextlib.suppress(OSError):
                    os.rename(source, self._path(src))
            log.info("cannot move %s to %s now (%s); planning again", src, dst, exc)
            raise Stale() from exc
        fsync_dir(target.parent)

    # -- handlers (one per Op)
    async def _conflict_rename(self, a: Action, scan: Scan, stats: TransferStats) -> None:
        if not _still(self.root, a.path, a.local):
            raise Stale()
        assert a.dest
        log.warning("conflict at %s: keeping this device's version as %s", a.path, a.dest)
        self._rename(a.path, a.dest)
        # Not a rename to send: the copy is uploaded as a new file, the original path downloaded.
        self.state.drop_synced(a.path)

    async def _move_local(self, a: Action, scan: Scan, stats: TransferStats) -> None:
        assert a.dest
        self._rename(a.path, a.dest)
        self.state.move_synced(a.path, a.dest)

    def _undo_refused(self, a: Action, exc: SatchelError) -> None:
        """A delete or move the server refuses for good (a viewer of a shared folder): forget the
        synced state of the old path, so the next round downloads the server's version again and
        uploads what is new on disk (refused in turn: blocked, the local bytes left in place)."""
        if exc.code not in (ErrorCode.forbidden, ErrorCode.cross_namespace):
            raise exc
        log.warning("%s refused (%s): restoring the server's version", a, exc.message)
        self.state.drop_synced(a.path)
        raise Stale() from exc

    async def _move_remote(self, a: Action, scan: Scan, stats: TransferStats) -> None:
        assert a.dest
        try:
            await self.client.move(a.path, a.dest)
        except SatchelError as exc:
            self._undo_refused(a, exc)
        self.state.move_synced(a.path, a.dest)

    async def _mkdir_local(self, a: Action, scan: Scan, stats: TransferStats) -> None:
        assert a.remote
        target = self._path(a.path)
        st = _stat(self.root, a.path)
        if st is not None and not os.path.isdir(target):
            raise Stale()
        target.mkdir(parents=True, exist_ok=True)
        self.state.put_synced(a.path, SyncedNode(DIR, a.remote.node_id, inode=os.stat(target).st_ino))

    async def _mkdir_remote(self, a: Action, scan: Scan, stats: TransferStats) -> None:
        assert a.local
        entry = await self.client.mkdir(a.path)
        self.state.put_synced(a.path, SyncedNode(DIR, int(entry["id"]), inode=a.local.inode))

    async def _upload(self, a: Action, scan: Scan, stats: TransferStats) -> None:
        ln = a.local
        assert ln is not None
        if not _still(self.root, a.path, ln):
            raise Stale()
        sent = stats.bytes_sent
        refs = scan.chunks.get(a.path)
        if ln.size <= INLINE_MAX:
            entry = await self._commit_inline(a, ln)
            if entry is not None:
                stats.bytes_sent += ln.size
        else:
            entry = await self._commit_delta(a, ln, refs, stats)
        if entry is None:
            sn = self.state.synced.get(a.path)
            parent = self.state.chunks_of(sn.content_hash) if sn is not None and sn.rev == a.rev else None
            entry = await upload_file(self.client, self._path(a.path), a.path, parent_rev=a.rev, stats=stats,
                                      chunks=refs, parent_chunks=parent)
        if refs is not None:
            self.state.put_chunks(entry["content_hash"], [(r.digest, r.size) for r in refs])
        log.info("uploaded %s: %d bytes, %d sent", a.path, ln.size, stats.bytes_sent - sent)
        self.state.put_synced(a.path, SyncedNode(FILE, int(entry["id"]), int(entry["rev"]), ln.size, ln.mtime_ns,
                                                 ln.inode, entry["content_hash"]))

    async def _live(self) -> LiveSession | None:
        """The WebSocket session small commits go through, opened on first use; None (HTTP
        instead) while it cannot be had."""
        if self._session is None and time.monotonic() >= self._live_retry:
            assert self.client.token
            try:
                self._session = await self._stack.enter_async_context(
                    LiveSession.connect(self.client.server, self.client.token))
            except (OSError, TimeoutError, SessionClosed, websockets.WebSocketException) as exc:
                log.info("no WebSocket for small commits (%s); using HTTP", exc)
                self._live_retry = time.monotonic() + 30
        return self._session

    async def aclose(self) -> None:
        self._session = None
        await self._stack.aclose()

    async def _commit_inline(self, a: Action, ln: LocalNode) -> dict[str, Any] | None:
        """A small file in one WebSocket ``commit`` (bytes inline): one round trip and one server
        transaction instead of announce + PUT + commit. None: no session, use HTTP."""
        live = await self._live()
        if live is None:
            return None
        with open(self._path(a.path), "rb") as f:
            data = f.read(INLINE_MAX + 1)
        if len(data) != ln.size:
            raise Stale()
        body = commit_body(a.path, a.rev, data, ln.mtime_ns)
        try:
            return await live.commit(a.path, a.rev, len(data), body["ops"], mtime=body["mtime"],
                                     mime=body.get("mime"))
        except (SessionClosed, TimeoutError, OSError, websockets.WebSocketException) as exc:
            log.info("WebSocket commit failed (%s); using HTTP", exc)
            self._session = None
            return None

    async def _commit_delta(self, a: Action, ln: LocalNode, refs: list[ChunkRef] | None,
                            stats: TransferStats) -> dict[str, Any] | None:
        """An edit of a big file as one WebSocket ``commit``: chunks kept from the synced version
        (its list is in the state) as ranges, new chunks inline, when they add up to at most
        DELTA_INLINE_MAX. No announce of the whole chunk list, no chunk PUT, no second request.
        None: not possible here (no list, too much new data, no session): upload over HTTP."""
        sn = self.state.synced.get(a.path)
        parent = self.state.chunks_of(sn.content_hash) if sn is not None and sn.rev == a.rev else None
        if refs is None or parent is None or a.rev is None:
            return None
        t0 = time.perf_counter()
        first: dict[bytes, int] = {}
        for i, (digest, _size) in enumerate(parent):
            first.setdefault(digest, i)
        plan: list[list[int] | ChunkRef] = []
        new = 0
        for r in refs:
            at = first.get(r.digest)
            last = plan[-1] if plan else None
            if at is not None and parent[at][1] == r.size:
                if isinstance(last, list) and last[0] + last[1] == at:
                    last[1] += 1
                else:
                    plan.append([at, 1])
            else:
                new += r.size
                plan.append(r)
        if new > DELTA_INLINE_MAX:
            return None
        live = await self._live()
        if live is None:
            return None
        ops: list[Any] = []
        with open(self._path(a.path), "rb", buffering=0) as f:
            for op in plan:
                if isinstance(op, list):
                    ops.append(op)
                    continue
                data = os.pread(f.fileno(), op.size, op.offset)
                if len(data) != op.size:
                    raise Stale()
                ops.append(data)
        if not _still(self.root, a.path, ln):
            raise Stale()
        t1 = time.perf_counter()
        try:
            entry: dict[str, Any] = await live.commit(a.path, a.rev, ln.size, ops, mtime=ln.mtime_ns // 1_000_000,
                                                      mime=mimetypes.guess_type(a.path)[0])
        except (SessionClosed, TimeoutError, OSError, websockets.WebSocketException) as exc:
            log.info("WebSocket commit failed (%s); using HTTP", exc)
            self._session = None
            return None
        except SatchelError as exc:
            if exc.code is ErrorCode.conflict:
                raise
            log.info("delta commit refused (%s); uploading over HTTP", exc.code.value)
            return None
        stats.bytes_sent += new
        self.delta_commits += 1
        log.debug("delta commit %s: %d ops, %d new bytes: plan, session and read %.3f s, commit %.3f s", a.path,
                  len(ops), new, t1 - t0, time.perf_counter() - t1)
        return entry

    async def _download(self, a: Action, scan: Scan, stats: TransferStats) -> None:
        rn = a.remote
        assert rn is not None
        if not _still(self.root, a.path, a.local):
            raise Stale()
        target = self._path(a.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        got, reused = stats.bytes_received, stats.bytes_reused
        sn = self.state.synced.get(a.path)
        # The local file still is the synced revision: its chunk list says where reusable bytes are.
        base = (sn.node_id, sn.rev) if sn is not None and sn.kind == FILE and sn.rev is not None \
            and a.local is not None and a.local.same_stat(sn) else None
        meta = await download_file(self.client, a.path, target, rev=rn.rev, stats=stats,
                                   replace_if=lambda _t: _still(self.root, a.path, a.local),
                                   sources=self._same_content(a.path, rn.content_hash, scan), base=base,
                                   base_chunks=self.state.chunks_of(sn.content_hash) if base and sn else None)
        if rn.content_hash:
            self.state.put_chunks(rn.content_hash, meta["chunks"])
        st = os.stat(target)
        log.info("downloaded %s: %d bytes, %d received, %d reused", a.path, st.st_size,
                 stats.bytes_received - got, stats.bytes_reused - reused)
        self.state.put_synced(a.path, SyncedNode(FILE, rn.node_id, int(meta["rev"]), st.st_size, st.st_mtime_ns,
                                                 st.st_ino, rn.content_hash))

    def _same_content(self, path: str, digest: str | None, scan: Scan) -> list[Path]:
        """Local files that held *digest* when last synced and still do: a download of a copy
        (or of a file moved where moves are not seen) is then a local copy, not a transfer."""
        if self._by_hash is None:  # built once per round, on the first download
            self._by_hash = {}
            for p, sn in self.state.synced.items():
                ln = scan.local.get(p)
                if sn.content_hash and ln is not None and ln.same_stat(sn):
                    self._by_hash.setdefault(sn.content_hash, p)
        found = self._by_hash.get(digest or "")
        return [self._path(found)] if found is not None and found != path else []

    async def _delete_remote(self, a: Action, scan: Scan, stats: TransferStats) -> None:
        try:
            await self.client.delete(a.path, rev=a.rev)
        except SatchelError as exc:
            if exc.code is not ErrorCode.not_found:
                self._undo_refused(a, exc)
        self.state.drop_synced(a.path)

    async def _trash_local(self, a: Action, scan: Scan, stats: TransferStats) -> None:
        if a.local is not None and a.local.kind == FILE and not _still(self.root, a.path, a.local):
            raise Stale()
        if _stat(self.root, a.path) is not None:
            bin_ = state_dir(self.root) / "trash" / time.strftime("%Y-%m-%d") / a.path.lstrip("/")
            n = 1
            while bin_.exists():
                n += 1
                bin_ = bin_.with_name(f"{paths.name(a.path)}.{n}")
            bin_.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self._path(a.path), bin_)
            log.info("deleted on the server: moved %s to %s", a.path, bin_)
        self.state.drop_synced(a.path)

    async def _record(self, a: Action, scan: Scan, stats: TransferStats) -> None:
        rn, ln = a.remote, a.local
        assert rn is not None and ln is not None
        if rn.kind == DIR:
            self.state.put_synced(a.path, SyncedNode(DIR, rn.node_id, inode=ln.inode))
        else:
            refs = scan.chunks.get(a.path)
            if refs is not None and rn.content_hash is not None and rn.content_hash == ln.content_hash:
                # how it was cut: its next edit's parent
                self.state.put_chunks(rn.content_hash, [(r.digest, r.size) for r in refs])
            self.state.put_synced(a.path, SyncedNode(FILE, rn.node_id, rn.rev, ln.size, ln.mtime_ns, ln.inode,
                                                     rn.content_hash))

    async def _forget(self, a: Action, scan: Scan, stats: TransferStats) -> None:
        self.state.drop_synced(a.path)
