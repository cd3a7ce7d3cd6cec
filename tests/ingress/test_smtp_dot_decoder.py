"""DATA transparency (RFC 5321 4.5.2) on chunks: whatever way the wire bytes are cut, the
decoder gives back the message and the bytes after the end marker (pipelined commands)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from teleway.ingress.smtp import MAX_DATA_LINE, DotDecoder


def stuffed(message: bytes) -> bytes:
    """What a client sends for `message` (whole lines): dots doubled, then CRLF.CRLF."""
    lines = message.split(b"\r\n")[:-1]
    return b"".join((b"." + x if x.startswith(b".") else x) + b"\r\n" for x in lines) + b".\r\n"


def decode(wire: bytes, cuts: list[int]) -> tuple[bytes, bytes, DotDecoder]:
    decoder = DotDecoder()
    out, leftover, start = b"", b"", 0
    for cut in [*sorted(set(cuts)), len(wire)]:
        if decoder.done:
            break
        data, leftover = decoder.feed(wire[start:cut])
        out += data
        start = cut
    return out, leftover + wire[start:], decoder


_line = st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_lines = st.lists(st.one_of(_line, st.sampled_from([b".", b"..", b".x", b"", b"\x00."])))


@given(_lines, st.lists(st.integers(min_value=0, max_value=200)), st.binary(max_size=20))
def test_any_cutting_gives_the_message_back(
    lines: list[bytes], cuts: list[int], after: bytes
) -> None:
    message = b"".join(line + b"\r\n" for line in lines)
    wire = stuffed(message) + after
    out, leftover, decoder = decode(wire, [c for c in cuts if c <= len(wire)])
    assert decoder.done and not decoder.too_long
    assert out == message
    assert leftover == after


def test_literal_examples() -> None:
    assert decode(b".\r\nQUIT\r\n", [])[:2] == (b"", b"QUIT\r\n")
    assert decode(b"..\r\n...x\r\n.\r\n", [1, 2, 3])[:2] == (b".\r\n..x\r\n", b"")
    assert decode(b"a.\r\n.b\r\n.\r\n", [4, 5])[:2] == (b"a.\r\nb\r\n", b"")


def test_a_line_longer_than_the_limit_is_flagged_and_the_end_still_found() -> None:
    wire = b"x" * (MAX_DATA_LINE + 10) + b"\r\n.\r\nRSET\r\n"
    _, leftover, decoder = decode(wire, list(range(0, len(wire), 4096)))
    assert decoder.done and decoder.too_long
    assert leftover == b"RSET\r\n"
