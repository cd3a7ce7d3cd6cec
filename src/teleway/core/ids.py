"""Identifiers that are unique across nodes and fit SMPP's 65-octet message_id.

A 26-character, time-ordered id: 48 bits of milliseconds since the Unix epoch followed by 80 bits
of entropy, in Crockford base32 (no I, L, O, U). Time and entropy are passed in.
"""

from __future__ import annotations

import base64

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_LENGTH = 26
# RFC 4648 base32 digits -> Crockford digits, so the C codec does the bit slicing
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def make_id(millis: int, entropy: bytes) -> str:
    """Build an id from a millisecond timestamp and 10 bytes of randomness."""
    if not 0 <= millis < 1 << 48:
        raise ValueError("timestamp out of range")
    if len(entropy) != 10:
        raise ValueError("entropy must be 10 bytes")
    # 160 bits = 32 base32 digits without padding; the top 30 bits are zero, so the last 26
    # digits are the 130-bit big-endian value (2 leading zero bits, 48 time bits, 80 random)
    raw = b"\0\0\0\0" + millis.to_bytes(6, "big") + entropy
    return base64.b32encode(raw)[6:].translate(_TO_CROCKFORD).decode("ascii")


def id_millis(identifier: str) -> int:
    """The timestamp part of an id (for sorting and debugging)."""
    value = 0
    for char in identifier.upper():
        value = value * 32 + _ALPHABET.index(char)
    return value >> 80
