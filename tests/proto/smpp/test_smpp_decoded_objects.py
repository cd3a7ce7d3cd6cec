"""Decoded PDUs are the public frozen classes, whatever fast path built them."""

from __future__ import annotations

import dataclasses

import pytest

from teleway.proto.smpp.codec import decode, encode
from teleway.proto.smpp.constants import Tag
from teleway.proto.smpp.errors import SmppError
from teleway.proto.smpp.framing import PduBuffer
from teleway.proto.smpp.pdu import SubmitSm
from teleway.proto.smpp.tlv import Tlv

PDU = SubmitSm(
    sequence_number=7,
    source_addr="ACME",
    destination_addr="17816170000",
    short_message=b"hi",
    tlvs=(Tlv.int(Tag.SAR_MSG_REF_NUM, 5), Tlv(tag=0x1401, value=b"\x01\x02")),
)


@pytest.mark.parametrize("how", ["decode", "buffer"])
def test_decoded_pdu_is_the_public_frozen_class(how: str) -> None:
    data = encode(PDU)
    if how == "decode":
        pdu = decode(data)
    else:
        buffer = PduBuffer()
        buffer.feed(data)
        pdu = buffer.next_pdu()
    assert type(pdu) is SubmitSm and pdu == PDU
    with pytest.raises(dataclasses.FrozenInstanceError):
        pdu.source_addr = "x"  # type: ignore[misc]
    assert all(type(t) is Tlv for t in pdu.tlvs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pdu.tlvs[0].value = b""  # type: ignore[misc]
    assert dataclasses.replace(pdu, source_addr="B").source_addr == "B"
    assert [f.name for f in dataclasses.fields(pdu)][:2] == ["command_status", "sequence_number"]


def test_tlv_with_a_float_tag_is_an_smpp_error() -> None:
    with pytest.raises(SmppError):
        encode(PDU.replace(tlvs=(Tlv(tag=1.5, value=b"x"),)))  # type: ignore[arg-type]
