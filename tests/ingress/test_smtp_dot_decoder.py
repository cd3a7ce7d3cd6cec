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


def line_by_line(wire: bytes) -> tuple[bytes, bytes, bool] | None:
    """RFC 5321 4.5.2 read one line at a time (lines end at CRLF only; a bare CR or LF is data):
    (message, bytes after the end marker, whether a line was longer than MAX_DATA_LINE), or
    None when the end marker never comes."""
    message, position, too_long = [], 0, False
    while (end := wire.find(b"\r\n", position)) >= 0:
        line, position = wire[position:end], end + 2
        if line == b".":
            return b"".join(message), wire[position:], too_long
        too_long = too_long or len(line) > MAX_DATA_LINE
        message.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
    return None


_wire_piece = st.one_of(
    st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"..", b"\r\n.", b".\r\n", b"\r\n.\r\n", b"x"]),
    st.binary(max_size=6),
    # lines around the limit, to be cut anywhere (CRLF added by the next piece or not at all)
    st.integers(min_value=MAX_DATA_LINE - 3, max_value=MAX_DATA_LINE + 3).map(lambda n: b"y" * n),
)


@given(
    st.lists(_wire_piece, max_size=14).map(b"".join),
    st.lists(st.integers(min_value=0), max_size=8),
    st.sampled_from([1, 3, 4096, 65536, 1 << 20]),
)
def test_the_chunked_decoder_reads_any_wire_bytes_as_a_line_reader_does(
    wire: bytes, cuts: list[int], step: int
) -> None:
    """Differential: arbitrary bytes (bare CR/LF, dots, terminators, lines at and over the
    limit), cut at random points and into chunks of `step` bytes, as the line reader reads them."""
    step = max(step, len(wire) // 300)  # a long line in 1-byte chunks would only be slow
    points = sorted({c % (len(wire) + 1) for c in cuts} | set(range(0, len(wire), step)))
    out, leftover, decoder = decode(wire, points)
    expected = line_by_line(wire)
    if expected is None:
        assert not decoder.done
        return
    message, after, too_long = expected
    assert decoder.done
    assert leftover == after
    assert decoder.too_long == too_long
    if not too_long:
        assert out == message


def test_lines_at_and_over_the_limit_whatever_the_chunks() -> None:
    for length, over in [(MAX_DATA_LINE, False), (MAX_DATA_LINE + 1, True)]:
        wire = b"a\r\n" + b"z" * length + b"\r\nb\r\n.\r\nQUIT\r\n"
        for step in (1000, 4096, MAX_DATA_LINE - 1, MAX_DATA_LINE, MAX_DATA_LINE + 2, 1 << 20):
            for shift in (0, 1, 2, 3):
                points = list(range(shift, len(wire), step))
                out, leftover, decoder = decode(wire, points)
                assert decoder.done and leftover == b"QUIT\r\n", (length, step, shift)
                assert decoder.too_long is over, (length, step, shift)
                if not over:
                    assert out == b"a\r\n" + b"z" * length + b"\r\nb\r\n"
