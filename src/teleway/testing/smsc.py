"""A built-in SMSC simulator: the default upstream of `make run`, and a peer for tests.

It accepts binds with one configured system_id/password, answers submit_sm and data_sm with
message ids, and, when the submitter asked for a receipt, sends a delivery receipt (deliver_sm,
esm_class 0x04, Appendix B text, receipted_message_id and message_state TLVs) after a delay,
as DELIVRD with probability `success_ratio`, else UNDELIV. Receipts go to a receiver or
transceiver bind of the same system_id and wait for one when none is bound. Every accepted
submit is appended to an optional JSON-lines journal (fsynced), so tests can count deliveries
across gateway restarts.

Misbehaviour on demand, for tests of the gateway's error handling (ratios are drawn per
submit from the seeded random generator):

* `throttle_every=N` answers every Nth submit with ESME_RTHROTTLED, `throttle_ratio` a share
  of them (a temporary refusal: the gateway slows down and retries);
* `error_ratio` answers a share of submits with `error_status` (default ESME_RSYSERR);
* `reject_destinations` lists destination addresses (as in destination_addr, no "+") whose
  submits are refused with ESME_RINVDSTADR (a permanent refusal); nothing is recorded for them;
* `response_delay` answers every submit that late (slow responses; longer than the gateway's
  response timeout: timeouts), `no_response_ratio` never answers a share of them;
* `disconnect_ratio` drops the connection instead of answering a share of submits (a random
  disconnect with a window of submits in flight);
* `receipt_delay` (+ up to `receipt_jitter`) is the delivery delay; `failure_err` the `err:`
  code of an UNDELIV receipt.

Mobile-originated messages (replies from phones) are injected by binding with system_type
"MO" (`MO_SYSTEM_TYPE`) and the simulator's credentials: every submit_sm on such a bind is
taken as a phone's message instead (source_addr = the phone, destination_addr = our number)
and delivered as deliver_sm to the receivers, split into concatenated UDH parts when long.
`teleway simulate mo` does exactly that; `inject_mo()` does it in process.

`stats.messages` keeps the last `MAX_RECORDS` accepted submits (the journal keeps them all).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import Collection, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from teleway.proto.smpp.constants import CommandStatus, EsmClass, Tag
from teleway.proto.smpp.errors import SmppError
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
from teleway.proto.sms.alphabets import decode_text, encoding_for_data_coding
from teleway.proto.sms.receipt import ReceiptState, build_receipt_text
from teleway.proto.sms.segments import plan_segments
from teleway.transport.smpp import LinkClosed, ResponseTimedOut, SmppLink

logger = logging.getLogger("teleway.simulator")

MAX_RECORDS = 100_000  # accepted submits kept in memory (stats.messages); the journal has all
RECEIPT_RETRY_SECONDS = 1.0  # a receipt no receiver took is offered again after this long
MAX_PENDING_RECEIPTS = 100_000  # receipts waiting for a receiver; beyond, the oldest are dropped


@dataclass(frozen=True, kw_only=True)
class SimulatorSettings:
    host: str = "127.0.0.1"
    port: int = 2776
    system_id: str = "teleway"
    password: str = "simulat"
    receipt_delay: float = 1.0
    success_ratio: float = 1.0
    journal: Path | None = None
    seed: int | None = None
    id_format: str = "hex"  # "hex" or "decimal" message ids, as real SMSCs differ
    throttle_every: int = 0  # answer every Nth submit with ESME_RTHROTTLED (0: never)
    # destination_addr values refused with ESME_RINVDSTADR (a permanent error)
    reject_destinations: frozenset[str] = frozenset()
    throttle_ratio: float = 0.0  # share of submits answered ESME_RTHROTTLED
    error_ratio: float = 0.0  # share of submits answered with error_status
    error_status: int = CommandStatus.ESME_RSYSERR
    response_delay: float = 0.0  # seconds before a submit is answered
    no_response_ratio: float = 0.0  # share of submits never answered
    disconnect_ratio: float = 0.0  # share of submits that drop the connection unanswered
    receipt_jitter: float = 0.0  # receipts come receipt_delay + uniform(0, jitter) late
    failure_err: int = 1  # err: code of UNDELIV receipts (Appendix B)
    receipts: bool = True  # False: answer submits only (a do-nothing SMSC for benchmarks)


MO_SYSTEM_TYPE = "MO"  # a bind with this system_type injects replies from phones
# vendor TLVs of an injection (SMPP v3.4 5.3.2: 0x1400-0x3FFF): the concatenation reference to
# use (Integer, 1 octet) and which parts to deliver now (C-Octet String, e.g. "1,3"): a network
# that delivers the parts of one reply far apart, the rest injected later with the same reference
MO_REFERENCE_TAG = 0x1501
MO_PARTS_TAG = 0x1502


@dataclass(kw_only=True)
class _Pending:
    message_id: str
    pdu: SubmitSm | DataSm
    submitted: datetime
    due: float
    state: ReceiptState
    mo: DeliverSm | None = None  # a reply from a phone to deliver instead of a receipt


@dataclass(kw_only=True)
class SimulatorStats:
    binds: int = 0
    submits: int = 0
    receipts_sent: int = 0
    bind_failures: int = 0
    rejected: int = 0  # submits refused for a destination in reject_destinations
    throttled: int = 0
    errors: int = 0  # submits answered with error_status
    unanswered: int = 0  # submits never answered (no_response_ratio)
    disconnects: int = 0  # connections dropped with a submit unanswered
    mo_injected: int = 0  # replies from phones queued for delivery (messages)
    mo_parts_sent: int = 0  # deliver_sm parts of replies acknowledged by the gateway
    messages: deque[dict[str, object]] = field(default_factory=lambda: deque(maxlen=MAX_RECORDS))


class SmscSimulator:
    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.stats = SimulatorStats()
        self._rng = random.Random(settings.seed)
        self._next_id = 1
        self._server: asyncio.Server | None = None
        self._links: set[SmppLink] = set()
        self._receivers: list[SmppLink] = []
        self._receipts: deque[_Pending] = deque(maxlen=MAX_PENDING_RECEIPTS)
        self._receipt_ready = asyncio.Event()
        self._journal: TextIO | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._port: int | None = None
        self._injectors: set[SmppLink] = set()  # binds with system_type MO
        self._reference = 0  # concatenation reference of injected replies

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose when settings.port is 0)."""
        assert self._port is not None, "the simulator has not been started"
        return self._port

    async def start(self) -> None:
        """Listen and send receipts. May be called again after `stop()`: it listens on the
        same port again (the one chosen the first time when settings.port is 0)."""
        if self.settings.journal is not None and self._journal is None:
            self._journal = self.settings.journal.open("a", encoding="utf-8")
        self._server = await asyncio.start_server(
            self._connected, self.settings.host, self._port or self.settings.port
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        self._spawn(self._send_receipts())
        logger.info("SMSC simulator listening on %s:%d", self.settings.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(Role.SMSC, window=100, enquire_link_interval=None, now=time.monotonic())
        link = SmppLink(reader, writer, session, handler=self._on_request, name="simulator")
        self._links.add(link)
        try:
            await link.run()
        finally:
            self._links.discard(link)
            self._injectors.discard(link)
            if link in self._receivers:
                self._receivers.remove(link)

    def _new_message_id(self) -> str:
        number = self._next_id
        self._next_id += 1
        return f"{number:08x}" if self.settings.id_format == "hex" else str(number)

    async def _on_request(self, link: SmppLink, pdu: Pdu) -> Pdu | None:
        if isinstance(pdu, BindTransmitter | BindReceiver | BindTransceiver):
            if pdu.system_id != self.settings.system_id:
                self.stats.bind_failures += 1
                return pdu.response(command_status=CommandStatus.ESME_RBINDFAIL)
            if pdu.password != self.settings.password:
                self.stats.bind_failures += 1
                return pdu.response(command_status=CommandStatus.ESME_RINVPASWD)
            self.stats.binds += 1
            if pdu.system_type == MO_SYSTEM_TYPE:
                self._injectors.add(link)
                return pdu.response(system_id="teleway-sim")
            if not isinstance(pdu, BindTransmitter):
                self._receivers.append(link)
                self._receipt_ready.set()
            return pdu.response(system_id="teleway-sim")
        if isinstance(pdu, SubmitSm | DataSm):
            if link in self._injectors:
                return self._on_injection(pdu)
            return await self._answer_submit(link, pdu)
        return pdu.response(command_status=CommandStatus.ESME_RINVCMDID)

    async def _answer_submit(self, link: SmppLink, pdu: SubmitSm | DataSm) -> Pdu | None:
        s = self.settings
        if s.disconnect_ratio and self._rng.random() < s.disconnect_ratio:
            self.stats.submits += 1
            self.stats.disconnects += 1
            link.writer.close()
            return None
        if s.no_response_ratio and self._rng.random() < s.no_response_ratio:
            self.stats.submits += 1
            self.stats.unanswered += 1
            return None
        if s.response_delay > 0:
            await asyncio.sleep(s.response_delay)
        return self._on_submit(pdu)

    def _on_submit(self, pdu: SubmitSm | DataSm) -> Pdu:
        s = self.settings
        every = s.throttle_every
        self.stats.submits += 1
        if (every and self.stats.submits % every == 0) or (
            s.throttle_ratio and self._rng.random() < s.throttle_ratio
        ):
            self.stats.throttled += 1
            return pdu.response(command_status=CommandStatus.ESME_RTHROTTLED)
        if s.error_ratio and self._rng.random() < s.error_ratio:
            self.stats.errors += 1
            return pdu.response(command_status=s.error_status)
        if pdu.destination_addr in self.settings.reject_destinations:
            self.stats.rejected += 1
            return pdu.response(command_status=CommandStatus.ESME_RINVDSTADR)
        message_id = self._new_message_id()
        now = datetime.now(UTC)
        sar = [pdu.tlv(tag) for tag in _SAR_TAGS]
        record: dict[str, object] = {
            "message_id": message_id,
            "at": now.isoformat(),
            "command": pdu.command_name,
            "source_addr": pdu.source_addr,
            "source_addr_ton": pdu.source_addr_ton,
            "source_addr_npi": pdu.source_addr_npi,
            "destination_addr": pdu.destination_addr,
            "data_coding": pdu.data_coding,
            "esm_class": pdu.esm_class,
            "registered_delivery": pdu.registered_delivery,
            "short_message": (pdu.short_message.hex() if isinstance(pdu, SubmitSm) else ""),
            "payload": _payload(pdu).hex(),
            # sar_msg_ref_num, sar_total_segments, sar_segment_seqnum (SMPP v3.4 5.3.2.22-24)
            "sar": sar if all(isinstance(v, int) for v in sar) else None,
        }
        self.stats.messages.append(record)
        if self._journal is not None:
            self._journal.write(json.dumps(record) + "\n")
            self._journal.flush()
            os.fsync(self._journal.fileno())
        if pdu.registered_delivery & 0x03 and self.settings.receipts:
            ok = self._rng.random() < self.settings.success_ratio
            state = ReceiptState.DELIVERED if ok else ReceiptState.UNDELIVERABLE
            if state is ReceiptState.UNDELIVERABLE or pdu.registered_delivery & 0x03 == 0x01:
                self._receipts.append(
                    _Pending(
                        message_id=message_id,
                        pdu=pdu,
                        submitted=now,
                        state=state,
                        due=time.monotonic()
                        + self.settings.receipt_delay
                        + self._rng.random() * self.settings.receipt_jitter,
                    )
                )
                self._receipt_ready.set()
        return pdu.response(message_id=message_id)

    async def _send_receipts(self) -> None:
        while True:
            if not self._receipts or not self._receivers:
                self._receipt_ready.clear()
                await self._receipt_ready.wait()
                continue
            pending = self._receipts[0]
            delay = pending.due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(min(delay, 0.5))
                continue
            self._receipts.popleft()
            self._spawn(self._deliver_receipt(pending))

    def _on_injection(self, pdu: SubmitSm | DataSm) -> Pdu:
        """A submit on an MO bind: the phone source_addr sends the text to destination_addr."""
        data = _payload(pdu)
        if pdu.esm_class & EsmClass.UDHI and data:
            data = data[1 + data[0] :]
        try:
            encoding = encoding_for_data_coding(pdu.data_coding)
        except ValueError:
            encoding = None
        text = data.decode("latin-1") if encoding is None else decode_text(data, encoding)
        reference = pdu.tlv(MO_REFERENCE_TAG)
        parts = pdu.tlv(MO_PARTS_TAG)
        only = None
        if isinstance(parts, bytes):
            try:
                only = {int(n) for n in parts.rstrip(b"\0").decode("ascii").split(",")}
            except ValueError:
                return pdu.response(command_status=CommandStatus.ESME_RINVOPTPARAMVAL)
        self.inject_mo(
            source=pdu.source_addr,
            destination=pdu.destination_addr,
            text=text,
            only=only,
            reference=reference[0] if isinstance(reference, bytes) and reference else None,
        )
        return pdu.response(message_id=self._new_message_id())

    def inject_mo(
        self,
        *,
        source: str,
        destination: str,
        text: str,
        concat: str = "udh8",
        only: Collection[int] | None = None,
        reference: int | None = None,
    ) -> int:
        """Queue a reply from phone `source` to `destination` for the receivers; long texts
        go as concatenated parts (UDH 8-bit, or "sar"). Returns the number of parts.

        `only`: send just these part numbers (1-based) now, and the others with a later call
        giving the same `reference` (a phone network that delivers parts far apart)."""
        if reference is None:
            self._reference = (self._reference + 1) % 256
            reference = self._reference
        plan = plan_segments(text, concat=concat, reference=reference)
        now = datetime.now(UTC)
        ton = 1 if source.lstrip("+").isdigit() else 5
        for segment in plan.parts:
            if only is not None and segment.index not in only:
                continue
            tlvs: tuple[Tlv, ...] = ()
            if segment.sar is not None:
                ref, total, seq = segment.sar
                tlvs = (
                    Tlv.int(Tag.SAR_MSG_REF_NUM, ref),
                    Tlv.int(Tag.SAR_TOTAL_SEGMENTS, total),
                    Tlv.int(Tag.SAR_SEGMENT_SEQNUM, seq),
                )
            mo = DeliverSm(
                source_addr_ton=ton,
                source_addr_npi=1 if ton == 1 else 0,
                source_addr=source.lstrip("+"),
                dest_addr_ton=1 if destination.lstrip("+").isdigit() else 5,
                dest_addr_npi=1,
                destination_addr=destination.lstrip("+"),
                esm_class=EsmClass.UDHI if segment.udh else 0,
                data_coding=plan.data_coding,
                short_message=segment.short_message,
                tlvs=tlvs,
            )
            self._receipts.append(
                _Pending(
                    message_id=f"mo-{reference}-{segment.index}",
                    pdu=SubmitSm(),
                    submitted=now,
                    due=time.monotonic(),
                    state=ReceiptState.ACCEPTED,
                    mo=mo,
                )
            )
        self.stats.mo_injected += 1
        self._receipt_ready.set()
        return plan.total_parts

    async def _deliver_receipt(self, pending: _Pending) -> None:
        if pending.mo is not None:
            await self._offer(pending, pending.mo)
            return
        pdu = pending.pdu
        text = build_receipt_text(
            message_id=pending.message_id,
            submitted=1,
            delivered=1 if pending.state is ReceiptState.DELIVERED else 0,
            submit_date=pending.submitted,
            done_date=datetime.now(UTC),
            stat=pending.state,
            err=0 if pending.state is ReceiptState.DELIVERED else self.settings.failure_err,
            text=_original_text(pdu),
        )
        receipt = DeliverSm(
            source_addr_ton=pdu.dest_addr_ton,
            source_addr_npi=pdu.dest_addr_npi,
            source_addr=pdu.destination_addr,
            dest_addr_ton=pdu.source_addr_ton,
            dest_addr_npi=pdu.source_addr_npi,
            destination_addr=pdu.source_addr,
            esm_class=EsmClass.DELIVERY_RECEIPT,
            short_message=text.encode("ascii", "replace"),
            tlvs=(
                Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, pending.message_id),
                Tlv.int(Tag.MESSAGE_STATE, int(pending.state)),
            ),
        )
        await self._offer(pending, receipt)

    async def _offer(self, pending: _Pending, receipt: DeliverSm) -> None:
        """Deliver to the first receiver that takes it; else keep it for the next bind."""
        for link in list(self._receivers):
            if link.closed or not link.session.bound:
                continue  # unbinding or gone: it may no longer receive deliver_sm
            try:
                response = await link.request(receipt)
            except (LinkClosed, ResponseTimedOut, SmppError) as exc:
                logger.info("receipt %s not delivered on a link: %s", pending.message_id, exc)
                continue
            except asyncio.CancelledError:  # stop(): keep it for a restart
                self._receipts.appendleft(pending)
                raise
            if response.command_status == 0:
                if pending.mo is not None:
                    self.stats.mo_parts_sent += 1
                else:
                    self.stats.receipts_sent += 1
                return
        # nobody took it: keep it for the next bind
        pending.due = time.monotonic() + RECEIPT_RETRY_SECONDS
        self._receipts.append(pending)
        self._receipt_ready.set()


_SAR_TAGS = (Tag.SAR_MSG_REF_NUM, Tag.SAR_TOTAL_SEGMENTS, Tag.SAR_SEGMENT_SEQNUM)


def _original_text(pdu: SubmitSm | DataSm) -> str:
    """The submitted text for the receipt's `text:` field (Appendix B: its first 20
    characters): UDH removed, decoded by data_coding; binary shown as Latin-1."""
    data = _payload(pdu)
    if pdu.esm_class & EsmClass.UDHI and data:
        data = data[1 + data[0] :]
    try:
        encoding = encoding_for_data_coding(pdu.data_coding)
    except ValueError:
        encoding = None
    if encoding is None:
        return data.decode("latin-1")
    return decode_text(data, encoding)


def _payload(pdu: SubmitSm | DataSm) -> bytes:
    if isinstance(pdu, SubmitSm) and pdu.short_message:
        return pdu.short_message
    value = pdu.tlv(Tag.MESSAGE_PAYLOAD)
    return value if isinstance(value, bytes) else b""


async def serve_forever(settings: SimulatorSettings) -> None:
    simulator = SmscSimulator(settings)
    await simulator.start()
    try:
        await asyncio.Event().wait()
    finally:
        await simulator.stop()
