"""Background housekeeping and garbage collection, one pass = ``sweep_once``:

1. drop expired upload sessions (their quota reservations go with them);
2. prune revisions replaced more than ``retention`` ago, and purge trash items deleted more than
   ``retention`` ago (journaled, so devices see the purge);
3. drop chunk rows that no revision and no upload session of their owner refers to, each delete
   re-checking the references under ``refguard.collecting`` (so a commit, restore or upload that
   starts naming the chunk meanwhile keeps it: it either committed before the check, or waits);
4. delete chunk files with no chunk row and no session naming them, written over ``orphan_grace``
   ago (a file is checked again right before it is deleted).

``collect(svc, dry_run=True)`` counts what steps 2-3 would free without changing anything.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.services import history, refguard, trash
from server.services.context import Services
from server.storage.blobs.base import BlobKey
from server.storage.db import now_ms
from server.storage.models import Chunk, Namespace, Revision, RevisionChunk, Upload, UploadChunk

log = logging.getLogger(__name__)
BATCH = 500
DELETE_GROUP = 32  # orphan deletes per guarded transaction (it holds commits back)
DELETE_GROUP_DIRECT = 4  # an object store's deletes are network round trips (HEAD + DELETE)


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


async def _referenced(s: AsyncSession, keys: list[BlobKey]) -> set[tuple[int, bytes]]:
    """(owner, digest) of *keys* that a chunk row or an upload session refers to. One statement,
    so on PostgreSQL one snapshot: a commit that moves a reference from its session to a chunk row
    between two separate queries would otherwise look like no reference at all."""
    digests = [k.digest for k in keys]
    query = select(Chunk.owner_id, Chunk.hash).where(Chunk.hash.in_(digests)).union_all(
        select(Upload.owner_id, UploadChunk.hash).join(Upload, Upload.id == UploadChunk.upload_id)
        .where(UploadChunk.hash.in_(digests)))
    rows = (await s.execute(query)).all()
    return {(o, bytes(h)) for o, h in rows}


def _unreferenced() -> Any:
    """Chunk rows that no revision in their owner's namespaces and no upload session refers to."""
    by_revision = (select(RevisionChunk.rev_id).join(Revision, Revision.id == RevisionChunk.rev_id)
                   .join(Namespace, Namespace.id == Revision.ns_id)
                   .where(RevisionChunk.hash == Chunk.hash, Namespace.owner_id == Chunk.owner_id).exists())
    by_upload = (select(UploadChunk.idx).join(Upload, Upload.id == UploadChunk.upload_id)
                 .where(UploadChunk.hash == Chunk.hash, Upload.owner_id == Chunk.owner_id).exists())
    return ~by_revision & ~by_upload


async def unreferenced_chunks(svc: Services, limit: int = BATCH, after: tuple[int, bytes] | None = None
                              ) -> list[tuple[int, bytes, int]]:
    """(owner, hash, size) of up to *limit* unreferenced chunk rows, in key order after *after*."""
    q = select(Chunk.owner_id, Chunk.hash, Chunk.size).where(_unreferenced())
    if after is not None:
        q = q.where((Chunk.owner_id > after[0]) | ((Chunk.owner_id == after[0]) & (Chunk.hash > after[1])))
    async with svc.db.read() as s:
        rows = (await s.execute(q.order_by(Chunk.owner_id, Chunk.hash).limit(limit))).all()
    return [(int(o), bytes(h), int(n)) for o, h, n in rows]


async def drop_chunk_rows(svc: Services, candidates: list[tuple[int, bytes, int]]) -> tuple[int, int]:
    """Delete the candidates' rows that are *still* unreferenced; (rows, bytes) dropped."""
    by_owner: dict[int, list[bytes]] = {}
    for owner, digest, _size in candidates:
        by_owner.setdefault(owner, []).append(digest)
    rows = size = 0
    async with svc.db.write() as s:
        await refguard.collecting(s)
        for owner, digests in by_owner.items():
            gone = (await s.execute(
                delete(Chunk).where(Chunk.owner_id == owner, Chunk.hash.in_(digests), _unreferenced())
                .returning(Chunk.size))).scalars().all()
            rows += len(gone)
            size += sum(gone)
    return rows, size


async def collect(svc: Services, dry_run: bool = False) -> dict[str, Any]:
    """Steps 2-3: expired versions, expired trash, unreferenced chunk rows."""
    cutoff = now_ms() - int(svc.config.retention * 1000)
    out = {"dry_run": dry_run, "versions": 0, "trash_items": 0, "chunks": 0, "bytes": 0}
    if dry_run:
        async with svc.db.read() as s:
            out["versions"] = await history.count_expired(s, cutoff)
            out["trash_items"] = await trash.count_expired(s, cutoff)
        after = None
        while batch := await unreferenced_chunks(svc, BATCH, after):
            out["chunks"] += len(batch)
            out["bytes"] += sum(n for _o, _h, n in batch)
            after = batch[-1][:2]
        return out  # chunks only freed by the versions and trash above are not counted until then
    for key, step in (("versions", history.prune_expired), ("trash_items", trash.purge_expired)):
        while True:
            async with svc.db.write() as s:
                await refguard.collecting(s)
                n = await step(s, cutoff, BATCH)
            out[key] += n
            if n < BATCH:
                break
    after = None
    while batch := await unreferenced_chunks(svc, BATCH, after):
        rows, size = await drop_chunk_rows(svc, batch)
        out["chunks"] += rows
        out["bytes"] += size
        after = batch[-1][:2]
    return out


async def sweep_once(svc: Services) -> dict[str, Any]:
    now = now_ms()
    expired = await _expire_uploads(svc, now)
    collected = await collect(svc)
    removed = 0
    batch: list[BlobKey] = []

    written_before = now - int(svc.config.orphan_grace * 1000)

    async def flush() -> int:
        async with svc.db.read() as s:
            refs = await _referenced(s, batch)
        orphans = [k for k in batch if (k.owner_id, k.digest) not in refs]
        batch.clear()
        gone = 0
        step = DELETE_GROUP_DIRECT if svc.blobs.direct else DELETE_GROUP
        for start in range(0, len(orphans), step):
            group = orphans[start:start + step]
            # Checked again and deleted under the guard: no upload session or commit can name
            # one of these chunks meanwhile (they wait); a writer that stored one again without
            # naming it yet renewed its written time, and the conditional delete spares it.
            async with svc.db.write() as s:
                await refguard.collecting(s)
                named = await _referenced(s, group)
                for key in group:
                    if (key.owner_id, key.digest) not in named:
                        await svc.blobs.delete(key, written_before=written_before)
                        gone += 1
        return gone

    async for key in svc.blobs.sweep_candidates(written_before):
        batch.append(key)
        if len(batch) >= BATCH:
            removed += await flush()
    if batch:
        removed += await flush()
    if expired or removed or collected["chunks"] or collected["versions"] or collected["trash_items"]:
        log.info("sweep: %d expired uploads dropped, %d versions pruned, %d trash items purged, "
                 "%d chunks freed, %d orphan chunk files removed", expired, collected["versions"],
                 collected["trash_items"], collected["chunks"], removed)
    return {"expired_uploads": expired, "orphan_chunks": removed} | {
        k: v for k, v in collected.items() if k != "dry_run"}


async def run(svc: Services) -> None:
    while True:
        await asyncio.sleep(svc.config.sweep_interval)
        try:
            await sweep_once(svc)
        except Exception:  # housekeeping must never take the server down; try again next round
            log.exception("sweep failed")
