"""The webhook sender against real HTTP receivers on loopback and a real store (SQLite)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from teleway.core.accept import accept
from teleway.core.model import (
    Account,
    Content,
    DeliveryState,
    Options,
    Origin,
    OutboxKind,
    OutboxStatus,
    Recipient,
    ReportOn,
    Submission,
)
from teleway.core.retry import RetryPolicy
from teleway.notify.webhook import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookSender,
    WebhookSettings,
    destination_refusal,
    sign,
    verify,
)
from teleway.runtime.wiring import RandomIds, SystemClock
from teleway.store import Store, open_store
from teleway.store.directory import Directory
from teleway.store.webhooks import WebhookAttempts

SECRET = "s3cret-for-tests"


@dataclass
class Receiver:
    status: int = 200
    answer: bytes = b"thanks"
    calls: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []

    def start() -> Receiver:
        rec = Receiver()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                rec.calls.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(rec.status)
                self.send_header("Content-Length", str(len(rec.answer)))
                self.end_headers()
                self.wfile.write(rec.answer)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        rec.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=rec.server.serve_forever, daemon=True).start()
        made.append(rec)
        return rec

    made_list: list[Receiver] = []
    made_list.append(start())
    made_list.append(start())
    try:
        yield made_list
    finally:
        for rec in made:
            assert rec.server is not None
            rec.server.shutdown()
            rec.server.server_close()


@dataclass
class World:
    store: Store
    directory: Directory
    account: Account
    attempts: WebhookAttempts

    def sender(self, **overrides: Any) -> WebhookSender:
        settings = WebhookSettings(
            worker="test-webhooks",
            allow_private=overrides.pop("allow_private", True),
            timeout=overrides.pop("timeout", 5.0),
            retry=RetryPolicy(base_seconds=10, max_seconds=60),
        )
        return WebhookSender(
            outbox=self.store.outbox,
            messages=self.store.messages,
            accounts=self.directory,
            attempts=self.attempts,
            clock=SystemClock(),
            settings=settings,
            **overrides,
        )

    async def report(
        self,
        *,
        message_id: str | None = None,
        delivery_id: str = "d1",
        state: DeliveryState = DeliveryState.DELIVERED,
        valid_for: timedelta = timedelta(hours=1),
    ) -> int:
        now = datetime.now(UTC)
        return await self.store.outbox.add(
            kind=OutboxKind.REPORT,
            origin=Origin.HTTP,
            account_id=self.account.id,
            payload={"reason": "receipt DELIVRD", "recipient": "+14155550100", "device": "sms",
                     "upstream_ids": ["u1"], "attempts": 1, "error": None},
            now=now,
            valid_until=now + valid_for,
            message_id=message_id,
            delivery_id=delivery_id,
            state=state,
        )  # fmt: skip


@pytest.fixture
async def world(tmp_path: Path, receivers: list[Receiver]) -> AsyncIterator[World]:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path}/hooks.db", migrate=True)
    directory = Directory(store.engine)
    await directory.create_account("acme", actor="t")
    account = await directory.update_settings(
        "acme", {"webhook_url": receivers[0].url(), "webhook_secret": SECRET}, actor="t"
    )
    try:
        yield World(store, directory, account, WebhookAttempts(store.db, store.writer))
    finally:
        await store.close()


async def test_signed_post_to_the_account_url(world: World, receivers: list[Receiver]) -> None:
    item = await world.report()
    sender = world.sender()
    assert await sender.run_once() == 1
    (call,) = receivers[0].calls
    assert call["path"] == "/hook"
    assert call["headers"]["Content-Type"] == "application/json"
    assert call["headers"][EVENT_ID_HEADER] == str(item)
    assert verify(SECRET, call["headers"][SIGNATURE_HEADER], call["body"], now=time.time())
    event = json.loads(call["body"])
    assert event == {
        "event": "delivery.state_changed",
        "id": item,
        "message_id": None,
        "delivery_id": "d1",
        "recipient": "+14155550100",
        "device": "sms",
        "state": "delivered",
        "final": True,
        "reason": "receipt DELIVRD",
        "error": None,
        "upstream_ids": ["u1"],
        "attempts": 1,
        "at": event["at"],
    }
    stored = await world.store.outbox.get(item)
    assert stored is not None and stored.status is OutboxStatus.SENT
    (attempt,) = await world.attempts.of_outbox(item)
    assert attempt.status_code == 200 and attempt.response == "thanks" and attempt.ok
    assert await sender.run_once() == 0  # nothing left


async def test_callback_url_of_the_message_wins(world: World, receivers: list[Receiver]) -> None:
    accepted = await accept(
        Submission(
            account=world.account,
            origin=Origin.HTTP,
            submitter="api:k",
            recipients=(Recipient(number="+14155550100"),),
            content=Content(text="x"),
            options=Options(report=ReportOn.ALL, callback_url=receivers[1].url("/per-message")),
        ),
        store=world.store.messages,
        clock=SystemClock(),
        ids=RandomIds(),
    )
    await world.report(message_id=accepted.message_id)
    await world.sender().run_once()
    assert receivers[0].calls == []
    assert [c["path"] for c in receivers[1].calls] == ["/per-message"]


async def test_failures_are_retried_later_and_recorded(
    world: World, receivers: list[Receiver]
) -> None:
    receivers[0].status = 500
    receivers[0].answer = b"x" * 5000
    item = await world.report()
    sender = world.sender()
    await sender.run_once()
    stored = await world.store.outbox.get(item)
    assert stored is not None and stored.status is OutboxStatus.PENDING
    assert stored.last_error == "HTTP 500"
    assert stored.next_attempt_at > datetime.now(UTC)  # back-off: not due again yet
    assert await sender.run_once() == 0
    (attempt,) = await world.attempts.of_outbox(item)
    assert attempt.status_code == 500 and len(attempt.response or "") == 1024


async def test_gone_drops_and_validity_gives_up(world: World, receivers: list[Receiver]) -> None:
    receivers[0].status = 410
    gone = await world.report()
    await world.sender().run_once()
    stored = await world.store.outbox.get(gone)
    assert stored is not None and stored.status is OutboxStatus.DROPPED
    receivers[0].status = 503
    short = await world.report(delivery_id="d2", valid_for=timedelta(seconds=0.8))
    await world.sender().run_once()  # the next try (at least 1 s of back-off) is too late
    stored = await world.store.outbox.get(short)
    assert stored is not None and stored.status is OutboxStatus.DROPPED
    assert stored.last_error == "gave up: HTTP 503"


async def test_unreachable_receiver_is_an_error_not_a_crash(world: World) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    await world.directory.update_settings(
        "acme", {"webhook_url": f"http://127.0.0.1:{closed_port}/hook"}, actor="t"
    )
    item = await world.report()
    await world.sender().run_once()
    (attempt,) = await world.attempts.of_outbox(item)
    assert attempt.status_code is None and "ConnectError" in (attempt.error or "")
    stored = await world.store.outbox.get(item)
    assert stored is not None and stored.status is OutboxStatus.PENDING


async def test_private_destinations_refused_unless_allowed(
    world: World, receivers: list[Receiver]
) -> None:
    item = await world.report()
    await world.sender(allow_private=False).run_once()
    assert receivers[0].calls == []
    stored = await world.store.outbox.get(item)
    assert stored is not None and stored.status is OutboxStatus.DROPPED
    assert "not a public address" in (stored.last_error or "")
    assert await destination_refusal("http://10.1.2.3/x") is not None
    assert await destination_refusal("http://[::1]:8080/x") is not None
    assert await destination_refusal("http://169.254.169.254/latest") is not None
    assert await destination_refusal("http://8.8.8.8/hook") is None


async def test_no_url_drops_and_unsigned_without_secret(
    world: World, receivers: list[Receiver]
) -> None:
    await world.directory.update_settings("acme", {"webhook_secret": None}, actor="t")
    await world.report()
    await world.sender().run_once()
    assert SIGNATURE_HEADER not in receivers[0].calls[0]["headers"]
    await world.directory.update_settings("acme", {"webhook_url": None}, actor="t")
    item = await world.report(delivery_id="d3")
    await world.sender().run_once()
    stored = await world.store.outbox.get(item)
    assert stored is not None and stored.status is OutboxStatus.DROPPED


async def test_events_of_one_delivery_arrive_in_order(
    world: World, receivers: list[Receiver]
) -> None:
    for state in (DeliveryState.IN_FLIGHT, DeliveryState.IN_FLIGHT, DeliveryState.DELIVERED):
        await world.report(delivery_id="same", state=state)
    await world.report(delivery_id="other", state=DeliveryState.QUEUED)
    await world.sender().run_once()
    same = [json.loads(c["body"])["state"] for c in receivers[0].calls
            if json.loads(c["body"])["delivery_id"] == "same"]  # fmt: skip
    assert same == ["in_flight", "in_flight", "delivered"]


async def test_inbound_reply_event(world: World, receivers: list[Receiver]) -> None:
    now = datetime.now(UTC)
    await world.store.outbox.add(
        kind=OutboxKind.INBOUND,
        origin=Origin.HTTP,
        account_id=world.account.id,
        payload={"from": "+14155550100", "to": "ACME", "text": "yes please",
                 "received_at": now.isoformat()},
        now=now,
        valid_until=now + timedelta(hours=1),
        message_id="m-original",
    )  # fmt: skip
    await world.sender().run_once()
    event = json.loads(receivers[0].calls[0]["body"])
    assert event["event"] == "message.received"
    assert (event["from"], event["text"], event["in_reply_to"]) == (
        "+14155550100",
        "yes please",
        "m-original",
    )


async def test_run_loop_sends_and_stops(world: World, receivers: list[Receiver]) -> None:
    sender = world.sender()
    task = asyncio.create_task(sender.run())
    await world.report()
    deadline = time.monotonic() + 10
    while not receivers[0].calls and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert receivers[0].calls
    sender.stop()
    await asyncio.wait_for(task, 5)


def test_signature_rules() -> None:
    body = b'{"a":1}'
    header = sign("k", 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=")
    assert verify("k", header, body, now=1_700_000_100)
    assert not verify("k", header, body, now=1_700_000_000 + 301)  # too old: a replay
    assert not verify("k", "v1=abc", body, now=1_700_000_000)
    assert not verify("k", "t=x,v1=abc", body, now=1_700_000_000)
