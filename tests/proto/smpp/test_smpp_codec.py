"""PDU API and encode -> decode round trips for every PDU type (hypothesis)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teleway.proto.smpp import (
    PDU_CLASSES,
    TLV_SPECS,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    CommandId,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
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
    Tag,
    Tlv,
    TlvKind,
    Unbind,
    UnbindResp,
    UnsuccessSme,
    decode,
    encode,
)
from teleway.proto.smpp.codec import LAYOUTS

# --- strategies -----------------------------------------------------------------------------


def cstrings(max_length: int) -> st.SearchStrategy[str]:
    """C-Octet String contents: any latin-1 character but NUL, spec max minus the NUL."""
    return st.text(
        alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=max_length - 1
    )


u8 = st.integers(0, 255)
u32 = st.integers(0, 0xFFFFFFFF)


def known_tlv(tag: int) -> st.SearchStrategy[Tlv]:
    spec = TLV_SPECS[tag]
    if spec.kind is TlvKind.INT:
        return st.integers(0, 256**spec.min_length - 1).map(lambda v: Tlv.int(tag, v))
    if spec.kind is TlvKind.CSTR:
        return cstrings(spec.max_length).map(lambda s: Tlv.cstr(tag, s))
    return st.binary(min_size=spec.min_length, max_size=min(spec.max_length, 300)).map(
        lambda b: Tlv(tag, b)
    )


unknown_tags = st.integers(0, 0xFFFF).filter(lambda t: t not in TLV_SPECS)
vendor_tags = st.integers(0x1400, 0x3FFF)
tlvs = st.lists(
    st.one_of(
        st.sampled_from(sorted(TLV_SPECS)).flatmap(known_tlv),
        st.builds(Tlv, st.one_of(unknown_tags, vendor_tags), st.binary(max_size=40)),
    ),
    max_size=5,
).map(tuple)

destinations = st.lists(
    st.one_of(
        st.builds(SmeAddress, u8, u8, cstrings(21)),
        st.builds(DistributionList, cstrings(21)),
    ),
    max_size=6,
).map(tuple)
unsuccess = st.lists(st.builds(UnsuccessSme, u8, u8, cstrings(21), u32), max_size=6).map(tuple)


def field_strategy(kind: str, max_length: int) -> st.SearchStrategy[Any]:
    if kind == "cstr":
        return cstrings(max_length)
    if kind == "u8":
        return u8
    if kind == "sm":
        return st.binary(max_size=254)
    return destinations if kind == "dests" else unsuccess


def pdus(cls: type[Pdu]) -> st.SearchStrategy[Pdu]:
    fields = {spec.name: field_strategy(spec.kind, spec.max_length) for spec in LAYOUTS[cls]}
    return st.builds(cls, command_status=u32, sequence_number=u32, tlvs=tlvs, **fields)


any_pdu = st.sampled_from(sorted(LAYOUTS, key=lambda c: c.__name__)).flatmap(pdus)

ALL_CLASSES = sorted(PDU_CLASSES.values(), key=lambda c: c.__name__)


# --- round trips ----------------------------------------------------------------------------


# 27 classes: a twentieth of the profile's examples each (the "fuzz" profile raises it).
PER_CLASS = settings(max_examples=max(10, settings().max_examples // 20))


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
@PER_CLASS
@given(data=st.data())
def test_round_trip_every_pdu_type(cls: type[Pdu], data: st.DataObject) -> None:
    pdu = data.draw(pdus(cls))
    raw = encode(pdu)
    assert int.from_bytes(raw[:4], "big") == len(raw)
    assert int.from_bytes(raw[4:8], "big") == cls.command_id
    back = decode(raw)
    assert type(back) is cls
    assert back == pdu
    assert encode(back) == raw


@given(any_pdu)
def test_decode_accepts_bytearray_and_memoryview(pdu: Pdu) -> None:
    raw = encode(pdu)
    assert decode(bytearray(raw)) == pdu
    assert decode(memoryview(raw)) == pdu


def test_every_command_id_has_a_class() -> None:
    assert set(PDU_CLASSES) == {c.value for c in CommandId}
    for cid, cls in PDU_CLASSES.items():
        assert cls.command_id == cid
        assert cls().is_response == bool(cid & 0x80000000)


# --- wire layout checked against literal bytes -----------------------------------------------


def test_submit_sm_literal_bytes() -> None:
    pdu = SubmitSm(
        sequence_number=1,
        source_addr_ton=5,
        source_addr="TW",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="3161",
        registered_delivery=1,
        short_message=b"hi",
        tlvs=(Tlv.int(Tag.SAR_MSG_REF_NUM, 0x1234),),
    )
    expected = bytes.fromhex(
        "0000002f" "00000004" "00000000" "00000001"
        "00"  # service_type
        "0500" "545700"  # source ton/npi/addr
        "0101" "3331363100"  # dest
        "000000"  # esm_class, protocol_id, priority_flag
        "00" "00"  # schedule, validity
        "01000000"  # registered_delivery, replace_if_present, data_coding, sm_default_msg_id
        "02" "6869"  # sm_length, short_message
        "020c00021234"  # sar_msg_ref_num TLV
    )  # fmt: skip
    assert encode(pdu) == expected
    assert decode(expected) == pdu


def test_header_only_pdus_are_16_octets() -> None:
    for cls in (
        Unbind,
        UnbindResp,
        EnquireLink,
        EnquireLinkResp,
        GenericNack,
        CancelSmResp,
        ReplaceSmResp,
    ):
        raw = encode(cls(sequence_number=0x7FFFFFFF))
        assert raw == (16).to_bytes(4, "big") + int(cls.command_id).to_bytes(4, "big") + bytes(
            4
        ) + bytes.fromhex("7fffffff")


@pytest.mark.parametrize(
    "cls",
    [
        BindTransmitterResp,
        BindReceiverResp,
        BindTransceiverResp,
        SubmitSmResp,
        SubmitMultiResp,
        DataSmResp,
    ],
)
def test_error_responses_omit_the_body(cls: type[Pdu]) -> None:
    error = cls(command_status=CommandStatus.ESME_RSYSERR, sequence_number=4)
    assert len(encode(error)) == 16
    assert decode(encode(error)) == error
    ok = cls(command_status=0, sequence_number=4)
    assert len(encode(ok)) > 16  # a success response always carries its body


@pytest.mark.parametrize(
    "cls",
    [
        BindTransmitterResp,
        BindReceiverResp,
        BindTransceiverResp,
        SubmitSmResp,
        SubmitMultiResp,
        DataSmResp,
        DeliverSmResp,
        QuerySmResp,
    ],
)
def test_empty_body_responses_decode_leniently(cls: type[Pdu]) -> None:
    for status in (0, CommandStatus.ESME_RTHROTTLED):
        raw = (16).to_bytes(4, "big") + int(cls.command_id).to_bytes(4, "big")
        raw += status.to_bytes(4, "big") + (9).to_bytes(4, "big")
        assert decode(raw) == cls(command_status=status, sequence_number=9)


def test_deliver_sm_resp_keeps_its_body_on_error() -> None:
    resp = DeliverSmResp(command_status=CommandStatus.ESME_RX_T_APPN, sequence_number=3)
    assert encode(resp)[16:] == b"\0"


def test_unknown_status_survives() -> None:
    raw = bytes.fromhex("00000010" "80000004" "00000401" "00000005")  # fmt: skip
    pdu = decode(raw)
    assert pdu.command_status == 0x401
    assert pdu.status_name == "0x00000401"
    assert encode(pdu) == raw


def test_latin1_strings_round_trip_every_byte() -> None:
    addr = "".join(chr(c) for c in range(0xE0, 0xF4))  # 20 non-ASCII characters
    pdu = SubmitSm(source_addr=addr, destination_addr="x")
    assert decode(encode(pdu)) == pdu
    assert encode(pdu)[19:39] == bytes(range(0xE0, 0xF4))


# --- the PDU API ----------------------------------------------------------------------------


def test_defaults_make_a_complete_submit_sm() -> None:
    pdu = SubmitSm(source_addr="x", destination_addr="y", short_message=b"hi")
    assert pdu.command_id == CommandId.SUBMIT_SM
    assert pdu.command_name == "submit_sm"
    assert (pdu.command_status, pdu.sequence_number, pdu.tlvs) == (0, 0, ())
    assert pdu.data_coding == 0 and pdu.esm_class == 0
    assert decode(encode(pdu)) == pdu


def test_pdus_are_frozen_keyword_only_and_slotted() -> None:
    pdu = SubmitSm()
    with pytest.raises(dataclasses.FrozenInstanceError):
        pdu.source_addr = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        SubmitSm("x")  # type: ignore[call-arg, arg-type]
    assert not hasattr(pdu, "__dict__")
    assert hash(pdu) == hash(SubmitSm())


RESPONSES: list[tuple[Pdu, type[Pdu]]] = [
    (BindTransmitter(sequence_number=5), BindTransmitterResp),
    (BindReceiver(sequence_number=5), BindReceiverResp),
    (BindTransceiver(sequence_number=5), BindTransceiverResp),
    (Unbind(sequence_number=5), UnbindResp),
    (EnquireLink(sequence_number=5), EnquireLinkResp),
    (SubmitSm(sequence_number=5), SubmitSmResp),
    (SubmitMulti(sequence_number=5), SubmitMultiResp),
    (DeliverSm(sequence_number=5), DeliverSmResp),
    (DataSm(sequence_number=5), DataSmResp),
    (QuerySm(sequence_number=5), QuerySmResp),
    (CancelSm(sequence_number=5), CancelSmResp),
    (ReplaceSm(sequence_number=5), ReplaceSmResp),
    (Outbind(sequence_number=5), GenericNack),
    (AlertNotification(sequence_number=5), GenericNack),
    (SubmitSmResp(sequence_number=5), GenericNack),
    (GenericNack(sequence_number=5), GenericNack),
]


@pytest.mark.parametrize(("request_pdu", "resp_cls"), RESPONSES, ids=lambda x: type(x).__name__)
def test_response_matches_request(request_pdu: Pdu, resp_cls: type[Pdu]) -> None:
    resp = request_pdu.response()
    assert type(resp) is resp_cls
    assert resp.sequence_number == 5
    assert resp.is_response
    assert not request_pdu.is_response or isinstance(request_pdu, SubmitSmResp | GenericNack)


def test_response_takes_fields() -> None:
    resp = SubmitSm(sequence_number=9).response(message_id="abc")
    assert resp == SubmitSmResp(sequence_number=9, message_id="abc")
    nack = SubmitSm(sequence_number=9).response(command_status=CommandStatus.ESME_RTHROTTLED)
    assert nack.command_status == CommandStatus.ESME_RTHROTTLED
    bind = BindTransceiver(sequence_number=2).response(
        system_id="teleway", tlvs=(Tlv.int(Tag.SC_INTERFACE_VERSION, 0x34),)
    )
    assert decode(encode(bind)).tlv(Tag.SC_INTERFACE_VERSION) == 0x34


def test_replace_and_tlv_lookup() -> None:
    pdu = DeliverSm(
        tlvs=(
            Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, "m1"),
            Tlv.int(Tag.MESSAGE_STATE, 2),
            Tlv.int(Tag.MESSAGE_STATE, 5),
            Tlv(0x1500, b"\x01\x02"),
        )
    )
    assert pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) == "m1"
    assert pdu.tlv(Tag.MESSAGE_STATE) == 2  # first occurrence
    assert pdu.tlv(0x1500) == b"\x01\x02"
    assert pdu.tlv(Tag.SAR_MSG_REF_NUM) is None
    assert pdu.tlv_raw(Tag.RECEIPTED_MESSAGE_ID) == b"m1\0"
    changed = pdu.replace(sequence_number=3, short_message=b"x")
    assert (changed.sequence_number, changed.short_message, changed.tlvs) == (3, b"x", pdu.tlvs)
    assert pdu.sequence_number == 0


def test_payload_property() -> None:
    assert SubmitSm(short_message=b"abc").payload == b"abc"
    with_payload = SubmitSm(tlvs=(Tlv(Tag.MESSAGE_PAYLOAD, b"long"),))
    assert with_payload.payload == b"long"
    assert DataSm(tlvs=(Tlv(Tag.MESSAGE_PAYLOAD, b"d"),)).payload == b"d"
    assert DataSm().payload == b""
