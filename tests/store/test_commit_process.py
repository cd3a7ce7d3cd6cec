"""SQLite: batches of new rows are committed by a child process (store.commit_process)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from enum import StrEnum
from pathlib import Path

import pytest
from store_helpers import START, Backend, add_accounts, build, submit

from teleway.core.ports import StoreUnavailable
from teleway.runtime.metrics import Metrics
from teleway.store import commit_process, open_store
from teleway.store import writer as writer_module
from teleway.store.commit_process import CommitProcess, CommitProcessGone
from teleway.testing.fakes import FakeClock, SequentialIds

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL")
INSERT = "INSERT INTO t (id, v) VALUES (?, ?)"


class Colour(StrEnum):
    RED = "red"


def _table(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v)")


def _rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT id, v, typeof(v) FROM t ORDER BY id").fetchall()


def commit(process: CommitProcess, tables: list[list[tuple[object, ...]]]) -> asyncio.Future[None]:
    """`CommitProcess.send` as a future: done when the child answered."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def answered(error: BaseException | None) -> None:
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    process.send(tables, answered)
    return future


@pytest.fixture
async def child(tmp_path: Path) -> AsyncIterator[tuple[CommitProcess, Path]]:
    path = tmp_path / "t.db"
    _table(path)
    process = CommitProcess(str(path), PRAGMAS, (INSERT,))
    await process.start()
    try:
        yield process, path
    finally:
        await process.stop()


async def test_a_batch_is_stored_when_the_child_answers(child: tuple[CommitProcess, Path]) -> None:
    process, path = child
    assert process.pid is not None and process.pid != os.getpid()
    # a StrEnum (the model's states and devices) arrives as the plain text the driver binds
    await commit(process, [[(1, "a"), (2, Colour.RED), (3, None), (4, b"\x00\xff")]])
    assert _rows(path) == [
        (1, "a", "text"),
        (2, "red", "text"),
        (3, None, "null"),
        (4, b"\x00\xff", "blob"),
    ]


async def test_a_refused_batch_keeps_nothing_and_says_why(
    child: tuple[CommitProcess, Path],
) -> None:
    process, path = child
    await commit(process, [[(1, "a")]])
    with pytest.raises(sqlite3.IntegrityError, match=r"UNIQUE constraint failed: t\.id"):
        await commit(process, [[(2, "b"), (1, "again")]])
    assert _rows(path) == [(1, "a", "text")]  # row 2 was rolled back with the batch
    await commit(process, [[(2, "b")]])  # the child goes on
    assert [row[0] for row in _rows(path)] == [1, 2]


async def test_answers_come_back_in_order_for_batches_in_flight(
    child: tuple[CommitProcess, Path],
) -> None:
    process, path = child
    futures = [commit(process, [[(n, f"v{n}")]]) for n in range(1, 201)]
    futures.append(commit(process, [[(5, "duplicate")]]))
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[:200] == [None] * 200
    assert isinstance(results[200], sqlite3.IntegrityError)
    assert len(_rows(path)) == 200


async def test_a_batch_larger_than_one_read_arrives_whole(
    child: tuple[CommitProcess, Path],
) -> None:
    process, path = child
    big = bytes(range(256)) * ((3 * commit_process.READ_SIZE) // 256 + 7)  # several reads
    await asyncio.gather(commit(process, [[(1, big)]]), commit(process, [[(2, "after")]]))
    assert _rows(path) == [(1, big, "blob"), (2, "after", "text")]


async def test_a_killed_child_fails_what_it_was_committing(
    child: tuple[CommitProcess, Path],
) -> None:
    process, _ = child
    assert process.pid is not None
    os.kill(process.pid, signal.SIGSTOP)  # it reads nothing more
    waiting = commit(process, [[(1, "a")]])
    os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(CommitProcessGone):
        await asyncio.wait_for(waiting, 10)
    assert not process.running
    with pytest.raises(CommitProcessGone):
        await commit(process, [[(2, "b")]])


async def test_the_child_outlives_sigterm_and_sigint_and_exits_at_end_of_stream(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    _table(path)
    process = CommitProcess(str(path), PRAGMAS, (INSERT,))
    await process.start()
    child = process._process
    assert child is not None
    await commit(process, [[(1, "a")]])  # the child has set up its signal handling
    os.kill(child.pid, signal.SIGTERM)
    os.kill(child.pid, signal.SIGINT)
    await commit(process, [[(2, "b")]])
    await process.stop()
    assert child.returncode == 0
    assert [row[0] for row in _rows(path)] == [1, 2]


@SQLITE_ONLY
async def test_the_writer_commits_new_rows_in_its_child_and_restarts_it(backend: Backend) -> None:
    assert backend.store is not None
    writer = backend.store.writer
    first = await submit(backend)
    process = writer.commit_process
    assert process is not None and process.running
    old_pid = process.pid
    assert old_pid is not None and old_pid != os.getpid()
    assert writer.commits >= 1
    # the child is gone: the writer notices the closed socket and starts another for the next
    # message, and nothing committed before is lost
    os.kill(old_pid, signal.SIGKILL)
    for _ in range(200):
        if not process.running:
            break
        await asyncio.sleep(0.01)
    second = await submit(backend)
    assert process.running and process.pid not in (None, old_pid)
    for delivery_id in (*first, *second):
        assert await backend.messages.get_delivery(delivery_id) is not None


class _HeldProcess:
    """A commit process whose answers the test gives (one layer: the writer's side)."""

    def __init__(self, *_args: object) -> None:
        self.batches: list[Sequence[list[tuple[object, ...]]]] = []
        self.answers: list[Callable[[BaseException | None], None]] = []
        self.running = True
        self.starts = 1
        self.pid = None
        self.automatic = False  # commit whatever comes (to end a test)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def send(
        self,
        tables: Sequence[list[tuple[object, ...]]],
        answered: Callable[[BaseException | None], None],
    ) -> None:
        self.batches.append(tables)
        self.answers.append(answered)
        if self.automatic:
            asyncio.get_running_loop().call_soon(self.answer, len(self.answers) - 1)

    def answer(self, index: int, error: BaseException | None = None) -> None:
        answered, self.answers[index] = self.answers[index], lambda _error: None
        answered(error)


async def test_the_next_batch_leaves_in_the_turn_the_answer_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child's answer settles its batch and sends what waited at once, in the same
    callback: the child does not idle, and the callers do not wait, for turns of the loop."""
    held = _HeldProcess()
    monkeypatch.setattr(writer_module, "CommitProcess", lambda *_args: held)
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path}/held.db", migrate=True)
    try:
        await add_accounts(store)
        backend = Backend("sqlite", store.messages, store.queue, FakeClock(START), SequentialIds())
        calls = [
            asyncio.ensure_future(store.messages.add_message(*build(backend))) for _ in range(3)
        ]
        await _until(lambda: store.writer.pending == 2)
        assert len(held.batches) == 1  # the first went alone; the others wait for its answer
        held.answer(0)  # as the socket's reader calls it
        assert len(held.batches) == 2  # no turn of the loop in between
        assert len(held.batches[1][0]) == 2  # both waiting messages, as one batch
        assert store.writer.pending == 0 and store.writer.commits == 1
        await _until(lambda: calls[0].done())
        assert calls[0].result() is None and not calls[1].done()
        held.answer(1, sqlite3.OperationalError("disk I/O error"))  # the slower way
        with pytest.raises(StoreUnavailable):
            await calls[1]
        with pytest.raises(StoreUnavailable):
            await calls[2]
        assert store.writer.commits == 1
    finally:
        held.automatic = True  # nothing left running for close() to wait for
        for index in range(len(held.answers)):
            held.answer(index)
        await store.close()


@SQLITE_ONLY
async def test_a_child_that_dies_mid_batch_is_a_temporary_store_error(backend: Backend) -> None:
    assert backend.store is not None
    await submit(backend)
    process = backend.store.writer.commit_process
    assert process is not None and process.pid is not None
    os.kill(process.pid, signal.SIGSTOP)
    pending = asyncio.ensure_future(submit(backend))
    await asyncio.sleep(0.2)  # the batch is in the child's socket
    assert not pending.done()
    os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(StoreUnavailable, match="commit process"):
        await asyncio.wait_for(pending, 10)
    await submit(backend)  # and the next write starts a new child


@SQLITE_ONLY
async def test_a_child_that_cannot_start_leaves_the_rows_to_the_writer_thread(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert backend.store is not None
    writer = backend.store.writer
    monkeypatch.setattr(commit_process.sys, "executable", "/nonexistent/python3")
    first = await submit(backend)
    second = await submit(backend)  # no second attempt for PROCESS_RETRY_DELAY
    assert [r.message for r in caplog.records].count("cannot start the SQLite commit process") == 1
    assert writer.commit_process is not None and not writer.commit_process.running
    for delivery_id in (*first, *second):
        assert await backend.messages.get_delivery(delivery_id) is not None


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


@SQLITE_ONLY
async def test_metrics_show_the_writer_and_its_commit_process(backend: Backend) -> None:
    assert backend.store is not None
    writer = backend.store.writer
    metrics = Metrics()
    metrics.watch_store(writer)

    def series() -> dict[str, float]:
        lines = metrics.render().decode().splitlines()
        return {
            name: float(value)
            for name, _, value in (line.partition(" ") for line in lines)
            if name.startswith("teleway_store_")
        }

    before = series()
    assert before["teleway_store_commit_process_up"] == 0
    assert before["teleway_store_commit_process_starts_total"] == 0
    assert before["teleway_store_writer_pending"] == 0
    await submit(backend)
    await submit(backend)  # committed by the child
    after = series()
    assert after["teleway_store_commit_process_up"] == 1
    assert after["teleway_store_commit_process_starts_total"] == 1
    assert after["teleway_store_commits_total"] >= before["teleway_store_commits_total"] + 2
    process = writer.commit_process
    assert process is not None and process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    await _until(lambda: not process.running)
    assert series()["teleway_store_commit_process_up"] == 0
    await submit(backend)  # starts another
    assert series()["teleway_store_commit_process_starts_total"] == 2


async def test_a_relative_database_path_is_the_one_the_store_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child starts with the first new rows, maybe after the gateway changed directory."""
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite+aiosqlite:///var/relative.db", migrate=True)
    try:
        await add_accounts(store)
        monkeypatch.chdir(tmp_path.parent)
        message, deliveries, events = build(
            Backend("sqlite", store.messages, store.queue, FakeClock(START), SequentialIds())
        )
        await store.messages.add_message(message, deliveries, events)
        assert store.writer.commit_process is not None and store.writer.commit_process.running
        assert await store.messages.get_message(message.id) is not None
    finally:
        await store.close()
    assert not (tmp_path.parent / "var" / "relative.db").exists()
