"""Message history queries (store.history) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from store_helpers import START, submission

from teleway.core.accept import accept
from teleway.core.model import DeliveryState, Device, Origin, Recipient
from teleway.store import Store
from teleway.store.history import (
    CSV_HEADER,
    MAX_BUCKETS,
    History,
    InvalidCursor,
    MessageFilter,
    decode_cursor,
    encode_cursor,
)
from teleway.testing.fakes import FakeClock, SequentialIds


class World:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.clock = FakeClock(START)
        self.ids = SequentialIds()
        self.history = History(store.db)

    async def send(self, **kwargs: object) -> tuple[str, list[str]]:
        sub = submission(**kwargs)  # type: ignore[arg-type]
        accepted = await accept(sub, store=self.store.messages, clock=self.clock, ids=self.ids)
        return accepted.message_id, list(accepted.delivery_ids)

    async def move(self, delivery_id: str, state: DeliveryState, reason: str = "test") -> None:
        moved = await self.store.queue.transition(
            delivery_id, state, now=self.clock.now(), reason=reason
        )
        assert moved is not None, (delivery_id, state)


@pytest.fixture
def world(store: Store) -> World:
    return World(store)


async def test_search_newest_first_with_cursor_pages(world: World) -> None:
    sent = []
    for _ in range(7):
        message_id, _ = await world.send()
        sent.append(message_id)
        world.clock.advance(1)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await world.history.search(MessageFilter(account_id=1), limit=3, cursor=cursor)
        pages += 1
        seen.extend(item.message.id for item in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(sent))
    assert pages == 3


async def test_cursor_breaks_ties_between_messages_of_the_same_instant(world: World) -> None:
    sent = [(await world.send())[0] for _ in range(5)]  # clock stands still: same created_at
    first = await world.history.search(MessageFilter(account_id=1), limit=2)
    second = await world.history.search(
        MessageFilter(account_id=1), limit=10, cursor=first.next_cursor
    )
    ids = [i.message.id for i in first.items] + [i.message.id for i in second.items]
    assert ids == sorted(sent, reverse=True)
    assert second.next_cursor is None


async def test_filters_combine(world: World) -> None:
    plain, plain_d = await world.send(recipients=2)
    world.clock.advance(60)
    fax, fax_d = await world.send(device=Device.FAX, account_id=1)
    world.clock.advance(60)
    other, _ = await world.send(account_id=2)
    await world.move(plain_d[1], DeliveryState.CANCELLED)

    async def ids(**kw: object) -> list[str]:
        page = await world.history.search(MessageFilter(**kw))  # type: ignore[arg-type]
        return [i.message.id for i in page.items]

    assert await ids(account_id=1) == [fax, plain]
    assert await ids(account_id=2) == [other]
    assert await ids() == [other, fax, plain]  # operators
    assert await ids(account_id=1, device=Device.FAX) == [fax]
    assert await ids(account_id=1, state=DeliveryState.CANCELLED) == [plain]
    assert await ids(account_id=1, origin=Origin.SMPP) == []
    assert await ids(account_id=1, origin=Origin.HTTP) == [fax, plain]
    # the second recipient of `plain` is +14155550101
    assert await ids(account_id=1, recipient="555 0101") == [plain]
    assert await ids(account_id=1, recipient="%") == [fax, plain]  # no digits: no filter
    assert await ids(account_id=1, since=START + timedelta(seconds=30)) == [fax]
    assert await ids(account_id=1, until=START + timedelta(seconds=30)) == [plain]
    page = await world.history.search(MessageFilter(account_id=1, device=Device.FAX))
    assert page.items[0].deliveries[0].id == fax_d[0]
    assert page.items[0].state_counts == {DeliveryState.QUEUED: 1}


async def test_forged_cursor_is_refused(world: World) -> None:
    for bad in ("", "!!!", "bm90aGluZw", encode_cursor(START, "x")[:-3] + "@@@"):
        with pytest.raises(InvalidCursor):
            await world.history.search(MessageFilter(), cursor=bad)
    assert decode_cursor(encode_cursor(START, "abc")) == (START.timestamp(), "abc")


async def test_detail_has_timeline_and_parts_and_is_scoped(world: World) -> None:
    message_id, (delivery_id,) = await world.send()
    world.clock.advance(2)
    await world.move(delivery_id, DeliveryState.IN_FLIGHT, "leased")
    await world.store.messages.add_upstream_ids(
        delivery_id, ["up-1", "up-2"], now=world.clock.now()
    )
    before = await world.history.last_event_id(message_id)
    world.clock.advance(3)
    await world.move(delivery_id, DeliveryState.DELIVERED, "receipt DELIVRD")
    detail = await world.history.detail(message_id, account_id=1)
    assert detail is not None
    (d,) = detail.deliveries
    assert d.delivery.state is DeliveryState.DELIVERED
    assert [e.to_state for e in d.events] == [
        DeliveryState.ACCEPTED,
        DeliveryState.QUEUED,
        DeliveryState.IN_FLIGHT,
        DeliveryState.DELIVERED,
    ][-len(d.events) :]
    assert d.events[-1].reason == "receipt DELIVRD"
    assert [(p.upstream_id, p.part) for p in d.parts] == [("up-1", 1), ("up-2", 2)]
    assert detail.last_event_id > before > 0
    assert await world.history.last_event_id(message_id) == detail.last_event_id
    assert await world.history.detail(message_id, account_id=2) is None
    assert await world.history.detail(message_id, account_id=None) is not None
    assert await world.history.detail("nope", account_id=None) is None
    assert await world.history.last_event_id("nope") == 0


async def test_state_counts_traffic_and_usage(world: World) -> None:
    _, first = await world.send(recipients=3)
    world.clock.advance(90)  # second bucket of 60 s
    _, second = await world.send(recipients=1, device=Device.MOBILE)
    await world.send(account_id=2)
    await world.move(first[0], DeliveryState.IN_FLIGHT)
    await world.move(first[0], DeliveryState.DELIVERED)
    await world.store.messages.add_upstream_ids(first[0], ["a", "b"], now=world.clock.now())
    await world.move(first[1], DeliveryState.CANCELLED)

    counts = await world.history.state_counts(account_id=1)
    assert counts == {
        DeliveryState.DELIVERED: 1,
        DeliveryState.CANCELLED: 1,
        DeliveryState.QUEUED: 2,
    }
    points = await world.history.traffic(
        account_id=1,
        since=START,
        until=START + timedelta(minutes=3),
        bucket_seconds=60,
    )
    got = {(p.start - START, p.channel, p.state, p.count) for p in points}
    assert got == {
        (timedelta(0), "sms", DeliveryState.DELIVERED, 1),
        (timedelta(0), "sms", DeliveryState.CANCELLED, 1),
        (timedelta(0), "sms", DeliveryState.QUEUED, 1),
        (timedelta(seconds=60), "mobile", DeliveryState.QUEUED, 1),
    }
    everyone = await world.history.traffic(
        account_id=None, since=START, until=START + timedelta(minutes=3), bucket_seconds=60
    )
    assert sum(p.count for p in everyone) == 5
    with pytest.raises(ValueError, match="buckets"):
        await world.history.traffic(
            account_id=1,
            since=START,
            until=START + timedelta(seconds=MAX_BUCKETS + 1),
            bucket_seconds=1,
        )

    usage = await world.history.usage(1)
    assert (usage.messages, usage.deliveries, usage.sms_parts) == (2, 4, 2)
    assert usage.by_device == {Device.SMS: 3, Device.MOBILE: 1}
    assert usage.by_origin == {Origin.HTTP: 2}
    assert usage.by_state[DeliveryState.QUEUED] == 2
    later = await world.history.usage(1, since=START + timedelta(seconds=60))
    assert (later.messages, later.deliveries, later.sms_parts) == (1, 1, 0)
    assert second  # the mobile delivery exists


async def test_csv_rows_stream_every_delivery(world: World) -> None:
    made = 0
    for n in range(1, 6):
        await world.send(recipients=n, text=f"text, with comma {n}")
        made += n
        world.clock.advance(1)
    rows = [row async for row in world.history.csv_rows(MessageFilter(account_id=1))]
    assert rows[0] == list(CSV_HEADER)
    assert len(rows) == 1 + made
    assert all(len(r) == len(CSV_HEADER) for r in rows)
    assert rows[1][CSV_HEADER.index("text")] == "text, with comma 5"
    assert {r[CSV_HEADER.index("state")] for r in rows[1:]} == {"queued"}


async def test_recipient_filter_escapes_like_wildcards(world: World) -> None:
    sub = submission()
    sub = type(sub)(
        account=sub.account,
        origin=sub.origin,
        submitter=sub.submitter,
        recipients=(Recipient(number="+442079460958"),),
        content=sub.content,
    )
    accepted = await accept(sub, store=world.store.messages, clock=world.clock, ids=world.ids)
    page = await world.history.search(MessageFilter(account_id=1, recipient="+44 20 7946"))
    assert [i.message.id for i in page.items] == [accepted.message_id]
    page = await world.history.search(MessageFilter(account_id=1, recipient="99999"))
    assert page.items == ()
