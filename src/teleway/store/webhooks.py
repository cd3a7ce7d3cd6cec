"""The log of webhook calls: one row per attempt, for the portal ("last responses") and support.

Written by `notify.webhook` after each POST (status, the first KiB of the answer, or the network
error); read per account or per outbox item.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from teleway.store import tables
from teleway.store.engine import Database
from teleway.store.writer import Writer

RESPONSE_CHARS = 1024  # of the receiver's answer kept per attempt
RETENTION = timedelta(days=30)
MAX_LIST = 500


@dataclass(frozen=True, kw_only=True)
class WebhookAttempt:
    id: int
    outbox_id: int
    account_id: int
    url: str
    at: datetime
    status_code: int | None  # None: no HTTP answer (see `error`)
    response: str | None  # first RESPONSE_CHARS characters of the body
    error: str | None
    duration_ms: float | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _from_row(row: Any) -> WebhookAttempt:
    return WebhookAttempt(
        id=row.id,
        outbox_id=row.outbox_id,
        account_id=row.account_id,
        url=row.url,
        at=row.at,
        status_code=row.status_code,
        response=row.response,
        error=row.error,
        duration_ms=row.duration_ms,
    )


class WebhookAttempts:
    def __init__(self, db: Database, writer: Writer) -> None:
        self._db = db
        self._writer = writer

    async def record(
        self,
        *,
        outbox_id: int,
        account_id: int,
        url: str,
        at: datetime,
        status_code: int | None,
        response: str | None,
        error: str | None,
        duration_ms: float | None,
    ) -> None:
        w = tables.webhook_attempts
        values = {
            "outbox_id": outbox_id,
            "account_id": account_id,
            "url": url,
            "at": at,
            "status_code": status_code,
            "response": None if response is None else response[:RESPONSE_CHARS],
            "error": error,
            "duration_ms": duration_ms,
        }

        def job(connection: Connection) -> None:
            connection.execute(insert(w).values(**values))

        await self._writer.write(job)

    async def recent(self, account_id: int | None, *, limit: int = 50) -> list[WebhookAttempt]:
        """Newest first; `account_id=None`: every account (operators)."""
        w = tables.webhook_attempts
        statement = select(w).order_by(w.c.id.desc()).limit(max(1, min(limit, MAX_LIST)))
        if account_id is not None:
            statement = statement.where(w.c.account_id == account_id)

        def query(connection: Connection) -> list[WebhookAttempt]:
            return [_from_row(row) for row in connection.execute(statement)]

        return await self._db.read(query)

    async def of_outbox(self, outbox_id: int) -> list[WebhookAttempt]:
        """Every attempt for one report, oldest first."""
        w = tables.webhook_attempts
        statement = select(w).where(w.c.outbox_id == outbox_id).order_by(w.c.id)

        def query(connection: Connection) -> list[WebhookAttempt]:
            return [_from_row(row) for row in connection.execute(statement)]

        return await self._db.read(query)

    async def purge(self, *, now: datetime, retention: timedelta = RETENTION) -> int:
        w = tables.webhook_attempts

        def job(connection: Connection) -> int:
            return int(connection.execute(delete(w).where(w.c.at < now - retention)).rowcount or 0)

        return await self._writer.write(job)
