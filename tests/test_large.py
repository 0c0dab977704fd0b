"""Big chunk lists and big files: bounded memory, paging, resume at size.

The default suite checks a 50,001-entry chunk list cheaply (one chunk repeated: every list and
paging path runs, little data moves). ``-m soak`` adds a real 5 GiB upload that is interrupted,
resumed, downloaded and compared, with the server's peak RSS measured.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading

import httpx
import psutil
import pytest

from python_client.transfer import TransferStats
from server.core.chunking import chunk_file, hash_bytes
from tests.conftest import api, random_file


async def test_fifty_thousand_chunk_list(alice, server, tmp_path):
    piece = os.urandom(1000)
    digest = hash_bytes(piece).hex()
    n = 50_001
    info = await alice.client.start_upload(
        {"path": "/many.bin", "size": n * 1000, "parent_rev": None, "chunks": [[digest, 1000]] * n})
    assert info["chunk_count"] == n and info["missing_count"] == 1
    async with httpx.AsyncClient() as h:
        m = info["missing"][0]
        assert (await h.put(m["url"], content=piece, headers=m["headers"])).status_code < 300
    entry = await alice.client.commit_upload(info["upload_id"])
    assert entry["size"] == n * 1000
    first = await alice.client.chunk_list(entry["id"])
    assert first["chunk_count"] == n and len(first["chunks"]) == 10_000 and first["next_offset"] == 10_000
    last = await alice.client.chunk_list(entry["id"], offset=50_000)
    assert [c["index"] for c in last["chunks"]] == [50_000] and last["next_offset"] is None
    # Streaming walks every page of the list; check length and a slice far into the file.
    r = api(server, "GET", f"/api/v1/files/{entry['id']}/content", alice.client.token,
            headers={"Range": "bytes=49000500-49001499"})
    assert r.status_code == 206 and r.content == piece[500:] + piece[:500]
    h = hashlib.sha256()
    async with alice.client.http.stream("GET", alice.client.content_url(entry["id"]),
                                        headers=alice.client._headers()) as resp:
        async for chunk in resp.aiter_bytes():
            h.update(chunk)
    assert h.hexdigest() == hashlib.sha256(piece * n).hexdigest()


def _peak_rss(pid: int, stop: threading.Event, out: list[int]) -> None:
    proc = psutil.Process(pid)
    peak = 0
    while not stop.is_set():
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.Error:
            break
        stop.wait(0.05)
    out.append(peak)


@pytest.mark.soak
async def test_five_gib_upload_resumes_and_memory_stays_flat(start_server, make_user, tmp_path):
    srv = start_server("sqlite-local")
    user = await make_user(srv=srv)
    src = random_file(tmp_path / "five.bin", 5 * 1024**3)
    assert srv.proc is not None
    stop, peaks = threading.Event(), []
    watcher = threading.Thread(target=_peak_rss, args=(srv.proc.pid, stop, peaks))
    watcher.start()
    try:
        refs = list(chunk_file(src))
        body = {"path": "/five.bin", "size": src.stat().st_size, "parent_rev": None,
                "chunks": [[r.hex, r.size] for r in refs]}
        info = await user.client.start_upload(body)
        # Send a third of the chunks, then "crash".
        async with httpx.AsyncClient(timeout=120) as h, asyncio.TaskGroup() as tg:
            sem = asyncio.Semaphore(8)
            where = {r.hex: r for r in refs}

            async def put(m: dict) -> None:
                async with sem:
                    ref = where[m["hash"]]
                    data = os.pread(fd, ref.size, ref.offset)
                    assert (await h.put(m["url"], content=data, headers=m["headers"])).status_code < 300

            fd = os.open(src, os.O_RDONLY)
            for m in info["missing"][: len(info["missing"]) // 3]:
                tg.create_task(put(m))
        os.close(fd)
        before = (await user.client.start_upload(body))["missing"]
        stats = TransferStats()
        await user.client.upload(src, "/five.bin", stats=stats)
        assert stats.bytes_sent == sum(m["size"] for m in before) < src.stat().st_size * 0.7
        await user.client.download("/five.bin", tmp_path / "five.out")
    finally:
        stop.set()
        watcher.join()
    assert os.path.getsize(tmp_path / "five.out") == src.stat().st_size
    assert _sha(tmp_path / "five.out") == _sha(src)
    assert peaks[0] < 200 * 1024**2, f"server peak RSS {peaks[0] / 1024**2:.0f} MiB"


def _sha(path: os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            h.update(piece)
    return h.hexdigest()
