"""The SMS channel: a delivery becomes one or more submit_sm to an upstream SMSC.

Text comes from the account's template (`core.templates`), encoding and segmentation from
`proto.sms.plan_segments` with the upstream's concatenation style, and the final outcome from
the SMSC's delivery receipt, which `on_deliver` hands to the `ReceiptSink` (the runtime stores
it) before the receipt is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from teleway.channels.sms.upstream import NotBound, Upstream, UpstreamSettings
from teleway.core.model import Account, Delivery, Device, LongSmsPolicy, Message
from teleway.core.outcome import Outcome, PermanentFailure, Submitted, TemporaryFailure
from teleway.core.ports import AccountDirectory, Clock
from teleway.core.templates import sms_text
from teleway.proto.smpp.constants import CommandStatus, EsmClass, Tag, esm_message_type, status_name
from teleway.proto.smpp.errors import SmppError
from teleway.proto.smpp.pdu import DataSm, DeliverSm, SubmitSm
from teleway.proto.smpp.tlv import Tlv
from teleway.proto.sms.errors import SmsError
from teleway.proto.sms.receipt import ReceiptState, parse_receipt_text
from teleway.proto.sms.segments import Concat, SegmentPlan, plan_segments
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
    state: ReceiptState
    error: str | None
    raw: str


class ReceiptSink(Protocol):
    async def receipt(self, report: ReceiptReport) -> bool:
        """Store the receipt's effect; True when it matched a submitted part."""
        ...


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
        self._account_cache: dict[int, tuple[float, Account]] = {}

    @property
    def ready(self) -> bool:
        return any(u.bound for u in self.upstreams)

    async def _account(self, account_id: int) -> Account | None:
        cached = self._account_cache.get(account_id)
        if cached and time.monotonic() - cached[0] < 30:
            return cached[1]
        account = await self.accounts.get_account(account_id)
        if account is not None:
            self._account_cache[account_id] = (time.monotonic(), account)
        return account

    def _pick(self) -> Upstream | None:
        """The first bound upstream in configured order (failover); routing comes later."""
        return next((u for u in self.upstreams if u.bound), None)

    async def send(self, delivery: Delivery, message: Message) -> Outcome:
        upstream = self._pick()
        if upstream is None:
            return TemporaryFailure(reason="no upstream bound", channel=self.name)
        account = await self._account(message.account_id)
        if account is None:
            return PermanentFailure(
                reason="account no longer exists", channel=self.name, rejected=True
            )
        try:
            parts = self._build_parts(delivery, message, account, upstream)
        except (SmsError, ValueError) as exc:
            return PermanentFailure(
                reason=f"cannot encode: {exc}", channel=self.name, rejected=True
            )
        if isinstance(parts, PermanentFailure):
            return parts
        try:
            responses = await upstream.submit_parts(parts)
        except NotBound:
            return TemporaryFailure(reason=f"{upstream.name} not bound", channel=self.name)
        except (LinkClosed, ResponseTimedOut, ConnectionError, SmppError) as exc:
            # the link failed mid-way (an unreadable response included): the parts' fate is
            # unknown, the whole message is tried again (at-least-once)
            return TemporaryFailure(reason=f"{upstream.name}: {exc}", channel=self.name)
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
            now = self.clock.now() if self.clock is not None else datetime.now(UTC)
            retry_at = now + timedelta(seconds=1 + self.rng.random())
            return TemporaryFailure(
                reason=f"{upstream.name}: {word}", channel=self.name, retry_at=retry_at
            )
        return TemporaryFailure(reason=f"{upstream.name}: {word}", channel=self.name)

    def _build_parts(
        self, delivery: Delivery, message: Message, account: Account, upstream: Upstream
    ) -> list[SubmitSm] | PermanentFailure:
        settings = account.settings
        s = upstream.settings
        source, ton, npi = _source(message.options.sender_id or settings.sender_id, s)
        base = SubmitSm(
            source_addr_ton=ton,
            source_addr_npi=npi,
            source_addr=source,
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr=delivery.recipient.lstrip("+"),
            registered_delivery=1,
        )
        content = message.content
        if content.raw is not None and content.data_coding is not None and not content.text:
            return [base.replace(data_coding=content.data_coding, short_message=content.raw[:140])]
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
                    base.replace(
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
                base.replace(
                    data_coding=plan.data_coding,
                    esm_class=EsmClass.UDHI if segment.udh else 0,
                    short_message=segment.short_message,
                    tlvs=tlvs,
                )
            )
        return parts

    async def on_deliver(self, upstream: Upstream, pdu: DeliverSm | DataSm) -> int:
        """Handle a deliver_sm/data_sm from an upstream; return the command_status to answer."""
        report = _receipt_report(upstream.name, pdu)
        if report is None:
            logger.warning(
                "%s: mobile-originated message from %s to %s not routed (no MO routing yet)",
                upstream.name,
                pdu.source_addr,
                pdu.destination_addr,
            )
            return CommandStatus.ESME_ROK
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
        if not matched:
            logger.warning(
                "%s: receipt for unknown message %s: %s",
                upstream.name,
                report.candidates[0],
                report.raw,
            )
        return CommandStatus.ESME_ROK


def _source(sender: str | None, s: UpstreamSettings) -> tuple[str, int, int]:
    """source_addr with TON/NPI: international numbers TON 1/NPI 1, alphanumeric TON 5/NPI 0."""
    if not sender:
        return s.source_addr, s.source_ton, s.source_npi
    digits = sender.lstrip("+")
    if digits.isdigit():
        return digits, 1, 1
    return sender[:11], 5, 0


def _receipt_report(upstream: str, pdu: DeliverSm | DataSm) -> ReceiptReport | None:
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
    return ReceiptReport(
        upstream=upstream,
        candidates=tuple(candidate_ids(upstream, message_id)),
        state=state or ReceiptState.UNKNOWN,
        error=parsed.err if parsed else None,
        raw=text,
    )
