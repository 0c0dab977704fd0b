"""Batches of small files over the WebSocket: many commits in one transaction (``commit_batch``)
and many small files read in one reply (``fetch``). protocol.md, "Batches".

A sync client starting on a folder of a thousand small files would otherwise pay a round trip,
a transaction and an fsync (plus the chunk store's ``syncfs``) per file: ~65 ms each here.

``commit_batch``: every item is checked on its own (authorization through ``tree.locate``, its
fields, its chunks); the items that pass are written in ONE write transaction, each inside a
savepoint, after ONE ``sync`` of every inline chunk. An item the transaction refuses (its parent
is not the head: ``conflict``; quota; a folder in the way) rolls back to its savepoint alone and
is answered with its error; the others commit together. So an acknowledged item is as durable as
a single ``commit`` (the reply is sent after the transaction commits), and a refused one changed
nothing: its writer still holds its bytes and resolves the conflict as for a single commit.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from server.core.errors import ErrorCode, SatchelError
from server.services import refguard, search_index, tree, uploads
from server.services.access import Perm
from server.services.context import Principal, Services
from server.storage.blobs.base import BlobKey
from server.storage.models import Revision, RevisionChunk

log = logging.getLogger(__name__)
MAX_ITEMS = 1000  # items in one commit_batch or fetch
FETCH_BYTES = 640 * 1024  # file bytes one fetch reply carries (the reply stays under MAX_FRAME)
FETCH_FILE_MAX = 192 * 1024  # larger files are downloaded over HTTP (chunk lists, ranges)


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if isinstance(v, str | int | float | bool | list | None)}


def error_result(exc: SatchelError) -> dict[str, Any]:
    return {"error": {"code": exc.code.value, "message": exc.message, **_plain(exc.details)}}


def _items(body: dict[str, Any]) -> list[Any]:
    items = body.get("items")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_ITEMS:
        raise SatchelError(ErrorCode.bad_request, f"'items' must be a list of 1 to {MAX_ITEMS} items",
                           field="items", limit=MAX_ITEMS)
    return items


def _whole(p: uploads.Prepared) -> bytes | None:
    """The file's bytes when every chunk travelled inline (a new small file), else None."""
    if not all(d in p.inline for d, _ in p.chunks):
        return None
    return b"".join(p.inline[d] for d, _ in p.chunks)


async def commit_batch(svc: Services, who: Principal, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Commit every item of ``body["items"]`` (each a ``commit`` body); one result per item, in
    order: ``{"entry": ...}`` or ``{"error": {code, message, ...}}``."""
    items = _items(body)
    results: list[dict[str, Any]] = [{} for _ in items]
    ready: list[tuple[int, uploads.Prepared]] = []
    for i, item in enumerate(items):
        try:
            ready.append((i, await uploads.prepare_ops(svc, who, item)))
        except SatchelError as exc:
            results[i] = error_result(exc)
    if not ready:
        return results
    await uploads.store_inline(svc, [p for _, p in ready])  # durable before any revision names them
    index_later: list[tuple[int, int | None]] = []
    async with svc.db.write() as s:
        await refguard.adding_references(s)  # before any owner's row (quota): no lock cycle
        for i, p in ready:
            pushed = s.info.setdefault("journal", [])
            mark = len(pushed)
            try:
                async with s.begin_nested():
                    node = await uploads.write_prepared(s, who, p)
                    data = _whole(p)
                    if data is not None:
                        await search_index.index_text(svc, s, node, data)
                    results[i] = {"entry": tree.shown(who, node)}
                if data is None:
                    index_later.append((node.id, node.head_rev_id))
            except SatchelError as exc:
                del pushed[mark:]  # rolled back: its journal entry is never announced
                results[i] = error_result(exc)
            except IntegrityError:  # a unique constraint caught a concurrent create (PostgreSQL)
                del pushed[mark:]
                results[i] = error_result(SatchelError(ErrorCode.conflict, "a concurrent change got there first"))
    for node_id, rev_id in index_later:
        await search_index.index_content(svc, node_id, rev_id)
    done = sum(1 for r in results if "entry" in r)
    log.info("commit_batch: %d items, %d committed", len(items), done)
    return results


async def fetch(svc: Services, who: Principal, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Read small files (``body["items"]``: ``{path, rev?}``): one result per item, in order, with
    the bytes (``data``) or an error. Past FETCH_BYTES in all, items are answered ``too_large``
    and the client fetches them in another request."""
    items = _items(body)
    results: list[dict[str, Any]] = [{} for _ in items]
    found: list[tuple[int, Any, Revision, int]] = []  # (index, location, revision, owner)
    budget = FETCH_BYTES
    async with svc.db.read() as s:
        for i, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise SatchelError(ErrorCode.bad_request, "each item is a map {path, rev?}")
                loc = tree.locate(who, item.get("path"), need=Perm.READ)
                rev_id = uploads.int_field(item, "rev", required=False, maximum=2**31 - 1)
                node = await tree.get_node(s, loc.ns_id, loc.path)
                if node is None:
                    raise SatchelError(ErrorCode.not_found, "no such file", path=loc.outside(loc.path))
                if node.kind != "file" or node.head_rev_id is None:
                    raise SatchelError(ErrorCode.is_a_directory, "this is a folder", path=loc.outside(loc.path))
                rev = await s.get(Revision, rev_id if rev_id is not None else node.head_rev_id)
                if rev is None or rev.node_id != node.id:
                    raise SatchelError(ErrorCode.not_found, "no such revision of this file")
                if rev.size > min(budget, FETCH_FILE_MAX):
                    raise SatchelError(ErrorCode.too_large, "fetch this file over HTTP or in another batch",
                                       size=rev.size, limit=min(budget, FETCH_FILE_MAX))
                budget -= rev.size
                results[i] = {"path": loc.outside(node.path), "id": node.id, "rev": rev.id, "size": rev.size,
                              "content_hash": rev.content_hash, "mtime": rev.mtime_ms}
                found.append((i, loc, rev, loc.owner_id))
            except SatchelError as exc:
                results[i] = error_result(exc)
        lists: dict[int, list[tuple[bytes, int]]] = {}
        rev_ids = [rev.id for _, _, rev, _ in found]
        for k in range(0, len(rev_ids), 500):
            rows = await s.execute(select(RevisionChunk.rev_id, RevisionChunk.hash, RevisionChunk.size)
                                   .where(RevisionChunk.rev_id.in_(rev_ids[k:k + 500]))
                                   .order_by(RevisionChunk.rev_id, RevisionChunk.idx))
            for rid, digest, size in rows.all():
                lists.setdefault(int(rid), []).append((bytes(digest), int(size)))
    for i, _loc, rev, owner in found:
        parts = [b"".join([piece async for piece in svc.blobs.read(BlobKey(owner, digest), 0, size)])
                 for digest, size in lists.get(rev.id, [])]
        results[i]["data"] = b"".join(parts)
    return results
