"""Keeping the search index: names and folder paths of live nodes, and the text of small text files.

SQLite keeps an FTS5 table ``search_fts`` (rowid = node id); PostgreSQL a table ``search_docs``
whose weighted ``tsv`` column the database derives (migration 0002). Names and paths follow every
journal entry (``on_entry``, called by ``journal.append`` in the mutation's own transaction); the
text of a new revision is read after its commit (``index_content``), streamed, at most
``search_text_max`` bytes, so a commit never waits on reading content. Trashed nodes keep their
rows (search filters on live nodes) so an undelete finds them again; purges drop them (``forget``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import paths
from server.services.context import Services
from server.storage.models import JournalEntry, Namespace, Node, Revision

log = logging.getLogger(__name__)
_NOT_WORD = re.compile(r"[\W_]+")


def words(raw: str) -> str:
    """Lowercase words separated by single spaces: 'Q3_Report-final.PDF' -> 'q3 report final pdf'."""
    return _NOT_WORD.sub(" ", raw.lower()).strip()


def _sqlite(s: AsyncSession) -> bool:
    return s.get_bind().dialect.name == "sqlite"


async def _upsert(s: AsyncSession, node_id: int, ns_id: int, path: str) -> None:
    name, folder = paths.name(path), paths.parent(path)
    if _sqlite(s):
        body = (await s.execute(text("SELECT body FROM search_fts WHERE rowid = :id"),
                                {"id": node_id})).scalar_one_or_none()
        await s.execute(text("DELETE FROM search_fts WHERE rowid = :id"), {"id": node_id})
        await s.execute(text("INSERT INTO search_fts (rowid, ns, name, path, body) "
                             "VALUES (:id, :ns, :name, :path, :body)"),
                        {"id": node_id, "ns": ns_id, "name": name, "path": folder, "body": body or ""})
    else:
        await s.execute(text("INSERT INTO search_docs (node_id, ns_id, name, path) VALUES (:id, :ns, :name, :path) "
                             "ON CONFLICT (node_id) DO UPDATE SET ns_id = :ns, name = :name, path = :path"),
                        {"id": node_id, "ns": ns_id, "name": words(name), "path": words(folder)})


async def _set_body(s: AsyncSession, node_id: int, body: str) -> None:
    if _sqlite(s):
        await s.execute(text("UPDATE search_fts SET body = :b WHERE rowid = :id"), {"b": body, "id": node_id})
    else:
        await s.execute(text("UPDATE search_docs SET body = :b WHERE node_id = :id"),
                        {"b": words(body), "id": node_id})


async def on_entry(s: AsyncSession, e: JournalEntry) -> None:
    if e.op in ("create", "mkdir"):
        await _upsert(s, e.node_id, e.ns_id, e.path)
    elif e.op == "modify":
        # The old text no longer describes the file: dropped in the commit's own transaction, so
        # index_content only writes when the new revision has text to index.
        await _set_body(s, e.node_id, "")
    elif e.op == "move":
        await _upsert(s, e.node_id, e.ns_id, e.path)
        if e.kind == "dir":  # everything below moved too (tree.move rewrote their paths already)
            from server.services.tree import live

            lo, hi = paths.descendant_range(e.path)
            col = Node.path if _sqlite(s) else Node.path.collate("C")
            below = (await s.execute(select(Node.id, Node.path).where(
                live(e.ns_id), col >= lo, col < hi))).all()
            for node_id, path in below:
                await _upsert(s, node_id, e.ns_id, path)


async def on_entries(s: AsyncSession, entries: list[JournalEntry]) -> None:
    """``on_entry`` for many entries, creates and modifies in bulk (a few statements, not a few
    per entry). Each node appears once (the batch commit that calls this refuses repeats)."""
    created = [e for e in entries if e.op in ("create", "mkdir")]
    modified = [e for e in entries if e.op == "modify"]
    for e in entries:
        if e.op not in ("create", "mkdir", "modify"):
            await on_entry(s, e)
    if modified:
        if _sqlite(s):
            await s.execute(text("UPDATE search_fts SET body = '' WHERE rowid = :id"),
                            [{"id": e.node_id} for e in modified])
        else:
            await s.execute(text("UPDATE search_docs SET body = '' WHERE node_id = :id"),
                            [{"id": e.node_id} for e in modified])
    for i in range(0, len(created), 500):
        part = created[i:i + 500]
        if _sqlite(s):
            ids = {"ids": [e.node_id for e in part]}
            query = text("SELECT rowid, body FROM search_fts WHERE rowid IN :ids").bindparams(_expanding("ids"))
            kept: dict[int, str] = dict((await s.execute(query, ids)).tuples().all())
            await s.execute(text("DELETE FROM search_fts WHERE rowid IN :ids").bindparams(_expanding("ids")), ids)
            await s.execute(text("INSERT INTO search_fts (rowid, ns, name, path, body) "
                                 "VALUES (:id, :ns, :name, :path, :body)"),
                            [{"id": e.node_id, "ns": e.ns_id, "name": paths.name(e.path),
                              "path": paths.parent(e.path), "body": kept.get(e.node_id) or ""} for e in part])
        else:
            await s.execute(text("INSERT INTO search_docs (node_id, ns_id, name, path) VALUES (:id, :ns, :name, :path) "
                                 "ON CONFLICT (node_id) DO UPDATE SET ns_id = :ns, name = :name, path = :path"),
                            [{"id": e.node_id, "ns": e.ns_id, "name": words(paths.name(e.path)),
                              "path": words(paths.parent(e.path))} for e in part])


async def forget(s: AsyncSession, node_ids: Iterable[int]) -> None:
    ids = list(node_ids)
    for i in range(0, len(ids), 500):
        part = {"ids": ids[i:i + 500]}
        if _sqlite(s):
            await s.execute(text("DELETE FROM search_fts WHERE rowid IN :ids").bindparams(
                _expanding("ids")), part)
        else:
            await s.execute(text("DELETE FROM search_docs WHERE node_id IN :ids").bindparams(
                _expanding("ids")), part)


def _expanding(name: str) -> Any:
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)


async def _read_text(svc: Services, rev: Revision, owner_id: int) -> str | None:
    """The revision as text, or None when it is not UTF-8 text (a NUL, an invalid sequence)."""
    from server.services.downloads import revision_bytes

    buf = bytearray()
    async for piece in revision_bytes(svc, rev.id, owner_id, 0, rev.size):
        if b"\0" in piece:
            return None
        buf += piece
    return text_of(bytes(buf))


def text_of(data: bytes) -> str | None:
    """*data* as text, or None when it is not UTF-8 text (a NUL, an invalid sequence)."""
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


async def index_text(svc: Services, s: AsyncSession, node: Node, data: bytes) -> None:
    """Index the text of a revision whose bytes the caller holds (*data*, the whole file), inside
    the commit's own transaction: a batch of small commits pays no write per file afterwards."""
    await index_texts(svc, s, [(node, data)])


async def index_texts(svc: Services, s: AsyncSession, files: list[tuple[Node, bytes]]) -> None:
    """``index_text`` for many files (a batch commit): a few statements in all, not four per file."""
    texts = [(node, body) for node, data in files
             if 0 < len(data) <= svc.config.search_text_max and (body := text_of(data))]
    if not texts:
        return
    await _store_texts(s, texts)


async def _store_texts(s: AsyncSession, texts: list[tuple[Node, str]]) -> None:
    """Set the indexed text of each node: a few statements in all."""
    if _sqlite(s):
        for i in range(0, len(texts), 500):  # the journal made their rows; one made before it may lack its own
            part = texts[i:i + 500]
            query = text("SELECT rowid FROM search_fts WHERE rowid IN :ids").bindparams(_expanding("ids"))
            have = set((await s.execute(query, {"ids": [n.id for n, _ in part]})).scalars().all())
            lacking = [n for n, _ in part if n.id not in have]
            if lacking:
                await s.execute(text("INSERT INTO search_fts (rowid, ns, name, path, body) "
                                     "VALUES (:id, :ns, :name, :path, '')"),
                                [{"id": n.id, "ns": n.ns_id, "name": paths.name(n.path),
                                  "path": paths.parent(n.path)} for n in lacking])
        await s.execute(text("UPDATE search_fts SET body = :b WHERE rowid = :id"),
                        [{"b": body, "id": node.id} for node, body in texts])
    else:
        await s.execute(text("UPDATE search_docs SET body = :b WHERE node_id = :id"),
                        [{"b": words(body), "id": node.id} for node, body in texts])


async def index_content(svc: Services, node_id: int, rev_id: int | None) -> None:
    """Index the text of *rev_id* if it is a small text file and still the node's head. Never raises:
    a failure here leaves the file findable by name and path, and must not fail the commit."""
    try:
        async with svc.db.read() as s:
            rev = await s.get(Revision, rev_id) if rev_id is not None else None
            owner = (await s.execute(select(Namespace.owner_id).where(
                Namespace.id == rev.ns_id))).scalar_one() if rev is not None else None
        if rev is None or owner is None:
            return
        if not 0 < rev.size <= svc.config.search_text_max:
            return  # no text to index: spare every large or empty file's commit a second write
        body = await _read_text(svc, rev, owner)
        if not body:
            return
        async with svc.db.write() as s:
            node = await s.get(Node, node_id)
            if node is None or node.head_rev_id != rev_id:  # a newer commit indexes itself
                return
            await _store_texts(s, [(node, body)])
    except Exception:
        log.exception("indexing the text of node %s failed", node_id)
