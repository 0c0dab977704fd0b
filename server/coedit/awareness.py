"""The y-protocols awareness encoding, and the table of awareness states of one document.

An awareness update is ``varUint(n)`` then n times ``varUint(clientID) varUint(clock)
varString(JSON state)`` (lib0 encoding); the state ``null`` means "removed". The server keeps
the newest state per client id (higher clock wins; an equal clock may only go to ``null``), who
owns it (which session, or which node relayed it), and when it was last renewed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

TIMEOUT = 30.0  # seconds: a state not renewed for this long is dropped (y-protocols' outdatedTimeout)
MAX_CLIENTS = 1000  # states one update may carry
MAX_STATE = 64 * 1024  # bytes of JSON per state
NULL = "null"


class AwarenessError(ValueError):
    pass


def _read_uint(buf: bytes, pos: int) -> tuple[int, int]:
    num = shift = 0
    while True:
        if pos >= len(buf):
            raise AwarenessError("awareness update ends early")
        byte = buf[pos]
        pos += 1
        num |= (byte & 0x7F) << shift
        if byte < 0x80:
            return num, pos
        shift += 7
        if shift > 63:
            raise AwarenessError("awareness varint too long")


def _write_uint(out: bytearray, num: int) -> None:
    while num > 0x7F:
        out.append(0x80 | (num & 0x7F))
        num >>= 7
    out.append(num)


def decode(update: bytes) -> list[tuple[int, int, str]]:
    """[(client id, clock, state JSON)] of an awareness update, or ``AwarenessError``."""
    count, pos = _read_uint(update, 0)
    if count > MAX_CLIENTS:
        raise AwarenessError(f"at most {MAX_CLIENTS} states per awareness update")
    out = []
    for _ in range(count):
        client, pos = _read_uint(update, pos)
        clock, pos = _read_uint(update, pos)
        size, pos = _read_uint(update, pos)
        if size > MAX_STATE or pos + size > len(update):
            raise AwarenessError("awareness state too long or cut off")
        try:
            state = update[pos:pos + size].decode("utf-8")
            json.loads(state)
        except ValueError as exc:
            raise AwarenessError("an awareness state is not JSON") from exc
        pos += size
        if client >= 2**53 or clock >= 2**53:
            raise AwarenessError("awareness client id or clock out of range")
        out.append((client, clock, state))
    if pos != len(update):
        raise AwarenessError("bytes after the awareness update")
    return out


def encode(states: list[tuple[int, int, str]]) -> bytes:
    out = bytearray()
    _write_uint(out, len(states))
    for client, clock, state in states:
        _write_uint(out, client)
        _write_uint(out, clock)
        data = state.encode("utf-8")
        _write_uint(out, len(data))
        out += data
    return bytes(out)


@dataclass
class Entry:
    clock: int
    state: str
    owner: str  # a local session's key, or "node:<name>" for states relayed by another node
    seen: float


class Table:
    def __init__(self) -> None:
        self.entries: dict[int, Entry] = {}

    def apply(self, states: list[tuple[int, int, str]], owner: str, now: float) -> None:
        """Take the states that are newer than what is known (as y-protocols does)."""
        for client, clock, state in states:
            cur = self.entries.get(client)
            if cur is None or cur.clock < clock or (cur.clock == clock and state == NULL and cur.state != NULL):
                if state == NULL:
                    self.entries.pop(client, None)
                else:
                    self.entries[client] = Entry(clock, state, owner, now)
            elif cur.clock == clock and state == cur.state:
                cur.seen = now  # a renewal relayed twice

    def snapshot(self) -> bytes | None:
        if not self.entries:
            return None
        return encode([(c, e.clock, e.state) for c, e in self.entries.items()])

    def drop(self, pred: object) -> bytes | None:
        """Remove the states whose owner matches *pred* (a callable on (owner, entry)); returns the
        update that tells others they are gone (clock + 1, state null), or None."""
        assert callable(pred)
        gone = [(c, e.clock + 1, NULL) for c, e in self.entries.items() if pred(e.owner, e)]
        for c, _clock, _state in gone:
            del self.entries[c]
        return encode(gone) if gone else None

    def drop_owner(self, owner: str) -> bytes | None:
        return self.drop(lambda o, _e: o == owner)

    def expire(self, now: float, timeout: float = TIMEOUT) -> bytes | None:
        return self.drop(lambda _o, e: now - e.seen > timeout)
