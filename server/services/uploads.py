"""Uploads: announce a file's chunk list, receive the missing chunks, commit atomically.

1. ``start``: the client sends path, size, parent revision and chunk hashes; the server records an
   upload session and answers with the chunks it lacks, each with a signed, expiring, single-purpose
   URL (an S3 presigned PUT into the session's staging area, or this server's own HMAC URL).
   The same announcement again returns the same open session: any upload resumes by re-asking.
2. ``receive_chunk`` (server URLs only): stream, hash, store; no database work on this hot path.
   ``receive_pack`` takes many of the session's chunks in one request (``server.core.pack``),
   checked against the announced list with one query before a byte is stored.
3. ``commit``: check every chunk is stored (promoting staged S3 chunks after verifying them),
   make them durable, then in ONE transaction: parent check, revision, chunk list, node, journal.
   Nothing is visible before that transaction commits; a stale parent is a ``conflict``.

Chunks are deduplicated per owner, and a member writing into a shared folder writes into the
owner's store. Such a writer (``_proving``) gets dedup credit only for chunks they have shown they
can read: chunks of a revision of the same namespace, or chunks this session delivered itself
(``UploadChunk.received``, set by ``receive_chunk`` / ``receive_pack`` / an S3 promote). Anything
else the owner stores (their private files) is listed as missing and must really arrive, so a
hash learnt somewhere never turns into a read of bytes the writer was not granted.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, func, insert, literal, select, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.tokens import new_id
from server.core import chunking, paths
from server.core.aio import gather_limited
from server.core.errors import ErrorCode, SatchelError
from server.core.pack import PackReader
from server.services import access, derive, downloads, journal, quota, refguard, search_index, tree
from server.services.access import Location, Perm
from server.services.context import Principal, Services
from server.services.serialize import iso
from server.storage.blobs.base import BlobKey, as_body
from server.storage.db import now_ms
from server.storage.models import Chunk, Namespace, Node, Revision, RevisionChunk, Upload, UploadChunk

log = logging.getLogger(__name__)
INSERT_BATCH = 5000
VERIFY_CONCURRENCY = 16
MISSING_REPORT_LIMIT = 1000
MAX_MTIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: later times have no ISO 8601 form
UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")  # what new_id() makes


def blob_path(upload_id: str, hex_hash: str) -> str:
    return f"/api/v1/blobs/up/{upload_id}/{hex_hash}"


def pack_path(upload_id: str) -> str:
    return f"/api/v1/blobs/pack/{upload_id}"


# ---------------------------------------------------------------- request validation

def _int(body: dict[str, Any], key: str, *, required: bool = True, minimum: int = 0,
         maximum: int | None = None) -> int | None:
    val = body.get(key)
    if val is None and not required:
        return None
    if not isinstance(val, int) or isinstance(val, bool) or val < minimum:
        raise SatchelError(ErrorCode.bad_request, f"'{key}' must be an integer >= {minimum}", field=key)
    if maximum is not None and val > maximum:
        raise SatchelError(ErrorCode.bad_request, f"'{key}' must be <= {maximum}", field=key)
    return val


int_field = _int  # the same checks for other services' request bodies


def _check_mime(mime: object) -> str | None:
    # Printable ASCII: downloads send it back as the Content-Type header.
    if mime is not None and (not isinstance(mime, str) or len(mime) > 255
                             or not (mime.isascii() and mime.isprintable())):
        raise SatchelError(ErrorCode.bad_request,
                           "'mime' must be printable ASCII of at most 255 characters", field="mime")
    return mime


def parse_chunk_list(raw: object, size: int, max_chunks: int) -> list[tuple[bytes, int]]:
    if not isinstance(raw, list):
        raise SatchelError(ErrorCode.bad_request, "'chunks' must be a list of [hash, size] pairs",
                           field="chunks")
    if len(raw) > max_chunks:
        raise SatchelError(ErrorCode.too_many_chunks, f"a file may have at most {max_chunks} chunks",
                           limit=max_chunks)
    out: list[tuple[bytes, int]] = []
    seen: dict[bytes, int] = {}
    total = 0
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], int) and not isinstance(item[1], bool)):
            raise SatchelError(ErrorCode.bad_request, "each chunk is [hex hash, size]", field="chunks")
        hex_hash, csize = item
        # A pattern, not just bytes.fromhex: that one skips whitespace, so 64 characters could be fewer bytes.
        if not chunking.HEX_HASH.fullmatch(hex_hash):
            raise SatchelError(ErrorCode.bad_request, "a chunk hash is 64 hex digits (BLAKE3-256)",
                               field="chunks")
        digest = bytes.fromhex(hex_hash)
        if not 0 < csize <= chunking.MAX_CHUNK_SIZE:
            raise SatchelError(ErrorCode.bad_request,
                               f"a chunk is 1 to {chunking.MAX_CHUNK_SIZE} bytes", field="chunks")
        if seen.setdefault(digest, csize) != csize:  # one digest is one content, so one size
            raise SatchelError(ErrorCode.size_mismatch, "the same chunk hash is listed with two sizes",
                               field="chunks", hash=hex_hash)
        total += csize
        out.append((digest, csize))
    if total != size:
        raise SatchelError(ErrorCode.size_mismatch, f"chunk sizes add up to {total}, not {size}",
                           expected=size, received=total)
    return out


# ---------------------------------------------------------------- helpers

def _proving(upload: Upload) -> bool:
    """True when the uploader is not the namespace's owner: see the module's docstring."""
    return upload.user_id != upload.owner_id


def _in_namespace(ns_id: int, digest: Any) -> ColumnElement[bool]:
    """Some revision of namespace *ns_id* (live, old or trashed) references chunk *digest*."""
    return exists().where(RevisionChunk.hash == digest, Revision.id == RevisionChunk.rev_id,
                          Revision.ns_id == ns_id)


async def _missing(s: AsyncSession, upload: Upload) -> list[tuple[bytes, int]]:
    """Distinct chunks of *upload* the owner does not have yet (by the database's account)."""
    rows = (await s.execute(
        select(UploadChunk.hash, UploadChunk.size).distinct()
        .where(UploadChunk.upload_id == upload.id)
        .where(~exists().where(Chunk.owner_id == upload.owner_id, Chunk.hash == UploadChunk.hash))
    )).all()
    return [(bytes(h), int(n)) for h, n in rows]


async def _unproven(s: AsyncSession, upload: Upload) -> list[tuple[bytes, int]]:
    """Of a proving upload, the distinct chunks neither delivered by this session nor stored
    and referenced by a revision of its namespace: the writer must send these."""
    rows = (await s.execute(
        select(UploadChunk.hash, UploadChunk.size).distinct()
        .where(UploadChunk.upload_id == upload.id, UploadChunk.received.is_(False))
        .where(~(exists().where(Chunk.owner_id == upload.owner_id, Chunk.hash == UploadChunk.hash)
                 & _in_namespace(upload.ns_id, UploadChunk.hash)))
    )).all()
    return [(bytes(h), int(n)) for h, n in rows]


async def _mark_received(svc: Services, upload_id: str, digests: list[bytes], received: bool = True) -> None:
    async with svc.db.write() as s:
        for i in range(0, len(digests), INSERT_BATCH):
            await s.execute(update(UploadChunk).where(
                UploadChunk.upload_id == upload_id, UploadChunk.hash.in_(digests[i:i + INSERT_BATCH]))
                .values(received=received))


async def _still_missing(svc: Services, upload: Upload, candidates: list[tuple[bytes, int]],
                         resumed: bool = True) -> list[tuple[bytes, int]]:
    """Of *candidates*, those not yet in the blob store (for a local store a file check).

    With an object store, chunks of a resumed session may also be final already: a commit that
    failed on one bad chunk has promoted the others (one HEAD each; a fresh session skips this)."""
    if svc.blobs.direct:
        staged = await svc.blobs.staged(upload.id)
        unstaged = [c for c in candidates if c[0] not in staged]
        if not resumed or not unstaged:
            return unstaged
        candidates = unstaged
    sizes = await svc.blobs.sizes([BlobKey(upload.owner_id, h) for h, _ in candidates])
    return [c for c, stored in zip(candidates, sizes, strict=True) if stored != c[1]]


def _url_ttl(svc: Services, upload: Upload) -> float:
    return min(downloads.url_ttl(svc, _proving(upload)), max(1.0, (upload.expires_ms - now_ms()) / 1000))


def _member_params(upload: Upload) -> dict[str, int]:
    """A member's URLs name them and the namespace: ``access.check_signed`` re-checks on use."""
    return {"u": upload.user_id, "ns": upload.ns_id} if _proving(upload) else {}


async def _urls(svc: Services, upload: Upload, chunks: list[tuple[bytes, int]], base_url: str
                ) -> list[dict[str, Any]]:
    ttl = _url_ttl(svc, upload)
    out = []
    for digest, size in chunks:
        hx = digest.hex()
        if svc.blobs.direct:
            d = await svc.blobs.presign_upload(upload.id, BlobKey(upload.owner_id, digest), size, ttl)
            out.append({"hash": hx, "size": size, "url": d.url, "method": d.method, "headers": d.headers})
        else:
            # "r": record the receipt (a proving upload); the owner's URLs keep the DB-free hot path.
            params = {"o": upload.owner_id, "n": size} | ({"r": 1} if _proving(upload) else {}) \
                | _member_params(upload)
            url = svc.signer.sign("PUT", blob_path(upload.id, hx), params, ttl)
            out.append({"hash": hx, "size": size, "url": base_url + url, "method": "PUT", "headers": {}})
    return out


async def _describe(svc: Services, who: Principal, upload: Upload, base_url: str, resumed: bool = True,
                    chunk_urls: bool = True) -> dict[str, Any]:
    """The session as the client sees it. Without *chunk_urls*, chunks the pack URL takes (the
    server stores chunks itself) are listed without a URL each: signing and sending thousands
    of URLs a packing client never uses was a tenth of a big upload's start."""
    upload_path = access.visible_path(who, upload.ns_id, upload.path)
    async with svc.db.read() as s:
        missing = await (_unproven if _proving(upload) else _missing)(s, upload)
    if not _proving(upload):
        missing = await _still_missing(svc, upload, missing, resumed)
    elif svc.blobs.direct:  # staged in this session: commit promotes (and so verifies) them
        staged = await svc.blobs.staged(upload.id)
        missing = [c for c in missing if c[0] not in staged]
    return {
        "upload_id": upload.id, "path": upload_path, "size": upload.size,
        "chunk_count": upload.chunk_count, "content_hash": upload.content_hash,
        "parent_rev": upload.parent_rev_id, "expires_at": iso(upload.expires_ms),
        "missing_count": len(missing),
        "missing": await _urls(svc, upload, missing, base_url) if chunk_urls or svc.blobs.direct
        else [{"hash": d.hex(), "size": n} for d, n in missing],
        "pack_url": None if svc.blobs.direct else base_url + svc.signer.sign(
            "PUT", pack_path(upload.id), {"o": upload.owner_id} | _member_params(upload), _url_ttl(svc, upload)),
    }


async def _load(s: AsyncSession, who: Principal, upload_id: str) -> Upload:
    # An id from the URL that new_id() cannot have made (NUL, 1000 characters) never reaches the database.
    upload = await s.get(Upload, upload_id) if UPLOAD_ID.fullmatch(upload_id) else None
    if upload is None or upload.user_id != who.user_id or access.grant(who, upload.ns_id) is None:
        raise SatchelError(ErrorCode.not_found, "no such upload")
    return upload


# ---------------------------------------------------------------- operations

async def start(svc: Services, who: Principal, body: object, base_url: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise SatchelError(ErrorCode.bad_request, "the body must be a JSON object")
    loc = tree.locate(who, body.get("path"), need=Perm.WRITE)
    if loc.path == paths.ROOT:
        raise SatchelError(ErrorCode.is_a_directory, "cannot upload to the root folder", path="/")
    size = _int(body, "size")
    assert size is not None
    if size > svc.config.max_file_size:
        raise SatchelError(ErrorCode.too_large, f"files are limited to {svc.config.max_file_size} bytes",
                           limit=svc.config.max_file_size)
    parent_rev = _int(body, "parent_rev", required=False)
    mtime = _int(body, "mtime", required=False, maximum=MAX_MTIME_MS)
    mime = _check_mime(body.get("mime"))
    chunk_urls = body.get("urls")
    chunk_urls = True if chunk_urls is None else chunk_urls
    if not isinstance(chunk_urls, bool):
        raise SatchelError(ErrorCode.bad_request, "'urls' must be true or false", field="urls")
    chunks = parse_chunk_list(body.get("chunks"), size, svc.config.max_chunks)
    chash = chunking.content_hash(d for d, _ in chunks)
    now = now_ms()

    async with svc.db.write() as s:
        await refguard.adding_references(s)  # the session will name chunks the owner stores
        node = await tree.get_node(s, loc.ns_id, loc.path)
        if node is not None and node.kind == "dir":
            raise SatchelError(ErrorCode.is_a_directory, f"{loc.path} is a folder", path=loc.path)
        if node is None:  # below a file: fail now, not after every chunk was sent
            await tree.check_parents(s, loc.ns_id, loc.path)
        head = node.head_rev_id if node else None
        parent_size = node.size if node is not None and head is not None else None
        if head != parent_rev:  # fail before any byte is sent; commit checks again
            raise SatchelError(ErrorCode.conflict, "the file changed since the revision you edited",
                               path=loc.path, head_rev=head, parent_rev=parent_rev)
        existing = (await s.execute(
            select(Upload).where(
                Upload.user_id == who.user_id, Upload.ns_id == loc.ns_id, Upload.path == loc.path,
                Upload.content_hash == chash, Upload.size == size, Upload.committed_rev_id.is_(None),
                Upload.expires_ms > now + 60_000,
                Upload.parent_rev_id.is_(None) if parent_rev is None else Upload.parent_rev_id == parent_rev,
            ).limit(1)
        )).scalar_one_or_none()
        if existing is not None:
            upload = existing  # its bytes are reserved already
        else:
            added = size - (node.size if node else 0)
            await quota.charge(s, loc.owner_id, added)  # before any byte is sent
            upload = Upload(
                id=new_id(), user_id=who.user_id, device_id=who.device_id, ns_id=loc.ns_id,
                owner_id=loc.owner_id, path=loc.path, parent_rev_id=parent_rev, size=size,
                chunk_count=len(chunks), content_hash=chash, mime=mime,
                mtime_ms=mtime if mtime is not None else now, created_ms=now,
                expires_ms=now + int(svc.config.upload_ttl * 1000), reserved_bytes=max(0, added),
            )
            s.add(upload)
            await s.flush()
            offset = 0
            rows = []
            for idx, (digest, csize) in enumerate(chunks):
                rows.append({"upload_id": upload.id, "idx": idx, "offset": offset, "size": csize,
                             "hash": digest})
                offset += csize
            for i in range(0, len(rows), INSERT_BATCH):
                await s.execute(insert(UploadChunk), rows[i:i + INSERT_BATCH])
            # A chunk the owner stores already must be announced with its real size, or the file's
            # offsets would lie (raising here rolls the session back).
            # For a proving upload only chunks of this namespace count: the error must not tell
            # whether the owner stores some hash elsewhere.
            wrong_q = (select(UploadChunk.hash).join(Chunk, (Chunk.owner_id == upload.owner_id)
                                                     & (Chunk.hash == UploadChunk.hash))
                       .where(UploadChunk.upload_id == upload.id, Chunk.size != UploadChunk.size))
            if _proving(upload):
                wrong_q = wrong_q.where(_in_namespace(upload.ns_id, UploadChunk.hash))
            wrong = (await s.execute(wrong_q.limit(1))).scalar_one_or_none()
            if wrong is not None:
                raise SatchelError(ErrorCode.size_mismatch, "a chunk is announced with a size it does not have",
                                   hash=bytes(wrong).hex())
    derived = existing is None and parent_rev is not None and derive.crosses_step(size, parent_size) \
        and await _derive(svc, upload, parent_rev, parent_size or 0)
    return await _describe(svc, who, upload, base_url, resumed=existing is not None or derived,
                           chunk_urls=chunk_urls)


async def _derive(svc: Services, upload: Upload, parent_rev: int, parent_size: int) -> bool:
    """A new version cut with another chunk size than its parent: store what the parent's bytes
    hold of it (``server.services.derive``) before telling the client what is missing."""
    try:
        async with svc.db.read() as s:
            wanted = dict(await (_unproven if _proving(upload) else _missing)(s, upload))
        if len(wanted) < derive.MIN_WANTED:
            return False
        found = await derive.from_parent(svc, upload.owner_id, parent_rev, parent_size, upload.size, wanted)
        if found and _proving(upload):  # read from a revision of this namespace: shown readable
            await _mark_received(svc, upload.id, found)
    except Exception:  # an optimisation only: the client sends the chunks instead
        log.warning("upload %s: deriving chunks from revision %d failed", upload.id, parent_rev, exc_info=True)
        return False
    log.info("upload %s: %d chunks derived from revision %d, %d left to send", upload.id, len(found),
             parent_rev, len(wanted))
    return bool(found)


def _still_open(upload: Upload) -> Upload:
    if upload.committed_rev_id is not None:
        raise SatchelError(ErrorCode.upload_committed, "this upload is already committed",
                           rev=upload.committed_rev_id)
    if upload.expires_ms < now_ms():
        raise SatchelError(ErrorCode.upload_expired, "this upload has expired; start it again")
    return upload


async def status(svc: Services, who: Principal, upload_id: str, base_url: str) -> dict[str, Any]:
    async with svc.db.read() as s:
        upload = _still_open(await _load(s, who, upload_id))
    return await _describe(svc, who, upload, base_url)


async def abandon(svc: Services, who: Principal, upload_id: str) -> None:
    async with svc.db.write() as s:
        upload = await _load(s, who, upload_id)
        if upload.committed_rev_id is not None:
            raise SatchelError(ErrorCode.upload_committed, "this upload is already committed")
        await s.delete(upload)
    if svc.blobs.direct:
        await svc.blobs.discard_staged(upload_id)


async def receive_chunk(svc: Services, upload_id: str, hex_hash: str, query: dict[str, str],
                        body: AsyncIterator[bytes]) -> None:
    params = svc.signer.verify("PUT", blob_path(upload_id, hex_hash), query)
    if "ns" in params:
        async with svc.db.read() as s:
            await access.check_signed(s, params, Perm.WRITE)
    try:
        key = BlobKey(int(params["o"]), bytes.fromhex(hex_hash))
        size = int(params["n"])
    except (KeyError, ValueError) as exc:
        raise SatchelError(ErrorCode.bad_signature, "malformed signed URL") from exc
    await svc.blobs.put_stream(key, size, body)
    if params.get("r") == "1":
        await _mark_received(svc, upload_id, [key.digest])


async def receive_patches(svc: Services, who: Principal, upload_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Announced chunks sent as patches of the upload's parent revision (``derive.parse_patches``):
    the server copies the ranges of the parent's bytes, adds the literal bytes, and stores each
    chunk if it hashes to its name."""
    async with svc.db.read() as s:
        upload = _still_open(await _load(s, who, upload_id))
        access.check_ns(who, upload.ns_id, Perm.WRITE)
        parent = await s.get(Revision, upload.parent_rev_id) if upload.parent_rev_id is not None else None
        if parent is None or parent.ns_id != upload.ns_id:
            raise SatchelError(ErrorCode.bad_request, "only an upload with a parent revision takes patches")
        patches = derive.parse_patches(body.get("chunks"), parent.size)
        announced = set((await s.execute(
            select(UploadChunk.hash, UploadChunk.size)
            .where(UploadChunk.upload_id == upload_id, UploadChunk.hash.in_({d for d, _, _ in patches}))
        )).tuples().all())
    for digest, size, _ in patches:
        if (digest, size) not in announced:
            raise SatchelError(ErrorCode.bad_request, "a patch names a chunk this upload did not announce",
                               hash=digest.hex(), size=size)
    stored: list[bytes] = []
    source = await derive.ParentBytes.load(svc, upload.owner_id, parent.id)
    try:
        for digest, size, parts in patches:
            await derive.store_patched(source, digest, size, parts)
            stored.append(digest)
    finally:  # built from a revision of this namespace by the server: delivered by this session
        if stored and _proving(upload):
            await _mark_received(svc, upload_id, stored)
    return {"stored": len(stored)}


async def receive_pack(svc: Services, upload_id: str, query: dict[str, str], body: AsyncIterator[bytes]
                       ) -> int:
    """Store the chunks of a pack; every one must be announced by the upload (same hash and size)."""
    params = svc.signer.verify("PUT", pack_path(upload_id), query)
    reader = PackReader(body)
    table = await reader.table()
    async with svc.db.read() as s:
        await access.check_signed(s, params, Perm.WRITE)
        upload = await s.get(Upload, upload_id)
        if upload is None or upload.committed_rev_id is not None or upload.expires_ms < now_ms():
            raise SatchelError(ErrorCode.not_found, "no such open upload")
        announced = set((await s.execute(
            select(UploadChunk.hash, UploadChunk.size)
            .where(UploadChunk.upload_id == upload_id, UploadChunk.hash.in_({d for d, _ in table}))
        )).tuples().all())
    for digest, size in table:
        if (digest, size) not in announced:
            raise SatchelError(ErrorCode.bad_request, "the pack holds a chunk this upload did not announce",
                               hash=digest.hex(), size=size)
    stored: list[bytes] = []
    try:
        for digest, size in table:
            await svc.blobs.put_stream(BlobKey(upload.owner_id, digest), size, reader.chunk(size))
            stored.append(digest)
    finally:  # the chunks stored before a bad one count: a retry sends only the rest
        if stored and _proving(upload):
            await _mark_received(svc, upload_id, stored)
    await reader.finish()
    return len(table)


async def _verify_stored(svc: Services, upload: Upload, candidates: list[tuple[bytes, int]],
                         unproven: frozenset[bytes] = frozenset()) -> None:
    """Make sure each candidate chunk is in the blob store, promoting verified staged S3 chunks.

    An *unproven* chunk counts only if this session delivers it now (a staged S3 object it
    promotes): that it is stored already proves nothing (see the module's docstring)."""
    promoted: list[bytes] = []

    async def promote(digest: bytes, size: int) -> bool:
        """A chunk staged in this session, verified and moved to its key; False: none staged."""
        try:
            await svc.blobs.promote(upload.id, BlobKey(upload.owner_id, digest), size)
        except SatchelError as exc:
            if exc.code is not ErrorCode.not_found:
                raise
            return False
        promoted.append(digest)
        return True

    rest = candidates
    if svc.blobs.direct:
        try:
            moved = await gather_limited(VERIFY_CONCURRENCY, [promote(d, n) for d, n in candidates])
        finally:  # promoted chunks left their staging area: remember them for a retried commit
            if promoted and _proving(upload):
                await _mark_received(svc, upload.id, promoted)
        rest = [c for c, done in zip(candidates, moved, strict=True) if not done]
    rest = [c for c in rest if c[0] not in unproven]
    stored = await svc.blobs.sizes([BlobKey(upload.owner_id, d) for d, _ in rest])  # one call: thousands
    for (digest, size), got in zip(rest, stored, strict=True):
        if got is not None and got != size:
            raise SatchelError(ErrorCode.size_mismatch, "a chunk is announced with a size it does not have",
                               hash=digest.hex(), expected=size, received=got)
    present = {d for (d, _), got in zip(rest, stored, strict=True) if got is not None}
    present.update(promoted)
    gone = [d for d, _ in candidates if d not in present]
    if gone and _proving(upload):  # received once, collected since (orphan grace): list them again
        await _mark_received(svc, upload.id, gone, False)
    missing = [d.hex() for d in gone]
    if missing:
        raise SatchelError(ErrorCode.missing_chunks, f"{len(missing)} chunks are not uploaded yet",
                           missing=missing[:MISSING_REPORT_LIMIT], missing_count=len(missing))


def _upsert_chunks(dialect: str) -> Any:
    ins = pg_insert(Chunk) if dialect == "postgresql" else sqlite_insert(Chunk)
    return ins.on_conflict_do_nothing(index_elements=["owner_id", "hash"])


async def record_chunks(s: AsyncSession, owner_id: int, chunks: list[tuple[bytes, int]], now: int) -> None:
    """Record the owner's new chunks (rows that exist already are left alone)."""
    rows = [{"owner_id": owner_id, "hash": d, "size": n, "created_ms": now, "touched_ms": now} for d, n in chunks]
    stmt = _upsert_chunks(s.get_bind().dialect.name)
    for i in range(0, len(rows), INSERT_BATCH):
        await s.execute(stmt, rows[i:i + INSERT_BATCH])


@dataclass(frozen=True)
class NewRevision:
    """What a commit writes, whichever way its chunks arrived (upload session or inline delta)."""

    ns_id: int
    owner_id: int
    path: str
    parent_rev_id: int | None
    size: int
    content_hash: str
    chunk_count: int
    mime: str | None
    mtime_ms: int


async def write_revision(s: AsyncSession, who: Principal, new: NewRevision, new_chunks: list[tuple[bytes, int]],
                          write_chunk_list: Callable[[AsyncSession, int], Awaitable[None]]) -> tuple[Node, str]:
    """The commit transaction's body: record new chunks, check the parent is still the head,
    write the revision (its chunk list through *write_chunk_list*), the file and the journal."""
    now = now_ms()
    await refguard.adding_references(s)
    await record_chunks(s, new.owner_id, new_chunks, now)
    node = await tree.get_node(s, new.ns_id, new.path)
    head = node.head_rev_id if node else None
    if node is not None and node.kind == "dir":
        raise SatchelError(ErrorCode.is_a_directory, f"{new.path} is a folder", path=new.path)
    if head != new.parent_rev_id:
        raise SatchelError(ErrorCode.conflict, "the file changed since the revision you edited",
                           path=new.path, head_rev=head, parent_rev=new.parent_rev_id)
    if node is None:
        await tree.ensure_parents(s, who, new.ns_id, new.path)
        node = Node(ns_id=new.ns_id, path=new.path, parent_path=paths.parent(new.path),
                    kind="file", mtime_ms=new.mtime_ms, created_ms=now, updated_ms=now)
        s.add(node)
        await s.flush()
        op = "create"
    else:
        op = "modify"
    rev = Revision(node_id=node.id, ns_id=new.ns_id, parent_rev_id=new.parent_rev_id, size=new.size,
                   content_hash=new.content_hash, chunk_count=new.chunk_count, mime=new.mime,
                   mtime_ms=new.mtime_ms, user_id=who.user_id, device_id=who.device_id, created_ms=now)
    s.add(rev)
    await s.flush()
    await write_chunk_list(s, rev.id)
    node.size, node.content_hash, node.mime = new.size, new.content_hash, new.mime
    node.mtime_ms, node.head_rev_id, node.updated_ms = new.mtime_ms, rev.id, now
    await journal.append(s, new.ns_id, op=op, kind="file", node_id=node.id, path=new.path, rev_id=rev.id,
                         parent_rev_id=new.parent_rev_id, size=new.size, content_hash=new.content_hash,
                         user_id=who.user_id, device_id=who.device_id)
    await s.flush()
    return node, op


async def commit(svc: Services, who: Principal, upload_id: str) -> dict[str, Any]:
    async with svc.db.read() as s:
        upload = await _load(s, who, upload_id)
        if upload.committed_rev_id is not None:  # a retried commit whose answer was lost
            rev = await s.get(Revision, upload.committed_rev_id)
            node = await s.get(Node, rev.node_id) if rev else None
            if node is not None:
                return tree.shown(who, node) | {"rev": upload.committed_rev_id}
        if upload.expires_ms < now_ms():
            raise SatchelError(ErrorCode.upload_expired, "this upload has expired; start it again")
        candidates = await _missing(s, upload)
        unproven = await _unproven(s, upload) if _proving(upload) else []
    candidates = list(dict.fromkeys(candidates + unproven))
    await _verify_stored(svc, upload, candidates, frozenset(d for d, _ in unproven))
    # Chunk bytes are durable before any revision points at them (the ones this commit names
    # for the first time: chunk rows already stand for durable bytes).
    await svc.blobs.sync([BlobKey(upload.owner_id, d) for d, _ in candidates])

    async def copy_session_chunks(s: AsyncSession, rev_id: int) -> None:
        await s.execute(insert(RevisionChunk).from_select(
            ["rev_id", "idx", "offset", "size", "hash"],
            select(literal(rev_id), UploadChunk.idx, UploadChunk.offset, UploadChunk.size, UploadChunk.hash)
            .where(UploadChunk.upload_id == upload_id)))
        await s.execute(sql_delete(UploadChunk).where(UploadChunk.upload_id == upload_id))

    async def write() -> tuple[Node, str, NewRevision, dict[str, Any]]:
        async with svc.db.write() as s:
            upload = await _load(s, who, upload_id)
            access.check_ns(who, upload.ns_id, Perm.WRITE)  # the role may have changed since the announce
            if upload.committed_rev_id is not None:
                raise SatchelError(ErrorCode.upload_committed, "this upload was committed concurrently")
            new = NewRevision(upload.ns_id, upload.owner_id, upload.path, upload.parent_rev_id, upload.size,
                              upload.content_hash, upload.chunk_count, upload.mime, upload.mtime_ms)
            node, op = await write_revision(s, who, new, candidates, copy_session_chunks)
            upload.committed_rev_id = node.head_rev_id  # settles its quota reservation
            return node, op, new, tree.shown(who, node)

    done, op, new, result = await svc.db.retry_races(write)
    await search_index.index_content(svc, done.id, done.head_rev_id)
    log.info("commit %s rev=%s size=%d chunks=%d new_chunks=%d", op, done.head_rev_id, new.size,
             new.chunk_count, len(candidates))
    return result


@dataclass
class Prepared:
    """A checked WebSocket commit, ready to write: where, what, and the bytes that arrived inline."""

    loc: Location
    new: NewRevision
    chunks: list[tuple[bytes, int]]  # the new revision's chunk list
    inline: dict[bytes, bytes]  # new chunks sent inline, by digest
    rest: list[bytes]  # chunks named by hash (stored already)


async def prepare_ops(svc: Services, who: Principal, body: object) -> Prepared:
    """Check one ``commit`` body (see ``commit_ops``) without writing anything: authorization,
    fields, the parent's chunk list, chunks named by hash. Inline bytes are hashed here."""
    from server.ws.protocol import INLINE_LIMIT

    if not isinstance(body, dict):
        raise SatchelError(ErrorCode.bad_request, "a commit is a map")
    loc = tree.locate(who, body.get("path"), need=Perm.WRITE)
    if loc.path == paths.ROOT:
        raise SatchelError(ErrorCode.is_a_directory, "cannot write the root folder", path="/")
    size = _int(body, "size")
    parent_rev = _int(body, "parent_rev", required=False, maximum=2**31 - 1)
    mtime = _int(body, "mtime", required=False, maximum=MAX_MTIME_MS)
    mime = _check_mime(body.get("mime"))
    ops = body.get("ops")
    if size is None or size > svc.config.max_file_size:
        raise SatchelError(ErrorCode.too_large, f"files are limited to {svc.config.max_file_size} bytes")
    if not isinstance(ops, list) or len(ops) > svc.config.max_chunks:
        raise SatchelError(ErrorCode.bad_request, "'ops' must be a list", field="ops")

    parent: list[tuple[bytes, int]] = []
    if parent_rev is not None:
        async with svc.db.read() as s:
            rev = await s.get(Revision, parent_rev)
            # The parent must be a revision of this namespace: never build from someone else's chunks.
            if rev is None or rev.ns_id != loc.ns_id:
                raise SatchelError(ErrorCode.conflict, "the parent revision is not a revision of this file",
                                   parent_rev=parent_rev)
            parent = [(bytes(h), int(n)) for h, n in (await s.execute(
                select(RevisionChunk.hash, RevisionChunk.size).where(RevisionChunk.rev_id == parent_rev)
                .order_by(RevisionChunk.idx))).all()]

    chunks: list[tuple[bytes, int]] = []
    inline: dict[bytes, bytes] = {}
    named: dict[bytes, int] = {}  # hash -> the size the client claims; checked against the store
    for op in ops:
        if isinstance(op, bytes):
            if not 0 < len(op) <= chunking.MAX_CHUNK_SIZE:
                raise SatchelError(ErrorCode.bad_request, "an inline chunk is 1 byte to 16 MiB", field="ops")
            digest = chunking.hash_bytes(op)
            inline[digest] = op
            chunks.append((digest, len(op)))
        elif isinstance(op, list) and len(op) == 2 and isinstance(op[0], int) and isinstance(op[1], int) \
                and not isinstance(op[0], bool) and not isinstance(op[1], bool):
            start, count = op
            if start < 0 or count < 1 or start + count > len(parent):
                raise SatchelError(ErrorCode.bad_request, "a kept range is outside the parent's chunk list",
                                   field="ops")
            chunks.extend(parent[start:start + count])
        elif isinstance(op, list) and len(op) == 2 and isinstance(op[0], bytes) and isinstance(op[1], int) \
                and not isinstance(op[1], bool) and len(op[0]) == chunking.HASH_BYTES \
                and 0 < op[1] <= chunking.MAX_CHUNK_SIZE:
            if named.setdefault(op[0], op[1]) != op[1]:
                raise SatchelError(ErrorCode.size_mismatch, "one chunk named with two sizes", field="ops")
            chunks.append((op[0], op[1]))
        else:
            raise SatchelError(ErrorCode.bad_request, "each op is [start, count], chunk bytes, or [hash, size]",
                               field="ops")
        if len(chunks) > svc.config.max_chunks:
            raise SatchelError(ErrorCode.too_many_chunks, "too many chunks", limit=svc.config.max_chunks)
    if sum(len(b) for b in inline.values()) > INLINE_LIMIT:
        raise SatchelError(ErrorCode.too_large, f"at most {INLINE_LIMIT} new bytes travel inline; "
                           "upload bigger changes with POST /api/v1/files", limit=INLINE_LIMIT)
    total = sum(n for _, n in chunks)
    if total != size:
        raise SatchelError(ErrorCode.size_mismatch, f"the chunks add up to {total}, not {size}",
                           expected=size, received=total)

    # Chunks named by hash must be stored already (this owner's, recorded by a commit), with the
    # size they are named with: a wrong size would make a revision whose offsets lie about its bytes.
    stored = {d: len(b) for d, b in inline.items() if d in named}
    rest = [h for h in named if h not in stored]
    if rest:
        known = select(Chunk.hash, Chunk.size).where(Chunk.owner_id == loc.owner_id, Chunk.hash.in_(rest))
        if who.user_id != loc.owner_id:  # see the module's docstring: only chunks they can read
            known = known.where(_in_namespace(loc.ns_id, Chunk.hash))
        async with svc.db.read() as s:
            stored.update((bytes(h), int(n)) for h, n in (await s.execute(known)).all())
    absent = [h.hex() for h in named if h not in stored]
    if absent:
        raise SatchelError(ErrorCode.missing_chunks, f"{len(absent)} chunks are not stored",
                           missing=absent[:MISSING_REPORT_LIMIT], missing_count=len(absent))
    wrong = [h.hex() for h, n in named.items() if stored[h] != n]
    if wrong:
        raise SatchelError(ErrorCode.size_mismatch, f"{len(wrong)} chunks are named with a size they do not have",
                           chunks=wrong[:MISSING_REPORT_LIMIT])
    new = NewRevision(loc.ns_id, loc.owner_id, loc.path, parent_rev, size,
                      chunking.content_hash(d for d, _ in chunks), len(chunks), mime,
                      mtime if mtime is not None else now_ms())
    return Prepared(loc, new, chunks, inline, rest)


async def store_inline(svc: Services, items: list[Prepared]) -> None:
    """Store the inline chunks of *items* and make them durable (one ``sync`` for all)."""
    stored: list[BlobKey] = []
    for p in items:
        for digest, data in p.inline.items():
            key = BlobKey(p.loc.owner_id, digest)
            await svc.blobs.put_stream(key, len(data), as_body(data))
            stored.append(key)
    if stored:
        await svc.blobs.sync(stored)


async def confirm_stored(svc: Services, keys: list[BlobKey]) -> None:
    """Inside a transaction holding the reference guard, before naming chunks the caller stored
    itself: are they still there? The orphan sweeper deletes under the exclusive guard, so what
    is here now stays until this transaction commits. Only an object store needs the look: the
    local store renews a re-stored chunk atomically, and its conditional delete spares it."""
    if not svc.blobs.direct or not keys:
        return
    sizes = await svc.blobs.sizes(list(dict.fromkeys(keys)))
    gone = sum(1 for n in sizes if n is None)
    if gone:
        raise SatchelError(ErrorCode.unavailable, "a chunk was collected while this commit ran; send it again",
                           missing_count=gone)


async def write_prepared(s: AsyncSession, who: Principal, p: Prepared) -> Node:
    """The write of one prepared commit, inside the caller's transaction (the guard taken first)."""
    async def write_list(s: AsyncSession, rev_id: int) -> None:
        rows, offset = [], 0
        for idx, (digest, n) in enumerate(p.chunks):
            rows.append({"rev_id": rev_id, "idx": idx, "offset": offset, "size": n, "hash": digest})
            offset += n
        for i in range(0, len(rows), INSERT_BATCH):
            await s.execute(insert(RevisionChunk), rows[i:i + INSERT_BATCH])

    loc = p.loc
    current = await tree.get_node(s, loc.ns_id, loc.path)
    await quota.charge(s, loc.owner_id, p.new.size - (current.size if current else 0))
    if p.rest:  # checked again under the guard: collection may have dropped a row since the read
        still = (await s.execute(select(func.count()).select_from(Chunk).where(
            Chunk.owner_id == loc.owner_id, Chunk.hash.in_(p.rest)))).scalar_one()
        if still != len(p.rest):
            raise SatchelError(ErrorCode.missing_chunks, "a named chunk was collected; send it inline",
                               missing_count=len(p.rest) - int(still))
    node, _op = await write_revision(s, who, p.new, [(d, len(b)) for d, b in p.inline.items()], write_list)
    return node


async def commit_ops(svc: Services, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """A one-round-trip commit (WebSocket ``commit``): the new chunk list as ``ops`` against the
    parent revision: ``[start, count]`` keeps parent chunks, ``bytes`` is a new chunk inline (the
    server hashes it), ``[hash, size]`` names a chunk the owner already stores (a writer who is
    not the owner may name only chunks of a revision of this namespace)."""
    t0 = time.perf_counter()
    p = await prepare_ops(svc, who, body)
    t1 = time.perf_counter()
    await store_inline(svc, [p])
    t2 = time.perf_counter()

    async def write() -> tuple[Node, dict[str, Any]]:
        async with svc.db.write() as s:
            # The guard before the owner's row, in every transaction that takes both (no lock cycle).
            await refguard.adding_references(s)
            await confirm_stored(svc, [BlobKey(p.loc.owner_id, d) for d in p.inline])
            node = await write_prepared(s, who, p)
            return node, tree.shown(who, node)

    node, result = await svc.db.retry_races(write)
    t3 = time.perf_counter()
    await search_index.index_content(svc, node.id, node.head_rev_id)
    log.debug("commit_ops %s: %d chunks, %d inline: checks %.3f s, chunks stored and synced %.3f s, "
              "write (the writer's turn, rows, commit) %.3f s, text index %.3f s", p.loc.path, len(p.chunks),
              len(p.inline), t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3)
    return result


async def store_stream(svc: Services, who: Principal, loc: Location, size: int, mime: str | None,
                       body: AsyncIterator[bytes]) -> Node:
    """Store a new file from one request body (a link's file request): spooled to a temporary
    file (memory stays flat), cut and hashed like a client would, then committed like an upload.
    The body must be exactly *size* bytes; *loc* must be free (a taken path is ``conflict``)."""
    import tempfile

    if size > svc.config.max_file_size:
        raise SatchelError(ErrorCode.too_large, f"files are limited to {svc.config.max_file_size} bytes",
                           limit=svc.config.max_file_size)
    with tempfile.TemporaryFile() as spool:
        got = 0
        async for piece in body:
            got += len(piece)
            if got > size:
                break
            await asyncio.to_thread(spool.write, piece)
        if got != size:
            raise SatchelError(ErrorCode.size_mismatch, f"the body is not {size} bytes", expected=size,
                               received=got)
        await asyncio.to_thread(spool.seek, 0)
        refs = await asyncio.to_thread(lambda: list(chunking.chunk_stream(spool, size)))
        for ref in refs:
            await asyncio.to_thread(spool.seek, ref.offset)
            data = await asyncio.to_thread(spool.read, ref.size)
            # hashed when cut, then read back from the spool: checked again as it is stored
            await svc.blobs.put_stream(BlobKey(loc.owner_id, ref.digest), ref.size, as_body(data))
    await svc.blobs.sync([BlobKey(loc.owner_id, r.digest) for r in refs])
    chunks = [(r.digest, r.size) for r in refs]
    new = NewRevision(loc.ns_id, loc.owner_id, loc.path, None, size, chunking.content_hash(d for d, _ in chunks),
                      len(chunks), _check_mime(mime), now_ms())

    async def write_list(s: AsyncSession, rev_id: int) -> None:
        rows = [{"rev_id": rev_id, "idx": i, "offset": r.offset, "size": r.size, "hash": r.digest}
                for i, r in enumerate(refs)]
        for i in range(0, len(rows), INSERT_BATCH):
            await s.execute(insert(RevisionChunk), rows[i:i + INSERT_BATCH])

    async with svc.db.write() as s:
        await refguard.adding_references(s)  # before the owner's row: the lock order of every commit
        await confirm_stored(svc, [BlobKey(loc.owner_id, r.digest) for r in refs])
        await quota.charge(s, loc.owner_id, size)
        node, _op = await write_revision(s, who, new, list(dict.fromkeys(chunks)), write_list)
    await search_index.index_content(svc, node.id, node.head_rev_id)
    return node


async def commit_bytes(svc: Services, who: Principal, file_id: int, data: bytes, parent_rev: int,
                       also: Callable[[AsyncSession, Node], Awaitable[None]] | None = None) -> Node | None:
    """Commit *data* (small: a co-edited document's text) as the next revision of the existing
    file *file_id*, whose head must still be *parent_rev* (else ``conflict``). The caller must be
    allowed to write there (checked here again, in the transaction's namespace). *also* runs inside
    the commit's transaction (the co-editing state that must change atomically with the revision).
    Returns None when the file is gone (deleted or a folder now)."""
    refs = chunking.chunk_bytes(data)
    async with svc.db.read() as s:
        node = await s.get(Node, file_id)
        if node is None or node.deleted_ms is not None or node.kind != "file":
            return None
        ns_id = node.ns_id
        owner_id = (await s.execute(select(Namespace.owner_id).where(Namespace.id == ns_id))).scalar_one()
    access.check_ns(who, ns_id, Perm.WRITE)
    for ref in refs:
        await svc.blobs.put_stream(BlobKey(owner_id, ref.digest), ref.size,
                                   as_body(data[ref.offset:ref.offset + ref.size]), hashed=True)
    await svc.blobs.sync([BlobKey(owner_id, r.digest) for r in refs])
    chunks = [(r.digest, r.size) for r in refs]

    async def write_list(s: AsyncSession, rev_id: int) -> None:
        if not refs:  # an empty file has no chunks
            return
        await s.execute(insert(RevisionChunk), [{"rev_id": rev_id, "idx": i, "offset": r.offset, "size": r.size,
                                                 "hash": r.digest} for i, r in enumerate(refs)])

    async with svc.db.write() as s:
        await refguard.adding_references(s)
        node = await s.get(Node, file_id)
        if node is None or node.deleted_ms is not None or node.kind != "file":
            return None
        if node.ns_id != ns_id:  # shared meanwhile: the caller catches up and tries again
            raise SatchelError(ErrorCode.conflict, "the file moved to another namespace")
        await confirm_stored(svc, [BlobKey(owner_id, d) for d, _ in chunks])
        # The path as it is now, in this transaction: the file may have been moved meanwhile.
        new = NewRevision(ns_id, owner_id, node.path, parent_rev, len(data),
                          chunking.content_hash(d for d, _ in chunks), len(chunks), node.mime, now_ms())
        await quota.charge(s, owner_id, len(data) - node.size)
        node, _op = await write_revision(s, who, new, list(dict.fromkeys(chunks)), write_list)
        if also is not None:
            await also(s, node)
    await search_index.index_content(svc, node.id, node.head_rev_id)
    return node
