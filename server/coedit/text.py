"""Text positions and diffs for pycrdt's ``Text``.

pycrdt (0.14) counts ``Text`` positions in UTF-8 bytes, Yjs in UTF-16 code units and Python in
code points. Positions never cross the wire (updates carry CRDT ids), so only this side's unit
matters here: ``UNIT_BYTES`` is probed once at import, so a pycrdt that switches units still works.
"""

from __future__ import annotations

import difflib
from typing import Any

from pycrdt import Doc, Text

YDoc = Doc[Any]  # pycrdt's Doc is generic over its root types; ours holds one Text

TEXT = "text"  # the name of the document's one Y.Text (protocol.md)
REFINE_LIMIT = 20_000  # a replaced block of lines up to this many characters is diffed per character


def _probe_bytes() -> bool:
    doc: YDoc = Doc()
    t: Text = doc.get("probe", type=Text)
    t += "é"
    return len(t) == 2


UNIT_BYTES = _probe_bytes()


def units(s: str) -> int:
    """The length of *s* in pycrdt's position units."""
    return len(s.encode("utf-8", "surrogatepass")) if UNIT_BYTES else len(s)


def text_of(doc: YDoc) -> Text:
    text: Text = doc.get(TEXT, type=Text)
    return text


def _char_ops(old: str, new: str, base: int, base_new: int) -> list[tuple[int, int, int, int]]:
    """(i1, i2, j1, j2) code point ranges where *old* and *new* differ, offset by base / base_new."""
    out = []
    sm = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag != "equal":
            out.append((base + i1, base + i2, base_new + j1, base_new + j2))
    return out


def diff(old: str, new: str) -> list[tuple[int, int, int, int]]:
    """Code point ranges (i1, i2, j1, j2): replace old[i1:i2] with new[j1:j2], in order.

    Small: the common prefix and suffix are cut first (the usual edit touches one place), then
    lines are matched, and a replaced block of lines is refined per character when it is small."""
    p = 0
    top = min(len(old), len(new))
    while p < top and old[p] == new[p]:
        p += 1
    s = 0
    while s < top - p and old[len(old) - 1 - s] == new[len(new) - 1 - s]:
        s += 1
    a, b = old[p:len(old) - s], new[p:len(new) - s]
    if not a or not b:
        return [(p, p + len(a), p, p + len(b))] if a or b else []
    if len(a) + len(b) <= REFINE_LIMIT:
        return _char_ops(a, b, p, p)
    la, lb = a.splitlines(keepends=True), b.splitlines(keepends=True)
    oa = [0]
    for line in la:
        oa.append(oa[-1] + len(line))
    ob = [0]
    for line in lb:
        ob.append(ob[-1] + len(line))
    out: list[tuple[int, int, int, int]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, la, lb).get_opcodes():
        if tag == "equal":
            continue
        ca, cb = a[oa[i1]:oa[i2]], b[ob[j1]:ob[j2]]
        if tag == "replace" and len(ca) + len(cb) <= REFINE_LIMIT:
            out.extend(_char_ops(ca, cb, p + oa[i1], p + ob[j1]))
        else:
            out.append((p + oa[i1], p + oa[i2], p + ob[j1], p + ob[j2]))
    return out


def apply_diff(text: Text, old: str, new: str) -> None:
    """Turn *text* (whose content is *old*) into *new* with a minimal set of deletes and inserts.
    Call inside a transaction so it travels as one update."""
    ops = diff(old, new)
    # Unit offsets of each op's start, computed forwards once; applied backwards so that earlier
    # offsets stay valid while later parts change.
    starts: list[tuple[int, int]] = []
    pos = at = 0
    for i1, i2, _j1, _j2 in ops:
        at += units(old[pos:i1])
        start = at
        at += units(old[i1:i2])
        pos = i2
        starts.append((start, at))
    for (i1, i2, j1, j2), (ua, ub) in zip(reversed(ops), reversed(starts), strict=True):
        if i2 > i1:
            del text[ua:ub]
        if j2 > j1:
            text.insert(ua, new[j1:j2])
