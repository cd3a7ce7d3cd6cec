"""One upstream SMSC: binds, keep-alive, reconnect with back-off and jitter, throughput limit.

`Upstream.run()` keeps `binds` connections bound (transceivers, or transmitters plus receivers);
`submit_parts()` sends the parts of one message in order on one bound transmitting link. Receipts
and other deliver_sm from the SMSC go to `on_deliver`, and are answered only after it returned,
so a receipt is acknowledged once its effect is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from teleway.core.ratelimit import SlidingWindow
from teleway.proto.smpp.constants import CommandStatus, status_name
from teleway.proto.smpp.pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DataSm,
    DeliverSm,
    Pdu,
    SubmitSm,
)
from teleway.proto.smpp.session import BindType, Role, Session, SessionState
from teleway.transport.smpp import SmppLink

logger = logging.getLogger("teleway.upstream")

DeliverHandler = Callable[["Upstream", DeliverSm | DataSm], Awaitable[int]]
StateHandler = Callable[["Upstream", bool], None]


@dataclass(frozen=True, kw_only=True)
class UpstreamSettings:
    name: str
    host: str
    port: int
    system_id: str
    password: str
    system_type: str = ""
    tls: bool = False
    tls_verify: bool = True  # check the SMSC's certificate and host name
    tls_ca: str = ""  # CA bundle for a private SMSC certificate ("" = system store)
    bind_mode: str = "transceiver"  # or "transmitter+receiver"
    binds: int = 1
    window: int = 10
    throughput: float = 0.0  # messages per second, 0 = unlimited
    enquire_link_interval: float = 30.0
    response_timeout: float = 10.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    source_addr: str = ""
    source_ton: int = 1
    source_npi: int = 1
    data_coding_gsm: int = 0
    gsm_packed: bool = False
    concat: str = "udh8"
    message_id_format: str = "auto"


STABLE_LINK_SECONDS = 10.0  # a bind that lasted this long resets the reconnect back-off
PACE_CATCH_UP_SECONDS = 0.05  # a paced upstream late by up to this much catches up at once


class NotBound(ConnectionError):
    """No bound link to send on."""


class CoalescingLink(SmppLink):
    """An SmppLink that writes the PDUs queued during one event-loop turn with one send().

    With a window of 64 submits per bind, a busy dispatcher queues many submit_sm in the same
    turn; one socket write each cost most of the client's time (a system call and, on a busy
    machine, a wake-up of the peer per PDU). Deferring the write to the end of the turn
    (loop.call_soon) sends them together; nothing waits longer than that turn."""

    _flush_scheduled = False

    def _flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        SmppLink._flush(self)

    def respond(self, response: Pdu) -> None:
        # answers are written at once: an unbind_resp must go out before the socket closes
        if self.closed:
            return
        self.session.send(response, self.clock())
        SmppLink._flush(self)
        if self.session.state is SessionState.CLOSED:
            self.writer.close()


class Upstream:
    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        on_deliver: DeliverHandler,
        on_state: StateHandler | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.on_deliver = on_deliver
        self.on_state = on_state
        self.rng = rng or random.Random()
        self._tx_links: list[SmppLink] = []
        self._links: set[SmppLink] = set()  # every bound link, receivers included
        self._next = 0
        self._limiter = _limiter(settings.throughput)
        # submits waiting for the limiter, in arrival order, and the timer that lets them go
        self._pace_waiters: deque[asyncio.Future[None]] = deque()
        self._pace_timer: asyncio.TimerHandle | None = None
        self._pace_admitted = 0  # let go by the timer, not yet resumed (recorded then)
        # the throughput limit is also a pace: one submit every 1/throughput s at most, so that
        # a second's worth does not leave in one burst (see _pace)
        self._spacing = 1 / settings.throughput if settings.throughput > 0 else 0.0
        self._next_at = 0.0  # monotonic time before which the next submit is not let go
        # a paced submit must find a window slot once the limiter let it go: otherwise it waits
        # for a slot and is paced (counted) again, and the limit is under-used
        self._window_slots: dict[SmppLink, asyncio.Semaphore] = {}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._bound_event = asyncio.Event()
        self._failing_until = 0.0
        self._paused_until = 0.0
        self.slowdowns = 0  # times the SMSC asked us to slow down

    @property
    def bound(self) -> bool:
        return bool(self._tx_links)

    async def wait_bound(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._bound_event.wait(), timeout)
        return self.bound

    def start(self) -> None:
        kinds: list[type[BindTransceiver | BindTransmitter | BindReceiver]] = []
        if self.settings.bind_mode == "transceiver":
            kinds += [BindTransceiver] * self.settings.binds
        else:
            kinds += [BindTransmitter] * self.settings.binds
            kinds += [BindReceiver] * self.settings.binds
        for index, kind in enumerate(kinds):
            self._tasks.append(asyncio.create_task(self._keep_bound(kind, index)))

    async def stop(self) -> None:
        """Unbind every bound link (receivers too: the SMSC then keeps their receipts for the
        next bind instead of timing out on a dead connection) and stop reconnecting."""
        self._stopping.set()
        links = list(self._links)
        await asyncio.gather(
            *(link.unbind(timeout=self.settings.response_timeout) for link in links),
            return_exceptions=True,
        )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _keep_bound(
        self, kind: type[BindTransceiver | BindTransmitter | BindReceiver], index: int
    ) -> None:
        s = self.settings
        failures = 0
        label = f"{self.name}#{index}"
        while not self._stopping.is_set():
            link: SmppLink | None = None
            pump: asyncio.Task[None] | None = None
            try:
                context = self._tls_context() if s.tls else None
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(s.host, s.port, ssl=context), s.response_timeout
                )
                session = Session(
                    Role.ESME,
                    window=s.window,
                    response_timeout=s.response_timeout,
                    enquire_link_interval=s.enquire_link_interval,
                    now=time.monotonic(),
                )
                link = CoalescingLink(reader, writer, session, handler=self._on_request, name=label)
                pump = asyncio.create_task(link.run())
                response = await link.request(
                    kind(system_id=s.system_id, password=s.password, system_type=s.system_type)
                )
                if response.command_status != CommandStatus.ESME_ROK:
                    raise ConnectionRefusedError(
                        f"bind refused with {status_name(response.command_status)}"
                    )
                bound_at = time.monotonic()
                logger.info("%s: bound (%s) to %s:%d", label, kind.__name__, s.host, s.port)
                self._links.add(link)
                self._failing_until = 0.0  # a fresh bind is a fresh chance
                if session.bind_type is not BindType.RECEIVER:
                    self._window_slots[link] = asyncio.Semaphore(s.window)
                    self._tx_links.append(link)
                self._changed()
                await pump
                # back-off restarts only after a link that stayed up: an SMSC that accepts binds
                # and drops them at once is not hammered every reconnect_min
                stable = time.monotonic() - bound_at >= STABLE_LINK_SECONDS
                failures = 0 if stable else failures + 1
                if not self._stopping.is_set():
                    logger.warning("%s: link to %s:%d closed", label, s.host, s.port)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                logger.warning("%s: %s:%d unavailable: %s", label, s.host, s.port, exc)
            finally:
                if link is not None:
                    self._links.discard(link)
                    if link in self._tx_links:
                        self._tx_links.remove(link)
                        self._window_slots.pop(link, None)
                        self._changed()
                    link.writer.close()
                if pump is not None and not pump.done():
                    # the link ends once its socket is closed; do not leave it running
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(pump, s.response_timeout)
            if self._stopping.is_set():
                return
            # exponential back-off with jitter, reset after a successful bind
            ceiling = min(s.reconnect_max, s.reconnect_min * 2 ** min(failures, 16))
            delay = ceiling * (0.5 + 0.5 * self.rng.random())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.tls_ca or None)
        if not self.settings.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _changed(self) -> None:
        if self._tx_links:
            self._bound_event.set()
        else:
            self._bound_event.clear()
        if self.on_state is not None:
            self.on_state(self, self.bound)

    async def _on_request(self, link: SmppLink, pdu: Pdu) -> Pdu | None:
        if isinstance(pdu, DeliverSm | DataSm):
            status = await self.on_deliver(self, pdu)
            return pdu.response(command_status=status)
        return pdu.response(command_status=CommandStatus.ESME_RINVCMDID)

    async def _pace(self) -> None:
        """Wait until the throughput limit allows one more submit, and count it. Called by the
        link once a window slot is free, right before sending, so the limit holds on the wire.

        Two rules: the sliding window (never more than `throughput` in any second, exact) and a
        pace (one submit every 1/throughput s, on a schedule that a late wake-up of up to
        PACE_CATCH_UP_SECONDS does not shift). With the window alone a second's worth left in
        one burst as fast as the link allowed, and every following second had to repeat that
        burst exactly one second later: any moment the link or the SMSC was slower (no submit
        ready when its slot came) was lost for good, and accumulated (2-3 % under the limit).
        Paced, a late submit only delays itself.

        Waiting submits queue in order; one timer lets go, in one callback, every submit the
        limit allows at that moment (handing a lock from one waiter to the next took an
        event-loop turn per submit). Each is recorded when it resumes, right before it is
        written: the limit holds for the times submits leave, not the times they were let
        go."""
        while (pause := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(pause)
        limiter = self._limiter
        if limiter is None:
            return
        if not self._pace_waiters:
            now = time.monotonic()
            if self._slot_wait(now) == 0:
                self._take_slot(now)
                limiter.record(now)
                return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pace_waiters.append(future)
        if self._pace_timer is None:
            self._let_through()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # let go, but will not send
                self._pace_admitted -= 1
                if self._pace_timer is None:
                    self._let_through()
            raise
        self._pace_admitted -= 1
        limiter.record(time.monotonic())
        if not self._pace_admitted and self._pace_waiters:  # the timer counted on these
            if self._pace_timer is not None:
                self._pace_timer.cancel()
            self._let_through()

    def _let_through(self) -> None:
        """Let the waiting submits the limit allows now go (counted now); wake again when the
        next slot frees."""
        self._pace_timer = None
        limiter = self._limiter
        assert limiter is not None
        now = time.monotonic()
        waiters = self._pace_waiters
        while waiters:
            if waiters[0].done():  # its submit was cancelled while waiting
                waiters.popleft()
                continue
            wait = self._slot_wait(now)
            if wait > 0:
                self._pace_timer = asyncio.get_running_loop().call_later(wait, self._let_through)
                return
            self._take_slot(now)
            self._pace_admitted += 1
            waiters.popleft().set_result(None)

    def _slot_wait(self, now: float) -> float:
        """Seconds until both the pace and the sliding window allow one more submit."""
        assert self._limiter is not None
        return max(self._next_at - now, self._limiter.delay(now, self._pace_admitted))

    def _take_slot(self, now: float) -> None:
        """Advance the pace by one submit, from the schedule, not from `now`: a submit let go
        late (a busy event loop, a late timer) does not push the ones after it; after an idle
        spell the schedule restarts near `now`."""
        self._next_at = max(self._next_at, now - PACE_CATCH_UP_SECONDS) + self._spacing

    async def submit_parts(
        self, parts: Sequence[SubmitSm], *, responses: list[Pdu] | None = None
    ) -> list[Pdu]:
        """Send `parts` in order on one link; stop at the first error response.

        Returns the responses received (shorter than `parts` when one failed), also appended
        to `responses` as they come. Raises NotBound, LinkClosed or ResponseTimedOut when the
        link fails; `responses` then tells how many parts the SMSC took before (the caller
        retries the whole message: at-least-once)."""
        if not self._tx_links:
            raise NotBound(f"{self.name}: not bound")
        link = self._tx_links[self._next % len(self._tx_links)]
        self._next += 1
        if responses is None:
            responses = []
        pace = self._pace if self._limiter is not None or self._paused_until else None
        slots = self._window_slots.get(link)
        for part in parts:
            if pace is not None and slots is not None:
                async with slots:
                    response = await link.request(part, pace=pace)
            else:
                response = await link.request(part, pace=pace)
            responses.append(response)
            if response.command_status != CommandStatus.ESME_ROK:
                break
        return responses

    @property
    def healthy(self) -> bool:
        """False for a while after a link failed mid-submit: routing prefers other upstreams."""
        return time.monotonic() >= self._failing_until

    def mark_failing(self, seconds: float) -> None:
        self._failing_until = time.monotonic() + seconds

    def slow_down(self, seconds: float) -> None:
        """Send nothing for `seconds` (after ESME_RTHROTTLED or ESME_RMSGQFUL)."""
        until = time.monotonic() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self.slowdowns += 1


def _limiter(throughput: float) -> SlidingWindow | None:
    """An exact limit of `throughput` submits per second (0: none). A fractional rate keeps
    its meaning: 2.5/s is 2 per 0.8 s, 0.5/s is 1 per 2 s."""
    if throughput <= 0:
        return None
    limit = max(1, int(throughput))
    return SlidingWindow(limit, limit / throughput)
