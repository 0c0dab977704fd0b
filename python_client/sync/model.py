"""The three trees' node types and the planner's actions (plain data, no I/O)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

FILE, DIR = "file", "dir"


@dataclass(frozen=True)
class RemoteNode:
    """A node of the server's tree as the journal last showed it."""

    kind: str
    node_id: int
    rev: int | None = None
    size: int = 0
    content_hash: str | None = None


@dataclass(frozen=True)
class LocalNode:
    """A node on disk. ``content_hash`` is None for folders and for files not hashed this scan
    (their size/mtime/inode match the synced state, so their content is the synced one)."""

    kind: str
    size: int = 0
    mtime_ns: int = 0
    inode: int = 0
    content_hash: str | None = None

    def same_stat(self, other: LocalNode | SyncedNode) -> bool:
        return (self.kind, self.size, self.mtime_ns, self.inode) == (other.kind, other.size, other.mtime_ns,
                                                                      other.inode)


@dataclass(frozen=True)
class SyncedNode:
    """The last state both sides agreed on: the server's node and revision, and the local file's
    size/mtime/inode when it held exactly that revision."""

    kind: str
    node_id: int
    rev: int | None = None
    size: int = 0
    mtime_ns: int = 0
    inode: int = 0
    content_hash: str | None = None


class Op(enum.IntEnum):
    """In execution order: renames first (later actions name the new paths), deletes last."""

    conflict_rename = 1   # keep local bytes under a conflicted-copy name (path -> dest)
    move_local = 2        # the server moved path -> dest: rename on disk
    move_remote = 3       # the disk moved path -> dest: move on the server
    mkdir_local = 4
    mkdir_remote = 5
    upload = 6            # parent_rev = rev
    download = 7          # remote = the revision to fetch
    delete_remote = 8     # rev = precondition (files)
    trash_local = 9       # move into .satchel/trash
    record = 10           # both sides agree already: remember it
    forget = 11           # gone on both sides: forget it


@dataclass(frozen=True)
class Action:
    op: Op
    path: str
    dest: str | None = None
    rev: int | None = None
    remote: RemoteNode | None = None
    local: LocalNode | None = None

    def __str__(self) -> str:
        return f"{self.op.name} {self.path}" + (f" -> {self.dest}" if self.dest else "")


class Stale(Exception):
    """The disk changed under the plan: leave the path for the next round."""
