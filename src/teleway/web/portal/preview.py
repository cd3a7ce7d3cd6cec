"""The SMS template preview: how a sample e-mail becomes an SMS under given settings.

Pure: the same functions the gateway uses (`core.templates.sms_text`, `proto.sms.plan_segments`)
applied to a sample, so what the preview shows is what would be sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from teleway.core import provisioning as prov
from teleway.core.model import (
    Content,
    LongSmsPolicy,
    Message,
    Options,
    Origin,
    Settings,
)
from teleway.core.templates import sms_text
from teleway.proto.sms.segments import plan_segments

SAMPLE_MAX = 5000  # characters of sample subject/body the preview works on
ENCODING_NAMES = {"gsm7": "GSM 7-bit", "ucs2": "UCS-2 (Unicode)", "latin1": "Latin-1"}


@dataclass(frozen=True, kw_only=True)
class SmsPreview:
    text: str  # what the handset shows (after a TRUNCATE policy: the first part only)
    encoding: str  # "GSM 7-bit" / "UCS-2 (Unicode)"
    characters: int
    parts: int  # parts sent
    parts_needed: int  # parts the whole text needs
    units_per_part: tuple[int, ...]
    verdict: str  # what the policy does with it, in words
    problems: tuple[str, ...]  # template errors (the preview then uses the default template)

    def to_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "encoding": self.encoding,
            "characters": self.characters,
            "parts": self.parts,
            "parts_needed": self.parts_needed,
            "units_per_part": list(self.units_per_part),
            "verdict": self.verdict,
            "problems": list(self.problems),
        }


def preview(
    *,
    template: str,
    subject: str,
    body: str,
    sender: str = "alice@example.com",
    recipient: str = "+447700900123",
    policy: LongSmsPolicy = LongSmsPolicy.CONCATENATE,
    max_parts: int = 10,
) -> SmsPreview:
    problems: list[str] = []
    try:
        prov.validate_template(template)
    except prov.ProvisioningError as exc:
        problems.append(exc.reason)
        template = Settings().sms_template
    max_parts = max(1, min(max_parts, prov.MAX_SMS_PARTS_LIMIT))
    message = Message(
        id="preview",
        account_id=0,
        origin=Origin.SMTP,
        submitter=sender,
        content=Content(text=body[:SAMPLE_MAX], subject=subject[:SAMPLE_MAX]),
        options=Options(),
        created_at=datetime(2000, 1, 1, tzinfo=UTC),
    )
    text = sms_text(message, Settings(sms_template=template), recipient)
    plan = plan_segments(text, max_parts=prov.MAX_SMS_PARTS_LIMIT)
    needed = plan.total_parts
    units = tuple(part.units for part in plan.parts)
    shown = text
    sent = needed
    if needed <= 1:
        verdict = "Fits in one SMS."
    elif policy is LongSmsPolicy.TRUNCATE:
        sent = 1
        single = plan_segments(text, max_parts=1)
        shown = _first_part(text, single.exceeds_max_parts, plan.encoding.value)
        verdict = f"Needs {needed} parts; only the first is sent (policy: truncate)."
    elif policy is LongSmsPolicy.REJECT:
        sent = 0
        verdict = f"Needs {needed} parts: refused at submission (policy: reject)."
    elif needed > max_parts:
        sent = 0
        verdict = f"Needs {needed} parts, more than the {max_parts} allowed: refused."
    else:
        verdict = f"Sent as {needed} concatenated parts, joined again by the handset."
    return SmsPreview(
        text=shown,
        encoding=ENCODING_NAMES.get(plan.encoding.value, plan.encoding.value),
        characters=len(text),
        parts=sent,
        parts_needed=needed,
        units_per_part=units,
        verdict=verdict,
        problems=tuple(problems),
    )


def _first_part(text: str, too_long: bool, encoding: str) -> str:
    """The text of a single SMS: 160 GSM 7-bit septets or 70 UCS-2 units (3GPP TS 23.038)."""
    if not too_long:
        return text
    limit = 160 if encoding == "gsm7" else 70
    out: list[str] = []
    for char in text:
        candidate = "".join(out) + char
        if plan_segments(candidate, max_parts=1).exceeds_max_parts or len(candidate) > limit:
            break
        out.append(char)
    return "".join(out)
