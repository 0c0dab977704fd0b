"""The local chunk store (the embedded default): chunks appended to segment files under one folder.

Format, index and crash recovery: ``segments.py``. One file per chunk cost ~1/3 of an upload's
server CPU in inode allocation; a segment append is one ``write``.

Writers: each ``put_stream`` takes an idle open segment for itself (or creates one), appends header
and bytes while hashing, and on a wrong size or hash (or a broken body) truncates the segment back
to where the record started, so a segment is always a run of complete records. A verified chunk is
readable at once (``pending``, in memory) and enters the index at the next flush: fdatasync of the
segments written to, then one index transaction. ``sync`` is a flush; every ``FLUSH_EVERY`` bytes a
background flush starts, so the ``sync`` at commit waits only for the tail.

Deletes drop index rows; a segment whose live bytes fall under ``COMPACT_BELOW`` of its size is
compacted in the background: its live records are copied (``copy_file_range``) to an open segment,
made durable, re-pointed in one fully synced transaction (only rows still at their old place), and
then the old file is unlinked. A reader holding the old file open keeps reading it.

Stores written before segments (``ROOT/OWNER/ab/cd/HASH`` files) are still read, deleted and swept;
new chunks go to segments.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from server.core.chunking import new_hasher
from server.core.errors import ErrorCode, SatchelError
from server.core.fileio import pwrite_all
from server.storage.blobs import segments as fmt
from server.storage.blobs.base import BlobKey, DirectUrl

log = logging.getLogger(__name__)
WRITE_SLICE = 32 * 1024  # hashed then written while hot in L1/L2 (README, "Performance")
READ_PIECE = 1024 * 1024
FLUSH_EVERY = 64 * 1024 * 1024
INDEX_QUERY_KEYS = 500  # digests per index query, well under SQLite's variable limit
COMPACT_BELOW = 0.5  # live bytes / segment size under which a closed segment is rewritten
COMPACT_DELAY = 0.5  # s after a delete: the sweeper deletes in batches, compact once after them
SWEEP_PAGE = 1000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _try_lock(fd: int) -> bool:
    """Claim a segment for writing (or compacting) against other processes; held until closed."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _fail(exc: OSError, what: str) -> SatchelError:
    log.error("local blob store: %s failed: %s", what, exc)
    return SatchelError(ErrorCode.unavailable, "the chunk store cannot write right now")


@dataclass(eq=False)
class _Writer:
    """An open segment, used by one ``put_stream`` at a time."""

    seg: int
    fd: int
    size: int  # end of the last complete record: the file never keeps bytes past it for long
    dirty: bool = False
    pending: dict[tuple[int, bytes], fmt.Location] = field(default_factory=dict)


class LocalBlobStore:
    direct = False

    def __init__(self, root: str | os.PathLike[str], segment_max: int = fmt.SEGMENT_MAX) -> None:
        self.root = Path(root)
        self.folder = self.root / "segments"
        self.segment_max = segment_max
        self._db: sqlite3.Connection | None = None
        self._dir_fd = -1
        self._idle: list[_Writer] = []
        self._busy: set[_Writer] = set()
        self._unflushed_writers: set[_Writer] = set()  # sealed or broken, data not yet flushed
        self._pending: dict[tuple[int, bytes], tuple[_Writer, fmt.Location, int]] = {}
        self._unflushed = 0
        self._flush_lock = asyncio.Lock()
        self._flushing: asyncio.Task[None] | None = None
        self._flush_error: OSError | None = None
        self._compacting: asyncio.Task[None] | None = None
        self._compact_lock = asyncio.Lock()
        self._shrunk: set[int] = set()
        # Chunk files of the layout before segments (``OWNER/ab/cd/DIGEST``). Only read, never
        # written, so a store without them at start never has any: no syscalls looking for them.
        self._legacy = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "start() first"
        return self._db

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._legacy = any(True for _ in self._legacy_owner_dirs())
        self._dir_fd = os.open(self.folder, os.O_RDONLY)
        self._db = fmt.open_index(self.folder / fmt.INDEX_NAME)
        await asyncio.to_thread(self._recover)

    def _recover(self) -> None:
        """Index the records of every closed segment's tail; cut torn tails; drop leftover files.

        Other processes (``satchel admin gc`` next to a running server) may use the store at the
        same time: a segment a process has open for writing is ``flock``ed, and left alone here."""
        db = self.db
        files = {int(p.stem): p for p in self.folder.glob("*.seg")}
        # Rows read after the listing: a file listed has its row (rows are committed first).
        rows = dict(db.execute("SELECT id, indexed_len FROM segments").fetchall())
        for seg, leftover in files.items():
            if seg not in rows:  # compacted away before a crash: never live data
                log.info("removing compacted segment %s", leftover.name)
                leftover.unlink(missing_ok=True)
        now = _now_ms()
        for seg, indexed in rows.items():
            found_path = files.get(seg)
            if found_path is None:
                continue  # compacted by another process meanwhile, or its file is about to be created
            path = found_path
            try:
                fd = os.open(path, os.O_WRONLY)
            except FileNotFoundError:
                continue
            if not _try_lock(fd):
                os.close(fd)
                continue  # another process writes to it
            keep = False
            try:
                end = indexed
                found = list(fmt.scan_tail(path, indexed))
                db.execute("PRAGMA synchronous=FULL")
                try:
                    db.execute("BEGIN IMMEDIATE")
                    db.executemany("INSERT OR IGNORE INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
                                   [(owner, digest, seg, off, n, now) for owner, digest, off, n in found])
                    if found:
                        end = found[-1][2] + found[-1][3]
                    db.execute("UPDATE segments SET indexed_len = ? WHERE id = ?", (end, seg))
                    db.execute("COMMIT")
                finally:
                    db.execute("PRAGMA synchronous=NORMAL")
                size = os.fstat(fd).st_size
                if size > end:
                    log.warning("segment %s: cutting a torn tail of %d bytes", path.name, size - end)
                    os.ftruncate(fd, end)
                    os.fsync(fd)
                if end < self.segment_max // 2:  # reuse the room left in small segments
                    self._idle.append(_Writer(seg, fd, end))
                    keep = True
            finally:
                if not keep:
                    os.close(fd)

    async def close(self) -> None:
        for task in (self._compacting, self._flushing):
            if task is not None:  # awaited, not cancelled: a thread may be copying or syncing
                with contextlib.suppress(OSError, SatchelError):
                    await task
        with contextlib.suppress(OSError, SatchelError):
            await self._flush()
        for w in [*self._idle, *self._busy, *self._unflushed_writers]:
            with contextlib.suppress(OSError):
                os.close(w.fd)
        self._idle, self._busy, self._unflushed_writers = [], set(), set()
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    # ------------------------------------------------------------------ lookups

    def _legacy_owner_dirs(self) -> Iterator[Path]:
        return (p for p in self.root.iterdir() if p.name.isdigit() and p.is_dir())

    def _legacy_path(self, key: BlobKey) -> str:
        """Where the layout before segments kept *key*; FileNotFoundError when there is none."""
        if not self._legacy:
            raise FileNotFoundError(f"no chunk files from before segments in {self.root}")
        h = key.hex
        return f"{self.root}/{key.owner_id}/{h[:2]}/{h[2:4]}/{h}"

    def _locate(self, key: BlobKey) -> fmt.Location | None:
        hit = self._pending.get((key.owner_id, key.digest))
        if hit is not None:
            return hit[1]
        row = self.db.execute("SELECT seg, off, len FROM chunks WHERE owner = ? AND digest = ?",
                              (key.owner_id, key.digest)).fetchone()
        return fmt.Location(*row) if row else None

    async def size(self, key: BlobKey) -> int | None:
        loc = self._locate(key)
        if loc is not None:
            return loc.len
        try:
            return os.stat(self._legacy_path(key)).st_size
        except FileNotFoundError:
            return None

    async def sizes(self, keys: Sequence[BlobKey]) -> list[int | None]:
        """Pending records from memory, the rest from the index a few hundred keys per query."""
        found: dict[tuple[int, bytes], int] = {}
        asked: dict[int, list[bytes]] = {}
        for key in keys:
            hit = self._pending.get((key.owner_id, key.digest))
            if hit is not None:
                found[(key.owner_id, key.digest)] = hit[1].len
            else:
                asked.setdefault(key.owner_id, []).append(key.digest)
        for owner, digests in asked.items():
            for part in self._indexed(owner, digests):
                found.update(((owner, d), n) for d, n in part)
        out: list[int | None] = []
        for key in keys:
            n = found.get((key.owner_id, key.digest))
            out.append(n if n is not None or not self._legacy else await self.size(key))
        return out

    def _indexed(self, owner: int, digests: Sequence[bytes]) -> Iterator[list[tuple[bytes, int]]]:
        """(digest, size) of those of *digests* the index holds, a query's worth at a time."""
        for i in range(0, len(digests), INDEX_QUERY_KEYS):
            part = digests[i:i + INDEX_QUERY_KEYS]
            marks = ",".join("?" * len(part))  # placeholders only: the digests are bound
            yield self.db.execute(f"SELECT digest, len FROM chunks WHERE owner = ? AND digest IN ({marks})",  # noqa: S608
                                  (owner, *part)).fetchall()

    async def exists(self, key: BlobKey) -> bool:
        return await self.size(key) is not None

    def _touch(self, key: BlobKey) -> bool:
        """A new upload of a stored chunk: the orphan grace period counts from now. False if the
        chunk is not stored. One step with no await inside, so a sweeper's conditional delete
        either ran before (False: the caller stores the bytes) or sees the new time."""
        k = (key.owner_id, key.digest)
        hit = self._pending.get(k)
        if hit is not None:
            self._pending[k] = (hit[0], hit[1], _now_ms())
            return True
        # Looked up first: an UPDATE that finds nothing still takes the database's write lock,
        # and most chunks of an upload are new (3,000 new chunks: 0.11 -> 0.08 s).
        if self.db.execute("SELECT 1 FROM chunks WHERE owner = ? AND digest = ?", k).fetchone() is not None \
                and self.db.execute("UPDATE chunks SET written_ms = ? WHERE owner = ? AND digest = ?",
                                    (_now_ms(), *k)).rowcount:
            return True
        try:
            os.utime(self._legacy_path(key))
            return True
        except FileNotFoundError:
            return False

    # ------------------------------------------------------------------ writes

    def _new_segment(self) -> _Writer:
        db = self.db
        db.execute("PRAGMA synchronous=FULL")  # the row is durable before the file exists
        try:
            db.execute("BEGIN IMMEDIATE")
            seg = db.execute("INSERT INTO segments (indexed_len) VALUES (0)").lastrowid
            db.execute("COMMIT")
        finally:
            db.execute("PRAGMA synchronous=NORMAL")
        assert seg is not None
        fd = os.open(fmt.segment_path(self.folder, seg), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        _try_lock(fd)  # a new file: nobody else has it
        os.fsync(self._dir_fd)  # the file's name survives a crash once anything points into it
        return _Writer(seg, fd, 0)

    def _take_writer(self) -> _Writer:
        w = self._idle.pop() if self._idle else self._new_segment()
        self._busy.add(w)
        return w

    def _give_back(self, w: _Writer, usable: bool) -> None:
        self._busy.discard(w)
        if usable and w.size < self.segment_max:
            self._idle.append(w)
        else:  # full or broken: closed after its data is flushed
            self._unflushed_writers.add(w)

    async def _consume_verified(self, key: BlobKey, size: int, body: AsyncIterator[bytes | memoryview], fd: int,
                                at: int = 0, hashed: bool = False) -> None:
        """Read *body*, writing it to *fd* at offset *at* unless fd is -1, and check its size and
        hash (the hash unless the caller *hashed* these bytes itself)."""
        hasher = None if hashed else new_hasher()
        received = 0
        async for piece in body:
            received += len(piece)
            if received > size:
                raise SatchelError(ErrorCode.size_mismatch, "chunk is larger than announced", expected=size)
            if fd < 0:
                if hasher is not None:
                    hasher.update(piece)
                continue
            # Hash and write a slice at a time, while it is in the CPU cache: a whole body piece
            # (up to 256 KB) is not, and memory bandwidth is what an upload runs out of first.
            view = memoryview(piece)
            for i in range(0, len(view), WRITE_SLICE):
                part = view[i:i + WRITE_SLICE]
                if hasher is not None:
                    hasher.update(part)
                pwrite_all(fd, part, at)  # page-cache writes are microseconds: no thread hop needed
                at += len(part)
        if received != size:
            raise SatchelError(ErrorCode.size_mismatch, f"chunk has {received} bytes, announced {size}",
                               expected=size, received=received)
        if hasher is not None and hasher.digest() != key.digest:
            raise SatchelError(ErrorCode.hash_mismatch, "chunk bytes do not match their hash", hash=key.hex)

    async def put_stream(self, key: BlobKey, size: int, body: AsyncIterator[bytes | memoryview], *,
                         hashed: bool = False) -> None:
        try:
            if self._touch(key):  # stored: verify what came, keep the stored copy
                await self._consume_verified(key, size, body, -1, hashed=hashed)
                return
            w = self._take_writer()
        except OSError as exc:
            raise _fail(exc, "opening a segment") from exc
        start = w.size
        usable = True
        try:
            pwrite_all(w.fd, fmt.header(key.owner_id, key.digest, size), start)
            await self._consume_verified(key, size, body, w.fd, start + fmt.HEADER_SIZE, hashed=hashed)
        except BaseException as exc:
            try:  # back to the last complete record, so the segment stays a run of records
                os.ftruncate(w.fd, start)
            except OSError:
                log.exception("segment %d: cannot cut a failed record; closing the segment", w.seg)
                usable = False
            self._give_back(w, usable)
            if isinstance(exc, OSError):
                raise _fail(exc, "a chunk write") from exc
            raise
        w.size = start + fmt.HEADER_SIZE + size
        w.dirty = True
        k = (key.owner_id, key.digest)
        # A concurrent copy that finished first wins (ours is dead bytes). One already flushed to the
        # index wins at our flush (INSERT OR IGNORE); until then reads use ours, the same bytes.
        if k not in self._pending:
            loc = fmt.Location(w.seg, start + fmt.HEADER_SIZE, size)
            w.pending[k] = loc
            self._pending[k] = (w, loc, _now_ms())
        self._give_back(w, True)
        self._written(fmt.HEADER_SIZE + size)

    def _written(self, n: int) -> None:
        """Count bytes written; past FLUSH_EVERY, start a background flush unless one runs."""
        self._unflushed += n
        if self._unflushed >= FLUSH_EVERY and (self._flushing is None or self._flushing.done()):
            self._unflushed = 0
            self._flushing = asyncio.get_running_loop().create_task(self._background_flush())

    async def _background_flush(self) -> None:
        try:
            await self._flush()
        except OSError as exc:
            # The kernel reports a writeback error once: keep it for the next commit's sync().
            log.error("background flush failed: %s", exc)
            self._flush_error = exc

    async def _flush(self) -> None:
        """Make every complete record durable, then index it."""
        async with self._flush_lock:
            writers = [w for w in (*self._idle, *self._busy, *self._unflushed_writers) if w.dirty]
            # What each writer holds now; records completed during the fdatasync wait for the next flush.
            marks = [(w, w.size, list(w.pending.items())) for w in writers]
            for w in writers:
                w.dirty = False
            failed: list[_Writer] = []

            def datasync() -> OSError | None:
                error = None
                for w, _size, _entries in marks:
                    try:
                        os.fdatasync(w.fd)
                    except OSError as exc:
                        error = exc
                        failed.append(w)
                return error

            error = await asyncio.to_thread(datasync)
            for w in failed:
                # After a failed fdatasync the page cache may claim bytes the disk lost: forget the
                # segment's unflushed records (uploads send them again) and write no more to it.
                for k in w.pending:
                    self._pending.pop(k, None)
                w.pending.clear()
                if w in self._idle:
                    self._idle.remove(w)
                    self._unflushed_writers.add(w)
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                for w, size, entries in marks:
                    if w in failed:
                        continue
                    rows = []
                    for k, loc in entries:
                        hit = self._pending.get(k)
                        if hit is not None and hit[1] is loc:  # not deleted since
                            rows.append((*k, loc.seg, loc.off, loc.len, hit[2]))
                            del self._pending[k]
                        w.pending.pop(k, None)
                    db.executemany("INSERT OR IGNORE INTO chunks VALUES (?, ?, ?, ?, ?, ?)", rows)
                    db.execute("UPDATE segments SET indexed_len = max(indexed_len, ?) WHERE id = ?", (size, w.seg))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            for w in list(self._unflushed_writers):
                if not w.dirty and w not in self._busy:
                    self._unflushed_writers.discard(w)
                    os.close(w.fd)
            if error is not None:
                raise error

    async def sync(self, keys: Sequence[BlobKey] = ()) -> None:
        if self._flushing is not None and not self._flushing.done():
            with contextlib.suppress(OSError):
                await self._flushing
        try:
            error, self._flush_error = self._flush_error, None
            if error is not None:
                raise error
            await self._flush()
            lost = self._not_durable(keys)
            if lost:
                await self._flush()  # stored again by someone after our flush looked: once more
                lost = self._not_durable(keys)
        except OSError as exc:
            log.error("chunk store sync failed: %s", exc)
            raise SatchelError(ErrorCode.unavailable, "the chunk store could not make data durable") from exc
        if lost:
            # Another caller's flush failed and dropped records this caller had written (its own
            # flush then had nothing left to fail on): never report those as durable.
            log.error("chunk store sync: %d chunks were dropped by a failed write-back", lost)
            raise SatchelError(ErrorCode.unavailable, "the chunk store lost chunks in a failed write; "
                               "send them again", lost=lost)

    def _not_durable(self, keys: Sequence[BlobKey]) -> int:
        """How many distinct *keys* are not flushed and indexed (nor files of the layout before
        segments). The index is asked once per few hundred keys: a commit of a big file names
        thousands, and a query each was a third of its CPU."""
        unindexed: dict[int, set[bytes]] = {}
        for key in keys:
            unindexed.setdefault(key.owner_id, set()).add(key.digest)
        count = 0
        for owner, digests in unindexed.items():
            count += sum(1 for d in digests if (owner, d) in self._pending)
            flushed = [d for d in digests if (owner, d) not in self._pending]
            indexed = {d for part in self._indexed(owner, flushed) for d, _n in part}
            count += sum(1 for d in flushed if d not in indexed and not self._legacy_exists(BlobKey(owner, d)))
        return count

    def _legacy_exists(self, key: BlobKey) -> bool:
        try:
            return os.path.exists(self._legacy_path(key))
        except FileNotFoundError:
            return False

    # ------------------------------------------------------------------ reads

    def _open_located(self, key: BlobKey) -> tuple[int, fmt.Location] | None:
        """An open fd on the chunk's segment and its place; None if not in a segment. A compaction
        may move the chunk between the lookup and the open: then look again."""
        for _attempt in range(3):
            loc = self._locate(key)
            if loc is None:
                return None
            try:
                return os.open(fmt.segment_path(self.folder, loc.seg), os.O_RDONLY), loc
            except FileNotFoundError:
                continue
        raise SatchelError(ErrorCode.unavailable, "the chunk store is busy moving this chunk; retry")

    async def read(self, key: BlobKey, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        located = self._open_located(key)
        if located is None:
            try:
                fd = os.open(self._legacy_path(key), os.O_RDONLY)
            except FileNotFoundError as exc:
                raise SatchelError(ErrorCode.not_found, "chunk not found", hash=key.hex) from exc
            base, length = 0, os.fstat(fd).st_size
        else:
            fd, loc = located
            base, length = loc.off, loc.len
        try:
            pos = max(0, start)
            stop = length if end is None else min(end, length)
            while pos < stop:
                piece = os.pread(fd, min(READ_PIECE, stop - pos), base + pos)
                if not piece:
                    break
                pos += len(piece)
                yield piece
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ deletes and compaction

    async def delete(self, key: BlobKey, written_before: int | None = None) -> None:
        k = (key.owner_id, key.digest)
        before = written_before if written_before is not None else 2**62
        hit = self._pending.get(k)
        if hit is not None and hit[2] >= before:
            return  # stored again since the caller looked: keep it
        if hit is not None:  # the next flush moves indexed_len past it, so a restart keeps it dead
            del self._pending[k]
            hit[0].pending.pop(k, None)
            self._shrunk.add(hit[1].seg)
        row = self.db.execute("DELETE FROM chunks WHERE owner = ? AND digest = ? AND written_ms < ? RETURNING seg",
                              (*k, before)).fetchone()
        if row is not None:
            self._shrunk.add(row[0])
        with contextlib.suppress(FileNotFoundError):
            legacy = self._legacy_path(key)
            if os.stat(legacy).st_mtime * 1000 < before:
                os.unlink(legacy)
        if self._shrunk and (self._compacting is None or self._compacting.done()):
            self._compacting = asyncio.get_running_loop().create_task(self._compact_later())

    async def _compact_later(self) -> None:
        await asyncio.sleep(COMPACT_DELAY)
        try:
            await self.compact()
        except (OSError, SatchelError):
            log.exception("segment compaction failed; the next delete tries again")

    async def compact(self, below: float = COMPACT_BELOW) -> int:
        """Rewrite the closed segments (none open for writing here or in another process) whose
        deletes left less than *below* of them live; returns how many segments were removed."""
        async with self._compact_lock:  # one at a time (the background one and an explicit call)
            return await self._compact(below)

    async def _compact(self, below: float) -> int:
        await self._flush()  # no unindexed record left in a segment this process closed
        self._shrunk.clear()
        open_segs = {w.seg for w in (*self._idle, *self._busy, *self._unflushed_writers)}
        live_by_seg = dict(self.db.execute(
            "SELECT seg, sum(len + ?) FROM chunks GROUP BY seg", (fmt.HEADER_SIZE,)).fetchall())
        removed = 0
        for seg, in self.db.execute("SELECT id FROM segments ORDER BY id").fetchall():
            if seg in open_segs:
                continue
            path = fmt.segment_path(self.folder, seg)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                total = os.fstat(fd).st_size
                live = live_by_seg.get(seg, 0)
                if (total and live / total >= below) or not _try_lock(fd):
                    continue
                rows = self.db.execute("SELECT owner, digest, off, len FROM chunks WHERE seg = ? ORDER BY off",
                                       (seg,)).fetchall()
                await self._rewrite(seg, fd, [(o, bytes(d), off, n) for o, d, off, n in rows])
                removed += 1
            finally:
                os.close(fd)
        return removed

    async def _rewrite(self, seg: int, src: int, live: list[tuple[int, bytes, int, int]]) -> None:
        moves: list[tuple[int, int, int, int, bytes, int]] = []
        if live:
            # A fresh segment: its indexed_len may then jump past everything copied, which would
            # skip unindexed records of a pooled writer in a crash (their recovery reads tails).
            w = self._new_segment()
            self._busy.add(w)
            start = w.size
            try:
                def copy() -> None:
                    pos = start
                    for owner, digest, off, n in live:
                        pwrite_all(w.fd, fmt.header(owner, digest, n), pos)
                        left, at, to = n, off, pos + fmt.HEADER_SIZE
                        while left:  # in the kernel: no copy through user space
                            done = os.copy_file_range(src, w.fd, left, at, to)
                            if done == 0:
                                raise OSError(f"segment {seg} ends inside a record")
                            left -= done
                            at += done
                            to += done
                        moves.append((pos + fmt.HEADER_SIZE, w.seg, seg, off, digest, owner))
                        pos += fmt.HEADER_SIZE + n
                    os.fdatasync(w.fd)

                await asyncio.to_thread(copy)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(w.fd, start)
                self._give_back(w, True)
                raise
            w.size = start + sum(fmt.HEADER_SIZE + n for *_r, n in live)
            self._give_back(w, True)
        db = self.db
        db.execute("PRAGMA synchronous=FULL")  # the old file goes next: the new places must last
        try:
            db.execute("BEGIN IMMEDIATE")
            # Only rows still where they were: a chunk deleted (or deleted and stored again)
            # meanwhile keeps its new state; its copy here is dead bytes.
            db.executemany("UPDATE chunks SET off = ?, seg = ? WHERE seg = ? AND off = ? AND digest = ? AND owner = ?",
                           moves)
            if live:
                db.execute("UPDATE segments SET indexed_len = max(indexed_len, ?) WHERE id = ?",
                           (moves[-1][0] + live[-1][3], moves[-1][1]))
            db.execute("DELETE FROM segments WHERE id = ?", (seg,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.execute("PRAGMA synchronous=NORMAL")
        os.unlink(fmt.segment_path(self.folder, seg))
        log.info("compacted segment %d: %d live chunks moved", seg, len(live))

    # ------------------------------------------------------------------ direct transfers: none

    async def presign_upload(self, upload_id: str, key: BlobKey, size: int, ttl: float) -> DirectUrl:
        raise SatchelError(ErrorCode.not_found, "this store has no direct upload URLs")

    async def promote(self, upload_id: str, key: BlobKey, size: int) -> None:
        raise SatchelError(ErrorCode.not_found, "this store has no staging area")

    async def presign_download(self, key: BlobKey, ttl: float) -> DirectUrl:
        raise SatchelError(ErrorCode.not_found, "this store has no direct download URLs")

    async def staged(self, upload_id: str) -> set[bytes]:
        return set()  # chunks land at their final key once verified: nothing is ever staged

    async def discard_staged(self, upload_id: str) -> None:
        return None

    async def sweep_candidates(self, older_than_ms: int) -> AsyncIterator[BlobKey]:
        for (owner, digest), (_w, _loc, written) in list(self._pending.items()):
            if written < older_than_ms:
                yield BlobKey(owner, digest)
        after: tuple[int, bytes] = (-1, b"")
        while True:  # pages by key, so deletes made while the caller iterates do not disturb it
            rows = self.db.execute(
                "SELECT owner, digest, written_ms FROM chunks WHERE (owner, digest) > (?, ?) "
                "ORDER BY owner, digest LIMIT ?", (*after, SWEEP_PAGE)).fetchall()
            if not rows:
                break
            after = (rows[-1][0], bytes(rows[-1][1]))
            for owner, digest, written in rows:
                if written < older_than_ms:
                    yield BlobKey(owner, bytes(digest))
        cutoff = older_than_ms / 1000
        for owner_dir in self._legacy_owner_dirs() if self._legacy else ():  # chunks stored before segments
            owner = int(owner_dir.name)
            for path in owner_dir.glob("*/*/*"):
                try:
                    if path.stat().st_mtime < cutoff:
                        yield BlobKey(owner, bytes.fromhex(path.name))
                except (OSError, ValueError):
                    continue
