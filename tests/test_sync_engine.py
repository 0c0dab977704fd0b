"""The sync engine end to end: two or three devices of one account, each with its own folder,
against a real server process (in-process engines, rounds driven by the test)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.harness.server import ServerProcess
from tests.sync_helpers import Dev, close_dev, make_dev, server_tree, snapshot


@pytest.fixture(scope="module")
def sync_server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server("sqlite-local")


@pytest.fixture
async def devs(sync_server: ServerProcess, tmp_path: Path) -> AsyncIterator[list[Dev]]:
    user = "s" + secrets.token_hex(5)
    out = [await make_dev(sync_server.url, user, "laptop", tmp_path, signup=True)]
    out += [await make_dev(sync_server.url, user, n, tmp_path) for n in ("desktop", "tablet")]
    yield out
    for d in out:
        await close_dev(d)


async def converge(devs: list[Dev]) -> dict[str, bytes | None]:
    for _ in range(3):
        for d in devs:
            await d.sync()
    want = await server_tree(devs[0].client)
    for d in devs:
        assert snapshot(d.root) == want, d.name
    return want


async def test_create_modify_delete(devs: list[Dev]) -> None:
    a, b, _ = devs
    a.write("hello.txt", b"hello")
    a.write("empty", b"")
    a.write("deep/er/x.bin", secrets.token_bytes(100_000))
    tree = await converge(devs)
    assert tree["/hello.txt"] == b"hello" and tree["/empty"] == b"" and "/deep/er" in tree
    b.write("hello.txt", b"hello, world")
    (b.root / "empty").unlink()
    tree = await converge(devs)
    assert tree["/hello.txt"] == b"hello, world" and "/empty" not in tree
    assert list((a.root / ".satchel" / "trash").rglob("empty")), "a server delete keeps a local copy in the trash"


async def _node_id(dev: Dev, path: str) -> int:
    return int((await dev.client.stat(path))["id"])


async def test_renames_and_moves_are_sent_as_moves(devs: list[Dev]) -> None:
    a, b, _ = devs
    a.write("docs/report.txt", b"r" * 5000)
    a.write("docs/sub/notes.md", b"notes")
    a.write("photo.jpg", secrets.token_bytes(300_000))
    await converge(devs)
    ids = {p: await _node_id(a, p) for p in ("/docs", "/docs/report.txt", "/photo.jpg")}
    (a.root / "docs").rename(a.root / "papers")                 # folder rename
    (a.root / "photo.jpg").rename(a.root / "papers/sub/p.jpg")  # move across folders
    tree = await converge(devs)
    assert "/docs" not in tree and tree["/papers/sub/p.jpg"] is not None
    assert await _node_id(a, "/papers") == ids["/docs"]
    assert await _node_id(a, "/papers/report.txt") == ids["/docs/report.txt"]
    assert await _node_id(a, "/papers/sub/p.jpg") == ids["/photo.jpg"]
    # the other device renamed on disk (same inode), not a fresh download
    (b.root / "papers" / "sub").rename(b.root / "sub2")
    await converge(devs)
    assert await _node_id(b, "/sub2/p.jpg") == ids["/photo.jpg"]


async def test_mkdir_rmdir_trees(devs: list[Dev]) -> None:
    a, b, c = devs
    for i in range(30):
        a.write(f"t/{i % 3}/{i}.txt", str(i).encode())
    (a.root / "t" / "empty" / "dir").mkdir(parents=True)
    tree = await converge(devs)
    assert "/t/empty/dir" in tree and len([k for k in tree if k.endswith(".txt")]) == 30
    import shutil

    shutil.rmtree(b.root / "t")
    tree = await converge(devs)
    assert not any(k.startswith("/t") for k in tree)
    assert (c.root / ".satchel" / "trash").exists()


async def test_edit_edit_conflict_keeps_both(devs: list[Dev]) -> None:
    a, b, _ = devs
    a.write("plan.txt", b"v0")
    await converge(devs)
    a.write("plan.txt", b"laptop's edit")
    b.write("plan.txt", b"desktop's edit, longer")
    await a.sync()
    await b.sync()
    tree = await converge(devs)
    copies = {k: v for k, v in tree.items() if "conflicted copy" in k}
    assert tree["/plan.txt"] == b"laptop's edit"
    assert list(copies.values()) == [b"desktop's edit, longer"]
    (name,) = copies
    assert name.startswith("/plan (conflicted copy, desktop, ") and name.endswith(").txt")


async def test_both_create_same_name(devs: list[Dev]) -> None:
    a, b, _ = devs
    a.write("new.txt", b"A")
    b.write("new.txt", b"B")
    b.write("same.txt", b"same")
    a.write("same.txt", b"same")
    await a.sync()
    await b.sync()
    tree = await converge(devs)
    assert sorted(v for k, v in tree.items() if k.startswith("/new")) == [b"A", b"B"]  # type: ignore[type-var]
    assert not any("same (conflicted" in k for k in tree), "identical content is no conflict"


async def test_edit_wins_over_delete_both_ways(devs: list[Dev]) -> None:
    a, b, _ = devs
    a.write("x.txt", b"x0")
    a.write("y.txt", b"y0")
    await converge(devs)
    a.write("x.txt", b"x edited on laptop")   # laptop edits x, desktop deletes it
    (b.root / "x.txt").unlink()
    (a.root / "y.txt").unlink()                # laptop deletes y, desktop edits it
    b.write("y.txt", b"y edited on desktop")
    await b.sync()
    await a.sync()
    tree = await converge(devs)
    assert tree["/x.txt"] == b"x edited on laptop"
    assert tree["/y.txt"] == b"y edited on desktop"


async def test_remote_rename_of_locally_edited_file(devs: list[Dev]) -> None:
    a, b, _ = devs
    a.write("draft.txt", b"draft")
    await converge(devs)
    (a.root / "draft.txt").rename(a.root / "final.txt")
    await a.sync()
    b.write("draft.txt", b"desktop kept typing")
    await b.sync()
    tree = await converge(devs)
    assert tree["/final.txt"] == b"draft"
    assert [v for k, v in tree.items() if "conflicted copy" in k] == [b"desktop kept typing"]
    assert "/draft.txt" not in tree


async def test_folder_deleted_while_other_adds_inside(devs: list[Dev]) -> None:
    a, b, _ = devs
    a.write("shared/old.txt", b"old")
    await converge(devs)
    import shutil

    shutil.rmtree(a.root / "shared")
    b.write("shared/new.txt", b"new work")
    await b.sync()
    await a.sync()
    tree = await converge(devs)
    assert tree.get("/shared/new.txt") == b"new work", "new work inside a deleted folder survives"
    assert "/shared/old.txt" not in tree


async def test_ignore_rules_symlinks_and_selective_sync(devs: list[Dev], sync_server: ServerProcess,
                                                        tmp_path: Path) -> None:
    a, b, c = devs
    a.write(".satchelignore", b"build/\n*.log\n")
    a.write("build/out.o", b"object")
    a.write("run.log", b"log")
    a.write("notes.txt.swp", b"swap")
    a.write(".DS_Store", b"finder")
    a.write("keep.txt", b"keep")
    a.write("Photos/big.jpg", b"jpeg")
    (a.root / "link").symlink_to(a.root / "keep.txt")
    await a.sync()
    tree = await server_tree(a.client)
    assert set(tree) == {"/.satchelignore", "/keep.txt", "/Photos", "/Photos/big.jpg"}
    # selective sync: this device leaves /Photos on the server
    await c.engine.aclose()
    from python_client.sync.engine import Engine

    c.engine = Engine(c.client, c.root, device="tablet", excludes=["/Photos"])
    await c.sync()
    assert not (c.root / "Photos").exists() and (c.root / "keep.txt").read_bytes() == b"keep"
    c.write("Photos/local-only.jpg", b"stays here")
    await c.sync()
    assert "/Photos/local-only.jpg" not in await server_tree(a.client)
    await b.sync()
    assert (b.root / "Photos" / "big.jpg").read_bytes() == b"jpeg"


async def test_invalid_names_are_reported_not_fatal(devs: list[Dev]) -> None:
    from python_client.sync.status import NOT_SYNCED, folder_status

    a = devs[0]
    a.write("ok.txt", b"fine")
    a.write("back\\slash.txt", b"a name other systems refuse")
    await a.sync()
    assert set(await server_tree(a.client)) == {"/ok.txt"}
    st = await folder_status(a.client, a.root)
    assert {p.path: p.state for p in st.paths}["/back\\slash.txt"] == NOT_SYNCED


async def test_delta_upload_and_download_reuse(devs: list[Dev]) -> None:
    from tests.conftest import random_file

    a, b, _ = devs
    big = random_file(a.root / "big.bin", 8 * 1024 * 1024, seed=7)
    await a.sync()
    await b.sync()
    data = bytearray(big.read_bytes())
    data[4_000_000:4_000_000] = b"!"  # one byte inserted in the middle
    big.write_bytes(bytes(data))
    before_a, before_b = a.engine.executor.totals.bytes_sent, b.engine.executor.totals.bytes_received
    await a.sync()
    sent = a.engine.executor.totals.bytes_sent - before_a
    assert 0 < sent < 400_000, f"a 1-byte insert sent {sent} bytes"
    assert a.engine.executor.delta_commits == 1  # one WebSocket frame against the kept chunk list
    await b.sync()
    assert b.read("big.bin") == bytes(data)
    assert b.engine.executor.totals.bytes_received - before_b < 400_000
    # a copy made on another device arrives as a local copy, not a transfer
    b.write("copy.bin", bytes(data))
    await b.sync()
    before = a.engine.executor.totals.bytes_received
    await a.sync()
    assert a.engine.executor.totals.bytes_received == before and a.read("copy.bin") == bytes(data)


async def test_an_edit_across_a_chunk_size_step_keeps_the_synced_cut(devs: list[Dev], monkeypatch) -> None:
    """A file that grows past a chunk-size step is cut like its synced version (chunking.cut_size):
    a 1-byte insert is one WebSocket frame, and the other device reuses every other chunk. Cut
    by its own size it would share no chunk with its parent. The step is moved down to 4 MiB
    here (64 chunks, in this process: clients cut, the server does not)."""
    from server.core import chunking
    from tests.conftest import random_file

    monkeypatch.setattr(chunking, "TARGET_CHUNKS", 64)
    step = chunking.MIN_AVG_CHUNK * 64
    a, b, _ = devs
    big = random_file(a.root / "big.bin", step, seed=5)
    await a.sync()
    await b.sync()
    data = bytearray(big.read_bytes())
    data[step // 2:step // 2] = b"!"
    assert chunking.avg_chunk_size(len(data)) != chunking.avg_chunk_size(step)
    big.write_bytes(bytes(data))
    before_a, before_b = a.engine.executor.totals.bytes_sent, b.engine.executor.totals.bytes_received
    await a.sync()
    sent = a.engine.executor.totals.bytes_sent - before_a
    assert 0 < sent < 400_000, f"a 1-byte insert across the step sent {sent} bytes"
    assert a.engine.executor.delta_commits == 1
    await b.sync()
    assert b.read("big.bin") == bytes(data)
    assert b.engine.executor.totals.bytes_received - before_b < 400_000
    # A new device holding the same bytes already: its own cut differs from the kept one, but it
    # finds the one the server's content hash names: no conflicted copy, nothing sent.
    c = devs[2]
    c.write("big.bin", bytes(data))
    await c.sync()
    assert sorted(p.name for p in c.root.iterdir() if not p.name.startswith(".")) == ["big.bin"]
    assert c.engine.executor.totals.bytes_sent == 0
    assert set(await server_tree(a.client)) == {"/big.bin"}


async def test_the_same_edit_cut_two_ways_is_no_conflict(devs: list[Dev], monkeypatch) -> None:
    """A device keeps its synced version's cut across a step; the same bytes uploaded by a client
    that cut them by size (the CLI, the web app) have another content hash. The device re-cuts
    before calling it a conflict: same bytes, same hash, nothing to do."""
    from server.core import chunking
    from tests.conftest import random_file

    monkeypatch.setattr(chunking, "TARGET_CHUNKS", 64)
    step = chunking.MIN_AVG_CHUNK * 64
    a, b, _ = devs
    big = random_file(a.root / "big.bin", step, seed=9)
    await a.sync()
    data = bytearray(big.read_bytes())
    data[step // 3:step // 3] = b"?"
    elsewhere = b.root.parent / "elsewhere.bin"
    elsewhere.write_bytes(bytes(data))
    await b.client.upload(elsewhere, "/big.bin")  # cut by its own size
    big.write_bytes(bytes(data))  # the same edit on A, which keeps the synced cut
    await a.sync()
    assert sorted(p.name for p in a.root.iterdir() if not p.name.startswith(".")) == ["big.bin"]
    assert set(await server_tree(a.client)) == {"/big.bin"}
    assert a.read("big.bin") == bytes(data)


async def test_a_small_file_arrives_with_its_exact_modification_time(devs: list[Dev]) -> None:
    """Set on the part file before its fsync, in integer nanoseconds (a float of seconds would
    come out a nanosecond off, and the millisecond the server keeps could then read one lower)."""
    a, b, _ = devs
    f = a.write("when.txt", b"what time is it")
    os.utime(f, ns=(1_764_277_200_123_456_789,) * 2)
    await a.sync()
    await b.sync()
    assert (b.root / "when.txt").stat().st_mtime_ns == 1_764_277_200_123_000_000


async def test_many_small_files_go_in_batches_and_conflicts_stay_per_file(devs: list[Dev]) -> None:
    """Small files travel in WebSocket batches both ways; a conflict inside a batch refuses that
    file alone: both versions survive, the rest of the batch commits."""
    a, b, _ = devs
    files = {f"many/d{i % 3}/f{i:03}.bin": secrets.token_bytes(i * 37 % 5000) for i in range(240)}
    for rel, data in files.items():
        a.write(rel, data)
    b.write("many/d0/f000.bin", b"the desktop's own f000")  # same name, other bytes: a conflict
    r = await a.engine.round()
    assert r.outcome.batched == 240 and r.outcome.blocked == 0
    rb = await b.engine.round()
    tree = await converge(devs)
    assert rb.outcome.batched >= 239
    for rel, data in files.items():
        assert tree["/" + rel] == data
    copies = [v for k, v in tree.items() if k.startswith("/many/d0/f000 (conflicted copy")]
    assert copies == [b"the desktop's own f000"]


async def test_reuse_from_synced_revision_checks_every_byte(devs: list[Dev]) -> None:
    """A download reuses the old local file by the synced revision's chunk list, trusting its
    size/mtime/inode only to locate bytes: bytes that changed under an unchanged stat are caught
    by their hash and fetched, never copied into the new version."""
    from tests.conftest import random_file

    a, b, _ = devs
    big = random_file(a.root / "big.bin", 4 * 1024 * 1024, seed=11)
    await a.sync()
    await b.sync()
    data = bytearray(big.read_bytes())
    data[2_000_000:2_000_000] = b"?"
    big.write_bytes(bytes(data))
    await a.sync()
    # Corrupt B's old copy in place (same size, inode and mtime): its stat still says "synced".
    old = b.root / "big.bin"
    st = old.stat()
    with open(old, "r+b") as f:
        f.seek(100_000)
        f.write(b"\0" * 300_000)
    os.utime(old, ns=(st.st_atime_ns, st.st_mtime_ns))
    before_reused = b.engine.executor.totals.bytes_reused
    before_got = b.engine.executor.totals.bytes_received
    await b.sync()
    assert b.read("big.bin") == bytes(data)
    got = b.engine.executor.totals.bytes_received - before_got
    assert 300_000 <= got < 1_000_000, got  # the damaged chunks and the edit, not the whole file
    assert b.engine.executor.totals.bytes_reused - before_reused > 3_000_000
