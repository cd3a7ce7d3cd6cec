"""The provisioning file against SQLite and PostgreSQL (a throw-away database per session).

The `database_url`, `engine` and `directory` fixtures come from tests/db_fixtures.py.
PostgreSQL: TELEWAY_TEST_POSTGRES (default postgresql+asyncpg://postgres@127.0.0.1:5432/test)
must be reachable, or the tests fail; TELEWAY_SKIP_POSTGRES=1 skips the PostgreSQL half.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from teleway.core import passwords
from teleway.runtime.provision_file import (
    ChangeAction,
    ProvisionFileError,
    SourceMap,
    apply,
    check,
    export,
)
from teleway.store import tables
from teleway.store.directory import Directory

pytestmark = pytest.mark.usefixtures("cheap_hashing")

ACTOR = "test:provisioner"

DEMO = """\
# the demo customer
[[accounts]]
name = "demo"
senders = ["Alice@Example.com", "*@example.org"]
networks = ["127.0.0.0/8", "::1/128"]

[accounts.settings]
sms_template = "{subject}: {body}"
default_country = "GB"

[[accounts.users]]
username = "demo"
password = "demo user password"
email = "demo@example.com"

[[accounts.smpp]]
system_id = "demo"
password = "secret1"
max_binds = 4
throughput = 100

[[accounts]]
name = "acme"
senders = ["*@acme.example"]

[[operators]]
username = "root"
password = "operator password 1"
"""


def _actions(report: Any) -> dict[tuple[str, str], str]:
    return {(c.kind, c.name): c.action.value for c in report.changes}


# --- applying -------------------------------------------------------------------------------


async def test_first_apply_creates_everything(directory: Directory) -> None:
    report = await apply(directory, DEMO, ACTOR)
    assert report.changed
    assert report.count(ChangeAction.CREATED) == len(report.changes) == 10
    assert _actions(report)[("sender", "alice@example.com")] == "created"

    demo = await directory.require_account("demo")
    assert demo.settings.sms_template == "{subject}: {body}"
    assert demo.settings.default_country == "GB"
    assert [s.pattern for s in await directory.list_senders("demo")] == [
        "*@example.org",
        "alice@example.com",
    ]
    assert [n.cidr for n in await directory.list_networks("demo")] == ["127.0.0.0/8", "::1/128"]
    user = await directory.verify_login("demo", "demo user password")
    assert user is not None and user.account_id == demo.id and user.email == "demo@example.com"
    operator = await directory.verify_login("root", "operator password 1")
    assert operator is not None and operator.account_id is None
    credential = await directory.verify_bind("demo", "secret1")
    assert credential is not None and credential.throughput == 100.0
    found = await directory.account_for_sender("someone@acme.example")
    assert found is not None and found.name == "acme"


async def test_second_apply_changes_nothing(directory: Directory, engine: AsyncEngine) -> None:
    await apply(directory, DEMO, ACTOR)
    audit_before = len(await directory.audit_log(limit=1000))
    report = await apply(directory, DEMO, ACTOR)
    assert not report.changed
    assert report.count(ChangeAction.UNCHANGED) == 10
    assert report.summary() == "0 created, 0 updated, 10 unchanged, 0 removed"
    assert len(await directory.audit_log(limit=1000)) == audit_before
    # the stored hashes were not replaced
    user = await directory.get_user("demo")
    assert user is not None
    again = await apply(directory, DEMO, ACTOR)
    assert (await directory.get_user("demo")) == user and not again.changed


async def test_changed_values_are_updated(directory: Directory) -> None:
    await apply(directory, DEMO, ACTOR)
    changed = (
        DEMO.replace("max_binds = 4", "max_binds = 8")
        .replace('password = "secret1"', 'password = "secret2"')
        .replace('default_country = "GB"', 'default_country = "DE"')
        .replace('email = "demo@example.com"', 'email = "ops@example.com"\nenabled = false')
    )
    report = await apply(directory, changed, ACTOR)
    updated = {(c.kind, c.name): c.fields for c in report.changes if c.action.value == "updated"}
    assert updated == {
        ("account", "demo"): ("settings.default_country",),
        ("user", "demo"): ("email", "enabled"),
        ("smpp", "demo"): ("max_binds", "password"),
    }
    assert await directory.verify_bind("demo", "secret2") is not None
    assert await directory.verify_bind("demo", "secret1") is None
    user = await directory.get_user("demo")
    assert user is not None and not user.enabled and user.email == "ops@example.com"


async def test_keys_left_out_are_not_managed(directory: Directory) -> None:
    await apply(directory, DEMO, ACTOR)
    await directory.set_account_enabled("acme", False, actor=ACTOR)
    await directory.update_settings("acme", {"require_tls": True}, actor=ACTOR)
    await directory.add_network("acme", "192.0.2.0/24", actor=ACTOR)
    report = await apply(directory, DEMO, ACTOR)
    assert not report.changed
    acme = await directory.require_account("acme")
    assert acme.enabled is False and acme.settings.require_tls is True
    assert [n.cidr for n in await directory.list_networks("acme")] == ["192.0.2.0/24"]


async def test_password_hash_is_stored_as_given(directory: Directory) -> None:
    hashed = passwords.hash_password("given as a hash")
    file = f"""
[[operators]]
username = "ops"
password_hash = "{hashed}"
"""
    report = await apply(directory, file, ACTOR)
    assert _actions(report) == {("operator", "ops"): "created"}
    user = await directory.get_user("ops")
    assert user is not None and user.password_hash == hashed
    assert not (await apply(directory, file, ACTOR)).changed


async def test_moves_between_accounts(directory: Directory) -> None:
    await apply(directory, DEMO, ACTOR)
    moved = DEMO.replace(
        'senders = ["*@acme.example"]', 'senders = ["*@acme.example", "alice@example.com"]'
    )
    moved = moved.replace(
        'senders = ["Alice@Example.com", "*@example.org"]', 'senders = ["*@example.org"]'
    )
    report = await apply(directory, moved, ACTOR)
    change = next(c for c in report.changes if c.name == "alice@example.com")
    assert (change.action, change.account, change.fields) == (
        ChangeAction.UPDATED,
        "acme",
        ("account",),
    )
    found = await directory.account_for_sender("alice@example.com")
    assert found is not None and found.name == "acme"


async def test_dry_run_changes_nothing(directory: Directory) -> None:
    report = await apply(directory, DEMO, ACTOR, dry_run=True)
    assert report.dry_run and report.count(ChangeAction.CREATED) == 10
    assert "dry run" in report.summary()
    assert await directory.list_accounts() == []
    assert await directory.audit_log() == []


# --- refusing invalid files -----------------------------------------------------------------

BROKEN = """\
[[accounts]]
name = "demo"
senders = [
  "ok@example.com",
  "not an address",
]
networks = ["10.0.0.0/33"]

[accounts.settings]
sms_template = "{subj}"
colour = "blue"

[[accounts]]
name = "second"

[[accounts.users]]
username = "fine"
password = "a long enough password"

[[accounts.users]]
username = "weak"
password = "weak"

[[accounts.smpp]]
system_id = "much-too-long-system-id"
password = "x"

[[operators]]
username = "fine"
password = "another long password"
rolee = "operator"
"""


async def test_invalid_file_is_rejected_as_a_whole_with_line_numbers(
    directory: Directory,
) -> None:
    with pytest.raises(ProvisionFileError) as info:
        await apply(directory, BROKEN, ACTOR)
    found = [(p.line, p.path) for p in info.value.problems]
    assert found == [
        (5, "accounts[0].senders[1]"),
        (7, "accounts[0].networks[0]"),
        (10, "accounts[0].settings.sms_template"),
        (11, "accounts[0].settings.colour"),
        (22, "accounts[1].users[1].password"),
        (25, "accounts[1].smpp[0].system_id"),
        (29, "operators[0].username"),
        (31, "operators[0].rolee"),
    ]
    messages = {p.path: p.message for p in info.value.problems}
    assert "must be user@domain" in messages["accounts[0].senders[1]"]
    assert "unknown placeholder {subj}" in messages["accounts[0].settings.sms_template"]
    assert "at least 10" in messages["accounts[1].users[1].password"]
    assert "'weak'" not in messages["accounts[1].users[1].password"]  # never the password
    assert "listed twice" in messages["operators[0].username"]
    assert "unknown key" in messages["operators[0].rolee"]
    assert str(info.value.problems[0]).startswith("line 5: accounts[0].senders[1]: ")
    assert await directory.list_accounts() == []


async def test_problems_never_show_passwords(directory: Directory) -> None:
    file = '[[operators]]\nusername = "ops"\npassword = "ops"\n'
    with pytest.raises(ProvisionFileError) as info:
        await apply(directory, file, ACTOR)
    assert info.value.problems[0].line == 3
    assert "'ops'" not in info.value.problems[0].message


async def test_toml_syntax_error_names_the_line(directory: Directory) -> None:
    with pytest.raises(ProvisionFileError) as info:
        await apply(directory, '[[accounts]]\nname = "demo"\nsenders = ["a@example.com"\n', ACTOR)
    (problem,) = info.value.problems
    assert problem.line == 3
    assert "TOML syntax" in problem.message
    with pytest.raises(ProvisionFileError) as info:
        check("[[accounts]]\nname = demo\nenabled = true\n")
    assert info.value.problems[0].line == 2


@pytest.mark.parametrize(
    ("file", "line", "expected"),
    [
        ("version = 2\n", 1, "unsupported format version"),
        ("surprise = 1\n", 1, "unknown key"),
        ("accounts = 5\n", 1, "list of account tables"),
        ("[[accounts]]\nenabled = true\n", 1, "needs a name"),
        ('[[accounts]]\nname = "a"\nenabled = "yes"\n', 3, "true or false"),
        ('[[accounts]]\nname = "a"\nsenders = "a@example.com"\n', 3, "list of strings"),
        ('[[accounts]]\nname = "a"\n[[accounts]]\nname = "A"\n', 4, "listed twice"),
        (
            '[[accounts]]\nname = "a"\nsenders = ["x@example.com"]\n'
            '[[accounts]]\nname = "b"\nsenders = ["X@example.com"]\n',
            6,
            "listed twice (first at accounts[0].senders[0])",
        ),
        ('[[accounts]]\nname = "a"\nnetworks = ["10.0.0.1/8", "10.0.0.0/8"]\n', 3, "twice"),
        (
            '[[accounts]]\nname = "a"\n[[accounts.smpp]]\nsystem_id = "s"\n'
            'password = "pw1"\npassword_hash = "$argon2id$x"\n',
            5,
            "not both",
        ),
        (
            '[[accounts]]\nname = "a"\n[[accounts.smpp]]\nsystem_id = "s"\n'
            'password_hash = "$2b$12$nope"\n',
            5,
            "not an argon2id hash",
        ),
        (
            '[[accounts]]\nname = "a"\n[[accounts.smpp]]\nsystem_id = "s"\nmax_binds = "4"\n',
            5,
            "whole number",
        ),
        (
            '[[accounts]]\nname = "a"\n[[accounts.users]]\nusername = "u"\nrole = "boss"\n'
            'password = "long enough pw"\n',
            5,
            "must be one of",
        ),
        ('[[accounts]]\nname = "a"\nsettings = { max_sms_parts = 0 }\n', 3, "between 1 and 255"),
        ('[[accounts]]\nname = "a"\nsettings.require_tls = "yes"\n', 3, "true or false"),
    ],
)
def test_structural_problems(file: str, line: int, expected: str) -> None:
    with pytest.raises(ProvisionFileError) as info:
        check(file)
    problem = info.value.problems[0]
    assert expected in problem.message, problem
    assert problem.line == line, problem


async def test_new_objects_need_a_secret(directory: Directory) -> None:
    file = (
        '[[accounts]]\nname = "a"\n\n[[accounts.users]]\nusername = "u"\n\n'
        '[[accounts.smpp]]\nsystem_id = "s"\n'
    )
    with pytest.raises(ProvisionFileError) as info:
        await apply(directory, file, ACTOR)
    assert [(p.line, p.message) for p in info.value.problems] == [
        (4, "a new user needs a password or password_hash"),
        (7, "a new SMPP credential needs a password or password_hash"),
    ]
    assert await directory.list_accounts() == []
    # existing objects do not: their secret is simply not managed
    await apply(directory, DEMO, ACTOR)
    report = await apply(
        directory,
        '[[accounts]]\nname = "demo"\n[[accounts.users]]\nusername = "demo"\n'
        '[[accounts.smpp]]\nsystem_id = "demo"\n',
        ACTOR,
    )
    assert not report.changed


# --- prune ----------------------------------------------------------------------------------

SMALLER = """\
operators = []

[[accounts]]
name = "demo"
senders = ["*@example.org"]
networks = ["127.0.0.0/8"]
users = []
smpp = []

[[accounts]]
name = "newco"
senders = ["alice@example.com", "*@acme.example"]
"""


async def test_without_prune_nothing_is_removed(directory: Directory) -> None:
    await apply(directory, DEMO, ACTOR)
    report = await apply(directory, SMALLER, ACTOR)
    assert report.count(ChangeAction.REMOVED) == 0
    assert {a.name for a in await directory.list_accounts()} == {"demo", "acme", "newco"}
    assert await directory.get_user("root") is not None


async def test_prune_removes_what_the_file_does_not_list(directory: Directory) -> None:
    await apply(directory, DEMO, ACTOR)
    report = await apply(directory, SMALLER, ACTOR, prune=True)
    actions = _actions(report)
    assert actions == {
        ("sender", "alice@example.com"): "updated",  # moved from demo to newco
        ("sender", "*@example.org"): "unchanged",
        ("sender", "*@acme.example"): "updated",  # moved out of acme before acme goes
        ("network", "::1/128"): "removed",
        ("network", "127.0.0.0/8"): "unchanged",
        ("user", "demo"): "removed",
        ("smpp", "demo"): "removed",
        ("operator", "root"): "removed",
        ("account", "demo"): "unchanged",
        ("account", "newco"): "created",
        ("account", "acme"): "removed",
    }
    assert {a.name for a in await directory.list_accounts()} == {"demo", "newco"}
    assert await directory.list_users() == []
    assert await directory.list_smpp() == []
    found = await directory.account_for_sender("x@acme.example")
    assert found is not None and found.name == "newco"
    assert not (await apply(directory, SMALLER, ACTOR, prune=True)).changed


async def test_prune_refuses_to_delete_an_account_with_messages(
    directory: Directory, engine: AsyncEngine
) -> None:
    await apply(directory, DEMO, ACTOR)
    acme = await directory.require_account("acme")
    async with engine.begin() as conn:
        await conn.execute(
            insert(tables.messages).values(
                id="m1",
                account_id=acme.id,
                origin="smtp",
                submitter="x@acme.example",
                created_at=datetime.now(UTC),
            )
        )
    only_demo = DEMO.split('[[accounts]]\nname = "acme"')[0]
    with pytest.raises(ProvisionFileError) as info:
        await apply(directory, only_demo, ACTOR, prune=True)
    (problem,) = info.value.problems
    assert "'acme'" in problem.message and "1 message(s)" in problem.message
    assert problem.line == 2  # the first [[accounts]] header
    assert {a.name for a in await directory.list_accounts()} == {"demo", "acme"}


# --- export ---------------------------------------------------------------------------------


async def test_export_then_apply_is_a_no_op(directory: Directory) -> None:
    await apply(directory, DEMO, ACTOR)
    await directory.set_account_enabled("acme", False, actor=ACTOR)
    await directory.update_smpp("demo", actor=ACTOR, system_type="VMA", throughput=2.5)
    exported = await export(directory)
    for secret in ("demo user password", "secret1", "operator password 1"):
        assert secret not in exported
    assert exported.count("$argon2id$") == 3
    assert not (await apply(directory, exported, ACTOR)).changed
    assert not (await apply(directory, exported, ACTOR, prune=True)).changed
    assert await export(directory) == exported


async def test_export_restores_into_an_empty_store(
    directory: Directory, engine: AsyncEngine
) -> None:
    await apply(directory, DEMO, ACTOR)
    exported = await export(directory)
    async with engine.begin() as conn:
        for table in ("sender_rules", "networks", "smpp_credentials", "users", "accounts"):
            await conn.execute(text(f"DELETE FROM {table}"))
    report = await apply(directory, exported, ACTOR)
    assert report.count(ChangeAction.CREATED) == 10
    assert await directory.verify_login("demo", "demo user password") is not None
    assert await directory.verify_bind("demo", "secret1") is not None
    assert await export(directory) == exported


async def test_apply_is_audited_once_per_change(directory: Directory, engine: AsyncEngine) -> None:
    await apply(directory, DEMO, ACTOR)
    async with engine.connect() as conn:
        actions = [
            row.action
            for row in await conn.execute(
                select(tables.audit_log.c.action).order_by(tables.audit_log.c.id)
            )
        ]
    assert actions[-1] == "provision.apply"
    assert actions.count("sender.add") == 3
    assert all(
        row_actor == ACTOR for row_actor in [e.actor for e in await directory.audit_log(limit=100)]
    )


# --- locating lines -------------------------------------------------------------------------


def test_source_map_follows_toml_structure() -> None:
    source = SourceMap(
        """\
version = 1
[[accounts]]
name = "a"
description = '''
[[accounts]]
not a header
'''
"quoted key" = 1
settings.require_tls = true
senders = [
  "x@example.com", # a comment with "quotes"
  'y@example.com',
]
[[accounts.users]]
username = "u1"
[[accounts.users]]
username = "u2"
[[accounts]]
name = "b"
[accounts.settings]
max_sms_parts = 2
[[accounts.users]]
username = "u3"
"""
    )
    assert source.line_of(("version",)) == 1
    assert source.line_of(("accounts", 0)) == 2
    assert source.line_of(("accounts", 0, "quoted key")) == 8
    assert source.line_of(("accounts", 0, "settings", "require_tls")) == 9
    assert source.line_of(("accounts", 0, "senders")) == 10
    assert source.line_of(("accounts", 0, "senders", 0)) == 11
    assert source.line_of(("accounts", 0, "senders", 1)) == 12
    assert source.line_of(("accounts", 0, "users", 1, "username")) == 17
    assert source.line_of(("accounts", 1)) == 18
    assert source.line_of(("accounts", 1, "settings", "max_sms_parts")) == 21
    assert source.line_of(("accounts", 1, "users", 0, "username")) == 23
    # unknown keys fall back to the enclosing entry
    assert source.line_of(("accounts", 1, "users", 0, "password")) == 22
    assert source.line_of(("nothing",)) is None


def test_source_map_counts_elements_of_any_kind() -> None:
    source = SourceMap(
        """\
[[accounts]]
"odd = key" = [1, 2]
users = [
  { username = "a", password = "x, y" },  # "comment", with ["brackets"]
  {
    username = "b"
  },
  [3, [4]], 5,
]
"""
    )
    assert source.line_of(("accounts", 0, "odd = key", 1)) == 2
    assert source.line_of(("accounts", 0, "users", 0, "username")) == 4
    assert source.line_of(("accounts", 0, "users", 1, "username")) == 5
    assert source.line_of(("accounts", 0, "users", 2)) == 8
    assert source.line_of(("accounts", 0, "users", 3)) == 8
    assert source.line_of(("accounts", 0, "users", 4)) == 3  # no such element: the key


def test_inline_tables_are_located() -> None:
    file = """\
[[accounts]]
name = "a"
users = [
  { username = "good", password = "long enough password" },
  { username = "bad", password = "short" },
]
"""
    with pytest.raises(ProvisionFileError) as info:
        check(file)
    assert [(p.line, p.path) for p in info.value.problems] == [(5, "accounts[0].users[1].password")]


# --- inbound numbers -------------------------------------------------------------------------

WITH_NUMBERS = DEMO.replace(
    'networks = ["127.0.0.0/8", "::1/128"]\n',
    'networks = ["127.0.0.0/8", "::1/128"]\nnumbers = ["+447700900123", "00447700900124", "12345"]\n',
    1,
)


async def _owners(directory: Directory) -> dict[str, str]:
    return {n.number: n.account for n in await directory.inbound_numbers().numbers()}


async def test_inbound_numbers_are_provisioned_moved_pruned_and_exported(
    directory: Directory, engine: AsyncEngine
) -> None:
    report = await apply(directory, WITH_NUMBERS, ACTOR)
    actions = _actions(report)
    for number in ("+447700900123", "+447700900124", "12345"):  # "00" means "+"
        assert actions[("number", number)] == "created"
    assert await _owners(directory) == dict.fromkeys(
        ("+447700900123", "+447700900124", "12345"), "demo"
    )
    assert not (await apply(directory, WITH_NUMBERS, ACTOR)).changed
    # the short code listed under acme instead: moved there; demo's list no longer has it
    moved = WITH_NUMBERS.replace(', "12345"]', "]").replace(
        'senders = ["*@acme.example"]', 'senders = ["*@acme.example"]\nnumbers = ["12345"]'
    )
    report = await apply(directory, moved, ACTOR)
    assert _actions(report)[("number", "12345")] == "updated"
    assert (await _owners(directory))["12345"] == "acme"
    # prune: what demo's list leaves out goes; acme's number stays with acme
    pruned = moved.replace(
        'numbers = ["+447700900123", "00447700900124"]', 'numbers = ["+447700900123"]'
    )
    report = await apply(directory, pruned, ACTOR, prune=True)
    assert _actions(report)[("number", "+447700900124")] == "removed"
    assert await _owners(directory) == {"+447700900123": "demo", "12345": "acme"}
    # export carries them, and restores them into an empty store
    exported = await export(directory)
    assert (
        'numbers = [\n    "+447700900123",\n]' in exported
        or 'numbers = ["+447700900123"]' in exported
    )
    async with engine.begin() as conn:
        for table in (
            "inbound_numbers", "sender_rules", "networks", "smpp_credentials", "users", "accounts"
        ):  # fmt: skip
            await conn.execute(text(f"DELETE FROM {table}"))
    await apply(directory, exported, ACTOR)
    assert await _owners(directory) == {"+447700900123": "demo", "12345": "acme"}
    assert not (await apply(directory, exported, ACTOR, prune=True)).changed


async def test_bad_or_doubled_inbound_numbers_are_refused_with_their_lines(
    directory: Directory,
) -> None:
    bad = WITH_NUMBERS.replace('"12345"]', '"12a45"]').replace(
        'senders = ["*@acme.example"]', 'senders = ["*@acme.example"]\nnumbers = ["+447700900123"]'
    )
    with pytest.raises(ProvisionFileError) as info:
        await apply(directory, bad, ACTOR)
    problems = {p.path: (p.line, p.message) for p in info.value.problems}
    assert problems["accounts[0].numbers[2]"][0] == 6
    assert "digits only" in problems["accounts[0].numbers[2]"][1]
    line, message = problems["accounts[1].numbers[0]"]
    assert "listed twice" in message and line == 26
    assert await _owners(directory) == {}


async def test_deleting_an_account_takes_its_numbers(directory: Directory) -> None:
    await apply(directory, WITH_NUMBERS, ACTOR)
    await directory.delete_account("demo", actor=ACTOR)
    assert await _owners(directory) == {}
