"""Chunks a new revision shares with its parent, cut from the parent's bytes on the server.

The average chunk size is a function of a file's size (``server.core.chunking``), so a file that
grows or shrinks across a step (256 MiB, 512 MiB, ...) is cut anew: its chunk list shares no
chunk with the parent's although almost every byte is the same. Instead of asking the client for
the whole file again, an upload's ``start`` cuts the parent's bytes with the new size's chunker
and stores the chunks the announced list names; the client is then asked only for what changed.
This is what rsync's receiver does (rebuild from the old file), at the price of one read of the
parent on the server. The content hash stays a function of the bytes alone: only where the
chunks come from changes.
"""

from __future__ import annotations

import asyncio
import logging

from server.core import chunking
from server.services import downloads
from server.services.context import Services
from server.storage.blobs.base import BlobKey, as_body

log = logging.getLogger(__name__)
MIN_WANTED = 64  # below this many missing chunks, sending them costs less than reading the parent
STORE_AHEAD = 8  # chunk writes in flight (an object store answers each after milliseconds)
# One at a time per process: it reads a whole file and costs a core. A start that finds it busy
# does not wait (the client sends those chunks instead), so no caller can queue up the server.
_running = asyncio.Lock()


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
        return await _from_parent(svc, owner_id, parent_rev, parent_size, new_size, wanted)


async def _from_parent(svc: Services, owner_id: int, parent_rev: int, parent_size: int, new_size: int,
                       wanted: dict[bytes, int]) -> list[bytes]:
    cutter = chunking.StreamCutter(new_size)
    found: list[bytes] = []
    writes: set[asyncio.Task[None]] = set()

    async def store(digest: bytes, data: bytes) -> None:
        await svc.blobs.put_stream(BlobKey(owner_id, digest), len(data), as_body(data))
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

    try:
        async for piece in downloads.revision_bytes(svc, parent_rev, owner_id, 0, parent_size):
            # Cutting and hashing a window takes tens of milliseconds: not on the event loop.
            await take(await asyncio.to_thread(cutter.feed, piece) if cutter.fills(piece) else cutter.feed(piece))
            if not wanted:
                break
        else:
            await take(await asyncio.to_thread(cutter.finish))
        for outcome in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
    except Exception:  # never fail the upload for it: the client sends what was not found
        log.warning("deriving chunks from revision %d stopped early", parent_rev, exc_info=True)
    finally:
        for t in writes:
            t.cancel()
        await asyncio.gather(*writes, return_exceptions=True)
    return found
