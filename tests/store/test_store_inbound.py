"""Inbound numbers and conversation lookup (store/inbound.py) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from teleway.core.model import Origin
from teleway.store import tables as t
from teleway.store.directory import Directory
from teleway.store.inbound import (
    InboundNumbers,
    InvalidInboundNumber,
    NumberTaken,
    lookup_forms,
    normalise_inbound_number,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_normalise_and_lookup_forms() -> None:
    assert normalise_inbound_number(" 004915112345678") == "+4915112345678"
    assert normalise_inbound_number("54321") == "54321"
    for bad in ("ACME", "12", "+49 151 x", "+" + "1" * 40):
        with pytest.raises(InvalidInboundNumber):
            normalise_inbound_number(bad)
    assert lookup_forms("4915112345678") == ["4915112345678", "+4915112345678"]
    assert lookup_forms("TELEWAY") == ["TELEWAY"]


async def test_numbers_belong_to_one_account_and_are_audited(
    engine: AsyncEngine, directory: Directory
) -> None:
    acme = await directory.create_account("acme", actor="t")
    other = await directory.create_account("other", actor="t")
    numbers = InboundNumbers(engine)
    assert await numbers.add("004474 00123456", acme.id, NOW, actor="cli:ops") == "+447400123456"
    await numbers.add("54321", other.id, NOW)
    with pytest.raises(NumberTaken, match="already belongs"):
        await numbers.add("+447400123456", other.id, NOW)
    assert await numbers.owner(lookup_forms("447400123456")) == acme.id
    assert await numbers.owner(lookup_forms("54321")) == other.id
    assert await numbers.owner(lookup_forms("999")) is None
    listed = await numbers.numbers()
    assert [(n.number, n.account) for n in listed] == [
        ("+447400123456", "acme"),
        ("54321", "other"),
    ]
    assert [n.number for n in await numbers.numbers(other.id)] == ["54321"]
    assert await numbers.remove("+447400123456", actor="cli:ops")
    assert not await numbers.remove("+447400123456")
    async with engine.connect() as conn:
        actions = (await conn.execute(select(t.audit_log.c.action, t.audit_log.c.subject))).all()
    assert ("number.add", "+447400123456") in actions
    assert ("number.remove", "+447400123456") in actions


async def test_conversations_are_the_newest_messages_to_the_phone(
    engine: AsyncEngine, directory: Directory
) -> None:
    acme = await directory.create_account("acme", actor="t")
    phone = "+4915112345678"
    rows = [
        ("m-old", NOW - timedelta(days=9), Origin.SMTP, "alice@example.com", {}),
        ("m-mail", NOW - timedelta(hours=2), Origin.SMTP, "bob@example.com", {"sender_id": "ACME"}),
        ("m-api", NOW - timedelta(hours=1), Origin.HTTP, "key", {}),
    ]
    async with engine.begin() as conn:
        for message_id, at, origin, submitter, options in rows:
            await conn.execute(
                insert(t.messages).values(
                    id=message_id, account_id=acme.id, origin=origin.value, submitter=submitter,
                    subject="", text="hi", attachments=[], options=options, created_at=at,
                )
            )  # fmt: skip
            await conn.execute(
                insert(t.deliveries).values(
                    id=f"d-{message_id}", message_id=message_id, account_id=acme.id, seq=0,
                    recipient=phone, device="sms", state="delivered", attempts=1,
                    next_attempt_at=at, valid_until=at + timedelta(days=1), created_at=at,
                    updated_at=at,
                )
            )  # fmt: skip
    found = await InboundNumbers(engine).conversations(phone, NOW - timedelta(days=7))
    assert [(c.message_id, c.origin, c.sender_id) for c in found] == [
        ("m-api", Origin.HTTP, None),
        ("m-mail", Origin.SMTP, "ACME"),
    ]
    assert found[1].submitter == "bob@example.com"
    assert await InboundNumbers(engine).conversations("+4915100000000", NOW) == []
