"""What a device remembers of the files it chunked: ``CONFIG_DIR/chunk-cache.db`` (SQLite) maps a
file's absolute path to its identity and stat (device, inode, size, mtime, ctime) when it was
read, and its chunk list, so putting an unchanged file again, or putting or getting over a file
just downloaded, does not read it to hash it.

An entry is trusted only under git's index rule ("racily clean"), made stricter: the file's
mtime and ctime were both at least a timestamp tick (``RACY_NS``) older than the moment its
reading started (for a download: the mtime it set), and its file system keeps sub-millisecond
timestamps (ext4, xfs, btrfs, tmpfs, zfs...). Any write after that moment then gives the file a
later mtime or ctime (which no program can set back), so a changed file never matches an old
entry. File systems with coarse timestamps (FAT,
exFAT, HFS+, sshfs, some network shares: their ctime is a whole millisecond) are never cached.
Callers take the stat from an open descriptor (``fstat``): on NFS, opening revalidates the
attributes a plain ``stat`` may serve from a cache.

The cache is an accelerator only: any error reading or writing it is logged and ignored, and a
damaged file is replaced by an empty one.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from server.core.chunking import ChunkRef, pack_chunk_list, unpack_chunk_list

log = logging.getLogger(__name__)
RACY_NS = 20_000_000  # coarse file-system timestamps tick every 1-10 ms (a jiffy) on older kernels
KEPT = 10_000  # files remembered; the oldest entries go first
FILE_NAME = "chunk-cache.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, chunks BLOB NOT NULL);
"""


def past_a_tick(mtime_ns: int, read_at_ns: int) -> bool:
    """Was a file with this mtime, read at *read_at_ns* (``time.time_ns()``), already as its last
    write left it? Then any later write shows in its mtime."""
    return read_at_ns - mtime_ns >= RACY_NS


def _signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def unchanged(before: os.stat_result, after: os.stat_result) -> bool:
    """The same file, not written, truncated, touched or renamed between the two stats."""
    return _signature(before) == _signature(after)


def _cacheable(st: os.stat_result, read_at_ns: int, wrote_it: bool) -> bool:
    fine = st.st_ctime_ns % 1_000_000 != 0  # sub-millisecond timestamps: a native Linux file system
    # A file this process just wrote and renamed into place has a fresh ctime, but the old mtime
    # it set (the revision's): any write since would have set the mtime to now.
    return fine and past_a_tick(st.st_mtime_ns if wrote_it else max(st.st_mtime_ns, st.st_ctime_ns), read_at_ns)


def _key(path: Path) -> str:
    return os.path.abspath(path)


class ChunkCache:
    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=5)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # losing the last entries in a crash costs a re-hash
            db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                self._db = self._connect()
            except sqlite3.DatabaseError:  # not a database (damaged): it only held hints
                log.warning("chunk cache %s is damaged; starting an empty one", self.path)
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                self._db = self._connect()
        return self._db

    def get(self, path: Path, st: os.stat_result) -> list[ChunkRef] | None:
        """The chunk list of the file at *path* whose stat (from ``fstat``) is *st*, if it was
        recorded for exactly this identity, size, mtime and ctime."""
        try:
            row = self._open().execute(
                "SELECT dev, ino, size, mtime_ns, ctime_ns, chunks FROM files WHERE path = ?",
                (_key(path),)).fetchone()
            if row is None or tuple(row[:5]) != _signature(st):
                return None
            refs, offset = [], 0
            for digest, size in unpack_chunk_list(row[5]):
                refs.append(ChunkRef(offset, size, digest))
                offset += size
        except Exception as exc:  # a hint only: never fail a transfer
            log.debug("chunk cache %s unreadable (%s): hashing instead", self.path, exc)
            return None
        return refs if offset == st.st_size else None

    def put(self, path: Path, st: os.stat_result, read_at_ns: int,
            chunks: list[ChunkRef] | list[tuple[bytes, int]], *, wrote_it: bool = False) -> None:
        """Remember *chunks* for the file at *path* whose stat was *st* both when its reading
        started, at *read_at_ns*, and after it ended; ignored unless the rules above hold.
        *wrote_it*: this process wrote these bytes and set the file's (past) mtime itself (a
        download), so only the mtime need be a tick old."""
        if not _cacheable(st, read_at_ns, wrote_it):
            return
        try:
            pairs = [(c.digest, c.size) if isinstance(c, ChunkRef) else c for c in chunks]
            db = self._open()
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (_key(path), *_signature(st), pack_chunk_list(pairs)))
                db.execute("DELETE FROM files WHERE rowid <= (SELECT max(rowid) FROM files) - ?", (KEPT,))
        except Exception as exc:  # a hint only: never fail a transfer
            log.debug("chunk cache %s not written (%s)", self.path, exc)

    def forget(self, path: Path) -> None:
        """Drop what is remembered of *path* (its bytes did not match the list)."""
        try:
            with self._open() as db:
                db.execute("DELETE FROM files WHERE path = ?", (_key(path),))
        except Exception as exc:  # a hint only
            log.debug("chunk cache %s not written (%s)", self.path, exc)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
