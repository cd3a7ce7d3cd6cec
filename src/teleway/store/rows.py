"""Domain values <-> table rows. Kept in one place so both directions stay in step with tables.py."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from teleway.core.model import (
    Attachment,
    Content,
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Device,
    Message,
    Options,
    Origin,
    ReportOn,
)

# The new rows of a message go to the database as positional tuples through the driver's
# executemany (store.writer): this is the gateway's hottest write path, so the values are
# converted once, here, instead of by SQLAlchemy's per-row parameter processing, exactly as
# tables.py's types would convert them: Timestamp -> epoch seconds, JSON -> text.
# tests/store/test_store_messages.py checks these column lists against tables.py.
MESSAGE_COLUMNS = (
    "id", "account_id", "origin", "submitter", "subject", "text", "data_coding", "raw",
    "attachments", "options", "created_at",
)  # fmt: skip
DELIVERY_COLUMNS = (
    "id", "message_id", "account_id", "seq", "recipient", "device", "state", "attempts",
    "next_attempt_at", "valid_until", "lease_owner", "lease_expires_at", "channel",
    "upstream_ids", "error", "created_at", "updated_at", "origin", "report",
)  # fmt: skip
EVENT_COLUMNS = ("delivery_id", "at", "from_state", "to_state", "reason")
OUTBOX_COLUMNS = (
    "kind", "origin", "account_id", "message_id", "delivery_id", "state", "payload", "status",
    "attempts", "next_attempt_at", "valid_until", "lease_owner", "lease_expires_at", "last_error",
    "created_at", "updated_at",
)  # fmt: skip

_EMPTY_LIST = "[]"
_dumps = json.dumps
_DEFAULT_OPTIONS = Options()
_DEFAULT_OPTIONS_JSON = _dumps(_DEFAULT_OPTIONS.to_dict())  # most messages: a fraction of dumps()
_OPTIONS_CACHE_SIZE = 1024
# An ESME or API client sends the same options (sender, TONs, report) message after message:
# their JSON is remembered by value. Keys hold only hashable values and the extras' types, so
# equal keys mean equal JSON (a datetime equal to one in another zone dumps as the same instant).
_options_json: dict[tuple[Any, ...], str] = {}


def _options_value(options: Options) -> str:
    if options == _DEFAULT_OPTIONS:
        return _DEFAULT_OPTIONS_JSON
    try:
        key = (
            options.valid_until,
            options.scheduled_at,
            options.sender_id,
            options.report,
            options.callback_url,
            options.priority,
            *options.extra.items(),
            *map(type, options.extra.values()),  # True == 1, but they dump differently
        )
        text = _options_json.get(key)
    except TypeError:  # a list or dict among the extras: not cached
        return _dumps(options.to_dict())
    if text is None:
        text = _dumps(options.to_dict())
        if len(_options_json) >= _OPTIONS_CACHE_SIZE:
            _options_json.clear()
        _options_json[key] = text
    return text


_epochs: dict[datetime, float] = {}  # recent conversions: accept() stamps all rows with a few
_EPOCHS_KEPT = 64


def _epoch(value: datetime | None) -> float | None:
    """Epoch seconds of an aware datetime. A message, its deliveries and events carry a few
    distinct times (now, valid until, ...) eight times over: recent conversions are
    remembered (equal datetimes are the same instant, so the same seconds)."""
    if value is None:
        return None
    seconds = _epochs.get(value)
    if seconds is None:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        seconds = value.timestamp()
        if len(_epochs) >= _EPOCHS_KEPT:
            _epochs.clear()
        _epochs[value] = seconds
    return seconds


def message_values(message: Message) -> tuple[Any, ...]:
    content = message.content
    attachments = (
        _dumps(
            [
                {
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "blob_id": a.blob_id,
                    "size": a.size,
                }
                for a in content.attachments
            ]
        )
        if content.attachments
        else _EMPTY_LIST
    )
    return (
        message.id,
        message.account_id,
        message.origin,  # StrEnum: a str the drivers bind as text
        message.submitter,
        content.subject,
        content.text,
        content.data_coding,
        content.raw,
        attachments,
        _options_value(message.options),
        _epoch(message.created_at),
    )


def delivery_values(delivery: Delivery) -> tuple[Any, ...]:
    return (
        delivery.id,
        delivery.message_id,
        delivery.account_id,
        delivery.seq,
        delivery.recipient,
        delivery.device,
        delivery.state,
        delivery.attempts,
        _epoch(delivery.next_attempt_at),
        _epoch(delivery.valid_until),
        delivery.lease_owner,
        _epoch(delivery.lease_expires_at),
        delivery.channel,
        _dumps(list(delivery.upstream_ids)) if delivery.upstream_ids else _EMPTY_LIST,
        delivery.error,
        _epoch(delivery.created_at),
        _epoch(delivery.updated_at),
        delivery.origin,
        delivery.report,
    )


def event_values(event: DeliveryEvent) -> tuple[Any, ...]:
    return (
        event.delivery_id,
        _epoch(event.at),
        event.from_state,
        event.to_state,
        event.reason,
    )


def message_from_row(row: Mapping[Any, Any]) -> Message:
    return Message(
        id=row["id"],
        account_id=row["account_id"],
        origin=Origin(row["origin"]),
        submitter=row["submitter"],
        content=Content(
            text=row["text"],
            subject=row["subject"],
            attachments=tuple(Attachment(**a) for a in row["attachments"]),
            data_coding=row["data_coding"],
            raw=None if row["raw"] is None else bytes(row["raw"]),
        ),
        options=Options.from_dict(row["options"]),
        created_at=row["created_at"],
    )


def delivery_from_row(row: Mapping[Any, Any]) -> Delivery:
    return Delivery(
        id=row["id"],
        message_id=row["message_id"],
        account_id=row["account_id"],
        seq=row["seq"],
        recipient=row["recipient"],
        device=Device(row["device"]),
        state=DeliveryState(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        valid_until=row["valid_until"],
        channel=row["channel"],
        upstream_ids=tuple(row["upstream_ids"]),
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        origin=Origin(row["origin"]),
        report=ReportOn(row["report"]),
    )


def event_from_row(row: Mapping[Any, Any]) -> DeliveryEvent:
    return DeliveryEvent(
        delivery_id=row["delivery_id"],
        at=row["at"],
        from_state=None if row["from_state"] is None else DeliveryState(row["from_state"]),
        to_state=DeliveryState(row["to_state"]),
        reason=row["reason"],
    )
