"""Rewind: bring a folder (or the whole tree) back to how it was at a time T, as new changes.

The tree at T comes from replaying the journal up to T (it records every create, edit, move and
delete with its path, so renames and folder moves replay exactly). Comparing that with the tree
now, path by path, gives a plan: trash what did not exist at T, recreate what did (bringing a
trashed file back with its history when it can), and write the revision current at T as a new
revision where content differs. Everything is an ordinary journaled change, so other devices
follow, and a rewind is undone by another rewind (or from the trash). A dry run returns the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import paths
from server.core.errors import ErrorCode, SatchelError
from server.services import access, history, journal, quota, refguard, search_index, tree
from server.services.access import Location, Perm
from server.services.context import Principal, Services
from server.services.serialize import iso
from server.storage.db import now_ms
from server.storage.models import JournalEntry, Namespace, Node, Revision

PAGE = 5000


@dataclass(frozen=True)
class Then:
    node_id: int
    kind: str
    rev_id: int | None


def _below(state: dict[str, Then], folder: str) -> list[str]:
    prefix = folder.rstrip("/") + "/"
    return [p for p in state if p.startswith(prefix)]


async def tree_at(s: AsyncSession, ns_id: int, t_ms: int) -> dict[str, Then]:
    """Every live path of the namespace at *t_ms*, by replaying its journal."""
    state: dict[str, Then] = {}
    after = 0
    while True:
        rows = (await s.execute(
            select(JournalEntry).where(JournalEntry.ns_id == ns_id, JournalEntry.seq > after,
                                       JournalEntry.created_ms <= t_ms)
            .order_by(JournalEntry.seq).limit(PAGE))).scalars().all()
        for e in rows:
            if e.op in ("create", "modify"):
                state[e.path] = Then(e.node_id, "file", e.rev_id)
            elif e.op == "mkdir":
                state[e.path] = Then(e.node_id, "dir", None)
            elif e.op == "move" and e.old_path is not None:
                moved = state.pop(e.old_path, None)
                if moved is not None:
                    state[e.path] = moved
                if e.kind == "dir":
                    for p in _below(state, e.old_path):
                        state[e.path + p[len(e.old_path):]] = state.pop(p)
            elif e.op == "delete":
                state.pop(e.path, None)
                if e.kind == "dir":
                    for p in _below(state, e.path):
                        del state[p]
        if len(rows) < PAGE:
            return state
        after = rows[-1].seq


def _in_scope(path: str, folder: str) -> bool:
    return paths.is_within(path, folder) and path != paths.ROOT


async def plan(s: AsyncSession, svc: Services, loc: Location, t_ms: int) -> dict[str, Any]:
    then = {p: v for p, v in (await tree_at(s, loc.ns_id, t_ms)).items() if _in_scope(p, loc.path)}
    now_nodes: dict[str, Node] = {}
    top = await tree.get_node(s, loc.ns_id, loc.path)
    if top is not None:
        now_nodes[top.path] = top
    if top is None or top.kind == "dir":
        where = tree.live(loc.ns_id) if loc.path == paths.ROOT else tree.subtree(svc, loc.ns_id, loc.path)
        for n in (await s.execute(select(Node).where(where))).scalars():
            now_nodes[n.path] = n
    if not then and not now_nodes and loc.path != paths.ROOT:  # the root always exists
        raise SatchelError(ErrorCode.not_found, f"{loc.path} existed neither then nor now", path=loc.path)
    revs: dict[int, Revision] = {}
    want = [v.rev_id for v in then.values() if v.rev_id is not None]
    for i in range(0, len(want), 500):
        for r in (await s.execute(select(Revision).where(Revision.id.in_(want[i:i + 500])))).scalars():
            revs[r.id] = r

    steps: list[dict[str, Any]] = []
    unavailable: list[dict[str, Any]] = []
    trashed: list[str] = []
    for p in sorted(now_nodes):
        n, old = now_nodes[p], then.get(p)
        if any(paths.is_within(p, t) for t in trashed):
            continue  # goes with a folder above it
        if old is None or old.kind != n.kind:
            trashed.append(p)
            steps.append({"action": "delete", "path": p, "kind": n.kind, "id": n.id})
    for p in sorted(then):
        old = then[p]
        now_node = now_nodes.get(p)
        stays = now_node is not None and not any(paths.is_within(p, t) for t in trashed)
        if old.kind == "dir":
            if not stays:
                steps.append({"action": "mkdir", "path": p, "kind": "dir"})
            continue
        rev = revs.get(old.rev_id) if old.rev_id is not None else None
        if rev is None:  # pruned after the retention period, or purged from the trash
            unavailable.append({"path": p, "rev": old.rev_id})
            continue
        if stays and now_node is not None:
            if now_node.content_hash != rev.content_hash:
                steps.append({"action": "restore", "path": p, "kind": "file", "id": now_node.id, "rev": rev.id,
                              "size": rev.size})
        else:
            steps.append({"action": "create", "path": p, "kind": "file", "id": old.node_id, "rev": rev.id,
                          "size": rev.size})
    added = sum(st["size"] for st in steps if st["action"] in ("create", "restore")) - sum(
        now_nodes[st["path"]].size for st in steps if st["action"] == "restore") - sum(
        n.size for p, n in now_nodes.items() if n.kind == "file" and any(paths.is_within(p, t) for t in trashed))
    return {"path": loc.path, "to": iso(t_ms), "steps": steps, "unavailable": unavailable, "added": added,
            "_revs": revs, "_now": now_nodes}


async def _bring_back(s: AsyncSession, who: Principal, node_id: int, path: str, rev: Revision,
                      owner: int) -> Node | None:
    """Undelete the trashed file *node_id* at *path* (keeping its history), content *rev*."""
    node = await s.get(Node, node_id, populate_existing=True)  # a folder trash above may have just marked it
    if node is None or node.deleted_ms is None or node.kind != "file" or node.ns_id != rev.ns_id:
        return None
    await tree.ensure_parents(s, who, node.ns_id, path)
    node.path, node.parent_path = path, paths.parent(path)
    node.deleted_ms, node.trash_root_id, node.updated_ms = None, None, now_ms()
    await s.flush()
    await journal.append(s, node.ns_id, op="create", kind="file", node_id=node.id, path=path,
                         rev_id=node.head_rev_id, size=node.size, content_hash=node.content_hash,
                         user_id=who.user_id, device_id=who.device_id)
    if node.head_rev_id != rev.id:
        node = await history.write_copy(s, who, node.ns_id, owner, path, node.head_rev_id, rev)
    return node


async def rewind(svc: Services, who: Principal, path: object, t_ms: object, dry_run: bool) -> dict[str, Any]:
    if not isinstance(t_ms, int) or isinstance(t_ms, bool) or t_ms < 0:
        raise SatchelError(ErrorCode.bad_request, "'to' must be a time in milliseconds since the epoch", field="to")
    if t_ms > now_ms():
        raise SatchelError(ErrorCode.bad_request, "'to' is in the future", field="to")
    loc = tree.locate(who, path if path is not None else paths.ROOT, need=Perm.WRITE)
    if dry_run:
        async with svc.db.read() as s:
            p = await plan(s, svc, loc, t_ms)
        _deletes_shared_file(who, loc, p)
        return _shown(loc, p) | {"dry_run": True}
    touched: list[tuple[int, int | None]] = []
    async with svc.db.write() as s:
        await refguard.adding_references(s)
        p = await plan(s, svc, loc, t_ms)
        _deletes_shared_file(who, loc, p)
        owner = (await s.execute(select(Namespace.owner_id).where(Namespace.id == loc.ns_id))).scalar_one()
        await quota.charge(s, owner, p["added"])
        revs: dict[int, Revision] = p["_revs"]
        now_nodes: dict[str, Node] = p["_now"]
        for st in p["steps"]:
            if st["action"] == "delete":
                node = now_nodes[st["path"]]
                if node.deleted_ms is None:
                    await tree.trash_node(s, svc, who, node)
            elif st["action"] == "mkdir":
                await tree.ensure_dir(s, who, loc.ns_id, st["path"])
            elif st["action"] == "restore":
                node = now_nodes[st["path"]]
                node = await history.write_copy(s, who, loc.ns_id, owner, node.path, node.head_rev_id,
                                                revs[st["rev"]])
                touched.append((node.id, node.head_rev_id))
            else:  # create: the same file back from the trash when it is there, else a new file
                rev = revs[st["rev"]]
                back = await _bring_back(s, who, st["id"], st["path"], rev, owner)
                if back is None:
                    back = await history.write_copy(s, who, loc.ns_id, owner, st["path"], None, rev)
                touched.append((back.id, back.head_rev_id))
    for node_id, rev_id in touched:
        await search_index.index_content(svc, node_id, rev_id)
    return _shown(loc, p) | {"dry_run": False}


def _deletes_shared_file(who: Principal, loc: Location, p: dict[str, Any]) -> None:
    """A rewind of a shared file to before it existed deletes it: its owner's call alone, as for
    ``delete`` (``tree.delete``)."""
    if loc.file is not None and any(st["action"] == "delete" for st in p["steps"]) \
            and not access.perms(access.check_ns(who, loc.ns_id, Perm.READ)) & Perm.MANAGE:
        raise SatchelError(ErrorCode.nested_share, "this rewind would delete the shared file: only its "
                           "owner deletes it", path=loc.mount)


def _shown(loc: Location, p: dict[str, Any]) -> dict[str, Any]:
    """The plan for the caller: internal keys dropped, paths as the caller sees them (a mount)."""
    out = {k: v for k, v in p.items() if not k.startswith("_")}
    out["path"] = loc.outside(out["path"])
    for key in ("steps", "unavailable"):
        out[key] = [st | {"path": loc.outside(st["path"])} for st in out[key]]
    return out
