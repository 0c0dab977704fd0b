"""Bad input of every kind, end to end on both stacks: a 4xx with a stable error code, always.

Every refusal is ``{"error": CODE, "message": ...}`` with the status of ``server.core.errors.STATUS``,
and a refused request changes nothing: no entry appears, no revision moves, no chunk is stored.
Raw HTTP (not the SDK) so exact statuses and bodies are checked.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import msgpack
import pytest

from python_client.transfer import url_expired
from server.core.chunking import MAX_CHUNK_SIZE, chunk_bytes
from server.core.errors import STATUS, ErrorCode
from server.storage.blobs.segments import stored_keys
from tests.conftest import PASSWORD, several_chunks
from tests.harness.server import ServerProcess

H = "ab" * 32  # a well-formed chunk hash
BAD_PATHS = [
    "..", ".", "/..", "/a/../b", "/a/./b", "/a/..", "a/.",
    "/a\x00b", "/a\x01b", "/a\x7fb", "/a\nb", "/a\rb", "/a\tb", "/a\u0085b",
    "/a\\b", "\\", "/a//b", "//a", "/a///", "/" + "x" * 256, "/a/" + "\u20ac" * 86,  # 258 bytes
    "/" + "/".join(["y" * 250] * 17),  # 4267 bytes, every segment fine
]
BAD_USER_NAMES = ["", "A", "Alice", "-x", ".x", "_x", "a b", "a/b", "a" * 65, "\u00fc", "a\x00", "a\n", 5, None,
                  ["a"]]


# ---------------------------------------------------------------- helpers

@dataclass
class Api:
    """Raw HTTP against one server, as one user (or nobody)."""

    http: httpx.Client
    server: ServerProcess
    token: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __call__(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", None) or {})
        if self.token and "authorization" not in {k.lower() for k in headers}:
            headers["Authorization"] = f"Bearer {self.token}"
        return self.http.request(method, self.server.url + path, headers=headers, **kw)

    def anon(self) -> Api:
        return Api(self.http, self.server)

    @property
    def user_id(self) -> int:
        return int(self.info["user"]["id"])


def expect(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    where = f"{resp.request.method} {str(resp.request.url)[:200]} -> {resp.status_code} {resp.text[:300]}"
    assert resp.status_code == status, where
    assert resp.headers["content-type"].startswith("application/json"), where
    body: dict[str, Any] = resp.json()
    assert body["error"] == code, where
    assert STATUS[ErrorCode(code)] == status, f"{code} is not a {status} in STATUS"
    assert isinstance(body["message"], str) and body["message"], where
    if status == 401:
        assert resp.headers["www-authenticate"].lower().startswith("bearer"), where
    return body


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code < 300, f"{resp.request.method} {resp.request.url} -> {resp.status_code} {resp.text[:300]}"
    return resp.json() if resp.content else None


def is_s3(srv: ServerProcess) -> bool:
    return srv.env.get("SATCHEL_BLOB_URL", "").startswith("s3://")


def stack_of(srv: ServerProcess) -> str:
    return "pg-s3" if is_s3(srv) else "sqlite-local"


def signup_login(http: httpx.Client, srv: ServerProcess, device: str = "dev1", name: str | None = None) -> Api:
    """A new user logged in on *device*; with *name*, another device of that existing user."""
    api = Api(http, srv)
    if name is None:
        name = "u" + secrets.token_hex(5)
        ok(api("POST", "/api/v1/auth/signup", json={"name": name, "password": PASSWORD}))
    info = ok(api("POST", "/api/v1/auth/login", json={"name": name, "password": PASSWORD, "device_name": device}))
    return Api(http, srv, info["token"], info)


def announce(path: str, data: bytes, parent_rev: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"path": path, "size": len(data), "parent_rev": parent_rev,
            "chunks": [[r.hex, r.size] for r in chunk_bytes(data)], **extra}


def send_chunks(api: Api, info: dict[str, Any], data: bytes) -> bool:
    """PUT every chunk *info* lists as missing; False if a URL had expired (ask for fresh ones)."""
    where = {r.hex: (r.offset, r.size) for r in chunk_bytes(data)}
    for m in info["missing"]:
        off, size = where[m["hash"]]
        r = api.http.request(m["method"], m["url"], content=data[off:off + size], headers=m["headers"])
        if r.status_code == 403 or url_expired(r.status_code, r.content):
            return False
        assert r.status_code < 300, f"PUT {m['url'][:100]} -> {r.status_code} {r.text[:300]}"
    return True


def complete(api: Api, info: dict[str, Any], data: bytes) -> dict[str, Any]:
    """Send the missing chunks and commit, re-asking for URLs that expired on the way (the strict
    server's live one second, so one can run out between being handed out and being used)."""
    for _attempt in range(5):
        if send_chunks(api, info, data):
            entry: dict[str, Any] = ok(api("POST", f"/api/v1/uploads/{info['upload_id']}/commit"))
            return entry
        info = ok(api("GET", f"/api/v1/uploads/{info['upload_id']}"))
    raise AssertionError("signed URLs kept expiring")


def upload(api: Api, path: str, data: bytes, parent_rev: int | None = None) -> dict[str, Any]:
    return complete(api, ok(api("POST", "/api/v1/files", json=announce(path, data, parent_rev))), data)


def content(api: Api, file_id: int) -> bytes:
    r = api("GET", f"/api/v1/files/{file_id}/content")
    assert r.status_code == 200, r.text
    return r.content


def snapshot(api: Api, path: str = "/") -> list[tuple[Any, ...]]:
    """Every live entry below *path*: what a refused request must leave exactly as it was."""
    out: list[tuple[Any, ...]] = []
    for e in ok(api("GET", "/api/v1/list", params={"path": path}))["entries"]:
        out.append((e["path"], e["kind"], e["id"], e.get("rev"), e.get("size"), e.get("content_hash")))
        if e["kind"] == "dir":
            out.extend(snapshot(api, e["path"]))
    return out


def not_visible(api: Api, path: str) -> None:
    expect(api("GET", "/api/v1/stat", params={"path": path}), 404, "not_found")


def with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query, keep_blank_values=True))
    for k, v in changes.items():
        if v is None:
            q.pop(k, None)
        else:
            q[k] = v
    return urlunsplit(parts._replace(query=urlencode(q)))


def flip(text: str) -> str:
    """*text* with its first character changed to another one valid in base64 and hex alike."""
    return ("1" if text[0] == "0" else "0") + text[1:]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture
def user(http: httpx.Client, server: ServerProcess) -> Callable[..., Api]:
    def make(device: str = "dev1", name: str | None = None, srv: ServerProcess | None = None) -> Api:
        return signup_login(http, srv or server, device, name)

    return make


@pytest.fixture
def alice(user: Callable[..., Api]) -> Api:
    """A fresh user per test (this module's own, raw-HTTP alice)."""
    return user()


@pytest.fixture(scope="module")
def shared(http: httpx.Client, server: ServerProcess) -> Api:
    """One user per stack for tests that only look at paths of their own (a user costs two argon2 runs)."""
    return signup_login(http, server)


@pytest.fixture(scope="module")
def strict(server: ServerProcess, start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """A server of the same stack with tiny limits and 1-second signed URLs."""
    return start_server(stack_of(server), SATCHEL_URL_TTL="1s", SATCHEL_MAX_FILE_SIZE="1000",
                        SATCHEL_MAX_CHUNKS="3")


@pytest.fixture
def stored_chunk(server: ServerProcess, request: pytest.FixtureRequest) -> Callable[[int, str], bool]:
    """Whether the chunk store holds a final (committed-to-be) copy of a chunk."""

    def check(owner_id: int, hex_hash: str) -> bool:
        if not is_s3(server):
            return (owner_id, bytes.fromhex(hex_hash)) in stored_keys(server.data_dir / "chunks")
        s3 = request.getfixturevalue("s3")
        bucket_prefix = server.env["SATCHEL_BLOB_URL"].removeprefix("s3://")
        return (Path(s3.root) / bucket_prefix / "chunks" / str(owner_id) / hex_hash[:2] / hex_hash).exists()

    return check


# ---------------------------------------------------------------- malformed bodies

JSON_ROUTES = ["/api/v1/files", "/api/v1/mkdir", "/api/v1/move", "/api/v1/delete",
               "/api/v1/auth/signup", "/api/v1/auth/login"]
NOT_JSON = [b"", b"{", b"{not json}", b'{"path": "/a",}', b"\xff\xfe\x00{", b'{"path": "\xff"}', b"nul\x00",
            b"[" * 100_000, b'{"a":' * 50_000]
NOT_OBJECT = [b"[]", b'["path", "/a"]', b'"/a"', b"1", b"null", b"true", b"1e999", b"NaN"]


async def test_malformed_and_non_object_bodies(alice):
    for route in JSON_ROUTES:
        for raw in NOT_JSON:
            body = expect(alice("POST", route, content=raw), 400, "bad_request")
            assert "JSON" in body["message"]
        for raw in NOT_OBJECT:
            expect(alice("POST", route, content=raw, headers={"Content-Type": "application/json"}), 400,
                   "bad_request")
    assert snapshot(alice) == []
    assert [d["name"] for d in ok(alice("GET", "/api/v1/devices"))["devices"]] == ["dev1"]


async def test_upload_announcement_field_types(alice, stored_chunk):
    data = b"hello, satchel"
    good = announce("/t/f.txt", data)
    h, n = good["chunks"][0]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"size": "14"}, "bad_request"), ({"size": -1}, "bad_request"), ({"size": True}, "bad_request"),
        ({"size": 14.0}, "bad_request"), ({"size": None}, "bad_request"), ({"size": [14]}, "bad_request"),
        ({"size": 15}, "size_mismatch"), ({"size": 0}, "size_mismatch"),
        ({"chunks": None}, "bad_request"), ({"chunks": "x"}, "bad_request"), ({"chunks": {h: n}}, "bad_request"),
        ({"chunks": [h, n]}, "bad_request"), ({"chunks": [[h]]}, "bad_request"),
        ({"chunks": [[h, n, 0]]}, "bad_request"),
        ({"chunks": [[n, h]]}, "bad_request"), ({"chunks": [{"hash": h, "size": n}]}, "bad_request"),
        ({"chunks": [[h, str(n)]]}, "bad_request"), ({"chunks": [[h, True]]}, "bad_request"),
        ({"chunks": [[h, 14.0]]}, "bad_request"), ({"chunks": [[h, None]]}, "bad_request"),
        ({"chunks": [[h, 0]], "size": 0}, "bad_request"), ({"chunks": [[h, -14]], "size": 0}, "bad_request"),
        ({"chunks": [[h, MAX_CHUNK_SIZE + 1]], "size": MAX_CHUNK_SIZE + 1}, "bad_request"),
        ({"chunks": [[h[:-2], n]]}, "bad_request"), ({"chunks": [[h + "00", n]]}, "bad_request"),
        ({"chunks": [["zz" * 32, n]]}, "bad_request"), ({"chunks": [["", n]]}, "bad_request"),
        ({"chunks": [[h[:62] + "  ", n]]}, "bad_request"),  # 64 characters, but only 31 bytes of hex
        ({"chunks": [[" " + h[:62] + " ", n]]}, "bad_request"), ({"chunks": [["\u0661" * 64, n]]}, "bad_request"),
        ({"chunks": [[h.replace("a", "\uff41"), n]]}, "bad_request"), ({"chunks": [[5, n]]}, "bad_request"),
        ({"parent_rev": "1"}, "bad_request"), ({"parent_rev": -1}, "bad_request"),
        ({"parent_rev": True}, "bad_request"), ({"parent_rev": 1.5}, "bad_request"),
        ({"mtime": "yesterday"}, "bad_request"), ({"mtime": -5}, "bad_request"), ({"mtime": False}, "bad_request"),
        ({"mtime": 10**20}, "bad_request"), ({"mtime": 10**17}, "bad_request"),  # past year 9999
        ({"mime": 5}, "bad_request"), ({"mime": "x" * 256}, "bad_request"), ({"mime": ["text/plain"]}, "bad_request"),
        ({"mime": "text/plain\x00"}, "bad_request"), ({"mime": "text/plain\r\nX-Evil: 1"}, "bad_request"),
        ({"mime": "t\u00ebxt/\u2603"}, "bad_request"),  # served back as a Content-Type header: ASCII only
        ({"path": None}, "invalid_path"), ({"path": 5}, "invalid_path"), ({"path": ["/t/f.txt"]}, "invalid_path"),
        ({"path": {"p": 1}}, "invalid_path"), ({"path": "/"}, "is_a_directory"), ({"path": ""}, "is_a_directory"),
    ]
    for change, code in cases:
        body = {**good, **change}
        expect(alice("POST", "/api/v1/files", json=body), 400 if code != "is_a_directory" else 409, code)
    for missing in ("path", "size", "chunks"):
        body = {k: v for k, v in good.items() if k != missing}
        expect(alice("POST", "/api/v1/files", json=body), 400, "invalid_path" if missing == "path" else "bad_request")
    # A lone surrogate cannot be stored or sent back as UTF-8: refused, not a 500.
    raw = json.dumps({**good, "mime": "text/\ud800"}).encode()
    expect(alice("POST", "/api/v1/files", content=raw), 400, "bad_request")
    assert snapshot(alice) == []
    assert not stored_chunk(alice.user_id, h)
    # The same announcement, well-formed, goes through (the refusals were about the fields).
    entry = upload(alice, "/t/f.txt", data)
    assert content(alice, entry["id"]) == data


async def test_tree_and_account_field_types(alice):
    before = snapshot(alice)
    for route, body in [
        ("/api/v1/mkdir", {}), ("/api/v1/mkdir", {"path": None}), ("/api/v1/mkdir", {"path": 7}),
        ("/api/v1/mkdir", {"path": ["/a"]}), ("/api/v1/mkdir", {"path": True}), ("/api/v1/mkdir", {"folder": "/a"}),
        ("/api/v1/move", {}), ("/api/v1/move", {"from": "/a"}), ("/api/v1/move", {"to": "/a"}),
        ("/api/v1/move", {"from": 1, "to": "/b"}), ("/api/v1/move", {"from": "/a", "to": ["/b"]}),
        ("/api/v1/move", {"src": "/a", "dst": "/b"}),
        ("/api/v1/delete", {}), ("/api/v1/delete", {"path": None}), ("/api/v1/delete", {"path": {"x": 1}}),
    ]:
        expect(alice("POST", route, json=body), 400, "invalid_path")
    assert snapshot(alice) == before

    anon = alice.anon()
    name = "n" + secrets.token_hex(5)
    for body, code in [
        ({}, "invalid_name"), ({"password": PASSWORD}, "invalid_name"),
        ({"name": 5, "password": PASSWORD}, "invalid_name"),
        ({"name": name}, "bad_request"), ({"name": name, "password": None}, "bad_request"),
        ({"name": name, "password": 12345678}, "bad_request"), ({"name": name, "password": ["x" * 10]}, "bad_request"),
        ({"name": name, "password": "x" * 1025}, "bad_request"),
    ]:
        expect(anon("POST", "/api/v1/auth/signup", json=body), 400, code)
    raw = json.dumps({"name": name, "password": "long enough \udc00"}).encode()
    expect(anon("POST", "/api/v1/auth/signup", content=raw), 400, "bad_request")
    expect(anon("POST", "/api/v1/auth/login", json={"name": name, "password": PASSWORD}), 401, "bad_credentials")

    me = alice.info["user"]["name"]
    for body, code in [
        ({}, "bad_request"), ({"name": me}, "bad_request"), ({"password": PASSWORD}, "bad_request"),
        ({"name": 5, "password": PASSWORD}, "bad_request"), ({"name": me, "password": 5}, "bad_request"),
        ({"name": [me], "password": PASSWORD}, "bad_request"),
        ({"name": me, "password": PASSWORD, "device_name": None}, "invalid_name"),
        ({"name": me, "password": PASSWORD, "device_name": 5}, "invalid_name"),
        ({"name": me, "password": PASSWORD, "device_name": ""}, "invalid_name"),
        ({"name": me, "password": PASSWORD, "device_name": "d" * 65}, "invalid_name"),
        ({"name": me, "password": PASSWORD, "device_name": "a\nb"}, "invalid_name"),
        ({"name": me, "password": PASSWORD, "device_name": "a\x7fb"}, "invalid_name"),
        ({"name": me, "password": PASSWORD, "device_kind": "toaster"}, "bad_request"),
        ({"name": me, "password": PASSWORD, "device_kind": 5}, "bad_request"),
        ({"name": me, "password": PASSWORD, "device_kind": None}, "bad_request"),
    ]:
        expect(anon("POST", "/api/v1/auth/login", json=body), 400, code)
    for body, code in [  # text that is no user name or no UTF-8 never reaches a query
        ({"name": "a\x00b", "password": PASSWORD}, "bad_credentials"),
        ({"name": "\ud800", "password": PASSWORD}, "bad_credentials"),
        ({"name": me, "password": "\udfff" * 8}, "bad_credentials"),
        ({"name": me.upper(), "password": PASSWORD}, "bad_credentials"),
    ]:
        expect(anon("POST", "/api/v1/auth/login", content=json.dumps(body).encode()), 401, code)
    raw = json.dumps({"name": me, "password": PASSWORD, "device_name": "laptop \ud800"}).encode()
    expect(anon("POST", "/api/v1/auth/login", content=raw), 400, "invalid_name")
    devices = ok(alice("GET", "/api/v1/devices"))["devices"]
    assert [d["name"] for d in devices] == ["dev1"]  # no refused log-in made a device


# ---------------------------------------------------------------- chunks that are not what they claim

async def test_chunk_bytes_not_matching_hash_change_nothing(alice, server, stored_chunk):
    v1 = secrets.token_bytes(200_000)
    first = upload(alice, "/doc.bin", v1)
    v2 = secrets.token_bytes(200_000)
    info = ok(alice("POST", "/api/v1/files", json=announce("/doc.bin", v2, first["rev"])))
    assert info["missing_count"] >= 1
    forged = secrets.token_bytes(200_000)
    where = {r.hex: (r.offset, r.size) for r in chunk_bytes(v2)}
    for m in info["missing"]:
        off, size = where[m["hash"]]
        r = alice.http.request(m["method"], m["url"], content=forged[off:off + size], headers=m["headers"])
        if is_s3(server):
            assert r.status_code == 200, r.text  # the object store cannot check: commit must
        else:
            expect(r, 400, "hash_mismatch")
        assert not stored_chunk(alice.user_id, m["hash"])
    if not is_s3(server):  # wrong sizes are refused too, whichever side is off
        m = info["missing"][0]
        off, size = where[m["hash"]]
        expect(alice.http.put(m["url"], content=v2[off:off + size - 1]), 400, "size_mismatch")
        expect(alice.http.put(m["url"], content=v2[off:off + size] + b"!"), 400, "size_mismatch")
        assert not stored_chunk(alice.user_id, m["hash"])  # no partial write left behind
    commit = alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit")
    if is_s3(server):
        expect(commit, 400, "hash_mismatch")
        commit = alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit")  # the forged bytes are gone
    body = expect(commit, 409, "missing_chunks")
    assert set(body["missing"]) == {m["hash"] for m in info["missing"]}
    for m in info["missing"]:
        assert not stored_chunk(alice.user_id, m["hash"])
    head = ok(alice("GET", "/api/v1/stat", params={"path": "/doc.bin"}))
    assert (head["id"], head["rev"], head["content_hash"]) == (first["id"], first["rev"], first["content_hash"])
    assert content(alice, first["id"]) == v1
    # The same session still completes with the right bytes.
    second = complete(alice, ok(alice("GET", f"/api/v1/uploads/{info['upload_id']}")), v2)
    assert second["rev"] != first["rev"] and content(alice, first["id"]) == v2
    assert all(stored_chunk(alice.user_id, m["hash"]) for m in info["missing"])  # the probe does see chunks


async def test_after_a_refused_commit_only_the_bad_chunk_is_missing(alice, server):
    # One forged chunk among good ones: the commit refuses it (S3: at promote, having promoted
    # the good ones already) and the session then asks for exactly that chunk again.
    data = secrets.token_bytes(400_000)
    info = ok(alice("POST", "/api/v1/files", json=announce("/mixed.bin", data)))
    assert info["missing_count"] >= 3
    where = {r.hex: (r.offset, r.size) for r in chunk_bytes(data)}
    bad = info["missing"][1]
    for m in info["missing"]:
        off, size = where[m["hash"]]
        body = secrets.token_bytes(size) if m is bad else data[off:off + size]
        alice.http.request(m["method"], m["url"], content=body, headers=m["headers"])
    commit = alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit")
    expect(commit, *((400, "hash_mismatch") if is_s3(server) else (409, "missing_chunks")))
    again = ok(alice("GET", f"/api/v1/uploads/{info['upload_id']}"))
    assert [m["hash"] for m in again["missing"]] == [bad["hash"]]
    assert [m["hash"] for m in ok(alice("POST", "/api/v1/files", json=announce("/mixed.bin", data)))["missing"]] \
        == [bad["hash"]]
    assert content(alice, complete(alice, again, data)["id"]) == data


async def test_commit_with_missing_chunks_is_refused(alice):
    data = several_chunks(300_000)
    info = ok(alice("POST", "/api/v1/files", json=announce("/new/m.bin", data)))
    hashes = {r.hex for r in chunk_bytes(data)}
    assert len(hashes) > 1
    body = expect(alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit"), 409, "missing_chunks")
    assert set(body["missing"]) == hashes and body["missing_count"] == len(hashes)
    # Half of them sent: the rest are still reported, and still nothing is visible.
    half = {**info, "missing": info["missing"][: len(info["missing"]) // 2]}
    assert send_chunks(alice, half, data)
    body = expect(alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit"), 409, "missing_chunks")
    assert set(body["missing"]) == hashes - {m["hash"] for m in half["missing"]}
    not_visible(alice, "/new/m.bin")
    not_visible(alice, "/new")  # not even the parent folder a commit would create
    assert snapshot(alice) == []


async def test_patches_are_checked_and_a_good_one_builds_the_chunk(alice, user):
    """POST /uploads/{id}/patch: every malformed, unannounced, out-of-range or wrong patch is
    refused and stores nothing; a right one (ranges of the parent + the new byte) stores the
    chunk, and the commit gives the new bytes."""
    import base64

    v1 = several_chunks(300_000)
    first = upload(alice, "/p.bin", v1)
    v2 = v1[:150_000] + b"!" + v1[150_000:]
    info = ok(alice("POST", "/api/v1/files", json=announce("/p.bin", v2, first["rev"])))
    up = f"/api/v1/uploads/{info['upload_id']}/patch"
    edited = next(r for r in chunk_bytes(v2) if r.offset <= 150_000 < r.offset + r.size)
    assert edited.hex in {m["hash"] for m in info["missing"]}
    s, e = edited.offset, edited.offset + edited.size

    def patch(*parts: Any, h: str = edited.hex, size: int = edited.size) -> dict[str, Any]:
        return {"chunks": [{"hash": h, "size": size, "parts": list(parts)}]}

    b64 = base64.b64encode
    right = patch(*([[s, 150_000 - s]] if s < 150_000 else []), b64(b"!").decode(), [150_000, e - 150_001])
    before = snapshot(alice)
    for body, status, code in [
        ({}, 400, "bad_request"), ({"chunks": []}, 400, "bad_request"), ({"chunks": "x"}, 400, "bad_request"),
        ({"chunks": right["chunks"] * 65}, 400, "bad_request"),
        ({"chunks": [{"hash": edited.hex, "size": edited.size}]}, 400, "bad_request"),
        (patch([0, 10], h=H, size=10), 400, "bad_request"),  # not announced
        (patch([0, edited.size + 1], size=edited.size + 1), 400, "bad_request"),  # announced with another size
        (patch([0, 1]), 400, "size_mismatch"),
        (patch([len(v1) - 1, 2], [0, edited.size - 2]), 400, "bad_request"),  # past the parent's end
        (patch([-1, 1], [0, edited.size - 1]), 400, "bad_request"),
        (patch([0, 0], [0, edited.size]), 400, "bad_request"),
        (patch("!!not base64", [0, edited.size]), 400, "bad_request"),
        (patch(True, [0, edited.size]), 400, "bad_request"),
        ({"chunks": [{"hash": edited.hex, "size": edited.size,
                      "parts": [[0, 1]] * 1000 + [[0, edited.size - 1000]]}] * 5},
         400, "bad_request"),  # over 4,096 parts in all
        ({"chunks": [{"hash": "cd" * 32, "size": 55 * len(v1), "parts": [[0, len(v1)]] * 55}] * 5},
         413, "too_large"),  # over 64 MiB built in one request
        (patch([0, edited.size]), 400, "hash_mismatch"),  # the parent's bytes, not the chunk's
        (patch(b64(bytes(edited.size)).decode()), 400, "hash_mismatch"),
    ]:
        expect(alice("POST", up, json=body), status, code)
    assert edited.hex in {m["hash"] for m in ok(alice("GET", f"/api/v1/uploads/{info['upload_id']}"))["missing"]}
    # Someone else's upload, and an upload without a parent.
    expect(user()("POST", up, json=right), 404, "not_found")
    fresh = ok(alice("POST", "/api/v1/files", json=announce("/fresh.bin", v2)))
    expect(alice("POST", f"/api/v1/uploads/{fresh['upload_id']}/patch", json=right), 400, "bad_request")
    assert snapshot(alice) == before

    assert ok(alice("POST", up, json=right)) == {"stored": 1}
    # The same as msgpack (literal bytes as bin), what the Python client sends.
    as_bin = [p if isinstance(p, list) else base64.b64decode(p) for p in right["chunks"][0]["parts"]]
    packed = msgpack.packb(patch(*as_bin))
    assert ok(alice("POST", up, content=packed, headers={"Content-Type": "application/msgpack"})) == {"stored": 1}
    expect(alice("POST", up, content=b"\xc1", headers={"Content-Type": "application/msgpack"}), 400, "bad_request")
    left = ok(alice("GET", f"/api/v1/uploads/{info['upload_id']}"))["missing"]
    assert edited.hex not in {m["hash"] for m in left}
    entry = complete(alice, {**info, "missing": left}, v2)
    assert content(alice, entry["id"]) == v2
    expect(alice("POST", up, json=right), 409, "upload_committed")


# ---------------------------------------------------------------- signed URLs

async def test_expired_signed_urls(http, strict):
    a = signup_login(http, strict)
    data = secrets.token_bytes(500)
    entry = upload(a, "/e.bin", data)  # chunk URLs live 1 s: used right away
    fresh = secrets.token_bytes(500)
    info = ok(a("POST", "/api/v1/files", json=announce("/e2.bin", fresh)))
    chunks = ok(a("GET", f"/api/v1/files/{entry['id']}/chunks"))["chunks"]
    time.sleep(2.1)
    put = a.http.put(info["missing"][0]["url"], content=fresh, headers=info["missing"][0]["headers"])
    get = a.http.get(chunks[0]["url"])
    if is_s3(strict):
        assert put.status_code in (400, 403) and get.status_code in (400, 403), (put.text, get.text)
    else:
        expect(put, 403, "url_expired")
        expect(get, 403, "url_expired")
    expect(a("POST", f"/api/v1/uploads/{info['upload_id']}/commit"), 409, "missing_chunks")
    not_visible(a, "/e2.bin")
    # Asking again hands out fresh URLs: how a client gets past an expired one.
    assert content(a, complete(a, ok(a("GET", f"/api/v1/uploads/{info['upload_id']}")), fresh)["id"]) == fresh


async def test_tampered_signed_urls(alice, user, server, stored_chunk):
    data = secrets.token_bytes(400)
    info = ok(alice("POST", "/api/v1/files", json=announce("/s.bin", data)))
    m = info["missing"][0]
    up = m["url"]
    forged_up: list[str] = []
    if is_s3(server):
        q = dict(parse_qsl(urlsplit(up).query))
        forged_up += [with_query(up, **{"X-Amz-Signature": flip(q["X-Amz-Signature"])}),
                      with_query(up, **{"X-Amz-Expires": "604800"}), with_query(up, **{"X-Amz-Signature": None}),
                      up.replace(f"/staging/{info['upload_id']}/", "/staging/other/"),
                      up.replace(f"/staging/{info['upload_id']}/", f"/chunks/{alice.user_id}/{m['hash'][:2]}/")]
    else:
        q = dict(parse_qsl(urlsplit(up).query))
        forged_up += [with_query(up, sig=flip(q["sig"])), with_query(up, sig=q["sig"][:-1]), with_query(up, sig=None),
                      with_query(up, sig=""), with_query(up, o=str(int(q["o"]) + 1)), with_query(up, n="1"),
                      with_query(up, n=str(int(q["n"]) + 1)), with_query(up, exp=str(int(q["exp"]) + 3600)),
                      with_query(up, exp="never"), with_query(up, extra="1"),
                      up.replace(m["hash"], H), up.replace(info["upload_id"], flip(info["upload_id"])),
                      up.split("?")[0]]
    for url in forged_up:
        r = alice.http.put(url, content=data, headers=m["headers"])
        if is_s3(server):
            assert r.status_code in (400, 403), (url, r.status_code, r.text)
        else:
            expect(r, 403, "bad_signature")
    assert not stored_chunk(alice.user_id, m["hash"])
    assert ok(alice("GET", f"/api/v1/uploads/{info['upload_id']}"))["missing_count"] == 1
    expect(alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit"), 409, "missing_chunks")

    # A download URL signed for alice's chunk, pointed at bob's copy of the same chunk.
    entry = upload(alice, "/s.bin", data)
    bob = user("dev-b")
    upload(bob, "/same.bin", data)
    url = ok(alice("GET", f"/api/v1/files/{entry['id']}/chunks"))["chunks"][0]["url"]
    assert alice.http.get(url).content == data
    if is_s3(server):
        forged_down = [url.replace(f"/chunks/{alice.user_id}/", f"/chunks/{bob.user_id}/")]
        q = dict(parse_qsl(urlsplit(url).query))
        forged_down.append(with_query(url, **{"X-Amz-Signature": flip(q["X-Amz-Signature"])}))
    else:
        forged_down = [url.replace(f"/down/{alice.user_id}/", f"/down/{bob.user_id}/")]
        q = dict(parse_qsl(urlsplit(url).query))
        forged_down += [with_query(url, sig=flip(q["sig"])), with_query(url, u=str(bob.user_id)), url.split("?")[0]]
    for forged in forged_down:
        r = alice.http.get(forged)
        if is_s3(server):
            assert r.status_code in (400, 403), (forged, r.status_code)
        else:
            expect(r, 403, "bad_signature")


# ---------------------------------------------------------------- paths

JSON_PATH_FIELDS: dict[str, tuple[str, dict[str, Any], str]] = {
    "upload": ("/api/v1/files", announce("/x", b"data"), "path"), "mkdir": ("/api/v1/mkdir", {}, "path"),
    "move-from": ("/api/v1/move", {"to": "/moved"}, "from"), "move-to": ("/api/v1/move", {"from": "/ok.txt"}, "to"),
    "delete": ("/api/v1/delete", {}, "path"),
}


async def test_invalid_paths(alice):
    upload(alice, "/ok.txt", b"fine")
    ok(alice("POST", "/api/v1/mkdir", json={"path": "/dir"}))
    before = snapshot(alice)
    requests: dict[str, Callable[[str], httpx.Response]] = {
        "upload": lambda p: alice("POST", "/api/v1/files", json=announce(p, b"data")),
        "mkdir": lambda p: alice("POST", "/api/v1/mkdir", json={"path": p}),
        "move-from": lambda p: alice("POST", "/api/v1/move", json={"from": p, "to": "/moved"}),
        "move-to": lambda p: alice("POST", "/api/v1/move", json={"from": "/ok.txt", "to": p}),
        "delete": lambda p: alice("POST", "/api/v1/delete", json={"path": p}),
        "list": lambda p: alice("GET", "/api/v1/list", params={"path": p}),
        "stat": lambda p: alice("GET", "/api/v1/stat", params={"path": p}),
    }
    for send in requests.values():
        for p in BAD_PATHS:
            expect(send(p), 400, "invalid_path")
    for route, body, key in JSON_PATH_FIELDS.values():  # JSON can carry what a URL cannot: a lone surrogate
        raw = json.dumps({**body, key: "/a\ud800b"}).encode()
        expect(alice("POST", route, content=raw), 400, "invalid_path")
    assert snapshot(alice) == before


async def test_path_limits_are_exact(shared):
    alice = shared
    seg255, seg_multibyte = "x" * 255, "\u20ac" * 85  # 255 bytes each
    deep = "/" + "/".join(["y" * 255] * 16)  # 4096 bytes
    for p in ("/" + seg255, "/" + seg_multibyte, deep):
        assert ok(alice("POST", "/api/v1/mkdir", json={"path": p}))["path"] == p
    expect(alice("POST", "/api/v1/mkdir", json={"path": deep + "/z"}), 400, "invalid_path")
    # Normal forms: one trailing slash and a missing leading slash are fine; NFC is applied.
    assert ok(alice("POST", "/api/v1/mkdir", json={"path": "nf/o/"}))["path"] == "/nf/o"
    assert ok(alice("POST", "/api/v1/mkdir", json={"path": "/nf/cafe\u0301"}))["path"] == "/nf/caf\u00e9"


# ---------------------------------------------------------------- other users

async def test_other_users_files_and_uploads_are_invisible(alice, user, server):
    data = secrets.token_bytes(70_000)
    entry = upload(alice, "/private/a.bin", data)
    folder = ok(alice("GET", "/api/v1/stat", params={"path": "/private"}))
    pending = ok(alice("POST", "/api/v1/files", json=announce("/private/b.bin", secrets.token_bytes(100))))
    bob = user("dev-b")
    nonexistent = 2_000_000_000
    for suffix in ("", "/chunks", "/content", "/chunks?rev=" + str(entry["rev"]),
                   "/content?rev=" + str(entry["rev"])):
        answers = [bob("GET", f"/api/v1/files/{i}{suffix}") for i in (entry["id"], folder["id"], nonexistent)]
        for r in answers:
            expect(r, 404, "not_found")
        assert answers[0].json() == answers[2].json()  # "not yours" and "does not exist" look the same
    expect(bob("GET", f"/api/v1/files/{entry['id']}/content", headers={"Range": "bytes=0-10"}), 404, "not_found")
    # Alice's revision id on bob's own file: not a revision of that file.
    mine = upload(bob, "/b.bin", b"bob's")
    expect(bob("GET", f"/api/v1/files/{mine['id']}/content", params={"rev": entry["rev"]}), 404, "not_found")
    up = pending["upload_id"]
    expect(bob("GET", f"/api/v1/uploads/{up}"), 404, "not_found")
    expect(bob("POST", f"/api/v1/uploads/{up}/commit"), 404, "not_found")
    expect(bob("DELETE", f"/api/v1/uploads/{up}"), 404, "not_found")
    assert ok(alice("GET", f"/api/v1/uploads/{up}"))["upload_id"] == up  # untouched
    # Paths are per user: bob's "/private/a.bin" is his own (missing) file.
    expect(bob("GET", "/api/v1/stat", params={"path": "/private/a.bin"}), 404, "not_found")
    expect(bob("POST", "/api/v1/delete", json={"path": "/private"}), 404, "not_found")
    expect(bob("POST", "/api/v1/move", json={"from": "/private", "to": "/mine"}), 404, "not_found")
    alice_device = alice.info["device_id"]
    expect(bob("DELETE", f"/api/v1/devices/{alice_device}"), 404, "not_found")
    assert ok(alice("GET", "/api/v1/account"))["device_id"] == alice_device
    assert content(alice, entry["id"]) == data


# ---------------------------------------------------------------- authentication

PROTECTED = [("GET", "/api/v1/account"), ("GET", "/api/v1/devices"), ("GET", "/api/v1/list"),
             ("GET", "/api/v1/stat?path=/a"), ("POST", "/api/v1/mkdir"), ("POST", "/api/v1/move"),
             ("POST", "/api/v1/delete"), ("POST", "/api/v1/files"), ("GET", "/api/v1/files/1"),
             ("GET", "/api/v1/files/1/chunks"), ("GET", "/api/v1/files/1/content"), ("GET", "/api/v1/uploads/x"),
             ("POST", "/api/v1/uploads/x/commit"), ("DELETE", "/api/v1/uploads/x"),
             ("POST", "/api/v1/auth/logout"), ("DELETE", "/api/v1/devices/1")]


async def test_missing_malformed_unknown_and_revoked_tokens(alice, user):
    anon = alice.anon()
    bad_headers: list[dict[str, str]] = [
        {}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Bearer   "  + "sat_x"},
        {"Authorization": "Basic " + "dTpw"}, {"Authorization": "Token " + str(alice.token)},
        {"Authorization": str(alice.token)}, {"Authorization": "Bearer sat_" + "x" * 43},
        {"Authorization": "Bearer " + str(alice.token)[:-1]}, {"Authorization": b"Bearer \xe9t\xe9"},  # type: ignore[dict-item]
    ]
    for method, path in PROTECTED:
        for headers in bad_headers:
            expect(anon(method, path, headers=headers, json={"path": "/nope"}), 401, "unauthorized")
    assert snapshot(alice) == []

    # Log-out revokes this device's token only.
    second = user("dev2", alice.info["user"]["name"])
    assert second.token != alice.token
    assert ok(second("POST", "/api/v1/auth/logout")) is None
    for method, path in PROTECTED:
        expect(second(method, path, json={"path": "/x"}), 401, "unauthorized")
    # A device logged out from another device.
    third = user("dev3", alice.info["user"]["name"])
    names = {d["name"]: d["id"] for d in ok(alice("GET", "/api/v1/devices"))["devices"]}
    assert set(names) == {"dev1", "dev3"}
    assert alice("DELETE", f"/api/v1/devices/{names['dev3']}").status_code == 204
    for method, path in PROTECTED:
        expect(third(method, path, json={"path": "/x"}), 401, "unauthorized")
    expect(alice("DELETE", f"/api/v1/devices/{names['dev3']}"), 404, "not_found")  # already gone
    assert ok(alice("GET", "/api/v1/account"))["device_id"] == alice.info["device_id"]
    assert snapshot(alice) == []


# ---------------------------------------------------------------- limits

async def test_size_and_chunk_count_limits(http, strict):
    a = signup_login(http, strict)
    one_chunk = [[H, 1000]]
    expect(a("POST", "/api/v1/files", json={"path": "/big", "size": 1001, "chunks": [[H, 1001]]}),
           413, "too_large")
    expect(a("POST", "/api/v1/files", json={"path": "/big", "size": 10**30, "chunks": one_chunk}), 413, "too_large")
    body = expect(a("POST", "/api/v1/files", json={"path": "/many", "size": 4, "chunks": [[H, 1]] * 4}),
                  413, "too_many_chunks")
    assert body["limit"] == 3
    assert snapshot(a) == []
    # At the limits exactly: accepted.
    info = ok(a("POST", "/api/v1/files", json={"path": "/edge", "size": 1000, "parent_rev": None,
                                                "chunks": [[H, 400], ["cd" * 32, 300], ["ef" * 32, 300]]}))
    assert info["missing_count"] == 3


# ---------------------------------------------------------------- revisions

async def test_stale_parent_rev_is_a_conflict(shared):
    alice = shared
    v1, v2, v3 = (secrets.token_bytes(50_000) for _ in range(3))
    r1 = upload(alice, "/c.bin", v1)
    r2 = upload(alice, "/c.bin", v2, parent_rev=r1["rev"])
    for parent in (r1["rev"], None, r2["rev"] + 1000, 2_000_000_000):
        body = expect(alice("POST", "/api/v1/files", json=announce("/c.bin", v3, parent)), 409, "conflict")
        assert body["head_rev"] == r2["rev"]
    for parent in (r1["rev"], r2["rev"]):  # on a path that does not exist
        expect(alice("POST", "/api/v1/files", json=announce("/none.bin", v3, parent)), 409, "conflict")
    not_visible(alice, "/none.bin")
    # Stale at commit time: another revision landed between announce and commit.
    info = ok(alice("POST", "/api/v1/files", json=announce("/c.bin", v3, r2["rev"])))
    assert send_chunks(alice, info, v3)
    r3 = upload(alice, "/c.bin", v1 + b"!", parent_rev=r2["rev"])
    body = expect(alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit"), 409, "conflict")
    assert body["head_rev"] == r3["rev"]
    head = ok(alice("GET", "/api/v1/stat", params={"path": "/c.bin"}))
    assert head["rev"] == r3["rev"] and content(alice, head["id"]) == v1 + b"!"
    assert content(alice, head["id"]) != v3


# ---------------------------------------------------------------- routes and query strings

async def test_unknown_routes_and_wrong_methods(shared):
    alice = shared
    for path in ("/nope", "/api/v1/nope", "/api/v2/list", "/api/v1/files/1/nope", "/api/v1/list/x",
                 "/api/v1/blobs/up/x", "/health/x"):
        for r in (alice("GET", path), alice.anon()("POST", path)):
            expect(r, 404, "not_found")
    for method, path in [("POST", "/health"), ("DELETE", "/api/v1/mkdir"), ("GET", "/api/v1/mkdir"),
                         ("PATCH", "/api/v1/files"), ("PUT", "/api/v1/files/1"), ("POST", "/api/v1/list"),
                         ("GET", "/api/v1/auth/login"), ("GET", "/api/v1/blobs/up/x/y"),
                         ("PUT", "/api/v1/blobs/down/1/y"), ("POST", "/api/v1/uploads/x")]:
        for r in (alice(method, path), alice.anon()(method, path)):
            expect(r, 405, "method_not_allowed")
            assert r.headers.get("allow"), f"{method} {path}: 405 without an Allow header"


async def test_bad_ids_and_query_params(shared):
    alice = shared
    entry = upload(alice, "/q.bin", secrets.token_bytes(1000))
    fid = entry["id"]
    for bad in ("abc", "99999999999999999999", "-1", "1.5", "0x10", "%20", "%00", "2147483648",
                "9223372036854775807", "9" * 400, "\u0661"):
        for suffix in ("", "/chunks", "/content"):
            expect(alice("GET", f"/api/v1/files/{bad}{suffix}"), 404, "not_found")
        expect(alice("DELETE", f"/api/v1/devices/{bad}"), 404, "not_found")
    for suffix in ("/chunks", "/content"):
        for q in ("rev=x", "rev=-1", "rev=1.5", "rev=99999999999999999999", "rev=2147483648", "offset=-1",
                  "offset=x", "offset=99999999999999999999", "limit=abc", "limit=-1", "limit=1e3",
                  "rev=" + "9" * 5000):
            r = alice("GET", f"/api/v1/files/{fid}{suffix}?{q}")
            if suffix == "/content" and not q.startswith("rev"):
                assert r.status_code == 200  # /content takes no offset or limit
            else:
                expect(r, 400, "bad_request")
    for q in ("limit=abc", "limit=-1", "limit=99999999999999999999"):
        expect(alice("GET", f"/api/v1/list?{q}"), 400, "bad_request")
    for q in ("after=%00", "after=a%00b", "after=/x/../y", "path=/&after=" + "x" * 5000):
        r = alice("GET", f"/api/v1/list?{q}")
        assert 400 <= r.status_code < 500, (q, r.status_code, r.text)
        assert r.json()["error"] in ErrorCode.__members__
    for up in ("%00", "x" * 1000, "a%00b", "..", "%2e%2e", "\u00e9"):
        for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/commit")):
            expect(alice(method, f"/api/v1/uploads/{up}{suffix}"), 404, "not_found")
    for rng in ("bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000):
        r = alice("GET", f"/api/v1/files/{fid}/content", headers={"Range": rng})
        assert r.status_code in (200, 206, 416), (rng[:30], r.status_code, r.text[:200])
    assert content(alice, fid)


# ---------------------------------------------------------------- accounts

async def test_login_and_signup_refusals(shared):
    alice = shared
    anon = alice.anon()
    me = alice.info["user"]["name"]
    wrong = expect(anon("POST", "/api/v1/auth/login", json={"name": me, "password": PASSWORD + "x"}),
                   401, "bad_credentials")
    unknown = expect(anon("POST", "/api/v1/auth/login", json={"name": "nobody" + secrets.token_hex(4),
                                                              "password": PASSWORD}), 401, "bad_credentials")
    assert wrong == unknown  # nothing tells which of the two was wrong
    expect(anon("POST", "/api/v1/auth/signup", json={"name": me, "password": "another password"}), 409, "user_exists")
    ok(anon("POST", "/api/v1/auth/login", json={"name": me, "password": PASSWORD}))  # still the old password
    for name in BAD_USER_NAMES:
        expect(anon("POST", "/api/v1/auth/signup", json={"name": name, "password": PASSWORD}), 400, "invalid_name")
    fresh = "p" + secrets.token_hex(5)
    for pw in ("", "1234567", "\u00e9" * 7):
        expect(anon("POST", "/api/v1/auth/signup", json={"name": fresh, "password": pw}), 400, "bad_request")
    expect(anon("POST", "/api/v1/auth/login", json={"name": fresh, "password": "1234567"}), 401, "bad_credentials")


async def test_signup_disabled(http, start_server):
    srv = start_server("sqlite-local", SATCHEL_SIGNUP="false")
    anon = Api(http, srv)
    for body in ({"name": "newuser", "password": PASSWORD}, {}):
        expect(anon("POST", "/api/v1/auth/signup", json=body), 403, "signup_disabled")
    expect(anon("POST", "/api/v1/auth/signup", content=b"{oops"), 403, "signup_disabled")
    expect(anon("POST", "/api/v1/auth/login", json={"name": "newuser", "password": PASSWORD}), 401, "bad_credentials")


# ---------------------------------------------------------------- files against folders

async def test_files_and_folders_in_the_way(alice):
    upload(alice, "/file.txt", b"a file")
    ok(alice("POST", "/api/v1/mkdir", json={"path": "/dir/sub"}))
    upload(alice, "/dir/sub/inner.txt", b"inner")
    ok(alice("POST", "/api/v1/mkdir", json={"path": "/other"}))
    before = snapshot(alice)
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("mkdir on a file", "/api/v1/mkdir", {"path": "/file.txt"}, 409, "path_exists"),
        ("mkdir below a file", "/api/v1/mkdir", {"path": "/file.txt/x/y"}, 409, "not_a_directory"),
        ("mkdir the root", "/api/v1/mkdir", {"path": "/"}, 409, "path_exists"),
        ("upload onto a folder", "/api/v1/files", announce("/dir", b"x"), 409, "is_a_directory"),
        ("upload onto the root", "/api/v1/files", announce("/", b"x"), 409, "is_a_directory"),
        ("upload below a file", "/api/v1/files", announce("/file.txt/x", b"x"), 409, "not_a_directory"),
        ("upload deep below a file", "/api/v1/files", announce("/file.txt/x/y", b"x"), 409, "not_a_directory"),
        ("move onto a file", "/api/v1/move", {"from": "/other", "to": "/file.txt"}, 409, "path_exists"),
        ("move onto a folder", "/api/v1/move", {"from": "/file.txt", "to": "/dir"}, 409, "path_exists"),
        ("move onto a nested entry", "/api/v1/move", {"from": "/file.txt", "to": "/dir/sub/inner.txt"}, 409,
         "path_exists"),
        ("move below a file", "/api/v1/move", {"from": "/other", "to": "/file.txt/other"}, 409, "not_a_directory"),
        ("move a folder into itself", "/api/v1/move", {"from": "/dir", "to": "/dir/sub/dir"}, 400, "bad_request"),
        ("move a folder onto itself", "/api/v1/move", {"from": "/dir", "to": "/dir"}, 400, "bad_request"),
        ("move the root", "/api/v1/move", {"from": "/", "to": "/x"}, 400, "bad_request"),
        ("move onto the root", "/api/v1/move", {"from": "/dir", "to": "/"}, 400, "bad_request"),
        ("move something missing", "/api/v1/move", {"from": "/nope", "to": "/x"}, 404, "not_found"),
        ("delete the root", "/api/v1/delete", {"path": "/"}, 400, "bad_request"),
        ("delete the root, spelled ''", "/api/v1/delete", {"path": ""}, 400, "bad_request"),
        ("delete something missing", "/api/v1/delete", {"path": "/dir/nope"}, 404, "not_found"),
        ("delete below a file", "/api/v1/delete", {"path": "/file.txt/x"}, 404, "not_found"),
    ]
    for what, route, body, status, code in cases:
        r = alice("POST", route, json=body)
        assert (r.status_code, r.json().get("error")) == (status, code), (what, r.status_code, r.text)
        expect(r, status, code)
    assert snapshot(alice) == before

    # What changes between announce and commit is checked again at commit, all or nothing.
    info = ok(alice("POST", "/api/v1/files", json=announce("/late/f.bin", b"late file")))
    assert send_chunks(alice, info, b"late file")
    ok(alice("POST", "/api/v1/mkdir", json={"path": "/late/f.bin"}))
    expect(alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit"), 409, "is_a_directory")
    assert ok(alice("GET", "/api/v1/stat", params={"path": "/late/f.bin"}))["kind"] == "dir"
    info = ok(alice("POST", "/api/v1/files", json=announce("/p/q/r.bin", b"below")))
    assert send_chunks(alice, info, b"below")
    upload(alice, "/p/q", b"now a file")
    before = snapshot(alice)
    expect(alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit"), 409, "not_a_directory")
    assert snapshot(alice) == before

