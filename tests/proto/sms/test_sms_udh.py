"""User Data Header: concat IEs, tolerant parsing, bad lengths, fill bits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.proto.sms import (
    IEI,
    ConcatInfo,
    InformationElement,
    UdhError,
    build_udh,
    concat_8bit,
    concat_16bit,
    find_concat,
    parse_udh,
    split_udh,
    udh_fill_bits,
)


def test_known_long_message_udh_8bit() -> None:
    # Part 2 of 3, reference 0x2A: UDHL 05, IEI 00, IEDL 03, ref, total, seq.
    udh = build_udh([concat_8bit(0x2A, 3, 2)])
    assert udh == bytes.fromhex("0500032a0302")
    elements, rest = parse_udh(udh + b"hello")
    assert rest == b"hello"
    assert elements == [InformationElement(iei=0x00, data=bytes.fromhex("2a0302"))]
    assert find_concat(elements) == ConcatInfo(reference=0x2A, total=3, seq=2, reference_bits=8)


def test_known_long_message_udh_16bit() -> None:
    udh = build_udh([concat_16bit(0x1234, 2, 1)])
    assert udh == bytes.fromhex("06080412340201")
    elements, rest = parse_udh(udh)
    assert rest == b""
    assert find_concat(elements) == ConcatInfo(reference=0x1234, total=2, seq=1, reference_bits=16)


def test_unknown_iei_kept_and_concat_found_after_it() -> None:
    # UDHL 0x10; application port addressing 16-bit (05 04 0b84 23f0); a vendor IEI
    # (70 03 aabbcc); concat 8-bit (00 03 07 02 02).
    data = bytes.fromhex("10 0504 0b8423f0 7003 aabbcc 0003 070202") + b"rest"
    elements, rest = parse_udh(data)
    assert [e.iei for e in elements] == [IEI.APPLICATION_PORT_16BIT, 0x70, IEI.CONCAT_8BIT]
    assert elements[1].data == b"\xaa\xbb\xcc"
    assert rest == b"rest"
    assert find_concat(elements) == ConcatInfo(reference=7, total=2, seq=2, reference_bits=8)
    # Rebuilding keeps everything byte for byte.
    assert build_udh(elements) + rest == data


@pytest.mark.parametrize(
    "data",
    [
        "",  # no UDHL at all
        "05000301",  # UDHL 5 but only 3 octets follow
        "0300050102",  # IE length 5 runs past UDHL 3
        "0100",  # truncated IE header
    ],
)
def test_bad_lengths_raise(data: str) -> None:
    with pytest.raises(UdhError):
        parse_udh(bytes.fromhex(data))


def test_invalid_concat_ies_are_ignored() -> None:
    assert find_concat([InformationElement(iei=0, data=bytes.fromhex("010200"))]) is None  # seq 0
    assert find_concat([InformationElement(iei=0, data=bytes.fromhex("010003"))]) is None  # total 0
    seq_over_total = InformationElement(iei=0, data=bytes.fromhex("010203"))
    assert find_concat([seq_over_total]) is None
    assert find_concat([InformationElement(iei=0, data=bytes.fromhex("0102"))]) is None  # length
    assert find_concat([InformationElement(iei=8, data=bytes.fromhex("000102"))]) is None


def test_concat_helpers_validate() -> None:
    with pytest.raises(UdhError):
        concat_8bit(256, 2, 1)
    with pytest.raises(UdhError):
        concat_16bit(65536, 2, 1)
    with pytest.raises(UdhError):
        concat_8bit(1, 2, 3)
    with pytest.raises(UdhError):
        concat_8bit(1, 0, 0)
    with pytest.raises(UdhError):
        InformationElement(iei=256, data=b"")
    with pytest.raises(UdhError):
        build_udh([InformationElement(iei=0x70, data=bytes(200))])


def test_empty_udh_and_split() -> None:
    assert build_udh([]) == b""
    assert split_udh(bytes.fromhex("00ff")) == (b"\x00", b"\xff")
    assert parse_udh(b"\x00abc") == ([], b"abc")


def test_fill_bits() -> None:
    assert udh_fill_bits(6) == 1  # UDH8
    assert udh_fill_bits(7) == 0  # UDH16
    assert udh_fill_bits(12) == 2
    assert all((n * 8 + udh_fill_bits(n)) % 7 == 0 for n in range(1, 141))


ies = st.builds(
    lambda iei, data: InformationElement(iei=iei, data=data),
    st.integers(0, 255),
    st.binary(max_size=20),
)


@given(elements=st.lists(ies, min_size=1, max_size=5), rest=st.binary(max_size=30))
def test_udh_round_trip(elements: list[InformationElement], rest: bytes) -> None:
    elements_out, rest_out = parse_udh(build_udh(elements) + rest)
    assert elements_out == elements
    assert rest_out == rest


@given(st.binary(max_size=60))
def test_parse_never_crashes_otherwise(data: bytes) -> None:
    """Any input either parses into elements that rebuild the same header, or is a UdhError."""
    try:
        elements, rest = parse_udh(data)
    except UdhError:
        assert not data or data[0] + 1 > len(data) or _ie_overrun(data[1 : 1 + data[0]])
        return
    assert (build_udh(elements) or b"\x00") + rest == data


def _ie_overrun(body: bytes) -> bool:
    pos = 0
    while pos < len(body):
        if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
            return True
        pos += 2 + body[pos + 1]
    return False
