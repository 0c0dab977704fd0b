"""On-disk format of the local chunk store's segments, and its index (``local.LocalBlobStore``).

Chunks are appended to segment files ``ROOT/segments/00000001.seg`` (up to ``SEGMENT_MAX`` bytes
each) as records::

    magic "SGR1" | owner:u64be | digest[32] | length:u32be | crc32(previous 48 bytes):u32be | bytes

The index ``ROOT/segments/index.db`` (SQLite, WAL) maps (owner, digest) to (segment, offset of the
bytes, length, last written) and records, per segment, ``indexed_len``: every record that starts
before it is indexed or intentionally dead. Records after it are a segment's *tail*: written, maybe
not yet durable. Opening the store re-reads each tail and indexes every record whose header
checksum and BLAKE3 digest match; the first one that does not (a torn write) ends the segment,
which is truncated there. So the index may lag the segments (its ordinary commits skip the fsync)
without losing anything that reached the disk.

A segment's row is committed with a full fsync before its file is created: after a crash, a file
without a row is a compacted-away segment whose unlink did not happen, never live data.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from server.core.chunking import MAX_CHUNK_SIZE, new_hasher

log = logging.getLogger(__name__)

MAGIC = b"SGR1"
_HEAD = struct.Struct(">4sQ32sI")
_CRC = struct.Struct(">I")
HEADER_SIZE = _HEAD.size + _CRC.size  # 52
SEGMENT_MAX = 256 * 1024 * 1024
INDEX_NAME = "index.db"
SCAN_PIECE = 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    indexed_len INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chunks (
    owner INTEGER NOT NULL,
    digest BLOB NOT NULL,
    seg INTEGER NOT NULL,
    off INTEGER NOT NULL,
    len INTEGER NOT NULL,
    written_ms INTEGER NOT NULL,
    PRIMARY KEY (owner, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_by_seg ON chunks (seg, off);
"""


@dataclass(frozen=True, slots=True)
class Location:
    seg: int
    off: int  # of the chunk's bytes, after the record header
    len: int


def header(owner: int, digest: bytes, length: int) -> bytes:
    head = _HEAD.pack(MAGIC, owner, digest, length)
    return head + _CRC.pack(zlib.crc32(head))


def parse_header(raw: bytes) -> tuple[int, bytes, int] | None:
    """(owner, digest, length) of a record header, or None if it is not a whole, intact one."""
    if len(raw) != HEADER_SIZE:
        return None
    magic, owner, digest, length = _HEAD.unpack_from(raw)
    (crc,) = _CRC.unpack_from(raw, _HEAD.size)
    if magic != MAGIC or crc != zlib.crc32(raw[:_HEAD.size]) or length > MAX_CHUNK_SIZE:
        return None
    return owner, bytes(digest), length


def segment_path(folder: Path, seg: int) -> Path:
    return folder / f"{seg:08d}.seg"


def open_index(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=10000")  # another process (admin gc) may hold the write lock
    db.execute("PRAGMA journal_mode=WAL")
    # Ordinary commits skip the fsync: what they record is re-derived from the segments' tails
    # after a crash. Structural commits (segment created or removed) switch to FULL.
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    return db


def scan_tail(path: Path, start: int) -> Iterator[tuple[int, bytes, int, int]]:
    """Records of a segment from *start* on, as (owner, digest, offset of bytes, length), each
    verified (header checksum, BLAKE3 of the bytes); stops at the first torn or wrong one. The
    caller learns where the intact part ends from the last record (or *start*)."""
    with open(path, "rb", buffering=0) as f:
        fd = f.fileno()
        pos = start
        while True:
            parsed = parse_header(os.pread(fd, HEADER_SIZE, pos))
            if parsed is None:
                return
            owner, digest, length = parsed
            hasher = new_hasher()
            at, left = pos + HEADER_SIZE, length
            while left:
                piece = os.pread(fd, min(SCAN_PIECE, left), at)
                if not piece:
                    return
                hasher.update(piece)
                at += len(piece)
                left -= len(piece)
            if hasher.digest() != digest:
                return
            yield owner, digest, pos + HEADER_SIZE, length
            pos += HEADER_SIZE + length


def stored_keys(root: str | os.PathLike[str]) -> set[tuple[int, bytes]]:
    """Every (owner, digest) a local store at *root* holds, read without changing anything (for
    tests and tools; a running server may hold more in its unflushed tails, which are read too)."""
    root = Path(root)
    out: set[tuple[int, bytes]] = set()
    folder = root / "segments"
    if (folder / INDEX_NAME).exists():
        db = open_index(folder / INDEX_NAME, readonly=True)
        try:
            out |= {(o, bytes(d)) for o, d in db.execute("SELECT owner, digest FROM chunks")}
            for seg, indexed in db.execute("SELECT id, indexed_len FROM segments").fetchall():
                path = segment_path(folder, seg)
                if path.exists():
                    out |= {(o, d) for o, d, _off, _n in scan_tail(path, indexed)}
        finally:
            db.close()
    for owner_dir in root.iterdir() if root.exists() else ():
        if owner_dir.name.isdigit():
            out |= {(int(owner_dir.name), bytes.fromhex(p.name)) for p in owner_dir.glob("*/*/*")}
    return out
