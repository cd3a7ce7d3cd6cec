"""The account directory against SQLite and PostgreSQL (a throw-away database per session).

The `database_url`, `engine` and `directory` fixtures come from tests/db_fixtures.py.
PostgreSQL: TELEWAY_TEST_POSTGRES (default postgresql+asyncpg://postgres@127.0.0.1:5432/test)
must be reachable, or the tests fail; TELEWAY_SKIP_POSTGRES=1 skips the PostgreSQL half.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from teleway.core import passwords
from teleway.core.model import Role
from teleway.core.ports import AccountDirectory, StoreUnavailable
from teleway.core.provisioning import Conflict, ProvisioningError, UnknownObject
from teleway.store import tables
from teleway.store.directory import UNSET, Directory
from teleway.store.engine import open_engine

pytestmark = pytest.mark.usefixtures("cheap_hashing")

ACTOR = "test:alice"
USER_PASSWORD = "correct horse battery"
SMPP_PASSWORD = "s3cr3t!"


class FakeClock:
    def __init__(self) -> None:
        self.at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def directory_options(clock: FakeClock) -> dict[str, Any]:
    return {"clock": clock, "max_failed_logins": 3, "lockout": timedelta(minutes=5)}


async def _audit_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(tables.audit_log).order_by(tables.audit_log.c.id))
        return [dict(row._mapping) for row in rows]


# --- accounts -------------------------------------------------------------------------------


async def test_create_and_find_account(directory: Directory) -> None:
    port: AccountDirectory = directory  # mypy checks Directory against the port
    assert await port.account_by_name("demo") is None
    account = await directory.create_account(
        "Demo", actor=ACTOR, settings={"default_country": "gb", "max_sms_parts": 3}
    )
    assert account.name == "demo"
    assert account.settings.default_country == "GB"
    assert account.settings.max_sms_parts == 3
    assert await directory.get_account(account.id) == account
    assert await directory.account_by_name("DEMO") == account
    assert await directory.account_by_name("nobody") is None
    assert await directory.account_by_name("not a name!") is None
    assert await directory.get_account(account.id + 100) is None
    assert [a.name for a in await directory.list_accounts()] == ["demo"]


async def test_duplicate_account_is_a_conflict(directory: Directory) -> None:
    await directory.create_account("demo", actor=ACTOR)
    with pytest.raises(Conflict, match="exists already"):
        await directory.create_account("DEMO", actor=ACTOR)


async def test_invalid_account_input_is_rejected_before_storing(directory: Directory) -> None:
    with pytest.raises(ProvisioningError) as info:
        await directory.create_account("-bad", actor=ACTOR)
    assert info.value.field == "account"
    with pytest.raises(ProvisioningError) as info:
        await directory.create_account("ok", actor=ACTOR, settings={"sms_template": "{name}"})
    assert info.value.field == "settings.sms_template"
    assert await directory.list_accounts() == []


async def test_settings_are_merged_and_only_overrides_are_stored(
    directory: Directory, engine: AsyncEngine
) -> None:
    await directory.create_account("demo", actor=ACTOR, settings={"max_sms_parts": 3})
    account = await directory.update_settings(
        "demo", {"require_tls": True, "sms_template": "{body}"}, actor=ACTOR
    )
    assert account.settings.max_sms_parts == 3
    assert account.settings.require_tls is True
    assert (await directory.require_account("demo")).settings == account.settings
    async with engine.connect() as conn:
        stored = (await conn.execute(select(tables.accounts.c.settings))).scalar_one()
    assert stored == {"max_sms_parts": 3, "require_tls": True, "sms_template": "{body}"}
    # back to the default value: no longer stored
    await directory.update_settings("demo", {"max_sms_parts": 10}, actor=ACTOR)
    async with engine.connect() as conn:
        stored = (await conn.execute(select(tables.accounts.c.settings))).scalar_one()
    assert stored == {"require_tls": True, "sms_template": "{body}"}
    with pytest.raises(ProvisioningError, match="unknown setting"):
        await directory.update_settings("demo", {"colour": "blue"}, actor=ACTOR)
    with pytest.raises(UnknownObject):
        await directory.update_settings("nobody", {"require_tls": True}, actor=ACTOR)


async def test_rename_enable_disable(directory: Directory) -> None:
    await directory.create_account("demo", actor=ACTOR)
    await directory.create_account("other", actor=ACTOR)
    renamed = await directory.rename_account("demo", "acme", actor=ACTOR)
    assert renamed.name == "acme"
    assert await directory.account_by_name("demo") is None
    with pytest.raises(Conflict):
        await directory.rename_account("acme", "other", actor=ACTOR)
    disabled = await directory.set_account_enabled("acme", False, actor=ACTOR)
    assert disabled.enabled is False
    assert (await directory.require_account("acme")).enabled is False
    assert (await directory.set_account_enabled("acme", True, actor=ACTOR)).enabled is True


async def test_delete_account_removes_what_belongs_to_it(directory: Directory) -> None:
    await directory.create_account("demo", actor=ACTOR)
    await directory.create_account("keep", actor=ACTOR)
    await directory.add_user("u1", account="demo", password=USER_PASSWORD, actor=ACTOR)
    await directory.add_sender("demo", "a@example.com", actor=ACTOR)
    await directory.add_network("demo", "10.0.0.0/8", actor=ACTOR)
    await directory.add_smpp("demo", "demo", password=SMPP_PASSWORD, actor=ACTOR)
    await directory.add_sender("keep", "b@example.com", actor=ACTOR)
    await directory.delete_account("demo", actor=ACTOR)
    assert [a.name for a in await directory.list_accounts()] == ["keep"]
    assert await directory.list_users() == []
    assert [s.pattern for s in await directory.list_senders()] == ["b@example.com"]
    assert await directory.list_networks() == []
    assert await directory.list_smpp() == []
    with pytest.raises(UnknownObject, match="no such account"):
        await directory.delete_account("demo", actor=ACTOR)


async def test_account_with_messages_cannot_be_deleted(
    directory: Directory, engine: AsyncEngine, clock: FakeClock
) -> None:
    account = await directory.create_account("demo", actor=ACTOR)
    async with engine.begin() as conn:
        await conn.execute(
            insert(tables.messages).values(
                id="m1",
                account_id=account.id,
                origin="http",
                submitter="x",
                created_at=clock.now(),
            )
        )
    assert await directory.message_count("demo") == 1
    with pytest.raises(Conflict, match="disable it instead"):
        await directory.delete_account("demo", actor=ACTOR)
    assert await directory.account_by_name("demo") is not None


# --- users ----------------------------------------------------------------------------------


async def test_users_and_login(directory: Directory) -> None:
    account = await directory.create_account("demo", actor=ACTOR)
    user = await directory.add_user(
        "Alice", account="demo", password=USER_PASSWORD, email="Alice@Example.com", actor=ACTOR
    )
    assert user.username == "alice"
    assert user.role is Role.ACCOUNT_USER
    assert user.account_id == account.id
    assert user.email == "alice@example.com"
    assert user.password_hash.startswith("$argon2id$")
    operator = await directory.add_user(
        "root", role="operator", password=USER_PASSWORD + "!", actor=ACTOR
    )
    assert operator.account_id is None
    assert [u.username for u in await directory.list_users()] == ["alice", "root"]
    assert [u.username for u in await directory.list_users("demo")] == ["alice"]

    logged_in = await directory.verify_login("ALICE", USER_PASSWORD)
    assert logged_in is not None and logged_in.id == user.id
    assert await directory.verify_login("alice", "wrong password") is None
    assert await directory.verify_login("nobody", USER_PASSWORD) is None
    assert await directory.verify_login("not a username!", USER_PASSWORD) is None


async def test_user_rules(directory: Directory) -> None:
    await directory.create_account("demo", actor=ACTOR)
    with pytest.raises(ProvisioningError, match="at least 10") as info:
        await directory.add_user("bob", account="demo", password="short", actor=ACTOR)
    assert info.value.value == "<hidden>"
    with pytest.raises(ProvisioningError, match="username"):
        await directory.add_user("bob", account="demo", password="bob", actor=ACTOR)
    with pytest.raises(ProvisioningError, match="common"):
        await directory.add_user("bob", account="demo", password="password123", actor=ACTOR)
    with pytest.raises(ProvisioningError, match="needs an account"):
        await directory.add_user("bob", password=USER_PASSWORD, actor=ACTOR)
    with pytest.raises(UnknownObject):
        await directory.add_user("bob", account="nope", password=USER_PASSWORD, actor=ACTOR)
    with pytest.raises(ProvisioningError, match="either"):
        await directory.add_user("bob", account="demo", actor=ACTOR)
    with pytest.raises(ProvisioningError, match="argon2id"):
        await directory.add_user("bob", account="demo", password_hash="md5$x", actor=ACTOR)
    await directory.add_user("bob", account="demo", password=USER_PASSWORD, actor=ACTOR)
    with pytest.raises(Conflict, match="taken already \\(account demo\\)"):
        await directory.add_user("BOB", account="demo", password=USER_PASSWORD, actor=ACTOR)


async def test_password_hash_can_be_given(directory: Directory) -> None:
    await directory.create_account("demo", actor=ACTOR)
    hashed = passwords.hash_password(USER_PASSWORD)
    user = await directory.add_user("bob", account="demo", password_hash=hashed, actor=ACTOR)
    assert user.password_hash == hashed
    assert await directory.verify_login("bob", USER_PASSWORD) is not None


async def test_disabled_user_or_account_cannot_log_in(directory: Directory) -> None:
    await directory.create_account("demo", actor=ACTOR)
    await directory.add_user("bob", account="demo", password=USER_PASSWORD, actor=ACTOR)
    await directory.set_user_enabled("bob", False, actor=ACTOR)
    assert await directory.verify_login("bob", USER_PASSWORD) is None
    await directory.set_user_enabled("bob", True, actor=ACTOR)
    assert await directory.verify_login("bob", USER_PASSWORD) is not None
    await directory.set_account_enabled("demo", False, actor=ACTOR)
    assert await directory.verify_login("bob", USER_PASSWORD) is None


async def test_lockout_after_repeated_failures(directory: Directory, clock: FakeClock) -> None:
    await directory.create_account("demo", actor=ACTOR)
    await directory.add_user("bob", account="demo", password=USER_PASSWORD, actor=ACTOR)
    for _ in range(3):
        assert await directory.verify_login("bob", "wrong password!") is None
    # locked: even the right password is refused
    assert await directory.verify_login("bob", USER_PASSWORD) is None
    clock.at += timedelta(minutes=6)
    assert await directory.verify_login("bob", USER_PASSWORD) is not None
    # a success resets the count
    for _ in range(2):
        await directory.verify_login("bob", "wrong password!")
    assert await directory.verify_login("bob", USER_PASSWORD) is not None
    for _ in range(2):
        await directory.verify_login("bob", "wrong password!")
    assert await directory.verify_login("bob", USER_PASSWORD) is not None


async def test_set_password_lifts_lockout(directory: Directory) -> None:
    await directory.create_account("demo", actor=ACTOR)
    await directory.add_user("bob", account="demo", password=USER_PASSWORD, actor=ACTOR)
    for _ in range(3):
        await directory.verify_login("bob", "wrong password!")
    await directory.set_password("bob", password="another long one", actor=ACTOR)
    assert await directory.verify_login("bob", USER_PASSWORD) is None
    assert await directory.verify_login("bob", "another long one") is not None
    with pytest.raises(ProvisioningError):
        await directory.set_password("bob", password="bob", actor=ACTOR)
    with pytest.raises(UnknownObject):
        await directory.set_password("nobody", password="another long one", actor=ACTOR)


async def test_login_rehashes_outdated_hash(directory: Directory, engine: AsyncEngine) -> None:
    await directory.create_account("demo", actor=ACTOR)
    old = await directory.add_user("bob", account="demo", password=USER_PASSWORD, actor=ACTOR)
    passwords.configure(time_cost=2, memory_cost=16, parallelism=1)
    user = await directory.verify_login("bob", USER_PASSWORD)
    assert user is not None
    assert user.password_hash != old.password_hash
    assert "t=2" in user.password_hash
    stored = await directory.get_user("bob")
    assert stored is not None and stored.password_hash == user.password_hash
    assert any(row["action"] == "user.rehash" for row in await _audit_rows(engine))


async def test_update_and_delete_user(directory: Directory) -> None:
    await directory.create_account("demo", actor=ACTOR)
    other = await directory.create_account("other", actor=ACTOR)
    await directory.add_user("bob", account="demo", password=USER_PASSWORD, actor=ACTOR)
    user = await directory.update_user(
        "bob", actor=ACTOR, email="bob@example.com", account="other", role=UNSET
    )
    assert user.account_id == other.id
    assert user.email == "bob@example.com"
    with pytest.raises(ProvisioningError, match="needs an account"):
        await directory.update_user("bob", actor=ACTOR, account=None)
    operator = await directory.update_user("bob", actor=ACTOR, role="operator", account=None)
    assert operator.role is Role.OPERATOR and operator.account_id is None
    await directory.delete_user("bob", actor=ACTOR)
    assert await directory.get_user("bob") is None
    with pytest.raises(UnknownObject):
        await directory.delete_user("bob", actor=ACTOR)


# --- senders --------------------------------------------------------------------------------


async def test_senders_are_normalised_and_unique(directory: Directory) -> None:
    await directory.create_account("demo", actor=ACTOR)
    await directory.create_account("other", actor=ACTOR)
    rule = await directory.add_sender("demo", "Alice@Bücher.Example", actor=ACTOR)
    assert rule.pattern == "alice@xn--bcher-kva.example"
    await directory.add_sender("demo", "*@Example.ORG", actor=ACTOR)
    with pytest.raises(Conflict, match="already belongs to account demo"):
        await directory.add_sender("other", "ALICE@bücher.example", actor=ACTOR)
    with pytest.raises(Conflict, match="already in account demo"):
        await directory.add_sender("demo", "*@example.org", actor=ACTOR)
    with pytest.raises(ProvisioningError, match="wildcard"):
        await directory.add_sender("demo", "a*@example.org", actor=ACTOR)
    assert [s.pattern for s in await directory.list_senders("demo")] == [
        "*@example.org",
        "alice@xn--bcher-kva.example",
    ]
    assert await directory.list_senders("other") == []


async def test_account_for_sender_prefers_exact_address(directory: Directory) -> None:
    demo = await directory.create_account("demo", actor=ACTOR)
    boss = await directory.create_account("boss", actor=ACTOR)
    await directory.add_sender("demo", "*@example.com", actor=ACTOR)
    await directory.add_sender("boss", "ceo@example.com", actor=ACTOR)
    await directory.add_sender("demo", "x@bücher.example", actor=ACTOR)
    found = await directory.account_for_sender("CEO@Example.com")
    assert found is not None and found.id == boss.id
    found = await directory.account_for_sender("anyone@example.com")
    assert found is not None and found.id == demo.id
    found = await directory.account_for_sender("x@BÜCHER.example")
    assert found is not None and found.id == demo.id
    assert await directory.account_for_sender("someone@example.net") is None
    assert await directory.account_for_sender("anyone@sub.example.com") is None
    assert await directory.account_for_sender("not an address") is None
    # a disabled account is still found (the ingress says why it refuses)
    await directory.set_account_enabled("boss", False, actor=ACTOR)
    found = await directory.account_for_sender("ceo@example.com")
    assert found is not None and found.enabled is False


async def test_remove_and_move_sender(directory: Directory) -> None:
    await directory.create_account("demo", actor=ACTOR)
    other = await directory.create_account("other", actor=ACTOR)
    await directory.add_sender("demo", "a@example.com", actor=ACTOR)
    with pytest.raises(UnknownObject, match="not a sender of account other"):
        await directory.remove_sender("other", "a@example.com", actor=ACTOR)
    moved = await directory.move_sender("a@example.com", "other", actor=ACTOR)
    assert moved.account_id == other.id
    found = await directory.account_for_sender("a@example.com")
    assert found is not None and found.name == "other"
    await directory.remove_sender("other", "A@example.com", actor=ACTOR)
    assert await directory.account_for_sender("a@example.com") is None


# --- networks -------------------------------------------------------------------------------


async def test_networks_and_allows(directory: Directory) -> None:
    demo = await directory.create_account("demo", actor=ACTOR)
    other = await directory.create_account("other", actor=ACTOR)
    network = await directory.add_network("demo", "192.0.2.7/24", actor=ACTOR)
    assert network.cidr == "192.0.2.0/24"
    await directory.add_network("demo", "2001:DB8::/32", actor=ACTOR)
    with pytest.raises(Conflict):
        await directory.add_network("demo", "192.0.2.0/24", actor=ACTOR)
    # the same network may serve two accounts
    await directory.add_network("other", "192.0.2.0/24", actor=ACTOR)
    assert await directory.allows(demo.id, "192.0.2.200")
    assert await directory.allows(demo.id, "::ffff:192.0.2.9")
    assert await directory.allows(demo.id, "2001:db8:1::5")
    assert not await directory.allows(demo.id, "198.51.100.1")
    assert not await directory.allows(demo.id, "garbage")
    await directory.remove_network("other", "192.0.2.0/24", actor=ACTOR)
    # no networks: nothing is allowed
    assert not await directory.allows(other.id, "192.0.2.1")
    with pytest.raises(UnknownObject):
        await directory.remove_network("other", "192.0.2.0/24", actor=ACTOR)
    assert [n.cidr for n in await directory.list_networks("demo")] == [
        "192.0.2.0/24",
        "2001:db8::/32",
    ]


# --- SMPP credentials -----------------------------------------------------------------------


async def test_smpp_credentials(directory: Directory) -> None:
    demo = await directory.create_account("demo", actor=ACTOR)
    await directory.create_account("other", actor=ACTOR)
    credential = await directory.add_smpp(
        "demo", "Demo1", password=SMPP_PASSWORD, system_type="VMA", max_binds=2, actor=ACTOR
    )
    assert credential.system_id == "Demo1"
    assert credential.account_id == demo.id
    assert (credential.max_binds, credential.throughput) == (2, 100.0)
    assert await directory.credential("Demo1") == credential
    assert await directory.credential("demo1") is None  # system_id is case-sensitive
    with pytest.raises(Conflict, match="already belongs to account demo"):
        await directory.add_smpp("other", "Demo1", password=SMPP_PASSWORD, actor=ACTOR)
    with pytest.raises(ProvisioningError, match="1 to 8"):
        await directory.add_smpp("demo", "x", password="much too long", actor=ACTOR)
    with pytest.raises(ProvisioningError, match="at most 15"):
        await directory.add_smpp("demo", "a" * 16, password=SMPP_PASSWORD, actor=ACTOR)
    with pytest.raises(ProvisioningError, match="max_binds"):
        await directory.add_smpp("demo", "y", password=SMPP_PASSWORD, max_binds=0, actor=ACTOR)

    assert await directory.verify_bind("Demo1", SMPP_PASSWORD) == credential
    assert await directory.verify_bind("Demo1", "wrong") is None
    assert await directory.verify_bind("nobody", SMPP_PASSWORD) is None

    updated = await directory.update_smpp(
        "Demo1", actor=ACTOR, max_binds=8, throughput=12.5, password="n3wpass", enabled=False
    )
    assert (updated.max_binds, updated.throughput, updated.enabled) == (8, 12.5, False)
    assert updated.system_type == "VMA"
    assert await directory.verify_bind("Demo1", "n3wpass") is None  # disabled
    await directory.update_smpp("Demo1", actor=ACTOR, enabled=True, system_type=None)
    stored = await directory.credential("Demo1")
    assert stored is not None and stored.system_type is None
    assert await directory.verify_bind("Demo1", "n3wpass") is not None
    await directory.set_account_enabled("demo", False, actor=ACTOR)
    assert await directory.verify_bind("Demo1", "n3wpass") is None

    moved = await directory.update_smpp("Demo1", actor=ACTOR, account="other")
    assert [c.system_id for c in await directory.list_smpp("other")] == ["Demo1"]
    assert moved.account_id != demo.id
    await directory.remove_smpp("Demo1", actor=ACTOR)
    assert await directory.credential("Demo1") is None
    with pytest.raises(UnknownObject):
        await directory.remove_smpp("Demo1", actor=ACTOR)


# --- audit and transactions -----------------------------------------------------------------


async def test_every_change_is_audited_without_secrets(
    directory: Directory, engine: AsyncEngine
) -> None:
    await directory.create_account("demo", actor=ACTOR)
    user = await directory.add_user("bob", account="demo", password=USER_PASSWORD, actor=ACTOR)
    await directory.set_password("bob", password="another long one", actor=ACTOR)
    credential = await directory.add_smpp("demo", "demo", password=SMPP_PASSWORD, actor=ACTOR)
    await directory.update_smpp("demo", password="n3wpass", actor=ACTOR)
    await directory.add_sender("demo", "a@example.com", actor=ACTOR)
    await directory.add_network("demo", "10.0.0.0/8", actor=ACTOR)
    await directory.update_settings("demo", {"require_tls": True}, actor=ACTOR)
    await directory.set_account_enabled("demo", False, actor=ACTOR)

    rows = await _audit_rows(engine)
    assert [row["action"] for row in rows] == [
        "account.create",
        "user.create",
        "user.password",
        "smpp.create",
        "smpp.update",
        "sender.add",
        "network.add",
        "account.settings",
        "account.disable",
    ]
    assert all(row["actor"] == ACTOR for row in rows)
    assert rows[1]["subject"] == "user:bob"
    assert rows[7]["detail"] == {"changed": {"require_tls": True}}
    dumped = json.dumps([row["detail"] for row in rows]) + " ".join(row["subject"] for row in rows)
    for secret in (USER_PASSWORD, "another long one", SMPP_PASSWORD, "n3wpass", "$argon2"):
        assert secret not in dumped
    assert user.password_hash not in dumped and credential.password_hash not in dumped

    entries = await directory.audit_log(limit=2)
    assert [e.action for e in entries] == ["account.disable", "account.settings"]
    assert entries[0].at.tzinfo is not None


async def test_transaction_is_all_or_nothing(directory: Directory) -> None:
    with pytest.raises(Conflict):
        async with directory.transaction() as tx:
            await tx.create_account("demo", actor=ACTOR)
            await tx.add_sender("demo", "a@example.com", actor=ACTOR)
            await tx.create_account("demo", actor=ACTOR)
    assert await directory.list_accounts() == []
    async with directory.transaction(rollback=True) as tx:
        await tx.create_account("demo", actor=ACTOR)
        assert await tx.account_by_name("demo") is not None
    assert await directory.list_accounts() == []
    async with directory.transaction() as tx:
        await tx.create_account("demo", actor=ACTOR)
        async with tx.transaction() as inner:
            await inner.add_sender("demo", "a@example.com", actor=ACTOR)
    assert [s.pattern for s in await directory.list_senders()] == ["a@example.com"]


# --- the store unavailable ------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_database_raises_store_unavailable() -> None:
    port = _closed_port()
    engine = create_async_engine(f"postgresql+asyncpg://teleway:hunter2@127.0.0.1:{port}/x")
    try:
        with pytest.raises(StoreUnavailable) as info:
            await Directory(engine).list_accounts()
        assert "hunter2" not in str(info.value)
        assert str(port) in str(info.value)
    finally:
        await engine.dispose()


async def test_missing_schema_raises_store_unavailable(tmp_path: Any) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(StoreUnavailable, match="no such table"):
            await Directory(engine).list_accounts()
    finally:
        await engine.dispose()


async def test_lookups_do_not_wait_for_the_write_lock(tmp_path: Path) -> None:
    """On the store's own SQLite engine (BEGIN IMMEDIATE for writes), the directory's lookups
    begin deferred: a gateway write in progress does not block sender or bind lookups."""
    path = tmp_path / "locked.db"
    db = open_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(tables.metadata.create_all)
        directory = Directory(db.engine)
        await directory.create_account("demo", actor=ACTOR)
        await directory.add_sender("demo", "a@example.com", actor=ACTOR)
        writer = sqlite3.connect(path, isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("UPDATE accounts SET enabled = 1")
            found = await asyncio.wait_for(directory.account_for_sender("a@example.com"), 2)
            assert found is not None and found.name == "demo"
            assert await asyncio.wait_for(directory.credential("nobody"), 2) is None
            writer.execute("COMMIT")
        finally:
            writer.close()
    finally:
        await db.close()


def test_audit_details_mask_secrets_at_any_depth() -> None:
    from teleway.store.directory import masked

    detail = {
        "changes": {"webhook_secret": "abc", "sms_template": "{body}"},
        "password": "pw",
        "items": [{"api_token": "t"}, {"name": "n"}],
        "webhook_secret": None,
    }
    assert masked(detail) == {
        "changes": {"webhook_secret": "***", "sms_template": "{body}"},
        "password": "***",
        "items": [{"api_token": "***"}, {"name": "n"}],
        "webhook_secret": None,
    }
