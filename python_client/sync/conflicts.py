"""Conflicted-copy names: ``name (conflicted copy, DEVICE, YYYY-MM-DD).ext``."""

from __future__ import annotations

import os
import re
from collections.abc import Container

from server.core import paths

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def conflicted_name(path: str, device: str, day: str, taken: Container[str]) -> str:
    """A free sibling path of *path* for the losing side's bytes (``day`` is YYYY-MM-DD).
    A number is added when the name is taken (several conflicts on one day)."""
    parent, name = paths.parent(path), paths.name(path)
    stem, ext = os.path.splitext(name)
    if not stem:  # ".bashrc": the whole name is the stem
        stem, ext = name, ""
    device = _UNSAFE.sub("_", device)[:64] or "device"
    for n in range(1, 10_000):
        suffix = "" if n == 1 else f" {n}"
        tail = f" (conflicted copy, {device}, {day}{suffix}){ext}"
        room = paths.MAX_SEGMENT_BYTES - len(tail.encode())
        short = stem.encode()[:room].decode(errors="ignore")  # a name stays within 255 bytes
        candidate = paths.join(parent, short + tail)
        if candidate not in taken:
            return candidate
    raise RuntimeError(f"no free conflicted-copy name for {path}")  # 10,000 conflicts in one day
