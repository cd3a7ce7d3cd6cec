"""The SMS channel: a delivery becomes one or more submit_sm to an upstream SMSC.

The upstream comes from the route table (`core.routing`: destination prefix or country,
account, sender type; failover tiers with weighted load sharing), text from the account's
template (`core.templates`), encoding and segmentation from `proto.sms.plan_segments` with the
upstream's concatenation style. Parts of one message go in order on one bind.

What the SMSC says back is sorted by command_status: ESME_RTHROTTLED / ESME_RMSGQFUL slow the
upstream down and retry soon; permanent refusals (SMPP v3.4 5.1.3: bad destination, ...) fail
the delivery with the status name kept; anything else is retried with back-off until validity
ends. A link that fails before every response came leaves the message in doubt: it is sent
again once a bind is back (at-least-once), counted as possible duplicates.

From the SMSC come delivery receipts, handed to the `ReceiptSink` (the runtime stores them)
before they are acknowledged, and mobile-originated messages (replies), reassembled when
concatenated and handed to the `InboundSink` (the runtime routes them to an account's outbox)
before the last part is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from teleway.channels.sms.upstream import NotBound, Upstream, UpstreamSettings
from teleway.core.model import Account, Delivery, Device, HeldPart, LongSmsPolicy, Message
from teleway.core.outcome import Outcome, PermanentFailure, Submitted, TemporaryFailure
from teleway.core.ports import AccountDirectory, Clock
from teleway.core.routing import Choice, RouteTable
from teleway.core.templates import sms_text
from teleway.proto.smpp.constants import CommandStatus, EsmClass, Tag, esm_message_type, status_name
from teleway.proto.smpp.errors import SmppError
from teleway.proto.smpp.pdu import DataSm, DeliverSm, Pdu, SubmitSm
from teleway.proto.smpp.tlv import Tlv
from teleway.proto.sms.alphabets import decode_text, encoding_for_data_coding
from teleway.proto.sms.errors import SmsError
from teleway.proto.sms.reassembly import Reassembler
from teleway.proto.sms.receipt import ReceiptState, parse_receipt_text
from teleway.proto.sms.segments import Concat, SegmentPlan, plan_segments
from teleway.proto.sms.udh import find_concat, parse_udh
from teleway.transport.smpp import LinkClosed, ResponseTimedOut

logger = logging.getLogger("teleway.sms")

# submit_sm_resp statuses that will never succeed for this message (SMPP v3.4 5.1.3)
PERMANENT = frozenset(
    {
        CommandStatus.ESME_RINVMSGLEN,
        CommandStatus.ESME_RINVDSTADR,
        CommandStatus.ESME_RINVSRCADR,
        CommandStatus.ESME_RINVESMCLASS,
        CommandStatus.ESME_RINVSRCTON,
        CommandStatus.ESME_RINVSRCNPI,
        CommandStatus.ESME_RINVDSTTON,
        CommandStatus.ESME_RINVDSTNPI,
        CommandStatus.ESME_RINVSERTYP,
        CommandStatus.ESME_RINVEXPIRY,
        CommandStatus.ESME_RINVSCHED,
        CommandStatus.ESME_RINVOPTPARSTREAM,
        CommandStatus.ESME_ROPTPARNOTALLWD,
        CommandStatus.ESME_RINVPARLEN,
        CommandStatus.ESME_RINVOPTPARAMVAL,
        CommandStatus.ESME_RX_P_APPN,
        CommandStatus.ESME_RX_R_APPN,
    }
)
# statuses that mean "slow down": retried after a short pause rather than the back-off
SLOW_DOWN = frozenset({CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL})
RECEIPT_MATCH_SECONDS = 5.0  # a receipt may overtake the storing of its submit_sm_resp
SLOW_DOWN_SECONDS = 1.0  # an upstream that said "throttled" gets no submit for this long
FAILING_SECONDS = 30.0  # an upstream whose link failed mid-submit is a last resort this long
IN_DOUBT_RETRY_SECONDS = 1.0  # a message in doubt is tried again soon (once a bind is back)
IN_DOUBT_QUICK_RETRIES = 3  # ... for its first attempts; then the queue's back-off applies
MO_HOLD_SECONDS = 5.0  # a part of a concatenated reply waits this long for the rest before
# it is acknowledged; it is then committed to `SmsChannel.held` first (a restart reloads it) and
# kept until its message is whole or MO_REASSEMBLY_SECONDS passed (then logged as lost)
MO_REASSEMBLY_SECONDS = 600.0
MO_MAX_PENDING = 10_000  # incomplete concatenated replies held (proto.sms.reassembly bound)


def canonical_id(upstream: str, message_id: str) -> str:
    """How an upstream message id is stored: per upstream, lower-case, no leading zeros."""
    return f"{upstream}:{message_id.strip().lower().lstrip('0') or '0'}"


def candidate_ids(upstream: str, message_id: str) -> list[str]:
    """Stored forms a receipt's id may match, the literal one first (hex/decimal tolerant,
    leading zeros and case ignored, a "0x" prefix read as hex)."""
    given = message_id.strip().lower()
    forms = [given]
    body = given
    if given.startswith("0x") and len(given) > 2:
        body = given[2:]
        forms.append(body)
    if body and all(c in "0123456789abcdef" for c in body):
        if body.isdigit() and body is given:
            forms.append(format(int(body), "x"))
        forms.append(str(int(body, 16)))
    return list(dict.fromkeys(canonical_id(upstream, f) for f in forms))


@dataclass(frozen=True, kw_only=True)
class ReceiptReport:
    upstream: str
    candidates: tuple[str, ...]  # stored ids it may be (see candidate_ids)
    # tried once, when `candidates` found nothing for RECEIPT_MATCH_SECONDS (message_id_format
    # "auto": hex <-> decimal conversions; tried late so that a receipt overtaking its
    # submit_sm_resp is not taken for another part whose id reads the same in the other base)
    fallbacks: tuple[str, ...] = ()
    state: ReceiptState
    error: str | None
    raw: str


class ReceiptSink(Protocol):
    async def receipt(self, report: ReceiptReport) -> bool:
        """Store the receipt's effect; True when it matched a submitted part."""
        ...


@dataclass(frozen=True, kw_only=True)
class InboundSms:
    """A mobile-originated message (a reply from a phone), reassembled."""

    upstream: str
    source: str  # the phone: "+E.164" when numeric, else as received
    destination: str  # our number or short code, as received (digits, no "+")
    destination_ton: int
    text: str
    data_coding: int
    parts: int
    received_at: datetime


class InboundSink(Protocol):
    async def inbound(self, sms: InboundSms) -> bool:
        """Route and store the reply; True when an account took it, False when nobody owns
        its destination (logged by the sink). Raising means: not stored, ask the SMSC to
        send it again."""
        ...


class HeldParts(Protocol):
    """Where parts of replies acknowledged before their message was whole are kept
    (store.inbound.HeldReplyParts)."""

    async def save(self, part: HeldPart) -> None:
        """Return once the part is committed; raise if it could not be."""
        ...

    async def load(self) -> list[HeldPart]: ...

    async def forget(self, group: tuple[str, str, str, int, int, int]) -> int: ...


class SmsObserver(Protocol):
    """What the channel tells the runtime's metrics."""

    def submit_status(self, upstream: str, status: str) -> None: ...

    def possible_duplicates(self, upstream: str, parts: int) -> None: ...

    def inbound(self, upstream: str, result: str) -> None: ...


class _Group:
    """Parts of one concatenated reply waiting for the rest (their answers wait too)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()


class SmsChannel:
    name = "sms"
    devices = frozenset({Device.SMS})

    def __init__(
        self,
        *,
        upstreams: Sequence[Upstream],
        accounts: AccountDirectory,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.upstreams = list(upstreams)
        self.accounts = accounts
        self.rng = rng or random.Random()
        self.clock = clock  # for retry_at after a "slow down" answer; None: the system clock
        self._reference = self.rng.randrange(256)
        self.sink: ReceiptSink | None = None
        self.inbound: InboundSink | None = None
        # parts acknowledged before their message was whole; None: held in memory only
        self.held: HeldParts | None = None
        self._saved: set[tuple[str, str, str, int, int, int]] = set()  # groups with rows there
        self.observer: SmsObserver | None = None
        self.routes: RouteTable | None = None  # None: every upstream in order (failover)
        self._default_routes: RouteTable | None = None
        self._account_cache: dict[int, tuple[float, Account]] = {}
        self._reassembler = Reassembler(max_pending=MO_MAX_PENDING)
        self._groups: dict[tuple[object, int, int], _Group] = {}
        self._generation: dict[tuple[str, str, str, int], int] = {}  # bumped when storing failed

    @property
    def ready(self) -> bool:
        return any(u.bound for u in self.upstreams)

    def route_table(self) -> RouteTable:
        if self.routes is not None:
            return self.routes
        names = tuple(u.name for u in self.upstreams)
        if self._default_routes is None or self._default_routes.upstreams != names:
            self._default_routes = RouteTable(routes=(), upstreams=names)
        return self._default_routes

    def choose(
        self, destination: str, *, account: str | None, sender: str | None
    ) -> tuple[Upstream | None, Choice]:
        """The upstream for one message: a healthy bound one if the route has any, else any
        bound one of the route (a failing upstream is a last resort, not excluded)."""
        table = self.route_table()
        if not table.routes:  # the default route: the first healthy bound upstream, in order
            first = next((u for u in self.upstreams if u.bound and u.healthy), None)
            first = first or next((u for u in self.upstreams if u.bound), None)
            names = tuple(u.name for u in self.upstreams if u.bound)
            return first, Choice(route=None, candidates=names)
        by_name = {u.name: u for u in self.upstreams}
        draw = self.rng.random()

        def healthy(name: str) -> bool:
            up = by_name.get(name)
            return up is not None and up.bound and up.healthy

        def bound(name: str) -> bool:
            up = by_name.get(name)
            return up is not None and up.bound

        choice = table.choose(
            destination, account=account, sender=sender, available=healthy, draw=draw
        )
        if choice.upstream is None:
            choice = table.choose(
                destination, account=account, sender=sender, available=bound, draw=draw
            )
        return (by_name[choice.upstream] if choice.upstream else None), choice

    def _observe_status(self, upstream: str, status: int) -> None:
        if self.observer is not None:
            self.observer.submit_status(upstream, status_name(status))

    async def _account(self, account_id: int) -> Account | None:
        cached = self._account_cache.get(account_id)
        if cached and time.monotonic() - cached[0] < 30:
            return cached[1]
        account = await self.accounts.get_account(account_id)
        if account is not None:
            self._account_cache[account_id] = (time.monotonic(), account)
        return account

    async def send(self, delivery: Delivery, message: Message) -> Outcome:
        account = await self._account(message.account_id)
        if account is None:
            return PermanentFailure(
                reason="account no longer exists", channel=self.name, rejected=True
            )
        sender = message.options.sender_id or account.settings.sender_id
        upstream, choice = self.choose(delivery.recipient, account=account.name, sender=sender)
        if upstream is None:
            where = f"route {choice.route}" if choice.route else "any route"
            return TemporaryFailure(reason=f"no upstream bound for {where}", channel=self.name)
        try:
            parts = self._build_parts(delivery, message, account, upstream)
        except (SmsError, ValueError) as exc:
            return PermanentFailure(
                reason=f"cannot encode: {exc}", channel=self.name, rejected=True
            )
        if isinstance(parts, PermanentFailure):
            return parts
        responses: list[Pdu] = []
        try:
            await upstream.submit_parts(parts, responses=responses)
        except NotBound:
            return TemporaryFailure(reason=f"{upstream.name} not bound", channel=self.name)
        except (LinkClosed, ResponseTimedOut, ConnectionError, SmppError) as exc:
            # the link failed mid-way (an unreadable response included): the parts' fate is
            # unknown, the whole message is tried again soon (at-least-once); the parts the
            # SMSC took plus the one in doubt may reach the phone twice
            unsent = isinstance(exc, SmppError) and (
                exc.command_status == CommandStatus.ESME_RINVBNDSTS
            )
            in_doubt = len(responses) + (0 if unsent else 1)
            upstream.mark_failing(FAILING_SECONDS)
            if self.observer is not None and in_doubt:
                self.observer.possible_duplicates(upstream.name, in_doubt)
            soon = self._now() + timedelta(seconds=IN_DOUBT_RETRY_SECONDS)
            return TemporaryFailure(
                reason=f"{upstream.name}: {exc}",
                channel=self.name,
                # once a bind is back; an upstream that keeps failing gets the back-off
                retry_at=soon if delivery.attempts < IN_DOUBT_QUICK_RETRIES else None,
            )
        for response in responses:
            self._observe_status(upstream.name, response.command_status)
        ids = [
            canonical_id(upstream.name, r.message_id)
            for r in responses
            if r.command_status == 0 and hasattr(r, "message_id")
        ]
        last = responses[-1].command_status if responses else CommandStatus.ESME_RSYSERR
        if last == CommandStatus.ESME_ROK and len(ids) == len(parts):
            return Submitted(
                upstream_ids=tuple(ids),
                channel=self.name,
                detail=f"submitted to {upstream.name} in {len(parts)} part(s)",
            )
        word = status_name(last)
        if last in PERMANENT:
            return PermanentFailure(
                reason=f"{upstream.name} refused: {word}", channel=self.name, code=word
            )
        if last in SLOW_DOWN:
            upstream.slow_down(SLOW_DOWN_SECONDS)
            retry_at = self._now() + timedelta(seconds=1 + self.rng.random())
            return TemporaryFailure(
                reason=f"{upstream.name}: {word}", channel=self.name, retry_at=retry_at
            )
        return TemporaryFailure(reason=f"{upstream.name}: {word}", channel=self.name)

    def _now(self) -> datetime:
        return self.clock.now() if self.clock is not None else datetime.now(UTC)

    def _build_parts(
        self, delivery: Delivery, message: Message, account: Account, upstream: Upstream
    ) -> list[SubmitSm] | PermanentFailure:
        settings = account.settings
        s = upstream.settings
        source, ton, npi = _source(message.options.sender_id or settings.sender_id, s)
        # one dict of the fields every part shares; SubmitSm(**base, ...) per part costs a
        # third of dataclasses.replace on this hot path
        base: dict[str, Any] = {
            "source_addr_ton": ton,
            "source_addr_npi": npi,
            "source_addr": source,
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": delivery.recipient.lstrip("+"),
            "registered_delivery": 1,
        }
        content = message.content
        if content.raw is not None and content.data_coding is not None and not content.text:
            return [
                SubmitSm(**base, data_coding=content.data_coding, short_message=content.raw[:140])
            ]
        text = sms_text(message, settings, delivery.recipient)
        self._reference = (self._reference + 1) % 65536
        reference = self._reference % 256 if s.concat == "udh8" else self._reference

        def plan_for(text: str, max_parts: int, concat: str = s.concat) -> SegmentPlan:
            return plan_segments(
                text,
                concat=concat,
                reference=reference if concat == s.concat else 0,
                max_parts=max_parts,
                gsm_packed=s.gsm_packed,
                gsm_data_coding=s.data_coding_gsm,
            )

        plan = plan_for(text, settings.max_sms_parts)
        needed = plan.total_parts  # SMS the text takes on air
        if plan.concat is Concat.PAYLOAD:  # one submit, but the SMSC cuts it into UDH parts
            needed = plan_for(text, 255, "udh8").total_parts
        if needed > 1 and settings.long_sms_policy is LongSmsPolicy.REJECT:
            return PermanentFailure(
                reason=f"text needs {needed} SMS parts and the account allows one",
                channel=self.name,
                rejected=True,
            )
        if needed > 1 and settings.long_sms_policy is LongSmsPolicy.TRUNCATE:
            # the longest start of the text that fits one SMS on its own (no header): the first
            # full-size part of a SAR plan, which never splits an escape or a surrogate pair;
            # 160 characters always hold at least one part's worth
            first = plan_for(text[:160], 255, "sar").parts[0].text
            plan = plan_for(first, 1)
        elif plan.exceeds_max_parts or needed > settings.max_sms_parts:
            return PermanentFailure(
                reason=f"text needs {needed} SMS parts, the account allows {settings.max_sms_parts}",
                channel=self.name,
                rejected=True,
            )
        parts: list[SubmitSm] = []
        for segment in plan.parts:
            if plan.concat is Concat.PAYLOAD:
                # short_message of a payload plan has no header: the text, packed if asked
                parts.append(
                    SubmitSm(
                        **base,
                        data_coding=plan.data_coding,
                        tlvs=(Tlv.octets(Tag.MESSAGE_PAYLOAD, segment.short_message),),
                    )
                )
                continue
            tlvs: tuple[Tlv, ...] = ()
            if segment.sar is not None:
                ref, total, seq = segment.sar
                tlvs = (
                    Tlv.int(Tag.SAR_MSG_REF_NUM, ref),
                    Tlv.int(Tag.SAR_TOTAL_SEGMENTS, total),
                    Tlv.int(Tag.SAR_SEGMENT_SEQNUM, seq),
                )
            parts.append(
                SubmitSm(
                    **base,
                    data_coding=plan.data_coding,
                    esm_class=EsmClass.UDHI if segment.udh else 0,
                    short_message=segment.short_message,
                    tlvs=tlvs,
                )
            )
        return parts

    async def on_deliver(self, upstream: Upstream, pdu: DeliverSm | DataSm) -> int:
        """Handle a deliver_sm/data_sm from an upstream; return the command_status to answer."""
        report = _receipt_report(upstream.name, pdu, upstream.settings.message_id_format)
        if report is None:
            return await self._on_mobile_originated(upstream, pdu)
        if self.sink is None:
            return CommandStatus.ESME_RX_T_APPN
        deadline = time.monotonic() + RECEIPT_MATCH_SECONDS
        while True:
            try:
                matched = await self.sink.receipt(report)
            except Exception:
                logger.exception(
                    "%s: could not store a receipt; the SMSC will retry", upstream.name
                )
                return CommandStatus.ESME_RX_T_APPN
            if matched or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.25)
        if not matched and report.fallbacks:
            try:
                matched = await self.sink.receipt(
                    replace(report, candidates=report.fallbacks, fallbacks=())
                )
            except Exception:
                logger.exception(
                    "%s: could not store a receipt; the SMSC will retry", upstream.name
                )
                return CommandStatus.ESME_RX_T_APPN
        if not matched:
            logger.warning(
                "%s: receipt for unknown message %s: %s",
                upstream.name,
                report.candidates[0],
                report.raw,
            )
        return CommandStatus.ESME_ROK

    async def _on_mobile_originated(self, upstream: Upstream, pdu: DeliverSm | DataSm) -> int:
        """A reply from a phone: reassemble, hand to the InboundSink, answer.

        The last part of a message is answered once the whole message is stored; earlier
        parts wait for that (up to MO_HOLD_SECONDS) so that a crash before storing makes the
        SMSC send them again. A part the SMSC repeats is a duplicate (ignored, answered OK)."""
        now = time.monotonic()
        for lost in self._reassembler.expire(now, MO_REASSEMBLY_SECONDS):
            logger.warning(
                "%s: reply from %s lost: parts %s of %d never came",
                upstream.name,
                lost.key_source,
                ",".join(map(str, lost.missing)),
                lost.total,
            )
            self._observe_inbound(upstream.name, "incomplete")
            key_source: Any = lost.key_source
            await self._forget((*key_source[:4], lost.reference, lost.total))
        data = _payload(pdu)
        concat: tuple[int, int, int] | None = None  # reference, total, number
        if pdu.esm_class & EsmClass.UDHI and data:
            try:
                elements, data = parse_udh(data)
            except SmsError as exc:
                logger.warning("%s: reply with a broken UDH refused: %s", upstream.name, exc)
                self._observe_inbound(upstream.name, "malformed")
                return CommandStatus.ESME_RINVESMCLASS
            info = find_concat(elements)
            if info is not None:
                concat = (info.reference, info.total, info.seq)
        if concat is None:
            sar = [v for v in (pdu.tlv(tag) for tag in _SAR_TAGS) if isinstance(v, int)]
            if len(sar) == len(_SAR_TAGS):
                concat = (sar[0], sar[1], sar[2])
        sender_key = (upstream.name, pdu.source_addr, pdu.destination_addr, pdu.data_coding)
        source_key = (*sender_key, self._generation.get(sender_key, 0))
        reference, total, number = concat or (0, 1, 1)
        try:
            whole = self._reassembler.add(source_key, number, total, reference, data, now)
        except SmsError:  # an impossible part number: a plain message (TS 23.040 9.2.3.24.1)
            reference, total = 0, 1
            whole = self._reassembler.add(source_key, 1, 1, 0, data, now)
        key = (source_key, reference, total)
        if whole is None:
            group = self._groups.get(key)
            if group is None:
                if len(self._groups) >= MO_MAX_PENDING:
                    return CommandStatus.ESME_ROK  # held in memory only; answered at once
                group = self._groups[key] = _Group()
            try:
                return await asyncio.wait_for(asyncio.shield(group.done), MO_HOLD_SECONDS)
            except TimeoutError:
                # kept by the reassembler until the rest comes, and committed before the OK
                return await self._hold(upstream, pdu, reference, total, number, data)
        group = self._groups.pop(key, None)
        status = await self._store_inbound(upstream, pdu, whole.payload, total)
        if group is not None and not group.done.done():
            group.done.set_result(status)
        if status == CommandStatus.ESME_ROK:
            await self._forget((*sender_key, reference, total))
        return status

    async def _hold(
        self,
        upstream: Upstream,
        pdu: DeliverSm | DataSm,
        reference: int,
        total: int,
        number: int,
        data: bytes,
    ) -> int:
        """Commit a part that is answered before its message is whole (see MO_HOLD_SECONDS)."""
        if self.held is None:
            return CommandStatus.ESME_ROK
        part = HeldPart(
            upstream=upstream.name,
            source_addr=pdu.source_addr,
            destination_addr=pdu.destination_addr,
            data_coding=pdu.data_coding,
            reference=reference,
            total=total,
            number=number,
            payload=data,
            received_at=self._now(),
        )
        try:
            await self.held.save(part)
        except Exception:
            # still held in memory: the SMSC's retry is a duplicate that waits here again
            logger.exception("%s: could not keep a reply part; the SMSC will retry", upstream.name)
            return CommandStatus.ESME_RX_T_APPN
        self._saved.add(part.group)
        return CommandStatus.ESME_ROK

    async def _forget(self, group: tuple[str, str, str, int, int, int]) -> None:
        if self.held is None or group not in self._saved:
            return
        self._saved.discard(group)
        try:
            await self.held.forget(group)
        except Exception:  # reloaded after a restart, then given up as incomplete (logged)
            logger.exception("could not drop the kept parts of a reply from %s", group[1])

    async def restore_held(self) -> int:
        """After a restart: put the parts kept by `held` back into the reassembler, so the
        rest of their messages completes them. Return how many parts were restored."""
        if self.held is None:
            return 0
        parts = await self.held.load()
        now = time.monotonic()
        by_name = {u.name: u for u in self.upstreams}
        for part in parts:
            self._saved.add(part.group)
            source_key = (
                part.upstream,
                part.source_addr,
                part.destination_addr,
                part.data_coding,
                0,
            )
            try:
                whole = self._reassembler.add(
                    source_key, part.number, part.total, part.reference, part.payload, now
                )
            except SmsError as exc:  # not written by this version: give it up
                logger.warning("kept reply part refused: %s", exc)
                await self._forget(part.group)
                continue
            upstream = by_name.get(part.upstream)
            if whole is not None and upstream is not None:
                # every part was answered already (e.g. storing failed after the last one)
                pdu = DeliverSm(
                    source_addr=part.source_addr,
                    destination_addr=part.destination_addr,
                    data_coding=part.data_coding,
                )
                status = await self._store_inbound(upstream, pdu, whole.payload, part.total)
                if status == CommandStatus.ESME_ROK:
                    await self._forget(part.group)
        if parts:
            logger.info("%d kept part(s) of incomplete replies restored", len(parts))
        return len(parts)

    async def _store_inbound(
        self, upstream: Upstream, pdu: DeliverSm | DataSm, data: bytes, parts: int
    ) -> int:
        try:
            encoding = encoding_for_data_coding(pdu.data_coding)
        except ValueError:
            encoding = None
        text = data.decode("latin-1") if encoding is None else decode_text(data, encoding)
        source = pdu.source_addr
        if source.isdigit() and pdu.source_addr_ton in (0, 1):
            source = "+" + source
        sms = InboundSms(
            upstream=upstream.name,
            source=source,
            destination=pdu.destination_addr,
            destination_ton=pdu.dest_addr_ton,
            text=text,
            data_coding=pdu.data_coding,
            parts=parts,
            received_at=self._now(),
        )
        if self.inbound is None:
            logger.warning(
                "%s: reply from %s to %s not routed: no inbound handler",
                upstream.name,
                pdu.source_addr,
                pdu.destination_addr,
            )
            self._observe_inbound(upstream.name, "unrouted")
            return CommandStatus.ESME_ROK
        try:
            routed = await self.inbound.inbound(sms)
        except Exception:
            logger.exception("%s: could not store a reply; the SMSC will retry", upstream.name)
            self._observe_inbound(upstream.name, "error")
            if parts > 1:  # the reassembler saw these parts: the resent ones open a new group
                key = (upstream.name, pdu.source_addr, pdu.destination_addr, pdu.data_coding)
                self._generation[key] = self._generation.get(key, 0) + 1
            return CommandStatus.ESME_RX_T_APPN
        self._observe_inbound(upstream.name, "routed" if routed else "unrouted")
        return CommandStatus.ESME_ROK

    def _observe_inbound(self, upstream: str, result: str) -> None:
        if self.observer is not None:
            self.observer.inbound(upstream, result)


_SAR_TAGS = (Tag.SAR_MSG_REF_NUM, Tag.SAR_TOTAL_SEGMENTS, Tag.SAR_SEGMENT_SEQNUM)


def _payload(pdu: DeliverSm | DataSm) -> bytes:
    if isinstance(pdu, DeliverSm) and pdu.short_message:
        return pdu.short_message
    value = pdu.tlv(Tag.MESSAGE_PAYLOAD)
    return value if isinstance(value, bytes) else b""


def _source(sender: str | None, s: UpstreamSettings) -> tuple[str, int, int]:
    """source_addr with TON/NPI: international numbers TON 1/NPI 1, alphanumeric TON 5/NPI 0."""
    if not sender:
        return s.source_addr, s.source_ton, s.source_npi
    digits = sender.lstrip("+")
    if digits.isdigit():
        return digits, 1, 1
    return sender[:11], 5, 0


def _receipt_report(
    upstream: str, pdu: DeliverSm | DataSm, id_format: str = "auto"
) -> ReceiptReport | None:
    tlv_id = pdu.tlv(Tag.RECEIPTED_MESSAGE_ID)
    is_receipt = esm_message_type(pdu.esm_class) == EsmClass.DELIVERY_RECEIPT
    if not is_receipt and tlv_id is None:
        return None
    text = pdu.short_message.decode("latin-1") if isinstance(pdu, DeliverSm) else ""
    parsed = None
    if text:
        try:
            parsed = parse_receipt_text(text)
        except SmsError:
            parsed = None
    message_id = str(tlv_id) if tlv_id else (parsed.message_id if parsed else "")
    if not message_id:
        return None
    state_tlv = pdu.tlv(Tag.MESSAGE_STATE)
    state: ReceiptState | None = None
    if isinstance(state_tlv, int) and state_tlv in ReceiptState._value2member_map_:
        state = ReceiptState(state_tlv)
    elif parsed is not None:
        state = parsed.state
    literal = canonical_id(upstream, message_id)
    if id_format == "decimal":  # same ids in responses and receipts
        candidates, fallbacks = [literal], list[str]()
    elif id_format == "hex" and not tlv_id and message_id.strip().isdigit():
        # the quirk: submit_sm_resp in hex, the receipt text in decimal (the receipted_message_id
        # TLV, when present, carries the response's own form)
        candidates, fallbacks = [canonical_id(upstream, format(int(message_id), "x"))], []
    else:
        every = candidate_ids(upstream, message_id)
        candidates, fallbacks = every[:1], every[1:]
    return ReceiptReport(
        upstream=upstream,
        candidates=tuple(candidates),
        fallbacks=tuple(fallbacks),
        state=state or ReceiptState.UNKNOWN,
        error=parsed.err if parsed else None,
        raw=text,
    )
