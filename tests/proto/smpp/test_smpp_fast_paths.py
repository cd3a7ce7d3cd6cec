"""The submit_sm / deliver_sm fast paths and the lazy TLVs against the general code.

``codec.GENERAL_DECODERS`` / ``GENERAL_ENCODERS`` are the generated decoders and encoders
without the fast paths: for any input, the fast path must give the same PDU, the same bytes
or the same error (command_status, sequence_number, command_id) as they do.
"""

from __future__ import annotations

import copy
import pickle
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teleway.proto.smpp import CommandStatus, DeliverSm, SmppError, SubmitSm, Tag, Tlv
from teleway.proto.smpp.codec import GENERAL_DECODERS, GENERAL_ENCODERS, decode, encode
from teleway.proto.smpp.pdu import TLVS_SLOT, Pdu
from teleway.proto.smpp.tlv import TLV_SPECS, TlvKind

HOT = (SubmitSm, DeliverSm)


def cstrings(max_length: int) -> st.SearchStrategy[str]:
    return st.text(
        alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=max_length - 1
    )


def known_tlv(tag: int) -> st.SearchStrategy[Tlv]:
    spec = TLV_SPECS[tag]
    if spec.kind is TlvKind.INT:
        return st.integers(0, 256**spec.min_length - 1).map(lambda v: Tlv.int(tag, v))
    return st.binary(min_size=spec.min_length, max_size=min(spec.max_length, 70)).map(
        lambda b: Tlv(tag, b)
    )


tlvs = st.lists(
    st.one_of(
        st.sampled_from(sorted(TLV_SPECS)).flatmap(known_tlv),
        st.builds(Tlv, st.integers(0x1400, 0x3FFF), st.binary(max_size=20)),
    ),
    max_size=4,
).map(tuple)


def usually_empty(max_length: int) -> st.SearchStrategy[str]:
    """Empty most of the time (the fast path's shape), sometimes not (the general one's)."""
    return st.one_of(st.just(""), st.just(""), cstrings(max_length))


u8 = st.integers(0, 255)


def hot_pdus(cls: type[Pdu]) -> st.SearchStrategy[Any]:
    return st.builds(
        cls,
        command_status=st.integers(0, 0xFFFFFFFF),
        sequence_number=st.integers(0, 0xFFFFFFFF),
        service_type=usually_empty(6),
        source_addr_ton=u8,
        source_addr_npi=u8,
        source_addr=cstrings(21),
        dest_addr_ton=u8,
        dest_addr_npi=u8,
        destination_addr=cstrings(21),
        esm_class=u8,
        protocol_id=u8,
        priority_flag=u8,
        schedule_delivery_time=usually_empty(17),
        validity_period=usually_empty(17),
        registered_delivery=u8,
        replace_if_present_flag=u8,
        data_coding=u8,
        sm_default_msg_id=u8,
        short_message=st.binary(max_size=254),
        tlvs=tlvs,
    )


any_hot_pdu = st.sampled_from(HOT).flatmap(hot_pdus)


def general_decode(data: bytes) -> Pdu:
    length, cid, status, seq = struct.unpack_from(">IIII", data)
    assert length == len(data)
    return GENERAL_DECODERS[cid](data, len(data), status, seq)


def outcome(fn: Any, arg: Any) -> tuple[Any, ...]:
    """What ``fn(arg)`` gives: ("ok", value) or ("error", status, sequence, command_id)."""
    try:
        return ("ok", fn(arg))
    except SmppError as exc:
        return ("error", exc.command_status, exc.sequence_number, exc.command_id)


@settings(max_examples=300)
@given(any_hot_pdu)
def test_fast_paths_agree_with_the_general_code(pdu: Pdu) -> None:
    raw = encode(pdu)
    assert raw == GENERAL_ENCODERS[type(pdu)](pdu)
    fast = decode(raw)
    assert fast == general_decode(raw) == pdu
    assert encode(fast) == raw  # raw TLVs copied as they came


@settings(max_examples=400)
@given(any_hot_pdu, st.data())
def test_fast_decoder_agrees_on_damaged_input(pdu: Pdu, data: st.DataObject) -> None:
    """Change, drop or add octets after the header (command_length kept right): the fast
    decoder gives the same PDU or the same error as the general one."""
    body = bytearray(encode(pdu)[16:])
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["set", "cut", "insert"]))
        at = data.draw(st.integers(0, len(body)))
        if action == "set" and at < len(body):
            body[at] = data.draw(st.sampled_from([0, 1, 0x20, 0xFF]) | u8)
        elif action == "cut":
            del body[at : at + data.draw(st.integers(1, 8))]
        else:
            body[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    raw = struct.pack(">IIII", 16 + len(body), pdu.command_id, 0, 9) + bytes(body)
    assert outcome(decode, raw) == outcome(general_decode, raw)


BAD_VALUES = [
    ("source_addr", "x" * 21),
    ("destination_addr", "y" * 21),
    ("source_addr", "a\0b"),
    ("destination_addr", "\u20ac"),
    ("source_addr", None),
    ("source_addr_ton", 256),
    ("dest_addr_npi", -1),
    ("esm_class", b"\x40"),
    ("data_coding", 1.0),
    ("registered_delivery", "1"),
    ("short_message", b"x" * 255),
    ("short_message", "text"),
    ("sequence_number", 2**32),
    ("command_status", -1),
    ("service_type", None),
    ("validity_period", 0),
    ("tlvs", (Tlv(tag=1.5, value=b"x"),)),  # type: ignore[arg-type]
    ("tlvs", (Tlv(tag=float(Tag.SOURCE_PORT), value=b"\x00\x01"),)),  # type: ignore[arg-type]
    ("tlvs", (Tlv(Tag.SOURCE_PORT, b"\x01"),)),
    ("tlvs", (Tlv(0x10000, b""),)),
    ("tlvs", (Tlv(Tag.MESSAGE_PAYLOAD, b"x" * 0x10000),)),
    ("tlvs", ("not a tlv",)),
    ("tlvs", 5),
]


@pytest.mark.parametrize("cls", HOT, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("field", "value"), BAD_VALUES, ids=lambda v: repr(v)[:20])
def test_fast_encoder_raises_what_the_general_one_raises(
    cls: type[Pdu], field: str, value: Any
) -> None:
    pdu = cls(source_addr="123", destination_addr="456", short_message=b"hi")
    pdu = pdu.replace(**{field: value})
    fast = outcome(encode, pdu)
    assert fast[0] == "error"
    assert fast == outcome(GENERAL_ENCODERS[cls], pdu)


# --- lazy TLVs -------------------------------------------------------------------------


TLVS = (  # plain int tags, as decoded (a Tag member would show in repr)
    Tlv.int(int(Tag.SAR_MSG_REF_NUM), 0x1234),
    Tlv(0x1401, b"\x00vendor"),
    Tlv.cstr(int(Tag.RECEIPTED_MESSAGE_ID), "abc"),
    Tlv(int(Tag.MESSAGE_PAYLOAD), b"p" * 300),
)
PDU = SubmitSm(
    sequence_number=5, source_addr="ACME", destination_addr="4917", tlvs=TLVS, short_message=b""
)


def test_decoded_tlvs_stay_raw_until_read() -> None:
    raw = encode(PDU)
    pdu = decode(raw)
    assert type(TLVS_SLOT.__get__(pdu)) is bytes
    assert encode(pdu) == raw
    assert pdu.tlvs == TLVS and all(type(t) is Tlv for t in pdu.tlvs)
    assert type(TLVS_SLOT.__get__(pdu)) is tuple
    assert pdu.tlvs is pdu.tlvs  # parsed once, kept
    assert encode(pdu) == raw


@pytest.mark.parametrize(
    "use",
    [
        lambda p: p == PDU,
        lambda p: hash(p) == hash(PDU),
        lambda p: repr(p) == repr(PDU),
        lambda p: p.replace(source_addr="X").tlvs == TLVS,
        lambda p: pickle.loads(pickle.dumps(p)) == PDU,
        lambda p: copy.copy(p) == PDU,
        lambda p: p.tlv(Tag.RECEIPTED_MESSAGE_ID) == "abc",
        lambda p: p.tlv_raw(0x1401) == b"\x00vendor",
        lambda p: p.payload == b"p" * 300,
    ],
    ids=["eq", "hash", "repr", "replace", "pickle", "copy", "tlv", "tlv_raw", "payload"],
)
def test_every_use_of_a_decoded_pdu_sees_the_tuple(use: Any) -> None:
    assert use(decode(encode(PDU)))


@pytest.mark.parametrize(
    ("tlv_octets", "status"),
    [
        (b"\x02\x0a\x00", CommandStatus.ESME_RINVOPTPARSTREAM),  # truncated header
        (b"\x02\x0a\x00\x02\x01", CommandStatus.ESME_RINVOPTPARSTREAM),  # value cut short
        (b"\x02\x0a\x00\x03\x01\x02\x03", CommandStatus.ESME_RINVPARLEN),  # source_port is 2
        (b"\x14\x01\x00\x09abc", CommandStatus.ESME_RINVOPTPARSTREAM),  # unknown, overrun
        (b"\x04\x24\x00\x05ab", CommandStatus.ESME_RINVOPTPARSTREAM),  # payload, overrun
        (b"\x02\x0a\x00\x02\x01\x02\x02", CommandStatus.ESME_RINVOPTPARSTREAM),  # trailing
    ],
)
@pytest.mark.parametrize("cls", HOT, ids=lambda c: c.__name__)
def test_malformed_tlvs_fail_at_decode(cls: type[Pdu], tlv_octets: bytes, status: int) -> None:
    body = encode(cls(sequence_number=77, source_addr="1", destination_addr="2"))[16:]
    raw = struct.pack(">IIII", 16 + len(body) + len(tlv_octets), cls.command_id, 0, 77)
    raw += body + tlv_octets
    with pytest.raises(SmppError) as info:
        decode(raw)
    assert info.value.command_status == status
    assert info.value.sequence_number == 77
    assert outcome(decode, raw) == outcome(general_decode, raw)


def test_tlvs_cannot_be_given_as_bytes() -> None:
    with pytest.raises(TypeError):
        SubmitSm(tlvs=b"\x02\x0a\x00\x02\x00\x01")  # type: ignore[arg-type]
