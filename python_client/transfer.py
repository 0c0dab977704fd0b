"""Transfer engines: resumable, parallel, verified uploads and downloads with flat memory.

Upload: chunk + hash the file (FastCDC/BLAKE3, streamed), announce the list, PUT only the chunks the
server lacks (``parallel`` at a time, each read from disk when sent), commit. Re-running an
interrupted upload re-announces the same list; the server answers with what is still missing.

Download: every chunk's BLAKE3 is checked before it counts. Chunks already on disk are reused: those
in a ``.satchel-part`` file left by an interrupted download, and those in the old version of the
target file (delta download). The rest are fetched as coalesced byte ranges of the revision (one
request for a fresh file) or from presigned object-store URLs. Bytes land in the part file, which
is fsynced and renamed over the target only when complete: the target is never half-written.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import importlib
import logging
import mimetypes
import os
import queue
import random
import stat
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import msgpack

from python_client.api import SLOW_TIMEOUT, SatchelClient, raise_for_error
from python_client.chunk_cache import unchanged
from server.core import chunking, pack, paths
from server.core.chunking import ChunkRef, hash_bytes, new_hasher
from server.core.errors import ErrorCode, SatchelError
from server.core.fileio import pwrite_all

if TYPE_CHECKING:
    from python_client.chunk_http import ChunkHttp

log = logging.getLogger(__name__)
PART_SUFFIX = ".satchel-part"
OLD_SUFFIX = ".satchel-old"  # a replaced version's second name while its blocks are freed (see _set_aside)
SET_ASIDE_MIN = 8 * 1024 * 1024  # smaller files are freed faster than a link and a thread cost
RUN_LIMIT = 64 * 1024 * 1024  # split big ranged downloads so they run in parallel
FLUSH_EVERY = 64 * 1024 * 1024  # start writeback of a download every this many bytes
RETRIES = 6
Progress = Callable[[int], None]
T = TypeVar("T")


@dataclass
class TransferStats:
    bytes_sent: int = 0
    chunks_sent: int = 0
    bytes_received: int = 0
    bytes_reused: int = 0
    chunks_total: int = 0
    unchanged: bool = False  # an upload the head had already (content and mtime): no new revision
    extra: dict[str, Any] = field(default_factory=dict)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, SatchelError) and exc.code in (ErrorCode.unavailable, ErrorCode.internal)


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(min(8.0, 0.2 * 2**attempt) * (0.5 + random.random()))


async def _pool(n: int, jobs: list[Any], work: Callable[[Any], Any]) -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for j in jobs:
        queue.put_nowait(j)

    async def worker() -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await work(job)

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(min(n, len(jobs))):
                tg.create_task(worker())
    except ExceptionGroup as group:  # callers handle the first real failure, not a group
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


# ------------------------------------------------------------------------- upload

PIPELINE_BYTES = 16 * 1024 * 1024  # chunk bytes queued between the cutting and the hashing thread


PARALLEL_MIN = 32 * 1024 * 1024  # smaller files are cut in one pass
CUT_THREADS = 2  # cores that cut and hash a big file at once


class _Range:
    """Bytes [start, end) of the file *fd*, as a stream for pyfastcdc's ``cut_stream``."""

    def __init__(self, fd: int, start: int, end: int) -> None:
        self.fd, self.pos, self.end = fd, start, end

    def readinto(self, b: memoryview) -> int:
        n = min(len(b), self.end - self.pos)
        if n <= 0:
            return 0
        got = os.preadv(self.fd, [b[:n]], self.pos)
        self.pos += got
        return got


def _cut_range(fd: int, params_size: int, start: int, end: int) -> list[ChunkRef]:
    """Cut and hash bytes [start, end) of *fd* as if they were a whole file (of *params_size*
    for the chunk-size parameters): the first chunk starts at *start*, the last ends at *end*."""
    cutter = chunking._chunker(params_size)
    return [ChunkRef(start + c.offset, c.length, hash_bytes(c.data)) for c in cutter.cut_stream(_Range(fd, start, end))]


def _chunk_parallel(fd: int, size: int, params_size: int) -> list[ChunkRef]:
    """The file's chunks, cut and hashed by CUT_THREADS threads, one slice of the file each
    (pyfastcdc and BLAKE3 release the GIL). A content-defined cut depends only on the bytes from
    the start of its chunk, so once the true sequence of cuts (from offset 0) meets a chunk start
    that a later slice found, that slice's cuts from there are the true ones too. The true
    sequence is carried across each seam by cutting from the last true cut before it until it
    meets one (a chunk or two, usually; with no meeting at all, e.g. a file of one repeated
    byte, it cuts on to the end: slower, still exact)."""
    bounds = [size * i // CUT_THREADS for i in range(CUT_THREADS + 1)]
    with ThreadPoolExecutor(CUT_THREADS, thread_name_prefix="satchel-cdc") as pool:
        parts = list(pool.map(lambda i: _cut_range(fd, params_size, bounds[i], bounds[i + 1]), range(CUT_THREADS)))
    true = parts[0]
    for part in parts[1:]:
        seam = true.pop().offset  # the last chunk ended at the slice's end only because the slice did
        ahead = {r.offset: k for k, r in enumerate(part)}
        for c in chunking._chunker(params_size).cut_stream(_Range(fd, seam, size)):
            at = seam + c.offset
            if at in ahead:
                true.extend(part[ahead[at]:])
                break
            true.append(ChunkRef(at, c.length, hash_bytes(c.data)))
        else:
            return true  # cut on to the end of the file without meeting the slice's cuts
    return true


def chunk_file_pipelined(path: str | os.PathLike[str], as_size: int | None = None,
                         each: Callable[[ChunkRef, bytes], None] | None = None) -> list[ChunkRef]:
    """Same result as ``list(chunk_file(path, as_size))``, faster on two cores. Without *each*, a
    big file is cut and hashed in slices by CUT_THREADS threads (``_chunk_parallel``: 0.5 s for
    1 GiB here, against 0.85 s in one pass). Otherwise one thread cuts (pyfastcdc) while the
    calling thread hashes (blake3); the queue holds at most ~PIPELINE_BYTES (a few chunks), so
    memory stays flat; *each* is called on the hashing thread with every chunk and its bytes (no
    second read of the file)."""
    with open(path, "rb", buffering=0) as f:
        real_size = os.fstat(f.fileno()).st_size
        size = real_size if as_size is None else as_size
        if each is None and real_size >= PARALLEL_MIN:
            return _chunk_parallel(f.fileno(), real_size, size)
        cutter = chunking._chunker(size)  # the protocol's parameters, shared with chunk_file
        depth = max(2, PIPELINE_BYTES // chunking.avg_chunk_size(size))
        q: queue.Queue[tuple[int, bytes] | BaseException | None] = queue.Queue(maxsize=depth)
        stop = threading.Event()

        def cut() -> None:
            try:
                for c in cutter.cut_stream(f):
                    if stop.is_set():
                        return
                    q.put((c.offset, bytes(c.data)))  # c.data points into a reused buffer
                q.put(None)
            except BaseException as exc:  # handed to the hashing side
                q.put(exc)

        worker = threading.Thread(target=cut, name="satchel-cdc", daemon=True)
        worker.start()
        refs: list[ChunkRef] = []
        try:
            while (item := q.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                offset, data = item
                refs.append(ChunkRef(offset, len(data), hash_bytes(data)))
                if each is not None:
                    each(refs[-1], data)
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                with contextlib.suppress(queue.Empty):
                    q.get_nowait()
                worker.join(0.01)
    return refs


class UrlExpired(Exception):
    pass


SEND_PIECE = 1024 * 1024  # bytes handed to the socket at a time


CHUNK_HTTP_MODULE = "python_client.chunk_http"


def _import_chunk_http_meanwhile() -> None:
    """Import the chunk HTTP client on a thread while this one waits on the network (an
    announce, a chunk list): aiohttp's import takes ~0.25 s here, most of it building its
    default SSL contexts, and a one-off `satchel put` or `get` paid it in full. A later import
    of the module waits for this one (Python's per-module import lock)."""
    if CHUNK_HTTP_MODULE not in sys.modules:
        threading.Thread(target=importlib.import_module, args=(CHUNK_HTTP_MODULE,), daemon=True,
                         name="satchel-import").start()


class _Pool:
    """The chunk HTTP client (``python_client.chunk_http``), made on first use: an unchanged
    re-upload, or a download made of bytes already on disk, moves no chunk and needs no aiohttp
    (see ``_import_chunk_http_meanwhile``)."""

    def __init__(self, parallel: int) -> None:
        self.parallel = parallel
        self._http: ChunkHttp | None = None

    def get(self) -> ChunkHttp:
        if self._http is None:
            from python_client.chunk_http import ChunkHttp

            self._http = ChunkHttp(self.parallel)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def _drop(task: asyncio.Future[Any] | None) -> None:
    """Cancel a side task whose answer is no longer wanted, without an unretrieved-error warning."""
    if task is not None:
        task.cancel()  # a no-op once done
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


class _Phases:
    """Where a transfer's time went, for the debug log: ``start 0.31 s, send 0.02 s, ...``."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.parts: list[str] = []

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.parts.append(f"{name} {now - self.last:.3f} s")
        self.last = now

    def __str__(self) -> str:
        return ", ".join(self.parts)


async def upload_file(client: SatchelClient, local: str | os.PathLike[str], remote: str, *,
                      parent_rev: int | str | None = "auto", progress: Callable[[int, int], Progress] | None = None,
                      stats: TransferStats | None = None, chunks: list[ChunkRef] | None = None,
                      parent_chunks: list[tuple[bytes, int]] | None = None) -> dict[str, Any]:
    """Upload *local* to *remote*. ``parent_rev="auto"`` overwrites the current head (if any),
    or returns it untouched when it already has this content and mtime (no new revision);
    an int or None is sent as is and a stale one is a ``conflict``. *chunks*: the file's chunk
    list when the caller just computed it (a sync client's scan), so the file is not read twice.
    *parent_chunks*: the parent revision's chunk list (digest, size) when the caller keeps it;
    across a chunk-size step, the missing chunks then travel as patches of the parent's bytes."""
    stats = stats or TransferStats()
    phases = _Phases()
    path = Path(local)
    read_at = time.time_ns()
    before = opened_stat(path)
    cache = client.chunk_cache if chunks is None else None
    if cache is not None:
        chunks = cache.get(path, before)  # unchanged since this device last chunked it: no reading
    remembered = cache is not None and chunks is not None
    # The head is asked for while the file is hashed: the answer is needed only after.
    asking = asyncio.ensure_future(client.stat_or_none(remote)) if parent_rev == "auto" else None
    try:
        refs = chunks if chunks is not None else await asyncio.to_thread(chunk_file_pipelined, path)
    except BaseException:
        _drop(asking)
        raise
    head = await asking if asking is not None else None
    phases.mark("hash" if chunks is None else "cached chunk list")
    if sum(r.size for r in refs) != before.st_size:
        raise SatchelError(ErrorCode.conflict, f"{path} changed since it was chunked; try again")
    after = opened_stat(path)
    if (after.st_mtime_ns, after.st_size) != (before.st_mtime_ns, before.st_size):
        raise SatchelError(ErrorCode.conflict, f"{path} changed while it was being read; try again")
    if cache is not None and chunks is None and unchanged(before, after):
        cache.put(path, before, read_at, refs)
    stats.chunks_total = len(refs)
    where = {r.digest.hex(): (r.offset, r.size) for r in refs}
    if asking is not None:
        if head is not None and head["kind"] != "file":
            raise SatchelError(ErrorCode.is_a_directory, f"{remote} is a folder", path=remote)
        if head is not None and same_as_head(head, before.st_size, before.st_mtime_ns, (r.digest for r in refs)):
            log.debug("upload %s: the head has this content and mtime already (%s)", remote, phases)
            stats.unchanged = True
            return head
        parent_rev = head["rev"] if head else None
    body = {
        "path": remote, "size": before.st_size, "parent_rev": parent_rev,
        "chunks": [[r.digest.hex(), r.size] for r in refs], "mtime": before.st_mtime_ns // 1_000_000,
        "mime": mimetypes.guess_type(path.name)[0],
        "urls": False,  # chunks go through the pack URL; a direct (S3) store's URLs come anyway
    }
    del refs
    # Across a chunk-size step, the parent's chunk list (asked for while the server answers the
    # start) lets the few chunks still missing travel as patches of the parent's bytes.
    listing = asyncio.ensure_future(_parent_list(client, before.st_size, parent_rev, head, parent_chunks)) \
        if isinstance(parent_rev, int) else None
    same = None
    try:
        _import_chunk_http_meanwhile()
        info = await client.start_upload(body)
        phases.mark("start")
        parent = await listing if listing is not None and 0 < len(info["missing"]) <= chunking.MAX_PATCHES else None
        if parent:
            same = await _locate_in_parent(path, parent, [where[m["hash"]] for m in info["missing"]])
            phases.mark("locate in parent")
    finally:
        _drop(listing)
    if same:
        info = await _send_patches(client, path, info, where, same, stats)
        phases.mark("patch")
    advance = progress(sum(m["size"] for m in info["missing"]), len(info["missing"])) if progress else None
    fd = os.open(path, os.O_RDONLY)
    pool = _Pool(client.parallel)
    try:
        for attempt in range(RETRIES):
            try:
                if info["missing"]:
                    send = _send_packs if info.get("pack_url") else _send_chunks
                    await send(client, pool.get(), fd, info, where, stats, advance)
                phases.mark("send")
                done = await client.commit_upload(info["upload_id"])
                phases.mark("commit")
                log.debug("upload %s: %s", remote, phases)
                return done
            except UrlExpired:
                pass
            except SatchelError as exc:
                if remembered and exc.code in (ErrorCode.hash_mismatch, ErrorCode.size_mismatch):
                    assert cache is not None
                    cache.forget(path)  # the bytes are not what the remembered list says
                    raise SatchelError(ErrorCode.conflict, f"{path} is not what this device remembered of it; "
                                       "try again") from exc
                # hash/size mismatch at commit: a staged copy was damaged (e.g. a killed earlier run
                # left a partial object); the server dropped it, and our bytes are hashed: send again.
                # unavailable: the chunk store or database blipped; nothing was committed, staged
                # chunks stay, and asking again sends only what is still missing.
                if exc.code not in (ErrorCode.missing_chunks, ErrorCode.hash_mismatch, ErrorCode.size_mismatch,
                                    ErrorCode.unavailable) or attempt == RETRIES - 1:
                    raise
            await _backoff(attempt)
            info = await client.upload_status(info["upload_id"])
        raise SatchelError(ErrorCode.missing_chunks, "the server keeps missing chunks; giving up")
    finally:
        os.close(fd)
        await pool.aclose()


def same_as_head(head: dict[str, Any] | None, size: int, mtime_ns: int, digests: Iterable[bytes]) -> bool:
    """Would an upload of this content (its chunk digests) and mtime make a revision identical to
    the *head* entry (content and mtime, to the millisecond)?"""
    return head is not None and head.get("kind") == "file" and head.get("size") == size \
        and bool(head.get("mtime")) and mtime_ns_of(head["mtime"]) // 1_000_000 == mtime_ns // 1_000_000 \
        and head.get("content_hash") == chunking.content_hash(digests)


PATCH_MAX_LITERAL = 0.75  # a missing chunk mostly made of new bytes is sent as it is


def _parent_ranges(path: Path, parent: list[tuple[bytes, int]], regions: list[tuple[int, int]]
                   ) -> list[tuple[int, int, int]]:
    """(offset here, length, offset in the parent) of bytes this file shares with the parent
    around *regions* (offset, size: the chunks still missing), sorted. Cut as a file of the
    parent's size, this file shares the parent's chunks wherever it was not edited, and the
    parent's list says where they are. Only a window around each region is cut: content-defined
    cuts fall back in step with the parent's within a chunk or two of wherever cutting starts,
    and a chunk counts only when its hash is in the parent's list."""
    found: dict[bytes, int] = {}
    parent_size = 0
    for digest, n in parent:
        found.setdefault(digest, parent_size)
        parent_size += n
    margin = 2 * 4 * chunking.avg_chunk_size(parent_size)  # two of the parent's largest chunks
    windows: list[list[int]] = []
    for start, size in sorted(regions):
        lo, hi = max(0, start - margin), start + size + margin
        if windows and lo <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], hi)
        else:
            windows.append([lo, hi])
    cutter = chunking._chunker(parent_size)
    out = []
    with open(path, "rb", buffering=0) as f:
        for lo, hi in windows:
            buf = os.pread(f.fileno(), hi - lo, lo)
            for c in cutter.cut_buf(buf):
                at = found.get(hash_bytes(c.data))
                if at is not None:
                    out.append((lo + c.offset, c.length, at))
    return out


def _patches(path: Path, same: list[tuple[int, int, int]], missing: list[dict[str, Any]],
             where: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """The missing chunks as patches: ranges of the parent where *same* covers them, literal
    bytes elsewhere; a chunk mostly made of new bytes is left out (sent as it is)."""
    starts = [s for s, _, _ in same]
    out = []
    with open(path, "rb", buffering=0) as f:
        for m in missing:
            start, size = where[m["hash"]]
            end, pos, literal = start + size, start, 0
            parts: list[Any] = []
            i = max(0, bisect.bisect_right(starts, start) - 1)
            while i < len(same) and same[i][0] < end:
                at, n, parent_at = same[i]
                i += 1
                lo, hi = max(start, at), min(end, at + n)
                if hi <= lo:
                    continue
                if lo > pos:
                    parts.append(os.pread(f.fileno(), lo - pos, pos))
                    literal += lo - pos
                if parts and isinstance(parts[-1], list) and sum(parts[-1]) == parent_at + lo - at:
                    parts[-1][1] += hi - lo
                else:
                    parts.append([parent_at + lo - at, hi - lo])
                pos = hi
            if pos < end:
                parts.append(os.pread(f.fileno(), end - pos, pos))
                literal += end - pos
            if literal <= PATCH_MAX_LITERAL * size:
                out.append({"hash": m["hash"], "size": size, "parts": parts})
    return out


async def _parent_list(client: SatchelClient, size: int, parent_rev: int, head: dict[str, Any] | None,
                       parent: list[tuple[bytes, int]] | None) -> list[tuple[bytes, int]] | None:
    """The parent revision's chunk list when this version crosses a chunk-size step from it
    (protocol.md, "Uploading a file"), else None."""
    try:
        if parent is None:
            if head is None or head.get("rev") != parent_rev or \
                    chunking.avg_chunk_size(size) == chunking.avg_chunk_size(int(head.get("size") or 0)):
                return None
            listing = await _all_chunks(client, int(head["id"]), parent_rev)
            parent = [(bytes.fromhex(c["hash"]), int(c["size"])) for c in listing["chunks"]]
        if chunking.avg_chunk_size(size) == chunking.avg_chunk_size(sum(n for _, n in parent)):
            return None  # same cut: the parent's chunks around an edit are no help
        return parent
    except Exception as exc:  # patches are an optimisation only: never the reason an upload fails
        log.info("cannot list the parent's chunks (%s); sending whole chunks", exc)
        return None


async def _locate_in_parent(path: Path, parent: list[tuple[bytes, int]], regions: list[tuple[int, int]]
                            ) -> list[tuple[int, int, int]] | None:
    try:
        return await asyncio.to_thread(_parent_ranges, path, parent, regions)
    except Exception as exc:  # as above
        log.info("cannot locate the parent's bytes (%s); sending whole chunks", exc)
        return None


async def _send_patches(client: SatchelClient, path: Path, info: dict[str, Any], where: dict[str, tuple[int, int]],
                        same: list[tuple[int, int, int]], stats: TransferStats) -> dict[str, Any]:
    """Send the few missing chunks (the caller checked: at most MAX_PATCHES) as patches of the
    parent. Returns the session again (what is still missing). Best effort: any refusal leaves
    the chunks to the normal way."""
    patches = await asyncio.to_thread(_patches, path, same, info["missing"], where)
    if not patches:
        return info
    body = msgpack.packb({"chunks": patches})  # literal bytes as bin: JSON's base64 would add a third
    try:
        resp = await client.http.post(f"{client.server}/api/v1/uploads/{info['upload_id']}/patch", content=body,
                                      headers={**client._headers(), "Content-Type": "application/msgpack"},
                                      timeout=SLOW_TIMEOUT)
        raise_for_error(resp)
    except (SatchelError, httpx.HTTPError) as exc:
        log.info("patches refused (%s); sending the chunks", exc)
        return info
    stats.bytes_sent += len(body)
    stats.chunks_sent += len(patches)
    try:
        return await client.upload_status(info["upload_id"])
    except (SatchelError, httpx.HTTPError):
        return info  # sending a patched chunk again is harmless; the commit's retries re-ask anyway


_EXPIRY_SIGNS = (b"expired", b"requesttimetooskewed", b"difference between the request time")


def url_expired(status: int, body: bytes) -> bool:
    """Whether a refused PUT or GET means its signed URL ran out: this server says
    ``url_expired``, S3 and MinIO "Request has expired", rclone that the request time is too far
    from its own (a presigned URL's signing time counts as the request time)."""
    text = body.lower()
    return status in (400, 403) and any(sign in text for sign in _EXPIRY_SIGNS)


def _check_put(status: int, body: bytes) -> None:
    """Raise for a failed chunk or pack PUT (this server's or the object store's answer)."""
    if url_expired(status, body):
        raise UrlExpired()
    if status >= 500:
        raise SatchelError(ErrorCode.unavailable, f"HTTP {status}")
    if status >= 400:
        raise_for_error(httpx.Response(status, content=body, headers={"content-type": "application/json"}))


async def _deliver(put: Callable[[], Awaitable[tuple[int, bytes]]], chunks: int, size: int,
                   stats: TransferStats, advance: Progress | None) -> None:
    """Run one PUT (a chunk or a pack), retrying transport failures; count what got through."""
    for attempt in range(RETRIES):
        try:
            _check_put(*await put())
            stats.bytes_sent += size
            stats.chunks_sent += chunks
            if advance:
                advance(size)
            return
        except Exception as exc:
            if not _retryable(exc) or attempt == RETRIES - 1:
                raise
            await _backoff(attempt)


async def _send_chunks(client: SatchelClient, pool: ChunkHttp, fd: int, info: dict[str, Any],
                       where: dict[str, tuple[int, int]], stats: TransferStats,
                       advance: Progress | None) -> None:
    """One PUT per missing chunk, to its own signed URL (object stores)."""
    async def send(m: dict[str, Any]) -> None:
        offset, size = where[m["hash"]]
        data = await asyncio.to_thread(os.pread, fd, size, offset)
        if len(data) != size:
            raise SatchelError(ErrorCode.conflict, "the file changed while it was being uploaded")
        await _deliver(lambda: pool.put(m["url"], data, m["headers"]), 1, size, stats, advance)

    await _pool(client.parallel, info["missing"], send)


PACK_BYTES = 8 * 1024 * 1024  # a pack request carries about this much (fewer requests, bounded memory)
PACK_PARALLEL = 3  # packs in flight: enough to keep the server busy while one is read from disk


def _packs(missing: list[dict[str, Any]], where: dict[str, tuple[int, int]]) -> list[list[dict[str, Any]]]:
    """Group the missing chunks, in file order, into packs of about PACK_BYTES."""
    ordered = sorted(missing, key=lambda m: where[m["hash"]][0])
    packs: list[list[dict[str, Any]]] = []
    size = 0
    for m in ordered:
        if not packs or size + m["size"] > PACK_BYTES or len(packs[-1]) >= pack.MAX_PACK_CHUNKS:
            packs.append([])
            size = 0
        packs[-1].append(m)
        size += m["size"]
    return packs


async def _send_packs(client: SatchelClient, pool: ChunkHttp, fd: int, info: dict[str, Any],
                      where: dict[str, tuple[int, int]], stats: TransferStats,
                      advance: Progress | None) -> None:
    """Send the missing chunks as packs to the session's pack URL (servers with a local store)."""
    headers = {"Content-Type": pack.MEDIA_TYPE}

    async def body(head: bytes, chunks: list[dict[str, Any]]) -> AsyncIterator[bytes | memoryview]:
        yield head
        # Chunks that follow each other in the file (all of a new file's) are read with one
        # pread: a thread hop per chunk cost more than the read.
        runs: list[list[int]] = []  # [offset, length]
        for m in chunks:
            offset, size = where[m["hash"]]
            if runs and runs[-1][0] + runs[-1][1] == offset:
                runs[-1][1] += size
            else:
                runs.append([offset, size])
        for offset, size in runs:
            data = await asyncio.to_thread(os.pread, fd, size, offset)
            if len(data) != size:
                raise SatchelError(ErrorCode.conflict, "the file changed while it was being uploaded")
            view = memoryview(data)  # in socket-sized pieces: asyncio copies what a send leaves over
            for i in range(0, size, SEND_PIECE):
                yield view[i:i + SEND_PIECE]

    async def send(chunks: list[dict[str, Any]]) -> None:
        head = pack.pack_header([(bytes.fromhex(m["hash"]), m["size"]) for m in chunks])
        size = sum(m["size"] for m in chunks)
        # A known length, not chunked transfer encoding: aiohttp would copy every piece to frame it.
        sized = headers | {"Content-Length": str(len(head) + size)}
        await _deliver(lambda: pool.put_stream(info["pack_url"], body(head, chunks), sized), len(chunks),
                       size, stats, advance)

    await _pool(min(client.parallel, PACK_PARALLEL), _packs(info["missing"], where), send)


# ------------------------------------------------------------------------- download

async def _all_chunks(client: SatchelClient, file_id: int, rev: int | None) -> dict[str, Any]:
    """Every page of a revision's chunk list, without URLs (``_add_urls`` gets those it needs)."""
    first = await client.chunk_list(file_id, rev, urls=False)
    chunks = list(first["chunks"])
    nxt = first["next_offset"]
    while nxt is not None:
        page = await client.chunk_list(file_id, first["rev"], nxt, urls=False)
        chunks.extend(page["chunks"])
        nxt = page["next_offset"]
    first["chunks"] = chunks
    return first


def _reuse_local(fd: int, size: int, chunks: list[dict[str, Any]], part_existed: bool, target: Path,
                 stats: TransferStats, sources: Sequence[Path] = ()) -> list[dict[str, Any]]:
    """Fill the part file (of a file of *size* bytes) from bytes already on disk (the part file,
    the target's old version, then *sources*: other local files that may share chunks); return
    the chunks still to fetch. The old files are cut as a file of *size* would be, so a file
    that crossed a chunk-size step still finds its unchanged bytes."""
    needed = []
    for c in chunks:
        if part_existed and hash_bytes(os.pread(fd, c["size"], c["offset"])).hex() == c["hash"]:
            stats.bytes_reused += c["size"]
        else:
            needed.append(c)
    for source in (target, *sources):
        if not needed or not source.is_file():
            continue
        wanted: dict[tuple[bytes, int], list[int]] = {}  # (digest, size) -> offsets in the new file
        for c in needed:
            wanted.setdefault((bytes.fromhex(c["hash"]), c["size"]), []).append(c["offset"])

        def write(ref: ChunkRef, data: bytes, wanted: dict[tuple[bytes, int], list[int]] = wanted) -> None:
            # bytes just hashed: written as they are
            for at in wanted.pop((ref.digest, ref.size), ()):
                pwrite_all(fd, data, at)
                stats.bytes_reused += ref.size

        chunk_file_pipelined(source, as_size=size, each=write)
        needed = [c for c in needed if (bytes.fromhex(c["hash"]), c["size"]) in wanted]
    return needed


def _reuse_known(fd: int, chunks: list[dict[str, Any]], target: Path, base: list[dict[str, Any]],
                 stats: TransferStats) -> list[dict[str, Any]]:
    """Fill the part file from the target's old version whose chunk list is *base* (the revision
    the local file was synced at, and its size/mtime/inode say it still is): each chunk found there
    is read at its old offset, hashed and written, in one pass on two threads, without cutting and
    hashing the whole old file first (for a 1-byte edit of a big file, that was three passes).
    A chunk whose bytes do not hash to its name is fetched instead. Returns the chunks to fetch."""
    where = {c["hash"]: c for c in base}
    needed = [c for c in chunks if c["hash"] not in where or where[c["hash"]]["size"] != c["size"]]
    local = [c for c in chunks if c["hash"] in where and where[c["hash"]]["size"] == c["size"]]

    def copy(src: int, part: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [c for c in part if not _copy_if_same(src, fd, c, where[c["hash"]]["offset"])]

    missed = _copy_from(target, fd, local, copy, stats)
    return sorted(needed + missed, key=lambda c: c["offset"])


def _reuse_shifted(fd: int, chunks: list[dict[str, Any]], target: Path, shifts: tuple[int, ...],
                   stats: TransferStats) -> list[dict[str, Any]]:
    """Fill the part file from the target's old version for a file cut anew (it crossed a
    chunk-size step, so no chunk is in the old list): a chunk of the new version is most likely
    at its own offset in the old file (before an edit) or shifted by the change in size (after
    it). Each guess is read, hashed and written only if it matches, in one pass on two threads,
    without cutting the old file; the last shift that matched is tried first. Returns the
    chunks not found."""
    def copy(src: int, part: list[dict[str, Any]]) -> list[dict[str, Any]]:
        order, missed = list(shifts), []  # per thread
        for c in part:
            for shift in order:
                if c["offset"] - shift >= 0 and _copy_if_same(src, fd, c, c["offset"] - shift):
                    order.remove(shift)
                    order.insert(0, shift)
                    break
            else:
                missed.append(c)
        return missed

    return _copy_from(target, fd, chunks, copy, stats)


REUSE_THREADS = 2  # BLAKE3 and pread/pwrite release the GIL: two cores
WRITEBACK_PERIOD = 0.05  # seconds between write-backs of a part file filled from local copies


async def _to_thread_to_the_end(fn: Callable[..., T], *args: Any) -> T:
    """``asyncio.to_thread`` for work that writes to a descriptor its caller closes: cancelled,
    it waits for the thread to end before letting the cancellation through (a thread cannot be
    stopped, and a descriptor number closed under it may already name another file)."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({work})
        if not work.cancelled():
            work.exception()  # retrieved: its failure is not what the caller is told
        raise


def _copy_if_same(src: int, fd: int, c: dict[str, Any], at: int) -> bool:
    """Copy chunk *c* from offset *at* of *src* to its place in *fd* if the bytes there are it."""
    data = os.pread(src, c["size"], at)
    if len(data) != c["size"] or hash_bytes(data).hex() != c["hash"]:
        return False
    pwrite_all(fd, data, c["offset"])
    return True


def _copy_from(target: Path, fd: int, chunks: list[dict[str, Any]],
               copy: Callable[[int, list[dict[str, Any]]], list[dict[str, Any]]], stats: TransferStats
               ) -> list[dict[str, Any]]:
    """Run *copy* (old file's descriptor, chunks -> the chunks it missed) on REUSE_THREADS
    contiguous slices of *chunks* at once, while this thread keeps writing back what they wrote
    to *fd* (the final fsync then waits for the tail only: 255 MiB, ~0.6 -> ~0.55 s here);
    count what it copied; the chunks missed, in order."""
    step = max(1, len(chunks) // REUSE_THREADS + 1)
    with open(target, "rb", buffering=0) as src, \
            ThreadPoolExecutor(REUSE_THREADS, thread_name_prefix="satchel-reuse") as pool:
        work = [pool.submit(copy, src.fileno(), chunks[i:i + step]) for i in range(0, len(chunks), step)]
        running: set[Future[list[dict[str, Any]]]] = set(work)
        failed: OSError | None = None
        while running:
            running = wait(running, timeout=WRITEBACK_PERIOD if failed is None else None).not_done
            if running and failed is None:
                try:
                    os.fdatasync(fd)
                except OSError as exc:  # reported once per descriptor: the final fsync would not see it
                    failed = exc
        missed = [c for f in work for c in f.result()]
        if failed is not None:
            raise failed
    stats.bytes_reused += sum(c["size"] for c in chunks) - sum(c["size"] for c in missed)
    return missed


def _runs(needed: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """*needed* in runs of consecutive chunks of at most RUN_LIMIT bytes (one range GET each)."""
    runs: list[list[dict[str, Any]]] = []
    run_bytes = 0
    for c in needed:
        if runs and runs[-1][-1]["index"] + 1 == c["index"] and run_bytes + c["size"] <= RUN_LIMIT:
            runs[-1].append(c)
            run_bytes += c["size"]
        else:
            runs.append([c])
            run_bytes = c["size"]
    return runs


class _PartFile:
    """Writes into the part file from worker threads (the event loop keeps receiving meanwhile)
    and, every ``FLUSH_EVERY`` bytes, starts an ``fdatasync`` in the background so the final
    fsync waits only for the tail, not for the whole file (1 GiB: ~1 s here). ``settle`` waits
    for every write and flush, even of a cancelled caller, before the descriptor may be closed."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._threads = ThreadPoolExecutor(3, thread_name_prefix="satchel-write")
        self._unflushed = 0
        self._flushes: list[Future[None]] = []

    async def write(self, data: bytes | memoryview, pos: int) -> None:
        await asyncio.wrap_future(self._threads.submit(pwrite_all, self.fd, data, pos))
        self._unflushed += len(data)
        if self._unflushed >= FLUSH_EVERY and (not self._flushes or self._flushes[-1].done()):
            self._unflushed = 0
            self._flushes.append(self._threads.submit(os.fdatasync, self.fd))

    async def settle(self, check: bool = True) -> None:
        """Wait for every write and flush; with *check*, raise a flush's error (a write-back error
        is reported once per descriptor: the final fsync would not see it again)."""
        await asyncio.to_thread(self._threads.shutdown, True)
        failed = [e for e in (f.exception() for f in self._flushes) if e is not None]
        if check and failed:
            raise failed[0]


async def _fetch_run(client: SatchelClient, pool: ChunkHttp, out: _PartFile, file_id: int, rev: int,
                     run: list[dict[str, Any]], stats: TransferStats, advance: Progress | None) -> None:
    """GET the byte range covering *run*, verifying and writing chunk by chunk; resume on failure."""
    pending = list(run)

    async def consume(start: int, pieces: Any) -> None:
        cur, hasher, pos, filled = pending[0], new_hasher(), start, 0
        end = pending[-1]["offset"] + pending[-1]["size"]
        async for piece in pieces:
            view = memoryview(piece)[:end - pos]
            await out.write(view, pos)  # a range is contiguous: one write per piece
            while view:
                take = min(len(view), cur["size"] - filled)
                hasher.update(view[:take])
                pos, filled, view = pos + take, filled + take, view[take:]
                stats.bytes_received += take
                if advance:
                    advance(take)
                if filled == cur["size"]:
                    if hasher.hexdigest() != cur["hash"]:
                        raise SatchelError(ErrorCode.hash_mismatch, "downloaded chunk is corrupt")
                    pending.pop(0)
                    if not pending:
                        return
                    cur, hasher, filled = pending[0], new_hasher(), 0
        raise httpx.ReadError("response ended early")

    url = client.content_url(file_id)
    for attempt in range(RETRIES):
        start, end = pending[0]["offset"], pending[-1]["offset"] + pending[-1]["size"]
        headers = {**client._headers(), "Range": f"bytes={start}-{end - 1}"}
        try:
            async with pool.get(f"{url}?rev={rev}", headers) as (status, pieces, _headers):
                if status != 206:
                    body = b"".join([p async for p in pieces])
                    if status >= 400:
                        raise_for_error(httpx.Response(status, content=body,
                                                       headers={"content-type": "application/json"}))
                    raise SatchelError(ErrorCode.unavailable, f"expected 206, got {status}")
                await consume(start, pieces)
                return
        except Exception as exc:
            if not (_retryable(exc) or (isinstance(exc, SatchelError) and exc.code is ErrorCode.hash_mismatch)) \
                    or attempt == RETRIES - 1:
                raise
            await _backoff(attempt)


class _UrlRenewal:
    """Fresh presigned URLs for a download whose handed-out ones ran out: a member's live five
    minutes, and a 50 GB download takes longer than that. One page of the chunk list (10,000
    chunks) from the expired one on renews them all at once, however many workers hit it."""

    def __init__(self, client: SatchelClient, file_id: int, rev: int, chunks: list[dict[str, Any]]) -> None:
        self.client, self.file_id, self.rev = client, file_id, rev
        self.by_index = {c["index"]: c for c in chunks if "index" in c}
        self.lock = asyncio.Lock()

    async def renew(self, chunk: dict[str, Any], stale_url: str) -> None:
        async with self.lock:
            if chunk["url"] != stale_url or "index" not in chunk:
                return  # another worker renewed it meanwhile
            page = await self.client.chunk_list(self.file_id, self.rev, chunk["index"])
            for fresh in page["chunks"]:
                mine = self.by_index.get(fresh["index"])
                if mine is not None and mine["hash"] == fresh["hash"]:
                    mine["url"] = fresh["url"]


async def _fetch_direct(pool: ChunkHttp, out: _PartFile, chunk: dict[str, Any], renewal: _UrlRenewal,
                        stats: TransferStats, advance: Progress | None) -> None:
    """GET one chunk from its presigned object-store URL, verify it, write it."""
    for attempt in range(RETRIES):
        url = chunk["url"]
        try:
            async with pool.get(url) as (status, pieces, _headers):
                data = b"".join([p async for p in pieces])
            if url_expired(status, data):
                await renewal.renew(chunk, url)
                raise SatchelError(ErrorCode.url_expired, "the chunk URL expired; renewed it")
            if status >= 400:
                raise SatchelError(ErrorCode.unavailable, f"HTTP {status} from the object store")
            if hash_bytes(data).hex() != chunk["hash"]:
                raise SatchelError(ErrorCode.hash_mismatch, "downloaded chunk is corrupt")
            await out.write(memoryview(data), chunk["offset"])
            stats.bytes_received += chunk["size"]
            if advance:
                advance(chunk["size"])
            return
        except Exception as exc:
            if not (_retryable(exc) or isinstance(exc, SatchelError)) or attempt == RETRIES - 1:
                raise
            if not (isinstance(exc, SatchelError) and exc.code is ErrorCode.url_expired):
                await _backoff(attempt)


def _offsets(chunks: list[tuple[bytes, int]]) -> list[dict[str, Any]]:
    """(digest, size) pairs as chunk list entries with offsets."""
    out, offset = [], 0
    for digest, size in chunks:
        out.append({"hash": digest.hex(), "size": size, "offset": offset})
        offset += size
    return out


async def _base_list(client: SatchelClient, base: tuple[int, int]) -> list[dict[str, Any]] | None:
    """The chunk list of revision *base* (file id, rev), or None if the server no longer has it."""
    try:
        return list((await _all_chunks(client, base[0], base[1]))["chunks"])
    except SatchelError as exc:
        if exc.code in (ErrorCode.not_found, ErrorCode.forbidden):
            return None
        raise


URL_PAGES = 8  # chunks to fetch in more runs than this get their URLs from one span of the list


def _direct(client: SatchelClient, listing: dict[str, Any]) -> bool:
    """Are the listed chunks fetched from an object store? A server before protocol 0.9 does not
    say, and lists URLs anyway: one that is not this server's says so."""
    if "direct" in listing:
        return bool(listing["direct"])
    chunks = listing["chunks"]
    return bool(chunks) and "url" in chunks[0] and not str(chunks[0]["url"]).startswith(client.server)


async def _add_urls(client: SatchelClient, file_id: int, rev: int, needed: list[dict[str, Any]]) -> None:
    """Give the chunks to fetch (listed without URLs) their presigned URLs: a page per run of
    consecutive chunks (a small edit: one short request), or, in many runs, every page from
    the first of them on."""
    by_index = {c["index"]: c for c in needed}
    runs: list[list[int]] = []
    for i in sorted(by_index):
        if runs and runs[-1][-1] + 1 == i:
            runs[-1].append(i)
        else:
            runs.append([i])
    if len(runs) > URL_PAGES:
        runs = [[runs[0][0], runs[-1][-1]]]

    async def span(first: int, last: int) -> None:
        while first <= last:  # a page holds at most 10,000 chunks
            page = (await client.chunk_list(file_id, rev, first, limit=last - first + 1))["chunks"]
            if not page:
                return
            for fresh in page:
                mine = by_index.get(fresh["index"])
                if mine is not None and mine["hash"] == fresh["hash"]:
                    mine["url"] = fresh["url"]
            first = page[-1]["index"] + 1

    await asyncio.gather(*(span(r[0], r[-1]) for r in runs))
    if any("url" not in c for c in needed):
        raise SatchelError(ErrorCode.unavailable, "the server listed no URL for a chunk to fetch")


async def _fetch_chunks(client: SatchelClient, pool: ChunkHttp, out: _PartFile, file_id: int, rev: int,
                        needed: list[dict[str, Any]], stats: TransferStats, advance: Progress | None,
                        direct: bool) -> None:
    """Fetch *needed* into the part file: byte ranges from this server, or presigned URLs when
    the chunks are *direct* from an object store."""
    if not needed:
        return
    if not direct:
        await _pool(client.parallel // 2 or 1, _runs(needed),
                    lambda run: _fetch_run(client, pool, out, file_id, rev, run, stats, advance))
    else:
        await _add_urls(client, file_id, rev, needed)
        renewal = _UrlRenewal(client, file_id, rev, needed)
        await _pool(client.parallel, needed, lambda c: _fetch_direct(pool, out, c, renewal, stats, advance))


async def download_file(client: SatchelClient, remote: str, local: str | os.PathLike[str], *,
                        rev: int | None = None, progress: Callable[[int, int], Progress] | None = None,
                        stats: TransferStats | None = None,
                        replace_if: Callable[[Path], bool] | None = None,
                        sources: list[Path] | None = None, base: tuple[int, int] | None = None,
                        base_chunks: list[tuple[bytes, int]] | None = None) -> dict[str, Any]:
    """Download *remote* (revision *rev*, default the head) to *local*. *replace_if* is asked
    right before the finished part file is renamed over the target (a sync client checks there
    that the local file was not edited meanwhile); False drops the download (``conflict``).
    *sources*: other local files whose chunks may be reused (e.g. a local copy of the content).
    *base*: (file id, revision) the target's bytes are known to be (a sync client's synced state):
    its chunk list locates reusable bytes without hashing the old file (see ``_reuse_known``);
    *base_chunks*: that list (digest, size) when the caller keeps it, saving the request.
    With a chunk cache (``SatchelClient(chunk_cache=...)``) and no *base*, an unchanged target
    this device put or got before is its own base: a target that already holds the revision is
    left as it is, and an older one gives its chunks without being hashed.
    The result carries the new revision's chunk list as ``chunks`` ((digest, size) pairs)."""
    stats = stats or TransferStats()
    phases = _Phases()
    _import_chunk_http_meanwhile()
    meta = await client.stat(remote)
    if meta["kind"] != "file":
        raise SatchelError(ErrorCode.is_a_directory, f"{remote} is a folder", path=remote)
    target = Path(local)
    if target.is_dir():  # the name asked for, not the server's answer (which could say "../x")
        target = target / paths.name(paths.normalize(remote))
    part = target.with_name(target.name + PART_SUFFIX)
    part_existed = part.exists()
    usable = target.is_file() and not part_existed
    if base is None and usable and client.chunk_cache is not None:
        # The old copy's chunk list, if this device put or got it and it is unchanged since.
        known_refs = client.chunk_cache.get(target, opened_stat(target))
        if known_refs is not None:
            base_chunks = [(r.digest, r.size) for r in known_refs]
    usable = usable and (base is not None or base_chunks is not None)
    # The base revision's list is asked for at the same time as the new one's.
    known_list = asyncio.ensure_future(_base_list(client, base)) \
        if usable and base is not None and base_chunks is None else None
    try:
        listing = await _all_chunks(client, meta["id"], rev)
    except BaseException:
        if known_list is not None:
            known_list.cancel()
        raise
    chunks = listing["chunks"]
    stats.chunks_total = len(chunks)
    phases.mark("list")
    pairs = [(bytes.fromhex(c["hash"]), int(c["size"])) for c in chunks]
    if usable and base_chunks == pairs and replace_if is None:
        stats.bytes_reused = listing["size"]
        log.debug("download %s: %s holds this revision already", remote, target)
        return meta | {"local_path": str(target), "rev": listing["rev"], "chunks": pairs}
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    pool = _Pool(client.parallel)
    out = _PartFile(fd)
    flushing: asyncio.Future[None] | None = None
    unreliable = False  # a write or write-back failed: the part file's bytes are not to be trusted
    try:
        os.ftruncate(fd, listing["size"])
        known = await known_list if known_list is not None else \
            (_offsets(base_chunks) if usable and base_chunks is not None else None)
        if known is not None:
            needed = await _to_thread_to_the_end(_reuse_known, fd, chunks, target, known, stats)
            known_size = sum(c["size"] for c in known)
            if needed and chunking.avg_chunk_size(listing["size"]) != chunking.avg_chunk_size(known_size):
                # cut anew: guess where each chunk is, then (edits all over) find the rest by content
                needed = await _to_thread_to_the_end(_reuse_shifted, fd, needed, target,
                                                     tuple(dict.fromkeys((0, listing["size"] - known_size))), stats)
                if sum(c["size"] for c in needed) > listing["size"] // 8:
                    needed = await _to_thread_to_the_end(_reuse_local, fd, listing["size"], needed, False, target,
                                                         stats)
        else:
            needed = await _to_thread_to_the_end(_reuse_local, fd, listing["size"], chunks, part_existed, target,
                                                 stats, sources or [])
        if needed and sum(c["size"] for c in needed) < listing["size"]:
            flushing = asyncio.ensure_future(asyncio.to_thread(os.fdatasync, fd))  # reused bytes: writeback now
        phases.mark("reuse local")
        advance = progress(sum(c["size"] for c in needed), len(needed)) if progress else None
        if needed:
            await _fetch_chunks(client, pool.get(), out, meta["id"], listing["rev"], needed, stats, advance,
                                _direct(client, listing))
        await out.settle()
        phases.mark("fetch")
        if meta.get("mtime"):  # set before the rename: the file never shows with the download's time
            try:
                os.utime(fd, ns=(mtime_ns_of(meta["mtime"]),) * 2)
            except OSError as exc:  # e.g. a mount that does not let us set times: keep the bytes
                log.warning("cannot set the modification time of %s: %s", target, exc)
        written = os.fstat(fd)
        if flushing is not None:
            await asyncio.shield(flushing)  # its error is not reported again to the fsync below
        await asyncio.to_thread(os.fsync, fd)
        phases.mark("fsync")
    except OSError:
        # The page cache may still hold bytes the disk lost, and a later attempt would find
        # them "verified" there: start over instead of resuming from this part file.
        unreliable = True
        raise
    finally:
        await out.settle(check=False)
        if flushing is not None:
            while not flushing.done():  # never close the descriptor under a running fdatasync
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({flushing})
            if not flushing.cancelled():
                flushing.exception()  # retrieved: reported above, or by the fsync
        os.close(fd)
        if unreliable:
            part.unlink(missing_ok=True)
        await pool.aclose()
    if replace_if is not None and not replace_if(target):
        part.unlink(missing_ok=True)
        raise SatchelError(ErrorCode.conflict, f"{target} changed during the download", path=remote)
    _replace_durably(part, target)
    if client.chunk_cache is not None:
        # Still what this download wrote (no write since: that would have set a new mtime)?
        read_at = time.time_ns()
        with contextlib.suppress(OSError):
            now = opened_stat(target)
            if (now.st_ino, now.st_size, now.st_mtime_ns) == (written.st_ino, written.st_size, written.st_mtime_ns):
                client.chunk_cache.put(target, now, read_at, pairs, wrote_it=True)
    phases.mark("replace")
    log.debug("download %s: %s", remote, phases)
    return meta | {"local_path": str(target), "rev": listing["rev"], "chunks": pairs}


def _replace_durably(part: Path, target: Path) -> None:
    """Rename *part* over *target* and fsync the folder; a big old target is set aside first
    (``_set_aside``) and unlinked in the background, through the folder's descriptor: the folder
    may be renamed (a sync move) before that runs."""
    aside = _set_aside(target)
    try:
        os.replace(part, target)
    except OSError:
        if aside is not None:
            _unlink_quietly(aside)
        raise
    try:
        dfd = os.open(target.parent, os.O_RDONLY)
    except OSError:  # a folder that cannot be opened is only not fsynced
        if aside is not None:
            _unlink_quietly(aside)
        return
    with contextlib.suppress(OSError):
        os.fsync(dfd)
    if aside is None:
        os.close(dfd)
    else:
        asyncio.get_running_loop().run_in_executor(None, _unlink_in, dfd, aside.name)


def _set_aside(target: Path) -> Path | None:
    """Give a big *target* a second name before a new version is renamed over it, so the rename
    does not wait while the file system frees the old blocks (ext4: ~0.2 s for 255 MiB, a fifth
    of a 1-byte edit's time on the receiving side); the caller unlinks that name in the background.
    None when the target is small, not a regular file, or cannot be linked (the rename frees it),
    or when the name is taken: a crash may leave an old version there, but so may a user have a
    file of that name, and it is not ours to delete."""
    aside = target.with_name(target.name + OLD_SUFFIX)
    try:
        st = os.lstat(target)
    except OSError:  # not there (a new file), or not ours to look at: the rename says
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size < SET_ASIDE_MIN:
        return None
    try:
        os.link(target, aside, follow_symlinks=False)  # FileExistsError: name taken
    except OSError as exc:
        log.debug("cannot set %s aside: %s", target, exc)
        return None
    return aside


def _unlink_in(dir_fd: int, name: str) -> None:
    """Unlink *name* in the folder open as *dir_fd*, then close it."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove %s: %s", name, exc)
    finally:
        os.close(dir_fd)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)


def mtime_ns_of(iso: str) -> int:
    """An entry's ``mtime`` (ISO 8601, UTC) in nanoseconds since the epoch (exact, before 1970 too)."""
    from datetime import UTC, datetime, timedelta

    when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def opened_stat(path: Path) -> os.stat_result:
    """*path*'s stat through an open descriptor: on NFS, an open revalidates the attributes that a
    plain stat may take from a cache of several seconds."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)
