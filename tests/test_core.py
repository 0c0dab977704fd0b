"""Unit tests of the pure rules in server/core and server/auth (no I/O)."""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.auth.signing import UrlSigner
from server.core import aio, chunking, paths
from server.core.errors import STATUS, ErrorCode, SatchelError
from server.core.units import format_size, parse_duration, parse_size, parse_time
from server.services.downloads import parse_range


@pytest.mark.parametrize(("raw", "norm"), [
    ("/", "/"), ("", "/"), ("a", "/a"), ("/a/b/", "/a/b"), ("/Ame\u0301lie", "/Am\u00e9lie"),
    ("/with space/ünï", "/with space/ünï"), ("/emoji 😀.txt", "/emoji 😀.txt"),
])
def test_paths_normalize(raw, norm):
    assert paths.normalize(raw) == norm


@pytest.mark.parametrize("bad", [
    "/a//b", "/a/../b", "/..", "/.", "/a/./b", "/a\x00b", "/a\nb", "/a\x7fb", "/a\x01", "/a\\b",
    "/" + "x" * 256, "/" + "/".join(["abcdefgh"] * 500), None, 5, b"/a",
])
def test_paths_refuse(bad):
    with pytest.raises(SatchelError) as err:
        paths.normalize(bad)
    assert err.value.code is ErrorCode.invalid_path


def test_paths_helpers():
    assert paths.parent("/a/b/c") == "/a/b" and paths.parent("/a") == "/" and paths.parent("/") == "/"
    assert paths.ancestors("/a/b/c") == ["/a", "/a/b"] and paths.ancestors("/a") == []
    lo, hi = paths.descendant_range("/a")
    inside = ["/a/b", "/a/%", "/a/_", "/a/z/y"]
    outside = ["/a", "/ab", "/a0", "/a-b", "/b", "/a.txt"]
    assert all(lo <= p < hi for p in inside) and not any(lo <= p < hi for p in outside)
    assert paths.is_within("/a/b", "/a") and not paths.is_within("/ab", "/a")


@given(st.text(max_size=60))
def test_paths_normalize_is_idempotent_or_refuses(text):
    try:
        once = paths.normalize(text)
    except SatchelError as exc:
        assert exc.code is ErrorCode.invalid_path
        return
    assert paths.normalize(once) == once
    assert ".." not in once.split("/") and "\x00" not in once


def test_avg_chunk_size_tiers():
    assert chunking.avg_chunk_size(0) == 64 * 1024
    assert chunking.avg_chunk_size(256 * 1024**2) == 64 * 1024
    assert chunking.avg_chunk_size(256 * 1024**2 + 1) == 128 * 1024
    assert chunking.avg_chunk_size(1024**3) == 256 * 1024
    assert chunking.avg_chunk_size(50 * 1000**3) == 4 * 1024**2
    assert 50 * 1000**3 / chunking.avg_chunk_size(50 * 1000**3) < 13_000


def test_chunking_is_deterministic_and_local(tmp_path):
    data = os.urandom(3_000_000)
    a = chunking.chunk_bytes(data)
    assert sum(c.size for c in a) == len(data) and a[0].offset == 0
    assert all(c.size <= 4 * chunking.avg_chunk_size(len(data)) for c in a)
    p = tmp_path / "f"
    p.write_bytes(data)
    assert [(c.offset, c.size, c.digest) for c in chunking.chunk_file(p)] == [(c.offset, c.size, c.digest) for c in a]
    edited = data[:1_500_000] + b"X" + data[1_500_000:]
    b = chunking.chunk_bytes(edited)
    changed = {c.digest for c in b} - {c.digest for c in a}
    assert 1 <= len(changed) <= 3  # an insert only changes the chunks around it


def test_content_hash_of_empty_file_is_blake3_of_nothing():
    assert chunking.content_hash([]) == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


def test_units():
    assert parse_size("10GiB") == 10 * 1024**3 and parse_size("5MB") == 5_000_000 and parse_size("7") == 7
    assert parse_duration("90s") == 90 and parse_duration("3d") == 3 * 86400 and parse_duration("2") == 2
    assert abs(parse_time("2h").timestamp() - (time.time() - 7200)) < 5
    assert parse_time("2026-01-02T03:04:05").tzinfo is not None
    assert format_size(1536) == "1.5 KiB"
    for bad in ("ten", "5XB", "-1"):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_signed_urls():
    s = UrlSigner("k1")
    url = s.sign("PUT", "/x/y", {"o": 1, "n": 5}, ttl=60)
    path, _, query = url.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&"))
    assert s.verify("PUT", path, params)["o"] == "1"
    other = "B" if params["sig"][0] == "A" else "A"  # a changed first character (1 in 64 signatures start with A)
    for tamper in ({"o": "2"}, {"n": "6"}, {"exp": str(int(params["exp"]) + 1)}, {"sig": other + params["sig"][1:]}):
        with pytest.raises(SatchelError) as err:
            s.verify("PUT", path, params | tamper)
        assert err.value.code is ErrorCode.bad_signature
    with pytest.raises(SatchelError):
        s.verify("GET", path, params)  # another method
    with pytest.raises(SatchelError):
        UrlSigner("k2").verify("PUT", path, params)  # another server's key
    old = s.sign("PUT", "/x/y", {}, ttl=-1)
    with pytest.raises(SatchelError) as err:
        s.verify("PUT", "/x/y", dict(p.split("=", 1) for p in old.split("?")[1].split("&")))
    assert err.value.code is ErrorCode.url_expired


def test_range_parsing():
    assert parse_range(None, 10) is None and parse_range("bytes=0-", 10) == (0, 10)
    assert parse_range("bytes=-3", 10) == (7, 10) and parse_range("bytes=2-4", 10) == (2, 5)
    assert parse_range("bytes=0-1,3-4", 10) is None and parse_range("items=1-2", 10) is None
    for bad in ("bytes=10-", "bytes=5-2", "bytes=-0"):
        with pytest.raises(SatchelError):
            parse_range(bad, 10)


def test_every_error_code_has_a_status():
    assert set(STATUS) == set(ErrorCode)


def test_a_non_ascii_signature_is_a_bad_signature_not_a_crash():
    s = UrlSigner("k")
    url = s.sign("GET", "/x", {}, ttl=60)
    params = dict(p.split("=", 1) for p in url.split("?")[1].split("&"))
    for sig in ("é", "\udcff", "ü" * 43):
        with pytest.raises(SatchelError) as err:
            s.verify("GET", "/x", params | {"sig": sig})
        assert err.value.code is ErrorCode.bad_signature
    with pytest.raises(SatchelError) as err:
        parse_range("bytes=-5", 0)  # an empty file has no last 5 bytes
    assert err.value.code is ErrorCode.range_not_satisfiable


@pytest.mark.parametrize("size", [0, 1, 65_536, 3_000_000, 40_000_000])
def test_a_stream_cut_piece_by_piece_gives_the_chunks_of_the_whole(size):
    """StreamCutter (the server cuts a parent revision from an async stream) must find exactly the
    chunks a client cuts from the whole file, whatever the pieces."""
    import random

    rng = random.Random(size)
    data = rng.randbytes(size)
    want = [(c.offset, c.size, c.digest) for c in chunking.chunk_bytes(data)]
    cutter = chunking.StreamCutter(size)
    got, pos = [], 0
    while pos < size:
        n = rng.choice([1, 4096, 65_536, 1 << 20, 9_000_000])
        got += [(r.offset, r.size, r.digest, bytes(v)) for r, v in cutter.feed(data[pos:pos + n])]
        pos += n
    got += [(r.offset, r.size, r.digest, bytes(v)) for r, v in cutter.finish()]
    assert [g[:3] for g in got] == want
    assert all(v == data[o:o + n] for o, n, _, v in got)


def test_another_sizes_chunker_finds_what_a_file_shares_across_a_step(tmp_path):
    """A file that grows across a chunk-size step shares no chunk with its old list, but the old
    bytes cut as a file of the new size share all but the edited chunks (downloads rely on it)."""
    old = os.urandom(3_000_000)
    new = old[:1_000_000] + b"!" + old[1_000_000:]
    p = tmp_path / "old"
    p.write_bytes(old)
    as_new = {c.digest for c in chunking.chunk_file(p, as_size=chunking.SMALL_FILE_LIMIT + 1)}
    cut_new = chunking.StreamCutter(chunking.SMALL_FILE_LIMIT + 1)
    new_chunks = [r.digest for r, _ in cut_new.feed(new) + cut_new.finish()]
    assert len(set(new_chunks) - as_new) <= 3 < len(new_chunks)


def test_the_dummy_password_hash_costs_what_a_real_one_does():
    """Login verifies a missing user's password against a fixed hash, so "no such user" takes as
    long as "wrong password": the hash must use the parameters real ones are made with."""
    from server.auth import passwords

    assert not passwords._hasher.check_needs_rehash(passwords._DUMMY_HASH)
    assert passwords._hasher.verify(passwords._DUMMY_HASH, "satchel-dummy-password")


def test_a_new_version_keeps_its_parents_cut_within_one_step() -> None:
    from server.core.chunking import MIN_AVG_CHUNK, SMALL_FILE_LIMIT, chunk_bytes, cut_size, fits_cut

    parent = [r.size for r in chunk_bytes(os.urandom(8 * 1024 * 1024))]  # cut with 64 KiB
    assert fits_cut(parent, MIN_AVG_CHUNK) and not fits_cut(parent, 2 * MIN_AVG_CHUNK)
    assert cut_size(SMALL_FILE_LIMIT, parent) == SMALL_FILE_LIMIT  # its own cut anyway
    assert cut_size(SMALL_FILE_LIMIT + 1, parent) == SMALL_FILE_LIMIT  # one step up: the parent's
    assert cut_size(2 * SMALL_FILE_LIMIT + 1, parent) == 2 * SMALL_FILE_LIMIT + 1  # two steps: its own
    assert cut_size(SMALL_FILE_LIMIT + 1, None) == SMALL_FILE_LIMIT + 1
    assert cut_size(SMALL_FILE_LIMIT + 1, []) == SMALL_FILE_LIMIT + 1
    # Sizes that fit the new average too (all chunks at a maximum: constant bytes) take it.
    same = [4 * MIN_AVG_CHUNK] * 100
    assert cut_size(SMALL_FILE_LIMIT + 1, same) == SMALL_FILE_LIMIT + 1
    # A file that shrank below a step keeps the bigger chunks of its parent.
    data = random.Random(1).randbytes(16 * 1024 * 1024)
    bigger = [c.length for c in chunking._chunker(2 * SMALL_FILE_LIMIT).cut_buf(data)]
    assert not fits_cut(bigger, MIN_AVG_CHUNK)
    assert cut_size(SMALL_FILE_LIMIT - 1, bigger) == 2 * SMALL_FILE_LIMIT
    assert chunking.neighbour_cut_sizes(SMALL_FILE_LIMIT + 1) == [SMALL_FILE_LIMIT, 4 * SMALL_FILE_LIMIT]
    assert chunking.neighbour_cut_sizes(100) == [2 * SMALL_FILE_LIMIT]  # no step below 64 KiB
    # Past the top step (4 MiB chunks from 8 GiB on) a kept 2 MiB cut ends at 16 GiB too.
    two_mib = [600 * 1024, 3 * 1024 * 1024, 2 * 1024 * 1024] * 50
    assert fits_cut(two_mib, 2 * 1024 * 1024) and not fits_cut(two_mib, 4 * 1024 * 1024)
    assert cut_size(12 * 2**30, two_mib) == 8 * 2**30
    assert cut_size(40 * 2**30, two_mib) == 40 * 2**30


def test_pwrite_all_finishes_short_writes_and_refuses_no_progress(tmp_path, monkeypatch) -> None:
    from server.core import fileio

    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, at: real(fd, bytes(data)[:3], at))  # short writes
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        fileio.pwrite_all(fd, b"0123456789", 5)
        assert os.pread(fd, 20, 0) == b"\0" * 5 + b"0123456789"
        monkeypatch.setattr(os, "pwrite", lambda fd, data, at: 0)
        with pytest.raises(OSError, match="wrote 0"):
            fileio.pwrite_all(fd, b"x", 0)
    finally:
        os.close(fd)


def test_gather_limited_keeps_order_and_limit_and_runs_every_job_despite_a_failure() -> None:
    running, peak, started = 0, 0, []

    async def job(i: int) -> int:
        nonlocal running, peak
        started.append(i)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01 * (5 - i % 5))
        running -= 1
        if i == 3:
            raise ValueError(i)
        return i * i

    assert asyncio.run(aio.gather_limited(2, [job(i) for i in (0, 1, 2)])) == [0, 1, 4] and peak == 2
    started.clear()
    with pytest.raises(ValueError):
        asyncio.run(aio.gather_limited(2, [job(i) for i in range(20)]))
    assert sorted(started) == list(range(20)) and running == 0  # every job reached its end
