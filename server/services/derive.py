"""Chunks a new revision shares with its parent, cut from the parent's bytes on the server.

The average chunk size is a function of a file's size (``server.core.chunking``), so a file that
grows or shrinks across a step (256 MiB, 512 MiB, ...) is cut anew: its chunk list shares no
chunk with the parent's although almost every byte is the same. Instead of asking the client for
the whole file again, an upload's ``start`` cuts the parent's bytes with the new size's chunker
and stores the chunks the announced list names; the client is then asked only for what changed.
This is what rsync's receiver does (rebuild from the old file), at the price of one read of the
parent on the server. Only where the chunks come from changes. (A client that knows the
parent's chunk list may instead keep the parent's cut across one step, ``chunking.cut_size``:
then there is nothing to derive.)

The chunk or two around the edit are still missing then, and past 256 MiB they average 160 KiB.
A client that knows the parent's chunk list sends them as patches instead (``POST
/api/v1/uploads/{id}/patch``): ranges of the parent's bytes, which the server copies, and the
literal bytes in between (about one chunk of the parent's smaller size).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import logging
import time

from sqlalchemy import select

from server.core import chunking
from server.core.errors import ErrorCode, SatchelError
from server.services import downloads
from server.services.context import Services
from server.storage.blobs.base import BlobKey, as_body
from server.storage.models import RevisionChunk

log = logging.getLogger(__name__)
MIN_WANTED = 64  # below this many missing chunks, sending them costs less than reading the parent
STORE_AHEAD = 8  # chunk writes in flight (an object store answers each after milliseconds)
CUT_WINDOW = 8 * 1024 * 1024  # bytes of the parent cut at a time, in a thread
# One at a time per process: it reads a whole file and costs a core. A start that finds it busy
# does not wait (the client sends those chunks instead), so no caller can queue up the server.
_running = asyncio.Lock()


_flushes: set[asyncio.Future[None]] = set()  # held until done (the loop keeps only weak references)


def _flushed(flush: asyncio.Future[None]) -> None:
    _flushes.discard(flush)
    if not flush.cancelled() and flush.exception() is not None:  # the commit's own sync reports it
        log.warning("flushing derived chunks failed: %s", flush.exception())


def crosses_step(new_size: int, parent_size: int | None) -> bool:
    """Would the new version be cut with another average chunk size than its parent?"""
    return parent_size is not None and chunking.avg_chunk_size(new_size) != chunking.avg_chunk_size(parent_size)


async def from_parent(svc: Services, owner_id: int, parent_rev: int, parent_size: int, new_size: int,
                      wanted: dict[bytes, int]) -> list[bytes]:
    """Store the chunks of *wanted* (digest -> size) that the parent revision's bytes hold when
    cut as a file of *new_size*; return their digests. Best effort: a failure (a parent chunk
    unreadable) ends the search, and the chunks not found are simply sent by the client; so does
    another derivation running already."""
    if _running.locked():
        log.info("not deriving chunks from revision %d: another derivation is running", parent_rev)
        return []
    async with _running:
        t0, asked = time.perf_counter(), len(wanted)
        found = await _from_parent(svc, owner_id, parent_rev, parent_size, new_size, wanted)
        log.info("derived %d of %d chunks from revision %d (%d bytes) in %.3f s", len(found), asked, parent_rev,
                 parent_size, time.perf_counter() - t0)
        return found


async def _from_parent(svc: Services, owner_id: int, parent_rev: int, parent_size: int, new_size: int,
                       wanted: dict[bytes, int]) -> list[bytes]:
    cutter = chunking.StreamCutter(new_size)
    found: list[bytes] = []
    writes: set[asyncio.Task[None]] = set()

    async def store(digest: bytes, data: bytes) -> None:
        await svc.blobs.put_stream(BlobKey(owner_id, digest), len(data), as_body(data), hashed=True)
        found.append(digest)

    async def take(cuts: list[tuple[chunking.ChunkRef, memoryview]]) -> None:
        for ref, view in cuts:
            if wanted.get(ref.digest) != ref.size:
                continue
            del wanted[ref.digest]
            writes.add(asyncio.ensure_future(store(ref.digest, bytes(view))))
            if len(writes) >= STORE_AHEAD:
                done, _ = await asyncio.wait(writes, return_when=asyncio.FIRST_COMPLETED)
                writes.difference_update(done)
                for t in done:
                    t.result()

    def cut(pieces: list[bytes], final: bool) -> list[tuple[chunking.ChunkRef, memoryview]]:
        out = [c for p in pieces for c in cutter.feed(p)]
        return out + cutter.finish() if final else out

    # Three stages overlap: the event loop reads a window of the parent and stores the chunks
    # found in the previous one while a thread cuts and hashes the window before that (the
    # cutter is used by one thread at a time; each cut's views stay valid, see StreamCutter).
    cutting: asyncio.Future[list[tuple[chunking.ChunkRef, memoryview]]] | None = None
    batch: list[bytes] = []
    held = 0
    try:
        async for piece in downloads.revision_bytes(svc, parent_rev, owner_id, 0, parent_size):
            batch.append(piece)
            held += len(piece)
            if held < CUT_WINDOW:
                continue
            cuts = await cutting if cutting is not None else []
            cutting = asyncio.ensure_future(asyncio.to_thread(cut, batch, False))
            batch, held = [], 0
            await take(cuts)
            if not wanted:
                break
        else:
            await take(await cutting if cutting is not None else [])
            cutting = None
            await take(await asyncio.to_thread(cut, batch, True))
        for outcome in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
        if found:  # make them durable now, while the client patches: its commit then waits less
            _flushes.add(flush := asyncio.ensure_future(svc.blobs.sync()))
            flush.add_done_callback(_flushed)
    except Exception:  # never fail the upload for it: the client sends what was not found
        log.warning("deriving chunks from revision %d stopped early", parent_rev, exc_info=True)
    finally:
        for t in writes:
            t.cancel()
        await asyncio.gather(*writes, return_exceptions=True)
        if cutting is not None:  # let a running cut end before the cutter is dropped
            await asyncio.gather(cutting, return_exceptions=True)
    return found


# ------------------------------------------------------------------ patches

MAX_PARTS = 1024  # parts per chunk, and 4x that per request (each range is a read of the store)
MAX_PATCH_BYTES = 64 * 1024 * 1024  # bytes built per request: a client patches a chunk or two


def parse_patches(raw: object, parent_size: int) -> list[tuple[bytes, int, list[tuple[int, int] | bytes]]]:
    """``[{hash, size, parts: [[offset, length] | "base64"]}]`` -> (digest, size, parts), checked:
    each copy within the parent, the parts adding up to the size."""
    if not isinstance(raw, list) or not 0 < len(raw) <= chunking.MAX_PATCHES:
        raise SatchelError(ErrorCode.bad_request, f"'chunks' must be a list of 1 to {chunking.MAX_PATCHES} patches",
                           field="chunks")
    out: list[tuple[bytes, int, list[tuple[int, int] | bytes]]] = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("hash"), str) \
                or not chunking.HEX_HASH.fullmatch(item["hash"]) or type(item.get("size")) is not int \
                or not 0 < item["size"] <= chunking.MAX_CHUNK_SIZE \
                or not isinstance(item.get("parts"), list) or not 0 < len(item["parts"]) <= MAX_PARTS:
            raise SatchelError(ErrorCode.bad_request, "a patch is {hash, size, parts}", field="chunks")
        parts: list[tuple[int, int] | bytes] = []
        total = 0
        for p in item["parts"]:
            if isinstance(p, list) and len(p) == 2 and all(type(v) is int for v in p) \
                    and p[0] >= 0 and p[1] > 0 and p[0] + p[1] <= parent_size:
                parts.append((p[0], p[1]))
                total += p[1]
            elif isinstance(p, bytes) and p:  # a msgpack body
                parts.append(p)
                total += len(p)
            elif isinstance(p, str) and p:  # a JSON body
                try:
                    data = base64.b64decode(p, validate=True)
                except ValueError as exc:
                    raise SatchelError(ErrorCode.bad_request, "a literal part is base64", field="chunks") from exc
                parts.append(data)
                total += len(data)
            else:
                raise SatchelError(ErrorCode.bad_request, "a part is [offset, length] within the parent "
                                   "or base64 bytes", field="chunks")
            if total > item["size"]:
                break
        if total != item["size"]:
            raise SatchelError(ErrorCode.size_mismatch, "the parts do not add up to the chunk's size",
                               hash=item["hash"], expected=item["size"], received=total)
        out.append((bytes.fromhex(item["hash"]), item["size"], parts))
    if sum(len(parts) for _, _, parts in out) > 4 * MAX_PARTS:
        raise SatchelError(ErrorCode.bad_request, f"at most {4 * MAX_PARTS} parts per request", field="chunks")
    if sum(n for _, n, _ in out) > MAX_PATCH_BYTES:
        raise SatchelError(ErrorCode.too_large, f"at most {MAX_PATCH_BYTES} bytes of chunks per request",
                           limit=MAX_PATCH_BYTES)
    return out


class ParentBytes:
    """Byte ranges of a parent revision, read from its chunks: the chunk list is loaded once per
    request (not a query per range), and each range reads only the chunks it overlaps."""

    def __init__(self, svc: Services, owner_id: int, chunks: list[tuple[int, int, bytes]]) -> None:
        self.svc, self.owner_id, self.chunks = svc, owner_id, chunks  # (offset, size, digest), in order
        self.starts = [off for off, _, _ in chunks]

    @classmethod
    async def load(cls, svc: Services, owner_id: int, rev_id: int) -> ParentBytes:
        async with svc.db.read() as s:
            rows = (await s.execute(
                select(RevisionChunk.offset, RevisionChunk.size, RevisionChunk.hash)
                .where(RevisionChunk.rev_id == rev_id).order_by(RevisionChunk.idx))).all()
        return cls(svc, owner_id, [(int(o), int(n), bytes(h)) for o, n, h in rows])

    async def read_into(self, buf: bytearray, start: int, length: int) -> None:
        end = start + length
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        while start < end and i < len(self.chunks):
            off, size, digest = self.chunks[i]
            i += 1
            if off + size <= start:
                continue
            lo, hi = start - off, min(size, end - off)
            async for piece in self.svc.blobs.read(BlobKey(self.owner_id, digest), lo, hi):
                buf += piece
            start = off + hi
        if start < end:
            raise SatchelError(ErrorCode.bad_request, "a range is outside the parent", field="chunks")


async def store_patched(parent: ParentBytes, digest: bytes, size: int, parts: list[tuple[int, int] | bytes]) -> None:
    """Build one chunk from the parent's bytes and literal bytes, and store it (the store checks
    its hash: ``hash_mismatch`` when the patch was wrong, nothing stored)."""
    buf = bytearray()
    for p in parts:
        if isinstance(p, bytes):
            buf += p
        else:
            await parent.read_into(buf, p[0], p[1])
    await parent.svc.blobs.put_stream(BlobKey(parent.owner_id, digest), size, as_body(bytes(buf)))
