"""The device's chunk-list cache (python_client.chunk_cache): what it trusts and what it refuses."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from python_client import chunk_cache
from python_client.chunk_cache import RACY_NS, ChunkCache
from server.core.chunking import ChunkRef, chunk_file


def _old_file(path: Path, data: bytes) -> os.stat_result:
    path.write_bytes(data)
    past = time.time() - 60
    os.utime(path, (past, past))
    time.sleep(RACY_NS / 1e9)  # the ctime (set by utime) a tick in the past too
    return path.stat()


@pytest.fixture
def cache(tmp_path):
    c = ChunkCache(tmp_path / "conf")
    yield c
    c.close()


def test_an_unchanged_file_gets_its_list_back(tmp_path, cache):
    f = tmp_path / "a.bin"
    st = _old_file(f, os.urandom(300_000))
    refs = list(chunk_file(f))
    cache.put(f, st, time.time_ns(), refs)
    assert cache.get(f, f.stat()) == refs
    other = ChunkCache(tmp_path / "conf")  # another process: on disk
    assert other.get(f, f.stat()) == refs
    other.close()


def test_any_change_of_size_mtime_ctime_path_or_identity_misses(tmp_path, cache):
    f = tmp_path / "a.bin"
    st = _old_file(f, b"x" * 1000)
    cache.put(f, st, time.time_ns(), list(chunk_file(f)))
    with open(f, "r+b") as h:  # same size, mtime put back: only the ctime tells
        h.write(b"y")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = f.stat()
    assert (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns) and now.st_ctime_ns != st.st_ctime_ns
    assert cache.get(f, now) is None
    g = tmp_path / "b.bin"  # another inode with the same size and times
    g.write_bytes(b"x" * 1000)
    assert cache.get(g, g.stat()) is None
    h = tmp_path / "c.bin"
    st = _old_file(h, b"z" * 1000)
    cache.put(h, st, time.time_ns(), list(chunk_file(h)))
    assert cache.get(h, st) is not None
    assert cache.get(tmp_path / "elsewhere.bin", st) is None  # the same stat under another name


def test_a_file_written_or_touched_within_a_tick_of_its_reading_is_not_remembered(tmp_path, cache):
    f = tmp_path / "fresh.bin"
    f.write_bytes(b"z" * 5000)
    st = f.stat()
    newest = max(st.st_mtime_ns, st.st_ctime_ns)
    cache.put(f, st, newest + RACY_NS // 2, list(chunk_file(f)))  # a write in the same tick could follow
    assert cache.get(f, st) is None
    cache.put(f, st, newest + RACY_NS, list(chunk_file(f)))
    assert cache.get(f, st) is not None


def test_a_file_system_with_coarse_timestamps_is_not_cached(tmp_path, cache):
    f = tmp_path / "a.bin"
    st = _old_file(f, b"q" * 2000)
    fields = list(st)  # FAT-like: whole-second times
    coarse = os.stat_result((*fields[:7], int(st.st_atime), int(st.st_mtime), int(st.st_ctime)),
                            {"st_atime_ns": int(st.st_atime) * 10**9, "st_mtime_ns": int(st.st_mtime) * 10**9,
                             "st_ctime_ns": int(st.st_ctime) * 10**9})
    assert coarse.st_ctime_ns % 1_000_000 == 0
    cache.put(f, coarse, time.time_ns(), list(chunk_file(f)))
    assert cache.get(f, coarse) is None


def test_a_list_that_does_not_add_up_to_the_size_is_not_used(tmp_path, cache):
    f = tmp_path / "a.bin"
    st = _old_file(f, b"q" * 2000)
    cache.put(f, st, time.time_ns(), [ChunkRef(0, 1000, b"\x01" * 32)])
    assert cache.get(f, st) is None


def test_a_damaged_cache_file_is_replaced(tmp_path):
    f = tmp_path / "a.bin"
    st = _old_file(f, b"q" * 2000)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / chunk_cache.FILE_NAME).write_bytes(b"this is not a database" * 100)
    cache = ChunkCache(tmp_path / "conf")
    cache.put(f, st, time.time_ns(), list(chunk_file(f)))  # no exception
    assert cache.get(f, st) == list(chunk_file(f))
    cache.close()


def test_bad_input_never_raises(tmp_path, cache):
    f = tmp_path / "a.bin"
    st = _old_file(f, b"q" * 2000)
    cache.put(f, st, time.time_ns(), [(b"\x01" * 32, 2**40)])  # a size the format cannot hold
    cache.put(f, st, time.time_ns(), [(b"short", 2000)])
    assert cache.get(f, st) is None
    cache.forget(f)


def test_only_the_latest_entries_are_kept(tmp_path, monkeypatch, cache):
    monkeypatch.setattr(chunk_cache, "KEPT", 3)
    stats = []
    for i in range(5):
        f = tmp_path / f"{i}.bin"
        stats.append((f, _old_file(f, bytes([i]) * 100)))
        cache.put(f, stats[-1][1], time.time_ns(), list(chunk_file(f)))
    assert [cache.get(f, st) is not None for f, st in stats] == [False, False, True, True, True]


@pytest.mark.parametrize("pairs", [True, False])
def test_download_style_pairs_are_accepted(tmp_path, pairs, cache):
    f = tmp_path / "a.bin"
    st = _old_file(f, os.urandom(200_000))
    refs = list(chunk_file(f))
    cache.put(f, st, time.time_ns(), [(r.digest, r.size) for r in refs] if pairs else refs)
    assert cache.get(f, st) == refs


def test_a_download_with_an_old_mtime_is_remembered_at_once_an_upload_with_a_fresh_ctime_is_not(tmp_path, cache):
    f = tmp_path / "got.bin"
    f.write_bytes(os.urandom(10_000))
    past = time.time() - 60
    os.utime(f, (past, past))  # as a download sets the revision's mtime: the ctime is now
    st = f.stat()
    cache.put(f, st, time.time_ns(), list(chunk_file(f)))
    assert cache.get(f, st) is None  # read for an upload: a write in this tick could follow unseen
    cache.put(f, st, time.time_ns(), list(chunk_file(f)), wrote_it=True)
    assert cache.get(f, st) == list(chunk_file(f))
