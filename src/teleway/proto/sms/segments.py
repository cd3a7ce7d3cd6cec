"""Segment planning: how a text becomes one or more SMS parts.

:func:`plan_segments` picks the alphabet, encodes once, and cuts the encoded units into parts
that fit the air interface (140 octets of user data, 3GPP TS 23.040 9.2.3.16), keeping room for
the concatenation header when there is one. Part sizes, in *units* (septets for GSM 7-bit,
UTF-16 code units for UCS-2, octets for Latin-1/IA5/binary):

==========  ======  ===========  ============  ===========  ===========
encoding    single  UDH8 (6 o.)  UDH16 (7 o.)  SAR TLVs     PAYLOAD
==========  ======  ===========  ============  ===========  ===========
GSM 7-bit   160     153          152           160          1 part
UCS-2       70      67           66            70           1 part
octets      140     134          133           140          1 part
==========  ======  ===========  ============  ===========  ===========

* The GSM multi-part sizes hold whether we pack or not: packed, a 6-octet UDH plus 1 fill bit
  leaves 1071 bits = 153 septets, a 7-octet UDH plus 0 fill bits leaves 1064 bits = 152 septets;
  unpacked, the SMSC packs for us and meets the same arithmetic.
* SAR (SMPP v3.4 5.3.2.22-24) carries the concatenation in TLVs; the SMSC builds the UDH
  itself when it goes on air. We plan *full-size* parts (160/70/140) because the short_message
  we hand over has no header in it. Some SMSCs re-cut SAR parts that are too long once their
  own UDH is added; for those upstreams configure UDH8 instead.
* PAYLOAD puts the whole message in one ``message_payload`` TLV (SMPP v3.4 5.3.2.32, up to
  65535 octets) and lets the SMSC cut it.
* IA5 counts octets (one character per octet), not septets: it is the conservative choice,
  since SMSCs differ on whether they transcode IA5 to packed GSM on air.

An escape sequence (GSM extension character) or a UTF-16 surrogate pair is never split across
parts, so each part decodes on its own. Parts are filled greedily, which for a fixed
character order gives the fewest parts: every part but the last is full or one unit short
(the unit that would have split a pair; or, for packed GSM, a CR that would end the part on an
octet boundary and be mistaken for CR padding, TS 23.038 6.1.2.3.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from teleway.proto.sms.alphabets import Encoding, decode_text, encode_text, ucs2_encode
from teleway.proto.sms.errors import SegmentationError
from teleway.proto.sms.gsm7 import (
    CR_SEPTET,
    ESCAPE,
    gsm7_can_encode,
    gsm7_try_encode,
    pack_septets,
    packed_length,
)
from teleway.proto.sms.udh import build_udh, concat_8bit, concat_16bit, udh_fill_bits

__all__ = [
    "MAX_PAYLOAD_OCTETS",
    "Concat",
    "Segment",
    "SegmentPlan",
    "choose_encoding",
    "part_limits",
    "plan_segments",
]

MAX_PAYLOAD_OCTETS = 0xFFFF
"""message_payload TLV length is a 16-bit field (SMPP v3.4 5.3.2.32)."""

MAX_CONCAT_PARTS = 255
"""Total-parts fields are one octet in the UDH (TS 23.040 9.2.3.24.1) and in
sar_total_segments (SMPP v3.4 5.3.2.23)."""


class Concat(StrEnum):
    """How the parts of a long message are tied together."""

    UDH8 = "udh8"  # UDH IEI 0x00, 8-bit reference
    UDH16 = "udh16"  # UDH IEI 0x08, 16-bit reference
    SAR = "sar"  # SMPP sar_msg_ref_num / sar_total_segments / sar_segment_seqnum TLVs
    PAYLOAD = "payload"  # one message_payload TLV, the SMSC segments


# (single part, per part when concatenated) in units.
_LIMITS: dict[tuple[str, Concat], tuple[int, int]] = {}
for _kind, _single, _u8, _u16 in (
    ("septets", 160, 153, 152),
    ("utf16", 70, 67, 66),
    ("octets", 140, 134, 133),
):
    _LIMITS[(_kind, Concat.UDH8)] = (_single, _u8)
    _LIMITS[(_kind, Concat.UDH16)] = (_single, _u16)
    _LIMITS[(_kind, Concat.SAR)] = (_single, _single)


def _unit_kind(encoding: Encoding) -> str:
    if encoding is Encoding.GSM7:
        return "septets"
    if encoding is Encoding.UCS2:
        return "utf16"
    return "octets"


def part_limits(encoding: Encoding | str, concat: Concat | str) -> tuple[int, int]:
    """(units in a single-part message, units per part when concatenated).

    For PAYLOAD the message is never cut; the single-part limit is returned for both.
    """
    enc = Encoding(encoding)
    con = Concat(concat)
    kind = _unit_kind(enc)
    if con is Concat.PAYLOAD:
        single = _LIMITS[(kind, Concat.SAR)][0]
        return single, single
    return _LIMITS[(kind, con)]


_CONCAT_BY_NAME: dict[str, Concat] = {c.value: c for c in Concat}
_ENCODING_BY_NAME: dict[str, Encoding] = {e.value: e for e in Encoding}
_DATA_CODING: dict[Encoding, int] = {e: e.data_coding for e in Encoding}
_PART_LIMITS: dict[tuple[Encoding, Concat], tuple[int, int]] = {
    (e, c): part_limits(e, c) for e in Encoding for c in Concat
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Segment:
    """One SMS part.

    ``payload`` is the encoded text of this part without any header (GSM 7-bit unpacked, one
    septet per byte, even when the plan is packed); ``udh`` is the header including UDHL, or
    ``b""``; ``units`` counts septets / UTF-16 units / octets of the payload; ``sar`` is
    ``(reference, total, seq)`` for the SAR TLVs or None.
    """

    index: int
    payload: bytes
    udh: bytes
    units: int
    sar: tuple[int, int, int] | None
    encoding: Encoding
    packed: bool = False

    @property
    def fill_bits(self) -> int:
        """Fill bits between the UDH and packed GSM septets (0 when not packed)."""
        return udh_fill_bits(len(self.udh)) if self.packed and self.udh else 0

    @property
    def short_message(self) -> bytes:
        """What goes in ``short_message`` (or ``message_payload``): ``udh + payload``.

        For a packed GSM plan the payload is packed after the fill bits, with CR padding
        when 7 bits are left over (TS 23.038 6.1.2.3.1).
        """
        if self.packed:
            return self.udh + pack_septets(self.payload, self.fill_bits, cr_padding=True)
        return self.udh + self.payload

    @property
    def esm_class_udhi(self) -> bool:
        """Whether to set the UDHI bit (0x40) of esm_class (SMPP v3.4 5.2.12)."""
        return bool(self.udh)

    @property
    def text(self) -> str:
        """The part's text, decoded (binary shown as Latin-1)."""
        return decode_text(self.payload, self.encoding)


@dataclass(frozen=True, kw_only=True, slots=True)
class SegmentPlan:
    """The result of :func:`plan_segments`.

    When ``exceeds_max_parts`` is true, ``parts`` is **empty** (nothing that could be sent by
    mistake) and ``total_parts`` is the number of parts the text would need.
    """

    encoding: Encoding
    data_coding: int
    parts: tuple[Segment, ...]
    total_parts: int
    exceeds_max_parts: bool
    units_total: int
    concat: Concat
    reference: int = 0


def choose_encoding(text: str | bytes) -> Encoding:
    """The "auto" choice: bytes -> BINARY; GSM 7-bit if every character is in GSM 03.38
    (with the extension table); otherwise UCS-2. Latin-1 is never chosen automatically:
    handsets differ in how they show data_coding 3."""
    if isinstance(text, bytes | bytearray):
        return Encoding.BINARY
    return Encoding.GSM7 if gsm7_can_encode(text) else Encoding.UCS2


def _split(
    encoded: bytes, encoding: Encoding, limit: int, packed_fill: int | None = None
) -> list[bytes]:
    """Cut ``encoded`` into chunks of at most ``limit`` units, never inside a pair.

    ``packed_fill`` (fill bits, when GSM is packed): a non-last part must not end with a CR
    that finishes exactly on an octet boundary, or a receiver that infers the septet count
    from the length would drop it as CR padding (TS 23.038 6.1.2.3.1); the CR moves to the
    next part instead, and this part gets real CR padding.
    """
    chunks: list[bytes] = []
    n = len(encoded)
    pos = 0
    if encoding is Encoding.GSM7:
        while pos < n:
            end = pos + limit
            # The encoder never emits a lone ESC: a 0x1B last in the chunk starts a pair.
            if (end < n and encoded[end - 1] == ESCAPE) or (
                packed_fill is not None
                and end < n
                and encoded[end - 1] == CR_SEPTET
                and (packed_fill + 7 * (end - pos)) % 8 == 0
            ):
                end -= 1
            chunks.append(encoded[pos:end])
            pos = end
    elif encoding is Encoding.UCS2:
        step = 2 * limit
        while pos < n:
            end = pos + step
            # A high surrogate (D800-DBFF) last in the chunk: keep it with its low half.
            if end < n and 0xD8 <= encoded[end - 2] <= 0xDB:
                end -= 2
            chunks.append(encoded[pos:end])
            pos = end
    else:
        chunks = [encoded[pos : pos + limit] for pos in range(0, n, limit)]
    return chunks


def plan_segments(
    text: str | bytes,
    *,
    encoding: Encoding | str = "auto",
    concat: Concat | str = "udh8",
    reference: int = 0,
    max_parts: int = 255,
    gsm_packed: bool = False,
    gsm_data_coding: int = 0,
) -> SegmentPlan:
    """Plan the SMS parts for ``text``.

    * ``encoding``: "auto" (see :func:`choose_encoding`) or an :class:`Encoding`; a forced
      alphabet that cannot hold the text raises :class:`EncodingError` naming the first bad
      character. BINARY takes ``bytes``.
    * ``concat``: how long messages are tied together (:class:`Concat`). A text that fits one
      part is never given a header or SAR values, whatever the style.
    * ``reference``: the concatenation reference, chosen by the caller (0..255 for UDH8,
      0..65535 for UDH16/SAR/PAYLOAD); out of range raises :class:`SegmentationError`.
    * ``max_parts``: the most parts the caller accepts (at most 255 for UDH/SAR). Beyond it
      the plan has ``exceeds_max_parts=True``, no parts, and ``total_parts`` = parts needed.
    * ``gsm_packed``: give GSM 7-bit ``short_message`` packed (with fill bits after the UDH)
      instead of one septet per octet. Ignored for the other alphabets.
    * ``gsm_data_coding``: data_coding to announce for GSM 7-bit text (0 = SMSC default,
      some upstreams want 1).

    PAYLOAD: one part with the whole text; a text over 65535 octets raises
    :class:`SegmentationError`.
    """
    con = _CONCAT_BY_NAME.get(concat)
    if con is None:
        raise SegmentationError(f"unknown concatenation style {concat!r}")
    ref_max = 0xFF if con is Concat.UDH8 else 0xFFFF
    if not 0 <= reference <= ref_max:
        raise SegmentationError(f"reference for {con.value} must be 0..{ref_max}, got {reference}")
    if max_parts < 1:
        raise SegmentationError(f"max_parts must be at least 1, got {max_parts}")
    if not 0 <= gsm_data_coding <= 0xFF:
        raise SegmentationError(f"gsm_data_coding must be 0..255, got {gsm_data_coding}")

    encoded: bytes | None
    if isinstance(text, bytes | bytearray):
        if encoding != "auto" and encoding != Encoding.BINARY:
            raise SegmentationError(f"bytes given but encoding is {encoding!r}; use binary")
        enc = Encoding.BINARY
        encoded = bytes(text)
    elif encoding == "auto":
        # One pass: GSM 7-bit when every character has a septet, else UCS-2.
        encoded = gsm7_try_encode(text)
        enc = Encoding.GSM7
        if encoded is None:
            enc = Encoding.UCS2
            encoded = ucs2_encode(text)
    else:
        forced = _ENCODING_BY_NAME.get(encoding)
        if forced is None:
            raise SegmentationError(f"unknown encoding {encoding!r}")
        if forced is Encoding.BINARY:
            raise SegmentationError("the binary encoding takes bytes, not str")
        enc = forced
        encoded = encode_text(text, enc)

    packed = gsm_packed and enc is Encoding.GSM7
    data_coding = gsm_data_coding if enc is Encoding.GSM7 else _DATA_CODING[enc]
    units_total = len(encoded) // 2 if enc is Encoding.UCS2 else len(encoded)
    single_limit, part_limit = _PART_LIMITS[(enc, con)]

    if con is Concat.PAYLOAD or units_total <= single_limit:
        if con is Concat.PAYLOAD:
            octets = packed_length(units_total) if packed else len(encoded)
            if octets > MAX_PAYLOAD_OCTETS:
                raise SegmentationError(
                    f"{octets} octets do not fit one message_payload TLV ({MAX_PAYLOAD_OCTETS} max)"
                )
        part = Segment(
            index=1,
            payload=encoded,
            udh=b"",
            units=units_total,
            sar=None,
            encoding=enc,
            packed=packed,
        )
        return SegmentPlan(
            encoding=enc,
            data_coding=data_coding,
            parts=(part,),
            total_parts=1,
            exceeds_max_parts=False,
            units_total=units_total,
            concat=con,
            reference=reference,
        )

    concat_ie = concat_8bit if con is Concat.UDH8 else concat_16bit
    fill: int | None = None
    if packed:
        # UDH length does not depend on the numbers in it: 6 octets (UDH8) or 7 (UDH16).
        fill = 0 if con is Concat.SAR else udh_fill_bits(len(build_udh([concat_ie(0, 1, 1)])))
    chunks = _split(encoded, enc, part_limit, fill)
    total = len(chunks)
    exceeds = total > min(max_parts, MAX_CONCAT_PARTS)

    parts: list[Segment] = []
    for seq, chunk in enumerate(() if exceeds else chunks, start=1):
        if con is Concat.SAR:
            udh = b""
            sar: tuple[int, int, int] | None = (reference, total, seq)
        else:
            udh = build_udh((concat_ie(reference, total, seq),))
            sar = None
        parts.append(
            Segment(
                index=seq,
                payload=chunk,
                udh=udh,
                units=len(chunk) // 2 if enc is Encoding.UCS2 else len(chunk),
                sar=sar,
                encoding=enc,
                packed=packed,
            )
        )
    return SegmentPlan(
        encoding=enc,
        data_coding=data_coding,
        parts=tuple(parts),
        total_parts=total,
        exceeds_max_parts=exceeds,
        units_total=units_total,
        concat=con,
        reference=reference,
    )
