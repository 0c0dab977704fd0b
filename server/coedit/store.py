"""The co-editing state in the database, and reading and saving the file's text.

``coedit_docs`` holds per file: the CRDT state (compacted: Yrs encodes deleted text as ranges),
``base_rev`` and ``base_state`` (see ``merge.py``). A save writes the revision and the row in ONE
transaction, so another node that sees the new revision in the journal can tell it from an
external one by reading the row: a coedit save has ``base_rev`` equal to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pycrdt import merge_updates
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import ErrorCode, SatchelError
from server.services import uploads
from server.services.context import Principal, Services
from server.services.downloads import revision_bytes
from server.storage.db import now_ms
from server.storage.models import CoeditDoc, Namespace, Node, Revision


@dataclass(frozen=True)
class Row:
    state: bytes
    base_rev: int | None
    base_state: bytes


@dataclass(frozen=True)
class FileHead:
    file_id: int
    ns_id: int
    owner_id: int
    path: str
    rev: int | None
    size: int


async def head(svc: Services, file_id: int) -> FileHead | None:
    """The file as it is now, or None if it is gone."""
    async with svc.db.read() as s:
        node = await s.get(Node, file_id)
        if node is None or node.deleted_ms is not None or node.kind != "file":
            return None
        owner = (await s.execute(select(Namespace.owner_id).where(Namespace.id == node.ns_id))).scalar_one()
        return FileHead(node.id, node.ns_id, int(owner), node.path, node.head_rev_id, node.size)


async def read_text(svc: Services, owner_id: int, rev_id: int, limit: int) -> str:
    """A revision's content as text: ``too_large`` over *limit* bytes, ``not_text`` unless UTF-8."""
    async with svc.db.read() as s:
        rev = await s.get(Revision, rev_id)
        if rev is None:
            raise SatchelError(ErrorCode.not_found, "no such revision")
        size = rev.size
    if size > limit:
        raise SatchelError(ErrorCode.too_large, f"co-editing is limited to files of {limit} bytes", limit=limit)
    data = b"".join([piece async for piece in revision_bytes(svc, rev_id, owner_id, 0, size)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SatchelError(ErrorCode.not_text, "this file is not UTF-8 text") from None
    if "\x00" in text:
        raise SatchelError(ErrorCode.not_text, "this file is not text (it holds NUL characters)")
    return text


async def load(svc: Services, file_id: int) -> Row | None:
    async with svc.db.read() as s:
        row = await s.get(CoeditDoc, file_id)
        return Row(bytes(row.state), row.base_rev, bytes(row.base_state)) if row is not None else None


async def _write(s: AsyncSession, file_id: int, ns_id: int, state: bytes, base: tuple[int | None, bytes] | None,
                 expect_base: int | bool | None = True) -> None:
    """Store *state* merged with what the row holds (another node may have written things this
    one has not seen yet: never drop them), and the new *base* if the row's base is still
    *expect_base* (True: unconditionally). A stale node must never move the base back: it would
    make a later save look like an external revision and be merged twice."""
    row = (await s.execute(select(CoeditDoc).where(CoeditDoc.file_id == file_id).with_for_update())
           ).scalar_one_or_none()
    if row is None:
        rev, base_state = base if base is not None else (None, state)
        s.add(CoeditDoc(file_id=file_id, ns_id=ns_id, state=state, base_rev=rev, base_state=base_state,
                        updated_ms=now_ms()))
        return
    row.state = merge_updates(bytes(row.state), state)
    row.ns_id = ns_id  # the file's namespace now (sharing a folder moves its files to a new one)
    if base is not None and (expect_base is True or row.base_rev == expect_base):
        row.base_rev, row.base_state = base
    row.updated_ms = now_ms()


async def save_state(svc: Services, file_id: int, state: bytes,
                     base: tuple[int | None, bytes] | None = None, expect_base: int | None = None) -> bool:
    """Store the CRDT state (no revision), and *base* if the stored base is *expect_base*.
    False when the file is gone."""
    async with svc.db.write() as s:
        node = await s.get(Node, file_id)
        if node is None or node.deleted_ms is not None:
            return False
        await _write(s, file_id, node.ns_id, state, base, expect_base)
    return True


async def create_if_absent(svc: Services, file_id: int, ns_id: int, row: Row) -> None:
    async with svc.db.write() as s:
        ins = pg_insert(CoeditDoc) if s.get_bind().dialect.name == "postgresql" else sqlite_insert(CoeditDoc)
        await s.execute(ins.values(file_id=file_id, ns_id=ns_id, state=row.state, base_rev=row.base_rev,
                                   base_state=row.base_state, updated_ms=now_ms())
                        .on_conflict_do_nothing(index_elements=["file_id"]))


async def save_revision(svc: Services, who: Principal, file_id: int, text: str, parent_rev: int,
                        state: bytes) -> int | None:
    """Commit *text* as the revision after *parent_rev* (``conflict`` if the head moved on) and
    store *state* with it as the new base. Returns the new revision, None if the file is gone."""
    async def also(s: AsyncSession, node: Node) -> None:
        assert node.head_rev_id is not None
        # The commit's parent check passed: this save is the new base, whatever the row said.
        await _write(s, file_id, node.ns_id, state, (node.head_rev_id, state))

    node = await uploads.commit_bytes(svc, who, file_id, text.encode("utf-8"), parent_rev, also)
    return node.head_rev_id if node is not None else None
