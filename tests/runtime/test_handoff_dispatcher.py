"""The dispatcher's side of the handoff (LocalHandoff): new deliveries committed already leased
are submitted without a lease() from the store; the fallback to the queue (full, backlog in the
store, stopping, no ready channel); handed-off deliveries never submitted are taken again once
their lease expired. In-memory store, fake clock, scripted channels, real dispatcher tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from test_runtime_workers import NUMBERS, START, HalfDraw, ScriptedChannel, eventually

from teleway.core.accept import accept
from teleway.core.model import (
    Account,
    Content,
    DeliveryState,
    Device,
    Options,
    Origin,
    Recipient,
    Submission,
)
from teleway.core.outcome import Submitted
from teleway.core.ports import Claim, Handoff, Lease
from teleway.core.retry import RetryPolicy
from teleway.runtime.metrics import Metrics
from teleway.runtime.workers import Dispatcher, LocalHandoff
from teleway.testing.fakes import FakeClock, InMemoryStore, SequentialIds

pytestmark = pytest.mark.timeout(20)

S = DeliveryState
LEASE_FOR = timedelta(seconds=60)
SUBMITTED = Submitted(upstream_ids=("up:1",), channel="sms")


class CountingStore(InMemoryStore):
    """Counts the deliveries lease() gave out, per worker."""

    def __init__(self) -> None:
        super().__init__()
        self.leased: dict[str, int] = {}

    async def lease(self, *, worker: str, **kwargs: Any) -> list[Lease]:
        leases = await super().lease(worker=worker, **kwargs)
        self.leased[worker] = self.leased.get(worker, 0) + len(leases)
        return leases


def make_dispatcher(
    store: InMemoryStore,
    clock: FakeClock,
    channel: ScriptedChannel,
    *,
    worker: str = "w1",
    concurrency: int = 8,
    handoff_limit: int = 100,
) -> Dispatcher:
    return Dispatcher(
        queue=store,
        messages=store,
        channels=[channel],
        clock=clock,
        metrics=Metrics(),
        worker=worker,
        concurrency=concurrency,
        poll_interval=0.01,
        lease_for=LEASE_FOR,
        retry=RetryPolicy(base_seconds=10, max_seconds=3600),
        rng=HalfDraw(),
        handoff_limit=handoff_limit,
    )


@contextlib.asynccontextmanager
async def running(*dispatchers: Dispatcher) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(d.run()) for d in dispatchers]
    await asyncio.sleep(0)  # run() started: the dispatchers take handoffs
    try:
        yield
    finally:
        for d in dispatchers:
            for c in d.channels:
                gate = getattr(c, "gate", None)
                if gate is not None:
                    gate.set()
            await d.stop(timeout=5)
        await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def submit(
    store: InMemoryStore,
    clock: FakeClock,
    ids: SequentialIds,
    count: int = 1,
    handoff: Handoff | None = None,
    device: Device = Device.SMS,
) -> list[str]:
    accepted = await accept(
        Submission(
            account=Account(id=1, name="acme"),
            origin=Origin.HTTP,
            submitter="api",
            recipients=tuple(Recipient(number=NUMBERS[i], device=device) for i in range(count)),
            content=Content(text="hello"),
            options=Options(valid_until=clock.now() + timedelta(hours=1)),
        ),
        store=store,
        clock=clock,
        ids=ids,
        handoff=handoff,
    )
    return list(accepted.delivery_ids)


def transitions(store: InMemoryStore, delivery_id: str) -> list[tuple[S | None, S]]:
    return [(e.from_state, e.to_state) for e in store.events[delivery_id]]


async def test_a_handed_off_delivery_is_submitted_without_leasing_from_the_store() -> None:
    store, clock, ids = CountingStore(), FakeClock(START), SequentialIds()
    channel = ScriptedChannel(script=lambda d: SUBMITTED)
    dispatchers = [make_dispatcher(store, clock, channel, worker=f"w{i}") for i in (1, 2)]
    handoff = LocalHandoff(dispatchers)
    async with running(*dispatchers):
        delivery_ids = await submit(store, clock, ids, count=4, handoff=handoff)
        # committed already leased, in turn to each dispatcher
        owners = [store.deliveries[d].lease_owner for d in delivery_ids]
        assert owners == ["w1", "w2", "w1", "w2"]
        await eventually(lambda: all(store.deliveries[d].upstream_ids for d in delivery_ids))
    assert sum(store.leased.values()) == 0  # no lease() gave any of them out
    assert sorted(channel.calls) == sorted((d, 1) for d in delivery_ids)
    for delivery_id in delivery_ids:
        d = store.deliveries[delivery_id]
        assert d.state is S.IN_FLIGHT and d.lease_owner is None  # released after the submit
        assert transitions(store, delivery_id) == [
            (None, S.ACCEPTED),
            (S.ACCEPTED, S.QUEUED),
            (S.QUEUED, S.IN_FLIGHT),
            (S.IN_FLIGHT, S.IN_FLIGHT),
        ]


async def test_when_the_handoff_is_full_new_deliveries_are_queued_and_leased_later() -> None:
    store, clock, ids = CountingStore(), FakeClock(START), SequentialIds()
    gate = asyncio.Event()
    channel = ScriptedChannel(script=lambda d: SUBMITTED, gate=gate)
    dispatcher = make_dispatcher(store, clock, channel, concurrency=1, handoff_limit=2)
    handoff = LocalHandoff([dispatcher])
    async with running(dispatcher):
        delivery_ids = await submit(store, clock, ids, count=5, handoff=handoff)
        states = [store.deliveries[d].state for d in delivery_ids]
        assert states == [S.IN_FLIGHT, S.IN_FLIGHT, S.QUEUED, S.QUEUED, S.QUEUED]
        await eventually(lambda: len(channel.calls) == 1)
        # one attempt holds the only slot, one handed-off lease waits for it: room for one more
        # claimed or waiting delivery, then full
        assert handoff.claim(Device.SMS) is not None
        assert handoff.claim(Device.SMS) is None
        gate.set()
        await eventually(lambda: all(store.deliveries[d].upstream_ids for d in delivery_ids))
    assert sorted(channel.calls) == sorted((d, 1) for d in delivery_ids)  # each sent once
    assert store.leased["w1"] == 3  # the queued ones came from the store


async def test_a_dispatcher_that_does_not_keep_up_takes_no_new_deliveries() -> None:
    store, clock, ids = InMemoryStore(), FakeClock(START), SequentialIds()
    gate = asyncio.Event()
    channel = ScriptedChannel(script=lambda d: SUBMITTED, gate=gate)
    dispatcher = make_dispatcher(store, clock, channel, concurrency=1)
    handoff = LocalHandoff([dispatcher])
    async with running(dispatcher):
        await submit(store, clock, ids, count=2, handoff=handoff)
        await eventually(lambda: len(channel.calls) == 1)  # the second waits for the slot
        clock.advance(LEASE_FOR / 5)
        claim = handoff.claim(Device.SMS)
        assert claim is not None
        clock.advance(LEASE_FOR / 10)  # the waiting one has waited more than a quarter
        assert handoff.claim(Device.SMS) is None
        (later,) = await submit(store, clock, ids, handoff=handoff)
        assert store.deliveries[later].state is S.QUEUED
        gate.set()
        await eventually(lambda: bool(store.deliveries[later].upstream_ids))


async def test_work_waiting_in_the_store_comes_before_new_deliveries() -> None:
    store, clock, ids = CountingStore(), FakeClock(START), SequentialIds()
    gate = asyncio.Event()
    channel = ScriptedChannel(script=lambda d: SUBMITTED, gate=gate)
    dispatcher = make_dispatcher(store, clock, channel, concurrency=1)
    handoff = LocalHandoff([dispatcher])
    async with running(dispatcher):
        queued = await submit(store, clock, ids, count=3)  # no handoff: QUEUED
        await eventually(lambda: len(channel.calls) == 1)
        # the store had due work on the last look: a new delivery queues behind it
        later = await submit(store, clock, ids, handoff=handoff)
        assert store.deliveries[later[0]].state is S.QUEUED
        gate.set()
        await eventually(lambda: all(store.deliveries[d].upstream_ids for d in queued + later))
        # the store is drained: new deliveries are handed over again
        await eventually(lambda: dispatcher.claim(Device.SMS) is not None)
    assert [call[0] for call in channel.calls] == queued + later  # in order


async def test_no_claim_without_a_ready_channel_for_the_device_or_when_not_running() -> None:
    store, clock = InMemoryStore(), FakeClock(START)
    channel = ScriptedChannel(script=lambda d: SUBMITTED)
    dispatcher = make_dispatcher(store, clock, channel)
    assert dispatcher.claim(Device.SMS) is None  # run() not started
    async with running(dispatcher):
        assert dispatcher.claim(Device.FAX) is None  # no channel for faxes here
        channel.is_ready = False
        assert dispatcher.claim(Device.SMS) is None  # no upstream bound
        channel.is_ready = True
        claim = dispatcher.claim(Device.SMS)
        assert claim is not None and claim.worker == "w1" and claim.lease_for == LEASE_FOR
        stopping = asyncio.create_task(dispatcher.stop(timeout=1))
        await asyncio.sleep(0)
        assert dispatcher.claim(Device.SMS) is None  # stopping
        await stopping


async def test_a_handed_off_lease_that_waited_too_long_is_not_started(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock, ids = InMemoryStore(), FakeClock(START), SequentialIds()
    gate = asyncio.Event()
    channel = ScriptedChannel(script=lambda d: SUBMITTED, gate=gate)
    dispatcher = make_dispatcher(store, clock, channel, concurrency=1)
    handoff = LocalHandoff([dispatcher])
    async with running(dispatcher):
        first, second = await submit(store, clock, ids, count=2, handoff=handoff)
        await eventually(lambda: len(channel.calls) == 1)  # the second waits for the slot
        clock.advance(LEASE_FOR * 0.6)  # less than half its lease left
        with caplog.at_level(logging.WARNING, logger="teleway.dispatch"):
            gate.set()
            await eventually(lambda: bool(store.deliveries[first].upstream_ids))
            await asyncio.sleep(0.05)
        assert [call[0] for call in channel.calls] == [first]
        assert "waited too long" in caplog.text
        # it stays leased until its lease expires, then the store gives it out again
        assert store.deliveries[second].lease_owner == "w1"
        clock.advance(LEASE_FOR)
        await eventually(lambda: bool(store.deliveries[second].upstream_ids))
    assert [call for call in channel.calls] == [(first, 1), (second, 2)]


async def test_handed_off_but_never_submitted_is_taken_again_once_the_lease_expired() -> None:
    """Dispatcher A dies with one handed-off delivery mid-submit (cancelled by a stop whose
    drain ended) and one committed after it stopped (never started): both keep A's lease, and
    dispatcher B (another process or node on the same store) takes them once it expired."""
    store, clock, ids = InMemoryStore(), FakeClock(START), SequentialIds()
    gate = asyncio.Event()  # A's upstream never answers
    a_channel = ScriptedChannel(script=lambda d: SUBMITTED, gate=gate)
    a = make_dispatcher(store, clock, a_channel, worker="a")
    handoff = LocalHandoff([a])
    a_task = asyncio.create_task(a.run())
    await asyncio.sleep(0)
    (mid_submit,) = await submit(store, clock, ids, handoff=handoff)
    await eventually(lambda: len(a_channel.calls) == 1)
    claim = a.claim(Device.SMS)  # an accept() in progress while A stops
    assert claim is not None
    await a.stop(timeout=0.05)  # the drain ends: the attempt is cancelled
    await a_task
    late = await submit(store, clock, ids, handoff=_Replay(a, claim))
    assert store.deliveries[late[0]].lease_owner == "a" and a_channel.calls == [(mid_submit, 1)]

    b_channel = ScriptedChannel(script=lambda d: SUBMITTED)
    b = make_dispatcher(store, clock, b_channel, worker="b")
    async with running(b):
        await asyncio.sleep(0.05)
        assert b_channel.calls == []  # A's leases are live: nobody takes them
        clock.advance(LEASE_FOR + timedelta(seconds=1))
        await eventually(lambda: len(b_channel.calls) == 2)
        await eventually(lambda: store.deliveries[late[0]].lease_owner is None)
    assert sorted(b_channel.calls) == sorted([(mid_submit, 2), (late[0], 2)])
    for delivery_id in (mid_submit, late[0]):
        events = store.events[delivery_id]
        assert events[3].reason == "lease of a expired; leased to b, attempt 2"
        assert store.deliveries[delivery_id].state is S.IN_FLIGHT


class _Replay:
    """A Handoff giving out one claim taken earlier (an accept() that claimed before the stop
    and commits after it)."""

    def __init__(self, dispatcher: Dispatcher, claim: Claim) -> None:
        self._dispatcher = dispatcher
        self._claim: Claim | None = claim

    def claim(self, device: Device) -> Claim | None:
        claim, self._claim = self._claim, None
        return claim

    def hand(self, leases: Sequence[Lease]) -> None:
        self._dispatcher.hand(leases)

    def withdraw(self, leases: Sequence[Lease]) -> None:
        self._dispatcher.withdraw(leases)
