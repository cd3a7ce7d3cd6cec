"""SQLite: the commits of new rows, in a process of their own.

On SQLite the writer's batches of new rows (`accept()`'s messages, deliveries, their events and
outbox reports) are committed by a child process that owns a second connection to the same
database file. The gateway's process sends it each batch over a socketpair and resolves the
callers' futures when the child answers, after its COMMIT returned (synchronous=FULL: the WAL
is on disk). Everything else the writer runs (queue writes: functions of a connection, which
cannot cross a process boundary) stays on the writer thread. The writer runs one transaction at
a time whichever way it goes, so the two connections never wait for each other's lock.

Why a process: the inserts and the COMMIT cost CPU (about 45 µs per message of SQLite work in
big batches, 0.5 ms for a small batch with its fsync), and in a thread every return from SQLite
has to take the interpreter lock back from the busy event loop, which gives it up only every
switch interval. Measured in interleaved pairs on the 2-core development machine: SMTP at 10
connections 1.18 times the e-mails per second (median of 8 pairs), `accept()` 1.13-1.25 times;
SMPP submit_sm unchanged (docs/store.md, "The commit process").

Wire format, both ways: a 4-byte big-endian length, then a pickle. The first frame from the
gateway is the hello: (pragmas, insert statements). Each following frame is one batch: a tuple
of row lists, one per insert statement (values in `store.rows` column order). The child answers
each batch in order with `None` (committed) or `(exception class name, text)`: the batch was
rolled back, and the gateway turns the error into the store's own (`engine.translate`). Only the
gateway's own process writes to the socket, so unpickling it is as safe as importing a module.

The child exits when the socket closes (the gateway closed the writer, or died: nothing is left
half done, a transaction not committed is rolled back by SQLite). It ignores SIGINT and SIGTERM:
a Ctrl-C or a service manager's stop reaches the whole process group, and the gateway still has
batches to commit while it shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import pickle
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from functools import cache
from itertools import chain
from typing import Any

log = logging.getLogger(__name__)

Rows = list[tuple[Any, ...]]
Error = tuple[str, str]  # (sqlite3 exception class name, text)

HEADER = struct.Struct("!I")
# the child's own setting on top of the store's: the statement journals SQLite keeps for an
# INSERT it may have to undo alone stay in memory (as a temporary file they were opened,
# written and unlinked about every eighth commit)
MEMORY_TEMP_STORE = "PRAGMA temp_store=MEMORY"
READ_SIZE = 1 << 20  # the child's read buffer; a batch of 512 messages' rows is about 0.5 MiB
STOP_TIMEOUT = 10.0  # seconds the child may take to finish its batch and exit after EOF

SQLITE_MAX_VARIABLES = 32_766  # SQLITE_MAX_VARIABLE_NUMBER since SQLite 3.32
SQLITE_MAX_CHUNK = 256  # rows in one multi-row INSERT


class CommitProcessGone(Exception):
    """The child exited, or its socket broke: what it was committing may or may not be stored."""


# a batch's callback: None when committed, else why not (the child's error, or it is gone)
Answered = Callable[[sqlite3.Error | CommitProcessGone | None], None]


# -- multi-row INSERT (shared by the writer thread and the child) ------------------------------


def _chunk(remaining: int, most: int) -> int:
    """The largest power of two <= remaining, most and SQLITE_MAX_CHUNK (few distinct
    statements for sqlite3's statement cache)."""
    limit = min(remaining, most, SQLITE_MAX_CHUNK)
    return 1 << (limit.bit_length() - 1)


def sqlite_insert(execute: Callable[[str, tuple[Any, ...]], Any], insert: str, rows: Rows) -> None:
    """`rows` as multi-row INSERT statements of 2**k rows: sqlite3's executemany releases and
    retakes the interpreter lock around every row."""
    width = len(rows[0])
    start = 0
    while start < len(rows):
        size = _chunk(len(rows) - start, SQLITE_MAX_VARIABLES // width)
        values = tuple(chain.from_iterable(rows[start : start + size]))
        execute(_multirow(insert, size), values)
        start += size


@cache
def _multirow(insert: str, rows: int) -> str:
    """`INSERT ... VALUES (?, ...)` for `rows` rows."""
    head, _, one = insert.partition(" VALUES ")
    return f"{head} VALUES {', '.join([one] * rows)}"


def commit_rows(
    connection: sqlite3.Connection, inserts: Sequence[str], tables: Sequence[Rows]
) -> None:
    """One transaction: each table's rows with its INSERT, then COMMIT (rolled back on error).
    `connection` is in autocommit mode (isolation_level None)."""
    execute = connection.execute
    execute("BEGIN IMMEDIATE")
    try:
        for insert, rows in zip(inserts, tables, strict=True):
            if rows:
                sqlite_insert(execute, insert, rows)
        execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            execute("ROLLBACK")
        raise


# -- the child ---------------------------------------------------------------------------------


def _take_frame(buffer: bytearray) -> bytes | None:
    """The first complete frame's payload, taken out of `buffer`; None if there is none yet."""
    if len(buffer) < HEADER.size:
        return None
    (size,) = HEADER.unpack_from(buffer)
    if len(buffer) < HEADER.size + size:
        return None
    payload = bytes(buffer[HEADER.size : HEADER.size + size])
    del buffer[: HEADER.size + size]
    return payload


def _read_frame(sock: socket.socket, buffer: bytearray, chunk: memoryview) -> bytes | None:
    """The next frame's payload, or None at end of stream. `chunk`: the one read buffer the
    child reuses (`recv` of a fresh 1 MiB each time costs an mmap, an mremap and a munmap
    per batch)."""
    while (payload := _take_frame(buffer)) is None:
        size = sock.recv_into(chunk)
        if not size:
            return None
        buffer += chunk[:size]
    return payload


class _PlainPickler(pickle.Pickler):
    """Pickles a str subclass (the model's StrEnum values in the rows) as the plain str the
    driver binds anyway, so the child needs none of the gateway's modules to read a batch."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return str, (str.__str__(obj),)
        return NotImplemented


def _frame(value: Any) -> bytes:
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    _PlainPickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    frame = out.getbuffer()
    HEADER.pack_into(frame, 0, len(frame) - HEADER.size)
    del frame
    return out.getvalue()


def serve(sock: socket.socket, path: str) -> None:
    """The child's loop: the hello, then batch after batch until the socket closes."""
    buffer = bytearray()
    chunk = memoryview(bytearray(READ_SIZE))
    hello = _read_frame(sock, buffer, chunk)
    if hello is None:
        return
    pragmas, inserts = pickle.loads(hello)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for pragma in pragmas:
            connection.execute(pragma)
        while (frame := _read_frame(sock, buffer, chunk)) is not None:
            try:
                commit_rows(connection, inserts, pickle.loads(frame))
                answer: Error | None = None
            except sqlite3.Error as exc:
                answer = (type(exc).__name__, str(exc))
            sock.sendall(_frame(answer))
    finally:
        connection.close()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -I commit_process.py FD PATH`: started by `CommitProcess`. Run as a file in
    isolated mode, it imports the standard library only (it starts in a few milliseconds, and
    nothing from the gateway's package or the environment can shadow a module)."""
    args = sys.argv[1:] if argv is None else list(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with socket.socket(fileno=int(args[0])) as sock, contextlib.suppress(ConnectionError):
        serve(sock, args[1])


# -- the gateway's side --------------------------------------------------------------------------


class _Answers(asyncio.Protocol):
    """Reads the child's answers and hands each to its batch's callback, in order, at once
    (in `data_received`: the writer settles its callers and sends its next batch in the same
    turn of the event loop as the answer came, not one or two turns later)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[Answered] = deque()
        self.buffer = bytearray()
        self.lost = False
        self.closing = False  # the gateway closed the socket itself

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (payload := _take_frame(self.buffer)) is not None:
            answer = pickle.loads(payload)
            error: sqlite3.Error | None = None
            if answer is not None:
                name, text = answer
                kind = getattr(sqlite3, name, sqlite3.Error)
                if not (isinstance(kind, type) and issubclass(kind, sqlite3.Error)):
                    kind = sqlite3.Error
                error = kind(text)
            _tell(self.waiting.popleft(), error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.closing:
            log.error(
                "SQLite commit process exited; the next new rows start another",
                extra={"fields": {"unanswered": len(self.waiting)}},
            )
        while self.waiting:
            _tell(self.waiting.popleft(), CommitProcessGone("the SQLite commit process exited"))


def _tell(answered: Answered, error: sqlite3.Error | CommitProcessGone | None) -> None:
    """Call a batch's callback; a bug in it must not break the reading of the answers."""
    try:
        answered(error)
    except Exception:
        log.exception("a commit process answer's callback failed")


class CommitProcess:
    """The child committing new rows to the SQLite file at `path` (see the module docstring)."""

    def __init__(self, path: str, pragmas: Sequence[str], inserts: Sequence[str]) -> None:
        # resolved now, as the engine did: the child starts later, maybe in another directory
        self.path = os.path.abspath(path)
        self.pragmas = (*pragmas, MEMORY_TEMP_STORE)
        self.inserts = tuple(inserts)
        self._process: subprocess.Popen[bytes] | None = None
        self._answers: _Answers | None = None
        self.starts = 0  # children started (for metrics: more than one means one went away)

    @property
    def running(self) -> bool:
        return self._answers is not None and not self._answers.lost

    @property
    def pid(self) -> int | None:
        """The child's process id (None before the first start)."""
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        """Start the child (again, if one exited)."""
        await self.stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", __file__, str(theirs.fileno()), self.path],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        loop = asyncio.get_running_loop()
        answers = _Answers()
        try:
            await loop.create_unix_connection(lambda: answers, sock=ours)
        except BaseException:
            ours.close()
            raise
        assert answers.transport is not None
        answers.transport.write(_frame((self.pragmas, self.inserts)))
        self._answers = answers
        self.starts += 1
        log.debug("SQLite commit process started", extra={"fields": {"pid": self._process.pid}})

    def send(self, tables: Sequence[Rows], answered: Answered) -> None:
        """Send one batch (a row list per insert statement). `answered` is called once, from
        the event loop: with None when the child committed it, or with the sqlite3 error that
        rolled it back, or with CommitProcessGone (at once, if no child is running)."""
        answers = self._answers
        if answers is None or answers.lost or answers.transport is None:
            _tell(answered, CommitProcessGone("the SQLite commit process is not running"))
            return
        frame = _frame(tuple(tables))  # before queueing: unpicklable rows raise here
        answers.waiting.append(answered)
        answers.transport.write(frame)

    async def stop(self) -> None:
        """Close the socket; the child commits what it has read, then exits."""
        answers, self._answers = self._answers, None
        if answers is not None and answers.transport is not None:
            answers.closing = True
            answers.transport.close()
        process, self._process = self._process, None
        if process is None:
            return
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), STOP_TIMEOUT)
        except TimeoutError:
            log.error("SQLite commit process did not exit; killing it")
            process.kill()
            await asyncio.to_thread(process.wait)
        if process.returncode not in (0, None):
            log.error(
                "SQLite commit process exited with an error",
                extra={"fields": {"pid": process.pid, "returncode": process.returncode}},
            )


if __name__ == "__main__":
    main()
