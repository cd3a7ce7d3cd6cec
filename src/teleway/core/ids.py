"""Identifiers that are unique across nodes and fit SMPP's 65-octet message_id.

A 26-character, time-ordered id: 48 bits of milliseconds since the Unix epoch followed by 80 bits
of entropy, in Crockford base32 (no I, L, O, U). Time and entropy are passed in.
"""

from __future__ import annotations

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_LENGTH = 26
# two digits per 10 bits: 13 table look-ups make the 26 digits of a 130-bit value
_PAIRS = tuple(_ALPHABET[i >> 5] + _ALPHABET[i & 31] for i in range(1024))
_SHIFTS = tuple(range(120, -1, -10))


def make_id(millis: int, entropy: bytes) -> str:
    """Build an id from a millisecond timestamp and 10 bytes of randomness."""
    if not 0 <= millis < 1 << 48:
        raise ValueError("timestamp out of range")
    if len(entropy) != 10:
        raise ValueError("entropy must be 10 bytes")
    value = (millis << 80) | int.from_bytes(entropy, "big")  # 2 zero bits lead the 130
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])


def id_millis(identifier: str) -> int:
    """The timestamp part of an id (for sorting and debugging)."""
    value = 0
    for char in identifier.upper():
        value = value * 32 + _ALPHABET.index(char)
    return value >> 80
