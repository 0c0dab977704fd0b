"""`satchel put DIR`: small files in WebSocket batches, big ones one by one, the unchanged left
alone, a refused file reported without stopping the others; on both storage stacks."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from python_client import folder_put
from server.core.chunking import chunk_file, content_hash
from server.core.errors import ErrorCode
from tests.conftest import PASSWORD, random_file


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> content hash (as the server computes it) of every file under *root*."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(root).as_posix()] = content_hash(r.digest for r in chunk_file(p))
    return out


async def _remote_tree(client, top: str) -> dict[str, str]:
    out, todo = {}, [top]
    while todo:
        for e in await client.list(todo.pop()):
            if e["kind"] == "dir":
                todo.append(e["path"])
            else:
                out[e["path"][len(top) + 1:]] = e["content_hash"]
    return dict(sorted(out.items()))


def _make(root: Path) -> None:
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    for i in range(40):
        (root / "docs" / f"note{i}.txt").write_text(f"note {i}\n" * (i + 1))
    (root / "docs" / "deep" / "er" / "empty").write_bytes(b"")
    random_file(root / "docs" / "deep" / "photo.bin", 700_000)  # over SMALL_MAX: its own upload
    random_file(root / "top.bin", 150_000)
    (root / "link").symlink_to(root / "top.bin")  # skipped


async def test_a_folder_goes_up_whole_and_a_second_run_sends_nothing(server, make_user, device_factory, tmp_path):
    user = await make_user()
    dev = device_factory("laptop")
    dev.run("login", server.url, user.name, "--password-stdin", stdin=PASSWORD + "\n")
    src = tmp_path / "Project"
    src.mkdir()
    _make(src)
    time.sleep(0.05)
    out = dev.run("put", str(src), "/")
    assert "43 uploaded, 0 unchanged" in out.stdout
    assert await _remote_tree(user.client, "/Project") == _tree(src)  # every byte: the server hashed them
    dev.run("get", "-q", "/Project/docs/deep/photo.bin", str(tmp_path / "photo.bin"))
    assert _tree(tmp_path)["photo.bin"] == _tree(src)["docs/deep/photo.bin"]
    before = json.loads(dev.run("versions", "/Project/docs/note3.txt", "--json").stdout)
    again = dev.run("put", str(src), "/")
    assert "0 uploaded, 43 unchanged" in again.stdout
    assert json.loads(dev.run("versions", "/Project/docs/note3.txt", "--json").stdout) == before
    (src / "docs" / "note3.txt").write_text("changed\n")
    assert "1 uploaded, 42 unchanged" in dev.run("put", str(src), "/").stdout
    dev.run("get", "-q", "/Project/docs/note3.txt", str(tmp_path / "n3.txt"))
    assert (tmp_path / "n3.txt").read_text() == "changed\n"


async def test_a_refused_file_is_reported_and_the_others_still_go_up(server, make_user, device_factory, tmp_path):
    user = await make_user()
    dev = device_factory("laptop")
    dev.run("login", server.url, user.name, "--password-stdin", stdin=PASSWORD + "\n")
    src = tmp_path / "Mixed"
    src.mkdir()
    (src / "good.txt").write_text("fine\n")
    (src / "bad\x01name.txt").write_text("a control character in the name\n")
    proc = dev.run("put", str(src), "/", check=False)
    assert proc.returncode == 1, proc
    assert "invalid_path" in proc.stderr and "bad" in proc.stderr
    dev.run("get", "-q", "/Mixed/good.txt", str(tmp_path / "good.txt"))
    assert (tmp_path / "good.txt").read_text() == "fine\n"


async def test_a_file_changed_on_the_server_after_the_listing_is_still_overwritten(alice, tmp_path, monkeypatch):
    src = tmp_path / "F"
    src.mkdir()
    for i in range(5):
        (src / f"{i}.txt").write_text(f"first {i}\n")
    first = await folder_put.put_folder(alice.client, src, "/F")
    assert (first.uploaded, first.refused) == (5, [])
    for i in range(5):
        (src / f"{i}.txt").write_text(f"second {i}\n")

    async def stale_listing(client, folders):
        return {}  # as if listed before the first upload: every item names no parent

    monkeypatch.setattr(folder_put, "_heads", stale_listing)
    second = await folder_put.put_folder(alice.client, src, "/F")
    assert (second.uploaded, second.refused) == (5, [])  # conflicts, retried on the head they named
    for i in range(5):
        await alice.client.download(f"/F/{i}.txt", tmp_path / "out.txt")
        assert (tmp_path / "out.txt").read_text() == f"second {i}\n"


async def test_a_folder_on_the_server_where_a_file_goes_is_refused(alice, tmp_path):
    await alice.client.mkdir("/G/a.txt")
    src = tmp_path / "G"
    src.mkdir()
    (src / "a.txt").write_text("x\n")
    (src / "b.txt").write_text("y\n")
    result = await folder_put.put_folder(alice.client, src, "/G")
    assert result.uploaded == 1 and len(result.refused) == 1
    assert ErrorCode.is_a_directory.value in result.refused[0]
    assert os.path.basename(result.refused[0].split(":")[0]) == "a.txt"


@pytest.mark.parametrize("n", [1, 600])
async def test_many_small_files_in_batches(alice, tmp_path, n):
    src = tmp_path / "Many"
    src.mkdir()
    for i in range(n):
        (src / f"{i:04}.bin").write_bytes(os.urandom(3000))
    result = await folder_put.put_folder(alice.client, src, "/Many")
    assert (result.uploaded, result.refused) == (n, [])
    names = {e["name"] for e in await alice.client.list("/Many")}
    assert names == {f"{i:04}.bin" for i in range(n)}
