"""A throwaway PostgreSQL database per test run on the server the test command made sure runs.

``SATCHEL_TEST_PG`` names the server (default: postgres@127.0.0.1:5432, trust auth; the Makefile
starts one when none runs). Each call creates ``satchel_test_<random>``; ``drop`` removes it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

import asyncpg

ADMIN_DSN = os.environ.get("SATCHEL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin(sql: str) -> None:
    """Run one statement; in a thread of its own so it works from inside a running event loop."""

    async def run() -> None:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def create_database() -> str:
    """Create an empty database; return its SQLAlchemy URL."""
    name = "satchel_test_" + secrets.token_hex(6)
    _admin(f'CREATE DATABASE "{name}"')
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
