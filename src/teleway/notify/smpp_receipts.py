"""Delivery receipts and replies (MO) to the ESMEs bound to this node, from the outbox.

`SmppReporter` leases the SMPP outbox items of the accounts that have a receiver or
transceiver bound here (so with several nodes each item goes out through the node its ESME is
bound to; an account with no receiver bound anywhere keeps its items until one binds, or until
their validity ends). Items of one account are sent in outbox order, pipelined through the
bind's window:

* REPORT -> deliver_sm with esm_class 0x04 (SMSC delivery receipt), the Appendix B receipt
  text, and the receipted_message_id, message_state and (for failures) network_error_code
  TLVs (SMPP v3.4 5.3.2.12, 5.3.2.35, 5.3.2.31); addresses are the original ones swapped;
* INBOUND -> deliver_sm with the reply's text (GSM 03.38 when it fits, else UCS-2; longer
  than one short_message -> message_payload TLV).

deliver_sm_resp ESME_ROK -> `done`; an error status, a timeout or a lost link -> `retry`
with back-off (never dropped before the item's validity ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from teleway.core.lifecycle import RECEIPT_STAT, SMPP_MESSAGE_STATE
from teleway.core.model import (
    DeliveryState,
    Message,
    Origin,
    OutboxItem,
    OutboxKind,
)
from teleway.core.ports import Clock, Outbox, StoreUnavailable
from teleway.proto.smpp.constants import CommandStatus, EsmClass, Tag
from teleway.proto.smpp.pdu import DeliverSm, Pdu
from teleway.proto.smpp.tlv import Tlv
from teleway.proto.sms.alphabets import Encoding, encode_text
from teleway.proto.sms.receipt import build_receipt_text
from teleway.proto.sms.segments import choose_encoding

logger = logging.getLogger("teleway.notify.smpp")

MAX_SHORT_MESSAGE = 254  # spec 5.2.21: longer user data goes in message_payload (5.3.2.32)
#: network_error_code type octet (5.3.2.31): 3 = GSM
_GSM_NETWORK = 3
_ERROR_NUMBER = re.compile(r"\b(?:err(?:or)?[:= ]\s*)?(\d{1,3})\b")


class ReceiverLink(Protocol):
    """`transport.smpp.SmppLink` as seen from here."""

    async def request(self, pdu: Pdu) -> Pdu: ...


class ReceiverBind(Protocol):
    @property
    def link(self) -> Any: ...


class Receivers(Protocol):
    """`ingress.smpp_server.BindRegistry` as seen from here."""

    changed: asyncio.Event

    def receiver_accounts(self) -> list[int]: ...

    def receiver(self, account_id: int) -> ReceiverBind | None: ...


class MessageLookup(Protocol):
    async def get_message(self, message_id: str) -> Message | None: ...


class ReportObserver(Protocol):
    def sent(self, kind: str, result: str) -> None: ...


class _NoObserver:
    def sent(self, kind: str, result: str) -> None:
        return None


@dataclass(frozen=True, kw_only=True)
class ReporterSettings:
    worker: str
    batch: int = 200  # items leased at once
    lease_for: timedelta = timedelta(seconds=60)
    poll: float = 1.0  # seconds between looks when nothing woke us (other nodes' items)
    retry_base: float = 5.0  # back-off after a failed attempt: base * attempts, capped
    retry_max: float = 300.0


class SmppReporter:
    def __init__(
        self,
        *,
        outbox: Outbox,
        messages: MessageLookup,
        receivers: Receivers,
        clock: Clock,
        settings: ReporterSettings,
        observer: ReportObserver | None = None,
    ) -> None:
        self.outbox = outbox
        self.messages = messages
        self.receivers = receivers
        self.clock = clock
        self.settings = settings
        self.observer: ReportObserver = observer or _NoObserver()
        self._stopping = asyncio.Event()
        self._messages: OrderedDict[str, Message | None] = OrderedDict()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Until `stop()`: lease, send, record the outcome."""
        while not self._stopping.is_set():
            try:
                sent = await self.run_once()
            except StoreUnavailable as exc:
                logger.warning("outbox unavailable: %s", exc)
                sent = 0
            except Exception:
                logger.exception("SMPP reporter failed; going on")
                sent = 0
            if not sent:
                await self._idle()

    async def _idle(self) -> None:
        changed = self.receivers.changed
        waits = {
            asyncio.ensure_future(self.outbox.wait(self.settings.poll, origin=Origin.SMPP)),
            asyncio.ensure_future(changed.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            changed.clear()

    async def run_once(self) -> int:
        """One lease-and-send round; returns the number of items leased."""
        accounts = self.receivers.receiver_accounts()
        if not accounts:
            return 0
        now = self.clock.now()
        items = await self.outbox.lease(
            origin=Origin.SMPP,
            worker=self.settings.worker,
            now=now,
            limit=self.settings.batch,
            lease_for=self.settings.lease_for,
            accounts=accounts,
        )
        if not items:
            return 0
        by_account: dict[int, list[OutboxItem]] = {}
        for item in items:
            by_account.setdefault(item.account_id, []).append(item)
        await asyncio.gather(*(self._send_account(a, i) for a, i in by_account.items()))
        return len(items)

    async def _send_account(self, account_id: int, items: Sequence[OutboxItem]) -> None:
        bind = self.receivers.receiver(account_id)
        if bind is None:  # it unbound since the lease: offer them again soon
            for item in items:
                await self._retry(item, "no receiver bound", immediate=True)
            return
        # started in outbox order: the link sends them in that order as its window allows
        tasks = [asyncio.create_task(self._send(bind.link, item)) for item in items]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, link: ReceiverLink, item: OutboxItem) -> None:
        kind = str(item.kind)
        try:
            pdu = await self.deliver_sm_for(item)
        except Exception as exc:  # a payload we cannot turn into a PDU will never be sendable
            logger.exception("outbox item %d cannot be sent", item.id)
            await self.outbox.drop(item.id, now=self.clock.now(), error=f"unusable: {exc}")
            self.observer.sent(kind, "dropped")
            return
        try:
            response = await link.request(pdu)
        except (ConnectionError, TimeoutError, OSError) as exc:
            await self._retry(item, f"{type(exc).__name__}: {exc}")
            self.observer.sent(kind, "retry")
            return
        except Exception as exc:  # e.g. SmppError: the bind cannot take deliver_sm now
            await self._retry(item, str(exc))
            self.observer.sent(kind, "retry")
            return
        if response.command_status == CommandStatus.ESME_ROK:
            await self.outbox.done(item.id, now=self.clock.now())
            self.observer.sent(kind, "sent")
        else:
            await self._retry(item, f"deliver_sm_resp {response.status_name}")
            self.observer.sent(kind, "retry")

    async def _retry(self, item: OutboxItem, error: str, *, immediate: bool = False) -> None:
        now = self.clock.now()
        s = self.settings
        delay = 0.0 if immediate else min(s.retry_max, s.retry_base * max(1, item.attempts))
        logger.info("outbox item %d: %s; again in %.0f s", item.id, error, delay)
        with contextlib.suppress(StoreUnavailable):
            await self.outbox.retry(
                item.id, now=now, at=now + timedelta(seconds=delay), error=error
            )

    async def _message(self, message_id: str | None) -> Message | None:
        if message_id is None:
            return None
        if message_id in self._messages:
            self._messages.move_to_end(message_id)
            return self._messages[message_id]
        message = await self.messages.get_message(message_id)
        self._messages[message_id] = message
        if len(self._messages) > 4096:
            self._messages.popitem(last=False)
        return message

    async def deliver_sm_for(self, item: OutboxItem) -> DeliverSm:
        if item.kind is OutboxKind.INBOUND:
            return inbound_deliver_sm(item.payload)
        return receipt_deliver_sm(item, await self._message(item.message_id))


def _addresses(message: Message | None, item: OutboxItem) -> tuple[int, int, str, int, int, str]:
    """(source ton, npi, addr, dest ton, npi, addr) of a receipt: the original ones swapped."""
    extra = message.options.extra if message is not None else {}
    recipient = str(item.payload.get("recipient") or "")
    source = str(extra.get("destination_addr") or recipient.lstrip("+"))
    source_ton = int(extra.get("dest_addr_ton", 1))
    dest = str(extra.get("source_addr") or "")
    dest_ton = int(extra.get("source_addr_ton", 0))
    dest_npi = int(extra.get("source_addr_npi", 0))
    return source_ton, 1, source, dest_ton, dest_npi, dest


def network_error(error: str | None) -> int | None:
    """The error number in an upstream's error text ("err:034", "ESME_R... err 34"), if any."""
    if not error:
        return None
    match = _ERROR_NUMBER.search(error)
    return int(match.group(1)) if match else None


def receipt_deliver_sm(item: OutboxItem, message: Message | None) -> DeliverSm:
    """The delivery receipt for a REPORT item (SMPP v3.4 Appendix B and 5.3.2)."""
    state = item.state or DeliveryState.UNDELIVERABLE
    assert item.message_id is not None
    payload = item.payload
    submitted_at = datetime.fromtimestamp(float(payload.get("submitted_at") or 0), UTC)
    text = ""
    if message is not None:
        text = message.content.text
    delivered = 1 if state is DeliveryState.DELIVERED else 0
    error = network_error(payload.get("error")) if state.is_final and not delivered else None
    receipt = build_receipt_text(
        message_id=item.message_id,
        submitted=1,
        delivered=delivered,
        submit_date=submitted_at,
        done_date=item.created_at.astimezone(UTC),
        stat=RECEIPT_STAT[state],
        err=error or 0,
        text="".join(ch if ch.isprintable() else " " for ch in text),
    )
    tlvs = [
        Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, item.message_id),
        Tlv.int(Tag.MESSAGE_STATE, SMPP_MESSAGE_STATE[state]),
    ]
    if error is not None:
        tlvs.append(Tlv.octets(Tag.NETWORK_ERROR_CODE, bytes((_GSM_NETWORK,)) + error.to_bytes(2)))
    source_ton, source_npi, source, dest_ton, dest_npi, dest = _addresses(message, item)
    esm_class = EsmClass.DELIVERY_RECEIPT if state.is_final else EsmClass.INTERMEDIATE_NOTIFICATION
    return DeliverSm(
        source_addr_ton=source_ton,
        source_addr_npi=source_npi,
        source_addr=source,
        dest_addr_ton=dest_ton,
        dest_addr_npi=dest_npi,
        destination_addr=dest,
        esm_class=esm_class,
        short_message=receipt.encode("ascii", "replace"),
        tlvs=tuple(tlvs),
    )


def inbound_deliver_sm(payload: dict[str, Any]) -> DeliverSm:
    """A reply from a phone (MO) for the ESME."""
    text = str(payload.get("text") or "")
    encoding = choose_encoding(text)
    data = encode_text(text, encoding)
    data_coding = 8 if encoding is Encoding.UCS2 else 0
    sender = str(payload.get("from") or "")
    to = str(payload.get("to") or "")
    short_message: bytes = data
    tlvs: tuple[Tlv, ...] = ()
    if len(data) > MAX_SHORT_MESSAGE:
        short_message, tlvs = b"", (Tlv.octets(Tag.MESSAGE_PAYLOAD, data),)
    return DeliverSm(
        source_addr_ton=1 if sender.startswith("+") else 0,
        source_addr_npi=1,
        source_addr=sender.lstrip("+"),
        dest_addr_ton=1 if to.startswith("+") else (5 if to and not to.isdigit() else 0),
        dest_addr_npi=1 if to.startswith("+") else 0,
        destination_addr=to.lstrip("+"),
        data_coding=data_coding,
        short_message=short_message,
        tlvs=tlvs,
    )
