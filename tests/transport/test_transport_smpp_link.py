"""`SmppLink` on real loopback sockets, against two independent peers.

* python-smpplib (a blocking ESME, run in a thread): our link is the SMSC side; it answers
  smpplib's bind/submit_sm and sends deliver_sm that smpplib answers.
* the SMSC simulator and small SMSC-side links of our own: our link is the ESME side.

Timers (response timeout, enquire_link) are set to fractions of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

from teleway.proto.smpp import decode, encode
from teleway.proto.smpp.constants import CommandStatus, EsmClass
from teleway.proto.smpp.errors import SmppError
from teleway.proto.smpp.pdu import (
    AlertNotification,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DeliverSm,
    EnquireLink,
    Pdu,
    SubmitSm,
)
from teleway.proto.smpp.session import BindType, Role, Session, SessionState
from teleway.testing.smsc import SimulatorSettings, SmscSimulator
from teleway.transport.smpp import LinkClosed, RequestHandler, ResponseTimedOut, SmppLink

pytestmark = pytest.mark.timeout(20)

SYSTEM_ID = "esme1"
PASSWORD = "secret"


# ---- an SMSC side made of our own link ---------------------------------------------------


@dataclass
class SmscSide:
    """A listening socket whose connections each become an SMSC-role SmppLink."""

    server: asyncio.Server
    links: asyncio.Queue[SmppLink]
    received: list[Pdu] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    async def next_link(self, timeout: float = 5.0) -> SmppLink:
        return await asyncio.wait_for(self.links.get(), timeout)


def smsc_handler(received: list[Pdu], *, submit_delay: float = 0.0) -> RequestHandler:
    counter = iter(range(1, 1_000_000))

    async def handle(link: SmppLink, pdu: Pdu) -> Pdu | None:
        received.append(pdu)
        if isinstance(pdu, BindTransmitter | BindReceiver | BindTransceiver):
            if (pdu.system_id, pdu.password) != (SYSTEM_ID, PASSWORD):
                return pdu.response(command_status=CommandStatus.ESME_RINVPASWD)
            return pdu.response(system_id="ours")
        if isinstance(pdu, SubmitSm):
            if submit_delay:
                await asyncio.sleep(submit_delay)
            return pdu.response(message_id=f"m{next(counter)}")
        return pdu.response(command_status=CommandStatus.ESME_RINVCMDID)

    return handle


@contextlib.asynccontextmanager
async def smsc_side(
    *,
    handler: RequestHandler | None = None,
    window: int = 10,
    response_timeout: float = 5.0,
    enquire_link_interval: float | None = None,
) -> AsyncIterator[SmscSide]:
    links: asyncio.Queue[SmppLink] = asyncio.Queue()
    received: list[Pdu] = []
    side: SmscSide

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(
            Role.SMSC,
            window=window,
            response_timeout=response_timeout,
            enquire_link_interval=enquire_link_interval,
            now=time.monotonic(),
        )
        link = SmppLink(
            reader, writer, session, handler=handler or smsc_handler(received), name="smsc"
        )
        await links.put(link)
        await link.run()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    side = SmscSide(server=server, links=links, received=received)
    try:
        yield side
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


# ---- an ESME side made of our own link ---------------------------------------------------


async def esme_link(
    port: int,
    *,
    window: int = 10,
    response_timeout: float = 5.0,
    handler: RequestHandler | None = None,
    enquire_link_interval: float | None = None,
) -> tuple[SmppLink, asyncio.Task[None]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    session = Session(
        Role.ESME,
        window=window,
        response_timeout=response_timeout,
        enquire_link_interval=enquire_link_interval,
        now=time.monotonic(),
    )
    link = SmppLink(reader, writer, session, handler=handler, name="esme")
    return link, asyncio.create_task(link.run())


async def bound_esme(port: int, **kwargs: Any) -> tuple[SmppLink, asyncio.Task[None]]:
    link, pump = await esme_link(port, **kwargs)
    response = await link.request(BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD))
    assert response.command_status == CommandStatus.ESME_ROK
    assert link.session.state is SessionState.BOUND_TRX
    return link, pump


async def finish(link: SmppLink, pump: asyncio.Task[None]) -> None:
    link.writer.close()
    await asyncio.wait_for(pump, 5)


def submit(n: int) -> SubmitSm:
    return SubmitSm(destination_addr=f"4479{n:08d}", short_message=f"part {n}".encode())


# ---- python-smpplib as the ESME ----------------------------------------------------------


class SmpplibEsme:
    """A blocking smpplib client; every call runs in a worker thread."""

    def __init__(self, port: int) -> None:
        self.client = smpplib.client.Client(
            "127.0.0.1", port, timeout=5, allow_unknown_opt_params=True
        )
        self.delivered: list[Any] = []
        self.answer_gate: threading.Event | None = None  # when set: wait before answering
        self.client.set_message_received_handler(self._received)

    def _received(self, pdu: Any, **_: Any) -> int:
        self.delivered.append(pdu)
        if self.answer_gate is not None:
            self.answer_gate.wait(5)
        return int(smpplib.consts.SMPP_ESME_ROK)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def connect_and_bind(self) -> Any:
        await self.call(self.client.connect)
        return await self.call(self.client.bind_transceiver, system_id=SYSTEM_ID, password=PASSWORD)

    async def read_once(self, count: int = 1) -> None:
        for _ in range(count):
            await self.call(self.client.read_once, auto_send_enquire_link=False)

    async def close(self) -> None:
        if self.client._socket is not None:
            await self.call(self.client.disconnect)


@pytest.fixture
async def smpplib_peer() -> AsyncIterator[tuple[SmscSide, SmpplibEsme]]:
    async with smsc_side(window=2, response_timeout=0.3) as side:
        esme = SmpplibEsme(side.port)
        try:
            yield side, esme
        finally:
            await esme.close()


async def test_smpplib_binds_and_submits_and_gets_message_ids(
    smpplib_peer: tuple[SmscSide, SmpplibEsme],
) -> None:
    side, esme = smpplib_peer
    bind_resp = await esme.connect_and_bind()
    assert bind_resp.status == 0
    link = await side.next_link()
    assert link.session.state is SessionState.BOUND_TRX
    ids = []
    for n in range(3):
        await esme.call(
            esme.client.send_message,
            source_addr="TELEWAY",
            destination_addr=f"4479{n:08d}",
            short_message=f"hello {n}".encode(),
        )
        resp = await esme.call(esme.client.read_pdu)
        assert resp.command == "submit_sm_resp" and resp.status == 0
        ids.append(resp.message_id)
    assert ids == [b"m1", b"m2", b"m3"]
    submits = [p for p in side.received if isinstance(p, SubmitSm)]
    assert [p.short_message for p in submits] == [b"hello 0", b"hello 1", b"hello 2"]


async def test_smpplib_wrong_password_is_refused(
    smpplib_peer: tuple[SmscSide, SmpplibEsme],
) -> None:
    side, esme = smpplib_peer
    await esme.call(esme.client.connect)
    with pytest.raises(smpplib.exceptions.PDUError) as refused:
        await esme.call(esme.client.bind_transceiver, system_id=SYSTEM_ID, password="nope")
    assert refused.value.args[1] == CommandStatus.ESME_RINVPASWD
    link = await side.next_link()
    assert link.session.state is SessionState.OPEN


async def test_deliver_sm_futures_resolve_with_smpplib_answers(
    smpplib_peer: tuple[SmscSide, SmpplibEsme],
) -> None:
    side, esme = smpplib_peer
    await esme.connect_and_bind()
    link = await side.next_link()
    receipt = DeliverSm(
        source_addr="447900000001",
        destination_addr="TELEWAY",
        esm_class=EsmClass.DELIVERY_RECEIPT,
        short_message=b"id:1 sub:001 dlvrd:001 submit date:2401021504 done date:2401021505"
        b" stat:DELIVRD err:000 text:hi",
    )
    request = asyncio.create_task(link.request(receipt))
    await esme.read_once()
    response = await asyncio.wait_for(request, 5)
    assert response.command_name == "deliver_sm_resp"
    assert response.command_status == 0
    assert esme.delivered[0].short_message.startswith(b"id:1 ")


async def test_window_of_two_with_five_concurrent_requests_all_complete(
    smpplib_peer: tuple[SmscSide, SmpplibEsme],
) -> None:
    side, esme = smpplib_peer
    await esme.connect_and_bind()
    link = await side.next_link()
    assert link.session.window == 2
    requests = [
        asyncio.create_task(link.request(DeliverSm(source_addr=f"{n}", short_message=b"mo")))
        for n in range(5)
    ]
    await asyncio.sleep(0.05)
    # only two are on the wire; the other three wait for a slot
    assert link.session.outstanding == 2
    assert sum(r.done() for r in requests) == 0
    await esme.read_once(5)
    responses = await asyncio.wait_for(asyncio.gather(*requests), 5)
    assert [r.command_status for r in responses] == [0] * 5
    assert [p.source_addr for p in esme.delivered] == [b"0", b"1", b"2", b"3", b"4"]
    assert link.session.outstanding == 0


async def test_unanswered_request_times_out_and_late_answer_is_harmless(
    smpplib_peer: tuple[SmscSide, SmpplibEsme],
) -> None:
    side, esme = smpplib_peer
    await esme.connect_and_bind()
    link = await side.next_link()
    gate = threading.Event()
    esme.answer_gate = gate
    reader = asyncio.create_task(esme.read_once())  # smpplib holds its answer at the gate
    with pytest.raises(ResponseTimedOut):
        await link.request(DeliverSm(source_addr="1", short_message=b"slow"))
    assert link.session.outstanding == 0
    gate.set()
    await reader  # the late deliver_sm_resp arrives: an unexpected response, ignored
    esme.answer_gate = None
    second = asyncio.create_task(link.request(DeliverSm(source_addr="2", short_message=b"ok")))
    await esme.read_once()
    assert (await asyncio.wait_for(second, 5)).command_status == 0
    assert not link.closed


async def test_peer_closing_fails_pending_requests_with_link_closed(
    smpplib_peer: tuple[SmscSide, SmpplibEsme],
) -> None:
    side, esme = smpplib_peer
    await esme.connect_and_bind()
    link = await side.next_link()
    pending = [
        asyncio.create_task(link.request(DeliverSm(source_addr=f"{n}", short_message=b"x")))
        for n in range(3)
    ]
    await asyncio.sleep(0.05)
    await esme.close()
    for task in pending:
        with pytest.raises(LinkClosed):
            await asyncio.wait_for(task, 5)
    await asyncio.wait_for(link.wait_closed(), 5)
    with pytest.raises(LinkClosed):
        await link.request(DeliverSm(source_addr="late"))


async def test_smpplib_unbind_is_answered_and_the_link_ends(
    smpplib_peer: tuple[SmscSide, SmpplibEsme],
) -> None:
    side, esme = smpplib_peer
    await esme.connect_and_bind()
    link = await side.next_link()
    resp = await esme.call(esme.client.unbind)
    assert resp.command == "unbind_resp" and resp.status == 0
    # smpplib keeps its socket open; our side still ends the link (spec 4.2)
    await asyncio.wait_for(link.wait_closed(), 5)
    assert link.session.state is SessionState.CLOSED


async def test_peer_unbind_waits_for_handler_answer_then_closes() -> None:
    """A submit being answered when the peer unbinds still gets its message_id; the
    unbind_resp follows, and our side closes the connection even though the peer does not."""
    received: list[Pdu] = []
    async with smsc_side(handler=smsc_handler(received, submit_delay=0.2)) as side:
        esme = SmpplibEsme(side.port)
        try:
            await esme.connect_and_bind()
            link = await side.next_link()
            await esme.call(
                esme.client.send_message, destination_addr="447900000001", short_message=b"x"
            )
            unbind = smpplib.smpp.make_pdu("unbind", client=esme.client)
            await esme.call(esme.client.send_pdu, unbind)
            first = await esme.call(esme.client.read_pdu)
            second = await esme.call(esme.client.read_pdu)
            assert (first.command, first.status, first.message_id) == ("submit_sm_resp", 0, b"m1")
            assert (second.command, second.status) == ("unbind_resp", 0)
            await asyncio.wait_for(link.wait_closed(), 5)
        finally:
            await esme.close()


async def test_our_unbind_towards_a_silent_peer_still_closes(
    smpplib_peer: tuple[SmscSide, SmpplibEsme],
) -> None:
    """smpplib reads an SMSC's unbind but never answers it: unbind() gives up after its
    timeout and closes the connection."""
    side, esme = smpplib_peer
    await esme.connect_and_bind()
    link = await side.next_link()
    reader = asyncio.create_task(esme.read_once())
    await link.unbind(timeout=0.2)
    await asyncio.wait_for(link.wait_closed(), 5)
    await reader
    assert esme.client.state == smpplib.consts.SMPP_CLIENT_STATE_BOUND_TRX  # it never knew


async def test_enquire_link_keepalive_is_answered_by_smpplib_and_silence_kills_the_link() -> None:
    async with smsc_side(response_timeout=0.3, enquire_link_interval=0.1) as side:
        esme = SmpplibEsme(side.port)
        try:
            await esme.connect_and_bind()
            link = await side.next_link()
            # smpplib answers two keep-alives: the link stays up
            await esme.read_once(2)
            assert not link.closed
            # then it stops reading: the next enquire_link goes unanswered -> link dead
            await asyncio.wait_for(link.wait_closed(), 5)
            assert link.session.state is SessionState.CLOSED
        finally:
            await esme.close()


# ---- our link as the ESME ----------------------------------------------------------------


async def test_esme_link_binds_and_submits_to_the_simulator() -> None:
    simulator = SmscSimulator(
        SimulatorSettings(port=0, system_id=SYSTEM_ID, password=PASSWORD, receipt_delay=0.05)
    )
    await simulator.start()
    try:
        link, pump = await esme_link(simulator.port, window=2)
        response = await link.request(BindTransmitter(system_id=SYSTEM_ID, password=PASSWORD))
        assert response.command_status == 0
        assert link.session.bind_type is BindType.TRANSMITTER and link.session.bound
        responses = await asyncio.wait_for(
            asyncio.gather(*(link.request(submit(n)) for n in range(5))), 5
        )
        assert all(r.command_status == 0 for r in responses)
        ids = [str(getattr(r, "message_id", "")) for r in responses]
        assert sorted(ids) == [f"{n:08x}" for n in range(1, 6)]
        assert simulator.stats.submits == 5
        await link.unbind()
        await asyncio.wait_for(pump, 5)
        assert link.closed and link.session.state is SessionState.CLOSED
    finally:
        await simulator.stop()


async def test_window_limits_requests_outstanding_at_the_peer() -> None:
    """window=2, five concurrent submits: the peer never holds more than two unanswered."""
    in_handler = 0
    most = 0

    async def slow(link: SmppLink, pdu: Pdu) -> Pdu | None:
        nonlocal in_handler, most
        if isinstance(pdu, BindTransceiver):
            return pdu.response()
        in_handler += 1
        most = max(most, in_handler)
        await asyncio.sleep(0.03)
        in_handler -= 1
        assert isinstance(pdu, SubmitSm)
        return pdu.response(message_id=pdu.destination_addr[-2:])

    async with smsc_side(handler=slow) as side:
        link, pump = await bound_esme(side.port, window=2)
        responses = await asyncio.wait_for(
            asyncio.gather(*(link.request(submit(n)) for n in range(5))), 5
        )
        assert [getattr(r, "message_id", "") for r in responses] == [
            "00",
            "01",
            "02",
            "03",
            "04",
        ]
        assert most == 2
        await finish(link, pump)


async def test_response_timeout_raises_response_timed_out() -> None:
    async def silent(link: SmppLink, pdu: Pdu) -> Pdu | None:
        if isinstance(pdu, BindTransceiver):
            return pdu.response()
        return None  # never answers a submit

    async with smsc_side(handler=silent) as side:
        link, pump = await bound_esme(side.port, response_timeout=0.2)
        started = time.monotonic()
        with pytest.raises(ResponseTimedOut):
            await link.request(submit(1))
        assert time.monotonic() - started >= 0.2
        assert link.session.outstanding == 0
        assert not link.closed  # a lost response does not end the link
        await finish(link, pump)


async def test_peer_closing_mid_request_raises_link_closed() -> None:
    async def hang_up(link: SmppLink, pdu: Pdu) -> Pdu | None:
        if isinstance(pdu, BindTransceiver):
            return pdu.response()
        link.writer.close()
        return None

    async with smsc_side(handler=hang_up) as side:
        link, pump = await bound_esme(side.port)
        with pytest.raises(LinkClosed):
            await asyncio.wait_for(link.request(submit(1)), 5)
        await asyncio.wait_for(pump, 5)
        assert link.closed


async def test_request_in_the_wrong_state_raises_smpp_error() -> None:
    async with smsc_side() as side:
        link, pump = await esme_link(side.port)
        with pytest.raises(SmppError) as refused:
            await link.request(submit(1))  # not bound yet
        assert refused.value.command_status == CommandStatus.ESME_RINVBNDSTS
        await finish(link, pump)


async def test_handler_errors_become_error_responses() -> None:
    """The ESME-side handler answers the SMSC's deliver_sm: an SmppError gives its own status,
    any other exception ESME_RSYSERR, and the link survives both."""

    async def esme_handler(link: SmppLink, pdu: Pdu) -> Pdu | None:
        assert isinstance(pdu, DeliverSm)
        if pdu.source_addr == "smpp":
            raise SmppError("refused", command_status=CommandStatus.ESME_RX_T_APPN)
        if pdu.source_addr == "bug":
            raise RuntimeError("handler bug")
        return pdu.response()

    async with smsc_side() as side:
        link, pump = await bound_esme(side.port, handler=esme_handler)
        smsc = await side.next_link()
        statuses = [
            (await smsc.request(DeliverSm(source_addr=who))).command_status
            for who in ("smpp", "bug", "fine")
        ]
        assert statuses == [
            CommandStatus.ESME_RX_T_APPN,
            CommandStatus.ESME_RSYSERR,
            CommandStatus.ESME_ROK,
        ]
        assert not link.closed
        await finish(link, pump)


async def test_no_handler_answers_system_error() -> None:
    async with smsc_side() as side:
        link, pump = await bound_esme(side.port)  # no handler
        smsc = await side.next_link()
        response = await asyncio.wait_for(smsc.request(DeliverSm(source_addr="1")), 5)
        assert response.command_status == CommandStatus.ESME_RSYSERR
        await finish(link, pump)


async def test_request_without_response_returns_once_written() -> None:
    async with smsc_side() as side:
        link, pump = await bound_esme(side.port)
        smsc = await side.next_link()
        sent = await asyncio.wait_for(smsc.request(AlertNotification(source_addr="1")), 5)
        assert isinstance(sent, AlertNotification) and sent.sequence_number > 0
        # and the link still works afterwards
        assert (await link.request(EnquireLink())).command_status == 0
        await finish(link, pump)


async def _raw_smsc(answer: Callable[[int, int], bytes]) -> tuple[asyncio.Server, int]:
    """A raw byte-level SMSC: answers every request with `answer(command_id, sequence)`."""

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                header = await reader.readexactly(16)
                length, command_id, _, sequence = struct.unpack(">IIII", header)
                await reader.readexactly(length - 16)
                writer.write(answer(command_id, sequence))
                await writer.drain()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def test_unreadable_response_fails_the_request_instead_of_hanging() -> None:
    def answer(command_id: int, sequence: int) -> bytes:
        if command_id == 0x09:  # bind_transceiver -> ok
            return struct.pack(">IIII", 16 + 4, 0x80000009, 0, sequence) + b"sim\0"
        # submit_sm_resp whose message_id has no NUL terminator
        return struct.pack(">IIII", 16 + 3, 0x80000004, 0, sequence) + b"abc"

    server, port = await _raw_smsc(answer)
    try:
        link, pump = await bound_esme(port, response_timeout=30)
        with pytest.raises(SmppError) as unreadable:
            await asyncio.wait_for(link.request(submit(1)), 5)
        assert unreadable.value.command_status == CommandStatus.ESME_RINVMSGID
        assert link.session.outstanding == 0
        await finish(link, pump)
    finally:
        server.close()


async def test_pace_runs_inside_a_free_window_slot() -> None:
    """With the window full, the pacer is not consulted until a slot is free, so what it
    measures is the time of sending."""
    calls: list[int] = []
    in_handler = 0

    async def slow(link: SmppLink, pdu: Pdu) -> Pdu | None:
        nonlocal in_handler
        if isinstance(pdu, BindTransceiver):
            return pdu.response()
        in_handler += 1
        await asyncio.sleep(0.05)
        in_handler -= 1
        return pdu.response(message_id="x")

    async with smsc_side(handler=slow) as side:
        link, pump = await bound_esme(side.port, window=1)

        async def pace() -> None:
            calls.append(link.session.outstanding)

        await asyncio.wait_for(
            asyncio.gather(*(link.request(submit(n), pace=pace) for n in range(4))), 5
        )
        assert calls == [0, 0, 0, 0]
        await finish(link, pump)


async def test_link_dead_when_keepalive_unanswered() -> None:
    """An ESME-side link whose SMSC stops answering enquire_link is closed (timers run)."""

    # our SMSC side would answer enquire_link automatically: use a raw, silent peer
    def answer(command_id: int, sequence: int) -> bytes:
        if command_id == 0x09:
            return struct.pack(">IIII", 16 + 4, 0x80000009, 0, sequence) + b"sim\0"
        return b""  # silence

    server, port = await _raw_smsc(answer)
    try:
        link, pump = await bound_esme(port, response_timeout=0.2, enquire_link_interval=0.1)
        await asyncio.wait_for(pump, 5)
        assert link.closed
    finally:
        server.close()


async def test_batch_handler_answers_the_requests_of_one_read_together() -> None:
    """Requests `batchable` picks out of one read go to the batch handler in one call; its
    answers go back by sequence number, one it defers with `answer_with` comes when ready,
    and a batch handler that fails answers ESME_RSYSERR to each, never silence."""
    batches: list[list[bytes]] = []
    fail = False

    async def later(pdu: Pdu) -> Pdu:
        await asyncio.sleep(0.05)
        return pdu.response(message_id="later")

    async def batch(link: SmppLink, pdus: list[Pdu]) -> list[Pdu | None]:
        batches.append([p.short_message for p in pdus])  # type: ignore[attr-defined]
        if fail:
            raise RuntimeError("batch handler bug")
        answers: list[Pdu | None] = []
        for pdu in pdus:
            if pdu.short_message == b"wait":  # type: ignore[attr-defined]
                link.answer_with(pdu, later(pdu))
                answers.append(None)
            else:
                answers.append(pdu.response(message_id=pdu.short_message.decode()))  # type: ignore[attr-defined]
        return answers

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(Role.SMSC, window=10, enquire_link_interval=None, now=time.monotonic())
        link = SmppLink(
            reader,
            writer,
            session,
            handler=smsc_handler([]),
            batch_handler=batch,
            batchable=lambda pdu: isinstance(pdu, SubmitSm),
        )
        await link.run()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode(BindTransceiver(system_id=SYSTEM_ID, password=PASSWORD)))
        bound = await read_pdu(reader)
        assert bound.command_status == CommandStatus.ESME_ROK
        texts = [b"one", b"wait", b"two", b"three"]
        window = b"".join(
            encode(SubmitSm(short_message=t, sequence_number=n)) for n, t in enumerate(texts, 2)
        ) + encode(EnquireLink(sequence_number=9))
        writer.write(window)
        answers = {p.sequence_number: p for p in [await read_pdu(reader) for _ in range(5)]}
        assert batches == [texts]
        assert [answers[n].message_id for n in (2, 3, 4, 5)] == ["one", "later", "two", "three"]  # type: ignore[attr-defined]
        assert answers[9].command_status == CommandStatus.ESME_ROK  # not a batch member
        fail = True
        writer.write(
            b"".join(encode(SubmitSm(short_message=b"x", sequence_number=n)) for n in (10, 11))
        )
        failed = [await read_pdu(reader) for _ in range(2)]
        assert {p.sequence_number for p in failed} == {10, 11}
        assert {p.command_status for p in failed} == {CommandStatus.ESME_RSYSERR}
        writer.close()
    finally:
        server.close()


async def read_pdu(reader: asyncio.StreamReader) -> Pdu:
    head = await asyncio.wait_for(reader.readexactly(4), 5)
    (length,) = struct.unpack(">I", head)
    return decode(head + await reader.readexactly(length - 4))
