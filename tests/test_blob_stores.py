"""One conformance suite for every ``BlobStore`` (base.py), like rclone's shared fs tests.

Each test in the first part runs against LocalBlobStore (a temp folder) and S3BlobStore (a real
``rclone serve s3``, which checks SigV4 signatures). The second part covers what only a direct
store has: presigned URLs, staging and ``promote``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aioboto3
import httpx
import pytest

from server.config import Config
from server.core.chunking import MAX_CHUNK_SIZE, hash_bytes
from server.core.errors import ErrorCode, SatchelError
from server.storage.blobs import open_blob_store
from server.storage.blobs.base import BlobKey, BlobStore
from server.storage.blobs.local import LocalBlobStore
from server.storage.blobs.s3 import S3BlobStore
from tests.harness.s3 import RcloneS3

PIECE = 1024 * 1024


@pytest.fixture(scope="module")
def s3_server() -> Iterator[RcloneS3]:
    # No skip on failure: a missing or broken rclone must show up as an error.
    server = RcloneS3.start()
    yield server
    server.stop()


SESSION = aioboto3.Session()  # shared so each test's client skips loading botocore's models


def make_s3_store(server: RcloneS3) -> S3BlobStore:
    return S3BlobStore(server.bucket, f"t-{secrets.token_hex(4)}", endpoint=server.endpoint,
                       access_key=server.access_key, secret_key=server.secret_key, session=SESSION)


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    st: BlobStore
    if request.param == "local":
        st = LocalBlobStore(tmp_path / "chunks")
    else:
        st = make_s3_store(request.getfixturevalue("s3_server"))  # a fresh prefix per test
    await st.start()
    yield st
    await st.close()


@pytest.fixture
async def s3_store(s3_server: RcloneS3) -> AsyncIterator[S3BlobStore]:
    st = make_s3_store(s3_server)
    await st.start()
    yield st
    await st.close()


def chunk(size: int, owner: int = 1) -> tuple[BlobKey, bytes]:
    data = os.urandom(size)
    return BlobKey(owner, hash_bytes(data)), data


async def pieces(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]
        await asyncio.sleep(0)


async def read_all(store: BlobStore, key: BlobKey, start: int = 0, end: int | None = None) -> bytes:
    out = []
    async for piece in store.read(key, start, end):
        assert len(piece) <= PIECE
        out.append(piece)
    return b"".join(out)


async def expect_error(code: ErrorCode, awaitable: Any) -> SatchelError:
    with pytest.raises(SatchelError) as info:
        await awaitable
    assert info.value.code is code, info.value
    return info.value


# -- conformance: every store ----------------------------------------------------------------------


async def test_put_then_read_whole(store: BlobStore) -> None:
    key, data = chunk(3 * PIECE + 17)  # several read pieces
    assert not await store.exists(key)
    await store.put_stream(key, len(data), pieces(data))
    assert await store.exists(key)
    assert await read_all(store, key) == data


N = 2 * PIECE + 5


@pytest.mark.parametrize(("start", "end"), [
    (0, None), (0, N), (0, 1), (1, N - 1), (N - 1, None), (N - 1, N),
    (PIECE - 1, PIECE + 1), (PIECE, 2 * PIECE), (7, 7), (N, None), (N + 10, None), (3, N + 100),
])
async def test_read_ranges(store: BlobStore, start: int, end: int | None) -> None:
    key, data = chunk(N)
    await store.put_stream(key, N, pieces(data, PIECE // 3))
    assert await read_all(store, key, start, end) == data[start:end]


async def test_empty_chunk(store: BlobStore) -> None:
    key, data = chunk(0)
    await store.put_stream(key, 0, pieces(data))
    assert await store.exists(key)
    assert await read_all(store, key) == b""


async def test_put_existing_key_is_fine(store: BlobStore) -> None:
    key, data = chunk(1000)
    await store.put_stream(key, len(data), pieces(data))
    await store.put_stream(key, len(data), pieces(data, 7))
    assert await read_all(store, key) == data
    # Wrong bytes under an existing key are refused and leave the stored chunk alone.
    await expect_error(ErrorCode.hash_mismatch, store.put_stream(key, len(data), pieces(os.urandom(1000))))
    assert await read_all(store, key) == data


async def test_hash_mismatch_stores_nothing(store: BlobStore) -> None:
    key, data = chunk(5000)
    other = bytearray(data)
    other[2500] ^= 1
    await expect_error(ErrorCode.hash_mismatch, store.put_stream(key, len(data), pieces(bytes(other))))
    assert not await store.exists(key)
    await expect_error(ErrorCode.not_found, read_all(store, key))


@pytest.mark.parametrize("delta", [-1, 1, -5000, 100_000])
async def test_size_mismatch_stores_nothing(store: BlobStore, delta: int) -> None:
    key, data = chunk(5000)
    sent = data[:len(data) + delta] if delta < 0 else data + os.urandom(delta)
    await expect_error(ErrorCode.size_mismatch, store.put_stream(key, len(data), pieces(sent, 1024)))
    assert not await store.exists(key)


async def test_read_missing_is_not_found(store: BlobStore) -> None:
    key, _ = chunk(10)
    await expect_error(ErrorCode.not_found, read_all(store, key))
    await expect_error(ErrorCode.not_found, read_all(store, key, 3, 7))
    await expect_error(ErrorCode.not_found, read_all(store, key, 4, 4))


async def test_delete_is_idempotent(store: BlobStore) -> None:
    key, data = chunk(100)
    await store.delete(key)  # never stored
    await store.put_stream(key, len(data), pieces(data))
    await store.delete(key)
    assert not await store.exists(key)
    await store.delete(key)
    await expect_error(ErrorCode.not_found, read_all(store, key))


async def test_delete_written_before_spares_a_chunk_stored_again(store: BlobStore) -> None:
    """The sweeper deletes an orphan only if nobody stored it again since it looked: a writer
    that dedups against the orphan (and names it in a commit a moment later) keeps it."""
    if isinstance(store, S3BlobStore):
        store.fresh_ms = 0  # every put_stream renews the object, as it does past the freshness window
    key, data = chunk(5000)
    await store.put_stream(key, len(data), pieces(data))
    await asyncio.sleep(1.1)  # S3 LastModified has whole seconds
    looked = int(time.time() * 1000)
    await asyncio.sleep(1.1)
    await store.put_stream(key, len(data), pieces(data))  # stored again after the sweeper looked
    await store.delete(key, written_before=looked)
    assert await read_all(store, key) == data
    await store.delete(key, written_before=int(time.time() * 1000) + 2000)
    assert not await store.exists(key)


async def test_owners_are_isolated(store: BlobStore) -> None:
    data = os.urandom(2000)
    mine, theirs = BlobKey(1, hash_bytes(data)), BlobKey(2, hash_bytes(data))
    await store.put_stream(mine, len(data), pieces(data))
    assert not await store.exists(theirs)
    await store.put_stream(theirs, len(data), pieces(data))
    await store.delete(mine)
    assert not await store.exists(mine)
    assert await read_all(store, theirs) == data


async def test_sizes_in_bulk(store: BlobStore) -> None:
    """Stored (before and after a sync: pending records and indexed ones), missing and another
    owner's, in order and with repeats; more keys than one index query takes."""
    early, early_data = chunk(3000)
    await store.put_stream(early, len(early_data), pieces(early_data))
    await store.sync([early])
    late, late_data = chunk(1234)
    await store.put_stream(late, len(late_data), pieces(late_data))
    absent = [chunk(10)[0] for _ in range(600)]
    keys = [late, *absent, early, BlobKey(early.owner_id + 1, early.digest), late]
    want = [1234, *[None] * 600, 3000, None, 1234]
    assert await store.sizes(keys) == want
    assert await store.sizes(keys) == [await store.size(k) for k in keys]
    assert await store.sizes([]) == []


async def test_sync(store: BlobStore) -> None:
    key, data = chunk(4096)
    await store.put_stream(key, len(data), pieces(data))
    await store.sync()
    assert await read_all(store, key) == data


async def test_nothing_staged_outside_direct_uploads(store: BlobStore) -> None:
    key, data = chunk(100)
    await store.put_stream(key, len(data), pieces(data))
    assert await store.staged("u1") == set()
    await store.discard_staged("u1")  # nothing to discard is fine


async def test_sweep_candidates(store: BlobStore) -> None:
    before_ms = int(time.time() * 1000) - 5000
    old, data = chunk(100)
    other = BlobKey(2, old.digest)
    await store.put_stream(old, len(data), pieces(data))
    await store.put_stream(other, len(data), pieces(data))
    after_ms = int(time.time() * 1000) + 5000
    assert [k async for k in store.sweep_candidates(before_ms)] == []
    assert {k async for k in store.sweep_candidates(after_ms)} == {old, other}
    await store.delete(old)
    assert [k async for k in store.sweep_candidates(after_ms)] == [other]


async def test_direct_flag_matches_presign(store: BlobStore) -> None:
    key, _ = chunk(10)
    if store.direct:
        assert (await store.presign_download(key, 60)).method == "GET"
    else:
        await expect_error(ErrorCode.not_found, store.presign_upload("u1", key, 10, 60))
        await expect_error(ErrorCode.not_found, store.promote("u1", key, 10))
        await expect_error(ErrorCode.not_found, store.presign_download(key, 60))


# -- S3 only: direct transfers ---------------------------------------------------------------------


def staged_path(server: RcloneS3, store: S3BlobStore, upload_id: str, key: BlobKey) -> Path:
    return server.root / server.bucket / f"{store.prefix}staging" / upload_id / key.hex


async def put_url(url: str, body: bytes) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.put(url, content=body)


@contextlib.contextmanager
def counted_puts(store: S3BlobStore, fail_first: bool = False) -> Iterator[list[str]]:
    """The keys of the store's PUT calls (the first one fails after a moment with *fail_first*)."""
    client = store._s3
    real_put, puts = client.put_object, []

    async def counted(**kw: Any) -> Any:
        puts.append(kw["Key"])
        if fail_first and len(puts) == 1:
            await asyncio.sleep(0.05)  # the others join it meanwhile
            raise OSError("the store went away")
        return await real_put(**kw)

    client.put_object = counted
    try:
        yield puts
    finally:
        client.put_object = real_put


async def test_concurrent_stores_of_one_chunk_share_one_put(s3_store: S3BlobStore) -> None:
    key, data = chunk(300_000)
    with counted_puts(s3_store) as puts:
        await asyncio.gather(*(s3_store.put_stream(key, len(data), pieces(data)) for _ in range(20)))
        assert len(puts) == 1 and await read_all(s3_store, key) == data
        await s3_store.put_stream(key, len(data), pieces(data))  # fresh: no PUT; none in flight either
        assert len(puts) == 1 and not s3_store._putting


async def test_a_failed_shared_put_fails_its_callers_and_the_next_store_tries_again(s3_store: S3BlobStore) -> None:
    key, data = chunk(5000)
    with counted_puts(s3_store, fail_first=True) as puts:
        got = await asyncio.gather(*(s3_store.put_stream(key, len(data), pieces(data)) for _ in range(5)),
                                   return_exceptions=True)
        assert len(puts) == 1 and all(isinstance(e, SatchelError) and e.code is ErrorCode.unavailable for e in got)
        await s3_store.put_stream(key, len(data), pieces(data))
        assert len(puts) == 2 and await read_all(s3_store, key) == data


async def test_presigned_upload_then_promote(s3_server: RcloneS3, s3_store: S3BlobStore) -> None:
    key, data = chunk(300_000)
    direct = await s3_store.presign_upload("up1", key, len(data), 60)
    assert direct.method == "PUT"
    assert "/staging/up1/" in direct.url and "/chunks/" not in direct.url
    resp = await put_url(direct.url, data)
    assert resp.status_code == 200, resp.text
    assert not await s3_store.exists(key)  # staged, not yet final
    await s3_store.promote("up1", key, len(data))
    assert await read_all(s3_store, key) == data
    assert not staged_path(s3_server, s3_store, "up1", key).exists()
    # Promoting a second upload of a chunk already stored just drops the staged copy.
    again = await s3_store.presign_upload("up2", key, len(data), 60)
    assert (await put_url(again.url, data)).status_code == 200
    await s3_store.promote("up2", key, len(data))
    assert not staged_path(s3_server, s3_store, "up2", key).exists()
    assert await read_all(s3_store, key) == data


async def test_staged_and_discard_staged(s3_store: S3BlobStore) -> None:
    a, data_a = chunk(1000)
    b, data_b = chunk(2000)
    for key, data in ((a, data_a), (b, data_b)):
        direct = await s3_store.presign_upload("up1", key, len(data), 60)
        assert (await put_url(direct.url, data)).status_code == 200
    assert await s3_store.staged("up1") == {a.digest, b.digest}
    assert await s3_store.staged("up2") == set()
    await s3_store.promote("up1", a, len(data_a))
    assert await s3_store.staged("up1") == {b.digest}
    await s3_store.discard_staged("up1")
    assert await s3_store.staged("up1") == set()
    await expect_error(ErrorCode.not_found, s3_store.promote("up1", b, len(data_b)))
    assert [k async for k in s3_store.sweep_candidates(int(time.time() * 1000) + 5000)] == [a]


async def test_promote_wrong_bytes_is_hash_mismatch(s3_server: RcloneS3, s3_store: S3BlobStore) -> None:
    key, data = chunk(10_000)
    direct = await s3_store.presign_upload("up1", key, len(data), 60)
    assert (await put_url(direct.url, os.urandom(len(data)))).status_code == 200
    await expect_error(ErrorCode.hash_mismatch, s3_store.promote("up1", key, len(data)))
    assert not await s3_store.exists(key)
    assert not staged_path(s3_server, s3_store, "up1", key).exists()


async def test_presigned_upload_enforces_size(s3_store: S3BlobStore) -> None:
    key, data = chunk(10_000)
    direct = await s3_store.presign_upload("up1", key, len(data), 60)
    for body in (data + b"x", data[:-1]):
        resp = await put_url(direct.url, body)  # Content-Length is signed
        assert resp.status_code == 403, resp.text
    await expect_error(ErrorCode.not_found, s3_store.promote("up1", key, len(data)))


async def test_promote_wrong_size_is_size_mismatch(s3_server: RcloneS3, s3_store: S3BlobStore) -> None:
    key, data = chunk(10_000)
    direct = await s3_store.presign_upload("up1", key, len(data), 60)
    assert (await put_url(direct.url, data)).status_code == 200
    await expect_error(ErrorCode.size_mismatch, s3_store.promote("up1", key, len(data) - 1))
    assert not await s3_store.exists(key)
    assert not staged_path(s3_server, s3_store, "up1", key).exists()


async def test_promote_nothing_staged_is_not_found(s3_store: S3BlobStore) -> None:
    key, _ = chunk(100)
    await expect_error(ErrorCode.not_found, s3_store.promote("never", key, 100))


async def test_promote_refuses_staged_object_replaced_after_hashing(
    s3_store: S3BlobStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The presigned URL stays valid, so a client can swap the staged bytes between our hash and copy.
    key, data = chunk(10_000)
    direct = await s3_store.presign_upload("up1", key, len(data), 60)
    assert (await put_url(direct.url, data)).status_code == 200
    verify = s3_store._verify_stream

    async def verify_then_swap(*args: Any) -> SatchelError | None:
        result = await verify(*args)
        assert (await put_url(direct.url, os.urandom(len(data)))).status_code == 200
        return result

    monkeypatch.setattr(s3_store, "_verify_stream", verify_then_swap)
    await expect_error(ErrorCode.hash_mismatch, s3_store.promote("up1", key, len(data)))
    assert not await s3_store.exists(key)


async def test_promote_swap_never_replaces_a_chunk_another_upload_stored(
    s3_store: S3BlobStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Upload 2 sees no final object; before its copy, upload 1 stores the good chunk (a commit may
    # now refer to it) and client 2 swaps its staged bytes. Upload 2 must fail without touching it.
    key, data = chunk(10_000)
    one = await s3_store.presign_upload("up1", key, len(data), 60)
    two = await s3_store.presign_upload("up2", key, len(data), 60)
    for direct in (one, two):
        assert (await put_url(direct.url, data)).status_code == 200
    exists = s3_store._object_exists

    async def absent_then_race(obj: str) -> bool:
        assert not await exists(obj)
        monkeypatch.setattr(s3_store, "_object_exists", exists)
        await s3_store.promote("up1", key, len(data))
        assert (await put_url(two.url, os.urandom(len(data)))).status_code == 200
        return False

    monkeypatch.setattr(s3_store, "_object_exists", absent_then_race)
    await expect_error(ErrorCode.hash_mismatch, s3_store.promote("up2", key, len(data)))
    assert await read_all(s3_store, key) == data
    assert await s3_store.staged("up2") == set()


async def test_presigned_url_tampered_is_refused(s3_store: S3BlobStore) -> None:
    key, data = chunk(1000)
    direct = await s3_store.presign_upload("up1", key, len(data), 60)
    sig = direct.url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    flipped = "0" if direct.url[sig] != "0" else "1"
    assert (await put_url(direct.url[:sig] + flipped + direct.url[sig + 1:], data)).status_code == 403
    # Re-aiming a valid signature at the final key is refused too.
    final_url = direct.url.replace(f"staging/up1/{key.hex}", f"chunks/1/{key.hex[:2]}/{key.hex}")
    assert (await put_url(final_url, data)).status_code == 403
    assert not await s3_store.exists(key)


async def test_presigned_urls_expire(s3_store: S3BlobStore) -> None:
    key, data = chunk(1000)
    await s3_store.put_stream(key, len(data), pieces(data))
    up = await s3_store.presign_upload("up1", key, len(data), 1)
    down = await s3_store.presign_download(key, 1)
    await asyncio.sleep(2.1)
    # rclone answers 400 AccessDenied for an expired URL, AWS 403.
    assert (await put_url(up.url, data)).status_code in (400, 403)
    async with httpx.AsyncClient() as client:
        assert (await client.get(down.url)).status_code in (400, 403)
    await expect_error(ErrorCode.not_found, s3_store.promote("up1", key, len(data)))


async def test_presigned_download(s3_store: S3BlobStore) -> None:
    key, data = chunk(200_000)
    await s3_store.put_stream(key, len(data), pieces(data))
    direct = await s3_store.presign_download(key, 60)
    assert direct.method == "GET"
    async with httpx.AsyncClient() as client:
        resp = await client.request(direct.method, direct.url, headers=direct.headers)
    assert resp.status_code == 200
    assert resp.content == data


async def test_oversized_chunk_refused(s3_store: S3BlobStore) -> None:
    key, _ = chunk(10)
    await expect_error(ErrorCode.size_mismatch, s3_store.put_stream(key, MAX_CHUNK_SIZE + 1, pieces(b"")))
    await expect_error(ErrorCode.size_mismatch, s3_store.presign_upload("up1", key, MAX_CHUNK_SIZE + 1, 60))


async def test_bad_upload_id_refused(s3_store: S3BlobStore) -> None:
    key, _ = chunk(10)
    for bad in ("", "../chunks", "a/b"):
        with pytest.raises(ValueError, match="upload id"):
            await s3_store.presign_upload(bad, key, 10, 60)


async def test_from_config_creates_bucket_and_uses_prefix(s3_server: RcloneS3) -> None:
    config = Config(blob_url="s3://fresh-bucket/some/prefix/", s3_endpoint=s3_server.endpoint,
                    s3_access_key=s3_server.access_key, s3_secret_key=s3_server.secret_key)
    st = open_blob_store(config)
    assert isinstance(st, S3BlobStore)
    assert (st.bucket, st.prefix) == ("fresh-bucket", "some/prefix/")
    assert s3_server.secret_key not in repr(st)
    await st.start()
    try:
        key, data = chunk(100)
        await st.put_stream(key, len(data), pieces(data))
        assert (s3_server.root / "fresh-bucket" / "some/prefix/chunks/1" / key.hex[:2] / key.hex).is_file()
    finally:
        await st.close()
    await st.start()  # the bucket exists now
    await st.close()


async def test_wrong_credentials_are_unavailable(s3_server: RcloneS3) -> None:
    st = S3BlobStore(s3_server.bucket, endpoint=s3_server.endpoint, access_key=s3_server.access_key,
                     secret_key="wrong-secret")
    await expect_error(ErrorCode.unavailable, st.start())


class CuttingProxy:
    """A TCP proxy in front of the S3 server that, once armed, drops one connection after it has
    passed *cut_after* response bytes: what a store blip under load looks like to the reader."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.cut_after: int | None = None
        self.keep_cutting = False  # cut every connection, not only the next one
        self.cuts = 0
        self.server: asyncio.Server | None = None
        self.links: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.links += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, cut: bool) -> None:
            passed = 0
            try:
                while data := await src.read(65536):
                    if cut and self.cut_after is not None and passed + len(data) > self.cut_after:
                        dst.write(data[: self.cut_after - passed])
                        self.cuts += 1
                        if not self.keep_cutting:
                            self.cut_after = None
                        dst.transport.abort()
                        up_writer.transport.abort()
                        return
                    passed += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for link in self.links:  # pooled keep-alive connections would keep the pipes waiting
            link.transport.abort()
        await self.server.wait_closed()


@contextlib.asynccontextmanager
async def behind_cutting_proxy(s3_server: RcloneS3) -> AsyncIterator[tuple[S3BlobStore, CuttingProxy]]:
    """An S3 store of its own that reaches the S3 server through a CuttingProxy."""
    proxy = CuttingProxy(s3_server.endpoint)
    endpoint = await proxy.start()
    st = S3BlobStore(s3_server.bucket, f"t-{secrets.token_hex(4)}", endpoint=endpoint,
                     access_key=s3_server.access_key, secret_key=s3_server.secret_key, session=SESSION)
    await st.start()
    try:
        yield st, proxy
    finally:
        await st.close()
        await proxy.stop()


async def test_s3_read_resumes_after_connection_drops_mid_body(s3_server: RcloneS3) -> None:
    async with behind_cutting_proxy(s3_server) as (st, proxy):
        key, data = chunk(3 * PIECE + 12345)
        await st.put_stream(key, len(data), pieces(data))
        proxy.cut_after = PIECE + PIECE // 2  # mid-body, after the reader got its first piece
        got = b"".join([p async for p in st.read(key)])
        assert proxy.cuts == 1
        assert got == data
        proxy.cut_after = PIECE // 3  # and a ranged read resumes at the right byte
        got = b"".join([p async for p in st.read(key, 1000, 2 * PIECE)])
        assert proxy.cuts == 2
        assert got == data[1000:2 * PIECE]


async def test_s3_promote_drops_a_staged_chunk_that_never_reads_whole(s3_server: RcloneS3) -> None:
    """A staged object every read of which breaks is damaged, not a store outage: promote drops
    it and says ``size_mismatch``, so the client sends the chunk again (a commit answered
    'unavailable' forever would never get through)."""
    async with behind_cutting_proxy(s3_server) as (st, proxy):
        key, data = chunk(2 * PIECE + 777)
        direct = await st.presign_upload("cut2", key, len(data), 60)
        assert (await put_url(direct.url, data)).status_code == 200
        proxy.cut_after, proxy.keep_cutting = PIECE + 100, True
        with pytest.raises(SatchelError) as err:
            await st.promote("cut2", key, len(data))
        assert err.value.code is ErrorCode.size_mismatch
        proxy.cut_after = None
        assert not staged_path(s3_server, st, "cut2", key).exists()
        assert not await st.exists(key)


async def test_s3_promote_reads_again_after_connection_drops_mid_body(s3_server: RcloneS3) -> None:
    """Commit hashes the staged object; a connection cut while reading it is not a failed commit."""
    async with behind_cutting_proxy(s3_server) as (st, proxy):
        key, data = chunk(2 * PIECE + 777)
        direct = await st.presign_upload("cut1", key, len(data), 60)
        assert (await put_url(direct.url, data)).status_code == 200
        proxy.cut_after = PIECE + 100  # mid-body of the staged object's GET
        await st.promote("cut1", key, len(data))
        assert proxy.cuts == 1
        assert await read_all(st, key) == data
        assert not staged_path(s3_server, st, "cut1", key).exists()
