"""GSM 03.38 7-bit alphabet: table entries, extension table, packing vectors, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.proto.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    DecodingError,
    EncodingError,
    gsm7_can_encode,
    gsm7_decode,
    gsm7_encode,
    gsm7_first_unencodable,
    gsm7_septet_count,
    pack_septets,
    packed_length,
    unpack_septets,
)

# (character, unpacked septets) straight from the TS 23.038 6.2.1 tables.
TABLE_VECTORS = [
    ("@", "00"),
    ("£", "01"),
    ("$", "02"),
    ("¥", "03"),
    ("è", "04"),
    ("é", "05"),
    ("Ç", "09"),
    ("\n", "0a"),
    ("Ø", "0b"),
    ("\r", "0d"),
    ("å", "0f"),
    ("Δ", "10"),
    ("_", "11"),
    ("Φ", "12"),
    ("Ξ", "1a"),
    ("Æ", "1c"),
    ("ß", "1e"),
    ("É", "1f"),
    (" ", "20"),
    ("¤", "24"),
    ("0", "30"),
    ("?", "3f"),
    ("¡", "40"),
    ("A", "41"),
    ("Z", "5a"),
    ("Ä", "5b"),
    ("Ö", "5c"),
    ("Ñ", "5d"),
    ("Ü", "5e"),
    ("§", "5f"),
    ("¿", "60"),
    ("a", "61"),
    ("z", "7a"),
    ("ä", "7b"),
    ("ö", "7c"),
    ("ñ", "7d"),
    ("ü", "7e"),
    ("à", "7f"),
    # Extension table (6.2.1.1): ESC + code, two septets each.
    ("€", "1b65"),
    ("{", "1b28"),
    ("}", "1b29"),
    ("[", "1b3c"),
    ("]", "1b3e"),
    ("~", "1b3d"),
    ("\\", "1b2f"),
    ("^", "1b14"),
    ("|", "1b40"),
    ("\f", "1b0a"),
]


@pytest.mark.parametrize(("char", "hexed"), TABLE_VECTORS)
def test_table_entry_encodes_and_decodes(char: str, hexed: str) -> None:
    assert gsm7_encode(char) == bytes.fromhex(hexed)
    assert gsm7_decode(bytes.fromhex(hexed)) == char
    assert gsm7_septet_count(char) == len(hexed) // 2


def test_tables_have_the_spec_sizes() -> None:
    assert len(GSM7_BASIC) == 128
    assert len(GSM7_EXTENSION) == 10


def test_mixed_text() -> None:
    assert gsm7_encode("Cost: 5€ {ok}") == bytes.fromhex("436f73743a2035") + bytes.fromhex(
        "1b65201b286f6b1b29"
    )
    assert gsm7_septet_count("Cost: 5€ {ok}") == 13 + 3


@pytest.mark.parametrize(
    ("text", "index", "char"),
    [
        ("abc`", 3, "`"),
        ("á", 0, "á"),
        ("hi 😀", 3, "😀"),
        ("x\x1by", 1, "\x1b"),
        ("ok\tx", 2, "\t"),
    ],
)
def test_unencodable_names_char_and_index(text: str, index: int, char: str) -> None:
    assert not gsm7_can_encode(text)
    assert gsm7_first_unencodable(text) == index
    with pytest.raises(EncodingError) as info:
        gsm7_encode(text)
    assert info.value.index == index
    assert info.value.character == char
    assert info.value.encoding == "gsm7"
    assert f"index {index}" in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(EncodingError):
        gsm7_septet_count(text)


def test_can_encode_empty_and_full_table() -> None:
    assert gsm7_can_encode("")
    everything = GSM7_BASIC.replace("\x1b", "") + "".join(GSM7_EXTENSION.values())
    assert gsm7_can_encode(everything)
    assert gsm7_first_unencodable(everything) is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("1b41", "A"),  # unknown extension code -> basic table character (6.2.1.1)
        ("1b0d", "\r"),  # CR2 (reserved) -> CR
        ("1b1b", " "),  # ESC ESC reserved -> space
        ("611b", "a "),  # lone trailing ESC -> space
        ("6180", "a\ufffd"),  # not a septet
    ],
)
def test_tolerant_decode_fallbacks(data: str, expected: str) -> None:
    assert gsm7_decode(bytes.fromhex(data)) == expected
    with pytest.raises(DecodingError):
        gsm7_decode(bytes.fromhex(data), strict=True)


# Packing vectors (TS 23.038 6.1.2.1.1): well-known PDU encodings.
@pytest.mark.parametrize(
    ("text", "packed"),
    [
        ("hellohello", "e8329bfd4697d9ec37"),
        ("hello", "e8329bfd06"),
        ("Hi", "c834"),
        ("", ""),
    ],
)
def test_pack_known_vectors(text: str, packed: str) -> None:
    septets = gsm7_encode(text)
    assert pack_septets(septets) == bytes.fromhex(packed)
    assert unpack_septets(bytes.fromhex(packed), len(text)) == septets
    assert gsm7_decode(unpack_septets(bytes.fromhex(packed), len(septets))) == text


def test_pack_with_one_fill_bit_after_udh8() -> None:
    # After a 6-octet UDH one fill bit comes first: the whole bit stream moves up by one
    # ("hellohello" E8 32 9B FD 46 97 D9 EC 37 shifted left one bit, carries included).
    assert pack_septets(b"\x61", fill_bits=1) == b"\xc2"
    assert pack_septets(gsm7_encode("hellohello"), fill_bits=1) == bytes.fromhex(
        "d06536fb8d2eb3d96f"
    )
    assert unpack_septets(bytes.fromhex("d06536fb8d2eb3d96f"), 10, fill_bits=1) == gsm7_encode(
        "hellohello"
    )


def test_cr_padding_fills_seven_spare_bits() -> None:
    septets = gsm7_encode("1234567")  # 49 bits -> 7 octets with 7 spare bits
    plain = pack_septets(septets)
    padded = pack_septets(septets, cr_padding=True)
    assert plain[:-1] == padded[:-1]
    assert plain[-1] >> 1 == 0
    assert padded[-1] >> 1 == 0x0D
    # A receiver that derives the count from the length reads a spurious '@' without padding...
    assert unpack_septets(plain) == septets + b"\x00"
    # ...and drops the CR padding.
    assert unpack_septets(padded) == septets
    # Counted explicitly, both give the septets.
    assert unpack_septets(padded, 7) == septets


def test_cr_padding_only_when_seven_bits_spare() -> None:
    septets = gsm7_encode("hello")
    assert pack_septets(septets, cr_padding=True) == pack_septets(septets)


def test_unpack_rejects_short_data_and_bad_fill() -> None:
    with pytest.raises(ValueError):
        unpack_septets(b"\x00", 2)
    with pytest.raises(ValueError):
        pack_septets(b"\x00", fill_bits=7)
    with pytest.raises(ValueError):
        pack_septets(b"\x80")


def _reference_pack(septets: bytes, fill: int) -> bytes:
    """Bit-string model of TS 23.038 6.1.2.1.1, independent of the implementation."""
    bits = "0" * fill + "".join(format(s, "07b")[::-1] for s in septets)
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i : i + 8][::-1], 2) for i in range(0, len(bits), 8))


septet_lists = st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b))


@given(septets=septet_lists, fill=st.integers(0, 6))
def test_pack_matches_bit_model_and_round_trips(septets: bytes, fill: int) -> None:
    packed = pack_septets(septets, fill)
    assert packed == _reference_pack(septets, fill)
    assert len(packed) == packed_length(len(septets), fill)
    assert unpack_septets(packed, len(septets), fill) == septets


gsm_chars = st.sampled_from(
    sorted(set(GSM7_BASIC.replace("\x1b", "")) | set(GSM7_EXTENSION.values()))
)


@given(text=st.text(alphabet=gsm_chars, max_size=300))
def test_gsm_round_trip(text: str) -> None:
    encoded = gsm7_encode(text)
    assert len(encoded) == gsm7_septet_count(text)
    assert all(b < 0x80 for b in encoded)
    assert gsm7_decode(encoded, strict=True) == text
    packed = pack_septets(encoded)
    assert gsm7_decode(unpack_septets(packed, len(encoded))) == text


@given(data=st.binary(max_size=100))
def test_tolerant_decode_never_fails(data: bytes) -> None:
    assert isinstance(gsm7_decode(data), str)
