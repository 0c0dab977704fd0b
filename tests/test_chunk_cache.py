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
    return path.stat()


def test_an_unchanged_file_gets_its_list_back(tmp_path):
    f = tmp_path / "a.bin"
    st = _old_file(f, os.urandom(300_000))
    refs = list(chunk_file(f))
    cache = ChunkCache(tmp_path / "conf")
    cache.put(st, time.time_ns(), refs)
    assert cache.get(f.stat()) == refs
    assert ChunkCache(tmp_path / "conf").get(f.stat()) == refs  # another process: on disk


def test_any_change_of_size_mtime_ctime_or_identity_misses(tmp_path):
    f = tmp_path / "a.bin"
    st = _old_file(f, b"x" * 1000)
    cache = ChunkCache(tmp_path / "conf")
    cache.put(st, time.time_ns(), list(chunk_file(f)))
    with open(f, "r+b") as h:  # same size, mtime put back: only the ctime tells
        h.write(b"y")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = f.stat()
    assert (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns) and now.st_ctime_ns != st.st_ctime_ns
    assert cache.get(now) is None
    g = tmp_path / "b.bin"  # another inode with the same size and times
    g.write_bytes(b"x" * 1000)
    assert cache.get(g.stat()) is None


def test_a_file_written_within_a_tick_of_its_reading_is_not_remembered(tmp_path):
    f = tmp_path / "fresh.bin"
    f.write_bytes(b"z" * 5000)
    st = f.stat()
    cache = ChunkCache(tmp_path / "conf")
    cache.put(st, st.st_mtime_ns + RACY_NS // 2, list(chunk_file(f)))  # a write in the same tick could follow
    assert cache.get(st) is None
    cache.put(st, st.st_mtime_ns + RACY_NS, list(chunk_file(f)))
    assert cache.get(st) is not None


def test_a_list_that_does_not_add_up_to_the_size_is_not_used(tmp_path):
    f = tmp_path / "a.bin"
    st = _old_file(f, b"q" * 2000)
    cache = ChunkCache(tmp_path / "conf")
    cache.put(st, time.time_ns(), [ChunkRef(0, 1000, b"\x01" * 32)])
    assert cache.get(st) is None


def test_a_damaged_cache_file_is_ignored(tmp_path):
    f = tmp_path / "a.bin"
    st = _old_file(f, b"q" * 2000)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / chunk_cache.FILE_NAME).write_bytes(b"this is not a database" * 100)
    cache = ChunkCache(tmp_path / "conf")
    cache.put(st, time.time_ns(), list(chunk_file(f)))  # no exception
    assert cache.get(st) is None


def test_only_the_latest_entries_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(chunk_cache, "KEPT", 3)
    cache = ChunkCache(tmp_path / "conf")
    stats = []
    for i in range(5):
        f = tmp_path / f"{i}.bin"
        stats.append(_old_file(f, bytes([i]) * 100))
        cache.put(stats[-1], time.time_ns(), list(chunk_file(f)))
    assert [cache.get(st) is not None for st in stats] == [False, False, True, True, True]


@pytest.mark.parametrize("pairs", [True, False])
def test_download_style_pairs_are_accepted(tmp_path, pairs):
    f = tmp_path / "a.bin"
    st = _old_file(f, os.urandom(200_000))
    refs = list(chunk_file(f))
    cache = ChunkCache(tmp_path / "conf")
    cache.put(st, time.time_ns(), [(r.digest, r.size) for r in refs] if pairs else refs)
    assert cache.get(st) == refs
