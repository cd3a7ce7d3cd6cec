"""Store benchmark: durable accepts per second through `core.accept.accept()`, and queue
throughput, on SQLite and PostgreSQL, next to the raw driver doing the same inserts.

    .venv/bin/python bench/store.py [--quick] [--no-postgres] [--no-write]

Columns of the accept table (messages per second, all committed durably: SQLite WAL with
synchronous=FULL, PostgreSQL synchronous_commit=on):

- `accept()`: the whole door: validation, E.164 parsing, ids, dataclasses, store, commit;
  `--submitters` asyncio tasks submit concurrently so group commit can batch them.
- `store only`: `add_message` with prebuilt messages: the store's own cost.
- `raw driver`: sqlite3 / asyncpg inserting the same rows, one transaction per batch of
  `--submitters` messages, same indexes, same durability: the floor our layer is compared to.
- `accept() no store`: `accept()` with a store that does nothing: the domain's own CPU cost.

The queue table: deliveries per second leased (`lease`, 50 at a time) and moved to DELIVERED
(`transition` with the worker's lease), by 8 concurrent workers.

Writes (replaces) the `## Store` section of docs/benchmarks.md unless `--no-write`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import URL, make_url

from cpu import tree_cpu_seconds
from teleway.core.accept import accept
from teleway.core.ids import make_id
from teleway.core.model import (
    Account,
    Content,
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Message,
    Origin,
    Recipient,
    Submission,
)
from teleway.store import Store, open_store, tables
from teleway.store.engine import SQLITE_PRAGMAS, to_asyncpg_dsn
from teleway.store.rows import (
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    MESSAGE_COLUMNS,
    delivery_values,
    event_values,
    message_values,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
PG_ADMIN = os.environ.get("TELEWAY_BENCH_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1/test")
NUMBERS = tuple(f"+1415555{n:04d}" for n in range(100, 200))  # for prebuilt deliveries
ACCOUNT = Account(id=1, name="bench")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class RandomIds:
    def new_id(self) -> str:
        return make_id(time.time_ns() // 1_000_000, os.urandom(10))


class NullStore:
    async def add_message(self, *_args: Any) -> None:
        return None


CLOCK = SystemClock()
IDS = RandomIds()


# Distinct valid numbers (11 area codes x 10,000), so core.numbers' cache of parsed numbers
# (4,096 entries) rarely hits: every submission pays for libphonenumber, as with real traffic
# to many different recipients.
AREAS = (201, 202, 212, 305, 312, 415, 617, 646, 702, 718, 917)
_next_number = 0


def fresh_number() -> str:
    global _next_number
    n = _next_number
    _next_number = (n + 1) % (len(AREAS) * 10_000)
    return f"+1{AREAS[n % len(AREAS)]}555{n // len(AREAS):04d}"


def submission(recipients: int) -> Submission:
    return Submission(
        account=ACCOUNT,
        origin=Origin.HTTP,
        submitter="bench",
        recipients=tuple(Recipient(number=fresh_number()) for _ in range(recipients)),
        content=Content(text="Your code is 123456", subject="Login"),
    )


def prebuilt(recipients: int) -> tuple[Message, list[Delivery], list[DeliveryEvent]]:
    """What accept() hands the store, built without accept()."""
    now = CLOCK.now()
    message = Message(
        id=IDS.new_id(),
        account_id=1,
        origin=Origin.HTTP,
        submitter="bench",
        content=Content(text="Your code is 123456", subject="Login"),
        options=submission(1).options,
        created_at=now,
    )
    deliveries, events = [], []
    for seq in range(recipients):
        delivery = Delivery(
            id=IDS.new_id(),
            message_id=message.id,
            account_id=1,
            seq=seq,
            recipient=NUMBERS[seq % len(NUMBERS)],
            device=submission(1).recipients[0].device,
            state=DeliveryState.QUEUED,
            next_attempt_at=now,
            valid_until=now + timedelta(days=2),
            created_at=now,
            updated_at=now,
        )
        deliveries.append(delivery)
        events.append(
            DeliveryEvent(
                delivery_id=delivery.id, at=now, from_state=None,
                to_state=DeliveryState.ACCEPTED, reason="accepted via http from bench",
            )
        )  # fmt: skip
        events.append(
            DeliveryEvent(
                delivery_id=delivery.id, at=now, from_state=DeliveryState.ACCEPTED,
                to_state=DeliveryState.QUEUED, reason="queued",
            )
        )  # fmt: skip
    return message, deliveries, events


async def concurrently(total: int, tasks: int, one: Callable[[int], Awaitable[Any]]) -> float:
    """Run `one(i)` for i in range(total) on `tasks` concurrent tasks; return seconds."""
    counter = iter(range(total))

    async def submitter() -> None:
        for i in counter:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(tasks)))
    return time.perf_counter() - started


# -- raw driver references ------------------------------------------------------------------


def _insert(table: str, columns: tuple[str, ...], marks: str) -> str:
    if marks == "$":
        values = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    else:
        values = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"


def raw_rows(count: int, recipients: int) -> list[tuple[Any, list[Any], list[Any]]]:
    rows = []
    for _ in range(count):
        message, deliveries, events = prebuilt(recipients)
        rows.append(
            (
                message_values(message),
                [delivery_values(d) for d in deliveries],
                [event_values(e) for e in events],
            )
        )
    return rows


def raw_sqlite(path: str, rows: list[Any], batch: int) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        connection.execute(pragma)
    statements = [
        _insert("messages", MESSAGE_COLUMNS, "?"),
        _insert("deliveries", DELIVERY_COLUMNS, "?"),
        _insert("delivery_events", EVENT_COLUMNS, "?"),
    ]
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(statements[0], [r[0] for r in chunk])
        connection.executemany(statements[1], [d for r in chunk for d in r[1]])
        connection.executemany(statements[2], [e for r in chunk for e in r[2]])
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


async def raw_postgres(url: URL, rows: list[Any], batch: int) -> float:
    connection = await asyncpg.connect(to_asyncpg_dsn(url))
    await connection.set_type_codec(
        "json", encoder=str, decoder=json.loads, schema="pg_catalog", format="text"
    )
    statements = [
        _insert("messages", MESSAGE_COLUMNS, "$"),
        _insert("deliveries", DELIVERY_COLUMNS, "$"),
        _insert("delivery_events", EVENT_COLUMNS, "$"),
    ]
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        async with connection.transaction():
            await connection.executemany(statements[0], [r[0] for r in chunk])
            await connection.executemany(statements[1], [d for r in chunk for d in r[1]])
            await connection.executemany(statements[2], [e for r in chunk for e in r[2]])
    elapsed = time.perf_counter() - started
    await connection.close()
    return elapsed


# -- the runs -------------------------------------------------------------------------------


@dataclass
class Row:
    engine: str
    recipients: int
    messages: int
    accept: float
    store_only: float
    raw: float
    no_store: float
    batch: float
    accept_cpu: float  # CPU µs per message: this process and its children, all threads
    store_cpu: float
    raw_cpu: float
    no_store_cpu: float


async def add_account(store: Store) -> None:
    now = CLOCK.now()
    async with store.engine.begin() as connection:
        await connection.execute(
            tables.accounts.insert().values(
                id=1, name="bench", enabled=True, settings={}, created_at=now, updated_at=now
            )
        )


async def empty(store: Store) -> None:
    async with store.engine.begin() as connection:
        for table in ("upstream_refs", "delivery_events", "deliveries", "messages"):
            await connection.exec_driver_sql(f"DELETE FROM {table}")


async def bench_accepts(
    engine: str, url: str | URL, counts: dict[int, int], tasks: int
) -> list[Row]:
    store = await open_store(url, migrate=True)
    await add_account(store)
    rows = []
    try:
        for recipients, count in counts.items():
            subs = [submission(recipients) for _ in range(count)]

            async def one_accept(i: int, subs: list[Submission] = subs) -> None:
                await accept(subs[i], store=store.messages, clock=CLOCK, ids=IDS)

            async def no_store(i: int, subs: list[Submission] = subs) -> None:
                await accept(subs[i], store=NullStore(), clock=CLOCK, ids=IDS)  # type: ignore[arg-type]

            await concurrently(min(count, 200), tasks, one_accept)  # warm up
            subs[:] = [submission(recipients) for _ in range(count)]  # numbers not seen yet
            await empty(store)
            commits = store.writer.commits
            cpu = tree_cpu_seconds()
            accept_s = await concurrently(count, tasks, one_accept)
            accept_cpu = (tree_cpu_seconds() - cpu) / count * 1e6
            batch = count / max(1, store.writer.commits - commits)
            await empty(store)

            items = [prebuilt(recipients) for _ in range(count)]

            async def one_add(i: int, items: list[Any] = items) -> None:
                await store.messages.add_message(*items[i])

            cpu = tree_cpu_seconds()
            store_s = await concurrently(count, tasks, one_add)
            store_cpu = (tree_cpu_seconds() - cpu) / count * 1e6
            await empty(store)
            subs[:] = [submission(recipients) for _ in range(count)]
            cpu = tree_cpu_seconds()
            no_store_s = await concurrently(count, tasks, no_store)
            no_store_cpu = (tree_cpu_seconds() - cpu) / count * 1e6

            reference = raw_rows(count, recipients)
            cpu = tree_cpu_seconds()
            if engine == "SQLite":
                path = make_url(url).database
                assert path is not None
                raw_s = await asyncio.to_thread(raw_sqlite, path, reference, tasks)
            else:
                raw_s = await raw_postgres(make_url(url), reference, tasks)
            raw_cpu = (tree_cpu_seconds() - cpu) / count * 1e6
            await empty(store)
            rows.append(
                Row(
                    engine, recipients, count, count / accept_s, count / store_s,
                    count / raw_s, count / no_store_s, batch, accept_cpu, store_cpu,
                    raw_cpu, no_store_cpu,
                )
            )  # fmt: skip
            print(_accept_line(rows[-1]), flush=True)
    finally:
        await store.close()
    return rows


async def delivered(store: Store, delivery_id: str, worker: str) -> Delivery | None:
    return await store.queue.transition(
        delivery_id, DeliveryState.DELIVERED, now=CLOCK.now(), reason="bench", worker=worker
    )


async def bench_queue(engine: str, url: str | URL, deliveries: int, workers: int) -> float:
    store = await open_store(url, migrate=True)
    try:
        await empty(store)
        items = [prebuilt(10) for _ in range(deliveries // 10)]
        await asyncio.gather(*(store.messages.add_message(*item) for item in items))
        lease_for = timedelta(minutes=5)

        async def worker(name: str) -> int:
            done = 0
            while True:
                now = CLOCK.now()
                leases = await store.queue.lease(
                    worker=name, now=now, limit=50, lease_for=lease_for
                )
                if not leases:
                    return done
                results = await asyncio.gather(
                    *(delivered(store, item.delivery.id, name) for item in leases)
                )
                done += sum(1 for r in results if r is not None)

        started = time.perf_counter()
        done = await asyncio.gather(*(worker(f"w{n}") for n in range(workers)))
        elapsed = time.perf_counter() - started
        assert sum(done) == len(items) * 10, (sum(done), len(items) * 10)
        await empty(store)
        rate = sum(done) / elapsed
        print(f"{engine:<10} queue lease+transition: {rate:,.0f} deliveries/s", flush=True)
        return rate
    finally:
        await store.close()


def _accept_line(row: Row) -> str:
    return (
        f"{row.engine:<10} {row.recipients:>3} rcpt  accept() {row.accept:>8,.0f}/s  "
        f"store only {row.store_only:>8,.0f}/s  raw {row.raw:>8,.0f}/s  "
        f"accept() no store {row.no_store:>8,.0f}/s  ~{row.batch:,.0f} msgs/commit  "
        f"CPU/msg: accept() {row.accept_cpu:,.0f} us, store only {row.store_cpu:,.0f} us, "
        f"raw {row.raw_cpu:,.0f} us, no store {row.no_store_cpu:,.0f} us"
    )


def markdown(rows: list[Row], queue: dict[str, float], args: argparse.Namespace) -> str:
    lines = [
        "## Store",
        "",
        f"`bench/store.py{' --quick' if args.quick else ''}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {args.pg_version}; "
        f"{args.submitters} concurrent submitters; {datetime.now(UTC):%Y-%m-%d}; "
        f"load average {args.load} at the start (the machine is shared).",
        "Every number is committed durably (SQLite WAL + synchronous=FULL, PostgreSQL "
        "synchronous_commit=on). Messages per second (deliveries per second = messages x "
        "recipients).",
        "",
        "| engine | recipients | accept() msgs/s | store only msgs/s | raw driver msgs/s "
        "| accept() without store msgs/s | msgs per commit | CPU µs/msg: accept() "
        "| store only | raw driver | accept() without store | store / raw (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.engine} | {row.recipients} | {row.accept:,.0f} | {row.store_only:,.0f} "
            f"| {row.raw:,.0f} | {row.no_store:,.0f} | {row.batch:,.0f} "
            f"| {row.accept_cpu:,.0f} | {row.store_cpu:,.0f} | {row.raw_cpu:,.0f} "
            f"| {row.no_store_cpu:,.0f} | {row.store_cpu / row.raw_cpu:.1f}x |"
        )
    lines += ["", "| engine | lease + transition(DELIVERED), deliveries/s |", "|---|---:|"]
    lines += [f"| {engine} | {rate:,.0f} |" for engine, rate in queue.items()]
    lines += [
        "",
        "`store only` is `add_message` with prebuilt messages; `raw driver` inserts the same "
        "rows with sqlite3 / asyncpg `executemany`, one transaction per batch of "
        f"{args.submitters} messages; `accept() without store` is the domain's own cost "
        "(validation, phone number parsing of distinct numbers, ids). CPU µs/msg is this "
        "process's CPU time (all threads, and its SQLite commit process; not the PostgreSQL "
        "server's) per message: steadier "
        "than messages/s on a shared machine, where the wall-clock numbers vary from run to "
        "run.",
        "",
    ]
    return "\n".join(lines)


def write_section(section: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n\n"
    pattern = re.compile(r"^## Store\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages (about 20 s)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/")
    parser.add_argument("--submitters", type=int, default=200)
    args = parser.parse_args()
    scale = 1 if args.quick else 5
    counts = {1: 4_000 * scale, 10: 800 * scale, 100: 80 * scale}
    queue_size = 4_000 * scale
    rows: list[Row] = []
    queue: dict[str, float] = {}
    args.pg_version = "no PostgreSQL"
    args.load = " / ".join(f"{n:.1f}" for n in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="teleway-bench-") as directory:
        url = f"sqlite+aiosqlite:///{directory}/bench.db"
        rows += await bench_accepts("SQLite", url, counts, args.submitters)
        queue["SQLite"] = await bench_queue("SQLite", url, queue_size, 8)
    if not args.no_postgres:
        admin_url = make_url(PG_ADMIN)
        name = f"teleway_bench_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(to_asyncpg_dsn(admin_url))
        version = await admin.fetchval("SHOW server_version")
        args.pg_version = f"PostgreSQL {version.split()[0]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url_pg = admin_url.set(database=name)
            rows += await bench_accepts("PostgreSQL", url_pg, counts, args.submitters)
            queue["PostgreSQL"] = await bench_queue("PostgreSQL", url_pg, queue_size, 8)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    section = markdown(rows, queue, args)
    print()
    print(section)
    if not args.no_write:
        write_section(section)
        print(f"wrote the Store section of {DOCS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
