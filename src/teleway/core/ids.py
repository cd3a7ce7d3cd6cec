"""Identifiers that are unique across nodes and fit SMPP's 65-octet message_id.

A 26-character, time-ordered id: 48 bits of milliseconds since the Unix epoch followed by 80 bits
of entropy, in Crockford base32 (no I, L, O, U). Time and entropy are passed in.
"""

from __future__ import annotations

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_LENGTH = 26
# two digits per 10 bits: 13 table look-ups make the 26 digits of a 130-bit value
_PAIRS = tuple(_ALPHABET[i >> 5] + _ALPHABET[i & 31] for i in range(1024))


def make_id(millis: int, entropy: bytes) -> str:
    """Build an id from a millisecond timestamp and 10 bytes of randomness."""
    if not 0 <= millis < 1 << 48:
        raise ValueError("timestamp out of range")
    if len(entropy) != 10:
        raise ValueError("entropy must be 10 bytes")
    # 2 zero bits + 48 bits of time are exactly the first 10 digits: ids made in the same
    # millisecond share them, so they are computed once per millisecond
    global _last_prefix
    last_millis, prefix = _last_prefix
    if millis != last_millis:
        pairs = _PAIRS
        prefix = "".join([pairs[(millis >> shift) & 1023] for shift in (40, 30, 20, 10, 0)])
        _last_prefix = (millis, prefix)
    value = int.from_bytes(entropy, "big")
    pairs = _PAIRS
    return (
        prefix
        + pairs[value >> 70]
        + pairs[(value >> 60) & 1023]
        + pairs[(value >> 50) & 1023]
        + pairs[(value >> 40) & 1023]
        + pairs[(value >> 30) & 1023]
        + pairs[(value >> 20) & 1023]
        + pairs[(value >> 10) & 1023]
        + pairs[value & 1023]
    )


_last_prefix: tuple[int, str] = (-1, "")  # one tuple, swapped whole: safe across threads


def id_millis(identifier: str) -> int:
    """The timestamp part of an id (for sorting and debugging)."""
    value = 0
    for char in identifier.upper():
        value = value * 32 + _ALPHABET.index(char)
    return value >> 80
