"""Database engine, sessions and migrations, for SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with ``synchronous=FULL`` (an acknowledged commit survives power loss)
and write transactions open with ``BEGIN IMMEDIATE``, so two writers never fail on a lock
upgrade. Writers of one process take turns on an asyncio lock first (first come, first served):
left to SQLite's busy handler, a waiting writer polls with sleeps growing to 100 ms, and the
lock sat idle between batches of small files for most of their time (a 1,000-file sync spent
2.9 s of its connections' time asleep there). Another process (``satchel admin``) still queues
on the busy timeout. Use ``db.write()`` for anything that changes rows and ``db.read()`` for
pure reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Row, event, insert
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import InstrumentedAttribute

from server.core.errors import ErrorCode, SatchelError

log = logging.getLogger(__name__)
T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"
WRITER_WAIT = 30.0  # seconds a writer waits for its turn (SQLite's busy timeout is the same)
# A big file's commit inserts a row per chunk into revision_chunks, whose hash index takes them at
# random places: ~1,700 rows dirty most of its pages. With SQLite's defaults (2 MB page cache, a
# checkpoint once the WAL passes 1,000 pages) every such commit re-read those pages and then
# copied the whole WAL into the database and fsynced it. A 1-byte edit of a 255 MiB file (a
# database holding ~100 revisions of it) committed in 0.35-0.38 s (median of 20), now 0.21-0.22 s:
# a checkpoint every 64 MiB of WAL, the WAL cut back to 64 MiB after it, 32 MiB of page cache
# per connection (filled only as pages are read).
SQLITE_CACHE_PRAGMAS = ("cache_size=-32768", "wal_autocheckpoint=16384", "journal_size_limit=67108864")


def now_ms() -> int:
    return int(time.time() * 1000)


async def insert_returning(s: AsyncSession, model: type[Any], rows: list[dict[str, Any]],
                           *returning: InstrumentedAttribute[Any]) -> list[Row[Any]]:
    """INSERT *rows* into *model*'s table and return the *returning* columns of each row, in no
    particular order (return a column that tells the rows apart). SQLAlchemy packs the rows into
    a few multi-row statements within each database's parameter limit. An ORM flush of new
    objects sends one statement per row where the database cannot promise to return generated
    ids in parameter order (SQLite): for 230 files of a batch, 0.1-0.3 s instead of ~10 ms."""
    if not rows:
        return []
    return list((await s.execute(insert(model.__table__).returning(*returning), rows)).all())


def _sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000",
                       *SQLITE_CACHE_PRAGMAS):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("satchel_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.dialect = "sqlite" if self.is_sqlite else "postgresql"
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            kwargs.update(pool_size=20, max_overflow=20, pool_pre_ping=True)
        self.engine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _sqlite_hooks(self.engine)
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self.after_commit: Callable[[list[Any]], None] | None = None
        self._write = async_sessionmaker(
            self.engine.execution_options(satchel_write=True), expire_on_commit=False
        )
        self._writers: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None  # see the module doc

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._read() as session:
                yield session
        except IntegrityError as exc:
            # A unique constraint caught a race the checks before it could not see (two commits
            # creating one path at once on PostgreSQL): the loser changed nothing and may retry.
            raise SatchelError(ErrorCode.conflict, "a concurrent change got there first; try again") from exc
        except (OperationalError, DBAPIError) as exc:
            raise _unavailable(exc) from exc

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that commits on normal exit and rolls back on any exception.

        Journal entries the transaction appended (``session.info["journal"]``) are handed to
        ``after_commit`` once the commit succeeded, never before and never after a rollback.
        """
        try:
            async with self._writer_turn(), self._write() as session:
                async with session.begin():
                    yield session
                entries = session.info.pop("journal", None)
                if entries and self.after_commit is not None:
                    self.after_commit(entries)
        except IntegrityError as exc:
            # A unique constraint caught a race the checks before it could not see (two commits
            # creating one path at once on PostgreSQL): the loser changed nothing and may retry.
            raise SatchelError(ErrorCode.conflict, "a concurrent change got there first; try again") from exc
        except (OperationalError, DBAPIError) as exc:
            raise _unavailable(exc) from exc

    @asynccontextmanager
    async def _writer_turn(self) -> AsyncIterator[None]:
        """This process's turn to write (SQLite), waiting at most WRITER_WAIT like the busy timeout."""
        if self._writers is None:
            yield
            return
        try:
            await asyncio.wait_for(self._writers.acquire(), WRITER_WAIT)
        except TimeoutError as exc:
            raise SatchelError(ErrorCode.unavailable, "the database is busy; try again") from exc
        try:
            yield
        finally:
            self._writers.release()

    async def retry_races(self, attempt: Callable[[], Awaitable[T]], tries: int = 3) -> T:
        """Run *attempt* (one ``write`` transaction) again when a unique constraint caught a
        concurrent create (two uploads into one new folder on PostgreSQL): the loser rolled back
        whole, and on the next try it finds what the winner made."""
        for n in range(tries - 1):
            try:
                return await attempt()
            except SatchelError as exc:
                if not isinstance(exc.__cause__, IntegrityError):
                    raise
                log.info("write race (%s); trying again (%d)", exc.__cause__.__class__.__name__, n + 1)
        return await attempt()

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent)."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        def run(sync_conn: Any) -> None:
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, "head")

        async with self.engine.begin() as conn:
            await conn.run_sync(run)

    async def close(self) -> None:
        await self.engine.dispose()


def _unavailable(exc: Exception) -> SatchelError:
    log.warning("database error: %s", type(exc).__name__)
    return SatchelError(ErrorCode.unavailable, "the database is unavailable, try again")
