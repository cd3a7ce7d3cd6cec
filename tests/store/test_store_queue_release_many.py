"""`WorkQueue.release_many` contract: the same rows, events, upstream ids and reports as the
same releases made one by one with `release`. SQLite, PostgreSQL and the in-memory fake."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from store_helpers import Backend, outbox_of, submit

from teleway.core.model import Delivery, DeliveryState, Options, ReportOn
from teleway.core.ports import Release

S = DeliveryState
LEASE = timedelta(seconds=30)


async def lease_all(backend: Backend, worker: str = "w1") -> list[Delivery]:
    leases = await backend.queue.lease(
        worker=worker, now=backend.clock.now(), limit=100, lease_for=LEASE
    )
    return [lease.delivery for lease in leases]


def releases(ids: list[str], prefix: str, wait_until: Any) -> list[Release]:
    """Four kinds of release: with ids and channel, with a wait, with nothing, several parts
    (one id repeated: recorded once)."""
    return [
        Release(delivery_id=ids[0], reason="submitted in 1 part", upstream_ids=[f"{prefix}1"],
                channel="smsc1"),
        Release(delivery_id=ids[1], reason="waiting", wait_until=wait_until),
        Release(delivery_id=ids[2], reason="bare"),
        Release(delivery_id=ids[3], reason="in 3 parts",
                upstream_ids=[f"{prefix}a", f"{prefix}b", f"{prefix}a", f"{prefix}c"]),
    ]  # fmt: skip


def comparable(delivery: Delivery | None) -> Any:
    """What must match between the two groups (ids and upstream ids differ by their prefix)."""
    assert delivery is not None
    return (
        delivery.state,
        delivery.lease_owner,
        delivery.lease_expires_at,
        delivery.next_attempt_at,
        delivery.valid_until,
        delivery.channel,
        tuple(u[1:] for u in delivery.upstream_ids),
        delivery.error,
        delivery.attempts,
        delivery.updated_at,
    )


async def test_release_many_is_n_releases(backend: Backend) -> None:
    options = Options(report=ReportOn.ALL)
    one_by_one = await submit(backend, recipients=4, options=options)
    batched = await submit(backend, recipients=4, options=options)
    await lease_all(backend)
    backend.clock.advance(timedelta(seconds=3))
    now = backend.clock.now()
    wait = now + timedelta(hours=2)
    reports_before = len(await outbox_of(backend).recent(account_id=1, limit=1000))

    singles = [
        await backend.queue.release(
            r.delivery_id,
            worker="w1",
            now=now,
            reason=r.reason,
            upstream_ids=r.upstream_ids,
            channel=r.channel,
            wait_until=r.wait_until,
        )
        for r in releases(one_by_one, "a", wait)
    ]
    many = await backend.queue.release_many(releases(batched, "b", wait), worker="w1", now=now)

    assert len(many) == 4
    for single, multi, single_id, multi_id in zip(singles, many, one_by_one, batched, strict=True):
        assert single is not None and multi is not None
        assert multi.id == multi_id and single.id == single_id
        assert comparable(multi) == comparable(single)
        # what is returned is what is stored
        assert await backend.messages.get_delivery(multi_id) == multi
        assert await backend.messages.get_delivery(single_id) == single
        single_events = await backend.messages.events_of(single_id)
        multi_events = await backend.messages.events_of(multi_id)
        assert [(e.from_state, e.to_state, e.reason, e.at) for e in multi_events] == [
            (e.from_state, e.to_state, e.reason, e.at) for e in single_events
        ]
        assert multi_events[-1].reason != "" and multi_events[-1].at == now
    assert many[1] is not None and many[1].next_attempt_at == wait
    assert many[0] is not None and many[0].next_attempt_at == many[0].valid_until
    assert many[3] is not None and many[3].upstream_ids == ("ba", "bb", "bc")
    # upstream ids map to their delivery
    for prefix, ids in (("a", one_by_one), ("b", batched)):
        for suffix, index in (("1", 0), ("a", 3), ("b", 3), ("c", 3)):
            found = await backend.messages.find_by_upstream_id(f"{prefix}{suffix}")
            assert found is not None and found.id == ids[index]
    # a release reports nothing (the state stays IN_FLIGHT), batched or not
    assert len(await outbox_of(backend).recent(account_id=1, limit=1000)) == reports_before
    # released: nobody leases them again
    backend.clock.advance(LEASE * 10)
    assert await lease_all(backend, "w2") == []


async def test_release_many_refuses_as_release_does(backend: Backend) -> None:
    mine = await submit(backend, recipients=3)
    await lease_all(backend, "w1")
    theirs = await submit(backend, recipients=1)
    await lease_all(backend, "w2")
    now = backend.clock.now()
    # already released before the batch
    assert await backend.queue.release(mine[2], worker="w1", now=now, reason="early") is not None
    events_before = {d: len(await backend.messages.events_of(d)) for d in [*mine, *theirs]}

    results = await backend.queue.release_many(
        [
            Release(delivery_id=mine[0], reason="first", upstream_ids=["x1"]),
            Release(delivery_id=theirs[0], reason="not my lease", upstream_ids=["x2"]),
            Release(delivery_id="no-such-delivery", reason="unknown"),
            Release(delivery_id=mine[2], reason="released already", upstream_ids=["x3"]),
            Release(delivery_id=mine[0], reason="twice", upstream_ids=["x4"]),
            Release(delivery_id=mine[1], reason="second", channel="c"),
        ],
        worker="w1",
        now=now,
    )

    assert [r is not None for r in results] == [True, False, False, False, False, True]
    assert results[0] is not None and results[0].upstream_ids == ("x1",)
    events_after = {d: len(await backend.messages.events_of(d)) for d in [*mine, *theirs]}
    assert events_after == {
        mine[0]: events_before[mine[0]] + 1,
        mine[1]: events_before[mine[1]] + 1,
        mine[2]: events_before[mine[2]],
        theirs[0]: events_before[theirs[0]],
    }
    assert [e.reason for e in (await backend.messages.events_of(mine[0]))[-1:]] == ["first"]
    for refused in ("x2", "x3", "x4"):
        assert await backend.messages.find_by_upstream_id(refused) is None
    other = await backend.messages.get_delivery(theirs[0])
    assert other is not None and other.lease_owner == "w2" and other.upstream_ids == ()


async def test_release_many_after_the_lease_was_taken_over(backend: Backend) -> None:
    (delivery_id,) = await submit(backend)
    await lease_all(backend, "w1")
    backend.clock.advance(LEASE + timedelta(seconds=1))
    (taken,) = await lease_all(backend, "w2")  # w1 looked dead: its lease expired
    assert taken.id == delivery_id
    now = backend.clock.now()
    late = Release(delivery_id=delivery_id, reason="late", upstream_ids=["late-1"])
    assert await backend.queue.release_many([late], worker="w1", now=now) == [None]
    assert await backend.messages.find_by_upstream_id("late-1") is None
    current = await backend.messages.get_delivery(delivery_id)
    assert current is not None and current.lease_owner == "w2"
    (done,) = await backend.queue.release_many(
        [Release(delivery_id=delivery_id, reason="w2 sent it", upstream_ids=["w2-1"])],
        worker="w2",
        now=now,
    )
    assert done is not None and done.lease_owner is None and done.upstream_ids == ("w2-1",)


async def test_release_many_upstream_ids(backend: Backend) -> None:
    """Ids already on the delivery are kept (new ones appended); an id given for two deliveries
    of one batch ends with the later one, as two releases in a row leave it."""
    first, second = await submit(backend, recipients=2)
    await lease_all(backend)
    now = backend.clock.now()
    kept = await backend.queue.transition(
        first, S.IN_FLIGHT, now=now, reason="part 1 answered", worker="w1",
        upstream_ids=["p1"], keep_lease=True,
    )  # fmt: skip
    assert kept is not None and kept.lease_owner == "w1"

    one, two = await backend.queue.release_many(
        [
            Release(delivery_id=first, reason="sent", upstream_ids=["p1", "p2", "shared"]),
            Release(delivery_id=second, reason="sent", upstream_ids=["shared"]),
        ],
        worker="w1",
        now=now,
    )

    assert one is not None and one.upstream_ids == ("p1", "p2", "shared")
    assert two is not None and two.upstream_ids == ("shared",)
    shared = await backend.messages.find_by_upstream_id("shared")
    assert shared is not None and shared.id == second
    p2 = await backend.messages.find_by_upstream_id("p2")
    assert p2 is not None and p2.id == first


async def test_release_many_of_nothing(backend: Backend) -> None:
    assert await backend.queue.release_many([], worker="w1", now=backend.clock.now()) == []
