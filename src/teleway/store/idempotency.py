"""`Idempotency-Key` of REST submissions: a retried request never creates a second message.

The protocol (as in the IETF draft "The Idempotency-Key HTTP Header Field"):

1. `claim(account, key, request_hash)` before accepting. The first request for a key stores a
   *pending* row and may proceed (`Claim.fresh`). A later request finds the row:
   - completed, same request hash: it gets the stored response again (`Claim.replay`);
   - different request hash: 422 (the key was used for another request; `Claim.mismatch`);
   - still pending: 409, retry later (`Claim.busy`): the first request is being accepted.
2. After `accept()` committed: `complete(...)` stores the response. When accepting failed
   (invalid submission, store down), `release(...)` deletes the pending row so a corrected or
   later retry can use the key.

A pending row older than `PENDING_TIMEOUT` belongs to a request whose process died before it
could complete or release it; the next claim takes it over. That process may have died after
`accept()` committed its message but before `complete()`: the message carries its key
(`Options.extra["idempotency_key"]`, `KEY_OPTION`), so before taking a claim over, `claim`
looks for a message of the account with that key created since the claim
(`ClaimResult.COMMITTED`: answer with that message, never accept it a second time).

Keys are kept `RETENTION` (24 hours) and then purged (`purge`), as the draft recommends
(a client retries within minutes, not days).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from teleway.core.model import Origin
from teleway.store import tables
from teleway.store.engine import Database
from teleway.store.writer import Writer

MAX_KEY_CHARS = 255  # tables.idempotency_keys.key
KEY_OPTION = "idempotency_key"  # the message's Options.extra entry naming its request's key
RETENTION = timedelta(hours=24)
PENDING_TIMEOUT = timedelta(seconds=60)
PENDING = ""  # message_id of a claimed, not yet completed key


class ClaimResult(StrEnum):
    FRESH = "fresh"  # go ahead: accept, then complete() or release()
    REPLAY = "replay"  # answer with `response`
    MISMATCH = "mismatch"  # same key, other request: 422
    BUSY = "busy"  # the first request with this key is still running: 409
    COMMITTED = "committed"  # abandoned, but its message was committed: answer with message_id


@dataclass(frozen=True, kw_only=True)
class Claim:
    result: ClaimResult
    response: dict[str, Any] | None = None  # REPLAY: {"status": int, "body": {...}}
    message_id: str | None = None


def request_hash(*parts: bytes | str) -> str:
    """SHA-256 over the parts that make a request the same (method, path, content type, body),
    each length-prefixed so no two different part lists hash alike."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def valid_key(key: str) -> bool:
    """1 to 255 visible ASCII characters (an HTTP header value a client generated)."""
    return 0 < len(key) <= MAX_KEY_CHARS and all(0x21 <= ord(c) <= 0x7E for c in key)


class IdempotencyKeys:
    def __init__(self, db: Database, writer: Writer) -> None:
        self._db = db
        self._writer = writer

    async def claim(self, account_id: int, key: str, digest: str, *, now: datetime) -> Claim:
        t = tables.idempotency_keys
        where = and_(t.c.account_id == account_id, t.c.key == key)

        def job(connection: Connection) -> Claim | _Abandoned:
            row = connection.execute(select(t).where(where)).first()
            if row is None:
                try:
                    with connection.begin_nested():
                        connection.execute(
                            insert(t).values(
                                account_id=account_id,
                                key=key,
                                request_hash=digest,
                                message_id=PENDING,
                                response={},
                                created_at=now,
                            )
                        )
                except IntegrityError:
                    # another node claimed it between our SELECT and INSERT
                    return Claim(result=ClaimResult.BUSY)
                return Claim(result=ClaimResult.FRESH)
            if row.request_hash != digest:
                return Claim(result=ClaimResult.MISMATCH, message_id=row.message_id or None)
            if row.message_id != PENDING:
                return Claim(
                    result=ClaimResult.REPLAY,
                    response=dict(row.response),
                    message_id=row.message_id,
                )
            if now - row.created_at < PENDING_TIMEOUT:
                return Claim(result=ClaimResult.BUSY)
            return _Abandoned(claimed_at=row.created_at)

        claim = await self._writer.write(job)
        if not isinstance(claim, _Abandoned):
            return claim
        # abandoned by a process that died: had it committed the message already? (looked up
        # outside the writer: the walk must not hold up every other write of the store)
        committed = await self._db.read(
            lambda connection: _message_with_key(connection, account_id, key, claim.claimed_at)
        )
        if committed is not None:
            return Claim(result=ClaimResult.COMMITTED, message_id=committed)

        def take_over(connection: Connection) -> Claim:
            taken = connection.execute(
                update(t)
                .where(where, t.c.message_id == PENDING, t.c.created_at == claim.claimed_at)
                .values(created_at=now)
            )
            # nobody else took it over meanwhile: it is ours now
            return Claim(result=ClaimResult.FRESH if taken.rowcount else ClaimResult.BUSY)

        return await self._writer.write(take_over)

    async def complete(
        self,
        account_id: int,
        key: str,
        *,
        message_id: str,
        response: dict[str, Any],
    ) -> None:
        """Store the answer given for the claimed key (after the message was committed)."""
        t = tables.idempotency_keys

        def job(connection: Connection) -> None:
            connection.execute(
                update(t)
                .where(t.c.account_id == account_id, t.c.key == key)
                .values(message_id=message_id, response=response)
            )

        await self._writer.write(job)

    async def release(self, account_id: int, key: str) -> None:
        """Forget a claim whose request did not create a message."""
        t = tables.idempotency_keys

        def job(connection: Connection) -> None:
            connection.execute(
                delete(t).where(
                    t.c.account_id == account_id, t.c.key == key, t.c.message_id == PENDING
                )
            )

        await self._writer.write(job)

    async def purge(self, *, now: datetime, retention: timedelta = RETENTION) -> int:
        """Delete keys older than `retention`; return how many."""
        t = tables.idempotency_keys

        def job(connection: Connection) -> int:
            result = connection.execute(delete(t).where(t.c.created_at < now - retention))
            return int(result.rowcount or 0)

        return await self._writer.write(job)


@dataclass(frozen=True)
class _Abandoned:
    """`claim`'s first step found a pending claim older than PENDING_TIMEOUT."""

    claimed_at: datetime


def _message_with_key(
    connection: Connection, account_id: int, key: str, claimed_at: datetime
) -> str | None:
    """The id of the account's HTTP message made for idempotency key `key` (see
    `KEY_OPTION`) since its claim, if one was committed. Only after a crash: a bounded walk
    over the account's messages of the claim's PENDING_TIMEOUT (the (account_id, created_at)
    index), oldest first: a request's accept() follows its claim at once, and a claim older
    than that is given up."""
    m = tables.messages
    rows = connection.execute(
        select(m.c.id, m.c.options)
        .where(
            m.c.account_id == account_id,
            m.c.created_at >= claimed_at,
            m.c.created_at <= claimed_at + PENDING_TIMEOUT,
            m.c.origin == Origin.HTTP.value,
        )
        .order_by(m.c.created_at)
    )
    for message_id, options in rows:
        extra = options.get("extra") if isinstance(options, dict) else None
        if isinstance(extra, dict) and extra.get(KEY_OPTION) == key:
            return str(message_id)
    return None
