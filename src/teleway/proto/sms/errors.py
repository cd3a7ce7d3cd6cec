"""The one error family of the SMS text layer.

Everything in :mod:`teleway.proto.sms` raises a subclass of :class:`SmsError`, itself a
:class:`ValueError`, so callers that only care about "bad input" can catch ``ValueError``
while adapters can tell an unencodable character from a broken UDH or a text that is not a
delivery receipt. Where the SMPP layer needs a wire code, the adapter maps these (an
unencodable text is ``ESME_RINVMSGLEN``/``ESME_RSUBMITFAIL`` depending on policy), which is why
no SMPP ``command_status`` is carried here: this layer has no wire code of its own.
"""

from __future__ import annotations

__all__ = [
    "DecodingError",
    "EncodingError",
    "ReassemblyError",
    "ReceiptError",
    "SegmentationError",
    "SmsError",
    "UdhError",
]


class SmsError(ValueError):
    """Base of every error raised by :mod:`teleway.proto.sms`."""


class EncodingError(SmsError):
    """A character cannot be represented in the requested alphabet.

    ``character`` and ``index`` name the first offending character of the text (index in
    Python code points), ``encoding`` the alphabet that was asked for.
    """

    character: str
    index: int
    encoding: str

    def __init__(self, *, character: str, index: int, encoding: str, reason: str = "") -> None:
        self.character = character
        self.index = index
        self.encoding = encoding
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"character {character!r} (U+{ord(character):04X}) at index {index} "
            f"cannot be encoded in {encoding}{detail}"
        )


class DecodingError(SmsError):
    """Bytes that cannot be read in the stated alphabet (only raised in strict mode)."""


class UdhError(SmsError):
    """A User Data Header whose lengths do not fit the data (3GPP TS 23.040 9.2.3.24)."""


class SegmentationError(SmsError):
    """Bad arguments to :func:`~teleway.proto.sms.segments.plan_segments`.

    Raised for an out-of-range concatenation reference, an unknown encoding or concat style,
    or a text too long for a single ``message_payload`` TLV.
    """


class ReassemblyError(SmsError):
    """A concatenated part whose numbering cannot be right (part 0, part > total, ...)."""


class ReceiptError(SmsError):
    """A text that is not an SMPP delivery receipt, or receipt fields that cannot be built."""
