"""What a channel reports about one delivery attempt, and how the queue acts on it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from teleway.core.model import Delivery, Device, Message


@dataclass(frozen=True, kw_only=True)
class Submitted:
    """Handed to the next hop; the final outcome comes later (e.g. an SMSC receipt)."""

    upstream_ids: tuple[str, ...]
    channel: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class Delivered:
    """The recipient has it (a call answered, a fax confirmed)."""

    channel: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class TemporaryFailure:
    """Try again later (throttled, link down, busy); `retry_at` overrides the back-off."""

    reason: str
    channel: str
    retry_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class PermanentFailure:
    """Will never work (invalid destination, content refused): UNDELIVERABLE or REJECTED."""

    reason: str
    channel: str
    rejected: bool = False  # refused by policy/content rather than by the network
    code: str | None = None


Outcome = Submitted | Delivered | TemporaryFailure | PermanentFailure


class Channel(Protocol):
    """A way to reach a phone. `send` must not raise for delivery problems: it returns them."""

    name: str
    devices: frozenset[Device]

    @property
    def ready(self) -> bool:
        """False while the channel cannot take work (no upstream bound): deliveries wait."""
        ...

    async def send(self, delivery: Delivery, message: Message) -> Outcome: ...
