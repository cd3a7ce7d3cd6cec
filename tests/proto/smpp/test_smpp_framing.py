"""PduBuffer: reassembly, limits, broken framing and recovery after a bad body."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.proto.smpp import (
    CommandId,
    CommandStatus,
    EnquireLink,
    PduBuffer,
    SmppError,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Tlv,
    encode,
)
from teleway.proto.smpp.framing import DEFAULT_MAX_COMMAND_LENGTH

SUBMIT = encode(
    SubmitSm(
        sequence_number=1,
        source_addr="12345",
        destination_addr="31600000001",
        short_message=b"hello",
        tlvs=(Tlv.int(Tag.USER_MESSAGE_REFERENCE, 7),),
    )
)
LINK = encode(EnquireLink(sequence_number=2))


def drain(buf: PduBuffer) -> list[object]:
    out: list[object] = []
    while (pdu := buf.next_pdu()) is not None:
        out.append(pdu)
    return out


def test_empty_and_partial_header_need_more() -> None:
    buf = PduBuffer()
    assert buf.next_pdu() is None
    buf.feed(LINK[:3])
    assert buf.next_pdu() is None
    buf.feed(LINK[3:15])
    assert buf.next_pdu() is None
    buf.feed(LINK[15:])
    assert buf.next_pdu() == EnquireLink(sequence_number=2)
    assert buf.buffered == 0 and not buf.broken


def test_many_pdus_in_one_feed() -> None:
    buf = PduBuffer()
    buf.feed(SUBMIT + LINK + SUBMIT + LINK[:5])
    got = drain(buf)
    assert [type(p).__name__ for p in got] == ["SubmitSm", "EnquireLink", "SubmitSm"]
    assert buf.buffered == 5


def test_accepts_bytearray_and_memoryview() -> None:
    buf = PduBuffer()
    buf.feed(bytearray(LINK))
    buf.feed(memoryview(LINK))
    assert len(drain(buf)) == 2


@pytest.mark.parametrize("length", [0, 1, 15])
def test_command_length_below_header_breaks_the_buffer(length: int) -> None:
    buf = PduBuffer()
    buf.feed(struct.pack(">IIII", length, CommandId.ENQUIRE_LINK, 0, 9) + LINK)
    with pytest.raises(SmppError) as info:
        buf.next_pdu()
    assert info.value.command_status == CommandStatus.ESME_RINVCMDLEN
    assert info.value.sequence_number == 9
    assert info.value.command_id == CommandId.ENQUIRE_LINK
    assert buf.broken
    # unusable from now on: more input is ignored and the same error repeats
    buf.feed(LINK)
    with pytest.raises(SmppError) as again:
        buf.next_pdu()
    assert again.value is info.value
    assert buf.buffered == 0


def test_command_length_above_max_detected_from_four_octets() -> None:
    buf = PduBuffer(max_command_length=1000)
    buf.feed(struct.pack(">I", 1001))
    with pytest.raises(SmppError) as info:
        buf.next_pdu()
    assert info.value.command_status == CommandStatus.ESME_RINVCMDLEN
    assert info.value.sequence_number is None  # header not complete yet
    assert buf.broken


def test_max_command_length_is_inclusive() -> None:
    pdu = SubmitSm(tlvs=(Tlv(0x1400, b"x" * (1000 - len(encode(SubmitSm())) - 4)),))
    raw = encode(pdu)
    assert len(raw) == 1000
    buf = PduBuffer(max_command_length=1000)
    buf.feed(raw)
    assert buf.next_pdu() == pdu


def test_default_limit() -> None:
    assert PduBuffer().max_command_length == DEFAULT_MAX_COMMAND_LENGTH == 65536
    with pytest.raises(ValueError):
        PduBuffer(max_command_length=15)


def test_bad_body_is_reported_and_the_stream_continues() -> None:
    bad = struct.pack(">IIII", 17, CommandId.SUBMIT_SM_RESP, 0, 5) + b"x"  # no NUL
    unknown = struct.pack(">IIII", 16, 0x00000999, 0, 6)
    buf = PduBuffer()
    buf.feed(bad + unknown + LINK)
    with pytest.raises(SmppError) as first:
        buf.next_pdu()
    assert (first.value.command_status, first.value.sequence_number) == (
        CommandStatus.ESME_RINVMSGID,
        5,
    )
    with pytest.raises(SmppError) as second:
        buf.next_pdu()
    assert (second.value.command_status, second.value.sequence_number) == (
        CommandStatus.ESME_RINVCMDID,
        6,
    )
    assert not buf.broken
    assert buf.next_pdu() == EnquireLink(sequence_number=2)


def test_consumed_bytes_are_compacted() -> None:
    buf = PduBuffer()
    for _ in range(2000):
        buf.feed(LINK + SUBMIT[:10])
        buf.feed(SUBMIT[10:])
        assert len(drain(buf)) == 2
    # internal storage does not grow with the number of PDUs seen
    assert len(buf._buf) < 4 * len(SUBMIT)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=60))
def test_any_chunking_gives_the_same_pdus(chunks: list[int]) -> None:
    stream = (SUBMIT + LINK + encode(SubmitSmResp(sequence_number=1, message_id="m"))) * 3
    buf = PduBuffer()
    got: list[object] = []
    pos = 0
    i = 0
    while pos < len(stream):
        size = chunks[i % len(chunks)]
        buf.feed(stream[pos : pos + size])
        pos += size
        i += 1
        got.extend(drain(buf))
    assert len(got) == 9
    assert [type(p).__name__ for p in got[:3]] == ["SubmitSm", "EnquireLink", "SubmitSmResp"]
    assert buf.buffered == 0
