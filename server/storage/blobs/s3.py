"""Chunks as objects in an S3 bucket (aioboto3), with presigned URLs for direct client transfers.

Layout under ``s3://BUCKET/PREFIX/``::

    chunks/OWNER/ab/abcd…        final, content-addressed; only the server writes here
    staging/UPLOAD_ID/abcd…      where presigned PUTs land; ``promote`` verifies and copies

A client never gets a URL for a final key: it could store bytes that do not match their name.
Instead it PUTs into staging and the server hashes what arrived before copying it into place.
Staged objects of an abandoned upload stay until ``discard_staged`` (the upload sweeper) or a
bucket lifecycle rule on ``staging/`` removes them.

Every botocore / aiohttp failure becomes a ``SatchelError`` (``not_found`` or ``unavailable``).
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import aioboto3
import aiohttp
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from server.core.aio import gather_limited
from server.core.chunking import HASH_BYTES, MAX_CHUNK_SIZE, new_hasher
from server.core.errors import ErrorCode, SatchelError
from server.storage.blobs.base import BlobKey, DirectUrl
from server.storage.blobs.s3_cors import ensure_cors, parse_origins

if TYPE_CHECKING:
    from server.config import Config

log = logging.getLogger(__name__)
READ_PIECE = 1024 * 1024
FRESH_MS = 60_000  # put_stream of a chunk stored this recently skips the upload (at most)
HEAD_CONCURRENCY = 16  # HEADs in flight for sizes()
READ_ATTEMPTS = 3  # a body read that breaks mid-way is resumed from where it broke
MAX_URL_TTL = 7 * 86400  # SigV4 presigned URLs cannot live longer
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _client_config() -> BotoConfig:
    # Without s3v4 presigned URLs come out SigV2; without "when_required" botocore adds CRC
    # checksums that ranged GETs cannot satisfy and that S3-compatible servers may not know.
    return BotoConfig(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # "standard" retries connection errors, 5xx and throttling with backoff (legacy mode
        # retries fewer cases); a store that blips under load should not fail a user's request.
        retries={"mode": "standard", "max_attempts": 4},
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _translated(op: str, obj: str, missing: str = "chunk not found", **details: Any) -> Iterator[None]:
    """Map backend exceptions to SatchelError. Logs *obj*, an object key; never a credential."""
    try:
        yield
    except ClientError as exc:
        if _error_code(exc) in _NOT_FOUND_CODES:
            raise SatchelError(ErrorCode.not_found, missing, **details) from exc
        log.error("s3 %s %s failed: %s", op, obj, exc)
        raise SatchelError(ErrorCode.unavailable, "the chunk store is unavailable right now") from exc
    except (BotoCoreError, aiohttp.ClientError, OSError) as exc:  # OSError covers TimeoutError
        log.error("s3 %s %s failed: %s: %s", op, obj, type(exc).__name__, exc)
        raise SatchelError(ErrorCode.unavailable, "the chunk store is unavailable right now") from exc


def _digest(name: str) -> bytes | None:
    """The digest a chunk object is named after, or None for a name that is not one."""
    try:
        digest = bytes.fromhex(name)
    except ValueError:
        return None
    return digest if len(digest) == HASH_BYTES else None


def _expires_in(ttl: float) -> int:
    return max(1, min(MAX_URL_TTL, math.ceil(ttl)))


def _check_size(size: int) -> None:
    if not 0 <= size <= MAX_CHUNK_SIZE:
        raise SatchelError(ErrorCode.size_mismatch, f"a chunk has at most {MAX_CHUNK_SIZE} bytes",
                           expected=size)


class S3BlobStore:
    direct = True

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str = "", region: str = "us-east-1",
                 access_key: str = "", secret_key: str = "", session: aioboto3.Session | None = None,
                 cors_origins: tuple[str, ...] = ()) -> None:
        if not bucket:
            raise ValueError("S3 bucket name is empty")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint = endpoint
        self.region = region
        # Empty credentials mean "use boto's default chain" (env, instance role, ...).
        self._access_key = access_key or None
        self._secret_key = secret_key or None
        # A session may be shared: creating one loads botocore's service models (~0.1 s).
        self._session = session
        self.cors_origins = cors_origins  # browser origins allowed to use presigned URLs
        # Well inside the sweeper's orphan grace, so a chunk it may delete is always put again.
        self.fresh_ms = FRESH_MS
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._putting: dict[str, asyncio.Task[None]] = {}  # final key -> the PUT storing it now

    @classmethod
    def from_config(cls, config: Config) -> S3BlobStore:
        """``s3://BUCKET[/PREFIX]`` plus the ``s3_*`` settings."""
        if not config.blob_url.startswith("s3://"):
            raise ValueError("S3 blob URL must look like s3://BUCKET[/PREFIX]")
        bucket, _, prefix = config.blob_url.removeprefix("s3://").partition("/")
        origins = parse_origins(config.s3_cors_origins, config.public_url, config.host, config.port)
        store = cls(bucket, prefix, endpoint=config.s3_endpoint, region=config.s3_region,
                    access_key=config.s3_access_key, secret_key=config.s3_secret_key, cors_origins=origins)
        store.fresh_ms = min(FRESH_MS, int(config.orphan_grace * 1000) // 2)
        return store

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint={self.endpoint!r})"

    # -- keys --------------------------------------------------------------------------------------

    def _final_key(self, key: BlobKey) -> str:
        h = key.hex
        return f"{self.prefix}chunks/{key.owner_id}/{h[:2]}/{h}"

    def _staging_folder(self, upload_id: str) -> str:
        # Upload ids come from the server, but a '/' or '..' here could reach outside staging/
        # (rclone serving a folder cleans paths), so refuse anything unusual.
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise ValueError(f"invalid upload id {upload_id!r}")
        return f"{self.prefix}staging/{upload_id}/"

    def _staging_key(self, upload_id: str, key: BlobKey) -> str:
        return self._staging_folder(upload_id) + key.hex

    @property
    def _s3(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3BlobStore used before start() or after close()")
        return self._client

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        stack = AsyncExitStack()
        session = self._session or aioboto3.Session()
        with _translated("connect", self.bucket):
            self._client = await stack.enter_async_context(session.client(
                "s3",
                endpoint_url=self.endpoint or None,
                region_name=self.region,
                aws_access_key_id=self._access_key,
                aws_secret_access_key=self._secret_key,
                config=_client_config(),
            ))
        self._stack = stack
        try:
            await self._ensure_bucket()
            await self._anchor_staging()
            await ensure_cors(self._s3, self.bucket, self._probe_url(), self.cors_origins)
        except BaseException:
            await self.close()
            raise

    async def _anchor_staging(self) -> None:
        """Keep one small object in ``staging/`` for good. S3 servers that keep objects as files
        (rclone) remove a folder once a delete empties it: a commit deleting the last staged
        upload's folder would otherwise race a client's first PUT of a new upload into it (seen
        as a 500 that the client had to retry). On S3 proper it is one 0-byte object."""
        key = f"{self.prefix}staging/.keep"
        with _translated("put_object", key):
            await self._s3.put_object(Bucket=self.bucket, Key=key, Body=b"")

    def _probe_url(self) -> str:
        """A staging URL of this store, for the CORS preflight check (path-style, as presigned)."""
        base = self.endpoint.rstrip("/") or f"https://s3.{self.region}.amazonaws.com"
        return f"{base}/{self.bucket}/{self.prefix}staging/cors-check"

    async def _ensure_bucket(self) -> None:
        try:
            with _translated("head_bucket", self.bucket):
                await self._s3.head_bucket(Bucket=self.bucket)
            return
        except SatchelError as exc:
            if exc.code is not ErrorCode.not_found:
                raise
        args: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":  # AWS refuses an explicit us-east-1 constraint
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            with _translated("create_bucket", self.bucket):
                await self._s3.create_bucket(**args)
        except SatchelError as exc:
            # Another node may have created it between our HEAD and CREATE.
            cause = exc.__cause__
            if not (isinstance(cause, ClientError)
                    and _error_code(cause) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")):
                raise
        log.info("created S3 bucket %s", self.bucket)

    async def close(self) -> None:
        putting = list(self._putting.values())  # PUTs whose callers all went away: not on a closed client
        for task in putting:
            task.cancel()
        await asyncio.gather(*putting, return_exceptions=True)
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # -- chunks ------------------------------------------------------------------------------------

    async def _object_exists(self, obj: str) -> bool:
        try:
            with _translated("head_object", obj):
                await self._s3.head_object(Bucket=self.bucket, Key=obj)
        except SatchelError as exc:
            if exc.code is ErrorCode.not_found:
                return False
            raise
        return True

    async def exists(self, key: BlobKey) -> bool:
        return await self._object_exists(self._final_key(key))

    async def size(self, key: BlobKey) -> int | None:
        final = self._final_key(key)
        try:
            with _translated("head_object", final):
                head = await self._s3.head_object(Bucket=self.bucket, Key=final)
        except SatchelError as exc:
            if exc.code is ErrorCode.not_found:
                return None
            raise
        return int(head["ContentLength"])

    async def sizes(self, keys: Sequence[BlobKey]) -> list[int | None]:
        """One HEAD each (S3 has no bulk HEAD), HEAD_CONCURRENCY at a time."""
        return await gather_limited(HEAD_CONCURRENCY, (self.size(k) for k in keys))

    async def put_stream(self, key: BlobKey, size: int, body: AsyncIterator[bytes | memoryview], *,
                         hashed: bool = False) -> None:
        # A chunk is at most 16 MiB, so buffering it is bounded and lets one PUT carry a known
        # length (S3 has no streaming PUT of unknown size without multipart). BytesIO, not bytes:
        # aiohttp warns that a large raw-bytes body may block the loop, and botocore can rewind it.
        _check_size(size)
        buf = io.BytesIO()
        hasher = new_hasher()
        received = 0
        async for piece in body:
            received += len(piece)
            if received > size:
                raise SatchelError(ErrorCode.size_mismatch, "chunk is larger than announced", expected=size)
            buf.write(piece)
            if not hashed:
                hasher.update(piece)
        if received != size:
            raise SatchelError(ErrorCode.size_mismatch, f"chunk has {received} bytes, announced {size}",
                               expected=size, received=received)
        if not hashed and hasher.digest() != key.digest:
            raise SatchelError(ErrorCode.hash_mismatch, "chunk bytes do not match their hash", hash=key.hex)
        final = self._final_key(key)
        # Same key = same bytes: concurrent stores of one chunk (identical files in one batch)
        # share the PUT in flight, which ends after each of them was called (so it counts as
        # written now). Some S3-compatible servers (rclone's) fail one of two concurrent PUTs of a key.
        putting = self._putting.get(final)
        if putting is None or putting.done():  # a finished one is forgotten a moment later: not ours
            putting = asyncio.ensure_future(self._put_once(final, buf, size))
            self._putting[final] = putting
            putting.add_done_callback(lambda t: self._forget_put(final, t))
        else:
            buf.close()  # the PUT in flight carries the same bytes
        await asyncio.shield(putting)  # a caller that goes away leaves the PUT to the others

    def _forget_put(self, final: str, task: asyncio.Task[None]) -> None:
        if self._putting.get(final) is task:
            del self._putting[final]
        if not task.cancelled():
            task.exception()  # retrieved: every waiting caller has it raised already

    async def _put_once(self, final: str, buf: io.BytesIO, size: int) -> None:
        written = await self._written_ms(final)
        if written is not None and written > time.time() * 1000 - self.fresh_ms:
            return  # same digest = same bytes, and written lately: no sweeper is near it
        # Missing, or old enough to be an orphan the sweeper may be about to delete: put it again,
        # which renews LastModified (delete(written_before=...) spares it).
        with _translated("put_object", final):
            buf.seek(0)
            await self._s3.put_object(Bucket=self.bucket, Key=final, Body=buf, ContentLength=size)

    async def read(self, key: BlobKey, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        final = self._final_key(key)
        if end is not None and end <= start:
            # An empty range is not expressible as an HTTP Range, but a missing key is still an error.
            if not await self._object_exists(final):
                raise SatchelError(ErrorCode.not_found, "chunk not found", hash=key.hex)
            return
        pos = start
        for attempt in range(READ_ATTEMPTS):
            args: dict[str, Any] = {"Bucket": self.bucket, "Key": final}
            if pos > 0 or end is not None:
                args["Range"] = f"bytes={pos}-{'' if end is None else end - 1}"
            try:
                with _translated("get_object", final, hash=key.hex):
                    resp = await self._s3.get_object(**args)
            except SatchelError as exc:
                cause = exc.__cause__
                if isinstance(cause, ClientError) and _error_code(cause) == "InvalidRange":
                    return  # start is at or past the end: nothing to send, like reading past EOF
                raise
            stream = resp["Body"]
            try:
                while True:
                    try:
                        with _translated("read", final):
                            piece = await stream.read(READ_PIECE)
                    except SatchelError:
                        # A connection dropped mid-body: botocore does not retry a body already
                        # being read, so ask again from the first byte not yet sent.
                        if attempt + 1 == READ_ATTEMPTS:
                            raise
                        log.warning("s3 read %s broke at byte %d; retrying from there", final, pos)
                        break
                    if not piece:
                        return
                    pos += len(piece)
                    yield piece
            finally:
                stream.close()  # drops the connection if the reader stopped early
            if end is not None and pos >= end:
                return

    async def _written_ms(self, obj: str) -> float | None:
        try:
            with _translated("head_object", obj):
                head = await self._s3.head_object(Bucket=self.bucket, Key=obj)
        except SatchelError as exc:
            if exc.code is ErrorCode.not_found:
                return None
            raise
        return float(head["LastModified"].timestamp() * 1000)

    async def delete(self, key: BlobKey, written_before: int | None = None) -> None:
        final = self._final_key(key)
        if written_before is not None:
            # S3 has no conditional delete on age: check right before (a put_stream in between
            # is the one window left; the sweeper holds the reference guard meanwhile).
            written = await self._written_ms(final)
            if written is None or written >= written_before:
                return
        try:
            with _translated("delete_object", final):
                await self._s3.delete_object(Bucket=self.bucket, Key=final)
        except SatchelError as exc:
            if exc.code is not ErrorCode.not_found:
                raise

    async def sync(self, keys: Sequence[BlobKey] = ()) -> None:
        return None  # an acknowledged S3 PUT is already durable

    # -- direct transfers --------------------------------------------------------------------------

    async def presign_upload(self, upload_id: str, key: BlobKey, size: int, ttl: float) -> DirectUrl:
        _check_size(size)
        staged = self._staging_key(upload_id, key)
        with _translated("presign put_object", staged):
            # ContentLength is a signed header: the store itself refuses a body of another size.
            url = await self._s3.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": staged, "ContentLength": size},
                ExpiresIn=_expires_in(ttl),
                HttpMethod="PUT",
            )
        return DirectUrl(url, "PUT", {"Content-Length": str(size)})

    async def promote(self, upload_id: str, key: BlobKey, size: int) -> None:
        staged = self._staging_key(upload_id, key)
        for attempt in range(READ_ATTEMPTS):
            with _translated("get_object", staged, "no chunk was uploaded", hash=key.hex):
                resp = await self._s3.get_object(Bucket=self.bucket, Key=staged)
            etag = resp.get("ETag")
            try:
                error = await self._verify_stream(resp["Body"], staged, key, size)
                break
            except SatchelError:
                # The body broke mid-way (botocore retries requests, not bodies being read): the
                # hash needs every byte, so read the staged object again from the start.
                if attempt + 1 == READ_ATTEMPTS:
                    # The store answers but never sends this object whole: it is damaged (rclone
                    # leaves such objects after an interrupted PUT), not a store that is down.
                    # Only the client holds the bytes: drop it so the chunk is listed as missing.
                    await self._delete_quietly(staged)
                    raise SatchelError(ErrorCode.size_mismatch, "the staged chunk cannot be read whole; "
                                       "send it again", hash=key.hex) from None
                log.warning("s3 read of staged %s broke; reading it again", staged)
        if error is not None:
            await self._delete_quietly(staged)
            raise error
        final = self._final_key(key)
        if not await self._object_exists(final):
            await self._copy_verified(staged, final, etag, key)
        # Only after a verdict: on an S3 outage the staged bytes stay for a retry of promote.
        await self._delete_quietly(staged)

    async def _verify_stream(self, stream: Any, staged: str, key: BlobKey, size: int) -> SatchelError | None:
        """Hash the staged object piece by piece; return the error to raise, if any."""
        hasher = new_hasher()
        received = 0
        try:
            while True:
                with _translated("read", staged):
                    piece = await stream.read(READ_PIECE)
                if not piece:
                    break
                received += len(piece)
                if received > size:
                    return SatchelError(ErrorCode.size_mismatch, "chunk is larger than announced",
                                        expected=size)
                hasher.update(piece)
        finally:
            stream.close()
        if received != size:
            return SatchelError(ErrorCode.size_mismatch, f"chunk has {received} bytes, announced {size}",
                                expected=size, received=received)
        if hasher.digest() != key.digest:
            return SatchelError(ErrorCode.hash_mismatch, "chunk bytes do not match their hash", hash=key.hex)
        return None

    async def _copy_verified(self, staged: str, final: str, etag: str | None, key: BlobKey) -> None:
        """Put the bytes we hashed at *final*, never any others.

        The presigned URL stays valid until it expires, so the client could overwrite the staged
        object between our GET and the copy. CopySourceIfMatch stops that on AWS, but servers that
        ignore it (rclone does) are only caught by comparing the copy's ETag afterwards, and by
        then a copy straight to *final* could have replaced a good chunk that a concurrent commit
        already references. So the copy goes first to a key no client can write (next to the
        staged object, so ``discard_staged`` cleans it up after a crash), is checked there, and
        only a checked copy moves on to *final*.

        The checked copy sits beside the staged object, not in a subfolder of its own: S3 servers
        that keep objects as files (rclone) remove a folder once a delete empties it, which races
        with a concurrent copy into it; the staged object keeps this folder non-empty meanwhile.
        """
        checked = staged + ".verified"
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": checked,
                                "CopySource": {"Bucket": self.bucket, "Key": staged}}
        if etag:
            args["CopySourceIfMatch"] = etag
        try:
            with _translated("copy_object", checked):
                result = await self._s3.copy_object(**args)
        except SatchelError as exc:
            cause = exc.__cause__
            changed = isinstance(cause, ClientError) and _error_code(cause) in ("PreconditionFailed", "412")
            if exc.code is ErrorCode.not_found or changed:  # staged object replaced or removed meanwhile
                await self._delete_quietly(staged)
                raise SatchelError(ErrorCode.hash_mismatch, "staged chunk changed while it was verified",
                                   hash=key.hex) from cause
            raise
        copied = result.get("CopyObjectResult", {}).get("ETag")
        if etag and copied and copied != etag:
            await self._delete_quietly(checked)
            await self._delete_quietly(staged)
            raise SatchelError(ErrorCode.hash_mismatch, "staged chunk changed while it was verified",
                               hash=key.hex)
        with _translated("copy_object", final):
            await self._s3.copy_object(Bucket=self.bucket, Key=final,
                                       CopySource={"Bucket": self.bucket, "Key": checked})
        await self._delete_quietly(checked)

    async def _delete_quietly(self, obj: str) -> None:
        """Best-effort cleanup: a failure here must not hide the error being reported."""
        try:
            with _translated("delete_object", obj):
                await self._s3.delete_object(Bucket=self.bucket, Key=obj)
        except SatchelError as exc:
            log.warning("s3 cleanup of %s failed: %s", obj, exc.message)

    async def presign_download(self, key: BlobKey, ttl: float) -> DirectUrl:
        final = self._final_key(key)
        with _translated("presign get_object", final):
            url = await self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": final}, ExpiresIn=_expires_in(ttl),
            )
        return DirectUrl(url, "GET", {})

    # -- listing: staged uploads and orphan sweeps ------------------------------------------------

    async def _list(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        """Yield every object under *prefix*, one page (<= 1000 keys) in memory at a time."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            with _translated("list_objects_v2", prefix):
                page = await self._s3.list_objects_v2(**args)
            for obj in page.get("Contents", []):
                yield obj
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            args["ContinuationToken"] = token

    async def staged(self, upload_id: str) -> set[bytes]:
        folder = self._staging_folder(upload_id)
        digests = set()
        async for obj in self._list(folder):
            digest = _digest(obj["Key"].removeprefix(folder))
            if digest is not None:
                digests.add(digest)
        return digests

    async def discard_staged(self, upload_id: str) -> None:
        folder = self._staging_folder(upload_id)
        batch: list[dict[str, str]] = []
        async for obj in self._list(folder):
            batch.append({"Key": obj["Key"]})
            if len(batch) == 1000:  # DeleteObjects takes at most 1000 keys
                await self._delete_batch(batch)
                batch = []
        if batch:
            await self._delete_batch(batch)

    async def _delete_batch(self, batch: list[dict[str, str]]) -> None:
        with _translated("delete_objects", batch[0]["Key"]):
            result = await self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        errors = [e for e in result.get("Errors", []) if e.get("Code") != "NoSuchKey"]
        if errors:
            log.error("s3 delete_objects: %d of %d keys failed, first: %s", len(errors), len(batch), errors[0])
            raise SatchelError(ErrorCode.unavailable, "the chunk store is unavailable right now")

    async def sweep_candidates(self, older_than_ms: int) -> AsyncIterator[BlobKey]:
        root = f"{self.prefix}chunks/"
        async for obj in self._list(root):
            if obj["LastModified"].timestamp() * 1000 >= older_than_ms:
                continue
            owner, _, rest = obj["Key"].removeprefix(root).partition("/")
            digest = _digest(rest.rpartition("/")[2])
            if digest is not None and owner.isdigit():  # anything else under chunks/ is not ours
                yield BlobKey(int(owner), digest)
