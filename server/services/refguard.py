"""One guard between garbage collection and every transaction that adds chunk references.

A transaction that points a new revision at chunks the owner already stores (a commit, a restore,
a rewind) holds the guard *shared*; garbage collection holds it *exclusive* while it deletes
unreferenced chunk rows and expired revisions. So a collection can never decide "unreferenced"
while a reference is being written, and a writer never builds on a row collection is removing.

SQLite needs nothing: a process's write transactions run one at a time from their start (the
writer lock in ``server/storage/db.py``, taken before the session's first statement, which is
when SQLAlchemy sends ``BEGIN IMMEDIATE``).
PostgreSQL uses a transaction-scoped advisory lock, released at commit or rollback. Take it first
in a transaction, before any row lock (the owner's row in ``quota.charge``, the namespace row in
``journal.append``), so that waiting on it can never close a lock cycle.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

LOCK_KEY = 0x5A7C4E1  # any constant; only Satchel takes it


async def adding_references(s: AsyncSession) -> None:
    if s.get_bind().dialect.name == "postgresql":
        await s.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": LOCK_KEY})


async def collecting(s: AsyncSession) -> None:
    if s.get_bind().dialect.name == "postgresql":
        await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
