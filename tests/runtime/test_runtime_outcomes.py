"""Receipts part by part on a real SQLite store: `Receipts` (runtime/outcomes) over
`PartOutcomes` (store/receipts), then the whole SMS path in one process (Dispatcher ->
SmsChannel -> Upstream -> SMSC simulator -> receipt -> Receipts)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from teleway.channels.sms.channel import ReceiptReport, SmsChannel, candidate_ids, canonical_id
from teleway.channels.sms.upstream import Upstream, UpstreamSettings
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
from teleway.core.retry import RetryPolicy
from teleway.proto.sms.receipt import ReceiptState
from teleway.runtime.metrics import Metrics
from teleway.runtime.outcomes import Receipts
from teleway.runtime.workers import Dispatcher
from teleway.store import Store, open_store, tables
from teleway.store.receipts import PartOutcomes
from teleway.testing.fakes import FakeClock, SequentialIds
from teleway.testing.smsc import SimulatorSettings, SmscSimulator

pytestmark = pytest.mark.timeout(30)

S = DeliveryState
START = datetime(2024, 7, 1, 10, 0, tzinfo=UTC)
ACCOUNT = Account(id=1, name="acme")


@dataclass
class Rig:
    store: Store
    clock: FakeClock
    metrics: Metrics
    receipts: Receipts
    ids: SequentialIds

    async def in_flight(self, upstream_ids: tuple[str, ...]) -> str:
        """A delivery submitted upstream in len(upstream_ids) parts, waiting for receipts."""
        accepted = await accept(
            Submission(
                account=ACCOUNT,
                origin=Origin.HTTP,
                submitter="api",
                recipients=(Recipient(number="+14155550100", device=Device.SMS),),
                content=Content(text="hello"),
                options=Options(),
            ),
            store=self.store.messages,
            clock=self.clock,
            ids=self.ids,
        )
        [delivery_id] = accepted.delivery_ids
        [lease] = await self.store.queue.lease(
            worker="w1", now=self.clock.now(), limit=1, lease_for=timedelta(seconds=60)
        )
        assert lease.delivery.id == delivery_id
        released = await self.store.queue.release(
            delivery_id,
            worker="w1",
            now=self.clock.now(),
            reason="submitted",
            upstream_ids=upstream_ids,
            channel="sms",
        )
        assert released is not None and released.state is S.IN_FLIGHT
        return delivery_id

    async def report(self, message_id: str, state: ReceiptState, error: str = "000") -> bool:
        self.clock.advance(1)
        return await self.receipts.receipt(
            ReceiptReport(
                upstream="sim",
                candidates=tuple(candidate_ids("sim", message_id)),
                state=state,
                error=error,
                raw=f"id:{message_id} stat:{state.stat_word}",
            )
        )

    async def state(self, delivery_id: str) -> S:
        delivery = await self.store.messages.get_delivery(delivery_id)
        assert delivery is not None
        return delivery.state

    async def events(self, delivery_id: str) -> list[tuple[S | None, S, str]]:
        return [
            (e.from_state, e.to_state, e.reason)
            for e in await self.store.messages.events_of(delivery_id)
        ]

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating every time is slow)."""
    path = tmp_path_factory.mktemp("outcomes") / "template.db"

    async def migrate() -> None:
        store = await open_store(f"sqlite+aiosqlite:///{path}", migrate=True)
        await store.close()

    with ThreadPoolExecutor(1) as thread:  # a loop of its own, outside any test's loop
        thread.submit(asyncio.run, migrate()).result()
    return path


async def open_sqlite(template: Path, path: Path) -> Store:
    shutil.copyfile(template, path)
    store = await open_store(f"sqlite+aiosqlite:///{path}")
    async with store.engine.begin() as connection:
        await connection.execute(
            tables.accounts.insert().values(
                id=ACCOUNT.id,
                name=ACCOUNT.name,
                enabled=True,
                settings={},
                created_at=START,
                updated_at=START,
            )
        )
    return store


@pytest.fixture
async def rig(tmp_path: Path, migrated: Path) -> AsyncIterator[Rig]:
    store = await open_sqlite(migrated, tmp_path / "teleway.db")
    clock = FakeClock(START)
    metrics = Metrics()
    receipts = Receipts(
        parts=PartOutcomes(store.db, store.writer), queue=store.queue, clock=clock, metrics=metrics
    )
    try:
        yield Rig(store, clock, metrics, receipts, SequentialIds())
    finally:
        await store.close()


THREE = ("sim:1", "sim:2", "sim:3")


async def test_three_parts_are_delivered_only_with_the_third_receipt(rig: Rig) -> None:
    delivery_id = await rig.in_flight(THREE)
    assert await rig.report("00000002", ReceiptState.DELIVERED)
    assert await rig.state(delivery_id) is S.IN_FLIGHT
    assert await rig.report("00000001", ReceiptState.DELIVERED)
    assert await rig.state(delivery_id) is S.IN_FLIGHT
    assert await rig.report("00000003", ReceiptState.DELIVERED)
    assert await rig.state(delivery_id) is S.DELIVERED
    last = (await rig.events(delivery_id))[-1]
    assert last == (S.IN_FLIGHT, S.DELIVERED, "receipt from sim: DELIVRD err:000")
    delivery = await rig.store.messages.get_delivery(delivery_id)
    assert delivery is not None and delivery.error is None
    assert delivery.updated_at == START + timedelta(seconds=3)
    labels = {"channel": "sms", "state": "delivered", "reason": "DELIVRD"}
    assert rig.sample("teleway_deliveries_final_total", **labels) == 1
    assert rig.sample("teleway_receipts_total", upstream="sim", stat="DELIVRD", matched="true") == 3
    assert rig.sample("teleway_delivery_seconds_count", channel="sms", state="delivered") == 1


async def test_one_failed_part_fails_the_delivery_at_once(rig: Rig) -> None:
    delivery_id = await rig.in_flight(THREE)
    assert await rig.report("00000002", ReceiptState.UNDELIVERABLE, error="001")
    assert await rig.state(delivery_id) is S.UNDELIVERABLE
    delivery = await rig.store.messages.get_delivery(delivery_id)
    assert delivery is not None and delivery.error == "UNDELIV 001"
    # the other parts' receipts still match, and change nothing
    assert await rig.report("00000001", ReceiptState.DELIVERED)
    assert await rig.report("00000003", ReceiptState.DELIVERED)
    assert await rig.state(delivery_id) is S.UNDELIVERABLE
    finals = [e for e in await rig.events(delivery_id) if e[1].is_final]
    assert finals == [(S.IN_FLIGHT, S.UNDELIVERABLE, "receipt from sim: UNDELIV err:001")]


@pytest.mark.parametrize(
    ("receipt", "final"),
    [
        (ReceiptState.REJECTED, S.REJECTED),
        (ReceiptState.EXPIRED, S.EXPIRED),
        (ReceiptState.DELETED, S.CANCELLED),
        (ReceiptState.UNKNOWN, S.UNDELIVERABLE),
    ],
)
async def test_each_failed_receipt_state_has_its_final_state(
    rig: Rig, receipt: ReceiptState, final: S
) -> None:
    delivery_id = await rig.in_flight(("sim:1",))
    assert await rig.report("1", receipt)
    assert await rig.state(delivery_id) is final


async def test_intermediate_receipts_change_nothing(rig: Rig) -> None:
    delivery_id = await rig.in_flight(("sim:1",))
    for interim in (ReceiptState.ENROUTE, ReceiptState.ACCEPTED):
        assert await rig.report("1", interim)
        assert await rig.state(delivery_id) is S.IN_FLIGHT
    assert await rig.report("1", ReceiptState.DELIVERED)
    assert await rig.state(delivery_id) is S.DELIVERED


async def test_late_interim_receipt_does_not_hide_a_final_part(rig: Rig) -> None:
    """Receipts may come out of order: an ENROUTE arriving after a part's DELIVRD must not
    undo it, or the message would wait for a receipt that already came."""
    delivery_id = await rig.in_flight(("sim:1", "sim:2"))
    assert await rig.report("1", ReceiptState.DELIVERED)
    assert await rig.report("1", ReceiptState.ENROUTE)  # late
    assert await rig.report("2", ReceiptState.ACCEPTED)  # first news of part 2
    assert await rig.state(delivery_id) is S.IN_FLIGHT
    assert await rig.report("2", ReceiptState.DELIVERED)
    assert await rig.state(delivery_id) is S.DELIVERED


async def test_duplicate_receipt_is_harmless(rig: Rig) -> None:
    delivery_id = await rig.in_flight(("sim:1",))
    assert await rig.report("1", ReceiptState.DELIVERED)
    events = await rig.events(delivery_id)
    assert await rig.report("00000001", ReceiptState.DELIVERED)  # again, padded this time
    assert await rig.state(delivery_id) is S.DELIVERED
    assert await rig.events(delivery_id) == events
    labels = {"channel": "sms", "state": "delivered", "reason": "DELIVRD"}
    assert rig.sample("teleway_deliveries_final_total", **labels) == 1


async def test_unknown_id_is_not_matched(rig: Rig) -> None:
    await rig.in_flight(("sim:1",))
    assert not await rig.report("deadbeef", ReceiptState.DELIVERED)
    assert (
        rig.sample("teleway_receipts_total", upstream="sim", stat="DELIVRD", matched="false") == 1
    )


async def test_ids_match_across_hex_and_decimal(rig: Rig) -> None:
    stored = canonical_id("sim", "0000001F")  # the submit_sm_resp gave hex
    delivery_id = await rig.in_flight((stored,))
    assert await rig.report("31", ReceiptState.DELIVERED)  # the receipt says decimal
    assert await rig.state(delivery_id) is S.DELIVERED


async def test_receipt_while_a_retry_is_under_way_is_kept_but_not_applied(rig: Rig) -> None:
    delivery_id = await rig.in_flight(("sim:1", "sim:2"))
    requeued = await rig.store.queue.transition(
        delivery_id, S.QUEUED, now=rig.clock.now(), reason="operator retry"
    )
    assert requeued is not None
    assert await rig.report("1", ReceiptState.DELIVERED)
    assert await rig.report("2", ReceiptState.DELIVERED)
    assert await rig.state(delivery_id) is S.QUEUED


async def test_part_outcomes_lists_every_part_in_order(rig: Rig) -> None:
    delivery_id = await rig.in_flight(THREE)
    parts = PartOutcomes(rig.store.db, rig.store.writer)
    found = await parts.record_receipt(["sim:2"], "DELIVRD", START)
    assert found is not None
    delivery, states = found
    assert delivery.id == delivery_id and states == [None, "DELIVRD", None]
    assert await parts.record_receipt(["sim:9", "sim:3"], "UNDELIV", START) is not None
    found = await parts.record_receipt(["sim:1"], "DELIVRD", START)
    assert found is not None and found[1] == ["DELIVRD", "DELIVRD", "UNDELIV"]
    found = await parts.record_receipt(["sim:1"], "ENROUTE", START, interim=True)
    assert found is not None and found[1] == ["DELIVRD", "DELIVRD", "UNDELIV"]
    assert await parts.record_receipt(["sim:404"], "DELIVRD", START) is None


# ---- the whole SMS path in one process -----------------------------------------------------


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Directory:
    async def get_account(self, account_id: int) -> Account | None:
        return ACCOUNT if account_id == ACCOUNT.id else None

    async def account_by_name(self, name: str) -> Account | None:
        return ACCOUNT if name == ACCOUNT.name else None


@pytest.mark.parametrize(("success_ratio", "final"), [(1.0, S.DELIVERED), (0.0, S.UNDELIVERABLE)])
async def test_long_message_travels_to_the_simulator_and_its_receipts_finish_it(
    tmp_path: Path, migrated: Path, success_ratio: float, final: S
) -> None:
    store = await open_sqlite(migrated, tmp_path / "teleway.db")
    clock = SystemClock()
    metrics = Metrics()
    sim = SmscSimulator(
        SimulatorSettings(
            port=0,
            system_id="gw",
            password="pw",
            receipt_delay=0.02,
            success_ratio=success_ratio,
            id_format="decimal",
        )
    )
    await sim.start()
    channel = SmsChannel(upstreams=[], accounts=Directory())
    upstream = Upstream(
        UpstreamSettings(
            name="sim",
            host="127.0.0.1",
            port=sim.port,
            system_id="gw",
            password="pw",
            reconnect_min=0.05,
        ),
        on_deliver=channel.on_deliver,
    )
    channel.upstreams = [upstream]
    channel.sink = Receipts(
        parts=PartOutcomes(store.db, store.writer), queue=store.queue, clock=clock, metrics=metrics
    )
    dispatcher = Dispatcher(
        queue=store.queue,
        messages=store.messages,
        channels=[channel],
        clock=clock,
        metrics=metrics,
        worker="w1",
        poll_interval=0.02,
        retry=RetryPolicy(base_seconds=0.1),
    )
    upstream.start()
    running = asyncio.create_task(dispatcher.run())
    try:
        accepted = await accept(
            Submission(
                account=ACCOUNT,
                origin=Origin.HTTP,
                submitter="api",
                recipients=(Recipient(number="+14155550100"),),
                content=Content(text="x" * 400),  # three UDH parts
                options=Options(),
            ),
            store=store.messages,
            clock=clock,
            ids=SequentialIds(),
        )
        [delivery_id] = accepted.delivery_ids

        async def finished() -> bool:
            d = await store.messages.get_delivery(delivery_id)
            return d is not None and d.state.is_final

        await eventually(finished)
        delivery = await store.messages.get_delivery(delivery_id)
        assert delivery is not None and delivery.state is final
        assert delivery.upstream_ids == ("sim:1", "sim:2", "sim:3")
        assert len(sim.stats.messages) == 3
    finally:
        await dispatcher.stop(timeout=5)
        await asyncio.wait_for(running, 5)
        await upstream.stop()
        await sim.stop()
        await store.close()
