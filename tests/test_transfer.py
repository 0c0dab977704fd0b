"""Uploads and downloads end to end against a real server, on both storage stacks."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from python_client.transfer import PART_SUFFIX, TransferStats
from server.core import chunking
from server.core.chunking import chunk_file, hash_bytes
from server.core.errors import ErrorCode, SatchelError
from server.storage.blobs.segments import stored_keys
from tests.conftest import PASSWORD, api, random_file, several_chunks
from tests.harness.server import VENV_BIN


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            h.update(piece)
    return h.hexdigest()


@pytest.mark.parametrize("size", [0, 1, 65_536, 3_000_000])
async def test_round_trip_is_byte_identical(alice, tmp_path, size):
    src = random_file(tmp_path / "src.bin", size)
    entry = await alice.client.upload(src, "/a/b/file.bin")
    assert entry["size"] == size and entry["path"] == "/a/b/file.bin" and entry["rev"]
    out = await alice.client.download("/a/b/file.bin", tmp_path / "out.bin")
    assert sha(tmp_path / "out.bin") == sha(src)
    assert out["content_hash"] == entry["content_hash"]
    assert not (tmp_path / ("out.bin" + PART_SUFFIX)).exists()


async def test_multi_chunk_file_and_listing(alice, tmp_path):
    src = random_file(tmp_path / "big.bin", 20 * 1024 * 1024 + 7)
    await alice.client.upload(src, "/big.bin")
    names = {e["name"]: e for e in await alice.client.list("/")}
    assert names["big.bin"]["size"] == src.stat().st_size
    await alice.client.download("/big.bin", tmp_path / "copy.bin")
    assert sha(tmp_path / "copy.bin") == sha(src)


async def test_same_content_again_sends_no_chunk(alice, tmp_path):
    src = random_file(tmp_path / "d.bin", 4 * 1024 * 1024)
    first = TransferStats()
    await alice.client.upload(src, "/one.bin", stats=first)
    assert first.bytes_sent == src.stat().st_size
    again = TransferStats()
    await alice.client.upload(src, "/two.bin", stats=again)  # another path, same bytes
    assert again.bytes_sent == 0 and again.chunks_sent == 0
    head = await alice.client.stat("/one.bin")
    same = TransferStats()
    entry = await alice.client.upload(src, "/one.bin", stats=same)  # same path, content and mtime: nothing to do
    assert same.bytes_sent == 0 and entry["rev"] == head["rev"]
    os.utime(src, (time.time() - 3600, time.time() - 3600))
    touched = TransferStats()
    entry = await alice.client.upload(src, "/one.bin", stats=touched)  # a new mtime: a new revision, zero bytes
    assert touched.bytes_sent == 0 and entry["rev"] != head["rev"] and entry["content_hash"] == head["content_hash"]


async def test_interrupted_upload_resumes_with_only_missing_chunks(alice, tmp_path):
    src = random_file(tmp_path / "r.bin", 6 * 1024 * 1024)
    refs = list(chunk_file(src))
    assert len(refs) > 20
    body = {"path": "/r.bin", "size": src.stat().st_size, "parent_rev": None,
            "chunks": [[r.hex, r.size] for r in refs]}
    info = await alice.client.start_upload(body)
    assert info["missing_count"] == len({r.hex for r in refs})
    # The "crash": half the chunks reach the store, then the client dies before committing.
    sent = set()
    with open(src, "rb") as f:
        for m in info["missing"][: len(info["missing"]) // 2]:
            ref = next(r for r in refs if r.hex == m["hash"])
            f.seek(ref.offset)
            resp = await alice.client.http.request(m["method"], m["url"], content=f.read(ref.size),
                                                   headers=m["headers"])
            assert resp.status_code < 300, resp.text
            sent.add(m["hash"])
    assert await alice.client.stat_or_none("/r.bin") is None  # nothing visible before commit
    stats = TransferStats()
    await alice.client.upload(src, "/r.bin", stats=stats)
    expected = sum(r.size for r in {r.hex: r for r in refs}.values() if r.hex not in sent)
    assert stats.bytes_sent == expected
    await alice.client.download("/r.bin", tmp_path / "r.out")
    assert sha(tmp_path / "r.out") == sha(src)


def _stored_chunk_files(server, request) -> int:
    """Chunk files the server's store holds right now (local chunk folder, or rclone's staging)."""
    blob_url = server.env.get("SATCHEL_BLOB_URL", "")
    if blob_url.startswith("s3://"):
        s3 = request.getfixturevalue("s3")
        root = s3.root / blob_url.removeprefix("s3://")
        return sum(1 for p in root.glob("staging/*/*") if p.is_file())
    return len(stored_keys(server.data_dir / "chunks"))


async def test_killed_cli_upload_resumes(server, tmp_path, device_factory, make_user, request):
    user = await make_user()
    dev = device_factory("laptop")
    dev.run("login", server.url, user.name, "--password-stdin", stdin=PASSWORD + "\n")
    # Big enough that the kill lands long before the commit: the local store takes chunks fast;
    # through rclone's S3 each chunk is an object (PUT, then a read-back and copy at commit).
    s3 = server.env.get("SATCHEL_BLOB_URL", "").startswith("s3://")
    src = random_file(tmp_path / "k.bin", (24 if s3 else 96) * 1024 * 1024)
    refs = list(chunk_file(src))
    body = {"path": "/k.bin", "size": src.stat().st_size, "parent_rev": None,
            "chunks": [[r.hex, r.size] for r in refs]}
    before = _stored_chunk_files(server, request)
    env = {**os.environ, "SATCHEL_CONFIG_DIR": str(dev.config_dir)}
    proc = subprocess.Popen([str(VENV_BIN / "satchel"), "put", "-q", str(src), "/k.bin"], env=env)
    try:
        # SIGKILL (no clean-up) as soon as a few chunks are stored: long before it could commit.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if _stored_chunk_files(server, request) - before >= 3:
                break
            await asyncio.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert await user.client.stat_or_none("/k.bin") is None, "the kill came too late to test resume"
    still_missing = await user.client.start_upload(body)
    assert 0 < still_missing["missing_count"] < len(refs)
    stats = TransferStats()
    await user.client.upload(src, "/k.bin", stats=stats)
    assert stats.bytes_sent <= sum(m["size"] for m in still_missing["missing"])
    await user.client.download("/k.bin", tmp_path / "k.out")
    assert sha(tmp_path / "k.out") == sha(src)


async def test_range_requests(alice, tmp_path, server):
    src = random_file(tmp_path / "g.bin", 1_000_000)
    entry = await alice.client.upload(src, "/g.bin")
    data = src.read_bytes()
    url = f"/api/v1/files/{entry['id']}/content"
    full = api(server, "GET", url, alice.client.token)
    assert full.status_code == 200 and full.content == data
    assert full.headers["accept-ranges"] == "bytes" and full.headers["etag"]
    for rng, lo, hi in [("bytes=0-0", 0, 1), ("bytes=100-199999", 100, 200_000),
                        ("bytes=999990-", 999_990, 1_000_000), ("bytes=-10", 999_990, 1_000_000),
                        ("bytes=500000-2000000", 500_000, 1_000_000)]:
        r = api(server, "GET", url, alice.client.token, headers={"Range": rng})
        assert r.status_code == 206, rng
        assert r.content == data[lo:hi], rng
        assert r.headers["content-range"] == f"bytes {lo}-{hi - 1}/1000000"
    bad = api(server, "GET", url, alice.client.token, headers={"Range": "bytes=2000000-"})
    assert bad.status_code == 416 and bad.json()["error"] == "range_not_satisfiable"
    assert bad.headers["content-range"] == "bytes */1000000"
    cached = api(server, "GET", url, alice.client.token, headers={"If-None-Match": full.headers["etag"]})
    assert cached.status_code == 304


async def test_a_chunk_list_without_urls_then_the_urls_of_the_chunks_to_fetch(alice, tmp_path, server):
    from python_client import transfer
    src = tmp_path / "l.bin"
    src.write_bytes(several_chunks(2_000_000, at_least=5))
    entry = await alice.client.upload(src, "/l.bin")
    route = f"/api/v1/files/{entry['id']}/chunks"
    full = api(server, "GET", route, alice.client.token).json()
    bare = api(server, "GET", route + "?urls=0", alice.client.token).json()
    assert all(c.pop("url") for c in full["chunks"]) and full == bare
    assert isinstance(bare["direct"], bool)
    for bad in ("2", "x", "-1", "1.0"):
        r = api(server, "GET", f"{route}?urls={bad}", alice.client.token)
        assert r.status_code == 400 and r.json()["error"] == "bad_request", bad
    # Two runs of chunks to fetch (0; 2-3) get working URLs; the others get none.
    needed = [c for c in bare["chunks"] if c["index"] in (0, 2, 3)]
    await transfer._add_urls(alice.client, entry["id"], entry["rev"], needed)
    data = src.read_bytes()
    for c in needed:
        got = httpx.get(c["url"], timeout=30)
        assert got.status_code == 200 and got.content == data[c["offset"]:c["offset"] + c["size"]]
    assert not any("url" in c for c in bare["chunks"] if c["index"] not in (0, 2, 3))


async def test_interrupted_download_resumes_and_reuses_local_chunks(alice, tmp_path):
    src = random_file(tmp_path / "v1.bin", 8 * 1024 * 1024)
    await alice.client.upload(src, "/v.bin")
    # A half-finished earlier download: the first half of the bytes are in the part file.
    target = tmp_path / "v.out"
    part = tmp_path / ("v.out" + PART_SUFFIX)
    with open(src, "rb") as f, open(part, "wb") as p:
        p.write(f.read(4 * 1024 * 1024))
    stats = TransferStats()
    await alice.client.download("/v.bin", target, stats=stats)
    assert sha(target) == sha(src)
    assert stats.bytes_reused >= 3 * 1024 * 1024 and stats.bytes_received <= 5 * 1024 * 1024
    # Delta download: a small edit upstream; the old local copy supplies every other chunk.
    edited = tmp_path / "v2.bin"
    data = bytearray(src.read_bytes())
    data[4_000_000:4_000_000] = b"inserted!"
    edited.write_bytes(bytes(data))
    await alice.client.upload(edited, "/v.bin")
    stats = TransferStats()
    await alice.client.download("/v.bin", target, stats=stats)
    assert sha(target) == sha(edited)
    assert stats.bytes_received < 600_000, stats


@pytest.mark.parametrize("name_taken", [False, True])
async def test_a_big_replaced_file_is_set_aside_and_freed_after_the_rename(alice, tmp_path, monkeypatch, name_taken):
    from python_client import transfer
    src = random_file(tmp_path / "v1.bin", transfer.SET_ASIDE_MIN + 1)
    await alice.client.upload(src, "/v.bin")
    target = tmp_path / "v.out"
    await alice.client.download("/v.bin", target)
    old_inode = target.stat().st_ino
    aside = target.with_name(target.name + transfer.OLD_SUFFIX)
    if name_taken:  # a user's file of that name is never touched
        aside.write_bytes(b"mine")
    freed: list[tuple[str, int]] = []
    unlink = transfer._unlink_in

    def record(dir_fd: int, name: str) -> None:
        freed.append((name, os.stat(name, dir_fd=dir_fd).st_ino))
        unlink(dir_fd, name)

    monkeypatch.setattr(transfer, "_unlink_in", record)
    data = bytearray(src.read_bytes())
    data[100:100] = b"edit"
    (tmp_path / "v2.bin").write_bytes(bytes(data))
    await alice.client.upload(tmp_path / "v2.bin", "/v.bin")
    await alice.client.download("/v.bin", target)
    for _ in range(100):  # the second name goes in the background
        if name_taken or not aside.exists():
            break
        await asyncio.sleep(0.02)
    assert sha(target) == sha(tmp_path / "v2.bin")
    if name_taken:
        assert freed == [] and aside.read_bytes() == b"mine"
    else:
        assert freed == [(aside.name, old_inode)] and not aside.exists()


async def test_a_failed_write_back_fails_the_download_and_keeps_the_old_file(alice, tmp_path, monkeypatch):
    """A write-back error is reported once per descriptor: a background flush that meets it must
    fail the download, or the final fsync would succeed and a damaged file be renamed in."""
    from python_client import transfer
    src = random_file(tmp_path / "v1.bin", 3_000_000)
    await alice.client.upload(src, "/w.bin")
    target = tmp_path / "w.out"
    first = await alice.client.download("/w.bin", target)
    data = bytearray(src.read_bytes())
    data[1_000_000:1_000_000] = b"edit"
    (tmp_path / "v2.bin").write_bytes(bytes(data))
    await alice.client.upload(tmp_path / "v2.bin", "/w.bin")
    monkeypatch.setattr(transfer, "WRITEBACK_PERIOD", 0.001)
    monkeypatch.setattr(transfer, "FLUSH_EVERY", 1)
    copy = transfer._copy_if_same

    def slow_copy(*args: Any) -> bool:  # the copy outlasts a write-back period
        time.sleep(0.002)
        return copy(*args)

    monkeypatch.setattr(transfer, "_copy_if_same", slow_copy)
    flushes = []

    def failing(fd: int) -> None:
        flushes.append(fd)
        raise OSError(errno.EIO, "injected write-back error")

    monkeypatch.setattr(os, "fdatasync", failing)  # os.fsync, the final one, still succeeds
    # Filled from the old copy while it is written back, then fetched into a new file.
    for local, base in ((target, (first["id"], first["rev"])), (tmp_path / "new.out", None)):
        flushes.clear()
        with pytest.raises(OSError, match="injected"):
            await alice.client.download("/w.bin", local, base=base)
        assert flushes
        # The part file goes too: the page cache may hold bytes the disk lost, which a resumed
        # download would find "verified" there.
        assert not local.with_name(local.name + PART_SUFFIX).exists()
    assert sha(target) == sha(src) and not (tmp_path / "new.out").exists()


async def test_an_unchanged_file_is_not_hashed_again_and_a_changed_one_always_is(alice, tmp_path, monkeypatch):
    from python_client import chunk_cache, transfer
    from python_client.chunk_cache import RACY_NS, ChunkCache

    def no_reading(*args, **kw):
        raise AssertionError("hashed a file whose chunk list the device knows")

    alice.client.chunk_cache = ChunkCache(tmp_path / "conf")
    fresh = random_file(tmp_path / "fresh.bin", 100_000)
    with monkeypatch.context() as m:
        m.setattr(chunk_cache, "RACY_NS", 3600 * 10**9)  # a tick of an hour: every file is fresh
        await alice.client.upload(fresh, "/fresh.bin")  # read within a tick of its last write
        m.setattr(transfer, "chunk_file_pipelined", no_reading)
        with pytest.raises(AssertionError, match="hashed"):
            await alice.client.upload(fresh, "/fresh.bin")  # so not remembered: hashed again
    src = random_file(tmp_path / "c.bin", 3_000_000)
    past = time.time() - 60
    os.utime(src, (past, past))
    time.sleep(RACY_NS / 1e9)  # its ctime (the utime) a timestamp tick old: else never remembered
    await alice.client.upload(src, "/c.bin")
    with monkeypatch.context() as m:
        m.setattr(transfer, "chunk_file_pipelined", no_reading)
        again = TransferStats()
        entry = await alice.client.upload(src, "/c.bin", stats=again)
        assert again.bytes_sent == 0 and entry["size"] == 3_000_000
    # One byte changed in place, the mtime put back: the ctime gives it away, and the new bytes go up.
    with open(src, "r+b") as f:
        f.seek(1_500_000)
        byte = f.read(1)
        f.seek(1_500_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(src, (past, past))
    edit = TransferStats()
    await alice.client.upload(src, "/c.bin", stats=edit)
    assert 0 < edit.bytes_sent < 1_000_000
    await alice.client.download("/c.bin", tmp_path / "got.bin")
    assert sha(tmp_path / "got.bin") == sha(src)
    # A file this device just downloaded is known too: putting it reads nothing, getting it
    # again changes nothing, and getting a newer revision over it fetches only the new chunks.
    got = tmp_path / "got.bin"
    before = got.stat()
    with monkeypatch.context() as m:
        m.setattr(transfer, "chunk_file_pipelined", no_reading)
        time.sleep(RACY_NS / 1e9)
        entry = await alice.client.upload(got, "/copy.bin")
        assert entry["content_hash"] == (await alice.client.stat("/c.bin"))["content_hash"]
        same = TransferStats()
        await alice.client.download("/c.bin", got, stats=same)
        assert same.bytes_received == 0 and got.stat().st_ino == before.st_ino
        with open(src, "r+b") as f:
            f.seek(100_000)
            f.write(b"another edit")
        await alice.client.upload(src, "/c.bin", chunks=list(chunk_file(src)))
        newer = TransferStats()
        await alice.client.download("/c.bin", got, stats=newer)
        assert 0 < newer.bytes_received < 1_000_000 and newer.bytes_reused > 2_000_000
    assert sha(got) == sha(src)


async def test_two_cli_devices_round_trip(server, tmp_path, device_factory, make_user):
    user = await make_user()
    laptop, desktop = device_factory("laptop"), device_factory("desktop")
    for d, name in ((laptop, "laptop"), (desktop, "desktop")):
        d.run("login", server.url, user.name, "--password-stdin", "--device", name, stdin=PASSWORD + "\n")
    src = random_file(tmp_path / "report.pdf", 2_500_000)
    laptop.run("put", str(src), "/Work/")
    listing = desktop.run("ls", "/Work", "--json")
    assert '"report.pdf"' in listing.stdout
    desktop.run("get", "/Work/report.pdf", str(tmp_path / "got.pdf"))
    assert sha(tmp_path / "got.pdf") == sha(src)
    devices = laptop.run("devices", "--json").stdout
    assert "laptop" in devices and "desktop" in devices
    info = desktop.run("info", "/Work/report.pdf", "--json").stdout
    assert '"size": 2500000' in info


async def test_upload_over_configured_max_size(start_server, make_user, tmp_path):
    srv = start_server(SATCHEL_MAX_FILE_SIZE="1MB")
    user = await make_user(srv=srv)
    src = random_file(tmp_path / "x.bin", 1_000_001)
    with pytest.raises(SatchelError) as err:
        await user.client.upload(src, "/x.bin")
    assert err.value.code is ErrorCode.too_large
    random_file(tmp_path / "ok.bin", 1_000_000)
    await user.client.upload(tmp_path / "ok.bin", "/ok.bin")


async def test_chunk_urls_are_presigned_to_the_object_store_on_s3(server, alice, tmp_path):
    src = random_file(tmp_path / "p.bin", 300_000)
    refs = list(chunk_file(src))
    info = await alice.client.start_upload({"path": "/p.bin", "size": 300_000, "parent_rev": None,
                                            "chunks": [[r.hex, r.size] for r in refs]})
    urls = [m["url"] for m in info["missing"]]
    if "pg-s3" in str(server.data_dir):
        assert all(not u.startswith(server.url) for u in urls) and all("X-Amz-Signature" in u for u in urls)
    else:
        assert all(u.startswith(server.url + "/api/v1/blobs/up/") for u in urls)
    async with httpx.AsyncClient() as h:
        for m in info["missing"]:
            ref = next(r for r in refs if r.hex == m["hash"])
            with open(src, "rb") as f:
                f.seek(ref.offset)
                assert (await h.put(m["url"], content=f.read(ref.size), headers=m["headers"])).status_code < 300
    await alice.client.commit_upload(info["upload_id"])
    listing = await alice.client.chunk_list((await alice.client.stat("/p.bin"))["id"])
    assert [c["hash"] for c in listing["chunks"]] == [r.hex for r in refs]


async def test_presigned_urls_that_expire_mid_download_are_renewed(start_server, make_user, tmp_path):
    """A member's presigned URLs live minutes and a 50 GB download takes longer: the client asks
    for fresh ones where the object store refuses old ones (here they live one second)."""
    srv = start_server("pg-s3", SATCHEL_URL_TTL="1s")
    user = await make_user(srv=srv)
    user.client.parallel = 1  # one chunk at a time, so the pause below outlives the others' URLs
    src = random_file(tmp_path / "x.bin", 6 * 1024 * 1024)
    await user.client.upload(src, "/x.bin")
    assert len((await user.client.chunk_list((await user.client.stat("/x.bin"))["id"]))["chunks"]) > 2
    paused = []

    def progress(_total: int, _count: int) -> Callable[[int], None]:
        def advance(_n: int) -> None:
            if not paused:  # blocks the loop on purpose: every URL not yet used runs out
                paused.append(True)
                time.sleep(1.5)
        return advance

    await user.client.download("/x.bin", tmp_path / "out.bin", progress=progress)
    assert paused and sha(tmp_path / "out.bin") == sha(src)


async def test_a_stored_chunk_announced_with_a_wrong_size_is_refused(alice, server, tmp_path):
    """One digest is one content: a wrong size would make the file's offsets lie (and downloads
    fail mid-body), so it is refused whether the chunk is committed or only uploaded."""
    data = os.urandom(1000)
    (tmp_path / "one").write_bytes(data)
    await alice.client.upload(tmp_path / "one", "/one.bin")
    digest = hash_bytes(data).hex()
    for chunks, size in (([[digest, 5000]], 5000), ([[digest, 1000], [digest, 2000]], 3000)):
        with pytest.raises(SatchelError) as err:
            await alice.client.start_upload({"path": "/liar.bin", "size": size, "parent_rev": None,
                                             "chunks": chunks})
        assert err.value.code is ErrorCode.size_mismatch
    # Uploaded through a session but never committed: caught at commit by the stored size.
    other = os.urandom(1000)
    odigest = hash_bytes(other).hex()
    first = await alice.client.start_upload({"path": "/u.bin", "size": 1000, "parent_rev": None,
                                             "chunks": [[odigest, 1000]]})
    async with httpx.AsyncClient() as h:
        m = first["missing"][0]
        assert (await h.put(m["url"], content=other, headers=m["headers"])).status_code < 300
    second = await alice.client.start_upload({"path": "/u2.bin", "size": 4000, "parent_rev": None,
                                              "chunks": [[odigest, 4000]]})
    with pytest.raises(SatchelError) as err:
        await alice.client.commit_upload(second["upload_id"])
    assert err.value.code in (ErrorCode.size_mismatch, ErrorCode.missing_chunks)
    assert await alice.client.stat_or_none("/u2.bin") is None


# 256 MiB through rclone's S3 (4,096 chunk objects each way) takes minutes on the CI machine:
# the object-store run of the same code is a soak test.
@pytest.mark.parametrize("server", ["sqlite-local", pytest.param("pg-s3", marks=pytest.mark.soak)], indirect=True)
@pytest.mark.parametrize("with_base", [False, True], ids=["by-content", "synced-base"])
async def test_a_file_crossing_a_chunk_size_step_sends_only_what_changed(alice, tmp_path, with_base):
    """256 MiB + 1 byte is cut with 128 KiB chunks, 256 MiB with 64 KiB ones: no chunk is shared.
    The server finds the unchanged ones in the parent's bytes, the client sends the chunk around
    the edit as a patch of the parent (upload); the other device finds them in its old copy
    (download, with or without the synced chunk list a sync client keeps)."""
    size = chunking.SMALL_FILE_LIMIT
    old = random_file(tmp_path / "old.bin", size, seed=7)
    first = await alice.client.upload(old, "/big.bin")
    copy = tmp_path / "copy.bin"  # the other device's copy of the old version
    await alice.client.download("/big.bin", copy)
    new = tmp_path / "new.bin"
    with open(old, "rb") as src, open(new, "wb") as dst:  # one byte inserted in the middle
        for i in range(size // (1 << 20)):
            piece = src.read(1 << 20)
            dst.write(piece[:1 << 19] + b"!" + piece[1 << 19:] if i == 128 else piece)
    assert chunking.avg_chunk_size(size + 1) != chunking.avg_chunk_size(size)

    refs = list(chunk_file(new))  # what is missing once the server has searched the parent
    announced = await alice.client.start_upload({"path": "/big.bin", "size": size + 1, "parent_rev": first["rev"],
                                                 "chunks": [[r.hex, r.size] for r in refs]})
    missing = sum(m["size"] for m in announced["missing"])
    assert 0 < missing < 1024 * 1024 and announced["missing_count"] < 8

    sent = TransferStats()
    parent = [(r.digest, r.size) for r in chunk_file(old)] if with_base else None
    entry = await alice.client.upload(new, "/big.bin", stats=sent, parent_chunks=parent)
    assert entry["size"] == size + 1
    # The patch: the chunk's new bytes (about one 64 KiB chunk, base64) and ranges of the parent.
    assert 0 < sent.bytes_sent < 0.75 * missing, (sent.bytes_sent, missing)

    got = TransferStats()
    base = (int(first["id"]), int(first["rev"])) if with_base else None
    await alice.client.download("/big.bin", copy, stats=got, base=base)
    assert 0 < got.bytes_received < 2 * 1024 * 1024, got.bytes_received
    assert got.bytes_reused >= size - 2 * 1024 * 1024
    assert sha(copy) == sha(new)
