"""Downloads: a revision's chunk list with signed URLs, single chunks, and whole-file streaming.

Streaming walks the chunk list a page at a time and reads each chunk in pieces, so memory stays
flat whatever the file size; ``Range`` requests start at the chunk holding the first byte.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import ErrorCode, SatchelError
from server.services import access, tree
from server.services.access import Perm
from server.services.context import Principal, Services
from server.services.serialize import iso
from server.storage.blobs.base import BlobKey
from server.storage.models import Namespace, Node, Revision, RevisionChunk

PAGE = 1000
MAX_LIST_LIMIT = 10_000
PREFETCH_BYTES = 32 * 1024 * 1024  # read-ahead window for object stores (memory per download)
PREFETCH_CHUNKS = 16


def blob_path(owner_id: int, hex_hash: str) -> str:
    return f"/api/v1/blobs/down/{owner_id}/{hex_hash}"


def content_path(node_id: int) -> str:
    return f"/api/v1/files/{node_id}/content"


@dataclass(frozen=True)
class FileRevision:
    node: Node
    rev: Revision
    owner_id: int


async def _resolve(s: AsyncSession, who: Principal, node_id: int, rev_id: int | None) -> FileRevision:
    node = await tree.get_node_by_id(s, who, node_id, need=Perm.READ)
    if node.kind != "file" or node.head_rev_id is None:
        raise SatchelError(ErrorCode.is_a_directory, f"{node.path} is a folder", path=node.path)
    rev = await s.get(Revision, rev_id if rev_id is not None else node.head_rev_id)
    if rev is None or rev.node_id != node.id:
        raise SatchelError(ErrorCode.not_found, "no such revision of this file")
    ns = await s.get(Namespace, node.ns_id)
    assert ns is not None
    return FileRevision(node, rev, ns.owner_id)


async def info(svc: Services, who: Principal, node_id: int) -> dict[str, Any]:
    async with svc.db.read() as s:
        return tree.shown(who, await tree.get_node_by_id(s, who, node_id, need=Perm.READ))


async def chunk_list(svc: Services, who: Principal, node_id: int, rev_id: int | None, offset: int,
                     limit: int, base_url: str, urls: bool = True) -> dict[str, Any]:
    """A page of a revision's chunks; without *urls*, no signed URLs (a client that reads byte
    ranges of ``/content`` needs none, and signing is most of this route's time: 3,400 chunks,
    ~0.17 s with them)."""
    limit = max(1, min(limit, MAX_LIST_LIMIT))
    async with svc.db.read() as s:
        fr = await _resolve(s, who, node_id, rev_id)
        rows = (await s.execute(
            select(RevisionChunk.idx, RevisionChunk.offset, RevisionChunk.size, RevisionChunk.hash)
            .where(RevisionChunk.rev_id == fr.rev.id, RevisionChunk.idx >= offset)
            .order_by(RevisionChunk.idx).limit(limit)
        )).tuples().all()
    chunks = []
    member = who.user_id != fr.owner_id  # a share member's URLs die with their access (check_signed)
    params = {"u": who.user_id} | ({"ns": fr.node.ns_id} if member else {})
    ttl = url_ttl(svc, member)
    for idx, at, size, digest in rows:
        hx = bytes(digest).hex()
        chunk = {"index": idx, "offset": at, "size": size, "hash": hx}
        if urls:
            chunk["url"] = (await svc.blobs.presign_download(BlobKey(fr.owner_id, bytes(digest)), ttl)).url \
                if svc.blobs.direct else base_url + svc.signer.sign("GET", blob_path(fr.owner_id, hx), params, ttl)
        chunks.append(chunk)
    nxt = offset + len(rows) if offset + len(rows) < fr.rev.chunk_count else None
    return {"id": fr.node.id, "rev": fr.rev.id, "size": fr.rev.size, "content_hash": fr.rev.content_hash,
            "chunk_count": fr.rev.chunk_count, "created_at": iso(fr.rev.created_ms),
            "direct": svc.blobs.direct, "chunks": chunks, "next_offset": nxt}


def url_ttl(svc: Services, member: bool) -> float:
    """Chunk URLs live ``url_ttl``; S3 presigned ones issued to a share member, which S3 cannot
    recall, only ``member_url_ttl`` (server-signed ones are re-checked on use instead)."""
    if member and svc.blobs.direct:
        return min(svc.config.url_ttl, svc.config.member_url_ttl)
    return svc.config.url_ttl


async def chunk_key(svc: Services, owner_id: int, hex_hash: str, query: dict[str, str]) -> BlobKey:
    params = svc.signer.verify("GET", blob_path(owner_id, hex_hash), query)
    if "ns" in params:
        async with svc.db.read() as s:
            await access.check_signed(s, params, Perm.READ)
    try:
        return BlobKey(owner_id, bytes.fromhex(hex_hash))
    except ValueError as exc:
        raise SatchelError(ErrorCode.bad_signature, "malformed signed URL") from exc


# At most 18 digits: longer numbers are ignored like any unparseable header (int() gives up at 4300).
_RANGE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return the half-open byte range a single ``Range`` header asks for; None = whole file.

    Multi-range and unparseable headers are ignored (RFC 9110 allows serving the full content).
    """
    if not header:
        return None
    m = _RANGE.fullmatch(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix: the last N bytes
        n = int(m.group(2))
        if n == 0 or size == 0:
            raise SatchelError(ErrorCode.range_not_satisfiable, "empty suffix range", size=size)
        return max(0, size - n), size
    start = int(m.group(1))
    end = min(int(m.group(2)) + 1, size) if m.group(2) else size
    if start >= size or end <= start:
        raise SatchelError(ErrorCode.range_not_satisfiable, f"range outside 0-{size}", size=size)
    return start, end


@dataclass(frozen=True)
class Content:
    node: Node
    rev: Revision
    start: int
    end: int
    partial: bool
    body: AsyncIterator[bytes]


async def content(svc: Services, who: Principal, node_id: int, rev_id: int | None,
                  range_header: str | None) -> Content:
    async with svc.db.read() as s:
        fr = await _resolve(s, who, node_id, rev_id)
    return revision_content(svc, fr, range_header)


async def content_url(svc: Services, who: Principal, node_id: int, rev_id: int | None, base_url: str
                      ) -> dict[str, Any]:
    """A signed URL of a revision's bytes that needs no Authorization header, so a browser can hand it
    to its download manager (which streams to disk and resumes with Range). It names one revision
    (the head when *rev_id* is None: its bytes never change) and the caller's device; each request
    checks that device and its read access again, like a request with its token."""
    async with svc.db.read() as s:
        fr = await _resolve(s, who, node_id, rev_id)
    url = svc.signer.sign("GET", content_path(node_id), {"rev": fr.rev.id, "d": who.device_id},
                          svc.config.url_ttl)
    expires = int(parse_qs(urlsplit(url).query)["exp"][0])
    return {"url": base_url + url, "rev": fr.rev.id, "size": fr.rev.size, "expires_at": iso(expires * 1000)}


def signed_content(svc: Services, node_id: int, query: dict[str, str]) -> tuple[int, int]:
    """Check a signed content URL (``content_url``); return (device id, revision id)."""
    params = svc.signer.verify("GET", content_path(node_id), query)
    device, rev = params.get("d", ""), params.get("rev", "")
    if not (device.isascii() and device.isdigit() and rev.isascii() and rev.isdigit()):
        raise SatchelError(ErrorCode.bad_signature, "malformed signed URL")
    return int(device), int(rev)


async def head_of(s: AsyncSession, node: Node) -> FileRevision:
    """The head revision of a file node reached without a principal (a link share)."""
    if node.kind != "file" or node.head_rev_id is None:
        raise SatchelError(ErrorCode.is_a_directory, "this is a folder")
    rev, ns = await s.get(Revision, node.head_rev_id), await s.get(Namespace, node.ns_id)
    assert rev is not None and ns is not None
    return FileRevision(node, rev, ns.owner_id)


def revision_content(svc: Services, fr: FileRevision, range_header: str | None) -> Content:
    rng = parse_range(range_header, fr.rev.size)
    start, end = rng if rng else (0, fr.rev.size)
    return Content(fr.node, fr.rev, start, end, rng is not None,
                   _stream(svc, fr.rev.id, fr.owner_id, start, end))


async def _pages(svc: Services, rev_id: int, start: int) -> AsyncIterator[tuple[int, int, int, bytes]]:
    """(idx, offset, size, digest) of the chunks from the one holding byte *start*, a page at a time
    (short sessions: never hold a database connection while sending)."""
    async with svc.db.read() as s:
        idx = (await s.execute(
            select(RevisionChunk.idx).where(RevisionChunk.rev_id == rev_id, RevisionChunk.offset <= start)
            .order_by(RevisionChunk.idx.desc()).limit(1)
        )).scalar_one()
    while True:
        async with svc.db.read() as s:
            page = (await s.execute(
                select(RevisionChunk.idx, RevisionChunk.offset, RevisionChunk.size, RevisionChunk.hash)
                .where(RevisionChunk.rev_id == rev_id, RevisionChunk.idx >= idx)
                .order_by(RevisionChunk.idx).limit(PAGE)
            )).all()
        if not page:
            return
        for cidx, off, size, digest in page:
            yield cidx, off, size, bytes(digest)
        idx = page[-1][0] + 1


def revision_bytes(svc: Services, rev_id: int, owner_id: int, start: int, end: int) -> AsyncIterator[bytes]:
    """Bytes *start*..*end* of a revision, streamed (for services that read content: search)."""
    return _stream(svc, rev_id, owner_id, start, end)


async def _stream(svc: Services, rev_id: int, owner_id: int, start: int, end: int) -> AsyncIterator[bytes]:
    if end <= start:
        return
    if svc.blobs.direct:
        async for piece in _stream_prefetched(svc, rev_id, owner_id, start, end):
            yield piece
        return
    async for _idx, off, size, digest in _pages(svc, rev_id, start):
        if off >= end:
            return
        async for piece in svc.blobs.read(BlobKey(owner_id, digest), max(0, start - off), min(size, end - off)):
            yield piece


async def _read_all(svc: Services, key: BlobKey, lo: int, hi: int) -> bytes:
    return b"".join([piece async for piece in svc.blobs.read(key, lo, hi)])


async def _stream_prefetched(svc: Services, rev_id: int, owner_id: int, start: int,
                             end: int) -> AsyncIterator[bytes]:
    """Object stores answer each GET after milliseconds: keep a window of chunk reads in flight
    (bounded by PREFETCH_BYTES) so the stream runs at bandwidth, not at one chunk per round trip.
    A chunk repeated back to back (zero-filled regions) is read once."""
    window: deque[tuple[tuple[bytes, int, int], asyncio.Task[bytes]]] = deque()
    in_flight = 0
    try:
        async for _idx, off, size, digest in _pages(svc, rev_id, start):
            if off >= end:
                break
            lo, hi = max(0, start - off), min(size, end - off)
            ident = (digest, lo, hi)
            if window and window[-1][0] == ident:
                task = window[-1][1]  # the same chunk again: share the read (a done task can be awaited again)
            else:
                task = asyncio.ensure_future(_read_all(svc, BlobKey(owner_id, digest), lo, hi))
            window.append((ident, task))
            in_flight += hi - lo
            while window and (in_flight > PREFETCH_BYTES or len(window) >= PREFETCH_CHUNKS):
                data = await window.popleft()[1]
                in_flight -= len(data)
                yield data
        while window:
            yield await window.popleft()[1]
    finally:
        for _, task in window:
            task.cancel()
