"""The SMPP v3.4 session state machine for one connection (sans-I/O).

teleway is both sides of SMPP: the SMSC for its customers' ESMEs (``ingress/smpp_server``) and
an ESME towards upstream SMSCs (``channels/sms``).  Both use :class:`Session`, told which side
*we* are by :class:`Role`.  The session never touches a socket or a clock:

* bytes in, events out: :meth:`Session.receive_data` returns a list of events,
  :meth:`Session.data_to_send` drains the bytes to write;
* requests and responses we originate go through :meth:`Session.send`;
* time is a parameter: every call takes ``now`` (seconds, any monotonic origin);
  :meth:`Session.next_timer` says when :meth:`Session.handle_timer` must be called next.

After *every* call the adapter drains :meth:`Session.data_to_send` (automatic answers,
keep-alive ``enquire_link`` and ``unbind`` are queued there) and, when the state is
:attr:`SessionState.CLOSED`, closes the transport.

Which PDU may travel in which direction in which state is data: :data:`TRANSITIONS`, built
from the operation table of spec 2.3 (see ``docs/smpp-session.md`` for the matrix and the few
documented deviations).  A pair missing from the table is answered on the wire with
ESME_RINVBNDSTS (ESME_RALYBND for a bind on a bound session), never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

from teleway.proto.smpp.codec import encode
from teleway.proto.smpp.constants import RESPONSE_BIT, CommandId, CommandStatus
from teleway.proto.smpp.errors import SmppError
from teleway.proto.smpp.framing import PduBuffer
from teleway.proto.smpp.pdu import (
    PDU_CLASSES,
    EnquireLink,
    GenericNack,
    Pdu,
    Unbind,
)

__all__ = [
    "BOUND_STATES",
    "FIRST_SEQUENCE_NUMBER",
    "LAST_SEQUENCE_NUMBER",
    "LIVE_STATES",
    "RESPONSE_OF",
    "TRANSITIONS",
    "BindStateChanged",
    "BindType",
    "Direction",
    "EnquireLinkAnswered",
    "Event",
    "InactivityTimeout",
    "LinkDead",
    "MalformedPdu",
    "ProtocolBroken",
    "RejectedRequest",
    "RequestReceived",
    "ResponseReceived",
    "ResponseTimeout",
    "Role",
    "Session",
    "SessionState",
    "Unbound",
    "UnexpectedResponse",
    "WindowFull",
    "is_allowed",
    "rejection_status",
]

#: sequence_number range (spec 5.1.4: "0x00000001 to 0x7FFFFFFF"); after the last we wrap to 1.
FIRST_SEQUENCE_NUMBER: Final = 0x00000001
LAST_SEQUENCE_NUMBER: Final = 0x7FFFFFFF


# --------------------------------------------------------------------------------------------
# Roles, directions, states
# --------------------------------------------------------------------------------------------


class Direction(Enum):
    """Who sends a PDU; the spec's operation table (2.3) has one column for each."""

    __hash__ = object.__hash__  # members are singletons: Enum's own hash runs Python code

    ESME_TO_SMSC = "esme->smsc"
    SMSC_TO_ESME = "smsc->esme"

    @property
    def reverse(self) -> Direction:
        return Direction.SMSC_TO_ESME if self is Direction.ESME_TO_SMSC else Direction.ESME_TO_SMSC


class Role(Enum):
    """Which side of the connection *we* are."""

    __hash__ = object.__hash__  # members are singletons: Enum's own hash runs Python code

    ESME = "esme"
    SMSC = "smsc"

    @property
    def sends(self) -> Direction:
        """The direction of the PDUs we send."""
        return Direction.ESME_TO_SMSC if self is Role.ESME else Direction.SMSC_TO_ESME

    @property
    def receives(self) -> Direction:
        """The direction of the PDUs the peer sends."""
        return self.sends.reverse


class SessionState(Enum):
    """SMPP session states (spec 2.2), plus UNBOUND and OUTBOUND.

    OUTBOUND (from SMPP v5.0 2.2) is the state after an ``outbind``: the ESME may now bind.
    UNBOUND is ours: an ``unbind`` has been sent and its ``unbind_resp`` is awaited; responses
    to requests still outstanding in either direction may still travel, new work may not.
    """

    __hash__ = object.__hash__  # looked up for every PDU (TRANSITIONS): identity is enough

    OPEN = "open"
    OUTBOUND = "outbound"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBOUND = "unbound"
    CLOSED = "closed"


class BindType(Enum):
    """The three kinds of bind (spec 2.2)."""

    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"
    TRANSCEIVER = "transceiver"


_OPEN = SessionState.OPEN
_OUTBOUND = SessionState.OUTBOUND
_TX = SessionState.BOUND_TX
_RX = SessionState.BOUND_RX
_TRX = SessionState.BOUND_TRX
_UNBOUND = SessionState.UNBOUND
_CLOSED = SessionState.CLOSED

#: States in which the session is bound (the spec's BOUND_TX, BOUND_RX, BOUND_TRX).
BOUND_STATES: Final = frozenset({_TX, _RX, _TRX})
#: Every state in which PDUs may still travel.
LIVE_STATES: Final = frozenset(SessionState) - {_CLOSED}

_E2S = Direction.ESME_TO_SMSC
_S2E = Direction.SMSC_TO_ESME
_BOTH = (_E2S, _S2E)
_C = CommandId

# --------------------------------------------------------------------------------------------
# The operation table (spec 2.3, Table 2-1), as data
# --------------------------------------------------------------------------------------------

#: Requests: (command_id, direction) -> states in which that request may be *sent* (and so
#: received).  Spec 2.3 with these documented choices:
#: * replace_sm is listed for BOUND_TX only; a transceiver "supports the complete set of
#:   operations supported by a Transmitter" (2.2), so BOUND_TRX too;
#: * binds are also allowed in OUTBOUND, the state after an outbind (4.1.7, v5.0 2.2);
#: * enquire_link is allowed in every live state (v5.0 2.2 allows it in OPEN and OUTBOUND;
#:   many ESMEs send it before binding, and answering is harmless), in UNBOUND too;
#: * unbind is allowed in UNBOUND as well, for crossed unbinds (both sides unbinding at once).
_REQUEST_STATES: Final[Mapping[tuple[int, Direction], frozenset[SessionState]]] = {
    (_C.BIND_TRANSMITTER, _E2S): frozenset({_OPEN, _OUTBOUND}),
    (_C.BIND_RECEIVER, _E2S): frozenset({_OPEN, _OUTBOUND}),
    (_C.BIND_TRANSCEIVER, _E2S): frozenset({_OPEN, _OUTBOUND}),
    (_C.OUTBIND, _S2E): frozenset({_OPEN}),
    **{(_C.UNBIND, d): BOUND_STATES | {_UNBOUND} for d in _BOTH},
    (_C.SUBMIT_SM, _E2S): frozenset({_TX, _TRX}),
    (_C.SUBMIT_MULTI, _E2S): frozenset({_TX, _TRX}),
    **{(_C.DATA_SM, d): BOUND_STATES for d in _BOTH},
    (_C.DELIVER_SM, _S2E): frozenset({_RX, _TRX}),
    (_C.QUERY_SM, _E2S): frozenset({_TX, _TRX}),
    (_C.CANCEL_SM, _E2S): frozenset({_TX, _TRX}),
    (_C.REPLACE_SM, _E2S): frozenset({_TX, _TRX}),
    **{(_C.ENQUIRE_LINK, d): LIVE_STATES for d in _BOTH},
    (_C.ALERT_NOTIFICATION, _S2E): frozenset({_RX, _TRX}),
}

#: Request command_id -> its response command_id.  outbind and alert_notification have none
#: (spec 4.1.7, 4.12).
RESPONSE_OF: Final[Mapping[int, CommandId]] = {
    _C.BIND_TRANSMITTER: _C.BIND_TRANSMITTER_RESP,
    _C.BIND_RECEIVER: _C.BIND_RECEIVER_RESP,
    _C.BIND_TRANSCEIVER: _C.BIND_TRANSCEIVER_RESP,
    _C.UNBIND: _C.UNBIND_RESP,
    _C.SUBMIT_SM: _C.SUBMIT_SM_RESP,
    _C.SUBMIT_MULTI: _C.SUBMIT_MULTI_RESP,
    _C.DATA_SM: _C.DATA_SM_RESP,
    _C.DELIVER_SM: _C.DELIVER_SM_RESP,
    _C.QUERY_SM: _C.QUERY_SM_RESP,
    _C.CANCEL_SM: _C.CANCEL_SM_RESP,
    _C.REPLACE_SM: _C.REPLACE_SM_RESP,
    _C.ENQUIRE_LINK: _C.ENQUIRE_LINK_RESP,
}

#: Responses: (command_id, direction) -> states in which it may travel.  A response travels
#: in the states its request may be sent in, plus those the session can reach while the
#: request is outstanding (UNBOUND after our or their unbind; bound after a bind for an
#: enquire_link sent in OPEN).  The unbind_resp is only ever seen in UNBOUND because sending
#: an unbind moves the sender to UNBOUND.  generic_nack may answer anything, anywhere.
_RESPONSE_STATES: Final[Mapping[tuple[int, Direction], frozenset[SessionState]]] = {
    **{
        (RESPONSE_OF[c], d.reverse): frozenset({_OPEN, _OUTBOUND})
        for (c, d) in _REQUEST_STATES
        if c in (_C.BIND_TRANSMITTER, _C.BIND_RECEIVER, _C.BIND_TRANSCEIVER)
    },
    **{(_C.UNBIND_RESP, d): frozenset({_UNBOUND}) for d in _BOTH},
    **{
        (RESPONSE_OF[c], d.reverse): states | {_UNBOUND}
        for (c, d), states in _REQUEST_STATES.items()
        if states <= BOUND_STATES and c in RESPONSE_OF
    },
    **{(_C.ENQUIRE_LINK_RESP, d): LIVE_STATES for d in _BOTH},
    **{(_C.GENERIC_NACK, d): LIVE_STATES for d in _BOTH},
}

#: Where a request moves the session when sent/received (the others stay where they are).
_REQUEST_MOVES: Final[Mapping[int, SessionState]] = {
    _C.OUTBIND: _OUTBOUND,  # spec 2.2.1: the ESME may now bind
    _C.UNBIND: _UNBOUND,  # spec 4.2: no new work after an unbind
}

#: Where a *successful* (ESME_ROK) response moves the session.  An error response leaves the
#: state unchanged, except for unbind: whatever answers it, the session is over (4.2).
_RESPONSE_MOVES: Final[Mapping[int, SessionState]] = {
    _C.BIND_TRANSMITTER_RESP: _TX,
    _C.BIND_RECEIVER_RESP: _RX,
    _C.BIND_TRANSCEIVER_RESP: _TRX,
    _C.UNBIND_RESP: _CLOSED,
}


def _build_transitions() -> dict[tuple[SessionState, int, Direction], SessionState]:
    table: dict[tuple[SessionState, int, Direction], SessionState] = {}
    for (command_id, direction), states in _REQUEST_STATES.items():
        for state in states:
            table[state, command_id, direction] = _REQUEST_MOVES.get(command_id, state)
    for (command_id, direction), states in _RESPONSE_STATES.items():
        for state in states:
            table[state, command_id, direction] = _RESPONSE_MOVES.get(command_id, state)
    return table


#: The session's transition table: (state, command_id, direction) -> next state, for every
#: allowed combination.  Responses: the next state after an ESME_ROK response (see
#: :data:`_RESPONSE_MOVES` for error responses).  A missing key means "not allowed".
TRANSITIONS: Final[Mapping[tuple[SessionState, int, Direction], SessionState]] = (
    _build_transitions()
)

_BIND_REQUESTS: Final = frozenset({_C.BIND_TRANSMITTER, _C.BIND_RECEIVER, _C.BIND_TRANSCEIVER})
_BIND_TYPE_OF_STATE: Final[Mapping[SessionState, BindType]] = {
    _TX: BindType.TRANSMITTER,
    _RX: BindType.RECEIVER,
    _TRX: BindType.TRANSCEIVER,
}
#: Requests that do not take a slot in the window: link management, not work.  A bind is
#: only possible when nothing else is outstanding, so it needs no slot either.
_WINDOW_EXEMPT: Final = frozenset({_C.ENQUIRE_LINK, _C.UNBIND}) | _BIND_REQUESTS
#: PDUs that do not count as activity for the inactivity timer (spec 7.2: the
#: inactivity_timer measures the time between *transactions*; keep-alives are not).
_NOT_ACTIVITY: Final = frozenset({_C.ENQUIRE_LINK, _C.ENQUIRE_LINK_RESP})


def is_allowed(state: SessionState, command_id: int, direction: Direction) -> bool:
    """Whether the table allows ``command_id`` travelling in ``direction`` in ``state``."""
    return (state, command_id, direction) in TRANSITIONS


def rejection_status(state: SessionState, command_id: int) -> CommandStatus:
    """The command_status we answer a refused request with.

    ESME_RALYBND ("ESME already in bound state", 5.1.3) for a bind on a session that is or
    was bound; ESME_RINVBNDSTS ("incorrect BIND status for given command") otherwise.
    """
    if command_id in _BIND_REQUESTS and state in BOUND_STATES | {_UNBOUND}:
        return CommandStatus.ESME_RALYBND
    return CommandStatus.ESME_RINVBNDSTS


# --------------------------------------------------------------------------------------------
# Errors and events
# --------------------------------------------------------------------------------------------


class WindowFull(SmppError):
    """:meth:`Session.send` refused a request: ``window`` requests already await a response.

    Carries ESME_RTHROTTLED, the code an SMSC answers a peer exceeding its limits with
    (5.1.3); the caller waits for a response or a timeout and tries again.
    """

    def __init__(self, message: str = "", *, command_id: int | None = None) -> None:
        super().__init__(
            message, command_status=CommandStatus.ESME_RTHROTTLED, command_id=command_id
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Base of everything :meth:`Session.receive_data` and :meth:`Session.handle_timer` return."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestReceived(Event):
    """The peer sent a request the table allows; answer it with :meth:`Session.send`
    (except ``outbind`` and ``alert_notification``, which have no response)."""

    pdu: Pdu


@dataclass(frozen=True, kw_only=True, slots=True)
class ResponseReceived(Event):
    """The peer answered one of our requests (``response`` may be a ``generic_nack``)."""

    request: Pdu
    response: Pdu


@dataclass(frozen=True, kw_only=True, slots=True)
class ResponseTimeout(Event):
    """No response within ``response_timeout``: the request left the window, its fate is
    unknown (spec 7.2, response_timer)."""

    request: Pdu


@dataclass(frozen=True, kw_only=True, slots=True)
class UnexpectedResponse(Event):
    """A response matching none of our outstanding requests (late, duplicate or bogus).

    Never answered: a ``generic_nack`` to a response could loop between two peers."""

    pdu: Pdu


@dataclass(frozen=True, kw_only=True, slots=True)
class RejectedRequest(Event):
    """The peer sent a request we refused: we already answered it with ``command_status``
    (ESME_RINVBNDSTS/ESME_RALYBND from the table, ESME_RTHROTTLED beyond ``peer_window``,
    ESME_RSYSERR for a sequence_number already awaiting our answer)."""

    pdu: Pdu
    command_status: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MalformedPdu(Event):
    """A correctly framed PDU that did not decode.

    A request was answered with its ``*_resp`` (or ``generic_nack``) carrying
    ``error.command_status``.  A response is never answered; if it matched an outstanding
    request, ``request`` is that request, now removed from the window with an unknown fate.
    """

    error: SmppError
    request: Pdu | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class EnquireLinkAnswered(Event):
    """The peer's ``enquire_link`` was answered automatically (for metrics and logs)."""

    request: Pdu


@dataclass(frozen=True, kw_only=True, slots=True)
class Unbound(Event):
    """The unbind handshake finished: the peer unbound (we answered) or answered our unbind."""

    by_peer: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class LinkDead(Event):
    """An ``enquire_link`` went unanswered for ``response_timeout``: the session is CLOSED."""


@dataclass(frozen=True, kw_only=True, slots=True)
class InactivityTimeout(Event):
    """No transaction for ``inactivity_timeout`` (spec 7.2 inactivity_timer).

    A bound session has queued an ``unbind``; an unbound one is CLOSED."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ProtocolBroken(Event):
    """The byte stream can no longer be split into PDUs (bad command_length, 3.2): the
    session is CLOSED and the connection must be dropped."""

    error: SmppError


@dataclass(frozen=True, kw_only=True, slots=True)
class BindStateChanged(Event):
    """The session moved from ``old`` to ``new`` because of the peer or a timer.

    Changes caused by our own :meth:`Session.send` are visible at once in
    :attr:`Session.state` and are not reported."""

    old: SessionState
    new: SessionState


# --------------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Outstanding:
    request: Pdu
    deadline: float


class Session:
    """One SMPP connection, either side.

    Parameters (all times in seconds, ``now`` on the caller's monotonic clock):

    ``window``
        requests we may have awaiting a response (link management exempt); beyond it
        :meth:`send` raises :class:`WindowFull`.
    ``response_timeout``
        spec 7.2 response_timer: a request unanswered this long is reported by
        :meth:`handle_timer` as :class:`ResponseTimeout` (or :class:`LinkDead`).
    ``enquire_link_interval``
        spec 7.2 enquire_link_timer: while bound, an ``enquire_link`` is sent when nothing
        was received from the peer for this long.  ``None`` disables it.
    ``inactivity_timeout``
        spec 7.2 inactivity_timer: with no transaction (anything but enquire_link) in either
        direction for this long, :class:`InactivityTimeout` and an ``unbind`` (or CLOSED when
        not bound; this doubles as the spec's session_init_timer).  ``None`` disables it.
    ``max_command_length``
        largest PDU accepted from the peer (framing limit, 3.2).
    ``peer_window``
        requests of the peer we may have left unanswered; beyond it we answer
        ESME_RTHROTTLED ourselves (every queue has a limit).
    ``auto_enquire_link``
        answer the peer's ``enquire_link`` ourselves (:class:`EnquireLinkAnswered`) rather
        than handing it out as :class:`RequestReceived`.
    ``first_sequence_number``
        our first sequence_number (1..0x7FFFFFFF); numbers then increase and wrap to 1.
    """

    def __init__(
        self,
        role: Role,
        *,
        window: int = 10,
        response_timeout: float = 30.0,
        enquire_link_interval: float | None = 30.0,
        inactivity_timeout: float | None = None,
        max_command_length: int = 65536,
        peer_window: int = 100,
        auto_enquire_link: bool = True,
        first_sequence_number: int = FIRST_SEQUENCE_NUMBER,
        now: float,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        if peer_window < 1:
            raise ValueError("peer_window must be at least 1")
        if response_timeout <= 0:
            raise ValueError("response_timeout must be positive")
        if enquire_link_interval is not None and enquire_link_interval <= 0:
            raise ValueError("enquire_link_interval must be positive or None")
        if inactivity_timeout is not None and inactivity_timeout <= 0:
            raise ValueError("inactivity_timeout must be positive or None")
        if not FIRST_SEQUENCE_NUMBER <= first_sequence_number <= LAST_SEQUENCE_NUMBER:
            raise ValueError("first_sequence_number must be in 1..0x7FFFFFFF")
        self.role: Final = role
        self._sends: Final = role.sends  # the directions, asked for every PDU
        self._receives: Final = role.receives
        self.window: Final = window
        self.response_timeout: Final = response_timeout
        self.enquire_link_interval: Final = enquire_link_interval
        self.inactivity_timeout: Final = inactivity_timeout
        self.peer_window: Final = peer_window
        self.auto_enquire_link: Final = auto_enquire_link
        self._state = _OPEN
        self._bind_type: BindType | None = None
        self._buffer = PduBuffer(max_command_length=max_command_length)
        self._out = bytearray()
        self._next_sequence = first_sequence_number
        # ours, awaiting the peer's response: sequence_number -> request and deadline
        self._outstanding: dict[int, _Outstanding] = {}
        self._outstanding_exempt = 0  # of them, the ones that take no window slot
        # the peer's, awaiting our response: sequence_number -> request
        self._unanswered: dict[int, Pdu] = {}
        self._unanswered_exempt = 0  # of them, the ones that take no window slot
        # the peer's unbind, answered once _unanswered is empty (or at its deadline)
        self._peer_unbind: _Outstanding | None = None
        self._last_received = now
        self._last_activity = now

    # ---- properties ----------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def bound(self) -> bool:
        """True in BOUND_TX, BOUND_RX and BOUND_TRX."""
        return self._state in BOUND_STATES

    @property
    def bind_type(self) -> BindType | None:
        """The bind negotiated on this connection (kept through UNBOUND and CLOSED), or None."""
        return self._bind_type

    @property
    def outstanding(self) -> int:
        """Our requests awaiting a response that take a window slot (at most ``window``)."""
        return len(self._outstanding) - self._outstanding_exempt

    @property
    def outstanding_requests(self) -> tuple[Pdu, ...]:
        """All our requests awaiting a response, oldest first, exempt ones included.

        Still readable after CLOSED, so the adapter can requeue work whose fate is unknown."""
        return tuple(o.request for o in self._outstanding.values())

    @property
    def unanswered(self) -> int:
        """The peer's requests we have not answered yet."""
        return len(self._unanswered)

    def can_send(self, command_id: int) -> bool:
        """Whether :meth:`send` would accept a PDU with this command_id now.

        For a response other than generic_nack: whether one of the peer's requests awaits it.
        """
        if self._state is _CLOSED:
            return False
        direction = self._sends
        if command_id == _C.GENERIC_NACK:
            return True
        if command_id & RESPONSE_BIT:
            return is_allowed(self._state, command_id, direction) and any(
                RESPONSE_OF.get(r.command_id) == command_id for r in self._unanswered.values()
            )
        if not is_allowed(self._state, command_id, direction):
            return False
        if command_id in _BIND_REQUESTS and self._bind_pending():
            return False
        return command_id in _WINDOW_EXEMPT or self.outstanding < self.window

    # ---- sending ---------------------------------------------------------------------------

    def send(self, pdu: Pdu, now: float) -> Pdu:
        """Queue one PDU of ours; returns it as sent (requests get their sequence_number).

        Requests: checked against the table for our direction (SmppError ESME_RINVBNDSTS)
        and the window (:class:`WindowFull`); recorded with a ``now + response_timeout``
        deadline.  Responses: must answer a request of the peer still awaiting an answer
        (same sequence_number, matching command); a generic_nack may be sent in any live
        state.  Nothing changes when this raises.
        """
        if pdu.command_id & RESPONSE_BIT:
            self._send_response(pdu, now)
            return pdu
        return self._send_request(pdu, now)

    def _send_request(self, pdu: Pdu, now: float) -> Pdu:
        command_id = pdu.command_id
        direction = self._sends
        if not is_allowed(self._state, command_id, direction):
            raise SmppError(
                f"{_name(command_id)} may not be sent by the {self.role.value} "
                f"in {self._state.name}",
                command_status=rejection_status(self._state, command_id),
                command_id=command_id,
            )
        if command_id in _BIND_REQUESTS and self._bind_pending():
            raise SmppError(
                "a bind is already in progress",
                command_status=CommandStatus.ESME_RINVBNDSTS,
                command_id=command_id,
            )
        if command_id not in _WINDOW_EXEMPT and self.outstanding >= self.window:
            raise WindowFull(
                f"{self.window} requests already await a response", command_id=command_id
            )
        sequence_number = self._peek_sequence_number()
        pdu = pdu.replace(sequence_number=sequence_number)
        data = encode(pdu)  # may raise SmppError; nothing has changed yet
        self._advance_sequence_number(sequence_number)
        if command_id in RESPONSE_OF:
            self._outstanding[sequence_number] = _Outstanding(pdu, now + self.response_timeout)
            if command_id in _WINDOW_EXEMPT:
                self._outstanding_exempt += 1
        self._move(TRANSITIONS[self._state, command_id, direction], None)
        self._emit(data, command_id, now)
        return pdu

    def _send_response(self, pdu: Pdu, now: float) -> None:
        command_id = pdu.command_id
        if self._state is _CLOSED:
            raise SmppError(
                "the session is closed",
                command_status=CommandStatus.ESME_RINVBNDSTS,
                command_id=command_id,
                sequence_number=pdu.sequence_number,
            )
        request = self._unanswered.get(pdu.sequence_number)
        if request is not None and not _answers(pdu, request):
            request = None
        if request is None and command_id != _C.GENERIC_NACK:
            raise SmppError(
                f"no request of the peer with sequence_number {pdu.sequence_number} "
                f"awaits a {_name(command_id)}",
                command_id=command_id,
                sequence_number=pdu.sequence_number,
            )
        if not is_allowed(self._state, command_id, self._sends):
            raise SmppError(
                f"{_name(command_id)} may not be sent in {self._state.name}",
                command_status=CommandStatus.ESME_RINVBNDSTS,
                command_id=command_id,
                sequence_number=pdu.sequence_number,
            )
        data = encode(pdu)
        if request is not None:
            self._forget_unanswered(pdu.sequence_number)
            self._apply_response(request, pdu, None)
        self._emit(data, command_id, now)
        self._finish_peer_unbind(now, None)

    def data_to_send(self) -> bytes:
        """The bytes queued since the last call (and forget them)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def close(self) -> None:
        """The connection is gone (or we drop it): CLOSED, nothing more is sent or read.

        :attr:`outstanding_requests` still lists what never got a response."""
        self._state = _CLOSED
        self._out.clear()

    # ---- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes read from the connection; returns what they meant.

        Never raises: protocol problems are answered on the wire and reported as events.
        Bytes arriving when CLOSED are ignored.
        """
        events: list[Event] = []
        if self._state is _CLOSED:
            return events
        self._buffer.feed(data)
        while self._state is not _CLOSED:
            try:
                pdu = self._buffer.next_pdu()
            except SmppError as exc:
                if self._buffer.broken:
                    self._on_broken(exc, events)
                    break
                self._on_malformed(exc, now, events)
                continue
            if pdu is None:
                break
            self._on_pdu(pdu, now, events)
        return events

    def _on_pdu(self, pdu: Pdu, now: float, events: list[Event]) -> None:
        self._last_received = now
        if pdu.command_id not in _NOT_ACTIVITY:
            self._last_activity = now
        if pdu.command_id & RESPONSE_BIT:
            self._on_response(pdu, events)
        else:
            self._on_request(pdu, now, events)

    def _on_request(self, pdu: Pdu, now: float, events: list[Event]) -> None:
        command_id = pdu.command_id
        direction = self._receives
        # requests we hand out and must later be answered through send()
        kept = command_id in RESPONSE_OF and not (
            command_id == _C.UNBIND or (command_id == _C.ENQUIRE_LINK and self.auto_enquire_link)
        )
        status: int | None = None
        if not is_allowed(self._state, command_id, direction):
            status = rejection_status(self._state, command_id)
        elif command_id in _BIND_REQUESTS and self._bind_pending():
            status = CommandStatus.ESME_RINVBNDSTS
        elif kept and pdu.sequence_number in self._unanswered:
            # the peer reused a sequence_number we still owe an answer to: the answer
            # could not be told apart (5.1.4: it correlates a request with its response)
            status = CommandStatus.ESME_RSYSERR
        elif (
            kept
            and command_id not in _WINDOW_EXEMPT
            and self._unanswered_windowed() >= self.peer_window
        ):
            status = CommandStatus.ESME_RTHROTTLED
        if status is not None:
            self._answer(_error_response(pdu, status), now)
            events.append(RejectedRequest(pdu=pdu, command_status=status))
            return
        self._move(TRANSITIONS[self._state, command_id, direction], events)
        if command_id == _C.UNBIND:
            # spec 4.2: the receiver of an unbind answers it and the session is over.  The
            # answer waits until we have answered the peer's earlier requests (so a
            # submit_sm already being stored still gets its message_id), at most
            # response_timeout (the peer gives up after its own response timer anyway).
            if self._peer_unbind is not None:  # a repeated unbind: just acknowledge it
                self._answer(pdu.response(), now)
                return
            events.append(Unbound(by_peer=True))
            self._peer_unbind = _Outstanding(pdu, now + self.response_timeout)
            self._finish_peer_unbind(now, events)
        elif command_id == _C.ENQUIRE_LINK and self.auto_enquire_link:
            self._answer(pdu.response(), now)
            events.append(EnquireLinkAnswered(request=pdu))
        else:
            if kept:
                self._unanswered[pdu.sequence_number] = pdu
                if command_id in _WINDOW_EXEMPT:
                    self._unanswered_exempt += 1
            events.append(RequestReceived(pdu=pdu))

    def _on_response(self, pdu: Pdu, events: list[Event]) -> None:
        outstanding = self._outstanding.get(pdu.sequence_number)
        if (
            outstanding is None
            or not _answers(pdu, outstanding.request)
            or not is_allowed(self._state, pdu.command_id, self._receives)
        ):
            events.append(UnexpectedResponse(pdu=pdu))
            return
        self._forget_outstanding(pdu.sequence_number)
        request = outstanding.request
        events.append(ResponseReceived(request=request, response=pdu))
        if request.command_id == _C.UNBIND:
            events.append(Unbound(by_peer=False))
        self._apply_response(request, pdu, events)

    def _on_malformed(self, error: SmppError, now: float, events: list[Event]) -> None:
        """A framed PDU that did not decode (the framing is intact)."""
        self._last_received = now
        self._last_activity = now
        command_id = error.command_id
        sequence_number = error.sequence_number or 0
        if command_id is None or command_id & RESPONSE_BIT:
            # never answer a response; free the request it answers, if we can tell
            outstanding = self._outstanding.get(sequence_number)
            request: Pdu | None = None
            if outstanding is not None and command_id in (
                _C.GENERIC_NACK,
                RESPONSE_OF.get(outstanding.request.command_id),
            ):
                self._forget_outstanding(sequence_number)
                request = outstanding.request
            events.append(MalformedPdu(error=error, request=request))
            if request is not None and request.command_id == _C.UNBIND:
                self._move(_CLOSED, events)
            return
        # spec 2.8 / 4.3: a request we cannot read is answered with its own *_resp when we
        # know the command, generic_nack otherwise (unknown command_id: ESME_RINVCMDID),
        # carrying the error's status and the request's sequence_number.
        status = error.command_status or CommandStatus.ESME_RSYSERR
        response_id = RESPONSE_OF.get(command_id)
        response_class = PDU_CLASSES.get(response_id, GenericNack) if response_id else GenericNack
        self._answer(response_class(command_status=status, sequence_number=sequence_number), now)
        events.append(MalformedPdu(error=error))

    def _on_broken(self, error: SmppError, events: list[Event]) -> None:
        """Framing is lost: tell the peer why if we can (generic_nack, 3.2) and stop."""
        self._out += encode(
            GenericNack(
                command_status=error.command_status or CommandStatus.ESME_RINVCMDLEN,
                sequence_number=error.sequence_number or 0,
            )
        )
        events.append(ProtocolBroken(error=error))
        self._move(_CLOSED, events)

    # ---- timers ----------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None if no timer runs."""
        if self._state is _CLOSED:
            return None
        deadlines = [o.deadline for o in self._outstanding.values()]
        if self._peer_unbind is not None:
            deadlines.append(self._peer_unbind.deadline)
        keepalive = self._keepalive_due()
        if keepalive is not None:
            deadlines.append(keepalive)
        if self.inactivity_timeout is not None:
            deadlines.append(self._last_activity + self.inactivity_timeout)
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``: response timeouts, keep-alive, inactivity."""
        events: list[Event] = []
        if self._state is _CLOSED:
            return events
        if self._peer_unbind is not None and self._peer_unbind.deadline <= now:
            self._finish_peer_unbind(now, events, force=True)
            return events
        for sequence_number, outstanding in list(self._outstanding.items()):
            if outstanding.deadline > now:
                continue
            self._forget_outstanding(sequence_number)
            request = outstanding.request
            if request.command_id == _C.ENQUIRE_LINK:
                events.append(LinkDead())
                self._move(_CLOSED, events)
                return events
            events.append(ResponseTimeout(request=request))
            if request.command_id == _C.UNBIND:
                self._move(_CLOSED, events)
                return events
        if (
            self.inactivity_timeout is not None
            and self._last_activity + self.inactivity_timeout <= now
        ):
            events.append(InactivityTimeout())
            if self.bound:
                state = self._state
                self._send_request(Unbind(), now)
                events.append(BindStateChanged(old=state, new=self._state))
            else:
                self._move(_CLOSED, events)
        keepalive = self._keepalive_due()  # None once the inactivity timer unbound us
        if keepalive is not None and keepalive <= now:
            self._send_request(EnquireLink(), now)
        return events

    def _keepalive_due(self) -> float | None:
        if self.enquire_link_interval is None or self._state not in BOUND_STATES:
            return None
        if any(o.request.command_id == _C.ENQUIRE_LINK for o in self._outstanding.values()):
            return None
        return self._last_received + self.enquire_link_interval

    # ---- internals -------------------------------------------------------------------------

    def _bind_pending(self) -> bool:
        return any(
            o.request.command_id in _BIND_REQUESTS for o in self._outstanding.values()
        ) or any(r.command_id in _BIND_REQUESTS for r in self._unanswered.values())

    def _finish_peer_unbind(
        self, now: float, events: list[Event] | None, *, force: bool = False
    ) -> None:
        """Send the unbind_resp owed to the peer once nothing else is owed (or ``force``)."""
        if self._peer_unbind is None or self._state is _CLOSED:
            return
        if self._unanswered and not force:
            return
        unbind = self._peer_unbind.request
        self._peer_unbind = None
        self._unanswered.clear()
        self._unanswered_exempt = 0
        response = unbind.response()
        self._answer(response, now)
        self._apply_response(unbind, response, events)

    def _unanswered_windowed(self) -> int:
        return len(self._unanswered) - self._unanswered_exempt

    def _forget_unanswered(self, sequence_number: int) -> None:
        if self._unanswered.pop(sequence_number).command_id in _WINDOW_EXEMPT:
            self._unanswered_exempt -= 1

    def _forget_outstanding(self, sequence_number: int) -> None:
        if self._outstanding.pop(sequence_number).request.command_id in _WINDOW_EXEMPT:
            self._outstanding_exempt -= 1

    def _peek_sequence_number(self) -> int:
        sequence_number = self._next_sequence
        # skip numbers still awaiting a response (only possible after a full wrap)
        while sequence_number in self._outstanding:
            sequence_number = _after(sequence_number)
        return sequence_number

    def _advance_sequence_number(self, used: int) -> None:
        self._next_sequence = _after(used)

    def _answer(self, response: Pdu, now: float) -> None:
        """Queue a response we generated ourselves (automatic answers)."""
        self._emit(encode(response), response.command_id, now)

    def _emit(self, data: bytes, command_id: int, now: float) -> None:
        self._out += data
        if command_id not in _NOT_ACTIVITY:
            self._last_activity = now

    def _apply_response(self, request: Pdu, response: Pdu, events: list[Event] | None) -> None:
        """State change caused by a response to ``request``, sent or received."""
        if request.command_id == _C.UNBIND:
            self._move(_CLOSED, events)
        elif response.command_status == CommandStatus.ESME_ROK:
            new = _RESPONSE_MOVES.get(response.command_id)
            if new is not None:
                self._move(new, events)
                self._bind_type = _BIND_TYPE_OF_STATE.get(new, self._bind_type)

    def _move(self, new: SessionState, events: list[Event] | None) -> None:
        old = self._state
        if new is old:
            return
        self._state = new
        if events is not None:
            events.append(BindStateChanged(old=old, new=new))


def _after(sequence_number: int) -> int:
    return FIRST_SEQUENCE_NUMBER if sequence_number >= LAST_SEQUENCE_NUMBER else sequence_number + 1


def _name(command_id: int) -> str:
    try:
        return CommandId(command_id).name.lower()
    except ValueError:
        return f"0x{command_id:08X}"


def _answers(response: Pdu, request: Pdu) -> bool:
    return response.command_id == _C.GENERIC_NACK or response.command_id == RESPONSE_OF.get(
        request.command_id
    )


def _error_response(request: Pdu, status: int) -> Pdu:
    """The answer refusing ``request``: its own ``*_resp``, or generic_nack when it has none
    (outbind, alert_notification: ``Pdu.response`` gives generic_nack for those, spec 2.8)."""
    return request.response(command_status=status)
