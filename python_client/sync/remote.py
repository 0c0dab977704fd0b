"""The remote tree, kept from the change journals: the user's root namespace and every shared
folder mounted in it (protocol.md, "Sharing"), in one tree of the user's own paths.

First run: take a cursor for "now", list the whole tree, then replay the journal from that cursor
(entries already reflected by the listing are applied harmlessly: moves and deletes only act on the
node id they name). Afterwards each pull reads ``GET /api/v1/changes`` from the stored cursor; the
tree and the cursor it reflects are committed together, page by page.

Mounts: the root journal says when a shared folder is mounted (``mount``), moved (``move`` of kind
``mount``) or removed (``unmount``). Each mount keeps its own cursor in the mount table (meta
``mounts``: ns -> {path, cursor}) and is listed the same way when first seen; its entries carry
paths inside the shared namespace, prefixed here with the mount's path. The mount point itself is
a folder node whose id is ``-ns`` (mounts have no node id; node ids are positive), so the planner
sees a moved mount as a move. A shared file is mounted as the file itself: its row in the mount
table has ``file: true`` (learnt from listing the mount: one entry, at the mount's own path), the
remote node at the mount point is the file, and every entry of its namespace is about that file.
A removed mount stops syncing but its files stay on disk: the path goes to the ``detached`` list,
which the sync leaves alone (``detached_paths``).
"""

from __future__ import annotations

import logging
from typing import Any

from python_client.api import SatchelClient
from python_client.sync.model import DIR, FILE, RemoteNode
from python_client.sync.state import State
from server.core import paths
from server.core.errors import ErrorCode, SatchelError

log = logging.getLogger(__name__)
PAGE = 1000
RESTART = (ErrorCode.bad_cursor, ErrorCode.cursor_expired)
GONE = (ErrorCode.not_found, ErrorCode.forbidden, ErrorCode.bad_cursor)  # a mount we may no longer read


def _node(e: dict[str, Any]) -> RemoteNode:
    if e["kind"] == DIR:
        return RemoteNode(DIR, int(e["id"]))
    return RemoteNode(FILE, int(e["id"]), e.get("rev"), int(e.get("size") or 0), e.get("content_hash"))


def mount_node(ns: int) -> RemoteNode:
    return RemoteNode(DIR, -ns)


def _outside(mount: str, inner: str, file: bool = False) -> str:
    if file:  # a shared file's namespace holds only that file: it is the mount point
        return mount
    return mount if inner == paths.ROOT else mount.rstrip("/") + inner


# -- the mount table and the detached list (in the state's meta)
def mounts(state: State) -> dict[int, dict[str, Any]]:
    """ns -> {"path": the mount's path in the user's tree, "cursor": its journal cursor or None}."""
    return {int(k): v for k, v in (state.get("mounts") or {}).items()}


def _save_mounts(state: State, table: dict[int, dict[str, Any]]) -> None:
    state.set("mounts", {str(k): v for k, v in table.items()})


def detached_paths(state: State) -> list[str]:
    """Folders of shared folders the user lost: kept on disk, no longer synced."""
    return list(state.get("detached") or [])


def set_detached(state: State, folders: list[str]) -> None:
    state.set("detached", sorted(set(folders)))


def _attach(state: State, ns: int, path: str, entry: dict[str, Any] | None = None) -> None:
    """Mount *ns* at *path*; *entry* is its listing entry when known (a shared file's is the file)."""
    table = mounts(state)
    known = table.get(ns)
    file = entry is not None and entry["kind"] == FILE
    if known is not None and known["path"] == path and (
            state.remote.get(path) == mount_node(ns) or (known.get("file") and path in state.remote)):
        return  # a replayed entry: already mounted there
    state.drop_remote(path)  # the owner's own folder (or file) becomes the mount of the new namespace
    state.put_remote(path, _node(entry) if file and entry is not None else mount_node(ns))
    # listed in full by the next pull of mounts (which learns whether it is a file, if not known yet)
    table[ns] = {"path": path, "cursor": None} | ({"file": True} if file else {})
    _save_mounts(state, table)
    set_detached(state, [d for d in detached_paths(state) if not paths.is_within(d, path)])


def _detach(state: State, ns: int) -> None:
    """The mount is gone (removed, left, or no longer readable): stop syncing it, keep its files."""
    table = mounts(state)
    m = table.pop(ns, None)
    _save_mounts(state, table)
    if m is None:
        return
    path = m["path"]
    had = any(paths.is_within(p, path) for p in state.synced)
    cur = state.remote.get(path)
    if cur == mount_node(ns) or (m.get("file") and cur is not None and cur.kind == FILE):
        state.drop_remote(path)  # (not something listed there since)
    state.drop_synced(path)
    for p in [p for p in state.blocked if paths.is_within(p, path)]:
        state.unblock(p)
    if had:
        log.warning("%s is no longer shared with you: its files stay on this device, no longer synced", path)
        set_detached(state, [*detached_paths(state), path])


def _move_mount(state: State, ns: int, old: str, new: str) -> None:
    cur = state.remote.get(old)
    table = mounts(state)
    file = bool(table.get(ns, {}).get("file"))
    if cur == mount_node(ns) or (file and cur is not None and cur.kind == FILE):
        state.move_remote(old, new)
    elif file:
        if new not in state.remote and ns in table:  # not carried there by a folder move: list it again
            table[ns]["cursor"] = None
    elif state.remote.get(new) != mount_node(ns):  # not carried there by a folder move already
        state.drop_remote(new)
        state.put_remote(new, mount_node(ns))
    if ns in table:
        table[ns]["path"] = new
        _save_mounts(state, table)


# -- applying entries
def apply(state: State, e: dict[str, Any], mount: str = paths.ROOT, file: bool = False) -> None:
    """Apply one journal entry to the remote tree; *mount* is where its namespace is mounted
    (*file*: a shared file's namespace, mounted as the file)."""
    if e["kind"] == "member":
        return  # membership of a shared folder: nothing in the tree changes
    if e["kind"] == "mount":
        ns = int(e["id"])
        if e["op"] == "mount":
            _attach(state, ns, e["path"])
        elif e["op"] == "move":
            _move_mount(state, ns, e["old_path"], e["path"])
        elif e["op"] == "unmount":
            _detach(state, ns)
        return
    op, path, node_id = e["op"], _outside(mount, e["path"], file), int(e["id"])
    if op in ("create", "modify", "mkdir"):
        state.put_remote(path, _node(e))
    elif op == "move":
        old = _outside(mount, e["old_path"], file)
        cur = state.remote.get(old)
        if cur is not None and cur.node_id == node_id:
            state.move_remote(old, path)
        if e["kind"] == FILE or path not in state.remote:
            state.put_remote(path, _node(e))
    elif op == "delete":
        cur = state.remote.get(path)
        if cur is not None and cur.node_id == node_id:
            state.drop_remote(path)


async def _list_below(client: SatchelClient, state: State, top: str,
                      first: list[dict[str, Any]] | None = None) -> None:
    """Put everything below *top* into the remote tree; mounts found are attached, not descended.
    *first*: the listing of *top*, when the caller has it already."""
    folders = [top]
    while folders:
        folder = folders.pop()
        for e in first if first is not None and folder == top else await client.list(folder):
            share = e.get("share")
            if share is not None:
                _attach(state, int(share["ns"]), e["path"], e)
            else:
                state.put_remote(e["path"], _node(e))
                if e["kind"] == DIR:
                    folders.append(e["path"])


async def _latest(client: SatchelClient, ns: int) -> str:
    cursor: str = (await client.request("GET", "/api/v1/changes/latest", params={"ns": ns}))["cursor"]
    return cursor


async def _pages(client: SatchelClient, cursor: str) -> Any:
    while True:
        page = await client.request("GET", "/api/v1/changes", params={"cursor": cursor, "limit": PAGE})
        yield page
        cursor = page["cursor"]
        if not page["has_more"]:
            return


async def _pull_root(client: SatchelClient, state: State) -> int:
    cursor = state.get("cursor")
    if cursor is None:
        ns = state.get("ns")
        if ns is None:
            ns = (await client.account())["root_namespace"]
            state.set("ns", ns)
        cursor = await _latest(client, ns)
        before = mounts(state)
        state.clear_remote()
        _save_mounts(state, {})
        await _list_below(client, state, paths.ROOT)
        for gone in set(before) - set(mounts(state)):  # lost while we were not following the journal
            _save_mounts(state, {**mounts(state), gone: before[gone]})
            _detach(state, gone)
        state.set("cursor", cursor)
        state.commit()
    applied = 0
    try:
        async for page in _pages(client, cursor):
            for e in page["entries"]:
                apply(state, e)
            applied += len(page["entries"])
            state.set("cursor", page["cursor"])
            state.commit()
    except SatchelError as exc:
        if exc.code not in RESTART:
            raise
        log.warning("the journal cannot resume from %s (%s): listing the whole tree", cursor, exc.code.value)
        state.set("cursor", None)
        state.commit()
        return applied + await _pull_root(client, state)
    return applied


async def _pull_mount(client: SatchelClient, state: State, ns: int) -> int:
    m = mounts(state).get(ns)
    if m is None:
        return 0
    try:
        cursor = m["cursor"]
        if cursor is None:
            cursor = await _latest(client, ns)
            state.drop_remote(m["path"])
            top = await client.list(m["path"])
            file = len(top) == 1 and top[0]["path"] == m["path"] and top[0]["kind"] == FILE
            if file:  # a shared file: the listing is the file itself
                state.put_remote(m["path"], _node(top[0]))
            else:
                state.put_remote(m["path"], mount_node(ns))
                await _list_below(client, state, m["path"], top)
            m = {"path": m["path"], "cursor": cursor} | ({"file": True} if file else {})
            _save_mounts(state, {**mounts(state), ns: m})
            state.commit()
        applied = 0
        async for page in _pages(client, cursor):
            for e in page["entries"]:
                apply(state, e, m["path"], bool(m.get("file")))
            applied += len(page["entries"])
            m = {**m, "cursor": page["cursor"]}
            _save_mounts(state, {**mounts(state), ns: m})
            state.commit()
        return applied
    except SatchelError as exc:
        if exc.code not in GONE + RESTART:
            raise
        if any(s["ns"] == ns for s in await client.shares()):
            log.warning("the journal of %s cannot resume (%s): listing it again", m["path"], exc.code.value)
            _save_mounts(state, {**mounts(state), ns: {**m, "cursor": None}})
            state.commit()
            return await _pull_mount(client, state, ns)
        _detach(state, ns)  # access ended before the root journal told us
        state.commit()
        return 0


async def pull(client: SatchelClient, state: State) -> int:
    """Bring the remote tree up to the journals' heads (the root namespace's first: it says which
    shared folders are mounted where); returns the number of entries applied."""
    applied = await _pull_root(client, state)
    for ns in sorted(mounts(state)):
        applied += await _pull_mount(client, state, ns)
    return applied
