"""The remote tree, kept from the change journal.

First run: take a cursor for "now", list the whole tree, then replay the journal from that cursor
(entries already reflected by the listing are applied harmlessly: moves and deletes only act on the
node id they name). Afterwards each pull reads ``GET /api/v1/changes`` from the stored cursor; the
tree and the cursor it reflects are committed together, page by page.
"""

from __future__ import annotations

import logging
from typing import Any

from python_client.api import SatchelClient
from python_client.sync.model import DIR, FILE, RemoteNode
from python_client.sync.state import State
from server.core.errors import ErrorCode, SatchelError

log = logging.getLogger(__name__)
PAGE = 1000


def _node(e: dict[str, Any]) -> RemoteNode:
    if e["kind"] == DIR:
        return RemoteNode(DIR, int(e["id"]))
    return RemoteNode(FILE, int(e["id"]), e.get("rev"), int(e.get("size") or 0), e.get("content_hash"))


def apply(state: State, e: dict[str, Any]) -> None:
    """Apply one journal entry to the remote tree."""
    op, path, node_id = e["op"], e["path"], int(e["id"])
    if op in ("create", "modify", "mkdir"):
        state.put_remote(path, _node(e))
    elif op == "move":
        cur = state.remote.get(e["old_path"])
        if cur is not None and cur.node_id == node_id:
            state.move_remote(e["old_path"], path)
        if e["kind"] == FILE or path not in state.remote:
            state.put_remote(path, _node(e))
    elif op == "delete":
        cur = state.remote.get(path)
        if cur is not None and cur.node_id == node_id:
            state.drop_remote(path)


async def _list_all(client: SatchelClient, state: State) -> None:
    state.clear_remote()
    folders = ["/"]
    while folders:
        folder = folders.pop()
        for e in await client.list(folder):
            state.put_remote(e["path"], _node(e))
            if e["kind"] == DIR:
                folders.append(e["path"])


async def pull(client: SatchelClient, state: State) -> int:
    """Bring the remote tree up to the journal's head; returns the number of entries applied."""
    cursor = state.get("cursor")
    if cursor is None:
        ns = state.get("ns")
        if ns is None:
            ns = (await client.account())["root_namespace"]
            state.set("ns", ns)
        cursor = (await client.request("GET", "/api/v1/changes/latest", params={"ns": ns}))["cursor"]
        await _list_all(client, state)
        state.set("cursor", cursor)
        state.commit()
    applied = 0
    while True:
        try:
            page = await client.request("GET", "/api/v1/changes", params={"cursor": cursor, "limit": PAGE})
        except SatchelError as exc:
            if exc.code not in (ErrorCode.bad_cursor, ErrorCode.cursor_expired):
                raise
            log.warning("the journal cannot resume from %s (%s): listing the whole tree", cursor, exc.code.value)
            state.set("cursor", None)
            state.commit()
            return applied + await pull(client, state)
        for e in page["entries"]:
            apply(state, e)
        applied += len(page["entries"])
        cursor = page["cursor"]
        state.set("cursor", cursor)
        state.commit()
        if not page["has_more"]:
            return applied
