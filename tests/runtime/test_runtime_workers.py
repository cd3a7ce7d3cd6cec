"""The Dispatcher and the Sweeper with the in-memory store, a fake clock and scripted channels.

The dispatcher runs for real (its own task, a 10 ms poll interval); only the clock the store
and the retry policy see is fake, so retries are driven by advancing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from teleway.core.accept import accept
from teleway.core.model import (
    Account,
    Content,
    Delivery,
    DeliveryState,
    Device,
    Message,
    Options,
    Origin,
    Recipient,
    Submission,
)
from teleway.core.outcome import (
    Delivered,
    Outcome,
    PermanentFailure,
    Submitted,
    TemporaryFailure,
)
from teleway.core.ports import Release, StoreUnavailable
from teleway.core.retry import RetryPolicy
from teleway.runtime.metrics import Metrics
from teleway.runtime.workers import Dispatcher, Sweeper
from teleway.testing.fakes import FakeClock, InMemoryStore, SequentialIds

pytestmark = pytest.mark.timeout(20)

S = DeliveryState
START = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
NUMBERS = [f"+1415555{n:04d}" for n in range(100, 200)]

Script = Callable[[Delivery], Outcome]


@dataclass
class ScriptedChannel:
    """A Channel whose outcome comes from `script`; `gate` (when set) holds every send until
    opened. Remembers what it was given and how many sends ran at once."""

    script: Script
    name: str = "sms"
    devices: frozenset[Device] = frozenset({Device.SMS})
    is_ready: bool = True
    gate: asyncio.Event | None = None
    calls: list[tuple[str, int]] = field(default_factory=list)
    running: int = 0
    most_running: int = 0

    @property
    def ready(self) -> bool:
        return self.is_ready

    async def send(self, delivery: Delivery, message: Message) -> Outcome:
        self.calls.append((delivery.id, delivery.attempts))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            return self.script(delivery)
        finally:
            self.running -= 1


class HalfDraw(random.Random):
    """The retry jitter draw fixed at 0.5, so the back-off is visible."""

    def random(self) -> float:
        return 0.5


@dataclass
class Rig:
    store: InMemoryStore
    clock: FakeClock
    metrics: Metrics
    dispatcher: Dispatcher
    channel: ScriptedChannel
    ids: SequentialIds

    async def submit(
        self,
        count: int = 1,
        *,
        device: Device = Device.SMS,
        valid_for: timedelta = timedelta(hours=1),
    ) -> list[str]:
        accepted = await accept(
            Submission(
                account=Account(id=1, name="acme"),
                origin=Origin.HTTP,
                submitter="api",
                recipients=tuple(Recipient(number=NUMBERS[i], device=device) for i in range(count)),
                content=Content(text="hello"),
                options=Options(valid_until=self.clock.now() + valid_for),
            ),
            store=self.store,
            clock=self.clock,
            ids=self.ids,
        )
        return list(accepted.delivery_ids)

    def delivery(self, delivery_id: str) -> Delivery:
        return self.store.deliveries[delivery_id]

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def transitions(self, delivery_id: str) -> list[tuple[S | None, S]]:
        return [(e.from_state, e.to_state) for e in self.store.events[delivery_id]]


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def dispatching(
    script: Script, *, concurrency: int = 8, store: InMemoryStore | None = None, **channel: Any
) -> AsyncIterator[Rig]:
    store = store or InMemoryStore()
    clock = FakeClock(START)
    metrics = Metrics()
    chan = ScriptedChannel(script=script, **channel)
    dispatcher = Dispatcher(
        queue=store,
        messages=store,
        channels=[chan],
        clock=clock,
        metrics=metrics,
        worker="w1",
        concurrency=concurrency,
        poll_interval=0.01,
        lease_for=timedelta(seconds=60),
        retry=RetryPolicy(base_seconds=10, max_seconds=3600),
        rng=HalfDraw(),
    )
    rig = Rig(store, clock, metrics, dispatcher, chan, SequentialIds())
    task = asyncio.create_task(dispatcher.run())
    try:
        yield rig
    finally:
        if chan.gate is not None:
            chan.gate.set()
        await dispatcher.stop(timeout=5)
        await asyncio.wait_for(task, 5)


# ---- outcomes ------------------------------------------------------------------------------


async def test_submitted_releases_the_lease_and_keeps_the_upstream_ids() -> None:
    outcome = Submitted(upstream_ids=("sim:1", "sim:2"), channel="sms", detail="2 parts")
    async with dispatching(lambda d: outcome) as rig:
        [delivery_id] = await rig.submit()
        await eventually(lambda: rig.delivery(delivery_id).upstream_ids != ())
        d = rig.delivery(delivery_id)
        assert d.state is S.IN_FLIGHT and d.lease_owner is None
        assert d.upstream_ids == ("sim:1", "sim:2") and d.channel == "sms"
        assert d.next_attempt_at == d.valid_until  # waits for its receipt until then
        assert rig.transitions(delivery_id) == [
            (None, S.ACCEPTED),
            (S.ACCEPTED, S.QUEUED),
            (S.QUEUED, S.IN_FLIGHT),
            (S.IN_FLIGHT, S.IN_FLIGHT),
        ]
        assert rig.store.events[delivery_id][-1].reason == "2 parts"
        assert await rig.store.find_by_upstream_id("sim:2") == d
        assert rig.sample("teleway_delivery_attempts_total", channel="sms", result="Submitted") == 1
        assert (
            rig.sample(
                "teleway_deliveries_final_total",
                channel="sms",
                state="delivered",
                reason="delivered",
            )
            == 0
        )
        assert rig.channel.calls == [(delivery_id, 1)]


async def test_delivered_ends_the_delivery_with_metrics() -> None:
    async with dispatching(lambda d: Delivered(channel="sms", detail="answered")) as rig:
        [delivery_id] = await rig.submit()
        await eventually(lambda: rig.delivery(delivery_id).state is S.DELIVERED)
        assert rig.transitions(delivery_id)[-1] == (S.IN_FLIGHT, S.DELIVERED)
        assert rig.store.events[delivery_id][-1].reason == "answered"
        assert rig.delivery(delivery_id).lease_owner is None
        labels = {"channel": "sms", "state": "delivered", "reason": "delivered"}
        assert rig.sample("teleway_deliveries_final_total", **labels) == 1
        assert rig.sample("teleway_delivery_seconds_count", channel="sms", state="delivered") == 1


@pytest.mark.parametrize(
    ("rejected", "state", "reason_label"),
    [(False, S.UNDELIVERABLE, "ESME_RINVDSTADR"), (True, S.REJECTED, "ESME_RINVDSTADR")],
)
async def test_permanent_failure_ends_undeliverable_or_rejected(
    rejected: bool, state: S, reason_label: str
) -> None:
    outcome = PermanentFailure(
        reason="sim refused: ESME_RINVDSTADR", channel="sms", rejected=rejected, code=reason_label
    )
    async with dispatching(lambda d: outcome) as rig:
        [delivery_id] = await rig.submit()
        await eventually(lambda: rig.delivery(delivery_id).state is state)
        d = rig.delivery(delivery_id)
        assert d.error == "ESME_RINVDSTADR" and d.channel == "sms"
        assert rig.transitions(delivery_id)[-1] == (S.IN_FLIGHT, state)
        assert rig.store.events[delivery_id][-1].reason == "sim refused: ESME_RINVDSTADR"
        labels = {"channel": "sms", "state": str(state), "reason": reason_label}
        assert rig.sample("teleway_deliveries_final_total", **labels) == 1
        assert (
            rig.sample("teleway_delivery_attempts_total", channel="sms", result="PermanentFailure")
            == 1
        )


async def test_permanent_failure_without_code_counts_as_failed() -> None:
    outcome = PermanentFailure(reason="cannot encode", channel="sms", rejected=True)
    async with dispatching(lambda d: outcome) as rig:
        [delivery_id] = await rig.submit()
        await eventually(lambda: rig.delivery(delivery_id).state is S.REJECTED)
        assert rig.delivery(delivery_id).error == "cannot encode"
        labels = {"channel": "sms", "state": "rejected", "reason": "failed"}
        assert rig.sample("teleway_deliveries_final_total", **labels) == 1


async def test_temporary_failure_retries_with_growing_delays_until_validity_ends() -> None:
    outcome = TemporaryFailure(reason="link down", channel="sms")
    async with dispatching(lambda d: outcome) as rig:
        [delivery_id] = await rig.submit(valid_for=timedelta(hours=1))
        delays: list[float] = []
        for attempt in range(1, 30):
            await eventually(lambda n=attempt: len(rig.channel.calls) == n)  # type: ignore[misc]
            await eventually(
                lambda: (
                    rig.delivery(delivery_id).state in (S.QUEUED, S.EXPIRED)
                    and rig.delivery(delivery_id).lease_owner is None
                )
            )
            d = rig.delivery(delivery_id)
            if d.state is S.EXPIRED:
                break
            assert d.error == "link down" and d.attempts == attempt
            delays.append((d.next_attempt_at - rig.clock.now()).total_seconds())
            rig.clock.set(d.next_attempt_at)  # time passes until the retry is due
        d = rig.delivery(delivery_id)
        assert d.state is S.EXPIRED
        # full jitter with the draw fixed at 0.5: 0.55 x (10 s doubling per attempt)
        assert delays == [pytest.approx(0.55 * 10 * 2**k) for k in range(len(delays))]
        assert all(later > earlier for earlier, later in itertools.pairwise(delays))
        # the next delay would have ended after the validity: expired instead of retried
        assert sum(delays) + 0.55 * 10 * 2 ** len(delays) > 3600
        assert rig.store.events[delivery_id][-1].reason == "validity ended after: link down"
        assert [c[1] for c in rig.channel.calls] == list(range(1, len(delays) + 2))
        labels = {"channel": "sms", "state": "expired", "reason": "validity"}
        assert rig.sample("teleway_deliveries_final_total", **labels) == 1
        attempts = rig.sample(
            "teleway_delivery_attempts_total", channel="sms", result="TemporaryFailure"
        )
        assert attempts == len(delays) + 1


async def test_temporary_failure_retry_at_overrides_the_back_off() -> None:
    when = START + timedelta(seconds=3)
    outcome = TemporaryFailure(reason="ESME_RTHROTTLED", channel="sms", retry_at=when)
    async with dispatching(lambda d: outcome) as rig:
        [delivery_id] = await rig.submit()
        await eventually(
            lambda: (
                rig.delivery(delivery_id).state is S.QUEUED
                and rig.delivery(delivery_id).attempts == 1
            )
        )
        assert rig.delivery(delivery_id).next_attempt_at == when


async def test_retry_at_after_validity_expires_at_once() -> None:
    outcome = TemporaryFailure(
        reason="throttled", channel="sms", retry_at=START + timedelta(hours=2)
    )
    async with dispatching(lambda d: outcome) as rig:
        [delivery_id] = await rig.submit(valid_for=timedelta(hours=1))
        await eventually(lambda: rig.delivery(delivery_id).state is S.EXPIRED)
        assert len(rig.channel.calls) == 1


async def test_channel_exception_is_a_temporary_failure_and_the_dispatcher_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def script(d: Delivery) -> Outcome:
        if d.recipient == NUMBERS[0]:
            raise RuntimeError("bug in channel")
        return Delivered(channel="sms")

    async with dispatching(script) as rig:
        with caplog.at_level(logging.ERROR, logger="teleway.dispatch"):
            first, second = await rig.submit(2)
            await eventually(lambda: rig.delivery(second).state is S.DELIVERED)
            await eventually(
                lambda: rig.delivery(first).state is S.QUEUED and rig.delivery(first).attempts == 1
            )
        d = rig.delivery(first)
        assert d.error is not None and "RuntimeError('bug in channel')" in d.error
        assert d.next_attempt_at > START  # backed off, not retried at once
        assert any("failed on delivery" in r.getMessage() for r in caplog.records)


async def test_message_missing_is_undeliverable_not_a_crash() -> None:
    async with dispatching(lambda d: Delivered(channel="sms"), is_ready=False) as rig:
        [delivery_id] = await rig.submit()
        rig.store.messages.clear()  # an inconsistent store
        rig.channel.is_ready = True
        await eventually(lambda: rig.delivery(delivery_id).state is S.UNDELIVERABLE)
        assert rig.delivery(delivery_id).error == "message missing"
        assert rig.channel.calls == []


# ---- draining, concurrency, devices --------------------------------------------------------


async def test_stop_lets_attempts_in_progress_finish() -> None:
    async with dispatching(lambda d: Delivered(channel="sms"), gate=asyncio.Event()) as rig:
        [delivery_id] = await rig.submit()
        await eventually(lambda: rig.channel.running == 1)
        stopping = asyncio.create_task(rig.dispatcher.stop(timeout=5))
        await asyncio.sleep(0.05)
        assert not stopping.done()  # waiting for the attempt in progress
        assert rig.channel.gate is not None
        rig.channel.gate.set()
        await asyncio.wait_for(stopping, 5)
        assert rig.delivery(delivery_id).state is S.DELIVERED
        # and nothing new is leased after stop()
        [later] = await rig.submit()
        await asyncio.sleep(0.05)
        assert rig.delivery(later).state is S.QUEUED


async def test_stop_timeout_cancels_and_the_lease_is_kept_for_a_takeover() -> None:
    async with dispatching(lambda d: Delivered(channel="sms"), gate=asyncio.Event()) as rig:
        [delivery_id] = await rig.submit()
        await eventually(lambda: rig.channel.running == 1)
        await rig.dispatcher.stop(timeout=0.05)
        d = rig.delivery(delivery_id)
        assert d.state is S.IN_FLIGHT and d.lease_owner == "w1"
        assert rig.channel.running == 0  # the attempt was cancelled


async def test_stop_waits_for_attempts_of_a_lease_taken_while_stopping() -> None:
    """stop() called while the dispatcher is inside queue.lease(): the deliveries it leased
    still get their attempt and their outcome before stop() returns."""
    async with dispatching(lambda d: Delivered(channel="sms")) as rig:
        store = rig.store
        real_lease = store.lease
        entered = asyncio.Event()
        proceed = asyncio.Event()

        async def slow_lease(**kwargs: Any) -> Any:
            leases = await real_lease(**kwargs)
            if leases:
                entered.set()
                await proceed.wait()
            return leases

        store.lease = slow_lease  # type: ignore[method-assign]
        [delivery_id] = await rig.submit()
        await asyncio.wait_for(entered.wait(), 5)
        stopping = asyncio.create_task(rig.dispatcher.stop(timeout=5))
        await asyncio.sleep(0.02)
        proceed.set()
        await asyncio.wait_for(stopping, 5)
        assert rig.delivery(delivery_id).state is S.DELIVERED


async def test_concurrency_limit_is_respected() -> None:
    async with dispatching(
        lambda d: Delivered(channel="sms"), concurrency=3, gate=asyncio.Event()
    ) as rig:
        ids = await rig.submit(10)
        await eventually(lambda: rig.channel.running == 3)
        await asyncio.sleep(0.05)  # several poll intervals: still no more than three
        assert rig.channel.running == 3
        leased = [i for i in ids if rig.delivery(i).lease_owner == "w1"]
        assert len(leased) == 3
        assert sum(rig.delivery(i).state is S.QUEUED for i in ids) == 7
        assert rig.channel.gate is not None
        rig.channel.gate.set()
        await eventually(lambda: all(rig.delivery(i).state is S.DELIVERED for i in ids))
        assert rig.channel.most_running == 3
        assert len(rig.channel.calls) == 10


async def test_deliveries_no_ready_channel_handles_stay_queued() -> None:
    async with dispatching(lambda d: Delivered(channel="sms")) as rig:
        [fax] = await rig.submit(device=Device.FAX)
        [voice] = await rig.submit(device=Device.MOBILE)
        [sms] = await rig.submit(device=Device.SMS)
        await eventually(lambda: rig.delivery(sms).state is S.DELIVERED)
        await asyncio.sleep(0.05)
        for waiting in (fax, voice):
            d = rig.delivery(waiting)
            assert d.state is S.QUEUED and d.attempts == 0 and d.lease_owner is None
            assert rig.transitions(waiting) == [(None, S.ACCEPTED), (S.ACCEPTED, S.QUEUED)]
        assert [c[0] for c in rig.channel.calls] == [sms]


async def test_nothing_is_leased_while_the_channel_is_not_ready() -> None:
    async with dispatching(lambda d: Delivered(channel="sms"), is_ready=False) as rig:
        [delivery_id] = await rig.submit()
        await asyncio.sleep(0.05)
        assert rig.delivery(delivery_id).attempts == 0
        rig.channel.is_ready = True
        await eventually(lambda: rig.delivery(delivery_id).state is S.DELIVERED)
        assert rig.delivery(delivery_id).attempts == 1


# ---- store trouble -------------------------------------------------------------------------


async def test_store_down_while_leasing_is_survived(caplog: pytest.LogCaptureFixture) -> None:
    async with dispatching(lambda d: Delivered(channel="sms")) as rig:
        with caplog.at_level(logging.ERROR, logger="teleway.dispatch"):
            rig.store.fail_writes = StoreUnavailable("database is locked")
            [delivery_id] = await _submit_despite_failure(rig)
            await eventually(lambda: any("cannot lease" in r.getMessage() for r in caplog.records))
            rig.store.fail_writes = None
            await eventually(lambda: rig.delivery(delivery_id).state is S.DELIVERED)


async def _submit_despite_failure(rig: Rig) -> list[str]:
    failing = rig.store.fail_writes
    rig.store.fail_writes = None
    ids = await rig.submit()
    rig.store.fail_writes = failing
    return ids


async def test_store_down_while_recording_an_outcome_retries_after_the_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    def script(d: Delivery) -> Outcome:
        nonlocal calls
        calls += 1
        if calls == 1:
            rig.store.fail_writes = StoreUnavailable("disk gone")
        return Delivered(channel="sms")

    async with dispatching(script) as rig:
        with caplog.at_level(logging.ERROR, logger="teleway.dispatch"):
            [delivery_id] = await rig.submit()
            await eventually(
                lambda: any("attempt not recorded" in r.getMessage() for r in caplog.records)
            )
        rig.store.fail_writes = None
        d = rig.delivery(delivery_id)
        assert d.state is S.IN_FLIGHT and d.lease_owner == "w1"
        assert d.lease_expires_at is not None
        rig.clock.set(d.lease_expires_at)  # the lease runs out: the delivery is taken over
        await eventually(lambda: rig.delivery(delivery_id).state is S.DELIVERED)
        assert calls == 2


async def test_lost_lease_is_logged_and_the_new_owner_wins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The channel took longer than the lease: another worker took the delivery over, so this
    worker's outcome is not stored."""
    taken_over: list[Any] = []

    def script(d: Delivery) -> Outcome:
        return Delivered(channel="sms")

    async with dispatching(script, gate=asyncio.Event()) as rig:
        [delivery_id] = await rig.submit()
        await eventually(lambda: rig.channel.running == 1)
        rig.clock.advance(timedelta(seconds=61))
        taken_over.extend(
            await rig.store.lease(
                worker="w2", now=rig.clock.now(), limit=1, lease_for=timedelta(seconds=60)
            )
        )
        assert rig.channel.gate is not None
        with caplog.at_level(logging.WARNING, logger="teleway.dispatch"):
            rig.channel.gate.set()
            await eventually(lambda: any("lease lost" in r.getMessage() for r in caplog.records))
        d = rig.delivery(delivery_id)
        assert len(taken_over) == 1
        assert d.state is S.IN_FLIGHT and d.lease_owner == "w2"


# ---- sweeper -------------------------------------------------------------------------------


async def test_sweeper_expires_and_reports_queue_depth() -> None:
    store = InMemoryStore()
    clock = FakeClock(START)
    metrics = Metrics()
    rig = Rig(store, clock, metrics, None, None, SequentialIds())  # type: ignore[arg-type]
    [short] = await rig.submit(valid_for=timedelta(minutes=1))
    await rig.submit(2, valid_for=timedelta(hours=1))
    sweeper = Sweeper(queue=store, clock=clock, metrics=metrics, interval=0.01)
    assert await sweeper.sweep() == 0
    assert rig.sample("teleway_queue_depth", state="queued") == 3
    clock.advance(timedelta(minutes=2))
    assert await sweeper.sweep() == 1
    assert store.deliveries[short].state is S.EXPIRED
    assert rig.sample("teleway_queue_depth", state="queued") == 2
    labels = {"channel": "-", "state": "expired", "reason": "validity"}
    assert rig.sample("teleway_deliveries_final_total", **labels) == 1
    task = asyncio.create_task(sweeper.run())
    await asyncio.sleep(0.03)
    sweeper.stop()
    await asyncio.wait_for(task, 5)


# ---- releases batched per event-loop turn ---------------------------------------------------


class CountingStore(InMemoryStore):
    """Remembers the size of every release_many call; `release` must not be used any more."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    async def release_many(
        self, releases: Any, *, worker: str, now: datetime
    ) -> list[Delivery | None]:
        self.batches.append([r.delivery_id for r in releases])
        return await super().release_many(releases, worker=worker, now=now)

    async def release(self, *args: Any, **kwargs: Any) -> Delivery | None:
        raise AssertionError("the dispatcher releases through release_many")


async def test_submissions_of_one_turn_are_released_with_one_write() -> None:
    store = CountingStore()
    gate = asyncio.Event()
    async with dispatching(
        lambda d: Submitted(upstream_ids=(f"u-{d.id}",), channel="sms", detail="sent"),
        store=store,
        gate=gate,
    ) as rig:
        ids = await rig.submit(5)
        await eventually(lambda: rig.channel.running == 5)
        gate.set()  # the five sends return in the same turn
        await eventually(lambda: all(rig.delivery(i).upstream_ids for i in ids))
        assert len(store.batches) == 1 and sorted(store.batches[0]) == sorted(ids)
        for delivery_id in ids:
            d = rig.delivery(delivery_id)
            assert d.state is S.IN_FLIGHT and d.upstream_ids == (f"u-{delivery_id}",)
            assert rig.transitions(delivery_id)[-1] == (S.IN_FLIGHT, S.IN_FLIGHT)
        assert rig.sample("teleway_delivery_attempts_total", channel="sms", result="Submitted") == 5
        # a lone delivery later is released on its own, without waiting for company
        (lone,) = await rig.submit(1)
        await eventually(lambda: rig.delivery(lone).upstream_ids != (), timeout=2)
        assert store.batches[1:] == [[lone]]


async def test_release_batch_failure_fails_each_attempt_and_keeps_the_leases(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CountingStore()
    gate = asyncio.Event()
    async with dispatching(
        lambda d: Submitted(upstream_ids=("x",), channel="sms"), store=store, gate=gate
    ) as rig:
        ids = await rig.submit(3)
        await eventually(lambda: rig.channel.running == 3)
        store.fail_writes = StoreUnavailable("database down")
        with caplog.at_level(logging.ERROR, logger="teleway.dispatch"):
            gate.set()
            await eventually(lambda: rig.channel.running == 0 and len(store.batches) == 1)
            await eventually(lambda: caplog.text.count("attempt not recorded") == 3)
        for delivery_id in ids:  # still leased: taken again when the lease expires
            assert rig.delivery(delivery_id).lease_owner == "w1"
        store.fail_writes = None


async def test_release_batch_keeps_each_result_apart() -> None:
    """A lease lost in the middle of a batch is that delivery's None, not its neighbours'."""
    store = CountingStore()
    gate = asyncio.Event()
    async with dispatching(
        lambda d: Submitted(upstream_ids=(f"u-{d.id}",), channel="sms"), store=store, gate=gate
    ) as rig:
        ids = await rig.submit(3)
        await eventually(lambda: rig.channel.running == 3)
        # the middle one's lease is taken over meanwhile
        stolen = rig.delivery(ids[1]).evolve(lease_owner="w2")
        store.deliveries[ids[1]] = stolen
        gate.set()
        await eventually(lambda: rig.delivery(ids[0]).upstream_ids != ())
        await eventually(lambda: rig.delivery(ids[2]).upstream_ids != ())
        assert rig.delivery(ids[1]).lease_owner == "w2"
        assert rig.delivery(ids[1]).upstream_ids == ()
        assert len(store.batches) == 1 and sorted(store.batches[0]) == sorted(ids)


def test_release_is_the_port_type() -> None:
    assert Release(delivery_id="d", reason="r").upstream_ids == ()
