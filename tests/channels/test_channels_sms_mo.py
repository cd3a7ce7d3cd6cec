"""Replies from phones (MO) through real sockets: the simulator's MO injection (in process and
through `teleway simulate mo`) -> upstream bind -> SmsChannel reassembly -> InboundSink.
Also the channel's reactions to the simulator's faults (throttling slows the upstream down,
a dropped connection leaves the message in doubt and counted) and routing over two upstreams."""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from teleway.channels.sms import channel as channel_module
from teleway.channels.sms.channel import InboundSms, SmsChannel
from teleway.channels.sms.upstream import Upstream, UpstreamSettings
from teleway.core.model import (
    Account,
    Content,
    Delivery,
    DeliveryState,
    Device,
    HeldPart,
    Message,
    Options,
    Origin,
    Settings,
)
from teleway.core.outcome import PermanentFailure, Submitted, TemporaryFailure
from teleway.core.routing import Route, RouteTable
from teleway.proto.smpp.constants import CommandStatus, EsmClass
from teleway.proto.smpp.pdu import DeliverSm
from teleway.proto.sms.udh import build_udh, concat_8bit
from teleway.store import open_store
from teleway.store.inbound import HeldReplyParts
from teleway.testing.smsc import SimulatorSettings, SmscSimulator

SYSTEM_ID = "teleway"
PASSWORD = "secret"
PHONE = "+4915112345678"
OURS = "447400123456"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Inbox:
    """An InboundSink that keeps what it got (optionally failing first)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.items: list[InboundSms] = []
        self.fail_first = fail_first
        self.arrived = asyncio.Event()

    async def inbound(self, sms: InboundSms) -> bool:
        if self.fail_first:
            self.fail_first -= 1
            raise OSError("store down")
        self.items.append(sms)
        self.arrived.set()
        return True


class Observer:
    def __init__(self) -> None:
        self.statuses: list[tuple[str, str]] = []
        self.duplicates: list[tuple[str, int]] = []
        self.inbound_results: list[tuple[str, str]] = []

    def submit_status(self, upstream: str, status: str) -> None:
        self.statuses.append((upstream, status))

    def possible_duplicates(self, upstream: str, parts: int) -> None:
        self.duplicates.append((upstream, parts))

    def inbound(self, upstream: str, result: str) -> None:
        self.inbound_results.append((upstream, result))


class Accounts:
    async def get_account(self, account_id: int) -> Account | None:
        return Account(id=account_id, name="acme", settings=Settings())


def sim(**overrides: Any) -> SmscSimulator:
    values: dict[str, Any] = {
        "port": 0,
        "system_id": SYSTEM_ID,
        "password": PASSWORD,
        "receipt_delay": 0.02,
        "seed": 3,
    }
    values.update(overrides)
    return SmscSimulator(SimulatorSettings(**values))


def settings(name: str, port: int, **overrides: Any) -> UpstreamSettings:
    values: dict[str, Any] = {
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "system_id": SYSTEM_ID,
        "password": PASSWORD,
        "response_timeout": 1.0,
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
    }
    values.update(overrides)
    return UpstreamSettings(**values)


@contextlib.asynccontextmanager
async def rig(
    *sims: SmscSimulator, inbox: Inbox | None = None, **upstream_overrides: Any
) -> AsyncIterator[tuple[SmsChannel, list[Upstream]]]:
    channel = SmsChannel(upstreams=[], accounts=Accounts(), rng=random.Random(1))
    channel.inbound = inbox
    channel.observer = Observer()
    upstreams = []
    for index, simulator in enumerate(sims):
        await simulator.start()
        up = Upstream(
            settings(f"u{index}", simulator.port, **upstream_overrides),
            on_deliver=channel.on_deliver,
        )
        upstreams.append(up)
    channel.upstreams = upstreams
    for up in upstreams:
        up.start()
    try:
        for up in upstreams:
            assert await up.wait_bound(5)
        yield channel, upstreams
    finally:
        for up in upstreams:
            await up.stop()
        for simulator in sims:
            await simulator.stop()


def delivery(recipient: str = PHONE, attempts: int = 1) -> Delivery:
    return Delivery(
        id="dlv1",
        message_id="msg1",
        account_id=1,
        seq=0,
        recipient=recipient,
        device=Device.SMS,
        state=DeliveryState.IN_FLIGHT,
        attempts=attempts,
        next_attempt_at=NOW,
        valid_until=NOW + timedelta(days=1),
        created_at=NOW,
        updated_at=NOW,
    )


def message(text: str = "hello", sender: str | None = None) -> Message:
    return Message(
        id="msg1",
        account_id=1,
        origin=Origin.HTTP,
        submitter="k",
        content=Content(text=text),
        options=Options(sender_id=sender),
        created_at=NOW,
    )


def reply_part(reference: int, total: int, seq: int, body: bytes) -> DeliverSm:
    """Part `seq` of a concatenated reply from PHONE to OURS (8-bit reference UDH)."""
    return DeliverSm(
        source_addr=PHONE.lstrip("+"),
        source_addr_ton=1,
        destination_addr=OURS,
        esm_class=EsmClass.UDHI,
        short_message=build_udh([concat_8bit(reference, total, seq)]) + body,
    )


async def wait_for(inbox: Inbox, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(inbox.items) < count:
        assert time.monotonic() < deadline, f"only {len(inbox.items)} of {count} replies"
        await asyncio.sleep(0.01)


# ---- replies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "Long GSM reply with escapes []{}€ " * 8,
        "שלום, זו תשובה ארוכה בעברית שצריכה יותר מחלק אחד כדי להגיע. " * 2,
        "Emoji 😀 reply 👍🏽 " * 10,
    ],
    ids=["short", "long-gsm-escapes", "hebrew", "emoji"],
)
async def test_injected_reply_is_reassembled_and_handed_over(text: str) -> None:
    inbox = Inbox()
    simulator = sim()
    async with rig(simulator, inbox=inbox) as (channel, _):
        parts = simulator.inject_mo(source=PHONE, destination=OURS, text=text)
        await wait_for(inbox, 1)
        await asyncio.sleep(0.1)
    assert len(inbox.items) == 1
    sms = inbox.items[0]
    assert sms.text == text
    assert (sms.source, sms.destination, sms.parts) == (PHONE, OURS, parts)
    assert sms.upstream == "u0"
    assert simulator.stats.mo_parts_sent == parts
    assert channel.observer.inbound_results == [("u0", "routed")]  # type: ignore[union-attr]
    if len(text) > 160:
        assert parts > 1


async def test_sar_concatenated_reply_is_reassembled() -> None:
    inbox = Inbox()
    simulator = sim()
    text = "SAR style reply " * 20
    async with rig(simulator, inbox=inbox):
        assert simulator.inject_mo(source=PHONE, destination=OURS, text=text, concat="sar") > 1
        await wait_for(inbox, 1)
    assert inbox.items[0].text == text


async def test_reply_not_stored_is_refused_and_comes_again() -> None:
    inbox = Inbox(fail_first=1)
    simulator = sim()
    text = "first try fails, " * 15  # several parts: all of them must come again
    async with rig(simulator, inbox=inbox) as (channel, _):
        simulator.inject_mo(source=PHONE, destination=OURS, text=text)
        await wait_for(inbox, 1, timeout=10)
        await asyncio.sleep(0.2)
    assert [s.text for s in inbox.items] == [text]
    results = [r for _, r in channel.observer.inbound_results]  # type: ignore[union-attr]
    assert results == ["error", "routed"]


async def test_repeated_part_is_a_duplicate_and_a_lone_part_is_answered_after_the_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(channel_module, "MO_HOLD_SECONDS", 0.2)
    inbox = Inbox()
    channel = SmsChannel(upstreams=[], accounts=Accounts())
    channel.inbound = inbox
    up = Upstream(settings("u0", 1), on_deliver=channel.on_deliver)

    def part(seq: int, body: bytes) -> DeliverSm:
        return reply_part(9, 2, seq, body)

    started = time.monotonic()
    assert await channel.on_deliver(up, part(1, b"Hello ")) == CommandStatus.ESME_ROK
    assert time.monotonic() - started >= 0.2  # held, then answered: the SMSC is not blocked
    assert await channel.on_deliver(up, part(1, b"Hello ")) == CommandStatus.ESME_ROK
    assert await channel.on_deliver(up, part(2, b"world")) == CommandStatus.ESME_ROK
    assert [s.text for s in inbox.items] == ["Hello world"]


async def test_a_part_answered_before_the_rest_survives_a_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A part answered after the hold is committed first; a new channel (after a restart)
    reloads it, so the rest completes the message; then the kept rows are gone. If it cannot
    be committed, it is not answered OK (the SMSC sends it again)."""
    monkeypatch.setattr(channel_module, "MO_HOLD_SECONDS", 0.1)
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path}/t.db", migrate=True)
    try:

        def part(seq: int, body: bytes) -> DeliverSm:
            return reply_part(77, 3, seq, body)

        class Broken:
            async def save(self, part: HeldPart) -> None:
                raise OSError("disk full")

            async def load(self) -> list[HeldPart]:
                return []

            async def forget(self, group: tuple[str, str, str, int, int, int]) -> int:
                return 0

        first = SmsChannel(upstreams=[], accounts=Accounts())
        first.inbound = Inbox()
        up = Upstream(settings("u0", 1), on_deliver=first.on_deliver)
        first.held = Broken()
        assert await first.on_deliver(up, part(1, b"one ")) == CommandStatus.ESME_RX_T_APPN
        first.held = HeldReplyParts(store.db, store.writer)
        assert await first.on_deliver(up, part(1, b"one ")) == CommandStatus.ESME_ROK
        assert await first.on_deliver(up, part(3, b"three")) == CommandStatus.ESME_ROK
        assert len(await first.held.load()) == 2
        # the process dies here; the SMSC got OK for parts 1 and 3 and sends part 2 later
        inbox = Inbox()
        second = SmsChannel(upstreams=[up], accounts=Accounts())
        second.inbound = inbox
        second.held = HeldReplyParts(store.db, store.writer)
        assert await second.restore_held() == 2
        assert await second.on_deliver(up, part(2, b"two ")) == CommandStatus.ESME_ROK
        assert [s.text for s in inbox.items] == ["one two three"]
        assert inbox.items[0].parts == 3
        assert await second.held.load() == []
    finally:
        await store.close()


async def test_broken_udh_is_refused_with_invalid_esm_class() -> None:
    channel = SmsChannel(upstreams=[], accounts=Accounts())
    channel.inbound = Inbox()
    up = Upstream(settings("u0", 1), on_deliver=channel.on_deliver)
    pdu = DeliverSm(source_addr="4915112345678", esm_class=EsmClass.UDHI, short_message=b"\x09ab")
    assert await channel.on_deliver(up, pdu) == CommandStatus.ESME_RINVESMCLASS


def test_simulate_mo_cli_injects_through_a_real_bind() -> None:
    async def scenario() -> list[InboundSms]:
        inbox = Inbox()
        simulator = sim()
        async with rig(simulator, inbox=inbox):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "teleway.runtime", "simulate", "mo",
                "--port", str(simulator.port), "--system-id", SYSTEM_ID,
                "--password", PASSWORD, "--from", PHONE, "--to", OURS, "Yes, see you at 5 {ok}",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == 0, err.decode()
            assert b"handed to the simulator" in out
            await wait_for(inbox, 1)
        return inbox.items

    items = asyncio.run(scenario())
    assert [(s.source, s.destination, s.text) for s in items] == [
        (PHONE, OURS, "Yes, see you at 5 {ok}")
    ]


def test_simulate_mo_cli_reports_a_refused_bind() -> None:
    async def scenario() -> tuple[int, bytes]:
        simulator = sim()
        await simulator.start()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "teleway.runtime", "simulate", "mo",
                "--port", str(simulator.port), "--password", "wrong", "--from", PHONE,
                "--to", OURS, "hi", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            _, err = await asyncio.wait_for(process.communicate(), 30)
            return process.returncode or 0, err
        finally:
            await simulator.stop()

    code, err = asyncio.run(scenario())
    assert code == 1
    assert b"ESME_R" in err


# ---- submit faults and routing ---------------------------------------------------------------


async def test_throttled_upstream_slows_down_then_takes_the_retry() -> None:
    simulator = sim(throttle_every=1)  # every submit refused
    async with rig(simulator) as (channel, (up,)):
        outcome = await channel.send(delivery(), message())
        assert isinstance(outcome, TemporaryFailure) and outcome.retry_at is not None
        assert "ESME_RTHROTTLED" in outcome.reason
        assert up.slowdowns == 1
        started = time.monotonic()
        object.__setattr__(simulator.settings, "throttle_every", 0)
        outcome = await channel.send(delivery(), message())
        assert isinstance(outcome, Submitted)
        # the second submit waited for the pause the first answer asked for
        assert time.monotonic() - started >= channel_module.SLOW_DOWN_SECONDS * 0.5
    assert ("u0", "ESME_RTHROTTLED") in channel.observer.statuses  # type: ignore[union-attr]


async def test_error_status_from_the_simulator_is_temporary_and_permanent_is_kept() -> None:
    simulator = sim(error_ratio=1.0, error_status=CommandStatus.ESME_RSYSERR)
    async with rig(simulator) as (channel, _):
        outcome = await channel.send(delivery(), message())
        assert isinstance(outcome, TemporaryFailure) and "ESME_RSYSERR" in outcome.reason
        object.__setattr__(simulator.settings, "error_status", CommandStatus.ESME_RINVDSTADR)
        outcome = await channel.send(delivery(), message())
        assert isinstance(outcome, PermanentFailure) and outcome.code == "ESME_RINVDSTADR"


async def test_disconnect_mid_submit_is_in_doubt_and_the_link_comes_back() -> None:
    simulator = sim(disconnect_ratio=1.0)
    async with rig(simulator) as (channel, _):
        outcome = await channel.send(delivery(), message("part " * 80))  # 3 parts
        assert isinstance(outcome, TemporaryFailure) and outcome.retry_at is not None
        assert channel.observer.duplicates == [("u0", 1)]  # type: ignore[union-attr]
        object.__setattr__(simulator.settings, "disconnect_ratio", 0.0)
        deadline = time.monotonic() + 5  # the bind comes back; the retry goes through
        while not isinstance(outcome := await channel.send(delivery(), message()), Submitted):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    assert simulator.stats.disconnects == 1


async def test_slow_responses_time_out_and_are_counted_as_possible_duplicates() -> None:
    simulator = sim(response_delay=1.5)
    async with rig(simulator, response_timeout=0.3) as (channel, (up,)):
        outcome = await channel.send(delivery(), message())
        assert isinstance(outcome, TemporaryFailure) and "no response" in outcome.reason
        assert not up.healthy
    assert channel.observer.duplicates == [("u0", 1)]  # type: ignore[union-attr]


async def test_route_failover_and_a_failing_upstream_is_avoided() -> None:
    first, second = sim(), sim()
    async with rig(first, second) as (channel, (a, b)):
        channel.routes = RouteTable(
            routes=(Route.build(name="de", countries=["DE"], upstreams=["u0", "u1"]),),
            upstreams=("u0", "u1"),
        )
        assert isinstance(await channel.send(delivery(), message()), Submitted)
        assert (first.stats.submits, second.stats.submits) == (1, 0)
        a.mark_failing(30)  # e.g. its last submit timed out: prefer the next tier
        assert isinstance(await channel.send(delivery(), message()), Submitted)
        assert (first.stats.submits, second.stats.submits) == (1, 1)
        b.mark_failing(30)  # both failing: still try the route's first one rather than none
        assert isinstance(await channel.send(delivery(), message()), Submitted)
        assert (first.stats.submits, second.stats.submits) == (2, 1)


async def test_weighted_sharing_over_two_simulators() -> None:
    first, second = sim(), sim()
    async with rig(first, second) as (channel, _):
        channel.routes = RouteTable(
            routes=(Route.build(name="all", upstreams=["u0:3, u1:1"]),), upstreams=("u0", "u1")
        )
        for _ in range(200):
            assert isinstance(await channel.send(delivery(), message()), Submitted)
    share = first.stats.submits / 200
    assert 0.65 <= share <= 0.85, share  # 3:1 with a seeded draw
