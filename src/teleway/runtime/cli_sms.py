"""``teleway sms ...``: look at how a text would be sent as SMS, and read receipt texts.

The lead registers :data:`sms` in the main CLI group. Output is JSON on stdout so that it can
be piped into ``jq`` or compared in tests.
"""

from __future__ import annotations

import json
from typing import Any

import click

from teleway.proto.sms import (
    Concat,
    Encoding,
    EncodingError,
    ReceiptError,
    Segment,
    SegmentationError,
    find_concat,
    parse_receipt_text,
    parse_udh,
    plan_segments,
)

__all__ = ["sms"]

sms = click.Group("sms", help="SMS encoding tools: segment planning and receipt parsing.")

_TEXT_ENCODINGS = ["auto", Encoding.GSM7, Encoding.LATIN1, Encoding.IA5, Encoding.UCS2]


def _udh_json(segment: Segment) -> dict[str, Any] | None:
    if not segment.udh:
        return None
    elements, _ = parse_udh(segment.udh)
    concat = find_concat(elements)
    return {
        "hex": segment.udh.hex(),
        "elements": [{"iei": ie.iei, "data": ie.data.hex()} for ie in elements],
        "concat": None
        if concat is None
        else {
            "reference": concat.reference,
            "total": concat.total,
            "seq": concat.seq,
            "reference_bits": concat.reference_bits,
        },
    }


@sms.command("plan")
@click.option(
    "--encoding",
    type=click.Choice([str(e) for e in _TEXT_ENCODINGS]),
    default="auto",
    show_default=True,
    help="Alphabet; auto = GSM 7-bit when possible, else UCS-2.",
)
@click.option(
    "--concat",
    type=click.Choice([c.value for c in Concat]),
    default=Concat.UDH8.value,
    show_default=True,
    help="How parts are tied together.",
)
@click.option("--max-parts", type=click.IntRange(min=1), default=255, show_default=True)
@click.option("--reference", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--packed", is_flag=True, help="Pack GSM 7-bit septets (with UDH fill bits).")
@click.argument("text")
def plan_command(
    encoding: str, concat: str, max_parts: int, reference: int, packed: bool, text: str
) -> None:
    """Show how TEXT would be cut into SMS parts (JSON)."""
    try:
        plan = plan_segments(
            text,
            encoding=encoding,
            concat=concat,
            reference=reference,
            max_parts=max_parts,
            gsm_packed=packed,
        )
    except EncodingError as exc:
        raise click.BadParameter(str(exc), param_hint="TEXT") from exc
    except SegmentationError as exc:
        raise click.UsageError(str(exc)) from exc
    out = {
        "encoding": plan.encoding.value,
        "data_coding": plan.data_coding,
        "concat": plan.concat.value,
        "total_parts": plan.total_parts,
        "exceeds_max_parts": plan.exceeds_max_parts,
        "units_total": plan.units_total,
        "parts": [
            {
                "index": seg.index,
                "units": seg.units,
                "short_message": seg.short_message.hex(),
                "payload": seg.payload.hex(),
                "esm_class_udhi": seg.esm_class_udhi,
                "udh": _udh_json(seg),
                "sar": None
                if seg.sar is None
                else dict(zip(("reference", "total", "seq"), seg.sar, strict=True)),
                "text": seg.text,
            }
            for seg in plan.parts
        ],
    }
    click.echo(json.dumps(out, ensure_ascii=False, indent=2))


@sms.command("receipt")
@click.argument("text")
def receipt_command(text: str) -> None:
    """Parse a delivery receipt TEXT (SMPP Appendix B and variants) to JSON."""
    try:
        receipt = parse_receipt_text(text)
    except ReceiptError as exc:
        raise click.BadParameter(str(exc), param_hint="TEXT") from exc
    out = {
        "message_id": receipt.message_id,
        "submitted": receipt.submitted,
        "delivered": receipt.delivered,
        "submit_date": receipt.submit_date.isoformat() if receipt.submit_date else None,
        "done_date": receipt.done_date.isoformat() if receipt.done_date else None,
        "stat": receipt.stat,
        "state": receipt.state.name if receipt.state else None,
        "message_state": int(receipt.state) if receipt.state else None,
        "err": receipt.err,
        "text": receipt.text,
        "extra": receipt.extra,
    }
    click.echo(json.dumps(out, ensure_ascii=False, indent=2))
