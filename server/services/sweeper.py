"""Background housekeeping: drop expired upload sessions and collect orphan chunks.

A chunk file is an orphan when no chunk row exists for it (no revision ever committed it), no live
upload session names it, and it was written longer than ``orphan_grace`` ago. Chunks with a row are
never touched here (revision garbage collection is a separate, later step).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import delete, or_, select

from server.services.context import Services
from server.storage.blobs.base import BlobKey
from server.storage.db import now_ms
from server.storage.models import Chunk, Upload, UploadChunk

log = logging.getLogger(__name__)
BATCH = 500


async def _expire_uploads(svc: Services, now: int) -> int:
    grace = int(svc.config.orphan_grace * 1000)
    async with svc.db.write() as s:
        ids = (await s.execute(select(Upload.id).where(or_(
            Upload.expires_ms + grace < now,
            Upload.committed_rev_id.is_not(None) & (Upload.expires_ms < now),
        )))).scalars().all()
        if ids:
            await s.execute(delete(UploadChunk).where(UploadChunk.upload_id.in_(ids)))
            await s.execute(delete(Upload).where(Upload.id.in_(ids)))
    if svc.blobs.direct:
        for upload_id in ids:
            await svc.blobs.discard_staged(upload_id)
    return len(ids)


async def _referenced(svc: Services, keys: list[BlobKey]) -> set[tuple[int, bytes]]:
    """(owner, digest) of *keys* that a chunk row or an upload session refers to. One statement,
    so on PostgreSQL one snapshot: a commit that moves a reference from its session to a chunk row
    between two separate queries would otherwise look like no reference at all."""
    digests = [k.digest for k in keys]
    query = select(Chunk.owner_id, Chunk.hash).where(Chunk.hash.in_(digests)).union_all(
        select(Upload.owner_id, UploadChunk.hash).join(Upload, Upload.id == UploadChunk.upload_id)
        .where(UploadChunk.hash.in_(digests)))
    async with svc.db.read() as s:
        rows = (await s.execute(query)).all()
    return {(o, bytes(h)) for o, h in rows}


async def sweep_once(svc: Services) -> dict[str, int]:
    now = now_ms()
    expired = await _expire_uploads(svc, now)
    removed = 0
    batch: list[BlobKey] = []

    async def flush() -> int:
        refs = await _referenced(svc, batch)
        gone = 0
        for key in batch:
            # Checked again right before the delete: the batch check may be seconds old by now.
            if (key.owner_id, key.digest) not in refs and not await _referenced(svc, [key]):
                await svc.blobs.delete(key)
                gone += 1
        batch.clear()
        return gone

    async for key in svc.blobs.sweep_candidates(now - int(svc.config.orphan_grace * 1000)):
        batch.append(key)
        if len(batch) >= BATCH:
            removed += await flush()
    if batch:
        removed += await flush()
    if expired or removed:
        log.info("sweep: %d expired uploads dropped, %d orphan chunks removed", expired, removed)
    return {"expired_uploads": expired, "orphan_chunks": removed}


async def run(svc: Services) -> None:
    while True:
        await asyncio.sleep(svc.config.sweep_interval)
        try:
            await sweep_once(svc)
        except Exception:  # housekeeping must never take the server down; try again next round
            log.exception("sweep failed")
