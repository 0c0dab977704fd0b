"""The trash: what was deleted, restoring it (under a new name when its path is taken), purging it.

``tree.delete`` marks a node and everything below it deleted and names the node the *trash root*
of all of them; each trash root is one trash item. A restore brings the whole item back and
journals one ``mkdir``/``create`` per node (parents first), so other devices rebuild it like any
new content; a purge erases the item's nodes and revisions and journals one ``purge``. Items older
than ``SATCHEL_RETENTION`` are purged by garbage collection (``purge_expired``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import paths
from server.core.errors import ErrorCode, SatchelError
from server.services import access, journal, quota, refguard, search_index, tree
from server.services.access import Location, Perm
from server.services.context import Principal, Services
from server.services.serialize import iso
from server.storage.db import now_ms
from server.storage.models import Namespace, Node, Revision, RevisionChunk

PAGE = 1000
BATCH = 500


def _roots(ns_id: int) -> Any:
    return (Node.ns_id == ns_id) & Node.deleted_ms.is_not(None) & (Node.trash_root_id == Node.id)


def _within(svc: Services, folder: str) -> Any:
    """*folder* itself or anything below it (byte-wise, as ``tree.subtree``)."""
    if folder == paths.ROOT:
        return Node.path.is_not(None)
    lo, hi = paths.descendant_range(folder)
    col = Node.path.collate("C") if svc.db.dialect == "postgresql" else Node.path
    return (Node.path == folder) | ((col >= lo) & (col < hi))


def _item(who: Principal, node: Node, items: int, size: int) -> dict[str, Any]:
    return tree.shown(who, node) | {"deleted_at": iso(node.deleted_ms), "items": items, "total_size": size}


async def list_trash(svc: Services, who: Principal, path: object, offset: int, limit: int) -> dict[str, Any]:
    """Trash items at or below *path*, most recently deleted first; ``next`` is the next offset."""
    loc = tree.locate(who, path if path is not None else paths.ROOT, need=Perm.READ)
    limit = max(1, min(limit, PAGE))
    async with svc.db.read() as s:
        roots = (await s.execute(
            select(Node).where(_roots(loc.ns_id), _within(svc, loc.path))
            .order_by(Node.deleted_ms.desc(), Node.id.desc()).offset(offset).limit(limit + 1)
        )).scalars().all()
        more = len(roots) > limit
        roots = roots[:limit]
        counted = (await s.execute(
            select(Node.trash_root_id, func.count(), func.coalesce(func.sum(Node.size), 0))
            .where(Node.trash_root_id.in_([r.id for r in roots]), Node.deleted_ms.is_not(None))
            .group_by(Node.trash_root_id))).tuples().all()
    sums = {rid: (int(n), int(b)) for rid, n, b in counted}
    items = [_item(who, r, *sums.get(r.id, (1, r.size))) for r in roots]
    return {"entries": items, "next": offset + limit if more else None}


async def _pick(s: AsyncSession, loc: Location, node_id: object) -> Node:
    """The trash item at *loc* (the most recently deleted one there), or the one with id *node_id*."""
    q = select(Node).where(_roots(loc.ns_id))
    if node_id is not None:
        if not isinstance(node_id, int) or isinstance(node_id, bool) or not 0 < node_id < 2**31:
            raise SatchelError(ErrorCode.bad_request, "'id' must be a trash item id", field="id")
        q = q.where(Node.id == node_id)
    else:
        q = q.where(Node.path == loc.path)
    root = (await s.execute(q.order_by(Node.deleted_ms.desc(), Node.id.desc()).limit(1))).scalar_one_or_none()
    if root is None:
        shown = loc.outside(loc.path)
        raise SatchelError(ErrorCode.not_found, f"nothing in the trash at {shown}", path=shown)
    return root


async def free_path(s: AsyncSession, ns_id: int, path: str, kind: str) -> str:
    """*path* if no live entry has it, else 'name (restored).ext', 'name (restored 2).ext', …"""
    if await tree.get_node(s, ns_id, path) is None:
        return path
    folder, name = paths.parent(path), paths.name(path)
    dot = name.rfind(".")
    stem, ext = (name[:dot], name[dot:]) if kind == "file" and dot > 0 else (name, "")
    n = 1
    while True:
        candidate = paths.join(folder, f"{stem} (restored{'' if n == 1 else f' {n}'}){ext}")
        if await tree.get_node(s, ns_id, candidate) is None:
            return candidate
        n += 1


async def undelete(svc: Services, who: Principal, path: object, node_id: object = None) -> dict[str, Any]:
    loc = tree.locate(who, path if path is not None else paths.ROOT, need=Perm.WRITE)
    async with svc.db.write() as s:
        await refguard.adding_references(s)  # collection cannot purge the item while it comes back
        root = await _pick(s, loc, node_id)
        members = (await s.execute(
            select(Node).where(Node.trash_root_id == root.id, Node.deleted_ms.is_not(None)).order_by(Node.path)
        )).scalars().all()
        target = await free_path(s, root.ns_id, root.path, root.kind)
        if loc.file is not None and target != root.path:  # a shared file's namespace holds one path
            raise SatchelError(ErrorCode.path_exists, f"{loc.mount} exists again: delete it first to restore "
                               "this version from the trash, or restore an old version from its history",
                               path=loc.mount)
        await tree.ensure_parents(s, who, root.ns_id, target)
        owner = (await s.execute(select(Namespace.owner_id).where(Namespace.id == root.ns_id))).scalar_one()
        await quota.charge(s, owner, sum(m.size for m in members if m.kind == "file"))
        now, old = now_ms(), root.path
        for m in members:  # path order: every folder comes back before what is inside it
            m.path = target + m.path[len(old):]
            m.parent_path = paths.parent(m.path)
            m.deleted_ms, m.trash_root_id, m.updated_ms = None, None, now
            await s.flush()
            if m.kind == "dir":
                await journal.append(s, m.ns_id, op="mkdir", kind="dir", node_id=m.id, path=m.path,
                                     user_id=who.user_id, device_id=who.device_id)
            else:
                await journal.append(s, m.ns_id, op="create", kind="file", node_id=m.id, path=m.path,
                                     rev_id=m.head_rev_id, size=m.size, content_hash=m.content_hash,
                                     user_id=who.user_id, device_id=who.device_id)
        return tree.shown(who, root) | {"restored": len(members)}


async def erase(s: AsyncSession, node_ids: list[int]) -> None:
    """Delete nodes for good, with their revisions, chunk lists and search rows. Chunks they alone
    referred to become unreferenced; garbage collection frees them."""
    for i in range(0, len(node_ids), BATCH):
        part = node_ids[i:i + BATCH]
        revs = select(Revision.id).where(Revision.node_id.in_(part))
        await s.execute(delete(RevisionChunk).where(RevisionChunk.rev_id.in_(revs)))
        await s.execute(delete(Revision).where(Revision.node_id.in_(part)))
        await s.execute(delete(Node).where(Node.id.in_(part)))
        await search_index.forget(s, part)


async def purge_item(s: AsyncSession, who_user: int, who_device: int | None, root: Node) -> int:
    ids = list((await s.execute(
        select(Node.id).where(Node.trash_root_id == root.id, Node.deleted_ms.is_not(None)))).scalars())
    await journal.append(s, root.ns_id, op="purge", kind=root.kind, node_id=root.id, path=root.path,
                         user_id=who_user, device_id=who_device)
    await erase(s, ids)
    return len(ids)


async def purge(svc: Services, who: Principal, path: object, node_id: object = None) -> dict[str, Any]:
    # Erasing for good is the owner's call: an editor's delete only reaches the trash.
    loc = tree.locate(who, path if path is not None else paths.ROOT, need=Perm.MANAGE)
    async with svc.db.write() as s:
        root = await _pick(s, loc, node_id)
        purged = await purge_item(s, who.user_id, who.device_id, root)
        return {"id": root.id, "path": access.visible_path(who, root.ns_id, root.path), "kind": root.kind,
                "purged": purged}


def _expired_roots(cutoff: int) -> Any:
    return select(Node).where(Node.deleted_ms.is_not(None), Node.trash_root_id == Node.id,
                              Node.deleted_ms < cutoff)


async def count_expired(s: AsyncSession, cutoff: int) -> int:
    return int((await s.execute(select(func.count()).select_from(_expired_roots(cutoff).subquery()))).scalar_one())


async def purge_expired(s: AsyncSession, cutoff: int, batch: int) -> int:
    """Purge up to *batch* trash items deleted before *cutoff* (journaled as by the server's owner of
    each namespace, device none); call under ``refguard.collecting``."""
    roots = (await s.execute(_expired_roots(cutoff).limit(batch))).scalars().all()
    for root in roots:
        owner = (await s.execute(select(Namespace.owner_id).where(Namespace.id == root.ns_id))).scalar_one()
        await purge_item(s, owner, None, root)
    return len(roots)
