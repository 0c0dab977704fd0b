"""Sharing end to end on both stacks: shared folders with roles, mounts, live revocation, links,
and the authorization matrix (every REST route and every WebSocket request x every kind of caller).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from python_client.live import LiveSession
from server.app import create_app
from server.coedit import awareness
from server.config import Config
from server.core.errors import STATUS, ErrorCode, SatchelError
from server.ws.protocol import REQUESTS, MsgType
from tests.conftest import User, api
from tests.harness import ws
from tests.harness.server import ServerProcess

MakeUser = Callable[..., Any]
PW = "open sesame"


async def put_text(u: User, path: str, text: bytes, tmp_path: Path) -> dict[str, Any]:
    local = tmp_path / f"up-{time.monotonic_ns()}"
    local.write_bytes(text)
    return await u.client.upload(local, path)


async def get_text(u: User, path: str, tmp_path: Path) -> bytes:
    local = tmp_path / f"down-{time.monotonic_ns()}"
    await u.client.download(path, local)
    return local.read_bytes()


async def refused(code: ErrorCode, coro: Any) -> None:
    with pytest.raises(SatchelError) as info:
        await coro
    assert info.value.code is code, info.value


async def test_shared_folder_roles_and_revocation(server: ServerProcess, make_user: MakeUser,
                                                  tmp_path: Path) -> None:
    owner, editor, viewer = await make_user("o"), await make_user("e"), await make_user("v")
    await put_text(owner, "/Projects/Apollo/plan.txt", b"v1", tmp_path)
    await owner.client.share("/Projects/Apollo", editor.name, "editor")
    members = await owner.client.share("/Projects/Apollo", viewer.name, "viewer")
    assert [(m["user"], m["role"]) for m in members["members"]] == [
        (owner.name, "owner"), (editor.name, "editor"), (viewer.name, "viewer")]
    ns = members["ns"]
    # The folder stays where it was for the owner and appears at /Apollo for the members.
    assert [e["name"] for e in await owner.client.list("/Projects/Apollo")] == ["plan.txt"]
    for u in (editor, viewer):
        root = {e["name"]: e for e in await u.client.list("/")}
        assert root["Apollo"]["share"] == {"ns": ns, "role": "editor" if u is editor else "viewer",
                                           "owner_id": (await owner.client.account())["id"], "can_reshare": False}
        assert await get_text(u, "/Apollo/plan.txt", tmp_path) == b"v1"

    # Live: the editor's edit reaches the owner's and the viewer's devices.
    async with LiveSession.connect(server.url, owner.client.token or "") as lo, \
            LiveSession.connect(server.url, viewer.client.token or "") as lv:
        assert {"ns": ns, "path": "/Apollo", "role": "viewer"} in lv.welcome["namespaces"]
        await lo.subscribe(ns)
        await lv.subscribe(ns)
        await put_text(editor, "/Apollo/notes.txt", b"from the editor", tmp_path)
        for live in (lo, lv):
            change = await ws.next_change(live)
            assert (change["ns"], change["op"], change["path"]) == (ns, "create", "/notes.txt")
        assert await get_text(owner, "/Projects/Apollo/notes.txt", tmp_path) == b"from the editor"

        # Every write of the viewer is refused, and nothing changes.
        before = await ws.head(owner.client, ns)
        await refused(ErrorCode.forbidden, put_text(viewer, "/Apollo/x.txt", b"no", tmp_path))
        await refused(ErrorCode.forbidden, viewer.client.mkdir("/Apollo/d"))
        await refused(ErrorCode.forbidden, viewer.client.delete("/Apollo/plan.txt"))
        await refused(ErrorCode.forbidden, viewer.client.move("/Apollo/plan.txt", "/Apollo/p.txt"))
        await refused(ErrorCode.forbidden, lv.commit("/Apollo/w.txt", None, 2, [b"hi"]))
        await refused(ErrorCode.forbidden, viewer.client.share("/Apollo", editor.name, "viewer"))
        await refused(ErrorCode.cross_namespace, editor.client.move("/Apollo/plan.txt", "/plan.txt"))
        assert await ws.head(owner.client, ns) == before

        # A member may move their own mount; the owner turns the editor into a viewer.
        await viewer.client.move("/Apollo", "/Shared/Apollo")
        assert await get_text(viewer, "/Shared/Apollo/plan.txt", tmp_path) == b"v1"
        started = await editor.client.start_upload({"path": "/Apollo/late.txt", "size": 0, "chunks": []})
        editor_id = next(m["user_id"] for m in members["members"] if m["user"] == editor.name)
        await owner.client.set_role(ns, editor_id, "viewer")
        await refused(ErrorCode.forbidden, editor.client.mkdir("/Apollo/after"))
        await refused(ErrorCode.forbidden, editor.client.commit_upload(started["upload_id"]))

        # Removing the viewer ends their live subscription at once, with a revoked frame.
        viewer_id = next(m["user_id"] for m in members["members"] if m["user"] == viewer.name)
        await owner.client.remove_member(ns, viewer_id)
        async with asyncio.timeout(10):
            while True:
                frame = await lv.next_push()
                if frame.type is MsgType.revoked:
                    break
        assert frame.body["ns"] == ns and frame.body["reason"] == "access_removed"
        await refused(ErrorCode.not_found, lv.subscribe(ns))
        await refused(ErrorCode.not_found, viewer.client.stat("/Shared/Apollo/plan.txt"))
        assert "Apollo" not in {e["name"] for e in await viewer.client.list("/Shared")}
        await put_text(owner, "/Projects/Apollo/after.txt", b"x", tmp_path)
        await ws.no_push(lv, 0.5)

    # Membership changes are journal entries: the viewer's root namespace saw mount, move, unmount.
    vroot = (await viewer.client.account())["root_namespace"]
    page = await viewer.client.request("GET", "/api/v1/changes", params={"cursor": f"v1.{vroot}.0"})
    assert [(e["op"], e["kind"]) for e in page["entries"] if e["kind"] == "mount"] == [
        ("mount", "mount"), ("move", "mount"), ("unmount", "mount")]
    # A member may leave; the owner cannot.
    await editor.client.leave(ns)
    await refused(ErrorCode.not_found, editor.client.stat("/Apollo"))
    await refused(ErrorCode.not_found, owner.client.leave(ns + 10_000))


async def test_link_shares(server: ServerProcess, make_user: MakeUser, tmp_path: Path) -> None:
    owner = await make_user("o")
    await put_text(owner, "/Docs/report.txt", b"quarterly numbers", tmp_path)
    link = await owner.client.create_link("/Docs/report.txt", expires="3d", password=PW)
    assert link["url"].startswith(server.url) and link["has_password"]
    anon = owner.client  # its http client, without the bearer token: public routes ignore it
    await refused(ErrorCode.password_required, anon.link_info(link["url"]))
    await refused(ErrorCode.password_required, anon.link_info(link["url"], password="wrong"))
    info = await anon.link_info(link["url"], password=PW)
    assert info["entry"]["name"] == "report.txt" and "id" not in info["entry"]
    out = tmp_path / "got"
    assert await anon.link_download(link["url"], out, password=PW) == 17
    assert out.read_bytes() == b"quarterly numbers"

    # A folder link lists and serves files inside; a file request only takes new files.
    folder = await owner.client.create_link("/Docs")
    assert [e["name"] for e in (await anon.link_info(folder["url"]))["entries"]] == ["report.txt"]
    request = await owner.client.create_link("/Docs", mode="upload")
    src = tmp_path / "drop.txt"
    src.write_bytes(b"dropped in")
    assert (await anon.link_upload(request["url"], src))["name"] == "drop.txt"
    assert (await anon.link_upload(request["url"], src))["name"] == "drop (2).txt"
    assert await get_text(owner, "/Docs/drop (2).txt", tmp_path) == b"dropped in"
    assert "entries" not in await anon.link_info(request["url"])
    await refused(ErrorCode.forbidden, anon.link_download(request["url"], out, path="/drop.txt"))
    await refused(ErrorCode.forbidden, anon.link_upload(folder["url"], src))

    # Revoked and expired links answer exactly like a token that never existed.
    short = await owner.client.create_link("/Docs/report.txt", expires=1)
    await owner.client.revoke_link(folder["id"])
    assert {x["id"] for x in await owner.client.links()} >= {link["id"], request["id"], short["id"]}
    await asyncio.sleep(1.2)
    bodies = []
    for url in (folder["url"], short["url"], server.url + "/api/v1/public/links/satl_" + "A" * 43):
        r = api(server, "GET", url.removeprefix(server.url))
        assert r.status_code == 404
        bodies.append(r.json())
    assert bodies[0] == bodies[1] == bodies[2]


# ---------------------------------------------------------------- the authorization matrix

ACTORS = ("stranger", "removed", "anon", "viewer", "editor", "owner")  # owner last: its cells mutate
LINK_ACTORS = ("with_password", "no_password", "wrong_password", "expired", "revoked", "unknown")
OK = "ok"


@dataclass
class World:
    server: ServerProcess
    http: httpx.Client
    users: dict[str, User]
    ns: int
    file_id: int
    other_dir_id: int
    uploads: dict[str, str]
    extra: dict[str, int]
    links: dict[str, dict[str, Any]]
    seen: dict[str, Any] = field(default_factory=dict)

    def call(self, method: str, url: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, url, headers=headers, **kw)

    def token(self, actor: str) -> str | None:
        return None if actor == "anon" else self.users[actor].client.token

    def base(self, actor: str) -> str:
        """Where the shared folder is for *actor* (for others: a path their own tree never has)."""
        return "/Projects/Apollo" if actor == "owner" else "/Apollo"

    def write_base(self, actor: str) -> str:
        """Where *actor*'s writes go: the shared folder, or (strangers) a folder of their own tree,
        so their reads of ``base`` keep finding nothing."""
        return "/Apollo" if actor in ("editor", "viewer") else "/Projects/Apollo"


Cell = dict[str, str]
Req = Callable[[World, str], tuple[str, dict[str, Any]]]

MEMBERS_READ: Cell = {"owner": OK, "editor": OK, "viewer": OK, "stranger": "not_found", "removed": "not_found",
                      "anon": "unauthorized"}
MEMBERS_WRITE: Cell = MEMBERS_READ | {"viewer": "forbidden"}
OWN_TREE_WRITE: Cell = MEMBERS_WRITE | {"stranger": OK, "removed": OK}  # their path is in their own tree
OWN_TREE_READ: Cell = MEMBERS_READ | {"stranger": OK, "removed": OK}
OWNER_ONLY: Cell = MEMBERS_READ | {"editor": "forbidden", "viewer": "forbidden"}
BY_ID_OWNER: Cell = MEMBERS_READ | {"editor": "not_found", "viewer": "not_found"}
ANY_USER: Cell = {a: OK for a in ACTORS} | {"anon": "unauthorized"}
SIGNED: Cell = {a: "bad_signature" for a in ACTORS}
PUBLIC_ROUTE: Cell = {a: OK for a in ACTORS}


def _q(route: str, /, **params: Any) -> Req:
    return lambda w, a: (route.format(w=w, a=a), {"params": {k: v(w, a) if callable(v) else v
                                                            for k, v in params.items()}})


def _j(path: str, body: Callable[[World, str], dict[str, Any]]) -> Req:
    return lambda w, a: (path.format(w=w, a=a), {"json": body(w, a)})


REST: dict[tuple[str, str], tuple[Req, Cell]] = {
    ("GET", "/health"): (_q("/health"), PUBLIC_ROUTE),
    ("GET", "/openapi.json"): (_q("/openapi.json"), PUBLIC_ROUTE),
    ("GET", "/"): (_q("/"), PUBLIC_ROUTE),  # the web app's page: it signs in by itself
    ("GET", "/assets/{name}"): (_q("/assets/nothing-here.js"), {a: "not_found" for a in ACTORS}),
    ("POST", "/api/v1/auth/signup"): (_j("/api/v1/auth/signup", lambda w, a: {"name": "x", "password": "short"}),
                                      {a: "bad_request" for a in ACTORS}),
    ("POST", "/api/v1/auth/login"): (_j("/api/v1/auth/login", lambda w, a: {
        "name": w.users["owner"].name, "password": "wrong password", "device_name": "d", "device_kind": "cli"}),
        {a: "bad_credentials" for a in ACTORS}),
    ("GET", "/api/v1/account"): (_q("/api/v1/account"), ANY_USER),
    ("GET", "/api/v1/devices"): (_q("/api/v1/devices"), ANY_USER),
    ("DELETE", "/api/v1/devices/{device_id}"): (_q("/api/v1/devices/999999999"),
                                                ANY_USER | {a: "not_found" for a in ACTORS if a != "anon"}),
    ("GET", "/api/v1/list"): (_q("/api/v1/list", path=lambda w, a: w.base(a)), MEMBERS_READ),
    ("GET", "/api/v1/stat"): (_q("/api/v1/stat", path=lambda w, a: w.base(a) + "/plan.txt"), MEMBERS_READ),
    ("POST", "/api/v1/mkdir"): (_j("/api/v1/mkdir", lambda w, a: {"path": f"{w.write_base(a)}/mk-{a}"}),
                                OWN_TREE_WRITE),
    ("POST", "/api/v1/move"): (_j("/api/v1/move", lambda w, a: {"from": f"{w.base(a)}/mv-{a}",
                                                               "to": f"{w.base(a)}/moved-{a}"}), MEMBERS_WRITE),
    ("POST", "/api/v1/delete"): (_j("/api/v1/delete", lambda w, a: {"path": f"{w.base(a)}/rm-{a}"}), MEMBERS_WRITE),
    ("POST", "/api/v1/files"): (_j("/api/v1/files", lambda w, a: {"path": f"{w.write_base(a)}/up-{a}", "size": 0,
                                                                  "chunks": []}), OWN_TREE_WRITE),
    ("GET", "/api/v1/files/{file_id}"): (_q("/api/v1/files/{w.file_id}"), MEMBERS_READ),
    ("GET", "/api/v1/files/{file_id}/chunks"): (_q("/api/v1/files/{w.file_id}/chunks"), MEMBERS_READ),
    ("GET", "/api/v1/files/{file_id}/content"): (_q("/api/v1/files/{w.file_id}/content"), MEMBERS_READ),
    ("HEAD", "/api/v1/files/{file_id}/content"): (_q("/api/v1/files/{w.file_id}/content"), MEMBERS_READ),
    ("GET", "/api/v1/files/{file_id}/content-url"): (_q("/api/v1/files/{w.file_id}/content-url"), MEMBERS_READ),
    ("GET", "/api/v1/uploads/{upload_id}"): (lambda w, a: (f"/api/v1/uploads/{w.uploads['get']}", {}),
                                             BY_ID_OWNER),
    ("DELETE", "/api/v1/uploads/{upload_id}"): (lambda w, a: (f"/api/v1/uploads/{w.uploads['delete']}", {}),
                                                BY_ID_OWNER),
    ("POST", "/api/v1/uploads/{upload_id}/commit"): (
        lambda w, a: (f"/api/v1/uploads/{w.uploads['commit']}/commit", {}), BY_ID_OWNER),
    # The owner's upload has no parent revision: its own patch is refused for that, anyone else's
    # request does not find the upload at all.
    ("POST", "/api/v1/uploads/{upload_id}/patch"): (_j("/api/v1/uploads/{w.uploads[get]}/patch", lambda w, a: {
        "chunks": [{"hash": "0" * 64, "size": 1, "parts": [[0, 1]]}]}), BY_ID_OWNER | {"owner": "bad_request"}),
    ("PUT", "/api/v1/blobs/up/{upload_id}/{hash}"): (
        lambda w, a: (f"/api/v1/blobs/up/{w.uploads['get']}/{'0' * 64}", {"content": b"x"}), SIGNED),
    ("PUT", "/api/v1/blobs/pack/{upload_id}"): (
        lambda w, a: (f"/api/v1/blobs/pack/{w.uploads['get']}", {"content": b"x"}), SIGNED),
    ("GET", "/api/v1/blobs/down/{owner_id}/{hash}"): (_q("/api/v1/blobs/down/1/" + "0" * 64), SIGNED),
    ("GET", "/api/v1/changes"): (_q("/api/v1/changes", cursor=lambda w, a: f"v1.{w.ns}.0"),
                                 MEMBERS_READ | {"stranger": "bad_cursor", "removed": "bad_cursor"}),
    ("GET", "/api/v1/changes/latest"): (_q("/api/v1/changes/latest", ns=lambda w, a: w.ns), MEMBERS_READ),
    ("POST", "/api/v1/shares"): (_j("/api/v1/shares", lambda w, a: {
        "path": w.base(a), "members": [{"user": w.users["extra"].name, "role": "viewer"}]}), OWNER_ONLY),
    ("GET", "/api/v1/shares"): (_q("/api/v1/shares"), ANY_USER),
    ("POST", "/api/v1/files/{file_id}/share"): (_j("/api/v1/files/{w.other_dir_id}/share", lambda w, a: {
        "members": [{"user": w.users["viewer"].name, "role": "viewer"}]}), BY_ID_OWNER),
    ("GET", "/api/v1/shares/{ns}/members"): (_q("/api/v1/shares/{w.ns}/members"), MEMBERS_READ),
    ("PATCH", "/api/v1/shares/{ns}/members/{user_id}"): (
        _j("/api/v1/shares/{w.ns}/members/{w.extra[extra]}", lambda w, a: {"role": "editor"}), OWNER_ONLY),
    ("DELETE", "/api/v1/shares/{ns}/members/{user_id}"): (
        lambda w, a: (f"/api/v1/shares/{w.ns}/members/{w.extra['extra2']}", {}), OWNER_ONLY),
    ("POST", "/api/v1/links"): (_j("/api/v1/links", lambda w, a: {"path": w.base(a) + "/plan.txt"}), OWNER_ONLY),
    ("GET", "/api/v1/links"): (_q("/api/v1/links"), ANY_USER),
    ("DELETE", "/api/v1/links/{link_id}"): (lambda w, a: (f"/api/v1/links/{w.links['to_delete']['id']}", {}),
                                            BY_ID_OWNER),
    ("GET", "/api/v1/files/{file_id}/revisions"): (_q("/api/v1/files/{w.file_id}/revisions"), MEMBERS_READ),
    ("POST", "/api/v1/files/{file_id}/restore"): (_j("/api/v1/files/{w.file_id}/restore", lambda w, a: {
        "rev": 2**31 - 1}), MEMBERS_WRITE | {"owner": "not_found", "editor": "not_found"}),
    # Strangers' paths lie in their own trees there (nothing in the trash, nothing found).
    ("GET", "/api/v1/trash"): (_q("/api/v1/trash", path=lambda w, a: w.base(a)), OWN_TREE_READ),
    ("POST", "/api/v1/trash/restore"): (_j("/api/v1/trash/restore", lambda w, a: {"path": w.base(a) + "/gone"}),
                                        MEMBERS_WRITE | {a: "not_found" for a in ("owner", "editor")}),
    ("POST", "/api/v1/trash/purge"): (_j("/api/v1/trash/purge", lambda w, a: {"path": w.base(a) + "/gone"}),
                                      OWNER_ONLY | {"owner": "not_found"}),
    ("POST", "/api/v1/rewind"): (_j("/api/v1/rewind", lambda w, a: {"path": w.base(a), "to": 0, "dry_run": True}),
                                 MEMBERS_WRITE),
    ("GET", "/api/v1/quota"): (_q("/api/v1/quota"), ANY_USER),
    ("POST", "/api/v1/files/search"): (_j("/api/v1/files/search", lambda w, a: {"query": "plan", "path": w.base(a)}),
                                       OWN_TREE_READ),
    # last: members leave for good, then every device logs out
    ("POST", "/api/v1/shares/{ns}/leave"): (_q("/api/v1/shares/{w.ns}/leave"),
                                            MEMBERS_READ | {"owner": "bad_request"}),
    ("POST", "/api/v1/auth/logout"): (_q("/api/v1/auth/logout"), ANY_USER),
}

LINK_CELL: Cell = {"with_password": OK, "no_password": "password_required", "wrong_password": "password_required",
                   "expired": "not_found", "revoked": "not_found", "unknown": "not_found"}
PUBLIC: dict[tuple[str, str], tuple[str, str, Cell]] = {
    # route -> (which link, suffix, cells)
    ("GET", "/api/v1/public/links/{token}"): ("download", "", LINK_CELL),
    ("GET", "/api/v1/public/links/{token}/content"): ("download", "/content", LINK_CELL),
    ("HEAD", "/api/v1/public/links/{token}/content"): ("download", "/content", LINK_CELL),
    ("GET", "/api/v1/public/links/{token}/content-url"): ("download", "/content-url", LINK_CELL),
    ("PUT", "/api/v1/public/links/{token}/files/{name}"): ("upload", "/files/in.txt", LINK_CELL),
}

WS_CELLS: dict[MsgType, tuple[Callable[[World, str], dict[str, Any]], Cell]] = {
    MsgType.hello: (lambda w, a: {"versions": [1], "token": "x"},
                    {a: "bad_request" for a in ACTORS} | {"anon": "unauthorized"}),
    MsgType.ping: (lambda w, a: {}, ANY_USER),
    MsgType.pong: (lambda w, a: {}, ANY_USER),
    MsgType.subscribe: (lambda w, a: {"ns": w.ns}, MEMBERS_READ),
    MsgType.unsubscribe: (lambda w, a: {"ns": w.ns}, ANY_USER),
    MsgType.commit: (lambda w, a: {"path": f"{w.write_base(a)}/ws-{a}.txt", "parent_rev": None, "size": 2,
                                   "ops": [b"ws"]}, OWN_TREE_WRITE),
    # batches: one item each; the matrix checks the item's result (the frame itself is answered)
    MsgType.commit_batch: (lambda w, a: {"items": [{"path": f"{w.write_base(a)}/wsb-{a}.txt", "parent_rev": None,
                                                    "size": 2, "ops": [b"wb"]}]}, OWN_TREE_WRITE),
    MsgType.fetch: (lambda w, a: {"items": [{"path": w.base(a) + "/plan.txt"}]}, MEMBERS_READ),
    MsgType.presence_set: (lambda w, a: {"ns": w.ns, "path": "/", "state": "viewing"}, MEMBERS_READ),
    # Co-editing: the frames after doc_join are sent after joining plan.txt (see _ws_outcome); the
    # update is an empty Yjs update, so an editor's accepted one changes nothing either.
    MsgType.doc_join: (lambda w, a: {"ns": w.ns, "path": "/plan.txt"}, MEMBERS_READ),
    MsgType.doc_update: (lambda w, a: {"doc": 1, "update": b"\x00\x00"}, MEMBERS_WRITE),
    MsgType.doc_awareness: (lambda w, a: {"doc": 1, "update": awareness.encode([(77, 1, '{"user": "x"}')])},
                            MEMBERS_READ),
    MsgType.doc_leave: (lambda w, a: {"doc": 1}, MEMBERS_READ),
}
DOC_FRAMES = {MsgType.doc_update, MsgType.doc_awareness, MsgType.doc_leave}


def route_table() -> set[tuple[str, str]]:
    return {(m, r.path) for r in create_app(Config()).routes if isinstance(r, Route) for m in (r.methods or ())
            if m != "HEAD" or r.path.endswith("/content")}


def test_every_route_and_message_has_a_row() -> None:
    assert route_table() == set(REST) | set(PUBLIC)
    assert set(WS_CELLS) == set(REQUESTS)
    for cells in [c for _, c in REST.values()] + [c for _, c in WS_CELLS.values()]:
        assert set(cells) == set(ACTORS)
    for _, _, cells in PUBLIC.values():
        assert set(cells) == set(LINK_ACTORS)


async def _world(server: ServerProcess, make_user: MakeUser, tmp_path: Path) -> World:
    names = ("owner", "editor", "viewer", "stranger", "removed", "extra", "extra2")
    users = {n: await make_user(n) for n in names}
    o = users["owner"]
    await put_text(o, "/Projects/Apollo/plan.txt", b"the plan", tmp_path)
    for a in ("owner", "editor", "viewer", "stranger", "removed"):
        await o.client.mkdir(f"/Projects/Apollo/mv-{a}")
        await o.client.mkdir(f"/Projects/Apollo/rm-{a}")
    await o.client.mkdir("/Other")
    share = None
    for n, role in (("editor", "editor"), ("viewer", "viewer"), ("removed", "viewer"), ("extra", "viewer"),
                    ("extra2", "viewer")):
        share = await o.client.share("/Projects/Apollo", users[n].name, role)
    assert share is not None
    ids = {m["user"]: m["user_id"] for m in share["members"]}
    await o.client.remove_member(share["ns"], ids[users["removed"].name])
    uploads = {k: (await o.client.start_upload({"path": f"/Projects/Apollo/{k}.bin", "size": 0, "chunks": []}))
               ["upload_id"] for k in ("get", "delete", "commit")}
    links = {
        "download": await o.client.create_link("/Projects/Apollo/plan.txt", password=PW),
        "upload": await o.client.create_link("/Projects/Apollo", mode="upload", password=PW),
        "expired": await o.client.create_link("/Projects/Apollo/plan.txt", expires=1),
        "revoked": await o.client.create_link("/Projects/Apollo/plan.txt"),
        "to_delete": await o.client.create_link("/Projects/Apollo/plan.txt"),
    }
    await o.client.revoke_link(links["revoked"]["id"])
    plan_id = (await o.client.stat("/Projects/Apollo/plan.txt"))["id"]
    return World(server, httpx.Client(base_url=server.url, timeout=30), users, share["ns"], plan_id,
                 (await o.client.stat("/Other"))["id"], uploads,
                 {"extra": ids[users["extra"].name], "extra2": ids[users["extra2"].name]}, links)


def _outcome(r: httpx.Response, expected: str) -> str:
    if r.status_code < 400:
        return OK
    if r.request.method == "HEAD":  # no body: the status must be the expected code's
        return expected if expected != OK and STATUS[ErrorCode(expected)] == r.status_code else str(r.status_code)
    code = r.json()["error"]
    assert STATUS[ErrorCode(code)] == r.status_code, r.text
    return str(code)


def _ns_state(w: World) -> tuple[int, Any]:
    """The shared namespace's journal head and the owner's view of it: a refused write changes neither."""
    t = w.token("owner")
    head = w.call("GET", "/api/v1/changes/latest", t, params={"ns": w.ns}).json()["seq"]
    return head, w.call("GET", "/api/v1/list", t, params={"path": "/Projects/Apollo"}).json()


async def _ws_outcome(w: World, actor: str, mtype: MsgType, body: dict[str, Any]) -> str:
    conn = await ws.connect(w.server.url)
    try:
        if actor == "anon":
            await ws.send(conn, MsgType.hello, 1, {"versions": [1], "token": ""})
            frame = await ws.recv(conn)
            return str(frame.body["code"]) if frame.type is MsgType.error else OK
        await ws.hello(conn, w.token(actor) or "")
        if mtype in DOC_FRAMES:  # these need a joined document: a refused join is the outcome
            await ws.send(conn, MsgType.doc_join, 6, {"ns": w.ns, "path": "/plan.txt"})
            while (frame := await ws.recv(conn)).id != 6:
                pass
            if frame.type is MsgType.error:
                return str(frame.body["code"])
            body = body | {"doc": frame.body["doc"]}
        await ws.send(conn, mtype, 7, body)
        if mtype in (MsgType.pong, MsgType.doc_update, MsgType.doc_awareness):
            # no reply: a ping after it shows the connection is still fine
            await ws.send(conn, MsgType.ping, 8)
        while True:
            frame = await ws.recv(conn)
            if frame.type is MsgType.error:
                return str(frame.body["code"])
            if frame.id in (7, 8):
                results = frame.body.get("results") if frame.type in (MsgType.committed_batch, MsgType.fetched) \
                    else None
                if results is not None and "error" in results[0]:
                    return str(results[0]["error"]["code"])
                return OK
    finally:
        await conn.close()


async def test_authorization_matrix(server: ServerProcess, make_user: MakeUser, tmp_path: Path) -> None:
    w = await _world(server, make_user, tmp_path)
    await asyncio.sleep(1.1)  # the 'expired' link's second runs out
    failures = []
    wrong_checked = 0
    # WebSocket first: the REST table ends with the members leaving.
    for mtype, (body, cells) in WS_CELLS.items():
        for actor in ACTORS:
            before = _ns_state(w)
            got = await _ws_outcome(w, actor, mtype, body(w, actor))
            if got != cells[actor]:
                failures.append(f"WS {mtype.name} as {actor}: {got}, expected {cells[actor]}")
            elif got != OK or actor in ("stranger", "removed"):
                wrong_checked += 1
                if _ns_state(w) != before:
                    failures.append(f"WS {mtype.name} as {actor} was refused but changed the shared folder")
    for key, (link, suffix, cells) in PUBLIC.items():
        for actor in LINK_ACTORS:
            which = {"expired": "expired", "revoked": "revoked"}.get(actor, link)
            token = "satl_" + "B" * 43 if actor == "unknown" else w.links[which]["url"].rsplit("/", 1)[1]
            pw = {"with_password": PW, "wrong_password": "nope"}.get(actor)
            headers = {"X-Satchel-Link-Password": pw} if pw else {}
            before = _ns_state(w)
            r = w.call(key[0], f"/api/v1/public/links/{token}{suffix}", headers=headers,
                    **({"content": b"dropped"} if key[0] == "PUT" else {}))
            got = _outcome(r, cells[actor])
            if got != cells[actor]:
                failures.append(f"{key[0]} {key[1]} as {actor}: {got}, expected {cells[actor]}")
            elif got != OK and _ns_state(w) != before:
                failures.append(f"{key[0]} {key[1]} as {actor} was refused but changed the shared folder")
    for (method, route), (req, cells) in REST.items():
        for actor in ACTORS:
            url, kw = req(w, actor)
            before = _ns_state(w)
            got = _outcome(w.call(method, url, w.token(actor), **kw), cells[actor])
            if got != cells[actor]:
                failures.append(f"{method} {route} as {actor}: {got}, expected {cells[actor]}")
            elif got != OK or actor in ("stranger", "removed", "anon"):
                wrong_checked += 1
                if _ns_state(w) != before:
                    failures.append(f"{method} {route} as {actor} was refused but changed the shared folder")
    w.http.close()
    assert not failures, "\n".join(failures)
    assert wrong_checked > 100


async def test_idor_guessing_ids_gets_nothing(server: ServerProcess, make_user: MakeUser, tmp_path: Path) -> None:
    owner, other = await make_user("o"), await make_user("x")
    entry = await put_text(owner, "/secret.txt", b"top secret bytes", tmp_path)
    ns = (await owner.client.account())["root_namespace"]
    up = await owner.client.start_upload({"path": "/s2.txt", "size": 0, "chunks": []})
    for coro in (other.client.request("GET", f"/api/v1/files/{entry['id']}"),
                 other.client.request("GET", "/api/v1/changes/latest", params={"ns": ns}),
                 other.client.request("GET", f"/api/v1/shares/{ns}/members"),
                 other.client.upload_status(up["upload_id"])):
        await refused(ErrorCode.not_found, coro)
    # Naming the owner's chunk by hash gives the other user nothing: their upload still needs the bytes.
    chunks = (await owner.client.chunk_list(entry["id"]))["chunks"]
    mine = await other.client.start_upload({"path": "/guess.txt", "size": chunks[0]["size"],
                                            "chunks": [[chunks[0]["hash"], chunks[0]["size"]]]})
    assert mine["missing_count"] == 1
    await refused(ErrorCode.missing_chunks, other.client.commit_upload(mine["upload_id"]))
