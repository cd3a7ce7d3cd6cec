"""Identifiers that are unique across nodes and fit SMPP's 65-octet message_id.

A 26-character, time-ordered id: 48 bits of milliseconds since the Unix epoch followed by 80 bits
of entropy, in Crockford base32 (no I, L, O, U). Time and entropy are passed in.
"""

from __future__ import annotations

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_LENGTH = 26


def make_id(millis: int, entropy: bytes) -> str:
    """Build an id from a millisecond timestamp and 10 bytes of randomness."""
    if not 0 <= millis < 1 << 48:
        raise ValueError("timestamp out of range")
    if len(entropy) != 10:
        raise ValueError("entropy must be 10 bytes")
    value = (millis << 80) | int.from_bytes(entropy, "big")
    chars = []
    for _ in range(ID_LENGTH):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def id_millis(identifier: str) -> int:
    """The timestamp part of an id (for sorting and debugging)."""
    value = 0
    for char in identifier.upper():
        value = value * 32 + _ALPHABET.index(char)
    return value >> 80
