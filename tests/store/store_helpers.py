"""Helpers shared by the store tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import URL

from teleway.core.accept import accept
from teleway.core.model import (
    Account,
    Attachment,
    Content,
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Device,
    Message,
    Options,
    Origin,
    Recipient,
    Submission,
)
from teleway.core.ports import StoreFull
from teleway.store import Store, open_store, tables
from teleway.store.engine import to_asyncpg_dsn
from teleway.testing.fakes import FakeClock, InMemoryStore, SequentialIds

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
PG_USERS = ("postgres", "root")
START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
ACCOUNTS = (1, 2)


async def add_accounts(store: Store) -> None:
    async with store.engine.begin() as connection:
        await connection.execute(
            tables.accounts.insert(),
            [
                {
                    "id": account_id,
                    "name": f"account{account_id}",
                    "enabled": True,
                    "settings": {},
                    "created_at": START,
                    "updated_at": START,
                }
                for account_id in ACCOUNTS
            ],
        )


async def empty_postgres(url: URL) -> None:
    names = ", ".join(table.name for table in tables.metadata.sorted_tables)
    connection = await asyncpg.connect(to_asyncpg_dsn(url))
    try:
        await connection.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()


@dataclass
class Backend:
    """What a contract test gets: the MessageStore, the WorkQueue, and a few levers."""

    name: str
    messages: Any
    queue: Any
    clock: FakeClock
    ids: SequentialIds
    store: Store | None = None  # the SQL store, None for the in-memory fake
    memory: InMemoryStore | None = None
    url: str | URL | None = None
    _cleanups: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def is_sql(self) -> bool:
        return self.store is not None

    async def make_full(self) -> None:
        """Make the next writes fail as on a full disk."""
        if self.memory is not None:
            self.memory.fail_writes = StoreFull("disk full (simulated)")
            return
        assert self.store is not None
        if self.name == "sqlite":
            # For every connection (the writer thread's and the commit process's), with the
            # message SQLite gives for a full disk; on the last table add_message writes.
            async with self.store.engine.begin() as connection:
                await connection.execute(
                    text(
                        "CREATE TRIGGER teleway_test_full BEFORE INSERT ON delivery_events "
                        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
                    )
                )
        else:
            async with self.store.engine.begin() as connection:
                await connection.execute(
                    text(
                        "CREATE FUNCTION teleway_test_full() RETURNS trigger AS $$ BEGIN "
                        "RAISE EXCEPTION 'could not extend file: No space left on device' "
                        "USING ERRCODE = '53100'; END $$ LANGUAGE plpgsql"
                    )
                )
                # on the last table add_message writes: the first two inserts must roll back
                await connection.execute(
                    text(
                        "CREATE TRIGGER teleway_test_full BEFORE INSERT ON delivery_events "
                        "FOR EACH STATEMENT EXECUTE FUNCTION teleway_test_full()"
                    )
                )

    async def make_roomy(self) -> None:
        if self.memory is not None:
            self.memory.fail_writes = None
            return
        assert self.store is not None
        if self.name == "sqlite":
            async with self.store.engine.begin() as connection:
                await connection.execute(text("DROP TRIGGER IF EXISTS teleway_test_full"))
        else:
            async with self.store.engine.begin() as connection:
                await connection.execute(
                    text("DROP TRIGGER IF EXISTS teleway_test_full ON delivery_events")
                )
                await connection.execute(text("DROP FUNCTION IF EXISTS teleway_test_full()"))

    async def open_another(self) -> Store:
        """A second, independent store on the same database (another process or node)."""
        assert self.url is not None
        other = await open_store(self.url)
        self._cleanups.append(other.close)
        return other


NUMBERS = tuple(f"+1415555{n:04d}" for n in range(100, 200))


def submission(
    *,
    recipients: int = 1,
    account_id: int = 1,
    device: Device = Device.SMS,
    text: str = "hello",
    options: Options | None = None,
    attachments: tuple[Attachment, ...] = (),
    raw: bytes | None = None,
) -> Submission:
    return Submission(
        account=Account(id=account_id, name=f"account{account_id}"),
        origin=Origin.HTTP,
        submitter="api-key-1",
        recipients=tuple(
            Recipient(number=NUMBERS[i % len(NUMBERS)], device=device) for i in range(recipients)
        ),
        content=Content(text=text, subject="subject", attachments=attachments, raw=raw),
        options=options or Options(),
    )


async def submit(backend: Backend, **kwargs: Any) -> list[str]:
    """accept() one submission; return its delivery ids."""
    accepted = await accept(
        submission(**kwargs), store=backend.messages, clock=backend.clock, ids=backend.ids
    )
    return list(accepted.delivery_ids)


def build(
    backend: Backend,
    *,
    recipients: int = 1,
    delivery_ids: list[str] | None = None,
    due: datetime | None = None,
) -> tuple[Message, list[Delivery], list[DeliveryEvent]]:
    """A message with its deliveries and events, built by hand (for malformed batches)."""
    now = backend.clock.now()
    message = Message(
        id=backend.ids.new_id(),
        account_id=1,
        origin=Origin.SMPP,
        submitter="esme",
        content=Content(text="hand made"),
        options=Options(),
        created_at=now,
    )
    ids = delivery_ids or [backend.ids.new_id() for _ in range(recipients)]
    deliveries = [
        Delivery(
            id=delivery_id,
            message_id=message.id,
            account_id=1,
            seq=seq,
            recipient=NUMBERS[seq % len(NUMBERS)],
            device=Device.SMS,
            state=DeliveryState.QUEUED,
            next_attempt_at=due or now,
            valid_until=now + timedelta(hours=1),
            created_at=now,
            updated_at=now,
        )
        for seq, delivery_id in enumerate(ids)
    ]
    events = [
        DeliveryEvent(
            delivery_id=d.id,
            at=now,
            from_state=None,
            to_state=DeliveryState.ACCEPTED,
            reason="made",
        )
        for d in deliveries
    ]
    return message, deliveries, events


def outbox_of(backend: Backend) -> Any:
    """The backend's outbox: the in-memory fake's or the SQL store's."""
    if backend.memory is not None:
        return backend.memory.outbox
    assert backend.store is not None
    return backend.store.outbox
