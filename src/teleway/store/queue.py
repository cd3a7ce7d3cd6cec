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
conditional (compare and set: `WHERE state = :seen [AND lease_owner = :worker]`, where `:seen`
is one of `sources_of(to_state)`), never blind writes. When `to_state` can be reached from one
state only (IN_FLIGHT -> DELIVERED) that state is `:seen` and the UPDATE alone decides;
otherwise the row is read first in the same transaction (locked: `FOR UPDATE` on PostgreSQL,
the write lock on SQLite) to learn which state the event comes from.

A *released* delivery (`release()`: handed to an upstream that reports the outcome later) is
IN_FLIGHT with no lease owner; its `next_attempt_at` then holds the time `expire_due` gives up
waiting for the outcome. It is never leased again; `transition()` without `worker` (a receipt)
moves it on.

`lease()` and `release_many()` are the dispatcher's hot path (one release per submitted SMS): N releases of one
worker become one job of a few driver-level statements (one locked read of the N rows, one
multi-row conditional UPDATE, one multi-row upsert of the upstream ids), because SQLAlchemy's
per-statement overhead, not SQLite, was most of the writer thread's time per release. `lease()`
is driver-level SQL too (two picking reads, one UPDATE ... RETURNING, one read of the messages).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from typing import Any

from sqlalchemy import JSON, String, Text, bindparam, func, select, update
from sqlalchemy.engine import Connection

from teleway.core.lifecycle import InvalidTransition, sources_of
from teleway.core.model import FINAL_STATES, Delivery, DeliveryState, Device, Message
from teleway.core.ports import Lease, Release, lease_reason
from teleway.store import tables
from teleway.store.engine import Database
from teleway.store.messages import merge_ids, record_upstream_ids
from teleway.store.outbox import report_row
from teleway.store.rows import (
    DELIVERY_COLUMNS,
    MESSAGE_COLUMNS,
    delivery_from_row,
    message_from_row,
)
from teleway.store.writer import EventRows, WorkSignal, Writer

S = DeliveryState
_d = tables.deliveries
_NON_FINAL = tuple(state for state in DeliveryState if state not in FINAL_STATES)
MAX_LEASE = 1_000  # deliveries one lease() call takes at most
EXPIRED_REASON = "validity period ended"


# Statements of the per-delivery hot path, built once (building and hashing a SQLAlchemy
# statement costs more than running it on SQLite).
_SEEN = (
    select(_d.c.state, _d.c.lease_owner, _d.c.upstream_ids)
    .where(_d.c.id == bindparam("delivery_id"))
    .with_for_update()
)


@cache
def _update_statement(
    *, with_worker: bool, keep_lease: bool, releases: bool, sets_upstream_ids: bool
) -> Any:
    """UPDATE ... WHERE id = :delivery_id AND state = :seen_state [AND lease_owner = :worker]
    RETURNING *; optional values (NULL parameters) leave their column as it is."""
    stamp = tables.Timestamp()
    condition = [_d.c.id == bindparam("delivery_id"), _d.c.state == bindparam("seen_state")]
    if with_worker:
        condition.append(_d.c.lease_owner == bindparam("worker"))
    # a released delivery keeps in next_attempt_at the end of its wait, valid_until by default
    next_default = _d.c.valid_until if releases else _d.c.next_attempt_at
    values: dict[str, Any] = {
        "state": bindparam("to_state"),
        "updated_at": bindparam("now", type_=stamp),
        "next_attempt_at": func.coalesce(bindparam("next_attempt_at", type_=stamp), next_default),
        "channel": func.coalesce(bindparam("channel", type_=String()), _d.c.channel),
        "error": func.coalesce(bindparam("error", type_=Text()), _d.c.error),
    }
    if sets_upstream_ids:
        values["upstream_ids"] = bindparam("upstream_ids", type_=JSON())
    if not keep_lease:
        values["lease_owner"] = None
        values["lease_expires_at"] = None
    return update(_d).where(*condition).values(**values).returning(*_d.c)


@dataclass(frozen=True, kw_only=True)
class _Change:
    """One conditional change of a delivery (transition or release)."""

    delivery_id: str
    allowed: frozenset[DeliveryState]
    worker: str | None
    to_state: DeliveryState
    now: datetime
    reason: str
    next_attempt_at: datetime | None
    channel: str | None
    error: str | None
    upstream_ids: Sequence[str]
    keep_lease: bool
    releases: bool = False


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

        postgres = self._db.is_postgresql

        def job(connection: Connection, events: EventRows) -> list[Lease]:
            return _lease_rows(
                connection, events, worker, now, expires, limit, device_values, postgres
            )

        return await self._writer.write_logged(job)

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
        change = _Change(
            delivery_id=delivery_id,
            allowed=sources,
            worker=worker,
            to_state=to_state,
            now=now,
            reason=reason,
            next_attempt_at=next_attempt_at,
            channel=channel,
            error=error,
            upstream_ids=upstream_ids or (),
            keep_lease=keep_lease,
        )
        wakes = to_state is S.QUEUED and (next_attempt_at is None or next_attempt_at <= now)
        return await self._writer.write_logged(partial(self._change, change), wakes=wakes)

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
        change = _Change(
            delivery_id=delivery_id,
            allowed=frozenset({S.IN_FLIGHT}),
            worker=worker,
            to_state=S.IN_FLIGHT,
            now=now,
            reason=reason,
            next_attempt_at=wait_until,
            channel=channel,
            error=None,
            upstream_ids=upstream_ids,
            keep_lease=False,
            releases=True,
        )
        return await self._writer.write_logged(partial(self._change, change))

    async def release_many(
        self, releases: Sequence[Release], *, worker: str, now: datetime
    ) -> list[Delivery | None]:
        """See `core.ports.WorkQueue.release_many`: one writer item, a few statements for all."""
        if not releases:
            return []
        postgres = self._db.is_postgresql
        return await self._writer.write_logged(
            partial(_release_rows, list(releases), worker, now, postgres)
        )

    def _change(
        self, change: _Change, connection: Connection, events: EventRows
    ) -> Delivery | None:
        """Read the row (locked), check the conditions, update it conditionally (compare and
        set on the state read), add the event."""
        parameters: dict[str, Any] = {
            "delivery_id": change.delivery_id,
            "worker": change.worker,
            "to_state": change.to_state.value,
            "now": change.now,
            "next_attempt_at": change.next_attempt_at,
            "channel": change.channel,
            "error": change.error,
        }
        if len(change.allowed) == 1 and not change.upstream_ids:
            # One state it can come from (e.g. IN_FLIGHT -> DELIVERED): the conditional UPDATE
            # alone decides, no need to read the row first.
            (from_state,) = change.allowed
            parameters["seen_state"] = from_state.value
        else:
            seen = connection.execute(_SEEN, {"delivery_id": change.delivery_id}).first()
            if seen is None:
                return None
            from_state = S(seen.state)
            if from_state not in change.allowed:
                return None
            if change.worker is not None and seen.lease_owner != change.worker:
                return None
            parameters["seen_state"] = from_state.value
            if change.upstream_ids:
                parameters["upstream_ids"] = merge_ids(seen.upstream_ids, change.upstream_ids)
        statement = _update_statement(
            with_worker=change.worker is not None,
            keep_lease=change.keep_lease,
            releases=change.releases,
            sets_upstream_ids="upstream_ids" in parameters,
        )
        row = connection.execute(statement, parameters).mappings().first()
        if row is None:  # gone, or not in the state / lease the change needs
            return None
        events.append(
            _event(change.delivery_id, change.now, from_state, change.to_state, change.reason)
        )
        if change.upstream_ids:
            record_upstream_ids(
                self._db, connection, change.delivery_id, change.upstream_ids, change.now
            )
        delivery = delivery_from_row(row)
        if from_state is not change.to_state:
            _report(events, delivery, change.to_state, change.now, change.reason)
        return delivery

    async def expire_due(self, *, now: datetime, limit: int = 1000) -> list[Delivery]:
        if limit <= 0:
            return []

        def job(connection: Connection, events: EventRows) -> list[Delivery]:
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
            for row in rows:
                reason = EXPIRED_REASON
                if row.state == S.IN_FLIGHT.value and row.lease_owner is None:
                    reason = "no outcome reported before the wait ended"
                events.append(_event(row.id, now, S(row.state), S.EXPIRED, reason))
                _report(events, by_id[row.id], S.EXPIRED, now, reason)
            return [by_id[row.id] for row in rows]

        return await self._writer.write_logged(job)

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


def _report(
    journal: EventRows, delivery: Delivery, to_state: DeliveryState, now: datetime, reason: str
) -> None:
    """Add the outbox row reporting the change, when the delivery's submitter asked for it."""
    row = report_row(delivery, to_state, now, reason)
    if row is not None:
        journal.reports.append(row)


def _event(
    delivery_id: str,
    at: datetime,
    from_state: DeliveryState | None,
    to_state: DeliveryState,
    reason: str,
) -> tuple[Any, ...]:
    """A delivery_events row in EVENT_COLUMNS order, as the writer inserts it."""
    return (
        delivery_id,
        at.timestamp(),
        None if from_state is None else from_state.value,
        to_state.value,
        reason,
    )


# ---- release_many: driver-level SQL ----------------------------------------------------------
# Values go to and come from the driver as tables.py's types store them: times as epoch seconds,
# JSON as text (sqlite3) or as decoded by SQLAlchemy's asyncpg codec (PostgreSQL).

_COLUMNS = ", ".join(DELIVERY_COLUMNS)
_TIME_COLUMNS = tuple(
    i
    for i, name in enumerate(DELIVERY_COLUMNS)
    if name in {"next_attempt_at", "valid_until", "lease_expires_at", "created_at", "updated_at"}
)
_UPSTREAM_IDS = DELIVERY_COLUMNS.index("upstream_ids")
_SELECT_SQLITE = f"SELECT {_COLUMNS} FROM deliveries WHERE id IN (SELECT value FROM json_each(?))"
# locked in id order: concurrent writers of overlapping rows take the locks in the same order
_SELECT_POSTGRES = (
    f"SELECT {_COLUMNS} FROM deliveries WHERE id = ANY($1::varchar[]) ORDER BY id FOR UPDATE"
)
_UPDATE_POSTGRES = (
    "UPDATE deliveries AS d SET lease_owner = NULL, lease_expires_at = NULL, updated_at = $1, "
    "next_attempt_at = v.next_attempt_at, channel = v.channel, upstream_ids = v.upstream_ids::json "
    "FROM unnest($4::varchar[], $5::float8[], $6::varchar[], $7::text[]) "
    "AS v(id, next_attempt_at, channel, upstream_ids) "
    "WHERE d.id = v.id AND d.state = $2 AND d.lease_owner = $3 RETURNING d.id"
)
_REFS_SET = (
    "ON CONFLICT (upstream_id) DO UPDATE SET delivery_id = excluded.delivery_id, "
    "part = excluded.part, state = excluded.state, created_at = excluded.created_at, "
    "updated_at = excluded.updated_at"
)
_REFS_POSTGRES = (
    "INSERT INTO upstream_refs (upstream_id, delivery_id, part, state, created_at, updated_at) "
    "SELECT v.upstream_id, v.delivery_id, v.part, NULL, $4::float8, NULL "
    "FROM unnest($1::varchar[], $2::varchar[], $3::int[]) AS v(upstream_id, delivery_id, part) "
    + _REFS_SET
)
_SQLITE_CHUNK = 256  # rows in one multi-row statement at most (powers of two: few statements)


@cache
def _update_sqlite(rows: int) -> str:
    """The conditional UPDATE of `rows` releases: (id, next_attempt_at, channel, upstream_ids)
    per row after (updated_at), then (state, worker) for the condition."""
    values = ", ".join(["(?, ?, ?, ?)"] * rows)
    return (
        "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, updated_at = ?, "
        "next_attempt_at = v.column2, channel = v.column3, upstream_ids = v.column4 "
        f"FROM (VALUES {values}) AS v "
        "WHERE deliveries.id = v.column1 AND deliveries.state = ? AND deliveries.lease_owner = ? "
        "RETURNING deliveries.id"
    )


@cache
def _refs_sqlite(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, NULL, ?, NULL)"] * rows)
    return (
        "INSERT INTO upstream_refs (upstream_id, delivery_id, part, state, created_at, updated_at) "
        f"VALUES {values} " + _REFS_SET
    )


def _chunks(rows: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """Runs of `rows` of power-of-two lengths (at most _SQLITE_CHUNK): few distinct statements
    for sqlite3's statement cache."""
    chunks = []
    start = 0
    while start < len(rows):
        size = 1 << (min(len(rows) - start, _SQLITE_CHUNK).bit_length() - 1)
        chunks.append(rows[start : start + size])
        start += size
    return chunks


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _delivery_from_values(values: Sequence[Any]) -> Delivery:
    """A Delivery from a raw row in DELIVERY_COLUMNS order."""
    row = dict(zip(DELIVERY_COLUMNS, values, strict=True))
    for index in _TIME_COLUMNS:
        name = DELIVERY_COLUMNS[index]
        value = values[index]
        row[name] = None if value is None else _at(value)
    ids = values[_UPSTREAM_IDS]
    row["upstream_ids"] = json.loads(ids) if isinstance(ids, str) else ids
    return delivery_from_row(row)


def _release_rows(
    releases: list[Release],
    worker: str,
    now: datetime,
    postgres: bool,
    connection: Connection,
    events: EventRows,
) -> list[Delivery | None]:
    """The job of `release_many`: read the rows (locked), decide each release in order as
    `release` would (a delivery released earlier in the batch has no lease any more), then one
    conditional UPDATE for all, the events of the rows it changed and their upstream ids."""
    ids = list(dict.fromkeys(r.delivery_id for r in releases))
    if postgres:
        read = connection.exec_driver_sql(_SELECT_POSTGRES, (ids,))
    else:
        read = connection.exec_driver_sql(_SELECT_SQLITE, (json.dumps(ids),))
    current = {row[0]: _delivery_from_values(row) for row in read}
    stamp = now.timestamp()
    updated_at = _at(stamp)  # as the database returns it
    decided: list[Delivery | None] = []
    for r in releases:
        old = current.get(r.delivery_id)
        if old is None or old.state is not S.IN_FLIGHT or old.lease_owner != worker:
            decided.append(None)
            continue
        new = replace(
            old,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=updated_at,
            next_attempt_at=(
                old.valid_until if r.wait_until is None else _at(r.wait_until.timestamp())
            ),
            channel=old.channel if r.channel is None else r.channel,
            upstream_ids=(
                tuple(merge_ids(old.upstream_ids, r.upstream_ids))
                if r.upstream_ids
                else old.upstream_ids
            ),
        )
        current[r.delivery_id] = new
        decided.append(new)
    # the final values of each delivery released (a delivery twice in the batch: its last)
    finals = {d.id: d for d in decided if d is not None}
    if not finals:
        return decided
    rows = [
        (d.id, d.next_attempt_at.timestamp(), d.channel, json.dumps(list(d.upstream_ids)))
        for d in finals.values()
    ]
    changed: set[str] = set()
    if postgres:
        columns = list(zip(*rows, strict=True))
        result = connection.exec_driver_sql(
            _UPDATE_POSTGRES,
            (stamp, S.IN_FLIGHT.value, worker, *(list(column) for column in columns)),
        )
        changed.update(row[0] for row in result)
    else:
        for chunk in _chunks(rows):
            parameters = (stamp, *(v for row in chunk for v in row), S.IN_FLIGHT.value, worker)
            result = connection.exec_driver_sql(_update_sqlite(len(chunk)), parameters)
            changed.update(row[0] for row in result)
    # upstream id -> (delivery, part), numbered as record_upstream_ids does; an id given twice
    # in the batch ends with the last delivery it was given for, as N single upserts leave it
    refs: dict[str, tuple[str, int]] = {}
    results: list[Delivery | None] = []
    for r, delivery in zip(releases, decided, strict=True):
        if delivery is None or delivery.id not in changed:  # cannot happen: rows are locked
            results.append(None)
            continue
        results.append(delivery)
        events.append(_event(r.delivery_id, now, S.IN_FLIGHT, S.IN_FLIGHT, r.reason))
        for part, upstream_id in enumerate(dict.fromkeys(r.upstream_ids), start=1):
            refs.pop(upstream_id, None)
            refs[upstream_id] = (r.delivery_id, part)
    if refs:
        if postgres:
            connection.exec_driver_sql(
                _REFS_POSTGRES,
                (
                    list(refs),
                    [delivery_id for delivery_id, _ in refs.values()],
                    [part for _, part in refs.values()],
                    stamp,
                ),
            )
        else:
            ref_rows = [(u, d, part, stamp) for u, (d, part) in refs.items()]
            for chunk in _chunks(ref_rows):
                connection.exec_driver_sql(
                    _refs_sqlite(len(chunk)), tuple(v for row in chunk for v in row)
                )
    # a release stays IN_FLIGHT -> IN_FLIGHT: no state change to report (see _change)
    return results


# ---- lease: driver-level SQL -----------------------------------------------------------------


@cache
def _lease_sql(postgres: bool, by_device: bool) -> tuple[str, str, str, str]:
    """(pick expired leases, pick queued, take, read messages), in the driver's parameter style.
    Parameters: pick: (now, now, [devices], limit); take: (worker, expires, now, ids); read:
    (ids)."""

    def p(n: int) -> str:
        return f"${n}" if postgres else "?"

    if postgres:
        any_of = "= ANY({}::varchar[])"
        skip = " FOR UPDATE SKIP LOCKED"
    else:
        any_of = "IN (SELECT value FROM json_each({}))"
        skip = ""

    def pick(where: str, order: str) -> str:
        device = f" AND device {any_of.format(p(3))}" if by_device else ""
        return (
            f"SELECT id, state, lease_owner FROM deliveries WHERE {where} <= {p(1)} "
            f"AND valid_until > {p(2)}{device} ORDER BY {order} "
            f"LIMIT {p(4 if by_device else 3)}{skip}"
        )

    expired = pick(
        f"state = '{S.IN_FLIGHT.value}' AND lease_owner IS NOT NULL AND lease_expires_at",
        "lease_expires_at",
    )
    queued = pick(f"state = '{S.QUEUED.value}' AND next_attempt_at", "next_attempt_at")
    take = (
        f"UPDATE deliveries SET state = '{S.IN_FLIGHT.value}', lease_owner = {p(1)}, "
        f"lease_expires_at = {p(2)}, attempts = attempts + 1, updated_at = {p(3)} "
        f"WHERE id {any_of.format(p(4))} RETURNING {_COLUMNS}"
    )
    read = f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM messages WHERE id {any_of.format(p(1))}"
    return expired, queued, take, read


def _message_from_values(values: Sequence[Any]) -> Message:
    """A Message from a raw row in MESSAGE_COLUMNS order."""
    row = dict(zip(MESSAGE_COLUMNS, values, strict=True))
    for name in ("attachments", "options"):
        if isinstance(row[name], str):
            row[name] = json.loads(row[name])
    row["created_at"] = _at(row["created_at"])
    return message_from_row(row)


def _lease_rows(
    connection: Connection,
    events: EventRows,
    worker: str,
    now: datetime,
    expires: datetime,
    limit: int,
    devices: list[str] | None,
    postgres: bool,
) -> list[Lease]:
    """The job of `lease` (see the module docstring for why rows cannot be leased twice)."""
    expired, queued, take, read = _lease_sql(postgres, devices is not None)
    stamp = now.timestamp()

    def a_list(values: list[str]) -> Any:
        return values if postgres else json.dumps(values)

    def pick(sql: str, count: int) -> list[Any]:
        parameters: tuple[Any, ...] = (stamp, stamp)
        if devices is not None:
            parameters += (a_list(devices),)
        return list(connection.exec_driver_sql(sql, (*parameters, count)))

    rows = pick(expired, limit)
    if len(rows) < limit:
        rows += pick(queued, limit - len(rows))
    if not rows:
        return []
    taken = connection.exec_driver_sql(
        take, (worker, expires.timestamp(), stamp, a_list([row[0] for row in rows]))
    )
    by_id = {values[0]: _delivery_from_values(values) for values in taken}
    # their messages, so the worker needs no read per message
    message_ids = list({d.message_id for d in by_id.values()})
    messages = {
        values[0]: _message_from_values(values)
        for values in connection.exec_driver_sql(read, (a_list(message_ids),))
    }
    leases = []
    for delivery_id, state, owner in rows:
        delivery = by_id[delivery_id]
        reason = lease_reason(worker, delivery.attempts)
        if state == S.IN_FLIGHT.value:
            reason = f"lease of {owner} expired; {reason}"
        events.append(_event(delivery_id, now, S(state), S.IN_FLIGHT, reason))
        _report(events, delivery, S.IN_FLIGHT, now, reason)
        leases.append(
            Lease(
                delivery=delivery,
                worker=worker,
                expires_at=expires,
                message=messages.get(delivery.message_id),
            )
        )
    return leases
