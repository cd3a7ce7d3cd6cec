"""MessageStore contract: the same tests on SQLite, PostgreSQL and the in-memory fake."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from store_helpers import Backend, build, submission, submit

from teleway.core.accept import accept
from teleway.core.model import (
    Attachment,
    Content,
    DeliveryState,
    Device,
    Message,
    Options,
    Origin,
    ReportOn,
)
from teleway.core.ports import StoreFull, StoreUnavailable
from teleway.store import tables
from teleway.store.rows import DELIVERY_COLUMNS, EVENT_COLUMNS, MESSAGE_COLUMNS, message_values

S = DeliveryState


async def test_message_round_trip(backend: Backend) -> None:
    clock = backend.clock
    options = Options(
        valid_until=clock.now() + timedelta(hours=5),
        sender_id="ACME",
        report=ReportOn.FAILURE,
        callback_url="https://example.com/hook",
        priority=2,
        extra={"source_ton": 5, "tags": ["a", "b"]},
    )
    attachment = Attachment(
        filename="doc.pdf", content_type="application/pdf", blob_id="ab" * 32, size=1234
    )
    sub = submission(
        recipients=3,
        text="héllo wörld €",
        options=options,
        attachments=(attachment,),
        raw=b"\x00\x01\xff",
    )
    accepted = await accept(sub, store=backend.messages, clock=clock, ids=backend.ids)

    message = await backend.messages.get_message(accepted.message_id)
    assert message is not None
    assert message.id == accepted.message_id
    assert message.account_id == 1
    assert message.content == sub.content
    assert message.options == options
    assert message.created_at == clock.now()

    deliveries = await backend.messages.deliveries_of(accepted.message_id)
    assert [d.id for d in deliveries] == list(accepted.delivery_ids)
    assert [d.seq for d in deliveries] == [0, 1, 2]
    assert [d.recipient for d in deliveries] == list(accepted.recipients)
    for delivery in deliveries:
        assert delivery.state is S.QUEUED
        assert delivery.valid_until == options.valid_until
        assert delivery.next_attempt_at == clock.now()
        assert delivery.attempts == 0
        assert await backend.messages.get_delivery(delivery.id) == delivery

    events = await backend.messages.events_of(deliveries[1].id)
    assert [(e.from_state, e.to_state) for e in events] == [
        (None, S.ACCEPTED),
        (S.ACCEPTED, S.QUEUED),
    ]
    assert events[0].at == clock.now()
    assert "http" in events[0].reason


async def test_unknown_ids(backend: Backend) -> None:
    assert await backend.messages.get_message("nope") is None
    assert await backend.messages.get_delivery("nope") is None
    assert await backend.messages.deliveries_of("nope") == []
    assert await backend.messages.events_of("nope") == []
    assert await backend.messages.find_by_upstream_id("nope") is None


async def test_upstream_ids_are_found_exactly(backend: Backend) -> None:
    (delivery_id,) = await submit(backend)
    now = backend.clock.now()
    assert await backend.messages.add_upstream_ids(delivery_id, ["0A1B", "77"], now=now)
    found = await backend.messages.find_by_upstream_id("0A1B")
    assert found is not None and found.id == delivery_id
    assert found.upstream_ids == ("0A1B", "77")
    # exact match only: tolerant matching (case, leading zeros) is the caller's job
    assert await backend.messages.find_by_upstream_id("0a1b") is None
    assert await backend.messages.find_by_upstream_id("077") is None
    # adding again does not duplicate
    await backend.messages.add_upstream_ids(delivery_id, ["77", "78"], now=now)
    again = await backend.messages.get_delivery(delivery_id)
    assert again is not None and again.upstream_ids == ("0A1B", "77", "78")
    assert not await backend.messages.add_upstream_ids("unknown", ["1"], now=now)


async def test_reused_upstream_id_points_to_newest_delivery(backend: Backend) -> None:
    (first,) = await submit(backend)
    (second,) = await submit(backend)
    now = backend.clock.now()
    await backend.messages.add_upstream_ids(first, ["42"], now=now)
    await backend.messages.add_upstream_ids(second, ["42"], now=now)
    found = await backend.messages.find_by_upstream_id("42")
    assert found is not None and found.id == second


async def test_list_messages(backend: Backend) -> None:
    ids = []
    for n in range(5):
        backend.clock.advance(1)
        account = 1 if n != 2 else 2
        accepted = await accept(
            submission(account_id=account),
            store=backend.messages,
            clock=backend.clock,
            ids=backend.ids,
        )
        ids.append(accepted.message_id)
    listed = await backend.messages.list_messages(1, limit=10)
    assert [m.id for m in listed] == [ids[4], ids[3], ids[1], ids[0]]
    page = await backend.messages.list_messages(1, limit=2)
    assert [m.id for m in page] == [ids[4], ids[3]]
    rest = await backend.messages.list_messages(1, limit=10, before=page[-1].created_at)
    assert [m.id for m in rest] == [ids[1], ids[0]]
    everyone = await backend.messages.list_messages(None, limit=10)
    assert len(everyone) == 5
    assert [m.id for m in await backend.messages.list_messages(2)] == [ids[2]]


async def test_group_commit_of_concurrent_callers(backend: Backend) -> None:
    callers = 200
    results = await asyncio.gather(*(submit(backend, recipients=1 + n % 3) for n in range(callers)))
    assert len(results) == callers
    for delivery_ids in results:
        for delivery_id in delivery_ids:
            delivery = await backend.messages.get_delivery(delivery_id)
            assert delivery is not None and delivery.state is S.QUEUED
    depth = await backend.queue.depth()
    assert depth[S.QUEUED] == sum(len(r) for r in results)
    if backend.store is not None:
        # batched: far fewer transactions than callers
        assert backend.store.writer.commits < callers / 4


async def test_refused_message_stores_nothing_and_spares_its_batch(backend: Backend) -> None:
    (taken,) = await submit(backend)
    good = [build(backend, recipients=2) for _ in range(5)]
    # the second delivery id of the bad message is already used: its first delivery, message
    # and events must not be stored either
    bad = build(backend, delivery_ids=[backend.ids.new_id(), taken])
    results = await asyncio.gather(
        *(backend.messages.add_message(*item) for item in [*good[:3], bad, *good[3:]]),
        return_exceptions=True,
    )
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [None] * 5
    message, deliveries, _ = bad
    assert await backend.messages.get_message(message.id) is None
    assert await backend.messages.get_delivery(deliveries[0].id) is None
    assert await backend.messages.events_of(deliveries[0].id) == []
    for message, _, _ in good:
        assert await backend.messages.get_message(message.id) is not None
        assert len(await backend.messages.deliveries_of(message.id)) == 2


async def test_full_store_fails_the_whole_batch_and_stores_nothing(backend: Backend) -> None:
    await submit(backend)
    before = await backend.queue.depth()
    await backend.make_full()
    # big enough that every transaction needs new pages of a full SQLite file
    items = [build(backend, recipients=40) for _ in range(20)]
    results = await asyncio.gather(
        *(backend.messages.add_message(*item) for item in items), return_exceptions=True
    )
    assert all(isinstance(r, StoreFull) for r in results), results
    assert all(isinstance(r, StoreUnavailable) for r in results)
    if backend.is_sql:
        assert all(r.__cause__ is not None for r in results if isinstance(r, BaseException))
    await backend.make_roomy()
    assert await backend.queue.depth() == before
    for message, deliveries, _ in items:
        assert await backend.messages.get_message(message.id) is None
        assert await backend.messages.get_delivery(deliveries[0].id) is None
    # the store recovers once there is room again
    assert await submit(backend)


async def test_add_messages_commits_them_together_or_none(backend: Backend) -> None:
    """add_messages (an ingress's window read at once): all stored with their events in one
    write; one refused row refuses the whole call, and spares concurrent callers."""
    items = [build(backend, recipients=1 + n % 2) for n in range(5)]
    await backend.messages.add_messages(items)
    for message, deliveries, _ in items:
        assert await backend.messages.get_message(message.id) is not None
        for delivery in deliveries:
            stored = await backend.messages.get_delivery(delivery.id)
            assert stored is not None and stored.state is S.QUEUED
            events = await backend.messages.events_of(delivery.id)
            assert [e.to_state for e in events] == [S.ACCEPTED]  # as build() made them
    (taken,) = await submit(backend)
    refused = [build(backend), build(backend, delivery_ids=[taken]), build(backend)]
    alone = build(backend)
    results = await asyncio.gather(
        backend.messages.add_messages(refused),
        backend.messages.add_message(*alone),
        return_exceptions=True,
    )
    assert isinstance(results[0], ValueError) and results[1] is None
    for message, deliveries, _ in refused:
        assert await backend.messages.get_message(message.id) is None
        stored = await backend.messages.get_delivery(deliveries[0].id)
        assert stored is None or (stored.id == taken and stored.message_id != message.id)
    assert await backend.messages.get_message(alone[0].id) is not None


async def test_delivery_must_belong_to_message(backend: Backend) -> None:
    _, deliveries, events = build(backend)
    other, _, _ = build(backend)
    with pytest.raises(ValueError):
        await backend.messages.add_message(other, deliveries, events)
    assert await backend.messages.get_message(other.id) is None


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_too_many_waiting_writes_is_backpressure(backend: Backend) -> None:
    assert backend.store is not None  # the in-memory store has no write queue
    backend.store.writer.max_pending = 10
    results = await asyncio.gather(
        *(backend.messages.add_message(*build(backend)) for _ in range(50)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, StoreFull)]
    stored = [r for r in results if r is None]
    assert refused and stored
    assert len(refused) + len(stored) == 50
    depth = await backend.queue.depth()
    assert depth[S.QUEUED] == len(stored)


async def test_devices_are_kept(backend: Backend) -> None:
    (delivery_id,) = await submit(backend, device=Device.FAX)
    delivery = await backend.messages.get_delivery(delivery_id)
    assert delivery is not None and delivery.device is Device.FAX


def test_driver_rows_cover_the_tables() -> None:
    """The hot insert path writes positional rows: they must name every column of tables.py."""
    assert set(MESSAGE_COLUMNS) == {c.name for c in tables.messages.columns}
    assert set(DELIVERY_COLUMNS) == {c.name for c in tables.deliveries.columns}
    assert set(EVENT_COLUMNS) == {c.name for c in tables.delivery_events.columns} - {"id"}


async def test_naive_times_are_refused(backend: Backend) -> None:
    message, deliveries, events = build(backend)
    naive = deliveries[0].evolve(valid_until=deliveries[0].valid_until.replace(tzinfo=None))
    with pytest.raises(ValueError):
        await backend.messages.add_message(message, [naive], events)
    assert await backend.messages.get_message(message.id) is None


def test_options_json_is_remembered_by_value_and_type() -> None:
    """The options column of ESMEs' repeated options is cached: equal-but-different values
    (True == 1 == 1.0) and unhashable extras must still give their own JSON."""

    def options_json(options: Options) -> Any:
        message = Message(
            id="m1",
            account_id=1,
            origin=Origin.SMPP,
            submitter="esme",
            content=Content(text="x"),
            options=options,
            created_at=datetime.now(UTC),
        )
        return json.loads(message_values(message)[MESSAGE_COLUMNS.index("options")])

    for extra in ({"flag": True}, {"flag": 1}, {"flag": 1.0}, {"list": [1, 2]}, {}):
        for _ in range(2):  # the second time from the cache
            options = Options(sender_id="ACME", extra=dict(extra))
            got = options_json(options)
            assert got == json.loads(json.dumps(options.to_dict()))
            assert type(got["extra"].get("flag")) is type(extra.get("flag"))
