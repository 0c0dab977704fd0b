"""Chunk packs (protocol.md, "Chunk packs"): many chunks of one upload in one request.

Raw HTTP against real servers. A pack URL exists only where the server stores chunks itself
(sqlite-local); with an object store (pg-s3) the session says ``pack_url: null``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.core.chunking import MAX_CHUNK_SIZE, chunk_bytes
from server.core.pack import MAX_PACK_CHUNKS, MEDIA_TYPE, PackReader, pack_header
from server.storage.blobs.segments import stored_keys
from tests.harness.server import ServerProcess
from tests.test_bad_input import (
    Api,
    announce,
    content,
    expect,
    flip,
    is_s3,
    not_visible,
    ok,
    signup_login,
    with_query,
)

DATA = os.urandom(700_000)  # several 64 KiB-average chunks
REFS = list(chunk_bytes(DATA))


def body_of(refs: list, data: bytes = DATA) -> bytes:  # type: ignore[type-arg]
    return pack_header([(r.digest, r.size) for r in refs]) + b"".join(data[r.offset:r.offset + r.size] for r in refs)


def put_pack(api: Api, url: str, body: bytes) -> httpx.Response:
    return api.http.put(url, content=body, headers={"Content-Type": MEDIA_TYPE})


def start(api: Api, path: str = "/p.bin") -> dict:  # type: ignore[type-arg]
    info: dict = ok(api("POST", "/api/v1/files", json=announce(path, DATA)))  # type: ignore[type-arg]
    return info


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def local(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server("sqlite-local")


@pytest.fixture
def user(http: httpx.Client, local: ServerProcess) -> Callable[..., Api]:
    return lambda: signup_login(http, local)


@pytest.fixture
def alice(user: Callable[..., Api]) -> Api:
    return user()


@pytest.fixture
def stored_chunk(local: ServerProcess) -> Callable[[int, str], bool]:
    def check(owner_id: int, h: str) -> bool:
        return (owner_id, bytes.fromhex(h)) in stored_keys(local.data_dir / "chunks")
    return check


def test_pack_url_only_where_the_server_stores_chunks(http: httpx.Client, server: ServerProcess) -> None:
    info = start(signup_login(http, server))
    assert ("pack_url" in info) and (info["pack_url"] is None) == is_s3(server)


def test_pack_then_commit(alice: Api, stored_chunk: Callable[[int, str], bool]) -> None:
    info = start(alice)
    assert info["missing_count"] == len({r.hex for r in REFS}) > 3
    assert ok(put_pack(alice, info["pack_url"], body_of(REFS))) == {"stored": len(REFS)}
    assert all(stored_chunk(alice.user_id, r.hex) for r in REFS)
    assert ok(alice("GET", f"/api/v1/uploads/{info['upload_id']}"))["missing_count"] == 0
    entry = ok(alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit"))
    assert content(alice, entry["id"]) == DATA
    # Resending is harmless; after the commit the URL is dead.
    expect(put_pack(alice, info["pack_url"], body_of(REFS[:1])), 404, "not_found")


def test_announce_without_chunk_urls(http: httpx.Client, server: ServerProcess) -> None:
    """``"urls": false``: a packing client gets hash and size only; an object store (no pack
    URL) lists its presigned URLs anyway; the status route always lists them."""
    api = signup_login(http, server)
    info = ok(api("POST", "/api/v1/files", json=announce("/lean.bin", DATA) | {"urls": False}))
    assert info["missing_count"] == len(info["missing"]) == len({r.hex for r in REFS})
    if is_s3(server):
        assert info["pack_url"] is None and all(m["url"] for m in info["missing"])
    else:
        assert all(set(m) == {"hash", "size"} for m in info["missing"])
        ok(put_pack(api, info["pack_url"], body_of(REFS)))
    status = ok(api("GET", f"/api/v1/uploads/{info['upload_id']}"))
    assert all(m["url"] for m in status["missing"])
    if not is_s3(server):
        assert content(api, ok(api("POST", f"/api/v1/uploads/{info['upload_id']}/commit"))["id"]) == DATA
    for bad in ("no", 0, [False]):
        expect(api("POST", "/api/v1/files", json=announce("/lean.bin", DATA) | {"urls": bad}), 400, "bad_request")


def test_packs_in_parts_and_any_order(alice: Api) -> None:
    info = start(alice)
    half = len(REFS) // 2
    assert ok(put_pack(alice, info["pack_url"], body_of(REFS[half:][::-1])))["stored"] == len(REFS) - half
    missing = ok(alice("GET", f"/api/v1/uploads/{info['upload_id']}"))
    assert {m["hash"] for m in missing["missing"]} == {r.hex for r in REFS[:half]}
    ok(put_pack(alice, missing["pack_url"], body_of(REFS[:half])))
    entry = ok(alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit"))
    assert content(alice, entry["id"]) == DATA


def test_unannounced_chunk_stores_nothing(alice: Api,
                                          stored_chunk: Callable[[int, str], bool]) -> None:
    info = start(alice)
    stranger = os.urandom(5000)
    refs = [REFS[0], *chunk_bytes(stranger)]
    body = pack_header([(r.digest, r.size) for r in refs]) + DATA[:REFS[0].size] + stranger
    expect(put_pack(alice, info["pack_url"], body), 400, "bad_request")
    assert not stored_chunk(alice.user_id, REFS[0].hex)
    # An announced hash with another size is not announced either.
    body = pack_header([(REFS[0].digest, REFS[0].size + 1)]) + DATA[:REFS[0].size + 1]
    expect(put_pack(alice, info["pack_url"], body), 400, "bad_request")
    assert not stored_chunk(alice.user_id, REFS[0].hex)


def test_wrong_bytes_keep_the_good_chunks_before(alice: Api,
                                                 stored_chunk: Callable[[int, str], bool]) -> None:
    info = start(alice)
    a, b = REFS[0], REFS[1]
    body = pack_header([(a.digest, a.size), (b.digest, b.size)]) + DATA[:a.size] + os.urandom(b.size)
    expect(put_pack(alice, info["pack_url"], body), 400, "hash_mismatch")
    assert stored_chunk(alice.user_id, a.hex) and not stored_chunk(alice.user_id, b.hex)
    expect(alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit"), 409, "missing_chunks")
    not_visible(alice, "/p.bin")


@pytest.mark.parametrize("case", ["truncated", "extra", "zero", "too_many", "huge_chunk", "short_header",
                                  "short_table", "empty"])
def test_malformed_packs(alice: Api, case: str,
                         stored_chunk: Callable[[int, str], bool]) -> None:
    info = start(alice)
    a = REFS[0]
    one = pack_header([(a.digest, a.size)])
    bodies = {
        "truncated": (one + DATA[:a.size - 1], "size_mismatch"),
        "extra": (one + DATA[:a.size] + b"x", "bad_request"),
        "zero": (struct.pack(">I", 0), "bad_request"),
        "too_many": (struct.pack(">I", MAX_PACK_CHUNKS + 1) + one[4:] * (MAX_PACK_CHUNKS + 1), "bad_request"),
        "huge_chunk": (struct.pack(">I", 1) + a.digest + struct.pack(">I", MAX_CHUNK_SIZE + 1), "bad_request"),
        "short_header": (b"\x00\x00", "bad_request"),
        "short_table": (one[:20], "bad_request"),
        "empty": (b"", "bad_request"),
    }
    body, code = bodies[case]
    expect(put_pack(alice, info["pack_url"], body), 400, code)
    if case != "extra":  # "extra" stored its one good chunk before the trailing byte
        assert not stored_chunk(alice.user_id, a.hex)
    expect(alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit"), 409, "missing_chunks")


def test_pack_url_is_signed_and_scoped(alice: Api, user: Callable[..., Api]) -> None:
    info = start(alice)
    url = info["pack_url"]
    body = body_of(REFS[:1])
    expect(put_pack(alice, with_query(url, sig=flip(httpx.URL(url).params["sig"])), body), 403, "bad_signature")
    expect(put_pack(alice, with_query(url, sig=None), body), 403, "bad_signature")
    expect(put_pack(alice, with_query(url, o="999999"), body), 403, "bad_signature")
    expect(put_pack(alice, with_query(url, exp="1"), body), 403, "bad_signature")
    # Another session's URL cannot carry this session's chunks.
    bob = user()
    other = ok(bob("POST", "/api/v1/files", json=announce("/q.bin", os.urandom(1000))))
    expect(put_pack(alice, other["pack_url"], body), 400, "bad_request")
    # An abandoned session's URL is dead.
    ok(alice("DELETE", f"/api/v1/uploads/{info['upload_id']}"))
    expect(put_pack(alice, url, body), 404, "not_found")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.builds(lambda n, tail: struct.pack(">I", n) + tail,
                                           st.integers(0, 2**32 - 1), st.binary(max_size=200)))
def test_fuzzed_pack_bodies_never_fail_the_server(alice: Api, body: bytes) -> None:
    info = start(alice, "/fuzz.bin")
    r = put_pack(alice, info["pack_url"], body)
    assert r.status_code in (400, 404), r.text
    assert r.json()["error"] in ("bad_request", "size_mismatch", "hash_mismatch")


def test_a_client_hanging_up_mid_pack_is_not_a_server_error(alice: Api, local: ServerProcess) -> None:
    """A pack cut off by the client (a cancelled upload) ends quietly: no crash in the log, the
    whole chunks before the cut are kept, and the upload resumes with the rest."""
    info = start(alice)
    body = body_of(REFS)
    cut = len(body) - REFS[-1].size // 2
    url = httpx.URL(info["pack_url"])
    with socket.create_connection((url.host, url.port or 80)) as sock:
        target = url.raw_path.decode()
        sock.sendall(f"PUT {target} HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: {MEDIA_TYPE}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:cut])
        time.sleep(0.3)
    total = len({r.hex for r in REFS})
    deadline = time.monotonic() + 10
    while (status := ok(alice("GET", f"/api/v1/uploads/{info['upload_id']}")))["missing_count"] == total \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 1 <= status["missing_count"] < total
    time.sleep(0.3)  # the request's end, logged or not, is behind us
    assert "Exception in ASGI application" not in local.log() and "Traceback" not in local.log()
    ok(put_pack(alice, status["pack_url"], body_of(REFS)))
    entry = ok(alice("POST", f"/api/v1/uploads/{info['upload_id']}/commit"))
    assert content(alice, entry["id"]) == DATA


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(DATA) // 2), max_size=40))
def test_reader_hands_out_each_chunk_whatever_the_body_pieces(cuts: list[int]) -> None:
    """The reader's views of body pieces (no copies) give each chunk's exact bytes, however the
    body is split: 1-byte pieces, pieces across chunks, the table split in two."""
    body = body_of(REFS)
    marks = sorted({0, len(body), 1, 5, *(c * 2 % len(body) for c in cuts)})
    pieces = [body[a:b] for a, b in itertools.pairwise(marks)]

    async def read() -> list[bytes]:
        async def stream() -> AsyncIterator[bytes]:
            for p in pieces:
                yield p
        reader = PackReader(stream())
        table = await reader.table()
        out = [b"".join([bytes(p) async for p in reader.chunk(n)]) for _d, n in table]
        await reader.finish()
        return out

    assert asyncio.run(read()) == [DATA[r.offset:r.offset + r.size] for r in REFS]
