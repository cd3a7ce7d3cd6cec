"""Message history: what the REST API and the portal show about messages already sent.

Every query here only reads, through `Database.read` (SQLite: a reader thread, no write lock;
PostgreSQL: an autocommit connection), so browsing history never holds up the gateway's writes.

- `search(filter, limit, cursor)`: messages newest first, filtered by account, date range,
  recipient, device, delivery state and origin; keyset pagination with an opaque cursor (stable
  while new messages arrive, unlike OFFSET).
- `detail(message_id, account_id)`: one message with each delivery, its events (the timeline)
  and its upstream parts (SMS segments with their own receipt state).
- `traffic(...)`: deliveries per time bucket, channel and state (dashboard charts).
- `usage(...)`: per-account counts for `GET /account/usage`.
- `csv_rows(...)`: one row per delivery, streamed page by page (CSV export).

Scoping: every call takes the caller's `account_id`; `None` means every account and is only
for operators. A message of another account is reported as not found, never as forbidden, so
ids of other accounts cannot be probed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Double,
    Select,
    and_,
    cast,
    exists,
    func,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.engine import Connection

from teleway.core.model import (
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Device,
    Message,
    Origin,
)
from teleway.store import tables
from teleway.store.engine import Database
from teleway.store.rows import delivery_from_row, event_from_row, message_from_row

MAX_PAGE = 500  # messages per page at most, whatever is asked
DEFAULT_PAGE = 50
MAX_BUCKETS = 2_000  # traffic(): (until - since) / bucket at most, so a chart stays small
CSV_PAGE = 200  # messages read per query while streaming CSV
PREVIEW_CHARS = 160  # text shown in lists (one SMS worth)

CSV_HEADER = (
    "message_id",
    "created_at",
    "origin",
    "submitter",
    "account_id",
    "recipient",
    "device",
    "state",
    "attempts",
    "channel",
    "upstream_ids",
    "error",
    "updated_at",
    "subject",
    "text",
)


class InvalidCursor(ValueError):
    """A pagination cursor that this module did not hand out (or that was altered)."""


@dataclass(frozen=True, kw_only=True)
class MessageFilter:
    """What to look for. Every field is optional; they combine with AND.

    `recipient` matches E.164 numbers containing the given digits ("+4420" or "7946 0958");
    `device` / `state` match when at least one delivery of the message has them.
    """

    account_id: int | None = None  # None: every account (operators only)
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    recipient: str | None = None
    device: Device | None = None
    state: DeliveryState | None = None
    origin: Origin | None = None


@dataclass(frozen=True, kw_only=True)
class DeliverySummary:
    id: str
    recipient: str
    device: Device
    state: DeliveryState
    attempts: int
    channel: str | None
    error: str | None
    upstream_ids: tuple[str, ...]
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class MessageSummary:
    """A message as lists show it: what, when, from where, and where each recipient is."""

    message: Message
    deliveries: tuple[DeliverySummary, ...]

    @property
    def preview(self) -> str:
        text = self.message.content.text
        return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"

    @property
    def state_counts(self) -> dict[DeliveryState, int]:
        counts: dict[DeliveryState, int] = {}
        for d in self.deliveries:
            counts[d.state] = counts.get(d.state, 0) + 1
        return counts


@dataclass(frozen=True, kw_only=True)
class Page:
    items: tuple[MessageSummary, ...]
    next_cursor: str | None  # None: this was the last page


@dataclass(frozen=True, kw_only=True)
class Part:
    """One upstream submission of a delivery (an SMS segment) and its own receipt state."""

    upstream_id: str
    part: int
    state: str | None  # receipt stat word (DELIVRD, UNDELIV, ...), None while pending
    created_at: datetime
    updated_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class DeliveryDetail:
    delivery: Delivery
    events: tuple[DeliveryEvent, ...]
    parts: tuple[Part, ...]


@dataclass(frozen=True, kw_only=True)
class MessageDetail:
    message: Message
    deliveries: tuple[DeliveryDetail, ...]
    last_event_id: int  # grows with every stored event: live views poll it to see a change


@dataclass(frozen=True, kw_only=True)
class TrafficPoint:
    """Deliveries created in [start, start + bucket) on `channel` that are now in `state`."""

    start: datetime
    channel: str  # the channel that carried it, or its device while none has yet
    state: DeliveryState
    count: int


@dataclass(frozen=True, kw_only=True)
class Usage:
    account_id: int
    since: datetime | None
    until: datetime | None
    messages: int
    deliveries: int
    sms_parts: int  # upstream submissions (an SMS of 3 segments counts 3)
    by_state: dict[DeliveryState, int] = field(default_factory=dict)
    by_device: dict[Device, int] = field(default_factory=dict)
    by_origin: dict[Origin, int] = field(default_factory=dict)


# --- cursors -------------------------------------------------------------------------------


def encode_cursor(created_at: datetime, message_id: str) -> str:
    """The position after a message: its creation time (epoch seconds, exactly as stored) and
    its id (the tie breaker), base64url without padding."""
    raw = f"{created_at.timestamp()!r}|{message_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        seconds, _, message_id = raw.partition("|")
        value = float(seconds)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor("the cursor is not one this API handed out") from exc
    if not message_id or value != value or value in (float("inf"), float("-inf")):
        raise InvalidCursor("the cursor is not one this API handed out")
    return value, message_id


# --- queries -------------------------------------------------------------------------------


def _epoch(column: Any) -> ColumnElement[float]:
    """A Timestamp column as the plain double it is stored as (for arithmetic)."""
    return type_coerce(column, Double)


def _filtered(flt: MessageFilter) -> Select[Any]:
    m, d = tables.messages, tables.deliveries
    statement = select(m)
    if flt.account_id is not None:
        statement = statement.where(m.c.account_id == flt.account_id)
    if flt.since is not None:
        statement = statement.where(m.c.created_at >= flt.since)
    if flt.until is not None:
        statement = statement.where(m.c.created_at < flt.until)
    if flt.origin is not None:
        statement = statement.where(m.c.origin == str(flt.origin))
    conditions: list[ColumnElement[bool]] = []
    if flt.recipient:
        digits = "".join(ch for ch in flt.recipient if ch.isdigit())
        if digits:
            conditions.append(d.c.recipient.contains(digits, autoescape=True))
    if flt.device is not None:
        conditions.append(d.c.device == str(flt.device))
    if flt.state is not None:
        conditions.append(d.c.state == str(flt.state))
    if conditions:
        statement = statement.where(exists().where(and_(d.c.message_id == m.c.id, *conditions)))
    return statement


def _summaries(
    connection: Connection, rows: Sequence[Mapping[Any, Any]]
) -> tuple[MessageSummary, ...]:
    d = tables.deliveries
    ids = [row["id"] for row in rows]
    by_message: dict[str, list[DeliverySummary]] = {i: [] for i in ids}
    if ids:
        result = connection.execute(
            select(
                d.c.id,
                d.c.message_id,
                d.c.recipient,
                d.c.device,
                d.c.state,
                d.c.attempts,
                d.c.channel,
                d.c.error,
                d.c.upstream_ids,
                d.c.updated_at,
            )
            .where(d.c.message_id.in_(ids))
            .order_by(d.c.message_id, d.c.seq)
        ).mappings()
        for r in result:
            by_message[r["message_id"]].append(
                DeliverySummary(
                    id=r["id"],
                    recipient=r["recipient"],
                    device=Device(r["device"]),
                    state=DeliveryState(r["state"]),
                    attempts=r["attempts"],
                    channel=r["channel"],
                    error=r["error"],
                    upstream_ids=tuple(r["upstream_ids"]),
                    updated_at=r["updated_at"],
                )
            )
    return tuple(
        MessageSummary(message=message_from_row(row), deliveries=tuple(by_message[row["id"]]))
        for row in rows
    )


def _page_query(flt: MessageFilter, limit: int, cursor: str | None) -> Select[Any]:
    m = tables.messages
    statement = _filtered(flt)
    if cursor is not None:
        seconds, message_id = decode_cursor(cursor)
        created = _epoch(m.c.created_at)
        statement = statement.where(
            or_(created < seconds, and_(created == seconds, m.c.id < message_id))
        )
    return statement.order_by(m.c.created_at.desc(), m.c.id.desc()).limit(limit + 1)


class History:
    """Read-only queries over messages, deliveries, events and upstream parts."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def search(
        self, flt: MessageFilter, *, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> Page:
        """Messages matching `flt`, newest first. Raises InvalidCursor for a forged cursor."""
        limit = max(1, min(limit, MAX_PAGE))
        statement = _page_query(flt, limit, cursor)

        def query(connection: Connection) -> Page:
            rows = list(connection.execute(statement).mappings())
            more = len(rows) > limit
            rows = rows[:limit]
            items = _summaries(connection, rows)
            last = rows[-1] if more else None
            return Page(
                items=items,
                next_cursor=None if last is None else encode_cursor(last["created_at"], last["id"]),
            )

        return await self._db.read(query)

    async def detail(self, message_id: str, *, account_id: int | None) -> MessageDetail | None:
        """The message with every delivery's timeline and parts; None when it does not exist
        or belongs to another account than `account_id` (None: any account)."""
        m, d = tables.messages, tables.deliveries
        e, u = tables.delivery_events, tables.upstream_refs

        def query(connection: Connection) -> MessageDetail | None:
            statement = select(m).where(m.c.id == message_id)
            if account_id is not None:
                statement = statement.where(m.c.account_id == account_id)
            row = connection.execute(statement).mappings().first()
            if row is None:
                return None
            deliveries = [
                delivery_from_row(r)
                for r in connection.execute(
                    select(d).where(d.c.message_id == message_id).order_by(d.c.seq)
                ).mappings()
            ]
            delivery_ids = [x.id for x in deliveries]
            events: dict[str, list[DeliveryEvent]] = {i: [] for i in delivery_ids}
            parts: dict[str, list[Part]] = {i: [] for i in delivery_ids}
            last_event_id = 0
            if delivery_ids:
                for r in connection.execute(
                    select(e).where(e.c.delivery_id.in_(delivery_ids)).order_by(e.c.id)
                ).mappings():
                    events[r["delivery_id"]].append(event_from_row(r))
                    last_event_id = max(last_event_id, r["id"])
                for r in connection.execute(
                    select(u).where(u.c.delivery_id.in_(delivery_ids)).order_by(u.c.part)
                ).mappings():
                    parts[r["delivery_id"]].append(
                        Part(
                            upstream_id=r["upstream_id"],
                            part=r["part"],
                            state=r["state"],
                            created_at=r["created_at"],
                            updated_at=r["updated_at"],
                        )
                    )
            return MessageDetail(
                message=message_from_row(row),
                deliveries=tuple(
                    DeliveryDetail(delivery=x, events=tuple(events[x.id]), parts=tuple(parts[x.id]))
                    for x in deliveries
                ),
                last_event_id=last_event_id,
            )

        return await self._db.read(query)

    async def last_event_id(self, message_id: str) -> int:
        """The id of the newest event of the message's deliveries (0: none). Cheap: live views
        (server-sent events) poll it and reload the detail only when it grew."""
        d, e = tables.deliveries, tables.delivery_events
        statement = select(func.max(e.c.id)).where(
            e.c.delivery_id.in_(select(d.c.id).where(d.c.message_id == message_id))
        )

        def query(connection: Connection) -> int:
            return int(connection.execute(statement).scalar() or 0)

        return await self._db.read(query)

    async def state_counts(
        self,
        *,
        account_id: int | None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[DeliveryState, int]:
        """Deliveries created in the range, per current state."""
        d = tables.deliveries
        statement = select(d.c.state, func.count()).group_by(d.c.state)
        statement = _delivery_range(statement, account_id, since, until)

        def query(connection: Connection) -> dict[DeliveryState, int]:
            return {DeliveryState(s): int(n) for s, n in connection.execute(statement)}

        return await self._db.read(query)

    async def traffic(
        self,
        *,
        account_id: int | None,
        since: datetime,
        until: datetime,
        bucket_seconds: int,
    ) -> list[TrafficPoint]:
        """Deliveries per time bucket (by creation), channel and current state, oldest first.
        Raises ValueError when the range holds more than MAX_BUCKETS buckets."""
        if bucket_seconds <= 0:
            raise ValueError("bucket_seconds must be positive")
        if until <= since:
            return []
        if (until - since).total_seconds() / bucket_seconds > MAX_BUCKETS:
            raise ValueError(f"more than {MAX_BUCKETS} buckets: choose a larger bucket")
        d = tables.deliveries
        origin = since.timestamp()
        offset = (_epoch(d.c.created_at) - origin) / bucket_seconds
        # floor() of a non-negative number: CAST truncates on SQLite, rounds on PostgreSQL
        index = (
            cast(func.floor(offset), BigInteger)
            if self._db.is_postgresql
            else cast(offset, BigInteger)
        ).label("bucket")
        channel = func.coalesce(d.c.channel, d.c.device).label("channel")
        statement = (
            select(index, channel, d.c.state, func.count())
            .group_by(index, channel, d.c.state)
            .order_by(index)
        )
        statement = _delivery_range(statement, account_id, since, until)

        def query(connection: Connection) -> list[TrafficPoint]:
            return [
                TrafficPoint(
                    start=datetime.fromtimestamp(origin + int(b) * bucket_seconds, UTC),
                    channel=str(c),
                    state=DeliveryState(s),
                    count=int(n),
                )
                for b, c, s, n in connection.execute(statement)
            ]

        return await self._db.read(query)

    async def usage(
        self,
        account_id: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Usage:
        """What one account sent in the range (messages by creation time)."""
        m, d, u = tables.messages, tables.deliveries, tables.upstream_refs
        by_origin = select(m.c.origin, func.count()).where(m.c.account_id == account_id)
        if since is not None:
            by_origin = by_origin.where(m.c.created_at >= since)
        if until is not None:
            by_origin = by_origin.where(m.c.created_at < until)
        by_origin = by_origin.group_by(m.c.origin)
        by_state_device = _delivery_range(
            select(d.c.state, d.c.device, func.count()).group_by(d.c.state, d.c.device),
            account_id,
            since,
            until,
        )
        parts = _delivery_range(
            select(func.count()).select_from(d.join(u, u.c.delivery_id == d.c.id)),
            account_id,
            since,
            until,
        )

        def query(connection: Connection) -> Usage:
            origins = {Origin(o): int(n) for o, n in connection.execute(by_origin)}
            states: dict[DeliveryState, int] = {}
            devices: dict[Device, int] = {}
            for s, dev, n in connection.execute(by_state_device):
                states[DeliveryState(s)] = states.get(DeliveryState(s), 0) + int(n)
                devices[Device(dev)] = devices.get(Device(dev), 0) + int(n)
            return Usage(
                account_id=account_id,
                since=since,
                until=until,
                messages=sum(origins.values()),
                deliveries=sum(states.values()),
                sms_parts=int(connection.execute(parts).scalar() or 0),
                by_state=states,
                by_device=devices,
                by_origin=origins,
            )

        return await self._db.read(query)

    async def csv_rows(self, flt: MessageFilter) -> AsyncIterator[list[str]]:
        """`CSV_HEADER`, then one row per delivery of every matching message, newest message
        first, read CSV_PAGE messages at a time (memory stays flat for any export size)."""
        yield list(CSV_HEADER)
        cursor: str | None = None
        while True:
            page = await self.search(flt, limit=CSV_PAGE, cursor=cursor)
            for item in page.items:
                msg = item.message
                for dl in item.deliveries:
                    yield [
                        msg.id,
                        msg.created_at.isoformat(),
                        str(msg.origin),
                        msg.submitter,
                        str(msg.account_id),
                        dl.recipient,
                        str(dl.device),
                        str(dl.state),
                        str(dl.attempts),
                        dl.channel or "",
                        " ".join(dl.upstream_ids),
                        dl.error or "",
                        dl.updated_at.isoformat(),
                        msg.content.subject,
                        msg.content.text,
                    ]
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


def _delivery_range(
    statement: Select[Any],
    account_id: int | None,
    since: datetime | None,
    until: datetime | None,
) -> Select[Any]:
    d = tables.deliveries
    if account_id is not None:
        statement = statement.where(d.c.account_id == account_id)
    if since is not None:
        statement = statement.where(d.c.created_at >= since)
    if until is not None:
        statement = statement.where(d.c.created_at < until)
    return statement
