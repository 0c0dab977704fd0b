"""Co-editing pieces without a server: text diffs in pycrdt's units (emoji, combining marks,
surrogate-free astral characters), the awareness codec under fuzz, deterministic merges."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc

from server.coedit import awareness, merge
from server.coedit.text import UNIT_BYTES, apply_diff, diff, text_of, units

# Letters that make position units differ: ASCII, 2-byte, 3-byte, 4-byte (emoji), a combining
# mark, a zero-width joiner, newlines.
ALPHABET = st.sampled_from(["a", "b", " ", "\n", "é", "漢", "😀", "👩", "\u0301", "\u200d"])
texts = st.lists(ALPHABET, max_size=40).map("".join)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_units_match_the_installed_pycrdt() -> None:
    doc: Doc = Doc()  # type: ignore[type-arg]
    t = text_of(doc)
    t += "a😀e\u0301"
    assert len(t) == units("a😀e\u0301") == (1 + 4 + 1 + 2 if UNIT_BYTES else 4)


@FAST
@given(old=texts, new=texts)
def test_apply_diff_reaches_the_new_text(old: str, new: str) -> None:
    doc: Doc = Doc()  # type: ignore[type-arg]
    t = text_of(doc)
    t += old
    with doc.transaction():
        apply_diff(t, old, new)
    assert str(t) == new


@FAST
@given(old=texts, new=texts)
def test_diff_ops_rebuild_new(old: str, new: str) -> None:
    out, pos = [], 0
    for i1, i2, j1, j2 in diff(old, new):
        out.append(old[pos:i1])
        out.append(new[j1:j2])
        pos = i2
    out.append(old[pos:])
    assert "".join(out) == new


def test_large_diff_stays_small_and_fast() -> None:
    old = "".join(f"line {i} 😀\n" for i in range(20_000))
    new = old.replace("line 100 😀\n", "line 100 changed\n").replace("line 15000 😀\n", "")
    ops = diff(old, new)
    assert len(ops) <= 3
    doc: Doc = Doc()  # type: ignore[type-arg]
    t = text_of(doc)
    t += old
    apply_diff(t, old, new)
    assert str(t) == new


def test_merge_is_the_same_on_every_node_and_keeps_live_edits() -> None:
    base = merge.initial(5, 1, "one\ntwo\nthree\n")
    live: Doc = Doc()  # type: ignore[type-arg]
    live.apply_update(base)
    text_of(live).insert(0, "LIVE ")
    u1, b1 = merge.revision_update(base, 5, 2, "one\n2\nthree\nfour\n")
    u2, b2 = merge.revision_update(base, 5, 2, "one\n2\nthree\nfour\n")
    assert (u1, b1) == (u2, b2)
    live.apply_update(u1)
    live.apply_update(u2)  # a second node's copy of the same merge changes nothing
    assert str(text_of(live)) == "LIVE one\n2\nthree\nfour\n"
    assert merge.text_of_state(b1) == "one\n2\nthree\nfour\n"


@FAST
@given(states=st.lists(st.tuples(st.integers(0, 2**53 - 1), st.integers(0, 2**53 - 1),
                                 st.sampled_from(["null", "{}", '{"user": {"name": "ä"}}', "[1, 2]"])),
                       max_size=5))
def test_awareness_round_trip(states: list[tuple[int, int, str]]) -> None:
    assert awareness.decode(awareness.encode(states)) == states


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=80))
def test_awareness_decode_fuzz(data: bytes) -> None:
    with contextlib.suppress(awareness.AwarenessError):  # that, or a decoded update: nothing else
        awareness.decode(data)


def test_awareness_table_rules() -> None:
    table = awareness.Table()
    table.apply([(1, 2, '{"a": 1}')], "s1", 0.0)
    table.apply([(1, 1, '{"old": 1}')], "s2", 1.0)  # an older clock loses
    assert table.entries[1].state == '{"a": 1}'
    table.apply([(1, 2, "null")], "s1", 2.0)  # the same clock may remove
    assert 1 not in table.entries
    table.apply([(2, 1, "{}"), (3, 1, "{}")], "s1", 3.0)
    gone = table.drop_owner("s1")
    assert gone is not None and sorted(c for c, _, _ in awareness.decode(gone)) == [2, 3]
    table.apply([(4, 1, "{}")], "s2", 0.0)
    assert table.expire(awareness.TIMEOUT + 1) is not None and not table.entries


@pytest.mark.parametrize("bad", [b"\x01", b"\x01\x01\x01\x05ab", b"\x01\x01\x01\x02{x", b"\x00\x00", b"\x81"])
def test_awareness_rejects(bad: bytes) -> None:
    with pytest.raises(awareness.AwarenessError):
        awareness.decode(bad)
