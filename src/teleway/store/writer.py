"""Group commit: many writers, one transaction, one fsync.

Every `add_message(s)` call (and, on SQLite, every queue write) becomes a pending item of the
store's single writer. When the writer is idle, the first item starts a transaction at once;
everything submitted while that transaction runs waits, and the next transaction takes all of it
(up to `max_batch_rows`). So batches grow with the load by themselves, a lone caller is not kept
waiting for company, and the event loop prepares the next batch while the current one commits.

A batch is ONE transaction: the new rows of all its messages as three bulk inserts, then each
queue write (a function of the connection) in arrival order, then the delivery events those
wrote, then COMMIT. Only after
the COMMIT returned is each caller's future resolved. On SQLite that turns N fsyncs into one; on
PostgreSQL it turns N round trips and commits into a few.

Failure: the batch's transaction is rolled back, so nothing of it is stored. If the error is
temporary (`StoreUnavailable`, `StoreFull`: database down, locked, disk full) every caller of the
batch gets it. If the data was refused (`StoreRejected`: a duplicate id) or a queue write raised,
each item is run again alone, in its own transaction, so only the culprit fails.

Backpressure: at most `max_pending` rows (a message and each of its deliveries count one, a
queue write one) may wait for the writer (those in the running batch not counted). Past that
`add_message` raises `StoreFull` at once: the store is not keeping up, and the ingress answers
with a temporary error (SMPP ESME_RMSGQFUL, SMTP 451, HTTP 503) instead of piling up memory and
latency.

Where it runs: on SQLite, a batch of new rows only (accept()'s usual batch) is committed by a
child process with its own connection (`store.commit_process`: its SQLite work then takes
nothing from the event loop's interpreter lock), and any batch with a queue write in the
writer's own thread on a pysqlite connection (one thread hop per batch); one batch runs at a
time either way. If the child cannot start, its batches go to the thread as well. On
PostgreSQL, on one asyncpg connection through `AsyncConnection.run_sync`. On
PostgreSQL queue writes do not go through the writer: each runs in its own transaction on a
pooled connection (row locks and SKIP LOCKED keep workers apart; the server groups concurrent
commits into one WAL flush by itself), retried on deadlock or serialization failure.

A caller cancelled while its item is in a running batch does not stop the write: it may be
committed all the same (the future is simply not resolved).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from teleway.core.ports import StoreFull, StoreUnavailable
from teleway.store.commit_process import (
    CommitProcess,
    CommitProcessGone,
    Rows,
    commit_rows,
    sqlite_insert,
)
from teleway.store.engine import (
    SQLITE_PRAGMAS,
    ConflictRetry,
    Database,
    store_errors,
    to_asyncpg_dsn,
    translate,
)
from teleway.store.rows import DELIVERY_COLUMNS, EVENT_COLUMNS, MESSAGE_COLUMNS, OUTBOX_COLUMNS

log = logging.getLogger(__name__)

T = TypeVar("T")


class Journal(list[tuple[Any, ...]]):
    """What a transaction's delivery changes record besides the rows they update: the
    delivery_events rows (the list itself, values in `store.rows.EVENT_COLUMNS` order) and the
    outbox rows reporting them (`reports`, `store.rows.OUTBOX_COLUMNS` order). The writer
    inserts both before COMMIT."""

    __slots__ = ("reports",)

    def __init__(self, rows: Any = ()) -> None:
        super().__init__(rows)
        self.reports: list[tuple[Any, ...]] = []


EventRows = Journal
Job = Callable[[Connection], T]
"""A write: runs inside the writer's transaction."""
LoggingJob = Callable[[Connection, EventRows], T]
"""A write that may also append delivery_events rows and outbox reports (see `Journal`); the
writer inserts all of a transaction's rows with one executemany each before COMMIT."""
Outcome = tuple[bool, Any]  # (True, result) or (False, exception)

WORK_CHANNEL = "teleway_work"  # PostgreSQL LISTEN/NOTIFY channel for "new work may be due"
MAX_PENDING = 50_000  # rows (messages + deliveries) waiting for the writer before StoreFull
MAX_BATCH_ROWS = 20_000  # messages + deliveries in one transaction: bounds commit latency
CONFLICT_ATTEMPTS = 5  # PostgreSQL deadlock / serialization failures retried this often
PROCESS_RETRY_DELAY = 10.0  # seconds before trying again to start a commit process that failed


class _Pending:
    __slots__ = ("deliveries", "events", "future", "job", "messages", "reports", "size", "wakes")

    def __init__(
        self,
        future: asyncio.Future[Any],
        *,
        messages: list[tuple[Any, ...]] | None = None,
        deliveries: list[tuple[Any, ...]] | None = None,
        events: list[tuple[Any, ...]] | None = None,
        job: LoggingJob[Any] | None = None,
        wakes: bool = False,
        reports: list[tuple[Any, ...]] | None = None,
    ) -> None:
        self.future = future
        self.messages = messages or []
        self.deliveries = deliveries or []
        self.events = events or []
        self.reports = reports or []
        self.job = job
        self.wakes = wakes
        self.size = max(1, len(self.messages) + len(self.deliveries))


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

    Jobs are plain functions of a synchronous SQLAlchemy `Connection`, so one piece of SQL code
    serves both engines.
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
        self.commits = 0  # transactions committed by the writer (for metrics and tests)
        self._pending: deque[_Pending] = deque()
        self._pending_rows = 0  # sum of the waiting items' sizes
        self._running: asyncio.Future[list[Outcome]] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._insert_messages = _insert_sql("messages", MESSAGE_COLUMNS, db)
        self._insert_deliveries = _insert_sql("deliveries", DELIVERY_COLUMNS, db)
        self._insert_events = _insert_sql("delivery_events", EVENT_COLUMNS, db)
        self._insert_reports = _insert_sql("outbox", OUTBOX_COLUMNS, db)
        # a batch of new rows: these INSERTs, in this order, with `_row_lists(batch)`
        self._row_inserts = (
            self._insert_messages,
            self._insert_deliveries,
            self._insert_events,
            self._insert_reports,
        )
        self.on_reports: Callable[[], None] | None = None  # called after a commit added reports
        self._reported = False  # set by the transaction side, read by the event loop side
        self._notify = db.is_postgresql
        # SQLite: the thread and connection every write of this process goes through.
        self._thread: ThreadPoolExecutor | None = None
        self._sync_connection: Connection | None = None
        # PostgreSQL: the connection the batches go through.
        self._connection: AsyncConnection | None = None
        # SQLite: the child process committing batches of new rows (store.commit_process),
        # started by the first such batch, and again after it exited.
        self._process: CommitProcess | None = None
        self._process_starting: asyncio.Lock | None = None
        self._process_retry_at = 0.0  # monotonic; after a failed start, not before
        if db.is_sqlite:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="teleway-sqlite-writer")
        if db.is_sqlite and sys.executable:  # an embedded interpreter has no program to start
            self._process = CommitProcess(db.url.database or "", SQLITE_PRAGMAS, self._row_inserts)

    @property
    def commit_process(self) -> CommitProcess | None:
        """SQLite: the child committing new rows (store.commit_process); None on PostgreSQL."""
        return self._process

    @property
    def pending(self) -> int:
        """Items waiting for the writer (not counting the batch being committed)."""
        return len(self._pending)

    async def add_many(
        self,
        messages: list[tuple[Any, ...]],
        deliveries: list[tuple[Any, ...]],
        events: list[tuple[Any, ...]],
        *,
        wakes: bool,
        reports: list[tuple[Any, ...]] | None = None,
    ) -> None:
        """Commit the rows of one or more messages (values in `store.rows` column order, as
        the driver takes them) with the next batch, as one waiting item: committed or refused
        together; return once committed. An ingress that read many requests in one go (a
        window of submit_sm) saves a future and a wake-up per message. `reports`: outbox rows
        (`OUTBOX_COLUMNS` order) committed with them (deliveries stored already leased)."""
        if (
            self._process is not None
            and not self._process.running
            and time.monotonic() >= self._process_retry_at
        ):
            await self._start_process()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(
            _Pending(
                future,
                messages=messages,
                deliveries=deliveries,
                events=events,
                wakes=wakes,
                reports=reports,
            )
        )
        await future

    async def _start_process(self) -> None:
        """Start the commit process unless another caller just did. If it cannot start, the
        rows go through the writer thread, as every other write does."""
        assert self._process is not None
        if self._process_starting is None:
            self._process_starting = asyncio.Lock()
        async with self._process_starting:
            if self._process.running or self._closing:
                return
            if time.monotonic() < self._process_retry_at:
                return
            try:
                await self._process.start()
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                self._process_retry_at = time.monotonic() + PROCESS_RETRY_DELAY
                log.error(
                    "cannot start the SQLite commit process", extra={"fields": {"error": repr(exc)}}
                )

    async def write(self, job: Job[T], *, wakes: bool = False) -> T:
        """Run `job(connection)` in a committed transaction; return its result after COMMIT.

        `wakes`: the job may make work due: signal `wait_for_work` callers after the commit (and
        NOTIFY other nodes in the same transaction on PostgreSQL)."""
        return await self.write_logged(lambda connection, _events: job(connection), wakes=wakes)

    async def write_logged(self, job: LoggingJob[T], *, wakes: bool = False) -> T:
        """`write` for jobs that also record delivery events (see `LoggingJob`)."""
        if self._db.is_sqlite:
            future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            self._submit(_Pending(future, job=job, wakes=wakes))
            return await future
        return await self._write_alone(job, wakes=wakes)

    # -- batching (event loop side) ------------------------------------------------------

    def _submit(self, item: _Pending) -> None:
        if self._closing:
            raise StoreUnavailable("the store is closing")
        if self._pending and self._pending_rows + item.size > self.max_pending:
            raise StoreFull(f"{self._pending_rows} rows are waiting for the store; try again later")
        self._pending.append(item)
        self._pending_rows += item.size
        self._start_batch()

    def _start_batch(self) -> None:
        """If the writer is idle, start a transaction with what is pending (synchronously: the
        database works while the event loop goes on preparing the next batch)."""
        if self._running is not None:
            return
        batch: list[_Pending] = []
        rows = 0
        while self._pending and (not batch or rows + self._pending[0].size <= self.max_batch_rows):
            item = self._pending.popleft()
            self._pending_rows -= item.size
            if item.future.done():  # the caller gave up before we started: skip it
                continue
            batch.append(item)
            rows += item.size
        if not batch:
            self._idle.set()
            return
        self._idle.clear()
        loop = asyncio.get_running_loop()
        running: asyncio.Future[list[Outcome]]
        process = self._process
        if process is not None and process.running and all(item.job is None for item in batch):
            self._send(process, batch)
            return
        if self._thread is not None:
            running = loop.run_in_executor(self._thread, self._sqlite_batch, batch)
        else:
            running = loop.create_task(self._postgres_batch(batch))
        self._await(running, batch)

    def _await(self, running: asyncio.Future[list[Outcome]], batch: list[_Pending]) -> None:
        self._running = running
        running.add_done_callback(lambda done: self._finish(batch, done))

    def _finish(self, batch: list[_Pending], done: asyncio.Future[list[Outcome]]) -> None:
        try:
            outcomes = done.result()
        except BaseException as exc:  # a bug in the writer must not leave callers waiting
            log.exception("store writer failed")
            outcomes = [(False, exc)] * len(batch)
        self._settle(batch, outcomes)

    def _settle(self, batch: list[_Pending], outcomes: list[Outcome]) -> None:
        """The batch is over: tell its callers, then start the next one."""
        self._running = None
        wakes = False
        for item, (ok, value) in zip(batch, outcomes, strict=True):
            if item.future.done():
                continue
            if ok:
                item.future.set_result(value)
                wakes = wakes or item.wakes
            else:
                item.future.set_exception(value)
        if wakes:
            self._signal.notify()
        self._tell_reports()
        self._start_batch()

    def _send(self, process: CommitProcess, batch: list[_Pending]) -> None:
        """SQLite, a batch of new rows only: to the commit process, now. Its answer settles the
        batch and sends the next one in the same turn of the event loop (no task in between:
        the child would idle and the callers wait for each turn). A refusal or the child's
        exit goes the slower way, through `_process_failed`."""
        tables = _row_lists(batch)
        self._running = asyncio.get_running_loop().create_future()  # the batch is running

        def answered(error: sqlite3.Error | CommitProcessGone | None) -> None:
            if error is None:
                self.commits += 1
                if tables[3]:
                    self._reported = True
                self._settle(batch, [(True, None)] * len(batch))
            else:
                task = asyncio.get_running_loop().create_task(self._process_failed(batch, error))
                self._await(task, batch)

        try:
            process.send(tables, answered)
        except Exception as exc:  # rows the pickler refused: a bug, as any other in the writer
            failed: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            self._await(failed, batch)

    def _tell_reports(self) -> None:
        if self._reported:
            self._reported = False
            if self.on_reports is not None:
                self.on_reports()

    # -- transactions (writer thread / connection side) ----------------------------------

    def _sqlite_batch(self, batch: list[_Pending]) -> list[Outcome]:
        """In the writer thread."""

        def connection() -> Connection:
            if self._sync_connection is None:
                assert self._db.sync_engine is not None
                self._sync_connection = self._db.sync_engine.connect()
            return self._sync_connection

        return self._outcomes(connection, self._drop_sync_connection, batch)

    async def _process_failed(
        self, batch: list[_Pending], exc: sqlite3.Error | CommitProcessGone
    ) -> list[Outcome]:
        """The commit process did not commit a batch of new rows: it exited (every caller gets
        StoreUnavailable), or it refused the data, which then goes to the writer thread to find
        the culprit by running each item alone."""
        if isinstance(exc, CommitProcessGone):
            log.warning(
                "batch lost with the SQLite commit process",
                extra={"fields": {"callers": len(batch)}},
            )
            error: BaseException = StoreUnavailable(str(exc))
            error.__cause__ = exc
            return [(False, error)] * len(batch)
        error = translate(exc) or exc
        if error is not exc:
            error.__cause__ = exc
        if len(batch) > 1 and not isinstance(error, StoreUnavailable):
            # refused data (StoreRejected) or an unexpected error: find the culprit
            assert self._thread is not None
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._sqlite_batch, batch)
        return [(False, error)] * len(batch)

    def _drop_sync_connection(self) -> None:
        connection, self._sync_connection = self._sync_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.invalidate()
            with contextlib.suppress(Exception):
                connection.close()

    async def _postgres_batch(self, batch: list[_Pending]) -> list[Outcome]:
        try:
            with store_errors():
                if self._connection is None:
                    self._connection = await self._db.engine.connect()
                connection = self._connection
                broken = False

                def run(sync_connection: Connection) -> list[Outcome]:
                    def lost() -> None:
                        nonlocal broken
                        broken = True

                    return self._outcomes(lambda: sync_connection, lost, batch)

                outcomes = await connection.run_sync(run)
        except Exception as exc:
            broken = True
            error = translate(exc) or exc
            outcomes = [(False, error)] * len(batch)
        if broken and self._connection is not None:
            old, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                await old.invalidate()
            with contextlib.suppress(Exception):
                await old.close()
        return outcomes

    def _outcomes(
        self, connection: Callable[[], Connection], lost: Callable[[], None], batch: list[_Pending]
    ) -> list[Outcome]:
        """Run the batch in one transaction; on refused data, each item alone (synchronous)."""
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                results = self._transaction(connection(), batch)
            except Exception as exc:
                error = translate(exc) or exc
                if error is not exc:
                    error.__cause__ = exc
                if isinstance(error, StoreUnavailable) and not isinstance(
                    error, ConflictRetry | StoreFull
                ):
                    lost()  # the connection may be broken: the next batch gets a new one
                if isinstance(error, ConflictRetry) and attempt + 1 < CONFLICT_ATTEMPTS:
                    continue
                if len(batch) > 1 and not isinstance(error, StoreUnavailable):
                    # One item's data was refused, or a job raised: find it by running each
                    # item alone.
                    return [self._outcomes(connection, lost, [item])[0] for item in batch]
                return [(False, error)] * len(batch)
            self.commits += 1
            return [(True, result) for result in results]
        raise AssertionError("unreachable")

    def _transaction(self, connection: Connection, batch: list[_Pending]) -> list[Any]:
        """One transaction: the new messages' rows, then the jobs in order, then COMMIT."""
        if self._thread is not None and all(item.job is None for item in batch):
            return self._sqlite_rows(connection, batch)
        with connection.begin():
            messages = [row for item in batch for row in item.messages]
            events = Journal()
            if messages:
                self._insert(connection, self._insert_messages, messages)
                deliveries = [row for item in batch for row in item.deliveries]
                if deliveries:
                    self._insert(connection, self._insert_deliveries, deliveries)
                events.extend(row for item in batch for row in item.events)
                events.reports.extend(row for item in batch for row in item.reports)
            results = [None if item.job is None else item.job(connection, events) for item in batch]
            self._insert_journal(connection, events)
            if self._notify and any(item.wakes for item in batch):
                connection.exec_driver_sql(f"NOTIFY {WORK_CHANNEL}")
        return results

    def _sqlite_rows(self, connection: Connection, batch: list[_Pending]) -> list[Any]:
        """SQLite, a batch of new rows only (accept()'s usual batch): the same statements
        straight on the sqlite3 connection under `connection`. SQLAlchemy's begin, execute and
        commit cost about 250 µs of the writer thread per transaction, under the GIL the event
        loop needs; with small batches (an e-mail or two per commit) that was most of the
        writer's time."""
        raw = connection.connection.driver_connection
        assert raw is not None
        tables = _row_lists(batch)
        commit_rows(raw, self._row_inserts, tables)
        if tables[3]:
            self._reported = True  # told after COMMIT, as in _insert_journal
        return [None] * len(batch)

    def _insert_journal(self, connection: Connection, journal: Journal) -> None:
        if journal:
            self._insert(connection, self._insert_events, journal)
        if journal.reports:
            self._insert(connection, self._insert_reports, journal.reports)
            self._reported = True  # told after COMMIT; a rollback only causes a spurious wake

    def _insert(self, connection: Connection, insert: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert rows. asyncpg: its executemany (one pipelined round trip). sqlite3: multi-row
        INSERT statements of 2**k rows, because its executemany releases and retakes the GIL
        around every row, and each retake can wait for the event loop thread's switch interval
        (5 ms): the writer thread then crawls exactly when the loop is busiest."""
        if self._db.is_postgresql:
            connection.exec_driver_sql(insert, rows)
            return
        sqlite_insert(connection.exec_driver_sql, insert, rows)

    async def _write_alone(self, job: LoggingJob[T], *, wakes: bool) -> T:
        """PostgreSQL: one job, its own transaction on a pooled connection."""
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                with store_errors():
                    async with self._db.engine.begin() as connection:
                        result = await connection.run_sync(self._run_alone, job)
                        if wakes:
                            await connection.exec_driver_sql(f"NOTIFY {WORK_CHANNEL}")
            except ConflictRetry:
                if attempt + 1 == CONFLICT_ATTEMPTS:
                    raise
                continue
            if wakes:
                self._signal.notify()
            self._tell_reports()
            return result
        raise AssertionError("unreachable")

    def _run_alone(self, connection: Connection, job: LoggingJob[T]) -> T:
        events = Journal()
        result = job(connection, events)
        self._insert_journal(connection, events)
        return result

    async def close(self) -> None:
        """Commit what is pending, then close the writer's connection, thread and commit
        process."""
        self._closing = True
        while self._running is not None or self._pending:
            await self._idle.wait()
            await asyncio.sleep(0)
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                await connection.close()
        if self._process is not None:
            await self._process.stop()
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._thread, self._close_sync)
            self._thread.shutdown(wait=True)

    def _close_sync(self) -> None:
        connection, self._sync_connection = self._sync_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


def _row_lists(batch: list[_Pending]) -> tuple[Rows, Rows, Rows, Rows]:
    """The new rows of a batch, one list per table, in `Writer._row_inserts` order."""
    return (
        [row for item in batch for row in item.messages],
        [row for item in batch for row in item.deliveries],
        [row for item in batch for row in item.events],
        [row for item in batch for row in item.reports],
    )


def _insert_sql(table: str, columns: tuple[str, ...], db: Database) -> str:
    """INSERT text in the driver's own parameter style (qmark for sqlite3, $n for asyncpg)."""
    if db.is_postgresql:
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    else:
        marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
