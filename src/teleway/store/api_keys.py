"""REST API keys: created per account, shown once, stored as a SHA-256 digest.

Why SHA-256 and not argon2 (used for passwords): a key is 256 bits from `secrets`, so nobody can
guess it or try a dictionary against a stolen digest: a slow hash only protects secrets with
little entropy (human passwords). A fast digest also lets every API request be checked with one
indexed lookup (`key_hash` is unique) instead of ~50 ms of argon2 per request, which would turn
the authentication itself into a denial-of-service lever.

Key format: `tw_` + 43 base64url characters (32 random bytes). The first 8 characters after
`tw_` are kept as the `prefix`, shown in lists so a customer can tell keys apart and find a
leaked one in a log; 48 bits of a 256-bit key reveal nothing usable.

Writes go through the store's writer (group commit; on SQLite the one writer connection). Key
creation and revocation are written to the audit log in the same transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from teleway.store import tables
from teleway.store.engine import Database
from teleway.store.writer import Writer

KEY_PREFIX = "tw_"
KEY_BYTES = 32  # 256 bits
PREFIX_CHARS = 8  # of the random part, shown in lists
MAX_NAME = 64  # tables.api_keys.name
MAX_KEYS_PER_ACCOUNT = 100
# last_used_at is a write: record it at most this often per key, not on every request
LAST_USED_GRANULARITY = timedelta(minutes=1)


class ApiKeyError(ValueError):
    """A key cannot be created or revoked as asked (the message says why, for the user)."""


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    """A key as lists show it: never the key itself, which exists only when created."""

    id: int
    account_id: int
    name: str
    prefix: str  # e.g. "tw_AbCdEfGh"
    rate_limit: float | None  # requests per second; None: the listener's default
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def looks_like_key(value: str) -> bool:
    """Cheap shape check before a database lookup (and before logging anything about it)."""
    return (
        value.startswith(KEY_PREFIX)
        and len(value) == len(KEY_PREFIX) + 43
        and all(c.isalnum() or c in "-_" for c in value[len(KEY_PREFIX) :])
    )


def _from_row(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        prefix=row.prefix,
        rate_limit=row.rate_limit,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ApiKeyError("a key needs a name")
    if len(name) > MAX_NAME:
        raise ApiKeyError(f"the name is longer than {MAX_NAME} characters")
    if any(not c.isprintable() for c in name):
        raise ApiKeyError("the name contains control characters")
    return name


class ApiKeys:
    def __init__(self, db: Database, writer: Writer) -> None:
        self._db = db
        self._writer = writer

    async def create(
        self,
        account_id: int,
        name: str,
        *,
        now: datetime,
        actor: str,
        rate_limit: float | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key for the account; returns it with the secret (the only time it exists in
        clear). Raises ApiKeyError for a bad or duplicate name, too many keys or an unknown
        account."""
        name = _check_name(name)
        if rate_limit is not None and not rate_limit > 0:
            raise ApiKeyError("the rate limit must be a positive number of requests per second")
        secret = new_key()
        k, a = tables.api_keys, tables.accounts

        def job(connection: Connection) -> ApiKey:
            if connection.execute(select(a.c.id).where(a.c.id == account_id)).first() is None:
                raise ApiKeyError(f"no account with id {account_id}")
            names = connection.execute(
                select(k.c.name).where(k.c.account_id == account_id)
            ).scalars()
            taken = set(names)
            if name in taken:
                raise ApiKeyError(f"the account already has a key named {name!r}")
            if len(taken) >= MAX_KEYS_PER_ACCOUNT:
                raise ApiKeyError(f"an account may have at most {MAX_KEYS_PER_ACCOUNT} keys")
            prefix = secret[: len(KEY_PREFIX) + PREFIX_CHARS]
            result = connection.execute(
                insert(k).values(
                    account_id=account_id,
                    name=name,
                    prefix=prefix,
                    key_hash=digest(secret),
                    rate_limit=rate_limit,
                    created_at=now,
                )
            )
            key_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            _audit(connection, now, actor, "apikey.create", f"{account_id}/{name}", prefix)
            row = connection.execute(select(k).where(k.c.id == key_id)).one()
            return _from_row(row)

        return await self._writer.write(job), secret

    async def authenticate(self, secret: str, *, now: datetime) -> ApiKey | None:
        """The active key whose secret this is, or None (unknown, revoked, malformed).

        The lookup is by digest; the stored digest is compared again in constant time so the
        answer does not depend on how much of it matched. Records `last_used_at` (at most once
        per LAST_USED_GRANULARITY)."""
        if not looks_like_key(secret):
            return None
        wanted = digest(secret)
        k = tables.api_keys

        def query(connection: Connection) -> Any:
            return connection.execute(select(k).where(k.c.key_hash == wanted)).first()

        row = await self._db.read(query)
        if row is None or not hmac.compare_digest(row.key_hash, wanted) or row.revoked_at:
            return None
        key = _from_row(row)
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_GRANULARITY:

            def touch(connection: Connection) -> None:
                connection.execute(update(k).where(k.c.id == key.id).values(last_used_at=now))

            await self._writer.write(touch)
        return key

    async def list_keys(
        self, account_id: int | None, *, include_revoked: bool = True
    ) -> list[ApiKey]:
        """Keys of one account (None: all accounts), newest first."""
        k = tables.api_keys
        statement = select(k).order_by(k.c.created_at.desc(), k.c.id.desc())
        if account_id is not None:
            statement = statement.where(k.c.account_id == account_id)
        if not include_revoked:
            statement = statement.where(k.c.revoked_at.is_(None))

        def query(connection: Connection) -> list[ApiKey]:
            return [_from_row(row) for row in connection.execute(statement)]

        return await self._db.read(query)

    async def get(self, key_id: int, *, account_id: int | None) -> ApiKey | None:
        k = tables.api_keys
        statement = select(k).where(k.c.id == key_id)
        if account_id is not None:
            statement = statement.where(k.c.account_id == account_id)

        def query(connection: Connection) -> ApiKey | None:
            row = connection.execute(statement).first()
            return None if row is None else _from_row(row)

        return await self._db.read(query)

    async def revoke(
        self, key_id: int, *, account_id: int | None, now: datetime, actor: str
    ) -> ApiKey:
        """Revoke a key of the account (None: any account, operators). Revoking twice keeps the
        first time. Raises ApiKeyError when no such key exists for the account."""
        k = tables.api_keys

        def job(connection: Connection) -> ApiKey:
            statement = select(k).where(k.c.id == key_id)
            if account_id is not None:
                statement = statement.where(k.c.account_id == account_id)
            row = connection.execute(statement).first()
            if row is None:
                raise ApiKeyError(f"no API key with id {key_id}")
            if row.revoked_at is None:
                connection.execute(update(k).where(k.c.id == key_id).values(revoked_at=now))
                _audit(
                    connection,
                    now,
                    actor,
                    "apikey.revoke",
                    f"{row.account_id}/{row.name}",
                    row.prefix,
                )
            return _from_row(connection.execute(select(k).where(k.c.id == key_id)).one())

        return await self._writer.write(job)


def _audit(
    connection: Connection, now: datetime, actor: str, action: str, subject: str, prefix: str
) -> None:
    connection.execute(
        insert(tables.audit_log).values(
            at=now, actor=actor, action=action, subject=subject, detail={"prefix": prefix}
        )
    )
