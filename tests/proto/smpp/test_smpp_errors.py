"""Every SmppError path of decode, encode and the TLV layer, with its command_status."""

from __future__ import annotations

import pickle
import struct

import pytest

from teleway.proto.smpp import (
    BindTransceiver,
    CommandId,
    CommandStatus,
    DataSm,
    DeliverSmResp,
    DistributionList,
    QuerySmResp,
    SmeAddress,
    SmppError,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    Tag,
    Tlv,
    UnsuccessSme,
    decode,
    encode,
    status_name,
)
from teleway.proto.smpp.tlv import encode_tlvs, parse_tlvs

S = CommandStatus


def raw(cid: int, body: bytes, seq: int = 42, status: int = 0) -> bytes:
    """A PDU assembled with struct (independent of the encoder under test)."""
    return struct.pack(">IIII", 16 + len(body), cid, status, seq) + body


def c(text: str | bytes) -> bytes:
    return (text.encode("latin-1") if isinstance(text, str) else text) + b"\0"


def submit_body(
    *,
    service_type: bytes = b"\0",
    source: bytes = c("12345"),
    dest: bytes = c("31600000001"),
    schedule: bytes = b"\0",
    validity: bytes = b"\0",
    sm: bytes = b"\x02hi",
) -> bytes:
    return (
        service_type
        + b"\x01\x01"
        + source
        + b"\x01\x01"
        + dest
        + b"\x00\x00\x00"
        + schedule
        + validity
        + b"\x00\x00\x00\x00"
        + sm
    )


def bind_body(
    system_id: bytes = c("esme"),
    password: bytes = c("pw"),
    system_type: bytes = b"\0",
    address_range: bytes = b"\0",
) -> bytes:
    return system_id + password + system_type + b"\x34\x00\x00" + address_range


SUBMIT = CommandId.SUBMIT_SM
BIND = CommandId.BIND_TRANSCEIVER

DECODE_CASES: list[tuple[str, bytes, int, int | None]] = [
    # (id, bytes, expected command_status, expected sequence_number)
    ("empty", b"", S.ESME_RINVCMDLEN, None),
    ("15 octets", raw(CommandId.ENQUIRE_LINK, b"")[:15], S.ESME_RINVCMDLEN, None),
    (
        "length larger than data",
        struct.pack(">IIII", 17, CommandId.ENQUIRE_LINK, 0, 7),
        S.ESME_RINVCMDLEN,
        7,
    ),
    (
        "length smaller than data",
        struct.pack(">IIII", 16, CommandId.ENQUIRE_LINK, 0, 7) + b"\0",
        S.ESME_RINVCMDLEN,
        7,
    ),
    ("unknown command_id", raw(0x00000099, b""), S.ESME_RINVCMDID, 42),
    ("unknown response id", raw(0x80000099, b""), S.ESME_RINVCMDID, 42),
    # C-strings over their spec maximum
    ("system_id 16 chars", raw(BIND, bind_body(system_id=c("s" * 16))), S.ESME_RINVSYSID, 42),
    ("password 9 chars", raw(BIND, bind_body(password=c("p" * 9))), S.ESME_RINVPASWD, 42),
    ("system_type 13", raw(BIND, bind_body(system_type=c("t" * 13))), S.ESME_RINVSYSTYP, 42),
    ("address_range 41", raw(BIND, bind_body(address_range=c("1" * 41))), S.ESME_RBINDFAIL, 42),
    ("service_type 6", raw(SUBMIT, submit_body(service_type=c("s" * 6))), S.ESME_RINVSERTYP, 42),
    ("source_addr 21", raw(SUBMIT, submit_body(source=c("1" * 21))), S.ESME_RINVSRCADR, 42),
    ("destination_addr 21", raw(SUBMIT, submit_body(dest=c("1" * 21))), S.ESME_RINVDSTADR, 42),
    ("schedule 17", raw(SUBMIT, submit_body(schedule=c("1" * 17))), S.ESME_RINVSCHED, 42),
    ("validity 17", raw(SUBMIT, submit_body(validity=c("1" * 17))), S.ESME_RINVEXPIRY, 42),
    ("message_id 65", raw(CommandId.SUBMIT_SM_RESP, c("m" * 65)), S.ESME_RINVMSGID, 42),
    (
        "data_sm source_addr 65",
        raw(CommandId.DATA_SM, b"\0\1\1" + c("1" * 65) + b"\1\1" + c("2") + b"\0\0\0"),
        S.ESME_RINVSRCADR,
        42,
    ),
    # missing NUL terminator at the end of the PDU
    ("system_id without NUL", raw(BIND, b"esme"), S.ESME_RINVSYSID, 42),
    ("message_id without NUL", raw(CommandId.SUBMIT_SM_RESP, b"abc"), S.ESME_RINVMSGID, 42),
    # short_message
    (
        "sm_length past the end",
        raw(SUBMIT, submit_body(sm=b"\x05hi")),
        S.ESME_RINVMSGLEN,
        42,
    ),
    ("sm_length 255", raw(SUBMIT, submit_body(sm=b"\xff" + b"x" * 255)), S.ESME_RINVMSGLEN, 42),
    # body ends before the fixed fields
    ("body cut before esm_class", raw(SUBMIT, submit_body()[:23]), S.ESME_RINVCMDLEN, 42),
    ("body cut before sm_length", raw(SUBMIT, submit_body()[:-3]), S.ESME_RINVCMDLEN, 42),
    (
        "query_sm_resp without error_code",
        raw(CommandId.QUERY_SM_RESP, c("m") + b"\0\x02"),
        S.ESME_RINVCMDLEN,
        42,
    ),
    # submit_multi destinations
    (
        "dest_flag 3",
        raw(CommandId.SUBMIT_MULTI, b"\0\1\1" + c("1") + b"\x01\x03" + c("x")),
        S.ESME_RINVDESTFLAG,
        42,
    ),
    (
        "number_of_dests 255",
        raw(CommandId.SUBMIT_MULTI, b"\0\1\1" + c("1") + b"\xff"),
        S.ESME_RINVNUMDESTS,
        42,
    ),
    (
        "dl_name 21",
        raw(CommandId.SUBMIT_MULTI, b"\0\1\1" + c("1") + b"\x01\x02" + c("d" * 21)),
        S.ESME_RINVDLNAME,
        42,
    ),
    (
        "unsuccess_sme truncated",
        raw(CommandId.SUBMIT_MULTI_RESP, c("m") + b"\x01\x01\x01" + c("3161") + b"\0\0"),
        S.ESME_RINVCMDLEN,
        42,
    ),
    # TLVs
    (
        "TLV header truncated",
        raw(SUBMIT, submit_body() + b"\x02\x0c\x00"),
        S.ESME_RINVOPTPARSTREAM,
        42,
    ),
    (
        "TLV value past the end",
        raw(SUBMIT, submit_body() + b"\x14\x01\x00\x05ab"),
        S.ESME_RINVOPTPARSTREAM,
        42,
    ),
    (
        "known TLV with wrong length",
        raw(SUBMIT, submit_body() + b"\x02\x0c\x00\x01\x05"),
        S.ESME_RINVPARLEN,
        42,
    ),
    (
        "network_error_code of 2 octets",
        raw(CommandId.DELIVER_SM, submit_body() + b"\x04\x23\x00\x02\x03\x00"),
        S.ESME_RINVPARLEN,
        42,
    ),
    (
        "trailing junk after enquire_link",
        raw(CommandId.ENQUIRE_LINK, b"\x01"),
        S.ESME_RINVOPTPARSTREAM,
        42,
    ),
]


@pytest.mark.parametrize(
    ("data", "status", "seq"), [c[1:] for c in DECODE_CASES], ids=[c[0] for c in DECODE_CASES]
)
def test_decode_error(data: bytes, status: int, seq: int | None) -> None:
    with pytest.raises(SmppError) as info:
        decode(data)
    err = info.value
    assert err.command_status == status, (status_name(err.command_status), err)
    assert err.sequence_number == seq
    if seq is not None:
        assert err.command_id == int.from_bytes(data[4:8], "big")
    assert status_name(status) in str(err)


def test_limits_are_exact() -> None:
    """One character below each limit decodes; the limit itself is the error case above."""
    ok = decode(raw(BIND, bind_body(system_id=c("s" * 15), password=c("p" * 8))))
    assert isinstance(ok, BindTransceiver)
    assert (len(ok.system_id), len(ok.password)) == (15, 8)
    sm = decode(raw(SUBMIT, submit_body(source=c("1" * 20), sm=b"\xfe" + b"x" * 254)))
    assert isinstance(sm, SubmitSm)
    assert len(sm.source_addr) == 20 and len(sm.short_message) == 254
    long_addr = decode(
        raw(CommandId.DATA_SM, b"\0\1\1" + c("1" * 64) + b"\1\1" + c("2") + b"\0\0\0")
    )
    assert isinstance(long_addr, DataSm) and len(long_addr.source_addr) == 64


def test_unknown_tlv_lengths_are_not_checked() -> None:
    pdu = decode(raw(SUBMIT, submit_body() + b"\x14\x01\x00\x00" + b"\x7f\xff\x00\x03abc"))
    assert pdu.tlvs == (Tlv(0x1401, b""), Tlv(0x7FFF, b"abc"))


def test_cstring_tlv_without_nul_is_read_whole() -> None:
    pdu = decode(raw(CommandId.DELIVER_SM, submit_body() + b"\x00\x1e\x00\x03abc"))
    assert pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) == "abc"


def test_parse_tlvs_reports_sequence_and_command() -> None:
    with pytest.raises(SmppError) as info:
        parse_tlvs(b"\x00\x05\x00", 0, 3, 77, 4)
    assert (info.value.command_status, info.value.sequence_number) == (S.ESME_RINVOPTPARSTREAM, 77)
    assert info.value.command_id == 4


# --- encode ---------------------------------------------------------------------------------

ENCODE_CASES: list[tuple[str, object, int]] = [
    ("source_addr too long", SubmitSm(source_addr="1" * 21), S.ESME_RINVSRCADR),
    ("destination_addr too long", SubmitSm(destination_addr="1" * 21), S.ESME_RINVDSTADR),
    ("service_type too long", SubmitSm(service_type="CMTXXX"), S.ESME_RINVSERTYP),
    ("NUL inside a C-string", SubmitSm(source_addr="12\x0034"), S.ESME_RINVSRCADR),
    ("non latin-1 character", SubmitSm(destination_addr="3161€"), S.ESME_RINVDSTADR),
    ("short_message over 254", SubmitSm(short_message=b"x" * 255), S.ESME_RINVMSGLEN),
    ("esm_class 256", SubmitSm(esm_class=256), S.ESME_RINVESMCLASS),
    ("negative source ton", SubmitSm(source_addr_ton=-1), S.ESME_RINVSRCTON),
    ("priority_flag 300", SubmitSm(priority_flag=300), S.ESME_RINVPRTFLG),
    ("registered_delivery str", SubmitSm(registered_delivery="1"), S.ESME_RINVREGDLVFLG),  # type: ignore[arg-type]
    ("system_id too long", BindTransceiver(system_id="s" * 16), S.ESME_RINVSYSID),
    ("password too long", BindTransceiver(password="p" * 9), S.ESME_RINVPASWD),
    ("sequence_number 2**32", SubmitSm(sequence_number=2**32), S.ESME_RSYSERR),
    ("negative command_status", SubmitSm(command_status=-1), S.ESME_RSYSERR),
    (
        "TLV known tag wrong length",
        SubmitSm(tlvs=(Tlv(Tag.SAR_MSG_REF_NUM, b"\x01"),)),
        S.ESME_RINVPARLEN,
    ),
    ("TLV value over 65535", SubmitSm(tlvs=(Tlv(0x1400, b"x" * 65536),)), S.ESME_RINVPARLEN),
    ("TLV tag over 16 bits", SubmitSm(tlvs=(Tlv(0x10000, b""),)), S.ESME_RINVOPTPARSTREAM),
    (
        "255 destinations",
        SubmitMulti(dest_addresses=(SmeAddress(1, 1, "1"),) * 255),
        S.ESME_RINVNUMDESTS,
    ),
    (
        "dl_name too long",
        SubmitMulti(dest_addresses=(DistributionList("d" * 21),)),
        S.ESME_RINVDLNAME,
    ),
    ("bad destination type", SubmitMulti(dest_addresses=("3161",)), S.ESME_RINVDESTFLAG),  # type: ignore[arg-type]
    (
        "unsuccess error code over 32 bits",
        SubmitMultiResp(unsuccess_sme=(UnsuccessSme(1, 1, "1", 2**32),)),
        S.ESME_RSYSERR,
    ),
    ("final_date too long", QuerySmResp(final_date="1" * 17), S.ESME_RSYSERR),
    ("message_id too long", DeliverSmResp(message_id="m" * 65), S.ESME_RINVMSGID),
]


@pytest.mark.parametrize(
    ("pdu", "status"), [c[1:] for c in ENCODE_CASES], ids=[c[0] for c in ENCODE_CASES]
)
def test_encode_error(pdu: object, status: int) -> None:
    with pytest.raises(SmppError) as info:
        encode(pdu)  # type: ignore[arg-type]
    assert info.value.command_status == status, info.value


def test_encode_rejects_foreign_objects() -> None:
    with pytest.raises(SmppError) as info:
        encode(object())  # type: ignore[arg-type]
    assert info.value.command_status == S.ESME_RINVCMDID


def test_encode_tlvs_directly() -> None:
    assert encode_tlvs((Tlv.int(Tag.SAR_TOTAL_SEGMENTS, 3), Tlv(0x1401, b""))) == bytes.fromhex(
        "020e000103" "14010000"
    )  # fmt: skip


# --- the error object -----------------------------------------------------------------------


def test_smpp_error_attributes_and_text() -> None:
    err = SmppError(
        "bad", command_status=S.ESME_RINVSRCADR, sequence_number=5, command_id=CommandId.SUBMIT_SM
    )
    assert (err.command_status, err.sequence_number, err.command_id) == (0x0A, 5, 4)
    assert err.message == "bad"
    assert err.status_name == "ESME_RINVSRCADR"
    assert str(err) == "ESME_RINVSRCADR: bad command=submit_sm seq=5"
    assert "ESME_RINVSRCADR" in repr(err)
    plain = SmppError(command_status=0x401)
    assert plain.sequence_number is None and plain.command_id is None
    assert "0x00000401" in str(plain)


def test_smpp_error_pickles() -> None:
    err = SmppError("x", command_status=S.ESME_RINVMSGLEN, sequence_number=3, command_id=4)
    back = pickle.loads(pickle.dumps(err))
    assert (back.command_status, back.sequence_number, back.command_id, back.message) == (
        S.ESME_RINVMSGLEN,
        3,
        4,
        "x",
    )
