"""The reply routing rule (runtime.outcomes.Replies) with in-memory stores."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from teleway.channels.sms.channel import InboundSms
from teleway.core.model import Account, Origin, OutboxKind, Settings
from teleway.runtime.outcomes import Replies
from teleway.store.inbound import Conversation
from teleway.testing.fakes import FakeClock

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PHONE = "+4915112345678"


class Numbers:
    def __init__(self, owners: dict[str, int], conversations: list[Conversation]) -> None:
        self.owners = owners
        self.found = conversations
        self.since: datetime | None = None

    async def owner(self, forms: Sequence[str]) -> int | None:
        return next((self.owners[f] for f in forms if f in self.owners), None)

    async def conversations(self, phone: str, since: datetime) -> list[Conversation]:
        self.since = since
        return [c for c in self.found if phone == PHONE]


class Outbox:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    async def add(self, **item: Any) -> int:
        self.items.append(item)
        return len(self.items)


class Accounts:
    async def get_account(self, account_id: int) -> Account | None:
        sender = {1: "ACME", 2: None}[account_id]
        return Account(id=account_id, name=f"a{account_id}", settings=Settings(sender_id=sender))


def conversation(
    message_id: str, account_id: int, origin: Origin, sender: str | None
) -> Conversation:
    return Conversation(
        message_id=message_id, delivery_id="d-" + message_id, account_id=account_id,
        origin=origin, submitter="alice@example.com", sender_id=sender, created_at=NOW,
    )  # fmt: skip


def sms(to: str, source: str = PHONE) -> InboundSms:
    return InboundSms(
        upstream="up", source=source, destination=to, destination_ton=1, text="yes",
        data_coding=0, parts=1, received_at=NOW,
    )  # fmt: skip


def replies(numbers: Numbers, outbox: Outbox) -> Replies:
    return Replies(
        numbers=numbers, outbox=outbox, accounts=Accounts(), clock=FakeClock(NOW),  # type: ignore[arg-type]
        default_sources={"up": "15550100100"},
    )  # fmt: skip


async def test_threading_prefers_the_newest_matching_message_and_goes_back_by_e_mail() -> None:
    numbers = Numbers(
        {"+447400123456": 2},
        [
            conversation("m-cli", 1, Origin.CLI, "ACME"),  # CLI messages are not threaded
            conversation("m-other", 1, Origin.SMPP, "+4400000000"),  # another sender id
            conversation("m-mail", 1, Origin.SMTP, None),  # the account's sender id: ACME
        ],
    )
    outbox = Outbox()
    assert await replies(numbers, outbox).inbound(sms("ACME"))
    [item] = outbox.items
    assert (item["kind"], item["origin"], item["account_id"]) == (
        OutboxKind.INBOUND,
        Origin.SMTP,
        1,
    )
    assert item["payload"]["reply_to"] == "alice@example.com"
    assert item["message_id"] == item["payload"]["message_id"] == "m-mail"
    assert item["valid_until"] > NOW
    assert numbers.since == NOW - timedelta(days=7)


async def test_upstream_default_source_threads_when_no_sender_id_is_set() -> None:
    numbers = Numbers({}, [conversation("m-api", 2, Origin.HTTP, None)])
    outbox = Outbox()
    assert await replies(numbers, outbox).inbound(sms("15550100100"))
    assert outbox.items[0]["origin"] is Origin.HTTP
    assert "reply_to" not in outbox.items[0]["payload"]


async def test_owned_number_without_a_thread_goes_to_the_accounts_esmes() -> None:
    numbers = Numbers({"+447400123456": 2}, [])
    outbox = Outbox()
    assert await replies(numbers, outbox).inbound(sms("447400123456"))
    [item] = outbox.items
    assert (item["origin"], item["account_id"], item["message_id"]) == (Origin.SMPP, 2, None)
    assert item["payload"]["from"] == PHONE and item["payload"]["to"] == "447400123456"


async def test_nobody_owns_it_is_not_routed_and_not_stored() -> None:
    outbox = Outbox()
    assert not await replies(Numbers({}, []), outbox).inbound(sms("999"))
    assert not await replies(Numbers({}, []), outbox).inbound(sms("999", source="ALPHA"))
    assert outbox.items == []
