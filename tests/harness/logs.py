"""The logs of the processes tests start, so a failing test's report shows what they said meanwhile.

Every server process (``satchel serve``, rclone) registers its log file here; the hook in
``tests/conftest.py`` notes each file's size before a test and, if the test fails, attaches what
was written during it. A CI run is then diagnosable from its output alone.
"""

from __future__ import annotations

from pathlib import Path

TAIL = 6000  # characters of each log attached to a failure report

_watched: dict[Path, str] = {}


def watch(path: Path, name: str) -> None:
    _watched[path] = name


def sizes() -> dict[Path, int]:
    """The current size of every watched log (a mark to compare against later)."""
    out = {}
    for path in _watched:
        try:
            out[path] = path.stat().st_size
        except FileNotFoundError:
            out[path] = 0
    return out


def written_since(mark: dict[Path, int]) -> list[tuple[str, str]]:
    """(name, text) for each watched log that grew since *mark*: the last TAIL characters of it."""
    found = []
    for path, name in list(_watched.items()):
        start = mark.get(path, 0)
        try:
            with open(path, "rb") as f:
                size = f.seek(0, 2)
                if size <= start:
                    continue
                f.seek(max(start, size - TAIL))
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            continue
        found.append((f"{name} log ({path})", text))
    return found
