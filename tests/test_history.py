"""Version history, trash and rewind end to end, on both stacks; every operation is journaled."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from server.core.errors import ErrorCode, SatchelError
from tests.conftest import PASSWORD, random_file


async def _cursor(c) -> str:
    return (await c.request("GET", "/api/v1/changes/latest"))["cursor"]


async def _ops_since(c, cursor: str) -> list[tuple[str, str]]:
    page = await c.request("GET", "/api/v1/changes", params={"cursor": cursor})
    return [(e["op"], e["path"]) for e in page["entries"]]


async def _snapshot(c, folder: str = "/") -> dict[str, str | None]:
    """path -> content hash (None for folders) of everything below *folder*."""
    out: dict[str, str | None] = {}
    for e in await c.list(folder):
        out[e["path"]] = e.get("content_hash") if e["kind"] == "file" else None
        if e["kind"] == "dir":
            out.update(await _snapshot(c, e["path"]))
    return out


async def test_versions_download_and_restore(alice, make_user, tmp_path):
    c = alice.client
    files = [tmp_path / f"v{i}" for i in range(3)]
    for i, f in enumerate(files):
        f.write_text(f"version {i}\n" * (i + 1))
        await c.upload(f, "/notes.txt")
    revs = await c.revisions("/notes.txt")
    assert [r["size"] for r in revs] == [f.stat().st_size for f in reversed(files)]
    assert [r["current"] for r in revs] == [True, False, False]
    assert revs[0]["user"] == alice.name and revs[0]["device"] == "dev1"
    assert revs[0]["parent_rev"] == revs[1]["rev"]

    await c.download("/notes.txt", tmp_path / "old", rev=revs[2]["rev"])
    assert (tmp_path / "old").read_bytes() == files[0].read_bytes()

    cursor = await _cursor(c)
    entry = await c.restore("/notes.txt", revs[2]["rev"])
    assert entry["rev"] not in {r["rev"] for r in revs} and entry["content_hash"] == revs[2]["content_hash"]
    assert await _ops_since(c, cursor) == [("modify", "/notes.txt")]
    await c.download("/notes.txt", tmp_path / "now")
    assert (tmp_path / "now").read_bytes() == files[0].read_bytes()
    await c.restore("/notes.txt", revs[0]["rev"])  # the restore is undone like any edit
    assert len(await c.revisions("/notes.txt")) == 5
    await c.download("/notes.txt", tmp_path / "undone")
    assert (tmp_path / "undone").read_bytes() == files[2].read_bytes()

    with pytest.raises(SatchelError) as err:
        await c.restore("/notes.txt", 2**31 - 1)
    assert err.value.code is ErrorCode.not_found
    bob = await make_user("dev1")
    file_id = (await c.stat("/notes.txt"))["id"]
    with pytest.raises(SatchelError) as err:  # another user's file: not found, never listed
        await bob.client.request("GET", f"/api/v1/files/{file_id}/revisions")
    assert err.value.code is ErrorCode.not_found


async def test_trash_undelete_under_new_name_and_purge(alice, tmp_path):
    c = alice.client
    a = random_file(tmp_path / "a", 70_000)
    await c.upload(a, "/docs/a.bin")
    await c.upload(random_file(tmp_path / "b", 1000), "/docs/sub/b.bin")
    await c.delete("/docs/sub/b.bin")  # its own trash item, deleted before the folder
    await c.delete("/docs")
    items = await c.trash()
    assert [(i["path"], i["kind"]) for i in items] == [("/docs", "dir"), ("/docs/sub/b.bin", "file")]
    assert items[0]["items"] == 3 and items[0]["total_size"] == 70_000 and items[0]["deleted_at"]
    assert [i["path"] for i in await c.trash("/docs/sub")] == ["/docs/sub/b.bin"]

    await c.mkdir("/docs")  # the old path is taken now
    cursor = await _cursor(c)
    out = await c.undelete("/docs")
    assert out["path"] == "/docs (restored)" and out["restored"] == 3
    assert await _ops_since(c, cursor) == [("mkdir", "/docs (restored)"), ("create", "/docs (restored)/a.bin"),
                                           ("mkdir", "/docs (restored)/sub")]
    await c.download("/docs (restored)/a.bin", tmp_path / "a.out")
    assert (tmp_path / "a.out").read_bytes() == a.read_bytes()
    assert [i["path"] for i in await c.trash()] == ["/docs/sub/b.bin"]

    cursor = await _cursor(c)
    assert (await c.purge("/docs/sub/b.bin"))["purged"] == 1
    assert await _ops_since(c, cursor) == [("purge", "/docs/sub/b.bin")]
    assert await c.trash() == []
    for call in (c.undelete, c.purge):
        with pytest.raises(SatchelError) as err:
            await call("/docs/sub/b.bin")
        assert err.value.code is ErrorCode.not_found

    # A file restored into a missing folder gets the folder back; an id picks one of several items.
    await c.upload(random_file(tmp_path / "x1", 10), "/gone/x.txt")
    await c.delete("/gone/x.txt")
    await c.upload(random_file(tmp_path / "x2", 20), "/gone/x.txt")
    await c.delete("/gone")
    older = [i for i in await c.trash() if i["path"] == "/gone/x.txt"]
    assert len(older) == 1
    out = await c.undelete(item_id=older[0]["id"])
    assert out["path"] == "/gone/x.txt" and (await c.stat("/gone/x.txt"))["size"] == 10


async def test_rewind_folder_restores_exactly_the_tree_at_t(alice, tmp_path):
    c = alice.client
    for name in ("a.txt", "b.txt", "dir/c.txt", "dir/deep/d.txt"):
        random_file(tmp_path / "src", 5000 + len(name))
        await c.upload(tmp_path / "src", f"/proj/{name}")
    await c.upload(random_file(tmp_path / "o", 100), "/outside.txt")
    await asyncio.sleep(0.05)
    then = await _snapshot(c, "/proj")
    t_ms = int(time.time() * 1000)
    await asyncio.sleep(0.05)
    await c.upload(random_file(tmp_path / "e", 999), "/proj/a.txt")          # edit
    await c.move("/proj/b.txt", "/proj/b-renamed.txt")                       # rename
    await c.move("/proj/dir", "/proj/dir2")                                  # folder rename
    await c.delete("/proj/dir2/deep")                                        # delete
    await c.upload(random_file(tmp_path / "n", 77), "/proj/new.txt")         # create
    await c.upload(random_file(tmp_path / "n2", 78), "/outside.txt")         # outside: untouched
    await asyncio.sleep(0.05)
    changed = await _snapshot(c, "/proj")
    t2_ms = int(time.time() * 1000)
    outside = (await c.stat("/outside.txt"))["content_hash"]

    dry = await c.rewind("/proj", t_ms, dry_run=True)
    assert dry["dry_run"] and {s["action"] for s in dry["steps"]} >= {"delete", "create", "restore", "mkdir"}
    assert await _snapshot(c, "/proj") == changed  # a dry run changes nothing

    out = await c.rewind("/proj", t_ms)
    assert out["unavailable"] == []
    assert await _snapshot(c, "/proj") == then
    assert (await c.stat("/outside.txt"))["content_hash"] == outside
    revs = await c.revisions("/proj/b.txt")  # the renamed file came back with its history
    assert len(revs) == 1
    assert (await c.rewind("/proj", int(time.time() * 1000)))["steps"] == []  # nothing left to do

    await c.rewind("/proj", t2_ms)  # undo the rewind
    assert await _snapshot(c, "/proj") == changed
    with pytest.raises(SatchelError) as err:
        await c.rewind("/proj", int(time.time() * 1000) + 60_000)
    assert err.value.code is ErrorCode.bad_request


def test_history_cli(server, device_factory, tmp_path):
    dev = device_factory("cli")
    name = "h" + str(time.time_ns())[-9:]
    dev.run("signup", server.url, name, "--password-stdin", stdin=PASSWORD + "\n")
    dev.run("login", server.url, name, "--password-stdin", stdin=PASSWORD + "\n")
    (tmp_path / "f.txt").write_text("first\n")
    dev.run("put", "-q", str(tmp_path / "f.txt"), "/f.txt")
    (tmp_path / "f.txt").write_text("second\n")
    dev.run("put", "-q", str(tmp_path / "f.txt"), "/f.txt")
    revs = json.loads(dev.run("versions", "/f.txt", "--json").stdout)
    assert len(revs) == 2 and revs[0]["current"]
    dev.run("get", "-q", "/f.txt", str(tmp_path / "old.txt"), "--revision", str(revs[1]["rev"]))
    assert (tmp_path / "old.txt").read_text() == "first\n"
    assert "restored" in dev.run("restore", "/f.txt", "--revision", str(revs[1]["rev"])).stdout
    dev.run("rm", "/f.txt")
    assert json.loads(dev.run("trash", "--json").stdout)[0]["path"] == "/f.txt"
    dev.run("undelete", "/f.txt")
    dev.run("get", "-q", "/f.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "first\n"
    dev.run("rm", "/f.txt")
    dev.run("purge", "/f.txt")
    assert json.loads(dev.run("trash", "--json").stdout) == []
    plan = json.loads(dev.run("rewind", "/", "--to", "1h", "--dry-run", "--json").stdout)
    assert plan["dry_run"] and plan["steps"] == []  # an hour ago this account had nothing
    bad = dev.run("rewind", "/", "--to", "yesterday-ish", check=False)
    assert bad.returncode == 2
    missing = dev.run("undelete", "/nothing-here", check=False)
    assert missing.returncode == 1 and "not_found" in missing.stderr
