"""The local tree, read from disk.

A file whose size, mtime and inode match the synced state is taken as unchanged without reading
it; any other file is chunked and hashed (the same FastCDC/BLAKE3 as uploads), so a touched but
identical file is not sent, and the chunk list is kept for the upload that follows. Files modified
in the last ``settle`` seconds are reported busy (still being written) and left for a later round,
unless renamed into place since, or the file watcher saw its writer finish (complete).
Symlinks, names the server would refuse and unreadable entries are reported, never fatal.
"""

from __future__ import annotations

import logging
import os
import stat
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from python_client.sync.ignore import Ignore
from python_client.sync.model import DIR, FILE, LocalNode, RemoteNode, SyncedNode
from python_client.transfer import chunk_file_pipelined
from server.core import chunking, paths
from server.core.chunking import ChunkRef, chunk_file, content_hash
from server.core.errors import SatchelError

log = logging.getLogger(__name__)
RENAME_SETS_CTIME = os.name != "nt"  # POSIX: ctime is the last inode change (a rename sets it)


@dataclass
class Scan:
    local: dict[str, LocalNode] = field(default_factory=dict)
    chunks: dict[str, list[ChunkRef]] = field(default_factory=dict)  # of the files hashed this scan
    busy: set[str] = field(default_factory=set)          # being written: skip this round
    problems: dict[str, str] = field(default_factory=dict)  # path -> why it is not synced
    unreadable: set[str] = field(default_factory=set)    # folders/files we could not read: keep


def local_path(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _name_problem(name: str) -> str | None:
    if not unicodedata.is_normalized("NFC", name):
        return "the name is not in Unicode NFC form (rename it to sync it)"
    try:
        paths.validate_segment(name, name)
    except SatchelError as exc:
        return exc.message
    return None


PIPELINE_FROM = 8 * 1024 * 1024  # smaller files are cut and hashed on the calling thread


def _may_keep_cut(size: int) -> bool:
    """Could a file of *size* bytes be cut with its synced version's chunk size rather than its
    own (chunking.cut_size)? Only from half the smallest step on."""
    return size >= chunking.MIN_AVG_CHUNK * chunking.TARGET_CHUNKS // 2


def hash_file(path: Path, size: int, as_size: int | None = None) -> tuple[str, list[ChunkRef]]:
    # The two-thread pipeline pays a thread start per file: 0.6 ms, 6x the work for a 4 KiB file.
    refs = chunk_file_pipelined(path, as_size) if size >= PIPELINE_FROM else list(chunk_file(path, as_size))
    return content_hash(r.digest for r in refs), refs


Finished = Callable[[str, os.stat_result], bool]  # (absolute path, its stat): is its writer done?
ParentChunks = Callable[[SyncedNode], Sequence[tuple[bytes, int]] | None]  # a synced version's chunk list


def scan(root: Path, synced: dict[str, SyncedNode], ignore: Ignore, *, settle: float = 0.0,
         finished: Finished | None = None, parent_chunks: ParentChunks | None = None,
         remote: dict[str, RemoteNode] | None = None) -> Scan:
    """What is on disk. A changed file is hashed; a big one with a synced version whose chunk list
    *parent_chunks* gives is cut like that version when it crossed a chunk-size step. A big one
    whose *remote* version has its size but another hash is also tried with the other cuts it
    could have (its own size's, or one kept from a parent): the same bytes then get the same
    content hash, and no conflicted copy of identical content is made."""
    out = Scan()
    now_ns = time.time_ns()
    stack = ["/"]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(local_path(root, folder)))
        except OSError as exc:
            out.problems[folder] = f"cannot read the folder: {exc.strerror}"
            out.unreadable.add(folder)
            continue
        for entry in entries:
            path = folder.rstrip("/") + "/" + entry.name  # not paths.join: that refuses bad names
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished meanwhile: the next scan sees it gone
            is_dir = stat.S_ISDIR(st.st_mode)
            if ignore(path, is_dir):
                continue
            if stat.S_ISLNK(st.st_mode):
                out.problems[path] = "symbolic links are not synced"
                continue
            problem = _name_problem(entry.name)
            if problem:
                out.problems[path] = problem
                out.unreadable.add(path)  # whatever the server has there, keep it
                continue
            if is_dir:
                out.local[path] = LocalNode(DIR, inode=st.st_ino)
                stack.append(path)
            elif stat.S_ISREG(st.st_mode):
                _file(root, path, st, synced.get(path), out, now_ns, settle, finished, parent_chunks,
                      remote.get(path) if remote is not None else None)
    return out


def _file(root: Path, path: str, st: os.stat_result, sn: SyncedNode | None, out: Scan, now_ns: int,
          settle: float, finished: Finished | None = None, parent_chunks: ParentChunks | None = None,
          rn: RemoteNode | None = None) -> None:
    node = LocalNode(FILE, st.st_size, st.st_mtime_ns, st.st_ino)
    if sn is not None and node.same_stat(sn):
        out.local[path] = node
        return
    # Written in the last `settle` seconds: maybe still being written. Not when something else
    # touched the inode after the last write (ctime past mtime): a file renamed into place (the
    # atomic save of editors and downloaders) is complete, and waiting would only add latency.
    # (On Windows st_ctime is the creation time: there the wait always applies.)
    if now_ns - st.st_mtime_ns < settle * 1e9 and not (RENAME_SETS_CTIME and st.st_ctime_ns > st.st_mtime_ns) \
            and not (finished is not None and finished(str(local_path(root, path)), st)):
        out.busy.add(path)
        return
    parent = parent_chunks(sn) if parent_chunks is not None and sn is not None and _may_keep_cut(st.st_size) \
        else None
    as_size = chunking.cut_size(st.st_size, [n for _, n in parent]) if parent else None
    try:
        digest, refs = hash_file(local_path(root, path), st.st_size, as_size)
        if rn is not None and rn.kind == FILE and rn.size == st.st_size and _may_keep_cut(st.st_size) and \
                rn.content_hash not in (None, digest, sn.content_hash if sn is not None else None):
            # The server's version has this size and another hash: maybe these very bytes, cut
            # another way (kept from a parent, or by a client that cut by size). Same bytes, same hash.
            for other in (st.st_size, *chunking.neighbour_cut_sizes(st.st_size)):
                if other == (as_size or st.st_size):
                    continue
                again = hash_file(local_path(root, path), st.st_size, other)
                if again[0] == rn.content_hash:
                    digest, refs = again
                    break
        after = os.stat(local_path(root, path), follow_symlinks=False)
    except (OSError, SatchelError) as exc:
        out.problems[path] = f"cannot read the file: {exc}"
        out.unreadable.add(path)
        return
    if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        out.busy.add(path)  # written while we read it
        return
    out.local[path] = LocalNode(FILE, st.st_size, st.st_mtime_ns, st.st_ino, digest)
    out.chunks[path] = refs
