"""What the domain needs from the outside world, as Protocols.

`runtime/` builds the concrete objects (store/, channels/); tests may use `testing.fakes`.
Times are timezone-aware UTC datetimes everywhere.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from teleway.core.model import (
    Account,
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Device,
    Message,
    Origin,
    OutboxItem,
    OutboxKind,
)


class Clock(Protocol):
    def now(self) -> datetime: ...


class IdSource(Protocol):
    def new_id(self) -> str: ...


class StoreUnavailable(Exception):
    """The store cannot take the write now (down, locked too long, disk full).

    Ingresses answer with a temporary error (SMPP ESME_RSYSERR / ESME_RMSGQFUL, SMTP 451 4.3.0,
    HTTP 503), never with OK.
    """


class StoreFull(StoreUnavailable):
    """The store refuses writes because a limit (disk, queue depth) is reached."""


NewMessage = tuple[Message, Sequence[Delivery], Sequence[DeliveryEvent]]
"""A message with its deliveries and their first events, as `accept()` builds them."""


class MessageStore(Protocol):
    async def add_message(
        self,
        message: Message,
        deliveries: Sequence[Delivery],
        events: Sequence[DeliveryEvent],
    ) -> None:
        """Commit the message, its deliveries and their first events atomically.

        Returns only once the commit is durable (group commit allowed). Raises StoreUnavailable
        or StoreFull; then nothing of the message is stored.
        """
        ...

    async def add_messages(self, batch: Sequence[NewMessage]) -> None:
        """`add_message` for several messages committed together: all of them or none (the
        same errors). For an ingress that has many requests in hand at once."""
        ...

    async def get_message(self, message_id: str) -> Message | None: ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def deliveries_of(self, message_id: str) -> list[Delivery]: ...

    async def events_of(self, delivery_id: str) -> list[DeliveryEvent]: ...

    async def find_by_upstream_id(self, upstream_id: str) -> Delivery | None: ...


@dataclass(frozen=True, kw_only=True)
class Lease:
    """A delivery handed to one worker until `expires_at`."""

    delivery: Delivery
    worker: str
    expires_at: datetime
    message: Message | None = None  # the delivery's message, read in the same transaction


def lease_reason(worker: str, attempt: int) -> str:
    """The reason of the QUEUED -> IN_FLIGHT event of a lease, whoever writes it (`lease()`, or
    `accept()` handing a new delivery to a local worker): one timeline either way."""
    return f"leased to {worker}, attempt {attempt}"


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A local worker's room for one new delivery (see `Handoff`): `accept()` stores the delivery
    already leased to `worker` until now + `lease_for`."""

    worker: str
    lease_for: timedelta


class Handoff(Protocol):
    """A worker of this process that takes new deliveries straight from `accept()`, so that no
    second commit (a `lease()`) stands between the commit of a message and its first attempt.

    For each new delivery due now, `accept()` asks `claim(device)`; with a claim it stores the
    delivery IN_FLIGHT, leased to the claim's worker (attempt 1, the QUEUED and IN_FLIGHT events
    in the same transaction), and after the commit gives the leases to `hand`. When the commit
    fails it gives them to `withdraw` instead. A delivery handed off but never attempted (the
    process died) is leased again by anyone once its lease expired, exactly like a delivery
    whose worker died after `lease()`.
    """

    def claim(self, device: Device) -> Claim | None:
        """Room for one delivery to `device`, kept until `hand` or `withdraw`; None when no
        local worker takes it now (full, stopping, no ready channel for the device, or work
        waiting in the store that comes first): then it is stored QUEUED."""
        ...

    def hand(self, leases: Sequence[Lease]) -> None:
        """The claimed deliveries, committed and leased: start them (never blocks)."""
        ...

    def withdraw(self, leases: Sequence[Lease]) -> None:
        """The claimed deliveries may not be committed (the store failed, or the caller was
        cancelled): give the room back. Any that were committed after all stay leased until
        their lease expires, then are leased again."""
        ...


@dataclass(frozen=True, kw_only=True)
class Release:
    """One release of `WorkQueue.release_many`: the arguments of one `WorkQueue.release`."""

    delivery_id: str
    reason: str
    upstream_ids: Sequence[str] = ()
    channel: str | None = None
    wait_until: datetime | None = None


class WorkQueue(Protocol):
    """The durable queue of deliveries. No delivery is ever leased to two workers at once."""

    async def lease(
        self,
        *,
        worker: str,
        now: datetime,
        limit: int,
        lease_for: timedelta,
        devices: frozenset[Device] | None = None,
    ) -> list[Lease]:
        """Take up to `limit` due deliveries: QUEUED with next_attempt_at <= now, or IN_FLIGHT
        whose lease expired (a crashed worker's). They become IN_FLIGHT, leased to `worker`,
        `attempts` is incremented, and an event is stored. Deliveries past `valid_until` are not
        leased (see `expire_due`)."""
        ...

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
        """Move one delivery to `to_state` if the state machine allows it from its current state
        (and, when `worker` is given, only while that worker holds the lease). Stores the event.
        Clears the lease unless `keep_lease`. Returns the updated delivery, or None when the
        condition did not hold (lease lost, already final, unknown id)."""
        ...

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
        """Keep the delivery IN_FLIGHT but give up the worker's lease: it has been handed to a
        channel that reports the outcome later (e.g. an SMSC receipt). `wait_until` (default:
        valid_until) is when `expire_due` gives up on the outcome."""
        ...

    async def release_many(
        self, releases: Sequence[Release], *, worker: str, now: datetime
    ) -> list[Delivery | None]:
        """`release` for several deliveries of one worker in one write (one transaction): the
        same rows, events and reports as calling `release` for each, in order. Result i is what
        `release` would have returned for `releases[i]` (None: lease lost, unknown id)."""
        ...

    async def expire_due(self, *, now: datetime, limit: int = 1000) -> list[Delivery]:
        """Move deliveries whose validity ended (QUEUED, or IN_FLIGHT without a live lease) to
        EXPIRED; return them."""
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be due (a commit on this or, with PostgreSQL, another node)
        or after `timeout` seconds."""
        ...

    async def depth(self) -> dict[DeliveryState, int]:
        """Count of deliveries per non-final state."""
        ...


class AccountDirectory(Protocol):
    async def get_account(self, account_id: int) -> Account | None: ...

    async def account_by_name(self, name: str) -> Account | None: ...


class BlobStore(Protocol):
    """Content-addressed storage for attachments and rendered media."""

    async def put(self, data: bytes) -> str:
        """Store `data` durably; return its id (sha256 hex). Idempotent."""
        ...

    async def get(self, blob_id: str) -> bytes: ...

    async def exists(self, blob_id: str) -> bool: ...


class Outbox(Protocol):
    """Durable things to send back to customers (see `core.model.OutboxItem`).

    REPORT items are added by the store itself, in the transaction of the delivery's state
    change, when the delivery's `report` wants the new state. Each origin's reporter leases its
    items, sends them, and marks them `done`, `retry` or `drop`.
    """

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
        """Commit one pending item; return its id (returns after COMMIT)."""
        ...

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
        """Take up to `limit` due pending items of `origin` (of `accounts` when given), in id
        order: not leased, or leased by a worker whose lease expired. `attempts` is
        incremented. Items past `valid_until` are dropped instead."""
        ...

    async def done(self, item_id: int, *, now: datetime) -> None: ...

    async def retry(self, item_id: int, *, now: datetime, at: datetime, error: str) -> None:
        """Back to pending, due at `at`, with the error kept."""
        ...

    async def drop(self, item_id: int, *, now: datetime, error: str) -> None:
        """Give up on the item for good (the caller logs why)."""
        ...

    async def wait(self, timeout: float, *, origin: Origin | None = None) -> None:
        """Return when items may be due (a commit in this process added some) or after
        `timeout` seconds; other nodes' items are found by polling. Each `origin`'s reporter
        has its own wake-up, so one reporter taking it does not leave another asleep."""
        ...

    async def recent(
        self, *, account_id: int, origin: Origin | None = None, limit: int = 50
    ) -> list[OutboxItem]:
        """The account's latest items, newest first (for the portal)."""
        ...
