"""File writes that finish: ``os.pwrite`` may write fewer bytes than asked (a file system
filling up returns a short count before it returns ENOSPC), and a caller that ignores the count
leaves a hole of zeros where its bytes should be."""

from __future__ import annotations

import os


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """Write all of *data* at *offset*; a write that makes no progress raises ``OSError``."""
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        if done <= 0:
            raise OSError(f"pwrite wrote {done} of {len(view)} bytes")
        offset += done
        view = view[done:]
