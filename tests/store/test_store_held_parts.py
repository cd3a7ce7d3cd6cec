"""Parts of replies acknowledged before their message was whole (store.inbound.HeldReplyParts)
on SQLite and PostgreSQL: committed on save, reloaded in order, forgotten by message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from teleway.core.model import HeldPart
from teleway.store import Store
from teleway.store.inbound import HeldReplyParts

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def part(number: int, *, reference: int = 7, source: str = "4915112345678") -> HeldPart:
    return HeldPart(
        upstream="carrier",
        source_addr=source,
        destination_addr="447400123456",
        data_coding=8,
        reference=reference,
        total=3,
        number=number,
        payload=bytes([0, number, 0xD8, 0x3D]),  # binary: half a surrogate pair, kept as is
        received_at=NOW + timedelta(seconds=number),
    )


async def test_saved_parts_come_back_in_order_and_go_by_message(store: Store) -> None:
    held = HeldReplyParts(store.db, store.writer)
    mine = [part(2), part(1)]
    other = part(1, reference=8)
    stranger = part(1, source="4915199999999")
    for item in (*mine, other, stranger):
        await held.save(item)
    # a second instance (after a restart) reads what the first committed
    again = HeldReplyParts(store.db, store.writer)
    assert await again.load() == [*mine, other, stranger]
    assert await again.forget(mine[0].group) == 2
    assert await again.load() == [other, stranger]
    assert await again.forget(mine[0].group) == 0
