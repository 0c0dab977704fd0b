"""The blob store contract. Every implementation passes ``tests/test_blob_stores.py``.

Keys are ``BlobKey(owner_id, digest)``: chunks are deduplicated per owner (never across users, so
nobody can probe whether another user holds some content) and a store may key encryption by owner
later without callers changing. Digests are BLAKE3-256 of the plain bytes.

Errors, all ``SatchelError``:
    not_found       the key (or staged upload) is not in the store
    hash_mismatch   bytes do not hash to the key's digest: nothing was stored
    size_mismatch   bytes are not the announced size: nothing was stored
    unavailable     the backend failed (disk full, S3 down); retry later
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BlobKey:
    owner_id: int
    digest: bytes

    @property
    def hex(self) -> str:
        return self.digest.hex()


async def as_body(data: bytes) -> AsyncIterator[bytes]:
    """Bytes held in memory as the *body* ``put_stream`` takes."""
    yield data


@dataclass(frozen=True, slots=True)
class DirectUrl:
    """A presigned request a client makes straight to the object store."""

    url: str
    method: str
    headers: dict[str, str]


class BlobStore(Protocol):
    #: True when clients move bytes straight to the store (``presign_*`` return URLs).
    direct: bool

    async def start(self) -> None:
        """Open connections / create folders. Called once by the app's lifespan."""

    async def close(self) -> None:
        """Release connections."""

    async def exists(self, key: BlobKey) -> bool:
        """True if the chunk is stored."""

    async def size(self, key: BlobKey) -> int | None:
        """The stored chunk's size in bytes, or None when it is not stored. A digest fixes the
        bytes, so callers compare this with an announced size before trusting the announcement."""

    async def sizes(self, keys: Sequence[BlobKey]) -> list[int | None]:
        """``size`` of each of *keys*, in order: one call for the thousands of chunks of a big
        file's announce or commit, which a store answers in bulk where it can."""
        return [await self.size(k) for k in keys]

    async def put_stream(self, key: BlobKey, size: int, body: AsyncIterator[bytes | memoryview], *,
                         hashed: bool = False) -> None:
        """Store *size* bytes from *body* under *key*, verifying size and hash before the key becomes
        visible. An existing key keeps its bytes (same digest = same bytes) but counts as written
        now, so ``delete(written_before=...)`` of an orphan spares a chunk being stored again.
        *hashed*: the server itself computed the digest from these very bytes (it cut them), so
        the store may skip hashing them again; never for bytes a client sent.
        Raises hash_mismatch, size_mismatch, unavailable."""

    async def read(self, key: BlobKey, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield bytes [start, end) of the chunk in pieces of at most 1 MiB. Raises not_found."""
        yield b""

    async def delete(self, key: BlobKey, written_before: int | None = None) -> None:
        """Remove the chunk; a missing key is not an error. With *written_before* (epoch ms), only
        if it was last written (or stored again, see ``put_stream``) before then."""

    async def sync(self, keys: Sequence[BlobKey] = ()) -> None:
        """Durability barrier: every chunk stored before the call survives a crash after it.
        *keys*: the chunks the caller stored (or found stored) and is about to name in a commit;
        unavailable if one of them is not durable after all (a failed write-back, seen by another
        caller's sync, dropped it: the client sends it again)."""

    # Direct transfers (object stores). Implementations with ``direct = False`` raise not_found.
    async def presign_upload(self, upload_id: str, key: BlobKey, size: int, ttl: float) -> DirectUrl:
        """A URL that PUTs the chunk into a staging area of *upload_id*, never the final key."""
        raise NotImplementedError

    async def promote(self, upload_id: str, key: BlobKey, size: int) -> None:
        """Verify a staged chunk (size and hash) and move it to its final key. Raises not_found
        (never staged), hash_mismatch / size_mismatch (staged bytes are wrong; they are discarded)."""
        raise NotImplementedError

    async def presign_download(self, key: BlobKey, ttl: float) -> DirectUrl:
        """A URL that GETs the chunk straight from the store."""
        raise NotImplementedError

    async def staged(self, upload_id: str) -> set[bytes]:
        """Digests staged (not yet promoted) for *upload_id*."""
        raise NotImplementedError

    async def discard_staged(self, upload_id: str) -> None:
        """Remove everything staged for *upload_id* (abandoned or expired uploads)."""
        raise NotImplementedError

    async def sweep_candidates(self, older_than_ms: int) -> AsyncIterator[BlobKey]:
        """Yield keys of stored chunks last written before *older_than_ms* (for orphan collection)."""
        yield BlobKey(0, b"")
