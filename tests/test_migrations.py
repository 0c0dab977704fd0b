"""The schema comes from Alembic migrations, on both databases, and upgrading twice is a no-op."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from server.storage.db import Database
from server.storage.models import Base
from tests.harness import postgres


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_migrations_build_the_model_schema(engine, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}" if engine == "sqlite" else postgres.create_database()
    db = Database(url)
    try:
        await db.migrate()
        await db.migrate()  # idempotent
        async with db.engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            columns = {t: {c["name"] for c in await conn.run_sync(lambda c, t=t: inspect(c).get_columns(t))}
                       for t in Base.metadata.tables}
        assert set(Base.metadata.tables) <= tables and "alembic_version" in tables
        for name, table in Base.metadata.tables.items():
            assert {c.name for c in table.columns} == columns[name], name
    finally:
        await db.close()
        if engine == "postgresql":
            postgres.drop_database(url)


async def test_sqlite_writers_take_turns_and_a_stuck_turn_is_unavailable_not_a_hang(tmp_path, monkeypatch):
    """Writers of one process queue on the writer lock (no busy-handler sleeps); one that cannot
    get its turn within WRITER_WAIT gets ``unavailable``, as SQLite's busy timeout would say."""
    import asyncio

    from sqlalchemy import text

    from server.core.errors import ErrorCode, SatchelError
    from server.storage import db as dbmod

    db = dbmod.Database(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    async with db.write() as s:
        await s.execute(text("CREATE TABLE t (n INTEGER)"))
    order: list[int] = []

    async def add(n: int) -> None:
        async with db.write() as s:
            await s.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
            await asyncio.sleep(0.01)
            order.append(n)

    await asyncio.gather(*(add(n) for n in range(10)))
    assert order == list(range(10))  # first come, first served
    monkeypatch.setattr(dbmod, "WRITER_WAIT", 0.2)
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with db.write() as s:
            await s.execute(text("INSERT INTO t VALUES (100)"))
            held.set()
            await release.wait()

    holder = asyncio.ensure_future(hold())
    await held.wait()
    with pytest.raises(SatchelError) as err:
        await add(11)
    assert err.value.code is ErrorCode.unavailable
    release.set()
    await holder
    await add(12)  # the lock was not left taken by the one that gave up
    async with db.read() as s:
        assert (await s.execute(text("SELECT count(*) FROM t"))).scalar() == 12
    await db.engine.dispose()
