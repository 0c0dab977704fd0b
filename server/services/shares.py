"""Shared folders and files: each is a namespace of its own, mounted into each member's tree.

A shared file is a namespace holding that one file (at ``/<name>`` inside, for good); its mount
point in a member's tree is the file itself. Members rename or move it by moving their mount (the
others keep their names); nobody deletes it through a mount (members leave, the owner unshares).

Sharing a folder of one's own tree for the first time turns it into a namespace (its nodes and
revisions move over, metadata only) and mounts it back where it was, as the owner's mount. Each
member gets a mount at the root under the folder's name (``/Apollo``, ``/Apollo (2)`` if taken),
which they may move. Every membership change is a journal entry in the shared namespace
(``member_add``, ``member_role``, ``member_remove``: every member's devices see it) and a
``mount`` / ``unmount`` entry in the member's own root namespace (their devices learn the folder
came or went). Permissions are checked by ``access`` like everywhere else.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, case, delete, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import paths
from server.core.errors import ErrorCode, SatchelError
from server.services import access, journal, tree
from server.services.access import Perm
from server.services.context import Mount, Principal, Services
from server.services.serialize import iso
from server.storage.db import now_ms
from server.storage.models import Link, Namespace, Node, Revision, ShareMember, Upload, User

MAX_MEMBERS_PER_REQUEST = 100


def _members_arg(raw: object) -> list[tuple[str, str, bool]]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_MEMBERS_PER_REQUEST:
        raise SatchelError(ErrorCode.bad_request, f"'members' is a list of 1 to {MAX_MEMBERS_PER_REQUEST} "
                           "{user, role, can_reshare?} objects", field="members")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("user"), str):
            raise SatchelError(ErrorCode.bad_request, "each member is {user, role, can_reshare?}", field="members")
        role, reshare = item.get("role", "viewer"), item.get("can_reshare", False)
        if role not in access.ROLES or not isinstance(reshare, bool):
            raise SatchelError(ErrorCode.bad_request, "role is 'viewer' or 'editor'; can_reshare a boolean",
                               field="members")
        out.append((item["user"], role, reshare))
    return out


async def _user(s: AsyncSession, name: str) -> User:
    user = (await s.execute(select(User).where(User.name == name))).scalar_one_or_none() \
        if len(name) <= 64 and name.isprintable() else None
    if user is None:
        raise SatchelError(ErrorCode.not_found, f"no user named {name[:64]!r}")
    return user


async def _free_mount_path(s: AsyncSession, user: User, name: str, file: bool = False) -> str:
    """``/name``, or ``/name (2)``… (a file: ``/name (2).ext``) if the user's root already has that
    path or a mount there."""
    taken_mounts = set((await s.execute(select(ShareMember.mount_path).where(
        ShareMember.user_id == user.id))).scalars())
    assert user.root_ns_id is not None
    dot = name.rfind(".") if file else -1
    stem, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    for n in range(1, 1000):
        candidate = paths.normalize(f"/{name}" if n == 1 else f"/{stem} ({n}){ext}")
        if candidate not in taken_mounts and await tree.get_node(s, user.root_ns_id, candidate) is None:
            return candidate
    raise SatchelError(ErrorCode.path_exists, "no free place to mount this folder")


async def _convert(svc: Services, s: AsyncSession, who: Principal, path: str) -> Mount:
    """Turn the folder or file at *path* of the caller's root namespace into a shared namespace
    mounted in its place (metadata only: nodes, revisions and links move, no bytes)."""
    node = await tree.get_node(s, who.root_ns_id, path)
    if node is None:
        raise SatchelError(ErrorCode.not_found, f"{path} does not exist", path=path)
    if node.kind == "dir" and any(paths.is_within(m.path, path) for m in who.mounts):
        raise SatchelError(ErrorCode.nested_share, "this folder holds a shared folder", path=path)
    now = now_ms()
    ns = Namespace(owner_id=who.user_id, kind="shared" if node.kind == "dir" else access.FILE_NS, seq=0,
                   created_ms=now)
    s.add(ns)
    await s.flush()
    if node.kind == "dir":
        await _move_folder(svc, s, who, node, ns.id)
        mount = Mount(ns.id, who.user_id, path, "owner", True)
    else:
        mount = await _move_file(s, who, node, ns.id)
    s.add(ShareMember(ns_id=ns.id, user_id=who.user_id, role="owner", can_reshare=True, mount_path=path,
                      added_by=who.user_id, created_ms=now))
    await journal.append(s, who.root_ns_id, op="mount", kind="mount", node_id=ns.id, path=path, role="owner",
                         user_id=who.user_id, device_id=who.device_id)
    return mount


async def _move_file(s: AsyncSession, who: Principal, node: Node, ns_id: int) -> Mount:
    """A shared file: the node (same id, same revisions) becomes the one file of namespace *ns_id*,
    at ``/<its name>`` there for good (renames move mounts, never this path)."""
    outer, inner = node.path, paths.ROOT + paths.name(node.path)
    await s.execute(update(Revision).where(Revision.node_id == node.id).values(ns_id=ns_id)
                    .execution_options(synchronize_session=False))
    await s.execute(update(Link).where(Link.node_id == node.id).values(ns_id=ns_id)
                    .execution_options(synchronize_session=False))
    # An open upload to the file would land back in the root namespace: it starts over.
    await s.execute(delete(Upload).where(Upload.ns_id == who.root_ns_id, Upload.path == outer))
    node.ns_id, node.path, node.parent_path = ns_id, inner, paths.ROOT
    await s.flush()
    return Mount(ns_id, who.user_id, outer, "owner", True, inner)


async def _move_folder(svc: Services, s: AsyncSession, who: Principal, node: Node, ns_id: int) -> None:
    """The folder's live subtree moves to namespace *ns_id*, and so do the trash items deleted from
    inside it (restorable there by its editors); the folder's own node is gone (the mount replaces it)."""
    folder = node.path
    cut = len(folder) + 1  # '/Projects/Apollo/x' -> '/x'
    lo, hi = paths.descendant_range(folder)
    col = Node.path.collate("C") if svc.db.dialect == "postgresql" else Node.path
    # A trash item counts when its root was deleted from below the folder; one deleted from above
    # it (a whole '/Projects' trashed before) or an older folder of the same path stays the owner's.
    trash_roots = select(Node.id).where(Node.ns_id == who.root_ns_id, Node.deleted_ms.is_not(None),
                                        Node.trash_root_id == Node.id, col >= lo, col < hi)
    moving = tree.subtree(svc, who.root_ns_id, folder) | (
        (Node.ns_id == who.root_ns_id) & Node.deleted_ms.is_not(None)
        & Node.trash_root_id.in_(trash_roots.scalar_subquery()))
    ids = [int(i) for i in (await s.execute(select(Node.id).where(moving))).scalars()]
    for start in range(0, len(ids), 500):  # bounded IN lists
        part = ids[start:start + 500]
        await s.execute(update(Revision).where(Revision.node_id.in_(part)).values(ns_id=ns_id)
                        .execution_options(synchronize_session=False))
        await s.execute(update(Link).where(Link.node_id.in_(part)).values(ns_id=ns_id)
                        .execution_options(synchronize_session=False))
        await s.execute(
            update(Node).where(Node.id.in_(part))
            .values(ns_id=ns_id, path=func.substr(Node.path, cut, type_=String),
                    parent_path=case((Node.parent_path == folder, literal(paths.ROOT, String)),
                                     else_=func.substr(Node.parent_path, cut, type_=String)))
            .execution_options(synchronize_session=False))
    # Open uploads into the folder would land back in the root namespace: they start over.
    await s.execute(delete(Upload).where(Upload.ns_id == who.root_ns_id, Upload.path >= lo, Upload.path < hi))
    await s.delete(node)


async def share(svc: Services, who: Principal, path: object, members: object) -> dict[str, Any]:
    """Share the folder or file at *path* with *members* (adding them, or changing roles for a manager)."""
    wanted = _members_arg(members)
    loc = tree.locate(who, path, need=Perm.READ)
    if loc.ns_id != who.root_ns_id and loc.path != paths.ROOT and loc.file is None:
        raise SatchelError(ErrorCode.nested_share, "a folder inside a shared folder cannot be shared on "
                           "its own: share the shared folder", path=loc.outside(loc.path))
    if loc.ns_id == who.root_ns_id and loc.path == paths.ROOT:
        raise SatchelError(ErrorCode.bad_request, "the root folder cannot be shared")
    async with svc.db.write() as s:
        m = access.grant(who, loc.ns_id) if loc.ns_id != who.root_ns_id else await _convert(svc, s, who, loc.path)
        assert m is not None
        mine = access.perms(m)
        if not mine & Perm.SHARE:
            raise SatchelError(ErrorCode.forbidden, "only the owner (or a member allowed to reshare) adds "
                               "members", role=m.role)
        for name, role, reshare in wanted:
            await _add(s, who, m, mine, await _user(s, name), role, reshare)
    return await _members_json(svc, m)  # *who* predates the share when this call created it


async def _add(s: AsyncSession, who: Principal, m: Mount, mine: Perm, user: User, role: str,
               reshare: bool) -> None:
    if user.id == m.owner_id:
        raise SatchelError(ErrorCode.bad_request, "the owner is a member already")
    if not mine & Perm.MANAGE and (reshare or (role == "editor" and not mine & Perm.WRITE)):
        raise SatchelError(ErrorCode.forbidden, "a member who reshares grants at most their own role, "
                           "and cannot grant resharing")
    row = await s.get(ShareMember, (m.ns_id, user.id))
    if row is not None:
        if mine & Perm.MANAGE and (row.role, row.can_reshare) != (role, reshare):
            await _set_role(s, who, row, role, reshare)
        return
    mount = await _free_mount_path(s, user, paths.name(m.path), m.file is not None)
    s.add(ShareMember(ns_id=m.ns_id, user_id=user.id, role=role, can_reshare=reshare, mount_path=mount,
                      added_by=who.user_id, created_ms=now_ms()))
    await journal.append(s, m.ns_id, op="member_add", kind="member", node_id=user.id, path=paths.ROOT,
                         role=role, user_id=who.user_id, device_id=who.device_id)
    assert user.root_ns_id is not None
    await journal.append(s, user.root_ns_id, op="mount", kind="mount", node_id=m.ns_id, path=mount, role=role,
                         user_id=who.user_id, device_id=who.device_id)


async def _set_role(s: AsyncSession, who: Principal, row: ShareMember, role: str, reshare: bool) -> None:
    row.role, row.can_reshare = role, reshare
    await journal.append(s, row.ns_id, op="member_role", kind="member", node_id=row.user_id, path=paths.ROOT,
                         role=role, user_id=who.user_id, device_id=who.device_id)


async def _member_row(s: AsyncSession, ns_id: int, user_id: int) -> ShareMember:
    row = await s.get(ShareMember, (ns_id, user_id))
    if row is None or row.role == "owner":
        raise SatchelError(ErrorCode.not_found, "no such member")
    return row


async def set_role(svc: Services, who: Principal, ns_id: int, user_id: int, body: dict[str, Any]) -> dict[str, Any]:
    role, reshare = body.get("role"), body.get("can_reshare", False)
    if role not in access.ROLES or not isinstance(reshare, bool):
        raise SatchelError(ErrorCode.bad_request, "role is 'viewer' or 'editor'; can_reshare a boolean",
                           field="role")
    access.check_ns(who, ns_id, Perm.MANAGE)
    async with svc.db.write() as s:
        row = await _member_row(s, ns_id, user_id)
        if (row.role, row.can_reshare) != (role, reshare):
            await _set_role(s, who, row, str(role), reshare)
    return await members_of(svc, who, ns_id)


async def remove(svc: Services, who: Principal, ns_id: int, user_id: int) -> None:
    """Remove a member (a manager), or leave (a member removing themselves)."""
    if user_id != who.user_id:
        access.check_ns(who, ns_id, Perm.MANAGE)
    elif access.grant(who, ns_id) is None:
        raise SatchelError(ErrorCode.not_found, "no such namespace")
    async with svc.db.write() as s:
        row = await s.get(ShareMember, (ns_id, user_id))
        if row is not None and row.role == "owner":
            raise SatchelError(ErrorCode.bad_request, "the owner cannot leave their own shared folder")
        row = await _member_row(s, ns_id, user_id)
        user = await s.get(User, user_id)
        assert user is not None and user.root_ns_id is not None
        await s.delete(row)
        await journal.append(s, ns_id, op="member_remove", kind="member", node_id=user_id, path=paths.ROOT,
                             user_id=who.user_id, device_id=who.device_id)
        await journal.append(s, user.root_ns_id, op="unmount", kind="mount", node_id=ns_id, path=row.mount_path,
                             user_id=who.user_id, device_id=who.device_id)


async def members_of(svc: Services, who: Principal, ns_id: int) -> dict[str, Any]:
    return await _members_json(svc, access.check_ns(who, ns_id, Perm.READ))


async def _members_json(svc: Services, m: Mount) -> dict[str, Any]:
    async with svc.db.read() as s:
        rows = (await s.execute(select(ShareMember, User.name).join(User, User.id == ShareMember.user_id)
                                .where(ShareMember.ns_id == m.ns_id).order_by(ShareMember.created_ms,
                                                                              ShareMember.user_id))).all()
    return {"ns": m.ns_id, "path": m.path, "kind": kind(m), "role": m.role, "members": [
        {"user_id": r.user_id, "user": name, "role": r.role, "can_reshare": r.can_reshare,
         "added_at": iso(r.created_ms)} for r, name in rows]}


def kind(m: Mount) -> str:
    return "dir" if m.file is None else "file"


def mine(who: Principal) -> dict[str, Any]:
    return {"shares": [{"ns": m.ns_id, "path": m.path, "kind": kind(m), "role": m.role, "owner_id": m.owner_id,
                        "can_reshare": m.can_reshare} for m in who.mounts]}


async def share_by_id(svc: Services, who: Principal, node_id: int, members: object) -> dict[str, Any]:
    async with svc.db.read() as s:
        node = await tree.get_node_by_id(s, who, node_id, need=Perm.READ)
    return await share(svc, who, access.visible_path(who, node.ns_id, node.path), members)
