"""E-mail notifications: the store's outbox (SQLite) -> EmailNotifier -> an aiosmtpd relay on
loopback that records what it receives (and can answer 4xx/5xx)."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from teleway.core.accept import accept
from teleway.core.model import (
    Content,
    DeliveryState,
    Options,
    Origin,
    OutboxKind,
    OutboxStatus,
    Recipient,
    Submission,
)
from teleway.notify.email import EmailNotifier, RelaySettings
from teleway.runtime.wiring import RandomIds, SystemClock
from teleway.store import Store, open_store
from teleway.store.directory import Directory

LEASE = timedelta(seconds=30)


@dataclass
class Relay:
    """A recording SMTP relay; `answers` are DATA replies to give first (then 250)."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    port: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.answers:
            return self.answers.pop(0)
        content = envelope.original_content or b""
        self.received.append((envelope.mail_from or "", list(envelope.rcpt_tos), content))
        return "250 OK"


@dataclass
class Rig:
    store: Store
    directory: Directory
    relay: Relay
    notifier: EmailNotifier


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path}/t.db", migrate=True)
    directory = Directory(store.engine)
    relay = Relay()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(relay), "127.0.0.1", 0)
    relay.port = server.sockets[0].getsockname()[1]
    notifier = EmailNotifier(
        outbox=store.outbox,
        messages=store.messages,
        accounts=directory,
        relay=RelaySettings(
            host="127.0.0.1",
            port=relay.port,
            from_address="notify@teleway.test",
            timeout=10,
            retry_base_seconds=1,
            retry_max_seconds=2,
        ),
        clock=SystemClock(),
        worker="mail-test",
        domain="teleway.test",
    )
    try:
        yield Rig(store=store, directory=directory, relay=relay, notifier=notifier)
    finally:
        server.close()
        await server.wait_closed()
        await store.close()


async def submitted(
    rig: Rig,
    *,
    settings: dict[str, object] | None = None,
    submitter: str = "bob@acme.test",
    extra: dict[str, Any] | None = None,
) -> tuple[str, str]:
    account = await rig.directory.create_account("acme", actor="t", settings=settings or {})
    accepted = await accept(
        Submission(
            account=account,
            origin=Origin.SMTP,
            submitter=submitter,
            recipients=(Recipient(number="+17816170000"),),
            content=Content(text="Meeting at 10", subject="Hello"),
            options=Options(
                report=account.settings.notify_on,
                extra=extra or {"message_id": "<orig-1@acme.test>"},
            ),
        ),
        store=rig.store.messages,
        clock=SystemClock(),
        ids=RandomIds(),
    )
    return accepted.message_id, accepted.delivery_ids[0]


async def finish(rig: Rig, delivery_id: str, state: DeliveryState, error: str = "") -> None:
    now = datetime.now(UTC)
    leases = await rig.store.queue.lease(worker="w", now=now, limit=10, lease_for=LEASE)
    assert [lease.delivery.id for lease in leases] == [delivery_id]
    moved = await rig.store.queue.transition(
        delivery_id, state, now=now, reason="test outcome", worker="w", error=error or None
    )
    assert moved is not None


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


async def test_failure_is_mailed_to_the_sender(rig: Rig) -> None:
    message_id, delivery_id = await submitted(rig)
    await finish(rig, delivery_id, DeliveryState.UNDELIVERABLE, "absent subscriber")
    assert await rig.notifier.run_once() == 1
    [(sender, recipients, raw)] = rig.relay.received
    assert sender == "<>"  # MAIL FROM:<> (null): a bounce of the notification goes nowhere
    assert recipients == ["bob@acme.test"]
    mail = parse(raw)
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail["In-Reply-To"] == "<orig-1@acme.test>"
    assert "+17816170000" in mail["Subject"] and "could not be delivered" in mail["Subject"]
    text = mail.get_content()
    assert "State:      undeliverable" in text
    assert "Reason:     absent subscriber" in text
    assert "Device:     SMS" in text
    [item] = await rig.store.outbox.recent(account_id=1)
    assert item.status is OutboxStatus.SENT
    assert message_id in text


async def test_delivered_is_not_mailed_by_default_but_is_with_notify_on_final(rig: Rig) -> None:
    _, delivery_id = await submitted(rig)
    await finish(rig, delivery_id, DeliveryState.DELIVERED)
    assert await rig.notifier.run_once() == 0
    assert rig.relay.received == []


async def test_every_final_state_when_the_account_asks(rig: Rig) -> None:
    _, delivery_id = await submitted(rig, settings={"notify_on": "final"})
    await finish(rig, delivery_id, DeliveryState.DELIVERED)
    assert await rig.notifier.run_once() == 1
    [(_, _, raw)] = rig.relay.received
    assert "delivered" in parse(raw)["Subject"]


async def test_rfc3464_dsn_when_the_account_asks(rig: Rig) -> None:
    _, delivery_id = await submitted(rig, settings={"notify_dsn": True})
    await finish(rig, delivery_id, DeliveryState.EXPIRED)
    await rig.notifier.run_once()
    [(_, _, raw)] = rig.relay.received
    mail = parse(raw)
    assert mail.get_content_type() == "multipart/report"
    assert mail.get_param("report-type") == "delivery-status"
    parts = [part.get_content_type() for part in mail.iter_parts()]
    assert parts == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    status = raw.decode()
    assert "Action: failed" in status
    assert "Status: 4.4.7" in status
    assert "Reporting-MTA: dns; teleway.test" in status


async def test_relay_4xx_is_retried_later_and_5xx_drops(rig: Rig) -> None:
    _, delivery_id = await submitted(rig)
    await finish(rig, delivery_id, DeliveryState.UNDELIVERABLE)
    rig.relay.answers = ["451 4.3.0 try later"]
    assert await rig.notifier.run_once() == 1
    [item] = await rig.store.outbox.recent(account_id=1)
    assert item.status is OutboxStatus.PENDING and item.attempts == 1
    assert item.last_error is not None and "451" in item.last_error
    assert item.next_attempt_at > datetime.now(UTC)
    assert await rig.notifier.run_once() == 0  # not due yet
    await asyncio.sleep((item.next_attempt_at - datetime.now(UTC)).total_seconds() + 0.05)
    assert await rig.notifier.run_once() == 1
    assert len(rig.relay.received) == 1
    [item] = await rig.store.outbox.recent(account_id=1)
    assert item.status is OutboxStatus.SENT


async def test_relay_5xx_drops_the_item(rig: Rig) -> None:
    _, delivery_id = await submitted(rig)
    await finish(rig, delivery_id, DeliveryState.UNDELIVERABLE)
    rig.relay.answers = ["554 5.7.1 go away"]
    await rig.notifier.run_once()
    [item] = await rig.store.outbox.recent(account_id=1)
    assert item.status is OutboxStatus.DROPPED and "554" in (item.last_error or "")


async def test_relay_down_is_retried(rig: Rig) -> None:
    _, delivery_id = await submitted(rig)
    await finish(rig, delivery_id, DeliveryState.UNDELIVERABLE)
    rig.notifier.relay = RelaySettings(host="127.0.0.1", port=1, timeout=2)
    await rig.notifier.run_once()
    [item] = await rig.store.outbox.recent(account_id=1)
    assert item.status is OutboxStatus.PENDING and item.last_error


@pytest.mark.parametrize(
    ("submitter", "extra", "why"),
    [
        ("<>", {}, "null"),
        ("bob@acme.test", {"auto_submitted": "auto-generated"}, "Auto-Submitted"),
    ],
)
async def test_no_mail_loops(rig: Rig, submitter: str, extra: dict[str, Any], why: str) -> None:
    _, delivery_id = await submitted(rig, submitter=submitter, extra=extra)
    await finish(rig, delivery_id, DeliveryState.UNDELIVERABLE)
    await rig.notifier.run_once()
    assert rig.relay.received == []
    [item] = await rig.store.outbox.recent(account_id=1)
    assert item.status is OutboxStatus.DROPPED and why in (item.last_error or "")


async def test_reply_from_a_phone_is_mailed(rig: Rig) -> None:
    account = await rig.directory.create_account("acme", actor="t")
    now = datetime.now(UTC)
    await rig.store.outbox.add(
        kind=OutboxKind.INBOUND,
        origin=Origin.SMTP,
        account_id=account.id,
        payload={
            "from": "+17816170000",
            "to": "+15550001111",
            "text": "Yes, on my way ✓",
            "received_at": now.isoformat(),
            "reply_to": "bob@acme.test",
        },
        now=now,
        valid_until=now + timedelta(hours=1),
    )
    assert await rig.notifier.run_once() == 1
    [(sender, recipients, raw)] = rig.relay.received
    assert (sender, recipients) == ("notify@teleway.test", ["bob@acme.test"])
    mail = parse(raw)
    assert mail["Reply-To"] == "+17816170000@sms.teleway.test"  # answering goes back by SMS
    assert "Yes, on my way ✓" in mail.get_content()


async def test_run_loop_sends_when_items_appear_and_stops(rig: Rig) -> None:
    rig.notifier.poll_interval = 0.1
    task = asyncio.create_task(rig.notifier.run())
    _, delivery_id = await submitted(rig)
    await finish(rig, delivery_id, DeliveryState.REJECTED)
    for _ in range(100):
        if rig.relay.received:
            break
        await asyncio.sleep(0.05)
    rig.notifier.stop()
    await asyncio.wait_for(task, 5)
    assert len(rig.relay.received) == 1
