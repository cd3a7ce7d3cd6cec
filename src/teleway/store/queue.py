"""`WorkQueue` on SQLAlchemy Core: the deliveries table is the queue.

A delivery is *due* when it is QUEUED with `next_attempt_at <= now`, or IN_FLIGHT with a lease
that expired (its worker died), and its validity has not ended. `lease()` turns due deliveries
into IN_FLIGHT deliveries leased to one worker until `now + lease_for`.

No delivery is ever leased to two workers, because every queue write selects its rows and
updates them inside one transaction that excludes other writers of the same rows:

- SQLite: all writes of the process go through one writer connection whose transactions begin
  with `BEGIN IMMEDIATE`, i.e. hold the database's single write lock from the first statement
  (other processes on the same file wait on `busy_timeout`).
- PostgreSQL: the rows are picked with `SELECT ... FOR UPDATE SKIP LOCKED`: a row another
  transaction (another worker, another node) is taking is skipped, not waited for, and a picked
  row stays locked until our COMMIT.

Every change of a row writes a `delivery_events` row in the same transaction. Updates are
conditional on the state read in that transaction (`state = :seen AND state IN
sources_of(to_state) [AND lease_owner = :worker]`), never blind writes.

A *released* delivery (`release()`: handed to an upstream that reports the outcome later) is
IN_FLIGHT with no lease owner; its `next_attempt_at` then holds the time `expire_due` gives up
waiting for the outcome. It is never leased again; `transition()` without `worker` (a receipt)
moves it on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from teleway.core.lifecycle import InvalidTransition, sources_of
from teleway.core.model import FINAL_STATES, Delivery, DeliveryState, Device
from teleway.core.ports import Lease
from teleway.store import tables
from teleway.store.engine import Database
from teleway.store.messages import merge_ids, record_upstream_ids
from teleway.store.rows import delivery_from_row
from teleway.store.writer import WorkSignal, Writer

S = DeliveryState
_d = tables.deliveries
_NON_FINAL = tuple(state for state in DeliveryState if state not in FINAL_STATES)
MAX_LEASE = 1_000  # deliveries one lease() call takes at most
EXPIRED_REASON = "validity period ended"


class SqlWorkQueue:
    """Implements `core.ports.WorkQueue` (see the module docstring for the guarantees)."""

    def __init__(self, db: Database, writer: Writer, signal: WorkSignal) -> None:
        self._db = db
        self._writer = writer
        self._signal = signal

    async def lease(
        self,
        *,
        worker: str,
        now: datetime,
        limit: int,
        lease_for: timedelta,
        devices: frozenset[Device] | None = None,
    ) -> list[Lease]:
        limit = min(limit, MAX_LEASE)
        if limit <= 0 or (devices is not None and not devices):
            return []
        expires = now + lease_for
        device_values = None if devices is None else sorted(str(d) for d in devices)

        def job(connection: Connection) -> list[Lease]:
            def due(query: Any) -> Any:
                query = query.where(_d.c.valid_until > now)
                if device_values is not None:
                    query = query.where(_d.c.device.in_(device_values))
                return query.with_for_update(skip_locked=True)

            picked = select(_d.c.id, _d.c.state, _d.c.lease_owner)
            rows = list(
                connection.execute(
                    due(
                        picked.where(
                            _d.c.state == S.IN_FLIGHT.value,
                            _d.c.lease_owner.is_not(None),
                            _d.c.lease_expires_at <= now,
                        )
                        .order_by(_d.c.lease_expires_at)
                        .limit(limit)
                    )
                )
            )
            if len(rows) < limit:
                rows += list(
                    connection.execute(
                        due(
                            picked.where(_d.c.state == S.QUEUED.value, _d.c.next_attempt_at <= now)
                            .order_by(_d.c.next_attempt_at)
                            .limit(limit - len(rows))
                        )
                    )
                )
            if not rows:
                return []
            result = connection.execute(
                update(_d)
                .where(_d.c.id.in_([row.id for row in rows]))
                .values(
                    state=S.IN_FLIGHT.value,
                    lease_owner=worker,
                    lease_expires_at=expires,
                    attempts=_d.c.attempts + 1,
                    updated_at=now,
                )
                .returning(*_d.c)
            )
            by_id = {row["id"]: delivery_from_row(row) for row in result.mappings()}
            events = []
            leases = []
            for row in rows:
                delivery = by_id[row.id]
                reason = f"leased to {worker}, attempt {delivery.attempts}"
                if row.state == S.IN_FLIGHT.value:
                    reason = f"lease of {row.lease_owner} expired; {reason}"
                events.append(_event(row.id, now, S(row.state), S.IN_FLIGHT, reason))
                leases.append(Lease(delivery=delivery, worker=worker, expires_at=expires))
            connection.execute(tables.delivery_events.insert(), events)
            return leases

        return await self._writer.write(job)

    async def transition(
        self,
        delivery_id: str,
        to_state: DeliveryState,
        *,
        now: datetime,
        reason: str,
        worker: str | None = None,
        next_attempt_at: datetime | None = None,
        channel: str | None = None,
        upstream_ids: Sequence[str] | None = None,
        error: str | None = None,
        keep_lease: bool = False,
    ) -> Delivery | None:
        """See `core.ports.WorkQueue.transition`. Raises `InvalidTransition` for a target state
        no delivery can ever move to (e.g. ACCEPTED). `next_attempt_at`, `channel` and `error`
        are changed only when given; `upstream_ids` are added to those already recorded."""
        sources = sources_of(to_state)
        if not sources:
            raise InvalidTransition(None, to_state)
        values: dict[str, Any] = {"state": to_state.value, "updated_at": now}
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        if channel is not None:
            values["channel"] = channel
        if error is not None:
            values["error"] = error
        if not keep_lease:
            values["lease_owner"] = None
            values["lease_expires_at"] = None

        def job(connection: Connection) -> Delivery | None:
            return self._change(
                connection,
                delivery_id,
                allowed=sources,
                worker=worker,
                to_state=to_state,
                values=values,
                now=now,
                reason=reason,
                upstream_ids=upstream_ids or (),
            )

        wakes = to_state is S.QUEUED and (next_attempt_at is None or next_attempt_at <= now)
        return await self._writer.write(job, wakes=wakes)

    async def release(
        self,
        delivery_id: str,
        *,
        worker: str,
        now: datetime,
        reason: str,
        upstream_ids: Sequence[str] = (),
        channel: str | None = None,
        wait_until: datetime | None = None,
    ) -> Delivery | None:
        """See `core.ports.WorkQueue.release`: stays IN_FLIGHT (an IN_FLIGHT -> IN_FLIGHT event
        records `reason`), the lease is cleared and `next_attempt_at` holds the end of the wait
        (`wait_until`, default `valid_until`)."""
        values: dict[str, Any] = {
            "updated_at": now,
            "lease_owner": None,
            "lease_expires_at": None,
            "next_attempt_at": _d.c.valid_until if wait_until is None else wait_until,
        }
        if channel is not None:
            values["channel"] = channel

        def job(connection: Connection) -> Delivery | None:
            return self._change(
                connection,
                delivery_id,
                allowed=frozenset({S.IN_FLIGHT}),
                worker=worker,
                to_state=S.IN_FLIGHT,
                values=values,
                now=now,
                reason=reason,
                upstream_ids=upstream_ids,
            )

        return await self._writer.write(job)

    def _change(
        self,
        connection: Connection,
        delivery_id: str,
        *,
        allowed: frozenset[DeliveryState],
        worker: str | None,
        to_state: DeliveryState,
        values: dict[str, Any],
        now: datetime,
        reason: str,
        upstream_ids: Sequence[str],
    ) -> Delivery | None:
        """Read the row (locked), check the conditions, update it conditionally, add the event."""
        seen = (
            connection.execute(
                select(_d.c.state, _d.c.lease_owner, _d.c.upstream_ids)
                .where(_d.c.id == delivery_id)
                .with_for_update()
            )
        ).first()
        if seen is None:
            return None
        from_state = S(seen.state)
        if from_state not in allowed or (worker is not None and seen.lease_owner != worker):
            return None
        if upstream_ids:
            values = {**values, "upstream_ids": merge_ids(seen.upstream_ids, upstream_ids)}
        condition = [_d.c.id == delivery_id, _d.c.state == from_state.value]
        if worker is not None:
            condition.append(_d.c.lease_owner == worker)
        row = (
            connection.execute(update(_d).where(*condition).values(**values).returning(*_d.c))
            .mappings()
            .first()
        )
        if row is None:  # the row is locked, so this means a bug, not a lost race
            return None
        connection.execute(
            tables.delivery_events.insert(),
            [_event(delivery_id, now, from_state, to_state, reason)],
        )
        if upstream_ids:
            record_upstream_ids(self._db, connection, delivery_id, upstream_ids, now)
        return delivery_from_row(row)

    async def expire_due(self, *, now: datetime, limit: int = 1000) -> list[Delivery]:
        if limit <= 0:
            return []

        def job(connection: Connection) -> list[Delivery]:
            picked = select(_d.c.id, _d.c.state, _d.c.lease_owner)
            groups = (
                # queued until the end of their validity
                picked.where(_d.c.state == S.QUEUED.value, _d.c.valid_until <= now),
                # leased to a worker that died, validity over
                picked.where(
                    _d.c.state == S.IN_FLIGHT.value,
                    _d.c.lease_owner.is_not(None),
                    _d.c.lease_expires_at <= now,
                    _d.c.valid_until <= now,
                ),
                # released, still no outcome at the end of the wait
                picked.where(
                    _d.c.state == S.IN_FLIGHT.value,
                    _d.c.lease_owner.is_(None),
                    _d.c.next_attempt_at <= now,
                ),
            )
            rows: list[Any] = []
            for query in groups:
                if len(rows) >= limit:
                    break
                rows += list(
                    connection.execute(
                        query.limit(limit - len(rows)).with_for_update(skip_locked=True)
                    )
                )
            if not rows:
                return []
            result = connection.execute(
                update(_d)
                .where(_d.c.id.in_([row.id for row in rows]))
                .values(
                    state=S.EXPIRED.value,
                    lease_owner=None,
                    lease_expires_at=None,
                    error=EXPIRED_REASON,
                    updated_at=now,
                )
                .returning(*_d.c)
            )
            by_id = {row["id"]: delivery_from_row(row) for row in result.mappings()}
            connection.execute(
                tables.delivery_events.insert(),
                [
                    _event(
                        row.id,
                        now,
                        S(row.state),
                        S.EXPIRED,
                        EXPIRED_REASON
                        if row.state == S.QUEUED.value or row.lease_owner is not None
                        else "no outcome reported before the wait ended",
                    )
                    for row in rows
                ],
            )
            return [by_id[row.id] for row in rows]

        return await self._writer.write(job)

    async def wait_for_work(self, timeout: float) -> None:
        """SQLite: woken by commits of this process, other processes' work is found by the
        caller's next poll after `timeout`. PostgreSQL: also woken by NOTIFY from other nodes."""
        await self._signal.wait(timeout)

    async def depth(self) -> dict[DeliveryState, int]:
        counts = dict.fromkeys(_NON_FINAL, 0)
        query = (
            select(_d.c.state, func.count())
            .where(_d.c.state.in_([s.value for s in _NON_FINAL]))
            .group_by(_d.c.state)
        )

        def read(connection: Connection) -> dict[DeliveryState, int]:
            for state, count in connection.execute(query):
                counts[S(state)] = count
            return counts

        return await self._db.read(read)


def _event(
    delivery_id: str,
    at: datetime,
    from_state: DeliveryState | None,
    to_state: DeliveryState,
    reason: str,
) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "at": at,
        "from_state": None if from_state is None else from_state.value,
        "to_state": to_state.value,
        "reason": reason,
    }
