"""Webhooks: what happened to messages submitted over HTTP, POSTed to the customer's URL.

The sender leases the outbox's HTTP items (`outbox.lease(origin=Origin.HTTP)`):

- REPORT items (a delivery changed state; HTTP submissions ask for every change) become a
  `delivery.state_changed` event;
- INBOUND items (a reply from a phone threaded to a message sent over HTTP) become a
  `message.received` event.

Each is POSTed as JSON to the message's `callback_url`, else the account's `webhook_url`.

Signature (documented in docs/api.md): the header
`Teleway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` with the
account's `webhook_secret`. Receivers recompute it over the exact bytes received and refuse a
`t` older than a few minutes (replay). Without a secret the header is left out (the portal
warns about it). `Teleway-Event-Id` carries the outbox id: the same event retried keeps its id,
so receivers deduplicate on it.

Outcome of a POST: 2xx is done; 410 Gone drops the event (the receiver asked us to stop);
anything else (other statuses, timeouts, refused connections) is retried with exponential
back-off and full jitter (`core.retry.RetryPolicy`) until the item's validity ends, then
dropped. Every attempt is recorded (`WebhookLog.record`): status, the first KiB of the answer
or the error, for the portal's "last responses".

Destinations: unless `allow_private` is set, a URL whose host resolves to a loopback, private,
link-local or otherwise non-global address is refused (the gateway must not be a proxy into
its own network: metadata services, /metrics, databases). Events of one delivery are sent in
order within a batch; receivers should still order by `at`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from teleway.core.model import Account, DeliveryState, Message, Origin, OutboxItem, OutboxKind
from teleway.core.ports import AccountDirectory, Clock, MessageStore, Outbox, StoreUnavailable
from teleway.core.retry import RetryPolicy

logger = logging.getLogger("teleway.notify.webhook")

SIGNATURE_HEADER = "Teleway-Signature"
EVENT_ID_HEADER = "Teleway-Event-Id"
USER_AGENT = "teleway-webhooks/1"
RESPONSE_KEEP = 1024  # characters of the receiver's answer recorded per attempt
MAX_RESPONSE_READ = 64 * 1024  # bytes read from an answer at most (the rest is not awaited)


class WebhookLog(Protocol):
    """Where attempts are recorded (store.webhooks.WebhookAttempts)."""

    async def record(
        self,
        *,
        outbox_id: int,
        account_id: int,
        url: str,
        at: datetime,
        status_code: int | None,
        response: str | None,
        error: str | None,
        duration_ms: float | None,
    ) -> None: ...


@dataclass(frozen=True, kw_only=True)
class WebhookSettings:
    worker: str
    poll: float = 1.0  # seconds between outbox looks when nothing woke us
    batch: int = 50  # items leased at once
    concurrency: int = 16  # POSTs in flight at once
    timeout: float = 10.0  # seconds for connect + answer
    lease_for: timedelta = timedelta(seconds=120)
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(base_seconds=5.0, max_seconds=3600.0)
    )
    allow_private: bool = False  # let webhooks reach loopback / private addresses


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Teleway-Signature` header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300) -> bool:
    """Check a `Teleway-Signature` header as a receiver would (used by tests and docs)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).partition(",v1=")[2]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def event_body(item: OutboxItem) -> dict[str, Any]:
    """The JSON document POSTed for an outbox item (schema `WebhookEvent` in the OpenAPI)."""
    p = item.payload
    if item.kind is OutboxKind.INBOUND:
        return {
            "event": "message.received",
            "id": item.id,
            "in_reply_to": item.message_id,
            "from": p.get("from"),
            "to": p.get("to"),
            "text": p.get("text"),
            "received_at": p.get("received_at"),
            "at": _iso(item.created_at),
        }
    state = item.state or DeliveryState.QUEUED
    return {
        "event": "delivery.state_changed",
        "id": item.id,
        "message_id": item.message_id,
        "delivery_id": item.delivery_id,
        "recipient": p.get("recipient"),
        "device": p.get("device"),
        "state": str(state),
        "final": state.is_final,
        "reason": p.get("reason", ""),
        "error": p.get("error"),
        "upstream_ids": list(p.get("upstream_ids") or []),
        "attempts": p.get("attempts", 0),
        "at": _iso(item.created_at),
    }


async def destination_refusal(url: str) -> str | None:
    """Why `url` may not be called from the gateway (non-global address), or None."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return "no host in the URL"
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global:
            return f"{host} resolves to {address}, not a public address"
    return None


class WebhookSender:
    def __init__(
        self,
        *,
        outbox: Outbox,
        messages: MessageStore,
        accounts: AccountDirectory,
        attempts: WebhookLog,
        clock: Clock,
        settings: WebhookSettings,
        rng: random.Random | None = None,
        counted: Callable[[str], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.outbox = outbox
        self.messages = messages
        self.accounts = accounts
        self.attempts = attempts
        self.clock = clock
        self.settings = settings
        self.rng = rng or random.Random()
        self.counted = counted or (lambda result: None)
        self._stopping = asyncio.Event()
        self._client = httpx.AsyncClient(
            timeout=settings.timeout,
            follow_redirects=False,  # a redirect could lead past the destination check
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            trust_env=False,  # no proxy from the environment
        )
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def run(self) -> None:
        """Lease and send until `stop()`; store outages are waited out."""
        try:
            while not self._stopping.is_set():
                try:
                    sent = await self.run_once()
                except StoreUnavailable as exc:
                    logger.warning("webhooks: store unavailable: %s", exc)
                    sent = 0
                if sent == 0:
                    with contextlib.suppress(StoreUnavailable):
                        waiter = asyncio.create_task(
                            self.outbox.wait(self.settings.poll, origin=Origin.HTTP)
                        )
                        stopper = asyncio.create_task(self._stopping.wait())
                        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                        for task in (waiter, stopper):
                            task.cancel()
        finally:
            await self._client.aclose()

    def stop(self) -> None:
        self._stopping.set()

    async def run_once(self) -> int:
        """Send what is due now; return how many items were leased."""
        items = await self.outbox.lease(
            origin=Origin.HTTP,
            worker=self.settings.worker,
            now=self.clock.now(),
            limit=self.settings.batch,
            lease_for=self.settings.lease_for,
        )
        if not items:
            return 0
        chains: dict[str, list[OutboxItem]] = {}
        for item in items:
            chains.setdefault(item.delivery_id or f"#{item.id}", []).append(item)

        async def chain(group: list[OutboxItem]) -> None:
            for item in group:
                async with self._slots:
                    await self.deliver(item)

        await asyncio.gather(*(chain(group) for group in chains.values()))
        return len(items)

    async def _target(self, item: OutboxItem) -> tuple[str | None, Account | None]:
        account = await self.accounts.get_account(item.account_id)
        message: Message | None = None
        if item.message_id:
            message = await self.messages.get_message(item.message_id)
        url = message.options.callback_url if message is not None else None
        if not url and account is not None:
            url = account.settings.webhook_url
        return url, account

    async def deliver(self, item: OutboxItem) -> None:
        """POST one item and settle it in the outbox (done, retry or drop)."""
        url, account = await self._target(item)
        now = self.clock.now()
        if account is None or not url:
            await self.outbox.drop(item.id, now=now, error="no webhook URL for this account")
            self.counted("no_url")
            return
        if not self.settings.allow_private:
            refusal = await destination_refusal(url)
            if refusal is not None:
                await self._record(item, url, now, None, None, f"refused: {refusal}", None)
                await self.outbox.drop(item.id, now=now, error=f"refused: {refusal}")
                logger.warning(
                    "webhook refused", extra={"fields": {"outbox": item.id, "why": refusal}}
                )
                self.counted("refused")
                return
        body = json.dumps(event_body(item), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: str(item.id)}
        secret = account.settings.webhook_secret
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, int(now.timestamp()), body)
        started = time.perf_counter()
        status: int | None = None
        answer: str | None = None
        error: str | None = None
        try:
            async with self._client.stream("POST", url, content=body, headers=headers) as reply:
                status = reply.status_code
                answer = await _read_some(reply)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except ValueError as exc:  # an URL httpx cannot use
            error = f"invalid URL: {exc}"
        elapsed = (time.perf_counter() - started) * 1000
        await self._record(item, url, now, status, answer, error, elapsed)
        done_at = self.clock.now()
        if status is not None and 200 <= status < 300:
            await self.outbox.done(item.id, now=done_at)
            self.counted("delivered")
            return
        why = error or f"HTTP {status}"
        if status == 410:
            await self.outbox.drop(item.id, now=done_at, error="410 Gone: the receiver refused")
            self.counted("gone")
            return
        at = done_at + self.settings.retry.delay(item.attempts, self.rng.random())
        if at >= item.valid_until:
            await self.outbox.drop(item.id, now=done_at, error=f"gave up: {why}")
            logger.warning(
                "webhook given up",
                extra={"fields": {"outbox": item.id, "attempts": item.attempts, "error": why}},
            )
            self.counted("expired")
            return
        await self.outbox.retry(item.id, now=done_at, at=at, error=why)
        self.counted("retry")

    async def _record(
        self,
        item: OutboxItem,
        url: str,
        at: datetime,
        status: int | None,
        answer: str | None,
        error: str | None,
        elapsed: float | None,
    ) -> None:
        try:
            await self.attempts.record(
                outbox_id=item.id,
                account_id=item.account_id,
                url=url,
                at=at,
                status_code=status,
                response=answer,
                error=error,
                duration_ms=elapsed,
            )
        except StoreUnavailable as exc:
            logger.warning("webhooks: attempt not recorded (store unavailable): %s", exc)


async def _read_some(reply: httpx.Response) -> str:
    """The start of the answer: receivers sometimes stream forever; we keep a KiB."""
    data = bytearray()
    async for chunk in reply.aiter_bytes():
        data += chunk
        if len(data) >= MAX_RESPONSE_READ:
            break
    return bytes(data[: RESPONSE_KEEP * 4]).decode("utf-8", "replace")[:RESPONSE_KEEP]
