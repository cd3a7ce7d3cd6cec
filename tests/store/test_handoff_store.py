"""accept() handing new deliveries to a local worker, on SQLite, PostgreSQL and the fake: what is
committed (IN_FLIGHT, the lease, the QUEUED and IN_FLIGHT events, the report), that nobody else
leases it while the lease lives, that it is leased again once the lease expired (the worker died
before submitting), and, on SQLite with slow commits, that the submit waits for no commit after
accept() returned."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from store_helpers import Backend, submission

from teleway.core.accept import accept
from teleway.core.model import Delivery, DeliveryState, Device, Message, Options, ReportOn
from teleway.core.outcome import Outcome, Submitted
from teleway.core.ports import Claim, Lease, Release, StoreFull
from teleway.runtime.metrics import Metrics
from teleway.runtime.wiring import SystemClock
from teleway.runtime.workers import Dispatcher, LocalHandoff

S = DeliveryState
LEASE = timedelta(seconds=30)


@dataclass
class OneWorker:
    """A Handoff claiming everything for worker `local-1`; records what it was handed."""

    handed: list[Lease] = field(default_factory=list)
    withdrawn: list[Lease] = field(default_factory=list)

    def claim(self, device: Device) -> Claim | None:
        return Claim(worker="local-1", lease_for=LEASE)

    def hand(self, leases: Sequence[Lease]) -> None:
        self.handed.extend(leases)

    def withdraw(self, leases: Sequence[Lease]) -> None:
        self.withdrawn.extend(leases)


async def hand_off(backend: Backend, handoff: OneWorker, **kwargs: Any) -> list[str]:
    accepted = await accept(
        submission(**kwargs),
        store=backend.messages,
        clock=backend.clock,
        ids=backend.ids,
        handoff=handoff,
    )
    return list(accepted.delivery_ids)


def outbox_of(backend: Backend) -> Any:
    return backend.memory.outbox if backend.memory is not None else backend.store.outbox  # type: ignore[union-attr]


async def test_a_handed_off_delivery_is_committed_in_flight_with_its_lease_and_events(
    backend: Backend,
) -> None:
    handoff = OneWorker()
    now = backend.clock.now()
    (delivery_id,) = await hand_off(backend, handoff, options=Options(report=ReportOn.ALL))
    stored = await backend.messages.get_delivery(delivery_id)
    assert stored is not None
    assert stored.state is S.IN_FLIGHT
    assert (stored.lease_owner, stored.lease_expires_at) == ("local-1", now + LEASE)
    assert stored.attempts == 1
    events = await backend.messages.events_of(delivery_id)
    assert [(e.from_state, e.to_state, e.at) for e in events] == [
        (None, S.ACCEPTED, now),
        (S.ACCEPTED, S.QUEUED, now),
        (S.QUEUED, S.IN_FLIGHT, now),
    ]
    assert events[-1].reason == "leased to local-1, attempt 1"
    (lease,) = handoff.handed
    assert lease.delivery == stored  # what was handed over is exactly what was committed
    assert lease.message == await backend.messages.get_message(stored.message_id)
    # the submitter asked for every change: IN_FLIGHT is reported, in the same transaction
    items = await outbox_of(backend).for_delivery(delivery_id)
    assert [i.state for i in items] == [S.IN_FLIGHT]
    assert (await backend.queue.depth())[S.IN_FLIGHT] == 1


async def test_nobody_leases_it_while_the_lease_lives_then_anyone_does(backend: Backend) -> None:
    """The worker it was handed to never submitted it (stopped, or the process was killed):
    once the lease expired the next lease() takes it, as a crashed worker's."""
    (delivery_id,) = await hand_off(backend, OneWorker())
    taken = await backend.queue.lease(
        worker="w2", now=backend.clock.now(), limit=10, lease_for=LEASE
    )
    assert taken == []
    backend.clock.advance(LEASE + timedelta(seconds=1))
    (lease,) = await backend.queue.lease(
        worker="w2", now=backend.clock.now(), limit=10, lease_for=LEASE
    )
    assert lease.delivery.id == delivery_id
    assert lease.delivery.attempts == 2 and lease.delivery.lease_owner == "w2"
    events = await backend.messages.events_of(delivery_id)
    assert events[-1].reason == "lease of local-1 expired; leased to w2, attempt 2"
    # the first worker's late release is refused: its lease is lost
    late = await backend.queue.release_many(
        [Release(delivery_id=delivery_id, reason="late")], worker="local-1", now=backend.clock.now()
    )
    assert late == [None]


async def test_the_worker_releases_a_handed_off_delivery_like_a_leased_one(
    backend: Backend,
) -> None:
    (delivery_id,) = await hand_off(backend, OneWorker())
    (released,) = await backend.queue.release_many(
        [Release(delivery_id=delivery_id, reason="submitted", upstream_ids=("sim:9",))],
        worker="local-1",
        now=backend.clock.now(),
    )
    assert released is not None and released.lease_owner is None
    assert released.state is S.IN_FLIGHT and released.upstream_ids == ("sim:9",)
    assert await backend.messages.find_by_upstream_id("sim:9") == released


async def test_scheduled_deliveries_are_stored_queued(backend: Backend) -> None:
    later = backend.clock.now() + timedelta(minutes=5)
    (delivery_id,) = await hand_off(backend, OneWorker(), options=Options(scheduled_at=later))
    stored = await backend.messages.get_delivery(delivery_id)
    assert stored is not None and stored.state is S.QUEUED and stored.lease_owner is None


async def test_a_refused_commit_hands_nothing_and_stores_nothing(backend: Backend) -> None:
    handoff = OneWorker()
    await backend.make_full()
    with pytest.raises(StoreFull):
        # big enough to need new pages of a full SQLite file
        await hand_off(backend, handoff, recipients=2, text="x" * 60_000)
    await backend.make_roomy()
    assert handoff.handed == [] and len(handoff.withdrawn) == 2
    assert (await backend.queue.depth())[S.IN_FLIGHT] == 0


@dataclass
class CommitCountingChannel:
    """Remembers, per message, how many writer commits had completed when it was sent."""

    commits: Any
    name: str = "sms"
    devices: frozenset[Device] = frozenset({Device.SMS})
    ready: bool = True
    seen: dict[str, int] = field(default_factory=dict)

    async def send(self, delivery: Delivery, message: Message) -> Outcome:
        self.seen[message.id] = self.commits()
        return Submitted(upstream_ids=(f"up:{delivery.id}",), channel=self.name)


@pytest.mark.parametrize("handoff", [True, False], ids=["handoff", "queued"])
async def test_with_slow_commits_the_submit_waits_for_no_commit_after_accept(
    backend: Backend, handoff: bool
) -> None:
    """Every commit takes 0.2 s longer (a disk whose fsync stalls). With the handoff, no
    commit completes between accept() returning and the channel's send; without it, the
    dispatcher's lease() commit always does."""
    if backend.name != "sqlite":
        pytest.skip("counts the SQLite writer's commits (every write goes through it)")
    assert backend.store is not None
    writer = backend.store.writer
    transaction = writer._transaction

    def slow(connection: Any, batch: Any) -> Any:
        result = transaction(connection, batch)
        time.sleep(0.2)  # after COMMIT, before anyone is told: a slow fsync
        return result

    writer._transaction = slow  # type: ignore[method-assign]
    channel = CommitCountingChannel(commits=lambda: writer.commits)
    dispatcher = Dispatcher(
        queue=backend.queue,
        messages=backend.messages,
        channels=[channel],
        clock=SystemClock(),
        metrics=Metrics(),
        worker="local-1",
        poll_interval=0.05,
    )
    task = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(0)
    local = LocalHandoff([dispatcher]) if handoff else None
    accepted_at: dict[str, int] = {}
    try:

        async def one() -> None:
            accepted = await accept(
                submission(),
                store=backend.messages,
                clock=SystemClock(),
                ids=backend.ids,
                handoff=local,
            )
            accepted_at[accepted.message_id] = writer.commits

        await asyncio.gather(*(one() for _ in range(5)))
        deadline = time.monotonic() + 10
        while len(channel.seen) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await dispatcher.stop(timeout=5)
        await task
    assert set(channel.seen) == set(accepted_at)
    waited = {m: channel.seen[m] - accepted_at[m] for m in accepted_at}
    if handoff:
        assert set(waited.values()) == {0}
    else:
        assert min(waited.values()) >= 1
