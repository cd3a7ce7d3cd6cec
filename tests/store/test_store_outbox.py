"""Outbox contract: reports are written with the state change that causes them; reporters
lease, finish, retry and drop items. Same tests on SQLite, PostgreSQL and the in-memory fake."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from store_helpers import Backend, outbox_of, submit

from teleway.core.model import (
    DeliveryState,
    Options,
    Origin,
    OutboxKind,
    OutboxStatus,
    ReportOn,
)

S = DeliveryState
LEASE = timedelta(seconds=30)


async def deliver(backend: Backend, delivery_id: str, to: DeliveryState = S.DELIVERED) -> None:
    now = backend.clock.now()
    leases = await backend.queue.lease(worker="w", now=now, limit=10, lease_for=LEASE)
    assert [lease.delivery.id for lease in leases] == [delivery_id]
    moved = await backend.queue.transition(delivery_id, to, now=now, reason="test", worker="w")
    assert moved is not None


async def test_final_state_reported_in_the_same_change(backend: Backend) -> None:
    outbox = outbox_of(backend)
    (delivery_id,) = await submit(backend, options=Options(report=ReportOn.FINAL))
    await deliver(backend, delivery_id)
    items = await outbox.lease(
        origin=Origin.HTTP, worker="r", now=backend.clock.now(), limit=10, lease_for=LEASE
    )
    assert len(items) == 1
    item = items[0]
    assert item.kind is OutboxKind.REPORT
    assert item.state is S.DELIVERED
    assert item.delivery_id == delivery_id
    assert item.account_id == 1
    assert item.attempts == 1
    assert item.payload["reason"] == "test"
    assert item.payload["recipient"].startswith("+1415555")
    # leased: nobody else gets it while the lease lasts
    again = await outbox.lease(
        origin=Origin.HTTP, worker="r2", now=backend.clock.now(), limit=10, lease_for=LEASE
    )
    assert again == []
    await outbox.done(item.id, now=backend.clock.now())
    (sent,) = await outbox.recent(account_id=1)
    assert sent.status is OutboxStatus.SENT


async def test_nothing_reported_when_not_asked(backend: Backend) -> None:
    outbox = outbox_of(backend)
    (delivery_id,) = await submit(backend)
    await deliver(backend, delivery_id)
    assert await outbox.recent(account_id=1) == []


async def test_failure_only_skips_delivered(backend: Backend) -> None:
    outbox = outbox_of(backend)
    first, second = await submit(backend, recipients=2, options=Options(report=ReportOn.FAILURE))
    now = backend.clock.now()
    await backend.queue.lease(worker="w", now=now, limit=10, lease_for=LEASE)
    await backend.queue.transition(first, S.DELIVERED, now=now, reason="ok", worker="w")
    await backend.queue.transition(
        second, S.UNDELIVERABLE, now=now, reason="no such number", worker="w", error="001"
    )
    items = await outbox.recent(account_id=1)
    assert [(i.delivery_id, i.state) for i in items] == [(second, S.UNDELIVERABLE)]
    assert items[0].payload["error"] == "001"


async def test_all_reports_intermediate_changes_and_expiry(backend: Backend) -> None:
    outbox = outbox_of(backend)
    (delivery_id,) = await submit(
        backend,
        options=Options(report=ReportOn.ALL, valid_until=backend.clock.now() + timedelta(hours=1)),
    )
    now = backend.clock.now()
    await backend.queue.lease(worker="w", now=now, limit=10, lease_for=LEASE)
    later = now + timedelta(hours=2)
    expired = await backend.queue.expire_due(now=later)
    assert [d.id for d in expired] == [delivery_id]
    states = [i.state for i in reversed(await outbox.recent(account_id=1))]
    assert states == [S.IN_FLIGHT, S.EXPIRED]


async def test_inbound_items_lease_in_order_per_origin_and_account(backend: Backend) -> None:
    outbox = outbox_of(backend)
    now = backend.clock.now()
    keep = now + timedelta(hours=1)
    ids = []
    for n, (origin, account) in enumerate(
        [(Origin.SMPP, 1), (Origin.SMTP, 1), (Origin.SMPP, 2), (Origin.SMPP, 1)]
    ):
        ids.append(
            await outbox.add(
                kind=OutboxKind.INBOUND,
                origin=origin,
                account_id=account,
                payload={"from": "+447700900123", "to": "+15550001", "text": f"reply {n}"},
                now=now,
                valid_until=keep,
            )
        )
    mine = await outbox.lease(
        origin=Origin.SMPP, worker="a", now=now, limit=10, lease_for=LEASE, accounts=[1]
    )
    assert [i.id for i in mine] == [ids[0], ids[3]]
    assert [i.payload["text"] for i in mine] == ["reply 0", "reply 3"]
    assert all(i.kind is OutboxKind.INBOUND for i in mine)
    assert (
        await outbox.lease(
            origin=Origin.SMPP, worker="a", now=now, limit=10, lease_for=LEASE, accounts=[]
        )
        == []
    )
    rest = await outbox.lease(origin=Origin.SMPP, worker="b", now=now, limit=10, lease_for=LEASE)
    assert [i.id for i in rest] == [ids[2]]


async def test_retry_waits_then_expired_lease_is_retaken(backend: Backend) -> None:
    outbox = outbox_of(backend)
    now = backend.clock.now()
    item_id = await outbox.add(
        kind=OutboxKind.INBOUND,
        origin=Origin.SMPP,
        account_id=1,
        payload={"text": "x"},
        now=now,
        valid_until=now + timedelta(hours=1),
    )
    (item,) = await outbox.lease(origin=Origin.SMPP, worker="a", now=now, limit=5, lease_for=LEASE)
    await outbox.retry(item.id, now=now, at=now + timedelta(seconds=60), error="resp timeout")
    assert (
        await outbox.lease(
            origin=Origin.SMPP,
            worker="a",
            now=now + timedelta(seconds=59),
            limit=5,
            lease_for=LEASE,
        )
        == []
    )
    (again,) = await outbox.lease(
        origin=Origin.SMPP, worker="a", now=now + timedelta(seconds=60), limit=5, lease_for=LEASE
    )
    assert again.id == item_id and again.attempts == 2 and again.last_error == "resp timeout"
    # worker a dies holding the lease: after it expires, b takes the item
    later = now + timedelta(seconds=60) + LEASE
    (taken,) = await outbox.lease(
        origin=Origin.SMPP, worker="b", now=later, limit=5, lease_for=LEASE
    )
    assert taken.id == item_id and taken.attempts == 3


async def test_items_past_validity_are_dropped_not_sent(backend: Backend) -> None:
    outbox = outbox_of(backend)
    now = backend.clock.now()
    item_id = await outbox.add(
        kind=OutboxKind.INBOUND,
        origin=Origin.SMTP,
        account_id=2,
        payload={"text": "late"},
        now=now,
        valid_until=now + timedelta(minutes=5),
    )
    assert (
        await outbox.lease(
            origin=Origin.SMTP, worker="a", now=now + timedelta(minutes=5), limit=5, lease_for=LEASE
        )
        == []
    )
    (item,) = await outbox.recent(account_id=2)
    assert item.id == item_id and item.status is OutboxStatus.DROPPED
    assert item.last_error


async def test_drop_is_final(backend: Backend) -> None:
    outbox = outbox_of(backend)
    now = backend.clock.now()
    item_id = await outbox.add(
        kind=OutboxKind.INBOUND,
        origin=Origin.HTTP,
        account_id=1,
        payload={},
        now=now,
        valid_until=now + timedelta(hours=1),
    )
    await outbox.drop(item_id, now=now, error="410 Gone")
    assert (
        await outbox.lease(origin=Origin.HTTP, worker="a", now=now, limit=5, lease_for=LEASE) == []
    )
    (item,) = await outbox.recent(account_id=1)
    assert item.status is OutboxStatus.DROPPED and item.last_error == "410 Gone"


async def test_wait_wakes_on_a_committed_report(backend: Backend) -> None:
    outbox = outbox_of(backend)
    await outbox.wait(0)  # clear whatever earlier writes signalled
    (delivery_id,) = await submit(backend, options=Options(report=ReportOn.FINAL))
    waiter = asyncio.create_task(outbox.wait(10))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await deliver(backend, delivery_id)
    await asyncio.wait_for(waiter, 5)


async def test_report_rolls_back_with_its_change(backend: Backend) -> None:
    """A state change that is not applied (lease lost) reports nothing."""
    outbox = outbox_of(backend)
    (delivery_id,) = await submit(backend, options=Options(report=ReportOn.ALL))
    now = backend.clock.now()
    await backend.queue.lease(worker="w", now=now, limit=10, lease_for=LEASE)
    before = len(await outbox.recent(account_id=1))
    lost = await backend.queue.transition(
        delivery_id, S.DELIVERED, now=now, reason="late", worker="someone-else"
    )
    assert lost is None
    assert len(await outbox.recent(account_id=1)) == before


async def test_one_commit_wakes_every_origins_reporter(backend: Backend) -> None:
    """The SMPP, e-mail and webhook reporters each have their own wake-up: the first one to
    wake must not leave the others asleep until their poll."""
    outbox = outbox_of(backend)
    for origin in (Origin.SMPP, Origin.SMTP, Origin.HTTP):
        await outbox.wait(0, origin=origin)  # clear what earlier writes signalled
    waiters = [
        asyncio.create_task(outbox.wait(10, origin=origin))
        for origin in (Origin.SMPP, Origin.SMTP, Origin.HTTP)
    ]
    await asyncio.sleep(0.01)
    assert not any(w.done() for w in waiters)
    now = backend.clock.now()
    await outbox.add(
        kind=OutboxKind.INBOUND,
        origin=Origin.SMTP,
        account_id=1,
        payload={},
        now=now,
        valid_until=now + timedelta(hours=1),
    )
    await asyncio.wait_for(asyncio.gather(*waiters), 5)


async def test_lease_hands_out_the_message_too(backend: Backend) -> None:
    (delivery_id,) = await submit(backend, text="carried along")
    (lease,) = await backend.queue.lease(
        worker="w", now=backend.clock.now(), limit=5, lease_for=LEASE
    )
    assert lease.delivery.id == delivery_id
    assert lease.message is not None
    assert lease.message.id == lease.delivery.message_id
    assert lease.message.content.text == "carried along"
