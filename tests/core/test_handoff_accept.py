"""accept() with a Handoff: which deliveries are stored already leased, what is handed over after
the commit, and what is given back when the commit fails (a recording Handoff, the fake store)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from teleway.core.accept import SubmissionRejected, accept, accept_many
from teleway.core.model import (
    Account,
    Content,
    DeliveryState,
    Device,
    Options,
    Origin,
    Recipient,
    ReportOn,
    Submission,
)
from teleway.core.ports import Claim, Lease, StoreUnavailable
from teleway.testing.fakes import FakeClock, InMemoryStore, SequentialIds

S = DeliveryState
LEASE_FOR = timedelta(seconds=60)


@dataclass
class RecordingHandoff:
    """Claims up to `room` deliveries of `devices`; records every call."""

    room: int = 100
    devices: frozenset[Device] = frozenset({Device.SMS})
    asked: list[Device] = field(default_factory=list)
    handed: list[Lease] = field(default_factory=list)
    withdrawn: list[Lease] = field(default_factory=list)

    def claim(self, device: Device) -> Claim | None:
        self.asked.append(device)
        if device not in self.devices or self.room <= 0:
            return None
        self.room -= 1
        return Claim(worker="node-1", lease_for=LEASE_FOR)

    def hand(self, leases: Sequence[Lease]) -> None:
        self.handed.extend(leases)

    def withdraw(self, leases: Sequence[Lease]) -> None:
        self.withdrawn.extend(leases)
        self.room += len(leases)


def submission(*recipients: Recipient | str, **options: object) -> Submission:
    return Submission(
        account=Account(id=1, name="acme"),
        origin=Origin.HTTP,
        submitter="key-1",
        recipients=tuple(
            r if isinstance(r, Recipient) else Recipient(number=r, device=Device.SMS)
            for r in recipients
        ),
        content=Content(text="hello"),
        options=Options(**options),  # type: ignore[arg-type]
    )


async def test_a_claimed_delivery_is_committed_leased_and_handed_over_after_the_commit() -> None:
    store, clock, handoff = InMemoryStore(), FakeClock(), RecordingHandoff()
    now = clock.now()
    accepted = await accept(
        submission("+17816170000", report=ReportOn.ALL),
        store=store,
        clock=clock,
        ids=SequentialIds(),
        handoff=handoff,
    )
    (delivery_id,) = accepted.delivery_ids
    stored = store.deliveries[delivery_id]
    assert stored.state is S.IN_FLIGHT
    assert (stored.lease_owner, stored.lease_expires_at) == ("node-1", now + LEASE_FOR)
    assert stored.attempts == 1
    events = store.events[delivery_id]
    assert [(e.from_state, e.to_state) for e in events] == [
        (None, S.ACCEPTED),
        (S.ACCEPTED, S.QUEUED),
        (S.QUEUED, S.IN_FLIGHT),
    ]
    assert events[-1].reason == "leased to node-1, attempt 1"  # what lease() writes
    assert all(e.at == now for e in events)
    (lease,) = handoff.handed
    assert lease.delivery == stored and lease.worker == "node-1"
    assert lease.expires_at == now + LEASE_FOR
    assert lease.message is not None and lease.message.id == accepted.message_id
    assert handoff.withdrawn == []
    # the submitter asked for every change: the IN_FLIGHT report is there, as lease() adds it
    reports = [i for i in store.outbox.items.values() if i.delivery_id == delivery_id]
    assert [i.state for i in reports] == [S.IN_FLIGHT]


async def test_nothing_is_handed_over_before_the_commit() -> None:
    store, handoff = InMemoryStore(), RecordingHandoff()
    seen_at_hand: list[bool] = []
    hand = handoff.hand

    def checking(leases: Sequence[Lease]) -> None:
        seen_at_hand.extend(lease.delivery.id in store.deliveries for lease in leases)
        hand(leases)

    handoff.hand = checking  # type: ignore[method-assign]
    await accept(
        submission("+17816170000", "+17816170001"),
        store=store,
        clock=FakeClock(),
        ids=SequentialIds(),
        handoff=handoff,
    )
    assert seen_at_hand == [True, True]


async def test_full_handoff_falls_back_to_queued_per_delivery() -> None:
    store, handoff = InMemoryStore(), RecordingHandoff(room=1)
    accepted = await accept(
        submission("+17816170000", "+17816170001"),
        store=store,
        clock=FakeClock(),
        ids=SequentialIds(),
        handoff=handoff,
    )
    first, second = (store.deliveries[i] for i in accepted.delivery_ids)
    assert first.state is S.IN_FLIGHT and first.lease_owner == "node-1"
    assert second.state is S.QUEUED and second.lease_owner is None and second.attempts == 0
    assert [(e.from_state, e.to_state) for e in store.events[second.id]] == [
        (None, S.ACCEPTED),
        (S.ACCEPTED, S.QUEUED),
    ]
    assert [lease.delivery.id for lease in handoff.handed] == [first.id]


async def test_devices_without_a_local_channel_are_queued() -> None:
    store, handoff = InMemoryStore(), RecordingHandoff()
    accepted = await accept(
        submission(Recipient(number="+17816170000", device=Device.FAX)),
        store=store,
        clock=FakeClock(),
        ids=SequentialIds(),
        handoff=handoff,
    )
    assert handoff.asked == [Device.FAX]
    assert store.deliveries[accepted.delivery_ids[0]].state is S.QUEUED
    assert handoff.handed == []


async def test_scheduled_deliveries_are_never_claimed() -> None:
    store, clock, handoff = InMemoryStore(), FakeClock(), RecordingHandoff()
    accepted = await accept(
        submission("+17816170000", scheduled_at=clock.now() + timedelta(minutes=5)),
        store=store,
        clock=clock,
        ids=SequentialIds(),
        handoff=handoff,
    )
    assert handoff.asked == []
    assert store.deliveries[accepted.delivery_ids[0]].state is S.QUEUED


async def test_a_failed_commit_gives_the_claims_back_and_hands_nothing() -> None:
    store, handoff = InMemoryStore(), RecordingHandoff(room=5)
    store.fail_writes = StoreUnavailable("down")
    with pytest.raises(StoreUnavailable):
        await accept(
            submission("+17816170000", "+17816170001"),
            store=store,
            clock=FakeClock(),
            ids=SequentialIds(),
            handoff=handoff,
        )
    assert handoff.handed == []
    assert len(handoff.withdrawn) == 2 and handoff.room == 5
    assert store.deliveries == {}


async def test_accept_many_claims_for_valid_submissions_only_and_hands_after_one_commit() -> None:
    store, handoff = InMemoryStore(), RecordingHandoff()
    results = await accept_many(
        [
            submission("+17816170000"),
            submission("nonsense"),
            submission("+17816170001", "+17816170002"),
        ],
        store=store,
        clock=FakeClock(),
        ids=SequentialIds(),
        handoff=handoff,
    )
    assert isinstance(results[1], SubmissionRejected)
    assert len(handoff.asked) == 3  # the refused submission asked for nothing
    handed = [lease.delivery.id for lease in handoff.handed]
    assert handed == [d for r in (results[0], results[2]) for d in r.delivery_ids]  # type: ignore[union-attr]
    assert all(store.deliveries[d].state is S.IN_FLIGHT for d in handed)


async def test_without_a_handoff_nothing_changes() -> None:
    store = InMemoryStore()
    accepted = await accept(
        submission("+17816170000"), store=store, clock=FakeClock(), ids=SequentialIds()
    )
    delivery = store.deliveries[accepted.delivery_ids[0]]
    assert delivery.state is S.QUEUED and delivery.lease_owner is None
