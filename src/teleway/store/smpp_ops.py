"""Store operations behind the SMPP message management commands (query_sm, cancel_sm,
replace_sm) that the MessageStore and WorkQueue ports do not offer.

Every write goes through the group-commit writer as one transaction. Cancel is the work queue's
own conditional change (compare and set on the state, with its event and outbox report),
restricted to QUEUED: what an upstream may already have cannot be recalled. Replace rewrites a
message whose deliveries are all still QUEUED, after locking them (FOR UPDATE on PostgreSQL, the
single write lock on SQLite), so a dispatcher cannot lease one half-way.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from teleway.core.model import Delivery, DeliveryState, Message, Options
from teleway.core.smpp_submit import Replacement
from teleway.store import tables
from teleway.store.engine import Database
from teleway.store.queue import SqlWorkQueue, _Change, _event
from teleway.store.rows import delivery_from_row, message_from_row
from teleway.store.writer import EventRows, Writer

_d = tables.deliveries
_m = tables.messages
#: messages one cancel_sm by address may withdraw at most (spec 4.9: "all messages" from a
#: source to a destination; bounded so one PDU cannot make one huge transaction)
MAX_CANCEL = 1_000


class SmppOperations:
    """Implements `core.smpp_submit.SmppMessages`."""

    def __init__(self, db: Database, writer: Writer, queue: SqlWorkQueue) -> None:
        self._db = db
        self._writer = writer
        self._queue = queue

    async def message_of(
        self, message_id: str, account_id: int
    ) -> tuple[Message, list[Delivery]] | None:
        """The account's message and its deliveries (None for another account's id)."""

        def query(connection: Connection) -> tuple[Message, list[Delivery]] | None:
            row = connection.execute(select(_m).where(_m.c.id == message_id)).mappings().first()
            if row is None or row["account_id"] != account_id:
                return None
            rows = connection.execute(
                select(_d).where(_d.c.message_id == message_id).order_by(_d.c.seq)
            ).mappings()
            return message_from_row(row), [delivery_from_row(r) for r in rows]

        return await self._db.read(query)

    async def queued_to(self, account_id: int, recipient: str, sender: str | None) -> list[str]:
        """Ids of the account's messages with a QUEUED delivery to `recipient` sent from
        `sender` (None: any sender), oldest first (cancel_sm without message_id, 4.9.1)."""

        def query(connection: Connection) -> list[str]:
            rows = connection.execute(
                select(_m.c.id, _m.c.options)
                .join(_d, _d.c.message_id == _m.c.id)
                .where(
                    _d.c.account_id == account_id,
                    _d.c.recipient == recipient,
                    _d.c.state == DeliveryState.QUEUED.value,
                )
                .order_by(_d.c.created_at)
                .limit(MAX_CANCEL)
            )
            found: list[str] = []
            for message_id, options in rows:
                if sender is not None and Options.from_dict(options or {}).sender_id != sender:
                    continue
                if message_id not in found:
                    found.append(message_id)
            return found

        return await self._db.read(query)

    async def cancel(self, delivery_id: str, *, now: datetime, reason: str) -> Delivery | None:
        """QUEUED -> CANCELLED (event and report included); None when it was not QUEUED."""
        change = _Change(
            delivery_id=delivery_id,
            allowed=frozenset({DeliveryState.QUEUED}),
            worker=None,
            to_state=DeliveryState.CANCELLED,
            now=now,
            reason=reason,
            next_attempt_at=None,
            channel=None,
            error=None,
            upstream_ids=(),
            keep_lease=False,
        )
        return await self._writer.write_logged(partial(self._queue._change, change))

    async def replace(
        self, message_id: str, account_id: int, new: Replacement, *, now: datetime, reason: str
    ) -> bool:
        """Rewrite the message's content (and times, report) if every delivery is QUEUED."""

        def job(connection: Connection, events: EventRows) -> bool:
            row = connection.execute(
                select(_m.c.account_id, _m.c.options).where(_m.c.id == message_id)
            ).first()
            if row is None or row.account_id != account_id:
                return False
            deliveries = connection.execute(
                select(_d.c.id, _d.c.state, _d.c.valid_until)
                .where(_d.c.message_id == message_id)
                .with_for_update()
            ).all()
            if not deliveries or any(d.state != DeliveryState.QUEUED.value for d in deliveries):
                return False
            options = Options.from_dict(row.options or {})
            options_values: dict[str, Any] = options.to_dict()
            options_values["report"] = str(new.report)
            if new.scheduled_at is not None:
                options_values["scheduled_at"] = new.scheduled_at.isoformat()
            if new.valid_until is not None:
                options_values["valid_until"] = new.valid_until.isoformat()
            connection.execute(
                update(_m)
                .where(_m.c.id == message_id)
                .values(
                    text=new.content.text,
                    raw=new.content.raw,
                    data_coding=new.content.data_coding,
                    options=options_values,
                )
            )
            values: dict[str, Any] = {"report": str(new.report), "updated_at": now}
            if new.scheduled_at is not None:
                values["next_attempt_at"] = new.scheduled_at
            if new.valid_until is not None:
                values["valid_until"] = new.valid_until
            connection.execute(
                update(_d)
                .where(_d.c.message_id == message_id, _d.c.state == DeliveryState.QUEUED.value)
                .values(**values)
            )
            for delivery in deliveries:
                events.append(
                    _event(delivery.id, now, DeliveryState.QUEUED, DeliveryState.QUEUED, reason)
                )
            return True

        return await self._writer.write_logged(job)
