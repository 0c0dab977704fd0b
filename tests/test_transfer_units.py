"""The Python client's local reuse across a chunk-size step, on small files cut as big ones.

A file that crosses a step (256 MiB, 512 MiB, ...) is cut anew, so neither its old chunk list
nor the server's knows where its chunks are in the old bytes. The uploader locates the parent's
chunks around the few missing ones (``_parent_ranges``); the downloader guesses each new chunk at
its old offset or shifted by the change in size (``_reuse_shifted``) and cuts the old file only
when guessing leaves much to fetch (``_reuse_local``). Each must find only bytes that really
are there: a wrong guess costs a fetch, never a wrong byte.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from python_client import transfer
from server.core import chunking

BIG = chunking.SMALL_FILE_LIMIT + 1  # cut as a file past the first step: 128 KiB chunks
SMALL = 1 << 20  # cut as a small file: 64 KiB chunks


def _chunks(path: Path, as_size: int) -> list[dict[str, Any]]:
    return [{"hash": r.hex, "size": r.size, "offset": r.offset} for r in chunking.chunk_file(path, as_size=as_size)]


def _versions(tmp_path: Path, old: bytes, new: bytes) -> tuple[list[dict[str, Any]], int]:
    """Both versions on disk; the new one's chunks (cut as BIG) and an empty part file for it."""
    (tmp_path / "old").write_bytes(old)
    (tmp_path / "new").write_bytes(new)
    fd = os.open(tmp_path / "part", os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, len(new))
    return _chunks(tmp_path / "new", BIG), fd


def test_shifted_guesses_reuse_every_chunk_an_insertion_did_not_touch(tmp_path: Path) -> None:
    rng = random.Random(1)
    old = rng.randbytes(6_000_000)
    new = old[:2_500_000] + b"!" + old[2_500_000:]
    chunks, fd = _versions(tmp_path, old, new)
    stats = transfer.TransferStats()
    try:
        missed = transfer._reuse_shifted(fd, chunks, tmp_path / "old", (0, 1), stats)
        part = os.pread(fd, len(new), 0)
    finally:
        os.close(fd)
    assert len(missed) == 1 and missed[0]["offset"] <= 2_500_000 < missed[0]["offset"] + missed[0]["size"]
    assert stats.bytes_reused == len(new) - missed[0]["size"]
    for c in chunks:  # every reused chunk holds the new version's bytes
        if c not in missed:
            assert part[c["offset"]:c["offset"] + c["size"]] == new[c["offset"]:c["offset"] + c["size"]]


def test_edits_all_over_fall_back_to_cutting_the_old_file(tmp_path: Path) -> None:
    """Shifts guessed from the sizes miss where edits moved bytes by other amounts; cutting the
    old copy finds them, and what is in neither is left to fetch."""
    rng = random.Random(2)
    old = rng.randbytes(4_000_000)
    new = old[:1_000_000] + b"xyz" + old[1_000_000:2_000_000] + old[2_000_007:]  # +3 then -7 bytes
    chunks, fd = _versions(tmp_path, old, new)
    stats = transfer.TransferStats()
    try:
        guessed = transfer._reuse_shifted(fd, chunks, tmp_path / "old", (0, len(new) - len(old)), stats)
        # between the edits the bytes moved by +3: neither 0 (before) nor -4 (the net change, after)
        assert any(1_200_000 < c["offset"] < 1_800_000 for c in guessed)
        missed = transfer._reuse_local(fd, BIG, guessed, False, tmp_path / "old", stats)  # cut as BIG
        part = os.pread(fd, len(new), 0)
    finally:
        os.close(fd)
    assert 0 < len(missed) <= 4 and stats.bytes_reused == len(new) - sum(c["size"] for c in missed)
    assert all(not 1_200_000 < c["offset"] < 1_800_000 for c in missed)
    for c in chunks:
        if c not in missed:
            assert part[c["offset"]:c["offset"] + c["size"]] == new[c["offset"]:c["offset"] + c["size"]]


def test_the_parent_is_located_around_the_missing_chunks_only(tmp_path: Path) -> None:
    """Cutting windows around the missing chunks (not the whole file) finds the parent's chunks
    there; each range found is the same bytes in both versions, and patches built from them
    leave only the edited chunk's bytes literal."""
    rng = random.Random(3)
    parent_bytes = rng.randbytes(8_000_000)
    new = parent_bytes[:5_000_000] + b"!" + parent_bytes[5_000_000:]
    (tmp_path / "parent").write_bytes(parent_bytes)
    (tmp_path / "new").write_bytes(new)
    parent = [(r.digest, r.size) for r in chunking.chunk_file(tmp_path / "parent", as_size=SMALL)]
    parent_set = {d for d, _ in parent}
    as_parent = {r.digest for r in chunking.chunk_file(tmp_path / "new", as_size=SMALL)}
    assert len(as_parent - parent_set) <= 2  # the premise: cut the parent's way, the edit is local
    mine = _chunks(tmp_path / "new", BIG)
    missing = [c for c in mine if c["offset"] <= 5_000_000 < c["offset"] + c["size"]]
    regions = [(c["offset"], c["size"]) for c in missing]
    same = transfer._parent_ranges(tmp_path / "new", parent, regions)
    assert same == sorted(same) and all(
        new[at:at + n] == parent_bytes[p:p + n] for at, n, p in same)
    # far from the edit nothing was cut: windows are a few of the parent's chunks wide
    assert all(abs(at - 5_000_000) < 4 * 8 * chunking.avg_chunk_size(SMALL) for at, _, _ in same)
    where = {c["hash"]: (c["offset"], c["size"]) for c in mine}
    patches = transfer._patches(tmp_path / "new", same, missing, where)
    for p in patches:
        literal = sum(len(x) for x in p["parts"] if isinstance(x, bytes))
        assert literal < p["size"]
        start, size = where[p["hash"]]
        built = b"".join(x if isinstance(x, bytes) else parent_bytes[x[0]:x[0] + x[1]] for x in p["parts"])
        assert built == new[start:start + size]


async def test_a_cancelled_reuse_ends_its_thread_before_the_part_file_is_closed() -> None:
    """Reuse threads write to the part file's descriptor, which the download closes when it is
    cancelled; the cancellation must wait for the thread (a reused descriptor number could
    name another file by then)."""
    import asyncio
    import contextlib
    import time

    ended: list[float] = []

    def work() -> None:
        time.sleep(0.3)
        ended.append(time.monotonic())

    task = asyncio.ensure_future(transfer._to_thread_to_the_end(work))
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled() and ended, "the cancellation came through before the thread ended"


@pytest.mark.parametrize("threads", [2, 3, 4])
@pytest.mark.parametrize("kind", ["random", "zeros", "pattern", "mixed"])
def test_cutting_in_parallel_slices_gives_exactly_the_one_pass_chunks(tmp_path, monkeypatch, threads, kind):
    """The seams between slices are carried over exactly, whatever the data: random bytes (cuts
    meet within a chunk or two), one repeated byte (max-size chunks in every slice's own phase:
    they never meet, so the seam cut runs on to the end), a short repeated pattern, and a mix."""
    monkeypatch.setattr(transfer, "PARALLEL_MIN", 1)
    monkeypatch.setattr(transfer, "CUT_THREADS", threads)
    rng = random.Random(f"{kind}{threads}")
    size = rng.randrange(2_000_000, 6_000_000)
    if kind == "random":
        data = rng.randbytes(size)
    elif kind == "zeros":
        data = bytes(size)
    elif kind == "pattern":
        data = (rng.randbytes(1000) * (size // 1000 + 1))[:size]
    else:
        data = rng.randbytes(size // 3) + bytes(size // 3) + rng.randbytes(size - 2 * (size // 3))
    f = tmp_path / "f.bin"
    f.write_bytes(data)
    assert transfer.chunk_file_pipelined(f) == list(chunking.chunk_file(f))
    big = size * 200  # another size's parameters (crossing a chunk-size step)
    assert transfer.chunk_file_pipelined(f, as_size=big) == list(chunking.chunk_file(f, as_size=big))


def test_a_listing_without_direct_is_read_the_way_a_0_8_server_meant_it() -> None:
    from types import SimpleNamespace

    from python_client.transfer import _direct

    client = SimpleNamespace(server="http://127.0.0.1:8000")
    assert _direct(client, {"direct": True, "chunks": []}) is True  # type: ignore[arg-type]
    assert _direct(client, {"direct": False, "chunks": [{"url": "https://s3.example/x"}]}) is False  # type: ignore[arg-type]
    old_local = {"chunks": [{"url": "http://127.0.0.1:8000/api/v1/blobs/down/1/ab"}]}
    old_s3 = {"chunks": [{"url": "https://s3.example/bucket/ab?X-Amz-Signature=1"}]}
    assert _direct(client, old_local) is False and _direct(client, old_s3) is True  # type: ignore[arg-type]


def test_runs_break_at_gaps_and_at_the_run_limit() -> None:
    third = transfer.RUN_LIMIT // 3
    chunks = [{"index": i, "size": third} for i in (0, 1, 2, 3, 5, 6)] + [{"index": 7, "size": 1}]
    assert [[c["index"] for c in run] for run in transfer._runs(chunks)] == [[0, 1, 2], [3], [5, 6, 7]]
    assert transfer._runs([]) == []


def test_the_chunk_http_client_is_imported_on_a_thread_once() -> None:
    code = (
        "import sys, threading\n"
        "from python_client import transfer\n"
        "assert transfer.CHUNK_HTTP_MODULE not in sys.modules\n"
        "transfer._import_chunk_http_meanwhile()\n"
        "assert [t for t in threading.enumerate() if t.name == 'satchel-import'] or "
        "transfer.CHUNK_HTTP_MODULE in sys.modules\n"
        "from python_client.chunk_http import ChunkHttp  # waits for the thread's import\n"
        "[t.join() for t in threading.enumerate() if t.name == 'satchel-import']\n"
        "transfer._import_chunk_http_meanwhile()\n"
        "assert not [t for t in threading.enumerate() if t.name == 'satchel-import']\n"
        "print(ChunkHttp.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ChunkHttp", out.stderr


def test_body_less_answers_end_their_pieces() -> None:
    """aiohttp answers 204 with one shared empty reader that says EOF only the first time it is
    read in a process: the second such answer must still end, not spin the event loop."""
    from python_client.chunk_http import ChunkHttp

    class NoContent(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoContent)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/x"

    async def three() -> list[list[bytes]]:
        pool = ChunkHttp(2)
        try:
            out = []
            for _ in range(3):
                async with pool.get(url) as (status, pieces, _headers):
                    assert status == 204
                    out.append([p async for p in pieces])
            return out
        finally:
            await pool.aclose()

    try:
        assert asyncio.run(asyncio.wait_for(three(), 10)) == [[], [], []]
    finally:
        httpd.shutdown()
        httpd.server_close()
