"""Tests of the SMPP session state machine (teleway.proto.smpp.session).

Two sessions (an ESME and an SMSC) talk in memory; timers are driven with fake times.
The operation matrix is written out below from spec 2.3 (Table 2-1) plus the documented
choices of docs/smpp-session.md; it is deliberately *not* derived from the session's table.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teleway.proto.smpp.codec import decode, encode
from teleway.proto.smpp.constants import CommandId, CommandStatus
from teleway.proto.smpp.errors import SmppError
from teleway.proto.smpp.pdu import (
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from teleway.proto.smpp.session import (
    BindStateChanged,
    BindType,
    Direction,
    EnquireLinkAnswered,
    Event,
    InactivityTimeout,
    LinkDead,
    MalformedPdu,
    ProtocolBroken,
    RejectedRequest,
    RequestReceived,
    ResponseReceived,
    ResponseTimeout,
    Role,
    Session,
    SessionState,
    Unbound,
    UnexpectedResponse,
    WindowFull,
    is_allowed,
)

S = SessionState
C = CommandId
E2S = Direction.ESME_TO_SMSC
S2E = Direction.SMSC_TO_ESME

# ---------------------------------------------------------------------------------------
# The expected operation matrix, written by hand (spec 2.3 Table 2-1 + documented choices)
# ---------------------------------------------------------------------------------------

_ABBREVIATIONS = {
    "O": S.OPEN,
    "OB": S.OUTBOUND,
    "TX": S.BOUND_TX,
    "RX": S.BOUND_RX,
    "TRX": S.BOUND_TRX,
    "U": S.UNBOUND,
    "C": S.CLOSED,
}
_LIVE = "O OB TX RX TRX U"

#: command -> (states allowed ESME->SMSC, states allowed SMSC->ESME)
EXPECTED: dict[CommandId, tuple[str, str]] = {
    C.BIND_TRANSMITTER: ("O OB", ""),
    C.BIND_TRANSMITTER_RESP: ("", "O OB"),
    C.BIND_RECEIVER: ("O OB", ""),
    C.BIND_RECEIVER_RESP: ("", "O OB"),
    C.BIND_TRANSCEIVER: ("O OB", ""),
    C.BIND_TRANSCEIVER_RESP: ("", "O OB"),
    C.OUTBIND: ("", "O"),
    C.UNBIND: ("TX RX TRX U", "TX RX TRX U"),
    C.UNBIND_RESP: ("U", "U"),
    C.SUBMIT_SM: ("TX TRX", ""),
    C.SUBMIT_SM_RESP: ("", "TX TRX U"),
    C.SUBMIT_MULTI: ("TX TRX", ""),
    C.SUBMIT_MULTI_RESP: ("", "TX TRX U"),
    C.DATA_SM: ("TX RX TRX", "TX RX TRX"),
    C.DATA_SM_RESP: ("TX RX TRX U", "TX RX TRX U"),
    C.DELIVER_SM: ("", "RX TRX"),
    C.DELIVER_SM_RESP: ("RX TRX U", ""),
    C.QUERY_SM: ("TX TRX", ""),
    C.QUERY_SM_RESP: ("", "TX TRX U"),
    C.CANCEL_SM: ("TX TRX", ""),
    C.CANCEL_SM_RESP: ("", "TX TRX U"),
    C.REPLACE_SM: ("TX TRX", ""),
    C.REPLACE_SM_RESP: ("", "TX TRX U"),
    C.ENQUIRE_LINK: (_LIVE, _LIVE),
    C.ENQUIRE_LINK_RESP: (_LIVE, _LIVE),
    C.ALERT_NOTIFICATION: ("", "RX TRX"),
    C.GENERIC_NACK: (_LIVE, _LIVE),
}


def expected_allowed(state: SessionState, command_id: CommandId, direction: Direction) -> bool:
    column = EXPECTED[command_id][0 if direction is E2S else 1]
    return state in {_ABBREVIATIONS[a] for a in column.split()}


def expected_rejection(state: SessionState, command_id: CommandId) -> int:
    binds = (C.BIND_TRANSMITTER, C.BIND_RECEIVER, C.BIND_TRANSCEIVER)
    if command_id in binds and state in (S.BOUND_TX, S.BOUND_RX, S.BOUND_TRX, S.UNBOUND):
        return CommandStatus.ESME_RALYBND  # 5.1.3: "ESME already in bound state"
    return CommandStatus.ESME_RINVBNDSTS


REQUEST_SAMPLES: dict[CommandId, Pdu] = {
    C.BIND_TRANSMITTER: BindTransmitter(system_id="acme", password="pw"),
    C.BIND_RECEIVER: BindReceiver(system_id="acme", password="pw"),
    C.BIND_TRANSCEIVER: BindTransceiver(system_id="acme", password="pw"),
    C.OUTBIND: Outbind(system_id="smsc", password="pw"),
    C.UNBIND: Unbind(),
    C.SUBMIT_SM: SubmitSm(source_addr="123", destination_addr="4477", short_message=b"hi"),
    C.SUBMIT_MULTI: SubmitMulti(
        source_addr="123", dest_addresses=(SmeAddress(1, 1, "4477"),), short_message=b"hi"
    ),
    C.DATA_SM: DataSm(source_addr="123", destination_addr="4477"),
    C.DELIVER_SM: DeliverSm(source_addr="4477", destination_addr="123", short_message=b"yo"),
    C.QUERY_SM: QuerySm(message_id="m1", source_addr="123"),
    C.CANCEL_SM: CancelSm(message_id="m1", source_addr="123", destination_addr="4477"),
    C.REPLACE_SM: ReplaceSm(message_id="m1", source_addr="123", short_message=b"new"),
    C.ENQUIRE_LINK: EnquireLink(),
    C.ALERT_NOTIFICATION: AlertNotification(source_addr="4477", esme_addr="123"),
}

RESPONSE_CLASSES: dict[CommandId, type[Pdu]] = {
    C.BIND_TRANSMITTER: BindTransmitterResp,
    C.BIND_RECEIVER: BindReceiverResp,
    C.BIND_TRANSCEIVER: BindTransceiverResp,
    C.UNBIND: UnbindResp,
    C.SUBMIT_SM: SubmitSmResp,
    C.SUBMIT_MULTI: SubmitMultiResp,
    C.DATA_SM: DataSmResp,
    C.DELIVER_SM: DeliverSmResp,
    C.QUERY_SM: QuerySmResp,
    C.CANCEL_SM: CancelSmResp,
    C.REPLACE_SM: ReplaceSmResp,
    C.ENQUIRE_LINK: EnquireLinkResp,
    C.OUTBIND: GenericNack,  # no response of its own (4.1.7)
    C.ALERT_NOTIFICATION: GenericNack,  # no response of its own (4.12)
}

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def split_pdus(data: bytes) -> list[Pdu]:
    pdus = []
    while data:
        (length,) = struct.unpack_from(">I", data)
        pdus.append(decode(data[:length]))
        data = data[length:]
    return pdus


def pump(
    a: Session, b: Session, now: float
) -> tuple[list[Event], list[Event]]:  # events seen by a, by b
    """Move bytes both ways until both sides are quiet."""
    seen_a: list[Event] = []
    seen_b: list[Event] = []
    for _ in range(50):
        to_b = a.data_to_send()
        to_a = b.data_to_send()
        if not to_a and not to_b:
            return seen_a, seen_b
        if to_b:
            seen_b += b.receive_data(to_b, now)
        if to_a:
            seen_a += a.receive_data(to_a, now)
    raise AssertionError("the sessions never went quiet")


T = TypeVar("T")


def state_of(session: Session) -> SessionState:
    """The state, read through a call so mypy does not keep an earlier narrowing."""
    return session.state


def of_type(events: Iterable[Event], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


def make(role: Role, **kwargs: object) -> Session:
    params: dict[str, object] = {"now": 0.0, "enquire_link_interval": None}
    params.update(kwargs)
    return Session(role, **params)  # type: ignore[arg-type]


def bound_pair(
    bind: Pdu | None = None, *, esme: Session | None = None, smsc: Session | None = None
) -> tuple[Session, Session]:
    esme = esme or make(Role.ESME)
    smsc = smsc or make(Role.SMSC)
    sent = esme.send(bind or BindTransceiver(system_id="acme", password="pw"), 0.0)
    _, smsc_events = pump(esme, smsc, 0.0)
    (request,) = of_type(smsc_events, RequestReceived)
    assert request.pdu == sent
    smsc.send(request.pdu.response(system_id="teleway"), 0.0)
    pump(esme, smsc, 0.0)
    return esme, smsc


def session_in(role: Role, state: SessionState, **kwargs: object) -> Session:
    """A session of ``role`` brought into ``state`` through the protocol itself."""
    session = make(role, **kwargs)
    peer = make(Role.SMSC if role is Role.ESME else Role.ESME)
    if state is S.OUTBOUND:
        if role is Role.SMSC:
            session.send(Outbind(system_id="smsc"), 0.0)
        else:
            session.receive_data(encode(Outbind(system_id="smsc", sequence_number=1)), 0.0)
    elif state in (S.BOUND_TX, S.BOUND_RX, S.BOUND_TRX, S.UNBOUND):
        bind = {
            S.BOUND_TX: BindTransmitter(system_id="acme"),
            S.BOUND_RX: BindReceiver(system_id="acme"),
        }.get(state, BindTransceiver(system_id="acme"))
        if role is Role.ESME:
            bound_pair(bind, esme=session, smsc=peer)
        else:
            bound_pair(bind, esme=peer, smsc=session)
        if state is S.UNBOUND:
            session.send(Unbind(), 0.0)
    elif state is S.CLOSED:
        session.close()
    session.data_to_send()
    assert session.state is state
    return session


# ---------------------------------------------------------------------------------------
# A whole conversation
# ---------------------------------------------------------------------------------------


def test_transceiver_conversation_from_bind_to_close() -> None:
    esme, smsc = make(Role.ESME), make(Role.SMSC)
    assert esme.state is S.OPEN and smsc.state is S.OPEN

    bind = esme.send(BindTransceiver(system_id="acme", password="secret"), 1.0)
    assert bind.sequence_number == 1
    _, at_smsc = pump(esme, smsc, 1.0)
    assert at_smsc == [RequestReceived(pdu=bind)]
    smsc.send(bind.response(system_id="teleway"), 1.1)
    assert state_of(smsc) is S.BOUND_TRX and smsc.bind_type is BindType.TRANSCEIVER
    at_esme, _ = pump(esme, smsc, 1.2)
    assert at_esme == [
        ResponseReceived(
            request=bind, response=BindTransceiverResp(system_id="teleway", sequence_number=1)
        ),
        BindStateChanged(old=S.OPEN, new=S.BOUND_TRX),
    ]
    assert esme.bound and esme.bind_type is BindType.TRANSCEIVER

    # submit_sm and its response
    submit = esme.send(REQUEST_SAMPLES[C.SUBMIT_SM], 2.0)
    assert submit.sequence_number == 2 and esme.outstanding == 1
    _, at_smsc = pump(esme, smsc, 2.0)
    assert at_smsc == [RequestReceived(pdu=submit)] and smsc.unanswered == 1
    smsc.send(SubmitSmResp(message_id="abc", sequence_number=submit.sequence_number), 2.1)
    at_esme, _ = pump(esme, smsc, 2.1)
    assert at_esme == [
        ResponseReceived(request=submit, response=SubmitSmResp(message_id="abc", sequence_number=2))
    ]
    assert esme.outstanding == 0 and smsc.unanswered == 0

    # deliver_sm from the SMSC (its own sequence numbers)
    deliver = smsc.send(REQUEST_SAMPLES[C.DELIVER_SM], 3.0)
    assert deliver.sequence_number == 1
    at_esme, _ = pump(esme, smsc, 3.0)
    assert at_esme == [RequestReceived(pdu=deliver)]
    esme.send(deliver.response(), 3.1)
    _, at_smsc = pump(esme, smsc, 3.1)
    assert at_smsc == [ResponseReceived(request=deliver, response=DeliverSmResp(sequence_number=1))]

    # enquire_link is answered by the session itself
    ping = esme.send(EnquireLink(), 4.0)
    at_esme, at_smsc = pump(esme, smsc, 4.0)
    assert at_smsc == [EnquireLinkAnswered(request=ping)]
    assert at_esme == [
        ResponseReceived(
            request=ping, response=EnquireLinkResp(sequence_number=ping.sequence_number)
        )
    ]

    # unbind / unbind_resp
    unbind = esme.send(Unbind(), 5.0)
    assert state_of(esme) is S.UNBOUND and not esme.bound
    at_esme, at_smsc = pump(esme, smsc, 5.0)
    assert at_smsc == [
        BindStateChanged(old=S.BOUND_TRX, new=S.UNBOUND),
        Unbound(by_peer=True),
        BindStateChanged(old=S.UNBOUND, new=S.CLOSED),
    ]
    assert at_esme == [
        ResponseReceived(
            request=unbind, response=UnbindResp(sequence_number=unbind.sequence_number)
        ),
        Unbound(by_peer=False),
        BindStateChanged(old=S.UNBOUND, new=S.CLOSED),
    ]
    assert esme.state is S.CLOSED and smsc.state is S.CLOSED
    assert esme.next_timer() is None and smsc.next_timer() is None
    # the bind type stays readable after the session ended
    assert esme.bind_type is BindType.TRANSCEIVER

    esme.close()
    assert esme.receive_data(b"\x00\x00\x00\x10" * 4, 6.0) == []
    with pytest.raises(SmppError):
        esme.send(EnquireLink(), 6.0)


@pytest.mark.parametrize(
    ("bind", "state", "bind_type"),
    [
        (BindTransmitter(system_id="a"), S.BOUND_TX, BindType.TRANSMITTER),
        (BindReceiver(system_id="a"), S.BOUND_RX, BindType.RECEIVER),
        (BindTransceiver(system_id="a"), S.BOUND_TRX, BindType.TRANSCEIVER),
    ],
)
def test_each_bind_reaches_its_state(bind: Pdu, state: SessionState, bind_type: BindType) -> None:
    esme, smsc = bound_pair(bind)
    assert esme.state is state and smsc.state is state
    assert esme.bind_type is bind_type and smsc.bind_type is bind_type


def test_failed_bind_leaves_open_and_a_new_bind_may_follow() -> None:
    esme, smsc = make(Role.ESME), make(Role.SMSC)
    bind = esme.send(BindTransmitter(system_id="acme", password="bad"), 0.0)
    _, _at_smsc = pump(esme, smsc, 0.0)
    smsc.send(bind.response(command_status=CommandStatus.ESME_RINVPASWD), 0.0)
    at_esme, _ = pump(esme, smsc, 0.0)
    (answer,) = of_type(at_esme, ResponseReceived)
    assert answer.response.command_status == CommandStatus.ESME_RINVPASWD
    assert not of_type(at_esme, BindStateChanged)
    assert esme.state is S.OPEN and smsc.state is S.OPEN and esme.bind_type is None
    bound_pair(BindTransmitter(system_id="acme", password="good"), esme=esme, smsc=smsc)
    assert state_of(esme) is S.BOUND_TX


def test_second_bind_while_one_is_pending_is_refused_both_ways() -> None:
    esme, smsc = make(Role.ESME), make(Role.SMSC)
    esme.send(BindTransceiver(system_id="a"), 0.0)
    assert not esme.can_send(C.BIND_TRANSMITTER)
    with pytest.raises(SmppError) as info:
        esme.send(BindTransmitter(system_id="a"), 0.0)
    assert info.value.command_status == CommandStatus.ESME_RINVBNDSTS
    pump(esme, smsc, 0.0)
    events = smsc.receive_data(encode(BindTransmitter(system_id="a", sequence_number=9)), 0.0)
    assert of_type(events, RejectedRequest)[0].command_status == CommandStatus.ESME_RINVBNDSTS
    (reply,) = split_pdus(smsc.data_to_send())
    assert reply == BindTransmitterResp(
        command_status=CommandStatus.ESME_RINVBNDSTS, sequence_number=9
    )


def test_outbind_then_bind() -> None:
    esme, smsc = make(Role.ESME), make(Role.SMSC)
    outbind = smsc.send(Outbind(system_id="smsc", password="pw"), 0.0)
    assert smsc.state is S.OUTBOUND and smsc.outstanding == 0  # no response to wait for
    at_esme, _ = pump(esme, smsc, 0.0)
    assert at_esme == [
        BindStateChanged(old=S.OPEN, new=S.OUTBOUND),
        RequestReceived(pdu=outbind),
    ]
    bound_pair(BindReceiver(system_id="acme"), esme=esme, smsc=smsc)
    assert state_of(esme) is S.BOUND_RX and state_of(smsc) is S.BOUND_RX


# ---------------------------------------------------------------------------------------
# The operation matrix
# ---------------------------------------------------------------------------------------

ALL_STATES = list(SessionState)
ALL_COMMANDS = list(CommandId)
REQUESTS = list(REQUEST_SAMPLES)


def test_expected_matrix_covers_every_command() -> None:
    assert set(EXPECTED) == set(CommandId)


@pytest.mark.parametrize("direction", [E2S, S2E], ids=lambda d: d.name)
@pytest.mark.parametrize("command_id", ALL_COMMANDS, ids=lambda c: c.name.lower())
@pytest.mark.parametrize("state", ALL_STATES, ids=lambda s: s.name)
def test_table_matches_the_spec_matrix(
    state: SessionState, command_id: CommandId, direction: Direction
) -> None:
    assert is_allowed(state, command_id, direction) is expected_allowed(
        state, command_id, direction
    )


def _role_sending(direction: Direction) -> Role:
    return Role.ESME if direction is E2S else Role.SMSC


@pytest.mark.parametrize("direction", [E2S, S2E], ids=lambda d: d.name)
@pytest.mark.parametrize("command_id", REQUESTS, ids=lambda c: c.name.lower())
@pytest.mark.parametrize("state", ALL_STATES, ids=lambda s: s.name)
def test_sending_a_request_follows_the_matrix(
    state: SessionState, command_id: CommandId, direction: Direction
) -> None:
    session = session_in(_role_sending(direction), state)
    request = REQUEST_SAMPLES[command_id]
    allowed = expected_allowed(state, command_id, direction)
    assert session.can_send(command_id) is allowed
    if allowed:
        sent = session.send(request, 1.0)
        assert sent.sequence_number > 0
        assert split_pdus(session.data_to_send()) == [sent]
    else:
        with pytest.raises(SmppError) as info:
            session.send(request, 1.0)
        assert info.value.command_status == (
            expected_rejection(state, command_id)
            if state is not S.CLOSED
            else CommandStatus.ESME_RINVBNDSTS
        )
        assert session.data_to_send() == b""
        assert session.state is state


@pytest.mark.parametrize("direction", [E2S, S2E], ids=lambda d: d.name)
@pytest.mark.parametrize("command_id", REQUESTS, ids=lambda c: c.name.lower())
@pytest.mark.parametrize("state", ALL_STATES, ids=lambda s: s.name)
def test_receiving_a_request_follows_the_matrix(
    state: SessionState, command_id: CommandId, direction: Direction
) -> None:
    receiver_role = Role.SMSC if direction is E2S else Role.ESME
    session = session_in(receiver_role, state)
    request = REQUEST_SAMPLES[command_id].replace(sequence_number=77)
    events = session.receive_data(encode(request), 1.0)
    replies = split_pdus(session.data_to_send())
    if state is S.CLOSED:
        assert events == [] and replies == []
        return
    if not expected_allowed(state, command_id, direction):
        status = expected_rejection(state, command_id)
        assert events == [RejectedRequest(pdu=request, command_status=status)]
        assert replies == [RESPONSE_CLASSES[command_id](command_status=status, sequence_number=77)]
        assert session.state is state
    elif command_id is C.ENQUIRE_LINK:
        assert events == [EnquireLinkAnswered(request=request)]
        assert replies == [EnquireLinkResp(sequence_number=77)]
    elif command_id is C.UNBIND:
        assert Unbound(by_peer=True) in events
        assert replies == [UnbindResp(sequence_number=77)]
        assert session.state is S.CLOSED
    else:
        assert RequestReceived(pdu=request) in events
        assert replies == []
        if command_id in (C.OUTBIND, C.ALERT_NOTIFICATION):
            assert session.unanswered == 0
        else:
            assert session.unanswered == 1
            assert session.can_send(RESPONSE_CLASSES[command_id].command_id)
            session.send(request.response(), 1.0)
            assert split_pdus(session.data_to_send()) == [request.response()]


# ---------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ALL_STATES, ids=lambda s: s.name)
def test_unmatched_response_is_reported_and_never_answered(state: SessionState) -> None:
    esme = session_in(Role.ESME, state)
    events = esme.receive_data(encode(SubmitSmResp(message_id="x", sequence_number=4242)), 0.0)
    if state is S.CLOSED:
        assert events == []
    else:
        assert events == [
            UnexpectedResponse(pdu=SubmitSmResp(message_id="x", sequence_number=4242))
        ]
    assert esme.data_to_send() == b""
    assert esme.state is state


def test_response_of_the_wrong_kind_does_not_match() -> None:
    esme, _smsc = bound_pair()
    submit = esme.send(REQUEST_SAMPLES[C.SUBMIT_SM], 0.0)
    wrong = QuerySmResp(message_id="m", sequence_number=submit.sequence_number)
    assert esme.receive_data(encode(wrong), 0.0) == [UnexpectedResponse(pdu=wrong)]
    assert esme.outstanding == 1


def test_generic_nack_answers_an_outstanding_request() -> None:
    esme, _smsc = bound_pair()
    submit = esme.send(REQUEST_SAMPLES[C.SUBMIT_SM], 0.0)
    nack = GenericNack(
        command_status=CommandStatus.ESME_RINVCMDLEN, sequence_number=submit.sequence_number
    )
    assert esme.receive_data(encode(nack), 0.0) == [ResponseReceived(request=submit, response=nack)]
    assert esme.outstanding == 0


def test_sending_a_response_nobody_asked_for_is_refused() -> None:
    _esme, smsc = bound_pair()
    with pytest.raises(SmppError):
        smsc.send(SubmitSmResp(message_id="x", sequence_number=5), 0.0)
    assert not smsc.can_send(C.SUBMIT_SM_RESP)
    # a generic_nack may always be sent while the session lives
    assert smsc.can_send(C.GENERIC_NACK)
    smsc.send(GenericNack(command_status=CommandStatus.ESME_RSYSERR, sequence_number=5), 0.0)
    assert split_pdus(smsc.data_to_send()) == [
        GenericNack(command_status=CommandStatus.ESME_RSYSERR, sequence_number=5)
    ]


def test_responses_still_flow_while_waiting_for_unbind_resp() -> None:
    esme, smsc = bound_pair()
    submit = esme.send(REQUEST_SAMPLES[C.SUBMIT_SM], 0.0)
    deliver = smsc.send(REQUEST_SAMPLES[C.DELIVER_SM], 0.0)
    pump(esme, smsc, 0.0)
    # the SMSC decides to unbind while both sides owe each other an answer
    unbind = smsc.send(Unbind(), 1.0)
    assert smsc.state is S.UNBOUND
    assert not smsc.can_send(C.DELIVER_SM)  # no new work after an unbind
    smsc.send(submit.response(message_id="id-1"), 1.0)  # answers are still allowed
    at_esme, _ = pump(esme, smsc, 1.0)
    assert at_esme == [
        BindStateChanged(old=S.BOUND_TRX, new=S.UNBOUND),
        Unbound(by_peer=True),
        ResponseReceived(
            request=submit,
            response=SubmitSmResp(message_id="id-1", sequence_number=submit.sequence_number),
        ),
    ]
    # the ESME owes a deliver_sm_resp: its unbind_resp waits for it
    assert esme.state is S.UNBOUND and esme.unanswered == 1
    assert not esme.can_send(C.SUBMIT_SM)
    esme.send(deliver.response(), 2.0)
    assert state_of(esme) is S.CLOSED
    _, at_smsc = pump(esme, smsc, 2.0)
    assert at_smsc == [
        ResponseReceived(request=deliver, response=DeliverSmResp(sequence_number=1)),
        ResponseReceived(
            request=unbind, response=UnbindResp(sequence_number=unbind.sequence_number)
        ),
        Unbound(by_peer=False),
        BindStateChanged(old=S.UNBOUND, new=S.CLOSED),
    ]
    assert state_of(smsc) is S.CLOSED and smsc.outstanding_requests == ()


def test_peer_unbind_is_answered_at_the_latest_after_response_timeout() -> None:
    esme, smsc = bound_pair(smsc=make(Role.SMSC, response_timeout=5.0))
    submit = esme.send(REQUEST_SAMPLES[C.SUBMIT_SM], 0.0)
    unbind = esme.send(Unbind(), 0.0)
    _, at_smsc = pump(esme, smsc, 0.0)
    assert RequestReceived(pdu=submit) in at_smsc and Unbound(by_peer=True) in at_smsc
    assert smsc.state is S.UNBOUND and smsc.next_timer() == 5.0
    # the adapter never answers the submit_sm
    assert smsc.handle_timer(5.0) == [BindStateChanged(old=S.UNBOUND, new=S.CLOSED)]
    assert split_pdus(smsc.data_to_send()) == [UnbindResp(sequence_number=unbind.sequence_number)]
    with pytest.raises(SmppError):
        smsc.send(submit.response(message_id="late"), 6.0)


def test_crossed_unbinds_both_close() -> None:
    esme, smsc = bound_pair()
    esme.send(Unbind(), 0.0)
    smsc.send(Unbind(), 0.0)
    pump(esme, smsc, 0.0)
    assert esme.state is S.CLOSED and smsc.state is S.CLOSED


def test_unanswered_requests_are_kept_for_requeueing_after_close() -> None:
    esme, _smsc = bound_pair()
    submit = esme.send(REQUEST_SAMPLES[C.SUBMIT_SM], 0.0)
    esme.close()
    assert esme.state is S.CLOSED and esme.outstanding_requests == (submit,)
    assert esme.data_to_send() == b""


# ---------------------------------------------------------------------------------------
# Window, sequence numbers, response timeouts
# ---------------------------------------------------------------------------------------


def test_window_full_and_freed_by_a_response() -> None:
    esme, smsc = bound_pair(esme=make(Role.ESME, window=3))
    sent = [esme.send(REQUEST_SAMPLES[C.SUBMIT_SM], 0.0) for _ in range(3)]
    assert esme.outstanding == 3 and not esme.can_send(C.SUBMIT_SM)
    with pytest.raises(WindowFull) as info:
        esme.send(REQUEST_SAMPLES[C.SUBMIT_SM], 0.0)
    assert info.value.command_status == CommandStatus.ESME_RTHROTTLED
    assert isinstance(info.value, SmppError)
    # link management is exempt from the window
    assert esme.can_send(C.ENQUIRE_LINK) and esme.can_send(C.UNBIND)
    esme.send(EnquireLink(), 0.0)
    assert esme.outstanding == 3 and len(esme.outstanding_requests) == 4
    pump(esme, smsc, 0.0)
    smsc.send(sent[1].response(message_id="m"), 0.0)
    pump(esme, smsc, 0.0)
    assert esme.outstanding == 2
    assert esme.send(REQUEST_SAMPLES[C.SUBMIT_SM], 0.0).sequence_number == 6


def test_sequence_numbers_wrap_from_0x7fffffff_to_1() -> None:
    esme, smsc = bound_pair(esme=make(Role.ESME, first_sequence_number=0x7FFFFFFE))
    # the bind took 0x7FFFFFFE
    seqs = [esme.send(EnquireLink(), 0.0).sequence_number for _ in range(3)]
    assert seqs == [0x7FFFFFFF, 1, 2]
    at_esme, _ = pump(esme, smsc, 0.0)
    assert len(of_type(at_esme, ResponseReceived)) == 3


def test_first_sequence_number_is_validated() -> None:
    with pytest.raises(ValueError):
        make(Role.ESME, first_sequence_number=0)
    with pytest.raises(ValueError):
        make(Role.ESME, first_sequence_number=0x80000000)


def test_response_timeout_frees_the_slot_and_late_response_is_unexpected() -> None:
    esme, _smsc = bound_pair(esme=make(Role.ESME, window=1, response_timeout=10.0))
    submit = esme.send(REQUEST_SAMPLES[C.SUBMIT_SM], 100.0)
    assert esme.next_timer() == 110.0
    assert esme.handle_timer(109.9) == []
    assert esme.handle_timer(110.0) == [ResponseTimeout(request=submit)]
    assert esme.outstanding == 0 and esme.can_send(C.SUBMIT_SM)
    assert esme.next_timer() is None
    late = SubmitSmResp(message_id="x", sequence_number=submit.sequence_number)
    assert esme.receive_data(encode(late), 111.0) == [UnexpectedResponse(pdu=late)]


def test_bind_timeout_leaves_open() -> None:
    esme = make(Role.ESME, response_timeout=5.0)
    bind = esme.send(BindTransceiver(system_id="a"), 0.0)
    assert esme.handle_timer(5.0) == [ResponseTimeout(request=bind)]
    assert esme.state is S.OPEN


def test_unbind_timeout_closes() -> None:
    esme, _ = bound_pair(esme=make(Role.ESME, response_timeout=5.0))
    unbind = esme.send(Unbind(), 0.0)
    assert esme.handle_timer(5.0) == [
        ResponseTimeout(request=unbind),
        BindStateChanged(old=S.UNBOUND, new=S.CLOSED),
    ]


# ---------------------------------------------------------------------------------------
# Keep-alive and inactivity
# ---------------------------------------------------------------------------------------


def test_enquire_link_keepalive_fires_after_idle_interval() -> None:
    esme, smsc = bound_pair(esme=make(Role.ESME, enquire_link_interval=30.0, response_timeout=10.0))
    assert esme.next_timer() == 30.0  # bound at t=0
    assert esme.handle_timer(29.0) == [] and esme.data_to_send() == b""
    # traffic from the peer postpones the keep-alive
    deliver = smsc.send(REQUEST_SAMPLES[C.DELIVER_SM], 20.0)
    esme.receive_data(smsc.data_to_send(), 20.0)
    esme.send(deliver.response(), 20.0)
    smsc.receive_data(esme.data_to_send(), 20.0)
    assert esme.next_timer() == 50.0
    assert esme.handle_timer(49.0) == [] and esme.data_to_send() == b""
    assert esme.handle_timer(50.0) == []
    (ping,) = split_pdus(esme.data_to_send())
    assert isinstance(ping, EnquireLink)
    assert esme.next_timer() == 60.0  # its response deadline; no second keep-alive meanwhile
    # the SMSC answers at 55: next keep-alive 30 s later
    smsc.receive_data(encode(ping), 55.0)
    esme.receive_data(smsc.data_to_send(), 55.0)
    assert esme.next_timer() == 85.0


def test_unanswered_keepalive_means_link_dead() -> None:
    esme, _ = bound_pair(esme=make(Role.ESME, enquire_link_interval=30.0, response_timeout=10.0))
    esme.handle_timer(30.0)
    assert split_pdus(esme.data_to_send())[0].command_id == C.ENQUIRE_LINK
    assert esme.handle_timer(39.9) == []
    assert esme.handle_timer(40.0) == [
        LinkDead(),
        BindStateChanged(old=S.BOUND_TRX, new=S.CLOSED),
    ]
    assert esme.state is S.CLOSED and esme.next_timer() is None


def test_no_keepalive_before_bind() -> None:
    esme = make(Role.ESME, enquire_link_interval=30.0)
    assert esme.next_timer() is None
    assert esme.handle_timer(1000.0) == [] and esme.data_to_send() == b""


def test_inactivity_timeout_unbinds_a_bound_session() -> None:
    esme, smsc = bound_pair(
        esme=make(Role.ESME, inactivity_timeout=60.0, enquire_link_interval=20.0)
    )
    # enquire_links keep the link alive but are not activity
    for t in (20.0, 40.0):
        esme.handle_timer(t)
        pump(esme, smsc, t)
    assert esme.next_timer() == 60.0
    events = esme.handle_timer(60.0)
    assert events == [InactivityTimeout(), BindStateChanged(old=S.BOUND_TRX, new=S.UNBOUND)]
    assert [p.command_id for p in split_pdus(esme.data_to_send())] == [C.UNBIND]


def test_real_traffic_resets_the_inactivity_timer() -> None:
    esme, smsc = bound_pair(esme=make(Role.ESME, inactivity_timeout=60.0))
    submit = esme.send(REQUEST_SAMPLES[C.SUBMIT_SM], 50.0)
    pump(esme, smsc, 50.0)
    smsc.send(submit.response(message_id="m"), 51.0)
    pump(esme, smsc, 51.0)
    assert esme.next_timer() == 111.0
    assert esme.handle_timer(110.0) == []


def test_inactivity_before_bind_closes() -> None:
    smsc = make(Role.SMSC, inactivity_timeout=10.0)
    assert smsc.next_timer() == 10.0
    assert smsc.handle_timer(10.0) == [
        InactivityTimeout(),
        BindStateChanged(old=S.OPEN, new=S.CLOSED),
    ]
    assert smsc.data_to_send() == b""


def test_manual_enquire_link_answering() -> None:
    smsc = make(Role.SMSC, auto_enquire_link=False)
    ping = EnquireLink(sequence_number=3)
    assert smsc.receive_data(encode(ping), 0.0) == [RequestReceived(pdu=ping)]
    assert smsc.data_to_send() == b""
    smsc.send(ping.response(), 0.0)
    assert split_pdus(smsc.data_to_send()) == [EnquireLinkResp(sequence_number=3)]


# ---------------------------------------------------------------------------------------
# Malformed input
# ---------------------------------------------------------------------------------------


def _raw(command_id: int, sequence_number: int, body: bytes = b"", status: int = 0) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence_number) + body


def test_unknown_command_id_gets_generic_nack_invcmdid() -> None:
    _, smsc = bound_pair()
    events = smsc.receive_data(_raw(0x00000099, 31), 0.0)
    (event,) = events
    assert isinstance(event, MalformedPdu)
    assert event.error.command_status == CommandStatus.ESME_RINVCMDID
    assert split_pdus(smsc.data_to_send()) == [
        GenericNack(command_status=CommandStatus.ESME_RINVCMDID, sequence_number=31)
    ]
    assert smsc.state is S.BOUND_TRX


def test_malformed_submit_sm_gets_submit_sm_resp_with_decode_status() -> None:
    _, smsc = bound_pair()
    body = b"\x00\x01\x01" + b"1" * 30  # source_addr never NUL-terminated
    data = _raw(C.SUBMIT_SM, 44, body)
    with pytest.raises(SmppError) as info:
        decode(data)
    status = info.value.command_status
    assert status != CommandStatus.ESME_ROK
    events = smsc.receive_data(data, 0.0)
    assert [type(e) for e in events] == [MalformedPdu]
    assert split_pdus(smsc.data_to_send()) == [
        SubmitSmResp(command_status=status, sequence_number=44)
    ]
    # the stream goes on: the next PDU is handled normally
    ping = EnquireLink(sequence_number=45)
    assert smsc.receive_data(encode(ping), 0.0) == [EnquireLinkAnswered(request=ping)]


def test_malformed_response_frees_its_request_and_is_not_answered() -> None:
    esme, _ = bound_pair()
    query = esme.send(REQUEST_SAMPLES[C.QUERY_SM], 0.0)
    esme.data_to_send()
    bad = _raw(C.QUERY_SM_RESP, query.sequence_number, b"x" * 80)  # message_id unterminated
    events = esme.receive_data(bad, 0.0)
    (event,) = events
    assert isinstance(event, MalformedPdu) and event.request == query
    assert esme.outstanding == 0 and esme.data_to_send() == b""


@pytest.mark.parametrize("length", [0, 8, 15, 70_000])
def test_framing_break_is_protocol_broken(length: int) -> None:
    _, smsc = bound_pair()
    data = struct.pack(">IIII", length, C.SUBMIT_SM, 0, 12)
    events = smsc.receive_data(data, 0.0)
    assert isinstance(events[0], ProtocolBroken)
    assert events[0].error.command_status == CommandStatus.ESME_RINVCMDLEN
    assert events[1:] == [BindStateChanged(old=S.BOUND_TRX, new=S.CLOSED)]
    assert smsc.state is S.CLOSED
    assert split_pdus(smsc.data_to_send()) == [
        GenericNack(command_status=CommandStatus.ESME_RINVCMDLEN, sequence_number=12)
    ]
    assert smsc.receive_data(encode(EnquireLink(sequence_number=1)), 0.0) == []


def test_max_command_length_is_passed_to_framing() -> None:
    smsc = make(Role.SMSC, max_command_length=100)
    big = SubmitSm(
        source_addr="1", destination_addr="2", short_message=b"x" * 200, sequence_number=1
    )
    events = smsc.receive_data(encode(big), 0.0)
    assert isinstance(events[0], ProtocolBroken)


def test_bytes_split_at_every_offset_give_the_same_events() -> None:
    pdus = [
        BindTransceiver(system_id="acme", password="pw", sequence_number=1),
        EnquireLink(sequence_number=2),
    ]
    stream = b"".join(encode(p) for p in pdus)
    whole = make(Role.SMSC).receive_data(stream, 0.0)
    for cut in range(len(stream) + 1):
        smsc = make(Role.SMSC)
        events = smsc.receive_data(stream[:cut], 0.0) + smsc.receive_data(stream[cut:], 0.0)
        assert events == whole


def test_peer_exceeding_peer_window_is_throttled() -> None:
    _esme, smsc = bound_pair(smsc=make(Role.SMSC, peer_window=2))
    for seq in (10, 11):
        smsc.receive_data(encode(REQUEST_SAMPLES[C.SUBMIT_SM].replace(sequence_number=seq)), 0.0)
    third = REQUEST_SAMPLES[C.SUBMIT_SM].replace(sequence_number=12)
    assert smsc.receive_data(encode(third), 0.0) == [
        RejectedRequest(pdu=third, command_status=CommandStatus.ESME_RTHROTTLED)
    ]
    assert split_pdus(smsc.data_to_send()) == [
        SubmitSmResp(command_status=CommandStatus.ESME_RTHROTTLED, sequence_number=12)
    ]
    assert smsc.unanswered == 2


def test_unanswered_enquire_links_take_no_window_slot() -> None:
    """Window slots count only windowed requests, however requests come and go (the count is
    kept as requests arrive and are answered, not recounted)."""
    _esme, smsc = bound_pair(smsc=make(Role.SMSC, peer_window=2, auto_enquire_link=False))
    pings = [EnquireLink(sequence_number=n) for n in (20, 21, 22)]
    for ping in pings:
        smsc.receive_data(encode(ping), 0.0)
    submits = [REQUEST_SAMPLES[C.SUBMIT_SM].replace(sequence_number=n) for n in (10, 11, 12)]
    events = [smsc.receive_data(encode(pdu), 0.0) for pdu in submits]
    assert events[2] == [
        RejectedRequest(pdu=submits[2], command_status=CommandStatus.ESME_RTHROTTLED)
    ]
    smsc.send(pings[0].response(), 0.0)  # answering a ping frees no window slot ...
    late = REQUEST_SAMPLES[C.SUBMIT_SM].replace(sequence_number=13)
    assert smsc.receive_data(encode(late), 0.0)[0] == RejectedRequest(
        pdu=late, command_status=CommandStatus.ESME_RTHROTTLED
    )
    smsc.send(submits[0].response(message_id="a"), 0.0)  # ... answering a submit does
    again = REQUEST_SAMPLES[C.SUBMIT_SM].replace(sequence_number=14)
    assert smsc.receive_data(encode(again), 0.0) == [RequestReceived(pdu=again)]
    assert smsc.unanswered == 4  # two pings and two submits


def test_duplicate_sequence_number_from_peer_is_refused() -> None:
    _, smsc = bound_pair()
    first = REQUEST_SAMPLES[C.SUBMIT_SM].replace(sequence_number=5)
    smsc.receive_data(encode(first), 0.0)
    again = REQUEST_SAMPLES[C.QUERY_SM].replace(sequence_number=5)
    assert smsc.receive_data(encode(again), 0.0) == [
        RejectedRequest(pdu=again, command_status=CommandStatus.ESME_RSYSERR)
    ]
    smsc.send(first.response(message_id="ok"), 0.0)  # the first one is still answerable


# ---------------------------------------------------------------------------------------
# Property tests: random operations never crash and keep the invariants
# ---------------------------------------------------------------------------------------

_ANY_PDU = st.one_of(
    st.sampled_from(list(REQUEST_SAMPLES.values())),
    st.sampled_from(
        [
            BindTransceiverResp(system_id="x"),
            BindTransmitterResp(system_id="x"),
            BindReceiverResp(),
            SubmitSmResp(message_id="m"),
            DeliverSmResp(),
            EnquireLinkResp(),
            UnbindResp(),
            GenericNack(),
            DataSmResp(),
            QuerySmResp(message_id="m"),
        ]
    ),
)


def _peer_bytes() -> st.SearchStrategy[bytes]:
    well_formed = st.builds(
        lambda pdu, seq, status: encode(pdu.replace(sequence_number=seq, command_status=status)),
        _ANY_PDU,
        st.integers(0, 12),
        st.sampled_from([0, 0, 0, CommandStatus.ESME_RINVPASWD, 0x400]),
    )
    garbage = st.binary(max_size=40)
    header_only = st.builds(
        lambda cid, seq: _raw(cid, seq),
        st.sampled_from([*list(CommandId), 0x99, 0x80000099]),
        st.integers(0, 12),
    )
    return st.one_of(well_formed, well_formed, header_only, garbage)


_OPERATION = st.one_of(
    st.tuples(st.just("receive"), _peer_bytes()),
    st.tuples(st.just("send"), _ANY_PDU),
    st.tuples(st.just("answer"), st.integers(0, 12)),
    st.tuples(st.just("tick"), st.floats(0, 40)),
)


def _check_invariants(session: Session) -> None:
    assert session.state in set(SessionState)
    assert 0 <= session.outstanding <= session.window
    assert session.bound is (session.state in (S.BOUND_TX, S.BOUND_RX, S.BOUND_TRX))
    if session.state is S.CLOSED:
        assert session.next_timer() is None


@settings(deadline=None)
@given(
    role=st.sampled_from(list(Role)),
    start=st.sampled_from(list(SessionState)),
    window=st.integers(1, 4),
    operations=st.lists(_OPERATION, max_size=40),
)
def test_random_operations_keep_invariants(
    role: Role, start: SessionState, window: int, operations: list[tuple[str, object]]
) -> None:
    session = session_in(
        role,
        start,
        window=window,
        response_timeout=15.0,
        enquire_link_interval=10.0,
        inactivity_timeout=60.0,
        max_command_length=512,
    )
    now = 0.0
    for kind, value in operations:
        if kind == "receive":
            assert isinstance(value, bytes)
            session.receive_data(value, now)
        elif kind == "send":
            assert isinstance(value, Pdu)
            try:
                sent = session.send(value, now)
            except SmppError:
                pass
            else:
                if not value.is_response:
                    assert 1 <= sent.sequence_number <= 0x7FFFFFFF
        elif kind == "answer":
            assert isinstance(value, int)
            for response_class in set(RESPONSE_CLASSES.values()):
                if session.can_send(response_class.command_id):
                    with contextlib.suppress(SmppError):
                        session.send(response_class(sequence_number=value), now)
        else:
            assert isinstance(value, float)
            now += value
            session.handle_timer(now)
        session.data_to_send()
        _check_invariants(session)
        deadline = session.next_timer()
        if deadline is not None and deadline <= now:
            # a due timer must be consumed by handle_timer
            session.handle_timer(now)
            later = session.next_timer()
            assert later is None or later > now


@settings(deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["esme", "smsc"]),
            st.sampled_from(list(REQUEST_SAMPLES.values())),
            st.floats(0, 20),
            st.booleans(),
        ),
        max_size=30,
    )
)
def test_two_well_behaved_peers_never_break_the_protocol(
    steps: list[tuple[str, Pdu, float, bool]],
) -> None:
    esme = Session(Role.ESME, window=3, response_timeout=30.0, enquire_link_interval=15.0, now=0.0)
    smsc = Session(Role.SMSC, window=3, response_timeout=30.0, enquire_link_interval=15.0, now=0.0)
    now = 0.0
    for who, pdu, elapsed, answer in steps:
        me = esme if who == "esme" else smsc
        if me.can_send(pdu.command_id):
            me.send(pdu, now)
        else:
            with pytest.raises(SmppError):
                me.send(pdu, now)
        now += elapsed
        for side in (esme, smsc):
            side.handle_timer(now)
        at_esme, at_smsc = pump(esme, smsc, now)
        for side, events in ((esme, at_esme), (smsc, at_smsc)):
            # two correct peers never produce undecodable or broken traffic
            assert not of_type(events, MalformedPdu) and not of_type(events, ProtocolBroken)
            if answer:
                for event in of_type(events, RequestReceived):
                    if side.can_send(event.pdu.response().command_id):
                        ok = CommandStatus.ESME_ROK
                        side.send(event.pdu.response(command_status=ok), now)
            _check_invariants(side)
        pump(esme, smsc, now)
