"""`SmppLink`: one SMPP connection on asyncio, pumping bytes and timers into a `proto` Session.

The session decides everything protocol-related (states, sequence numbers, window, timers,
automatic answers); this adapter only moves bytes, wakes the session's timers, turns responses
into awaited futures, and runs the application's request handler. It is shared by the SMSC
simulator, the SMS channel (ESME side) and the SMPP server (SMSC side).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from teleway.proto.smpp.errors import SmppError
from teleway.proto.smpp.pdu import Pdu, Unbind
from teleway.proto.smpp.session import (
    RESPONSE_OF,
    Event,
    InactivityTimeout,
    LinkDead,
    MalformedPdu,
    ProtocolBroken,
    RejectedRequest,
    RequestReceived,
    ResponseReceived,
    ResponseTimeout,
    Session,
    SessionState,
    UnexpectedResponse,
    WindowFull,
)

logger = logging.getLogger("teleway.smpp.link")

#: The application's answer to a peer request: the response PDU, or None to send none (yet).
RequestHandler = Callable[["SmppLink", Pdu], Awaitable[Pdu | None]]
#: Answers several peer requests that arrived together (one read): their responses, in order.
BatchHandler = Callable[["SmppLink", list[Pdu]], Awaitable[list[Pdu | None]]]
#: Awaited by `SmppLink.request` once a window slot is free, just before the request is sent
#: (an upstream's throughput limit): pacing inside the slot keeps the limit exact on the wire.
Pacer = Callable[[], Awaitable[None]]

READ_SIZE = 65536


class LinkClosed(ConnectionError):
    """The connection ended before the response came."""


class ResponseTimedOut(TimeoutError):
    """The peer did not answer within the session's response timeout."""


class SmppLink:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: Session,
        *,
        handler: RequestHandler | None = None,
        batch_handler: BatchHandler | None = None,
        batchable: Callable[[Pdu], bool] | None = None,
        name: str = "smpp",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`handler` answers each request of the peer in its own task. With `batch_handler`,
        the requests of one read for which `batchable` says True are answered together, in
        one task (a window of submit_sm stored with one write)."""
        self.reader = reader
        self.writer = writer
        self.session = session
        self.handler = handler
        self.batch_handler = batch_handler
        self.batchable = batchable
        self.name = name
        self.clock = clock
        peer = writer.get_extra_info("peername")
        self.peer: str = peer[0] if isinstance(peer, tuple) else str(peer or "")
        self._pending: dict[int, asyncio.Future[Pdu]] = {}
        self._slot_free = asyncio.Event()  # set whenever a response frees a window slot
        self._timer_wakeup = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()
        self._handling = 0  # peer requests whose handler task has not finished
        self._closed = asyncio.Event()

    # ---- sending -------------------------------------------------------------------------

    async def request(self, pdu: Pdu, *, pace: Pacer | None = None) -> Pdu:
        """Send a request and return the peer's response (any command_status).

        Waits for a free slot when the window is full; then awaits `pace` (if given) right
        before sending. Raises LinkClosed, ResponseTimedOut, or SmppError: ESME_RINVBNDSTS when
        the session state does not allow the request, or the decoding error of a response that
        could not be read (the request's fate is then unknown, as after a timeout).

        A request that has no response (outbind, alert_notification) returns itself, as sent,
        once it is written."""
        while True:
            if self._closed.is_set():
                raise LinkClosed(f"{self.name}: connection closed")
            if pace is not None and self.session.can_send(pdu.command_id):
                await pace()
                if self._closed.is_set():
                    raise LinkClosed(f"{self.name}: connection closed")
            try:
                sent = self.session.send(pdu, self.clock())
                break
            except WindowFull:
                self._slot_free.clear()
                await self._slot_free.wait()
        if sent.command_id not in RESPONSE_OF:
            self._flush()
            await self._drain()
            return sent
        future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self._pending[sent.sequence_number] = future
        self._flush()
        self._timer_wakeup.set()
        await self._drain()
        return await future

    def respond(self, response: Pdu) -> None:
        """Send a response to a request of the peer (SmppError when the session refuses it)."""
        if self._closed.is_set():
            return
        self.session.send(response, self.clock())
        self._responded()

    def respond_all(self, responses: list[Pdu]) -> None:
        """Send responses to requests of the peer, in one write. One the session refuses (its
        request is unknown to it) is logged and skipped."""
        if self._closed.is_set():
            return
        now = self.clock()
        for response in responses:
            try:
                self.session.send(response, now)
            except SmppError as exc:
                logger.info("%s: response not sent: %s", self.name, exc)
        self._responded()

    def _responded(self) -> None:
        self._flush()
        if self.session.state is SessionState.CLOSED:
            # this answer completed a peer's unbind (spec 4.2): the session is over even if
            # the peer keeps the connection open
            self.writer.close()

    def _flush(self) -> None:
        data = self.session.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def _drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    # ---- running -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def run(self) -> None:
        """Pump until the connection ends; always closes the socket and fails pending requests."""
        timers = asyncio.create_task(self._run_timers())
        try:
            while self.session.state is not SessionState.CLOSED:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    break
                self._handle(self.session.receive_data(data, self.clock()))
                self._flush()
                self._timer_wakeup.set()
                # back-pressure: stop reading while the peer's requests pile up unanswered
                if self._handling >= self.session.peer_window:
                    await asyncio.wait(set(self._handlers), return_when=asyncio.FIRST_COMPLETED)
                await self._drain()
        except (ConnectionError, OSError) as exc:
            logger.info("%s: connection lost: %s", self.name, exc)
        finally:
            timers.cancel()
            await self._shutdown()

    async def _run_timers(self) -> None:
        while True:
            due = self.session.next_timer()
            self._timer_wakeup.clear()
            if due is None:
                await self._timer_wakeup.wait()
                continue
            delay = due - self.clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._timer_wakeup.wait(), delay)
                continue
            self._handle(self.session.handle_timer(self.clock()))
            self._flush()
            if self.session.state is SessionState.CLOSED:
                self.writer.close()
                return

    def _handle(self, events: list[Event]) -> None:
        group: list[Pdu] = []
        for event in events:
            if isinstance(event, RequestReceived):
                if self.batchable is not None and self.batchable(event.pdu):
                    group.append(event.pdu)
                else:
                    self._start(self._answer(event.pdu), 1)
            elif isinstance(event, ResponseReceived):
                self._resolve(event.request.sequence_number, event.response)
            elif isinstance(event, ResponseTimeout):
                self._fail(
                    event.request.sequence_number, ResponseTimedOut(f"{self.name}: no response")
                )
            elif isinstance(event, LinkDead | InactivityTimeout):
                logger.warning("%s: %s, closing", self.name, type(event).__name__)
                self.writer.close()
            elif isinstance(event, ProtocolBroken):
                logger.warning("%s: framing lost (%s), closing", self.name, event.error)
                self._flush()  # the generic_nack the session queued goes out before we close
                self.writer.close()
            elif isinstance(event, MalformedPdu):
                logger.info("%s: %s", self.name, event)
                if event.request is not None:
                    # an unreadable answer to one of ours: it left the window, fate unknown
                    self._fail(event.request.sequence_number, event.error)
            elif isinstance(event, RejectedRequest | UnexpectedResponse):
                logger.info("%s: %s", self.name, event)
        if len(group) > 1:
            self._start(self._answer_many(group), len(group))
        elif group:
            self._start(self._answer(group[0]), 1)

    def _start(self, handling: Coroutine[Any, Any, None], requests: int) -> None:
        task = asyncio.create_task(handling)
        self._handlers.add(task)
        self._handling += requests

        def done(task: asyncio.Task[None]) -> None:
            self._handlers.discard(task)
            self._handling -= requests

        task.add_done_callback(done)

    async def _answer_many(self, pdus: list[Pdu]) -> None:
        assert self.batch_handler is not None
        try:
            responses = await self.batch_handler(self, pdus)
        except Exception:
            logger.exception("%s: request handler failed", self.name)
            responses = [pdu.response(command_status=0x08) for pdu in pdus]  # ESME_RSYSERR
        self.respond_all([response for response in responses if response is not None])
        await self._drain()

    def answer_with(self, pdu: Pdu, answer: Awaitable[Pdu | None]) -> None:
        """Answer a peer request with what `answer` gives, in its own task: a batch handler
        hands back this way a request that must wait for others (a part of a long message)."""
        self._start(self._answer(pdu, answer), 1)

    async def _answer(self, pdu: Pdu, answer: Awaitable[Pdu | None] | None = None) -> None:
        if answer is None and self.handler is not None:
            answer = self.handler(self, pdu)
        if answer is None:
            response: Pdu | None = pdu.response(command_status=0x08)  # ESME_RSYSERR
        else:
            try:
                response = await answer
            except SmppError as exc:
                response = pdu.response(command_status=exc.command_status)
            except Exception:
                logger.exception("%s: request handler failed", self.name)
                response = pdu.response(command_status=0x08)  # ESME_RSYSERR, never silence
        if response is not None:
            try:
                self.respond(response)
            except SmppError as exc:
                logger.info("%s: response not sent: %s", self.name, exc)
            await self._drain()

    def _resolve(self, sequence_number: int, response: Pdu) -> None:
        future = self._pending.pop(sequence_number, None)
        if future is not None and not future.done():
            future.set_result(response)
        self._slot_free.set()

    def _fail(self, sequence_number: int, error: Exception) -> None:
        future = self._pending.pop(sequence_number, None)
        if future is not None and not future.done():
            future.set_exception(error)
        self._slot_free.set()

    async def _shutdown(self) -> None:
        self._closed.set()
        self._slot_free.set()
        self.session.close()
        for seq in list(self._pending):
            self._fail(seq, LinkClosed(f"{self.name}: connection closed"))
        for task in list(self._handlers):
            task.cancel()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    async def unbind(self, timeout: float = 5.0) -> None:
        """Unbind politely (waiting up to `timeout` for unbind_resp), then close."""
        if self.session.bound and not self._closed.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.request(Unbind()), timeout)
        self.writer.close()

    async def wait_closed(self) -> None:
        await self._closed.wait()
