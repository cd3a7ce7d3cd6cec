"""The SMS alphabets other than GSM 7-bit, and the :class:`Encoding` choice itself.

SMPP v3.4 section 5.2.19 ``data_coding`` values used here:

====  ==========================  ==============================================
 dc   alphabet                    representation in this module
====  ==========================  ==============================================
 0    SMSC default (GSM 03.38)    :mod:`~teleway.proto.sms.gsm7`, unpacked septets
 1    IA5 (CCITT T.50) / ASCII    one octet per character, 0x00..0x7F
 3    Latin-1 (ISO-8859-1)        one octet per character
 4    8-bit binary                bytes passed through
 8    UCS-2 (ISO/IEC-10646)       UTF-16BE; non-BMP characters as surrogate pairs
====  ==========================  ==============================================

UCS-2 is sent as UTF-16BE: modern handsets decode surrogate pairs, and the length rules of
the air interface count 16-bit *code units*, so an emoji outside the BMP costs two units.
"""

from __future__ import annotations

from enum import StrEnum

from teleway.proto.sms.errors import DecodingError, EncodingError, SegmentationError
from teleway.proto.sms.gsm7 import gsm7_decode, gsm7_encode, gsm7_septet_count

__all__ = [
    "Encoding",
    "decode_text",
    "encode_text",
    "encoding_for_data_coding",
    "ia5_decode",
    "ia5_encode",
    "latin1_decode",
    "latin1_encode",
    "ucs2_decode",
    "ucs2_encode",
    "ucs2_unit_count",
    "unit_count",
]


class Encoding(StrEnum):
    """An SMS alphabet, named as in configuration and the CLI."""

    GSM7 = "gsm7"
    LATIN1 = "latin1"
    IA5 = "ia5"
    UCS2 = "ucs2"
    BINARY = "binary"

    @property
    def data_coding(self) -> int:
        """The SMPP ``data_coding`` value (SMPP v3.4 5.2.19); GSM 7-bit is 0 (SMSC default).

        Upstreams that want data_coding 1 for GSM text are served by the ``gsm_data_coding``
        parameter of :func:`~teleway.proto.sms.segments.plan_segments`.
        """
        return _DATA_CODING[self]


_DATA_CODING: dict[Encoding, int] = {
    Encoding.GSM7: 0,
    Encoding.IA5: 1,
    Encoding.LATIN1: 3,
    Encoding.BINARY: 4,
    Encoding.UCS2: 8,
}


def encoding_for_data_coding(data_coding: int) -> Encoding | None:
    """The alphabet of an incoming message's ``data_coding``, or None when not text we read.

    Covers the SMPP values 0, 1, 2, 3, 4, 8 and the GSM DCS groups an SMSC passes through
    (TS 23.038 section 4): general data coding 0x00..0x3F without compression (alphabet in
    bits 3..2), message waiting groups 0xC0..0xEF, and data coding/message class 0xF0..0xFF.
    Japanese, Cyrillic, Hebrew, pictogram and Korean values return None.
    """
    if not 0 <= data_coding <= 0xFF:
        raise ValueError(f"data_coding must be 0..255, got {data_coding}")
    simple = {0: Encoding.GSM7, 1: Encoding.IA5, 2: Encoding.BINARY, 3: Encoding.LATIN1}
    if data_coding in simple:
        return simple[data_coding]
    if data_coding in (4, 8):
        return Encoding.BINARY if data_coding == 4 else Encoding.UCS2
    group = data_coding >> 4
    if 0x1 <= group <= 0x3:
        if data_coding & 0x20:  # compressed (TS 23.038 4, bit 5)
            return None
        return (Encoding.GSM7, Encoding.BINARY, Encoding.UCS2, None)[(data_coding >> 2) & 0x3]
    if group in (0xC, 0xD):
        return Encoding.GSM7
    if group == 0xE:
        return Encoding.UCS2
    if group == 0xF:
        return Encoding.BINARY if data_coding & 0x04 else Encoding.GSM7
    return None


def latin1_encode(text: str) -> bytes:
    """ISO-8859-1, one octet per character (data_coding 3)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise EncodingError(character=text[exc.start], index=exc.start, encoding="latin1") from exc


def latin1_decode(data: bytes) -> str:
    """ISO-8859-1 never fails: every octet is a character."""
    return data.decode("latin-1")


def ia5_encode(text: str) -> bytes:
    """IA5 / ASCII, one octet per character 0x00..0x7F (data_coding 1)."""
    try:
        return text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise EncodingError(character=text[exc.start], index=exc.start, encoding="ia5") from exc


def ia5_decode(data: bytes, *, strict: bool = False) -> str:
    """IA5 / ASCII; octets above 0x7F become U+FFFD unless ``strict``."""
    try:
        return data.decode("ascii", errors="strict" if strict else "replace")
    except UnicodeDecodeError as exc:
        raise DecodingError(
            f"octet 0x{data[exc.start]:02X} at index {exc.start} is not IA5"
        ) from exc


def ucs2_encode(text: str) -> bytes:
    """UTF-16BE (data_coding 8). Lone surrogates in the Python string are not text: error."""
    try:
        return text.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise EncodingError(
            character=text[exc.start],
            index=exc.start,
            encoding="ucs2",
            reason="lone surrogate",
        ) from exc


def ucs2_decode(data: bytes, *, strict: bool = False) -> str:
    """UTF-16BE. An odd trailing octet or an unpaired surrogate becomes U+FFFD unless ``strict``."""
    try:
        return data.decode("utf-16-be", errors="strict" if strict else "replace")
    except UnicodeDecodeError as exc:
        raise DecodingError(f"invalid UTF-16BE at octet {exc.start}: {exc.reason}") from exc


def ucs2_unit_count(text: str) -> int:
    """UTF-16 code units: one per BMP character, two for each character above U+FFFF."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def encode_text(text: str, encoding: Encoding | str) -> bytes:
    """Encode ``text`` in ``encoding`` (GSM 7-bit is unpacked). BINARY takes no text."""
    enc = Encoding(encoding)
    if enc is Encoding.GSM7:
        return gsm7_encode(text)
    if enc is Encoding.UCS2:
        return ucs2_encode(text)
    if enc is Encoding.LATIN1:
        return latin1_encode(text)
    if enc is Encoding.IA5:
        return ia5_encode(text)
    raise SegmentationError("the binary encoding carries bytes, not text")


def decode_text(data: bytes, encoding: Encoding | str, *, strict: bool = False) -> str:
    """Decode a payload (without UDH; GSM 7-bit unpacked) to text.

    BINARY is shown as Latin-1 so that every octet maps to one character; callers that want
    the bytes simply do not decode.
    """
    enc = Encoding(encoding)
    if enc is Encoding.GSM7:
        return gsm7_decode(data, strict=strict)
    if enc is Encoding.UCS2:
        return ucs2_decode(data, strict=strict)
    if enc is Encoding.IA5:
        return ia5_decode(data, strict=strict)
    return latin1_decode(data)


def unit_count(text: str, encoding: Encoding | str) -> int:
    """Length units of ``text``: septets (GSM), UTF-16 units (UCS-2) or octets (others)."""
    enc = Encoding(encoding)
    if enc is Encoding.GSM7:
        return gsm7_septet_count(text)
    if enc is Encoding.UCS2:
        return ucs2_unit_count(text)
    return len(encode_text(text, enc))
