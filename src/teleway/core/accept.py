"""`accept()`: the single door through which every message enters the gateway.

An ingress may tell its client OK only after `accept()` returned: by then the message and one
delivery per recipient are committed to the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from teleway.core.model import (
    Accepted,
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Device,
    Message,
    Recipient,
    Submission,
)
from teleway.core.numbers import InvalidNumber, normalise_number
from teleway.core.ports import Clock, IdSource, MessageStore, NewMessage

MAX_TEXT_CHARS = 64 * 1024  # longest text kept for one message (message_payload is 64 KiB)
MAX_VALIDITY = timedelta(days=30)


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One reason a submission was refused: `field` names what was wrong (`recipients[2]`)."""

    field: str
    reason: str


class SubmissionRejected(ValueError):
    """The submission is invalid; nothing was stored. Ingresses map it to their wire codes."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.reason}" for p in problems))
        self.problems = problems


def parse_recipient(recipient: Recipient, default_country: str | None) -> str:
    """E.164 of one recipient or InvalidNumber; ingresses use it to answer per recipient."""
    return normalise_number(recipient.number, default_country)


def validate(submission: Submission) -> list[str]:
    """Check a submission; return the E.164 recipients or raise SubmissionRejected."""
    account = submission.account
    settings = account.settings
    problems: list[Problem] = []
    if not account.enabled:
        problems.append(Problem(field="account", reason="account is disabled"))
    recipients = submission.recipients
    if not recipients:
        problems.append(Problem(field="recipients", reason="at least one recipient is required"))
    if len(recipients) > settings.max_recipients:
        problems.append(
            Problem(
                field="recipients",
                reason=f"{len(recipients)} recipients, the account allows {settings.max_recipients}",
            )
        )
    numbers: list[str] = []
    for index, recipient in enumerate(recipients):
        try:
            numbers.append(parse_recipient(recipient, settings.default_country))
        except InvalidNumber as exc:
            problems.append(Problem(field=f"recipients[{index}]", reason=exc.reason))
        if not isinstance(recipient.device, Device):
            problems.append(Problem(field=f"recipients[{index}]", reason="unknown device"))
    content = submission.content
    if not content.text and not content.subject and not content.attachments and not content.raw:
        problems.append(Problem(field="content", reason="the message is empty"))
    if len(content.text) > MAX_TEXT_CHARS:
        problems.append(
            Problem(field="content", reason=f"text longer than {MAX_TEXT_CHARS} characters")
        )
    if any(r.device is Device.FAX for r in recipients) and not (
        content.attachments or content.text
    ):
        problems.append(Problem(field="content", reason="a fax needs a document or text"))
    if problems:
        raise SubmissionRejected(problems)
    return numbers


async def accept(
    submission: Submission, *, store: MessageStore, clock: Clock, ids: IdSource
) -> Accepted:
    """Validate and durably commit a submission; return the ids the client is given."""
    message, deliveries, events, accepted = prepare(submission, clock.now(), ids)
    await store.add_message(message, deliveries, events)
    return accepted


async def accept_many(
    submissions: Sequence[Submission], *, store: MessageStore, clock: Clock, ids: IdSource
) -> list[Accepted | SubmissionRejected]:
    """`accept` for submissions an ingress has in hand together (a window of submit_sm read
    at once), in one store write: for each, in order, its `Accepted` or the
    `SubmissionRejected` saying why it was refused. The valid ones are committed together;
    a store error (`StoreUnavailable`, `StoreFull`, ...) is raised and then none of them is
    stored."""
    now = clock.now()
    results: list[Accepted | SubmissionRejected] = []
    batch: list[NewMessage] = []
    for submission in submissions:
        try:
            message, deliveries, events, accepted = prepare(submission, now, ids)
        except SubmissionRejected as exc:
            results.append(exc)
            continue
        batch.append((message, deliveries, events))
        results.append(accepted)
    if batch:
        await store.add_messages(batch)
    return results


def prepare(
    submission: Submission, now: datetime, ids: IdSource
) -> tuple[Message, list[Delivery], list[DeliveryEvent], Accepted]:
    """Validate a submission and build what `accept` stores: the message, one delivery per
    recipient (QUEUED, or scheduled) and their ACCEPTED and QUEUED events."""
    numbers = validate(submission)
    options = submission.options
    valid_until = options.valid_until or now + timedelta(
        seconds=submission.account.settings.validity_seconds
    )
    problems: list[Problem] = []
    if valid_until <= now:
        problems.append(Problem(field="validity", reason="validity period already ended"))
    elif valid_until - now > MAX_VALIDITY:
        problems.append(Problem(field="validity", reason="validity period longer than 30 days"))
    due = options.scheduled_at or now
    if options.scheduled_at is not None and options.scheduled_at >= valid_until:
        problems.append(
            Problem(field="schedule", reason="scheduled after the validity period ends")
        )
    if problems:
        raise SubmissionRejected(problems)

    message = Message(
        id=ids.new_id(),
        account_id=submission.account.id,
        origin=submission.origin,
        submitter=submission.submitter,
        content=submission.content,
        options=options,
        created_at=now,
    )
    deliveries: list[Delivery] = []
    events: list[DeliveryEvent] = []
    via = f"accepted via {submission.origin} from {submission.submitter}"
    queued = "queued" if due <= now else f"scheduled for {due.isoformat()}"
    for seq, (recipient, number) in enumerate(zip(submission.recipients, numbers, strict=True)):
        delivery = Delivery(
            id=ids.new_id(),
            message_id=message.id,
            account_id=message.account_id,
            seq=seq,
            recipient=number,
            device=recipient.device,
            state=DeliveryState.QUEUED,
            origin=submission.origin,
            report=options.report,
            next_attempt_at=due,
            valid_until=valid_until,
            created_at=now,
            updated_at=now,
        )
        deliveries.append(delivery)
        events.append(
            DeliveryEvent(
                delivery_id=delivery.id,
                at=now,
                from_state=None,
                to_state=DeliveryState.ACCEPTED,
                reason=via,
            )
        )
        events.append(
            DeliveryEvent(
                delivery_id=delivery.id,
                at=now,
                from_state=DeliveryState.ACCEPTED,
                to_state=DeliveryState.QUEUED,
                reason=queued,
            )
        )
    accepted = Accepted(
        message_id=message.id,
        delivery_ids=tuple(d.id for d in deliveries),
        recipients=tuple(numbers),
    )
    return message, deliveries, events, accepted
