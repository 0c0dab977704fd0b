"""Downloading a remote folder (``satchel get /REMOTE/DIR LOCAL``).

Small files (up to ``SMALL_MAX``) come in ``fetch`` batches over the WebSocket, a few hundred per
reply; bigger ones through ``download_file``, FOLDER_TRANSFERS at a time. Every file is verified
against its content hash, written to a part file, fsynced and renamed into place (one directory
fsync per folder), as single downloads are. A local file that already holds the content is left
alone, so re-running an interrupted folder download fetches only what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from python_client.api import SatchelClient
from python_client.batching import FETCH_BATCH_BYTES, SMALL_MAX, fetched_bytes, fill, fsync_dir, write_durably
from python_client.folder_put import FOLDER_TRANSFERS, NO_BATCHES, FolderResult, first_failure, ignore_progress
from python_client.transfer import PART_SUFFIX, Progress, TransferStats, mtime_ns_of
from server.core import paths
from server.core.chunking import chunk_bytes, content_hash
from server.core.errors import ErrorCode, SatchelError

log = logging.getLogger(__name__)


async def _walk(client: SatchelClient, top: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Every folder and file entry under *top* (remote), a folder listing at a time."""
    folders, files, todo = [], [], [top]
    while todo:
        folder = todo.pop()
        for e in await client.list(folder):
            if e["kind"] == "dir":
                folders.append(e["path"])
                todo.append(e["path"])
            else:
                files.append(e)
    return sorted(folders), sorted(files, key=lambda e: e["path"])


def _local(root: Path, top: str, path: str) -> Path:
    """Where the remote *path* (under *top*) goes under *root*: never outside it, whatever the
    server sent (a path not in normal form, e.g. with ``..``, is refused)."""
    if paths.normalize(path) != path or not paths.is_within(path, top) or path == top:  # a ".." never gets by
        raise SatchelError(ErrorCode.invalid_path, f"{path} is not inside {top}", path=path)
    return root.joinpath(*path[len(top):].strip("/").split("/"))


def _holds(target: Path, entry: dict[str, Any]) -> bool:
    """Does the small local file *target* already hold *entry*'s content?"""
    try:
        with open(target, "rb") as f:
            if os.fstat(f.fileno()).st_size != entry.get("size"):
                return False
            data = f.read(SMALL_MAX + 1)
    except OSError:
        return False
    return content_hash(c.digest for c in chunk_bytes(data)) == entry.get("content_hash")


def _place(target: Path, data: bytes, mtime: str | None) -> None:
    part = target.with_name(target.name + PART_SUFFIX)
    try:
        write_durably(part, data, mtime_ns_of(mtime) if mtime else None)
        os.replace(part, target)
    except OSError:
        with contextlib.suppress(OSError):
            part.unlink()
        raise


async def get_folder(client: SatchelClient, remote: str, local: Path,
                     progress: Callable[[int, int], Progress] | None = None) -> FolderResult:
    """Download every file under the remote folder *remote* into *local* (created if needed),
    keeping the tree, empty folders included. A file that cannot be written is reported in the
    result; the others still come down."""
    result = FolderResult()
    folders, files = await _walk(client, remote)
    local.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        try:
            _local(local, remote, folder).mkdir(parents=True, exist_ok=True)
        except (OSError, SatchelError) as exc:
            result.refused.append(f"{folder}: {getattr(exc, 'strerror', None) or exc}")
    targets: dict[str, Path] = {}
    for e in files:
        try:
            targets[e["path"]] = _local(local, remote, e["path"])
        except SatchelError as exc:
            result.refused.append(f"{e['path']}: {exc.message} [{exc.code.value}]")
    small = [e for e in files if e["path"] in targets and e["size"] <= SMALL_MAX]
    big = [e for e in files if e["path"] in targets and e["size"] > SMALL_MAX]
    advance = progress(sum(e["size"] for e in small + big), len(small) + len(big)) if progress else None
    try:
        async with asyncio.TaskGroup() as group:
            if small:
                group.create_task(_get_small(client, small, targets, result, advance))
            todo = iter(big)

            async def worker() -> None:
                for e in todo:  # one shared iterator: each file goes to one worker
                    await _download_one(client, e, targets[e["path"]], result, advance)

            for _ in range(min(FOLDER_TRANSFERS, len(big))):
                group.create_task(worker())
    except BaseExceptionGroup as failures:
        raise first_failure(failures) from None
    return result


async def _download_one(client: SatchelClient, e: dict[str, Any], target: Path, result: FolderResult,
                        advance: Callable[[int], None] | None) -> None:
    """One file over HTTP, the listed revision (the big files, and small ones without batches)."""
    if target.is_dir():  # never into it: that is not where this file goes
        result.refused.append(f"{target}: a folder is where this file goes [{ErrorCode.is_a_directory.value}]")
        return
    stats = TransferStats()
    try:
        await client.download(e["path"], target, rev=e.get("rev"), stats=stats,
                              progress=lambda _total, _chunks: advance or ignore_progress)
    except SatchelError as exc:
        if exc.code is ErrorCode.unauthorized:
            raise
        result.refused.append(f"{e['path']}: {exc.message} [{exc.code.value}]")
        return
    except OSError as exc:
        result.refused.append(f"{target}: {exc.strerror or exc}")
        return
    if stats.bytes_received == 0 and stats.bytes_reused == e["size"] and e["size"]:
        result.unchanged += 1
    else:
        result.transferred += 1


async def _get_small(client: SatchelClient, files: list[dict[str, Any]], targets: dict[str, Path],
                     result: FolderResult, advance: Callable[[int], None] | None) -> None:
    todo = []
    for e in files:
        if await asyncio.to_thread(_holds, targets[e["path"]], e):
            result.unchanged += 1
            if advance:
                advance(e["size"])
        else:
            todo.append(e)
    if not todo:
        return
    done: set[str] = set()
    try:
        await _fetch_batches(client, todo, targets, result, advance, done)
    except NO_BATCHES as exc:
        if isinstance(exc, SatchelError) and exc.code is ErrorCode.unauthorized:
            raise
        left = [e for e in todo if e["path"] not in done]
        log.warning("WebSocket batches failed (%s); fetching the %d files left one by one", exc, len(left))
        for e in left:
            await _download_one(client, e, targets[e["path"]], result, advance)


async def _fetch_batches(client: SatchelClient, todo: list[dict[str, Any]], targets: dict[str, Path],
                         result: FolderResult, advance: Callable[[int], None] | None, done: set[str]) -> None:
    """Fetch *todo* in ``fetch`` batches and put each file in place; *done* collects the paths
    settled (placed or refused)."""
    from python_client.live import LiveSession, error_of

    assert client.token is not None
    placed: set[Path] = set()
    try:
        async with LiveSession.connect(client.server, client.token) as live:
            for batch in fill(todo, lambda e: int(e["size"]), lambda _e: FETCH_BATCH_BYTES):
                answers = await live.fetch([{"path": e["path"], "rev": e["rev"]} for e in batch])
                if len(answers) != len(batch):
                    raise SatchelError(ErrorCode.unavailable, "the server answered a batch with the wrong "
                                       "number of results")
                writes = []
                for e, answer in zip(batch, answers, strict=True):
                    try:
                        if "error" in answer:
                            raise error_of(answer["error"])
                        data = fetched_bytes(answer, e["path"], e.get("content_hash"))
                    except SatchelError as exc:
                        result.refused.append(f"{e['path']}: {exc.message} [{exc.code.value}]")
                        done.add(e["path"])
                        continue
                    writes.append((e, asyncio.to_thread(_place, targets[e["path"]], data, e.get("mtime"))))
                outcomes = await asyncio.gather(*(w for _, w in writes), return_exceptions=True)
                for (e, _), error in zip(writes, outcomes, strict=True):
                    if isinstance(error, OSError):
                        result.refused.append(f"{targets[e['path']]}: {error.strerror or error}")
                    elif isinstance(error, BaseException):
                        raise error
                    else:
                        result.transferred += 1
                        placed.add(targets[e["path"]].parent)
                        if advance:
                            advance(e["size"])
                    done.add(e["path"])
    finally:
        await asyncio.gather(*(asyncio.to_thread(fsync_dir, d) for d in placed))
