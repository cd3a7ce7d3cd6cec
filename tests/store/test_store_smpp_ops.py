"""`store.smpp_ops` (query/cancel/replace behind the SMPP server) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from store_helpers import Backend, submission

from teleway.core.accept import accept
from teleway.core.model import Content, DeliveryState, Options, ReportOn
from teleway.core.smpp_submit import Replacement
from teleway.store.smpp_ops import SmppOperations


@pytest.fixture
def sql(backend: Backend) -> Backend:
    if not backend.is_sql:
        pytest.skip("SQL stores only")
    return backend


def ops(backend: Backend) -> SmppOperations:
    assert backend.store is not None
    return SmppOperations(backend.store.db, backend.store.writer, backend.store.queue)


async def submitted(backend: Backend, *, later: bool = True, sender: str = "+447911123456") -> str:
    now = backend.clock.now()
    options = Options(sender_id=sender, scheduled_at=now + timedelta(hours=1) if later else None)
    accepted = await accept(
        submission(options=options), store=backend.messages, clock=backend.clock, ids=backend.ids
    )
    return accepted.message_id


async def test_message_of_is_per_account(sql: Backend) -> None:
    message_id = await submitted(sql)
    found = await ops(sql).message_of(message_id, 1)
    assert found is not None and found[0].id == message_id and len(found[1]) == 1
    assert await ops(sql).message_of(message_id, 2) is None
    assert await ops(sql).message_of("unknown", 1) is None


async def test_cancel_only_queued(sql: Backend) -> None:
    message_id = await submitted(sql)
    (delivery,) = (await ops(sql).message_of(message_id, 1))[1]  # type: ignore[index]
    now = sql.clock.now()
    cancelled = await ops(sql).cancel(delivery.id, now=now, reason="cancel_sm by test")
    assert cancelled is not None and cancelled.state is DeliveryState.CANCELLED
    assert await ops(sql).cancel(delivery.id, now=now, reason="again") is None
    events = await sql.messages.events_of(delivery.id)
    assert events[-1].to_state is DeliveryState.CANCELLED and "cancel_sm" in events[-1].reason


async def test_cancel_loses_to_a_lease(sql: Backend) -> None:
    """A delivery a dispatcher has taken (IN_FLIGHT) is not cancelled behind its back."""
    message_id = await submitted(sql, later=False)
    leases = await sql.queue.lease(
        worker="w1", now=sql.clock.now(), limit=10, lease_for=timedelta(seconds=60)
    )
    assert [lease.delivery.message_id for lease in leases] == [message_id]
    cancelled = await ops(sql).cancel(leases[0].delivery.id, now=sql.clock.now(), reason="too late")
    assert cancelled is None


async def test_queued_to_filters_sender(sql: Backend) -> None:
    first = await submitted(sql)
    second = await submitted(sql, sender="ACME")
    recipient = (await sql.messages.deliveries_of(first))[0].recipient
    assert await ops(sql).queued_to(1, recipient, "+447911123456") == [first]
    assert sorted(await ops(sql).queued_to(1, recipient, None)) == sorted([first, second])
    assert await ops(sql).queued_to(2, recipient, None) == []


async def test_replace_while_queued(sql: Backend) -> None:
    message_id = await submitted(sql)
    now = sql.clock.now()
    new = Replacement(
        content=Content(text="replaced", data_coding=0),
        scheduled_at=now + timedelta(minutes=5),
        valid_until=now + timedelta(hours=2),
        report=ReportOn.FINAL,
    )
    assert await ops(sql).replace(message_id, 1, new, now=now, reason="replace_sm")
    message = await sql.messages.get_message(message_id)
    assert message is not None and message.content.text == "replaced"
    assert message.options.report is ReportOn.FINAL
    (delivery,) = await sql.messages.deliveries_of(message_id)
    assert delivery.next_attempt_at == now + timedelta(minutes=5)
    assert delivery.valid_until == now + timedelta(hours=2)
    assert delivery.report is ReportOn.FINAL
    # another account cannot, and neither can anyone once it left QUEUED
    assert not await ops(sql).replace(message_id, 2, new, now=now, reason="x")
    await ops(sql).cancel(delivery.id, now=now, reason="cancelled")
    assert not await ops(sql).replace(message_id, 1, new, now=now, reason="x")


async def test_concurrent_cancels_cancel_once(sql: Backend) -> None:
    message_id = await submitted(sql)
    (delivery,) = await sql.messages.deliveries_of(message_id)
    results = await asyncio.gather(
        *(ops(sql).cancel(delivery.id, now=sql.clock.now(), reason=f"c{i}") for i in range(5))
    )
    assert sum(r is not None for r in results) == 1
