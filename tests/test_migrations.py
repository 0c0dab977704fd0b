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
