"""Portal sessions (`web_sessions`): who is logged in, with which CSRF token, until when.

The browser holds a random session token (256 bits) in a cookie; the table keeps only its
SHA-256 as the row id, so a copy of the database does not let anyone take over a session. A
token of this entropy needs no slow hash: guessing one is as hard as guessing a key.

A session ends at `expires_at` (absolute) or after `idle` without a request (sliding, checked
against `last_seen_at`, which is refreshed at most once a minute to keep reads cheap). Logging
out, changing the password and disabling a user end sessions here.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from teleway.core.model import Role, User
from teleway.core.ports import StoreUnavailable
from teleway.store import tables as t
from teleway.store.engine import READ_ONLY_OPTION

SESSION_LIFETIME = timedelta(hours=12)  # absolute: log in again after a working day
SESSION_IDLE = timedelta(hours=1)  # sliding: an unattended browser is logged out
TOUCH_EVERY = timedelta(minutes=1)  # how stale `last_seen_at` may get before it is rewritten
IP_MAX = 64  # web_sessions.ip is String(64)


def token_id(token: str) -> str:
    """The row id of a session token: its SHA-256 in hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, kw_only=True)
class WebSession:
    """A live session and its user (read together: one query per request)."""

    id: str
    csrf: str
    user: User
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    ip: str | None


@dataclass(frozen=True, kw_only=True)
class NewSession:
    """What `create` returns: the token for the cookie (never stored) and the session."""

    token: str
    session: WebSession


class WebSessions:
    """Session rows on the store's async engine."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        lifetime: timedelta = SESSION_LIFETIME,
        idle: timedelta = SESSION_IDLE,
    ) -> None:
        self._engine = engine
        self.lifetime = lifetime
        self.idle = idle

    @asynccontextmanager
    async def _connect(self, *, read_only: bool = False) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.connect() as conn:
                if read_only:
                    await conn.execution_options(**{READ_ONLY_OPTION: True})
                async with conn.begin():
                    yield conn
        except (DBAPIError, OSError) as exc:
            raise StoreUnavailable(f"portal sessions: {getattr(exc, 'orig', None) or exc}") from exc

    async def create(self, user: User, *, now: datetime, ip: str | None) -> NewSession:
        """Start a session for `user` (after a successful login)."""
        token = secrets.token_urlsafe(32)
        session = WebSession(
            id=token_id(token),
            csrf=secrets.token_urlsafe(32),
            user=user,
            created_at=now,
            expires_at=now + self.lifetime,
            last_seen_at=now,
            ip=(ip or None) and ip[:IP_MAX],
        )
        async with self._connect() as conn:
            await conn.execute(
                t.web_sessions.insert().values(
                    id=session.id,
                    user_id=user.id,
                    csrf=session.csrf,
                    ip=session.ip,
                    created_at=now,
                    expires_at=session.expires_at,
                    last_seen_at=now,
                )
            )
        return NewSession(token=token, session=session)

    async def resolve(self, token: str, *, now: datetime) -> WebSession | None:
        """The live session for a cookie token, or None (unknown, expired, idle too long, user
        or account disabled). Refreshes `last_seen_at` when it is older than `TOUCH_EVERY`."""
        if not token or len(token) > 256:
            return None
        key = token_id(token)
        async with self._connect(read_only=True) as conn:
            row = (
                await conn.execute(
                    select(
                        t.web_sessions,
                        t.users.c.username,
                        t.users.c.password_hash,
                        t.users.c.role,
                        t.users.c.account_id,
                        t.users.c.email,
                        t.users.c.enabled.label("user_enabled"),
                        t.accounts.c.enabled.label("account_enabled"),
                    )
                    .select_from(
                        t.web_sessions.join(
                            t.users, t.users.c.id == t.web_sessions.c.user_id
                        ).outerjoin(t.accounts, t.accounts.c.id == t.users.c.account_id)
                    )
                    .where(t.web_sessions.c.id == key)
                )
            ).first()
        if row is None:
            return None
        if row.expires_at <= now or row.last_seen_at + self.idle <= now:
            await self.end(key)
            return None
        if not row.user_enabled or (row.account_id is not None and not row.account_enabled):
            return None
        if now - row.last_seen_at >= TOUCH_EVERY:
            async with self._connect() as conn:
                await conn.execute(
                    update(t.web_sessions)
                    .where(t.web_sessions.c.id == key)
                    .values(last_seen_at=now)
                )
        return WebSession(
            id=key,
            csrf=row.csrf,
            user=User(
                id=row.user_id,
                username=row.username,
                password_hash=row.password_hash,
                role=Role(row.role),
                account_id=row.account_id,
                email=row.email,
                enabled=True,
            ),
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_seen_at=now,
            ip=row.ip,
        )

    async def end(self, session_id: str) -> None:
        """Log out: forget the session (by row id, i.e. `token_id(token)`)."""
        async with self._connect() as conn:
            await conn.execute(delete(t.web_sessions).where(t.web_sessions.c.id == session_id))

    async def end_all(self, user_id: int, *, keep: str | None = None) -> int:
        """End every session of a user (password changed: other browsers are logged out),
        except `keep`. Returns how many ended."""
        query = delete(t.web_sessions).where(t.web_sessions.c.user_id == user_id)
        if keep is not None:
            query = query.where(t.web_sessions.c.id != keep)
        async with self._connect() as conn:
            result = await conn.execute(query)
        return int(result.rowcount or 0)

    async def purge(self, *, now: datetime) -> int:
        """Delete sessions that ended (expired or idle); returns how many."""
        async with self._connect() as conn:
            result = await conn.execute(
                delete(t.web_sessions).where(
                    (t.web_sessions.c.expires_at <= now)
                    | (t.web_sessions.c.last_seen_at <= now - self.idle)
                )
            )
        return int(result.rowcount or 0)

    async def count(self, user_id: int) -> int:
        async with self._connect(read_only=True) as conn:
            rows = await conn.execute(
                select(t.web_sessions.c.id).where(t.web_sessions.c.user_id == user_id)
            )
            return len(rows.all())
