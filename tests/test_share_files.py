"""Sharing a single file with users, on both stacks: mounts, roles, live pushes and revocation,
the file-share authorization matrix, and IDOR checks (protocol.md, "Shared files")."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from python_client.live import LiveSession
from server.core.errors import ErrorCode
from server.ws.protocol import MsgType
from tests.harness import ws
from tests.harness.server import ServerProcess
from tests.test_sharing import OK, PW, MakeUser, get_text, put_text, refused


async def test_shared_file_roles_live_and_revocation(server: ServerProcess, make_user: MakeUser,
                                                     tmp_path: Path) -> None:
    owner, editor, viewer = await make_user("o"), await make_user("e"), await make_user("v")
    before = (await owner.client.quota())
    entry = await put_text(owner, "/Docs/report.txt", b"v1", tmp_path)
    early = await owner.client.create_link("/Docs/report.txt")  # made before sharing: still good after
    await owner.client.share("/Docs/report.txt", editor.name, "editor")
    members = await owner.client.share("/Docs/report.txt", viewer.name, "viewer")
    ns = members["ns"]
    assert members["kind"] == "file" and members["path"] == "/Docs/report.txt"
    assert [(m["user"], m["role"]) for m in members["members"]] == [
        (owner.name, "owner"), (editor.name, "editor"), (viewer.name, "viewer")]
    # The owner keeps the file where it was (same id); members find it at their root, as a file.
    mine = await owner.client.stat("/Docs/report.txt")
    assert (mine["id"], mine["kind"], mine["name"], mine["share"]["ns"]) == (entry["id"], "file", "report.txt", ns)
    assert [e["name"] for e in await owner.client.list("/Docs")] == ["report.txt"]
    assert await owner.client.link_download(early["url"], tmp_path / "early") == 2
    assert [x["path"] for x in await owner.client.links()] == ["/Docs/report.txt"]
    for u, role in ((editor, "editor"), (viewer, "viewer")):
        root = {e["name"]: e for e in await u.client.list("/")}
        assert root["report.txt"]["kind"] == "file" and root["report.txt"]["share"]["role"] == role
        assert root["report.txt"]["size"] == 2 and root["report.txt"]["id"] == entry["id"]
        assert await get_text(u, "/report.txt", tmp_path) == b"v1"
        assert {s["ns"]: s["kind"] for s in await u.client.shares()}[ns] == "file"
        await refused(ErrorCode.not_a_directory, u.client.stat("/report.txt/x"))

    async with LiveSession.connect(server.url, owner.client.token or "") as lo, \
            LiveSession.connect(server.url, viewer.client.token or "") as lv:
        assert {"ns": ns, "path": "/report.txt", "role": "viewer", "kind": "file"} in lv.welcome["namespaces"]
        await lo.subscribe(ns)
        await lv.subscribe(ns)
        # The editor writes a new revision: it reaches the owner and the viewer live.
        await put_text(editor, "/report.txt", b"v2 from the editor", tmp_path)
        for live in (lo, lv):
            change = await ws.next_change(live)
            assert (change["ns"], change["op"], change["path"]) == (ns, "modify", "/report.txt")
        assert await get_text(owner, "/Docs/report.txt", tmp_path) == b"v2 from the editor"

        # The viewer's writes are refused and change nothing; nobody deletes through a member mount.
        head = await ws.head(owner.client, ns)
        await refused(ErrorCode.forbidden, put_text(viewer, "/report.txt", b"no", tmp_path))
        await refused(ErrorCode.forbidden, lv.commit("/report.txt", None, 2, [b"hi"]))
        await refused(ErrorCode.nested_share, editor.client.delete("/report.txt"))
        await refused(ErrorCode.forbidden, viewer.client.delete("/report.txt"))
        await refused(ErrorCode.forbidden, viewer.client.share("/report.txt", editor.name, "viewer"))
        await refused(ErrorCode.not_a_directory, editor.client.mkdir("/report.txt/sub"))
        assert await ws.head(owner.client, ns) == head

        # Renaming moves only one's own mount; the others keep their names.
        moved = await editor.client.move("/report.txt", "/Mine/renamed.txt")
        assert (moved["path"], moved["name"], moved["kind"]) == ("/Mine/renamed.txt", "renamed.txt", "file")
        assert await get_text(editor, "/Mine/renamed.txt", tmp_path) == b"v2 from the editor"
        assert (await viewer.client.stat("/report.txt"))["name"] == "report.txt"
        assert (await owner.client.stat("/Docs/report.txt"))["name"] == "report.txt"

        # A downgrade counts from the next request; a removal ends the live subscription at once.
        editor_id = next(m["user_id"] for m in members["members"] if m["user"] == editor.name)
        await owner.client.set_role(ns, editor_id, "viewer")
        await refused(ErrorCode.forbidden, put_text(editor, "/Mine/renamed.txt", b"late", tmp_path))
        viewer_id = next(m["user_id"] for m in members["members"] if m["user"] == viewer.name)
        await owner.client.remove_member(ns, viewer_id)
        async with asyncio.timeout(10):
            while (frame := await lv.next_push()).type is not MsgType.revoked:
                pass
        assert frame.body["ns"] == ns and frame.body["reason"] == "access_removed"
        await refused(ErrorCode.not_found, lv.subscribe(ns))
        await refused(ErrorCode.not_found, viewer.client.stat("/report.txt"))
        assert "report.txt" not in {e["name"] for e in await viewer.client.list("/")}
        await refused(ErrorCode.not_found, viewer.client.request("GET", f"/api/v1/files/{entry['id']}"))

    # Quota counts the shared file to its owner only.
    assert (await owner.client.quota())["used"] - before["used"] == len(b"v2 from the editor")
    assert (await editor.client.quota())["used"] == 0
    # The owner may delete it (to the file's trash) and restore it; members then find nothing.
    await owner.client.delete("/Docs/report.txt")
    await refused(ErrorCode.not_found, editor.client.stat("/Mine/renamed.txt"))
    await owner.client.request("POST", "/api/v1/trash/restore", json={"path": "/Docs/report.txt"})
    assert await get_text(editor, "/Mine/renamed.txt", tmp_path) == b"v2 from the editor"
    await editor.client.leave(ns)
    await refused(ErrorCode.not_found, editor.client.stat("/Mine/renamed.txt"))


# ---------------------------------------------------------------- the file-share authorization matrix

FILE_ACTORS = ("stranger", "removed", "anon", "viewer", "editor", "owner")
READ: dict[str, str] = {"owner": OK, "editor": OK, "viewer": OK, "stranger": "not_found", "removed": "not_found",
                        "anon": "unauthorized"}
WRITE = READ | {"viewer": "forbidden"}
MANAGE = READ | {"editor": "forbidden", "viewer": "forbidden"}


def _where(a: str) -> str:
    """The shared file in *a*'s tree (strangers name the owner's path: their own tree lacks it)."""
    return "/Docs/report.txt" if a in ("owner", "stranger", "removed", "anon") else "/report.txt"


def _rows(ns: int, file_id: int, rev: int, extra_id: int) -> dict[str, tuple[str, str, Any, dict[str, str]]]:
    """name -> (method, url, json body or params (a function of the actor), cells)."""
    def at(a: str) -> dict[str, str]:
        return {"path": _where(a)}
    return {
        "stat": ("GET", "/api/v1/stat", at, READ),
        "list": ("GET", "/api/v1/list", at, READ),
        "info": ("GET", f"/api/v1/files/{file_id}", None, READ),
        "chunks": ("GET", f"/api/v1/files/{file_id}/chunks", None, READ),
        "content": ("GET", f"/api/v1/files/{file_id}/content", None, READ),
        "revisions": ("GET", f"/api/v1/files/{file_id}/revisions", None, READ),
        "members": ("GET", f"/api/v1/shares/{ns}/members", None, READ),
        "changes": ("GET", "/api/v1/changes/latest", lambda a: {"ns": ns}, READ),
        "upload": ("POST", "/api/v1/files", lambda a: {"path": _where(a), "size": 0, "chunks": [],
                                                        "parent_rev": rev},
                   WRITE | {"stranger": "conflict", "removed": "conflict"}),  # their own tree: no such file
        "link": ("POST", "/api/v1/links", lambda a: {"path": _where(a)},
                 MANAGE | {"stranger": "not_found", "removed": "not_found"}),
        "add-member": ("POST", f"/api/v1/files/{file_id}/share",
                       lambda a: {"members": [{"user": "nobody-here", "role": "viewer"}]},
                       MANAGE | {"owner": "not_found"}),  # the owner is allowed; the user does not exist
        "set-role": ("PATCH", f"/api/v1/shares/{ns}/members/{extra_id}", lambda a: {"role": "viewer"}, MANAGE),
        "delete": ("POST", "/api/v1/delete", lambda a: {"path": _where(a), "rev": 0},
                   WRITE | {"stranger": "not_found", "removed": "not_found", "editor": "nested_share",
                            "owner": "conflict"}),  # the owner may; rev 0 makes it a no-op
        # to a time before the file existed: that deletes it, the owner's call alone
        "rewind": ("POST", "/api/v1/rewind", lambda a: {"path": _where(a), "to": 0, "dry_run": True},
                   WRITE | {"editor": "nested_share"}),  # strangers: nothing at that path in their tree
        # last: strangers' mkdir -p creates these folders in their own trees
        "mkdir-below": ("POST", "/api/v1/mkdir", lambda a: {"path": _where(a) + "/sub"},
                        WRITE | {"stranger": OK, "removed": OK, "editor": "not_a_directory",
                                 "owner": "not_a_directory"}),
    }


def _outcome(r: httpx.Response) -> str:
    return OK if r.status_code < 400 else str(r.json()["error"])


async def test_file_share_authorization_matrix(server: ServerProcess, make_user: MakeUser, tmp_path: Path) -> None:
    users = {n: await make_user(n) for n in ("owner", "editor", "viewer", "stranger", "removed", "extra")}
    o = users["owner"]
    entry = await put_text(o, "/Docs/report.txt", b"the numbers", tmp_path)
    for n, role in (("editor", "editor"), ("viewer", "viewer"), ("removed", "viewer"), ("extra", "editor")):
        share = await o.client.share("/Docs/report.txt", users[n].name, role)
    ids = {m["user"]: m["user_id"] for m in share["members"]}
    ns = share["ns"]
    await o.client.remove_member(ns, ids[users["removed"].name])
    failures: list[str] = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        def state() -> tuple[Any, ...]:
            t = {"Authorization": f"Bearer {o.client.token}"}
            head = http.get("/api/v1/changes/latest", params={"ns": ns}, headers=t).json()["seq"]
            return head, http.get("/api/v1/stat", params={"path": "/Docs/report.txt"}, headers=t).json()

        for name, (method, url, arg, cells) in _rows(ns, entry["id"], entry["rev"], ids[users["extra"].name]).items():
            for a in FILE_ACTORS:
                headers = {} if a == "anon" else {"Authorization": f"Bearer {users[a].client.token}"}
                kw: dict[str, Any] = {}
                if arg is not None:
                    kw = {"params": arg(a)} if method == "GET" else {"json": arg(a)}
                before = state()
                got = _outcome(http.request(method, url, headers=headers, **kw))
                if got != cells[a]:
                    failures.append(f"{name} as {a}: {got}, expected {cells[a]}")
                elif got != OK and state() != before:
                    failures.append(f"{name} as {a} was refused but changed the shared file")
    assert not failures, "\n".join(failures)
    # The content is untouched by every refused write.
    assert await get_text(o, "/Docs/report.txt", tmp_path) == b"the numbers"


async def test_file_share_idor(server: ServerProcess, make_user: MakeUser, tmp_path: Path) -> None:
    owner, member, other = await make_user("o"), await make_user("m"), await make_user("x")
    entry = await put_text(owner, "/Docs/a.txt", b"shared bytes", tmp_path)
    await put_text(owner, "/Docs/b.txt", b"private bytes", tmp_path)
    await put_text(member, "/a.txt", b"the member's own a.txt", tmp_path)
    ns = (await owner.client.share("/Docs/a.txt", member.name, "viewer"))["ns"]
    private = await owner.client.stat("/Docs/b.txt")
    root = (await owner.client.account())["root_namespace"]
    # The member reaches the shared file and nothing next to it, by id or by namespace.
    for coro in (member.client.request("GET", f"/api/v1/files/{private['id']}"),
                 member.client.request("GET", "/api/v1/changes/latest", params={"ns": root}),
                 member.client.request("GET", f"/api/v1/shares/{root}/members"),
                 other.client.request("GET", f"/api/v1/files/{entry['id']}"),
                 other.client.request("GET", "/api/v1/changes/latest", params={"ns": ns}),
                 other.client.request("GET", f"/api/v1/shares/{ns}/members")):
        await refused(ErrorCode.not_found, coro)
    # The member's own /a.txt was there first: the share lands next to it.
    assert (await member.client.request("GET", f"/api/v1/files/{entry['id']}"))["path"] == "/a (2).txt"
    assert await get_text(member, "/a.txt", tmp_path) == b"the member's own a.txt"


async def test_member_chunk_urls_die_with_access(server: ServerProcess, make_user: MakeUser, tmp_path: Path) -> None:
    """URLs handed out before a removal or a downgrade stop working on their next use (server-signed),
    or live only SATCHEL_MEMBER_URL_TTL (S3 presigned, which cannot be recalled)."""
    owner, editor = await make_user("o"), await make_user("e")
    entry = await put_text(owner, "/Team/data.bin", b"chunk bytes", tmp_path)
    ns = (await owner.client.share("/Team", editor.name, "editor"))["ns"]
    down = (await editor.client.chunk_list(entry["id"]))["chunks"][0]["url"]
    body = b"new bytes from the editor"
    digest = hashlib.sha256(body).hexdigest()
    up = (await editor.client.start_upload({"path": "/Team/new.bin", "size": len(body),
                                            "chunks": [[digest, len(body)]]}))["missing"][0]
    own_down = (await owner.client.chunk_list(entry["id"]))["chunks"][0]["url"]
    editor_id = next(m["user_id"] for m in (await owner.client.members(ns))["members"]
                     if m["user"] == editor.name)
    with httpx.Client(timeout=30) as http:
        if "X-Amz-Expires" in down:  # S3: short-lived instead of recalled
            for url in (down, up["url"]):
                assert int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0]) == 300
            assert int(parse_qs(urlsplit(own_down).query)["X-Amz-Expires"][0]) == 3600
            return
        assert "ns=" not in own_down  # the owner's URLs keep the database-free path
        await owner.client.set_role(ns, editor_id, "viewer")
        r = http.put(up["url"], content=body, headers=up["headers"])
        assert (r.status_code, r.json()["error"]) == (403, "forbidden")
        assert http.get(down).content == b"chunk bytes"  # a viewer still reads
        await owner.client.remove_member(ns, editor_id)
        r = http.get(down)
        assert (r.status_code, r.json()["error"]) == (403, "forbidden")
        assert http.get(own_down).content == b"chunk bytes"


async def test_trash_moves_with_a_folder_when_it_is_shared(server: ServerProcess, make_user: MakeUser,
                                                           tmp_path: Path) -> None:
    """Items deleted from inside a folder go along when the folder becomes shared (its editors can
    restore them); items deleted from above it, or an older folder of the same path, stay the owner's."""
    owner, editor, viewer = await make_user("o"), await make_user("e"), await make_user("v")
    await put_text(owner, "/Projects/Apollo/old.txt", b"old notes", tmp_path)
    await put_text(owner, "/Projects/Apollo/d/x.txt", b"in a folder", tmp_path)
    await put_text(owner, "/Projects/Apollo/keep.txt", b"live", tmp_path)
    await put_text(owner, "/Projects/other.txt", b"not shared", tmp_path)
    for p in ("/Projects/Apollo/old.txt", "/Projects/Apollo/d", "/Projects/other.txt"):
        await owner.client.delete(p)
    early = await owner.client.create_link("/Projects/Apollo/keep.txt")
    await owner.client.share("/Projects/Apollo", editor.name, "editor")
    await owner.client.share("/Projects/Apollo", viewer.name, "viewer")

    assert await owner.client.link_download(early["url"], tmp_path / "early") == 4  # links move along
    assert sorted(e["path"] for e in await owner.client.trash("/")) == ["/Projects/other.txt"]
    assert sorted(e["path"] for e in await owner.client.trash("/Projects/Apollo")) == [
        "/Projects/Apollo/d", "/Projects/Apollo/old.txt"]
    items = {e["path"]: e for e in await editor.client.trash("/Apollo")}
    assert sorted(items) == ["/Apollo/d", "/Apollo/old.txt"] and items["/Apollo/d"]["items"] == 2
    await refused(ErrorCode.forbidden, viewer.client.undelete("/Apollo/old.txt"))
    await refused(ErrorCode.not_found, editor.client.undelete("/Apollo/other.txt"))
    await editor.client.undelete("/Apollo/d")
    await editor.client.undelete("/Apollo/old.txt")
    assert await get_text(owner, "/Projects/Apollo/d/x.txt", tmp_path) == b"in a folder"
    assert await get_text(viewer, "/Apollo/old.txt", tmp_path) == b"old notes"
    assert await owner.client.trash("/Projects/Apollo") == []
    await owner.client.undelete("/Projects/other.txt")
    assert await get_text(owner, "/Projects/other.txt", tmp_path) == b"not shared"


async def test_link_password_beyond_ascii(server: ServerProcess, make_user: MakeUser, tmp_path: Path) -> None:
    pw = "pässwörd-日本"
    owner = await make_user("o")
    await put_text(owner, "/Docs/r.txt", b"numbers", tmp_path)
    link = await owner.client.create_link("/Docs/r.txt", password=pw)
    # The SDK sends X-Satchel-Link-Password* (RFC 8187): any Unicode password works.
    assert (await owner.client.link_info(link["url"], password=pw))["entry"]["name"] == "r.txt"
    out = tmp_path / "got"
    assert await owner.client.link_download(link["url"], out, password=pw) == 7
    await refused(ErrorCode.password_required, owner.client.link_info(link["url"], password="passwörd-日本"))
    route = link["url"].removeprefix(server.url)
    ext = "UTF-8''" + quote(pw, safe="")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get(route, headers={"X-Satchel-Link-Password*": ext}).status_code == 200
        # The plain header still works, with raw UTF-8 bytes too (curl -H sends those).
        assert http.get(route, headers={b"X-Satchel-Link-Password": pw.encode()}).status_code == 200
        for bad in ("UTF-8''%ZZ%FF", "latin-1''p%E4ss", "no quotes"):
            r = http.get(route, headers={"X-Satchel-Link-Password*": bad})
            assert (r.status_code, r.json()["error"]) == (400, "bad_request"), bad
        ascii_link = await owner.client.create_link("/Docs/r.txt", password=PW)
        r = http.get(ascii_link["url"].removeprefix(server.url), headers={"X-Satchel-Link-Password": PW})
        assert r.status_code == 200


async def test_cli_shares_a_file(server: ServerProcess, make_user: MakeUser, device_factory: Any,
                                 tmp_path: Path) -> None:
    """`satchel share FILE USER --role`, members, unshare: the real command against the server."""
    owner, bob = await make_user("o"), await make_user("b")
    await put_text(owner, "/Docs/report.pdf", b"%PDF numbers", tmp_path)
    dev = device_factory("owner")

    def run(*args: str) -> str:
        return str(dev.run(*args).stdout)

    await asyncio.to_thread(dev.run, "login", server.url, owner.name, "--password-stdin", stdin=owner.password + "\n")
    out = await asyncio.to_thread(run, "share", "/Docs/report.pdf", bob.name, "--role", "editor")
    assert f"shared with {bob.name} as editor" in out
    members = await asyncio.to_thread(run, "members", "/Docs/report.pdf")
    assert f"editor  {bob.name}" in members and f"owner   {owner.name}" in members
    assert "/Docs/report.pdf  (file)" in await asyncio.to_thread(run, "members")
    assert await get_text(bob, "/report.pdf", tmp_path) == b"%PDF numbers"
    await put_text(bob, "/report.pdf", b"%PDF edited by bob", tmp_path)
    assert await get_text(owner, "/Docs/report.pdf", tmp_path) == b"%PDF edited by bob"
    await asyncio.to_thread(run, "unshare", "/Docs/report.pdf", bob.name)
    await refused(ErrorCode.not_found, bob.client.stat("/report.pdf"))


async def test_signed_link_content_url_stands_for_the_password(server: ServerProcess, make_user: MakeUser,
                                                               tmp_path: Path) -> None:
    """A password link's bytes through a URL a download manager can fetch (no header); the link's
    revocation still counts at once, and the URL names one link and one path."""
    owner = await make_user("o")
    await put_text(owner, "/Docs/a.txt", b"first file", tmp_path)
    await put_text(owner, "/Docs/b.txt", b"second file", tmp_path)
    link = await owner.client.create_link("/Docs", password=PW)
    other = await owner.client.create_link("/Docs", password=PW)
    route = link["url"].removeprefix(server.url)
    pw = {"X-Satchel-Link-Password": PW}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.get(route + "/content-url", params={"path": "/a.txt"})
        assert (r.status_code, r.json()["error"]) == (401, "password_required")
        r = http.get(route + "/content-url", params={"path": "/nope.txt"}, headers=pw)
        assert (r.status_code, r.json()["error"]) == (404, "not_found")
        got = http.get(route + "/content-url", params={"path": "/a.txt"}, headers=pw).json()
        assert got["size"] == 10 and got["url"].startswith(server.url + route + "/content?")
        signed = got["url"].removeprefix(server.url)
        r = http.get(signed)
        assert (r.status_code, r.content) == (200, b"first file")
        r = http.get(signed, headers={"Range": "bytes=6-"})
        assert (r.status_code, r.content) == (206, b"file")
        assert http.head(signed).status_code == 200
        # Another path, another link's token, or a forged signature: refused.
        for bad in (signed.replace("a.txt", "b.txt"),
                    signed.replace(route, other["url"].removeprefix(server.url)),
                    signed[:-3] + ("AAA" if not signed.endswith("AAA") else "BBB")):
            r = http.get(bad)
            assert (r.status_code, r.json()["error"]) == (403, "bad_signature"), bad
        await owner.client.revoke_link(link["id"])
        r = http.get(signed)
        assert (r.status_code, r.json()["error"]) == (404, "not_found")
