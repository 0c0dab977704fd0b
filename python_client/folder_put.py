"""Uploading a local folder (``satchel put DIR REMOTE``).

Small files (up to ``SMALL_MAX``) go in ``commit_batch``es over the WebSocket: one server
transaction and fsync per few hundred files, where a commit of its own costs each file ~35 ms of
round trips and fsyncs. Bigger files go through ``upload_file``, FOLDER_TRANSFERS at a time. As with one
file, each file overwrites the remote head, and a file whose content and mtime the head has
already is left alone; so re-running an interrupted folder upload sends only what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.exceptions import WebSocketException

from python_client.api import SatchelClient
from python_client.batching import COMMIT_BATCH_BYTES, SMALL_MAX, commit_body, commit_cost, fill
from python_client.live import SessionClosed
from python_client.transfer import Progress, TransferStats, same_as_head
from server.core import paths
from server.core.chunking import chunk_bytes
from server.core.errors import ErrorCode, SatchelError

log = logging.getLogger(__name__)
FOLDER_TRANSFERS = 4  # big files uploaded or downloaded at once
CONFLICT_RETRIES = 3  # a file changed on the server between our listing and the batch
# A WebSocket that cannot be had or breaks (a proxy that blocks it, a server without batches):
# the files left go one by one over HTTP instead.
NO_BATCHES: tuple[type[BaseException], ...] = (OSError, TimeoutError, SatchelError, WebSocketException,
                                               SessionClosed)


@dataclass
class FolderResult:
    transferred: int = 0
    unchanged: int = 0
    refused: list[str] = field(default_factory=list)  # "local path: message [code]"


@dataclass
class _Small:
    local: Path
    remote: str
    size: int
    parent_rev: int | None = None
    done: bool = False


def _walk(local: Path, result: FolderResult) -> tuple[list[Path], list[Path]]:
    """The files under *local*, and the folders with nothing in them (made on the server too)."""
    files: list[Path] = []
    empty: list[Path] = []

    def unreadable(exc: OSError) -> None:
        result.refused.append(f"{exc.filename}: {exc.strerror}")

    for top, dirs, names in os.walk(local, onerror=unreadable):
        dirs.sort()
        if not dirs and not names and Path(top) != local:
            empty.append(Path(top))
        for name in sorted(names):
            p = Path(top, name)
            if p.is_symlink():
                log.warning("%s: a symbolic link; skipped", p)
            elif p.is_file():
                files.append(p)
    return files, empty


async def _heads(client: SatchelClient, folders: set[str]) -> dict[str, dict[str, Any]]:
    """The current entries in *folders* (remote), by path; a folder that does not exist yet is empty."""
    heads: dict[str, dict[str, Any]] = {}

    async def one(folder: str) -> None:
        try:
            heads.update((e["path"], e) for e in await client.list(folder))
        except SatchelError as exc:
            if exc.code not in (ErrorCode.not_found, ErrorCode.not_a_directory):
                raise

    sem = asyncio.Semaphore(8)

    async def bounded(folder: str) -> None:
        async with sem:
            await one(folder)

    await asyncio.gather(*(bounded(f) for f in sorted(folders)))
    return heads


async def put_folder(client: SatchelClient, local: Path, remote: str,
                     progress: Callable[[int, int], Progress] | None = None) -> FolderResult:
    """Upload every file under *local* to the same place under *remote* (symbolic links are
    skipped). A file the server refuses is reported in the result; the others still go up."""
    result = FolderResult()
    files, empty = _walk(local, result)
    for folder in empty:
        try:
            await client.mkdir(paths.join(remote, folder.relative_to(local).as_posix()))
        except SatchelError as exc:
            if exc.code is ErrorCode.unauthorized:
                raise
            result.refused.append(f"{folder}: {exc.message} [{exc.code.value}]")  # e.g. a file in the way
    sizes: dict[Path, int] = {}
    remotes: dict[Path, str] = {}
    for f in files:
        try:
            sizes[f] = f.stat().st_size
            remotes[f] = paths.join(remote, f.relative_to(local).as_posix())
        except OSError as exc:
            result.refused.append(f"{f}: {exc.strerror or exc}")
        except SatchelError as exc:  # a name the server would refuse
            result.refused.append(f"{f}: {exc.message} [{exc.code.value}]")
            sizes.pop(f, None)
    small = [f for f in sizes if sizes[f] <= SMALL_MAX]
    big = [f for f in sizes if sizes[f] > SMALL_MAX]
    advance = progress(sum(sizes.values()), len(sizes)) if progress else None
    try:
        await _put_all(client, small, big, sizes, remotes, result, advance)
    except BaseExceptionGroup as failures:
        raise first_failure(failures) from None
    return result


def first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """A task group's first failure, as the plain exception the caller knows how to report."""
    first = group.exceptions[0]
    return first_failure(first) if isinstance(first, BaseExceptionGroup) else first


async def _put_all(client: SatchelClient, small: list[Path], big: list[Path], sizes: dict[Path, int],
                   remotes: dict[Path, str], result: FolderResult, advance: Callable[[int], None] | None) -> None:
    async with asyncio.TaskGroup() as group:
        if small:
            group.create_task(_put_small(client, [(f, remotes[f]) for f in small], result, advance))
        todo = iter(big)

        async def worker() -> None:
            for f in todo:  # one shared iterator: each file goes to one worker
                await _upload_one(client, f, remotes[f], result, advance, sizes[f])

        for _ in range(min(FOLDER_TRANSFERS, len(big))):
            group.create_task(worker())


def ignore_progress(_n: int) -> None:
    """The progress callback of a transfer whose folder has no bar."""


def _read_small(f: Path) -> tuple[bytes, int]:
    with open(f, "rb") as h:
        st = os.fstat(h.fileno())
        data = h.read(SMALL_MAX + 1)
    if len(data) > SMALL_MAX:
        raise OSError(f"{f} grew past {SMALL_MAX} bytes while being read; try again")
    return data, st.st_mtime_ns


async def _put_small(client: SatchelClient, files: list[tuple[Path, str]], result: FolderResult,
                     advance: Callable[[int], None] | None) -> None:
    heads = await _heads(client, {paths.parent(r) for _, r in files})
    todo: list[_Small] = []
    for f, r in files:
        try:
            data, mtime_ns = await asyncio.to_thread(_read_small, f)
        except OSError as exc:
            result.refused.append(f"{f}: {exc.strerror or exc}")
            continue
        head = heads.get(r)
        if same_as_head(head, len(data), mtime_ns, (c.digest for c in chunk_bytes(data))):
            result.unchanged += 1
            if advance:
                advance(len(data))
            continue
        if head is not None and head.get("kind") == "dir":
            result.refused.append(f"{f}: {r} is a folder on the server [{ErrorCode.is_a_directory.value}]")
            continue
        todo.append(_Small(f, r, len(data), head.get("rev") if head else None))  # bytes read again per batch
    if not todo:
        return
    try:
        await _commit_batches(client, todo, result, advance)
    except NO_BATCHES as exc:
        if isinstance(exc, SatchelError) and exc.code is ErrorCode.unauthorized:
            raise
        left = [s for s in todo if not s.done]
        log.warning("WebSocket batches failed (%s); sending the %d files left one by one", exc, len(left))
        for s in left:
            await _upload_one(client, s.local, s.remote, result, advance, s.size)


async def _upload_one(client: SatchelClient, f: Path, remote: str, result: FolderResult,
                      advance: Callable[[int], None] | None, size: int) -> None:
    """One file over HTTP, overwriting the head (the big files, and small ones without batches)."""
    try:
        stats = TransferStats()
        await client.upload(f, remote, stats=stats, progress=lambda _total, _chunks: advance or ignore_progress)
        if stats.unchanged:
            result.unchanged += 1
            if advance:
                advance(size)
        else:
            result.transferred += 1
    except SatchelError as exc:
        if exc.code is ErrorCode.unauthorized:
            raise
        result.refused.append(f"{f}: {exc.message} [{exc.code.value}]")
    except OSError as exc:  # unreadable, or gone since the listing
        result.refused.append(f"{f}: {exc.strerror or exc}")


async def _commit_batches(client: SatchelClient, todo: list[_Small], result: FolderResult,
                          advance: Callable[[int], None] | None) -> None:
    """Commit *todo* in ``commit_batch``es, reading each batch's files only when it goes (memory
    stays at one frame); a conflict (changed on the server since the listing) is retried on the
    head it names, as a put overwrites."""
    from python_client.live import LiveSession, error_of

    assert client.token is not None
    async with LiveSession.connect(client.server, client.token) as live:
        for attempt in range(CONFLICT_RETRIES + 1):
            for batch in fill(todo, lambda s: commit_cost(s.remote, s.size), lambda _s: COMMIT_BATCH_BYTES):
                sent: list[tuple[_Small, int]] = []
                bodies = []
                for s in batch:
                    try:
                        data, mtime_ns = await asyncio.to_thread(_read_small, s.local)
                    except OSError as exc:
                        result.refused.append(f"{s.local}: {exc.strerror or exc}")
                        s.done = True
                        continue
                    bodies.append(commit_body(s.remote, s.parent_rev, data, mtime_ns))
                    sent.append((s, len(data)))
                if not bodies:
                    continue
                answers = await live.commit_batch(bodies)
                if len(answers) != len(sent):
                    raise SatchelError(ErrorCode.unavailable, "the server answered a batch with the wrong "
                                       "number of results")
                for (s, size), answer in zip(sent, answers, strict=True):
                    if "entry" in answer:
                        s.done = True
                        result.transferred += 1
                        if advance:
                            advance(size)
                        continue
                    refusal = error_of(answer.get("error") or {})
                    head_rev = refusal.details.get("head_rev")
                    if refusal.code is ErrorCode.conflict and attempt < CONFLICT_RETRIES and \
                            (head_rev is None or isinstance(head_rev, int)):
                        s.parent_rev = head_rev  # someone changed it since the listing: overwrite, as put does
                    else:
                        s.done = True
                        result.refused.append(f"{s.local}: {refusal.message} [{refusal.code.value}]")
            todo = [s for s in todo if not s.done]
            if not todo:
                return
