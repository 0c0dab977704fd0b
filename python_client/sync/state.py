"""The local state database (``DIR/.satchel/state.db``, SQLite): the synced tree, the remote tree
with the journal cursor it reflects, blocked paths, the folder's settings, and the chunk lists of
big files' synced contents (by content hash: delta commits and downloads use them).

Every tree is also held in memory (dicts keyed by path) for the planner; each write goes to both,
and ``commit`` makes a batch durable at once (a remote-tree update and its cursor commit together).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

from python_client.sync.model import LocalNode, RemoteNode, SyncedNode
from python_client.sync.planner import move_prefix
from server.core import paths
from server.core.chunking import pack_chunk_list, unpack_chunk_list
from server.core.errors import SatchelError
from server.core.paths import descendant_range

log = logging.getLogger(__name__)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS remote (path TEXT PRIMARY KEY, kind TEXT NOT NULL, node_id INTEGER NOT NULL,
    rev INTEGER, size INTEGER NOT NULL, content_hash TEXT);
CREATE TABLE IF NOT EXISTS synced (path TEXT PRIMARY KEY, kind TEXT NOT NULL, node_id INTEGER NOT NULL,
    rev INTEGER, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, content_hash TEXT);
CREATE TABLE IF NOT EXISTS blocked (path TEXT PRIMARY KEY, code TEXT NOT NULL, message TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, until REAL NOT NULL, attempts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunk_lists (content_hash TEXT PRIMARY KEY, chunks BLOB NOT NULL);
"""
CHUNK_LIST_MIN = 16  # files of at least this many chunks keep their list (see ``put_chunks``)
BLOCK_FIRST, BLOCK_MAX = 60.0, 3600.0  # retry a blocked path after 1 min, doubling up to 1 h


@dataclass(frozen=True)
class Blocked:
    """A path the server refused for a reason retrying will not fix soon (quota, permission,
    invalid name...): left alone until its file changes or ``until`` passes."""

    code: str
    message: str
    size: int
    mtime_ns: int
    until: float
    attempts: int

    def holds(self, ln: LocalNode | None, now: float) -> bool:
        same = ln is None or (ln.size, ln.mtime_ns) == (self.size, self.mtime_ns)
        return same and now < self.until


def _well_formed(path: str) -> bool:
    """Is this server path in normal form (no ``..``, empty or control-character names)? A path
    that is not never reaches the remote tree, so no local path is ever made from it: a server
    that sent one (compromised, or an impostor on a plain-HTTP link) cannot make this device
    write outside its folder."""
    try:
        if paths.normalize(path) == path:
            return True
    except SatchelError:
        pass
    log.error("the server sent a malformed path %r; ignored", path[:300])
    return False


def state_dir(root: Path) -> Path:
    return root / ".satchel"


class State:
    def __init__(self, root: Path, db: sqlite3.Connection | None = None) -> None:
        self.root = root
        if db is None:
            folder = state_dir(root)
            folder.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(folder / "state.db", isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, consistent always
        self.db = db
        self.db.executescript(SCHEMA)
        self.db.execute("BEGIN")
        self.remote: dict[str, RemoteNode] = {
            r[0]: RemoteNode(*r[1:]) for r in self.db.execute("SELECT * FROM remote")}
        self.synced: dict[str, SyncedNode] = {
            r[0]: SyncedNode(*r[1:]) for r in self.db.execute("SELECT * FROM synced")}
        self.blocked: dict[str, Blocked] = {
            r[0]: Blocked(*r[1:]) for r in self.db.execute("SELECT * FROM blocked")}

    @classmethod
    def snapshot(cls, root: Path) -> State:
        """An in-memory copy of the folder's state (for ``satchel status`` while a daemon runs:
        it may pull and plan on the copy without touching the daemon's database)."""
        path = state_dir(root) / "state.db"
        if not path.exists():
            raise FileNotFoundError(f"{root} is not a synced folder (no {path})")
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        mem = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        try:
            src.backup(mem)
        finally:
            src.close()
        return cls(root, mem)

    def close(self) -> None:
        self.commit()
        self.db.execute("COMMIT")
        self.db.close()

    def commit(self) -> None:
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")

    # -- settings
    def get(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # -- trees
    def _drop(self, table: str, path: str) -> None:
        lo, hi = descendant_range(path)
        self.db.execute(f"DELETE FROM {table} WHERE path = ? OR (path >= ? AND path < ?)",  # noqa: S608
                        (path, lo, hi))

    def _move(self, table: str, src: str, dst: str) -> None:
        self._drop(table, dst)
        lo, hi = descendant_range(src)
        self.db.execute(f"UPDATE {table} SET path = ? || substr(path, ?) "  # noqa: S608
                        "WHERE path = ? OR (path >= ? AND path < ?)", (dst, len(src) + 1, src, lo, hi))

    def put_remote(self, path: str, node: RemoteNode) -> None:
        if not _well_formed(path):
            return
        self.remote[path] = node
        self.db.execute("INSERT OR REPLACE INTO remote VALUES (?, ?, ?, ?, ?, ?)",
                        (path, node.kind, node.node_id, node.rev, node.size, node.content_hash))

    def drop_remote(self, path: str) -> None:
        for key in [k for k in self.remote if k == path or k.startswith(path + "/")]:
            del self.remote[key]
        self._drop("remote", path)

    def move_remote(self, src: str, dst: str) -> None:
        if not _well_formed(dst):
            return
        for key in [k for k in self.remote if k == dst or k.startswith(dst + "/")]:
            del self.remote[key]
        move_prefix(self.remote, src, dst)
        self._move("remote", src, dst)

    def clear_remote(self) -> None:
        self.remote.clear()
        self.db.execute("DELETE FROM remote")

    def put_synced(self, path: str, node: SyncedNode) -> None:
        self.synced[path] = node
        self.db.execute("INSERT OR REPLACE INTO synced VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (path, node.kind, node.node_id, node.rev, node.size, node.mtime_ns, node.inode,
                         node.content_hash))  # not astuple: it deep-copies, 0.25 ms a row

    def drop_synced(self, path: str) -> None:
        for key in [k for k in self.synced if k == path or k.startswith(path + "/")]:
            del self.synced[key]
        self._drop("synced", path)

    def move_synced(self, src: str, dst: str) -> None:
        for key in [k for k in self.synced if k == dst or k.startswith(dst + "/")]:
            del self.synced[key]
        move_prefix(self.synced, src, dst)
        self._move("synced", src, dst)

    # -- chunk lists of synced contents, by content hash
    def put_chunks(self, content_hash: str, chunks: list[tuple[bytes, int]]) -> None:
        """Keep the chunk list of a big file's synced content: an edit is then committed as a
        delta against it (one WebSocket frame) and a download locates reusable local bytes by it,
        with no request for the old list. Lists of contents no longer synced are dropped."""
        if len(chunks) < CHUNK_LIST_MIN:
            return
        self.db.execute("DELETE FROM chunk_lists WHERE content_hash NOT IN "
                        "(SELECT content_hash FROM synced WHERE content_hash IS NOT NULL)")
        self.db.execute("INSERT OR REPLACE INTO chunk_lists VALUES (?, ?)", (content_hash, pack_chunk_list(chunks)))

    def chunks_of(self, content_hash: str | None) -> list[tuple[bytes, int]] | None:
        row = self.db.execute("SELECT chunks FROM chunk_lists WHERE content_hash = ?",
                              (content_hash,)).fetchone() if content_hash else None
        if row is None:
            return None
        return unpack_chunk_list(row[0])

    # -- blocked paths
    def block(self, path: str, code: str, message: str, ln: LocalNode | None) -> Blocked:
        prev = self.blocked.get(path)
        attempts = prev.attempts + 1 if prev else 1
        delay = min(BLOCK_MAX, BLOCK_FIRST * 2 ** (attempts - 1))
        b = Blocked(code, message[:500], ln.size if ln else 0, ln.mtime_ns if ln else 0, time.time() + delay,
                    attempts)
        self.blocked[path] = b
        self.db.execute("INSERT OR REPLACE INTO blocked VALUES (?, ?, ?, ?, ?, ?, ?)", (path, *astuple(b)))
        return b

    def unblock(self, path: str) -> None:
        if self.blocked.pop(path, None) is not None:
            self.db.execute("DELETE FROM blocked WHERE path = ?", (path,))
