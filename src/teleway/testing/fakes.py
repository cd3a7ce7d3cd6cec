"""Fakes for tests of the layers above the store: a settable clock, deterministic ids, and an
in-memory store with the semantics of `teleway.store` (the same contract tests run against
both, tests/store/).

Differences from the SQL store, on purpose: no accounts table (any account id is accepted), no
durability, and a refused write raises plain `ValueError` (the SQL store's `StoreRejected` is a
`ValueError` too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from teleway.core.ids import make_id
from teleway.core.lifecycle import InvalidTransition, sources_of
from teleway.core.model import (
    FINAL_STATES,
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Device,
    Message,
    Origin,
    OutboxItem,
    OutboxKind,
    OutboxStatus,
    report_of,
)
from teleway.core.ports import Lease, NewMessage, Release, StoreUnavailable, lease_reason
from teleway.core.signal import OutboxSignal

S = DeliveryState
EXPIRED_REASON = "validity period ended"


class FakeClock:
    """A `core.ports.Clock` that stands still until told: `advance()` or `set()`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by a timedelta or a number of seconds; return the new time."""
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        self._now += delta
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = when


class SequentialIds:
    """A `core.ports.IdSource` giving valid, ordered, predictable ids: the counter is the
    entropy part of `core.ids.make_id` at a fixed timestamp."""

    def __init__(self, start: int = 1, millis: int = 1_700_000_000_000) -> None:
        self._next = start
        self._millis = millis

    def new_id(self) -> str:
        value = self._next
        self._next += 1
        return make_id(self._millis, value.to_bytes(10, "big"))


class InMemoryStore:
    """`MessageStore` and `WorkQueue` in memory, same semantics as `teleway.store`.

    Set `fail_writes` to a `StoreUnavailable`/`StoreFull` to make every write raise it (nothing
    is changed), e.g. to test how an ingress answers when the store is down.
    """

    def __init__(self) -> None:
        self.messages: dict[str, Message] = {}
        self.deliveries: dict[str, Delivery] = {}
        self.events: dict[str, list[DeliveryEvent]] = {}
        self.upstream: dict[str, str] = {}
        self.fail_writes: StoreUnavailable | None = None
        self._work = asyncio.Event()
        self.outbox = InMemoryOutbox(self)

    async def _writing(self) -> None:
        await asyncio.sleep(0)  # let other tasks run, as a real store would
        if self.fail_writes is not None:
            raise self.fail_writes

    # -- MessageStore --------------------------------------------------------------------

    async def add_messages(self, batch: Sequence[NewMessage]) -> None:
        await self._writing()
        ids = [m.id for m, _, _ in batch] + [d.id for _, ds, _ in batch for d in ds]
        if len(set(ids)) != len(ids) or any(
            i in self.messages or i in self.deliveries for i in ids
        ):
            raise ValueError("message or delivery id already stored")
        for message, deliveries, events in batch:
            self._add(message, deliveries, events)

    async def add_message(
        self,
        message: Message,
        deliveries: Sequence[Delivery],
        events: Sequence[DeliveryEvent],
    ) -> None:
        await self._writing()
        self._add(message, deliveries, events)

    def _add(
        self,
        message: Message,
        deliveries: Sequence[Delivery],
        events: Sequence[DeliveryEvent],
    ) -> None:
        ids = [d.id for d in deliveries]
        if message.id in self.messages:
            raise ValueError(f"message id {message.id} already stored")
        if len(set(ids)) != len(ids) or any(i in self.deliveries for i in ids):
            raise ValueError("delivery id already stored")
        for delivery in deliveries:
            if delivery.message_id != message.id:
                raise ValueError(f"delivery {delivery.id} does not belong to {message.id}")
            _check_aware(delivery.next_attempt_at, delivery.valid_until, delivery.created_at)
        _check_aware(message.created_at)
        self.messages[message.id] = message
        for delivery in deliveries:
            self.deliveries[delivery.id] = delivery
            self.events.setdefault(delivery.id, [])
        for event in events:
            self.events.setdefault(event.delivery_id, []).append(event)
        for delivery in deliveries:
            if delivery.state is S.IN_FLIGHT:  # handed to a local worker by accept()
                reason = self.events[delivery.id][-1].reason
                self.outbox.report(delivery, message.created_at, reason)
        if any(d.state is S.QUEUED and d.next_attempt_at <= message.created_at for d in deliveries):
            self._work.set()

    async def get_message(self, message_id: str) -> Message | None:
        return self.messages.get(message_id)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        return self.deliveries.get(delivery_id)

    async def deliveries_of(self, message_id: str) -> list[Delivery]:
        found = [d for d in self.deliveries.values() if d.message_id == message_id]
        return sorted(found, key=lambda d: d.seq)

    async def events_of(self, delivery_id: str) -> list[DeliveryEvent]:
        return list(self.events.get(delivery_id, ()))

    async def find_by_upstream_id(self, upstream_id: str) -> Delivery | None:
        delivery_id = self.upstream.get(upstream_id)
        return None if delivery_id is None else self.deliveries.get(delivery_id)

    async def add_upstream_ids(
        self, delivery_id: str, upstream_ids: Sequence[str], *, now: datetime
    ) -> bool:
        await self._writing()
        delivery = self.deliveries.get(delivery_id)
        if delivery is None:
            return False
        self._record(delivery.evolve(updated_at=now), upstream_ids)
        return True

    async def list_messages(
        self, account_id: int | None, *, limit: int = 50, before: datetime | None = None
    ) -> list[Message]:
        found = [
            m
            for m in self.messages.values()
            if (account_id is None or m.account_id == account_id)
            and (before is None or m.created_at < before)
        ]
        found.sort(key=lambda m: (m.created_at, m.id), reverse=True)
        return found[: max(0, min(limit, 1_000))]

    # -- WorkQueue -----------------------------------------------------------------------

    async def lease(
        self,
        *,
        worker: str,
        now: datetime,
        limit: int,
        lease_for: timedelta,
        devices: frozenset[Device] | None = None,
    ) -> list[Lease]:
        await self._writing()
        limit = min(limit, 1_000)
        if limit <= 0:
            return []

        def eligible(d: Delivery) -> bool:
            return d.valid_until > now and (devices is None or d.device in devices)

        takeovers = sorted(
            (
                d
                for d in self.deliveries.values()
                if d.state is S.IN_FLIGHT
                and d.lease_owner is not None
                and d.lease_expires_at is not None
                and d.lease_expires_at <= now
                and eligible(d)
            ),
            key=lambda d: (d.lease_expires_at, d.id),
        )
        queued = sorted(
            (
                d
                for d in self.deliveries.values()
                if d.state is S.QUEUED and d.next_attempt_at <= now and eligible(d)
            ),
            key=lambda d: (d.next_attempt_at, d.id),
        )
        expires = now + lease_for
        leases = []
        for old in (takeovers + queued)[:limit]:
            new = old.evolve(
                state=S.IN_FLIGHT,
                lease_owner=worker,
                lease_expires_at=expires,
                attempts=old.attempts + 1,
                updated_at=now,
            )
            reason = lease_reason(worker, new.attempts)
            if old.state is S.IN_FLIGHT:
                reason = f"lease of {old.lease_owner} expired; {reason}"
            self._store(old, new, now, reason)
            leases.append(
                Lease(
                    delivery=new,
                    worker=worker,
                    expires_at=expires,
                    message=self.messages.get(new.message_id),
                )
            )
        return leases

    async def transition(
        self,
        delivery_id: str,
        to_state: DeliveryState,
        *,
        now: datetime,
        reason: str,
        worker: str | None = None,
        next_attempt_at: datetime | None = None,
        channel: str | None = None,
        upstream_ids: Sequence[str] | None = None,
        error: str | None = None,
        keep_lease: bool = False,
    ) -> Delivery | None:
        sources = sources_of(to_state)
        if not sources:
            raise InvalidTransition(None, to_state)
        await self._writing()
        old = self.deliveries.get(delivery_id)
        if old is None or old.state not in sources:
            return None
        if worker is not None and old.lease_owner != worker:
            return None
        new = old.evolve(state=to_state, updated_at=now)
        if next_attempt_at is not None:
            new = new.evolve(next_attempt_at=next_attempt_at)
        if channel is not None:
            new = new.evolve(channel=channel)
        if error is not None:
            new = new.evolve(error=error)
        if not keep_lease:
            new = new.evolve(lease_owner=None, lease_expires_at=None)
        new = self._record(new, upstream_ids or ())
        self._store(old, new, now, reason)
        if to_state is S.QUEUED and (next_attempt_at is None or next_attempt_at <= now):
            self._work.set()
        return new

    async def release(
        self,
        delivery_id: str,
        *,
        worker: str,
        now: datetime,
        reason: str,
        upstream_ids: Sequence[str] = (),
        channel: str | None = None,
        wait_until: datetime | None = None,
    ) -> Delivery | None:
        await self._writing()
        old = self.deliveries.get(delivery_id)
        if old is None or old.state is not S.IN_FLIGHT or old.lease_owner != worker:
            return None
        new = old.evolve(
            lease_owner=None,
            lease_expires_at=None,
            next_attempt_at=wait_until or old.valid_until,
            updated_at=now,
        )
        if channel is not None:
            new = new.evolve(channel=channel)
        new = self._record(new, upstream_ids)
        self._store(old, new, now, reason)
        return new

    async def release_many(
        self, releases: Sequence[Release], *, worker: str, now: datetime
    ) -> list[Delivery | None]:
        await self._writing()
        results: list[Delivery | None] = []
        for r in releases:  # one write: a failing store refused all of them above
            old = self.deliveries.get(r.delivery_id)
            if old is None or old.state is not S.IN_FLIGHT or old.lease_owner != worker:
                results.append(None)
                continue
            new = old.evolve(
                lease_owner=None,
                lease_expires_at=None,
                next_attempt_at=r.wait_until or old.valid_until,
                updated_at=now,
            )
            if r.channel is not None:
                new = new.evolve(channel=r.channel)
            new = self._record(new, r.upstream_ids)
            self._store(old, new, now, r.reason)
            results.append(new)
        return results

    async def expire_due(self, *, now: datetime, limit: int = 1000) -> list[Delivery]:
        await self._writing()
        if limit <= 0:
            return []
        groups: list[list[tuple[Delivery, str]]] = [[], [], []]
        for d in self.deliveries.values():
            if d.state is S.QUEUED and d.valid_until <= now:
                groups[0].append((d, EXPIRED_REASON))
            elif d.state is S.IN_FLIGHT and d.lease_owner is not None:
                # a dead worker's lease, validity over (a live lease is left to its worker)
                lease_over = d.lease_expires_at is not None and d.lease_expires_at <= now
                if lease_over and d.valid_until <= now:
                    groups[1].append((d, EXPIRED_REASON))
            elif d.state is S.IN_FLIGHT and d.next_attempt_at <= now:
                groups[2].append((d, "no outcome reported before the wait ended"))
        expired = []
        for old, reason in [pair for group in groups for pair in group][:limit]:
            new = old.evolve(
                state=S.EXPIRED,
                lease_owner=None,
                lease_expires_at=None,
                error=EXPIRED_REASON,
                updated_at=now,
            )
            self._store(old, new, now, reason)
            expired.append(new)
        return expired

    async def wait_for_work(self, timeout: float) -> None:
        if not self._work.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    async def depth(self) -> dict[DeliveryState, int]:
        counts = {state: 0 for state in DeliveryState if state not in FINAL_STATES}
        for delivery in self.deliveries.values():
            if delivery.state in counts:
                counts[delivery.state] += 1
        return counts

    # -- helpers -------------------------------------------------------------------------

    def _store(self, old: Delivery, new: Delivery, now: datetime, reason: str) -> None:
        self.deliveries[new.id] = new
        self.events.setdefault(new.id, []).append(
            DeliveryEvent(
                delivery_id=new.id, at=now, from_state=old.state, to_state=new.state, reason=reason
            )
        )
        if old.state is not new.state:
            self.outbox.report(new, now, reason)

    def _record(self, delivery: Delivery, upstream_ids: Sequence[str]) -> Delivery:
        merged = list(delivery.upstream_ids)
        for upstream_id in upstream_ids:
            self.upstream[upstream_id] = delivery.id
            if upstream_id not in merged:
                merged.append(upstream_id)
        delivery = delivery.evolve(upstream_ids=tuple(merged))
        self.deliveries[delivery.id] = delivery
        return delivery


def _check_aware(*values: datetime) -> None:
    for value in values:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")


class InMemoryOutbox:
    """`Outbox` in memory, same semantics as `teleway.store.outbox.SqlOutbox`; REPORT items are
    added by its `InMemoryStore`'s state changes."""

    def __init__(self, store: InMemoryStore) -> None:
        self._store = store
        self.items: dict[int, OutboxItem] = {}
        self._leases: dict[int, tuple[str, datetime]] = {}
        self._next = 1
        self._event = OutboxSignal()

    def _new(self, **values: Any) -> int:
        item_id = self._next
        self._next += 1
        self.items[item_id] = OutboxItem(
            id=item_id, status=OutboxStatus.PENDING, attempts=0, **values
        )
        self._event.set()
        return item_id

    def report(self, delivery: Delivery, now: datetime, reason: str) -> None:
        report = report_of(delivery, delivery.state, now, reason)
        if report is None:
            return
        payload, valid_until = report
        self._new(
            kind=OutboxKind.REPORT,
            origin=delivery.origin,
            account_id=delivery.account_id,
            message_id=delivery.message_id,
            delivery_id=delivery.id,
            state=delivery.state,
            payload=payload,
            next_attempt_at=now,
            valid_until=valid_until,
            created_at=now,
            updated_at=now,
        )

    async def add(
        self,
        *,
        kind: OutboxKind,
        origin: Origin,
        account_id: int,
        payload: dict[str, Any],
        now: datetime,
        valid_until: datetime,
        message_id: str | None = None,
        delivery_id: str | None = None,
        state: DeliveryState | None = None,
    ) -> int:
        await self._store._writing()
        return self._new(
            kind=kind,
            origin=origin,
            account_id=account_id,
            message_id=message_id,
            delivery_id=delivery_id,
            state=state,
            payload=dict(payload),
            next_attempt_at=now,
            valid_until=valid_until,
            created_at=now,
            updated_at=now,
        )

    async def lease(
        self,
        *,
        origin: Origin,
        worker: str,
        now: datetime,
        limit: int,
        lease_for: timedelta,
        accounts: Collection[int] | None = None,
    ) -> list[OutboxItem]:
        await self._store._writing()
        taken: list[OutboxItem] = []
        for item in sorted(self.items.values(), key=lambda i: i.id):
            if item.status is not OutboxStatus.PENDING or item.origin is not origin:
                continue
            if accounts is not None and item.account_id not in accounts:
                continue
            lease = self._leases.get(item.id)
            if lease is not None and lease[1] > now:
                continue
            if item.valid_until <= now:
                self._change(
                    item.id,
                    now,
                    status=OutboxStatus.DROPPED,
                    last_error="validity ended before it could be sent",
                )
                continue
            if item.next_attempt_at > now or len(taken) >= min(limit, 500):
                continue
            self._leases[item.id] = (worker, now + lease_for)
            taken.append(self._change(item.id, now, attempts=item.attempts + 1))
        return taken

    def _change(self, item_id: int, now: datetime, **values: Any) -> OutboxItem:
        item = replace(self.items[item_id], updated_at=now, **values)
        self.items[item_id] = item
        return item

    async def done(self, item_id: int, *, now: datetime) -> None:
        await self._store._writing()
        self._leases.pop(item_id, None)
        self._change(item_id, now, status=OutboxStatus.SENT)

    async def retry(self, item_id: int, *, now: datetime, at: datetime, error: str) -> None:
        await self._store._writing()
        self._leases.pop(item_id, None)
        self._change(
            item_id, now, status=OutboxStatus.PENDING, next_attempt_at=at, last_error=error
        )
        if at <= now:
            self._event.set()

    async def drop(self, item_id: int, *, now: datetime, error: str) -> None:
        await self._store._writing()
        self._leases.pop(item_id, None)
        self._change(item_id, now, status=OutboxStatus.DROPPED, last_error=error)

    async def wait(self, timeout: float, *, origin: Origin | None = None) -> None:
        flag = self._event.flag(origin)
        if not flag.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(flag.wait(), timeout)
        flag.clear()

    def wake(self) -> None:
        self._event.set()

    async def get(self, item_id: int) -> OutboxItem | None:
        return self.items.get(item_id)

    async def recent(
        self, *, account_id: int, origin: Origin | None = None, limit: int = 50
    ) -> list[OutboxItem]:
        found = [
            i
            for i in self.items.values()
            if i.account_id == account_id and (origin is None or i.origin is origin)
        ]
        return sorted(found, key=lambda i: i.id, reverse=True)[:limit]

    async def for_delivery(self, delivery_id: str) -> list[OutboxItem]:
        return sorted(
            (i for i in self.items.values() if i.delivery_id == delivery_id), key=lambda i: i.id
        )
