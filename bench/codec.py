"""SMPP codec benchmark: teleway's pure-Python codec vs the Rust-backed ``smpp34`` package.

Run: ``.venv/bin/python bench/codec.py`` (optionally ``--quick`` for a smoke run that does not
touch docs/benchmarks.md).

Measures, on one core, operations per second of

* decode of a typical submit_sm (20-digit addresses, 100-octet UCS-2 short_message with a
  concatenation UDH, 2 TLVs), for teleway and for smpp34, called the same way from Python
  (``decode(bytes)``), twice: the call alone, and the call followed by reading every field
  (header, mandatory parameters, each TLV's tag and value).  The second row is the fair
  one: ``smpp34.decode`` keeps the fields in Rust and builds a new Python object on every
  attribute read, while teleway's decode returns a frozen dataclass whose mandatory
  fields are Python objects already (its TLVs are checked at decode and turned into
  ``Tlv`` objects on the first read of ``tlvs``, which the second row includes);
* encode of the same PDU object (``encode(pdu)`` / ``SubmitSm.encode()``);
* decode of the same PDU through ``PduBuffer`` (framing + decode), teleway only;
* ``teleway.proto.sms.plan_segments`` for GSM 7-bit and UCS-2 texts of 1 to 5 parts.

The whole measurement is repeated RUNS times.  In each run every row does ROUNDS short
rounds of a fixed number of iterations, the rounds of all rows interleaved (round 1 of
every row, then round 2...), timed with the thread's CPU clock (``time.thread_time_ns``:
time the process is descheduled by other jobs on the shared machine is not counted, for
either library); the best round of a row is its rate in that run, and the ratio
teleway / smpp34 is taken within the run.  The table gives the median of the RUNS rates
and of the RUNS ratios, and the lowest and highest ratio.  It is printed and written as
the ``## SMPP codec`` section of docs/benchmarks.md (other sections are preserved).
"""

from __future__ import annotations

import argparse
import operator
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from teleway.proto.smpp import PduBuffer, SubmitSm, Tag, Tlv, decode, encode

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
#: Many short interleaved rounds, best one kept: on a machine shared with other jobs a
#: burst of load spoils a few rounds of every row instead of a whole row.
ROUNDS = 8
#: Independent runs; the table reports medians over them.
RUNS = 5

SOURCE = "49151123456789012345"[:20]
DEST = "49170987654321098765"[:20]
SHORT_MESSAGE = bytes.fromhex("050003a70201") + ("Grüße aus Köln, über" * 3)[:47].encode(
    "utf-16-be"
)
assert len(SHORT_MESSAGE) == 100


def typical_submit_sm() -> SubmitSm:
    return SubmitSm(
        sequence_number=123456,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=SOURCE,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=DEST,
        esm_class=0x40,
        registered_delivery=1,
        data_coding=8,
        short_message=SHORT_MESSAGE,
        tlvs=(Tlv.int(Tag.USER_MESSAGE_REFERENCE, 42), Tlv.int(Tag.SOURCE_PORT, 0x0B84)),
    )


Body = Callable[[int], None]  # runs a loop of n operations
Case = tuple[str, Body, Body | None, int]  # name, teleway, smpp34, iterations
RunRow = tuple[str, float, float | None]  # name, teleway ops/s, smpp34 ops/s (one run)


class Row(NamedTuple):
    """One table row: medians over the runs, and the spread of the per-run ratio."""

    name: str
    ours: float
    theirs: float | None
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None


def timed(body: Body, iterations: int) -> float:
    """CPU seconds of this thread for ``body(iterations)``."""
    start = time.thread_time_ns()
    body(iterations)
    return (time.thread_time_ns() - start) / 1e9


def run_once(cases: list[Case], rounds: int) -> list[RunRow]:
    """Ops/s of every case: best of ``rounds`` rounds of a fixed number of iterations.

    The rounds of all cases are interleaved (round 1 of every case, then round 2...), so
    that a burst of load from other processes does not spoil all rounds of one row.
    """
    ours_best = [float("inf")] * len(cases)
    theirs_best = [float("inf")] * len(cases)
    for _ in range(rounds):
        for i, (_, ours, theirs, n) in enumerate(cases):
            ours_best[i] = min(ours_best[i], timed(ours, n))
            if theirs is not None:
                theirs_best[i] = min(theirs_best[i], timed(theirs, n))
    return [
        (name, n / ours_best[i], None if theirs is None else n / theirs_best[i])
        for i, (name, _, theirs, n) in enumerate(cases)
    ]


def measure(cases: list[Case], runs: int, rounds: int) -> list[Row]:
    """``runs`` independent runs of :func:`run_once`; medians per row, ratios per run."""
    results = [run_once(cases, rounds) for _ in range(runs)]
    rows = []
    for i, (name, _, theirs, _) in enumerate(cases):
        ours_rates = [run[i][1] for run in results]
        if theirs is None:
            rows.append(Row(name, statistics.median(ours_rates), None, None, None, None))
            continue
        theirs_rates = [float(run[i][2] or 0.0) for run in results]
        ratios = [o / t for o, t in zip(ours_rates, theirs_rates, strict=True)]
        rows.append(
            Row(
                name,
                statistics.median(ours_rates),
                statistics.median(theirs_rates),
                statistics.median(ratios),
                min(ratios),
                max(ratios),
            )
        )
    return rows


#: Every field a consumer of a submit_sm reads (both libraries use the spec names;
#: smpp34's SubmitSm has no command_status, which is always 0 in a request anyway).
FIELDS = (
    "command_id",
    "sequence_number",
    "service_type",
    "source_addr_ton",
    "source_addr_npi",
    "source_addr",
    "dest_addr_ton",
    "dest_addr_npi",
    "destination_addr",
    "esm_class",
    "protocol_id",
    "priority_flag",
    "schedule_delivery_time",
    "validity_period",
    "registered_delivery",
    "replace_if_present_flag",
    "data_coding",
    "sm_default_msg_id",
    "short_message",
    "tlvs",
)


def read_every_field(pdu: Any, _get: Any = operator.attrgetter(*FIELDS)) -> Any:
    """Read every field of a decoded submit_sm and each TLV's tag and value."""
    values = _get(pdu)
    return len(values) + sum(len(tlv.value) + tlv.tag for tlv in values[-1])


def codec_cases(iterations: int) -> list[Case]:
    pdu = typical_submit_sm()
    wire = encode(pdu)
    assert decode(wire) == pdu

    smpp34: Any
    try:
        import smpp34
    except ImportError:  # pragma: no cover - dev dependency
        smpp34 = None
        print("note: smpp34 is not installed; its column stays empty")

    theirs_decode: Body | None = None
    theirs_decode_read: Body | None = None
    theirs_encode: Body | None = None
    if smpp34 is not None:
        theirs_pdu = smpp34.SubmitSm(
            SOURCE,
            DEST,
            SHORT_MESSAGE,
            source_addr_ton=1,
            source_addr_npi=1,
            dest_addr_ton=1,
            dest_addr_npi=1,
            esm_class=0x40,
            registered_delivery=1,
            data_coding=8,
            tlvs=[smpp34.Tlv(t.tag, t.value) for t in pdu.tlvs],
            sequence_number=pdu.sequence_number,
        )
        theirs_wire = theirs_pdu.encode()
        if theirs_wire != wire:
            print("warning: smpp34 encodes the submit_sm differently:")
            print("  ours  ", wire.hex())
            print("  smpp34", theirs_wire.hex())
        decoded = smpp34.decode(wire)
        # Both sides must see the same values, or the comparison means nothing.
        ours_values = operator.attrgetter(*FIELDS[1:-1])(decode(wire))
        assert operator.attrgetter(*FIELDS[1:-1])(decoded) == ours_values
        assert [(t.tag, bytes(t.value)) for t in decoded.tlvs] == [
            (t.tag, t.value) for t in pdu.tlvs
        ]
        assert read_every_field(decoded) == read_every_field(pdu)
        s_decode = smpp34.decode

        def theirs_decode(n: int) -> None:
            for _ in range(n):
                s_decode(wire)

        def theirs_decode_read(n: int) -> None:
            for _ in range(n):
                read_every_field(s_decode(wire))

        def theirs_encode(n: int) -> None:
            for _ in range(n):
                theirs_pdu.encode()

    def ours_decode(n: int) -> None:
        for _ in range(n):
            decode(wire)

    def ours_decode_read(n: int) -> None:
        for _ in range(n):
            read_every_field(decode(wire))

    def ours_encode(n: int) -> None:
        for _ in range(n):
            encode(pdu)

    def ours_framed(n: int) -> None:
        buf = PduBuffer()
        for _ in range(n):
            buf.feed(wire)
            buf.next_pdu()

    return [
        ("submit_sm decode", ours_decode, theirs_decode, iterations),
        ("submit_sm decode + read every field", ours_decode_read, theirs_decode_read, iterations),
        ("submit_sm encode", ours_encode, theirs_encode, iterations),
        ("submit_sm PduBuffer feed+next_pdu", ours_framed, None, iterations),
    ]


def segment_cases(iterations: int) -> list[Case]:
    try:
        from teleway.proto.sms import plan_segments
    except ImportError:
        print("note: teleway.proto.sms.plan_segments is not importable yet; rows skipped")
        return []
    cases: list[Case] = []
    # Characters per part with an 8-bit concatenation UDH: GSM 153 (single 160),
    # UCS-2 67 (single 70).
    for label, unit, single, per_part in (("GSM 7-bit", "a", 160, 153), ("UCS-2", "ж", 70, 67)):
        for parts in range(1, 6):
            length = single - 10 if parts == 1 else per_part * (parts - 1) + per_part // 2
            text = unit * length
            plan = plan_segments(text, encoding="auto", concat="udh8", reference=7)
            got = len(plan.parts) if hasattr(plan, "parts") else plan.total_parts
            assert got == parts, (label, parts, got)

            def run(n: int, text: str = text) -> None:
                for _ in range(n):
                    plan_segments(text, encoding="auto", concat="udh8", reference=7)

            cases.append((f"plan_segments {label}, {parts} part(s)", run, None, iterations))
    return cases


def fmt_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| operation | teleway ops/s | smpp34 ops/s | teleway / smpp34 | lowest - highest |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = spread = "-"
        if row.ratio is not None:
            ratio = f"{row.ratio:.3f}"
            spread = f"{row.ratio_low:.3f} - {row.ratio_high:.3f}"
        lines.append(
            f"| {row.name} | {fmt_rate(row.ours)} | {fmt_rate(row.theirs)} | {ratio} | {spread} |"
        )
    return "\n".join(lines)


def targets(rows: list[Row]) -> str:
    """The issue's goal: >= 100k/s and >= 1/5 of smpp34's rate, decode and encode."""
    lines = [
        "Target of issue 3 (>= 100,000 ops/s and >= 0.20 of smpp34; median of the runs):",
        "",
    ]
    for row in rows:
        if row.ratio is None or row.ratio_low is None:
            continue
        met = "met" if row.ours >= 100_000 and row.ratio >= 0.2 else "not met"
        lines.append(
            f"- {row.name}: {row.ours:,.0f}/s, {row.ratio:.3f} of smpp34 "
            f"(runs: {row.ratio_low:.3f} to {row.ratio_high:.3f}): {met}"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"Python {platform.python_version()} ({sys.implementation.name}), {cpu}"


def write_doc(body: str) -> None:
    section = "## SMPP codec\n\n" + body.rstrip() + "\n"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## SMPP codec\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few iterations, no doc update")
    args = parser.parse_args()
    codec_n, segment_n = (500, 50) if args.quick else (5_000, 500)
    runs, rounds = (2, 3) if args.quick else (RUNS, ROUNDS)

    load_before = os.getloadavg()[0]
    rows = measure(codec_cases(codec_n) + segment_cases(segment_n), runs, rounds)
    load_after = os.getloadavg()[0]
    result = table(rows)
    print(result)
    print()
    print(targets(rows))
    if args.quick:
        return
    body = (
        f"Measured by `.venv/bin/python bench/codec.py` on {time.strftime('%Y-%m-%d')}: "
        f"{machine()}, one core. {runs} runs; in each, the best of {rounds} interleaved "
        f"rounds of {codec_n:,} iterations (plan_segments: {segment_n:,}) timed with the "
        "thread's CPU clock, and the ratio teleway / smpp34 taken within the run; the table "
        "gives the medians of the runs and the lowest and highest ratio. 1-minute load "
        f"average {load_before:.1f} before and {load_after:.1f} after the run on "
        f"{os.cpu_count()} CPUs: other jobs sharing the machine slow both libraries, so "
        "compare within a row (the ratio) rather than between runs.\n\n"
        f"The submit_sm is {len(encode(typical_submit_sm()))} octets: 20-digit source and "
        "destination, a 100-octet UCS-2 short_message with a concatenation UDH, two TLVs. "
        "smpp34 is the Rust codec from PyPI called from Python the same way "
        "(`smpp34.decode(bytes)`, `SubmitSm.encode()`).\n\n"
        "The two decode rows measure different amounts of work on the two sides. "
        "`smpp34.decode` returns a Rust-backed object: the fields stay Rust values and every "
        "attribute read builds a new Python object (two reads of `source_addr` or `tlvs` give "
        "two objects), so a bare decode call defers most of the work a Python consumer pays "
        "for. It also checks less: it accepts C-strings over their spec maximum and known "
        "TLVs with a wrong length, silently drops a truncated trailing TLV, and returns "
        "only submit_sm and deliver_sm as typed objects (others as `RawPdu`). teleway's "
        "decode validates all of that and returns a frozen dataclass whose mandatory fields "
        "are Python values; its TLVs are checked at decode but kept raw until the first "
        "read of `tlvs` turns them into `Tlv` objects (docs/smpp.md, Performance). "
        "teleway's encode also checks every field (C-string maxima and NULs, integer ranges, "
        "known TLV lengths). The fair comparison is therefore "
        "*decode + read every field* (header, mandatory parameters, each TLV's tag and "
        "value, read once through `operator.attrgetter` on both sides; smpp34's SubmitSm "
        "has no command_status); the bare decode row is kept for reference. plan_segments "
        "texts use 8-bit concatenation UDH.\n\n" + result + "\n\n" + targets(rows)
    )
    write_doc(body)
    print(f"\nwrote the '## SMPP codec' section of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
