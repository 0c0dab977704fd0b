"""The file tree of a namespace: look up, list, mkdir, move, delete (to the trash).

Every mutation here appends a journal entry in the same transaction. Paths arrive unvalidated
from the API and are normalized here (``server.core.paths``), never trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import paths
from server.core.errors import ErrorCode, SatchelError
from server.services import journal
from server.services.context import Principal, Services
from server.services.serialize import entry_json
from server.storage.db import now_ms
from server.storage.models import Namespace, Node

LIST_PAGE = 10_000


@dataclass(frozen=True)
class Location:
    """Where a user-visible path lives: a namespace, its owner, and the path inside it."""

    ns_id: int
    owner_id: int
    path: str


def locate(who: Principal, path: object) -> Location:
    # One namespace per user for now; shared folders (mount points) resolve here too.
    return Location(who.root_ns_id, who.user_id, paths.normalize(path))


def live(ns_id: int) -> Any:
    return (Node.ns_id == ns_id) & Node.deleted_ms.is_(None)


def subtree(svc: Services, ns_id: int, folder: str) -> Any:
    """Live nodes strictly below *folder*, as a byte-wise range. On PostgreSQL the comparison is
    COLLATE "C": under a locale collation (en_US…) '/Docs/x' would sort inside '/docs/'s range."""
    lo, hi = paths.descendant_range(folder)
    col = Node.path.collate("C") if svc.db.dialect == "postgresql" else Node.path
    return live(ns_id) & (col >= lo) & (col < hi)


async def get_node(s: AsyncSession, ns_id: int, path: str) -> Node | None:
    if path == paths.ROOT:
        return None
    return (await s.execute(select(Node).where(live(ns_id), Node.path == path))).scalar_one_or_none()


async def get_node_by_id(s: AsyncSession, who: Principal, node_id: int) -> Node:
    node = await s.get(Node, node_id)
    # Same answer for "not yours" and "does not exist": ids reveal nothing.
    if node is None or node.deleted_ms is not None or node.ns_id != who.root_ns_id:
        raise SatchelError(ErrorCode.not_found, "no such file")
    return node


async def ensure_parents(s: AsyncSession, who: Principal, ns_id: int, path: str) -> None:
    """Create the missing folders above *path* (like ``mkdir -p``), each with a journal entry."""
    now = now_ms()
    for folder in paths.ancestors(path):
        node = await get_node(s, ns_id, folder)
        if node is None:
            node = Node(ns_id=ns_id, path=folder, parent_path=paths.parent(folder), kind="dir",
                        mtime_ms=now, created_ms=now, updated_ms=now)
            s.add(node)
            await s.flush()
            await journal.append(s, ns_id, op="mkdir", kind="dir", node_id=node.id, path=folder,
                                 user_id=who.user_id, device_id=who.device_id)
        elif node.kind != "dir":
            raise SatchelError(ErrorCode.not_a_directory, f"{folder} is a file, not a folder", path=folder)


async def check_parents(s: AsyncSession, ns_id: int, path: str) -> None:
    """Raise not_a_directory if a file sits above *path* (what ``ensure_parents`` would refuse)."""
    above = paths.ancestors(path)
    if not above:
        return
    blocker = (await s.execute(
        select(Node.path).where(live(ns_id), Node.path.in_(above), Node.kind != "dir").limit(1)
    )).scalar_one_or_none()
    if blocker is not None:
        raise SatchelError(ErrorCode.not_a_directory, f"{blocker} is a file, not a folder", path=blocker)


async def stat(svc: Services, who: Principal, path: object) -> dict[str, Any]:
    loc = locate(who, path)
    async with svc.db.read() as s:
        if loc.path == paths.ROOT:
            return {"id": None, "path": "/", "name": "", "kind": "dir"}
        node = await get_node(s, loc.ns_id, loc.path)
    if node is None:
        raise SatchelError(ErrorCode.not_found, f"{loc.path} does not exist", path=loc.path)
    return entry_json(node)


async def list_folder(svc: Services, who: Principal, path: object, after: str | None = None,
                      limit: int = LIST_PAGE) -> dict[str, Any]:
    loc = locate(who, path)
    limit = max(1, min(limit, LIST_PAGE))
    if after:  # the cursor is a path from an earlier page; anything else (a NUL, say) is refused here
        after = paths.normalize(after)
    async with svc.db.read() as s:
        if loc.path != paths.ROOT:
            node = await get_node(s, loc.ns_id, loc.path)
            if node is None:
                raise SatchelError(ErrorCode.not_found, f"{loc.path} does not exist", path=loc.path)
            if node.kind != "dir":
                return {"entry": entry_json(node), "entries": [entry_json(node)], "next": None}
        q = select(Node).where(live(loc.ns_id), Node.parent_path == loc.path)
        if after:
            q = q.where(Node.path > after)
        rows = (await s.execute(q.order_by(Node.path).limit(limit + 1))).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    entry = {"id": None, "path": loc.path, "kind": "dir"}
    return {"entry": entry, "entries": [entry_json(n) for n in rows],
            "next": rows[-1].path if more else None}


async def mkdir(svc: Services, who: Principal, path: object) -> dict[str, Any]:
    loc = locate(who, path)
    if loc.path == paths.ROOT:
        raise SatchelError(ErrorCode.path_exists, "the root folder always exists", path="/")
    async with svc.db.write() as s:
        existing = await get_node(s, loc.ns_id, loc.path)
        if existing is not None:
            if existing.kind == "dir":
                return entry_json(existing)  # idempotent, like mkdir -p
            raise SatchelError(ErrorCode.path_exists, f"{loc.path} is a file", path=loc.path)
        await ensure_parents(s, who, loc.ns_id, loc.path)
        now = now_ms()
        node = Node(ns_id=loc.ns_id, path=loc.path, parent_path=paths.parent(loc.path), kind="dir",
                    mtime_ms=now, created_ms=now, updated_ms=now)
        s.add(node)
        await s.flush()
        await journal.append(s, loc.ns_id, op="mkdir", kind="dir", node_id=node.id, path=loc.path,
                             user_id=who.user_id, device_id=who.device_id)
        return entry_json(node)


async def move(svc: Services, who: Principal, src: object, dst: object) -> dict[str, Any]:
    a, b = locate(who, src), locate(who, dst)
    if paths.ROOT in (a.path, b.path):
        raise SatchelError(ErrorCode.bad_request, "the root folder cannot be moved or replaced")
    if paths.is_within(b.path, a.path):
        raise SatchelError(ErrorCode.bad_request, "a folder cannot be moved into itself")
    async with svc.db.write() as s:
        node = await get_node(s, a.ns_id, a.path)
        if node is None:
            raise SatchelError(ErrorCode.not_found, f"{a.path} does not exist", path=a.path)
        if await get_node(s, b.ns_id, b.path) is not None:
            raise SatchelError(ErrorCode.path_exists, f"{b.path} already exists", path=b.path)
        await ensure_parents(s, who, b.ns_id, b.path)
        now = now_ms()
        if node.kind == "dir":  # re-root the subtree: metadata only, no bytes move
            cut = len(a.path) + 1
            await s.execute(
                update(Node)
                .where(subtree(svc, a.ns_id, a.path))
                .values(path=literal(b.path, String).concat(func.substr(Node.path, cut, type_=String)),
                        parent_path=literal(b.path, String).concat(
                            func.substr(Node.parent_path, cut, type_=String)))
                .execution_options(synchronize_session=False)
            )
        node.path, node.parent_path, node.updated_ms = b.path, paths.parent(b.path), now
        await s.flush()
        await journal.append(s, a.ns_id, op="move", kind=node.kind, node_id=node.id, path=b.path,
                             old_path=a.path, rev_id=node.head_rev_id, size=node.size,
                             content_hash=node.content_hash, user_id=who.user_id, device_id=who.device_id)
        return entry_json(node)


async def delete(svc: Services, who: Principal, path: object, rev: object = None) -> dict[str, Any]:
    """Move a file or folder (with everything below it) to the trash; nothing is erased.

    *rev* (optional) is a precondition for files: delete only if it is still the head, so a sync
    client never trashes an edit it has not seen (``conflict`` otherwise, nothing changed)."""
    if rev is not None and (not isinstance(rev, int) or isinstance(rev, bool) or rev < 0):
        raise SatchelError(ErrorCode.bad_request, "'rev' must be an integer >= 0", field="rev")
    loc = locate(who, path)
    if loc.path == paths.ROOT:
        raise SatchelError(ErrorCode.bad_request, "the root folder cannot be deleted")
    async with svc.db.write() as s:
        node = await get_node(s, loc.ns_id, loc.path)
        if node is None:
            raise SatchelError(ErrorCode.not_found, f"{loc.path} does not exist", path=loc.path)
        if rev is not None and node.head_rev_id != rev:
            raise SatchelError(ErrorCode.conflict, "the file changed since the revision you saw",
                               path=loc.path, head_rev=node.head_rev_id, parent_rev=rev)
        now = now_ms()
        if node.kind == "dir":
            await s.execute(
                update(Node).where(subtree(svc, loc.ns_id, loc.path))
                .values(deleted_ms=now).execution_options(synchronize_session=False)
            )
        node.deleted_ms = now
        await s.flush()
        await journal.append(s, loc.ns_id, op="delete", kind=node.kind, node_id=node.id, path=loc.path,
                             rev_id=node.head_rev_id, user_id=who.user_id, device_id=who.device_id)
        return entry_json(node)


async def usage_bytes(s: AsyncSession, owner_id: int) -> int:
    """Bytes of the current (non-trashed) files in the namespaces *owner_id* owns."""
    total = (await s.execute(
        select(func.coalesce(func.sum(Node.size), 0))
        .join(Namespace, Namespace.id == Node.ns_id)
        .where(Namespace.owner_id == owner_id, Node.deleted_ms.is_(None), Node.kind == "file")
    )).scalar_one()
    return int(total)
