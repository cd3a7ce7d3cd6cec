"""The durable store: messages, deliveries (the work queue), events, blobs.

    store = await open_store("sqlite+aiosqlite:///var/teleway.db")   # or postgresql+asyncpg://...
    await accept(submission, store=store.messages, clock=clock, ids=ids)
    leases = await store.queue.lease(worker="node1-w1", now=clock.now(), limit=50,
                                     lease_for=DEFAULT_LEASE)
    ...
    await store.close()

`open_store` refuses a database whose schema is not at the migrations' head
(`migrations.SchemaMismatch`) unless `migrate=True` upgrades it first. See docs/store.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from teleway.store.engine import DEFAULT_URL, Database, StoreRejected, open_engine
from teleway.store.messages import SqlMessageStore
from teleway.store.migrations import SchemaMismatch, check_current, upgrade
from teleway.store.outbox import SqlOutbox
from teleway.store.queue import SqlWorkQueue
from teleway.store.writer import MAX_PENDING, WorkSignal, Writer

__all__ = [
    "DEFAULT_URL",
    "SchemaMismatch",
    "SqlMessageStore",
    "SqlOutbox",
    "SqlWorkQueue",
    "Store",
    "StoreRejected",
    "open_store",
]


@dataclass(frozen=True, kw_only=True)
class Store:
    """An open database: `messages` is the MessageStore, `queue` the WorkQueue; both share one
    group-commit writer. Close it once, when the process stops."""

    db: Database
    messages: SqlMessageStore
    queue: SqlWorkQueue
    outbox: SqlOutbox
    writer: Writer
    signal: WorkSignal

    @property
    def engine(self) -> AsyncEngine:
        return self.db.engine

    async def close(self) -> None:
        """Commit what is pending, stop listening, close every connection."""
        try:
            await self.writer.close()
            await self.signal.close()
        finally:
            await self.db.close()


async def open_store(
    url: str | URL = DEFAULT_URL,
    *,
    migrate: bool = False,
    pool_size: int | None = None,
    max_overflow: int = 0,
    max_pending: int = MAX_PENDING,
) -> Store:
    """Open the store at `url`; with `migrate`, upgrade its schema first, else check it is at
    head (raises SchemaMismatch). Raises StoreUnavailable when the database cannot be reached.
    `pool_size` / `max_overflow`: see `engine.open_engine`. `max_pending` bounds the writes
    waiting for the group-commit writer (past it: StoreFull)."""
    db = open_engine(url, pool_size=pool_size, max_overflow=max_overflow)
    try:
        if migrate:
            await upgrade(db.url)
        await check_current(db.url)
    except BaseException:
        await db.close()
        raise
    signal = WorkSignal(db)
    writer = Writer(db, signal, max_pending=max_pending)
    return Store(
        db=db,
        messages=SqlMessageStore(db, writer),
        queue=SqlWorkQueue(db, writer, signal),
        outbox=SqlOutbox(db, writer),
        writer=writer,
        signal=signal,
    )
