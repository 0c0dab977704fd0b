"""Reading the journal: pages of changes after a cursor, and the chunk delta of a new revision.

A cursor names a namespace and the last seq the client has seen (``server.ws.protocol`` makes and
parses them). The journal is never compacted yet, so every cursor of a readable namespace is
still good; ``cursor_expired`` is reserved for when it will be.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import ErrorCode, SatchelError
from server.services import access
from server.services.access import Perm
from server.services.context import Principal, Services
from server.services.serialize import iso
from server.storage.models import JournalEntry, Namespace, Revision, RevisionChunk
from server.ws.protocol import ProtocolError, make_cursor, parse_cursor

PAGE = 1000
DELTA_LIMIT = 50_000  # chunk lists longer than this are not diffed in a push; clients fetch the list


def readable_namespaces(who: Principal) -> list[int]:
    return [who.root_ns_id, *(m.ns_id for m in who.mounts)]


def check_readable(who: Principal, ns: int) -> None:
    access.check_ns(who, ns, Perm.READ)  # not_found, like a namespace that does not exist


def entry_wire(e: JournalEntry, rev: Revision | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ns": e.ns_id, "seq": e.seq, "cursor": make_cursor(e.ns_id, e.seq), "op": e.op, "kind": e.kind,
        "id": e.node_id, "path": e.path, "at": iso(e.created_ms), "user_id": e.user_id,
        "device_id": e.device_id,
    }
    if e.old_path is not None:
        out["old_path"] = e.old_path
    if e.role is not None:
        out["role"] = e.role
    if e.kind == "file" and e.op not in ("delete", "purge"):
        out.update(rev=e.rev_id, parent_rev=e.parent_rev_id, size=e.size, content_hash=e.content_hash)
        if rev is not None:
            out.update(mtime=iso(rev.mtime_ms), mime=rev.mime)
    return out


def cursor_of(who: Principal, cursor: object) -> tuple[int, int]:
    try:
        ns, seq = parse_cursor(cursor)
    except ProtocolError as exc:
        raise SatchelError(exc.code, exc.message) from exc
    if access.grant(who, ns) is None:
        raise SatchelError(ErrorCode.bad_cursor, "this cursor belongs to a namespace you cannot read")
    return ns, seq


async def head_seq(s: AsyncSession, ns: int) -> int:
    seq = (await s.execute(select(Namespace.seq).where(Namespace.id == ns))).scalar_one_or_none()
    if seq is None:
        raise SatchelError(ErrorCode.not_found, "no such namespace")
    return int(seq)


async def entries_after(s: AsyncSession, ns: int, after: int, limit: int = PAGE) -> list[dict[str, Any]]:
    rows = (await s.execute(
        select(JournalEntry, Revision).outerjoin(Revision, Revision.id == JournalEntry.rev_id)
        .where(JournalEntry.ns_id == ns, JournalEntry.seq > after)
        .order_by(JournalEntry.seq).limit(limit)
    )).all()
    return [entry_wire(e, r) for e, r in rows]


async def list_changes(svc: Services, who: Principal, cursor: object, limit: int) -> dict[str, Any]:
    ns, seq = cursor_of(who, cursor)
    limit = max(1, min(limit, PAGE))
    async with svc.db.read() as s:
        head = await head_seq(s, ns)
        if seq > head:
            raise SatchelError(ErrorCode.bad_cursor, "this cursor is ahead of the journal")
        entries = await entries_after(s, ns, seq, limit)
    last = entries[-1]["seq"] if entries else seq
    return {"entries": entries, "cursor": make_cursor(ns, last), "has_more": last < head}


async def latest_cursor(svc: Services, who: Principal, ns: int | None) -> dict[str, Any]:
    ns = who.root_ns_id if ns is None else ns
    check_readable(who, ns)
    async with svc.db.read() as s:
        seq = await head_seq(s, ns)
    return {"ns": ns, "seq": seq, "cursor": make_cursor(ns, seq)}


async def revision_delta(s: AsyncSession, parent_rev: int | None, rev: int) -> dict[str, Any] | None:
    """How *rev*'s chunk list is built from *parent_rev*'s: ``ops`` is a list of ``[start, count]``
    (keep parent chunks start..start+count-1) and ``[hash, size]`` (a chunk the parent lacks),
    the same shape a client sends in a ``commit`` frame. None when a list is too long to diff."""
    new = (await s.execute(select(RevisionChunk.hash, RevisionChunk.size)
                           .where(RevisionChunk.rev_id == rev).order_by(RevisionChunk.idx)
                           .limit(DELTA_LIMIT + 1))).all()
    if len(new) > DELTA_LIMIT:
        return None
    index: dict[bytes, int] = {}
    if parent_rev is not None:
        old = (await s.execute(select(RevisionChunk.hash).where(RevisionChunk.rev_id == parent_rev)
                               .order_by(RevisionChunk.idx).limit(DELTA_LIMIT + 1))).scalars().all()
        if len(old) > DELTA_LIMIT:
            return None
        for i, h in enumerate(old):
            index.setdefault(bytes(h), i)
    ops: list[list[Any]] = []
    for h, size in new:
        digest = bytes(h)
        at = index.get(digest)
        if at is None:
            ops.append([digest, int(size)])
        elif ops and isinstance(ops[-1][0], int) and ops[-1][0] + ops[-1][1] == at:
            ops[-1][1] += 1
        else:
            ops.append([at, 1])
    return {"base_rev": parent_rev, "ops": ops}
