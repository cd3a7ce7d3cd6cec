"""Where replies from phones (MO) go: numbers owned by accounts, and earlier conversations.

`inbound_numbers` maps a number we receive on (long number, short code) to the account that
owns it. `conversations()` finds the latest messages sent to a phone, the candidates for reply
threading (the rule itself lives in `runtime.outcomes.Replies`, documented in docs/sms.md).

Numbers are stored as given after normalisation: international numbers in E.164 ("+" and
digits), short codes and other national numbers as bare digits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from teleway.core.model import HeldPart, Origin
from teleway.core.ports import StoreUnavailable
from teleway.store import tables as t
from teleway.store.engine import Database
from teleway.store.writer import Writer

MAX_NUMBER = 32  # inbound_numbers.number is String(32)
MAX_CONVERSATIONS = 20  # messages to one phone looked at for threading


class InboundNumberError(ValueError):
    def __init__(self, number: str, reason: str) -> None:
        super().__init__(f"{number!r}: {reason}")
        self.number = number
        self.reason = reason


class NumberTaken(InboundNumberError):
    """The number already belongs to an account."""


class InvalidInboundNumber(InboundNumberError):
    """Not a number we can receive on."""


@dataclass(frozen=True, kw_only=True)
class InboundNumber:
    number: str
    account_id: int
    account: str  # the account's name
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class Conversation:
    """A message sent earlier to the phone that now replies."""

    message_id: str
    delivery_id: str
    account_id: int
    origin: Origin
    submitter: str  # the e-mail sender for an SMTP message
    sender_id: str | None  # the sender id the message asked for (None: the account's default)
    created_at: datetime


def normalise_inbound_number(raw: str) -> str:
    """ "+4915112345678" and "004915112345678" -> "+4915112345678"; "12345" stays "12345".
    Raises InvalidInboundNumber for anything but digits with an optional "+" / "00"."""
    text = raw.strip().replace(" ", "")
    if text.startswith("00"):
        text = "+" + text[2:]
    digits = text[1:] if text.startswith("+") else text
    if not digits.isdigit() or not 3 <= len(text) <= MAX_NUMBER:
        raise InvalidInboundNumber(raw, f"digits only (3..{MAX_NUMBER}), '+' for E.164")
    return text


def lookup_forms(destination: str) -> list[str]:
    """Stored forms an MO destination_addr may match: as received, with and without "+"."""
    given = destination.strip()
    digits = given.lstrip("+")
    forms = [given]
    if digits.isdigit():
        forms += ["+" + digits, digits]
    return list(dict.fromkeys(forms))


async def _audit(
    conn: AsyncConnection,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any],
    now: datetime,
) -> None:
    await conn.execute(
        insert(t.audit_log).values(
            at=now, actor=actor[:128], action=action, subject=subject[:256], detail=detail
        )
    )


class InboundNumbers:
    """The numbers table. With `connection` (an open transaction, e.g. a provisioning file's:
    `Directory.inbound_numbers()`) every operation joins that transaction."""

    def __init__(self, engine: AsyncEngine, connection: AsyncConnection | None = None) -> None:
        self._engine = engine
        self._shared = connection

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        if self._shared is not None:
            yield self._shared
            return
        try:
            async with self._engine.begin() as connection:
                yield connection
        except IntegrityError:
            raise
        except (DBAPIError, OSError) as exc:
            url = self._engine.url.render_as_string(hide_password=True)
            raise StoreUnavailable(f"{url}: {getattr(exc, 'orig', None) or exc}") from exc

    async def add(self, number: str, account_id: int, now: datetime, *, actor: str = "") -> str:
        """Give `number` to the account; return it normalised. NumberTaken if it has an owner.
        With an `actor`, the change is written to the audit log in the same transaction."""
        key = normalise_inbound_number(number)
        try:
            async with self._begin() as conn:
                await conn.execute(
                    insert(t.inbound_numbers).values(
                        number=key, account_id=account_id, created_at=now
                    )
                )
                if actor:
                    await _audit(conn, actor, "number.add", key, {"account_id": account_id}, now)
        except IntegrityError as exc:
            owner = await self.owner([key])
            raise NumberTaken(
                key,
                f"already belongs to account id {owner}"
                if owner is not None
                else "no such account",
            ) from exc
        return key

    async def move(self, number: str, account_id: int, now: datetime, *, actor: str = "") -> bool:
        """Give an owned `number` to another account; False if nobody owns it."""
        key = normalise_inbound_number(number)
        n = t.inbound_numbers
        async with self._begin() as conn:
            result = await conn.execute(
                update(n).where(n.c.number == key).values(account_id=account_id)
            )
            if actor and result.rowcount:
                await _audit(conn, actor, "number.move", key, {"account_id": account_id}, now)
        return bool(result.rowcount)

    async def remove(self, number: str, *, actor: str = "", now: datetime | None = None) -> bool:
        key = normalise_inbound_number(number)
        async with self._begin() as conn:
            result = await conn.execute(
                delete(t.inbound_numbers).where(t.inbound_numbers.c.number == key)
            )
            if actor and result.rowcount:
                await _audit(conn, actor, "number.remove", key, {}, now or datetime.now(UTC))
        return bool(result.rowcount)

    async def numbers(self, account_id: int | None = None) -> list[InboundNumber]:
        n, a = t.inbound_numbers, t.accounts
        query = (
            select(n.c.number, n.c.account_id, a.c.name, n.c.created_at)
            .join(a, a.c.id == n.c.account_id)
            .order_by(a.c.name, n.c.number)
        )
        if account_id is not None:
            query = query.where(n.c.account_id == account_id)
        async with self._begin() as conn:
            rows = (await conn.execute(query)).all()
        return [
            InboundNumber(
                number=r.number, account_id=r.account_id, account=r.name, created_at=r.created_at
            )
            for r in rows
        ]

    async def owner(self, forms: Sequence[str]) -> int | None:
        """The account owning the first stored form of a destination (see lookup_forms)."""
        n = t.inbound_numbers
        async with self._begin() as conn:
            rows = (
                await conn.execute(select(n.c.number, n.c.account_id).where(n.c.number.in_(forms)))
            ).all()
        found = {r.number: r.account_id for r in rows}
        return next((found[f] for f in forms if f in found), None)

    async def conversations(self, phone: str, since: datetime) -> list[Conversation]:
        """Messages sent to `phone` (E.164) since `since`, newest first (at most
        MAX_CONVERSATIONS), served by the deliveries(recipient, created_at) index."""
        d, m = t.deliveries, t.messages
        query = (
            select(
                d.c.id,
                d.c.message_id,
                d.c.account_id,
                d.c.created_at,
                m.c.origin,
                m.c.submitter,
                m.c.options,
            )
            .join(m, m.c.id == d.c.message_id)
            .where(d.c.recipient == phone, d.c.created_at >= since)
            .order_by(d.c.created_at.desc())
            .limit(MAX_CONVERSATIONS)
        )
        async with self._begin() as conn:
            rows = (await conn.execute(query)).all()
        out = []
        for r in rows:
            options = r.options if isinstance(r.options, dict) else {}
            sender = options.get("sender_id")
            out.append(
                Conversation(
                    message_id=r.message_id,
                    delivery_id=r.id,
                    account_id=r.account_id,
                    origin=Origin(r.origin),
                    submitter=r.submitter,
                    sender_id=sender if isinstance(sender, str) and sender else None,
                    created_at=r.created_at,
                )
            )
        return out


class HeldReplyParts:
    """`held_mo_parts`: parts of concatenated replies acknowledged before their message was
    complete (channels.sms keeps them across restarts). Writes go through the store's writer,
    so `save` returns once the part is committed."""

    def __init__(self, db: Database, writer: Writer) -> None:
        self._db = db
        self._writer = writer

    async def save(self, part: HeldPart) -> None:
        values = {
            "upstream": part.upstream,
            "source_addr": part.source_addr,
            "destination_addr": part.destination_addr,
            "data_coding": part.data_coding,
            "reference": part.reference,
            "total": part.total,
            "number": part.number,
            "payload": part.payload,
            "received_at": part.received_at,
        }

        def job(connection: Connection) -> None:
            connection.execute(insert(t.held_mo_parts).values(**values))

        await self._writer.write(job)

    async def load(self) -> list[HeldPart]:
        """Every held part, oldest first."""
        h = t.held_mo_parts

        def query(connection: Connection) -> list[HeldPart]:
            rows = connection.execute(select(h).order_by(h.c.id)).mappings().all()
            return [HeldPart(**{k: v for k, v in row.items() if k != "id"}) for row in rows]

        return await self._db.read(query)

    async def forget(self, group: tuple[str, str, str, int, int, int]) -> int:
        """Delete the parts of one message (`HeldPart.group`); return how many there were."""
        h = t.held_mo_parts
        upstream, source, destination, data_coding, reference, total = group

        def job(connection: Connection) -> int:
            result = connection.execute(
                delete(h).where(
                    h.c.upstream == upstream,
                    h.c.source_addr == source,
                    h.c.reference == reference,
                    h.c.destination_addr == destination,
                    h.c.data_coding == data_coding,
                    h.c.total == total,
                )
            )
            return int(result.rowcount)

        return await self._writer.write(job)
