"""API keys, idempotency keys and the webhook attempt log on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select
from store_helpers import START

from teleway.core.model import Content, Message, Options, Origin
from teleway.store import Store, tables
from teleway.store.api_keys import (
    LAST_USED_GRANULARITY,
    ApiKeyError,
    ApiKeys,
    looks_like_key,
)
from teleway.store.idempotency import (
    KEY_OPTION,
    PENDING_TIMEOUT,
    RETENTION,
    ClaimResult,
    IdempotencyKeys,
    request_hash,
    valid_key,
)
from teleway.store.webhooks import RESPONSE_CHARS, WebhookAttempts


async def test_key_is_shown_once_stored_as_sha256(store: Store) -> None:
    keys = ApiKeys(store.db, store.writer)
    key, secret = await keys.create(1, " billing ", now=START, actor="alice")
    assert looks_like_key(secret)
    assert key.name == "billing" and key.account_id == 1 and key.active
    assert secret.startswith(key.prefix) and len(key.prefix) == 11

    def stored(connection: object) -> list[str]:
        return [
            r.key_hash
            for r in connection.execute(select(tables.api_keys))  # type: ignore[attr-defined]
        ]

    hashes = await store.db.read(stored)
    assert hashes == [hashlib.sha256(secret.encode()).hexdigest()]
    assert secret not in str(hashes)

    found = await keys.authenticate(secret, now=START)
    assert found is not None and found.id == key.id
    assert (
        await keys.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B"), now=START)
        is None
    )
    assert await keys.authenticate("Bearer nonsense", now=START) is None
    assert await keys.authenticate("", now=START) is None

    def audit(connection: object) -> list[tuple[str, str]]:
        rows = connection.execute(select(tables.audit_log))  # type: ignore[attr-defined]
        return [(r.action, r.actor) for r in rows]

    assert await store.db.read(audit) == [("apikey.create", "alice")]


async def test_last_used_is_recorded_coarsely(store: Store) -> None:
    keys = ApiKeys(store.db, store.writer)
    key, secret = await keys.create(1, "k", now=START, actor="t")
    assert key.last_used_at is None
    await keys.authenticate(secret, now=START + timedelta(seconds=5))
    await keys.authenticate(secret, now=START + timedelta(seconds=20))  # within granularity
    (listed,) = await keys.list_keys(1)
    assert listed.last_used_at == START + timedelta(seconds=5)
    later = START + timedelta(seconds=5) + LAST_USED_GRANULARITY
    await keys.authenticate(secret, now=later)
    (listed,) = await keys.list_keys(1)
    assert listed.last_used_at == later


async def test_names_limits_and_accounts(store: Store) -> None:
    keys = ApiKeys(store.db, store.writer)
    await keys.create(1, "same", now=START, actor="t")
    with pytest.raises(ApiKeyError, match="already has a key named"):
        await keys.create(1, "same", now=START, actor="t")
    await keys.create(2, "same", now=START, actor="t")  # another account may
    for bad in ("", "   ", "x" * 65, "tab\there"):
        with pytest.raises(ApiKeyError):
            await keys.create(1, bad, now=START, actor="t")
    with pytest.raises(ApiKeyError, match="no account"):
        await keys.create(99, "k", now=START, actor="t")
    with pytest.raises(ApiKeyError, match="rate limit"):
        await keys.create(1, "r", now=START, actor="t", rate_limit=0)
    assert sorted(k.account_id for k in await keys.list_keys(None)) == [1, 2]
    assert [k.name for k in await keys.list_keys(2)] == ["same"]


async def test_revoked_key_no_longer_authenticates(store: Store) -> None:
    keys = ApiKeys(store.db, store.writer)
    key, secret = await keys.create(1, "k", now=START, actor="t")
    with pytest.raises(ApiKeyError):  # account 2 cannot revoke account 1's key
        await keys.revoke(key.id, account_id=2, now=START, actor="mallory")
    assert await keys.authenticate(secret, now=START) is not None
    revoked = await keys.revoke(key.id, account_id=1, now=START + timedelta(1), actor="t")
    assert not revoked.active
    again = await keys.revoke(key.id, account_id=None, now=START + timedelta(2), actor="op")
    assert again.revoked_at == START + timedelta(1)
    assert await keys.authenticate(secret, now=START) is None
    assert await keys.list_keys(1, include_revoked=False) == []
    assert await keys.get(key.id, account_id=2) is None
    assert (await keys.get(key.id, account_id=1)) == revoked


async def test_idempotency_claim_replay_mismatch_busy(store: Store) -> None:
    keys = IdempotencyKeys(store.db, store.writer)
    h1, h2 = request_hash("POST", "/m", b"{}"), request_hash("POST", "/m", b"{ }")
    assert h1 != h2
    assert (await keys.claim(1, "k1", h1, now=START)).result is ClaimResult.FRESH
    assert (await keys.claim(1, "k1", h1, now=START)).result is ClaimResult.BUSY
    assert (await keys.claim(1, "k1", h2, now=START)).result is ClaimResult.MISMATCH
    assert (await keys.claim(2, "k1", h2, now=START)).result is ClaimResult.FRESH  # per account
    response = {"status": 201, "body": {"id": "m1"}}
    await keys.complete(1, "k1", message_id="m1", response=response)
    replay = await keys.claim(1, "k1", h1, now=START)
    assert replay.result is ClaimResult.REPLAY
    assert replay.response == response and replay.message_id == "m1"
    assert (await keys.claim(1, "k1", h2, now=START)).result is ClaimResult.MISMATCH


async def test_idempotency_release_and_abandoned_claims(store: Store) -> None:
    keys = IdempotencyKeys(store.db, store.writer)
    h = request_hash("x")
    await keys.claim(1, "k", h, now=START)
    await keys.release(1, "k")
    assert (await keys.claim(1, "k", h, now=START)).result is ClaimResult.FRESH
    late = START + PENDING_TIMEOUT
    assert (await keys.claim(1, "k", h, now=late)).result is ClaimResult.FRESH  # taken over
    assert (await keys.claim(1, "k", h, now=late)).result is ClaimResult.BUSY
    await keys.complete(1, "k", message_id="m", response={"status": 201, "body": {}})
    await keys.release(1, "k")  # a completed key is not released
    assert (await keys.claim(1, "k", h, now=late)).result is ClaimResult.REPLAY
    assert await keys.purge(now=late + RETENTION) == 0  # kept for exactly RETENTION
    assert await keys.purge(now=late + RETENTION + timedelta(seconds=1)) == 1
    assert (await keys.claim(1, "k", h, now=late)).result is ClaimResult.FRESH


async def test_an_abandoned_claim_whose_message_was_committed_is_answered_with_it(
    store: Store,
) -> None:
    """The first request's process died after accept() committed, before complete(): the
    message carries its key, and the late retry gets that message instead of a second one."""
    keys = IdempotencyKeys(store.db, store.writer)
    h = request_hash("body")
    assert (await keys.claim(1, "crash", h, now=START)).result is ClaimResult.FRESH
    assert (await keys.claim(1, "other", h, now=START)).result is ClaimResult.FRESH

    def message(message_id: str, account_id: int, key: str, after: timedelta) -> Message:
        return Message(
            id=message_id,
            account_id=account_id,
            origin=Origin.HTTP,
            submitter="api",
            content=Content(text="hi"),
            options=Options(extra={KEY_OPTION: key}),
            created_at=START + after,
        )

    await store.messages.add_messages(
        [
            (message("m-other-account", 2, "crash", timedelta(seconds=1)), [], []),
            (message("m-other-key", 1, "other", timedelta(seconds=1)), [], []),
            (message("m-crash", 1, "crash", timedelta(seconds=2)), [], []),
        ]
    )
    late = START + PENDING_TIMEOUT
    found = await keys.claim(1, "crash", h, now=late)
    assert (found.result, found.message_id) == (ClaimResult.COMMITTED, "m-crash")
    await keys.complete(1, "crash", message_id="m-crash", response={"status": 201, "body": {}})
    assert (await keys.claim(1, "crash", h, now=late)).result is ClaimResult.REPLAY
    # an abandoned claim whose message never came is taken over as before
    assert (await keys.claim(1, "never", h, now=START)).result is ClaimResult.FRESH
    assert (await keys.claim(1, "never", h, now=late)).result is ClaimResult.FRESH


async def test_concurrent_claims_only_one_wins(store: Store) -> None:
    keys = IdempotencyKeys(store.db, store.writer)
    h = request_hash("same")
    results = await asyncio.gather(*(keys.claim(1, "race", h, now=START) for _ in range(20)))
    assert sorted(r.result for r in results).count(ClaimResult.FRESH) == 1


def test_idempotency_key_shape() -> None:
    assert valid_key("a") and valid_key("x" * 255) and valid_key("550e8400-e29b-41d4")
    assert not valid_key("") and not valid_key("x" * 256)
    assert not valid_key("has space") and not valid_key("é")
    assert request_hash("ab", "c") != request_hash("a", "bc")


async def test_webhook_attempts_log(store: Store) -> None:
    log = WebhookAttempts(store.db, store.writer)
    for n in range(3):
        await log.record(
            outbox_id=7 if n < 2 else 8,
            account_id=1,
            url="http://127.0.0.1:1/hook",
            at=START + timedelta(seconds=n),
            status_code=500 if n == 0 else 200,
            response="x" * 5000,
            error=None,
            duration_ms=1.5,
        )
    await log.record(
        outbox_id=9,
        account_id=2,
        url="http://127.0.0.1:1/hook",
        at=START,
        status_code=None,
        response=None,
        error="connection refused",
        duration_ms=None,
    )
    mine = await log.recent(1)
    assert [a.outbox_id for a in mine] == [8, 7, 7]
    assert all(len(a.response or "") == RESPONSE_CHARS for a in mine)
    assert [a.ok for a in await log.of_outbox(7)] == [False, True]
    (theirs,) = await log.recent(2)
    assert theirs.error == "connection refused" and not theirs.ok
    assert len(await log.recent(None)) == 4
    assert await log.purge(now=START + timedelta(days=30, seconds=1)) == 2  # those at START
    assert [a.outbox_id for a in await log.recent(None)] == [8, 7]
