from __future__ import annotations

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
    Settings,
    Submission,
)
from teleway.core.ports import StoreUnavailable
from teleway.testing.fakes import FakeClock, InMemoryStore, SequentialIds


def submission(*numbers: str, account: Account | None = None, **options: object) -> Submission:
    return Submission(
        account=account or Account(id=1, name="acme"),
        origin=Origin.SMTP,
        submitter="alice@example.com",
        recipients=tuple(Recipient(number=n, device=Device.SMS) for n in numbers),
        content=Content(text="hello", subject="hi"),
        options=Options(**options),  # type: ignore[arg-type]
    )


async def test_accept_commits_message_deliveries_and_events() -> None:
    store, clock = InMemoryStore(), FakeClock()
    accepted = await accept(
        submission("+17816170000", "1-781-6170001"), store=store, clock=clock, ids=SequentialIds()
    )
    assert accepted.recipients == ("+17816170000", "+17816170001")
    message = await store.get_message(accepted.message_id)
    assert message is not None and message.content.subject == "hi"
    deliveries = await store.deliveries_of(accepted.message_id)
    assert [d.recipient for d in deliveries] == ["+17816170000", "+17816170001"]
    assert all(d.state is DeliveryState.QUEUED for d in deliveries)
    assert deliveries[0].valid_until == clock.now() + timedelta(hours=48)
    events = await store.events_of(deliveries[0].id)
    assert [(e.from_state, e.to_state) for e in events] == [
        (None, DeliveryState.ACCEPTED),
        (DeliveryState.ACCEPTED, DeliveryState.QUEUED),
    ]
    assert "alice@example.com" in events[0].reason


async def test_invalid_recipient_rejects_whole_submission_and_stores_nothing() -> None:
    store = InMemoryStore()
    with pytest.raises(SubmissionRejected) as info:
        await accept(
            submission("+17816170000", "nonsense"),
            store=store,
            clock=FakeClock(),
            ids=SequentialIds(),
        )
    assert [p.field for p in info.value.problems] == ["recipients[1]"]
    assert store.messages == {} and store.deliveries == {}


@pytest.mark.parametrize(
    ("account", "expected_field"),
    [
        (Account(id=1, name="x", enabled=False), "account"),
        (Account(id=1, name="x", settings=Settings(max_recipients=1)), "recipients"),
    ],
)
async def test_account_limits(account: Account, expected_field: str) -> None:
    with pytest.raises(SubmissionRejected) as info:
        await accept(
            submission("+17816170000", "+17816170001", account=account),
            store=InMemoryStore(),
            clock=FakeClock(),
            ids=SequentialIds(),
        )
    assert expected_field in [p.field for p in info.value.problems]


async def test_validity_and_schedule_checks() -> None:
    clock = FakeClock()
    now = clock.now()
    for options, field in [
        ({"valid_until": now - timedelta(seconds=1)}, "validity"),
        ({"valid_until": now + timedelta(days=31)}, "validity"),
        ({"scheduled_at": now + timedelta(days=3)}, "schedule"),
    ]:
        with pytest.raises(SubmissionRejected) as info:
            await accept(
                submission("+17816170000", **options),
                store=InMemoryStore(),
                clock=clock,
                ids=SequentialIds(),
            )
        assert [p.field for p in info.value.problems] == [field]


async def test_scheduled_delivery_is_not_due_before_its_time() -> None:
    store, clock = InMemoryStore(), FakeClock()
    later = clock.now() + timedelta(hours=1)
    accepted = await accept(
        submission("+17816170000", scheduled_at=later),
        store=store,
        clock=clock,
        ids=SequentialIds(),
    )
    (delivery,) = await store.deliveries_of(accepted.message_id)
    assert delivery.next_attempt_at == later
    assert (
        await store.lease(worker="w", now=clock.now(), limit=10, lease_for=timedelta(minutes=1))
        == []
    )
    clock.advance(timedelta(hours=1))
    leases = await store.lease(
        worker="w", now=clock.now(), limit=10, lease_for=timedelta(minutes=1)
    )
    assert [lease.delivery.id for lease in leases] == [delivery.id]


async def test_store_failure_is_not_an_acceptance() -> None:
    class Down(InMemoryStore):
        async def add_message(self, *args: object, **kwargs: object) -> None:
            raise StoreUnavailable("disk full")

    with pytest.raises(StoreUnavailable):
        await accept(
            submission("+17816170000"), store=Down(), clock=FakeClock(), ids=SequentialIds()
        )


async def test_accept_many_answers_each_and_stores_the_valid_together() -> None:
    store, clock = InMemoryStore(), FakeClock()
    batch = [
        submission("+17816170000"),
        submission("nonsense"),
        submission("+17816170001", "+17816170002"),
        submission("+17816170003", valid_until=clock.now() - timedelta(seconds=1)),
    ]
    results = await accept_many(batch, store=store, clock=clock, ids=SequentialIds())
    ok, bad_number, two, expired = results
    assert isinstance(bad_number, SubmissionRejected)
    assert bad_number.problems[0].field == "recipients[0]"
    assert isinstance(expired, SubmissionRejected)
    assert expired.problems[0].field == "validity"
    assert not isinstance(ok, SubmissionRejected) and not isinstance(two, SubmissionRejected)
    assert two.recipients == ("+17816170001", "+17816170002")
    assert len(store.messages) == 2  # the refused ones left nothing behind
    for accepted in (ok, two):
        deliveries = await store.deliveries_of(accepted.message_id)
        assert [d.id for d in deliveries] == list(accepted.delivery_ids)
        events = await store.events_of(deliveries[0].id)
        assert [e.to_state for e in events] == [DeliveryState.ACCEPTED, DeliveryState.QUEUED]


async def test_accept_many_store_failure_stores_none() -> None:
    store = InMemoryStore()
    store.fail_writes = StoreUnavailable("down")
    with pytest.raises(StoreUnavailable):
        await accept_many(
            [submission("+17816170000"), submission("+17816170001")],
            store=store,
            clock=FakeClock(),
            ids=SequentialIds(),
        )
    assert store.messages == {}
