"""Tree operations end to end: mkdir, list, move (files and whole folders), delete, journal."""

from __future__ import annotations

import pytest

from server.core.errors import ErrorCode, SatchelError
from tests.conftest import random_file


async def test_mkdir_list_move_delete(alice, tmp_path):
    c = alice.client
    await c.mkdir("/Projects/Apollo/docs")
    await c.mkdir("/Projects/Apollo/docs")  # idempotent
    src = random_file(tmp_path / "n.md", 1000)
    await c.upload(src, "/Projects/Apollo/docs/notes.md")
    await c.upload(src, "/Projects/Apollo/plan.md")
    names = [e["name"] for e in await c.list("/Projects/Apollo")]
    assert names == ["docs", "plan.md"]
    moved = await c.move("/Projects/Apollo", "/Archive/Apollo 2026")
    assert moved["path"] == "/Archive/Apollo 2026"
    assert [e["path"] for e in await c.list("/Archive/Apollo 2026/docs")] == ["/Archive/Apollo 2026/docs/notes.md"]
    assert await c.stat_or_none("/Projects/Apollo") is None
    await c.download("/Archive/Apollo 2026/docs/notes.md", tmp_path / "o.md")
    assert (tmp_path / "o.md").read_bytes() == src.read_bytes()
    # A sibling whose name shares the prefix is untouched by moves and deletes of the folder.
    await c.mkdir("/Archive/Apollo 2026x")
    await c.delete("/Archive/Apollo 2026")
    assert [e["name"] for e in await c.list("/Archive")] == ["Apollo 2026x"]
    with pytest.raises(SatchelError) as err:
        await c.stat("/Archive/Apollo 2026/docs/notes.md")
    assert err.value.code is ErrorCode.not_found
    # The path is free again for new content.
    await c.upload(src, "/Archive/Apollo 2026/docs/notes.md")


async def test_rename_file_keeps_id_and_revision(alice, tmp_path):
    c = alice.client
    entry = await c.upload(random_file(tmp_path / "a", 5000), "/a.txt")
    moved = await c.move("/a.txt", "/b/c.txt")
    assert moved["id"] == entry["id"] and moved["rev"] == entry["rev"]
    assert (await c.stat("/b"))["kind"] == "dir"


async def test_stale_parent_is_a_conflict_and_changes_nothing(alice, tmp_path):
    c = alice.client
    v1 = await c.upload(random_file(tmp_path / "v1", 10_000), "/doc.txt", parent_rev=None)
    v2 = await c.upload(random_file(tmp_path / "v2", 10_000), "/doc.txt", parent_rev=v1["rev"])
    with pytest.raises(SatchelError) as err:
        await c.upload(random_file(tmp_path / "v3", 10_000), "/doc.txt", parent_rev=v1["rev"])
    assert err.value.code is ErrorCode.conflict and err.value.details["head_rev"] == v2["rev"]
    with pytest.raises(SatchelError) as err:
        await c.upload(tmp_path / "v3", "/doc.txt", parent_rev=None)
    assert err.value.code is ErrorCode.conflict
    await c.download("/doc.txt", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == (tmp_path / "v2").read_bytes()


async def test_conflict_detected_at_commit_when_someone_commits_first(alice, make_user, tmp_path):
    other = await make_user("desktop", name=alice.name)
    base = await alice.client.upload(random_file(tmp_path / "b", 5000), "/race.txt")
    from server.core.chunking import chunk_file

    mine = random_file(tmp_path / "mine", 5000)
    refs = list(chunk_file(mine))
    info = await alice.client.start_upload({"path": "/race.txt", "size": 5000, "parent_rev": base["rev"],
                                            "chunks": [[r.hex, r.size] for r in refs]})
    theirs = await other.client.upload(random_file(tmp_path / "theirs", 5000), "/race.txt")
    import httpx

    async with httpx.AsyncClient() as h:
        for m in info["missing"]:
            await h.put(m["url"], content=mine.read_bytes(), headers=m["headers"])
    with pytest.raises(SatchelError) as err:
        await alice.client.commit_upload(info["upload_id"])
    assert err.value.code is ErrorCode.conflict and err.value.details["head_rev"] == theirs["rev"]
    assert (await alice.client.stat("/race.txt"))["rev"] == theirs["rev"]


async def test_every_change_is_journaled_in_order(server, alice, tmp_path):
    c = alice.client
    await c.mkdir("/j")
    await c.upload(random_file(tmp_path / "f", 100), "/j/f")
    await c.move("/j/f", "/j/g")
    await c.delete("/j")
    acct = await c.account()
    if "pg-s3" in str(server.data_dir):
        return  # the journal is read over the API in the real-time issue; SQLite lets us look now
    import sqlite3

    db = sqlite3.connect(server.data_dir / "satchel.db")
    rows = db.execute("SELECT seq, op, path, old_path FROM journal WHERE ns_id=? ORDER BY seq",
                      (acct["root_namespace"],)).fetchall()
    assert rows == [(1, "mkdir", "/j", None), (2, "create", "/j/f", None), (3, "move", "/j/g", "/j/f"),
                    (4, "delete", "/j", None)]
    assert db.execute("SELECT seq FROM namespaces WHERE id=?", (acct["root_namespace"],)).fetchone() == (4,)


async def test_concurrent_first_commits_to_one_path_one_wins(alice, make_user, tmp_path):
    import asyncio

    others = [await make_user(f"d{i}", name=alice.name) for i in range(5)]
    files = [random_file(tmp_path / f"c{i}", 20_000) for i in range(len(others))]
    results = await asyncio.gather(*(u.client.upload(f, "/same.txt", parent_rev=None)
                                     for u, f in zip(others, files, strict=True)), return_exceptions=True)
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if not isinstance(r, dict)]
    assert len(wins) == 1, results
    assert all(isinstance(e, SatchelError) and e.code is ErrorCode.conflict for e in losses), losses
    winner = files[results.index(wins[0])]
    await alice.client.download("/same.txt", tmp_path / "w")
    assert (tmp_path / "w").read_bytes() == winner.read_bytes()


async def test_delete_with_rev_precondition(alice, server, tmp_path):
    from tests.conftest import api

    c = alice.client
    v1 = await c.upload(random_file(tmp_path / "v1", 1000), "/d.txt", parent_rev=None)
    v2 = await c.upload(random_file(tmp_path / "v2", 1000), "/d.txt", parent_rev=v1["rev"])
    with pytest.raises(SatchelError) as err:
        await c.delete("/d.txt", rev=v1["rev"])  # an edit the deleting client has not seen
    assert err.value.code is ErrorCode.conflict and err.value.details["head_rev"] == v2["rev"]
    assert (await c.stat("/d.txt"))["rev"] == v2["rev"], "a refused delete changes nothing"
    for bad in ("7", True, -1, 1.5):
        r = api(server, "POST", "/api/v1/delete", c.token, json={"path": "/d.txt", "rev": bad})
        assert r.status_code == 400 and r.json()["error"] == "bad_request" and r.json()["field"] == "rev"
    await c.mkdir("/folder")
    with pytest.raises(SatchelError) as err:
        await c.delete("/folder", rev=v2["rev"])  # a folder has no revision
    assert err.value.code is ErrorCode.conflict
    assert (await c.delete("/d.txt", rev=v2["rev"]))["id"] == v2["id"]
    assert await c.stat_or_none("/d.txt") is None
