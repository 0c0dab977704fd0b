"""Batches over the WebSocket (protocol.md, "Batches"): ``commit_batch`` commits many small files
in one transaction with a result per item; ``fetch`` reads many small files in one reply. Both
stacks, real server processes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from python_client.batching import commit_body
from python_client.live import LiveSession
from server.core.errors import ErrorCode, SatchelError
from server.services.batch import FETCH_BYTES, FETCH_FILE_MAX, MAX_ITEMS
from server.ws.protocol import MsgType
from tests.conftest import User
from tests.harness import ws
from tests.harness.server import ServerProcess
from tests.test_quota_search import set_quota

MakeUser = Callable[..., Any]


def code(result: dict[str, Any]) -> str:
    return "ok" if "entry" in result else str(result["error"]["code"])


async def test_commit_batch_per_item_results_one_transaction(server: ServerProcess, make_user: MakeUser,
                                                             tmp_path: Path) -> None:
    a: User = await make_user("A")
    b: User = await make_user("B", name=a.name)
    ns = int((await a.client.account())["root_namespace"])
    async with LiveSession.connect(server.url, a.client.token or "") as la, \
            LiveSession.connect(server.url, b.client.token or "") as lb:
        old = await la.commit("/b/old.txt", None, 3, [b"old"])
        sub = await lb.subscribe(ns)
        text = b"a batch of marmalade words\n"
        binary = os.urandom(5000)
        results = await la.commit_batch([
            commit_body("/b/one.txt", None, text, 1_700_000_000_000_000_000),
            commit_body("/b/sub/two.bin", None, binary, 1_700_000_000_000_000_000),
            commit_body("/b/old.txt", old["rev"], b"new", 1_700_000_000_000_000_000),
            commit_body("/b/old.txt", old["rev"], b"lost race", 1_700_000_000_000_000_000),  # parent no longer head
            commit_body("/b/one.txt", None, b"again", 1_700_000_000_000_000_000),  # taken by the first item
            {"path": "/b/../x", "parent_rev": None, "size": 1, "ops": [b"x"]},
            "not a map",  # type: ignore[list-item]
            commit_body("/b/sub/two.bin/under", None, b"x", 0),  # under a file
        ])
        assert [code(r) for r in results] == ["ok", "ok", "ok", "conflict", "conflict", "invalid_path",
                                              "bad_request", "not_a_directory"]
        assert results[3]["error"]["head_rev"] == results[2]["entry"]["rev"]
        assert results[1]["entry"]["path"] == "/b/sub/two.bin" and results[1]["entry"]["size"] == 5000
        # journal and pushes for the items that committed, nothing for the refused ones
        pushes = [await ws.next_change(lb) for _ in range(4)]
        assert [(p["op"], p["path"]) for p in pushes] == [("create", "/b/one.txt"), ("mkdir", "/b/sub"),
                                                           ("create", "/b/sub/two.bin"), ("modify", "/b/old.txt")]
        assert [p["seq"] for p in pushes] == list(range(sub["seq"] + 1, sub["seq"] + 5))
        await ws.no_push(lb)
        for path, want in (("/b/one.txt", text), ("/b/sub/two.bin", binary), ("/b/old.txt", b"new")):
            await a.client.download(path, tmp_path / "out")
            assert (tmp_path / "out").read_bytes() == want, path
        # the text is searchable at once (indexed in the batch's own transaction)
        assert [e["path"] for e in (await a.client.search("marmalade"))["entries"]] == ["/b/one.txt"]
        assert (await a.client.quota())["used"] == len(text) + len(binary) + 3

        # fetch: bytes per item, any revision, errors per item
        got = await lb.fetch([{"path": "/b/one.txt"}, {"path": "/b/sub/two.bin"}, {"path": "/b/nope"},
                              {"path": "/b/sub"}, {"path": "/b/old.txt", "rev": old["rev"]},
                              {"path": "/b/old.txt", "rev": results[0]["entry"]["rev"]}, {"path": 5}])
        assert got[0]["data"] == text and got[0]["rev"] == results[0]["entry"]["rev"]
        assert got[0]["content_hash"] == results[0]["entry"]["content_hash"] and got[0]["size"] == len(text)
        assert got[1]["data"] == binary and got[4]["data"] == b"old" and got[4]["rev"] == old["rev"]
        assert [g.get("error", {}).get("code") for g in got] == [None, None, "not_found", "is_a_directory", None,
                                                                 "not_found", "invalid_path"]
        assert await la.request(MsgType.ping, {})  # the connection survived


async def test_batch_limits_and_whole_frame_refusals(server: ServerProcess, make_user: MakeUser) -> None:
    a: User = await make_user("A")
    async with LiveSession.connect(server.url, a.client.token or "") as la:
        bodies: list[dict[str, Any]] = [{}, {"items": []}, {"items": "x"}, {"items": [{}] * (MAX_ITEMS + 1)}]
        for body in bodies:
            for mtype in (MsgType.commit_batch, MsgType.fetch):
                with pytest.raises(SatchelError) as info:
                    await la.request(mtype, body)
                assert info.value.code is ErrorCode.bad_request, (mtype, body)
        # past FETCH_FILE_MAX, and past FETCH_BYTES in all: too_large, fetched another way
        big = os.urandom(FETCH_FILE_MAX + 1)
        assert code((await la.commit_batch([commit_body("/big.bin", None, big, 0)]))[0]) == "ok"
        assert (await la.fetch([{"path": "/big.bin"}]))[0]["error"]["code"] == "too_large"
        n = FETCH_BYTES // (150 * 1024) + 1
        parts = [os.urandom(150 * 1024) for _ in range(n)]
        for i, data in enumerate(parts):
            assert code((await la.commit_batch([commit_body(f"/f{i}", None, data, 0)]))[0]) == "ok"
        got = await la.fetch([{"path": f"/f{i}"} for i in range(n)])
        assert [g["data"] for g in got[:-1]] == parts[:-1]
        assert got[-1]["error"]["code"] == "too_large"
        assert (await la.fetch([{"path": f"/f{n - 1}"}]))[0]["data"] == parts[-1]


async def test_commit_batch_quota_per_item(server: ServerProcess, make_user: MakeUser) -> None:
    a: User = await make_user("A")
    set_quota(server, a.name, "100KB")
    async with LiveSession.connect(server.url, a.client.token or "") as la:
        items = [commit_body(f"/q/{i}.bin", None, os.urandom(40_000), 0) for i in range(3)]
        results = await la.commit_batch(items)
        assert [code(r) for r in results] == ["ok", "ok", "quota_exceeded"]
        assert (await a.client.quota())["used"] == 80_000
        assert [e["name"] for e in await a.client.list("/q")] == ["0.bin", "1.bin"]


async def test_concurrent_batches_on_one_path_keep_every_version(server: ServerProcess,
                                                                 make_user: MakeUser) -> None:
    """Two devices commit batches naming the same new paths at once: each path gets exactly one
    winner, the loser's item is a conflict (its bytes stay with its writer), nothing is mixed."""
    a: User = await make_user("A")
    b: User = await make_user("B", name=a.name)
    async with LiveSession.connect(server.url, a.client.token or "") as la, \
            LiveSession.connect(server.url, b.client.token or "") as lb:
        mine = {i: os.urandom(3000) for i in range(40)}
        theirs = {i: os.urandom(3000) for i in range(40)}
        ra, rb = await asyncio.gather(
            la.commit_batch([commit_body(f"/c/{i}", None, d, 0) for i, d in mine.items()]),
            lb.commit_batch([commit_body(f"/c/{i}", None, d, 0) for i, d in theirs.items()]))
        for i in range(40):
            assert sorted((code(ra[i]), code(rb[i]))) == ["conflict", "ok"], i
            want = mine[i] if code(ra[i]) == "ok" else theirs[i]
            assert (await la.fetch([{"path": f"/c/{i}"}]))[0]["data"] == want


async def test_commit_batch_usual_case_written_in_bulk(server: ServerProcess, make_user: MakeUser,
                                                       tmp_path: Path) -> None:
    """Distinct paths in one namespace (the bulk path): new files in new nested folders, an edit,
    a stale edit and a folder in the way are answered per item like the item-by-item path."""
    a: User = await make_user("A")
    b: User = await make_user("B", name=a.name)
    ns = int((await a.client.account())["root_namespace"])
    async with LiveSession.connect(server.url, a.client.token or "") as la, \
            LiveSession.connect(server.url, b.client.token or "") as lb:
        e1 = await la.commit("/k/edit.txt", None, 3, [b"one"])
        e2 = await la.commit("/k/stale.txt", None, 3, [b"two"])
        await a.client.mkdir("/k/folder")
        sub = await lb.subscribe(ns)
        files = {f"/k/new/deep/f{i}.txt": f"file {i} says quinoa\n".encode() for i in range(50)}
        items = [commit_body(p, None, d, 0) for p, d in files.items()]
        items += [commit_body("/k/edit.txt", e1["rev"], b"edited", 0), commit_body("/k/stale.txt", None, b"x", 0),
                  commit_body("/k/folder", None, b"x", 0)]
        results = await la.commit_batch(items)
        assert [code(r) for r in results] == ["ok"] * 51 + ["conflict", "is_a_directory"]
        assert results[51]["error"]["head_rev"] == e2["rev"]
        pushes = [await ws.next_change(lb) for _ in range(53)]
        assert [(p["op"], p["path"]) for p in pushes[:2]] == [("mkdir", "/k/new"), ("mkdir", "/k/new/deep")]
        assert [p["path"] for p in pushes[2:]] == [*files, "/k/edit.txt"]
        assert pushes[-1]["op"] == "modify" and pushes[-1]["parent_rev"] == e1["rev"]
        assert [p["seq"] for p in pushes] == list(range(sub["seq"] + 1, sub["seq"] + 54))
        await ws.no_push(lb)
        got = await lb.fetch([{"path": p} for p in [*files, "/k/edit.txt"]])
        assert [g["data"] for g in got] == [*files.values(), b"edited"]
        assert len((await a.client.search("quinoa", limit=100))["entries"]) == 50
        assert [e["path"] for e in (await a.client.search("edited"))["entries"]] == ["/k/edit.txt"]
        for path, r in zip([*files, "/k/edit.txt"], results, strict=False):  # ids and revisions paired right
            head = await a.client.stat(path)
            assert (r["entry"]["id"], r["entry"]["rev"], r["entry"]["path"]) == (head["id"], head["rev"], path)
        assert (await a.client.quota())["used"] == sum(map(len, files.values())) + len(b"edited") + 3
        assert (await a.client.stat("/k/stale.txt"))["rev"] == e2["rev"]
