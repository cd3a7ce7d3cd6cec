"""Receipts and replies (MO) to bound ESMEs, through the real gateway, store and sockets:
kept until a receiver binds, sent in order, retried after an error answer, failure-only
receipts, and the deliver_sm fields."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingress"))

from smpp_harness import (
    RECIPIENT,
    SENDER,
    RawEsme,
    SmppRig,
    in_thread,
    start_smpp_rig,
    stop_smpp_rig,
)

from teleway.core.model import Origin, OutboxKind, OutboxStatus
from teleway.notify.smpp_receipts import network_error
from teleway.proto.smpp import BindReceiver, BindTransceiver, SubmitSm, Tag, encode
from teleway.proto.smpp.pdu import DeliverSm

pytestmark = pytest.mark.usefixtures("cheap_hashing")


async def quick_retries(rig: SmppRig) -> None:
    reporter = rig.gateway.smpp_reporter
    assert reporter is not None
    reporter.settings = dataclasses.replace(reporter.settings, retry_base=0.3, retry_max=0.3)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[SmppRig]:
    made = await start_smpp_rig(tmp_path)
    await quick_retries(made)
    try:
        yield made
    finally:
        await stop_smpp_rig(made)


async def add_reply(rig: SmppRig, text: str, sender: str = "+17816170000") -> int:
    account = await rig.directory.account_by_name("acme")
    assert account is not None
    now = datetime.now(UTC)
    return await rig.store.outbox.add(
        kind=OutboxKind.INBOUND,
        origin=Origin.SMPP,
        account_id=account.id,
        payload={"from": sender, "to": "+" + SENDER, "text": text, "received_at": now.isoformat()},
        now=now,
        valid_until=now + timedelta(hours=1),
    )


async def sent(rig: SmppRig, item_id: int, timeout: float = 10) -> Any:
    """The outbox item once it is no longer pending (its outcome is committed after the
    deliver_sm_resp was read)."""
    deadline = time.monotonic() + timeout
    while True:
        item = await rig.store.outbox.get(item_id)
        assert item is not None
        if item.status is not OutboxStatus.PENDING or time.monotonic() > deadline:
            return item
        await asyncio.sleep(0.05)


def read_deliveries(c: RawEsme, count: int, status: int = 0) -> list[DeliverSm]:
    got: list[DeliverSm] = []
    while len(got) < count:
        pdu = c.read()
        if isinstance(pdu, DeliverSm):
            got.append(pdu)
            c.send_raw(encode(pdu.response(command_status=status)))
    return got


async def test_replies_wait_for_a_receiver_and_go_in_order(rig: SmppRig) -> None:
    texts = ["first reply", "второй ответ", "third 🎉"]
    ids = [await add_reply(rig, text) for text in texts]
    await asyncio.sleep(0.5)  # nobody bound: they wait
    for item_id in ids:
        item = await rig.store.outbox.get(item_id)
        assert item is not None and item.status is OutboxStatus.PENDING and item.attempts == 0

    def run() -> list[DeliverSm]:
        c = RawEsme(rig.port)
        try:
            assert (
                c.request(BindReceiver(system_id="acme01", password="secret1")).command_status == 0
            )
            return read_deliveries(c, 3)
        finally:
            c.close()

    received = await in_thread(run)
    decoded = [
        p.short_message.decode("utf-16-be") if p.data_coding == 8 else p.short_message.decode()
        for p in received
    ]
    assert decoded == texts
    assert [p.data_coding for p in received] == [0, 8, 8]
    assert received[0].source_addr == "17816170000" and received[0].source_addr_ton == 1
    assert received[0].destination_addr == SENDER and received[0].esm_class == 0
    for item_id in ids:
        item = await sent(rig, item_id)
        assert item.status is OutboxStatus.SENT


async def test_error_answer_is_retried_not_dropped(rig: SmppRig) -> None:
    item_id = await add_reply(rig, "try me twice")

    def run() -> tuple[DeliverSm, DeliverSm]:
        c = RawEsme(rig.port)
        try:
            assert (
                c.request(BindReceiver(system_id="acme01", password="secret1")).command_status == 0
            )
            (first,) = read_deliveries(c, 1, status=0x64)  # ESME_RX_T_APPN: try later
            (second,) = read_deliveries(c, 1)
            return first, second
        finally:
            c.close()

    first, second = await in_thread(run)
    assert first.short_message == second.short_message == b"try me twice"
    item = await sent(rig, item_id)
    assert item.status is OutboxStatus.SENT and item.attempts == 2
    assert item.last_error is not None and "ESME_RX_T_APPN" in item.last_error


async def test_failure_receipt_with_network_error(tmp_path: Path) -> None:
    """success_ratio 0: the simulator reports UNDELIV; registered_delivery 2 (failures only)
    still gets it, with message_state UNDELIVERABLE."""
    rig = await start_smpp_rig(tmp_path, success_ratio=0.0)
    try:

        def run() -> tuple[str, DeliverSm]:
            c = RawEsme(rig.port)
            try:
                assert (
                    c.request(
                        BindTransceiver(system_id="acme01", password="secret1")
                    ).command_status
                    == 0
                )
                submitted = c.request(
                    SubmitSm(
                        source_addr_ton=5,
                        source_addr="ACME",
                        dest_addr_ton=1,
                        dest_addr_npi=1,
                        destination_addr=RECIPIENT,
                        short_message=b"will fail",
                        registered_delivery=2,
                    )
                )
                (receipt,) = read_deliveries(c, 1)
                return submitted.message_id, receipt
            finally:
                c.close()

        message_id, receipt = await in_thread(run)
        assert receipt.esm_class == 0x04
        assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == message_id
        assert receipt.tlv(Tag.MESSAGE_STATE) == 5
        assert b"stat:UNDELIV" in receipt.short_message
        assert receipt.destination_addr == "ACME" and receipt.dest_addr_ton == 5
        assert receipt.source_addr == RECIPIENT
    finally:
        await stop_smpp_rig(rig)


async def test_failure_only_receipt_is_silent_on_success(rig: SmppRig) -> None:
    def run() -> Any:
        c = RawEsme(rig.port, timeout=3)
        try:
            c.request(BindTransceiver(system_id="acme01", password="secret1"))
            done = c.request(
                SubmitSm(
                    source_addr_ton=1,
                    source_addr=SENDER,
                    dest_addr_ton=1,
                    destination_addr=RECIPIENT,
                    short_message=b"fine",
                    registered_delivery=2,
                )
            )
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                try:
                    return done, c.read()
                except TimeoutError:
                    break
            return done, None
        finally:
            c.close()

    done, extra = await in_thread(run)
    assert done.command_status == 0 and extra is None
    (delivery,) = await rig.store.messages.deliveries_of(done.message_id)
    assert str(delivery.state) == "delivered"


@pytest.mark.parametrize(
    ("text", "number"),
    [("err:034", 34), ("ESME_RSUBMITFAIL err 069", 69), (None, None), ("no number", None)],
)
def test_network_error_number(text: str | None, number: int | None) -> None:
    assert network_error(text) == number
