"""The sync engine end to end: two or three devices of one account, each with its own folder,
against a real server process (in-process engines, rounds driven by the test)."""

from __future__ import annotations

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
