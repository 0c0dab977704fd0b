"""The sync client and shared folders, against a real server: the owner's folder turns into a
mount without a byte moving, members get it in their synced folders, a viewer's edits are blocked
and kept, a member's rename of their mount moves it for them only, and a removed member keeps
their copy, no longer synced. The live channel follows mounts coming and going."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from python_client.live import CursorStore, watch_changes
from python_client.sync.model import DIR, FILE, LocalNode, Op, RemoteNode, SyncedNode
from python_client.sync.planner import plan
from python_client.sync.status import BLOCKED, NOT_SYNCED, UP_TO_DATE, folder_status
from tests.harness.server import ServerProcess
from tests.sync_helpers import Dev, close_dev, make_dev, snapshot


@pytest.fixture(scope="module")
def sync_server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server("sqlite-local")


@pytest.fixture
async def people(sync_server: ServerProcess, tmp_path: Path) -> AsyncIterator[dict[str, Dev]]:
    """alice (the owner), bob on two devices, carol: each device its own synced folder."""
    names = {who: who + secrets.token_hex(4) for who in ("alice", "bob", "carol")}
    out = {
        "alice": await make_dev(sync_server.url, names["alice"], "alice", tmp_path, signup=True),
        "bob": await make_dev(sync_server.url, names["bob"], "bob", tmp_path, signup=True),
        "carol": await make_dev(sync_server.url, names["carol"], "carol", tmp_path, signup=True),
    }
    out["bob2"] = await make_dev(sync_server.url, names["bob"], "bob2", tmp_path)
    for d in out.values():
        d.user = names[d.name.rstrip("2")]  # type: ignore[attr-defined]
    yield out
    for d in out.values():
        await close_dev(d)


async def sync_all(devs: dict[str, Dev], *names: str) -> None:
    for _ in range(2):
        for n in names or devs:
            await devs[n].sync()


def received(d: Dev) -> int:
    return d.engine.executor.totals.bytes_received


def shared(tree: dict[str, bytes | None], top: str) -> dict[str, bytes | None]:
    return {p[len(top):]: v for p, v in tree.items() if p.startswith(top + "/")}


async def test_shared_folder_synced_by_owner_editor_and_viewer(people: dict[str, Dev]) -> None:
    alice, bob, bob2, carol = people["alice"], people["bob"], people["bob2"], people["carol"]
    alice.write("Projects/Apollo/plan.txt", b"plan v1")
    alice.write("Projects/Apollo/sub/data.bin", secrets.token_bytes(300_000))
    alice.write("Projects/other.txt", b"not shared")
    await alice.sync()
    before = snapshot(alice.root)
    inode = (alice.root / "Projects/Apollo/sub/data.bin").stat().st_ino
    got, sent = received(alice), alice.engine.executor.totals.bytes_sent

    await alice.client.share("/Projects/Apollo", bob.user, "editor")  # type: ignore[attr-defined]
    members = await alice.client.share("/Projects/Apollo", carol.user, "viewer")  # type: ignore[attr-defined]
    ns = members["ns"]
    # the owner's synced folder becomes the mount of the new namespace: nothing moves or doubles
    await alice.sync()
    assert snapshot(alice.root) == before
    assert (alice.root / "Projects/Apollo/sub/data.bin").stat().st_ino == inode
    assert (received(alice), alice.engine.executor.totals.bytes_sent) == (got, sent)

    await sync_all(people)
    want = shared(before, "/Projects/Apollo")
    for d in (bob, bob2, carol):
        assert shared(snapshot(d.root), "/Apollo") == want, d.name
        assert not (d.root / "Projects").exists(), "only the shared folder reaches members"

    # the editor's edit reaches the owner and the viewer; so does a new file
    bob.write("Apollo/plan.txt", b"plan v2 by bob")
    bob.write("Apollo/notes.md", b"from bob")
    await sync_all(people)
    assert alice.read("Projects/Apollo/plan.txt") == carol.read("Apollo/plan.txt") == b"plan v2 by bob"
    assert alice.read("Projects/Apollo/notes.md") == carol.read("Apollo/notes.md") == b"from bob"

    # the viewer's edit is refused: blocked (not retried at once), her bytes stay on disk
    carol.write("Apollo/plan.txt", b"carol's private edit")
    assert await carol.sync() <= 2
    assert await carol.sync() == 1, "a blocked path does not keep the sync busy"
    assert carol.read("Apollo/plan.txt") == b"carol's private edit"
    await alice.sync()
    assert alice.read("Projects/Apollo/plan.txt") == b"plan v2 by bob"
    st = {p.path: p for p in (await folder_status(carol.client, carol.root)).paths}
    assert st["/Apollo/plan.txt"].state == BLOCKED and "forbidden" in st["/Apollo/plan.txt"].detail
    # a viewer's local delete is refused too: the server's file comes back
    (carol.root / "Apollo/notes.md").unlink()
    await carol.sync()
    assert carol.read("Apollo/notes.md") == b"from bob"

    # bob renames his mount on disk: it moves on the server for him only, without a transfer
    got_bob, got_bob2 = received(bob), received(bob2)
    (bob.root / "Apollo").rename(bob.root / "Work Apollo")
    await sync_all(people, "bob", "bob2", "alice", "carol")
    assert [s["path"] for s in await bob.client.shares() if s["ns"] == ns] == ["/Work Apollo"]
    assert [s["path"] for s in await alice.client.shares() if s["ns"] == ns] == ["/Projects/Apollo"]
    assert shared(snapshot(bob2.root), "/Work Apollo")["/plan.txt"] == b"plan v2 by bob"
    assert not (bob2.root / "Apollo").exists()
    assert (received(bob), received(bob2)) == (got_bob, got_bob2), "a mount move downloads nothing"
    assert (carol.root / "Apollo").is_dir() and (alice.root / "Projects/Apollo").is_dir()

    # the owner removes carol: her copy stays, no longer synced
    carol_id = next(m["user_id"] for m in (await alice.client.members(ns))["members"] if m["role"] == "viewer")
    kept = snapshot(carol.root)
    await alice.client.remove_member(ns, carol_id)
    await carol.sync()
    assert snapshot(carol.root) == kept
    bob.write("Work Apollo/plan.txt", b"plan v3")
    await sync_all(people, "bob", "alice", "carol")
    assert alice.read("Projects/Apollo/plan.txt") == b"plan v3"
    assert carol.read("Apollo/plan.txt") == b"carol's private edit"
    assert snapshot(carol.root) == kept
    st = {p.path: p for p in (await folder_status(carol.client, carol.root)).paths}
    assert st["/Apollo"].state == NOT_SYNCED
    assert not any(p.startswith("/Apollo/") for p in st), "nothing below a lost share is synced"
    assert "/Apollo" not in {e["path"] for e in await carol.client.list("/")}, "nor uploaded"
    # her own files still sync
    carol.write("mine.txt", b"carol's own")
    await carol.sync()
    assert (await folder_status(carol.client, carol.root)).counts().get(UP_TO_DATE, 0) >= 1
    assert "/mine.txt" in {e["path"] for e in await carol.client.list("/")}


async def test_shared_file_synced_by_owner_editor_and_viewer(people: dict[str, Dev]) -> None:
    """A single shared file: it lands at the members' roots, edits flow both ways, a member's rename
    moves only their mount, a local delete brings it back, and losing access keeps the copy."""
    alice, bob, bob2, carol = people["alice"], people["bob"], people["bob2"], people["carol"]
    alice.write("Docs/report.txt", b"report v1")
    alice.write("Docs/private.txt", b"not shared")
    await alice.sync()
    before, inode = snapshot(alice.root), (alice.root / "Docs/report.txt").stat().st_ino
    got, sent = received(alice), alice.engine.executor.totals.bytes_sent
    await alice.client.share("/Docs/report.txt", bob.user, "editor")  # type: ignore[attr-defined]
    ns = (await alice.client.share("/Docs/report.txt", carol.user, "viewer"))["ns"]  # type: ignore[attr-defined]
    await alice.sync()  # the owner's file becomes the mount: nothing moves or doubles
    assert snapshot(alice.root) == before and (alice.root / "Docs/report.txt").stat().st_ino == inode
    assert (received(alice), alice.engine.executor.totals.bytes_sent) == (got, sent)

    await sync_all(people)
    for d in (bob, bob2, carol):
        assert d.read("report.txt") == b"report v1", d.name
        assert not (d.root / "Docs").exists(), "only the shared file reaches members"

    bob.write("report.txt", b"report v2 by bob")
    await sync_all(people)
    assert alice.read("Docs/report.txt") == carol.read("report.txt") == bob2.read("report.txt") == b"report v2 by bob"
    alice.write("Docs/report.txt", b"report v3 by alice")
    await sync_all(people)
    assert bob.read("report.txt") == carol.read("report.txt") == b"report v3 by alice"

    # the viewer's edit is blocked and kept; a member's local delete brings the file back
    carol.write("report.txt", b"carol's private edit")
    await carol.sync()
    assert carol.read("report.txt") == b"carol's private edit"
    st = {p.path: p for p in (await folder_status(carol.client, carol.root)).paths}
    assert st["/report.txt"].state == BLOCKED
    (bob.root / "report.txt").unlink()
    await bob.sync()
    assert bob.read("report.txt") == b"report v3 by alice"

    # bob renames it on disk: his mount moves, for him only, without a transfer
    got_bob2 = received(bob2)
    (bob.root / "report.txt").rename(bob.root / "my report.txt")
    await sync_all(people, "bob", "bob2", "alice")
    assert [s["path"] for s in await bob.client.shares() if s["ns"] == ns] == ["/my report.txt"]
    assert bob2.read("my report.txt") == b"report v3 by alice" and not (bob2.root / "report.txt").exists()
    assert received(bob2) == got_bob2, "a mount move downloads nothing"
    assert alice.read("Docs/report.txt") == b"report v3 by alice"

    # removed: carol keeps her copy, no longer synced
    carol_id = next(m["user_id"] for m in (await alice.client.members(ns))["members"] if m["role"] == "viewer")
    await alice.client.remove_member(ns, carol_id)
    await carol.sync()
    bob.write("my report.txt", b"report v4")
    await sync_all(people, "bob", "alice", "carol")
    assert alice.read("Docs/report.txt") == b"report v4"
    assert carol.read("report.txt") == b"carol's private edit"
    st = {p.path: p for p in (await folder_status(carol.client, carol.root)).paths}
    assert st["/report.txt"].state == NOT_SYNCED
    assert "/report.txt" not in {e["path"] for e in await carol.client.list("/")}, "nor uploaded"


async def test_first_sync_of_a_member_lists_mounts(people: dict[str, Dev], tmp_path: Path) -> None:
    """A device set up after the share: the root listing holds the mount entry (id null)."""
    alice, bob = people["alice"], people["bob"]
    alice.write("Apollo/a.txt", b"a")
    await alice.sync()
    await alice.client.share("/Apollo", bob.user, "viewer")  # type: ignore[attr-defined]
    late = await make_dev(alice.client.server, bob.user, "bob-late", tmp_path)  # type: ignore[attr-defined]
    try:
        await late.sync()
        assert late.read("Apollo/a.txt") == b"a"
    finally:
        await close_dev(late)


async def _collect(it: AsyncIterator[dict[str, Any]], out: asyncio.Queue[dict[str, Any]]) -> None:
    async for e in it:
        out.put_nowait(e)


async def _until(q: asyncio.Queue[dict[str, Any]], check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            e = await q.get()
            if check(e):
                return e


async def test_watch_changes_follows_new_mounts_and_drops_removed_ones(people: dict[str, Dev]) -> None:
    alice, carol = people["alice"], people["carol"]
    alice.write("Live/x.txt", b"x")
    await alice.sync()
    q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    watch = watch_changes(carol.client, CursorStore(), max_backoff=0.5)
    task = asyncio.create_task(_collect(watch, q))
    try:
        await asyncio.sleep(0.5)  # subscribed to her root namespace
        members = await alice.client.share("/Live", carol.user, "viewer")  # type: ignore[attr-defined]
        ns = members["ns"]
        await _until(q, lambda e: e["op"] == "mount" and e["id"] == ns)
        await asyncio.sleep(0.3)
        await alice.client.mkdir("/Live/new")
        e = await _until(q, lambda e: e["ns"] == ns and e["op"] == "mkdir")
        assert e["path"] == "/new"  # inside the shared namespace
        carol_id = next(m["user_id"] for m in (await alice.client.members(ns))["members"] if m["role"] == "viewer")
        await alice.client.remove_member(ns, carol_id)
        await _until(q, lambda e: e["op"] == "unmount" and e["id"] == ns)
        await alice.client.mkdir("/Live/after")
        carol.write("own.txt", b"still watching")
        await carol.sync()
        seen: list[dict[str, Any]] = []
        await _until(q, lambda e: seen.append(e) is None and e["path"] == "/own.txt")
        assert not task.done(), "losing a share does not end the watch"
        assert [e for e in seen if e["ns"] == ns] == [], "nothing of a removed share arrives"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_planner_never_moves_across_a_mount() -> None:
    """Into or out of a shared folder is an upload and a delete; the mount point itself moves."""
    remote = {"/S": RemoteNode(DIR, -7), "/S/f": RemoteNode(FILE, 10, 1, 3, "h"), "/g": RemoteNode(FILE, 11, 2, 3, "k")}
    synced = {"/S": SyncedNode(DIR, -7, inode=1), "/S/f": SyncedNode(FILE, 10, 1, 3, 5, 2, "h"),
              "/g": SyncedNode(FILE, 11, 2, 3, 5, 3, "k")}
    local = {"/S": LocalNode(DIR, inode=1), "/f": LocalNode(FILE, 3, 5, 2, "h"), "/S/g": LocalNode(FILE, 3, 5, 3, "k")}
    acts = {(a.op, a.path) for a in plan(remote, local, synced, device="d", day="2026-01-01", mounts=["/S"])}
    assert acts == {(Op.upload, "/f"), (Op.upload, "/S/g"), (Op.delete_remote, "/S/f"), (Op.delete_remote, "/g")}
    local = {"/T": LocalNode(DIR, inode=1), "/T/f": LocalNode(FILE, 3, 5, 2, "h"), "/g": LocalNode(FILE, 3, 5, 3, "k")}
    acts = {(a.op, a.path) for a in plan(remote, local, synced, device="d", day="2026-01-01", mounts=["/S"])}
    assert acts == {(Op.move_remote, "/S")}
    # the mount folder deleted on disk: downloaded again, nothing deleted for the other members
    acts = {(a.op, a.path) for a in plan(remote, {}, synced, device="d", day="2026-01-01", mounts=["/S"])}
    assert acts == {(Op.mkdir_local, "/S"), (Op.download, "/S/f"), (Op.delete_remote, "/g")}


async def _wait_for(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.1)
    assert check(), what


async def test_daemon_gets_a_new_share_live_and_stops_when_removed(people: dict[str, Dev], tmp_path: Path) -> None:
    """Live, not by the 60 s rescan: the doorbell follows the new mount's journal, and a removal
    stops the folder at once."""
    from python_client.api import SatchelClient
    from python_client.sync.daemon import Daemon
    from tests.conftest import PASSWORD

    alice, carol = people["alice"], people["carol"]
    alice.write("Team/doc.txt", b"v1")
    await alice.sync()
    client = SatchelClient(alice.client.server)
    await client.login(carol.user, PASSWORD, "carol-daemon")  # type: ignore[attr-defined]
    root = tmp_path / "carol-daemon"
    daemon = Daemon(client, root, device="carol-daemon", device_id=-1, server=client.server,
                    user=carol.user, excludes=None, settle=0.05)  # type: ignore[attr-defined]
    task = asyncio.create_task(daemon.run())
    doc = root / "Team" / "doc.txt"
    try:
        await asyncio.sleep(1)  # first round done, the doorbell subscribed
        members = await alice.client.share("/Team", carol.user, "viewer")  # type: ignore[attr-defined]
        await _wait_for(lambda: doc.exists() and doc.read_bytes() == b"v1", "the shared folder arrives")
        alice.write("Team/doc.txt", b"v2")
        await alice.sync()
        await _wait_for(lambda: doc.read_bytes() == b"v2", "an edit in the shared folder arrives live")
        carol_id = next(m["user_id"] for m in members["members"] if m["role"] == "viewer")
        await alice.client.remove_member(members["ns"], carol_id)
        await _wait_for(lambda: "/Team" in (daemon.engine.state.get("detached") or []), "the removal is seen live")
        alice.write("Team/doc.txt", b"v3")
        await alice.sync()
        await asyncio.sleep(1.5)
        assert doc.read_bytes() == b"v2", "a removed member's copy stays and no longer syncs"
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()
