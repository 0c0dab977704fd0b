"""Quotas (reserved at upload start, settled at commit) and search, end to end on both stacks."""

from __future__ import annotations

import asyncio
import json
import subprocess

from server.core.chunking import chunk_file
from server.core.errors import ErrorCode, SatchelError
from tests.conftest import api, random_file
from tests.harness.server import VENV_BIN


def set_quota(srv, name: str, size: str) -> str:
    proc = subprocess.run([str(VENV_BIN / "satchel"), "admin", "set-quota", "--data-dir", str(srv.data_dir), name,
                           size], env=srv.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def announce(path: str, local) -> dict:
    refs = list(chunk_file(local))
    return {"path": path, "size": local.stat().st_size, "parent_rev": None,
            "chunks": [[r.hex, r.size] for r in refs]}


async def test_quota_reserves_at_start_and_refuses_before_any_byte(server, make_user, tmp_path):
    laptop = await make_user("laptop")
    phone = await make_user("phone", name=laptop.name)
    assert "limit 1.0 MiB" in set_quota(server, laptop.name, "1MiB")
    big = [random_file(tmp_path / f"f{i}", 600_000) for i in range(2)]

    # One device's upload in progress holds its bytes: the other device cannot pass the limit with it.
    held = await laptop.client.start_upload(announce("/one.bin", big[0]))
    r = api(server, "POST", "/api/v1/files", phone.client.token, json=announce("/two.bin", big[1]))
    assert r.status_code == 507, r.text
    body = r.json()
    assert body["error"] == "quota_exceeded" and body["limit"] == 1024**2 and body["used"] == 0
    assert body["reserved"] == 600_000
    assert (await phone.client.quota())["reserved"] == 600_000
    # Abandoning releases the reservation.
    await laptop.client.request("DELETE", f"/api/v1/uploads/{held['upload_id']}")
    assert (await phone.client.quota())["reserved"] == 0

    # Two devices upload at once: exactly one fits, whatever the interleaving.
    results = await asyncio.gather(laptop.client.upload(big[0], "/one.bin"), phone.client.upload(big[1], "/two.bin"),
                                   return_exceptions=True)
    refused = [r for r in results if isinstance(r, SatchelError)]
    assert len(refused) == 1 and refused[0].code is ErrorCode.quota_exceeded, results
    q = await laptop.client.quota()
    assert q == {"used": 600_000, "reserved": 0, "limit": 1024**2, "available": 1024**2 - 600_000}

    # Replacing a file counts only the growth; shrinking is always allowed; trash does not count.
    kept = "/one.bin" if await laptop.client.stat_or_none("/one.bin") else "/two.bin"
    await laptop.client.upload(random_file(tmp_path / "g", 900_000), kept)
    await laptop.client.delete(kept)
    assert (await laptop.client.quota())["used"] == 0
    await laptop.client.upload(random_file(tmp_path / "h", 1_000_000), "/h.bin")
    assert "limit unlimited" in set_quota(server, laptop.name, "0")
    await laptop.client.upload(random_file(tmp_path / "i", 200_000), "/i.bin")


def test_quota_cli(server, device_factory, make_user):
    dev = device_factory("q")
    from tests.conftest import PASSWORD

    name = "q" + __import__("secrets").token_hex(4)
    dev.run("signup", server.url, name, "--password-stdin", stdin=PASSWORD + "\n")
    dev.run("login", server.url, name, "--password-stdin", stdin=PASSWORD + "\n")
    set_quota(server, name, "5MB")
    assert json.loads(dev.run("quota", "--json").stdout)["limit"] == 5_000_000
    assert "used 0 B of 4.8 MiB" in dev.run("quota").stdout
    bad = subprocess.run([str(VENV_BIN / "satchel"), "admin", "set-quota", "--data-dir", str(server.data_dir),
                          "no-such-user", "1GB"], env=server.env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "not_found" in bad.stderr


async def test_search_names_paths_text_ranked_and_private(server, make_user, tmp_path):
    alice = await make_user("dev1")
    bob = await make_user("dev1")
    c = alice.client
    (tmp_path / "r.txt").write_text("Minutes: photosynthesis and the banana budget.\n" * 20)
    await c.upload(tmp_path / "r.txt", "/Reports/Quarterly_Report-2024.txt")
    await c.upload(random_file(tmp_path / "bin", 5000), "/misc/photo-album.bin")
    await c.upload(random_file(tmp_path / "big", 300_000), "/misc/huge.txt")
    await bob.client.upload(tmp_path / "r.txt", "/Reports/Quarterly_Report-2024.txt")

    async def paths(query: str, **kw) -> list[str]:
        return [e["path"] for e in (await c.search(query, **kw))["entries"]]

    assert await paths("quart") == ["/Reports/Quarterly_Report-2024.txt"]            # name prefix
    assert await paths("photosynth") == ["/Reports/Quarterly_Report-2024.txt"]       # text inside
    assert await paths("reports banana") == ["/Reports/Quarterly_Report-2024.txt"]   # path word + text
    # "photo" is in one name and (as a prefix) in the other's text: the name match ranks first.
    assert await paths("photo") == ["/misc/photo-album.bin", "/Reports/Quarterly_Report-2024.txt"]
    assert await paths("photo", path="/Reports") == ["/Reports/Quarterly_Report-2024.txt"]
    page = await c.search("photo", limit=1)
    assert len(page["entries"]) == 1 and page["next"] == 1
    assert [e["path"] for e in (await c.search("photo", limit=1, offset=1))["entries"]] == [
        "/Reports/Quarterly_Report-2024.txt"]
    found = await paths("misc")  # the folder's own name ranks above the path word of what is inside
    assert found[0] == "/misc" and sorted(found[1:]) == ["/misc/huge.txt", "/misc/photo-album.bin"]

    # Moves re-index the names below; the trash is not searched; another user's files never show.
    await c.move("/Reports", "/Archive/Old")
    assert await paths("archive quarterly") == ["/Archive/Old/Quarterly_Report-2024.txt"]
    await c.delete("/Archive")
    assert await paths("quarterly") == []
    assert await paths("banana") == []
    await c.undelete("/Archive")
    assert await paths("banana") == ["/Archive/Old/Quarterly_Report-2024.txt"]
    assert [e["path"] for e in (await bob.client.search("banana"))["entries"]] == [
        "/Reports/Quarterly_Report-2024.txt"]

    for bad in ({"query": ""}, {"query": "..."}, {"query": 5}, {"query": "a", "limit": 1000},
                {"query": "a", "offset": -1}, {"query": "a", "path": "/../x"}):
        r = api(server, "POST", "/api/v1/files/search", c.token, json=bad)
        assert r.status_code == 400, (bad, r.text)


def test_search_cli(server, device_factory, tmp_path):
    from tests.conftest import PASSWORD

    dev = device_factory("s")
    name = "s" + __import__("secrets").token_hex(4)
    dev.run("signup", server.url, name, "--password-stdin", stdin=PASSWORD + "\n")
    dev.run("login", server.url, name, "--password-stdin", stdin=PASSWORD + "\n")
    (tmp_path / "todo.md").write_text("buy zucchini\n")
    dev.run("put", "-q", str(tmp_path / "todo.md"), "/lists/todo.md")
    assert dev.run("search", "zucch").stdout.split() == ["/lists/todo.md"]
    assert [e["path"] for e in json.loads(dev.run("search", "lists", "--json").stdout)] == [
        "/lists", "/lists/todo.md"]




async def test_search_reaches_shared_folders_and_forgets_a_left_share(server, make_user, tmp_path):
    alice = await make_user("dev1")
    bob = await make_user("dev1")
    (tmp_path / "n.txt").write_text("the zebra crossing plan\n")
    await alice.client.upload(tmp_path / "n.txt", "/Projects/Apollo/notes.txt")
    await alice.client.share("/Projects/Apollo", bob.name, "viewer")
    await bob.client.upload(tmp_path / "n.txt", "/mine/zebra.txt")

    async def found(who, query: str, path: str = "/") -> list[str]:
        return sorted(e["path"] for e in (await who.client.search(query, path=path))["entries"])

    # Written before the folder became shared, found at the path each user sees it.
    assert await found(alice, "zebra") == ["/Projects/Apollo/notes.txt"]
    assert await found(bob, "zebra") == ["/Apollo/notes.txt", "/mine/zebra.txt"]
    assert await found(bob, "zebra", "/Apollo") == ["/Apollo/notes.txt"]
    await bob.client.leave((await bob.client.share_of("/Apollo"))["ns"])
    assert await found(bob, "zebra") == ["/mine/zebra.txt"]
    assert await found(alice, "zebra") == ["/Projects/Apollo/notes.txt"]
