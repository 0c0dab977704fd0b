"""Link shares: a long random token that lets anyone holding it (and the password, if one is set)
download a file or a folder's files, or drop files into a folder (``upload``: a file request),
until the link expires or is revoked.

The token is shown once; only its SHA-256 is stored (256 random bits: nothing to brute-force), and
the password as argon2id. A link is checked on every use: not revoked, not expired, its target
still there, and its creator still allowed to share there (a creator removed from a shared folder
takes their links along). An unknown, revoked or expired token all get the same ``not_found``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select

from server.auth.passwords import hash_password, verify_password
from server.auth.tokens import token_hash
from server.core import paths
from server.core.errors import ErrorCode, SatchelError
from server.core.units import parse_duration
from server.services import access, downloads, tree, uploads
from server.services.access import Location, Perm
from server.services.context import Mount, Principal, Services
from server.services.serialize import entry_json, iso
from server.storage.db import now_ms
from server.storage.models import Link, Namespace, Node, ShareMember, User

PREFIX = "satl_"
MODES = ("download", "upload")
MAX_PASSWORD = 1024
MAX_EXPIRY_S = 10 * 365 * 86400


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def public_url(base_url: str, token: str) -> str:
    return f"{base_url}/api/v1/public/links/{token}"


def _expiry(raw: object) -> int | None:
    """Absolute expiry (ms) from seconds (int), a duration ('3d') or an ISO 8601 time; None = never."""
    if raw is None:
        return None
    now = now_ms()
    try:
        if isinstance(raw, int) and not isinstance(raw, bool):
            seconds = float(raw)
        elif isinstance(raw, str):
            try:
                seconds = parse_duration(raw)
            except ValueError:
                when = datetime.fromisoformat(raw)
                when = when if when.tzinfo else when.replace(tzinfo=UTC)
                seconds = when.timestamp() - now / 1000
        else:
            raise ValueError(raw)
    except (ValueError, OverflowError) as exc:
        raise SatchelError(ErrorCode.bad_request, "'expires' is seconds, a duration like '3d' or an ISO 8601 "
                           "time", field="expires") from exc
    if not 0 < seconds <= MAX_EXPIRY_S:
        raise SatchelError(ErrorCode.bad_request, "'expires' must be in the future and within 10 years",
                           field="expires")
    return now + int(seconds * 1000)


def _link_json(link: Link, path: str, base_url: str, token: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": link.id, "path": path, "ns": link.ns_id, "mode": link.mode,
                           "has_password": link.password_hash is not None, "created_at": iso(link.created_ms),
                           "expires_at": iso(link.expires_ms), "created_by": link.created_by}
    if token is not None:  # shown once, at creation
        out.update(token=token, url=public_url(base_url, token))
    return out


async def create(svc: Services, who: Principal, body: dict[str, Any], base_url: str) -> dict[str, Any]:
    mode = body.get("mode", "download")
    if mode not in MODES:
        raise SatchelError(ErrorCode.bad_request, "'mode' is 'download' or 'upload'", field="mode")
    password = body.get("password")
    if password is not None and (not isinstance(password, str) or not 1 <= len(password) <= MAX_PASSWORD):
        raise SatchelError(ErrorCode.bad_request, f"'password' is 1 to {MAX_PASSWORD} characters", field="password")
    expires = _expiry(body.get("expires"))
    loc = tree.locate(who, body.get("path"), need=Perm.SHARE | Perm.WRITE if mode == "upload" else Perm.SHARE)
    async with svc.db.read() as s:
        node = await tree.get_node(s, loc.ns_id, loc.path)
    if loc.path != paths.ROOT and node is None:
        raise SatchelError(ErrorCode.not_found, f"{loc.outside(loc.path)} does not exist", path=loc.outside(loc.path))
    if loc.path == paths.ROOT and loc.ns_id == who.root_ns_id:
        raise SatchelError(ErrorCode.bad_request, "the root folder cannot be shared by link")
    if mode == "upload" and node is not None and node.kind != "dir":
        raise SatchelError(ErrorCode.not_a_directory, "a file request link points at a folder",
                           path=loc.outside(loc.path))
    pw_hash = await hash_password(password) if password is not None else None
    token = new_token()
    async with svc.db.write() as s:
        link = Link(token_hash=token_hash(token), ns_id=loc.ns_id, node_id=node.id if node else None, mode=mode,
                    password_hash=pw_hash, created_by=who.user_id, created_ms=now_ms(), expires_ms=expires)
        s.add(link)
        await s.flush()
    return _link_json(link, loc.outside(loc.path), base_url, token)


async def _path_of(s: Any, who: Principal, link: Link) -> str:
    node = await s.get(Node, link.node_id) if link.node_id is not None else None
    inner = node.path if node is not None else paths.ROOT
    return access.visible_path(who, link.ns_id, inner)


async def list_links(svc: Services, who: Principal, base_url: str) -> dict[str, Any]:
    """Links the caller made, and every link of the namespaces the caller manages."""
    managed = [who.root_ns_id, *(m.ns_id for m in who.mounts if access.perms(m) & Perm.MANAGE)]
    now = now_ms()
    async with svc.db.read() as s:
        rows = (await s.execute(select(Link).where(
            or_(Link.created_by == who.user_id, Link.ns_id.in_(managed)), Link.revoked_ms.is_(None),
            or_(Link.expires_ms.is_(None), Link.expires_ms > now)).order_by(Link.id))).scalars().all()
        visible = [r for r in rows if access.grant(who, r.ns_id) is not None]
        return {"links": [_link_json(r, await _path_of(s, who, r), base_url) for r in visible]}


async def revoke(svc: Services, who: Principal, link_id: int) -> None:
    async with svc.db.write() as s:
        link = await s.get(Link, link_id)
        m = access.grant(who, link.ns_id) if link is not None and link.revoked_ms is None else None
        if link is None or m is None or (link.created_by != who.user_id and not access.perms(m) & Perm.MANAGE):
            raise SatchelError(ErrorCode.not_found, "no such link")
        link.revoked_ms = now_ms()


# ---------------------------------------------------------------- public use

@dataclass(frozen=True)
class Opened:
    link: Link
    root: Node | None  # None: the namespace's root
    owner_id: int


_GONE = "no such link (or it has expired or been revoked)"


async def open_link(svc: Services, token: str, password: str | None, *, password_checked: bool = False) -> Opened:
    """The live link behind *token*; its password is checked unless a signed URL (``content_url``)
    already proves it was given. Revocation, expiry and the creator's rights count on every call."""
    if not token.startswith(PREFIX) or len(token) > 100 or not token.isascii():
        raise SatchelError(ErrorCode.not_found, _GONE)
    async with svc.db.read() as s:
        link = (await s.execute(select(Link).where(Link.token_hash == token_hash(token)))).scalar_one_or_none()
        if link is None or link.revoked_ms is not None or (link.expires_ms is not None and link.expires_ms <= now_ms()):
            raise SatchelError(ErrorCode.not_found, _GONE)
        ns = await s.get(Namespace, link.ns_id)
        root = await s.get(Node, link.node_id) if link.node_id is not None else None
        if ns is None or (link.node_id is not None and (root is None or root.deleted_ms is not None)):
            raise SatchelError(ErrorCode.not_found, _GONE)
        if link.created_by != ns.owner_id:  # a creator who lost the right to share takes the link along
            row = await s.get(ShareMember, (link.ns_id, link.created_by))
            need = Perm.SHARE | Perm.WRITE if link.mode == "upload" else Perm.SHARE
            if row is None or need & ~access.perms(Mount(ns.id, ns.owner_id, row.mount_path, row.role,
                                                         row.can_reshare)):
                raise SatchelError(ErrorCode.not_found, _GONE)
    if link.password_hash is not None and not password_checked and not await verify_password(
            link.password_hash, password or ""):
        raise SatchelError(ErrorCode.password_required, "this link needs its password "
                           "(header X-Satchel-Link-Password* or X-Satchel-Link-Password)")
    return Opened(link, root, ns.owner_id)


def _inner(o: Opened, sub: object) -> str:
    """The namespace path of *sub* (a path relative to the link's folder)."""
    base = o.root.path if o.root is not None else paths.ROOT
    rel = paths.normalize(sub if sub not in (None, "") else "/")
    if rel == paths.ROOT:
        return base
    return rel if base == paths.ROOT else base + rel


def _relative(o: Opened, inner: str) -> str:
    base = o.root.path if o.root is not None else paths.ROOT
    if base == paths.ROOT:
        return inner
    return inner[len(base):] or paths.ROOT


def _public_entry(o: Opened, node: Node) -> dict[str, Any]:
    out = entry_json(node)
    del out["id"]  # node ids stay private to members
    out["path"] = _relative(o, node.path)
    return out


async def describe(svc: Services, o: Opened, sub: object, after: str | None) -> dict[str, Any]:
    """What a link holder sees: the file, or a folder listing (not for a file request)."""
    head = {"mode": o.link.mode, "expires_at": iso(o.link.expires_ms)}
    if o.root is not None and o.root.kind == "file":
        return head | {"entry": _public_entry(o, o.root)}
    if o.link.mode == "upload":
        name = paths.name(o.root.path) if o.root is not None else ""
        return head | {"entry": {"path": "/", "name": name, "kind": "dir"}}
    inner = _inner(o, sub)
    async with svc.db.read() as s:
        node = await tree.get_node(s, o.link.ns_id, inner)
        if inner != paths.ROOT and (node is None or node.deleted_ms is not None):
            raise SatchelError(ErrorCode.not_found, "no such file in this link", path=_relative(o, inner))
        if node is not None and node.kind == "file":
            return head | {"entry": _public_entry(o, node)}
        q = select(Node).where(tree.live(o.link.ns_id), Node.parent_path == inner)
        if after:  # the name the previous page ended with
            q = q.where(Node.path > paths.join(inner, after))
        rows = (await s.execute(q.order_by(Node.path).limit(tree.LIST_PAGE + 1))).scalars().all()
    more = len(rows) > tree.LIST_PAGE
    rows = rows[:tree.LIST_PAGE]
    return head | {"entry": {"path": _relative(o, inner), "kind": "dir"},
                   "entries": [_public_entry(o, n) for n in rows],
                   "next": paths.name(rows[-1].path) if more else None}


async def content(svc: Services, o: Opened, sub: object, range_header: str | None) -> downloads.Content:
    return downloads.revision_content(svc, await _file(svc, o, sub), range_header)


async def _file(svc: Services, o: Opened, sub: object) -> downloads.FileRevision:
    """The head revision of the link's file, or of *sub* inside its folder."""
    if o.link.mode != "download":
        raise SatchelError(ErrorCode.forbidden, "this link only takes uploads (a file request)")
    inner = o.root.path if o.root is not None and o.root.kind == "file" else _inner(o, sub)
    async with svc.db.read() as s:
        node = await tree.get_node(s, o.link.ns_id, inner)
        if node is None or node.deleted_ms is not None:
            raise SatchelError(ErrorCode.not_found, "no such file in this link", path=_relative(o, inner))
        return await downloads.head_of(s, node)


def public_content_path(token: str) -> str:
    return f"/api/v1/public/links/{token}/content"


async def content_url(svc: Services, o: Opened, token: str, sub: object, base_url: str) -> dict[str, Any]:
    """A signed URL of the link's file (or of *sub* in its folder) that needs no password header, so
    a browser's download manager can fetch it (streamed to disk, resumed with Range). It stands
    for the password only: each use still opens the link, so revocation and expiry count at once."""
    fr = await _file(svc, o, sub)  # refuses upload-only links and missing files now, not at download
    params: dict[str, str | int] = {"l": o.link.id}
    if sub not in (None, ""):
        params["path"] = str(sub)
    url = svc.signer.sign("GET", public_content_path(token), params, svc.config.url_ttl)
    expires = int(url.rsplit("exp=", 1)[1].split("&", 1)[0])
    return {"url": base_url + url, "size": fr.rev.size, "expires_at": iso(expires * 1000)}


async def open_signed(svc: Services, token: str, query: dict[str, str]) -> tuple[Opened, str | None]:
    """Check a signed link content URL; return the open link and the path inside it."""
    params = svc.signer.verify("GET", public_content_path(token), query)
    o = await open_link(svc, token, None, password_checked=True)
    if params.get("l") != str(o.link.id):
        raise SatchelError(ErrorCode.bad_signature, "this URL was signed for another link")
    return o, params.get("path")


async def receive(svc: Services, o: Opened, name: str, size: int, mime: str | None,
                  body: AsyncIterator[bytes]) -> dict[str, Any]:
    """A file request: store the body as a new file in the link's folder, never replacing one
    (a taken name becomes ``name (2)``). The journal credits the link's creator, device 0."""
    if o.link.mode != "upload":
        raise SatchelError(ErrorCode.forbidden, "this link is download-only")
    base = paths.normalize(name)
    if base.count("/") != 1:
        raise SatchelError(ErrorCode.invalid_path, "a file request takes a file name, not a path", path=name)
    async with svc.db.read() as s:
        creator = await s.get(User, o.link.created_by)
        assert creator is not None and creator.root_ns_id is not None
        folder = o.root.path if o.root is not None else paths.ROOT
        stem, dot, ext = base[1:].rpartition(".") if "." in base[1:] else (base[1:], "", "")
        for n in range(1, 1000):
            leaf = base[1:] if n == 1 else (f"{stem} ({n}){dot}{ext}" if dot else f"{base[1:]} ({n})")
            inner = paths.join(folder, leaf)
            if await tree.get_node(s, o.link.ns_id, inner) is None:
                break
    who = Principal(creator.id, creator.name, 0, creator.root_ns_id, False)
    node = await uploads.store_stream(svc, who, Location(o.link.ns_id, o.owner_id, inner), size, mime, body)
    return {"name": paths.name(node.path), "size": node.size, "content_hash": node.content_hash}
