"""Applying what upstreams report later: delivery receipts, part by part.

A message of several SMS parts is delivered when every part is; it fails as soon as one part
is reported failed (the rest of the text is useless without it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from teleway.channels.sms.channel import ReceiptReport
from teleway.core.model import Delivery, DeliveryState
from teleway.core.ports import Clock, WorkQueue
from teleway.proto.sms.receipt import ReceiptState
from teleway.runtime.metrics import Metrics

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
            self.metrics.deliveries.labels(updated.channel or "sms", str(target), stat).inc()
            elapsed = (updated.updated_at - updated.created_at).total_seconds()
            self.metrics.delivery_seconds.labels(updated.channel or "sms", str(target)).observe(
                elapsed
            )
        return True
