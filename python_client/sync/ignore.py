"""What the sync leaves alone: defaults, ``.satchelignore`` (gitignore syntax, at the folder's
top) and selective sync (folders this device excludes). Applies to both sides: an ignored local
file is not uploaded, an ignored remote file is not downloaded."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pathspec

from server.core import paths

log = logging.getLogger(__name__)
IGNORE_FILE = ".satchelignore"
DEFAULTS = [
    "/.satchel/",               # this folder's state, trash and log
    "*.satchel-part",           # downloads in progress
    "*.satchel-old",            # a replaced version, removed once its rename is done
    ".DS_Store", "Thumbs.db", "desktop.ini", "Icon\r",
    "*.swp", "*.swo", "*.swx", "*~", ".#*", "#*#",  # editor swap, backup and lock files
    ".~lock.*#", "~$*",         # LibreOffice and MS Office lock files
]


class Ignore:
    def __init__(self, root: Path, excludes: Iterable[str] = ()) -> None:
        self.root = root
        self.excludes = [paths.normalize(e) for e in excludes]
        lines = list(DEFAULTS)
        try:
            with open(root / IGNORE_FILE, encoding="utf-8") as f:
                lines.extend(line.rstrip("\n") for line in f)
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read %s: %s", IGNORE_FILE, exc)
        self.spec = pathspec.GitIgnoreSpec.from_lines(lines)

    def __call__(self, path: str, is_dir: bool) -> bool:
        """True if *path* (``/a/b``) is ignored or excluded."""
        if any(paths.is_within(path, e) for e in self.excludes):
            return True
        rel = path.lstrip("/") + ("/" if is_dir else "")
        return bool(self.spec.match_file(rel))
