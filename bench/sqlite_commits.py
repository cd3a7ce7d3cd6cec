"""How long a durable SQLite commit takes on this machine's disk, without teleway in the way.

    .venv/bin/python bench/sqlite_commits.py [--seconds 12] [--rate 1000] [--batch 8]

The reference for the latency columns of the other benchmarks: plain `sqlite3` writes the rows
`accept()` writes (a message, its delivery and two events each, into teleway's own schema,
indexes and pragmas: WAL, synchronous=FULL) in transactions of `--batch` messages at `--rate`
messages per second, and prints the distribution of the transaction times. No Python layer of
ours, no event loop, no other thread: when this shows commits of 100 ms and more, so will every
durable path of the gateway on the same disk, whatever its code does (a 1,000 msgs/s run of the
SMS delivery benchmark holds about 30 messages in each 30 ms of stall).

Prints one line; writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time

from teleway.core.ids import make_id
from teleway.store import open_store
from teleway.store.directory import Directory
from teleway.store.engine import SQLITE_PRAGMAS
from teleway.store.rows import DELIVERY_COLUMNS, EVENT_COLUMNS, MESSAGE_COLUMNS


async def _schema(path: str) -> None:
    store = await open_store(f"sqlite+aiosqlite:///{path}", migrate=True)
    await Directory(store.engine).create_account("bench", actor="bench")
    await store.close()


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def measure(path: str, seconds: float, rate: float, batch: int) -> list[float]:
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        connection.execute(pragma)
    messages = _insert("messages", MESSAGE_COLUMNS)
    deliveries = _insert("deliveries", DELIVERY_COLUMNS)
    events = _insert("delivery_events", EVENT_COLUMNS)
    options = '{"sender_id": "+447911123456", "extra": {"source_addr_ton": 1}}'
    times: list[float] = []
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < seconds:
        due = started + sent / rate
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        now = time.time()
        millis = int(now * 1000)
        rows: tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]
        rows = ([], [], [])
        for _ in range(batch):
            message_id, delivery_id = (
                make_id(millis, os.urandom(10)),
                make_id(millis, os.urandom(10)),
            )
            rows[0].append(
                (message_id, 1, "smpp", "bench", "", "a benchmark message", 0, None, "[]",
                 options, now)
            )  # fmt: skip
            rows[1].append(
                (delivery_id, message_id, 1, 0, "+17816170000", "sms", "queued", 0, now,
                 now + 86_400, None, None, None, "[]", None, now, now, "smpp", "none")
            )  # fmt: skip
            rows[2].append((delivery_id, now, None, "accepted", "accepted via smpp"))
            rows[2].append((delivery_id, now, "accepted", "queued", "queued"))
        began = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(messages, rows[0])
        connection.executemany(deliveries, rows[1])
        connection.executemany(events, rows[2])
        connection.execute("COMMIT")
        times.append(time.perf_counter() - began)
        sent += batch
    connection.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="messages per second")
    parser.add_argument("--batch", type=int, default=8, help="messages per transaction")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="teleway-bench-commits-") as folder:
        path = f"{folder}/commits.db"
        asyncio.run(_schema(path))
        times = sorted(measure(path, args.seconds, args.rate, args.batch))
    n = len(times)
    slow = sum(1 for t in times if t > 0.05)
    print(
        f"{n} transactions of {args.batch} messages at {args.rate:g} msgs/s for "
        f"{args.seconds:g} s: p50 {times[n // 2] * 1e3:.1f} ms, p99 "
        f"{times[min(n - 1, int(n * 0.99))] * 1e3:.1f} ms, max {times[-1] * 1e3:.1f} ms, "
        f"{slow} over 50 ms"
    )


if __name__ == "__main__":
    main()
