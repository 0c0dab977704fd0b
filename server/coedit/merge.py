"""Merging a file revision made outside the document (desktop sync, CLI, REST) into it.

The revision's text is diffed against the text of the document's base revision (the one it was
last saved as or merged from), and the difference is made as Y.Text deletes and inserts in a
*fork* of the base state, not in the live document. Applied to the live document, that update
lands where the base text was, around whatever was typed since: both sides' edits are kept.

The fork's client id is derived from (file, revision), and the base state is the one stored in the
database, so every node that merges the same revision makes the same update, byte for byte, and
applying it twice changes nothing: nodes need not agree on who merges.
"""

from __future__ import annotations

import hashlib

from pycrdt import Doc

from server.coedit.text import YDoc, apply_diff, text_of


def fork_client_id(file_id: int, rev: int) -> int:
    digest = hashlib.blake2b(f"satchel-coedit:{file_id}:{rev}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**53 - 1)  # Yjs client ids are 53-bit safe integers


def initial(file_id: int, rev: int, text: str) -> bytes:
    """The first state of a document made from a revision's text (the same on every node)."""
    doc: YDoc = Doc(client_id=fork_client_id(file_id, rev))
    if text:
        text_of(doc).insert(0, text)
    return doc.get_update()


def revision_update(base_state: bytes, file_id: int, rev: int, new_text: str) -> tuple[bytes, bytes]:
    """(the update that turns the base text into *new_text*, the new base state)."""
    fork: YDoc = Doc(client_id=fork_client_id(file_id, rev))
    fork.apply_update(base_state)
    text = text_of(fork)
    before = fork.get_state()
    with fork.transaction():
        apply_diff(text, str(text), new_text)
    return fork.get_update(before), fork.get_update()


def text_of_state(state: bytes) -> str:
    doc: YDoc = Doc()
    doc.apply_update(state)
    return str(text_of(doc))
