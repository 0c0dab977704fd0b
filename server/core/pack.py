"""Chunk packs: many chunks of one upload in one HTTP request body (protocol.md, "Chunk packs").

A chunk per request costs ~1 ms of CPU on each side (HTTP parsing, routing, a signature check)
whatever the chunk's size, which at thousands of chunks per file was most of an upload's time.
A pack sends a table of contents, then the chunks' bytes back to back::

    count:u32be  count x (digest[32] size:u32be)  bytes of chunk 0 | bytes of chunk 1 | ...

The table comes first so the server can check every chunk belongs to the upload before it
stores a byte. Shared by the server (``PackReader``) and the clients (``pack_header``).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Sequence

from server.core.chunking import HASH_BYTES, MAX_CHUNK_SIZE, pack_chunk_list, unpack_chunk_list
from server.core.errors import ErrorCode, SatchelError

MAX_PACK_CHUNKS = 4096
MEDIA_TYPE = "application/vnd.satchel.pack"
_COUNT = struct.Struct(">I")
_ENTRY_SIZE = HASH_BYTES + 4


def pack_header(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """The table of contents for *chunks* (digest, size), in the order their bytes follow."""
    if not 0 < len(chunks) <= MAX_PACK_CHUNKS:
        raise ValueError(f"a pack holds 1 to {MAX_PACK_CHUNKS} chunks")
    return _COUNT.pack(len(chunks)) + pack_chunk_list(chunks)


def _malformed(message: str) -> SatchelError:
    return SatchelError(ErrorCode.bad_request, f"malformed chunk pack: {message}")


class PackReader:
    """Parse a pack from an async stream of byte pieces of any size, without holding more than
    one piece plus a small remainder in memory."""

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._body = body
        # A view: handing out a chunk's part of a piece, and keeping the rest, copies nothing
        # (slicing bytes copied about half of every body a second time).
        self._buf = memoryview(b"")
        self._eof = False

    async def _fill(self, n: int) -> bool:
        """At least *n* bytes buffered, unless the body ends first. The pieces are joined once:
        joining at every piece would copy a table of contents sent a byte at a time quadratically."""
        parts: list[bytes | memoryview] = [self._buf] if self._buf else []
        have = len(self._buf)
        while have < n and not self._eof:
            try:
                piece = await anext(self._body)
            except StopAsyncIteration:
                self._eof = True
                break
            parts.append(piece)
            have += len(piece)
        if have > len(self._buf):
            self._buf = memoryview(parts[0] if len(parts) == 1 else b"".join(parts))
        return have >= n

    async def _take(self, n: int, what: str) -> bytes:
        if not await self._fill(n):
            raise _malformed(f"the body ends inside the {what}")
        out, self._buf = self._buf[:n], self._buf[n:]
        return bytes(out)

    async def table(self) -> list[tuple[bytes, int]]:
        """Read the table of contents; sizes are checked against the largest chunk allowed."""
        (count,) = _COUNT.unpack(await self._take(_COUNT.size, "chunk count"))
        if not 0 < count <= MAX_PACK_CHUNKS:
            raise _malformed(f"it must hold 1 to {MAX_PACK_CHUNKS} chunks, not {count}")
        raw = await self._take(count * _ENTRY_SIZE, "table of contents")
        entries = unpack_chunk_list(raw)
        for digest, size in entries:
            if not 0 < size <= MAX_CHUNK_SIZE:
                raise _malformed(f"chunk {digest.hex()} has size {size} (1 to {MAX_CHUNK_SIZE})")
        return entries

    async def chunk(self, size: int) -> AsyncIterator[memoryview]:
        """The next *size* bytes, as pieces; a body that ends early is a ``size_mismatch``."""
        left = size
        while left:
            if not self._buf and not await self._fill(1):
                raise SatchelError(ErrorCode.size_mismatch, "the pack ends inside a chunk",
                                   expected=size, received=size - left)
            piece, self._buf = self._buf[:left], self._buf[left:]
            left -= len(piece)
            yield piece

    async def finish(self) -> None:
        """The body must end after the last chunk."""
        if await self._fill(1):
            raise _malformed("bytes after the last chunk")
