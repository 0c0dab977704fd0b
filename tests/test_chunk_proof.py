"""Dedup credit in shared folders (issue #5 review): a writer who is not the namespace's owner writes
into the owner's chunk store, so they get credit only for chunks they have shown they can read
(chunks of a revision of that namespace, or chunks their own session sent). Knowing the hash of a
chunk of the owner's private files must never let them commit it without the bytes and read it back.
Both stacks, through the ``server`` fixture.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from python_client.live import LiveSession
from server.core.chunking import chunk_bytes
from server.core.errors import STATUS, ErrorCode, SatchelError
from server.core.pack import MEDIA_TYPE, pack_header
from tests.conftest import User, several_chunks
from tests.harness.server import ServerProcess
from tests.test_bad_input import Api, announce, complete, content, expect, ok, send_chunks, upload

MakeUser = Callable[..., Any]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def raw(http: httpx.Client, server: ServerProcess, u: User) -> Api:
    return Api(http, server, u.client.token)


async def owner_and_editor(server: ServerProcess, make_user: MakeUser, http: httpx.Client
                           ) -> tuple[Api, Api, bytes, bytes]:
    """An owner with a private file and a folder /Shared (holding common.bin) shared with an editor
    (who sees it at /Shared). Returns both users' raw APIs and the two files' bytes."""
    o, e = await make_user("o"), await make_user("e")
    owner, editor = raw(http, server, o), raw(http, server, e)
    secret, common = several_chunks(400_000), os.urandom(300_000)
    upload(owner, "/private/secret.bin", secret)
    upload(owner, "/Shared/common.bin", common)
    await o.client.share("/Shared", e.name, "editor")
    return owner, editor, secret, common


def distinct(data: bytes) -> int:
    return len({r.hex for r in chunk_bytes(data)})


def commit(api: Api, info: dict[str, Any]) -> httpx.Response:
    return api("POST", f"/api/v1/uploads/{info['upload_id']}/commit")


async def test_editor_must_send_the_owners_private_chunks(server: ServerProcess, make_user: MakeUser,
                                                          http: httpx.Client) -> None:
    owner, editor, secret, common = await owner_and_editor(server, make_user, http)
    refs = list(chunk_bytes(secret))
    assert len(refs) >= 3

    # Announcing the private file's chunk list gets every chunk listed as missing ...
    info = ok(editor("POST", "/api/v1/files", json=announce("/Shared/leak.bin", secret)))
    assert info["missing_count"] == distinct(secret)
    # ... and the commit without them is refused, also after asking again.
    status = STATUS[ErrorCode.missing_chunks]
    assert expect(commit(editor, info), status, "missing_chunks")["missing_count"] == distinct(secret)
    assert ok(editor("GET", f"/api/v1/uploads/{info['upload_id']}"))["missing_count"] == distinct(secret)
    assert expect(commit(editor, info), status, "missing_chunks")["missing_count"] == distinct(secret)
    assert not any(e["name"] == "leak.bin" for e in ok(editor("GET", "/api/v1/list",
                                                              params={"path": "/Shared"}))["entries"])

    # A wrong size for a private chunk is not a size_mismatch: that would say the owner stores it.
    first = refs[0]
    odd = ok(editor("POST", "/api/v1/files", json={
        "path": "/Shared/odd.bin", "size": first.size + 1, "parent_rev": None,
        "chunks": [[first.hex, first.size + 1]]}))
    assert odd["missing_count"] == 1

    # Sending part of the chunks: the rest stay missing; those sent count for this session (on S3
    # through the failed commit, which promoted them).
    part = dict(info, missing=[m for m in info["missing"] if m["hash"] == first.hex])
    assert send_chunks(editor, part, secret)
    assert expect(commit(editor, info), status, "missing_chunks")["missing_count"] == distinct(secret) - 1
    again = ok(editor("GET", f"/api/v1/uploads/{info['upload_id']}"))
    assert again["missing_count"] == distinct(secret) - 1 and first.hex not in {m["hash"] for m in again["missing"]}

    # An editor who really has the bytes sends them and commits (a pack where the server stores chunks).
    if again["pack_url"]:
        todo = [r for r in refs if r.hex in {m["hash"] for m in again["missing"]}]
        body = pack_header([(r.digest, r.size) for r in todo]) + b"".join(
            secret[r.offset:r.offset + r.size] for r in todo)
        ok(http.put(again["pack_url"], content=body, headers={"Content-Type": MEDIA_TYPE}))
        entry = ok(commit(editor, again))
    else:
        entry = complete(editor, again, secret)
    assert content(editor, entry["id"]) == secret

    # Content already in the shared folder dedups for the editor (0 bytes sent): the current file,
    # an old revision of it, and the editor's own earlier upload.
    upload(owner, "/Shared/common.bin", os.urandom(1000), parent_rev=ok(owner(
        "GET", "/api/v1/stat", params={"path": "/Shared/common.bin"}))["rev"])
    for i, data in enumerate((common, secret)):
        info = ok(editor("POST", "/api/v1/files", json=announce(f"/Shared/again{i}.bin", data)))
        assert info["missing_count"] == 0 and info["missing"] == []
        assert content(editor, ok(commit(editor, info))["id"]) == data

    # The owner still dedups across their whole store, private files included.
    info = ok(owner("POST", "/api/v1/files", json=announce("/Shared/by-owner.bin", secret)))
    assert info["missing_count"] == 0
    other = os.urandom(200_000)
    upload(owner, "/private/other.bin", other)
    info = ok(owner("POST", "/api/v1/files", json=announce("/Shared/other.bin", other)))
    assert info["missing_count"] == 0
    ok(commit(owner, info))


async def test_ws_commit_names_only_chunks_of_the_namespace(server: ServerProcess, make_user: MakeUser,
                                                            http: httpx.Client) -> None:
    o, e = await make_user("o"), await make_user("e")
    owner = raw(http, server, o)
    secret, common = os.urandom(200_000), os.urandom(200_000)
    upload(owner, "/private/secret.bin", secret)
    upload(owner, "/Shared/common.bin", common)
    await o.client.share("/Shared", e.name, "editor")
    private = next(iter(chunk_bytes(secret)))
    shared = next(iter(chunk_bytes(common)))

    async with LiveSession.connect(server.url, e.client.token or "") as live:
        with pytest.raises(SatchelError) as info:
            await live.commit("/Shared/leak.bin", None, private.size, [[private.digest, private.size]])
        assert info.value.code is ErrorCode.missing_chunks
        # A wrong size is not told apart from an absent chunk either.
        with pytest.raises(SatchelError) as info:
            await live.commit("/Shared/leak.bin", None, private.size + 1, [[private.digest, private.size + 1]])
        assert info.value.code is ErrorCode.missing_chunks
        entry = await live.commit("/Shared/named.bin", None, shared.size, [[shared.digest, shared.size]])
    assert content(raw(http, server, e), entry["id"]) == common[:shared.size]
    names = {x["name"] for x in ok(owner("GET", "/api/v1/list", params={"path": "/Shared"}))["entries"]}
    assert names == {"common.bin", "named.bin"}

    # The owner may name any chunk they store.
    async with LiveSession.connect(server.url, o.client.token or "") as live:
        entry = await live.commit("/Shared/mine.bin", None, private.size, [[private.digest, private.size]])
    assert content(owner, entry["id"]) == secret[:private.size]
