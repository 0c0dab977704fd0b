"""`satchel put DIR` and `satchel get /DIR`: small files in WebSocket batches, big ones one by
one, the unchanged left alone, a refused file reported without stopping the others; on both
storage stacks."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from python_client import folder_get, folder_put
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
    (root / "empty folder").mkdir()


async def _logged_in(server, make_user, device_factory):
    user = await make_user()
    dev = device_factory("laptop")
    dev.run("login", server.url, user.name, "--password-stdin", stdin=PASSWORD + "\n")
    return user, dev


async def test_a_folder_goes_up_whole_and_a_second_run_sends_nothing(server, make_user, device_factory, tmp_path):
    user, dev = await _logged_in(server, make_user, device_factory)
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
    _, dev = await _logged_in(server, make_user, device_factory)
    src = tmp_path / "Mixed"
    src.mkdir()
    (src / "good.txt").write_text("fine\n")
    (src / "bad\x01name.txt").write_text("a control character in the name\n")
    proc = dev.run("put", str(src), "/", check=False)
    assert proc.returncode == 1, proc
    assert "invalid_path" in proc.stderr and "bad" in proc.stderr
    dev.run("get", "-q", "/Mixed/good.txt", str(tmp_path / "good.txt"))
    assert (tmp_path / "good.txt").read_text() == "fine\n"
    for target in (tmp_path / "no" / "such" / "folder" / "x.txt", tmp_path / "good.txt"):  # a file where a folder goes
        src = "/Mixed/good.txt" if target.name == "x.txt" else "/Mixed"
        proc = dev.run("get", src, str(target), check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr and str(target) in proc.stderr, proc


async def test_a_file_changed_on_the_server_after_the_listing_is_still_overwritten(alice, tmp_path, monkeypatch):
    src = tmp_path / "F"
    src.mkdir()
    for i in range(5):
        (src / f"{i}.txt").write_text(f"first {i}\n")
    first = await folder_put.put_folder(alice.client, src, "/F")
    assert (first.transferred, first.refused) == (5, [])
    for i in range(5):
        (src / f"{i}.txt").write_text(f"second {i}\n")

    async def stale_listing(client, folders):
        return {}  # as if listed before the first upload: every item names no parent

    monkeypatch.setattr(folder_put, "_heads", stale_listing)
    second = await folder_put.put_folder(alice.client, src, "/F")
    assert (second.transferred, second.refused) == (5, [])  # conflicts, retried on the head they named
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
    assert result.transferred == 1 and len(result.refused) == 1
    assert ErrorCode.is_a_directory.value in result.refused[0]
    assert os.path.basename(result.refused[0].split(":")[0]) == "a.txt"


@pytest.mark.parametrize("n", [1, 600])
async def test_many_small_files_in_batches(alice, tmp_path, n):
    src = tmp_path / "Many"
    src.mkdir()
    for i in range(n):
        (src / f"{i:04}.bin").write_bytes(os.urandom(3000))
    result = await folder_put.put_folder(alice.client, src, "/Many")
    assert (result.transferred, result.refused) == (n, [])
    names = {e["name"] for e in await alice.client.list("/Many")}
    assert names == {f"{i:04}.bin" for i in range(n)}


async def test_a_folder_comes_down_whole_and_a_second_run_fetches_nothing(server, make_user, device_factory,
                                                                          tmp_path):
    _, dev = await _logged_in(server, make_user, device_factory)
    src = tmp_path / "Project"
    src.mkdir()
    _make(src)
    dev.run("put", "-q", str(src), "/")
    dl = tmp_path / "dl"
    dl.mkdir()
    out = dev.run("get", "/Project", str(dl))  # an existing folder: the tree goes inside it
    assert "43 downloaded, 0 unchanged" in out.stdout
    assert _tree(dl / "Project") == _tree(src)
    assert (dl / "Project" / "empty folder").is_dir() and (dl / "Project" / "docs" / "deep" / "er").is_dir()
    note = dl / "Project" / "docs" / "note7.txt"
    assert note.stat().st_mtime_ns // 1_000_000 == (src / "docs" / "note7.txt").stat().st_mtime_ns // 1_000_000
    assert not list(dl.rglob("*.satchel-part"))
    again = dev.run("get", "/Project", str(dl))
    assert "0 downloaded, 43 unchanged" in again.stdout
    note.write_text("edited here\n")
    (dl / "Project" / "top.bin").unlink()
    assert "2 downloaded, 41 unchanged" in dev.run("get", "/Project", str(dl)).stdout
    assert _tree(dl / "Project") == _tree(src)
    refused = dev.run("get", "/Project", str(tmp_path / "x"), "--revision", "1", check=False)
    assert refused.returncode == 2 and "rewind" in refused.stderr


async def test_a_local_file_where_a_folder_goes_is_reported_and_the_rest_comes_down(alice, tmp_path):
    src = tmp_path / "T"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("a\n")
    (src / "b.txt").write_text("b\n")
    assert (await folder_put.put_folder(alice.client, src, "/T")).refused == []
    dl = tmp_path / "dl"
    dl.mkdir()
    (dl / "sub").write_text("a file in the way\n")
    result = await folder_get.get_folder(alice.client, "/T", dl)
    assert result.transferred == 1 and len(result.refused) >= 1
    assert (dl / "b.txt").read_text() == "b\n" and (dl / "sub").read_text() == "a file in the way\n"


async def test_without_a_websocket_both_ways_still_work_one_file_at_a_time(alice, tmp_path, monkeypatch):
    """A proxy that blocks WebSockets (or a server without batches): the files go over HTTP."""
    from python_client.live import LiveSession

    def no_websocket(*args, **kw):
        raise OSError("the proxy refused the upgrade")

    monkeypatch.setattr(LiveSession, "connect", no_websocket)
    src = tmp_path / "W"
    src.mkdir()
    for i in range(6):
        (src / f"{i}.txt").write_text(f"file {i}\n")
    put = await folder_put.put_folder(alice.client, src, "/W")
    assert (put.transferred, put.refused) == (6, [])
    dl = tmp_path / "dl"
    got = await folder_get.get_folder(alice.client, "/W", dl)
    assert (got.transferred, got.refused) == (6, [])
    assert _tree(dl) == _tree(src)


async def test_a_local_folder_where_a_file_goes_is_refused_and_no_part_file_stays(alice, tmp_path):
    src = tmp_path / "P"
    src.mkdir()
    (src / "small.txt").write_text("s\n")
    random_file(src / "big.bin", 300_000)
    assert (await folder_put.put_folder(alice.client, src, "/P")).refused == []
    dl = tmp_path / "dl"
    (dl / "small.txt").mkdir(parents=True)
    (dl / "big.bin").mkdir()
    result = await folder_get.get_folder(alice.client, "/P", dl)
    assert result.transferred == 0 and len(result.refused) == 2
    assert not list(dl.rglob("*.satchel-part")) and not list((dl / "big.bin").iterdir())
