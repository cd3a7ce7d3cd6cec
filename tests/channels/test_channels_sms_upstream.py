"""`Upstream` against the SMSC simulator on loopback: binds, reconnect with back-off,
throughput limit, refused binds, transmitter+receiver mode, stop()."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from teleway.channels.sms.upstream import (
    PACE_CATCH_UP_SECONDS,
    NotBound,
    Upstream,
    UpstreamSettings,
    _limiter,
)
from teleway.proto.smpp.constants import CommandStatus, Tag
from teleway.proto.smpp.pdu import DataSm, DeliverSm, Pdu, SubmitSm
from teleway.proto.smpp.session import BindType
from teleway.testing import smsc
from teleway.testing.smsc import SimulatorSettings, SmscSimulator
from teleway.transport.smpp import SmppLink

pytestmark = pytest.mark.timeout(30)

SYSTEM_ID = "gw"
PASSWORD = "pw"


class TimedSimulator(SmscSimulator):
    """Records when each submit reached the SMSC (monotonic clock of the SMSC side)."""

    def __init__(self, settings: SimulatorSettings) -> None:
        super().__init__(settings)
        self.submit_times: list[float] = []

    def _on_submit(self, pdu: SubmitSm | DataSm) -> Pdu:
        self.submit_times.append(time.monotonic())
        return super()._on_submit(pdu)


def sim_settings(**overrides: Any) -> SimulatorSettings:
    values: dict[str, Any] = {
        "port": 0,
        "system_id": SYSTEM_ID,
        "password": PASSWORD,
        "receipt_delay": 0.02,
        "seed": 7,
    }
    values.update(overrides)
    return SimulatorSettings(**values)


def upstream_settings(port: int, **overrides: Any) -> UpstreamSettings:
    values: dict[str, Any] = {
        "name": "sim",
        "host": "127.0.0.1",
        "port": port,
        "system_id": SYSTEM_ID,
        "password": PASSWORD,
        "response_timeout": 2.0,
        "reconnect_min": 0.05,
        "reconnect_max": 0.4,
    }
    values.update(overrides)
    return UpstreamSettings(**values)


class Recorder:
    """on_deliver and on_state callbacks that remember what they saw."""

    def __init__(self, status: int = CommandStatus.ESME_ROK) -> None:
        self.status = status
        self.delivered: asyncio.Queue[DeliverSm | DataSm] = asyncio.Queue()
        self.states: list[bool] = []

    async def on_deliver(self, upstream: Upstream, pdu: DeliverSm | DataSm) -> int:
        await self.delivered.put(pdu)
        return self.status

    def on_state(self, upstream: Upstream, bound: bool) -> None:
        self.states.append(bound)


class LogTimes(logging.Handler):
    """Monotonic time and message of every record of the upstream logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.monotonic(), record.getMessage()))

    def times(self, contains: str) -> list[float]:
        return [t for t, message in self.records if contains in message]


@pytest.fixture
def upstream_log() -> Iterator[LogTimes]:
    handler = LogTimes()
    log = logging.getLogger("teleway.upstream")
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


@contextlib.asynccontextmanager
async def running(
    settings: UpstreamSettings, recorder: Recorder | None = None
) -> AsyncIterator[Upstream]:
    recorder = recorder or Recorder()
    upstream = Upstream(
        settings, on_deliver=recorder.on_deliver, on_state=recorder.on_state, rng=_Rng()
    )
    upstream.start()
    try:
        yield upstream
    finally:
        await upstream.stop()


class _Rng(random.Random):
    """Deterministic jitter draw for the back-off (0.0: the shortest delay allowed)."""

    def random(self) -> float:
        return 0.0


def part(n: int = 0, rd: int = 0) -> SubmitSm:
    return SubmitSm(
        destination_addr="447911123456", short_message=b"m%d" % n, registered_delivery=rd
    )


async def eventually(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_binds_reports_state_and_unbinds_on_stop() -> None:
    sim = SmscSimulator(sim_settings())
    await sim.start()
    try:
        recorder = Recorder()
        upstream = Upstream(
            upstream_settings(sim.port), on_deliver=recorder.on_deliver, on_state=recorder.on_state
        )
        assert not upstream.bound
        upstream.start()
        assert await upstream.wait_bound(5)
        assert upstream.bound and recorder.states == [True]
        assert sim.stats.binds == 1
        responses = await upstream.submit_parts([part(1), part(2)])
        assert [r.command_status for r in responses] == [0, 0]
        await upstream.stop()
        assert not upstream.bound and recorder.states == [True, False]
        await eventually(lambda: not sim._links)  # the SMSC saw the link go
    finally:
        await sim.stop()


async def test_not_bound_raises_not_bound() -> None:
    upstream = Upstream(upstream_settings(1), on_deliver=Recorder().on_deliver)
    with pytest.raises(NotBound):
        await upstream.submit_parts([part()])


async def test_submit_parts_stops_at_the_first_refused_part() -> None:
    sim = SmscSimulator(sim_settings(throttle_every=2))
    await sim.start()
    try:
        async with running(upstream_settings(sim.port)) as upstream:
            assert await upstream.wait_bound(5)
            responses = await upstream.submit_parts([part(1), part(2), part(3)])
            assert [r.command_status for r in responses] == [0, CommandStatus.ESME_RTHROTTLED]
            assert [bytes.fromhex(str(m["short_message"])) for m in sim.stats.messages] == [b"m1"]
    finally:
        await sim.stop()


async def test_reconnects_with_back_off_after_the_smsc_restarts(upstream_log: LogTimes) -> None:
    first = SmscSimulator(sim_settings())
    await first.start()
    port = first.port
    recorder = Recorder()
    async with running(upstream_settings(port), recorder) as upstream:
        assert await upstream.wait_bound(5)
        await first.stop()
        await eventually(lambda: not upstream.bound)
        down_since = time.monotonic()
        await asyncio.sleep(1.2)
        second = SmscSimulator(sim_settings(port=port))
        await second.start()
        try:
            assert await upstream.wait_bound(5)
            assert recorder.states[:3] == [True, False, True]
            responses = await upstream.submit_parts([part()])
            assert responses[0].command_status == 0
            assert second.stats.binds == 1
        finally:
            await second.stop()
    attempts = [t for t in upstream_log.times("unavailable") if t >= down_since]
    assert upstream_log.times("link to 127.0.0.1")  # the drop itself was logged
    # with jitter draw 0 the delays are exactly half of 0.05*2**k capped at 0.4, i.e.
    # 0.025 (after the drop), then 0.05, 0.1, 0.2, 0.2...: at most 8 attempts in 1.2 s,
    # where a loop without back-off would make hundreds
    assert 2 <= len(attempts) <= 8
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    for failures, gap in enumerate(gaps, start=1):
        assert gap >= 0.5 * min(0.4, 0.05 * 2**failures) - 0.005


async def test_throughput_limit_holds_in_every_second_on_the_smsc_side() -> None:
    sim = TimedSimulator(sim_settings())
    await sim.start()
    try:
        async with running(upstream_settings(sim.port, throughput=20, window=10)) as upstream:
            assert await upstream.wait_bound(5)
            results = await asyncio.gather(*(upstream.submit_parts([part(n)]) for n in range(45)))
            assert all(r[0].command_status == 0 for r in results)
    finally:
        await sim.stop()
    times = sim.submit_times
    assert len(times) == 45
    # no 1-second window holds more than 20 submits: the 21st after any submit comes at least
    # a second later (a few ms of tolerance for loopback delivery jitter on the SMSC side)
    for i in range(len(times) - 20):
        assert times[i + 20] - times[i] >= 1.0 - 0.02, i
    assert times[-1] - times[0] >= 2.0 - 0.02  # 45 submits need three one-second windows


def test_fractional_throughput_keeps_its_rate() -> None:
    assert _limiter(0) is None
    for rate, limit, per in ((20, 20, 1.0), (2.5, 2, 0.8), (0.5, 1, 2.0), (1, 1, 1.0)):
        window = _limiter(rate)
        assert window is not None
        assert window.limit == limit and window.per == pytest.approx(per)


async def test_refused_bind_keeps_retrying_with_back_off_and_logs(
    upstream_log: LogTimes,
) -> None:
    sim = SmscSimulator(sim_settings())
    await sim.start()
    try:
        async with running(upstream_settings(sim.port, password="wrong")) as upstream:
            assert not await upstream.wait_bound(0.8)
            assert not upstream.bound
        refused = upstream_log.times("bind refused with ESME_RINVPASWD")
        # draw 0: delays are half of 0.05*2**failures capped at 0.4, i.e. 0.05, 0.1, 0.2,
        # 0.2...: attempts at 0, 0.05, 0.15, 0.35, 0.55, 0.75 s, not hundreds
        assert 2 <= sim.stats.bind_failures <= 6
        # every refusal is logged; the last bind_resp may still be on its way when we stop
        assert sim.stats.bind_failures - 1 <= len(refused) <= sim.stats.bind_failures
        gaps = [b - a for a, b in itertools.pairwise(refused)]
        for failures, gap in enumerate(gaps, start=1):
            assert gap >= 0.5 * min(0.4, 0.05 * 2**failures) - 0.005
    finally:
        await sim.stop()


async def test_transmitter_and_receiver_binds_receipts_arrive_on_the_receiver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unbound: list[BindType | None] = []
    polite_unbind = SmppLink.unbind

    async def unbind(self: SmppLink, timeout: float = 5.0) -> None:
        unbound.append(self.session.bind_type)
        await polite_unbind(self, timeout)

    monkeypatch.setattr(SmppLink, "unbind", unbind)
    sim = SmscSimulator(sim_settings())
    await sim.start()
    try:
        recorder = Recorder()
        upstream = Upstream(
            upstream_settings(sim.port, bind_mode="transmitter+receiver"),
            on_deliver=recorder.on_deliver,
        )
        seen_on: list[BindType | None] = []
        handler = upstream._on_request

        async def spying(link: SmppLink, pdu: Pdu) -> Pdu | None:
            seen_on.append(link.session.bind_type)
            return await handler(link, pdu)

        upstream._on_request = spying  # type: ignore[method-assign]
        upstream.start()
        try:
            assert await upstream.wait_bound(5)
            await eventually(lambda: sim.stats.binds == 2)
            assert len(sim._receivers) == 1
            [response] = await upstream.submit_parts([part(rd=1)])
            receipt = await asyncio.wait_for(recorder.delivered.get(), 5)
            assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == getattr(response, "message_id", None)
            assert seen_on == [BindType.RECEIVER]
        finally:
            await upstream.stop()
        # stop() unbound both links politely, the receiver too
        assert sorted(str(b) for b in unbound) == [
            str(BindType.RECEIVER),
            str(BindType.TRANSMITTER),
        ]
        await eventually(lambda: not sim._links)
    finally:
        await sim.stop()


async def test_deliver_handler_status_is_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """on_deliver returning ESME_RX_T_APPN makes the SMSC offer the receipt again."""
    monkeypatch.setattr(smsc, "RECEIPT_RETRY_SECONDS", 0.05)
    sim = SmscSimulator(sim_settings())
    await sim.start()
    try:
        recorder = Recorder(status=CommandStatus.ESME_RX_T_APPN)
        async with running(upstream_settings(sim.port), recorder) as upstream:
            assert await upstream.wait_bound(5)
            await upstream.submit_parts([part(rd=1)])
            first = await asyncio.wait_for(recorder.delivered.get(), 5)
            assert isinstance(first, DeliverSm)
            assert sim.stats.receipts_sent == 0
            recorder.status = CommandStatus.ESME_ROK
            second = await asyncio.wait_for(recorder.delivered.get(), 5)
            assert isinstance(second, DeliverSm)
            assert first.short_message == second.short_message
            await eventually(lambda: sim.stats.receipts_sent == 1)
    finally:
        await sim.stop()


async def test_several_binds_share_the_submits() -> None:
    sim = SmscSimulator(sim_settings())
    await sim.start()
    try:
        async with running(upstream_settings(sim.port, binds=2)) as upstream:
            await eventually(lambda: len(upstream._tx_links) == 2)
            await asyncio.gather(*(upstream.submit_parts([part(n)]) for n in range(4)))
            assert sim.stats.binds == 2 and sim.stats.submits == 4
    finally:
        await sim.stop()


async def test_throughput_limit_counts_each_submit_once_when_the_window_is_full() -> None:
    """More submits than window slots: each is counted by the limiter once, when it goes out
    (a submit let through by the limiter that then found the window full used to wait for a
    slot and be counted again: the limit was under-used), and the limit still holds."""
    sim = TimedSimulator(sim_settings())
    await sim.start()
    try:
        async with running(upstream_settings(sim.port, throughput=20, window=2)) as upstream:
            assert await upstream.wait_bound(5)
            paced = 0
            pace = upstream._pace

            async def counting_pace() -> None:
                nonlocal paced
                await pace()
                paced += 1

            upstream._pace = counting_pace  # type: ignore[method-assign]
            results = await asyncio.gather(*(upstream.submit_parts([part(n)]) for n in range(30)))
            assert all(r[0].command_status == 0 for r in results)
    finally:
        await sim.stop()
    assert paced == 30
    times = sim.submit_times
    assert len(times) == 30
    for i in range(len(times) - 20):
        assert times[i + 20] - times[i] >= 1.0 - 0.02, i


async def test_throughput_limit_paces_and_keeps_the_order() -> None:
    """A second's worth is spread over the second (one submit every 1/throughput s, not one
    burst), in the order the submits came, and never more than the limit in any second."""
    sim = TimedSimulator(sim_settings())
    await sim.start()
    try:
        async with running(upstream_settings(sim.port, throughput=10, window=20)) as upstream:
            assert await upstream.wait_bound(5)
            order: list[int] = []

            async def one(n: int) -> None:
                await upstream.submit_parts([part(n)])
                order.append(n)

            await asyncio.gather(*(one(n) for n in range(15)))
    finally:
        await sim.stop()
    assert order == list(range(15))
    times = sim.submit_times
    assert len(times) == 15
    # spread: the first ten take most of a second (PACE_CATCH_UP_SECONDS lets the second one
    # go early), not a burst of ten
    assert times[9] - times[0] >= 0.9 - PACE_CATCH_UP_SECONDS - 0.02
    for i in range(len(times) - 10):
        assert times[i + 10] - times[i] >= 1.0 - 0.02, i


def test_pace_schedule_does_not_carry_lateness() -> None:
    """A submit let go late does not push the next ones (within the catch-up allowance); an
    idle upstream starts again from now."""
    upstream = Upstream(upstream_settings(1, throughput=100), on_deliver=Recorder().on_deliver)
    start = 1000.0
    upstream._take_slot(start)
    first = upstream._next_at
    assert first == pytest.approx(start - PACE_CATCH_UP_SECONDS + 0.01)
    upstream._next_at = start + 0.01  # on schedule: the next is due at +10 ms
    upstream._take_slot(start + 0.03)  # let go 20 ms late
    assert upstream._next_at == pytest.approx(start + 0.02)  # still the schedule
    upstream._take_slot(start + 60.0)  # after a minute of silence
    assert upstream._next_at == pytest.approx(start + 60.0 - PACE_CATCH_UP_SECONDS + 0.01)
