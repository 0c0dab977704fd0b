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
import time
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from server.core import paths
from server.core.errors import ErrorCode, SatchelError
from server.services import journal, quota, refguard, search_index, tree, uploads
from server.services.access import Location, Perm
from server.services.context import Principal, Services
from server.storage.blobs.base import BlobKey
from server.storage.db import insert_returning, now_ms
from server.storage.models import Node, Revision, RevisionChunk

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
    t0 = time.perf_counter()
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
    t1 = time.perf_counter()
    await uploads.store_inline(svc, [p for _, p in ready])  # durable before any revision names them
    t2 = time.perf_counter()
    index_later: list[tuple[int, int | None]] = []
    t3 = t4 = t2
    async with svc.db.write() as s:
        t3 = time.perf_counter()
        await refguard.adding_references(s)  # before any owner's row (quota): no lock cycle
        await uploads.confirm_stored(svc, [BlobKey(p.loc.owner_id, d) for _, p in ready for d in p.inline])
        pushed = s.info.setdefault("journal", [])
        mark = len(pushed)
        written: list[tuple[int, dict[str, Any]]] | None = None
        try:
            async with s.begin_nested():
                written = await _bulk(svc, s, who, ready)
                if written is None:
                    raise _Unusual()
        except (_Unusual, IntegrityError):
            del pushed[mark:]
            written = None
        if written is not None:
            for i, result in written:
                results[i] = result
        else:
            await _one_by_one(svc, s, who, ready, results, index_later)
        t4 = time.perf_counter()
    t5 = time.perf_counter()
    for node_id, rev_id in index_later:
        await search_index.index_content(svc, node_id, rev_id)
    done = sum(1 for r in results if "entry" in r)
    log.info("commit_batch: %d items, %d committed in %.3f s (checks %.3f s, chunks stored and synced %.3f s, "
             "waiting for the writer's turn %.3f s, rows %.3f s, commit %.3f s)", len(items), done,
             time.perf_counter() - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
    return results


class _Unusual(Exception):
    """The batch needs the item-by-item path (see ``_bulk``)."""


async def _one_by_one(svc: Services, s: AsyncSession, who: Principal, ready: list[tuple[int, uploads.Prepared]],
                      results: list[dict[str, Any]], index_later: list[tuple[int, int | None]]) -> None:
    """Each item in its own savepoint: a refusal rolls back that item alone."""
    pushed = s.info.setdefault("journal", [])
    for i, p in ready:
        mark = len(pushed)
        data: bytes | None = None
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


async def _bulk(svc: Services, s: AsyncSession, who: Principal, ready: list[tuple[int, uploads.Prepared]]
                ) -> list[tuple[int, dict[str, Any]]] | None:
    """The usual batch (new small files and edits in one namespace, sent whole) written with a few
    statements in all instead of ~20 per file: per-statement round trips to the database were
    ~90 % of a batch's time. None when the batch is unusual (several namespaces, a repeated path,
    chunks named by hash, a file where a folder must be, over quota): the caller rolls back and
    goes item by item, which gives the same results."""
    if len({p.loc.ns_id for _, p in ready}) != 1 or any(p.rest for _, p in ready):
        return None
    wanted = [p.loc.path for _, p in ready]
    if len(set(wanted)) != len(wanted):
        return None
    ns_id, owner_id = ready[0][1].loc.ns_id, ready[0][1].loc.owner_id
    nodes: dict[str, Node] = {}
    for k in range(0, len(wanted), 500):
        found = await s.execute(select(Node).where(tree.live(ns_id), Node.path.in_(wanted[k:k + 500])))
        nodes.update((n.path, n) for n in found.scalars())
    out: list[tuple[int, dict[str, Any]]] = []
    accepted: list[tuple[int, uploads.Prepared, Node | None]] = []
    for i, p in ready:
        node = nodes.get(p.loc.path)
        head = node.head_rev_id if node else None
        if node is not None and node.kind == "dir":
            out.append((i, error_result(SatchelError(ErrorCode.is_a_directory, f"{p.loc.path} is a folder",
                                                     path=p.loc.path))))
        elif head != p.new.parent_rev_id:
            out.append((i, error_result(SatchelError(ErrorCode.conflict, "the file changed since the revision "
                                                     "you edited", path=p.loc.path, head_rev=head,
                                                     parent_rev=p.new.parent_rev_id))))
        else:
            accepted.append((i, p, node))
    if not accepted:
        return out
    folders = sorted({paths.parent(p.loc.path) for _, p, _ in accepted} - {paths.ROOT})
    kinds: dict[str, str] = {}
    for k in range(0, len(folders), 500):
        kinds.update((await s.execute(select(Node.path, Node.kind).where(
            tree.live(ns_id), Node.path.in_(folders[k:k + 500])))).tuples().all())
    if any(kind != "dir" for kind in kinds.values()):
        return None
    try:
        await quota.charge(s, owner_id, sum(p.new.size - (n.size if n else 0) for _, p, n in accepted))
        for folder in folders:
            if folder not in kinds:
                await tree.ensure_dir(s, who, ns_id, folder)
    except SatchelError as exc:
        if exc.code in (ErrorCode.quota_exceeded, ErrorCode.not_a_directory):
            return None  # item by item: which items fit, which folder is in the way
        raise
    now = now_ms()
    new_chunks = {d: len(b) for _, p, _ in accepted for d, b in p.inline.items()}
    await uploads.record_chunks(s, owner_id, list(new_chunks.items()), now)
    # New nodes and their revisions are inserted in one statement each (see insert_returning),
    # and every node's head is set by one UPDATE. The Node objects of new files stay out of the
    # session: they only describe the answer (a rolled-back savepoint leaves nothing behind).
    fresh = [p for _, p, node in accepted if node is None]
    made = {row.path: row.id for row in await insert_returning(s, Node, [
        {"ns_id": ns_id, "path": p.loc.path, "parent_path": paths.parent(p.loc.path), "kind": "file",
         "size": 0, "mtime_ms": p.new.mtime_ms, "created_ms": now, "updated_ms": now} for p in fresh],
        Node.id, Node.path)}
    placed: list[tuple[int, uploads.Prepared, Node, bool]] = []
    for i, p, node in accepted:
        if node is None:
            placed.append((i, p, Node(id=made[p.loc.path], ns_id=ns_id, path=p.loc.path,
                                      parent_path=paths.parent(p.loc.path), kind="file", created_ms=now,
                                      deleted_ms=None, trash_root_id=None), True))
        else:
            placed.append((i, p, node, False))
    rev_of = {row.node_id: row.id for row in await insert_returning(s, Revision, [
        {"node_id": node.id, "ns_id": ns_id, "parent_rev_id": p.new.parent_rev_id, "size": p.new.size,
         "content_hash": p.new.content_hash, "chunk_count": p.new.chunk_count, "mime": p.new.mime,
         "mtime_ms": p.new.mtime_ms, "user_id": who.user_id, "device_id": who.device_id, "created_ms": now}
        for _, p, node, _ in placed], Revision.id, Revision.node_id)}
    revs = [rev_of[node.id] for _, _, node, _ in placed]
    rows: list[dict[str, Any]] = []
    for (_, p, _, _), rev in zip(placed, revs, strict=True):
        offset = 0
        for idx, (digest, n) in enumerate(p.chunks):
            rows.append({"rev_id": rev, "idx": idx, "offset": offset, "size": n, "hash": digest})
            offset += n
    for k in range(0, len(rows), uploads.INSERT_BATCH):
        await s.execute(insert(RevisionChunk), rows[k:k + uploads.INSERT_BATCH])
    # Bound as v_<column>: an UPDATE may not bind a parameter under a column's own name.
    heads: list[dict[str, Any]] = [
        {"size": p.new.size, "content_hash": p.new.content_hash, "mime": p.new.mime, "mtime_ms": p.new.mtime_ms,
         "head_rev_id": rev, "updated_ms": now} for (_, p, _, _), rev in zip(placed, revs, strict=True)]
    node_rows = cast(Table, Node.__table__)
    await s.execute(update(node_rows).where(node_rows.c.id == bindparam("v_id")).values(
        {name: bindparam(f"v_{name}") for name in heads[0]}),
        [{"v_id": node.id, **{f"v_{name}": v for name, v in now_set.items()}} for (_, _, node, _), now_set in
         zip(placed, heads, strict=True)])
    for (_, _, node, _), now_set in zip(placed, heads, strict=True):  # the objects say what the rows say now
        for name, v in now_set.items():
            set_committed_value(node, name, v)
    await journal.append_many(s, ns_id, [
        {"op": "create" if created else "modify", "kind": "file", "node_id": node.id, "path": p.loc.path,
         "rev_id": rev, "parent_rev_id": p.new.parent_rev_id, "size": p.new.size,
         "content_hash": p.new.content_hash, "user_id": who.user_id, "device_id": who.device_id}
        for (_, p, node, created), rev in zip(placed, revs, strict=True)])
    await s.flush()
    await search_index.index_texts(svc, s, [(node, data) for _, p, node, _ in placed
                                            if (data := _whole(p)) is not None])
    out.extend((i, {"entry": tree.shown(who, node)}) for i, _, node, _ in placed)
    log.debug("commit_batch: %d files in bulk", len(placed))
    return out


async def fetch(svc: Services, who: Principal, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Read small files (``body["items"]``: ``{path, rev?}``): one result per item, in order, with
    the bytes (``data``) or an error. Past FETCH_BYTES in all, items are answered ``too_large``
    and the client fetches them in another request. Nodes, revisions and chunk lists are read
    with a few queries for the whole batch."""
    items = _items(body)
    results: list[dict[str, Any]] = [{} for _ in items]
    wanted: list[tuple[int, Location, int | None]] = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise SatchelError(ErrorCode.bad_request, "each item is a map {path, rev?}")
            loc = tree.locate(who, item.get("path"), need=Perm.READ)
            wanted.append((i, loc, uploads.int_field(item, "rev", required=False, maximum=2**31 - 1)))
        except SatchelError as exc:
            results[i] = error_result(exc)
    found: list[tuple[int, Revision, int]] = []  # (index, revision, owner)
    lists: dict[int, list[tuple[bytes, int]]] = {}
    budget = FETCH_BYTES
    async with svc.db.read() as s:
        nodes: dict[tuple[int, str], Node] = {}
        by_ns: dict[int, list[str]] = {}
        for _, loc, _ in wanted:
            by_ns.setdefault(loc.ns_id, []).append(loc.path)
        for ns_id, inner in by_ns.items():
            for k in range(0, len(inner), 500):
                got = await s.execute(select(Node).where(tree.live(ns_id), Node.path.in_(inner[k:k + 500])))
                nodes.update(((ns_id, n.path), n) for n in got.scalars())
        rev_ids: list[int] = []
        for _, loc, r in wanted:
            n = nodes.get((loc.ns_id, loc.path))
            chosen_rev = r if r is not None else (n.head_rev_id if n is not None else None)
            if chosen_rev is not None:
                rev_ids.append(chosen_rev)
        rev_ids = sorted(set(rev_ids))
        revs: dict[int, Revision] = {}
        for k in range(0, len(rev_ids), 500):
            got_revs = await s.execute(select(Revision).where(Revision.id.in_(rev_ids[k:k + 500])))
            revs.update((r.id, r) for r in got_revs.scalars())
        for i, loc, rev_id in wanted:
            try:
                node = nodes.get((loc.ns_id, loc.path))
                if node is None:
                    raise SatchelError(ErrorCode.not_found, "no such file", path=loc.outside(loc.path))
                if node.kind != "file" or node.head_rev_id is None:
                    raise SatchelError(ErrorCode.is_a_directory, "this is a folder", path=loc.outside(loc.path))
                rev = revs.get(rev_id if rev_id is not None else node.head_rev_id)
                if rev is None or rev.node_id != node.id:
                    raise SatchelError(ErrorCode.not_found, "no such revision of this file")
                if rev.size > min(budget, FETCH_FILE_MAX):
                    raise SatchelError(ErrorCode.too_large, "fetch this file over HTTP or in another batch",
                                       size=rev.size, limit=min(budget, FETCH_FILE_MAX))
                budget -= rev.size
                results[i] = {"path": loc.outside(node.path), "id": node.id, "rev": rev.id, "size": rev.size,
                              "content_hash": rev.content_hash, "mtime": rev.mtime_ms}
                found.append((i, rev, loc.owner_id))
            except SatchelError as exc:
                results[i] = error_result(exc)
        chosen = sorted({rev.id for _, rev, _ in found})
        for k in range(0, len(chosen), 500):
            got_chunks = await s.execute(select(RevisionChunk.rev_id, RevisionChunk.hash, RevisionChunk.size)
                                         .where(RevisionChunk.rev_id.in_(chosen[k:k + 500]))
                                         .order_by(RevisionChunk.rev_id, RevisionChunk.idx))
            for rid, digest, size in got_chunks.tuples():
                lists.setdefault(int(rid), []).append((bytes(digest), int(size)))
    for i, rev, owner in found:
        parts = [b"".join([piece async for piece in svc.blobs.read(BlobKey(owner, digest), 0, size)])
                 for digest, size in lists.get(rev.id, [])]
        results[i]["data"] = b"".join(parts)
    return results
