"""The REST API's request and response bodies: parsing with field-level reasons, rendering.

Parsing never trusts a type: every value is checked and each problem is reported with the
field it belongs to (`recipients[1].device`), all of them at once, so a client fixes a request
in one round. Unknown fields are refused (a misspelt `sender_ID` silently ignored would send
from the wrong sender). The OpenAPI document (`openapi.py`) describes the same shapes; the
tests check that every response matches it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from teleway.core.accept import MAX_TEXT_CHARS, MAX_VALIDITY
from teleway.core.model import (
    Attachment,
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Device,
    Message,
    Origin,
    Recipient,
)
from teleway.web.api.problems import FieldError

MAX_SUBJECT_CHARS = 998  # RFC 5322 2.1.1 line limit: subjects come from e-mail too
MAX_NUMBER_CHARS = 32  # before normalisation (spaces, dashes, "00" prefixes)
MAX_URL_CHARS = 2048
MAX_SENDER_ALPHA = 11  # GSM 03.40 9.1.2.5: alphanumeric address, 11 characters
MAX_SENDER_DIGITS = 16  # E.164 15 digits and a '+'
MAX_ATTACHMENTS = 10
ATTACHMENT_TYPES = frozenset(
    {
        # fax documents (rendered to TIFF G3/G4)
        "application/pdf",
        "image/tiff",
        "image/png",
        "image/jpeg",
        "text/plain",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.oasis.opendocument.text",
        "application/rtf",
        # voice messages
        "audio/wav",
        "audio/x-wav",
        "audio/mpeg",
        "audio/ogg",
    }
)

_ALPHA_SENDER = re.compile(r"[A-Za-z0-9.\-_&][A-Za-z0-9 .\-_&]{0,10}")
# RFC 3339 5.6 date-time (the offset is required; fractions of a second allowed)
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_NUMERIC_SENDER = re.compile(r"\+?[0-9]{1,15}")


@dataclass(frozen=True, kw_only=True)
class MessageRequest:
    """A validated `POST /messages` body (before `accept()`, which checks numbers and limits
    that depend on the account)."""

    recipients: tuple[Recipient, ...]
    text: str
    subject: str
    validity: timedelta | None
    schedule: datetime | None
    sender_id: str | None
    callback_url: str | None


def _str(
    value: Any, field: str, errors: list[FieldError], *, most: int, least: int = 0
) -> str | None:
    if not isinstance(value, str):
        errors.append(FieldError(field=field, reason=f"must be a string, not {_kind(value)}"))
        return None
    if len(value) < least:
        errors.append(FieldError(field=field, reason="must not be empty"))
        return None
    if len(value) > most:
        errors.append(FieldError(field=field, reason=f"longer than {most} characters"))
        return None
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _unknown(data: Mapping[str, Any], known: Sequence[str], prefix: str) -> list[FieldError]:
    return [
        FieldError(field=f"{prefix}{name}", reason="unknown field")
        for name in data
        if name not in known
    ]


def parse_datetime(value: str) -> datetime:
    """RFC 3339 date-time with an offset (`2026-11-22T10:00:00Z`); ValueError otherwise."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time such as 2026-11-22T10:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError as exc:  # e.g. February 30th
        raise ValueError(f"not a valid date-time: {exc}") from exc
    return parsed.astimezone(UTC)


def valid_callback_url(value: str) -> str | None:
    """The reason a webhook URL is refused, or None. Absolute http(s) only, no credentials
    (they would be logged with the URL)."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http:// or https:// URL"
    if parts.username or parts.password:
        return "must not carry a user name or password"
    if port == 0:
        return "has port 0"
    return None


def parse_message(
    data: Any, *, max_recipients: int
) -> tuple[MessageRequest | None, list[FieldError]]:
    """Check a decoded JSON body; return the request or every problem found."""
    errors: list[FieldError] = []
    if not isinstance(data, dict):
        return None, [FieldError(field="(body)", reason=f"must be an object, not {_kind(data)}")]
    errors += _unknown(data, ("recipients", "text", "subject", "options"), "")

    recipients: list[Recipient] = []
    raw = data.get("recipients")
    if raw is None:
        errors.append(FieldError(field="recipients", reason="is required"))
    elif not isinstance(raw, list):
        errors.append(FieldError(field="recipients", reason=f"must be an array, not {_kind(raw)}"))
    elif not raw:
        errors.append(FieldError(field="recipients", reason="at least one recipient is required"))
    elif len(raw) > max_recipients:
        errors.append(
            FieldError(
                field="recipients",
                reason=f"{len(raw)} recipients, at most {max_recipients} per request",
            )
        )
    else:
        for index, item in enumerate(raw):
            where = f"recipients[{index}]"
            if not isinstance(item, dict):
                errors.append(
                    FieldError(field=where, reason=f"must be an object, not {_kind(item)}")
                )
                continue
            errors += _unknown(item, ("number", "device"), f"{where}.")
            number = item.get("number")
            if number is None:
                errors.append(FieldError(field=f"{where}.number", reason="is required"))
                number = None
            else:
                number = _str(number, f"{where}.number", errors, most=MAX_NUMBER_CHARS, least=1)
            device = Device.SMS
            if "device" in item:
                value = item["device"]
                try:
                    if not isinstance(value, str):
                        raise ValueError
                    device = Device(value)
                except ValueError:
                    choices = ", ".join(d.value for d in Device)
                    errors.append(
                        FieldError(
                            field=f"{where}.device",
                            reason=f"unknown device {value!r}: one of {choices}",
                        )
                    )
            if number is not None:
                recipients.append(Recipient(number=number, device=device))

    text = ""
    if "text" in data:
        text = _str(data["text"], "text", errors, most=MAX_TEXT_CHARS) or ""
    subject = ""
    if "subject" in data:
        subject = _str(data["subject"], "subject", errors, most=MAX_SUBJECT_CHARS) or ""

    validity: timedelta | None = None
    schedule: datetime | None = None
    sender_id: str | None = None
    callback_url: str | None = None
    options = data.get("options")
    if options is not None and not isinstance(options, dict):
        errors.append(
            FieldError(field="options", reason=f"must be an object, not {_kind(options)}")
        )
    elif options:
        errors += _unknown(
            options, ("validity", "schedule", "sender_id", "callback_url"), "options."
        )
        if options.get("validity") is not None:
            value = options["validity"]
            most = int(MAX_VALIDITY.total_seconds())
            if not isinstance(value, int) or isinstance(value, bool):
                errors.append(
                    FieldError(
                        field="options.validity",
                        reason=f"must be an integer number of seconds, not {_kind(value)}",
                    )
                )
            elif not 1 <= value <= most:
                errors.append(
                    FieldError(
                        field="options.validity", reason=f"must be between 1 and {most} seconds"
                    )
                )
            else:
                validity = timedelta(seconds=value)
        if options.get("schedule") is not None:
            try:
                schedule = parse_datetime(options["schedule"])
            except ValueError as exc:
                errors.append(FieldError(field="options.schedule", reason=str(exc)))
        if options.get("sender_id") is not None:
            value = _str(options["sender_id"], "options.sender_id", errors, most=20, least=1)
            if value is not None:
                if _NUMERIC_SENDER.fullmatch(value) or _ALPHA_SENDER.fullmatch(value):
                    sender_id = value
                else:
                    errors.append(
                        FieldError(
                            field="options.sender_id",
                            reason=(
                                f"must be a number (up to 15 digits) or up to "
                                f"{MAX_SENDER_ALPHA} letters, digits and spaces"
                            ),
                        )
                    )
        if options.get("callback_url") is not None:
            value = _str(
                options["callback_url"], "options.callback_url", errors, most=MAX_URL_CHARS
            )
            if value is not None:
                why = valid_callback_url(value)
                if why:
                    errors.append(FieldError(field="options.callback_url", reason=why))
                else:
                    callback_url = value
    if errors:
        return None, errors
    return (
        MessageRequest(
            recipients=tuple(recipients),
            text=text,
            subject=subject,
            validity=validity,
            schedule=schedule,
            sender_id=sender_id,
            callback_url=callback_url,
        ),
        [],
    )


# --- responses -------------------------------------------------------------------------------


def when(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="milliseconds")


def attachment_json(a: Attachment) -> dict[str, Any]:
    return {"filename": a.filename, "content_type": a.content_type, "size": a.size}


def message_json(message: Message) -> dict[str, Any]:
    o = message.options
    return {
        "id": message.id,
        "origin": str(message.origin),
        "submitter": message.submitter,
        "created_at": when(message.created_at),
        "subject": message.content.subject,
        "text": message.content.text,
        "attachments": [attachment_json(a) for a in message.content.attachments],
        "options": {
            "valid_until": when(o.valid_until),
            "scheduled_at": when(o.scheduled_at),
            "sender_id": o.sender_id,
            "callback_url": o.callback_url,
            "report": str(o.report),
        },
    }


def event_json(event: DeliveryEvent) -> dict[str, Any]:
    return {
        "at": when(event.at),
        "from": None if event.from_state is None else str(event.from_state),
        "to": str(event.to_state),
        "reason": event.reason,
    }


def delivery_json(
    delivery: Delivery,
    *,
    events: Sequence[DeliveryEvent] | None = None,
    parts: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": delivery.id,
        "recipient": delivery.recipient,
        "device": str(delivery.device),
        "state": str(delivery.state),
        "final": delivery.state.is_final,
        "attempts": delivery.attempts,
        "channel": delivery.channel,
        "error": delivery.error,
        "upstream_ids": list(delivery.upstream_ids),
        "valid_until": when(delivery.valid_until),
        "updated_at": when(delivery.updated_at),
    }
    if events is not None:
        body["events"] = [event_json(e) for e in events]
    if parts is not None:
        body["parts"] = list(parts)
    return body


def state_counts_json(states: Sequence[DeliveryState]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in states:
        counts[str(state)] = counts.get(str(state), 0) + 1
    return counts


def origin_or_none(value: str | None) -> Origin | None:
    return None if value is None else Origin(value)
