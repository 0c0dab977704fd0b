"""Small files in batches over the WebSocket (protocol.md, "Batches"): many uploads in one
``commit_batch`` (one server transaction, one fsync), many downloads in one ``fetch``.

One file per round trip, transaction and fsync made a first sync of 1,000 files of 4 KiB take a
minute; in batches it takes about a second. Each file keeps its own precondition and result: a
conflict refuses that file alone (its bytes stay on disk for the next round), the rest commit.

Downloads keep the crash rule of single downloads: every file's bytes go to a part file that is
fsynced (in parallel: the file system commits them together) before it is renamed over the target,
and only if the target is still what the plan saw; then one fsync per folder makes the renames
durable before the state database records them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from python_client.batching import (
    COMMIT_BATCH_BYTES,
    FETCH_BATCH_BYTES,
    SMALL_MAX,
    commit_body,
    commit_cost,
    fetched_bytes,
    fill,
    fsync_dir,
    write_durably,
)
from python_client.live import LiveSession, error_of
from python_client.sync.model import FILE, Action, Op, Stale, SyncedNode
from python_client.sync.scanner import local_path
from python_client.sync.state import State
from python_client.transfer import PART_SUFFIX, TransferStats
from server.core.errors import ErrorCode, SatchelError

log = logging.getLogger(__name__)

Result = tuple[Action, Exception | None]


def _size(a: Action) -> int | None:
    if a.op is Op.upload and a.local is not None:
        return a.local.size
    if a.op is Op.download and a.remote is not None:
        return a.remote.size
    return None


def is_small(a: Action) -> bool:
    n = _size(a)
    return n is not None and n <= SMALL_MAX


def groups(actions: list[Action]) -> list[list[Action]]:
    """Consecutive batches of at most BATCH_ITEMS files and COMMIT_BATCH_BYTES (uploads) or
    FETCH_BATCH_BYTES (downloads) bytes."""
    return fill(actions,
                lambda a: commit_cost(a.path, _size(a) or 0) if a.op is Op.upload else _size(a) or 0,
                lambda a: COMMIT_BATCH_BYTES if a.op is Op.upload else FETCH_BATCH_BYTES)


def _read(root: Path, a: Action) -> bytes:
    assert a.local is not None
    with open(local_path(root, a.path), "rb") as f:
        data = f.read(SMALL_MAX + 1)
    if len(data) != a.local.size:
        raise Stale()
    return data


async def upload(live: LiveSession, root: Path, state: State, group: list[Action], stats: TransferStats,
                 still: Callable[[Action], bool]) -> list[Result]:
    """Commit *group* (small uploads) in one ``commit_batch``; record each success."""
    results: list[Result] = []
    items: list[dict[str, Any]] = []
    sent: list[Action] = []
    for a in group:
        assert a.local is not None
        try:
            if not still(a):
                raise Stale()
            data = _read(root, a)
        except (Stale, FileNotFoundError, NotADirectoryError):
            results.append((a, Stale()))
            continue
        except PermissionError as exc:
            results.append((a, exc))
            continue
        items.append(commit_body(a.path, a.rev, data, a.local.mtime_ns))
        sent.append(a)
    if not items:
        return results
    answers = await live.commit_batch(items)
    if len(answers) != len(items):
        raise SatchelError(ErrorCode.unavailable, "the server answered a batch with the wrong number of results")
    for a, answer in zip(sent, answers, strict=True):
        ln = a.local
        assert ln is not None
        if "entry" not in answer:
            results.append((a, error_of(answer.get("error") or {})))
            continue
        e = answer["entry"]
        stats.bytes_sent += ln.size
        log.info("uploaded %s: %d bytes, %d sent", a.path, ln.size, ln.size)
        state.put_synced(a.path, SyncedNode(FILE, int(e["id"]), int(e["rev"]), ln.size, ln.mtime_ns, ln.inode,
                                            e["content_hash"]))
        results.append((a, None))
    return results


def _check(a: Action, answer: dict[str, Any]) -> bytes:
    """The fetched bytes, verified: cut and hashed as the protocol does, they must make the
    content hash the server names, and that must be the revision the plan wants."""
    rn = a.remote
    assert rn is not None
    return fetched_bytes(answer, a.path, rn.content_hash)


async def download(live: LiveSession, root: Path, state: State, group: list[Action], stats: TransferStats,
                   still: Callable[[Action], bool]) -> list[Result]:
    """Fetch *group* (small downloads) in one ``fetch`` and put each file in place safely."""
    t0 = time.perf_counter()
    answers = await live.fetch([{"path": a.path, "rev": a.remote.rev if a.remote else None} for a in group])
    if len(answers) != len(group):
        raise SatchelError(ErrorCode.unavailable, "the server answered a batch with the wrong number of results")
    results: list[Result] = []
    parts: list[tuple[Action, dict[str, Any], Path, Path, bytes]] = []
    for a, answer in zip(group, answers, strict=True):
        try:
            if "error" in answer:
                raise error_of(answer["error"])
            data = _check(a, answer)
            if not still(a):
                raise Stale()
            target = local_path(root, a.path)
            target.parent.mkdir(parents=True, exist_ok=True)
        except (SatchelError, Stale) as exc:
            results.append((a, exc))
            continue
        except (FileExistsError, NotADirectoryError):  # a file where a folder must be: decide again
            results.append((a, Stale()))
            continue
        parts.append((a, answer, target, target.with_name(target.name + PART_SUFFIX), data))
    t1 = time.perf_counter()
    written = await asyncio.gather(*(asyncio.to_thread(write_durably, part, data, int(answer["mtime"]) * 1_000_000)
                                     for _, answer, _, part, data in parts), return_exceptions=True)
    t2 = time.perf_counter()
    placed: list[tuple[Action, dict[str, Any], Path]] = []
    for (a, answer, target, part, data), error in zip(parts, written, strict=True):
        if isinstance(error, BaseException):
            part.unlink(missing_ok=True)
            results.append((a, error if isinstance(error, PermissionError) else Stale()))
            continue
        if not still(a):  # edited meanwhile: keep the local bytes, decide again
            part.unlink(missing_ok=True)
            results.append((a, Stale()))
            continue
        os.replace(part, target)
        stats.bytes_received += len(data)
        placed.append((a, answer, target))
    t3 = time.perf_counter()
    await asyncio.gather(*(asyncio.to_thread(fsync_dir, d) for d in {t.parent for _, _, t in placed}))
    log.debug("fetched %d files: fetch %.3f s, write and fsync %.3f s, rename %.3f s, folder fsync %.3f s",
              len(group), t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3)
    for a, answer, target in placed:
        st = os.stat(target)
        rn = a.remote
        assert rn is not None
        log.info("downloaded %s: %d bytes, %d received, 0 reused", a.path, st.st_size, st.st_size)
        state.put_synced(a.path, SyncedNode(FILE, rn.node_id, int(answer["rev"]), st.st_size, st.st_mtime_ns,
                                            st.st_ino, answer["content_hash"]))
        results.append((a, None))
    return results
