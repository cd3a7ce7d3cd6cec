"""SMPP v3.4 PDUs as frozen, keyword-only dataclasses (spec chapter 4).

One class per operation and per response.  Field names are the spec's mandatory parameter
names in snake_case; derived length/count fields (``sm_length``, ``number_of_dests``,
``no_unsuccess``) are not stored, the codec computes them.  C-Octet Strings are ``str``
(latin-1, so every byte value survives a round trip), ``short_message`` is ``bytes``.
Optional parameters stay in wire order in ``tlvs``; :meth:`Pdu.tlv` reads one typed.

Every field has a default, so ``SubmitSm(source_addr="x", destination_addr="y",
short_message=b"hi")`` is a complete PDU.  ``command_status`` and ``sequence_number``
default to 0: the session layer assigns sequence numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NamedTuple, Self

from teleway.proto.smpp.constants import (
    DEFAULT_INTERFACE_VERSION,
    RESPONSE_BIT,
    CommandId,
    command_name,
    status_name,
)
from teleway.proto.smpp.tlv import Tlv, TlvValue, decode_value, parse_checked_tlvs

__all__ = [
    "PDU_CLASSES",
    "TLVS_SLOT",
    "AlertNotification",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CancelSm",
    "CancelSmResp",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "DistributionList",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "Outbind",
    "Pdu",
    "QuerySm",
    "QuerySmResp",
    "ReplaceSm",
    "ReplaceSmResp",
    "SmeAddress",
    "SubmitMulti",
    "SubmitMultiResp",
    "SubmitSm",
    "SubmitSmResp",
    "Unbind",
    "UnbindResp",
    "UnsuccessSme",
]


class SmeAddress(NamedTuple):
    """A submit_multi destination of dest_flag 1 (SME address, spec 4.5.1.1)."""

    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str


class DistributionList(NamedTuple):
    """A submit_multi destination of dest_flag 2 (distribution list name, spec 4.5.1.2)."""

    dl_name: str


class UnsuccessSme(NamedTuple):
    """One failed destination of a submit_multi_resp (spec 4.5.2.1)."""

    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str
    error_status_code: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Pdu:
    """Base of every PDU: the header fields and the optional parameters.

    ``command_status`` is an ``int`` so vendor codes (0x400-0x4FF) survive decoding; compare
    it with :class:`~teleway.proto.smpp.constants.CommandStatus` members.
    """

    command_id: ClassVar[CommandId]

    command_status: int = 0
    sequence_number: int = 0
    tlvs: tuple[Tlv, ...] = ()

    @property
    def is_response(self) -> bool:
        """True for ``*_resp`` and generic_nack (the response bit of command_id, 5.1.2.1)."""
        return bool(self.command_id & RESPONSE_BIT)

    @property
    def command_name(self) -> str:
        """``"submit_sm"``, ``"bind_transceiver_resp"``..."""
        return command_name(self.command_id)

    @property
    def status_name(self) -> str:
        """``"ESME_ROK"``, or the hex value of an unknown code."""
        return status_name(self.command_status)

    def response(self, **fields: Any) -> Pdu:
        """The matching response with this PDU's sequence_number.

        PDUs without a response of their own (outbind, alert_notification, responses) get a
        generic_nack, as spec 2.8 prescribes for a PDU that cannot be answered otherwise.
        """
        return GenericNack(**{"sequence_number": self.sequence_number, **fields})

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def tlv(self, tag: int) -> TlvValue | None:
        """The typed value of the first TLV with ``tag`` (see ``tlv.decode_value``), or None."""
        for item in self.tlvs:
            if item.tag == tag:
                return decode_value(tag, item.value)
        return None

    def tlv_raw(self, tag: int) -> bytes | None:
        """The raw value octets of the first TLV with ``tag``, or None."""
        for item in self.tlvs:
            if item.tag == tag:
                return item.value
        return None


class _LazyTlvs:
    """The ``tlvs`` attribute of every PDU, in place of the slot descriptor dataclass made.

    The value lives in the same slot (:data:`TLVS_SLOT`).  A decoder checks the TLV stream
    of a PDU (so a malformed one still fails decode with its code) and leaves its raw
    octets, a ``bytes``, in the slot; the first read turns them into the tuple of
    :class:`Tlv` and keeps it.  Every read goes through here (constructor, ``==``, repr,
    ``replace``, pickle), so nobody outside the codec ever sees the raw form; the encoder
    reads the slot directly and copies raw octets as they came (byte for byte).
    """

    __slots__ = ("_delete", "_set")

    def __init__(self, slot: Any) -> None:
        self._set = slot.__set__
        self._delete = slot.__delete__

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj._tlvs_slot
        if value.__class__ is bytes:
            value = parse_checked_tlvs(value)  # the decoder checked the stream
            self._set(obj, value)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        if value.__class__ is bytes:  # would be taken for a raw stream: refuse
            raise TypeError("tlvs must be a tuple of Tlv, not bytes")
        self._set(obj, value)

    def __delete__(self, obj: Any) -> None:
        self._delete(obj)


#: The slot holding ``tlvs`` (a tuple of Tlv, or raw TLV octets a decoder checked): the
#: codec's decoders store into it and its encoders read it without the lazy parse.
TLVS_SLOT: Final[Any] = Pdu.__dict__["tlvs"]
Pdu.tlvs = _LazyTlvs(TLVS_SLOT)  # type: ignore[assignment,misc]
# The slot descriptor also under a private name: ``pdu._tlvs_slot`` reads the slot as it
# is, and CPython specialises that read like any slot (a call of TLVS_SLOT.__get__ costs
# several times more).
type.__setattr__(Pdu, "_tlvs_slot", TLVS_SLOT)


# --- bind (spec 4.1) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransmitterResp(Pdu):
    """bind_transmitter_resp (4.1.2); sc_interface_version TLV optional."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER_RESP
    system_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BindReceiverResp(Pdu):
    """bind_receiver_resp (4.1.4)."""

    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER_RESP
    system_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransceiverResp(Pdu):
    """bind_transceiver_resp (4.1.6)."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER_RESP
    system_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransmitter(Pdu):
    """bind_transmitter (4.1.1)."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = DEFAULT_INTERFACE_VERSION
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def response(self, **fields: Any) -> BindTransmitterResp:
        return BindTransmitterResp(**{"sequence_number": self.sequence_number, **fields})


@dataclass(frozen=True, slots=True, kw_only=True)
class BindReceiver(Pdu):
    """bind_receiver (4.1.3)."""

    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = DEFAULT_INTERFACE_VERSION
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def response(self, **fields: Any) -> BindReceiverResp:
        return BindReceiverResp(**{"sequence_number": self.sequence_number, **fields})


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransceiver(Pdu):
    """bind_transceiver (4.1.5)."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = DEFAULT_INTERFACE_VERSION
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def response(self, **fields: Any) -> BindTransceiverResp:
        return BindTransceiverResp(**{"sequence_number": self.sequence_number, **fields})


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbind(Pdu):
    """outbind (4.1.7): SMSC asks an ESME to bind_receiver; no response PDU."""

    command_id: ClassVar[CommandId] = CommandId.OUTBIND
    system_id: str = ""
    password: str = ""


# --- session management (4.2, 4.3, 4.11) -----------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UnbindResp(Pdu):
    """unbind_resp (4.2.2)."""

    command_id: ClassVar[CommandId] = CommandId.UNBIND_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class Unbind(Pdu):
    """unbind (4.2.1)."""

    command_id: ClassVar[CommandId] = CommandId.UNBIND

    def response(self, **fields: Any) -> UnbindResp:
        return UnbindResp(**{"sequence_number": self.sequence_number, **fields})


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericNack(Pdu):
    """generic_nack (4.3.1): answer to a PDU that could not be understood."""

    command_id: ClassVar[CommandId] = CommandId.GENERIC_NACK


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLinkResp(Pdu):
    """enquire_link_resp (4.11.2)."""

    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLink(Pdu):
    """enquire_link (4.11.1)."""

    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK

    def response(self, **fields: Any) -> EnquireLinkResp:
        return EnquireLinkResp(**{"sequence_number": self.sequence_number, **fields})


# --- message submission and delivery (4.4 - 4.7) ----------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSmResp(Pdu):
    """submit_sm_resp (4.4.2); the body is omitted on the wire when command_status != 0."""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM_RESP
    message_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSm(Pdu):
    """submit_sm (4.4.1)."""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""

    @property
    def payload(self) -> bytes:
        """The user data: short_message, or the message_payload TLV when that is used."""
        if self.short_message:
            return self.short_message
        return self.tlv_raw(0x0424) or b""

    def response(self, **fields: Any) -> SubmitSmResp:
        return SubmitSmResp(**{"sequence_number": self.sequence_number, **fields})


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitMultiResp(Pdu):
    """submit_multi_resp (4.5.2): message_id and the destinations that failed."""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_MULTI_RESP
    message_id: str = ""
    unsuccess_sme: tuple[UnsuccessSme, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitMulti(Pdu):
    """submit_multi (4.5.1): up to 254 SME addresses and/or distribution list names."""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_MULTI
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addresses: tuple[SmeAddress | DistributionList, ...] = ()
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""

    @property
    def payload(self) -> bytes:
        """The user data: short_message, or the message_payload TLV when that is used."""
        if self.short_message:
            return self.short_message
        return self.tlv_raw(0x0424) or b""

    def response(self, **fields: Any) -> SubmitMultiResp:
        return SubmitMultiResp(**{"sequence_number": self.sequence_number, **fields})


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSmResp(Pdu):
    """deliver_sm_resp (4.6.2); message_id is unused and NULL."""

    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM_RESP
    message_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSm(Pdu):
    """deliver_sm (4.6.1): mobile originated message or delivery receipt (esm_class 0x04)."""

    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""

    @property
    def payload(self) -> bytes:
        """The user data: short_message, or the message_payload TLV when that is used."""
        if self.short_message:
            return self.short_message
        return self.tlv_raw(0x0424) or b""

    def response(self, **fields: Any) -> DeliverSmResp:
        return DeliverSmResp(**{"sequence_number": self.sequence_number, **fields})


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSmResp(Pdu):
    """data_sm_resp (4.7.2)."""

    command_id: ClassVar[CommandId] = CommandId.DATA_SM_RESP
    message_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSm(Pdu):
    """data_sm (4.7.1): user data travels in the message_payload TLV."""

    command_id: ClassVar[CommandId] = CommandId.DATA_SM
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0

    @property
    def payload(self) -> bytes:
        """The message_payload TLV value (b"" if absent)."""
        return self.tlv_raw(0x0424) or b""

    def response(self, **fields: Any) -> DataSmResp:
        return DataSmResp(**{"sequence_number": self.sequence_number, **fields})


# --- message management (4.8 - 4.10) ----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QuerySmResp(Pdu):
    """query_sm_resp (4.8.2)."""

    command_id: ClassVar[CommandId] = CommandId.QUERY_SM_RESP
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class QuerySm(Pdu):
    """query_sm (4.8.1)."""

    command_id: ClassVar[CommandId] = CommandId.QUERY_SM
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""

    def response(self, **fields: Any) -> QuerySmResp:
        return QuerySmResp(**{"sequence_number": self.sequence_number, **fields})


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelSmResp(Pdu):
    """cancel_sm_resp (4.9.2)."""

    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelSm(Pdu):
    """cancel_sm (4.9.1)."""

    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM
    service_type: str = ""
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""

    def response(self, **fields: Any) -> CancelSmResp:
        return CancelSmResp(**{"sequence_number": self.sequence_number, **fields})


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceSmResp(Pdu):
    """replace_sm_resp (4.10.2)."""

    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceSm(Pdu):
    """replace_sm (4.10.1)."""

    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""

    def response(self, **fields: Any) -> ReplaceSmResp:
        return ReplaceSmResp(**{"sequence_number": self.sequence_number, **fields})


# --- alert_notification (4.12) -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertNotification(Pdu):
    """alert_notification (4.12.1): an MS became available; no response PDU."""

    command_id: ClassVar[CommandId] = CommandId.ALERT_NOTIFICATION
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""


#: command_id -> PDU class, for every v3.4 command.
PDU_CLASSES: Final[dict[int, type[Pdu]]] = {
    cls.command_id: cls
    for cls in (
        GenericNack,
        BindReceiver,
        BindReceiverResp,
        BindTransmitter,
        BindTransmitterResp,
        QuerySm,
        QuerySmResp,
        SubmitSm,
        SubmitSmResp,
        DeliverSm,
        DeliverSmResp,
        Unbind,
        UnbindResp,
        ReplaceSm,
        ReplaceSmResp,
        CancelSm,
        CancelSmResp,
        BindTransceiver,
        BindTransceiverResp,
        Outbind,
        EnquireLink,
        EnquireLinkResp,
        SubmitMulti,
        SubmitMultiResp,
        AlertNotification,
        DataSm,
        DataSmResp,
    )
}
