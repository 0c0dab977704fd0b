"""Authorization: the one place that decides what a caller may do, and where.

    role (+ can_reshare) -> Perm set            owner: all; editor: read+write; viewer: read
    resolve(who, path, need) -> Location        a user-visible path -> namespace, owner, inner path
    check_ns(who, ns_id, need) -> Mount         a namespace named by id (file ids, cursors, frames)

A shared file is a namespace holding that one file (``Mount.file``, its path inside): its mount
point in the caller's tree IS the file, and nothing lies below it.

Every route and every WebSocket message reaches a namespace through one of these two (``tree.locate``
and ``tree.get_node_by_id`` delegate here). The caller's shares travel in ``Principal.mounts``,
read from the database with the token on every request (and before every WebSocket request), so
a role change or a removal counts from the next request. No access at all is answered like a thing
that does not exist (``not_found``); access without the needed permission is ``forbidden``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import paths
from server.core.errors import ErrorCode, SatchelError
from server.services.context import Mount, Principal
from server.storage.models import Namespace, Node, ShareMember

ROLES = ("viewer", "editor")  # what a member can be given; ``owner`` is the namespace's owner


class Perm(IntFlag):
    READ = 1  # list, stat, download, subscribe, presence
    WRITE = 2  # upload, commit, mkdir, move, delete (to the trash)
    SHARE = 4  # add members (at most one's own role), make links
    MANAGE = 8  # change roles, remove members, see and revoke every link


ROLE_PERMS = {
    "owner": Perm.READ | Perm.WRITE | Perm.SHARE | Perm.MANAGE,
    "editor": Perm.READ | Perm.WRITE,
    "viewer": Perm.READ,
}


def perms(m: Mount) -> Perm:
    granted = ROLE_PERMS[m.role]
    return granted | Perm.SHARE if m.can_reshare else granted


@dataclass(frozen=True)
class Location:
    """Where a user-visible path lives: a namespace, its owner, the path inside it, and where the
    namespace's root appears in the caller's tree (``/`` for their own root namespace)."""

    ns_id: int
    owner_id: int
    path: str
    mount: str = paths.ROOT
    role: str = "owner"
    file: str | None = None  # a shared file's path inside its namespace (``Mount.file``)

    def outside(self, inner: str) -> str:
        """The caller's path for *inner*, a path inside this location's namespace."""
        return outside(self.mount, inner, self.file)


def outside(mount: str, inner: str, file: str | None = None) -> str:
    if file is not None:  # a shared file's namespace holds nothing else: it is the mount point
        return mount
    if mount == paths.ROOT:
        return inner
    return mount if inner == paths.ROOT else mount + inner


def own_root(who: Principal) -> Mount:
    return Mount(who.root_ns_id, who.user_id, paths.ROOT, "owner", True)


def grant(who: Principal, ns_id: int) -> Mount | None:
    if ns_id == who.root_ns_id:
        return own_root(who)
    return next((m for m in who.mounts if m.ns_id == ns_id), None)


def _refuse(m: Mount, need: Perm) -> SatchelError:
    return SatchelError(ErrorCode.forbidden, f"you are {'an' if m.role == 'editor' else 'a'} {m.role} here: "
                        f"{need.name.lower() if need.name else 'this'} is not allowed", role=m.role)


def check_ns(who: Principal, ns_id: int, need: Perm) -> Mount:
    """The caller's mount of namespace *ns_id* if they have *need* there."""
    m = grant(who, ns_id)
    if m is None:
        raise SatchelError(ErrorCode.not_found, "no such namespace")
    if need & ~perms(m):
        raise _refuse(m, need)
    return m


def mount_at(who: Principal, path: str) -> Mount | None:
    """The share mounted at *path* or above it in the caller's tree (mounts never nest)."""
    return next((m for m in who.mounts if paths.is_within(path, m.path)), None)


def resolve(who: Principal, path: object, need: Perm) -> Location:
    """Map a user-visible path to its namespace, refusing a caller without *need* there."""
    full = paths.normalize(path)
    m = mount_at(who, full)
    if m is None:
        return Location(who.root_ns_id, who.user_id, full)
    if need & ~perms(m):
        raise _refuse(m, need)
    if m.file is not None:
        if full != m.path:
            raise SatchelError(ErrorCode.not_a_directory, f"{m.path} is a file, not a folder", path=m.path)
        return Location(m.ns_id, m.owner_id, m.file, m.path, m.role, m.file)
    inner = paths.ROOT if full == m.path else full[len(m.path):]
    return Location(m.ns_id, m.owner_id, inner, m.path, m.role)


def visible_path(who: Principal, ns_id: int, inner: str) -> str:
    m = grant(who, ns_id)
    return outside(m.path, inner, m.file) if m is not None else inner


def mounts_in(who: Principal, folder: str) -> list[Mount]:
    """The caller's mounts whose mount point is a direct child of *folder* (for listings)."""
    return sorted((m for m in who.mounts if paths.parent(m.path) == folder and m.path != paths.ROOT),
                  key=lambda m: m.path)


async def check_signed(s: AsyncSession, params: dict[str, str], need: Perm) -> None:
    """A server-signed chunk URL issued to a share member carries ``u`` (the member) and ``ns``: it
    works only while that member still has *need* there (one primary-key lookup), so a removal or a
    downgrade counts from the URL's next use. The owner's URLs carry no ``ns`` and stay DB-free."""
    if "ns" not in params:
        return
    try:
        key = (int(params["ns"]), int(params["u"]))
    except (KeyError, ValueError) as exc:
        raise SatchelError(ErrorCode.bad_signature, "malformed signed URL") from exc
    row = await s.get(ShareMember, key)
    if row is None or need & ~ROLE_PERMS[row.role]:
        raise SatchelError(ErrorCode.forbidden, "your access to this share changed after this URL was "
                           "issued; ask for a new one")


FILE_NS = "file"  # Namespace.kind of a shared file
PURGED_FILE = "/file"


async def load_mounts(s: AsyncSession, user_id: int) -> tuple[Mount, ...]:
    # A file namespace only ever has its one path (writes through the mount go there, moves only
    # move mounts), so any of its nodes names it: the live one (index uq_nodes_live_path), else a
    # trashed one (ix_nodes_trashed_path), for file shares only. A purged file leaves none: later
    # writes land at a fixed name.
    def one_path(state: Any) -> Any:
        return select(func.min(Node.path)).where(Node.ns_id == Namespace.id, state) \
            .correlate(Namespace).scalar_subquery()
    file_path = case((Namespace.kind == FILE_NS, func.coalesce(
        one_path(Node.deleted_ms.is_(None)), one_path(Node.deleted_ms.is_not(None)), PURGED_FILE)), else_=None)
    rows = (await s.execute(
        select(ShareMember, Namespace.owner_id, file_path).join(Namespace, Namespace.id == ShareMember.ns_id)
        .where(ShareMember.user_id == user_id).order_by(ShareMember.mount_path)
    )).all()
    return tuple(Mount(r.ns_id, owner, r.mount_path, r.role, r.can_reshare, file) for r, owner, file in rows)
