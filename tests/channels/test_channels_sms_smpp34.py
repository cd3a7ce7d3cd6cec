"""Interop: our SMPP client (Upstream + SmsChannel) against an independent SMSC, the PyPI
`smpp34` server (Rust core): binds, submits in order, refusals, receipts and replies."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from teleway.channels.sms.channel import InboundSms, ReceiptReport, SmsChannel
from teleway.channels.sms.upstream import Upstream, UpstreamSettings
from teleway.core.model import (
    Account,
    Content,
    Delivery,
    DeliveryState,
    Device,
    Message,
    Options,
    Origin,
    Settings,
)
from teleway.core.outcome import PermanentFailure, Submitted
from teleway.proto.sms.receipt import ReceiptState
from teleway.proto.sms.udh import find_concat, parse_udh

smpp34: Any = pytest.importorskip("smpp34")

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PHONE = "+4915112345678"


class Accounts:
    async def get_account(self, account_id: int) -> Account | None:
        return Account(id=account_id, name="acme", settings=Settings(sender_id="ACME"))


class Sinks:
    def __init__(self) -> None:
        self.receipts: list[ReceiptReport] = []
        self.replies: list[InboundSms] = []

    async def receipt(self, report: ReceiptReport) -> bool:
        self.receipts.append(report)
        return True

    async def inbound(self, sms: InboundSms) -> bool:
        self.replies.append(sms)
        return True


class Smsc:
    """smpp34.Server answering submits: accept with sequential ids, or reject a number."""

    def __init__(self, server: Any, reject: str) -> None:
        self.server = server
        self.reject = reject
        self.submits: list[Any] = []
        self.esme: Any = None
        self.bound = asyncio.Event()

    async def run(self) -> None:
        while True:
            event = await self.server.next()
            if isinstance(event, smpp34.Esme):
                self.esme = event
                self.bound.set()
            elif isinstance(event, smpp34.SubmitSmEvent):
                if event.destination_addr == self.reject:
                    event.reject(smpp34.ESME_RINVDSTADR)
                    continue
                self.submits.append(event)
                event.accept(f"{len(self.submits):x}")


def delivery(recipient: str = PHONE) -> Delivery:
    return Delivery(
        id="d1",
        message_id="m1",
        account_id=1,
        seq=0,
        recipient=recipient,
        device=Device.SMS,
        state=DeliveryState.IN_FLIGHT,
        attempts=1,
        next_attempt_at=NOW,
        valid_until=NOW + timedelta(days=1),
        created_at=NOW,
        updated_at=NOW,
    )


def message(text: str) -> Message:
    return Message(
        id="m1",
        account_id=1,
        origin=Origin.HTTP,
        submitter="k",
        content=Content(text=text),
        options=Options(),
        created_at=NOW,
    )


@contextlib.asynccontextmanager
async def rig() -> AsyncIterator[tuple[SmsChannel, Smsc, Sinks]]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = smpp34.Server("127.0.0.1", port, system_id="smpp34")
    await server.start()
    smsc = Smsc(server, reject="4915100000000")
    task = asyncio.create_task(smsc.run())
    sinks = Sinks()
    channel = SmsChannel(upstreams=[], accounts=Accounts(), rng=random.Random(5))
    channel.sink = sinks
    channel.inbound = sinks
    up = Upstream(
        UpstreamSettings(
            name="rust", host="127.0.0.1", port=port, system_id="teleway", password="pw",
            response_timeout=5.0,
        ),
        on_deliver=channel.on_deliver,
    )  # fmt: skip
    channel.upstreams = [up]
    up.start()
    try:
        assert await up.wait_bound(10)
        await asyncio.wait_for(smsc.bound.wait(), 10)
        yield channel, smsc, sinks
    finally:
        await up.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop()


async def test_long_message_parts_in_order_then_receipt_and_reply_from_the_rust_smsc() -> None:
    text = "Interop with an independent SMSC: []{}€ escapes included. " * 6
    async with rig() as (channel, smsc, sinks):
        outcome = await channel.send(delivery(), message(text))
        assert isinstance(outcome, Submitted)
        assert len(smsc.submits) == 3
        assert outcome.upstream_ids == ("rust:1", "rust:2", "rust:3")
        refs = [
            find_concat(parse_udh(s.short_message)[0])
            for s in smsc.submits  # type: ignore[attr-defined]
        ]
        assert [r.seq for r in refs if r] == [1, 2, 3]
        assert {s.source_addr for s in smsc.submits} == {"ACME"}
        assert {s.source_addr_ton for s in smsc.submits} == {5}
        # a receipt for part 3, as the Rust server encodes it
        answer = await smsc.esme.deliver_sm(
            "ACME",
            b"id:3 sub:001 dlvrd:001 submit date:2601010000 done date:2601010001 "
            b"stat:DELIVRD err:000 text:Interop",
            source_addr=PHONE.lstrip("+"),
            esm_class=0x04,
            tlvs=[smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, b"3\x00")],
        )
        assert answer.command_status == 0
        # a reply from the phone
        answer = await smsc.esme.deliver_sm(
            "447400123456", b"Thanks!", source_addr=PHONE.lstrip("+"), source_addr_ton=1
        )
        assert answer.command_status == 0
    assert [(r.candidates, r.state) for r in sinks.receipts] == [
        (("rust:3",), ReceiptState.DELIVERED)
    ]
    assert [(s.source, s.destination, s.text) for s in sinks.replies] == [
        (PHONE, "447400123456", "Thanks!")
    ]


async def test_refusal_by_the_rust_smsc_is_permanent_with_its_code() -> None:
    async with rig() as (channel, _, _):
        outcome = await channel.send(delivery("+4915100000000"), message("hi"))
    assert isinstance(outcome, PermanentFailure)
    assert outcome.code == "ESME_RINVDSTADR"
