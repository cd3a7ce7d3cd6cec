"""Applying what upstreams report later: delivery receipts, part by part, and replies.

A message of several SMS parts is delivered when every part is; it fails as soon as one part
is reported failed (the rest of the text is useless without it). Replies from phones (MO) are
routed to an account's outbox by `Replies`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from teleway.channels.sms.channel import InboundSms, ReceiptReport
from teleway.core.model import Delivery, DeliveryState, Origin, OutboxKind
from teleway.core.ports import AccountDirectory, Clock, Outbox, WorkQueue
from teleway.proto.sms.receipt import ReceiptState
from teleway.runtime.logs import log
from teleway.runtime.metrics import Metrics
from teleway.store.inbound import Conversation, lookup_forms

logger = logging.getLogger("teleway.outcomes")

# receipt state of one part -> the delivery's final state when that part decides it
FAILED_PART: dict[ReceiptState, DeliveryState] = {
    ReceiptState.UNDELIVERABLE: DeliveryState.UNDELIVERABLE,
    ReceiptState.REJECTED: DeliveryState.REJECTED,
    ReceiptState.EXPIRED: DeliveryState.EXPIRED,
    ReceiptState.DELETED: DeliveryState.CANCELLED,
    ReceiptState.UNKNOWN: DeliveryState.UNDELIVERABLE,
}
# receipt states that say "not yet": they never decide a delivery, nor hide a final part state
INTERIM = frozenset({ReceiptState.ENROUTE, ReceiptState.ACCEPTED})


class PartStore(Protocol):
    async def record_receipt(
        self, candidates: Sequence[str], stat: str, now: datetime, *, interim: bool = False
    ) -> tuple[Delivery, list[str | None]] | None:
        """Mark the first stored upstream id among `candidates` with `stat`; return its delivery
        and the stat of every part of that delivery (None: no receipt yet). An `interim` stat
        does not replace a part's stat already recorded."""
        ...


class Receipts:
    """The SMS channel's ReceiptSink: stores part outcomes and finishes deliveries."""

    def __init__(self, *, parts: PartStore, queue: WorkQueue, clock: Clock, metrics: Metrics):
        self.parts = parts
        self.queue = queue
        self.clock = clock
        self.metrics = metrics

    async def receipt(self, report: ReceiptReport) -> bool:
        now = self.clock.now()
        stat = report.state.stat_word
        found = await self.parts.record_receipt(
            report.candidates, stat, now, interim=report.state in INTERIM
        )
        self.metrics.receipts.labels(report.upstream, stat, str(found is not None).lower()).inc()
        if found is None:
            return False
        delivery, states = found
        if delivery.state is not DeliveryState.IN_FLIGHT:
            return True  # already final (duplicate receipt) or a retry is under way
        detail = f"receipt from {report.upstream}: {stat}" + (
            f" err:{report.error}" if report.error else ""
        )
        target: DeliveryState | None = None
        failed = [s for s in states if s and ReceiptState.from_stat_word(s) in FAILED_PART]
        if failed:
            part_state = ReceiptState.from_stat_word(failed[0])
            assert part_state is not None
            target = FAILED_PART[part_state]
        elif states and all(s == ReceiptState.DELIVERED.stat_word for s in states):
            target = DeliveryState.DELIVERED
        if target is None:
            return True  # intermediate (ENROUTE, ACCEPTD) or parts still pending
        updated = await self.queue.transition(
            delivery.id,
            target,
            now=now,
            reason=detail,
            error=None
            if target is DeliveryState.DELIVERED
            else f"{stat} {report.error or ''}".strip(),
        )
        if updated is not None:
            log(
                logger,
                logging.INFO,
                str(target).upper(),
                delivery=updated.id,
                recipient=updated.recipient,
                receipt=detail,
            )
            self.metrics.deliveries.labels(updated.channel or "sms", str(target), stat).inc()
            elapsed = (updated.updated_at - updated.created_at).total_seconds()
            self.metrics.delivery_seconds.labels(updated.channel or "sms", str(target)).observe(
                elapsed
            )
        return True


THREAD_WINDOW = timedelta(days=7)  # a reply threads to messages sent this recently
INBOUND_VALIDITY = timedelta(days=3)  # a reply nobody fetched is dropped after this long


class InboundStore(Protocol):
    async def owner(self, forms: Sequence[str]) -> int | None: ...

    async def conversations(self, phone: str, since: datetime) -> list[Conversation]: ...


class Replies:
    """The SMS channel's InboundSink: decides which account (and how) a reply from a phone
    reaches, and commits it to the outbox before the SMSC is answered.

    Threading rule (docs/sms.md, "Replies"): the newest message sent to the replying phone in
    the last 7 days whose sender id (the message's own, else its account's, else the
    upstream's default source address) is the number the phone wrote to, and that came by
    e-mail, SMPP or HTTP, takes the reply: same account, same way back (an e-mail to the
    original sender for SMTP). Otherwise the account owning the number written to (`teleway
    admin number add`) gets it for its ESMEs. Otherwise it is logged and counted, unrouted.
    """

    def __init__(
        self,
        *,
        numbers: InboundStore,
        outbox: Outbox,
        accounts: AccountDirectory,
        clock: Clock,
        default_sources: Mapping[str, str],
    ) -> None:
        self.numbers = numbers
        self.outbox = outbox
        self.accounts = accounts
        self.clock = clock
        self.default_sources = default_sources  # upstream name -> its source_addr

    async def inbound(self, sms: InboundSms) -> bool:
        now = self.clock.now()
        payload: dict[str, Any] = {
            "from": sms.source,
            "to": sms.destination,
            "text": sms.text,
            "data_coding": sms.data_coding,
            "received_at": sms.received_at.isoformat(),
            "upstream": sms.upstream,
            "parts": sms.parts,
        }
        thread = await self._thread(sms, now)
        if thread is not None:
            origin = thread.origin
            account_id = thread.account_id
            payload["message_id"] = thread.message_id
            if origin is Origin.SMTP:
                payload["reply_to"] = thread.submitter
            how = f"threaded to message {thread.message_id}"
        else:
            owner = await self.numbers.owner(lookup_forms(sms.destination))
            if owner is None:
                log(
                    logger,
                    logging.WARNING,
                    "reply not routed: no account owns the number and no conversation matches",
                    upstream=sms.upstream,
                    to=sms.destination,
                    parts=sms.parts,
                )
                return False
            origin, account_id, how = Origin.SMPP, owner, "number owned by the account"
        item = await self.outbox.add(
            kind=OutboxKind.INBOUND,
            origin=origin,
            account_id=account_id,
            payload=payload,
            now=now,
            valid_until=now + INBOUND_VALIDITY,
            message_id=payload.get("message_id"),
        )
        log(
            logger,
            logging.INFO,
            "reply routed",
            upstream=sms.upstream,
            to=sms.destination,
            account=account_id,
            origin=str(origin),
            how=how,
            outbox=item,
        )
        return True

    async def _thread(self, sms: InboundSms, now: datetime) -> Conversation | None:
        if not sms.source.startswith("+"):
            return None  # only phones with an international number are threaded
        written_to = sms.destination.lstrip("+")
        for conversation in await self.numbers.conversations(sms.source, now - THREAD_WINDOW):
            if conversation.origin not in (Origin.SMTP, Origin.SMPP, Origin.HTTP):
                continue
            sender = conversation.sender_id
            if sender is None:
                account = await self.accounts.get_account(conversation.account_id)
                sender = account.settings.sender_id if account is not None else None
            if sender is None:
                sender = self.default_sources.get(sms.upstream)
            if sender is not None and sender.lstrip("+") == written_to:
                return conversation
        return None


class SmsMetrics:
    """The SMS channel's SmsObserver: counters in runtime.metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def submit_status(self, upstream: str, status: str) -> None:
        self.metrics.upstream_submits.labels(upstream, status).inc()

    def possible_duplicates(self, upstream: str, parts: int) -> None:
        self.metrics.possible_duplicates.labels(upstream).inc(parts)

    def inbound(self, upstream: str, result: str) -> None:
        self.metrics.inbound.labels(upstream, result).inc()
