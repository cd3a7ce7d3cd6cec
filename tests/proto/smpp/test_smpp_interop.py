"""Interop with smpp34 (an independent Rust codec): same bytes for submit_sm and deliver_sm.

smpp34's Python C-string handling is UTF-8 based, so strategies stay in printable ASCII.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.proto.smpp import DeliverSm, SubmitSm, Tag, Tlv, decode, encode

smpp34: Any = pytest.importorskip("smpp34")


def ascii_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=max_size
    )


u8 = st.integers(0, 255)
tlvs = st.lists(
    st.one_of(
        st.integers(0, 0xFFFF).map(lambda v: Tlv.int(Tag.SAR_MSG_REF_NUM, v)),
        st.binary(max_size=30).map(lambda b: Tlv(0x1401, b)),
        st.binary(max_size=300).map(lambda b: Tlv(Tag.MESSAGE_PAYLOAD, b)),
    ),
    max_size=3,
).map(tuple)

fields = st.fixed_dictionaries(
    {
        "sequence_number": st.integers(1, 0x7FFFFFFF),
        "service_type": ascii_text(5),
        "source_addr_ton": u8,
        "source_addr_npi": u8,
        "source_addr": ascii_text(20),
        "dest_addr_ton": u8,
        "dest_addr_npi": u8,
        "destination_addr": ascii_text(20),
        "esm_class": u8,
        "protocol_id": u8,
        "priority_flag": u8,
        "registered_delivery": u8,
        "replace_if_present_flag": u8,
        "data_coding": u8,
        "sm_default_msg_id": u8,
        "short_message": st.binary(max_size=254),
        "tlvs": tlvs,
    }
)


def theirs(cls: Any, values: dict[str, Any]) -> Any:
    kwargs = dict(values)
    kwargs["tlvs"] = [smpp34.Tlv(t.tag, t.value) for t in values["tlvs"]]
    source, dest, sm = (
        kwargs.pop("source_addr"),
        kwargs.pop("destination_addr"),
        kwargs.pop("short_message"),
    )
    return cls(source, dest, sm, **kwargs)


@given(fields)
def test_submit_sm_same_bytes_both_ways(values: dict[str, Any]) -> None:
    ours = SubmitSm(**values)
    wire = encode(ours)
    assert theirs(smpp34.SubmitSm, values).encode() == wire
    back = smpp34.decode(wire)
    assert (back.source_addr, back.destination_addr, back.short_message) == (
        ours.source_addr,
        ours.destination_addr,
        ours.short_message,
    )
    assert [(t.tag, t.value) for t in back.tlvs] == [(t.tag, t.value) for t in ours.tlvs]
    assert decode(back.encode()) == ours


@given(fields)
def test_deliver_sm_same_bytes(values: dict[str, Any]) -> None:
    ours = DeliverSm(**values)
    assert theirs(smpp34.DeliverSm, values).encode() == encode(ours)
