"""User Data Header (3GPP TS 23.040 section 9.2.3.24).

A UDH sits at the start of ``short_message`` when the ESM class UDHI bit (SMPP v3.4 5.2.12,
``esm_class & 0x40``) is set: one octet UDHL (length of what follows), then information
elements ``IEI IEDL data``. Parsing is tolerant: unknown IEIs are kept as they are, so a
message can be forwarded without losing headers we do not understand. Only lengths that do
not fit the data are errors (:class:`~teleway.proto.sms.errors.UdhError`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from teleway.proto.sms.errors import UdhError

__all__ = [
    "IEI",
    "ConcatInfo",
    "InformationElement",
    "build_udh",
    "concat_8bit",
    "concat_16bit",
    "find_concat",
    "parse_udh",
    "split_udh",
    "udh_fill_bits",
]

MAX_UDH_LENGTH = 140
"""A UDH cannot be longer than the 140-octet user data it lives in (TS 23.040 9.2.3.16)."""


class IEI(IntEnum):
    """Information Element Identifiers we name (TS 23.040 9.2.3.24). Others are kept as int."""

    CONCAT_8BIT = 0x00  # 9.2.3.24.1: ref(1) total(1) seq(1)
    SPECIAL_SMS_INDICATION = 0x01
    APPLICATION_PORT_8BIT = 0x04
    APPLICATION_PORT_16BIT = 0x05
    CONCAT_16BIT = 0x08  # 9.2.3.24.8: ref(2) total(1) seq(1)
    NATIONAL_LANGUAGE_SINGLE_SHIFT = 0x24
    NATIONAL_LANGUAGE_LOCKING_SHIFT = 0x25


@dataclass(frozen=True, kw_only=True, slots=True)
class InformationElement:
    """One IE: identifier and its data (length is ``len(data)``)."""

    iei: int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.iei <= 0xFF:
            raise UdhError(f"IEI must be 0..255, got {self.iei}")
        if len(self.data) > 0xFF:
            raise UdhError(f"IE data longer than 255 octets ({len(self.data)})")

    def to_bytes(self) -> bytes:
        return bytes((self.iei, len(self.data))) + self.data


@dataclass(frozen=True, kw_only=True, slots=True)
class ConcatInfo:
    """What a concatenation IE says: reference, total parts, this part's 1-based number."""

    reference: int
    total: int
    seq: int
    reference_bits: int  # 8 (IEI 0x00) or 16 (IEI 0x08)


def _check_concat(reference: int, total: int, seq: int, bits: int) -> None:
    if not 0 <= reference < (1 << bits):
        raise UdhError(f"{bits}-bit concatenation reference must be 0..{(1 << bits) - 1}")
    if not 1 <= total <= 255:
        raise UdhError(f"total parts must be 1..255, got {total}")
    if not 1 <= seq <= total:
        raise UdhError(f"part number must be 1..{total}, got {seq}")


def concat_8bit(reference: int, total: int, seq: int) -> InformationElement:
    """IEI 0x00, concatenated short messages with an 8-bit reference (TS 23.040 9.2.3.24.1)."""
    _check_concat(reference, total, seq, 8)
    return InformationElement(iei=IEI.CONCAT_8BIT, data=bytes((reference, total, seq)))


def concat_16bit(reference: int, total: int, seq: int) -> InformationElement:
    """IEI 0x08, concatenated short messages with a 16-bit reference (TS 23.040 9.2.3.24.8)."""
    _check_concat(reference, total, seq, 16)
    return InformationElement(
        iei=IEI.CONCAT_16BIT, data=reference.to_bytes(2, "big") + bytes((total, seq))
    )


def find_concat(elements: Iterable[InformationElement]) -> ConcatInfo | None:
    """The first *valid* concatenation IE, or None.

    As TS 23.040 9.2.3.24.1 tells receivers, an IE with a wrong length, total 0, part number 0
    or part number above total is ignored (treated as absent), not an error.
    """
    for ie in elements:
        if ie.iei == IEI.CONCAT_8BIT and len(ie.data) == 3:
            ref, total, seq = ie.data[0], ie.data[1], ie.data[2]
            bits = 8
        elif ie.iei == IEI.CONCAT_16BIT and len(ie.data) == 4:
            ref, total, seq = int.from_bytes(ie.data[:2], "big"), ie.data[2], ie.data[3]
            bits = 16
        else:
            continue
        if total >= 1 and 1 <= seq <= total:
            return ConcatInfo(reference=ref, total=total, seq=seq, reference_bits=bits)
    return None


def build_udh(elements: Iterable[InformationElement]) -> bytes:
    """UDHL followed by the elements, in the given order. No elements -> ``b""`` (no header)."""
    body = b"".join(ie.to_bytes() for ie in elements)
    if not body:
        return b""
    if len(body) + 1 > MAX_UDH_LENGTH:
        raise UdhError(f"UDH of {len(body) + 1} octets exceeds {MAX_UDH_LENGTH}")
    return bytes((len(body),)) + body


def split_udh(short_message: bytes) -> tuple[bytes, bytes]:
    """Cut ``short_message`` into (udh including UDHL, rest) checking only UDHL."""
    if not short_message:
        raise UdhError("UDHI set but short_message is empty (no UDHL octet)")
    udhl = short_message[0]
    if 1 + udhl > len(short_message):
        raise UdhError(f"UDHL {udhl} exceeds the {len(short_message) - 1} octets after it")
    return short_message[: 1 + udhl], short_message[1 + udhl :]


def parse_udh(short_message: bytes) -> tuple[list[InformationElement], bytes]:
    """Parse the UDH at the start of ``short_message``; return (elements, rest of the data).

    The rest is the user data after the header; for packed GSM 7-bit it still starts with
    :func:`udh_fill_bits` fill bits. Unknown IEIs are returned like the others. A UDHL larger
    than the data, or an IE whose length runs past the UDHL, raises :class:`UdhError`.
    """
    udh, rest = split_udh(short_message)
    elements: list[InformationElement] = []
    pos = 1
    end = len(udh)
    while pos < end:
        if pos + 2 > end:
            raise UdhError(f"truncated information element header at UDH offset {pos}")
        iei, iedl = udh[pos], udh[pos + 1]
        if pos + 2 + iedl > end:
            raise UdhError(
                f"IE 0x{iei:02X} length {iedl} runs past the UDH end (offset {pos}, UDHL {end - 1})"
            )
        elements.append(InformationElement(iei=iei, data=bytes(udh[pos + 2 : pos + 2 + iedl])))
        pos += 2 + iedl
    return elements, bytes(rest)


def udh_fill_bits(udh_length: int) -> int:
    """Fill bits after a UDH of ``udh_length`` octets (UDHL included) so GSM 7-bit septets
    start on a septet boundary (TS 23.040 9.2.3.24): 6 octets -> 1 bit, 7 octets -> 0 bits."""
    return (7 - (udh_length * 8) % 7) % 7
