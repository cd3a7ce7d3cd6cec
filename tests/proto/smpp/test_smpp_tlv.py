"""TLV table, typed helpers, and the numeric constants of SMPP v3.4."""

from __future__ import annotations

import pytest

from teleway.proto.smpp import (
    TLV_SPECS,
    CommandId,
    CommandStatus,
    DataCoding,
    EsmClass,
    MessageState,
    Npi,
    RegisteredDelivery,
    Tag,
    Tlv,
    TlvKind,
    Ton,
    command_name,
    esm_message_type,
    esm_messaging_mode,
    status_name,
    tag_name,
)
from teleway.proto.smpp.tlv import decode_value


def test_every_tag_has_a_spec() -> None:
    assert set(TLV_SPECS) == {t.value for t in Tag}
    assert len(Tag) == 44


@pytest.mark.parametrize(
    ("tag", "value", "kind", "bounds"),
    [
        (Tag.DEST_ADDR_SUBUNIT, 0x0005, TlvKind.INT, (1, 1)),
        (Tag.DEST_TELEMATICS_ID, 0x0008, TlvKind.INT, (2, 2)),
        (Tag.QOS_TIME_TO_LIVE, 0x0017, TlvKind.INT, (4, 4)),
        (Tag.ADDITIONAL_STATUS_INFO_TEXT, 0x001D, TlvKind.CSTR, (1, 256)),
        (Tag.RECEIPTED_MESSAGE_ID, 0x001E, TlvKind.CSTR, (1, 65)),
        (Tag.SOURCE_SUBADDRESS, 0x0202, TlvKind.OCTETS, (2, 23)),
        (Tag.SAR_MSG_REF_NUM, 0x020C, TlvKind.INT, (2, 2)),
        (Tag.SAR_TOTAL_SEGMENTS, 0x020E, TlvKind.INT, (1, 1)),
        (Tag.SAR_SEGMENT_SEQNUM, 0x020F, TlvKind.INT, (1, 1)),
        (Tag.CALLBACK_NUM, 0x0381, TlvKind.OCTETS, (4, 19)),
        (Tag.NETWORK_ERROR_CODE, 0x0423, TlvKind.OCTETS, (3, 3)),
        (Tag.MESSAGE_PAYLOAD, 0x0424, TlvKind.OCTETS, (0, 65535)),
        (Tag.MESSAGE_STATE, 0x0427, TlvKind.INT, (1, 1)),
        (Tag.SMS_SIGNAL, 0x1203, TlvKind.INT, (2, 2)),
        (Tag.ALERT_ON_MESSAGE_DELIVERY, 0x130C, TlvKind.OCTETS, (0, 1)),
        (Tag.ITS_SESSION_INFO, 0x1383, TlvKind.OCTETS, (2, 2)),
    ],
)
def test_spec_table_entries(tag: Tag, value: int, kind: TlvKind, bounds: tuple[int, int]) -> None:
    spec = TLV_SPECS[tag]
    assert tag == value
    assert spec.kind is kind
    assert (spec.min_length, spec.max_length) == bounds
    assert spec.name == tag.name.lower()


def test_builders() -> None:
    assert Tlv.int(Tag.SAR_MSG_REF_NUM, 5) == Tlv(0x020C, b"\x00\x05")
    assert Tlv.int(Tag.QOS_TIME_TO_LIVE, 1) == Tlv(0x0017, b"\x00\x00\x00\x01")
    assert Tlv.int(0x1401, 7) == Tlv(0x1401, b"\x07")  # unknown tag: 1 octet
    assert Tlv.int(0x1401, 7, size=2) == Tlv(0x1401, b"\x00\x07")
    assert Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, "abc") == Tlv(0x001E, b"abc\0")
    assert Tlv.octets(Tag.NETWORK_ERROR_CODE, bytearray(b"\x03\x00\x01")) == Tlv(
        0x0423, b"\x03\x00\x01"
    )
    assert Tlv.of(Tag.MESSAGE_STATE, 2) == Tlv(0x0427, b"\x02")
    assert Tlv.of(Tag.RECEIPTED_MESSAGE_ID, "x") == Tlv(0x001E, b"x\0")
    assert Tlv.of(0x1500, b"raw") == Tlv(0x1500, b"raw")
    with pytest.raises(ValueError):
        Tlv.int(Tag.SAR_TOTAL_SEGMENTS, 256)
    with pytest.raises(ValueError):
        Tlv.of(0x1500, 3)  # integer for an untyped tag


def test_decoded_values() -> None:
    assert Tlv(Tag.SAR_MSG_REF_NUM, b"\x01\x02").decoded() == 258
    assert Tlv(Tag.RECEIPTED_MESSAGE_ID, b"id1\0").decoded() == "id1"
    assert decode_value(Tag.RECEIPTED_MESSAGE_ID, b"id1") == "id1"  # missing NUL tolerated
    assert decode_value(Tag.ADDITIONAL_STATUS_INFO_TEXT, b"caf\xe9\0") == "café"
    assert decode_value(Tag.MESSAGE_PAYLOAD, b"\x00\x01") == b"\x00\x01"
    assert decode_value(0x3FFF, b"v") == b"v"
    assert Tlv(0x3FFF, b"").name == "0x3FFF"
    assert Tlv(Tag.MESSAGE_PAYLOAD, b"").name == "message_payload"


def test_tlv_is_frozen_and_hashable() -> None:
    tlv = Tlv(1, b"x")
    with pytest.raises(AttributeError):
        tlv.tag = 2  # type: ignore[misc]
    assert {tlv, Tlv(1, b"x")} == {tlv}


# --- constants ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "value"),
    [
        (CommandStatus.ESME_ROK, 0x00),
        (CommandStatus.ESME_RINVMSGLEN, 0x01),
        (CommandStatus.ESME_RSYSERR, 0x08),
        (CommandStatus.ESME_RINVSRCADR, 0x0A),
        (CommandStatus.ESME_RCANCELFAIL, 0x11),
        (CommandStatus.ESME_RREPLACEFAIL, 0x13),
        (CommandStatus.ESME_RINVSERTYP, 0x15),
        (CommandStatus.ESME_RINVNUMDESTS, 0x33),
        (CommandStatus.ESME_RINVDESTFLAG, 0x40),
        (CommandStatus.ESME_RSUBMITFAIL, 0x45),
        (CommandStatus.ESME_RINVDSTTON, 0x50),
        (CommandStatus.ESME_RINVSYSTYP, 0x53),
        (CommandStatus.ESME_RTHROTTLED, 0x58),
        (CommandStatus.ESME_RINVSCHED, 0x61),
        (CommandStatus.ESME_RQUERYFAIL, 0x67),
        (CommandStatus.ESME_RINVOPTPARSTREAM, 0xC0),
        (CommandStatus.ESME_RINVOPTPARAMVAL, 0xC4),
        (CommandStatus.ESME_RDELIVERYFAILURE, 0xFE),
        (CommandStatus.ESME_RUNKNOWNERR, 0xFF),
        (CommandId.GENERIC_NACK, 0x80000000),
        (CommandId.OUTBIND, 0x0B),
        (CommandId.ENQUIRE_LINK_RESP, 0x80000015),
        (CommandId.SUBMIT_MULTI, 0x21),
        (CommandId.ALERT_NOTIFICATION, 0x102),
        (CommandId.DATA_SM_RESP, 0x80000103),
        (MessageState.ENROUTE, 1),
        (MessageState.ACCEPTED, 6),
        (MessageState.REJECTED, 8),
        (Ton.ALPHANUMERIC, 5),
        (Npi.ISDN, 1),
        (Npi.INTERNET, 14),
        (DataCoding.UCS2, 8),
        (DataCoding.LATIN_1, 3),
    ],
)
def test_spec_values(member: int, value: int) -> None:
    assert member == value


def test_status_set_is_the_spec_set() -> None:
    assert len(CommandStatus) == 48


def test_names_for_known_and_unknown_values() -> None:
    assert status_name(0x58) == "ESME_RTHROTTLED"
    assert status_name(0x401) == "0x00000401"
    assert command_name(0x80000004) == "submit_sm_resp"
    assert command_name(0x99) == "0x00000099"
    assert tag_name(0x0424) == "message_payload"
    assert tag_name(0x1401) == "0x1401"


def test_esm_class_and_registered_delivery_helpers() -> None:
    esm = EsmClass.UDHI | EsmClass.STORE_AND_FORWARD_MODE
    assert esm == 0x43
    assert esm_messaging_mode(esm) == EsmClass.STORE_AND_FORWARD_MODE
    assert esm_message_type(esm) == 0
    receipt = EsmClass.DELIVERY_RECEIPT | EsmClass.UDHI
    assert esm_message_type(receipt) == EsmClass.DELIVERY_RECEIPT
    assert esm_messaging_mode(receipt) == 0
    assert receipt & EsmClass.UDHI and not receipt & EsmClass.REPLY_PATH
    assert int(EsmClass.REPLY_PATH) == 0x80
    assert (
        RegisteredDelivery.RECEIPT_ON_SUCCESS_OR_FAILURE
        | RegisteredDelivery.INTERMEDIATE_NOTIFICATION
        == 0x11
    )
    assert int(RegisteredDelivery.RECEIPT_ON_FAILURE) == 2
