"""Local change events from watchdog (inotify, FSEvents, ReadDirectoryChangesW), as a doorbell.

Events only wake the engine; each round rescans the folder (cheap for unchanged files: a stat
each), so a lost or coalesced event cannot lose a change: an inotify queue overflow, a sleep or a
watch that failed to start is covered by the next wake-up or the periodic rescan.

Some events also say a file's writer is done with it, which spares the scanner's wait for a
recently modified file to settle (``finished_since``): a close after writing (inotify's
IN_CLOSE_WRITE), or a file that arrived inside a folder moved in from elsewhere (watchdog's
synthetic "created" events for its contents: written before the move). The file's identity,
size and mtime are read at the event; the scanner trusts it only while they are unchanged, and
only once the mtime is older than a file-system timestamp tick (``past_a_tick``), so a write after the
scan always changes the mtime the sync state remembers (git's "racily clean" rule).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from python_client.chunk_cache import past_a_tick

log = logging.getLogger(__name__)
FINISHED_KEPT = 100_000


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads do not change anything
        if self.watcher.is_private(str(event.src_path)) and self.watcher.is_private(
                str(event.dest_path or event.src_path)):
            return  # our own state database, trash and log
        if not event.is_directory and (event.event_type == "closed" or
                                       (event.event_type == "created" and event.is_synthetic)):
            self.watcher.finished(str(event.src_path))
        self.watcher.ring()


class Watcher:
    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.root, self.loop = root, loop
        self.private = str(root / ".satchel")
        self.event = asyncio.Event()
        self.last = 0.0
        self.observer = Observer()
        self._finished: dict[str, tuple[int, int, int]] = {}  # path -> (inode, size, mtime_ns) when seen done

    def is_private(self, path: str) -> bool:
        return path == self.private or path.startswith(self.private + os.sep)

    def finished(self, path: str) -> None:  # from the observer's thread
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return
        if len(self._finished) >= FINISHED_KEPT:  # bounded: a forgotten entry only means a wait
            self._finished.clear()
        self._finished[path] = (st.st_ino, st.st_size, st.st_mtime_ns)

    def finished_since(self, path: str, st: os.stat_result) -> bool:
        """Is *path* (absolute, now *st*) as its writer left it, and past a timestamp tick?"""
        return self._finished.get(path) == (st.st_ino, st.st_size, st.st_mtime_ns) \
            and past_a_tick(st.st_mtime_ns, time.time_ns())

    def ring(self) -> None:  # from the observer's thread
        self.last = time.monotonic()
        self.loop.call_soon_threadsafe(self.event.set)

    def start(self) -> None:
        try:
            self.observer.schedule(_Handler(self), str(self.root), recursive=True)
            self.observer.start()
        except OSError as exc:  # e.g. inotify watch limit: periodic rescans still find changes
            log.warning("cannot watch %s (%s); relying on periodic rescans", self.root, exc)

    def stop(self) -> None:
        if self.observer.is_alive():
            self.observer.stop()
            self.observer.join(5)

    async def settled(self, quiet: float, at_most: float) -> None:
        """After an event: wait until no event came for *quiet* seconds (at most *at_most*), so a
        burst (an editor's save dance, an unpacked archive) makes one round."""
        deadline = time.monotonic() + at_most
        while (now := time.monotonic()) < deadline and now - self.last < quiet:  # noqa: ASYNC110 (a timer, not a wait for a flag)
            await asyncio.sleep(min(quiet - (now - self.last), deadline - now))
        self.event.clear()
