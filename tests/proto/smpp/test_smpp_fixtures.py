"""Bytes captured from real peers (Kannel 1.4.5, python-smpplib 2.2.4) and spec examples.

Each fixture is decoded and its fields checked literally, re-encoded byte for byte, and fed
to PduBuffer whole, split at every offset and one byte at a time.  python-smpplib is also
run live against a loopback socket to check that what it sends today still decodes.
"""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path
from typing import Any

import pytest

from teleway.proto.smpp import (
    AlertNotification,
    BindReceiver,
    BindTransceiver,
    BindTransmitterResp,
    CancelSm,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EnquireLink,
    EsmClass,
    GenericNack,
    MessageState,
    Outbind,
    Pdu,
    PduBuffer,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Tlv,
    Unbind,
    UnsuccessSme,
    decode,
    encode,
)
from teleway.proto.smpp.timefmt import parse_absolute, parse_relative

FIXTURES = Path(__file__).parents[2] / "fixtures" / "smpp"


def load(name: str) -> bytes:
    text = (FIXTURES / f"{name}.hex").read_text()
    return bytes.fromhex("".join(line for line in text.splitlines() if not line.startswith("#")))


ALL_FIXTURES = sorted(p.stem for p in FIXTURES.glob("*.hex"))


def test_fixture_set_is_complete() -> None:
    assert len(ALL_FIXTURES) == 27
    assert {n.split("_")[0] for n in ALL_FIXTURES} == {"kannel", "smpplib", "spec"}


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_fixture_reencodes_byte_exact(name: str) -> None:
    raw = load(name)
    pdu = decode(raw)
    assert encode(pdu) == raw
    assert decode(encode(pdu)) == pdu


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_fixture_through_buffer_split_everywhere(name: str) -> None:
    raw = load(name)
    expected = decode(raw)
    # whole, twice in a row
    buf = PduBuffer()
    buf.feed(raw + raw)
    assert buf.next_pdu() == expected
    assert buf.next_pdu() == expected
    assert buf.next_pdu() is None
    # split at every offset
    for cut in range(len(raw) + 1):
        buf = PduBuffer()
        buf.feed(raw[:cut])
        got = buf.next_pdu()
        if cut < len(raw):
            assert got is None
            buf.feed(raw[cut:])
            got = buf.next_pdu()
        assert got == expected, cut
        assert buf.next_pdu() is None
        assert buf.buffered == 0
    # one byte at a time
    buf = PduBuffer()
    seen: list[Pdu] = []
    for i in range(len(raw)):
        buf.feed(raw[i : i + 1])
        pdu = buf.next_pdu()
        if pdu is not None:
            seen.append(pdu)
    assert seen == [expected]


# --- Kannel -----------------------------------------------------------------------------


def test_kannel_bind_transceiver() -> None:
    pdu = decode(load("kannel_bind_transceiver"))
    assert pdu == BindTransceiver(
        sequence_number=1,
        system_id="esme1",
        password="secret",
        system_type="",
        interface_version=0x34,
        addr_ton=0,
        addr_npi=0,
        address_range="",
    )
    assert not pdu.is_response


def test_kannel_submit_sm_gsm() -> None:
    pdu = decode(load("kannel_submit_sm_gsm"))
    assert isinstance(pdu, SubmitSm)
    assert pdu.sequence_number == 2
    assert (pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr) == (2, 1, "12345")
    assert (pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr) == (2, 1, "31600000001")
    assert pdu.esm_class == EsmClass.STORE_AND_FORWARD_MODE
    assert pdu.data_coding == 0
    assert pdu.registered_delivery == 0
    assert pdu.short_message == b"Hello from Kannel"
    assert pdu.tlvs == ()


def test_kannel_submit_sm_ucs2_long_with_udh() -> None:
    part1 = decode(load("kannel_submit_sm_ucs2_part1"))
    part2 = decode(load("kannel_submit_sm_ucs2_part2"))
    assert isinstance(part1, SubmitSm) and isinstance(part2, SubmitSm)
    for part in (part1, part2):
        assert part.esm_class == EsmClass.UDHI | EsmClass.STORE_AND_FORWARD_MODE
        assert part.data_coding == 8
        assert part.source_addr == "4915112345678"
        assert part.destination_addr == "31600000002"
        assert (part.source_addr_ton, part.dest_addr_ton) == (1, 1)
    assert part1.short_message[:6] == bytes.fromhex("050003010201")
    assert part2.short_message[:6] == bytes.fromhex("050003010202")
    assert len(part1.short_message) == 140
    text = (part1.short_message[6:] + part2.short_message[6:]).decode("utf-16-be")
    assert text.startswith("Длинное сообщение для проверки UCS-2: Привет, мир!")
    assert text.endswith("не помещается в одну часть SMS ✓")
    # Kannel flags the non-final part with more_messages_to_send = 1 (5.3.2.34)
    assert part1.tlvs == (Tlv(Tag.MORE_MESSAGES_TO_SEND, b"\x01"),)
    assert part1.tlv(Tag.MORE_MESSAGES_TO_SEND) == 1
    assert part2.tlvs == ()


def test_kannel_submit_sm_with_registered_delivery() -> None:
    pdu = decode(load("kannel_submit_sm_dlr"))
    assert isinstance(pdu, SubmitSm)
    assert pdu.registered_delivery == 0x11
    assert pdu.short_message == b"Receipt please"
    assert pdu.destination_addr == "31600000003"


def test_kannel_session_pdus() -> None:
    assert decode(load("kannel_enquire_link")) == EnquireLink(sequence_number=6)
    assert decode(load("kannel_unbind")) == Unbind(sequence_number=8)
    resp = decode(load("kannel_deliver_sm_resp"))
    assert resp == DeliverSmResp(sequence_number=0x10000, message_id="")
    assert resp.is_response


# --- python-smpplib -----------------------------------------------------------------------


def check_smpplib_part(pdu: Pdu, index: int, total: int) -> bytes:
    assert isinstance(pdu, SubmitSm)
    assert (pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr) == (5, 0, "GATEWAY")
    assert (pdu.dest_addr_ton, pdu.dest_addr_npi) == (1, 1)
    assert pdu.destination_addr == "31600000042"
    assert pdu.esm_class == EsmClass.UDHI
    assert pdu.data_coding == 8
    udh = pdu.short_message[:6]
    assert udh[:3] == b"\x05\x00\x03" and udh[4:] == bytes((total, index))
    return pdu.short_message[6:]


SMPPLIB_TEXT = "Длинное сообщение ✓ " * 6 + "END"


def test_smpplib_fixtures() -> None:
    bind = decode(load("smpplib_bind_transceiver"))
    assert bind == BindTransceiver(sequence_number=2, system_id="esme2", password="secret")
    body = b"".join(
        check_smpplib_part(decode(load(f"smpplib_submit_sm_ucs2_part{i}")), i, 2) for i in (1, 2)
    )
    assert body.decode("utf-16-be") == SMPPLIB_TEXT
    assert decode(load("smpplib_unbind")) == Unbind(sequence_number=5)


def _answer_like_an_smsc(conn: socket.socket, captured: list[bytes]) -> None:
    """Answer bind/submit/unbind with raw struct (not our encoder) and keep the raw PDUs."""
    buf = b""
    count = 0
    with conn:
        conn.settimeout(10)
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 16:
                length, cid, _, seq = struct.unpack(">IIII", buf[:16])
                if len(buf) < length:
                    break
                captured.append(buf[:length])
                buf = buf[length:]
                body = b""
                if cid in (1, 2, 9):
                    body = b"TESTSMSC\0"
                elif cid == 4:
                    count += 1
                    body = b"m%d\0" % count
                conn.sendall(struct.pack(">IIII", 16 + len(body), cid | 0x80000000, 0, seq) + body)
                if cid == 6:
                    return


def test_smpplib_live_capture() -> None:
    smpplib_client = pytest.importorskip("smpplib.client")
    smpplib_consts = pytest.importorskip("smpplib.consts")
    smpplib_gsm = pytest.importorskip("smpplib.gsm")

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    captured: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        _answer_like_an_smsc(conn, captured)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        parts, encoding_flag, msg_type_flag = smpplib_gsm.make_parts(SMPPLIB_TEXT)
        client: Any = smpplib_client.Client(
            "127.0.0.1", port, timeout=10, allow_unknown_opt_params=True
        )
        client.connect()
        client.bind_transceiver(system_id="esme2", password="secret")
        for part in parts:
            client.send_message(
                source_addr_ton=smpplib_consts.SMPP_TON_ALNUM,
                source_addr_npi=smpplib_consts.SMPP_NPI_UNK,
                source_addr="GATEWAY",
                dest_addr_ton=smpplib_consts.SMPP_TON_INTL,
                dest_addr_npi=smpplib_consts.SMPP_NPI_ISDN,
                destination_addr="31600000042",
                short_message=part,
                data_coding=encoding_flag,
                esm_class=msg_type_flag,
                registered_delivery=False,
            )
            client.read_once()
        client.unbind()
        client.disconnect()
        thread.join(10)
    finally:
        server.close()

    # Feed the captured stream as one blob through the buffer.
    buf = PduBuffer()
    buf.feed(b"".join(captured))
    pdus: list[Pdu] = []
    while (pdu := buf.next_pdu()) is not None:
        pdus.append(pdu)
    assert [type(p) for p in pdus] == [BindTransceiver, SubmitSm, SubmitSm, Unbind]
    assert isinstance(pdus[0], BindTransceiver)
    assert (pdus[0].system_id, pdus[0].password) == ("esme2", "secret")
    body = check_smpplib_part(pdus[1], 1, 2) + check_smpplib_part(pdus[2], 2, 2)
    assert body.decode("utf-16-be") == SMPPLIB_TEXT
    for raw, pdu in zip(captured, pdus, strict=True):
        assert encode(pdu) == raw
    # Same bytes as the stored copy apart from sequence numbers and the random UDH reference.
    stored = decode(load("smpplib_submit_sm_ucs2_part1"))
    assert isinstance(stored, SubmitSm) and isinstance(pdus[1], SubmitSm)
    fresh = pdus[1]
    assert (
        fresh.replace(
            sequence_number=stored.sequence_number,
            short_message=fresh.short_message[:3]
            + stored.short_message[3:4]
            + fresh.short_message[4:],
        )
        == stored
    )


# --- spec reconstructions -------------------------------------------------------------------


def test_spec_bind_pdus() -> None:
    resp = decode(load("spec_bind_transmitter_resp"))
    assert resp == BindTransmitterResp(
        sequence_number=1, system_id="SMSC", tlvs=(Tlv(Tag.SC_INTERFACE_VERSION, b"\x34"),)
    )
    assert resp.tlv(Tag.SC_INTERFACE_VERSION) == 0x34
    assert decode(load("spec_bind_receiver")) == BindReceiver(
        sequence_number=2,
        system_id="rx1",
        password="pw",
        system_type="VMS",
        addr_ton=1,
        addr_npi=1,
        address_range="^316.*",
    )
    assert decode(load("spec_outbind")) == Outbind(
        sequence_number=3, system_id="SMSC", password="secret"
    )


def test_spec_generic_nack_and_error_resp() -> None:
    nack = decode(load("spec_generic_nack"))
    assert nack == GenericNack(command_status=CommandStatus.ESME_RINVCMDID, sequence_number=7)
    resp = decode(load("spec_submit_sm_resp_error"))
    assert resp == SubmitSmResp(command_status=CommandStatus.ESME_RTHROTTLED, sequence_number=9)
    assert len(encode(resp)) == 16  # body omitted again on re-encode


def test_spec_delivery_receipt() -> None:
    pdu = decode(load("spec_deliver_sm_receipt"))
    assert isinstance(pdu, DeliverSm)
    assert pdu.esm_class == EsmClass.DELIVERY_RECEIPT
    assert pdu.source_addr == "31600000001" and pdu.destination_addr == "TELEWAY"
    assert pdu.short_message.startswith(b"id:0123456789 sub:001 dlvrd:001 ")
    assert pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) == "0123456789"
    assert pdu.tlv(Tag.MESSAGE_STATE) == MessageState.DELIVERED
    assert pdu.tlv(Tag.NETWORK_ERROR_CODE) == b"\x03\x00\x00"
    assert pdu.tlv(Tag.SAR_MSG_REF_NUM) is None


def test_spec_submit_multi_and_resp() -> None:
    pdu = decode(load("spec_submit_multi"))
    assert isinstance(pdu, SubmitMulti)
    assert pdu.dest_addresses == (
        SmeAddress(1, 1, "31600000001"),
        DistributionList("friends"),
        SmeAddress(1, 1, "31600000002"),
    )
    assert pdu.priority_flag == 1
    assert pdu.short_message == b"multi"
    assert parse_relative(pdu.validity_period) is not None
    resp = decode(load("spec_submit_multi_resp"))
    assert resp == SubmitMultiResp(
        sequence_number=11,
        message_id="mid-42",
        unsuccess_sme=(UnsuccessSme(1, 1, "31600000002", CommandStatus.ESME_RINVDSTADR),),
    )
    assert isinstance(resp, SubmitMultiResp)
    assert resp.unsuccess_sme[0] == (1, 1, "31600000002", 0x0B)


def test_spec_data_sm_keeps_vendor_tlv() -> None:
    pdu = decode(load("spec_data_sm"))
    assert isinstance(pdu, DataSm)
    assert pdu.service_type == "WAP"
    assert (pdu.esm_class, pdu.registered_delivery, pdu.data_coding) == (0, 1, 4)
    assert [t.tag for t in pdu.tlvs] == [0x0424, 0x1401, 0x020A]
    assert pdu.payload == b"\x00\x01binary payload"
    assert pdu.tlv(0x1401) == b"\xde\xad"
    assert pdu.tlv(Tag.SOURCE_PORT) == 2948
    resp = decode(load("spec_data_sm_resp"))
    assert isinstance(resp, DataSmResp)
    assert resp.command_status == CommandStatus.ESME_RDELIVERYFAILURE
    assert resp.tlv(Tag.ADDITIONAL_STATUS_INFO_TEXT) == "handset unreachable"
    assert resp.tlv(Tag.DELIVERY_FAILURE_REASON) == 1


def test_spec_message_management() -> None:
    assert decode(load("spec_query_sm")) == QuerySm(
        sequence_number=13, message_id="mid-42", source_addr_ton=5, source_addr="TELEWAY"
    )
    qr = decode(load("spec_query_sm_resp"))
    assert isinstance(qr, QuerySmResp)
    assert qr.message_state == MessageState.DELIVERED and qr.error_code == 0
    final = parse_absolute(qr.final_date)
    assert final is not None and final.isoformat() == "2024-01-02T14:04:05+00:00"
    assert decode(load("spec_cancel_sm")) == CancelSm(
        sequence_number=14,
        message_id="mid-42",
        source_addr_ton=5,
        source_addr="TELEWAY",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="31600000001",
    )
    assert decode(load("spec_replace_sm")) == ReplaceSm(
        sequence_number=15,
        message_id="mid-42",
        source_addr_ton=5,
        source_addr="TELEWAY",
        validity_period="000002000000000R",
        registered_delivery=1,
        sm_default_msg_id=0,
        short_message=b"updated",
    )
    alert = decode(load("spec_alert_notification"))
    assert alert == AlertNotification(
        sequence_number=16,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="31600000001",
        esme_addr="esme-1",
        tlvs=(Tlv(Tag.MS_AVAILABILITY_STATUS, b"\x00"),),
    )


def test_all_fixtures_concatenated_in_one_stream() -> None:
    blobs = [load(n) for n in ALL_FIXTURES]
    stream = b"".join(blobs)
    buf = PduBuffer()
    got: list[Pdu] = []
    # odd chunk size so boundaries fall everywhere
    for i in range(0, len(stream), 7):
        buf.feed(stream[i : i + 7])
        while (pdu := buf.next_pdu()) is not None:
            got.append(pdu)
    assert got == [decode(b) for b in blobs]
