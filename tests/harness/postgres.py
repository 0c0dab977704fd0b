"""A throwaway PostgreSQL database per test run on the server the test command made sure runs.

``SATCHEL_TEST_PG`` names the server (default: postgres@127.0.0.1:5432, trust auth; the Makefile
starts one when none runs). Each call creates ``satchel_test_<random>``; ``drop`` removes it.
"""

from __future__ import annotations

import asyncio
import os
import secrets

import asyncpg

ADMIN_DSN = os.environ.get("SATCHEL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database() -> str:
    """Create an empty database; return its SQLAlchemy URL."""
    name = "satchel_test_" + secrets.token_hex(6)
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
