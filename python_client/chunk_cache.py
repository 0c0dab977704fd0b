"""What a device remembers of the files it chunked: ``CONFIG_DIR/chunk-cache.db`` (SQLite) maps a
file's identity and stat (device, inode, size, mtime, ctime) to its chunk list, so putting an
unchanged file again, or putting a file just downloaded, does not read it to hash it.

The rule is git's index rule ("racily clean"): an entry counts only when the file's mtime was at
least a file-system timestamp tick (``RACY_NS``) older than the moment it was read. A write after
that moment then always gives the file a later mtime (and any write, utime or rename a later
ctime, which no program can set back), so a changed file never matches an old entry. A wrong
entry could still not corrupt anything: the server hashes every chunk it receives, and listed
chunks it already holds are the content the list names.

The cache is an accelerator only: any error reading or writing it is logged and ignored.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
from pathlib import Path

from server.core.chunking import ChunkRef, pack_chunk_list, unpack_chunk_list

log = logging.getLogger(__name__)
RACY_NS = 20_000_000  # coarse file-system timestamps tick every 1-10 ms (a jiffy) on older kernels
KEPT = 10_000  # files remembered; the oldest entries go first
FILE_NAME = "chunk-cache.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, chunks BLOB NOT NULL, PRIMARY KEY (dev, ino));
"""


def past_a_tick(mtime_ns: int, read_at_ns: int) -> bool:
    """Was a file with this mtime, read at *read_at_ns* (``time.time_ns()``), already as its last
    write left it? Then any later write shows in its mtime."""
    return read_at_ns - mtime_ns >= RACY_NS


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def unchanged(before: os.stat_result, after: os.stat_result) -> bool:
    """The same file, not written, truncated, touched or renamed between the two stats."""
    return (before.st_dev, before.st_ino, *_signature(before)) == (after.st_dev, after.st_ino, *_signature(after))


class ChunkCache:
    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self._db: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=5)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # losing the last entries in a crash costs a re-hash
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    def get(self, st: os.stat_result) -> list[ChunkRef] | None:
        """The chunk list of the file whose stat is *st*, if it was recorded for exactly this
        identity, size, mtime and ctime."""
        try:
            row = self._open().execute(
                "SELECT size, mtime_ns, ctime_ns, chunks FROM files WHERE dev = ? AND ino = ?",
                (st.st_dev, st.st_ino)).fetchone()
            if row is None or tuple(row[:3]) != _signature(st):
                return None
            refs, offset = [], 0
            for digest, size in unpack_chunk_list(row[3]):
                refs.append(ChunkRef(offset, size, digest))
                offset += size
        except (sqlite3.Error, OSError, struct.error) as exc:
            log.debug("chunk cache %s unreadable (%s): hashing instead", self.path, exc)
            return None
        return refs if offset == st.st_size else None

    def put(self, st: os.stat_result, read_at_ns: int, chunks: list[ChunkRef] | list[tuple[bytes, int]]) -> None:
        """Remember *chunks* for the file whose stat was *st* both when its reading started, at
        *read_at_ns*, and after it ended; ignored unless its mtime was past a tick at the start."""
        if not past_a_tick(st.st_mtime_ns, read_at_ns):
            return
        pairs = [(c.digest, c.size) if isinstance(c, ChunkRef) else c for c in chunks]
        try:
            db = self._open()
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                           (st.st_dev, st.st_ino, *_signature(st), pack_chunk_list(pairs)))
                db.execute("DELETE FROM files WHERE rowid <= (SELECT max(rowid) FROM files) - ?", (KEPT,))
        except (sqlite3.Error, OSError) as exc:
            log.debug("chunk cache %s not written (%s)", self.path, exc)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
