"""``satchel status``: per path, whether it is up to date, waiting to upload, waiting to download
(the server has a newer revision: "stale"), in conflict, or blocked. Computed by the same planner
the daemon runs, on an in-memory copy of the state brought up to the server's journal head (or,
offline, as of the last sync), so it never disturbs a running daemon."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from python_client.api import SatchelClient
from python_client.sync.engine import LOST_SHARE, case_insensitive, mount_points, views
from python_client.sync.model import DIR, Op
from python_client.sync.planner import plan
from python_client.sync.remote import pull
from python_client.sync.scanner import local_path
from python_client.sync.state import State

UP_TO_DATE, UPLOAD, DOWNLOAD, CONFLICT, BLOCKED, NOT_SYNCED = (
    "up to date", "waiting to upload", "waiting to download", "conflict", "blocked", "not synced")
_STATE_OF = {Op.conflict_rename: CONFLICT, Op.move_remote: UPLOAD, Op.mkdir_remote: UPLOAD, Op.upload: UPLOAD,
             Op.delete_remote: UPLOAD, Op.move_local: DOWNLOAD, Op.mkdir_local: DOWNLOAD, Op.download: DOWNLOAD,
             Op.trash_local: DOWNLOAD}
_DETAIL = {Op.move_remote: "move", Op.move_local: "move", Op.delete_remote: "delete", Op.trash_local: "delete",
           Op.conflict_rename: "edited on both sides"}


@dataclass(frozen=True)
class PathStatus:
    path: str
    kind: str
    state: str
    detail: str = ""


@dataclass
class FolderStatus:
    online: bool
    paths: list[PathStatus]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.paths:
            out[p.state] = out.get(p.state, 0) + 1
        return out


async def folder_status(client: SatchelClient, root: Path, excludes: list[str] | None = None) -> FolderStatus:
    state = State.snapshot(root)
    try:
        online = True
        try:
            await pull(client, state)
        except httpx.TransportError:
            online = False
        stored = state.get("excludes") or []
        found, remote, synced, skip = await asyncio.to_thread(
            views, state, root, excludes if excludes is not None else stored, 0.0, case_insensitive(root))
        actions = plan(remote, found.local, synced, device="status", day="0000-00-00", skip=skip,
                       mounts=mount_points(state))
        out: dict[str, PathStatus] = {}
        for p in sorted(set(remote) | set(found.local)):
            kind = (found.local.get(p) or remote[p]).kind
            out[p] = PathStatus(p, kind, UP_TO_DATE)
        for a in actions:
            st = _STATE_OF.get(a.op)
            if st is None:
                continue
            node = a.local or a.remote or found.local.get(a.path) or synced.get(a.path) or remote.get(a.path)
            detail = _DETAIL.get(a.op, "")
            if a.dest and a.op is not Op.conflict_rename:
                detail += f" to {a.dest}"
            out[a.path] = PathStatus(a.path, node.kind if node else "file", st, detail.strip())
        for p in found.busy:
            out[p] = PathStatus(p, "file", UPLOAD, "being written")
        now = time.time()
        for p, b in state.blocked.items():
            if b.holds(found.local.get(p), now):
                out[p] = PathStatus(p, out[p].kind if p in out else "file", BLOCKED, f"{b.code}: {b.message}")
        for p, why in found.problems.items():
            folder = (why == LOST_SHARE and local_path(root, p).is_dir()) or why.startswith("cannot read the folder")
            out[p] = PathStatus(p, DIR if folder else "file", NOT_SYNCED, why)
        return FolderStatus(online, [out[p] for p in sorted(out)])
    finally:
        state.db.close()
