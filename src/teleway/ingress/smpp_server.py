"""The SMPP server: customers' ESMEs bind to teleway (the SMSC) over TCP and TLS.

A thin asyncio adapter. Each connection is one `transport.smpp.SmppLink` around a
`proto.smpp.Session` in the SMSC role (the session answers enquire_link, enforces the bind
state table and the peer's window, runs the timers). This module decides what the ESME's
requests mean, with the policy in `core.smpp_submit`:

* binds: credential, source network, system_type, simultaneous binds per credential; failed
  binds are rate limited per client IP (argon2 runs in a thread, never on the event loop);
* submit_sm / data_sm / submit_multi -> `accept()` (through the gateway's `Acceptor`); the
  ESME_ROK answer goes out only after the commit; parts of a concatenated message are held
  until all have arrived and are then accepted as ONE message, every part answered with its
  message_id;
* query_sm, cancel_sm, replace_sm through `store.smpp_ops`;
* throughput per credential (token bucket) -> ESME_RTHROTTLED;
* the live binds per account (`BindRegistry`), for `notify.smpp_receipts`, which sends
  receipts and replies to receiver/transceiver binds.

Bounded buffering: the session answers ESME_RTHROTTLED beyond `window` unanswered requests, the
link stops reading while that many are being handled, and a client that stops reading its
responses is dropped once its write buffer stayed above `WRITE_BUFFER_HIGH` for
`response_timeout` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from teleway.core.accept import MAX_VALIDITY, SubmissionRejected, parse_recipient
from teleway.core.model import (
    Accepted,
    Account,
    Recipient,
    SmppCredential,
    Submission,
)
from teleway.core.numbers import InvalidNumber
from teleway.core.ports import Clock, StoreFull, StoreUnavailable
from teleway.core.ratelimit import SlidingWindow, TokenBucket
from teleway.core.smpp_submit import (
    Replacement,
    SmppMessages,
    SubmitRequest,
    cancellable,
    content_of,
    destination_of,
    query_state,
    read_replace,
    read_submit,
    sender_of,
    status_for_problems,
    submission_of,
    validity_ok,
)
from teleway.proto.smpp.constants import CommandStatus
from teleway.proto.smpp.errors import SmppError
from teleway.proto.smpp.pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    CancelSm,
    DataSm,
    Pdu,
    QuerySm,
    ReplaceSm,
    SubmitMulti,
    SubmitSm,
    UnsuccessSme,
)
from teleway.proto.smpp.session import BindType, Role, Session
from teleway.proto.smpp.tlv import Tlv
from teleway.transport.smpp import SmppLink

logger = logging.getLogger("teleway.smpp.server")

_S = CommandStatus
#: A client's unsent responses beyond this many octets mean it is not reading (every PDU we
#: answer is small: 64 KiB is thousands of responses).
WRITE_BUFFER_HIGH = 64 * 1024
#: Incomplete concatenated messages held at once (all accounts); beyond: ESME_RMSGQFUL.
MAX_PENDING_GROUPS = 10_000
#: sc_interface_version we announce in bind responses (spec 5.3.2.25): SMPP v3.4.
SC_INTERFACE_VERSION = 0x34
_SC_INTERFACE_VERSION_TAG = 0x0210


def _log(level: int, message: str, **fields: Any) -> None:
    """Structured log line (runtime.logs renders `fields`)."""
    logger.log(level, message, extra={"fields": fields})


class CoalescingWriter:
    """The `asyncio.StreamWriter` an `SmppLink` writes to: the PDUs written during one turn
    of the event loop leave in one send (a group commit answers a whole window at once; one
    syscall per submit_sm_resp was the largest cost in the profile). Flow control is kept:
    past `WRITE_BUFFER_HIGH` octets `drain` sends at once and waits for the transport."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.transport = writer.transport
        self._buffer = bytearray()
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not self._buffer:
            self._loop.call_soon(self.flush)
        self._buffer += data

    def flush(self) -> None:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            if not self._writer.is_closing():
                self._writer.write(data)

    def is_closing(self) -> bool:
        return self._writer.is_closing()

    def close(self) -> None:
        self.flush()
        self._writer.close()

    async def drain(self) -> None:
        if len(self._buffer) >= WRITE_BUFFER_HIGH:
            self.flush()
        await self._writer.drain()

    async def wait_closed(self) -> None:
        await self._writer.wait_closed()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._writer.get_extra_info(name, default)


class BindDirectory(Protocol):
    """What the server needs from `store.directory.Directory`."""

    async def credential(self, system_id: str) -> SmppCredential | None: ...

    async def verify_bind(self, system_id: str, password: str) -> SmppCredential | None: ...

    async def allows(self, account_id: int, ip: str) -> bool: ...

    async def get_account(self, account_id: int) -> Account | None: ...


class ServerObserver(Protocol):
    """Metrics hooks (runtime.metrics.SmppServerMetrics implements them)."""

    def request(self, command: str, status: int) -> None: ...

    def binds(self, bind_type: str, delta: int) -> None: ...

    def bind_failed(self, reason: str) -> None: ...


class _NoObserver:
    def request(self, command: str, status: int) -> None:
        return None

    def binds(self, bind_type: str, delta: int) -> None:
        return None

    def bind_failed(self, reason: str) -> None:
        return None


@dataclass(frozen=True, kw_only=True)
class SmppServerSettings:
    host: str = "127.0.0.1"
    port: int = 2775
    plain: bool = True
    tls_host: str = "127.0.0.1"
    tls_port: int = 3550
    tls: ssl.SSLContext | None = None
    system_id: str = "teleway"  # what bind responses name us
    window: int = 10  # the ESME's requests we handle at once (the session's peer_window)
    receipt_window: int = 10  # our deliver_sm awaiting deliver_sm_resp per bind
    enquire_link_interval: float = 30.0
    response_timeout: float = 10.0
    inactivity_timeout: float | None = 300.0
    max_pdu_length: int = 65536
    concat_timeout: float = 10.0  # wait for the missing parts of a long message
    auth_fail_limit: int = 5
    auth_fail_window: float = 300.0


@dataclass(eq=False, kw_only=True)
class EsmeBind:
    """One bound connection, with what it needs cached (no SQL per submit)."""

    link: SmppLink
    credential: SmppCredential
    account: Account
    bind_type: BindType
    throttle: TokenBucket
    bound_at: float

    @property
    def receives(self) -> bool:
        return self.bind_type is not BindType.TRANSMITTER


class BindRegistry:
    """The live binds of this node: per credential (max_binds) and per account (receivers)."""

    def __init__(self) -> None:
        self._by_credential: dict[int, set[EsmeBind]] = {}
        self._receivers: dict[int, list[EsmeBind]] = {}
        self._buckets: dict[int, TokenBucket] = {}
        self._turn = itertools.count()
        self.changed = asyncio.Event()

    def count(self, credential_id: int) -> int:
        return len(self._by_credential.get(credential_id, ()))

    def bucket(self, credential: SmppCredential, now: float) -> TokenBucket:
        """One token bucket per credential, shared by its binds."""
        bucket = self._buckets.get(credential.id)
        if bucket is None or bucket.rate != credential.throughput:
            bucket = TokenBucket(credential.throughput, now=now)
            self._buckets[credential.id] = bucket
        return bucket

    def add(self, bind: EsmeBind) -> None:
        self._by_credential.setdefault(bind.credential.id, set()).add(bind)
        if bind.receives:
            self._receivers.setdefault(bind.account.id, []).append(bind)
            self.changed.set()

    def remove(self, bind: EsmeBind) -> None:
        binds = self._by_credential.get(bind.credential.id)
        if binds is not None:
            binds.discard(bind)
            if not binds:
                del self._by_credential[bind.credential.id]
        receivers = self._receivers.get(bind.account.id)
        if receivers is not None and bind in receivers:
            receivers.remove(bind)
            if not receivers:
                del self._receivers[bind.account.id]

    def all(self) -> list[EsmeBind]:
        return [b for binds in self._by_credential.values() for b in binds]

    def receiver_accounts(self) -> list[int]:
        """Accounts with a receiver or transceiver bound here (their receipts are ours)."""
        return [a for a, binds in self._receivers.items() if any(not b.link.closed for b in binds)]

    def receiver(self, account_id: int) -> EsmeBind | None:
        """A live receiver/transceiver bind of the account, taking turns."""
        binds = [b for b in self._receivers.get(account_id, ()) if not b.link.closed]
        if not binds:
            return None
        return binds[next(self._turn) % len(binds)]


class _PartGroup:
    __slots__ = ("parts", "timer", "waiters")

    def __init__(self) -> None:
        self.parts: dict[int, tuple[SubmitRequest, bytes]] = {}
        self.waiters: list[asyncio.Future[Accepted]] = []
        self.timer: asyncio.TimerHandle | None = None


def _store_error(exc: StoreFull | StoreUnavailable) -> SmppError:
    """A store that is full asks the ESME to retry later; one that is down is a system error."""
    if isinstance(exc, StoreFull):
        return SmppError(f"store full: {exc}", command_status=_S.ESME_RMSGQFUL)
    return SmppError(f"store unavailable: {exc}", command_status=_S.ESME_RSYSERR)


def _is_submit_sm(pdu: Pdu) -> bool:
    return type(pdu) is SubmitSm


AcceptFunction = Callable[[Submission], Awaitable[Accepted]]
#: `runtime.acceptance.Acceptor.accept_many`: submissions read together, stored with one write.
AcceptManyFunction = Callable[
    [Sequence[Submission]], Awaitable[list[Accepted | SubmissionRejected]]
]


class SmppServer:
    def __init__(
        self,
        settings: SmppServerSettings,
        *,
        directory: BindDirectory,
        accept: AcceptFunction,
        operations: SmppMessages,
        clock: Clock,
        accept_many: AcceptManyFunction | None = None,
        observer: ServerObserver | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`accept_many`, when given, stores the plain submit_sm of one read (a window the ESME
        sent at once) with one store write instead of one each."""
        self.settings = settings
        self.directory = directory
        self.accept = accept
        self.accept_many = accept_many
        self.operations = operations
        self.clock = clock
        self.observer: ServerObserver = observer or _NoObserver()
        self.monotonic = monotonic
        self.registry = BindRegistry()
        self._servers: list[asyncio.Server] = []
        self._links: set[SmppLink] = set()
        self._binds: dict[SmppLink, EsmeBind] = {}
        self._auth_failures: dict[str, SlidingWindow] = {}
        self._groups: dict[tuple[Any, ...], _PartGroup] = {}
        self._stopping = False
        self.addresses: list[tuple[str, int]] = []

    # ---- listening -----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on the plain and/or TLS endpoints (OSError when a port is taken)."""
        s = self.settings
        try:
            if s.plain:
                await self._listen(s.host, s.port, None)
            if s.tls is not None:
                await self._listen(s.tls_host, s.tls_port, s.tls)
        except BaseException:
            await self.stop(0)
            raise

    async def _listen(self, host: str, port: int, context: ssl.SSLContext | None) -> None:
        server = await asyncio.start_server(
            self._connected, host, port, ssl=context, limit=s_limit(self.settings)
        )
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        self.addresses.append((str(sockname[0]), int(sockname[1])))

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting binds, unbind every ESME (waiting up to `timeout` for unbind_resp),
        then close what is left."""
        self._stopping = True
        for server in self._servers:
            server.close()
        links = list(self._links)
        if links:
            await asyncio.gather(*(link.unbind(timeout) for link in links), return_exceptions=True)
            await asyncio.wait(
                [asyncio.ensure_future(link.wait_closed()) for link in links], timeout=timeout
            )
        for link in list(self._links):
            link.writer.transport.abort()
        for group in list(self._groups.values()):
            self._fail_group(group, SmppError("shutting down", command_status=_S.ESME_RSYSERR))
        self._groups.clear()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        self._servers.clear()

    @property
    def connections(self) -> int:
        return len(self._links)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = self.settings
        now = self.monotonic()
        session = Session(
            Role.SMSC,
            window=s.receipt_window,
            response_timeout=s.response_timeout,
            enquire_link_interval=s.enquire_link_interval,
            inactivity_timeout=s.inactivity_timeout,
            max_command_length=s.max_pdu_length,
            peer_window=s.window,
            now=now,
        )
        link = SmppLink(
            reader,
            CoalescingWriter(writer),  # type: ignore[arg-type]  # the StreamWriter subset used
            session,
            handler=self._on_request,
            batch_handler=self._on_requests if self.accept_many is not None else None,
            batchable=_is_submit_sm if self.accept_many is not None else None,
            name="esme",
            clock=self.monotonic,
        )
        link.name = f"esme {link.peer}"
        transport = writer.transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        if self._stopping:
            transport.abort()
            return
        self._links.add(link)
        watchdog = asyncio.create_task(self._watch_writes(link))
        try:
            await link.run()
        finally:
            watchdog.cancel()
            self._links.discard(link)
            bind = self._binds.pop(link, None)
            if bind is not None:
                self.registry.remove(bind)
                self.observer.binds(bind.bind_type.value, -1)
                _log(
                    logging.INFO,
                    "ESME unbound",
                    system_id=bind.credential.system_id,
                    peer=link.peer,
                    seconds=round(self.monotonic() - bind.bound_at, 1),
                )

    async def _watch_writes(self, link: SmppLink) -> None:
        """Drop a client whose unsent responses stay above WRITE_BUFFER_HIGH (it stopped
        reading) for response_timeout: nothing is buffered without bound."""
        transport = link.writer.transport
        step = min(1.0, self.settings.response_timeout / 4)
        stuck_since: float | None = None
        while not link.closed:
            await asyncio.sleep(step)
            if transport.get_write_buffer_size() >= WRITE_BUFFER_HIGH:
                now = self.monotonic()
                stuck_since = stuck_since if stuck_since is not None else now
                if now - stuck_since >= self.settings.response_timeout:
                    _log(
                        logging.WARNING,
                        "ESME does not read its responses, dropping the connection",
                        peer=link.peer,
                        buffered=transport.get_write_buffer_size(),
                    )
                    transport.abort()
                    return
            else:
                stuck_since = None

    # ---- requests ------------------------------------------------------------------------

    async def _on_request(self, link: SmppLink, pdu: Pdu) -> Pdu | None:
        return await self._answered(link, pdu, self._answer(link, pdu))

    async def _answered(self, link: SmppLink, pdu: Pdu, answer: Awaitable[Pdu]) -> Pdu:
        """The response `answer` gives, or the refusal its SmppError asks for; counted."""
        try:
            response = await answer
        except SmppError as exc:
            return self._refusal(link, pdu, exc)
        self.observer.request(pdu.command_name, response.command_status)
        return response

    def _refusal(self, link: SmppLink, pdu: Pdu, exc: SmppError) -> Pdu:
        response = pdu.response(command_status=exc.command_status)
        level = logging.WARNING if exc.command_status == _S.ESME_RSYSERR else logging.INFO
        _log(
            level,
            f"{pdu.command_name} refused",
            peer=link.peer,
            status=exc.status_name,
            why=exc.message,
        )
        self.observer.request(pdu.command_name, response.command_status)
        return response

    async def _on_requests(self, link: SmppLink, pdus: list[Pdu]) -> list[Pdu | None]:
        """The submit_sm of one read, answered together: each is checked as alone, the plain
        ones (not a part of a concatenated message, no replace_if_present) are accepted with
        one store write; the others are answered in their own task, as if they came alone."""
        bind = self._binds.get(link)
        if bind is None or self.accept_many is None:  # not bound: each gets its refusal
            return [await self._on_request(link, pdu) for pdu in pdus]
        responses: list[Pdu | None] = [None] * len(pdus)
        plain: list[int] = []
        submissions: list[Submission] = []
        submitter = bind.credential.system_id
        for index, pdu in enumerate(pdus):
            submit: SubmitSm = pdu  # type: ignore[assignment]  # batchable: submit_sm only
            try:
                request = self._read_submit(bind, submit)
                if request.part is not None or request.extra.get("replace_if_present"):
                    answer = self._answered(link, pdu, self._submit_read(bind, submit, request))
                    link.answer_with(pdu, answer)
                    continue
                content = content_of(request.data_coding, request.payload)
            except SmppError as exc:
                responses[index] = self._refusal(link, pdu, exc)
                continue
            plain.append(index)
            submissions.append(
                submission_of(request, content, account=bind.account, submitter=submitter)
            )
        if not submissions:
            return responses
        try:
            results = await self.accept_many(submissions)
        except (StoreFull, StoreUnavailable) as exc:
            error = _store_error(exc)
            for index in plain:
                responses[index] = self._refusal(link, pdus[index], error)
            return responses
        for index, result in zip(plain, results, strict=True):
            pdu = pdus[index]
            if isinstance(result, SubmissionRejected):
                status = status_for_problems(result.problems)
                responses[index] = self._refusal(
                    link, pdu, SmppError(str(result), command_status=status)
                )
            else:
                responses[index] = pdu.response(message_id=result.message_id)
                self.observer.request(pdu.command_name, _S.ESME_ROK)
        return responses

    async def _answer(self, link: SmppLink, pdu: Pdu) -> Pdu:
        if isinstance(pdu, BindTransmitter | BindReceiver | BindTransceiver):
            return await self._bind(link, pdu)
        bind = self._binds.get(link)
        if bind is None:  # the session only lets bound requests through; belt and braces
            raise SmppError("not bound", command_status=_S.ESME_RINVBNDSTS)
        if isinstance(pdu, SubmitSm | DataSm | SubmitMulti):
            return await self._submit(bind, pdu)
        if isinstance(pdu, QuerySm):
            return await self._query(bind, pdu)
        if isinstance(pdu, CancelSm):
            return await self._cancel(bind, pdu)
        if isinstance(pdu, ReplaceSm):
            return await self._replace(bind, pdu)
        raise SmppError(f"{pdu.command_name} is not served", command_status=_S.ESME_RINVCMDID)

    # ---- bind ----------------------------------------------------------------------------

    async def _bind(
        self, link: SmppLink, pdu: BindTransmitter | BindReceiver | BindTransceiver
    ) -> Pdu:
        ip = link.peer
        now = self.monotonic()
        failures = self._auth_failures.get(ip)
        if self._stopping:
            return pdu.response(command_status=_S.ESME_RBINDFAIL)
        if failures is not None and failures.delay(now) > 0:
            self.observer.bind_failed("rate_limited")
            _log(logging.WARNING, "bind refused: too many failed binds", peer=ip)
            return pdu.response(command_status=_S.ESME_RBINDFAIL)
        status, reason, credential, account = await self._authenticate(pdu, ip)
        if status != _S.ESME_ROK or credential is None or account is None:
            self._bind_failed(ip, now)
            self.observer.bind_failed(reason)
            _log(
                logging.WARNING,
                "bind refused",
                peer=ip,
                system_id=pdu.system_id[:16],
                reason=reason,
                status=CommandStatus(status).name,
            )
            return pdu.response(command_status=status)
        bind_type = {
            BindTransmitter: BindType.TRANSMITTER,
            BindReceiver: BindType.RECEIVER,
            BindTransceiver: BindType.TRANSCEIVER,
        }[type(pdu)]
        bind = EsmeBind(
            link=link,
            credential=credential,
            account=account,
            bind_type=bind_type,
            throttle=self.registry.bucket(credential, now),
            bound_at=now,
        )
        self._binds[link] = bind
        self.registry.add(bind)
        self.observer.binds(bind_type.value, 1)
        link.name = f"esme {credential.system_id}@{ip}"
        _log(
            logging.INFO,
            "ESME bound",
            system_id=credential.system_id,
            account=account.name,
            bind=bind_type.value,
            peer=ip,
        )
        tlvs: tuple[Tlv, ...] = ()
        if pdu.interface_version >= SC_INTERFACE_VERSION:
            tlvs = (Tlv.int(_SC_INTERFACE_VERSION_TAG, SC_INTERFACE_VERSION),)
        return pdu.response(system_id=self.settings.system_id, tlvs=tlvs)

    async def _authenticate(
        self, pdu: BindTransmitter | BindReceiver | BindTransceiver, ip: str
    ) -> tuple[int, str, SmppCredential | None, Account | None]:
        """(status, reason for logs and metrics, credential, account). The ESME learns only
        the status: unknown system_id and a network not allowed both say ESME_RBINDFAIL."""
        credential = await self.directory.credential(pdu.system_id)
        if credential is None:
            # as slow as a real check, so timing does not tell which system_ids exist
            await self.directory.verify_bind(pdu.system_id, pdu.password)
            return _S.ESME_RBINDFAIL, "unknown_system_id", None, None
        if not await self.directory.allows(credential.account_id, ip):
            return _S.ESME_RBINDFAIL, "network_not_allowed", None, None
        verified = await self.directory.verify_bind(pdu.system_id, pdu.password)
        if verified is None:
            account = await self.directory.get_account(credential.account_id)
            if not credential.enabled or account is None or not account.enabled:
                return _S.ESME_RBINDFAIL, "disabled", None, None
            return _S.ESME_RINVPASWD, "wrong_password", None, None
        if verified.system_type and pdu.system_type != verified.system_type:
            return _S.ESME_RINVSYSTYP, "wrong_system_type", None, None
        if self.registry.count(verified.id) >= verified.max_binds:
            return _S.ESME_RBINDFAIL, "too_many_binds", None, None
        account = await self.directory.get_account(verified.account_id)
        if account is None or not account.enabled:
            return _S.ESME_RBINDFAIL, "disabled", None, None
        return _S.ESME_ROK, "ok", verified, account

    def _bind_failed(self, ip: str, now: float) -> None:
        window = self._auth_failures.get(ip)
        if window is None:
            if len(self._auth_failures) >= MAX_PENDING_GROUPS:  # bound the table too
                self._auth_failures.pop(next(iter(self._auth_failures)))
            window = SlidingWindow(self.settings.auth_fail_limit, self.settings.auth_fail_window)
            self._auth_failures[ip] = window
        window.record(now)

    # ---- submit --------------------------------------------------------------------------

    async def _submit(self, bind: EsmeBind, pdu: SubmitSm | DataSm | SubmitMulti) -> Pdu:
        return await self._submit_read(bind, pdu, self._read_submit(bind, pdu))

    def _read_submit(self, bind: EsmeBind, pdu: SubmitSm | DataSm | SubmitMulti) -> SubmitRequest:
        """Throughput check, then what the submit asks for (SmppError when refused)."""
        if not bind.throttle.take(self.monotonic()):
            raise SmppError(
                f"over {bind.credential.throughput:g} messages/s", command_status=_S.ESME_RTHROTTLED
            )
        device = bind.account.settings.smpp_default_device
        return read_submit(pdu, now=self.clock.now(), device=device)

    async def _submit_read(
        self, bind: EsmeBind, pdu: SubmitSm | DataSm | SubmitMulti, request: SubmitRequest
    ) -> Pdu:
        account = bind.account
        refused = list(request.refused)
        if isinstance(pdu, SubmitMulti):
            request, more = _checked_numbers(request, account)
            refused.extend(more)
            if not request.recipients:
                status = refused[0][3] if refused else _S.ESME_RINVNUMDESTS
                raise SmppError("no destination can be reached", command_status=status)
        if request.part is not None:
            accepted = await self._collect_part(bind, request)
        else:
            if request.extra.get("replace_if_present"):
                await self._replace_present(bind, request)
            accepted = await self._accept(bind, request, request.payload)
        if isinstance(pdu, SubmitMulti):
            return pdu.response(
                message_id=accepted.message_id,
                unsuccess_sme=tuple(UnsuccessSme(*item) for item in refused),
            )
        return pdu.response(message_id=accepted.message_id)

    async def _accept(self, bind: EsmeBind, request: SubmitRequest, payload: bytes) -> Accepted:
        content = content_of(request.data_coding, payload)
        submission = submission_of(
            request, content, account=bind.account, submitter=bind.credential.system_id
        )
        try:
            return await self.accept(submission)
        except SubmissionRejected as exc:
            raise SmppError(str(exc), command_status=status_for_problems(exc.problems)) from exc
        except (StoreFull, StoreUnavailable) as exc:
            raise _store_error(exc) from exc

    async def _replace_present(self, bind: EsmeBind, request: SubmitRequest) -> None:
        """replace_if_present_flag (5.2.18): the new message replaces a QUEUED one with the
        same source and destination."""
        settings = bind.account.settings
        for recipient in request.recipients:
            try:
                number = parse_recipient(recipient, settings.default_country)
            except InvalidNumber:
                continue
            for message_id in await self.operations.queued_to(
                bind.account.id, number, request.sender
            ):
                await self._cancel_message(bind, message_id, "replaced (replace_if_present_flag)")

    # ---- concatenated messages -------------------------------------------------------------

    async def _collect_part(self, bind: EsmeBind, request: SubmitRequest) -> Accepted:
        part = request.part
        assert part is not None
        key = (
            bind.account.id,
            request.sender,
            tuple(r.number for r in request.recipients),
            part.reference,
            part.total,
        )
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) >= MAX_PENDING_GROUPS:
                raise SmppError("too many incomplete messages", command_status=_S.ESME_RMSGQFUL)
            group = self._groups[key] = _PartGroup()
            group.timer = asyncio.get_running_loop().call_later(
                self.settings.concat_timeout, self._expire_group, key
            )
        waiter: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        group.waiters.append(waiter)
        group.parts.setdefault(part.seq, (request, request.payload))  # a repeat keeps the first
        if len(group.parts) == part.total:
            del self._groups[key]
            if group.timer is not None:
                group.timer.cancel()
            first = group.parts[1][0]
            payload = b"".join(group.parts[seq][1] for seq in range(1, part.total + 1))
            try:
                accepted = await self._accept(bind, first, payload)
            except SmppError as exc:
                self._fail_group(group, exc)
            except BaseException:
                # never leave the other parts' answers hanging (their ESME may be elsewhere)
                self._fail_group(
                    group,
                    SmppError("the message could not be stored", command_status=_S.ESME_RSYSERR),
                )
                raise
            else:
                for future in group.waiters:
                    if not future.done():
                        future.set_result(accepted)
        return await waiter

    def _expire_group(self, key: tuple[Any, ...]) -> None:
        group = self._groups.pop(key, None)
        if group is None:
            return
        missing = [seq for seq in range(1, key[4] + 1) if seq not in group.parts]
        _log(
            logging.WARNING,
            "concatenated message incomplete, parts refused",
            account_id=key[0],
            reference=key[3],
            missing=missing,
        )
        self._fail_group(
            group,
            SmppError(
                f"parts {missing} did not arrive within {self.settings.concat_timeout:g} s",
                command_status=_S.ESME_RSUBMITFAIL,
            ),
        )

    @staticmethod
    def _fail_group(group: _PartGroup, error: SmppError) -> None:
        if group.timer is not None:
            group.timer.cancel()
        for future in group.waiters:
            if not future.done():
                future.set_exception(SmppError(error.message, command_status=error.command_status))

    # ---- query, cancel, replace ------------------------------------------------------------

    async def _query(self, bind: EsmeBind, pdu: QuerySm) -> Pdu:
        found = await self._read(self.operations.message_of(pdu.message_id, bind.account.id))
        if found is None:
            raise SmppError(f"no message {pdu.message_id!r}", command_status=_S.ESME_RINVMSGID)
        _, deliveries = found
        state, final_date, error_code = query_state(deliveries)
        return pdu.response(
            message_id=pdu.message_id,
            final_date=final_date,
            message_state=state,
            error_code=error_code,
        )

    async def _cancel(self, bind: EsmeBind, pdu: CancelSm) -> Pdu:
        account = bind.account
        if pdu.message_id:
            found = await self._read(self.operations.message_of(pdu.message_id, account.id))
            if found is None:
                raise SmppError(f"no message {pdu.message_id!r}", command_status=_S.ESME_RINVMSGID)
            message_ids = [pdu.message_id]
        else:
            # spec 4.9.1: no message_id -> every message from source_addr to destination_addr
            sender = sender_of(pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr)
            number = destination_of(pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr)
            try:
                e164 = parse_recipient(Recipient(number=number), account.settings.default_country)
            except InvalidNumber as exc:
                raise SmppError(exc.reason, command_status=_S.ESME_RINVDSTADR) from exc
            message_ids = await self._read(self.operations.queued_to(account.id, e164, sender))
        cancelled = 0
        for message_id in message_ids:
            cancelled += await self._cancel_message(bind, message_id, "cancel_sm")
        if not cancelled:
            raise SmppError("nothing left to cancel", command_status=_S.ESME_RCANCELFAIL)
        return pdu.response()

    async def _cancel_message(self, bind: EsmeBind, message_id: str, why: str) -> int:
        found = await self._read(self.operations.message_of(message_id, bind.account.id))
        if found is None:
            return 0
        cancelled = 0
        now = self.clock.now()
        for delivery in found[1]:
            if cancellable(delivery):
                done = await self._read(
                    self.operations.cancel(
                        delivery.id, now=now, reason=f"{why} by {bind.credential.system_id}"
                    )
                )
                cancelled += done is not None
        return cancelled

    async def _replace(self, bind: EsmeBind, pdu: ReplaceSm) -> Pdu:
        found = await self._read(self.operations.message_of(pdu.message_id, bind.account.id))
        if found is None:
            raise SmppError(f"no message {pdu.message_id!r}", command_status=_S.ESME_RINVMSGID)
        message, _ = found
        now = self.clock.now()
        data_coding = message.content.data_coding or 0
        content, scheduled, valid, report = read_replace(pdu, now=now, data_coding=data_coding)
        if not validity_ok(valid, now, MAX_VALIDITY):
            raise SmppError("validity_period out of range", command_status=_S.ESME_RINVEXPIRY)
        limit = valid or min(d.valid_until for d in found[1])
        if scheduled is not None and scheduled >= limit:
            raise SmppError("scheduled after the validity ends", command_status=_S.ESME_RINVSCHED)
        replaced = await self._read(
            self.operations.replace(
                pdu.message_id,
                bind.account.id,
                Replacement(
                    content=content, scheduled_at=scheduled, valid_until=valid, report=report
                ),
                now=now,
                reason=f"replace_sm by {bind.credential.system_id}",
            )
        )
        if not replaced:
            raise SmppError("the message is no longer queued", command_status=_S.ESME_RREPLACEFAIL)
        return pdu.response()

    @staticmethod
    async def _read(operation: Awaitable[Any]) -> Any:
        try:
            return await operation
        except StoreUnavailable as exc:
            raise SmppError(f"store unavailable: {exc}", command_status=_S.ESME_RSYSERR) from exc


def s_limit(settings: SmppServerSettings) -> int:
    """StreamReader buffer limit: one maximal PDU (SmppLink reads in 64 KiB chunks)."""
    return max(settings.max_pdu_length, 65536)


def _checked_numbers(
    request: SubmitRequest, account: Account
) -> tuple[SubmitRequest, list[tuple[int, int, str, int]]]:
    """submit_multi: destinations libphonenumber refuses go to the unsuccess list instead of
    failing the whole message (accept() refuses a submission with any invalid recipient)."""
    kept: list[Recipient] = []
    refused: list[tuple[int, int, str, int]] = []
    for recipient in request.recipients:
        try:
            parse_recipient(recipient, account.settings.default_country)
        except InvalidNumber:
            number = recipient.number
            refused.append(
                (1 if number.startswith("+") else 0, 1, number.lstrip("+"), _S.ESME_RINVDSTADR)
            )
        else:
            kept.append(recipient)
    if len(kept) == len(request.recipients):
        return request, refused
    return _with_recipients(request, kept), refused


def _with_recipients(request: SubmitRequest, recipients: Iterable[Recipient]) -> SubmitRequest:
    return replace(request, recipients=tuple(recipients))


__all__ = [
    "BindDirectory",
    "BindRegistry",
    "EsmeBind",
    "ServerObserver",
    "SmppServer",
    "SmppServerSettings",
]
