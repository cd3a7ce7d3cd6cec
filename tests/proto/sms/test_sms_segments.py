"""Segment planning: part sizes, auto encoding, pair safety, max_parts, and the round trip
plan -> wire -> parse -> reassemble -> decode for every concatenation style."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.proto.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    Concat,
    Encoding,
    EncodingError,
    Reassembler,
    SegmentationError,
    SegmentPlan,
    decode_text,
    find_concat,
    gsm7_decode,
    parse_udh,
    part_limits,
    plan_segments,
    ucs2_decode,
    udh_fill_bits,
    unpack_septets,
)


def test_short_gsm_text_is_one_part_without_header() -> None:
    plan = plan_segments("hello")
    assert plan.encoding is Encoding.GSM7
    assert plan.data_coding == 0
    assert plan.total_parts == 1
    assert not plan.exceeds_max_parts
    assert plan.units_total == 5
    (part,) = plan.parts
    assert (part.index, part.udh, part.sar, part.units) == (1, b"", None, 5)
    assert part.short_message == b"hello"  # unpacked: one septet per octet
    assert part.esm_class_udhi is False


def test_known_two_part_udh8_message() -> None:
    plan = plan_segments("a" * 161, reference=0x2A)
    assert plan.total_parts == 2
    first, second = plan.parts
    assert first.udh == bytes.fromhex("0500032a0201")
    assert second.udh == bytes.fromhex("0500032a0202")
    assert (first.units, second.units) == (153, 8)
    assert first.short_message == bytes.fromhex("0500032a0201") + b"a" * 153
    assert first.esm_class_udhi and second.esm_class_udhi


@pytest.mark.parametrize(
    ("encoding", "char", "single", "udh8", "udh16", "sar"),
    [
        ("gsm7", "a", 160, 153, 152, 160),
        ("ucs2", "Ж", 70, 67, 66, 70),
        ("latin1", "é", 140, 134, 133, 140),
        ("ia5", "x", 140, 134, 133, 140),
    ],
)
def test_part_sizes(encoding: str, char: str, single: int, udh8: int, udh16: int, sar: int) -> None:
    assert part_limits(encoding, "udh8") == (single, udh8)
    assert part_limits(encoding, "udh16") == (single, udh16)
    assert part_limits(encoding, "sar") == (single, sar)
    assert plan_segments(char * single, encoding=encoding).total_parts == 1
    for concat, per_part in (("udh8", udh8), ("udh16", udh16), ("sar", sar)):
        plan = plan_segments(char * (single + 1), encoding=encoding, concat=concat)
        assert [p.units for p in plan.parts] == [per_part, single + 1 - per_part]


def test_binary_part_sizes_and_bytes() -> None:
    plan = plan_segments(bytes(range(256)) * 2)
    assert plan.encoding is Encoding.BINARY
    assert plan.data_coding == 4
    assert [p.units for p in plan.parts] == [134, 134, 134, 110]
    assert b"".join(p.payload for p in plan.parts) == bytes(range(256)) * 2
    with pytest.raises(SegmentationError):
        plan_segments("text", encoding="binary")
    with pytest.raises(SegmentationError):
        plan_segments(b"bytes", encoding="gsm7")


def test_udh16_and_sar_headers() -> None:
    plan = plan_segments("b" * 200, concat="udh16", reference=0xBEEF)
    assert [p.udh.hex() for p in plan.parts] == ["060804beef0201", "060804beef0202"]
    plan = plan_segments("b" * 200, concat=Concat.SAR, reference=0xBEEF)
    assert [p.sar for p in plan.parts] == [(0xBEEF, 2, 1), (0xBEEF, 2, 2)]
    assert all(p.udh == b"" and not p.esm_class_udhi for p in plan.parts)
    assert [p.units for p in plan.parts] == [160, 40]


def test_payload_is_one_part() -> None:
    plan = plan_segments("x" * 5000, concat="payload")
    assert plan.total_parts == 1
    assert plan.parts[0].payload == b"x" * 5000
    assert plan.parts[0].udh == b"" and plan.parts[0].sar is None
    assert plan_segments("x" * 65535, concat="payload").total_parts == 1
    with pytest.raises(SegmentationError):
        plan_segments("x" * 65536, concat="payload")
    # Packed GSM fits more septets in the same octets.
    assert len(plan_segments("x" * 70000, concat="payload", gsm_packed=True).parts) == 1


def test_auto_encoding_choice() -> None:
    assert plan_segments("Ça coûte 5€ [ok]").encoding is Encoding.UCS2  # û is not GSM
    assert plan_segments("Ça coute 5€ [ok]").encoding is Encoding.GSM7
    assert plan_segments("naïve").encoding is Encoding.UCS2  # latin-1 only when asked
    assert plan_segments("naïve", encoding="latin1").data_coding == 3
    assert plan_segments("hi 😀").encoding is Encoding.UCS2
    assert plan_segments("hi", gsm_data_coding=1).data_coding == 1
    assert plan_segments("hi 😀", gsm_data_coding=1).data_coding == 8


def test_forced_encoding_that_cannot_hold_text() -> None:
    with pytest.raises(EncodingError) as info:
        plan_segments("abc😀", encoding="gsm7")
    assert info.value.index == 3
    with pytest.raises(EncodingError):
        plan_segments("€", encoding=Encoding.LATIN1)
    with pytest.raises(SegmentationError):
        plan_segments("x", encoding="klingon")
    with pytest.raises(ValueError):
        plan_segments("x", concat="pigeon")


def test_extension_chars_count_two_and_are_not_split() -> None:
    assert plan_segments("€" * 80).total_parts == 1  # 160 septets
    plan = plan_segments("a" * 152 + "€" + "b" * 10)
    assert plan.units_total == 164
    first, second = plan.parts
    assert first.units == 152  # the escape pair moved whole to part 2
    assert second.payload == bytes.fromhex("1b65") + b"b" * 10
    assert gsm7_decode(first.payload, strict=True) == "a" * 152


def test_surrogate_pairs_are_not_split() -> None:
    plan = plan_segments("x" * 66 + "😀" + "y")
    assert plan.units_total == 69
    assert plan.total_parts == 1
    plan = plan_segments("x" * 66 + "😀" * 3)
    assert plan.units_total == 72
    first, second = plan.parts
    assert first.units == 66
    assert ucs2_decode(first.payload, strict=True) == "x" * 66
    assert ucs2_decode(second.payload, strict=True) == "😀😀😀"


def test_reference_ranges() -> None:
    assert plan_segments("x", reference=255).reference == 255
    with pytest.raises(SegmentationError):
        plan_segments("x", reference=256)
    with pytest.raises(ValueError):
        plan_segments("x", reference=-1)
    assert plan_segments("x", concat="udh16", reference=65535).reference == 65535
    with pytest.raises(SegmentationError):
        plan_segments("x", concat="sar", reference=65536)
    with pytest.raises(SegmentationError):
        plan_segments("x", max_parts=0)


def test_exceeds_max_parts_returns_count_without_parts() -> None:
    plan = plan_segments("a" * 1000, max_parts=3)
    assert plan.exceeds_max_parts
    assert plan.parts == ()
    assert plan.total_parts == 7  # ceil(1000 / 153)
    assert plan_segments("a" * 1000, max_parts=7).total_parts == 7
    # The UDH total field is one octet: more than 255 parts can never be sent concatenated.
    huge = plan_segments("a" * (153 * 255 + 1), max_parts=1000)
    assert huge.exceeds_max_parts and huge.total_parts == 256
    assert not plan_segments("a" * 160, max_parts=1).exceeds_max_parts


def test_packed_gsm_short_messages() -> None:
    plan = plan_segments("a" * 400, gsm_packed=True)
    assert [p.units for p in plan.parts] == [153, 153, 94]
    assert [len(p.short_message) for p in plan.parts] == [140, 140, 6 + 83]
    first = plan.parts[0]
    assert first.fill_bits == 1
    assert first.short_message[:7] == bytes.fromhex("05000300030" + "1c2")
    plan16 = plan_segments("a" * 400, gsm_packed=True, concat="udh16")
    assert [p.units for p in plan16.parts] == [152, 152, 96]
    assert [len(p.short_message) for p in plan16.parts] == [140, 140, 7 + 84]
    assert plan16.parts[0].fill_bits == 0
    single = plan_segments("hellohello", gsm_packed=True).parts[0]
    assert single.short_message == bytes.fromhex("e8329bfd4697d9ec37")
    assert single.payload == b"hellohello"
    # Packing applies to GSM only.
    assert plan_segments("Ж", gsm_packed=True).parts[0].short_message == b"\x04\x16"


def test_packed_part_never_ends_with_cr_on_an_octet_boundary() -> None:
    # 153 septets + 1 fill bit end exactly on an octet boundary; a final CR there would be
    # read as CR padding by a receiver that infers the septet count, so it moves on.
    text = "a" * 152 + "\r" + "b" * 10
    plan = plan_segments(text, gsm_packed=True)
    first, second = plan.parts
    assert first.units == 152
    assert second.payload.startswith(b"\r")
    body = first.short_message[6:]
    assert len(body) == 134 and body[-1] >> 1 == 0x0D  # real CR padding
    assert unpack_septets(body, None, 1) == b"a" * 152
    assert unpack_septets(second.short_message[6:], None, 1) == second.payload
    # Unpacked, nothing is ambiguous and the part stays full.
    assert [p.units for p in plan_segments(text).parts] == [153, 10]


# ---------------------------------------------------------------------------------------
# Properties

gsm_chars = sorted(set(GSM7_BASIC.replace("\x1b", "")) | set(GSM7_EXTENSION.values()))
texts = st.one_of(
    st.text(alphabet=st.sampled_from(gsm_chars), max_size=700),
    st.text(alphabet=st.sampled_from([*"ab€[\r", "😀", "Ж"]), max_size=400),
    st.text(alphabet=st.sampled_from([*"a€\r"]), min_size=150, max_size=480),
    st.text(max_size=400),
)
concats = st.sampled_from(list(Concat))


def _receive(plan: SegmentPlan, packed: bool) -> list[tuple[int, int, int, bytes]]:
    """What a receiver sees per part: (seq, total, reference, payload as unpacked units)."""
    out = []
    for part in plan.parts:
        data = part.short_message
        if part.esm_class_udhi:
            elements, data = parse_udh(data)
            info = find_concat(elements)
            assert info is not None
            seq, total, ref = info.seq, info.total, info.reference
            fill = udh_fill_bits(len(part.udh))
        elif part.sar is not None:
            ref, total, seq = part.sar
            fill = 0
        else:
            seq, total, ref = 1, 1, 0
            fill = 0
        if packed:
            data = unpack_septets(data, None, fill)
        out.append((seq, total, ref, data))
    return out


@given(text=texts, concat=concats, packed=st.booleans(), seed=st.integers(0, 2**32))
def test_plan_and_reassemble_round_trip(text: str, concat: Concat, packed: bool, seed: int) -> None:
    if packed and text.endswith("\r"):
        text += "."  # a final CR on an octet boundary reads as CR padding (documented)
    plan = plan_segments(text, concat=concat, reference=seed % 256, gsm_packed=packed)
    assert not plan.exceeds_max_parts
    received = _receive(plan, packed and plan.encoding is Encoding.GSM7)
    rng = random.Random(seed)
    if plan.total_parts > 1:  # duplicates (a repeated single SMS is not reassembly's job)
        received += rng.sample(received, k=min(len(received), 2))
    rng.shuffle(received)
    reassembler = Reassembler(max_pending=4)
    results = []
    for now, (seq, total, ref, payload) in enumerate(received):
        done = reassembler.add(("447700900001", "447700900002"), seq, total, ref, payload, now)
        if done is not None:
            results.append(done)
    assert len(results) == 1
    assert decode_text(results[0].payload, plan.encoding, strict=True) == text
    assert reassembler.pending == 0
    assert reassembler.duplicates == len(received) - plan.total_parts


@given(text=texts, concat=concats)
def test_part_invariants(text: str, concat: Concat) -> None:
    plan = plan_segments(text, concat=concat)
    single, per_part = part_limits(plan.encoding, concat)
    parts = plan.parts
    assert plan.total_parts == len(parts)
    assert [p.index for p in parts] == list(range(1, len(parts) + 1))
    assert sum(p.units for p in parts) == plan.units_total
    if concat is Concat.PAYLOAD or plan.units_total <= single:
        assert len(parts) == 1
        assert parts[0].udh == b"" and parts[0].sar is None
        return
    for i, part in enumerate(parts):
        assert 0 < part.units <= per_part
        # Each part decodes on its own: no escape or surrogate pair was split.
        if plan.encoding is Encoding.GSM7:
            assert gsm7_decode(part.payload, strict=True) == part.text
        elif plan.encoding is Encoding.UCS2:
            assert ucs2_decode(part.payload, strict=True) == part.text
        if i < len(parts) - 1:
            # Greedy fill: under-filled only by the one unit a pair would have overrun.
            assert part.units >= per_part - 1
            if part.units == per_part - 1:
                nxt = parts[i + 1].payload
                if plan.encoding is Encoding.GSM7:
                    assert nxt[0] == 0x1B
                else:
                    assert 0xD8 <= nxt[0] <= 0xDB
    # Minimal-ish: one fewer part, each at most one unit short, could not hold the text.
    assert (len(parts) - 1) * (per_part - 1) < plan.units_total


@given(text=texts)
def test_packed_parts_fit_140_octets(text: str) -> None:
    plan = plan_segments(text, encoding="auto", gsm_packed=True, concat="udh8")
    for part in plan.parts:
        assert len(part.short_message) <= 140
