"""SMPP v3.4 optional parameters (TLVs, spec 3.2.4 and 5.3).

A :class:`Tlv` is the raw wire form: a 16-bit tag and its value octets.  PDUs keep their
TLVs as an ordered tuple of these, so a PDU re-encodes byte for byte, including tags we do
not know (vendor range 0x1400-0x3FFF, later SMPP versions) and repeated tags.

:data:`TLV_SPECS` describes every v3.4 tag: its value type and allowed length (spec 5.3.2).
The decoder uses it to reject a known tag with an impossible length
(``ESME_RINVPARLEN``); :func:`decode_value` turns a value into ``int`` / ``str`` / ``bytes``.
"""

from __future__ import annotations

import builtins
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from teleway.proto.smpp.constants import CommandStatus, Tag, tag_name
from teleway.proto.smpp.errors import SmppError

__all__ = [
    "TLV_SPECS",
    "Tlv",
    "TlvKind",
    "TlvSpec",
    "TlvValue",
    "decode_value",
    "encode_tlvs",
    "parse_tlvs",
]

#: A decoded TLV value: integers for INT tags, text for C-string tags, octets otherwise.
TlvValue = int | str | bytes

_TAG_LEN = struct.Struct(">HH")


class TlvKind(Enum):
    """How a TLV value is typed on the wire (spec 5.3.2 "Type" column)."""

    INT = "int"  # unsigned big-endian integer of a fixed size (1, 2 or 4 octets)
    CSTR = "cstr"  # C-Octet String (NUL terminated)
    OCTETS = "octets"  # Octet String


@dataclass(frozen=True, slots=True, kw_only=True)
class TlvSpec:
    """Type and length bounds (in octets, as in the Length field) of one known tag."""

    tag: int
    kind: TlvKind
    min_length: int
    max_length: int

    @property
    def name(self) -> str:
        return tag_name(self.tag)


def _int(tag: Tag, size: int) -> TlvSpec:
    return TlvSpec(tag=tag, kind=TlvKind.INT, min_length=size, max_length=size)


def _cstr(tag: Tag, max_length: int) -> TlvSpec:
    # A C-string value holds at least its NUL terminator.
    return TlvSpec(tag=tag, kind=TlvKind.CSTR, min_length=1, max_length=max_length)


def _octets(tag: Tag, min_length: int, max_length: int) -> TlvSpec:
    return TlvSpec(tag=tag, kind=TlvKind.OCTETS, min_length=min_length, max_length=max_length)


#: Every TLV of SMPP v3.4 (spec 5.3.2.1 - 5.3.2.44), keyed by tag value.
TLV_SPECS: Final[dict[int, TlvSpec]] = {
    s.tag: s
    for s in (
        _int(Tag.DEST_ADDR_SUBUNIT, 1),  # 5.3.2.1
        _int(Tag.DEST_NETWORK_TYPE, 1),  # 5.3.2.3
        _int(Tag.DEST_BEARER_TYPE, 1),  # 5.3.2.5
        _int(Tag.DEST_TELEMATICS_ID, 2),  # 5.3.2.7
        _int(Tag.SOURCE_ADDR_SUBUNIT, 1),  # 5.3.2.2
        _int(Tag.SOURCE_NETWORK_TYPE, 1),  # 5.3.2.4
        _int(Tag.SOURCE_BEARER_TYPE, 1),  # 5.3.2.6
        _int(Tag.SOURCE_TELEMATICS_ID, 1),  # 5.3.2.8
        _int(Tag.QOS_TIME_TO_LIVE, 4),  # 5.3.2.9
        _int(Tag.PAYLOAD_TYPE, 1),  # 5.3.2.10
        _cstr(Tag.ADDITIONAL_STATUS_INFO_TEXT, 256),  # 5.3.2.11
        _cstr(Tag.RECEIPTED_MESSAGE_ID, 65),  # 5.3.2.12
        _int(Tag.MS_MSG_WAIT_FACILITIES, 1),  # 5.3.2.13
        _int(Tag.PRIVACY_INDICATOR, 1),  # 5.3.2.14
        _octets(Tag.SOURCE_SUBADDRESS, 2, 23),  # 5.3.2.15
        _octets(Tag.DEST_SUBADDRESS, 2, 23),  # 5.3.2.16
        _int(Tag.USER_MESSAGE_REFERENCE, 2),  # 5.3.2.17
        _int(Tag.USER_RESPONSE_CODE, 1),  # 5.3.2.18
        _int(Tag.SOURCE_PORT, 2),  # 5.3.2.20
        _int(Tag.DESTINATION_PORT, 2),  # 5.3.2.21
        _int(Tag.SAR_MSG_REF_NUM, 2),  # 5.3.2.22
        _int(Tag.LANGUAGE_INDICATOR, 1),  # 5.3.2.19
        _int(Tag.SAR_TOTAL_SEGMENTS, 1),  # 5.3.2.23
        _int(Tag.SAR_SEGMENT_SEQNUM, 1),  # 5.3.2.24
        _int(Tag.SC_INTERFACE_VERSION, 1),  # 5.3.2.25
        _int(Tag.CALLBACK_NUM_PRES_IND, 1),  # 5.3.2.37
        _octets(Tag.CALLBACK_NUM_ATAG, 0, 65),  # 5.3.2.38
        _int(Tag.NUMBER_OF_MESSAGES, 1),  # 5.3.2.39
        _octets(Tag.CALLBACK_NUM, 4, 19),  # 5.3.2.36
        _int(Tag.DPF_RESULT, 1),  # 5.3.2.28
        _int(Tag.SET_DPF, 1),  # 5.3.2.29
        _int(Tag.MS_AVAILABILITY_STATUS, 1),  # 5.3.2.30
        _octets(Tag.NETWORK_ERROR_CODE, 3, 3),  # 5.3.2.31: network type (1) + error code (2)
        _octets(Tag.MESSAGE_PAYLOAD, 0, 0xFFFF),  # 5.3.2.32
        _int(Tag.DELIVERY_FAILURE_REASON, 1),  # 5.3.2.33
        _int(Tag.MORE_MESSAGES_TO_SEND, 1),  # 5.3.2.34
        _int(Tag.MESSAGE_STATE, 1),  # 5.3.2.35
        # 5.3.2.44: typed "Octet String" of size 1 in the spec; it is a one-octet code.
        _int(Tag.USSD_SERVICE_OP, 1),
        _int(Tag.DISPLAY_TIME, 1),  # 5.3.2.26
        _int(Tag.SMS_SIGNAL, 2),  # 5.3.2.40
        _int(Tag.MS_VALIDITY, 1),  # 5.3.2.27
        # 5.3.2.41: length 0 in v3.4; SMPP v5.0 gives it a one-octet value, accepted too.
        _octets(Tag.ALERT_ON_MESSAGE_DELIVERY, 0, 1),
        _int(Tag.ITS_REPLY_TYPE, 1),  # 5.3.2.42
        _octets(Tag.ITS_SESSION_INFO, 2, 2),  # 5.3.2.43
    )
}


@dataclass(frozen=True, slots=True)
class Tlv:
    """One optional parameter as on the wire: ``tag`` and raw ``value`` octets."""

    tag: int
    value: bytes

    @classmethod
    def cstr(cls, tag: builtins.int, text: str) -> Tlv:
        """A C-Octet String TLV: ``text`` (latin-1) plus its NUL terminator."""
        return cls(tag, text.encode("latin-1") + b"\0")

    @classmethod
    def octets(cls, tag: builtins.int, value: bytes | bytearray | memoryview) -> Tlv:
        """An Octet String TLV."""
        return cls(tag, bytes(value))

    @classmethod
    def int(cls, tag: builtins.int, value: builtins.int, size: builtins.int | None = None) -> Tlv:
        """An integer TLV; ``size`` defaults to the spec size of a known tag (else 1).

        Raises ``ValueError`` if ``value`` does not fit.
        """
        if size is None:
            spec = TLV_SPECS.get(tag)
            size = spec.min_length if spec is not None and spec.kind is TlvKind.INT else 1
        try:
            raw = value.to_bytes(size, "big")
        except OverflowError as exc:
            raise ValueError(f"{tag_name(tag)}: {value} does not fit in {size} octets") from exc
        return cls(tag, raw)

    @classmethod
    def of(cls, tag: builtins.int, value: TlvValue) -> Tlv:
        """Build a TLV from a decoded value, typed by the tag's spec (unknown tags: bytes)."""
        spec = TLV_SPECS.get(tag)
        if isinstance(value, bytes):
            return cls(tag, value)
        if isinstance(value, str):
            return cls.cstr(tag, value)
        if spec is not None and spec.kind is TlvKind.INT:
            return cls.int(tag, value, spec.min_length)
        raise ValueError(f"{tag_name(tag)}: an integer value needs a known integer tag")

    @property
    def name(self) -> str:
        """``"sar_msg_ref_num"`` or ``"0x1401"``."""
        return tag_name(self.tag)

    def decoded(self) -> TlvValue:
        """The value typed by the tag's spec (see :func:`decode_value`)."""
        return decode_value(self.tag, self.value)


def decode_value(tag: int, value: bytes) -> TlvValue:
    """Typed value of a TLV: ``int`` for INT tags, ``str`` for C-string tags, else ``bytes``.

    C-strings are decoded latin-1 up to the first NUL; a value lacking its terminator (a
    common peer bug, e.g. receipted_message_id sent without NUL) is taken whole.
    """
    spec = TLV_SPECS.get(tag)
    if spec is None or spec.kind is TlvKind.OCTETS:
        return value
    if spec.kind is TlvKind.INT:
        return int.from_bytes(value, "big")
    nul = value.find(0)
    return (value if nul < 0 else value[:nul]).decode("latin-1")


def unfrozen_twin(cls: type, **attributes: Any) -> Callable[[], Any]:
    """A private subclass of the slotted frozen dataclass ``cls`` whose instances accept
    plain attribute assignment, for decoders to fill before handing the object out.

    Filling a frozen dataclass goes through ``object.__setattr__`` or the slot descriptors'
    ``__set__`` (a C call per field); a plain ``obj.field = value`` on a class with the
    default ``__setattr__`` is a specialised store several times cheaper.  The decoder
    creates the twin, assigns every field, then sets ``obj.__class__ = cls``: the layouts
    are identical (the twin adds no slots), so the result is an ordinary, frozen ``cls``
    instance and the twin never escapes.  Both ``__setattr__`` and ``__delattr__`` must be
    object's so CPython keeps the generic (specialisable) attribute store; ``__new__`` and
    ``__init__`` are object's so that calling the twin with no arguments is the cheapest way
    to get a blank instance.  ``attributes`` go into the twin's namespace too (the codec
    puts the raw slot descriptor of ``tlvs`` there).  Returns the twin class.
    """
    twin = type(
        f"_Unfrozen{cls.__name__}",
        (cls,),
        {
            "__slots__": (),
            "__setattr__": object.__setattr__,
            "__delattr__": object.__delattr__,
            "__new__": object.__new__,
            "__init__": object.__init__,
            "__module__": cls.__module__,
            "__doc__": f"Decoder-private, assignable twin of {cls.__name__} (never escapes).",
            **attributes,
        },
    )
    probe = twin()
    probe.__class__ = cls  # fails loudly at import if the layouts ever differ
    return twin


_UnfrozenTlv = unfrozen_twin(Tlv)
_ANY_LENGTH: Final = range(0x10000)
#: Tag -> allowed value lengths (spec 5.3.2), as ranges.
TLV_LENGTHS: Final[dict[int, range]] = {
    tag: range(spec.min_length, spec.max_length + 1) for tag, spec in TLV_SPECS.items()
}
#: (tag, length) -> the 4 header octets, for every allowed (known tag, length) pair except
#: message_payload's 64 Ki lengths: one dict lookup both validates a known TLV and, when
#: encoding, gives its header (a 2-tuple key hashes faster than any int packing of both).
TLV_HEADERS: Final[dict[tuple[int, int], bytes]] = {
    (tag, length): _TAG_LEN.pack(tag, length)
    for tag, lengths in TLV_LENGTHS.items()
    if len(lengths) <= 0x100
    for length in lengths
}


#: The 4 header octets -> 4 + value length (the step to the next TLV), for the same (known
#: tag, allowed length) pairs as TLV_HEADERS: a decoder checking a TLV stream slices each
#: header and looks it up, one hash of 4 octets instead of unpacking tag and length and
#: checking them separately.
TLV_STEPS: Final[dict[bytes, int]] = {head: 4 + length for (_, length), head in TLV_HEADERS.items()}


def next_tlv(data: bytes, pos: int, end: int, sequence_number: int, command_id: int) -> int:
    """Offset after the TLV at ``pos`` after checking it (the long way, for headers not in
    TLV_STEPS: unknown tags, message_payload and bad lengths); raises as
    :func:`parse_tlvs` does."""
    if end - pos < 4:
        raise tlv_stream_error(data, pos, end, sequence_number, command_id)
    tag: int
    length: int
    tag, length = _TAG_LEN.unpack_from(data, pos)
    nxt = pos + 4 + length
    if nxt > end or length not in TLV_LENGTHS.get(tag, _ANY_LENGTH):
        raise tlv_stream_error(data, pos, end, sequence_number, command_id)
    return nxt


def tlv_stream_error(
    data: bytes, pos: int, end: int, sequence_number: int, command_id: int
) -> SmppError:
    """The error for the malformed TLV starting at ``pos`` (spec 3.2.4)."""
    if end - pos < 4:
        return SmppError(
            f"truncated TLV header at offset {pos}",
            command_status=CommandStatus.ESME_RINVOPTPARSTREAM,
            sequence_number=sequence_number,
            command_id=command_id,
        )
    tag, length = _TAG_LEN.unpack_from(data, pos)
    if pos + 4 + length > end:
        return SmppError(
            f"TLV {tag_name(tag)} length {length} runs past the PDU end",
            command_status=CommandStatus.ESME_RINVOPTPARSTREAM,
            sequence_number=sequence_number,
            command_id=command_id,
        )
    bound = TLV_LENGTHS[tag]
    return SmppError(
        f"TLV {tag_name(tag)} has length {length}, spec allows {bound.start}..{bound.stop - 1}",
        command_status=CommandStatus.ESME_RINVPARLEN,
        sequence_number=sequence_number,
        command_id=command_id,
    )


def parse_tlvs(
    data: bytes, pos: int, end: int, sequence_number: int, command_id: int
) -> tuple[Tlv, ...]:
    """Decode the TLVs in ``data[pos:end]`` (spec 3.2.4), keeping order and unknown tags.

    Raises SmppError ``ESME_RINVOPTPARSTREAM`` when the stream is truncated (less than a
    tag+length header left, or a length running past the PDU) and ``ESME_RINVPARLEN`` when a
    known tag's length is outside the spec bounds.  (The codec inlines this loop in its
    generated decoders.)
    """
    out: list[Tlv] = []
    headers = TLV_HEADERS
    lengths = TLV_LENGTHS
    any_length = _ANY_LENGTH
    unpack = _TAG_LEN.unpack_from
    while pos < end:
        start = pos + 4
        if start > end:
            raise tlv_stream_error(data, pos, end, sequence_number, command_id)
        tag, length = unpack(data, pos)
        nxt = start + length
        if nxt > end or (
            (tag, length) not in headers and length not in lengths.get(tag, any_length)
        ):
            raise tlv_stream_error(data, pos, end, sequence_number, command_id)
        tlv: Any = _UnfrozenTlv()
        tlv.tag = tag
        tlv.value = data[start:nxt]
        tlv.__class__ = Tlv
        out.append(tlv)
        pos = nxt
    return tuple(out)


def parse_checked_tlvs(raw: bytes) -> tuple[Tlv, ...]:
    """The TLVs of a stream a decoder has already checked (as :func:`parse_tlvs` checks),
    without checking again: what ``Pdu.tlvs`` calls on its first read."""
    out: list[Tlv] = []
    unpack = _TAG_LEN.unpack_from
    pos = 0
    end = len(raw)
    while pos < end:
        tag, length = unpack(raw, pos)
        start = pos + 4
        pos = start + length
        tlv: Any = _UnfrozenTlv()
        tlv.tag = tag
        tlv.value = raw[start:pos]
        tlv.__class__ = Tlv
        out.append(tlv)
    return tuple(out)


def encode_tlvs(tlvs: tuple[Tlv, ...]) -> bytes:
    """Wire form of ``tlvs`` in order.

    Raises SmppError(ESME_RINVPARLEN) for a value over 65535 octets or a known tag whose
    length is outside its spec bounds (the peer would reject it), and
    SmppError(ESME_RINVOPTPARSTREAM) for a tag that is not a 16-bit value.
    """
    headers_get = TLV_HEADERS.get
    parts: list[bytes] = []
    for tlv in tlvs:
        value = tlv.value
        size = len(value)
        tag = tlv.tag
        # Known tag with an allowed length: the header is ready.  (isinstance: a float
        # equal to a known tag would match the dict key but is no valid tag.)
        head = headers_get((tag, size)) if isinstance(tag, int) else None
        if head is None:
            head = tlv_header(tag, size)
        parts.append(head)
        parts.append(value)
    return b"".join(parts)


def tlv_header(tag: int, size: int) -> bytes:
    """The 4 header octets of a TLV whose value has ``size`` octets (slow path of
    :func:`encode_tlvs`, which it shares with the codec); raises its errors."""
    spec = TLV_SPECS.get(tag)
    if spec is not None and not spec.min_length <= size <= spec.max_length:
        raise SmppError(
            f"TLV {tag_name(tag)} value has {size} octets, "
            f"spec allows {spec.min_length}..{spec.max_length}",
            command_status=CommandStatus.ESME_RINVPARLEN,
        )
    try:
        return _TAG_LEN.pack(tag, size)
    except struct.error as exc:
        if not 0 <= tag <= 0xFFFF:
            raise SmppError(
                f"TLV tag {tag!r} is not a 16-bit value",
                command_status=CommandStatus.ESME_RINVOPTPARSTREAM,
            ) from exc
        raise SmppError(
            f"TLV {tag_name(tag)} value of {size} octets exceeds 65535",
            command_status=CommandStatus.ESME_RINVPARLEN,
        ) from exc
