"""E-mail back to e-mail senders: outcome notifications and replies from phones.

Consumes the outbox items of origin SMTP:

- REPORT: a delivery of a message that came by e-mail reached a state the message asked about
  (the account's `notify_on`: failures by default, or every final state). The sender gets a
  plain-text notification, or an RFC 3464 delivery status notification when the account sets
  `notify_dsn`.
- INBOUND: a phone answered (MO) and the reply is routed to an e-mail sender.

No mail loops (RFC 3834): notifications go out with a null envelope sender and
`Auto-Submitted: auto-replied`, never to a null sender, and never about a message that was
itself automatic. A relay that says 4xx or cannot be reached is tried again with back-off until
the item's validity ends; a 5xx ends the item (dropped, with the reply kept as its error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Protocol

import aiosmtplib

from teleway.core.model import (
    Account,
    DeliveryState,
    Message,
    Origin,
    OutboxItem,
    OutboxKind,
)
from teleway.core.ports import Clock, Outbox

logger = logging.getLogger("teleway.notify.email")

_STATE_WORDS = {
    DeliveryState.DELIVERED: "delivered",
    DeliveryState.UNDELIVERABLE: "could not be delivered",
    DeliveryState.EXPIRED: "expired before it could be delivered",
    DeliveryState.REJECTED: "was refused",
    DeliveryState.CANCELLED: "was cancelled",
    DeliveryState.QUEUED: "is queued",
    DeliveryState.IN_FLIGHT: "is being delivered",
    DeliveryState.ACCEPTED: "was accepted",
}


@dataclass(frozen=True, kw_only=True)
class RelaySettings:
    """The outbound relay (`[notifications]`)."""

    host: str
    port: int
    tls: str = "none"  # none | starttls | tls
    tls_verify: bool = True
    user: str = ""
    password: str = ""
    from_address: str = "teleway@teleway.localhost"
    timeout: float = 30.0
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0


class MessageLookup(Protocol):
    async def get_message(self, message_id: str) -> Message | None: ...


class AccountLookup(Protocol):
    async def get_account(self, account_id: int) -> Account | None: ...


class RelayRefused(Exception):
    """The relay answered 5xx: sending again will not help."""


Send = Callable[[EmailMessage, str, list[str]], Awaitable[None]]


def _null(address: str | None) -> bool:
    return not address or address.strip() in ("", "<>")


def notification(
    item: OutboxItem, message: Message, *, from_address: str, dsn: bool, reporting_mta: str
) -> EmailMessage:
    """The notification e-mail about one delivery (plain text or RFC 3464 DSN)."""
    payload = item.payload
    state = item.state or DeliveryState.UNDELIVERABLE
    recipient = str(payload.get("recipient") or "?")
    device = str(payload.get("device") or "sms").upper()
    reason = str(payload.get("error") or payload.get("reason") or "")
    words = _STATE_WORDS.get(state, str(state))
    subject = message.content.subject
    email = EmailMessage()
    email["From"] = from_address
    email["To"] = message.submitter
    email["Subject"] = f"Your message to {recipient} ({device}) {words}"
    email["Date"] = format_datetime(item.created_at)
    email["Message-ID"] = make_msgid(domain=reporting_mta)
    email["Auto-Submitted"] = "auto-replied"  # RFC 3834 5: machines must not answer it
    original_id = message.options.extra.get("message_id")
    if original_id:
        email["In-Reply-To"] = original_id
        email["References"] = original_id
    lines = [
        f"Your message {message.id} to {recipient} by {device} {words}.",
        "",
        f"Recipient:  {recipient}",
        f"Device:     {device}",
        f"State:      {state.value}",
    ]
    if reason:
        lines.append(f"Reason:     {reason}")
    if subject:
        lines.append(f"Subject:    {subject}")
    lines.append(f"Submitted:  {format_datetime(message.created_at)}")
    text = "\n".join(lines) + "\n"
    if not dsn:
        email.set_content(text)
        return email
    # RFC 3464 2: multipart/report; report-type=delivery-status with a human-readable part,
    # the machine-readable message/delivery-status, and the original headers
    delivered = state is DeliveryState.DELIVERED
    action = "delivered" if delivered else "failed"
    status = "2.0.0" if delivered else ("4.4.7" if state is DeliveryState.EXPIRED else "5.0.0")
    per_message = [
        f"Reporting-MTA: dns; {reporting_mta}",
        f"Arrival-Date: {format_datetime(message.created_at)}",
    ]
    per_recipient = [
        f"Final-Recipient: rfc822; {recipient.lstrip('+')}@{device.lower()}.{reporting_mta}",
        f"Action: {action}",
        f"Status: {status}",
    ]
    if reason and not delivered:
        clean = " ".join(reason.split())[:900]
        per_recipient.append(f"Diagnostic-Code: x-teleway; {clean}")
    per_recipient.append(f"Last-Attempt-Date: {format_datetime(item.created_at)}")
    email.set_content(text)
    email.make_mixed()
    email.set_type("multipart/report")
    email.set_param("report-type", "delivery-status")
    # message/delivery-status holds header blocks: per message, then one per recipient
    blocks: list[Any] = []
    for fields in (per_message, per_recipient):
        block = EmailMessage()
        for line in fields:
            name, _, value = line.partition(": ")
            block[name] = value
        blocks.append(block)
    status_part = EmailMessage()
    status_part["Content-Type"] = "message/delivery-status"
    status_part.set_payload(blocks)
    email.attach(status_part)
    headers = EmailMessage()
    headers.set_content(
        f"Message-ID: {original_id or '<' + message.id + '@' + reporting_mta + '>'}\n"
        f"From: {message.submitter}\n" + (f"Subject: {subject}\n" if subject else ""),
    )
    del headers["Content-Type"]
    headers["Content-Type"] = "text/rfc822-headers"
    email.attach(headers)
    return email


def reply_email(item: OutboxItem, to: str, *, from_address: str, domain: str) -> EmailMessage:
    """A phone's reply as an e-mail; answering it goes back to the phone by SMS."""
    payload = item.payload
    sender = str(payload.get("from") or "")
    email = EmailMessage()
    email["From"] = from_address
    email["To"] = to
    digits = sender.lstrip("+")
    if digits.isdigit():
        email["Reply-To"] = f"+{digits}@sms.{domain}"
    email["Subject"] = f"SMS from {sender or 'unknown'}"
    email["Message-ID"] = make_msgid(domain=domain)
    email["Auto-Submitted"] = "auto-generated"
    text = str(payload.get("text") or "")
    email.set_content(f"{text}\n\n-- \nFrom {sender} to {payload.get('to') or '?'}\n")
    return email


class EmailNotifier:
    """Leases SMTP-origin outbox items and mails them through the relay."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        messages: MessageLookup,
        accounts: AccountLookup,
        relay: RelaySettings,
        clock: Clock,
        worker: str,
        domain: str,
        send: Send | None = None,
        counted: Callable[[str, str], None] | None = None,
        poll_interval: float = 1.0,
        batch: int = 20,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.messages = messages
        self.accounts = accounts
        self.relay = relay
        self.clock = clock
        self.worker = worker
        self.domain = domain
        self.send = send or self._send
        self.counted = counted
        self.poll_interval = poll_interval
        self.batch = batch
        self.rng = rng or random.Random()
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                handled = await self.run_once()
            except Exception as exc:  # the store is down: log, wait, go on
                logger.error("cannot lease notifications", extra={"fields": {"error": repr(exc)}})
                handled = 0
            if handled:
                continue
            with contextlib.suppress(Exception):
                waiter = asyncio.ensure_future(
                    self.outbox.wait(self.poll_interval, origin=Origin.SMTP)
                )
                stop = asyncio.ensure_future(self._stopping.wait())
                _, pending = await asyncio.wait(
                    {waiter, stop}, timeout=self.poll_interval, return_when="FIRST_COMPLETED"
                )
                for task in pending:
                    task.cancel()

    def stop(self) -> None:
        self._stopping.set()

    async def run_once(self) -> int:
        """Lease one batch and handle it; return how many items were handled."""
        now = self.clock.now()
        items = await self.outbox.lease(
            origin=Origin.SMTP,
            worker=self.worker,
            now=now,
            limit=self.batch,
            lease_for=timedelta(seconds=self.relay.timeout * 3),
        )
        for item in items:
            await self._handle(item)
        return len(items)

    async def _handle(self, item: OutboxItem) -> None:
        now = self.clock.now()
        try:
            built = await self._build(item)
        except Exception as exc:
            logger.exception("cannot build a notification", extra={"fields": {"item": item.id}})
            await self.outbox.drop(item.id, now=now, error=f"cannot build: {exc!r}")
            self._count(item, "dropped")
            return
        if isinstance(built, str):  # nothing to send, and why
            await self.outbox.drop(item.id, now=now, error=built)
            self._count(item, "skipped")
            logger.info("notification not sent", extra={"fields": {"item": item.id, "why": built}})
            return
        email, sender, recipients = built
        try:
            await self.send(email, sender, recipients)
        except RelayRefused as exc:
            await self.outbox.drop(item.id, now=self.clock.now(), error=str(exc)[:500])
            self._count(item, "refused")
            logger.warning(
                "relay refused a notification",
                extra={"fields": {"item": item.id, "error": str(exc)[:200]}},
            )
            return
        except Exception as exc:
            at = self.clock.now() + timedelta(seconds=self._backoff(item.attempts))
            await self.outbox.retry(item.id, now=self.clock.now(), at=at, error=repr(exc)[:500])
            self._count(item, "retry")
            logger.warning(
                "notification not sent, will retry",
                extra={"fields": {"item": item.id, "at": at.isoformat(), "error": repr(exc)}},
            )
            return
        await self.outbox.done(item.id, now=self.clock.now())
        self._count(item, "sent")
        logger.info(
            "notification sent",
            extra={"fields": {"item": item.id, "kind": item.kind.value, "to": recipients[0]}},
        )

    def _backoff(self, attempts: int) -> float:
        base = self.relay.retry_base_seconds
        ceiling = min(self.relay.retry_max_seconds, base * 2 ** max(0, attempts - 1))
        return base / 2 + self.rng.uniform(0, ceiling)

    def _count(self, item: OutboxItem, result: str) -> None:
        if self.counted is not None:
            self.counted(item.kind.value, result)

    async def _build(self, item: OutboxItem) -> tuple[EmailMessage, str, list[str]] | str:
        account = await self.accounts.get_account(item.account_id)
        message = await self.messages.get_message(item.message_id) if item.message_id else None
        if item.kind is OutboxKind.INBOUND:
            to = item.payload.get("reply_to") or item.payload.get("email")
            if not to and message is not None:
                to = message.submitter
            if _null(to):
                return "no e-mail address to send the reply to"
            email = reply_email(
                item, str(to), from_address=self.relay.from_address, domain=self.domain
            )
            return email, self.relay.from_address, [str(to)]
        if message is None:
            return "the message is gone"
        if _null(message.submitter) or "@" not in message.submitter:
            return "the sender is a null address (RFC 3834: never notify it)"
        if message.options.extra.get("auto_submitted"):
            return "the message was automatic (Auto-Submitted): no notification"
        dsn = account.settings.notify_dsn if account is not None else False
        email = notification(
            item,
            message,
            from_address=self.relay.from_address,
            dsn=dsn,
            reporting_mta=self.domain,
        )
        recipients = [message.submitter]
        extra = account.settings.notify_email if account is not None else None
        if extra and extra.lower() != message.submitter.lower():
            recipients.append(extra)
        # RFC 3464 / RFC 5321 4.5.5: notifications have a null envelope sender
        return email, "", recipients

    async def _send(self, email: EmailMessage, sender: str, recipients: list[str]) -> None:
        relay = self.relay
        context: ssl.SSLContext | None = None
        if relay.tls != "none":
            context = ssl.create_default_context()
            if not relay.tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        kwargs: dict[str, Any] = {
            "hostname": relay.host,
            "port": relay.port,
            "sender": sender,
            "recipients": recipients,
            "timeout": relay.timeout,
            "use_tls": relay.tls == "tls",
            "start_tls": relay.tls == "starttls",
            "tls_context": context,
        }
        if relay.tls == "none":
            kwargs["start_tls"] = False
        if relay.user:
            kwargs["username"] = relay.user
            kwargs["password"] = relay.password
        try:
            await aiosmtplib.send(email, **kwargs)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if codes and all(500 <= c < 600 for c in codes):
                raise RelayRefused(f"relay refused every recipient: {exc}") from exc
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise RelayRefused(f"relay said {exc.code} {exc.message}") from exc
            raise
