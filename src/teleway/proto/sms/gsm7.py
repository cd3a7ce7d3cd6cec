"""GSM 03.38 (3GPP TS 23.038) 7-bit default alphabet and its extension table.

Two representations are used on the wire:

* **unpacked**: one septet per octet (high bit 0). Most SMPP upstreams expect this for
  ``data_coding`` 0 and pack it themselves for the air interface. :func:`gsm7_encode` and
  :func:`gsm7_decode` work on this form.
* **packed**: septets packed LSB-first into octets (TS 23.038 section 6.1.2.1.1), optionally
  preceded by *fill bits* so that the first septet after a User Data Header starts on a septet
  boundary (TS 23.040 9.2.3.24). :func:`pack_septets` / :func:`unpack_septets`.

Extension characters (``€ [ ] { } \\ ^ ~ |`` and form feed) are sent as ESC (0x1B) followed by
the extension code, so each counts as **two** septets. The encoder never emits a lone ESC, so
in encoder output every 0x1B byte starts a two-byte pair; the segment planner relies on that
to never split an escape sequence.
"""

from __future__ import annotations

from teleway.proto.sms.errors import DecodingError, EncodingError

__all__ = [
    "CR_SEPTET",
    "ESCAPE",
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "gsm7_can_encode",
    "gsm7_decode",
    "gsm7_encode",
    "gsm7_first_unencodable",
    "gsm7_septet_count",
    "gsm7_try_encode",
    "pack_septets",
    "packed_length",
    "unpack_septets",
]

ESCAPE = 0x1B
"""ESC: switches to the extension table for the next septet (TS 23.038 6.2.1.1)."""

CR_SEPTET = 0x0D
"""Carriage return, also used as padding in the last 7 spare bits (TS 23.038 6.1.2.3.1)."""

# TS 23.038 section 6.2.1, default alphabet, code points 0x00..0x7F in order.
# 0x1B is ESC and is not a character; it is represented here by a placeholder never looked up
# for encoding (see _BASIC_ENCODE below).
GSM7_BASIC: str = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
"""The basic character set; ``GSM7_BASIC[septet]`` is the character (index 0x1B is ESC)."""

# TS 23.038 section 6.2.1.1, basic character set extension: code after ESC -> character.
GSM7_EXTENSION: dict[int, str] = {
    0x0A: "\f",  # form feed (page break)
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
"""Extension table: septet following ESC -> character. Each costs two septets."""

assert len(GSM7_BASIC) == 128

# Character -> unpacked encoding (latin-1 string of septet values, 1 or 2 chars long), used with
# str.translate for speed. Built from the tables above so they are the single source of truth.
_ENCODE: dict[int, str] = {
    ord(ch): chr(code) for code, ch in enumerate(GSM7_BASIC) if code != ESCAPE
}
_ENCODE.update({ord(ch): chr(ESCAPE) + chr(code) for code, ch in GSM7_EXTENSION.items()})
_ENCODABLE: frozenset[str] = frozenset(chr(cp) for cp in _ENCODE)
_EXTENSION_CHARS: frozenset[str] = frozenset(GSM7_EXTENSION.values())

_DECODE_BASIC: tuple[str, ...] = tuple(GSM7_BASIC)


def gsm7_can_encode(text: str) -> bool:
    """True when every character of ``text`` is in the default alphabet or its extension."""
    return _ENCODABLE.issuperset(text)


def gsm7_first_unencodable(text: str) -> int | None:
    """Index of the first character not representable in GSM 7-bit, or None."""
    if _ENCODABLE.issuperset(text):
        return None
    for index, ch in enumerate(text):
        if ch not in _ENCODABLE:
            return index
    return None  # pragma: no cover - unreachable, issuperset said otherwise


def _raise_unencodable(text: str) -> None:
    index = gsm7_first_unencodable(text)
    if index is not None:
        raise EncodingError(
            character=text[index],
            index=index,
            encoding="gsm7",
            reason="not in the GSM 03.38 default alphabet or its extension table",
        )


def gsm7_encode(text: str) -> bytes:
    """Encode ``text`` as unpacked septets (one per byte, values 0x00..0x7F).

    Extension characters become ``ESC code`` (two bytes). Raises :class:`EncodingError` naming
    the first character that has no GSM 7-bit representation.
    """
    if not _ENCODABLE.issuperset(text):
        _raise_unencodable(text)
    return text.translate(_ENCODE).encode("latin-1")


def gsm7_try_encode(text: str) -> bytes | None:
    """Like :func:`gsm7_encode` but None instead of an error: the one-pass "auto" check."""
    if not _ENCODABLE.issuperset(text):
        return None
    return text.translate(_ENCODE).encode("latin-1")


def gsm7_septet_count(text: str) -> int:
    """Number of septets ``text`` needs (extension characters count two).

    Raises :class:`EncodingError` when the text is not GSM-encodable.
    """
    if not _ENCODABLE.issuperset(text):
        _raise_unencodable(text)
    return len(text) + sum(1 for ch in text if ch in _EXTENSION_CHARS)


def gsm7_decode(septets: bytes, *, strict: bool = False) -> str:
    """Decode unpacked septets (one per byte) to text.

    Tolerant by default, following TS 23.038 6.2.1.1:

    * ESC followed by a code absent from the extension table decodes as the *basic* table
      character for that code (the spec's instruction to receivers);
    * ESC ESC (reserved for a further extension table) and a trailing lone ESC decode as a
      space (the spec: "display a space until another extension table is defined");
    * a byte above 0x7F (not a septet) decodes as U+FFFD.

    With ``strict=True`` each of these raises :class:`DecodingError` instead.
    """
    out: list[str] = []
    append = out.append
    basic = _DECODE_BASIC
    ext = GSM7_EXTENSION
    i = 0
    n = len(septets)
    while i < n:
        code = septets[i]
        i += 1
        if code > 0x7F:
            if strict:
                raise DecodingError(f"byte 0x{code:02X} at index {i - 1} is not a septet")
            append("\ufffd")
            continue
        if code != ESCAPE:
            append(basic[code])
            continue
        if i >= n:
            if strict:
                raise DecodingError(f"lone escape at end of data (index {i - 1})")
            append(" ")
            continue
        nxt = septets[i]
        i += 1
        if nxt in ext:
            append(ext[nxt])
        elif strict:
            raise DecodingError(f"unknown extension code 0x{nxt:02X} at index {i - 1}")
        elif nxt == ESCAPE:
            append(" ")
        elif nxt > 0x7F:
            append("\ufffd")
        else:
            append(basic[nxt])
    return "".join(out)


def packed_length(septet_count: int, fill_bits: int = 0) -> int:
    """Octets needed to pack ``septet_count`` septets after ``fill_bits`` fill bits."""
    return (fill_bits + 7 * septet_count + 7) // 8


def pack_septets(septets: bytes, fill_bits: int = 0, *, cr_padding: bool = False) -> bytes:
    """Pack septets LSB-first into octets (TS 23.038 6.1.2.1.1).

    ``fill_bits`` (0..6) zero bits are put first, so the septets start on a septet boundary
    after a UDH of ``len(udh)`` octets (see :func:`teleway.proto.sms.udh.udh_fill_bits`); the
    returned bytes do not include the UDH itself.

    With ``cr_padding=True``, when exactly 7 bits are left over in the last octet they are
    filled with CR instead of zeros (TS 23.038 6.1.2.3.1), so a receiver that derives the
    septet count from the octet length does not read a spurious ``@``.
    """
    if not 0 <= fill_bits <= 6:
        raise ValueError(f"fill_bits must be 0..6, got {fill_bits}")
    out = bytearray()
    acc = 0
    nbits = fill_bits
    for septet in septets:
        if septet > 0x7F:
            raise ValueError(f"value 0x{septet:02X} is not a septet")
        acc |= septet << nbits
        nbits += 7
        if nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        if cr_padding and nbits == 1:
            acc |= CR_SEPTET << 1
        out.append(acc & 0xFF)
    return bytes(out)


def unpack_septets(data: bytes, count: int | None = None, fill_bits: int = 0) -> bytes:
    """Unpack packed octets to one septet per byte.

    ``fill_bits`` leading bits are skipped. With ``count`` given, exactly that many septets are
    returned (``ValueError`` if the data is too short). With ``count=None`` the count is derived
    from the length, as an SMPP peer must do; a final CR that occupies exactly the last 7 bits
    is then taken as padding and dropped (TS 23.038 6.1.2.3.1).
    """
    if not 0 <= fill_bits <= 6:
        raise ValueError(f"fill_bits must be 0..6, got {fill_bits}")
    total_bits = 8 * len(data) - fill_bits
    available = max(total_bits, 0) // 7
    strip_cr_padding = False
    if count is None:
        count = available
        strip_cr_padding = count > 0 and total_bits % 7 == 0
    elif count < 0 or count > available:
        raise ValueError(
            f"cannot unpack {count} septets from {len(data)} octets with {fill_bits} fill bits"
        )
    out = bytearray()
    acc = 0
    nbits = 0
    it = iter(data)
    # Skip fill bits.
    if fill_bits and data:
        acc = data[0] >> fill_bits
        nbits = 8 - fill_bits
        it = iter(data[1:])
    for _ in range(count):
        if nbits < 7:
            acc |= next(it) << nbits
            nbits += 8
        out.append(acc & 0x7F)
        acc >>= 7
        nbits -= 7
    if strip_cr_padding and out and out[-1] == CR_SEPTET:
        del out[-1]
    return bytes(out)
