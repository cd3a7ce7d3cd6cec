"""The SMSC simulator on loopback: binds, submits, receipts, throttling, journal, id formats.

The ESME side is our own `SmppLink` (with a handler collecting deliver_sm) and, for one
interop check, python-smpplib.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions

from teleway.proto.smpp.constants import CommandStatus, EsmClass, Tag
from teleway.proto.smpp.pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DataSm,
    DeliverSm,
    Pdu,
    SubmitSm,
)
from teleway.proto.smpp.session import Role, Session
from teleway.proto.smpp.tlv import Tlv
from teleway.proto.sms.receipt import ReceiptState, parse_receipt_text
from teleway.testing import smsc
from teleway.testing.smsc import SimulatorSettings, SmscSimulator
from teleway.transport.smpp import SmppLink

pytestmark = pytest.mark.timeout(20)

SYSTEM_ID = "gw"
PASSWORD = "pw"
DELAY = 0.02  # receipt_delay for these tests


class Esme:
    """Our SmppLink as an ESME; deliver_sm land in `delivered` and are answered `answer`."""

    def __init__(self) -> None:
        self.delivered: asyncio.Queue[DeliverSm] = asyncio.Queue()
        self.answer = CommandStatus.ESME_ROK
        self.hold: asyncio.Event | None = None  # when set: answer only once it is set
        self.link: SmppLink | None = None
        self.pump: asyncio.Task[None] | None = None

    async def _on_request(self, link: SmppLink, pdu: Pdu) -> Pdu | None:
        assert isinstance(pdu, DeliverSm)
        await self.delivered.put(pdu)
        if self.hold is not None:
            await self.hold.wait()
        return pdu.response(command_status=self.answer)

    async def connect(self, port: int) -> SmppLink:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session = Session(Role.ESME, enquire_link_interval=None, now=time.monotonic())
        self.link = SmppLink(reader, writer, session, handler=self._on_request, name="esme")
        self.pump = asyncio.create_task(self.link.run())
        return self.link

    async def bind(
        self,
        port: int,
        kind: type[BindTransmitter | BindReceiver | BindTransceiver] = BindTransceiver,
        *,
        system_id: str = SYSTEM_ID,
        password: str = PASSWORD,
    ) -> Pdu:
        link = await self.connect(port)
        return await link.request(kind(system_id=system_id, password=password))

    async def submit(self, pdu: SubmitSm | DataSm) -> Pdu:
        assert self.link is not None
        return await asyncio.wait_for(self.link.request(pdu), 5)

    async def receipt(self, timeout: float = 5.0) -> DeliverSm:
        return await asyncio.wait_for(self.delivered.get(), timeout)

    async def close(self) -> None:
        if self.link is not None and self.pump is not None:
            self.link.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pump, 5)


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `condition()` holds (the simulator counts once the response reached it)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def message(text: str = "hello world", *, dest: str = "447911123456", rd: int = 1) -> SubmitSm:
    return SubmitSm(
        source_addr_ton=5,
        source_addr="TELEWAY",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=dest,
        registered_delivery=rd,
        short_message=text.encode("ascii"),
    )


class Simulator(SmscSimulator):
    """The simulator plus the ESMEs a test connected (closed when the test ends)."""

    def __init__(self, settings: SimulatorSettings) -> None:
        super().__init__(settings)
        self.esmes: list[Esme] = []


@contextlib.asynccontextmanager
async def simulator(**overrides: Any) -> AsyncIterator[Simulator]:
    values: dict[str, Any] = {
        "port": 0,
        "system_id": SYSTEM_ID,
        "password": PASSWORD,
        "receipt_delay": DELAY,
        "seed": 1,
    }
    values.update(overrides)
    sim = Simulator(SimulatorSettings(**values))
    await sim.start()
    try:
        yield sim
    finally:
        for esme in sim.esmes:
            await esme.close()
        await sim.stop()


async def new_esme(sim: Simulator) -> Esme:
    esme = Esme()
    sim.esmes.append(esme)
    return esme


# ---- binds ---------------------------------------------------------------------------------


async def test_bind_wrong_password_unknown_system_id_and_success() -> None:
    async with simulator() as sim:
        wrong_password = await (await new_esme(sim)).bind(sim.port, password="nope")
        unknown = await (await new_esme(sim)).bind(sim.port, system_id="stranger")
        good = await (await new_esme(sim)).bind(sim.port, BindTransmitter)
        assert wrong_password.command_status == CommandStatus.ESME_RINVPASWD
        assert unknown.command_status == CommandStatus.ESME_RBINDFAIL
        assert good.command_status == CommandStatus.ESME_ROK
        assert getattr(good, "system_id", None) == "teleway-sim"
        assert (sim.stats.bind_failures, sim.stats.binds) == (2, 1)


async def test_smpplib_binds_submits_and_reads_its_receipt() -> None:
    """Interop: python-smpplib (an independent ESME) against the simulator."""
    async with simulator() as sim:
        client = smpplib.client.Client(
            "127.0.0.1", sim.port, timeout=5, allow_unknown_opt_params=True
        )
        try:
            await asyncio.to_thread(client.connect)
            with pytest.raises(smpplib.exceptions.PDUError) as refused:
                await asyncio.to_thread(client.bind_transceiver, system_id=SYSTEM_ID, password="x")
            assert refused.value.args[1] == CommandStatus.ESME_RINVPASWD
            await asyncio.to_thread(client.bind_transceiver, system_id=SYSTEM_ID, password=PASSWORD)
            await asyncio.to_thread(
                client.send_message,
                source_addr="TELEWAY",
                destination_addr="447911123456",
                short_message=b"interop",
                registered_delivery=1,
            )
            resp = await asyncio.to_thread(client.read_pdu)
            assert resp.command == "submit_sm_resp" and resp.status == 0
            receipt = await asyncio.to_thread(client.read_pdu)
            assert receipt.command == "deliver_sm"
            assert receipt.receipted_message_id == resp.message_id
            assert receipt.message_state == ReceiptState.DELIVERED
            assert b"stat:DELIVRD" in receipt.short_message
        finally:
            await asyncio.to_thread(client.disconnect)


# ---- receipts ------------------------------------------------------------------------------


async def test_delivered_receipt_carries_tlvs_and_appendix_b_text() -> None:
    async with simulator() as sim:
        esme = await new_esme(sim)
        await esme.bind(sim.port)
        resp = await esme.submit(message("hello world, a longer text than 20"))
        message_id = getattr(resp, "message_id", "")
        assert resp.command_status == 0 and message_id == "00000001"
        receipt = await esme.receipt()
        assert receipt.esm_class == EsmClass.DELIVERY_RECEIPT
        assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == message_id
        assert receipt.tlv(Tag.MESSAGE_STATE) == ReceiptState.DELIVERED
        # the receipt travels back: the recipient is its source, our sender its destination
        assert (receipt.source_addr, receipt.source_addr_ton) == ("447911123456", 1)
        assert (receipt.destination_addr, receipt.dest_addr_ton) == ("TELEWAY", 5)
        parsed = parse_receipt_text(receipt.short_message.decode("ascii"))
        assert parsed.message_id == message_id
        assert (parsed.submitted, parsed.delivered) == (1, 1)
        assert parsed.state is ReceiptState.DELIVERED and parsed.stat == "DELIVRD"
        assert parsed.err == "000"
        assert parsed.text == "hello world, a longe"  # Appendix B: the first 20 characters
        assert parsed.submit_date is not None and parsed.done_date is not None
        await eventually(lambda: sim.stats.receipts_sent == 1)


async def test_failed_receipt_when_success_ratio_is_zero() -> None:
    async with simulator(success_ratio=0.0) as sim:
        esme = await new_esme(sim)
        await esme.bind(sim.port)
        resp = await esme.submit(message())
        receipt = await esme.receipt()
        assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == getattr(resp, "message_id", None)
        assert receipt.tlv(Tag.MESSAGE_STATE) == ReceiptState.UNDELIVERABLE
        parsed = parse_receipt_text(receipt.short_message.decode("ascii"))
        assert parsed.state is ReceiptState.UNDELIVERABLE and parsed.stat == "UNDELIV"
        assert (parsed.delivered, parsed.err) == (0, "001")


async def test_registered_delivery_decides_whether_a_receipt_is_sent() -> None:
    async with simulator() as sim:
        esme = await new_esme(sim)
        await esme.bind(sim.port)
        await esme.submit(message("none", rd=0))
        await esme.submit(message("failure only", rd=2))  # delivered: no receipt
        await esme.submit(message("always", rd=1))
        receipt = await esme.receipt()
        assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == "00000003"
        with pytest.raises(TimeoutError):
            await esme.receipt(timeout=10 * DELAY)
    async with simulator(success_ratio=0.0) as sim:
        esme = await new_esme(sim)
        await esme.bind(sim.port)
        await esme.submit(message("failure only", rd=2))  # failed: a receipt
        receipt = await esme.receipt()
        assert receipt.tlv(Tag.MESSAGE_STATE) == ReceiptState.UNDELIVERABLE


async def test_receipts_wait_for_a_receiver_bind() -> None:
    async with simulator() as sim:
        transmitter = await new_esme(sim)
        await transmitter.bind(sim.port, BindTransmitter)
        resp = await transmitter.submit(message())
        await asyncio.sleep(10 * DELAY)  # well past the receipt delay: nobody may take it
        assert sim.stats.receipts_sent == 0 and transmitter.delivered.empty()
        receiver = await new_esme(sim)
        assert (await receiver.bind(sim.port, BindReceiver)).command_status == 0
        receipt = await receiver.receipt()
        assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == getattr(resp, "message_id", None)
        assert transmitter.delivered.empty()
        await eventually(lambda: sim.stats.receipts_sent == 1)


async def test_refused_receipt_is_offered_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smsc, "RECEIPT_RETRY_SECONDS", 0.05)
    async with simulator() as sim:
        esme = await new_esme(sim)
        await esme.bind(sim.port)
        esme.answer = CommandStatus.ESME_RX_T_APPN  # "try later"
        await esme.submit(message())
        first = await esme.receipt()
        esme.answer = CommandStatus.ESME_ROK
        second = await esme.receipt()
        assert first.short_message == second.short_message
        await eventually(lambda: sim.stats.receipts_sent == 1)


async def test_receipt_text_is_decoded_from_udh_and_ucs2() -> None:
    async with simulator() as sim:
        esme = await new_esme(sim)
        await esme.bind(sim.port)
        udh = bytes.fromhex("050003070201")
        await esme.submit(
            message().replace(
                esm_class=EsmClass.UDHI,
                data_coding=8,
                short_message=udh + "Привет мир".encode("utf-16-be"),
            )
        )
        parsed = parse_receipt_text((await esme.receipt()).short_message.decode("ascii"))
        assert parsed.text == "?????? ???"  # decoded, then ASCII with replacement
        assert parsed.stat == "DELIVRD"


# ---- submits -------------------------------------------------------------------------------


async def test_throttle_every_third_submit() -> None:
    async with simulator(throttle_every=3) as sim:
        esme = await new_esme(sim)
        await esme.bind(sim.port)
        statuses = [(await esme.submit(message(rd=0))).command_status for _ in range(6)]
        throttled = CommandStatus.ESME_RTHROTTLED
        assert statuses == [0, 0, throttled, 0, 0, throttled]
        assert [m["message_id"] for m in sim.stats.messages] == [
            "00000001",
            "00000002",
            "00000003",
            "00000004",
        ]


async def test_reject_destinations_answers_invalid_destination() -> None:
    async with simulator(reject_destinations=frozenset({"447900000666"})) as sim:
        esme = await new_esme(sim)
        await esme.bind(sim.port)
        refused = await esme.submit(message(dest="447900000666"))
        accepted = await esme.submit(message(dest="447900000667"))
        assert refused.command_status == CommandStatus.ESME_RINVDSTADR
        assert accepted.command_status == 0
        assert [m["destination_addr"] for m in sim.stats.messages] == ["447900000667"]
        assert sim.stats.rejected == 1
        receipt = await esme.receipt()  # only for the accepted one
        assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == getattr(accepted, "message_id", None)


async def test_decimal_id_format() -> None:
    async with simulator(id_format="decimal") as sim:
        esme = await new_esme(sim)
        await esme.bind(sim.port)
        ids = [getattr(await esme.submit(message(rd=0)), "message_id", "") for _ in range(11)]
        assert ids == [str(n) for n in range(1, 12)]
        await esme.submit(message())
        receipt = await esme.receipt()
        assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == "12"
        assert parse_receipt_text(receipt.short_message.decode()).message_id == "12"


async def test_data_sm_is_accepted_and_receipted() -> None:
    async with simulator() as sim:
        esme = await new_esme(sim)
        await esme.bind(sim.port)
        resp = await esme.submit(
            DataSm(
                source_addr="TELEWAY",
                destination_addr="447911123456",
                registered_delivery=1,
                tlvs=(Tlv.octets(Tag.MESSAGE_PAYLOAD, b"via data-sm"),),
            )
        )
        assert resp.command_name == "data_sm_resp" and resp.command_status == 0
        record = sim.stats.messages[-1]
        assert record["command"] == "data_sm"
        assert bytes.fromhex(str(record["payload"])) == b"via data-sm"
        parsed = parse_receipt_text((await esme.receipt()).short_message.decode())
        assert parsed.text == "via data-sm"


async def test_records_keep_sar_values_and_addresses() -> None:
    async with simulator() as sim:
        esme = await new_esme(sim)
        await esme.bind(sim.port)
        await esme.submit(
            message(rd=0).replace(
                tlvs=(
                    Tlv.int(Tag.SAR_MSG_REF_NUM, 513),
                    Tlv.int(Tag.SAR_TOTAL_SEGMENTS, 2),
                    Tlv.int(Tag.SAR_SEGMENT_SEQNUM, 1),
                )
            )
        )
        await esme.submit(message(rd=0))
        first, second = sim.stats.messages
        assert first["sar"] == [513, 2, 1] and second["sar"] is None
        assert (first["source_addr"], first["source_addr_ton"]) == ("TELEWAY", 5)


# ---- journal and restarts ------------------------------------------------------------------


async def test_journal_lines_are_fsynced_and_survive_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "journal.jsonl"
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)  # the simulator calls os.fsync
    async with simulator(journal=journal) as sim:
        esme = await new_esme(sim)
        await esme.bind(sim.port)
        for n in range(3):
            await esme.submit(message(f"text {n}", rd=0))
        # on disk before any stop: each line was flushed and fsynced when it was answered
        lines = journal.read_text().splitlines()
        assert len(synced) == 3
        assert [json.loads(line)["message_id"] for line in lines] == [
            "00000001",
            "00000002",
            "00000003",
        ]
        assert bytes.fromhex(json.loads(lines[0])["short_message"]) == b"text 0"
        port = sim.port
        await esme.close()
        await sim.stop()
        await sim.start()  # the same simulator again, same port, same journal
        assert sim.port == port
        again = await new_esme(sim)
        await again.bind(port)
        await again.submit(message("after restart", rd=0))
    lines = journal.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1])["message_id"] == "00000004"


async def test_receipt_in_flight_when_stopped_is_sent_after_a_restart() -> None:
    async with simulator() as sim:
        first = await new_esme(sim)
        first.hold = asyncio.Event()  # takes the receipt but never answers it
        await first.bind(sim.port)
        resp = await first.submit(message())
        await first.receipt()
        await sim.stop()  # the receipt was on its way: kept, not lost
        await first.close()
        await sim.start()
        again = await new_esme(sim)
        await again.bind(sim.port, BindReceiver)
        receipt = await again.receipt()
        assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == getattr(resp, "message_id", None)
        await eventually(lambda: sim.stats.receipts_sent == 1)


def test_stats_messages_are_bounded() -> None:
    assert smsc.SimulatorStats().messages.maxlen == smsc.MAX_RECORDS
