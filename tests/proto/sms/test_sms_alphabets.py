"""Latin-1, IA5, UCS-2 (UTF-16BE with surrogate pairs), binary and data_coding mapping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.proto.sms import (
    DecodingError,
    Encoding,
    EncodingError,
    decode_text,
    encode_text,
    encoding_for_data_coding,
    ia5_decode,
    ia5_encode,
    latin1_decode,
    latin1_encode,
    ucs2_decode,
    ucs2_encode,
    ucs2_unit_count,
    unit_count,
)


def test_data_coding_values() -> None:
    assert Encoding.GSM7.data_coding == 0
    assert Encoding.IA5.data_coding == 1
    assert Encoding.LATIN1.data_coding == 3
    assert Encoding.BINARY.data_coding == 4
    assert Encoding.UCS2.data_coding == 8
    assert Encoding("ucs2") is Encoding.UCS2
    assert str(Encoding.GSM7) == "gsm7"


def test_ucs2_surrogate_pair_for_emoji() -> None:
    # U+1F600 GRINNING FACE = D83D DE00 in UTF-16.
    assert ucs2_encode("😀") == bytes.fromhex("d83dde00")
    assert ucs2_decode(bytes.fromhex("d83dde00")) == "😀"
    assert ucs2_unit_count("😀") == 2
    assert ucs2_unit_count("a😀é") == 4
    assert ucs2_encode("Жé") == bytes.fromhex("041600e9")


def test_ucs2_lone_surrogate_is_not_text() -> None:
    with pytest.raises(EncodingError) as info:
        ucs2_encode("a\ud800b")
    assert info.value.index == 1


def test_ucs2_bad_input_tolerant_and_strict() -> None:
    assert ucs2_decode(bytes.fromhex("d83d0041")) == "\ufffdA"
    with pytest.raises(DecodingError):
        ucs2_decode(bytes.fromhex("d83d0041"), strict=True)
    with pytest.raises(DecodingError):
        ucs2_decode(b"\x00", strict=True)


def test_latin1_and_ia5() -> None:
    assert latin1_encode("café ÿ") == b"caf\xe9 \xff"
    assert latin1_decode(b"caf\xe9") == "café"
    assert ia5_encode("a`{") == b"a`{"
    with pytest.raises(EncodingError) as info:
        latin1_encode("ab€")
    assert (info.value.index, info.value.character, info.value.encoding) == (2, "€", "latin1")
    with pytest.raises(EncodingError) as info:
        ia5_encode("xé")
    assert (info.value.index, info.value.encoding) == (1, "ia5")
    assert ia5_decode(b"a\xff") == "a\ufffd"
    with pytest.raises(DecodingError):
        ia5_decode(b"a\xff", strict=True)


@pytest.mark.parametrize(
    ("dc", "enc"),
    [
        (0, Encoding.GSM7),
        (1, Encoding.IA5),
        (2, Encoding.BINARY),
        (3, Encoding.LATIN1),
        (4, Encoding.BINARY),
        (8, Encoding.UCS2),
        (5, None),  # JIS
        (6, None),  # Cyrillic
        (0x11, Encoding.GSM7),  # general group, class 1, GSM
        (0x18, Encoding.UCS2),
        (0x14, Encoding.BINARY),
        (0x38, None),  # compressed
        (0xC0, Encoding.GSM7),
        (0xE0, Encoding.UCS2),
        (0xF0, Encoding.GSM7),
        (0xF4, Encoding.BINARY),
        (0x80, None),
    ],
)
def test_encoding_for_data_coding(dc: int, enc: Encoding | None) -> None:
    assert encoding_for_data_coding(dc) is enc


def test_encoding_for_data_coding_range() -> None:
    with pytest.raises(ValueError):
        encoding_for_data_coding(256)


def test_binary_is_not_text() -> None:
    with pytest.raises(ValueError):
        encode_text("x", Encoding.BINARY)
    assert decode_text(b"\x00\xff", Encoding.BINARY) == "\x00\xff"


@given(st.text(max_size=200))
def test_ucs2_round_trip_and_units(text: str) -> None:
    data = encode_text(text, "ucs2")
    assert len(data) == 2 * ucs2_unit_count(text) == 2 * unit_count(text, "ucs2")
    assert decode_text(data, "ucs2", strict=True) == text


@given(st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=200))
def test_latin1_round_trip(text: str) -> None:
    data = encode_text(text, Encoding.LATIN1)
    assert len(data) == len(text) == unit_count(text, "latin1")
    assert decode_text(data, Encoding.LATIN1) == text


@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=200))
def test_ia5_round_trip(text: str) -> None:
    assert decode_text(encode_text(text, "ia5"), "ia5", strict=True) == text


@given(st.binary(max_size=200))
def test_binary_round_trip_via_latin1_view(data: bytes) -> None:
    assert decode_text(data, "binary").encode("latin-1") == data
