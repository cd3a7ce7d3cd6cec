"""Group commit: many writers, one transaction, one fsync.

Every `add_message` call (and, on SQLite, every queue write) is handed to one writer task as a
pending item. The task takes everything pending, runs it in ONE transaction (the new rows of all
messages as three `executemany` inserts, then each queue write in arrival order), commits, and
only then resolves each caller's future. On SQLite that turns N fsyncs into one; on PostgreSQL it
turns N round trips and commits into a few.

Failure: the batch's transaction is rolled back, so nothing of it is stored. If the error is
temporary (`StoreUnavailable`, `StoreFull`: database down, locked, disk full) every caller of the
batch gets it. If the data was refused (`StoreRejected`: a duplicate id) or a queue write raised,
each item is run again alone, in its own transaction, so only the culprit fails.

Backpressure: at most `max_pending` items may wait for the writer (those already in the running
batch not counted). Past that `add_message` raises `StoreFull` at once: the store is not keeping
up, and the ingress answers with a temporary error (SMPP ESME_RMSGQFUL, SMTP 451, HTTP 503)
instead of piling up memory and latency.

On PostgreSQL queue writes do not go through the writer: each runs in its own transaction on a
pooled connection (row locks and SKIP LOCKED keep workers apart; the server groups concurrent
commits into one WAL flush by itself), retried on deadlock or serialization failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from teleway.core.ports import StoreFull, StoreUnavailable
from teleway.store.engine import (
    ConflictRetry,
    Database,
    store_errors,
    to_asyncpg_dsn,
    translate,
)
from teleway.store.rows import DELIVERY_COLUMNS, EVENT_COLUMNS, MESSAGE_COLUMNS

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[Connection], T]

WORK_CHANNEL = "teleway_work"  # PostgreSQL LISTEN/NOTIFY channel for "new work may be due"
MAX_PENDING = 10_000  # items waiting for the writer before add_message refuses with StoreFull
MAX_BATCH_ROWS = 20_000  # rows (messages + deliveries) in one transaction: bounds commit latency
CONFLICT_ATTEMPTS = 5  # PostgreSQL deadlock / serialization failures retried this often


class _Pending:
    __slots__ = ("deliveries", "events", "future", "job", "message", "size", "wakes")

    def __init__(
        self,
        future: asyncio.Future[Any],
        *,
        message: tuple[Any, ...] | None = None,
        deliveries: list[tuple[Any, ...]] | None = None,
        events: list[tuple[Any, ...]] | None = None,
        job: Job[Any] | None = None,
        wakes: bool = False,
    ) -> None:
        self.future = future
        self.message = message
        self.deliveries = deliveries or []
        self.events = events or []
        self.job = job
        self.wakes = wakes
        self.size = 1 + len(self.deliveries)


class WorkSignal:
    """Wakes `wait_for_work` callers: at once for commits of this process, through
    LISTEN/NOTIFY for commits of other processes on PostgreSQL.

    The signal is sticky: a commit made while nobody waits makes the next wait return at once.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._event = asyncio.Event()
        self._listener: Any = None  # asyncpg.Connection while listening
        self._listen_lock = asyncio.Lock()

    def notify(self) -> None:
        """A commit of this process made work due. With a live LISTEN connection the
        notification comes back through it (NOTIFY reaches the sender too), so it is not set
        twice: a second, late wake-up would look like new work to the next waiter."""
        if self._listener is None:
            self._event.set()

    async def wait(self, timeout: float) -> None:
        if self._db.is_postgresql and self._listener is None:
            await self._listen()
        if not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()

    async def _listen(self) -> None:
        import asyncpg  # only needed for PostgreSQL

        async with self._listen_lock:
            if self._listener is not None:
                return
            try:
                connection = await asyncpg.connect(to_asyncpg_dsn(self._db.url))
                await connection.add_listener(WORK_CHANNEL, self._on_notify)
            except (OSError, asyncpg.PostgresError) as exc:
                # Not fatal: wait() still returns on timeout, and the next wait tries again.
                log.warning("cannot LISTEN for work, polling instead: %s", exc)
                return
            connection.add_termination_listener(self._on_lost)
            self._listener = connection

    def _on_notify(self, *_args: Any) -> None:
        self._event.set()

    def _on_lost(self, *_args: Any) -> None:
        self._listener = None
        self._event.set()  # anything may have happened meanwhile: let workers look

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close(timeout=2)


class Writer:
    """The one writer of a store (see the module docstring).

    Jobs are plain functions of a synchronous SQLAlchemy `Connection`. On SQLite a whole batch
    runs in one call to the writer's own thread (one thread hop per batch, not per statement);
    on PostgreSQL it runs through `AsyncConnection.run_sync` on the asyncpg engine.
    """

    def __init__(
        self,
        db: Database,
        signal: WorkSignal,
        *,
        max_pending: int = MAX_PENDING,
        max_batch_rows: int = MAX_BATCH_ROWS,
    ) -> None:
        self._db = db
        self._signal = signal
        self.max_pending = max_pending
        self.max_batch_rows = max_batch_rows
        self._pending: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.commits = 0  # transactions committed by the writer (for metrics and tests)
        self._insert_messages = _insert_sql("messages", MESSAGE_COLUMNS, db)
        self._insert_deliveries = _insert_sql("deliveries", DELIVERY_COLUMNS, db)
        self._insert_events = _insert_sql("delivery_events", EVENT_COLUMNS, db)
        self._notify = db.is_postgresql
        # SQLite: the thread and connection every write of this process goes through.
        self._thread: ThreadPoolExecutor | None = None
        self._sync_connection: Connection | None = None
        # PostgreSQL: the connection the batches go through.
        self._connection: AsyncConnection | None = None
        if db.is_sqlite:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="teleway-sqlite-writer")

    @property
    def pending(self) -> int:
        """Items waiting for the writer (not counting the batch being committed)."""
        return len(self._pending)

    async def add_rows(
        self,
        message: tuple[Any, ...],
        deliveries: list[tuple[Any, ...]],
        events: list[tuple[Any, ...]],
        *,
        wakes: bool,
    ) -> None:
        """Commit one message's rows (values in `store.rows` column order, as the driver takes
        them) with the next batch; return once committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(
            _Pending(future, message=message, deliveries=deliveries, events=events, wakes=wakes)
        )
        await future

    async def write(self, job: Job[T], *, wakes: bool = False) -> T:
        """Run `job(connection)` in a committed transaction; return its result after COMMIT.

        `wakes`: the job may make work due: signal `wait_for_work` callers after the commit (and
        NOTIFY other nodes in the same transaction on PostgreSQL)."""
        if self._db.is_sqlite:
            future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            self._submit(_Pending(future, job=job, wakes=wakes))
            return await future
        return await self._write_alone(job, wakes=wakes)

    def _submit(self, item: _Pending) -> None:
        if self._closing:
            raise StoreUnavailable("the store is closing")
        if len(self._pending) >= self.max_pending:
            raise StoreFull(
                f"{len(self._pending)} writes are waiting for the store; try again later"
            )
        self._pending.append(item)
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="teleway-store-writer"
            )

    async def _run(self) -> None:
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            batch: list[_Pending] = []
            rows = 0
            while self._pending and (
                not batch or rows + self._pending[0].size <= self.max_batch_rows
            ):
                item = self._pending.popleft()
                if item.future.done():  # the caller gave up before we started: skip it
                    continue
                batch.append(item)
                rows += item.size
            if not batch:
                continue
            try:
                await self._commit(batch)
            except Exception as exc:  # a bug here must not leave callers waiting forever
                log.exception("store writer failed")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)

    async def _commit(self, batch: list[_Pending]) -> None:
        results: list[Any] = []
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                results = await self._transaction(batch)
                break
            except Exception as exc:  # every failure is handed to the callers
                error = translate(exc) or exc
                if error is not exc:
                    error.__cause__ = exc
                if isinstance(error, ConflictRetry) and attempt + 1 < CONFLICT_ATTEMPTS:
                    continue
                if len(batch) > 1 and not isinstance(error, StoreUnavailable):
                    # One item's data was refused, or a job raised: find it by running each
                    # item alone.
                    for item in batch:
                        await self._commit([item])
                    return
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                return
        self.commits += 1
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)
        if any(item.wakes for item in batch):
            self._signal.notify()

    async def _transaction(self, batch: list[_Pending]) -> list[Any]:
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._sqlite_transaction, batch)
        if self._connection is None:
            self._connection = await self._db.engine.connect()
        try:
            return await self._connection.run_sync(self._run_batch, batch)
        except BaseException:
            connection, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                await connection.close()
            raise

    def _sqlite_transaction(self, batch: list[_Pending]) -> list[Any]:
        """In the writer thread."""
        if self._sync_connection is None:
            assert self._db.sync_engine is not None
            self._sync_connection = self._db.sync_engine.connect()
        try:
            return self._run_batch(self._sync_connection, batch)
        except BaseException:
            connection, self._sync_connection = self._sync_connection, None
            with contextlib.suppress(Exception):
                connection.close()
            raise

    def _run_batch(self, connection: Connection, batch: list[_Pending]) -> list[Any]:
        """One transaction: the new messages' rows, then the jobs in order, then COMMIT."""
        with connection.begin():
            messages = [item.message for item in batch if item.message is not None]
            if messages:
                connection.exec_driver_sql(self._insert_messages, messages)
                deliveries = [row for item in batch for row in item.deliveries]
                if deliveries:
                    connection.exec_driver_sql(self._insert_deliveries, deliveries)
                events = [row for item in batch for row in item.events]
                if events:
                    connection.exec_driver_sql(self._insert_events, events)
            results = [None if item.job is None else item.job(connection) for item in batch]
            if self._notify and any(item.wakes for item in batch):
                connection.exec_driver_sql(f"NOTIFY {WORK_CHANNEL}")
        return results

    async def _write_alone(self, job: Job[T], *, wakes: bool) -> T:
        """PostgreSQL: one job, its own transaction on a pooled connection."""
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                with store_errors():
                    async with self._db.engine.begin() as connection:
                        result = await connection.run_sync(job)
                        if wakes:
                            await connection.exec_driver_sql(f"NOTIFY {WORK_CHANNEL}")
            except ConflictRetry:
                if attempt + 1 == CONFLICT_ATTEMPTS:
                    raise
                continue
            if wakes:
                self._signal.notify()
            return result
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Commit what is pending, then stop the task and close the writer connection."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                await connection.close()
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._thread, self._close_sync)
            self._thread.shutdown(wait=True)

    def _close_sync(self) -> None:
        connection, self._sync_connection = self._sync_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


def _insert_sql(table: str, columns: tuple[str, ...], db: Database) -> str:
    """INSERT text in the driver's own parameter style (qmark for sqlite3, $n for asyncpg)."""
    if db.is_postgresql:
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    else:
        marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
