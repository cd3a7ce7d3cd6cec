"""Opening the database, and translating its errors into the domain's.

Two engines, one schema:

- SQLite (default, `sqlite+aiosqlite:///var/teleway.db`): one process, WAL journal,
  `synchronous=FULL`. SQLite allows one writer at a time, so every write of the store goes
  through a single writer connection in its own thread (`store.writer.Writer`); reads run in a
  small pool of reader threads beside it (WAL lets readers run during a write). Every SQLite
  transaction begins with `BEGIN IMMEDIATE` (takes the write lock at once, waiting up to
  busy_timeout) unless its connection is marked read-only: a deferred transaction that reads and
  then writes could otherwise fail half-way with SQLITE_BUSY_SNAPSHOT when another connection
  committed in between. Other components get an aiosqlite AsyncEngine on the same file.
- PostgreSQL (`postgresql+asyncpg://user@host/db`): several processes or nodes share it; each
  transaction runs on a pooled connection and the queue uses `FOR UPDATE SKIP LOCKED`.

Errors leave this package as `StoreUnavailable` / `StoreFull` (temporary: the ingress answers
with a retryable code) or `StoreRejected` (the data itself was refused: a bug, never retried),
always chained to the driver's exception (`raise ... from exc`).
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from teleway.core.ports import StoreFull, StoreUnavailable

T = TypeVar("T")

DEFAULT_URL = "sqlite+aiosqlite:///var/teleway.db"

# How long a SQLite connection waits for another process's write lock before giving up with
# "database is locked" (-> StoreUnavailable). Within this process writes never wait on each other
# in SQLite: they are serialised by the writer task.
SQLITE_BUSY_TIMEOUT_MS = 5_000

# synchronous=FULL: in WAL mode every COMMIT fsyncs the WAL before it returns, so a committed
# message survives a power loss, not only a process crash (NORMAL would only fsync at checkpoints
# and could lose the last transactions on power loss; the gateway has already said OK for them).
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
)

# Reader threads/connections for SQLite (the writer holds one more). Reads are short lookups.
SQLITE_POOL_SIZE = 4
PG_POOL_SIZE = 16  # per process; PostgreSQL's default max_connections is 100

# SQLSTATEs (PostgreSQL appendix A).
PG_DISK_FULL = "53100"
PG_OUT_OF_MEMORY = "53200"
PG_RETRYABLE = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected

# Execution option marking connections that only read: SQLite begins them DEFERRED.
READ_ONLY_OPTION = "teleway_read_only"


class StoreRejected(ValueError):
    """The database refused the data itself (duplicate id, value too long, broken reference).

    Not temporary: retrying the same write fails again, so this is a bug in the caller.
    """


class ConflictRetry(StoreUnavailable):
    """PostgreSQL aborted the transaction to resolve a deadlock or serialization conflict."""


class Database:
    """The engines of one database, and where the store's SQL runs.

    The store's SQL is written once, as plain functions of a synchronous SQLAlchemy
    `Connection`; `read()` (and `store.writer.Writer`) decide where such a function runs:

    - SQLite: in a thread of this object's reader pool, on a pysqlite connection. The function
      runs whole in one thread hop. (Through aiosqlite every statement costs 3-4 hops between
      the event loop and the connection's thread — cursor, execute, fetch, close — which
      measured 1.4 ms per statement on this 2-core machine under load, against 0.19 ms for one
      hop: too slow for the gateway's hot paths.)
    - PostgreSQL: on the asyncpg engine through `AsyncConnection.run_sync` (greenlets, no
      threads).

    `engine` is always an AsyncEngine (aiosqlite / asyncpg) on the same database, with the same
    connection settings, for other components (account directory, portal) and migrations.
    """

    def __init__(
        self, url: URL, engine: AsyncEngine, sync_engine: Engine | None = None, readers: int = 0
    ) -> None:
        self.url = url
        self.engine = engine
        self.sync_engine = sync_engine  # SQLite only
        self._readers: ThreadPoolExecutor | None = None
        if sync_engine is not None:
            self._readers = ThreadPoolExecutor(readers, thread_name_prefix="teleway-sqlite-read")

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.url.get_backend_name() == "postgresql"

    @cached_property
    def reader(self) -> AsyncEngine:
        """The async engine, for connections that only read: no write lock on SQLite, and
        autocommit on PostgreSQL (no BEGIN / ROLLBACK round trips around each lookup)."""
        if self.is_postgresql:
            return self.engine.execution_options(isolation_level="AUTOCOMMIT")
        return self.engine.execution_options(**{READ_ONLY_OPTION: True})

    async def read(self, query: Callable[[Connection], T]) -> T:
        """Run `query(connection)` in a read-only transaction; errors are translated."""
        with store_errors():
            if self.sync_engine is not None and self._readers is not None:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._readers, self._read_sync, query)
            async with self.reader.connect() as connection:
                return await connection.run_sync(query)

    def _read_sync(self, query: Callable[[Connection], T]) -> T:
        assert self.sync_engine is not None
        with self.sync_engine.connect() as connection:
            connection.execution_options(**{READ_ONLY_OPTION: True})
            return query(connection)

    async def close(self) -> None:
        try:
            await self.engine.dispose()
        finally:
            if self.sync_engine is not None:
                self.sync_engine.dispose()
            if self._readers is not None:
                self._readers.shutdown(wait=True)


def normalise_url(url: str | URL) -> URL:
    """Pick the async driver for plain URLs (`sqlite:///x.db`, `postgresql://...`)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgres":  # the libpq spelling
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif backend == "sqlite" and parsed.get_driver_name() != "aiosqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql" and parsed.get_driver_name() != "asyncpg":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif backend not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
    return parsed


def open_engine(
    url: str | URL = DEFAULT_URL,
    *,
    pool_size: int | None = None,
    max_overflow: int = 0,
    echo: bool = False,
) -> Database:
    """Build the engines for `url` with teleway's durability and pool settings.

    `pool_size`: connections kept open (SQLite: reader threads; the writer has its own).
    `max_overflow`: extra PostgreSQL connections opened under load and closed after (0 by
    default: opening one costs more than many transactions).
    SQLite: the file's directory is created if missing; in-memory databases are refused (the
    store needs several connections to one database). Nothing is connected yet.
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if path in ("", ":memory:") or path.startswith("file::memory:"):
            raise ValueError("the store needs a SQLite file, not an in-memory database")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        size = pool_size or SQLITE_POOL_SIZE
        engine = create_async_engine(parsed, pool_size=size, max_overflow=0, echo=echo)
        _sqlite_hooks(engine.sync_engine)
        # pysqlite: the reader threads' connections plus the writer thread's one
        sync_engine = create_engine(
            parsed.set(drivername="sqlite+pysqlite"),
            pool_size=size + 1,
            max_overflow=0,
            echo=echo,
        )
        _sqlite_hooks(sync_engine)
        return Database(parsed, engine, sync_engine, readers=size)
    # No pre-ping (a round trip per checkout): a connection
    # broken by a server restart fails one transaction with StoreUnavailable and is replaced.
    engine = create_async_engine(
        parsed, pool_size=pool_size or PG_POOL_SIZE, max_overflow=max_overflow, echo=echo
    )
    return Database(parsed, engine)


def _sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (it would not BEGIN before
        # SELECTs); SQLAlchemy's "begin" hook below emits BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock at BEGIN, so a transaction that reads then writes can never fail
        # halfway with SQLITE_BUSY_SNAPSHOT because another connection wrote meanwhile.
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def to_asyncpg_dsn(url: URL) -> str:
    """The libpq-style DSN asyncpg.connect() takes, for the LISTEN connection."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def translate(exc: BaseException) -> BaseException | None:
    """The domain error for a database or OS error, or None when it is none of ours."""
    if isinstance(exc, StoreUnavailable | StoreRejected):
        return exc
    if isinstance(exc, sa_exc.DBAPIError):
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None)
        text = str(orig)
        if sqlstate == PG_DISK_FULL or "database or disk is full" in text:
            return StoreFull(f"the database is full: {text}")
        if sqlstate == PG_OUT_OF_MEMORY:
            return StoreFull(f"the database is out of memory: {text}")
        if sqlstate in PG_RETRYABLE:
            return ConflictRetry(f"transaction conflict: {text}")
        if isinstance(exc, sa_exc.IntegrityError | sa_exc.DataError):
            return StoreRejected(f"the database refused the data: {text}")
        if (
            isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.InternalError)
            or exc.connection_invalidated
        ):
            return StoreUnavailable(f"the database is unavailable: {text}")
        return None
    if isinstance(exc, sqlite3.Error):  # raw sqlite3 (the writer's row-only batches)
        text = str(exc)
        if "database or disk is full" in text:
            return StoreFull(f"the database is full: {text}")
        if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
            return StoreRejected(f"the database refused the data: {text}")
        if isinstance(
            exc, sqlite3.OperationalError | sqlite3.InterfaceError | sqlite3.InternalError
        ):
            return StoreUnavailable(f"the database is unavailable: {text}")
        return None
    if isinstance(exc, sa_exc.TimeoutError):
        return StoreUnavailable(f"no database connection free: {exc}")
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StoreFull(f"disk full: {exc}")
        return StoreUnavailable(f"the database is unreachable: {exc}")
    pg_state = getattr(exc, "sqlstate", None)  # raw asyncpg errors (LISTEN connection)
    if isinstance(pg_state, str) and type(exc).__module__.startswith("asyncpg"):
        if pg_state == PG_DISK_FULL:
            return StoreFull(f"the database is full: {exc}")
        return StoreUnavailable(f"the database is unavailable: {exc}")
    return None


@contextmanager
def store_errors() -> Iterator[None]:
    """Translate database errors raised in the block (see `translate`)."""
    try:
        yield
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None or mapped is exc:
            raise
        raise mapped from exc
