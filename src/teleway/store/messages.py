"""`MessageStore` on SQLAlchemy Core: messages, their deliveries and events, upstream ids.

`add_message` goes through the group-commit writer (store.writer): it returns once the batch that
carried the message is committed, and raises `StoreUnavailable`/`StoreFull` (nothing stored) or
`StoreRejected` (e.g. an id already used; nothing of this message stored). A delivery `accept()`
built already leased (handed to a local worker, see `core.ports.Handoff`) is stored IN_FLIGHT as
given, with the outbox report of that change in the same transaction when its submitter wants it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from teleway.core.model import Delivery, DeliveryEvent, DeliveryState, Message
from teleway.core.ports import NewMessage
from teleway.store import tables
from teleway.store.engine import Database
from teleway.store.outbox import report_row
from teleway.store.rows import (
    delivery_from_row,
    delivery_values,
    event_from_row,
    event_values,
    message_from_row,
    message_values,
)
from teleway.store.writer import Writer

MAX_LIST = 1_000  # rows list_messages returns at most, whatever is asked


class SqlMessageStore:
    """Implements `core.ports.MessageStore` (plus portal listing and upstream id recording)."""

    def __init__(self, db: Database, writer: Writer) -> None:
        self._db = db
        self._writer = writer

    async def add_message(
        self,
        message: Message,
        deliveries: Sequence[Delivery],
        events: Sequence[DeliveryEvent],
    ) -> None:
        await self.add_messages([(message, deliveries, events)])

    async def add_messages(self, batch: Sequence[NewMessage]) -> None:
        """Several messages in one writer item: committed together, or refused together."""
        messages: list[tuple[Any, ...]] = []
        delivery_rows: list[tuple[Any, ...]] = []
        event_rows: list[tuple[Any, ...]] = []
        reports: list[tuple[Any, ...]] = []
        wakes = False
        for message, deliveries, events in batch:
            for delivery in deliveries:
                if delivery.message_id != message.id:
                    raise ValueError(f"delivery {delivery.id} does not belong to {message.id}")
                delivery_rows.append(delivery_values(delivery))
                if delivery.state is DeliveryState.IN_FLIGHT:
                    _report_lease(reports, delivery, events)
                elif not wakes:
                    wakes = (
                        delivery.state is DeliveryState.QUEUED
                        and delivery.next_attempt_at <= message.created_at
                    )
            messages.append(message_values(message))
            event_rows.extend(event_values(e) for e in events)
        await self._writer.add_many(
            messages, delivery_rows, event_rows, wakes=wakes, reports=reports
        )

    async def get_message(self, message_id: str) -> Message | None:
        m = tables.messages

        def query(connection: Connection) -> Message | None:
            row = connection.execute(select(m).where(m.c.id == message_id)).mappings().first()
            return None if row is None else message_from_row(row)

        return await self._db.read(query)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        def query(connection: Connection) -> Delivery | None:
            return load_delivery(connection, delivery_id)

        return await self._db.read(query)

    async def deliveries_of(self, message_id: str) -> list[Delivery]:
        d = tables.deliveries

        def query(connection: Connection) -> list[Delivery]:
            rows = connection.execute(
                select(d).where(d.c.message_id == message_id).order_by(d.c.seq)
            ).mappings()
            return [delivery_from_row(row) for row in rows]

        return await self._db.read(query)

    async def events_of(self, delivery_id: str) -> list[DeliveryEvent]:
        e = tables.delivery_events

        def query(connection: Connection) -> list[DeliveryEvent]:
            rows = connection.execute(
                select(e).where(e.c.delivery_id == delivery_id).order_by(e.c.id)
            ).mappings()
            return [event_from_row(row) for row in rows]

        return await self._db.read(query)

    async def find_by_upstream_id(self, upstream_id: str) -> Delivery | None:
        """The delivery an upstream (e.g. SMSC) id was recorded for; exact match only."""
        d, u = tables.deliveries, tables.upstream_refs

        def query(connection: Connection) -> Delivery | None:
            row = (
                connection.execute(
                    select(d)
                    .join(u, u.c.delivery_id == d.c.id)
                    .where(u.c.upstream_id == upstream_id)
                )
                .mappings()
                .first()
            )
            return None if row is None else delivery_from_row(row)

        return await self._db.read(query)

    async def add_upstream_ids(
        self, delivery_id: str, upstream_ids: Sequence[str], *, now: datetime
    ) -> bool:
        """Record upstream ids for a delivery without changing its state (e.g. a submit_sm_resp
        that arrived after `release`). Returns False for an unknown delivery."""
        d = tables.deliveries

        def job(connection: Connection) -> bool:
            row = connection.execute(
                select(d.c.upstream_ids).where(d.c.id == delivery_id).with_for_update()
            ).first()
            if row is None:
                return False
            merged = merge_ids(row[0], upstream_ids)
            connection.execute(
                update(d).where(d.c.id == delivery_id).values(upstream_ids=merged, updated_at=now)
            )
            record_upstream_ids(self._db, connection, delivery_id, upstream_ids, now)
            return True

        return await self._writer.write(job)

    async def list_messages(
        self, account_id: int | None, *, limit: int = 50, before: datetime | None = None
    ) -> list[Message]:
        """Newest first; `account_id=None` lists every account (operators). Page with
        `before=<created_at of the last message seen>` (messages created in the same
        microsecond as that one may be skipped)."""
        m = tables.messages
        statement = select(m).order_by(m.c.created_at.desc(), m.c.id.desc())
        if account_id is not None:
            statement = statement.where(m.c.account_id == account_id)
        if before is not None:
            statement = statement.where(m.c.created_at < before)
        statement = statement.limit(max(0, min(limit, MAX_LIST)))

        def query(connection: Connection) -> list[Message]:
            return [message_from_row(row) for row in connection.execute(statement).mappings()]

        return await self._db.read(query)


def _report_lease(
    reports: list[tuple[Any, ...]], delivery: Delivery, events: Sequence[DeliveryEvent]
) -> None:
    """A new delivery stored already leased (handed to a local worker by `accept()`): the outbox
    row `lease()` would have added for its QUEUED -> IN_FLIGHT change, when it is wanted."""
    if not delivery.report.wants(DeliveryState.IN_FLIGHT):
        return
    reason = next(
        e.reason
        for e in reversed(events)
        if e.delivery_id == delivery.id and e.to_state is DeliveryState.IN_FLIGHT
    )
    row = report_row(delivery, DeliveryState.IN_FLIGHT, delivery.updated_at, reason)
    if row is not None:
        reports.append(row)


def load_delivery(connection: Connection, delivery_id: str) -> Delivery | None:
    d = tables.deliveries
    row = connection.execute(select(d).where(d.c.id == delivery_id)).mappings().first()
    return None if row is None else delivery_from_row(row)


def merge_ids(existing: Iterable[str], new: Iterable[str]) -> list[str]:
    """Existing ids followed by the new ones not yet present, in order."""
    merged = list(existing)
    seen = set(merged)
    for upstream_id in new:
        if upstream_id not in seen:
            seen.add(upstream_id)
            merged.append(upstream_id)
    return merged


def record_upstream_ids(
    db: Database,
    connection: Connection,
    delivery_id: str,
    upstream_ids: Iterable[str],
    now: datetime,
) -> None:
    """Map each upstream id to the delivery, numbering the parts 1, 2, ... in the given order.
    An id seen before (upstreams reuse their id space eventually) is moved to this, the newest,
    delivery, its part outcome cleared."""
    rows = [
        {
            "upstream_id": upstream_id,
            "delivery_id": delivery_id,
            "part": part,
            "state": None,
            "created_at": now,
            "updated_at": None,
        }
        for part, upstream_id in enumerate(dict.fromkeys(upstream_ids), start=1)
    ]
    if not rows:
        return
    connection.execute(_upsert_upstream_refs(db.is_postgresql), rows)


@cache
def _upsert_upstream_refs(postgres: bool) -> Any:
    """INSERT ... ON CONFLICT (upstream_id) DO UPDATE, built once per dialect (building it costs
    more than running it: it was half of the writer's time per submitted SMS)."""
    statement = (postgresql.insert if postgres else sqlite.insert)(tables.upstream_refs)
    return statement.on_conflict_do_update(
        index_elements=[tables.upstream_refs.c.upstream_id],
        set_={
            name: statement.excluded[name]
            for name in ("delivery_id", "part", "state", "created_at", "updated_at")
        },
    )
