"""`SmsChannel` with a real Upstream bound to the SMSC simulator on loopback.

What the SMSC received is read back from the simulator's records (short_message bytes, TLVs,
addresses) and reassembled with `teleway.proto.sms`, so the tests check the wire, not the
channel's own view of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.channels.sms import channel as channel_module
from teleway.channels.sms.channel import (
    ReceiptReport,
    SmsChannel,
    candidate_ids,
    canonical_id,
)
from teleway.channels.sms.upstream import Upstream, UpstreamSettings
from teleway.core.model import (
    Account,
    Content,
    Delivery,
    DeliveryState,
    Device,
    LongSmsPolicy,
    Message,
    Options,
    Origin,
    Settings,
)
from teleway.core.outcome import PermanentFailure, Submitted, TemporaryFailure
from teleway.proto.smpp.constants import CommandStatus, EsmClass, Tag
from teleway.proto.smpp.pdu import DataSm, DeliverSm
from teleway.proto.smpp.tlv import Tlv
from teleway.proto.sms.alphabets import ucs2_decode
from teleway.proto.sms.gsm7 import gsm7_decode, gsm7_encode
from teleway.proto.sms.reassembly import Reassembler
from teleway.proto.sms.receipt import ReceiptState
from teleway.proto.sms.udh import find_concat, parse_udh
from teleway.testing.fakes import FakeClock
from teleway.testing.smsc import SimulatorSettings, SmscSimulator

pytestmark = pytest.mark.timeout(20)

NOW = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
RECIPIENT = "+447911123456"
GSM_400 = ("The quick brown fox jumps over the lazy dog. " * 9)[:400]


# ---- small fakes ---------------------------------------------------------------------------


class Accounts:
    """An AccountDirectory of a few in-memory accounts."""

    def __init__(self, *accounts: Account) -> None:
        self.by_id = {a.id: a for a in accounts}

    async def get_account(self, account_id: int) -> Account | None:
        return self.by_id.get(account_id)

    async def account_by_name(self, name: str) -> Account | None:
        return next((a for a in self.by_id.values() if a.name == name), None)


@dataclass
class Sink:
    """A ReceiptSink: answers from `results` in turn (then the last one again), or raises."""

    results: list[bool] = field(default_factory=lambda: [True])
    error: Exception | None = None
    reports: list[ReceiptReport] = field(default_factory=list)

    async def receipt(self, report: ReceiptReport) -> bool:
        self.reports.append(report)
        if self.error is not None:
            raise self.error
        return self.results[min(len(self.reports), len(self.results)) - 1]


def message(
    text: str, *, subject: str = "", sender: str | None = None, account_id: int = 1
) -> Message:
    return Message(
        id="msg1",
        account_id=account_id,
        origin=Origin.HTTP,
        submitter="api-key",
        content=Content(text=text, subject=subject),
        options=Options(sender_id=sender),
        created_at=NOW,
    )


def delivery(recipient: str = RECIPIENT) -> Delivery:
    return Delivery(
        id="dlv1",
        message_id="msg1",
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


@dataclass
class Rig:
    channel: SmsChannel
    sim: SmscSimulator
    upstream: Upstream

    async def send(self, text: str, **kwargs: Any) -> Any:
        return await self.channel.send(delivery(), message(text, **kwargs))

    def wire(self) -> list[dict[str, object]]:
        return list(self.sim.stats.messages)


@contextlib.asynccontextmanager
async def rig(
    *,
    settings: Settings | None = None,
    upstream: dict[str, Any] | None = None,
    sink: Sink | None = None,
    clock: FakeClock | None = None,
    **simulator: Any,
) -> AsyncIterator[Rig]:
    sim = SmscSimulator(
        SimulatorSettings(port=0, system_id="gw", password="pw", receipt_delay=0.02, **simulator)
    )
    await sim.start()
    accounts = Accounts(Account(id=1, name="acme", settings=settings or Settings()))
    channel = SmsChannel(upstreams=[], accounts=accounts, clock=clock)
    channel.sink = sink
    up = Upstream(
        UpstreamSettings(
            name="sim",
            host="127.0.0.1",
            port=sim.port,
            system_id="gw",
            password="pw",
            reconnect_min=0.05,
            response_timeout=2.0,
            **(upstream or {}),
        ),
        on_deliver=channel.on_deliver,
    )
    channel.upstreams = [up]
    up.start()
    try:
        assert await up.wait_bound(5)
        assert channel.ready
        yield Rig(channel=channel, sim=sim, upstream=up)
    finally:
        await up.stop()
        await sim.stop()


def short_message(record: dict[str, object]) -> bytes:
    return bytes.fromhex(str(record["short_message"]))


def reassemble(records: list[dict[str, object]], decode: Any) -> str:
    """Put UDH-concatenated parts back together with the proto reassembler."""
    reassembler = Reassembler()
    done = None
    for record in records:
        elements, payload = parse_udh(short_message(record))
        info = find_concat(elements)
        assert info is not None
        done = reassembler.add("k", info.seq, info.total, info.reference, payload, 0.0)
    assert done is not None
    return str(decode(done.payload))


# ---- sending -------------------------------------------------------------------------------


async def test_short_gsm_text_is_one_part_submitted_with_canonical_id() -> None:
    async with rig() as r:
        outcome = await r.send("Hello {world} ~ ok")
        assert isinstance(outcome, Submitted)
        assert outcome.upstream_ids == ("sim:1",)  # "00000001" stored without leading zeros
        assert outcome.channel == "sms"
        [record] = r.wire()
        assert short_message(record) == gsm7_encode("Hello {world} ~ ok")
        assert gsm7_decode(short_message(record)) == "Hello {world} ~ ok"
        assert (record["esm_class"], record["data_coding"]) == (0, 0)
        assert record["destination_addr"] == "447911123456"  # E.164 without "+"
        assert record["registered_delivery"] == 1


async def test_subject_goes_through_the_account_template() -> None:
    async with rig(settings=Settings(sms_template="[{subject}] {body}")) as r:
        await r.send("body text", subject="Alert")
        assert gsm7_decode(short_message(r.wire()[0])) == "[Alert] body text"


async def test_long_gsm_text_is_three_udh_parts_in_order() -> None:
    async with rig() as r:
        outcome = await r.send(GSM_400)
        assert isinstance(outcome, Submitted)
        assert outcome.upstream_ids == ("sim:1", "sim:2", "sim:3")
        records = r.wire()
        assert len(records) == 3
        headers = [short_message(rec)[:6] for rec in records]
        reference = headers[0][3]
        assert headers == [bytes([5, 0, 3, reference, 3, seq]) for seq in (1, 2, 3)]
        assert all(rec["esm_class"] == EsmClass.UDHI for rec in records)
        assert [len(short_message(rec)) - 6 for rec in records] == [153, 153, 94]
        assert reassemble(records, gsm7_decode) == GSM_400


async def test_concatenation_references_differ_between_messages() -> None:
    async with rig() as r:
        await r.send(GSM_400)
        await r.send(GSM_400)
        first, second = r.wire()[0], r.wire()[3]
        assert short_message(first)[3] != short_message(second)[3]


async def test_ucs2_text_is_split_in_67_unit_parts() -> None:
    text = "Привет, мир! Ünïcödé ✓ " * 7  # 161 characters, not GSM
    async with rig() as r:
        outcome = await r.send(text)
        assert isinstance(outcome, Submitted) and len(outcome.upstream_ids) == 3
        records = r.wire()
        assert all(rec["data_coding"] == 8 for rec in records)
        assert [len(short_message(rec)) - 6 for rec in records] == [134, 134, 54]
        assert reassemble(records, ucs2_decode) == text


async def test_short_ucs2_text_is_one_part_without_header() -> None:
    async with rig() as r:
        await r.send("Привет")
        [record] = r.wire()
        assert short_message(record) == "Привет".encode("utf-16-be")
        assert (record["esm_class"], record["data_coding"]) == (0, 8)


async def test_sar_concatenation_uses_tlvs_and_full_size_parts() -> None:
    async with rig(upstream={"concat": "sar"}) as r:
        outcome = await r.send(GSM_400)
        assert isinstance(outcome, Submitted) and len(outcome.upstream_ids) == 3
        records = r.wire()
        sar = [rec["sar"] for rec in records]
        assert isinstance(sar[0], list)
        reference = sar[0][0]
        assert sar == [[reference, 3, 1], [reference, 3, 2], [reference, 3, 3]]
        assert all(rec["esm_class"] == 0 for rec in records)  # no UDH
        assert [len(short_message(rec)) for rec in records] == [160, 160, 80]
        assert gsm7_decode(b"".join(short_message(rec) for rec in records)) == GSM_400


async def test_payload_concatenation_sends_one_submit_with_message_payload() -> None:
    async with rig(upstream={"concat": "payload"}) as r:
        outcome = await r.send(GSM_400)
        assert isinstance(outcome, Submitted) and len(outcome.upstream_ids) == 1
        [record] = r.wire()
        assert record["short_message"] == ""
        assert gsm7_decode(bytes.fromhex(str(record["payload"]))) == GSM_400


async def test_long_sms_policy_reject() -> None:
    async with rig(settings=Settings(long_sms_policy=LongSmsPolicy.REJECT)) as r:
        assert isinstance(await r.send("fits in one"), Submitted)
        outcome = await r.send(GSM_400)
        assert isinstance(outcome, PermanentFailure) and outcome.rejected
        assert "3 SMS parts" in outcome.reason
        assert len(r.wire()) == 1  # only the short one reached the SMSC


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        (GSM_400, GSM_400[:160]),  # a whole single SMS: 160 septets, no header
        ("a" * 159 + "€" + "b" * 10, "a" * 159),  # € takes two septets: it does not fit
        ("Привет! " * 20, ("Привет! " * 20)[:70]),
        ("😀" * 40, "😀" * 35),  # surrogate pairs are never split
    ],
)
async def test_long_sms_policy_truncate_sends_the_first_sms(text: str, sent: str) -> None:
    async with rig(settings=Settings(long_sms_policy=LongSmsPolicy.TRUNCATE)) as r:
        outcome = await r.send(text)
        assert isinstance(outcome, Submitted) and len(outcome.upstream_ids) == 1
        [record] = r.wire()
        assert record["esm_class"] == 0
        data = short_message(record)
        decoded = ucs2_decode(data) if record["data_coding"] == 8 else gsm7_decode(data)
        assert decoded == sent


async def test_truncate_applies_to_payload_style_too() -> None:
    settings = Settings(long_sms_policy=LongSmsPolicy.TRUNCATE)
    async with rig(settings=settings, upstream={"concat": "payload"}) as r:
        assert isinstance(await r.send(GSM_400), Submitted)
        [record] = r.wire()
        assert gsm7_decode(bytes.fromhex(str(record["payload"]))) == GSM_400[:160]


async def test_more_parts_than_the_account_allows_is_rejected() -> None:
    async with rig(settings=Settings(max_sms_parts=2)) as r:
        outcome = await r.send(GSM_400)
        assert isinstance(outcome, PermanentFailure) and outcome.rejected
        assert "3 SMS parts" in outcome.reason and "allows 2" in outcome.reason
        assert r.wire() == []


async def test_max_parts_also_bounds_the_payload_style() -> None:
    async with rig(settings=Settings(max_sms_parts=2), upstream={"concat": "payload"}) as r:
        outcome = await r.send(GSM_400)
        assert isinstance(outcome, PermanentFailure) and outcome.rejected
        assert r.wire() == []


@pytest.mark.parametrize(
    ("account_sender", "message_sender", "addr", "ton", "npi"),
    [
        ("ACME", None, "ACME", 5, 0),
        ("+15551234567", None, "15551234567", 1, 1),
        ("ACME", "+15551234567", "15551234567", 1, 1),  # the message's own sender wins
        (None, "LongCompanyName", "LongCompany", 5, 0),  # alphanumeric: at most 11
        (None, None, "TELEWAY", 5, 0),  # the upstream's configured default
    ],
)
async def test_source_address_ton_npi(
    account_sender: str | None, message_sender: str | None, addr: str, ton: int, npi: int
) -> None:
    upstream = {"source_addr": "TELEWAY", "source_ton": 5, "source_npi": 0}
    async with rig(settings=Settings(sender_id=account_sender), upstream=upstream) as r:
        assert isinstance(await r.send("hi", sender=message_sender), Submitted)
        [record] = r.wire()
        assert (record["source_addr"], record["source_addr_ton"], record["source_addr_npi"]) == (
            addr,
            ton,
            npi,
        )


async def test_throttled_is_a_temporary_failure_with_a_short_retry() -> None:
    clock = FakeClock(NOW)
    async with rig(throttle_every=1, clock=clock) as r:
        outcome = await r.send("hello")
        assert isinstance(outcome, TemporaryFailure)
        assert "ESME_RTHROTTLED" in outcome.reason
        assert outcome.retry_at is not None
        assert NOW + timedelta(seconds=1) <= outcome.retry_at <= NOW + timedelta(seconds=2)


async def test_refused_destination_is_a_permanent_failure_with_the_status_name() -> None:
    async with rig(reject_destinations=frozenset({"447911123456"})) as r:
        outcome = await r.send("hello")
        assert isinstance(outcome, PermanentFailure)
        assert outcome.code == "ESME_RINVDSTADR" and "ESME_RINVDSTADR" in outcome.reason
        assert not outcome.rejected  # refused by the network: UNDELIVERABLE


async def test_not_bound_is_a_temporary_failure() -> None:
    accounts = Accounts(Account(id=1, name="acme"))
    never = named_upstream()  # never started
    channel = SmsChannel(upstreams=[never], accounts=accounts)
    assert not channel.ready
    outcome = await channel.send(delivery(), message("hello"))
    assert isinstance(outcome, TemporaryFailure) and "no upstream bound" in outcome.reason


async def test_unknown_account_is_rejected() -> None:
    async with rig() as r:
        outcome = await r.channel.send(delivery(), message("hello", account_id=99))
        assert isinstance(outcome, PermanentFailure) and outcome.rejected
        assert r.wire() == []


@contextlib.asynccontextmanager
async def raw_smsc(submit_answer: bytes | None) -> AsyncIterator[int]:
    """An SMSC that binds anyone and answers submit_sm with `submit_answer` (a status code as
    4 bytes), or never when None."""

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                length, command_id, _, seq = struct.unpack(">IIII", await reader.readexactly(16))
                await reader.readexactly(length - 16)
                if command_id in (0x02, 0x09):
                    writer.write(
                        struct.pack(">IIII", 20, 0x80000000 | command_id, 0, seq) + b"raw\0"
                    )
                elif command_id == 0x04 and submit_answer is not None:
                    status = int.from_bytes(submit_answer, "big")
                    writer.write(struct.pack(">IIII", 16, 0x80000004, status, seq))
                elif command_id == 0x06:
                    writer.write(struct.pack(">IIII", 16, 0x80000006, 0, seq))
                await writer.drain()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def _channel_to(port: int) -> tuple[SmsChannel, Upstream]:
    channel = SmsChannel(upstreams=[], accounts=Accounts(Account(id=1, name="acme")))
    up = Upstream(
        UpstreamSettings(
            name="raw",
            host="127.0.0.1",
            port=port,
            system_id="gw",
            password="pw",
            response_timeout=0.2,
        ),
        on_deliver=channel.on_deliver,
    )
    channel.upstreams = [up]
    up.start()
    assert await up.wait_bound(5)
    return channel, up


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


async def test_lost_response_is_retried_soon_and_counted_as_a_possible_duplicate() -> None:
    async with raw_smsc(None) as port:
        channel, up = await _channel_to(port)
        channel.observer = observer = Observer()
        try:
            before = datetime.now(UTC)
            outcome = await channel.send(delivery(), message("hello"))
            assert isinstance(outcome, TemporaryFailure) and outcome.retry_at is not None
            assert outcome.retry_at - before < timedelta(seconds=5)
            assert "no response" in outcome.reason
            assert observer.duplicates == [("raw", 1)]
            assert not up.healthy  # routing now prefers another upstream for a while
            # an upstream that keeps losing answers gets the queue's back-off instead
            later = replace(delivery(), attempts=channel_module.IN_DOUBT_QUICK_RETRIES)
            outcome = await channel.send(later, message("hello"))
            assert isinstance(outcome, TemporaryFailure) and outcome.retry_at is None
        finally:
            await up.stop()


async def test_other_error_status_is_a_plain_temporary_failure() -> None:
    async with raw_smsc(CommandStatus.ESME_RSYSERR.to_bytes(4, "big")) as port:
        channel, up = await _channel_to(port)
        try:
            outcome = await channel.send(delivery(), message("hello"))
            assert isinstance(outcome, TemporaryFailure) and outcome.retry_at is None
            assert "ESME_RSYSERR" in outcome.reason
        finally:
            await up.stop()


# ---- receipts ------------------------------------------------------------------------------


async def eventually(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_receipt_from_the_smsc_reaches_the_sink_and_is_acknowledged() -> None:
    sink = Sink()
    async with rig(sink=sink) as r:
        outcome = await r.send("hello")
        assert isinstance(outcome, Submitted)
        await eventually(lambda: r.sim.stats.receipts_sent == 1)
        [report] = sink.reports
        assert report.upstream == "sim"
        assert report.candidates[0] == outcome.upstream_ids[0]
        assert report.state is ReceiptState.DELIVERED
        assert report.error == "000"
        assert "stat:DELIVRD" in report.raw


async def test_failed_receipt_reports_its_state() -> None:
    sink = Sink()
    async with rig(sink=sink, success_ratio=0.0) as r:
        await r.send("hello")
        await eventually(lambda: r.sim.stats.receipts_sent == 1)
        assert sink.reports[0].state is ReceiptState.UNDELIVERABLE
        assert sink.reports[0].error == "001"


async def test_sink_failure_answers_temporary_error_so_the_smsc_retries() -> None:
    sink = Sink(error=RuntimeError("store down"))
    async with rig(sink=sink) as r:
        await r.send("hello")
        await eventually(lambda: len(sink.reports) >= 1)
        await asyncio.sleep(0.05)
        assert r.sim.stats.receipts_sent == 0  # refused with ESME_RX_T_APPN, kept by the SMSC


def receipt_pdu(
    message_id: str = "0000002a", *, tlvs: bool = True, stat: str = "DELIVRD"
) -> DeliverSm:
    text = (
        f"id:{message_id} sub:001 dlvrd:001 submit date:2405010900 done date:2405010901 "
        f"stat:{stat} err:000 text:hello"
    )
    return DeliverSm(
        source_addr="447911123456",
        destination_addr="TELEWAY",
        esm_class=EsmClass.DELIVERY_RECEIPT,
        short_message=text.encode(),
        tlvs=(
            (
                Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, message_id),
                Tlv.int(Tag.MESSAGE_STATE, ReceiptState.DELIVERED),
            )
            if tlvs
            else ()
        ),
    )


def named_upstream() -> Upstream:
    async def unused(upstream: Upstream, pdu: DeliverSm | DataSm) -> int:
        raise AssertionError

    return Upstream(
        UpstreamSettings(name="up", host="127.0.0.1", port=1, system_id="x", password="y"),
        on_deliver=unused,
    )


def bare_channel(sink: Sink | None) -> SmsChannel:
    channel = SmsChannel(upstreams=[], accounts=Accounts())
    channel.sink = sink
    return channel


async def test_on_deliver_matched_receipt_is_ok() -> None:
    sink = Sink()
    status = await bare_channel(sink).on_deliver(named_upstream(), receipt_pdu())
    assert status == CommandStatus.ESME_ROK
    [report] = sink.reports
    assert (report.candidates, report.fallbacks) == (("up:2a",), ("up:42",))
    assert report.state is ReceiptState.DELIVERED


async def test_on_deliver_without_tlvs_reads_the_text() -> None:
    sink = Sink()
    pdu = receipt_pdu("12345", tlvs=False, stat="UNDELIV")
    assert await bare_channel(sink).on_deliver(named_upstream(), pdu) == CommandStatus.ESME_ROK
    [report] = sink.reports
    assert report.candidates[0] == "up:12345"
    assert report.state is ReceiptState.UNDELIVERABLE and report.error == "000"


async def test_on_deliver_message_state_tlv_wins_over_the_text() -> None:
    sink = Sink()
    pdu = receipt_pdu("1", stat="UNDELIV")  # TLV says DELIVERED
    await bare_channel(sink).on_deliver(named_upstream(), pdu)
    assert sink.reports[0].state is ReceiptState.DELIVERED


async def test_on_deliver_data_sm_receipt() -> None:
    sink = Sink()
    pdu = DataSm(
        esm_class=EsmClass.DELIVERY_RECEIPT,
        tlvs=(
            Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, "ff"),
            Tlv.int(Tag.MESSAGE_STATE, ReceiptState.EXPIRED),
        ),
    )
    assert await bare_channel(sink).on_deliver(named_upstream(), pdu) == CommandStatus.ESME_ROK
    assert sink.reports[0].candidates[0] == "up:ff"
    assert sink.reports[0].state is ReceiptState.EXPIRED


async def test_on_deliver_sink_raising_answers_rx_t_appn() -> None:
    sink = Sink(error=RuntimeError("store down"))
    status = await bare_channel(sink).on_deliver(named_upstream(), receipt_pdu())
    assert status == CommandStatus.ESME_RX_T_APPN


async def test_on_deliver_without_sink_answers_rx_t_appn() -> None:
    status = await bare_channel(None).on_deliver(named_upstream(), receipt_pdu())
    assert status == CommandStatus.ESME_RX_T_APPN


async def test_mobile_originated_message_is_logged_and_acknowledged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink()
    mo = DeliverSm(source_addr="447911123456", destination_addr="TELEWAY", short_message=b"STOP")
    with caplog.at_level(logging.WARNING, logger="teleway.sms"):
        status = await bare_channel(sink).on_deliver(named_upstream(), mo)
    assert status == CommandStatus.ESME_ROK
    assert sink.reports == []
    assert any("not routed" in r.getMessage() for r in caplog.records)


async def test_receipt_overtaking_its_submit_is_matched_on_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(channel_module, "RECEIPT_MATCH_SECONDS", 2.0)
    sink = Sink(results=[False, False, True])
    status = await bare_channel(sink).on_deliver(named_upstream(), receipt_pdu())
    assert status == CommandStatus.ESME_ROK
    assert len(sink.reports) == 3


async def test_unknown_receipt_is_acknowledged_after_the_match_period(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(channel_module, "RECEIPT_MATCH_SECONDS", 0.3)
    sink = Sink(results=[False])
    with caplog.at_level(logging.WARNING, logger="teleway.sms"):
        status = await bare_channel(sink).on_deliver(named_upstream(), receipt_pdu())
    assert status == CommandStatus.ESME_ROK
    # tried again every 0.25 s until the period ended, then once with the other bases
    assert 3 <= len(sink.reports) <= 4
    assert sink.reports[-1].candidates == ("up:42",)
    assert {r.candidates for r in sink.reports[:-1]} == {("up:2a",)}
    assert any("unknown message" in r.getMessage() for r in caplog.records)


# ---- id matching ---------------------------------------------------------------------------


def test_candidate_ids_examples() -> None:
    assert candidate_ids("u", "0000000A") == ["u:a", "u:10"]
    assert candidate_ids("u", "10") == ["u:10", "u:a", "u:16"]
    assert candidate_ids("u", "0x1F") == ["u:x1f", "u:1f", "u:31"]
    assert candidate_ids("u", "abc-123") == ["u:abc-123"]
    assert canonical_id("u", " 00FF ") == "u:ff"
    assert canonical_id("u", "000") == "u:0"


@given(n=st.integers(min_value=0, max_value=2**80), pad=st.integers(0, 12), upper=st.booleans())
def test_stored_hex_id_is_among_candidates_of_decimal_and_padded_hex(
    n: int, pad: int, upper: bool
) -> None:
    stored = canonical_id("up", format(n, "x"))  # what submit_sm_resp gave, as stored
    padded = format(n, "x").rjust(pad + len(format(n, "x")), "0")
    assert stored in candidate_ids("up", str(n))
    assert stored in candidate_ids("up", padded.upper() if upper else padded)
    assert stored in candidate_ids("up", "0x" + padded)


@given(n=st.integers(min_value=0, max_value=2**80), pad=st.integers(0, 12))
def test_stored_decimal_id_is_among_candidates_of_hex_and_padded_decimal(n: int, pad: int) -> None:
    stored = canonical_id("up", str(n))
    assert stored in candidate_ids("up", format(n, "x"))
    assert stored in candidate_ids("up", "0" * pad + str(n))
    assert candidate_ids("up", "0" * pad + str(n))[0] == stored  # the literal form first


def test_message_id_format_narrows_the_receipt_ids() -> None:
    def up(fmt: str) -> Upstream:
        async def unused(upstream: Upstream, pdu: DeliverSm | DataSm) -> int:
            raise AssertionError

        return Upstream(
            UpstreamSettings(
                name="up", host="h", port=1, system_id="x", password="y", message_id_format=fmt
            ),
            on_deliver=unused,
        )

    text_only = receipt_pdu("42", tlvs=False)
    hex_quirk = channel_module._receipt_report(
        "up", text_only, up("hex").settings.message_id_format
    )
    assert hex_quirk is not None
    assert (hex_quirk.candidates, hex_quirk.fallbacks) == (("up:2a",), ())
    same = channel_module._receipt_report("up", receipt_pdu("0042"), "decimal")
    assert same is not None and (same.candidates, same.fallbacks) == (("up:42",), ())
    # with the TLV, "hex" trusts it: it carries the response's own form
    tlv = channel_module._receipt_report("up", receipt_pdu("2a"), "hex")
    assert tlv is not None and tlv.candidates == ("up:2a",)
