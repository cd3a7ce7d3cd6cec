"""The account directory: accounts, portal users, authorised senders, source networks and SMPP
credentials, as stored in `store.tables`, with an audit trail of every change.

`Directory` implements `core.ports.AccountDirectory` for the ingresses and offers every
provisioning operation to the CLI, the provisioning file and the portal. Inputs go through
`core.provisioning` (one canonical form everywhere) and errors are `ProvisioningError`
(`UnknownObject` for a missing name, `Conflict` for a uniqueness rule); a store that cannot be
reached raises `core.ports.StoreUnavailable`.

Each operation is its own transaction, unless it runs on the directory handed out by
`transaction()`, where all operations share one transaction (committed at the end, or rolled
back on any error or when `rollback=True`, for dry runs).

Secrets: passwords are hashed with argon2id (`core.passwords`) in a worker thread so the event
loop keeps running; no password or hash ever goes to the audit log.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy import CursorResult, Row, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from teleway.core import passwords
from teleway.core import provisioning as prov
from teleway.core.model import (
    Account,
    Network,
    Role,
    SenderRule,
    Settings,
    SmppCredential,
    User,
)
from teleway.core.ports import Clock, StoreUnavailable
from teleway.store import tables as t
from teleway.store.engine import READ_ONLY_OPTION
from teleway.store.inbound import InboundNumbers

MAX_FAILED_LOGINS = 10  # consecutive failures before a portal user is locked out
LOCKOUT = timedelta(minutes=15)
AUDIT_LIMIT_MAX = 10_000


class Unset(Enum):
    """Marks an argument of an update as 'leave unchanged' (None is a value for some fields)."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """One line of the audit log: who did what to which object, and the non-secret details."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any] = field(default_factory=dict)


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def _new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _account(row: Row[Any]) -> Account:
    return Account(
        id=row.id,
        name=row.name,
        enabled=bool(row.enabled),
        settings=Settings.from_dict(dict(row.settings or {})),
    )


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        role=Role(row.role),
        account_id=row.account_id,
        email=row.email,
        enabled=bool(row.enabled),
    )


def _sender(row: Row[Any]) -> SenderRule:
    return SenderRule(id=row.id, account_id=row.account_id, pattern=row.pattern)


def _network(row: Row[Any]) -> Network:
    return Network(id=row.id, account_id=row.account_id, cidr=row.cidr)


def _smpp(row: Row[Any]) -> SmppCredential:
    return SmppCredential(
        id=row.id,
        account_id=row.account_id,
        system_id=row.system_id,
        password_hash=row.password_hash,
        system_type=row.system_type,
        max_binds=row.max_binds,
        throughput=float(row.throughput),
        enabled=bool(row.enabled),
    )


def _password_error(problems: list[str], field_name: str = "password") -> prov.ProvisioningError:
    return prov.ProvisioningError(field_name, prov.HIDDEN, "; ".join(problems))


def check_user_secret(username: str, password: str | None, password_hash: str | None) -> None:
    """Raise unless exactly one of a policy-compliant password or an argon2id hash is given."""
    if (password is None) == (password_hash is None):
        raise prov.ProvisioningError(
            "password", prov.HIDDEN, "give either a password or a password_hash"
        )
    if password is not None:
        problems = passwords.check_password_strength(password, username=username)
        if problems:
            raise _password_error(problems)
    elif password_hash is not None and not passwords.is_password_hash(password_hash):
        raise prov.ProvisioningError(
            "password_hash", prov.HIDDEN, "not an argon2id hash ($argon2id$v=19$...)"
        )


def check_smpp_secret(system_id: str, password: str | None, password_hash: str | None) -> None:
    """Like `check_user_secret`, with the SMPP password rule (1-8 printable ASCII)."""
    if (password is None) == (password_hash is None):
        raise prov.ProvisioningError(
            "password", prov.HIDDEN, "give either a password or a password_hash"
        )
    if password is not None:
        problems = passwords.check_smpp_password(password, system_id=system_id)
        if problems:
            raise _password_error(problems)
    elif password_hash is not None and not passwords.is_password_hash(password_hash):
        raise prov.ProvisioningError(
            "password_hash", prov.HIDDEN, "not an argon2id hash ($argon2id$v=19$...)"
        )


async def _hash(password: str | None, password_hash: str | None) -> str:
    if password is not None:
        return await asyncio.to_thread(passwords.hash_password, password)
    assert password_hash is not None
    return password_hash


@asynccontextmanager
async def _translated(engine: AsyncEngine) -> AsyncIterator[None]:
    """Map driver errors to the domain: uniqueness races -> Conflict, the rest ->
    StoreUnavailable (database down, locked, schema missing), chained with `from`."""
    try:
        yield
    except IntegrityError as exc:
        raise prov.Conflict(
            "database", "", f"conflicts with an existing object ({exc.orig})"
        ) from exc
    except (DBAPIError, OSError) as exc:
        url = engine.url.render_as_string(hide_password=True)
        why = getattr(exc, "orig", None) or exc
        raise StoreUnavailable(f"{url}: {why}") from exc


SECRET_WORDS = ("secret", "password", "token", "key_hash")
"""A detail key containing one of these never reaches the audit log in clear."""


def masked(detail: Any) -> Any:
    """`detail` with the value of every secret-looking key (at any depth) replaced by "***":
    the audit log is shown in the portal and exported, and secrets are never logged."""
    if isinstance(detail, Mapping):
        return {
            key: "***"
            if any(word in str(key).lower() for word in SECRET_WORDS) and value is not None
            else masked(value)
            for key, value in detail.items()
        }
    if isinstance(detail, list | tuple):
        return [masked(value) for value in detail]
    return detail


class Directory:
    """Accounts and who may use them. See the module docstring for transactions and errors."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Clock | None = None,
        max_failed_logins: int = MAX_FAILED_LOGINS,
        lockout: timedelta = LOCKOUT,
        _connection: AsyncConnection | None = None,
    ) -> None:
        self._engine = engine
        self._clock: Clock = clock or _SystemClock()
        self._max_failed_logins = max_failed_logins
        self._lockout = lockout
        self._conn = _connection

    # --- plumbing --------------------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def inbound_numbers(self) -> InboundNumbers:
        """The accounts' inbound numbers, in this directory's transaction when it has one."""
        return InboundNumbers(self._engine, self._conn)

    @asynccontextmanager
    async def transaction(self, *, rollback: bool = False) -> AsyncIterator[Directory]:
        """A directory whose operations share one transaction: committed when the block ends,
        rolled back if it raises or if `rollback` is true (dry run). Nested use joins the
        outer transaction."""
        if self._conn is not None:
            yield self
            return
        async with _translated(self._engine), self._engine.connect() as conn:
            trans = await conn.begin()
            try:
                yield Directory(
                    self._engine,
                    clock=self._clock,
                    max_failed_logins=self._max_failed_logins,
                    lockout=self._lockout,
                    _connection=conn,
                )
            except BaseException:
                await trans.rollback()
                raise
            if rollback:
                await trans.rollback()
            else:
                await trans.commit()

    @asynccontextmanager
    async def _connect(self, *, read_only: bool = False) -> AsyncIterator[AsyncConnection]:
        """One transaction (or the shared one). `read_only` marks it for the store's SQLite
        hooks (store.engine): lookups BEGIN DEFERRED instead of taking the write lock."""
        if self._conn is not None:
            yield self._conn
            return
        async with _translated(self._engine), self._engine.connect() as conn:
            if read_only:
                await conn.execution_options(**{READ_ONLY_OPTION: True})
            async with conn.begin():
                yield conn

    def _now(self) -> datetime:
        return self._clock.now()

    async def _audit(
        self,
        conn: AsyncConnection,
        actor: str,
        action: str,
        subject: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        await conn.execute(
            insert(t.audit_log).values(
                at=self._now(),
                actor=actor[:128],
                action=action,
                subject=subject[:256],
                detail=masked(dict(detail or {})),
            )
        )

    async def _account_row(self, conn: AsyncConnection, name: str) -> Row[Any]:
        key = prov.normalise_account_name(name)
        row = (await conn.execute(select(t.accounts).where(t.accounts.c.name == key))).first()
        if row is None:
            raise prov.UnknownObject("account", key, "no such account")
        return row

    async def _account_names(self, conn: AsyncConnection) -> dict[int, str]:
        rows = await conn.execute(select(t.accounts.c.id, t.accounts.c.name))
        return {row.id: row.name for row in rows}

    # --- accounts (core.ports.AccountDirectory) --------------------------------------------

    async def get_account(self, account_id: int) -> Account | None:
        async with self._connect(read_only=True) as conn:
            row = (
                await conn.execute(select(t.accounts).where(t.accounts.c.id == account_id))
            ).first()
        return None if row is None else _account(row)

    async def account_by_name(self, name: str) -> Account | None:
        try:
            key = prov.normalise_account_name(name)
        except prov.ProvisioningError:
            return None
        async with self._connect(read_only=True) as conn:
            row = (await conn.execute(select(t.accounts).where(t.accounts.c.name == key))).first()
        return None if row is None else _account(row)

    async def require_account(self, name: str) -> Account:
        """The account called `name`, or UnknownObject."""
        async with self._connect(read_only=True) as conn:
            return _account(await self._account_row(conn, name))

    async def list_accounts(self) -> list[Account]:
        async with self._connect(read_only=True) as conn:
            rows = await conn.execute(select(t.accounts).order_by(t.accounts.c.name))
            return [_account(row) for row in rows]

    async def account_names(self) -> dict[int, str]:
        """Account id -> name, for displaying users, senders and credentials."""
        async with self._connect(read_only=True) as conn:
            return await self._account_names(conn)

    async def create_account(
        self,
        name: str,
        *,
        actor: str,
        settings: Mapping[str, object] | None = None,
        enabled: bool = True,
    ) -> Account:
        key = prov.normalise_account_name(name)
        stored = prov.settings_overrides(prov.build_settings(settings or {}))
        now = self._now()
        async with self._connect() as conn:
            exists = await conn.execute(select(t.accounts.c.id).where(t.accounts.c.name == key))
            if exists.first() is not None:
                raise prov.Conflict("account", key, "an account with this name exists already")
            result = await conn.execute(
                insert(t.accounts).values(
                    name=key, enabled=enabled, settings=stored, created_at=now, updated_at=now
                )
            )
            account_id = _new_id(result)
            await self._audit(
                conn,
                actor,
                "account.create",
                f"account:{key}",
                {"enabled": enabled, "settings": stored},
            )
        return Account(
            id=account_id, name=key, enabled=enabled, settings=Settings.from_dict(stored)
        )

    async def rename_account(self, name: str, new_name: str, *, actor: str) -> Account:
        new_key = prov.normalise_account_name(new_name)
        async with self._connect() as conn:
            row = await self._account_row(conn, name)
            if new_key == row.name:
                return _account(row)
            taken = await conn.execute(select(t.accounts.c.id).where(t.accounts.c.name == new_key))
            if taken.first() is not None:
                raise prov.Conflict("account", new_key, "an account with this name exists already")
            await conn.execute(
                update(t.accounts)
                .where(t.accounts.c.id == row.id)
                .values(name=new_key, updated_at=self._now())
            )
            await self._audit(
                conn, actor, "account.rename", f"account:{new_key}", {"old_name": row.name}
            )
        return Account(
            id=row.id,
            name=new_key,
            enabled=bool(row.enabled),
            settings=Settings.from_dict(dict(row.settings or {})),
        )

    async def set_account_enabled(self, name: str, enabled: bool, *, actor: str) -> Account:
        """Enable or disable an account; a disabled account's clients are refused everywhere."""
        async with self._connect() as conn:
            row = await self._account_row(conn, name)
            if bool(row.enabled) != enabled:
                await conn.execute(
                    update(t.accounts)
                    .where(t.accounts.c.id == row.id)
                    .values(enabled=enabled, updated_at=self._now())
                )
                action = "account.enable" if enabled else "account.disable"
                await self._audit(conn, actor, action, f"account:{row.name}")
        return Account(
            id=row.id,
            name=row.name,
            enabled=enabled,
            settings=Settings.from_dict(dict(row.settings or {})),
        )

    async def update_settings(
        self, name: str, changes: Mapping[str, object], *, actor: str
    ) -> Account:
        """Apply `changes` (setting -> value, checked by core.provisioning) on top of the
        account's current settings. The store keeps only values that differ from the defaults."""
        async with self._connect() as conn:
            row = await self._account_row(conn, name)
            current = Settings.from_dict(dict(row.settings or {}))
            merged = prov.build_settings(changes, current)
            stored = prov.settings_overrides(merged)
            if stored != dict(row.settings or {}):
                await conn.execute(
                    update(t.accounts)
                    .where(t.accounts.c.id == row.id)
                    .values(settings=stored, updated_at=self._now())
                )
                before = current.to_dict()
                changed = {k: v for k, v in merged.to_dict().items() if before[k] != v}
                await self._audit(
                    conn, actor, "account.settings", f"account:{row.name}", {"changed": changed}
                )
        return Account(id=row.id, name=row.name, enabled=bool(row.enabled), settings=merged)

    async def delete_account(self, name: str, *, actor: str) -> None:
        """Delete an account with its users, senders, networks and SMPP credentials.

        Refused (Conflict) once the account has messages: they must keep their account, so
        disable it instead."""
        async with self._connect() as conn:
            row = await self._account_row(conn, name)
            messages = (
                await conn.execute(
                    select(func.count())
                    .select_from(t.messages)
                    .where(t.messages.c.account_id == row.id)
                )
            ).scalar_one()
            if messages:
                raise prov.Conflict(
                    "account",
                    row.name,
                    f"has {messages} stored message(s); disable it instead of deleting it",
                )
            removed: dict[str, int] = {}
            for table, label in (
                (t.users, "users"),
                (t.sender_rules, "senders"),
                (t.networks, "networks"),
                (t.smpp_credentials, "smpp"),
                (t.inbound_numbers, "numbers"),
            ):
                result = await conn.execute(delete(table).where(table.c.account_id == row.id))
                removed[label] = result.rowcount
            await conn.execute(delete(t.accounts).where(t.accounts.c.id == row.id))
            await self._audit(conn, actor, "account.delete", f"account:{row.name}", removed)

    async def message_count(self, name: str) -> int:
        """How many messages an account has stored (a deleted account must have none)."""
        async with self._connect(read_only=True) as conn:
            row = await self._account_row(conn, name)
            return int(
                (
                    await conn.execute(
                        select(func.count())
                        .select_from(t.messages)
                        .where(t.messages.c.account_id == row.id)
                    )
                ).scalar_one()
            )

    # --- users ------------------------------------------------------------------------------

    async def _user_row(self, conn: AsyncConnection, username: str) -> Row[Any]:
        key = prov.normalise_username(username)
        row = (await conn.execute(select(t.users).where(t.users.c.username == key))).first()
        if row is None:
            raise prov.UnknownObject("user", key, "no such user")
        return row

    async def add_user(
        self,
        username: str,
        *,
        actor: str,
        account: str | None = None,
        role: Role | str = Role.ACCOUNT_USER,
        password: str | None = None,
        password_hash: str | None = None,
        email: str | None = None,
        enabled: bool = True,
    ) -> User:
        """Add a portal user. Account users need an account; operators may have none.
        Exactly one of `password` (checked against the policy, then hashed) or `password_hash`
        (an argon2id hash, e.g. from an export)."""
        key = prov.normalise_username(username)
        the_role = prov.normalise_role(role)
        mail = prov.normalise_email(email) if email else None
        if the_role is Role.ACCOUNT_USER and account is None:
            raise prov.ProvisioningError("account", None, "an account user needs an account")
        check_user_secret(key, password, password_hash)
        stored_hash = await _hash(password, password_hash)
        now = self._now()
        async with self._connect() as conn:
            account_id = None
            account_name = None
            if account is not None:
                account_row = await self._account_row(conn, account)
                account_id, account_name = account_row.id, account_row.name
            existing = (
                await conn.execute(select(t.users.c.account_id).where(t.users.c.username == key))
            ).first()
            if existing is not None:
                names = await self._account_names(conn)
                owner = names.get(existing.account_id) if existing.account_id else None
                where = f" (account {owner})" if owner else ""
                raise prov.Conflict("user", key, f"this username is taken already{where}")
            result = await conn.execute(
                insert(t.users).values(
                    account_id=account_id,
                    username=key,
                    email=mail,
                    password_hash=stored_hash,
                    role=the_role.value,
                    enabled=enabled,
                    failed_logins=0,
                    created_at=now,
                    updated_at=now,
                )
            )
            await self._audit(
                conn,
                actor,
                "user.create",
                f"user:{key}",
                {"account": account_name, "role": the_role.value, "enabled": enabled},
            )
        return User(
            id=_new_id(result),
            username=key,
            password_hash=stored_hash,
            role=the_role,
            account_id=account_id,
            email=mail,
            enabled=enabled,
        )

    async def get_user(self, username: str) -> User | None:
        try:
            key = prov.normalise_username(username)
        except prov.ProvisioningError:
            return None
        async with self._connect(read_only=True) as conn:
            row = (await conn.execute(select(t.users).where(t.users.c.username == key))).first()
        return None if row is None else _user(row)

    async def list_users(self, account: str | None = None) -> list[User]:
        """Users of one account, or every user (operators included) when `account` is None."""
        async with self._connect(read_only=True) as conn:
            query = select(t.users).order_by(t.users.c.username)
            if account is not None:
                account_row = await self._account_row(conn, account)
                query = query.where(t.users.c.account_id == account_row.id)
            return [_user(row) for row in await conn.execute(query)]

    async def set_password(
        self,
        username: str,
        *,
        actor: str,
        password: str | None = None,
        password_hash: str | None = None,
    ) -> User:
        """Replace a user's password (policy-checked) or hash; also lifts a login lock-out."""
        key = prov.normalise_username(username)
        check_user_secret(key, password, password_hash)
        stored_hash = await _hash(password, password_hash)
        async with self._connect() as conn:
            row = await self._user_row(conn, key)
            await conn.execute(
                update(t.users)
                .where(t.users.c.id == row.id)
                .values(
                    password_hash=stored_hash,
                    failed_logins=0,
                    locked_until=None,
                    updated_at=self._now(),
                )
            )
            await self._audit(conn, actor, "user.password", f"user:{key}")
        return User(
            id=row.id,
            username=row.username,
            password_hash=stored_hash,
            role=Role(row.role),
            account_id=row.account_id,
            email=row.email,
            enabled=bool(row.enabled),
        )

    async def set_user_enabled(self, username: str, enabled: bool, *, actor: str) -> User:
        """Enable (also lifting a lock-out) or disable a user."""
        async with self._connect() as conn:
            row = await self._user_row(conn, username)
            values: dict[str, Any] = {"enabled": enabled, "updated_at": self._now()}
            if enabled:
                values.update(failed_logins=0, locked_until=None)
            await conn.execute(update(t.users).where(t.users.c.id == row.id).values(**values))
            if bool(row.enabled) != enabled:
                action = "user.enable" if enabled else "user.disable"
                await self._audit(conn, actor, action, f"user:{row.username}")
        return User(
            id=row.id,
            username=row.username,
            password_hash=row.password_hash,
            role=Role(row.role),
            account_id=row.account_id,
            email=row.email,
            enabled=enabled,
        )

    async def update_user(
        self,
        username: str,
        *,
        actor: str,
        role: Role | str | Unset = UNSET,
        email: str | Unset | None = UNSET,
        account: str | Unset | None = UNSET,
    ) -> User:
        """Change a user's role, e-mail or account (None: no account, operators only)."""
        async with self._connect() as conn:
            row = await self._user_row(conn, username)
            values: dict[str, Any] = {}
            detail: dict[str, Any] = {}
            new_role = Role(row.role) if isinstance(role, Unset) else prov.normalise_role(role)
            if new_role.value != row.role:
                values["role"] = detail["role"] = new_role.value
            if not isinstance(email, Unset):
                mail = prov.normalise_email(email) if email else None
                if mail != row.email:
                    values["email"] = detail["email"] = mail
            account_id = row.account_id
            if not isinstance(account, Unset):
                if account is None:
                    account_id = None
                    detail_account = None
                else:
                    account_row = await self._account_row(conn, account)
                    account_id, detail_account = account_row.id, account_row.name
                if account_id != row.account_id:
                    values["account_id"] = account_id
                    detail["account"] = detail_account
            if new_role is Role.ACCOUNT_USER and account_id is None:
                raise prov.ProvisioningError("account", None, "an account user needs an account")
            if values:
                values["updated_at"] = self._now()
                await conn.execute(update(t.users).where(t.users.c.id == row.id).values(**values))
                await self._audit(conn, actor, "user.update", f"user:{row.username}", detail)
        return User(
            id=row.id,
            username=row.username,
            password_hash=row.password_hash,
            role=new_role,
            account_id=account_id,
            email=values.get("email", row.email),
            enabled=bool(row.enabled),
        )

    async def delete_user(self, username: str, *, actor: str) -> None:
        async with self._connect() as conn:
            row = await self._user_row(conn, username)
            await conn.execute(delete(t.users).where(t.users.c.id == row.id))
            await self._audit(conn, actor, "user.delete", f"user:{row.username}")

    async def verify_login(self, username: str, password: str) -> User | None:
        """The user if `password` is right and the user may log in now, else None.

        None for: unknown user (a dummy verification is spent, so timing does not reveal
        which usernames exist), wrong password, disabled user, user of a disabled account,
        and a user locked out after `max_failed_logins` consecutive failures (for `lockout`).
        A successful login resets the failure count and re-hashes a hash made with outdated
        parameters."""
        try:
            key = prov.normalise_username(username)
        except prov.ProvisioningError:
            await asyncio.to_thread(passwords.dummy_verify, password)
            return None
        async with self._connect(read_only=True) as conn:
            row = (
                await conn.execute(
                    select(t.users, t.accounts.c.enabled.label("account_enabled"))
                    .select_from(t.users.outerjoin(t.accounts))
                    .where(t.users.c.username == key)
                )
            ).first()
        if row is None:
            await asyncio.to_thread(passwords.dummy_verify, password)
            return None
        now = self._now()
        locked = row.locked_until is not None and row.locked_until > now
        ok = await asyncio.to_thread(passwords.verify_password, row.password_hash, password)
        if locked:
            return None
        if not ok:
            await self._login_failed(row.id, now)
            return None
        if not row.enabled or (row.account_id is not None and not row.account_enabled):
            return None
        stored_hash = row.password_hash
        values: dict[str, Any] = {}
        if row.failed_logins or row.locked_until is not None:
            values.update(failed_logins=0, locked_until=None)
        if passwords.needs_rehash(stored_hash):
            stored_hash = await asyncio.to_thread(passwords.hash_password, password)
            values["password_hash"] = stored_hash
        if values:
            async with self._connect() as conn:
                await conn.execute(update(t.users).where(t.users.c.id == row.id).values(**values))
                if "password_hash" in values:
                    await self._audit(conn, "system", "user.rehash", f"user:{key}")
        return User(
            id=row.id,
            username=row.username,
            password_hash=stored_hash,
            role=Role(row.role),
            account_id=row.account_id,
            email=row.email,
            enabled=True,
        )

    async def _login_failed(self, user_id: int, now: datetime) -> None:
        async with self._connect() as conn:
            await conn.execute(
                update(t.users)
                .where(t.users.c.id == user_id)
                .values(failed_logins=t.users.c.failed_logins + 1)
            )
            failures = (
                await conn.execute(
                    select(t.users.c.failed_logins, t.users.c.username).where(
                        t.users.c.id == user_id
                    )
                )
            ).one()
            if failures.failed_logins >= self._max_failed_logins:
                await conn.execute(
                    update(t.users)
                    .where(t.users.c.id == user_id)
                    .values(failed_logins=0, locked_until=now + self._lockout)
                )
                await self._audit(
                    conn,
                    "system",
                    "user.lockout",
                    f"user:{failures.username}",
                    {"until": (now + self._lockout).isoformat()},
                )

    # --- senders ----------------------------------------------------------------------------

    async def add_sender(self, account: str, pattern: str, *, actor: str) -> SenderRule:
        """Authorise `pattern` (`user@domain` or `*@domain`) for `account`. A pattern belongs to
        one account only."""
        key = prov.normalise_sender_pattern(pattern)
        async with self._connect() as conn:
            account_row = await self._account_row(conn, account)
            existing = (
                await conn.execute(
                    select(t.sender_rules.c.account_id, t.accounts.c.name)
                    .select_from(t.sender_rules.join(t.accounts))
                    .where(t.sender_rules.c.pattern == key)
                )
            ).first()
            if existing is not None:
                if existing.account_id == account_row.id:
                    raise prov.Conflict("sender", key, f"is already in account {existing.name}")
                raise prov.Conflict("sender", key, f"already belongs to account {existing.name}")
            result = await conn.execute(
                insert(t.sender_rules).values(
                    account_id=account_row.id, pattern=key, created_at=self._now()
                )
            )
            await self._audit(
                conn, actor, "sender.add", f"sender:{key}", {"account": account_row.name}
            )
        return SenderRule(id=_new_id(result), account_id=account_row.id, pattern=key)

    async def move_sender(self, pattern: str, account: str, *, actor: str) -> SenderRule:
        """Give an existing sender pattern to another account."""
        key = prov.normalise_sender_pattern(pattern)
        async with self._connect() as conn:
            account_row = await self._account_row(conn, account)
            row = (
                await conn.execute(
                    select(t.sender_rules, t.accounts.c.name.label("account_name"))
                    .select_from(t.sender_rules.join(t.accounts))
                    .where(t.sender_rules.c.pattern == key)
                )
            ).first()
            if row is None:
                raise prov.UnknownObject("sender", key, "no such sender")
            if row.account_id != account_row.id:
                await conn.execute(
                    update(t.sender_rules)
                    .where(t.sender_rules.c.id == row.id)
                    .values(account_id=account_row.id)
                )
                await self._audit(
                    conn,
                    actor,
                    "sender.move",
                    f"sender:{key}",
                    {"from": row.account_name, "account": account_row.name},
                )
        return SenderRule(id=row.id, account_id=account_row.id, pattern=key)

    async def remove_sender(self, account: str, pattern: str, *, actor: str) -> None:
        key = prov.normalise_sender_pattern(pattern)
        async with self._connect() as conn:
            account_row = await self._account_row(conn, account)
            result = await conn.execute(
                delete(t.sender_rules).where(
                    t.sender_rules.c.pattern == key,
                    t.sender_rules.c.account_id == account_row.id,
                )
            )
            if not result.rowcount:
                raise prov.UnknownObject(
                    "sender", key, f"not a sender of account {account_row.name}"
                )
            await self._audit(
                conn, actor, "sender.remove", f"sender:{key}", {"account": account_row.name}
            )

    async def list_senders(self, account: str | None = None) -> list[SenderRule]:
        async with self._connect(read_only=True) as conn:
            query = select(t.sender_rules).order_by(t.sender_rules.c.pattern)
            if account is not None:
                account_row = await self._account_row(conn, account)
                query = query.where(t.sender_rules.c.account_id == account_row.id)
            return [_sender(row) for row in await conn.execute(query)]

    async def account_for_sender(self, address: str) -> Account | None:
        """The account that authorised `address`: an exact `user@domain` rule first, then the
        domain's `*@domain` rule. The account is returned even when disabled, so the ingress can
        tell 'account disabled' from 'unknown sender'. None for an unknown or invalid address."""
        try:
            key = prov.normalise_sender_address(address)
        except prov.ProvisioningError:
            return None
        wildcard = "*@" + key.rpartition("@")[2]
        async with self._connect(read_only=True) as conn:
            rows = (
                await conn.execute(
                    select(t.accounts, t.sender_rules.c.pattern)
                    .select_from(t.sender_rules.join(t.accounts))
                    .where(t.sender_rules.c.pattern.in_([key, wildcard]))
                )
            ).all()
        by_pattern = {row.pattern: row for row in rows}
        row = by_pattern.get(key) or by_pattern.get(wildcard)
        return None if row is None else _account(row)

    # --- networks ---------------------------------------------------------------------------

    async def add_network(self, account: str, cidr: str, *, actor: str) -> Network:
        """Allow connections from `cidr` (normalised: host bits cleared) for `account`."""
        key = prov.normalise_cidr(cidr)
        async with self._connect() as conn:
            account_row = await self._account_row(conn, account)
            existing = await conn.execute(
                select(t.networks.c.id).where(
                    t.networks.c.account_id == account_row.id, t.networks.c.cidr == key
                )
            )
            if existing.first() is not None:
                raise prov.Conflict("network", key, f"is already in account {account_row.name}")
            result = await conn.execute(
                insert(t.networks).values(
                    account_id=account_row.id, cidr=key, created_at=self._now()
                )
            )
            await self._audit(
                conn, actor, "network.add", f"network:{key}", {"account": account_row.name}
            )
        return Network(id=_new_id(result), account_id=account_row.id, cidr=key)

    async def remove_network(self, account: str, cidr: str, *, actor: str) -> None:
        key = prov.normalise_cidr(cidr)
        async with self._connect() as conn:
            account_row = await self._account_row(conn, account)
            result = await conn.execute(
                delete(t.networks).where(
                    t.networks.c.account_id == account_row.id, t.networks.c.cidr == key
                )
            )
            if not result.rowcount:
                raise prov.UnknownObject(
                    "network", key, f"not a network of account {account_row.name}"
                )
            await self._audit(
                conn, actor, "network.remove", f"network:{key}", {"account": account_row.name}
            )

    async def list_networks(self, account: str | None = None) -> list[Network]:
        async with self._connect(read_only=True) as conn:
            query = select(t.networks).order_by(t.networks.c.account_id, t.networks.c.cidr)
            if account is not None:
                account_row = await self._account_row(conn, account)
                query = query.where(t.networks.c.account_id == account_row.id)
            return [_network(row) for row in await conn.execute(query)]

    async def allows(self, account_id: int, ip: str) -> bool:
        """True when `ip` lies in one of the account's networks. An account without networks
        allows nothing (fail closed): every client network must be provisioned."""
        async with self._connect(read_only=True) as conn:
            rows = await conn.execute(
                select(t.networks).where(t.networks.c.account_id == account_id)
            )
            return any(_network(row).contains(ip) for row in rows)

    # --- SMPP credentials -------------------------------------------------------------------

    async def _smpp_row(self, conn: AsyncConnection, system_id: str) -> Row[Any]:
        key = prov.normalise_system_id(system_id)
        row = (
            await conn.execute(
                select(t.smpp_credentials).where(t.smpp_credentials.c.system_id == key)
            )
        ).first()
        if row is None:
            raise prov.UnknownObject("system_id", key, "no such SMPP credential")
        return row

    async def add_smpp(
        self,
        account: str,
        system_id: str,
        *,
        actor: str,
        password: str | None = None,
        password_hash: str | None = None,
        system_type: str | None = None,
        max_binds: int = 4,
        throughput: float = 100.0,
        enabled: bool = True,
    ) -> SmppCredential:
        """Add an SMPP credential (what an ESME binds with) to `account`."""
        key = prov.normalise_system_id(system_id)
        kind = prov.normalise_system_type(system_type)
        binds = prov.normalise_max_binds(max_binds)
        rate = prov.normalise_throughput(throughput)
        check_smpp_secret(key, password, password_hash)
        stored_hash = await _hash(password, password_hash)
        now = self._now()
        async with self._connect() as conn:
            account_row = await self._account_row(conn, account)
            existing = (
                await conn.execute(
                    select(t.accounts.c.name)
                    .select_from(t.smpp_credentials.join(t.accounts))
                    .where(t.smpp_credentials.c.system_id == key)
                )
            ).first()
            if existing is not None:
                raise prov.Conflict("system_id", key, f"already belongs to account {existing.name}")
            result = await conn.execute(
                insert(t.smpp_credentials).values(
                    account_id=account_row.id,
                    system_id=key,
                    password_hash=stored_hash,
                    system_type=kind,
                    max_binds=binds,
                    throughput=rate,
                    enabled=enabled,
                    created_at=now,
                    updated_at=now,
                )
            )
            await self._audit(
                conn,
                actor,
                "smpp.create",
                f"smpp:{key}",
                {
                    "account": account_row.name,
                    "system_type": kind,
                    "max_binds": binds,
                    "throughput": rate,
                    "enabled": enabled,
                },
            )
        return SmppCredential(
            id=_new_id(result),
            account_id=account_row.id,
            system_id=key,
            password_hash=stored_hash,
            system_type=kind,
            max_binds=binds,
            throughput=rate,
            enabled=enabled,
        )

    async def update_smpp(
        self,
        system_id: str,
        *,
        actor: str,
        account: str | Unset = UNSET,
        password: str | None = None,
        password_hash: str | None = None,
        system_type: str | Unset | None = UNSET,
        max_binds: int | Unset = UNSET,
        throughput: float | Unset = UNSET,
        enabled: bool | Unset = UNSET,
    ) -> SmppCredential:
        """Change an SMPP credential; arguments left out (UNSET, or None for the password)
        stay as they are."""
        key = prov.normalise_system_id(system_id)
        values: dict[str, Any] = {}
        detail: dict[str, Any] = {}
        if not isinstance(system_type, Unset):
            values["system_type"] = prov.normalise_system_type(system_type)
        if not isinstance(max_binds, Unset):
            values["max_binds"] = prov.normalise_max_binds(max_binds)
        if not isinstance(throughput, Unset):
            values["throughput"] = prov.normalise_throughput(throughput)
        if not isinstance(enabled, Unset):
            values["enabled"] = bool(enabled)
        new_hash = None
        if password is not None or password_hash is not None:
            check_smpp_secret(key, password, password_hash)
            new_hash = await _hash(password, password_hash)
        async with self._connect() as conn:
            row = await self._smpp_row(conn, key)
            current = _smpp(row)
            changes = {k: v for k, v in values.items() if getattr(current, k) != v}
            detail.update(changes)
            if not isinstance(account, Unset):
                account_row = await self._account_row(conn, account)
                if account_row.id != row.account_id:
                    changes["account_id"] = account_row.id
                    detail["account"] = account_row.name
            if new_hash is not None and new_hash != row.password_hash:
                changes["password_hash"] = new_hash
                detail["password"] = "changed"
            if changes:
                await conn.execute(
                    update(t.smpp_credentials)
                    .where(t.smpp_credentials.c.id == row.id)
                    .values(**changes, updated_at=self._now())
                )
                await self._audit(conn, actor, "smpp.update", f"smpp:{key}", detail)
        return SmppCredential(
            id=row.id,
            account_id=changes.get("account_id", row.account_id),
            system_id=key,
            password_hash=changes.get("password_hash", row.password_hash),
            system_type=changes.get("system_type", row.system_type),
            max_binds=changes.get("max_binds", row.max_binds),
            throughput=float(changes.get("throughput", row.throughput)),
            enabled=bool(changes.get("enabled", row.enabled)),
        )

    async def remove_smpp(self, system_id: str, *, actor: str) -> None:
        async with self._connect() as conn:
            row = await self._smpp_row(conn, system_id)
            names = await self._account_names(conn)
            await conn.execute(delete(t.smpp_credentials).where(t.smpp_credentials.c.id == row.id))
            await self._audit(
                conn,
                actor,
                "smpp.delete",
                f"smpp:{row.system_id}",
                {"account": names.get(row.account_id)},
            )

    async def list_smpp(self, account: str | None = None) -> list[SmppCredential]:
        async with self._connect(read_only=True) as conn:
            query = select(t.smpp_credentials).order_by(t.smpp_credentials.c.system_id)
            if account is not None:
                account_row = await self._account_row(conn, account)
                query = query.where(t.smpp_credentials.c.account_id == account_row.id)
            return [_smpp(row) for row in await conn.execute(query)]

    async def credential(self, system_id: str) -> SmppCredential | None:
        """The SMPP credential for a bind's system_id (exact, case-sensitive), or None."""
        try:
            key = prov.normalise_system_id(system_id)
        except prov.ProvisioningError:
            return None
        async with self._connect(read_only=True) as conn:
            row = (
                await conn.execute(
                    select(t.smpp_credentials).where(t.smpp_credentials.c.system_id == key)
                )
            ).first()
        return None if row is None else _smpp(row)

    async def verify_bind(self, system_id: str, password: str) -> SmppCredential | None:
        """The credential when `password` is right and both the credential and its account are
        enabled; else None (after a dummy verification for unknown system_ids). Rate limiting
        binds is the SMPP ingress's job."""
        credential = await self.credential(system_id)
        if credential is None:
            await asyncio.to_thread(passwords.dummy_verify, password)
            return None
        ok = await asyncio.to_thread(passwords.verify_password, credential.password_hash, password)
        if not ok or not credential.enabled:
            return None
        account = await self.get_account(credential.account_id)
        if account is None or not account.enabled:
            return None
        return credential

    # --- audit ------------------------------------------------------------------------------

    async def record(
        self, *, actor: str, action: str, subject: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        """Add an audit entry for something done outside the directory (e.g. an apply)."""
        async with self._connect() as conn:
            await self._audit(conn, actor, action, subject, detail)

    async def audit_log(self, limit: int = 50) -> list[AuditEntry]:
        """The newest `limit` audit entries, newest first."""
        limit = max(1, min(limit, AUDIT_LIMIT_MAX))
        async with self._connect(read_only=True) as conn:
            rows = await conn.execute(
                select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)
            )
            return [
                AuditEntry(
                    id=row.id,
                    at=row.at,
                    actor=row.actor,
                    action=row.action,
                    subject=row.subject,
                    detail=dict(row.detail or {}),
                )
                for row in rows
            ]
