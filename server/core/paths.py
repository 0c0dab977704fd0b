"""Path names: one normal form, validated the same way on every end (protocol.md, "Paths").

A path is absolute inside a namespace: ``/`` for the root, ``/a/b.txt`` otherwise; segments are
NFC-normalized Unicode, separated by ``/``. Refused: empty segments, ``.`` and ``..``, NUL and other
control characters, backslashes, segments over 255 UTF-8 bytes, paths over 4096 UTF-8 bytes.
"""

from __future__ import annotations

import unicodedata

from server.core.errors import ErrorCode, SatchelError

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 4096
ROOT = "/"


def _bad(message: str, path: str) -> SatchelError:
    # The refused path is echoed back as JSON, so a lone surrogate in it must not break the encoding.
    return SatchelError(ErrorCode.invalid_path, message, path=path.encode("utf-8", "backslashreplace").decode())


def validate_segment(segment: str, path: str) -> str:
    seg = unicodedata.normalize("NFC", segment)
    if seg == "":
        raise _bad("empty path segment", path)
    if seg in (".", ".."):
        raise _bad("'.' and '..' are not allowed in paths", path)
    if "\\" in seg:
        raise _bad("backslash is not allowed in names", path)
    for ch in seg:
        if ord(ch) < 0x20 or ord(ch) == 0x7F or unicodedata.category(ch) in ("Cc", "Cs"):
            raise _bad("control characters are not allowed in names", path)
    if len(seg.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise _bad(f"a name is longer than {MAX_SEGMENT_BYTES} bytes", path)
    return seg


def normalize(path: object) -> str:
    """Return the normal form of *path* or raise ``SatchelError(invalid_path)``.

    A missing leading slash is added and one trailing slash is dropped, so ``a/b`` and ``/a/b/``
    both mean ``/a/b``; anything else irregular is refused rather than guessed at.
    """
    if not isinstance(path, str):
        raise _bad("path must be a string", repr(path)[:100])
    if path in ("", "/"):
        return ROOT
    body = path[1:] if path.startswith("/") else path
    if body.endswith("/"):
        body = body[:-1]
    segments = [validate_segment(s, path) for s in body.split("/")]
    out = "/" + "/".join(segments)
    if len(out.encode("utf-8")) > MAX_PATH_BYTES:
        raise _bad(f"path is longer than {MAX_PATH_BYTES} bytes", path[:200])
    return out


def parent(path: str) -> str:
    """Parent of a normalized path (``/`` for top-level entries and for the root itself)."""
    if path == ROOT:
        return ROOT
    head = path.rsplit("/", 1)[0]
    return head or ROOT


def name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def join(base: str, child: str) -> str:
    return normalize(base.rstrip("/") + "/" + child)


def ancestors(path: str) -> list[str]:
    """Proper ancestors of a normalized path, top-down, excluding the root: /a/b/c -> [/a, /a/b]."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def is_within(path: str, folder: str) -> bool:
    """True if *path* is *folder* or lies below it."""
    return folder == ROOT or path == folder or path.startswith(folder + "/")


def descendant_range(folder: str) -> tuple[str, str]:
    """Half-open string range [lo, hi) that holds exactly the paths strictly below *folder*.

    '/' sorts right before '0', so ``folder + '/'`` .. ``folder + '0'`` bounds the subtree without
    LIKE patterns (and so without escaping '%' or '_' in user names).
    """
    base = "" if folder == ROOT else folder
    return base + "/", base + "0"
