"""Content-defined chunking and content addresses (protocol.md, "Chunks").

Chunk boundaries come from FastCDC 2020 (``pyfastcdc``, Cython; ~2.5 GB/s here), so an insert or a
delete moves only the chunks around it. The average chunk size grows with the file so a huge file
keeps a chunk list of at most ~4,096 entries past 256 MiB, while files up to 256 MiB use 64 KiB
chunks (a 1-byte edit re-sends ~100 KB, close to rsync). Min = avg/4, max = avg*4 (FastCDC's
defaults); 4 MiB average is the cap, so a 50 GB file has ~12,000 chunks.

Addresses are BLAKE3-256 (``blake3``): CDC + BLAKE3 runs at 1.36 GB/s on one core here against
0.83 GB/s for CDC + SHA-256, and hash-wasm gives browsers the same function.
A file's ``content_hash`` is BLAKE3 over the concatenated 32-byte chunk digests: derived from the
chunk list alone, so the server computes it without reading any bytes.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import blake3
from pyfastcdc import FastCDC

HASH_BYTES = 32
HEX_HASH = re.compile(f"[0-9a-fA-F]{{{2 * HASH_BYTES}}}")  # a chunk hash as the REST API spells it
MIN_AVG_CHUNK = 64 * 1024
MAX_AVG_CHUNK = 4 * 1024 * 1024
MAX_CHUNK_SIZE = 4 * MAX_AVG_CHUNK  # 16 MiB: the largest chunk any client may send
TARGET_CHUNKS = 4096
SMALL_FILE_LIMIT = MIN_AVG_CHUNK * TARGET_CHUNKS  # 256 MiB
MAX_PATCHES = 64  # chunks per POST /api/v1/uploads/{id}/patch


def avg_chunk_size(file_size: int) -> int:
    """Average chunk size for a file of *file_size* bytes: a power of two in [64 KiB, 4 MiB]."""
    avg = MIN_AVG_CHUNK
    while avg < MAX_AVG_CHUNK and avg * TARGET_CHUNKS < file_size:
        avg *= 2
    return avg


def fits_cut(sizes: Sequence[int], avg: int) -> bool:
    """Could chunks of these sizes (in file order) come from a cut with average *avg*? FastCDC
    keeps each chunk in [avg/4, 4 avg], the last one only under the maximum."""
    lo, hi = avg // 4, 4 * avg
    return bool(sizes) and all(lo <= n <= hi for n in sizes[:-1]) and sizes[-1] <= hi


def cut_size(new_size: int, parent_sizes: Sequence[int] | None) -> int:
    """The size to cut a new version of *new_size* bytes as (``as_size``), given its parent's
    chunk sizes: its own size, unless the parent was cut one average-size step away from this
    size's average (and could not have been cut with it): then that step's. So an edit across a
    step (a 256 MiB file that grows by a byte) keeps every unedited chunk of its parent instead
    of none, until the file has doubled past the step. Without the parent's list (another
    client, a first upload) a file is cut by its own size, which the server handles too (its
    chunks are found in the parent's bytes, ``server.services.derive``)."""
    if not parent_sizes or fits_cut(parent_sizes, avg_chunk_size(new_size)):
        return new_size
    for top in neighbour_cut_sizes(new_size):
        # A neighbour's average cuts sizes up to *top*: kept up to twice that, down to a quarter
        # (also past the top step, where the size's own average stops growing).
        if top // 4 < new_size <= 2 * top and fits_cut(parent_sizes, top // TARGET_CHUNKS):
            return top
    return new_size


def neighbour_cut_sizes(size: int) -> list[int]:
    """The sizes (``as_size``) of the cuts one step either side of *size*'s own, each the largest
    size cut with that average: the cuts a version kept from its parent can have (``cut_size``)."""
    natural = avg_chunk_size(size)
    return [avg * TARGET_CHUNKS for avg in (natural // 2, natural * 2) if MIN_AVG_CHUNK <= avg <= MAX_AVG_CHUNK]


def hash_bytes(data: bytes | memoryview) -> bytes:
    return blake3.blake3(data).digest()


def new_hasher() -> blake3.blake3:
    return blake3.blake3()


_LIST_ENTRY = struct.Struct(f">{HASH_BYTES}sI")  # digest, size (u32 big-endian)


def pack_chunk_list(chunks: Iterable[tuple[bytes, int]]) -> bytes:
    """A chunk list as 36 bytes per chunk (digest, size): chunk packs' table of contents and the
    clients' stored lists."""
    out = []
    for d, n in chunks:
        if len(d) != HASH_BYTES:  # struct would pad or cut it silently
            raise ValueError(f"a chunk digest is {HASH_BYTES} bytes, not {len(d)}")
        out.append(_LIST_ENTRY.pack(d, n))
    return b"".join(out)


def unpack_chunk_list(blob: bytes | memoryview) -> list[tuple[bytes, int]]:
    """The inverse of ``pack_chunk_list`` (struct.error when *blob* is not whole entries)."""
    return [(bytes(d), n) for d, n in _LIST_ENTRY.iter_unpack(blob)]


def content_hash(digests: Iterable[bytes]) -> str:
    h = blake3.blake3()
    for d in digests:
        h.update(d)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class ChunkRef:
    offset: int
    size: int
    digest: bytes

    @property
    def hex(self) -> str:
        return self.digest.hex()


def _chunker(file_size: int) -> FastCDC:
    return FastCDC(avg_chunk_size(file_size))


def chunk_stream(stream: BinaryIO, file_size: int) -> Iterator[ChunkRef]:
    """Chunk and hash a stream of *file_size* bytes, holding at most two max-size chunks in memory.

    ``cut_stream`` (not ``cut_file``) on purpose: the mmap path would count the whole file in RSS.
    """
    for c in _chunker(file_size).cut_stream(stream):
        yield ChunkRef(c.offset, c.length, blake3.blake3(c.data).digest())


def chunk_file(path: str | os.PathLike[str], as_size: int | None = None) -> Iterator[ChunkRef]:
    """The chunks of the file at *path*, cut as a file of *as_size* bytes would be (default: its
    own size). Another size's chunker finds the chunks a file of that size shares with this one:
    a file that grew across a chunk-size step shares almost every chunk with its old version
    cut with the new size's chunker, and none with its old chunk list."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        for c in _chunker(size if as_size is None else as_size).cut_stream(f):
            yield ChunkRef(c.offset, c.length, blake3.blake3(c.data).digest())


class StreamCutter:
    """``chunk_stream`` for bytes that arrive piece by piece (an async source): feed the pieces,
    get the same chunks, each with its bytes. A chunk is cut only once the bytes after its start
    reach the chunker's maximum size (or the end): FastCDC decides a cut from the bytes since
    the chunk's start alone, so the result cannot differ from cutting the whole stream at once.
    Holds at most ``window`` + one maximum chunk."""

    def __init__(self, file_size: int) -> None:
        avg = avg_chunk_size(file_size)
        self._cdc = FastCDC(avg)
        self._window = max(8 * 1024 * 1024, 8 * avg)  # >= 2x the max chunk (4x avg)
        self._buf = b""
        self._pieces: list[bytes] = []  # joined to _buf once they fill the window (one copy)
        self._held = 0
        self._offset = 0  # of _buf[0] in the stream

    def feed(self, data: bytes) -> list[tuple[ChunkRef, memoryview]]:
        """The chunks complete with *data*; their views stay valid (the buffer is replaced, not
        resized)."""
        self._pieces.append(data)
        self._held += len(data)
        return self._cut(final=False) if self._held >= self._window else []

    def fills(self, data: bytes) -> bool:
        """Will feeding *data* cut (and hash) a window, the slow part?"""
        return self._held + len(data) >= self._window

    def finish(self) -> list[tuple[ChunkRef, memoryview]]:
        return self._cut(final=True)

    def _cut(self, final: bool) -> list[tuple[ChunkRef, memoryview]]:
        buf = self._buf = b"".join([self._buf, *self._pieces])
        self._pieces.clear()
        cuts = list(self._cdc.cut_buf(buf)) if buf else []
        if not final:
            cuts = cuts[:-1]  # the last one may end only because the buffer does
        out = [(ChunkRef(self._offset + c.offset, c.length, blake3.blake3(c.data).digest()), c.data)
               for c in cuts]
        used = cuts[-1].offset + cuts[-1].length if cuts else 0
        self._buf, self._offset = buf[used:], self._offset + used
        self._held = len(self._buf)
        return out


def chunk_bytes(data: bytes) -> list[ChunkRef]:
    return [
        ChunkRef(c.offset, c.length, blake3.blake3(c.data).digest())
        for c in _chunker(len(data)).cut_buf(data)
    ]
