"""The local store's segments (server/storage/blobs/local.py, segments.py): what the shared
conformance suite (test_blob_stores.py) cannot see — record layout, torn tails, compaction,
stores written before segments, several processes, and a server killed mid-upload."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from server.core.chunking import hash_bytes
from server.core.errors import ErrorCode, SatchelError
from server.storage.blobs import segments as fmt
from server.storage.blobs.base import BlobKey
from server.storage.blobs.local import LocalBlobStore
from server.storage.blobs.segments import stored_keys
from tests.conftest import random_file


def chunk(size: int, owner: int = 1) -> tuple[BlobKey, bytes]:
    data = os.urandom(size)
    return BlobKey(owner, hash_bytes(data)), data


async def body(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i:i + piece]
        await asyncio.sleep(0)


async def read_all(store: LocalBlobStore, key: BlobKey) -> bytes:
    return b"".join([p async for p in store.read(key)])


def segment_files(root: Path) -> list[Path]:
    return sorted((root / "segments").glob("*.seg"))


async def opened(root: Path, **kw: int) -> LocalBlobStore:
    store = LocalBlobStore(root, **kw)
    await store.start()
    return store


async def test_a_stored_chunk_is_written_once_and_its_time_refreshed(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    try:
        key, data = chunk(5000)
        await store.put_stream(key, len(data), body(data))
        await store.sync()
        store.db.execute("UPDATE chunks SET written_ms = 0")
        await store.put_stream(key, len(data), body(data))
        await store.sync()
        (seg,) = segment_files(tmp_path)
        assert seg.stat().st_size == fmt.HEADER_SIZE + len(data)
        assert [k async for k in store.sweep_candidates(int(time.time() * 1000) - 60_000)] == []
    finally:
        await store.close()


async def test_a_failed_write_back_is_never_reported_durable_to_another_caller(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two commits stored chunks; the disk fails the first one's fdatasync (an I/O error, injected
    here): that flush drops both segments' unflushed records, and the second commit's sync, which
    then has nothing left to flush, must still fail for its chunk instead of calling it durable."""
    store = await opened(tmp_path)
    try:
        mine, mine_data = chunk(5000)
        theirs, theirs_data = chunk(7000)
        await store.put_stream(mine, len(mine_data), body(mine_data))
        await store.put_stream(theirs, len(theirs_data), body(theirs_data))
        real = os.fdatasync
        failures = [OSError(5, "Input/output error")]

        def failing(fd: int) -> None:
            if failures:
                raise failures.pop()
            real(fd)

        monkeypatch.setattr(os, "fdatasync", failing)
        with pytest.raises(SatchelError) as err:
            await store.sync([theirs])
        assert err.value.code is ErrorCode.unavailable
        with pytest.raises(SatchelError) as err:
            await store.sync([mine])
        assert err.value.code is ErrorCode.unavailable
        # Sent again (the client's retry): durable now, and readable.
        await store.put_stream(mine, len(mine_data), body(mine_data))
        await store.sync([mine])
        assert await read_all(store, mine) == mine_data
    finally:
        await store.close()


async def test_a_refused_chunk_leaves_no_bytes(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    try:
        good, data = chunk(3000)
        await store.put_stream(good, len(data), body(data))
        size_after_good = segment_files(tmp_path)[0].stat().st_size
        bad, _ = chunk(3000)
        with pytest.raises(SatchelError) as err:
            await store.put_stream(bad, len(data), body(data))
        assert err.value.code is ErrorCode.hash_mismatch
        with pytest.raises(SatchelError):
            await store.put_stream(bad, 10, body(data))
        assert segment_files(tmp_path)[0].stat().st_size == size_after_good
        await store.sync()
        assert await read_all(store, good) == data
    finally:
        await store.close()


async def test_torn_tail_is_cut_and_complete_unindexed_records_are_kept(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    acked, acked_data = chunk(70_000)
    await store.put_stream(acked, len(acked_data), body(acked_data))
    await store.sync()
    (seg,) = segment_files(tmp_path)
    await store.close()
    # As a crash leaves it: a complete record the index never heard of, then a torn one.
    late, late_data = chunk(1000)
    torn, torn_data = chunk(4000)
    with open(seg, "ab") as f:
        f.write(fmt.header(1, late.digest, len(late_data)) + late_data)
        intact_end = f.tell()
        f.write(fmt.header(1, torn.digest, len(torn_data)) + torn_data[:1234])
    store = await opened(tmp_path)
    try:
        assert seg.stat().st_size == intact_end
        assert await read_all(store, acked) == acked_data
        assert await read_all(store, late) == late_data
        assert not await store.exists(torn)
        await store.put_stream(torn, len(torn_data), body(torn_data))  # appends after the cut
        await store.sync()
        assert await read_all(store, torn) == torn_data
    finally:
        await store.close()
    with open(seg, "r+b") as f:  # a flipped bit inside an unindexed record ends the segment there
        f.truncate(intact_end)
        f.seek(intact_end - 10)
        f.write(b"\xff" * 10)
    store = await opened(tmp_path)
    try:
        assert await read_all(store, acked) == acked_data
    finally:
        await store.close()


async def test_ranges_across_segments(tmp_path: Path) -> None:
    store = await opened(tmp_path, segment_max=100_000)
    try:
        chunks = [chunk(60_000) for _ in range(5)]
        for key, data in chunks:
            await store.put_stream(key, len(data), body(data))
        assert len(segment_files(tmp_path)) >= 3
        for key, data in chunks:
            assert b"".join([p async for p in store.read(key, 100, 59_000)]) == data[100:59_000]
    finally:
        await store.close()


async def test_compaction_keeps_live_chunks_under_concurrent_writes(tmp_path: Path) -> None:
    store = await opened(tmp_path, segment_max=200_000)
    try:
        chunks = [chunk(30_000) for _ in range(40)]
        for key, data in chunks:
            await store.put_stream(key, len(data), body(data))
        await store.sync()
        before = sum(p.stat().st_size for p in segment_files(tmp_path))
        keep = chunks[::4]
        for key, _ in chunks:
            if (key, _) not in keep:
                await store.delete(key)
        fresh = [chunk(30_000) for _ in range(20)]

        async def writes() -> None:
            for key, data in fresh:
                await store.put_stream(key, len(data), body(data, 4096))

        async def reads() -> None:  # readers that looked a chunk up keep reading it while it moves
            for _ in range(5):
                for key, data in keep:
                    assert await read_all(store, key) == data

        removed, _, _ = await asyncio.gather(store.compact(), writes(), reads())
        assert removed >= 3
        await store.sync()
        after = sum(p.stat().st_size for p in segment_files(tmp_path))
        assert after < before  # 40 chunks -> 10 kept + 20 new
        for key, data in keep + fresh:
            assert await read_all(store, key) == data
        for key, _ in chunks:
            if (key, _) not in keep:
                assert not await store.exists(key)
    finally:
        await store.close()
    store = await opened(tmp_path, segment_max=200_000)  # and it all survives a reopen
    try:
        for key, data in keep + fresh:
            assert await read_all(store, key) == data
        assert {(k.owner_id, k.digest) for k, _ in keep + fresh} == stored_keys(tmp_path)
    finally:
        await store.close()


async def test_a_crash_between_compaction_commit_and_unlink(tmp_path: Path) -> None:
    store = await opened(tmp_path, segment_max=25_000)
    chunks = [chunk(10_000) for _ in range(4)]  # three fill the first segment
    for key, data in chunks:
        await store.put_stream(key, len(data), body(data))
    await store.sync()
    first = segment_files(tmp_path)[0]
    saved = first.read_bytes()
    await store.delete(chunks[0][0])
    await store.delete(chunks[1][0])
    assert await store.compact() == 1
    assert not first.exists()
    await store.close()
    first.write_bytes(saved)  # the unlink "did not happen"
    store = await opened(tmp_path, segment_max=25_000)
    try:
        assert not first.exists()
        for key, data in chunks[2:]:
            assert await read_all(store, key) == data
        assert not await store.exists(chunks[0][0]) and not await store.exists(chunks[1][0])
    finally:
        await store.close()


async def test_chunks_stored_before_segments_are_read_swept_and_deleted(tmp_path: Path) -> None:
    old, old_data = chunk(2000, owner=7)
    h = old.hex
    legacy = tmp_path / "7" / h[:2] / h[2:4] / h
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(old_data)
    store = await opened(tmp_path)
    try:
        assert await store.size(old) == len(old_data)
        assert b"".join([p async for p in store.read(old, 5, 50)]) == old_data[5:50]
        await store.put_stream(old, len(old_data), body(old_data))  # already stored: not copied
        assert segment_files(tmp_path) == [] or all(p.stat().st_size == 0 for p in segment_files(tmp_path))
        new, new_data = chunk(2000, owner=7)
        await store.put_stream(new, len(new_data), body(new_data))
        later = int(time.time() * 1000) + 5000
        assert {k async for k in store.sweep_candidates(later)} == {old, new}
        await store.delete(old)
        assert not legacy.exists() and not await store.exists(old)
        assert await read_all(store, new) == new_data
    finally:
        await store.close()


async def test_a_second_process_leaves_open_segments_alone(tmp_path: Path) -> None:
    """``satchel admin gc`` opens the store next to a running server: it must neither cut nor
    append to a segment the server is writing (flock), and it sees what the server flushed."""
    server_side = await opened(tmp_path)
    try:
        flushed, flushed_data = chunk(10_000)
        await server_side.put_stream(flushed, len(flushed_data), body(flushed_data))
        await server_side.sync()
        (seg,) = segment_files(tmp_path)
        with open(seg, "ab") as f:  # a record being written right now, as the other process sees it
            f.write(b"SGR1 half a header")
        admin = await opened(tmp_path)
        try:
            assert seg.stat().st_size == fmt.HEADER_SIZE + len(flushed_data) + 18
            assert await read_all(admin, flushed) == flushed_data
            other, other_data = chunk(10_000)
            await admin.put_stream(other, len(other_data), body(other_data))
            await admin.sync()
            assert len(segment_files(tmp_path)) == 2
            assert await read_all(server_side, other) == other_data
        finally:
            await admin.close()
    finally:
        await server_side.close()


async def test_killed_server_keeps_committed_data_and_resumes(start_server, make_user, tmp_path: Path) -> None:
    """kill -9 in the middle of an upload: what was committed before is intact after a restart,
    the torn tail is cut, and the interrupted upload resumes."""
    srv = start_server("sqlite-local")
    user = await make_user(srv=srv)
    committed = random_file(tmp_path / "committed.bin", 20 * 1024 * 1024)
    await user.client.upload(committed, "/committed.bin")
    big = random_file(tmp_path / "big.bin", 200 * 1024 * 1024)
    task = asyncio.create_task(user.client.upload(big, "/big.bin"))
    start_size = sum(p.stat().st_size for p in segment_files(srv.data_dir / "chunks"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not task.done():
        if sum(p.stat().st_size for p in segment_files(srv.data_dir / "chunks")) - start_size > 30 * 1024 * 1024:
            break
        await asyncio.sleep(0.01)
    srv.kill()
    with pytest.raises((httpx.HTTPError, SatchelError, OSError)):
        await task
    srv.start()
    await user.client.download("/committed.bin", tmp_path / "committed.out")
    assert (tmp_path / "committed.out").read_bytes() == committed.read_bytes()
    await user.client.upload(big, "/big.bin")
    await user.client.download("/big.bin", tmp_path / "big.out")
    assert (tmp_path / "big.out").read_bytes() == big.read_bytes()
