"""Fuzz PduBuffer + decode: any input yields PDUs or SmppError with a valid status, nothing else.

Example counts come from the hypothesis profile: modest by default, large under
``HYPOTHESIS_PROFILE=fuzz`` (``make fuzz``).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from teleway.proto.smpp import CommandStatus, Pdu, PduBuffer, SmppError, decode, encode

FIXTURES = Path(__file__).parents[2] / "fixtures" / "smpp"
SAMPLES = [
    bytes.fromhex("".join(line for line in p.read_text().splitlines() if not line.startswith("#")))
    for p in sorted(FIXTURES.glob("*.hex"))
]
VALID_STATUSES = {s.value for s in CommandStatus}


def check_error(err: SmppError) -> None:
    assert err.command_status in VALID_STATUSES
    assert err.command_status != CommandStatus.ESME_ROK
    assert err.sequence_number is None or 0 <= err.sequence_number <= 0xFFFFFFFF
    str(err)  # formatting never fails


def check_pdu(pdu: Pdu) -> None:
    # Whatever decodes re-encodes, and to something that decodes to the same PDU.
    assert decode(encode(pdu)) == pdu


def run_stream(data: bytes, chunk: int, max_length: int = 4096) -> None:
    buf = PduBuffer(max_command_length=max_length)
    pos = 0
    while pos < len(data) and not buf.broken:
        buf.feed(data[pos : pos + chunk])
        pos += chunk
        # Each next_pdu call consumes input or returns None: bounded by the data length.
        for _ in range(len(data) + 1):
            try:
                pdu = buf.next_pdu()
            except SmppError as err:
                check_error(err)
                if buf.broken:
                    break
                continue
            if pdu is None:
                break
            check_pdu(pdu)


def run_decode(data: bytes) -> None:
    try:
        pdu = decode(data)
    except SmppError as err:
        check_error(err)
    else:
        check_pdu(pdu)


@given(st.binary(max_size=300), st.integers(1, 64))
def test_random_bytes(data: bytes, chunk: int) -> None:
    run_decode(data)
    run_stream(data, chunk)


@st.composite
def headed_garbage(draw: st.DrawFn) -> bytes:
    """A plausible header (known command id, right length) over a random body."""
    body = draw(st.binary(max_size=200))
    cid = draw(st.sampled_from([0x1, 0x2, 0x3, 0x4, 0x5, 0x7, 0x8, 0x9, 0xB, 0x21, 0x102, 0x103]))
    cid |= draw(st.sampled_from([0, 0x80000000]))
    status = draw(st.sampled_from([0, 0x58, 0x401]))
    seq = draw(st.integers(0, 0xFFFFFFFF))
    return (
        (16 + len(body)).to_bytes(4, "big")
        + cid.to_bytes(4, "big")
        + status.to_bytes(4, "big")
        + seq.to_bytes(4, "big")
        + body
    )


@given(headed_garbage(), st.integers(1, 64))
def test_valid_headers_random_bodies(data: bytes, chunk: int) -> None:
    run_decode(data)
    run_stream(data, chunk)


@st.composite
def mutated_fixture(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "length", "insert", "delete", "byte"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[i:]
        elif op == "length" and len(data) >= 4:
            new = draw(st.one_of(st.integers(0, 40), st.integers(len(data) - 8, len(data) + 8)))
            data[0:4] = max(new, 0).to_bytes(4, "big")
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 8))]
        else:
            data[i] = draw(st.integers(0, 255))
    return bytes(data)


@given(mutated_fixture(), st.integers(1, 64))
def test_mutated_fixtures(data: bytes, chunk: int) -> None:
    run_decode(data)
    run_stream(data, chunk)


@given(st.lists(mutated_fixture(), min_size=2, max_size=5), st.integers(1, 64))
def test_mutated_stream_of_fixtures(parts: list[bytes], chunk: int) -> None:
    run_stream(b"".join(parts), chunk)


def test_huge_declared_length_does_not_buffer() -> None:
    buf = PduBuffer()
    buf.feed(b"\xff\xff\xff\xff" + b"\0" * 12)
    try:
        buf.next_pdu()
    except SmppError as err:
        check_error(err)
    assert buf.broken
    buf.feed(b"\0" * 100_000)
    assert buf.buffered == 0
