"""`accept()`: the single door through which every message enters the gateway.

An ingress may tell its client OK only after `accept()` returned: by then the message and one
delivery per recipient are committed to the store.

With a `Handoff` (this process's dispatcher), a delivery due now that a local worker has room
for is stored already leased to that worker, and its lease handed over after the commit: the
first attempt needs no further store write (see `core.ports.Handoff`).
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
from teleway.core.ports import (
    Clock,
    Handoff,
    IdSource,
    Lease,
    MessageStore,
    NewMessage,
    lease_reason,
)
from teleway.core.senders import sender_allowed

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
    sender = submission.options.sender_id
    if settings.allowed_senders and not sender_allowed(
        settings.allowed_senders, sender, settings.sender_id
    ):
        problems.append(Problem(field="sender", reason=f"the account may not send as {sender!r}"))
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
    submission: Submission,
    *,
    store: MessageStore,
    clock: Clock,
    ids: IdSource,
    handoff: Handoff | None = None,
) -> Accepted:
    """Validate and durably commit a submission; return the ids the client is given."""
    message, deliveries, events, accepted = prepare(submission, clock.now(), ids, handoff)
    if handoff is None:
        await store.add_message(message, deliveries, events)
    else:
        await commit_and_hand([(message, deliveries, events)], store, handoff)
    return accepted


async def accept_many(
    submissions: Sequence[Submission],
    *,
    store: MessageStore,
    clock: Clock,
    ids: IdSource,
    handoff: Handoff | None = None,
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
            message, deliveries, events, accepted = prepare(submission, now, ids, handoff)
        except SubmissionRejected as exc:
            results.append(exc)
            continue
        batch.append((message, deliveries, events))
        results.append(accepted)
    if batch:
        if handoff is None:
            await store.add_messages(batch)
        else:
            await commit_and_hand(batch, store, handoff)
    return results


async def commit_and_hand(
    batch: Sequence[NewMessage], store: MessageStore, handoff: Handoff
) -> None:
    """Commit `batch`, then hand the deliveries stored leased (claimed in `prepare`) to their
    workers; on any failure give the claims back."""
    leases = [
        Lease(delivery=d, worker=d.lease_owner, expires_at=d.lease_expires_at, message=message)
        for message, deliveries, _ in batch
        for d in deliveries
        if d.lease_owner is not None and d.lease_expires_at is not None
    ]
    if not leases:
        await store.add_messages(batch)
        return
    try:
        await store.add_messages(batch)
    except BaseException:
        handoff.withdraw(leases)
        raise
    handoff.hand(leases)


def prepare(
    submission: Submission, now: datetime, ids: IdSource, handoff: Handoff | None = None
) -> tuple[Message, list[Delivery], list[DeliveryEvent], Accepted]:
    """Validate a submission and build what `accept` stores: the message, one delivery per
    recipient (QUEUED, or scheduled) and their ACCEPTED and QUEUED events. A delivery due now
    that `handoff` claims is IN_FLIGHT instead, leased to the claiming worker (attempt 1), with
    the QUEUED -> IN_FLIGHT event `lease()` would have written."""
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
    if due > now:
        handoff = None  # scheduled: nothing to hand over now
    for seq, (recipient, number) in enumerate(zip(submission.recipients, numbers, strict=True)):
        claim = None if handoff is None else handoff.claim(recipient.device)
        delivery = Delivery(
            id=ids.new_id(),
            message_id=message.id,
            account_id=message.account_id,
            seq=seq,
            recipient=number,
            device=recipient.device,
            state=DeliveryState.QUEUED if claim is None else DeliveryState.IN_FLIGHT,
            origin=submission.origin,
            report=options.report,
            attempts=0 if claim is None else 1,
            next_attempt_at=due,
            valid_until=valid_until,
            created_at=now,
            updated_at=now,
            lease_owner=None if claim is None else claim.worker,
            lease_expires_at=None if claim is None else now + claim.lease_for,
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
        if claim is not None:
            events.append(
                DeliveryEvent(
                    delivery_id=delivery.id,
                    at=now,
                    from_state=DeliveryState.QUEUED,
                    to_state=DeliveryState.IN_FLIGHT,
                    reason=lease_reason(claim.worker, 1),
                )
            )
    accepted = Accepted(
        message_id=message.id,
        delivery_ids=tuple(d.id for d in deliveries),
        recipients=tuple(numbers),
    )
    return message, deliveries, events, accepted
