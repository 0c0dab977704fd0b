"""The file tree of a namespace: look up, list, mkdir, move, delete (to the trash).

Every mutation here appends a journal entry in the same transaction. Paths arrive unvalidated
from the API and are normalized here (``server.core.paths``), never trusted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import paths
from server.core.errors import ErrorCode, SatchelError
from server.services import access, journal
from server.services.access import Location, Perm
from server.services.context import Mount, Principal, Services
from server.services.serialize import entry_json
from server.storage.db import now_ms
from server.storage.models import Namespace, Node, ShareMember

LIST_PAGE = 10_000


def locate(who: Principal, path: object, *, need: Perm) -> Location:
    """THE seam from a user-visible path to a namespace: mounted shared folders resolve here, and
    the caller's role there must grant *need* (``access.resolve``)."""
    return access.resolve(who, path, need)


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


async def get_node_by_id(s: AsyncSession, who: Principal, node_id: int, *, need: Perm) -> Node:
    node = await s.get(Node, node_id)
    # Same answer for "not yours" and "does not exist": ids reveal nothing.
    if node is None or node.deleted_ms is not None or access.grant(who, node.ns_id) is None:
        raise SatchelError(ErrorCode.not_found, "no such file")
    access.check_ns(who, node.ns_id, need)
    return node


def shown(who: Principal, node: Node) -> dict[str, Any]:
    """A node's entry with its path as the caller sees it (through their mount of its namespace)."""
    m = access.grant(who, node.ns_id)
    if m is not None and m.file is not None:
        return mount_json(m, node)
    out = entry_json(node)
    out["path"] = access.visible_path(who, node.ns_id, node.path)
    return out


def mount_json(m: Mount, node: Node | None = None) -> dict[str, Any]:
    """A mounted shared folder as an entry of the caller's tree; a shared file is its file's entry
    (*node*) under the mount's path and name. Both carry ``share``."""
    share = {"ns": m.ns_id, "role": m.role, "owner_id": m.owner_id, "can_reshare": m.can_reshare}
    if m.file is not None and node is not None:
        return entry_json(node) | {"path": m.path, "name": paths.name(m.path), "share": share}
    return {"id": None, "path": m.path, "name": paths.name(m.path), "kind": "dir" if m.file is None else "file",
            "modified_at": None, "share": share}


async def mounted_files(s: AsyncSession, mounts: list[Mount]) -> dict[int, Node]:
    """The live file of each shared-file mount in *mounts*, by namespace."""
    ids = [m.ns_id for m in mounts if m.file is not None]
    if not ids:
        return {}
    rows = (await s.execute(select(Node).where(Node.ns_id.in_(ids), Node.deleted_ms.is_(None)))).scalars()
    return {n.ns_id: n for n in rows}


def _at(loc: Location, node: Node, who: Principal | None = None) -> dict[str, Any]:
    if loc.file is not None and who is not None:
        m = access.grant(who, loc.ns_id)
        if m is not None:
            return mount_json(m, node)
    out = entry_json(node)
    out["path"] = loc.outside(node.path)
    return out


def _mount_of(who: Principal, loc: Location) -> Mount | None:
    return access.grant(who, loc.ns_id) if loc.mount != paths.ROOT else None


async def ensure_parents(s: AsyncSession, who: Principal, ns_id: int, path: str) -> None:
    """Create the missing folders above *path* (like ``mkdir -p``), each with a journal entry."""
    await _ensure_folders(s, who, ns_id, paths.ancestors(path))


async def ensure_dir(s: AsyncSession, who: Principal, ns_id: int, path: str) -> None:
    """Create the folder *path* and the missing folders above it, inside the caller's transaction."""
    await _ensure_folders(s, who, ns_id, [*paths.ancestors(path), path])


async def _ensure_folders(s: AsyncSession, who: Principal, ns_id: int, folders: list[str]) -> None:
    now = now_ms()
    for folder in folders:
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
    loc = locate(who, path, need=Perm.READ)
    async with svc.db.read() as s:
        if loc.path == paths.ROOT:
            m = _mount_of(who, loc)
            return mount_json(m) if m else {"id": None, "path": "/", "name": "", "kind": "dir"}
        node = await get_node(s, loc.ns_id, loc.path)
    if node is None:
        raise SatchelError(ErrorCode.not_found, f"{loc.outside(loc.path)} does not exist",
                           path=loc.outside(loc.path))
    return _at(loc, node, who)


async def list_folder(svc: Services, who: Principal, path: object, after: str | None = None,
                      limit: int = LIST_PAGE) -> dict[str, Any]:
    loc = locate(who, path, need=Perm.READ)
    limit = max(1, min(limit, LIST_PAGE))
    if after:  # the cursor is a path from an earlier page; anything else (a NUL, say) is refused here
        after = paths.normalize(after)
    async with svc.db.read() as s:
        if loc.path != paths.ROOT:
            node = await get_node(s, loc.ns_id, loc.path)
            if node is None:
                raise SatchelError(ErrorCode.not_found, f"{loc.outside(loc.path)} does not exist",
                                   path=loc.outside(loc.path))
            if node.kind != "dir":
                return {"entry": _at(loc, node, who), "entries": [_at(loc, node, who)], "next": None}
        q = select(Node).where(live(loc.ns_id), Node.parent_path == loc.path)
        if after:
            q = q.where(Node.path > after)
        rows = (await s.execute(q.order_by(Node.path).limit(limit + 1))).scalars().all()
        here = access.mounts_in(who, loc.path) if loc.ns_id == who.root_ns_id and not after else []
        files = await mounted_files(s, here)
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [_at(loc, n) for n in rows]
    if here:  # shared folders and files mounted here come on the first page
        entries = [mount_json(m, files.get(m.ns_id)) for m in here] + entries
    m = _mount_of(who, loc) if loc.path == paths.ROOT else None
    entry = mount_json(m) if m else {"id": None, "path": loc.outside(loc.path), "kind": "dir"}
    return {"entry": entry, "entries": entries, "next": rows[-1].path if more else None}


async def mkdir(svc: Services, who: Principal, path: object) -> dict[str, Any]:
    loc = locate(who, path, need=Perm.WRITE)
    if loc.path == paths.ROOT:
        m = _mount_of(who, loc)
        if m is not None:
            return mount_json(m)  # a mounted shared folder is a folder: idempotent like the rest
        raise SatchelError(ErrorCode.path_exists, "the root folder always exists", path="/")
    async with svc.db.write() as s:
        existing = await get_node(s, loc.ns_id, loc.path)
        if existing is not None:
            if existing.kind == "dir":
                return _at(loc, existing)  # idempotent, like mkdir -p
            raise SatchelError(ErrorCode.path_exists, f"{loc.outside(loc.path)} is a file",
                               path=loc.outside(loc.path))
        await ensure_parents(s, who, loc.ns_id, loc.path)
        now = now_ms()
        node = Node(ns_id=loc.ns_id, path=loc.path, parent_path=paths.parent(loc.path), kind="dir",
                    mtime_ms=now, created_ms=now, updated_ms=now)
        s.add(node)
        await s.flush()
        await journal.append(s, loc.ns_id, op="mkdir", kind="dir", node_id=node.id, path=loc.path,
                             user_id=who.user_id, device_id=who.device_id)
        return _at(loc, node)


async def move(svc: Services, who: Principal, src: object, dst: object) -> dict[str, Any]:
    src_path = paths.normalize(src)
    mounted = next((m for m in who.mounts if m.path == src_path), None)
    if mounted is not None:  # moving one's own mount point: any role may arrange their own tree
        return await _move_mount(svc, who, mounted, dst)
    a, b = locate(who, src, need=Perm.WRITE), locate(who, dst, need=Perm.WRITE)
    if paths.ROOT in (a.path, b.path):
        raise SatchelError(ErrorCode.bad_request, "the root folder cannot be moved or replaced")
    if a.ns_id != b.ns_id:
        raise SatchelError(ErrorCode.cross_namespace, "moves into or out of a shared folder are not "
                           "supported: copy the files and delete the originals", path=b.outside(b.path))
    if paths.is_within(b.path, a.path):
        raise SatchelError(ErrorCode.bad_request, "a folder cannot be moved into itself")
    carried = [m for m in who.mounts if a.ns_id == who.root_ns_id and paths.is_within(m.path, a.path)]
    async with svc.db.write() as s:
        node = await get_node(s, a.ns_id, a.path)
        if node is None:
            raise SatchelError(ErrorCode.not_found, f"{a.outside(a.path)} does not exist",
                               path=a.outside(a.path))
        if await get_node(s, b.ns_id, b.path) is not None:
            raise SatchelError(ErrorCode.path_exists, f"{b.outside(b.path)} already exists",
                               path=b.outside(b.path))
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
        for m in carried:  # shared folders mounted inside the moved folder move with it
            await _set_mount_path(s, who, m, b.path + m.path[len(a.path):])
        return _at(a, node)


async def _set_mount_path(s: AsyncSession, who: Principal, m: Mount, new_path: str) -> None:
    await s.execute(update(ShareMember).where(ShareMember.ns_id == m.ns_id, ShareMember.user_id == who.user_id)
                    .values(mount_path=new_path))
    await journal.append(s, who.root_ns_id, op="move", kind="mount", node_id=m.ns_id, path=new_path,
                         old_path=m.path, role=m.role, user_id=who.user_id, device_id=who.device_id)


async def _move_mount(svc: Services, who: Principal, m: Mount, dst: object) -> dict[str, Any]:
    to = paths.normalize(dst)
    if to == paths.ROOT or access.mount_at(who, to) is not None:
        raise SatchelError(ErrorCode.nested_share, "a shared folder is mounted in your own folders, "
                           "not inside another shared folder", path=to)
    async with svc.db.write() as s:
        if await get_node(s, who.root_ns_id, to) is not None:
            raise SatchelError(ErrorCode.path_exists, f"{to} already exists", path=to)
        await ensure_parents(s, who, who.root_ns_id, to)
        await _set_mount_path(s, who, m, to)
        files = await mounted_files(s, [m])
    return mount_json(Mount(m.ns_id, m.owner_id, to, m.role, m.can_reshare, m.file), files.get(m.ns_id))


async def delete(svc: Services, who: Principal, path: object, rev: object = None) -> dict[str, Any]:
    """Move a file or folder (with everything below it) to the trash; nothing is erased.

    *rev* (optional) is a precondition for files: delete only if it is still the head, so a sync
    client never trashes an edit it has not seen (``conflict`` otherwise, nothing changed)."""
    if rev is not None and (not isinstance(rev, int) or isinstance(rev, bool) or rev < 0):
        raise SatchelError(ErrorCode.bad_request, "'rev' must be an integer >= 0", field="rev")
    loc = locate(who, path, need=Perm.WRITE)
    if loc.path == paths.ROOT:
        if loc.mount != paths.ROOT:
            raise SatchelError(ErrorCode.nested_share, "a shared folder is left (or unshared), not deleted",
                               path=loc.mount)
        raise SatchelError(ErrorCode.bad_request, "the root folder cannot be deleted")
    if loc.file is not None and not access.perms(access.check_ns(who, loc.ns_id, Perm.READ)) & Perm.MANAGE:
        raise SatchelError(ErrorCode.nested_share, "a shared file is left, not deleted: only its owner "
                           "deletes it (moving it only moves your own copy of the mount)", path=loc.mount)
    if loc.ns_id == who.root_ns_id and any(paths.is_within(m.path, loc.path) for m in who.mounts):
        raise SatchelError(ErrorCode.nested_share, "this folder holds shared folders: move them out "
                           "or leave them first", path=loc.path)
    async with svc.db.write() as s:
        node = await get_node(s, loc.ns_id, loc.path)
        if node is None:
            raise SatchelError(ErrorCode.not_found, f"{loc.outside(loc.path)} does not exist",
                               path=loc.outside(loc.path))
        if rev is not None and node.head_rev_id != rev:
            raise SatchelError(ErrorCode.conflict, "the file changed since the revision you saw",
                               path=loc.outside(loc.path), head_rev=node.head_rev_id, parent_rev=rev)
        await trash_node(s, svc, who, node)
        return _at(loc, node)


async def trash_node(s: AsyncSession, svc: Services, who: Principal, node: Node) -> None:
    """Move a live *node* (and everything below it) to the trash as one trash item; journal it."""
    now = now_ms()
    if node.kind == "dir":
        await s.execute(
            update(Node).where(subtree(svc, node.ns_id, node.path))
            .values(deleted_ms=now, trash_root_id=node.id).execution_options(synchronize_session=False)
        )
    node.deleted_ms, node.trash_root_id = now, node.id
    await s.flush()
    await journal.append(s, node.ns_id, op="delete", kind=node.kind, node_id=node.id, path=node.path,
                         rev_id=node.head_rev_id, user_id=who.user_id, device_id=who.device_id)


async def usage_bytes(s: AsyncSession, owner_id: int) -> int:
    """Bytes of the current (non-trashed) files in the namespaces *owner_id* owns."""
    total = (await s.execute(
        select(func.coalesce(func.sum(Node.size), 0))
        .join(Namespace, Namespace.id == Node.ns_id)
        .where(Namespace.owner_id == owner_id, Node.deleted_ms.is_(None), Node.kind == "file")
    )).scalar_one()
    return int(total)
