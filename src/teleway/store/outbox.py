"""`Outbox` on SQLAlchemy Core: the `outbox` table (see core.ports.Outbox).

REPORT rows are not added through this class: the queue's state changes add them to the same
transaction (`Journal.report`), so a delivery's new state and the report of it are committed
together or not at all. INBOUND rows (replies from phones) come through `add`.

Leasing follows the work queue's rules: pending rows of one origin, due, not leased or with an
expired lease, picked with `FOR UPDATE SKIP LOCKED` on PostgreSQL and under the single write
lock on SQLite, so no row is handed to two reporters at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from teleway.core.model import (
    Delivery,
    DeliveryState,
    Origin,
    OutboxItem,
    OutboxKind,
    OutboxStatus,
    report_of,
)
from teleway.core.signal import OutboxSignal
from teleway.store import tables
from teleway.store.engine import Database
from teleway.store.writer import Writer

_o = tables.outbox
MAX_LEASE = 500


def report_row(
    delivery: Delivery, to_state: DeliveryState, now: datetime, reason: str
) -> tuple[Any, ...] | None:
    """The outbox row (`store.rows.OUTBOX_COLUMNS` order, driver values) reporting that `delivery` reached
    `to_state`, or None when nobody asked to be told. Messages typed at the CLI have nobody to
    report to."""
    report = report_of(delivery, to_state, now, reason)
    if report is None:
        return None
    payload, valid_until = report
    at = now.timestamp()
    keep = valid_until.timestamp()
    return (
        OutboxKind.REPORT.value,
        delivery.origin.value,
        delivery.account_id,
        delivery.message_id,
        delivery.id,
        to_state.value,
        json.dumps(payload),
        OutboxStatus.PENDING.value,
        0,
        at,
        keep,
        None,
        None,
        None,
        at,
        at,
    )


def item_from_row(row: Mapping[Any, Any]) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        kind=OutboxKind(row["kind"]),
        origin=Origin(row["origin"]),
        account_id=row["account_id"],
        message_id=row["message_id"],
        delivery_id=row["delivery_id"],
        state=None if row["state"] is None else DeliveryState(row["state"]),
        payload=dict(row["payload"] or {}),
        status=OutboxStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        valid_until=row["valid_until"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_error=row["last_error"],
    )


class SqlOutbox:
    """Implements `core.ports.Outbox`."""

    def __init__(self, db: Database, writer: Writer) -> None:
        self._db = db
        self._writer = writer
        self._event = OutboxSignal()
        writer.on_reports = self._event.set  # REPORT rows committed by the queue's changes

    async def add(
        self,
        *,
        kind: OutboxKind,
        origin: Origin,
        account_id: int,
        payload: dict[str, Any],
        now: datetime,
        valid_until: datetime,
        message_id: str | None = None,
        delivery_id: str | None = None,
        state: DeliveryState | None = None,
    ) -> int:
        statement = (
            insert(_o)
            .values(
                kind=kind.value,
                origin=origin.value,
                account_id=account_id,
                message_id=message_id,
                delivery_id=delivery_id,
                state=None if state is None else state.value,
                payload=payload,
                status=OutboxStatus.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                valid_until=valid_until,
                created_at=now,
                updated_at=now,
            )
            .returning(_o.c.id)
        )

        def job(connection: Connection) -> int:
            return int(connection.execute(statement).scalar_one())

        item_id = await self._writer.write(job)
        self._event.set()
        return item_id

    async def lease(
        self,
        *,
        origin: Origin,
        worker: str,
        now: datetime,
        limit: int,
        lease_for: timedelta,
        accounts: Collection[int] | None = None,
    ) -> list[OutboxItem]:
        limit = min(limit, MAX_LEASE)
        if limit <= 0 or (accounts is not None and not accounts):
            return []
        account_ids = None if accounts is None else sorted(accounts)

        def job(connection: Connection) -> list[OutboxItem]:
            pending = [_o.c.status == OutboxStatus.PENDING.value, _o.c.origin == origin.value]
            if account_ids is not None:
                pending.append(_o.c.account_id.in_(account_ids))
            connection.execute(
                update(_o)
                .where(*pending, _o.c.valid_until <= now)
                .where((_o.c.lease_owner.is_(None)) | (_o.c.lease_expires_at <= now))
                .values(
                    status=OutboxStatus.DROPPED.value,
                    last_error="validity ended before it could be sent",
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
            )
            picked = connection.execute(
                select(_o.c.id)
                .where(*pending, _o.c.next_attempt_at <= now, _o.c.valid_until > now)
                .where((_o.c.lease_owner.is_(None)) | (_o.c.lease_expires_at <= now))
                .order_by(_o.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars()
            ids = list(picked)
            if not ids:
                return []
            rows = connection.execute(
                update(_o)
                .where(_o.c.id.in_(ids))
                .values(
                    lease_owner=worker,
                    lease_expires_at=now + lease_for,
                    attempts=_o.c.attempts + 1,
                    updated_at=now,
                )
                .returning(*_o.c)
            ).mappings()
            return sorted((item_from_row(row) for row in rows), key=lambda item: item.id)

        return await self._writer.write(job)

    async def _set(self, item_id: int, values: dict[str, Any]) -> None:
        statement = update(_o).where(_o.c.id == item_id).values(**values)

        def job(connection: Connection) -> None:
            connection.execute(statement)

        await self._writer.write(job)

    async def done(self, item_id: int, *, now: datetime) -> None:
        await self._set(
            item_id,
            {
                "status": OutboxStatus.SENT.value,
                "lease_owner": None,
                "lease_expires_at": None,
                "updated_at": now,
            },
        )

    async def retry(self, item_id: int, *, now: datetime, at: datetime, error: str) -> None:
        await self._set(
            item_id,
            {
                "status": OutboxStatus.PENDING.value,
                "next_attempt_at": at,
                "last_error": error,
                "lease_owner": None,
                "lease_expires_at": None,
                "updated_at": now,
            },
        )
        if at <= now:
            self._event.set()

    async def drop(self, item_id: int, *, now: datetime, error: str) -> None:
        await self._set(
            item_id,
            {
                "status": OutboxStatus.DROPPED.value,
                "last_error": error,
                "lease_owner": None,
                "lease_expires_at": None,
                "updated_at": now,
            },
        )

    async def wait(self, timeout: float, *, origin: Origin | None = None) -> None:
        flag = self._event.flag(origin)
        if not flag.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(flag.wait(), timeout)
        flag.clear()

    def wake(self) -> None:
        """Make waiters look now (e.g. a receiver just bound)."""
        self._event.set()

    async def get(self, item_id: int) -> OutboxItem | None:
        def read(connection: Connection) -> OutboxItem | None:
            row = connection.execute(select(_o).where(_o.c.id == item_id)).mappings().first()
            return None if row is None else item_from_row(row)

        return await self._db.read(read)

    async def recent(
        self, *, account_id: int, origin: Origin | None = None, limit: int = 50
    ) -> list[OutboxItem]:
        query = select(_o).where(_o.c.account_id == account_id)
        if origin is not None:
            query = query.where(_o.c.origin == origin.value)
        query = query.order_by(_o.c.id.desc()).limit(limit)

        def read(connection: Connection) -> list[OutboxItem]:
            return [item_from_row(row) for row in connection.execute(query).mappings()]

        return await self._db.read(read)

    async def for_delivery(self, delivery_id: str) -> list[OutboxItem]:
        """Every item about one delivery, oldest first."""
        query = select(_o).where(_o.c.delivery_id == delivery_id).order_by(_o.c.id)

        def read(connection: Connection) -> list[OutboxItem]:
            return [item_from_row(row) for row in connection.execute(query).mappings()]

        return await self._db.read(read)
