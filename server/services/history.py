"""Version history: list a file's revisions, restore one (as a new revision), prune old ones.

A restore writes a new revision whose chunk list is the old one's, on top of the current head, so
it is journaled as an ordinary ``modify`` (other devices fetch it like any edit) and can itself be
undone by restoring the revision it replaced. Old revisions are kept for ``SATCHEL_RETENTION``
after they stopped being current (the head is never pruned).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, exists, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.core.errors import ErrorCode, SatchelError
from server.services import quota, refguard, search_index, tree
from server.services.access import Perm
from server.services.context import Principal, Services
from server.services.serialize import iso
from server.services.uploads import NewRevision, write_revision
from server.storage.models import Device, Namespace, Node, Revision, RevisionChunk, User

PAGE = 1000


def _file(node: Node) -> Node:
    if node.kind != "file":
        raise SatchelError(ErrorCode.is_a_directory, f"{node.path} is a folder", path=node.path)
    return node


async def list_revisions(svc: Services, who: Principal, node_id: int, before: int | None,
                         limit: int) -> dict[str, Any]:
    """Newest first; ``next`` is the ``before`` of the next page."""
    limit = max(1, min(limit, PAGE))
    async with svc.db.read() as s:
        node = _file(await tree.get_node_by_id(s, who, node_id, need=Perm.READ))
        q = (select(Revision, User.name, Device.name)
             .outerjoin(User, User.id == Revision.user_id).outerjoin(Device, Device.id == Revision.device_id)
             .where(Revision.node_id == node.id))
        if before is not None:
            q = q.where(Revision.id < before)
        rows = (await s.execute(q.order_by(Revision.id.desc()).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    revisions = [{
        "rev": r.id, "parent_rev": r.parent_rev_id, "size": r.size, "content_hash": r.content_hash,
        "mime": r.mime, "mtime": iso(r.mtime_ms), "created_at": iso(r.created_ms),
        "user_id": r.user_id, "user": user, "device_id": r.device_id, "device": device,
        "current": r.id == node.head_rev_id,
    } for r, user, device in rows]
    return {"entry": tree.shown(who, node), "revisions": revisions, "next": rows[-1][0].id if more else None}


async def write_copy(s: AsyncSession, who: Principal, ns_id: int, owner_id: int, path: str,
                     parent_rev_id: int | None, source: Revision) -> Node:
    """In the caller's transaction: a new revision at *path* (a new file when *parent_rev_id* is None)
    whose content is *source*'s, chunk list copied in the database (no bytes move)."""

    async def copy_list(s: AsyncSession, rev_id: int) -> None:
        await s.execute(insert(RevisionChunk).from_select(
            ["rev_id", "idx", "offset", "size", "hash"],
            select(literal(rev_id), RevisionChunk.idx, RevisionChunk.offset, RevisionChunk.size, RevisionChunk.hash)
            .where(RevisionChunk.rev_id == source.id)))

    new = NewRevision(ns_id, owner_id, path, parent_rev_id, source.size, source.content_hash,
                      source.chunk_count, source.mime, source.mtime_ms)
    node, _op = await write_revision(s, who, new, [], copy_list)
    return node


async def restore(svc: Services, who: Principal, node_id: int, rev_id: object) -> dict[str, Any]:
    if not isinstance(rev_id, int) or isinstance(rev_id, bool) or not 0 < rev_id < 2**31:
        raise SatchelError(ErrorCode.bad_request, "'rev' must be a revision id", field="rev")
    async with svc.db.write() as s:
        await refguard.adding_references(s)  # the old revision cannot be pruned under us
        node = _file(await tree.get_node_by_id(s, who, node_id, need=Perm.WRITE))
        source = await s.get(Revision, rev_id)
        if source is None or source.node_id != node.id:
            raise SatchelError(ErrorCode.not_found, "no such revision of this file")
        if source.id == node.head_rev_id:
            return tree.shown(who, node)  # already current: nothing to undo later
        owner = (await s.execute(select(Namespace.owner_id).where(Namespace.id == node.ns_id))).scalar_one()
        await quota.charge(s, owner, source.size - node.size)
        node = await write_copy(s, who, node.ns_id, owner, node.path, node.head_rev_id, source)
        result = tree.shown(who, node)
    await search_index.index_content(svc, node.id, node.head_rev_id)
    return result


def _expired(cutoff: int) -> Any:
    """Revisions that are not their file's head and were replaced before *cutoff*."""
    later = aliased(Revision)
    return (select(Revision.id).join(Node, Node.id == Revision.node_id)
            .where(Revision.id != func.coalesce(Node.head_rev_id, 0))
            .where(exists().where(later.node_id == Revision.node_id, later.id > Revision.id,
                                  later.created_ms < cutoff)))


async def count_expired(s: AsyncSession, cutoff: int) -> int:
    return int((await s.execute(select(func.count()).select_from(_expired(cutoff).subquery()))).scalar_one())


async def prune_expired(s: AsyncSession, cutoff: int, batch: int) -> int:
    """Delete up to *batch* expired revisions (chunk lists first); call under ``refguard.collecting``."""
    ids = list((await s.execute(_expired(cutoff).limit(batch))).scalars())
    if ids:
        await s.execute(delete(RevisionChunk).where(RevisionChunk.rev_id.in_(ids)))
        await s.execute(delete(Revision).where(Revision.id.in_(ids)))
    return len(ids)
