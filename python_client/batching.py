"""Small files over the WebSocket (protocol.md, "Batches"): which files travel inline, how many
fit one frame, and the ``commit`` body that carries one. Shared by the sync engine
(``sync/batches.py``) and folder uploads (``folder_put.py``).

A file committed on its own costs a round trip, a transaction and an fsync on the server (~35 ms
here); a ``commit_batch`` of a few hundred small files costs about the same once.
"""

from __future__ import annotations

import logging
import mimetypes
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from server.core.chunking import chunk_bytes, content_hash
from server.core.errors import ErrorCode, SatchelError
from server.core.fileio import pwrite_all

log = logging.getLogger(__name__)

SMALL_MAX = 192 * 1024  # files up to this size go inline over the WebSocket (commit or batch)
# An upload batch fills most of a frame (1 MiB): each one is a transaction and an fsync on the
# server, so fewer, fuller ones commit many small files sooner. Each item costs its bytes plus its
# fields. A fetch asks for what one reply carries (the server's FETCH_BYTES, 640 KiB).
COMMIT_BATCH_BYTES = 1024 * 1024 - 64 * 1024
FETCH_BATCH_BYTES = 512 * 1024
ITEM_FIELDS = 160  # bytes of an item's msgpack besides its data and path (generous)
BATCH_ITEMS = 500  # files per batch (the server takes up to 1,000)
T = TypeVar("T")


def commit_cost(path: str, size: int) -> int:
    """What a file adds to a ``commit_batch`` frame."""
    return size + ITEM_FIELDS + len(path.encode())


def fill(items: Sequence[T], cost: Callable[[T], int], budget: Callable[[T], int]) -> list[list[T]]:
    """Consecutive batches of at most BATCH_ITEMS items whose costs add up to at most the budget
    (of the batch's items; an item over it alone makes a batch of one)."""
    out: list[list[T]] = []
    size = 0
    for item in items:
        n = cost(item)
        if not out or len(out[-1]) >= BATCH_ITEMS or size + n > budget(item):
            out.append([])
            size = 0
        out[-1].append(item)
        size += n
    return out


def commit_body(path: str, parent_rev: int | None, data: bytes, mtime_ns: int) -> dict[str, Any]:
    """A ``commit`` body carrying *data* inline, cut as the protocol cuts it."""
    body: dict[str, Any] = {"path": path, "parent_rev": parent_rev, "size": len(data),
                            "ops": [data[r.offset:r.offset + r.size] for r in chunk_bytes(data)],
                            "mtime": mtime_ns // 1_000_000}
    mime = mimetypes.guess_type(path)[0]
    if mime is not None:
        body["mime"] = mime
    return body


def fetched_bytes(answer: dict[str, Any], path: str, expected_hash: str | None = None) -> bytes:
    """A ``fetch`` result's bytes, verified: cut and hashed as the protocol does, they must make
    the content hash the server names (and *expected_hash*, the revision the caller wants)."""
    data = answer.get("data")
    if not isinstance(data, bytes) or len(data) != answer.get("size"):
        raise SatchelError(ErrorCode.size_mismatch, "a fetched file has the wrong size", path=path)
    digest = content_hash(r.digest for r in chunk_bytes(data))
    if digest != answer.get("content_hash") or (expected_hash is not None and digest != expected_hash):
        raise SatchelError(ErrorCode.hash_mismatch, "a fetched file does not match its content hash", path=path)
    return data


def write_durably(part: Path, data: bytes, mtime_ns: int | None = None) -> None:
    """Write *data* to the new file *part*, give it the modification time *mtime_ns* (exact, and
    durable with the bytes), and fsync it (before it is renamed into place)."""
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        pwrite_all(fd, data, 0)
        if mtime_ns is not None:
            try:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            except OSError as exc:  # e.g. a mount that does not let us set times: keep the bytes
                log.warning("cannot set the modification time of %s: %s", part, exc)
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make the renames in *folder* durable (best effort: some file systems refuse a directory fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
