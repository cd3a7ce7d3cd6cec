"""E-mail in: `<number>@<device>.<domain>` recipients become deliveries.

aiosmtpd speaks the protocol; `SmtpPolicy` (the handler) decides. Every recipient gets its own
answer at RCPT time, so one bad address never fails the good ones:

- relay denied (not our domain)           550 5.7.1    (RFC 5321 3.6.2: no open relay)
- sender not provisioned / IP not allowed 550 5.7.1
- account wants TLS, session has none     530 5.7.0    (RFC 3207 4)
- not a phone number / unknown device     550 5.1.1
- too many recipients                     452 4.5.3    (RFC 5321 4.5.3.1.10)
- rate limits (IP, account)               452 4.7.0; too many connections 421 4.7.0 at connect

After DATA the message is parsed (a worker process for large ones, so the event loop keeps
serving other clients), its attachments stored in the blob store, and `accept()` called; `250`
is sent only after the commit, a store failure answers `451 4.3.0` so the client retries.
Message data is spooled to disk above `SPOOL_MEMORY` bytes instead of being held in memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import re
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from aiosmtpd.smtp import (
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    TLSSetupException,
)

from teleway.core.accept import SubmissionRejected
from teleway.core.addressing import AddressProblem, is_gateway_domain, parse_address
from teleway.core.model import (
    Accepted,
    Account,
    Attachment,
    Content,
    Device,
    LongSmsPolicy,
    Message,
    Options,
    Origin,
    ReportOn,
    Submission,
    User,
)
from teleway.core.ports import BlobStore, StoreUnavailable
from teleway.core.templates import sms_text
from teleway.ingress import smtp_authenticity as authenticity
from teleway.proto.sms.gsm7 import GSM7_EXTENSION, gsm7_can_encode
from teleway.proto.sms.segments import plan_segments
from teleway.render.email import (
    ParsedEmail,
    UnreadableEmail,
    attachments_for,
    parse_email,
    sms_body,
)

logger = logging.getLogger("teleway.smtp")

SPOOL_MEMORY = 256 * 1024  # message data above this goes to a file in the spool directory
LARGE_MESSAGE = 1024 * 1024  # parsed in a worker process above this (keeps the loop free)
PARSE_WORKERS = 2
PARSE_NICENESS = 10  # parsing is background work: the event loop's process comes first
DIRECTORY_CACHE_SECONDS = 5.0  # sender -> account, (account, IP) -> allowed
RATE_WINDOW = 60.0  # limits are per minute
# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF
MAX_REPLY_TEXT = 400


class SenderDirectory(Protocol):
    """What the SMTP policy reads from provisioning (store.directory.Directory has it)."""

    async def account_for_sender(self, address: str) -> Account | None: ...

    async def allows(self, account_id: int, ip: str) -> bool: ...

    async def verify_login(self, username: str, password: str) -> User | None: ...


class ReplyCounter(Protocol):
    def __call__(self, command: str, code: str) -> None: ...


@dataclass(frozen=True, kw_only=True)
class SmtpLimits:
    """The listener's limits (`[listeners.smtp]`); 0 switches a rate limit off."""

    domains: tuple[str, ...]
    hostname: str = "teleway"
    max_message_size: int = 10 * 1024 * 1024
    max_recipients: int = 100
    max_connections_per_ip: int = 20
    connections_per_minute_per_ip: int = 600
    messages_per_minute_per_ip: int = 6000
    messages_per_minute_per_account: int = 6000
    auth_fail_limit: int = 5
    auth_fail_window_seconds: float = 300.0
    timeout: float = 300.0


def _reply(text: str) -> str:
    return text if len(text) <= MAX_REPLY_TEXT else text[: MAX_REPLY_TEXT - 3] + "..."


class _Window:
    """Events per key within the last `per` seconds (a sliding log; entries expire)."""

    def __init__(self, limit: int, per: float = RATE_WINDOW) -> None:
        self.limit = limit
        self.per = per
        self._times: dict[Any, deque[float]] = defaultdict(deque)

    def allow(self, key: Any, now: float) -> bool:
        """Record one event for `key` if the limit allows it."""
        if self.limit <= 0:
            return True
        times = self._times[key]
        while times and now - times[0] >= self.per:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True

    def count(self, key: Any, now: float) -> int:
        times = self._times.get(key)
        if not times:
            return 0
        while times and now - times[0] >= self.per:
            times.popleft()
        return len(times)

    def forget_idle(self, now: float) -> None:
        for key in [k for k, t in self._times.items() if not t or now - t[-1] >= self.per]:
            del self._times[key]


@dataclass
class _EnvelopeState:
    """What the policy learnt about the current transaction (reset by RSET / after DATA)."""

    account: Account | None = None
    counted: bool = False
    spf_domain: str | None = None
    recipients: list[Any] = field(default_factory=list)  # PhoneAddress per accepted RCPT


class _Spool:
    """Message data: in memory up to SPOOL_MEMORY bytes, then in a file in the spool dir."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.size = 0
        self._chunks: list[bytes] = []
        self._file: IO[bytes] | None = None
        self.path: Path | None = None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._file is None:
            self._chunks.append(data)
            if self.size > SPOOL_MEMORY:
                self.directory.mkdir(parents=True, exist_ok=True)
                descriptor, name = tempfile.mkstemp(dir=self.directory, prefix="msg-")
                self._file = os.fdopen(descriptor, "wb", buffering=1024 * 1024)
                self.path = Path(name)
                self._file.write(b"".join(self._chunks))
                self._chunks = []
        else:
            self._file.write(data)

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()

    def data(self) -> bytes:
        """The whole message (small messages only: large ones are read from `path`)."""
        if self.path is not None:
            return self.path.read_bytes()
        return b"".join(self._chunks)

    def discard(self) -> None:
        self._chunks = []
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def _lower_priority() -> None:
    """Parsing-process initializer: a lower CPU priority than the listener (nice(2))."""
    with contextlib.suppress(OSError):
        os.nice(PARSE_NICENESS)


def _parse_file(path: str) -> ParsedEmail:
    """Worker-process entry point: parse a spooled message file."""
    with open(path, "rb") as source:
        return parse_email(source)


class SmtpPolicy:
    """The aiosmtpd handler: who may send, to which addresses, and what is accepted."""

    def __init__(
        self,
        *,
        limits: SmtpLimits,
        directory: SenderDirectory,
        accept: Callable[[Submission], Awaitable[Accepted]],
        blobs: BlobStore,
        spool_dir: Path,
        replies: ReplyCounter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.directory = directory
        self.accept = accept
        self.blobs = blobs
        self.spool_dir = spool_dir
        self.replies = replies
        self.monotonic = monotonic
        self.connections: dict[str, int] = defaultdict(int)
        self.connection_rate = _Window(limits.connections_per_minute_per_ip)
        self.ip_messages = _Window(limits.messages_per_minute_per_ip)
        self.account_messages = _Window(limits.messages_per_minute_per_account)
        self.login_failures = _Window(limits.auth_fail_limit, limits.auth_fail_window_seconds)
        self._sender_cache: dict[str, tuple[float, Account | None]] = {}
        self._network_cache: dict[tuple[int, str], tuple[float, bool]] = {}
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._pool_starting = asyncio.Lock()
        self._sweep_at = 0.0

    # --- bookkeeping ------------------------------------------------------------------------

    def _count(self, command: str, reply: str) -> str:
        if self.replies is not None:
            self.replies(command, reply[:3])
        return _reply(reply)

    def _log(self, level: int, what: str, session: Session, **fields: Any) -> None:
        if logger.isEnabledFor(level):  # cached by logging: one dict look-up when off
            logger.log(level, what, extra={"fields": {"peer": _ip(session), **fields}})

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def start_parsers(self) -> None:
        """Start the parsing processes (blocking: called in a thread on the first large
        message; spawning them on the event loop would stall it for tens of milliseconds)."""
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=PARSE_WORKERS,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_lower_priority,
            )
        for future in [self._pool.submit(os.getpid) for _ in range(PARSE_WORKERS * 2)]:
            future.result()

    # --- connections ------------------------------------------------------------------------

    def connection_opened(self, ip: str) -> str | None:
        """Count a new connection; return a 421 reply when it is over a limit."""
        now = self.monotonic()
        if now >= self._sweep_at:
            self._sweep(now)
        limit = self.limits.max_connections_per_ip
        if limit and self.connections[ip] >= limit:
            return self._count("CONNECT", f"421 4.7.0 too many connections from {ip}, try later")
        if not self.connection_rate.allow(ip, now):
            return self._count("CONNECT", f"421 4.7.0 too many connections per minute from {ip}")
        self.connections[ip] += 1
        return None

    def connection_closed(self, ip: str) -> None:
        if self.connections.get(ip, 0) > 1:
            self.connections[ip] -= 1
        else:
            self.connections.pop(ip, None)

    def _sweep(self, now: float) -> None:
        self._sweep_at = now + RATE_WINDOW
        for window in (
            self.connection_rate,
            self.ip_messages,
            self.account_messages,
            self.login_failures,
        ):
            window.forget_idle(now)
        limit = now - DIRECTORY_CACHE_SECONDS
        self._sender_cache = {k: v for k, v in self._sender_cache.items() if v[0] > limit}
        self._network_cache = {k: v for k, v in self._network_cache.items() if v[0] > limit}

    # --- authentication ---------------------------------------------------------------------

    # NB: no attribute of this handler may start with "auth_": aiosmtpd would offer it as an
    # AUTH mechanism (it looks for auth_* on the handler as well as on the server)

    def login_blocked(self, ip: str) -> bool:
        limit = self.limits.auth_fail_limit
        return bool(limit) and self.login_failures.count(ip, self.monotonic()) >= limit

    async def authenticate(self, session: Session, login: bytes, password: bytes) -> AuthResult:
        ip = _ip(session)
        if self.login_blocked(ip):
            self._log(logging.WARNING, "authentication refused: too many failures", session)
            return AuthResult(
                success=False,
                handled=False,
                message=self._count("AUTH", "454 4.7.0 too many failed logins, try later"),
            )
        try:
            username = login.decode("utf-8")
            secret = password.decode("utf-8")
        except UnicodeDecodeError:
            username, secret = "", ""
        user = None
        if username and secret:
            try:
                user = await self.directory.verify_login(username, secret)
            except StoreUnavailable as exc:
                self._log(logging.ERROR, "authentication: store unavailable", session, error=exc)
                return AuthResult(
                    success=False,
                    handled=False,
                    message=self._count("AUTH", "454 4.7.0 temporary authentication failure"),
                )
        if user is None or user.account_id is None:
            self.login_failures.allow(ip, self.monotonic())
            self._log(logging.WARNING, "authentication failed", session, user=username[:64])
            return AuthResult(
                success=False,
                handled=False,
                message=self._count("AUTH", "535 5.7.8 authentication credentials invalid"),
            )
        self._log(logging.INFO, "authenticated", session, user=user.username)
        self._count("AUTH", "235")
        return AuthResult(success=True, auth_data=user)

    # --- directory with a short cache -------------------------------------------------------

    async def _account_for(self, address: str) -> Account | None:
        key = address.lower()
        now = self.monotonic()
        hit = self._sender_cache.get(key)
        if hit is not None and now - hit[0] < DIRECTORY_CACHE_SECONDS:
            return hit[1]
        account = await self.directory.account_for_sender(key)
        self._sender_cache[key] = (now, account)
        return account

    async def _allows(self, account_id: int, ip: str) -> bool:
        key = (account_id, ip)
        now = self.monotonic()
        hit = self._network_cache.get(key)
        if hit is not None and now - hit[0] < DIRECTORY_CACHE_SECONDS:
            return hit[1]
        allowed = await self.directory.allows(account_id, ip)
        self._network_cache[key] = (now, allowed)
        return allowed

    # --- aiosmtpd hooks ---------------------------------------------------------------------

    async def handle_exception(self, error: Exception) -> str:
        """A command raised (aiosmtpd's hook; it has no session to pass). aiosmtpd would log a
        traceback at ERROR and answer `500 Error: (<exception class>) <text>`, internals
        included. A failed STARTTLS handshake is the client's doing: one warning line (aiosmtpd
        closes that connection). Anything else is ours: logged with its traceback, and a
        temporary error without internals, so the sending MTA tries again."""
        if isinstance(error, TLSSetupException):
            cause = error.__cause__ or error
            logger.warning(
                "TLS handshake after STARTTLS failed", extra={"fields": {"error": repr(cause)}}
            )
            return self._count("STARTTLS", "454 4.7.0 TLS not available due to temporary reason")
        logger.error("SMTP command failed", exc_info=error)
        return self._count("?", "451 4.3.0 internal error, try again later")

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """aiosmtpd reads commands one after the other from its stream, so clients may send
        them in batches: advertise RFC 2920 PIPELINING (before the final "250 HELP" line)."""
        session.host_name = hostname
        # with AUTH switched off aiosmtpd still announces an empty "AUTH" line: drop it
        kept = [line for line in responses[:-1] if line.strip() != "250-AUTH"]
        return [*kept, "250-PIPELINING", responses[-1]]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        ip = _ip(session)
        if not self.ip_messages.allow(ip, self.monotonic()):
            self._log(logging.WARNING, "message rate limit (IP)", session)
            return self._count("MAIL", "452 4.7.0 too many messages from your address, try later")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        _state(envelope).account = None
        return self._count("MAIL", "250 2.1.0 sender OK")

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = await self._check_rcpt(server, session, envelope, address)
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        else:
            self._log(logging.INFO, "recipient refused", session, rcpt=address, reply=reply)
        return self._count("RCPT", reply)

    async def _check_rcpt(
        self, server: SMTP, session: Session, envelope: Envelope, address: str
    ) -> str:
        state = _state(envelope)
        limits = self.limits
        if len(state.recipients) >= limits.max_recipients:
            return f"452 4.5.3 too many recipients (at most {limits.max_recipients} per message)"
        domain = address.rpartition("@")[2]
        if "@" not in address or not is_gateway_domain(domain, limits.domains):
            return "550 5.7.1 relay denied: this gateway only delivers to its own domains"
        sender = envelope.mail_from or ""
        if sender in ("", "<>"):
            return "550 5.7.1 a message without a sender (MAIL FROM:<>) cannot be sent to phones"
        account = state.account
        if account is None:
            try:
                account, problem = await self._sender_account(server, session, sender)
            except StoreUnavailable as exc:
                self._log(logging.ERROR, "directory unavailable", session, error=repr(exc))
                return "451 4.3.0 temporary failure, try again later"
            if problem:
                return problem
            assert account is not None
            state.account = account
        settings = account.settings
        if settings.require_tls and not _uses_tls(server):
            return "530 5.7.0 this account requires TLS: issue STARTTLS first"
        if not state.counted:
            if not self.account_messages.allow(account.id, self.monotonic()):
                self._log(logging.WARNING, "message rate limit (account)", session)
                return "452 4.7.0 too many messages for this account, try later"
            state.counted = True
            if settings.check_spf:
                verdict = await asyncio.to_thread(
                    authenticity.check_spf, _ip(session), sender, session.host_name or ""
                )
                self._log(logging.INFO, "SPF", session, sender=sender, result=verdict.result)
                if not verdict.ok:
                    state.counted = False
                    return verdict.reply
                state.spf_domain = verdict.domain
        if len(state.recipients) >= settings.max_recipients:
            return f"452 4.5.3 too many recipients (the account allows {settings.max_recipients})"
        try:
            parsed = parse_address(
                address, limits.domains, default_country=settings.default_country
            )
        except AddressProblem as exc:
            if exc.kind == "relay":
                return "550 5.7.1 relay denied: this gateway only delivers to its own domains"
            return f"550 5.1.1 <{address}>: {exc.reason}"
        state.recipients.append(parsed)
        return f"250 2.1.5 {parsed.number} by {parsed.device.value.upper()} OK"

    async def _sender_account(
        self, server: SMTP, session: Session, sender: str
    ) -> tuple[Account | None, str]:
        account = await self._account_for(sender)
        if account is None:
            return None, (
                f"550 5.7.1 sender <{sender}> is not provisioned for this gateway;"
                " ask support to register the address or its domain"
            )
        if not account.enabled:
            return None, "550 5.7.1 the sender's account is disabled"
        user = session.auth_data if session.authenticated else None
        if isinstance(user, User):
            if user.account_id != account.id:
                return None, (
                    f"550 5.7.1 sender <{sender}> does not belong to the account"
                    f" of user {user.username}"
                )
            return account, ""
        ip = _ip(session)
        if not await self._allows(account.id, ip):
            return None, (
                f"550 5.7.1 connections from {ip} are not allowed for the sender's account;"
                " authenticate (AUTH) or ask support to add the network"
            )
        return account, ""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        spool: _Spool | None = getattr(envelope, "spool", None)
        try:
            return self._count("DATA", await self._data(session, envelope, spool))
        except Exception:  # never a crash for the client: a temporary error and a log line
            logger.exception("DATA failed", extra={"fields": {"peer": _ip(session)}})
            return self._count("DATA", "451 4.3.0 internal error, try again later")
        finally:
            if spool is not None:
                spool.discard()

    async def _data(self, session: Session, envelope: Envelope, spool: _Spool | None) -> str:
        state = _state(envelope)
        account = state.account
        if account is None or not state.recipients:
            return "503 5.5.1 no valid recipients"
        if spool is None:
            raw = envelope.original_content or b""
            spool = _Spool(self.spool_dir)
            spool.write(raw if isinstance(raw, bytes) else raw.encode())
        try:
            parsed = await self._parse(spool)
        except UnreadableEmail as exc:
            return f"550 5.6.0 cannot read the message: {exc.reason}"
        settings = account.settings
        sender = (envelope.mail_from or "").lower()
        from_ok = [a for a in parsed.from_addresses if await self._same_account(a, account)]
        if not from_ok:
            shown = ", ".join(parsed.from_addresses) or "(none)"
            return (
                f"550 5.7.1 From: {shown} is not a provisioned sender of the account of <{sender}>"
            )
        if settings.check_dkim:
            data = await asyncio.to_thread(spool.data)
            verdict = await asyncio.to_thread(
                authenticity.check_dkim,
                data,
                authenticity.domain_of(from_ok[0]),
                state.spf_domain,
            )
            self._log(logging.INFO, "DKIM", session, result=verdict.result)
            if not verdict.ok:
                return verdict.reply
        devices = [r.device for r in state.recipients]
        body = sms_body(parsed, signature=settings.strip_signature, quotes=settings.strip_quotes)
        subject = parsed.subject
        if not body and subject:  # the template's separator must not dangle: "Subject,"
            body, subject = subject, ""
        kept, ignored = attachments_for(parsed, devices)
        if ignored:
            self._log(
                logging.INFO,
                "attachments no recipient device takes were not kept",
                session,
                ignored=",".join(f"{a.filename} ({a.content_type})" for a in ignored),
            )
        submitter = from_ok[0]
        auto = parsed.auto_submitted not in (None, "no")
        if Device.SMS in devices and body:
            problem = _long_text_problem(account, subject, body, submitter)
            if problem:
                return problem
        try:
            attachments = tuple(
                [
                    Attachment(
                        filename=a.filename,
                        content_type=a.content_type,
                        blob_id=await self.blobs.put(a.data),
                        size=len(a.data),
                    )
                    for a in kept
                ]
            )
        except StoreUnavailable as exc:
            self._log(logging.ERROR, "blob store unavailable", session, error=repr(exc))
            return "451 4.3.0 cannot store the attachments now, try again later"
        except ValueError as exc:
            return f"552 5.3.4 {exc}"
        extra: dict[str, Any] = {"mail_from": sender}
        if parsed.message_id:
            extra["message_id"] = parsed.message_id[:998]
        if auto:
            extra["auto_submitted"] = parsed.auto_submitted
        if ignored:
            extra["ignored_attachments"] = [a.filename for a in ignored]
        submission = Submission(
            account=account,
            origin=Origin.SMTP,
            submitter=submitter,
            recipients=tuple(r.recipient for r in state.recipients),
            content=Content(text=body, subject=subject, attachments=attachments),
            # RFC 3834 5: no notification about an automatic message (no mail loops)
            options=Options(report=ReportOn.NONE if auto else settings.notify_on, extra=extra),
        )
        try:
            accepted = await self.accept(submission)
        except SubmissionRejected as exc:
            self._log(logging.INFO, "message refused", session, reason=str(exc))
            return _rejection(exc)
        except StoreUnavailable as exc:
            self._log(logging.ERROR, "store unavailable", session, error=repr(exc))
            return "451 4.3.0 the message could not be stored now, try again later"
        self._log(
            logging.INFO,
            "message accepted",
            session,
            message=accepted.message_id,
            sender=sender,
            recipients=len(accepted.recipients),
            size=spool.size,
        )
        return f"250 2.0.0 queued as {accepted.message_id}"

    async def _same_account(self, address: str, account: Account) -> bool:
        found = await self._account_for(address)
        return found is not None and found.id == account.id

    async def _parse(self, spool: _Spool) -> ParsedEmail:
        spool.finish()
        if spool.path is None or spool.size <= LARGE_MESSAGE:
            return parse_email(spool.data())
        async with self._pool_starting:
            if self._pool is None:
                await asyncio.to_thread(self.start_parsers)
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _parse_file, str(spool.path))


def _long_text_problem(account: Account, subject: str, body: str, submitter: str) -> str:
    """550 5.3.4 when the SMS text is longer than the account lets it be."""
    settings = account.settings
    preview = Message(
        id="-",
        account_id=account.id,
        origin=Origin.SMTP,
        submitter=submitter,
        content=Content(text=body, subject=subject),
        options=Options(),
        created_at=datetime.now(UTC),
    )
    text = sms_text(preview, settings)
    if len(text) <= 70 and len(text.encode("utf-16-le")) <= 140:
        return ""  # one SMS whatever the alphabet: 70 UCS-2 units (GSM 03.38: 160 septets)
    if settings.long_sms_policy is LongSmsPolicy.TRUNCATE:
        return ""
    if settings.long_sms_policy is LongSmsPolicy.CONCATENATE and (
        _most_parts(text) <= settings.max_sms_parts
    ):
        return ""  # plainly within the limit: no need to plan the parts one by one
    needed = plan_segments(text, max_parts=255).total_parts
    if settings.long_sms_policy is LongSmsPolicy.REJECT and needed > 1:
        return f"550 5.3.4 the text needs {needed} SMS and the account allows only one"
    if settings.long_sms_policy is LongSmsPolicy.CONCATENATE and needed > settings.max_sms_parts:
        return (
            f"550 5.3.4 the text needs {needed} SMS parts and the account allows"
            f" {settings.max_sms_parts}; shorten the message"
        )
    return ""


_GSM7_EXTENSION_CHARS = tuple(GSM7_EXTENSION.values())
# the same sets as bytes, for ASCII text (bytes.translate deletes them at C speed)
_GSM7_ASCII = bytes(c for c in range(128) if gsm7_can_encode(chr(c)))
_ASCII_NOT_EXTENSION = bytes(c for c in range(128) if chr(c) not in _GSM7_EXTENSION_CHARS)


def _most_parts(text: str) -> int:
    """At most how many parts `plan_segments(text)` cuts the text into (its default 8-bit
    concatenation header: 153 septets or 67 UCS-2 units a part). A part may end one unit short
    (an escape or surrogate pair is never split), so counting a unit less per part is an upper
    bound; it is exact or one above, and costs a few C-level string scans instead of a plan."""
    ascii_text = text.encode("ascii") if text.isascii() else None
    if ascii_text is not None and not ascii_text.translate(None, _GSM7_ASCII):
        # all in GSM 03.38; an extension character takes two septets (ESC + code)
        units = len(ascii_text) + len(ascii_text.translate(None, _ASCII_NOT_EXTENSION))
        single, per_part = 160, 152
    elif ascii_text is None and gsm7_can_encode(text):
        units = len(text) + sum(map(text.count, _GSM7_EXTENSION_CHARS))
        single, per_part = 160, 152
    else:
        units, single, per_part = len(text.encode("utf-16-le")) // 2, 70, 66
    return 1 if units <= single else -(-units // per_part)


def _rejection(exc: SubmissionRejected) -> str:
    fields = {p.field.split("[")[0] for p in exc.problems}
    reason = "; ".join(p.reason for p in exc.problems)
    if "account" in fields:
        return f"550 5.7.1 {reason}"
    if "recipients" in fields:
        return f"550 5.1.1 {reason}"
    return f"550 5.6.0 {reason}"


def _state(envelope: Envelope) -> _EnvelopeState:
    state = envelope.__dict__.get("_teleway")
    if state is None:
        state = _EnvelopeState()
        envelope.__dict__["_teleway"] = state
    return state


def _ip(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


def _uses_tls(server: SMTP) -> bool:
    return server._tls_protocol is not None


# RFC 5322 3.2.3 dot-atom of ASCII atext on both sides of the "@": what nearly every MAIL FROM
# and RCPT TO carries. "=?" is left out (the header parser would try an RFC 2047 encoded word).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ANGLE_ADDRESS = re.compile(
    rf"<({_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*)>(.*)", re.DOTALL
)


def plain_address(arg: str) -> tuple[str, str] | None:
    """(address, rest) of `<local@domain> rest` when both sides are plain dot-atoms, exactly as
    aiosmtpd's `_getaddr` (the e-mail header parser) gives them; None for anything else
    (quoted local parts, comments, literals, `<>`, routes), which the full parser reads.

    The full parser builds a token tree per address and aiosmtpd defines a class on every call:
    together a fifth of the listener's CPU per message, for two addresses that are plain text."""
    match = _PLAIN_ANGLE_ADDRESS.fullmatch(arg)
    if match is None or "=?" in match.group(1):
        return None
    rest = match.group(2)
    if rest[:1] in (" ", "\t"):  # the parser drops white space after ">" (RFC 5322 CFWS) ...
        rest = rest.lstrip()
    if rest[:1] == "(":  # ... and comments, which are left to it
        return None
    return match.group(1), rest


DATA_CHUNK = 64 * 1024
IDLE_TIMER_SLACK = 0.001  # seconds: an idle timer this close to its deadline counts as due
# RFC 5321 4.5.3.1.6 allows 1000 octets per line; like Postfix we take longer lines (some
# mailers send them) up to this size, which also bounds what is held while looking for CRLF
MAX_DATA_LINE = 64 * 1024


def _has_long_line(buffer: bytes, end: int) -> bool:
    """Whether a line between the CRLF at 0 and the CRLF at `end` of `buffer` is longer than
    MAX_DATA_LINE. Jumps to the last CRLF within reach of a longest allowed line: a few C-level
    searches per chunk, not one Python step per line."""
    position = 0
    while end - position - 2 > MAX_DATA_LINE:
        position = buffer.rfind(b"\r\n", position + 2, position + 4 + MAX_DATA_LINE)
        if position < 0:
            return True
    return False


class DotDecoder:
    """RFC 5321 4.5.2 DATA transparency on chunks of any size: finds the terminating
    `CRLF.CRLF` and deletes the first character of every line that starts with a period.

    Works with byte-string operations (find, replace) on whole chunks instead of one Python
    step per line, so a 20 MB message costs the event loop a few milliseconds. A line end or a
    stuffed dot split across chunks is handled by carrying the unfinished last line over."""

    def __init__(self) -> None:
        self._carry = b"\r\n"  # the data starts at the beginning of a line
        self._first = True
        self.done = False
        self.too_long = False

    def feed(self, chunk: bytes) -> tuple[bytes, bytes]:
        """Decode `chunk`; return (message bytes, bytes after the end marker). `too_long` is
        set when a line before the end marker is longer than MAX_DATA_LINE (its CRLF not
        counted), however the data was cut into chunks; the message is then not kept."""
        buffer = self._carry + chunk
        end = buffer.find(b"\r\n.\r\n")
        if self.too_long:  # only the end marker matters now
            if end >= 0:
                self.done = True
                return b"", buffer[end + 5 :]
            self._carry = buffer[-4:]
            return b"", b""
        if end >= 0:
            self.done = True
            self._carry = b""
            if _has_long_line(buffer, end):
                self.too_long = True
                return b"", buffer[end + 5 :]
            return self._emit(buffer[: end + 2]), buffer[end + 5 :]
        cut = buffer.rfind(b"\r\n")  # >= 0: the carry starts with the CRLF ending its line
        # the unfinished last line (a CR at the very end may be half of its CRLF)
        tail = len(buffer) - cut - 2 - (buffer[-1:] == b"\r")
        if tail > MAX_DATA_LINE or _has_long_line(buffer, cut):
            self.too_long = True
            self._carry = buffer[-4:]
            return b"", b""
        self._carry = buffer[cut:]
        if cut == 0:
            return b"", b""
        return self._emit(buffer[:cut]), b""

    def _emit(self, piece: bytes) -> bytes:
        # a line starting with "." loses that first dot (the client doubled it)
        data = piece.replace(b"\r\n.", b"\r\n")
        if self._first:
            self._first = False
            data = data[2:]
        return data


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP with connection limits, DATA spooled to disk, and AUTH whose password
    check (argon2) runs off the event loop."""

    def __init__(self, policy: SmtpPolicy, **kwargs: Any) -> None:
        super().__init__(policy, **kwargs)
        self.policy = policy
        self._counted_ip: str | None = None
        self._idle_deadline = 0.0
        # aiosmtpd keeps the per-command line limits in one dict shared by every connection
        # (a class attribute, cleared by each new connection) and raises MAIL's by the SIZE
        # and SMTPUTF8 allowances at every EHLO: each connection gets its own here
        self.command_size_limits = collections.defaultdict(self._default_command_size)

    def _default_command_size(self) -> int:
        return self.command_size_limit

    async def smtp_EHLO(self, hostname: str) -> None:
        """aiosmtpd's EHLO, MAIL's line limit first back to the base (EHLO adds the SIZE and
        SMTPUTF8 allowances to it, once per EHLO)."""
        self.command_size_limits.pop("MAIL", None)
        await super().smtp_EHLO(hostname)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """The idle timeout, moved on at every command. aiosmtpd cancels its timer and makes a
        new one each time (a heap push, and cancelled handles piling up in the loop's heap);
        here the deadline moves and the connection's one timer, when it fires, either closes
        an idle connection or waits for the deadline as it is by then."""
        deadline = self.loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        if self._idle_deadline - self.loop.time() > IDLE_TIMER_SLACK:
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_check)
        else:
            self._timeout_cb()  # type: ignore[no-untyped-call]

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parsing with a fast path for plain `<local@domain>` addresses."""
        found = plain_address(arg)
        if found is None:
            return super()._getaddr(arg)
        address, rest = found
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest

    async def _handle_client(self) -> None:
        assert self.session is not None
        ip = _ip(self.session)
        refusal = self.policy.connection_opened(ip)
        if refusal is not None:
            logger.warning("connection refused", extra={"fields": {"peer": ip, "reply": refusal}})
            await self.push(refusal)
            assert self.transport is not None
            self.transport.close()
            return
        self._counted_ip = ip
        await super()._handle_client()

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted_ip is not None:
            self.policy.connection_closed(self._counted_ip)
            self._counted_ip = None
        super().connection_lost(error)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            answer = await self.challenge_auth("")
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)
            blob = answer
        else:
            try:
                blob = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 cannot decode base64")
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:  # RFC 4616 2: [authzid] NUL authcid NUL passwd
            await self.push("501 5.5.2 cannot split the PLAIN credentials")
            return AuthResult(success=False, handled=True)
        assert self.session is not None
        return await self.policy.authenticate(self.session, parts[1], parts[2])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if not isinstance(login, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 cannot decode base64")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        assert self.session is not None
        return await self.policy.authenticate(self.session, login, password)

    async def smtp_DATA(self, arg: str) -> None:
        """RFC 5321 4.1.1.4 DATA, spooling the message instead of keeping it in memory."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 syntax: DATA")
            return
        await self.push("354 end data with <CR><LF>.<CR><LF>")
        spool = _Spool(self.policy.spool_dir)
        limit = self.data_size_limit
        decoder = DotDecoder()
        too_big = False
        try:
            while not decoder.done:
                chunk = await self._reader.read(DATA_CHUNK)
                if not chunk:  # the client went away in the middle of DATA
                    spool.discard()
                    return
                data, leftover = decoder.feed(chunk)
                if leftover:
                    # pipelined commands after the final "." (RFC 2920) go back to the reader
                    self._reader._buffer[:0] = leftover  # type: ignore[attr-defined]
                if too_big or decoder.too_long:
                    continue
                spool.write(data)
                if limit and spool.size > limit:
                    too_big = True
            spool.finish()
        except BaseException:
            spool.discard()
            raise
        if too_big or decoder.too_long:
            spool.discard()
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            if decoder.too_long:  # decided on the whole data; the size only up to that line
                await self.push(f"500 5.5.2 a line is longer than {MAX_DATA_LINE} bytes")
            else:
                await self.push(f"552 5.3.4 message larger than {limit} bytes")
            return
        self.envelope.content = None
        self.envelope.original_content = None
        self.envelope.spool = spool  # type: ignore[attr-defined]
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if not isinstance(status, str) else status)


class SmtpListener:
    """The SMTP server socket: one `GatewaySMTP` per connection, all sharing one policy."""

    def __init__(
        self,
        policy: SmtpPolicy,
        *,
        host: str,
        port: int,
        tls_context: Any = None,
        auth: bool = True,
    ) -> None:
        self.policy = policy
        self.host = host
        self.port = port
        self.tls_context = tls_context
        self.auth = auth
        self._server: asyncio.base_events.Server | None = None

    def _protocol(self) -> GatewaySMTP:
        limits = self.policy.limits
        return GatewaySMTP(
            self.policy,
            data_size_limit=limits.max_message_size,
            enable_SMTPUTF8=True,
            hostname=limits.hostname,
            ident="teleway ESMTP",
            tls_context=self.tls_context,
            require_starttls=False,
            auth_require_tls=True,
            auth_exclude_mechanism=[] if self.auth else ["PLAIN", "LOGIN"],
            timeout=limits.timeout,
            authenticator=_never,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, host=self.host, port=self.port)
        sockets = self._server.sockets or ()
        if sockets and self.port == 0:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        self.policy.close()


def _never(*_: Any) -> AuthResult:
    """aiosmtpd's synchronous authenticator is never used: our auth_* methods check passwords
    asynchronously (argon2 in a worker thread)."""
    return AuthResult(success=False)


__all__ = ["GatewaySMTP", "LoginPassword", "SmtpLimits", "SmtpListener", "SmtpPolicy"]
