"""Per-part outcomes from upstream receipts (one `upstream_refs` row per SMS part)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, select, update

from teleway.core.model import Delivery
from teleway.store import tables
from teleway.store.engine import Database
from teleway.store.rows import delivery_from_row
from teleway.store.writer import Writer


class PartOutcomes:
    def __init__(self, db: Database, writer: Writer) -> None:
        self._db = db
        self._writer = writer

    async def record_receipt(
        self, candidates: Sequence[str], stat: str, now: datetime, *, interim: bool = False
    ) -> tuple[Delivery, list[str | None]] | None:
        """Mark the first stored upstream id among `candidates` with the receipt's `stat`;
        return its delivery and the stat of every part of that delivery in part order (None:
        no receipt yet). None when no candidate is stored (yet).

        An `interim` stat (ENROUTE, ACCEPTD) is only kept for a part without any stat yet:
        receipts may arrive out of order, and a late interim one must not hide a final one."""
        u, d = tables.upstream_refs, tables.deliveries

        def job(connection: Connection) -> tuple[Delivery, list[str | None]] | None:
            for candidate in candidates:
                found = connection.execute(
                    select(u.c.delivery_id).where(u.c.upstream_id == candidate)
                ).first()
                if found is not None:
                    break
            else:
                return None
            change = update(u).where(u.c.upstream_id == candidate)
            if interim:
                change = change.where(u.c.state.is_(None))
            connection.execute(change.values(state=stat, updated_at=now))
            states = [
                row.state
                for row in connection.execute(
                    select(u.c.state).where(u.c.delivery_id == found.delivery_id).order_by(u.c.part)
                )
            ]
            row = connection.execute(select(d).where(d.c.id == found.delivery_id)).mappings().one()
            return delivery_from_row(row), states

        return await self._writer.write(job)
