"""WorkQueue contract: the same tests on SQLite, PostgreSQL and the in-memory fake."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from store_helpers import Backend, submit

from teleway.core.lifecycle import InvalidTransition
from teleway.core.model import DeliveryState, Device, Options

S = DeliveryState
LEASE = timedelta(seconds=30)


async def lease(backend: Backend, worker: str = "w1", limit: int = 100, **kwargs: Any) -> Any:
    return await backend.queue.lease(
        worker=worker, now=backend.clock.now(), limit=limit, lease_for=LEASE, **kwargs
    )


async def test_lease_takes_due_deliveries_only(backend: Backend) -> None:
    now = backend.clock.now()
    due = await submit(backend, recipients=3)
    later = await submit(backend, options=Options(scheduled_at=now + timedelta(minutes=5)))

    leases = await lease(backend, limit=2)
    assert len(leases) == 2
    leases += await lease(backend, limit=10)
    assert sorted(lease.delivery.id for lease in leases) == sorted(due)
    for item in leases:
        assert item.worker == "w1"
        assert item.expires_at == now + LEASE
        delivery = item.delivery
        assert delivery.state is S.IN_FLIGHT
        assert delivery.attempts == 1
        assert delivery.lease_owner == "w1"
        assert delivery.lease_expires_at == now + LEASE
        assert await backend.messages.get_delivery(delivery.id) == delivery
        events = await backend.messages.events_of(delivery.id)
        assert (events[-1].from_state, events[-1].to_state) == (S.QUEUED, S.IN_FLIGHT)
        assert events[-1].at == now
        assert "w1" in events[-1].reason
    assert await lease(backend) == []

    for item in leases:
        await backend.queue.transition(
            item.delivery.id, S.DELIVERED, now=now, reason="ok", worker="w1"
        )
    backend.clock.advance(timedelta(minutes=5))
    (scheduled,) = await lease(backend)
    assert scheduled.delivery.id == later[0]


async def test_lease_in_order_of_due_time(backend: Backend) -> None:
    now = backend.clock.now()
    first = await submit(backend, options=Options(scheduled_at=now + timedelta(seconds=20)))
    second = await submit(backend, options=Options(scheduled_at=now + timedelta(seconds=10)))
    backend.clock.advance(30)
    leases = await lease(backend, limit=1)
    assert [item.delivery.id for item in leases] == second
    leases = await lease(backend, limit=1)
    assert [item.delivery.id for item in leases] == first


async def test_lease_by_device(backend: Backend) -> None:
    sms = await submit(backend, device=Device.SMS)
    fax = await submit(backend, device=Device.FAX)
    assert await lease(backend, devices=frozenset()) == []
    leases = await lease(backend, devices=frozenset({Device.FAX, Device.HOME}))
    assert [item.delivery.id for item in leases] == fax
    leases = await lease(backend)
    assert [item.delivery.id for item in leases] == sms


async def test_lease_skips_deliveries_past_validity(backend: Backend) -> None:
    now = backend.clock.now()
    await submit(backend, options=Options(valid_until=now + timedelta(seconds=10)))
    backend.clock.advance(10)
    assert await lease(backend) == []
    expired = await backend.queue.expire_due(now=backend.clock.now())
    assert len(expired) == 1 and expired[0].state is S.EXPIRED


async def test_expired_lease_is_taken_over(backend: Backend) -> None:
    (delivery_id,) = await submit(backend)
    (first,) = await lease(backend, worker="dead")
    backend.clock.advance(LEASE - timedelta(seconds=1))
    assert await lease(backend, worker="w2") == []  # still held
    backend.clock.advance(1)
    (second,) = await lease(backend, worker="w2")
    assert second.delivery.id == delivery_id
    assert second.delivery.attempts == 2
    assert second.delivery.lease_owner == "w2"
    events = await backend.messages.events_of(delivery_id)
    assert (events[-1].from_state, events[-1].to_state) == (S.IN_FLIGHT, S.IN_FLIGHT)
    assert "dead" in events[-1].reason
    # the dead worker comes back: its lease is gone
    now = backend.clock.now()
    assert (
        await backend.queue.transition(
            delivery_id, S.DELIVERED, now=now, reason="late", worker="dead"
        )
        is None
    )
    done = await backend.queue.transition(
        delivery_id, S.DELIVERED, now=now, reason="ok", worker="w2"
    )
    assert done is not None and done.state is S.DELIVERED
    assert first.delivery.id == delivery_id


async def test_each_delivery_leased_exactly_once(backend: Backend) -> None:
    count = 150
    for _ in range(count // 5):
        await submit(backend, recipients=5)
    queues = [backend.queue]
    if backend.is_sql:
        # two more independent stores on the same database: other processes / nodes
        queues += [(await backend.open_another()).queue for _ in range(2)]
    now = backend.clock.now()
    taken: list[str] = []

    async def worker(name: str, queue: Any) -> None:
        while True:
            leases = await queue.lease(worker=name, now=now, limit=7, lease_for=LEASE)
            if not leases:
                return
            taken.extend(item.delivery.id for item in leases)

    await asyncio.gather(*(worker(f"w{n}", queues[n % len(queues)]) for n in range(12)))
    assert len(taken) == count
    assert max(Counter(taken).values()) == 1


async def test_transition_conditions(backend: Backend) -> None:
    a, b, c = await submit(backend, recipients=3)
    now = backend.clock.now()
    leases = {item.delivery.id: item for item in await lease(backend, worker="w1")}
    assert set(leases) == {a, b, c}
    transition = backend.queue.transition

    # someone else's lease
    assert await transition(a, S.DELIVERED, now=now, reason="x", worker="w2") is None
    # invalid in this state: QUEUED cannot be reached... from IN_FLIGHT it can; ACCEPTED never
    with pytest.raises(InvalidTransition):
        await transition(a, S.ACCEPTED, now=now, reason="x")
    # unknown delivery
    assert await transition("unknown", S.DELIVERED, now=now, reason="x") is None

    done = await transition(
        a, S.DELIVERED, now=now, reason="delivered", worker="w1", channel="smsc1"
    )
    assert done is not None
    assert done.state is S.DELIVERED and done.channel == "smsc1"
    assert done.lease_owner is None and done.lease_expires_at is None
    # final: nothing moves it any more
    assert await transition(a, S.UNDELIVERABLE, now=now, reason="x") is None
    assert await transition(a, S.QUEUED, now=now, reason="x", worker="w1") is None
    stored = await backend.messages.get_delivery(a)
    assert stored == done
    events = await backend.messages.events_of(a)
    assert [(e.from_state, e.to_state, e.reason) for e in events[-2:]] == [
        (S.QUEUED, S.IN_FLIGHT, events[-2].reason),
        (S.IN_FLIGHT, S.DELIVERED, "delivered"),
    ]

    failed = await transition(
        b, S.UNDELIVERABLE, now=now, reason="unknown subscriber", error="ESME_RINVDSTADR"
    )
    assert failed is not None and failed.error == "ESME_RINVDSTADR"

    kept = await transition(c, S.IN_FLIGHT, now=now, reason="still", worker="w1", keep_lease=True)
    assert kept is not None and kept.lease_owner == "w1"


async def test_invalid_from_state_is_refused(backend: Backend) -> None:
    (delivery_id,) = await submit(backend)
    now = backend.clock.now()
    # QUEUED -> DELIVERED is not in the machine: the delivery stays as it was
    assert await backend.queue.transition(delivery_id, S.DELIVERED, now=now, reason="x") is None
    delivery = await backend.messages.get_delivery(delivery_id)
    assert delivery is not None and delivery.state is S.QUEUED
    assert len(await backend.messages.events_of(delivery_id)) == 2
    cancelled = await backend.queue.transition(delivery_id, S.CANCELLED, now=now, reason="user")
    assert cancelled is not None and cancelled.state is S.CANCELLED
    assert await lease(backend) == []


async def test_retry_later(backend: Backend) -> None:
    (delivery_id,) = await submit(backend)
    await lease(backend)
    now = backend.clock.now()
    retry_at = now + timedelta(seconds=60)
    retried = await backend.queue.transition(
        delivery_id,
        S.QUEUED,
        now=now,
        reason="throttled",
        worker="w1",
        next_attempt_at=retry_at,
        error="ESME_RTHROTTLED",
    )
    assert retried is not None
    assert retried.state is S.QUEUED and retried.next_attempt_at == retry_at
    assert retried.lease_owner is None
    backend.clock.advance(59)
    assert await lease(backend) == []
    backend.clock.advance(1)
    (again,) = await lease(backend, worker="w2")
    assert again.delivery.attempts == 2 and again.delivery.error == "ESME_RTHROTTLED"


async def test_release_then_receipt(backend: Backend) -> None:
    (delivery_id,) = await submit(backend)
    await lease(backend)
    now = backend.clock.now()
    assert await backend.queue.release(delivery_id, worker="w2", now=now, reason="x") is None
    released = await backend.queue.release(
        delivery_id,
        worker="w1",
        now=now,
        reason="submitted to smsc1",
        upstream_ids=["9F00", "9F01"],
        channel="smsc1",
    )
    assert released is not None
    assert released.state is S.IN_FLIGHT
    assert released.lease_owner is None and released.lease_expires_at is None
    assert released.upstream_ids == ("9F00", "9F01")
    assert released.channel == "smsc1"
    events = await backend.messages.events_of(delivery_id)
    assert (events[-1].from_state, events[-1].to_state) == (S.IN_FLIGHT, S.IN_FLIGHT)
    assert events[-1].reason == "submitted to smsc1"
    # nobody leases a released delivery, even long after the lease would have ended
    backend.clock.advance(LEASE * 10)
    assert await lease(backend, worker="w3") == []
    assert await backend.queue.expire_due(now=backend.clock.now()) == []

    found = await backend.messages.find_by_upstream_id("9F01")
    assert found is not None and found.id == delivery_id
    receipt = await backend.queue.transition(
        delivery_id, S.DELIVERED, now=backend.clock.now(), reason="receipt DELIVRD"
    )
    assert receipt is not None and receipt.state is S.DELIVERED


async def test_transition_records_upstream_ids(backend: Backend) -> None:
    (delivery_id,) = await submit(backend)
    await lease(backend)
    done = await backend.queue.transition(
        delivery_id,
        S.DELIVERED,
        now=backend.clock.now(),
        reason="push acknowledged",
        worker="w1",
        upstream_ids=["push-1"],
    )
    assert done is not None and done.upstream_ids == ("push-1",)
    found = await backend.messages.find_by_upstream_id("push-1")
    assert found is not None and found.id == delivery_id


async def test_expire_due(backend: Backend) -> None:
    now = backend.clock.now()
    hour = Options(valid_until=now + timedelta(hours=1))
    (queued,) = await submit(backend, device=Device.FAX, options=hour)
    dead, short, default = await submit(backend, recipients=3, options=hour)
    (live,) = await submit(backend, device=Device.MOBILE, options=hour)
    keeps = await submit(
        backend, device=Device.HOME, options=Options(valid_until=now + timedelta(hours=3))
    )
    sms, home = frozenset({Device.SMS}), frozenset({Device.HOME})
    assert len(await lease(backend, worker="w1", devices=sms)) == 3
    assert len(await lease(backend, worker="w1", devices=home)) == 1
    (long,) = await backend.queue.lease(
        worker="w2", now=now, limit=1, lease_for=timedelta(hours=2),
        devices=frozenset({Device.MOBILE}),
    )  # fmt: skip
    assert long.delivery.id == live
    half_hour = now + timedelta(minutes=30)
    await backend.queue.release(short, worker="w1", now=now, reason="sent", wait_until=half_hour)
    await backend.queue.release(default, worker="w1", now=now, reason="sent")

    # leases of w1 ran out long ago, but nothing is past its validity: only the short wait ends
    backend.clock.set(half_hour)
    expired = await backend.queue.expire_due(now=backend.clock.now())
    assert [d.id for d in expired] == [short]
    assert expired[0].state is S.EXPIRED and expired[0].error

    backend.clock.set(now + timedelta(hours=1))
    first = await backend.queue.expire_due(now=backend.clock.now(), limit=1)
    assert len(first) == 1
    rest = await backend.queue.expire_due(now=backend.clock.now())
    assert {d.id for d in first + rest} == {queued, dead, default}
    for delivery in first + rest:
        assert delivery.state is S.EXPIRED
        assert delivery.lease_owner is None
        stored = await backend.messages.get_delivery(delivery.id)
        assert stored == delivery
        events = await backend.messages.events_of(delivery.id)
        assert events[-1].to_state is S.EXPIRED
        assert events[-1].at == backend.clock.now()
    assert await backend.queue.expire_due(now=backend.clock.now()) == []

    # w2's lease is still alive: it may yet deliver; once the lease ran out too, it expires
    backend.clock.set(now + timedelta(hours=2))
    expired = await backend.queue.expire_due(now=backend.clock.now())
    assert [d.id for d in expired] == [live]
    assert keeps[0] not in {d.id for d in expired}


async def test_dead_worker_past_validity_expires(backend: Backend) -> None:
    now = backend.clock.now()
    (delivery_id,) = await submit(backend, options=Options(valid_until=now + timedelta(seconds=10)))
    await lease(backend, worker="dead")
    backend.clock.advance(5)
    assert await backend.queue.expire_due(now=backend.clock.now()) == []
    backend.clock.advance(LEASE)
    (expired,) = await backend.queue.expire_due(now=backend.clock.now())
    assert expired.id == delivery_id and expired.state is S.EXPIRED


async def test_depth(backend: Backend) -> None:
    empty = await backend.queue.depth()
    assert empty == {s: 0 for s in S if not s.is_final}
    await submit(backend, recipients=4)
    first, _ = await lease(backend, limit=2)
    await backend.queue.transition(
        first.delivery.id, S.DELIVERED, now=backend.clock.now(), reason="ok", worker="w1"
    )
    depth = await backend.queue.depth()
    assert depth[S.QUEUED] == 2
    assert depth[S.IN_FLIGHT] == 1
    assert depth[S.ACCEPTED] == 0
    assert S.DELIVERED not in depth


async def test_wait_for_work_wakes_on_new_message(backend: Backend) -> None:
    # nothing pending: the wait ends by its timeout
    started = time.monotonic()
    await backend.queue.wait_for_work(0.05)
    assert time.monotonic() - started >= 0.04
    waiter = asyncio.create_task(backend.queue.wait_for_work(30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await submit(backend)
    await asyncio.wait_for(waiter, 10)
    # scheduled work does not wake anybody early
    waiter = asyncio.create_task(backend.queue.wait_for_work(0.2))
    await submit(backend, options=Options(scheduled_at=backend.clock.now() + timedelta(hours=1)))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await waiter


async def test_wait_for_work_wakes_on_retry(backend: Backend) -> None:
    (delivery_id,) = await submit(backend)
    await backend.queue.wait_for_work(0)  # consume the signal of the new message
    await lease(backend)
    waiter = asyncio.create_task(backend.queue.wait_for_work(30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await backend.queue.transition(
        delivery_id, S.QUEUED, now=backend.clock.now(), reason="retry", worker="w1"
    )
    await asyncio.wait_for(waiter, 10)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_notify_reaches_other_nodes(backend: Backend) -> None:
    other = await backend.open_another()
    await other.queue.wait_for_work(0)  # starts listening
    waiter = asyncio.create_task(other.queue.wait_for_work(30))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await submit(backend)  # committed through the first store
    await asyncio.wait_for(waiter, 10)
