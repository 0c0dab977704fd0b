"""The change journal: one row per mutation, written in the mutation's own transaction.

``seq`` grows by exactly one per namespace. Taking it with ``UPDATE … RETURNING`` row-locks the
namespace until the transaction ends, so journal order is commit order within a namespace.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from server.services import search_index
from server.storage.db import now_ms
from server.storage.models import JournalEntry, Namespace


async def append(s: AsyncSession, ns_id: int, *, op: str, kind: str, node_id: int, path: str,
                 user_id: int, device_id: int | None, **fields: Any) -> int:
    seq = (await s.execute(
        update(Namespace).where(Namespace.id == ns_id).values(seq=Namespace.seq + 1).returning(Namespace.seq)
    )).scalar_one()
    entry = JournalEntry(ns_id=ns_id, seq=seq, op=op, kind=kind, node_id=node_id, path=path,
                         user_id=user_id, device_id=device_id, created_ms=now_ms(),
                         size=fields.pop("size", 0), **fields)
    s.add(entry)
    await search_index.on_entry(s, entry)  # names and paths stay searchable, in the same transaction
    s.info.setdefault("journal", []).append(entry)  # rung on the bus once the transaction commits
    return int(seq)


async def append_many(s: AsyncSession, ns_id: int, rows: list[dict[str, Any]]) -> list[JournalEntry]:
    """``append`` for many entries of one namespace at once (a batch commit): one ``seq`` update,
    one insert, the search index kept in bulk. *rows* hold ``append``'s keyword arguments."""
    if not rows:
        return []
    last = (await s.execute(
        update(Namespace).where(Namespace.id == ns_id).values(seq=Namespace.seq + len(rows))
        .returning(Namespace.seq)
    )).scalar_one()
    now = now_ms()
    entries = [JournalEntry(ns_id=ns_id, seq=last - len(rows) + 1 + i, created_ms=now, **{"size": 0, **r})
               for i, r in enumerate(rows)]
    s.add_all(entries)
    await search_index.on_entries(s, entries)
    s.info.setdefault("journal", []).extend(entries)
    return entries
