"""One reconciliation round (pull the journal, scan the disk, plan, execute) and the loop that
repeats rounds until nothing is left to do. Conflicts settle over two rounds: the first renames the
local bytes aside, the next uploads them and downloads the server's version."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from python_client.api import SatchelClient
from python_client.sync.executor import Executor, Outcome
from python_client.sync.ignore import Ignore
from python_client.sync.model import DIR, Action, RemoteNode, SyncedNode
from python_client.sync.planner import plan
from python_client.sync.remote import detached_paths, mounts, pull, set_detached
from python_client.sync.scanner import Finished, Scan, local_path, scan
from python_client.sync.state import State, state_dir
from server.core import paths

log = logging.getLogger(__name__)


LOST_SHARE = "no longer shared with you: kept on this device, not synced"


class FolderInUse(Exception):
    pass


@dataclass
class Round:
    pulled: int = 0
    actions: list[Action] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)
    busy: set[str] = field(default_factory=set)


def case_insensitive(root: Path) -> bool:
    """Does the file system under *root* fold case (macOS, Windows by default)?"""
    probe = state_dir(root) / "Case-Probe"
    probe.touch()
    try:
        return (state_dir(root) / "case-probe").exists()
    finally:
        probe.unlink()


def case_clashes(remote: dict[str, RemoteNode]) -> dict[str, str]:
    """Server paths that differ from another only by case (the server is case-sensitive): on a
    case-folding disk the first (by sort order) is synced, the others are reported."""
    seen: dict[str, str] = {}
    out: dict[str, str] = {}
    for p in sorted(remote):
        first = seen.setdefault(p.casefold(), p)
        if first != p:
            out[p] = f"differs only by case from {first}, which this disk cannot tell apart"
    return out


def views(state: State, root: Path, excludes: Iterable[str], settle: float, fold_case: bool = False,
          finished: Finished | None = None) -> tuple[Scan, dict[str, RemoteNode], dict[str, SyncedNode], set[str]]:
    """The scan, the remote and synced trees without ignored paths, and the paths to skip.
    Shared folders and files the user lost stay on disk, left alone (reported as not synced)."""
    detached = [d for d in detached_paths(state) if local_path(root, d).exists()]
    if detached != detached_paths(state):
        set_detached(state, detached)  # gone from disk: a new file or folder there syncs again
        state.commit()
    ignore = Ignore(root, [*excludes, *detached])
    remote = {p: n for p, n in state.remote.items() if not ignore(p, n.kind == DIR)}
    synced = {p: n for p, n in state.synced.items() if not ignore(p, n.kind == DIR)}
    clashes = case_clashes(remote) if fold_case else {}
    for p in clashes:
        remote = {q: n for q, n in remote.items() if not paths.is_within(q, p)}
    found = scan(root, synced, ignore, settle=settle, finished=finished,
                 parent_chunks=lambda sn: state.chunks_of(sn.content_hash), remote=remote)
    found.problems.update(clashes)
    found.problems.update({d: LOST_SHARE for d in detached})
    now = time.time()
    skip = set(found.busy) | set(clashes)
    skip |= {p for p, b in state.blocked.items() if b.holds(found.local.get(p), now)}
    for bad in found.unreadable:
        skip |= {p for p in (*remote, *synced) if paths.is_within(p, bad)}
    return found, remote, synced, skip


def mount_points(state: State) -> list[str]:
    return [m["path"] for m in mounts(state).values()]


class Engine:
    def __init__(self, client: SatchelClient, root: Path, *, device: str, excludes: Iterable[str] | None = None,
                 settle: float = 0.0, on_action: Callable[[Action], None] | None = None) -> None:
        """*excludes*: folders this device does not sync (selective sync); None keeps the
        folder's stored list."""
        self.client, self.root, self.device, self.settle = client, root, device, settle
        self.finished: Finished | None = None  # the daemon's file watcher, when one runs
        root.mkdir(parents=True, exist_ok=True)
        state_dir(root).mkdir(exist_ok=True)
        self._lock = os.open(state_dir(root) / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise FolderInUse(f"{root} is already being synced by another satchel process") from None
        self.state = State(root)
        if excludes is not None:
            self.state.set("excludes", [paths.normalize(e) for e in excludes])
            self.state.commit()
        self.excludes: list[str] = self.state.get("excludes") or []
        self.fold_case = case_insensitive(root)
        self.executor = Executor(client, self.state, root, on_action)

    async def aclose(self) -> None:
        await self.executor.aclose()
        self.state.close()
        os.close(self._lock)

    def bind(self, server: str, user: str) -> None:
        """A folder syncs with one account: refuse to mix two into it."""
        bound = self.state.get("account")
        if bound is None:
            self.state.set("account", {"server": server, "user": user})
            self.state.commit()
        elif bound != {"server": server, "user": user}:
            raise FolderInUse(f"{self.root} syncs with {bound['user']} on {bound['server']}")

    async def round(self) -> Round:
        r = Round()
        t0 = time.perf_counter()
        r.pulled = await pull(self.client, self.state)
        t1 = time.perf_counter()
        found, remote, synced, skip = await asyncio.to_thread(views, self.state, self.root, self.excludes,
                                                              self.settle, self.fold_case, self.finished)
        r.busy = found.busy
        r.actions = plan(remote, found.local, synced, device=self.device, day=time.strftime("%Y-%m-%d"),
                         skip=skip, mounts=mount_points(self.state))
        if r.actions:
            log.info("round: %d actions", len(r.actions))
            log.debug("round: pull %.3f s, scan and plan %.3f s", t1 - t0, time.perf_counter() - t1)
        r.outcome = await self.executor.run(r.actions, found)
        return r

    async def until_quiet(self, max_rounds: int = 50) -> int:
        """Rounds until one finds nothing to do (busy files aside); returns how many ran."""
        for n in range(1, max_rounds + 1):
            r = await self.round()
            if not r.actions or (r.outcome.done == 0 and r.outcome.replan == 0):
                return n
        log.warning("still not quiet after %d rounds", max_rounds)
        return max_rounds
