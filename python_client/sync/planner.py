"""The planner: three trees in, actions out. Pure (no I/O), so every case is unit-tested.

Trees map paths (``/a/b``, NFC, the root left out) to nodes: *remote* as the journal shows the
server, *local* as the disk is, *synced* as both last agreed. A side "changed" a path when its
node differs from the synced one. Moves are matched first, by node id (remote) and by inode or
content hash (local), and sent as moves; the rest is decided path by path:

| local \\ remote | unchanged              | changed                | deleted        |
|----------------|------------------------|------------------------|----------------|
| unchanged      | -                      | download / mkdir       | trash locally  |
| changed        | upload / mkdir         | same bytes: record,    | upload (edit wins) |
|                |                        | else conflicted copy   |                |
| deleted        | delete on the server   | download (edit wins)   | forget         |

A folder is deleted (on either side) only when nothing below it survives there. Losing bytes is
never an outcome: the loser of a conflict is renamed to a conflicted copy and uploaded as new.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TypeVar

from python_client.sync.conflicts import conflicted_name
from python_client.sync.model import DIR, FILE, Action, LocalNode, Op, RemoteNode, SyncedNode
from server.core import paths

N = TypeVar("N")


def _depth(path: str) -> int:
    return path.count("/")


def _segments(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


def move_prefix(tree: dict[str, N], src: str, dst: str) -> None:
    """Re-key *src* and everything below it to *dst* (a rename in a path-keyed tree)."""
    below = src + "/"
    for key in [k for k in tree if k == src or k.startswith(below)]:
        tree[dst + key[len(src):]] = tree.pop(key)


def local_change(ln: LocalNode | None, sn: SyncedNode | None) -> str | None:
    """None (unchanged), "new", "del", "kind" (file <-> folder) or "mod"."""
    if ln is None:
        return None if sn is None else "del"
    if sn is None:
        return "new"
    if ln.kind != sn.kind:
        return "kind"
    if ln.kind == DIR or ln.same_stat(sn) or (ln.content_hash is not None and ln.content_hash == sn.content_hash):
        return None
    return "mod"


def remote_change(rn: RemoteNode | None, sn: SyncedNode | None) -> str | None:
    if rn is None:
        return None if sn is None else "del"
    if sn is None:
        return "new"
    if rn.kind != sn.kind:
        return "kind"
    if rn.kind == DIR or rn.rev == sn.rev:
        return None
    return "mod"


class _Planner:
    def __init__(self, remote: Mapping[str, RemoteNode], local: Mapping[str, LocalNode],
                 synced: Mapping[str, SyncedNode], device: str, day: str, skip: Collection[str],
                 mounts: Collection[str] = ()) -> None:
        self.r, self.l, self.s = dict(remote), dict(local), dict(synced)
        self.device, self.day, self.skip, self.mounts = device, day, set(skip), list(mounts)
        self.actions: list[Action] = []
        self.taken = set(self.r) | set(self.l) | set(self.s)

    def conflict(self, path: str) -> Action:
        dest = conflicted_name(path, self.device, self.day, self.taken)
        self.taken.add(dest)
        return Action(Op.conflict_rename, path, dest, local=self.l.get(path))

    def mount_of(self, path: str) -> str | None:
        return next((m for m in self.mounts if paths.is_within(path, m)), None)

    def crosses_mount(self, src: str, dst: str) -> bool:
        """A move into or out of a shared folder (the server refuses it: sent as an upload and a
        delete instead). Moving the mount point itself is the user arranging their own tree."""
        return src not in self.mounts and self.mount_of(src) != self.mount_of(dst)

    def unchanged_file(self, ln: LocalNode, sn: SyncedNode) -> bool:
        return local_change(ln, sn) is None

    # -- moves
    def remote_moves(self) -> bool:
        """The server moved a node the disk still has at its old path: rename on disk."""
        by_id = {n.node_id: p for p, n in self.r.items()}
        for p in sorted(self.s, key=_depth):
            sn = self.s[p]
            q = by_id.get(sn.node_id)
            rn = self.r.get(p)
            if q is None or q == p or (rn is not None and rn.node_id == sn.node_id) or q in self.s:
                continue
            ln = self.l.get(p)
            if ln is None or ln.kind != sn.kind or q in self.l or p in self.skip or q in self.skip:
                continue
            if ln.kind == FILE and not self.unchanged_file(ln, sn):
                # renamed remotely, edited locally: the edit stays as a conflicted copy beside
                self.actions.append(self.conflict(p))
                self.l[self.actions[-1].dest or ""] = self.l.pop(p)
                return True
            self.actions.append(Action(Op.move_local, p, q))
            move_prefix(self.s, p, q)
            move_prefix(self.l, p, q)
            return True
        return False

    def local_moves(self) -> bool:
        """The disk holds at a new path what the synced state had at a path now gone from disk
        (same inode, or same content): move on the server, no bytes sent."""
        gone = {p: n for p, n in self.s.items() if p not in self.l}
        by_inode = {(n.kind, n.inode): p for p, n in gone.items() if n.inode}
        by_hash = {n.content_hash: p for p, n in gone.items() if n.kind == FILE and n.content_hash}
        for q in sorted(self.l, key=_depth):
            if q in self.s or q in self.r or q in self.skip:
                continue
            ln = self.l[q]
            p = by_inode.get((ln.kind, ln.inode))
            if p is None and ln.kind == FILE and ln.content_hash:
                p = by_hash.get(ln.content_hash)
            if p is None or p in self.skip or paths.is_within(q, p) or self.crosses_mount(p, q):
                continue
            sn, rn = self.s[p], self.r.get(p)
            if rn is None or rn.node_id != sn.node_id or rn.kind != sn.kind:
                continue  # changed on the server too: the path rules below decide
            self.actions.append(Action(Op.move_remote, p, q))
            move_prefix(self.s, p, q)
            move_prefix(self.r, p, q)
            return True
        return False

    def restore_deleted_mounts(self) -> None:
        """A shared folder's mount deleted on disk comes back rather than emptying the folder for
        every member (leaving a share is done on the server): its contents count as never synced,
        so they download again."""
        for m in self.mounts:
            if m in self.s and m in self.r and m not in self.l and m not in self.skip:
                for p in [p for p in self.s if paths.is_within(p, m)]:
                    del self.s[p]

    # -- path by path
    def decide(self, p: str) -> Action | None:
        rn, ln, sn = self.r.get(p), self.l.get(p), self.s.get(p)
        lc, rc = local_change(ln, sn), remote_change(rn, sn)
        if lc is None and rc is None:
            if ln is not None and sn is not None and rn is not None and (
                    not ln.same_stat(sn) or (rn.kind == DIR and rn.node_id != sn.node_id)):
                return Action(Op.record, p, remote=rn, local=ln)  # same content, new stat: remember
            return None
        if rc is None:  # only the disk changed
            if ln is None or lc == "kind":
                if rn is None:
                    return Action(Op.forget, p)
                return Action(Op.delete_remote, p, rev=rn.rev if rn.kind == FILE else None, remote=rn)
            if ln.kind == FILE:
                return Action(Op.upload, p, rev=rn.rev if rn is not None else None, local=ln)
            return Action(Op.mkdir_remote, p, local=ln)
        if lc is None:  # only the server changed
            if rn is None or rc == "kind":
                return Action(Op.trash_local, p, local=ln) if ln is not None else Action(Op.forget, p)
            if rn.kind == DIR:
                return Action(Op.mkdir_local, p, remote=rn)
            if ln is not None and sn is not None and rn.content_hash == sn.content_hash:
                return Action(Op.record, p, remote=rn, local=ln)
            return Action(Op.download, p, remote=rn, local=ln)
        # both changed
        if ln is None and rn is None:
            return Action(Op.forget, p)
        if ln is None:
            assert rn is not None
            return Action(Op.download, p, remote=rn) if rn.kind == FILE else Action(Op.mkdir_local, p, remote=rn)
        if rn is None:
            if ln.kind == FILE:
                return Action(Op.upload, p, rev=None, local=ln)  # the edit wins over the delete
            return Action(Op.mkdir_remote, p, local=ln)
        if ln.kind == rn.kind == DIR:
            return Action(Op.record, p, remote=rn, local=ln)
        if ln.kind == rn.kind == FILE and ln.content_hash is not None and ln.content_hash == rn.content_hash:
            return Action(Op.record, p, remote=rn, local=ln)
        return self.conflict(p)

    def run(self) -> list[Action]:
        for _ in range(10_000):  # one move per pass: each rewrites the trees the next one sees
            if not self.remote_moves():
                break
        for _ in range(10_000):
            if not self.local_moves():
                break
        self.restore_deleted_mounts()
        remote_keep: set[str] = set()  # folders that must stay on the server (something below stays)
        local_keep: set[str] = set()
        decided: list[Action] = []
        for p in sorted(set(self.r) | set(self.l) | set(self.s), key=_depth, reverse=True):
            act = None if p in self.skip else self.decide(p)
            if act is not None and act.op is Op.delete_remote and p in remote_keep:
                act = None  # something new below: the folder stays (downloads recreate it on disk)
            if act is not None and act.op is Op.trash_local and p in local_keep:
                act = None  # something new below: the folder stays (uploads recreate it remotely)
            if p in self.r and (act is None or act.op not in (Op.delete_remote, Op.forget)):
                remote_keep.update(paths.ancestors(p))
            if p in self.l and (act is None or act.op not in (Op.trash_local, Op.forget)):
                local_keep.update(paths.ancestors(p))
            if act is not None:
                decided.append(act)
        trashed = {a.path for a in decided if a.op is Op.trash_local}
        decided = [a for a in decided if not (a.op is Op.trash_local
                                              and any(x in trashed for x in paths.ancestors(a.path)))]
        # Creations parents-first; deletes children-first (folders after their contents).
        decided.sort(key=lambda a: (a.op, -_depth(a.path) if a.op is Op.delete_remote else _depth(a.path),
                                    _segments(a.path)))
        return self.actions + decided


def plan(remote: Mapping[str, RemoteNode], local: Mapping[str, LocalNode], synced: Mapping[str, SyncedNode],
         *, device: str, day: str, skip: Collection[str] = (), mounts: Collection[str] = ()) -> list[Action]:
    """The actions that bring the three trees together; *skip* lists paths to leave alone this
    round (still being written, or blocked), which also keeps their folders; *mounts* are the
    shared folders' mount points (no move crosses one)."""
    return _Planner(remote, local, synced, device, day, skip, mounts).run()
