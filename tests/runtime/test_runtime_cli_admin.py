"""`teleway admin` through click's CliRunner, on an SQLite database made with create_all, and
one end-to-end flow on PostgreSQL (the session's throw-away database, emptied;
TELEWAY_TEST_POSTGRES, default postgresql+asyncpg://postgres@127.0.0.1:5432/test; fails when
unreachable unless TELEWAY_SKIP_POSTGRES=1). The `sqlite_url` and `empty_postgres_url` fixtures
come from tests/db_fixtures.py."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from teleway.runtime.cli_admin import admin, create_engine

pytestmark = pytest.mark.usefixtures("cheap_hashing")

USER_PASSWORD = "a long user password"
SMPP_PASSWORD = "pw4demo"


class Admin:
    """Invokes `teleway admin ...` the way the main CLI will (database_url in ctx.obj)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.runner = CliRunner()

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        env = {"TELEWAY_PASSWORD": "", **(env or {})}
        result = self.runner.invoke(
            admin, list(args), obj={"database_url": self.url}, input=input, env=env
        )
        assert "Traceback" not in result.output
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit
        ), result.exception
        return result

    def ok(self, *args: str, **kwargs: Any) -> Result:
        result = self(*args, **kwargs)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)


@pytest.fixture
def cli(sqlite_url: str) -> Admin:
    return Admin(sqlite_url)


def _demo(cli: Admin) -> None:
    cli.ok("account", "add", "demo")
    cli.ok("sender", "add", "demo", "Alice@Example.com")
    cli.ok("network", "add", "demo", "127.0.0.0/8")
    cli.ok("smpp", "add", "demo", "demo", "--password-stdin", input=SMPP_PASSWORD + "\n")


# --- accounts, senders, networks ------------------------------------------------------------


def test_account_flow(cli: Admin) -> None:
    result = cli.ok("account", "add", "Demo", "--set", "default_country=gb")
    assert result.stdout.startswith("created account demo")
    cli.ok("account", "add", "other", "--disabled")
    assert cli.json("account", "list") == [
        {"id": 1, "name": "demo", "enabled": True, "senders": 0, "networks": 0, "users": 0, "smpp": 0},
        {"id": 2, "name": "other", "enabled": False, "senders": 0, "networks": 0, "users": 0, "smpp": 0},
    ]  # fmt: skip
    table = cli.ok("account", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "ENABLED", "SENDERS", "NETWORKS", "USERS", "SMPP"]
    assert table[2].split()[:2] == ["other", "no"]

    cli.ok("account", "set", "demo", "require_tls=true", "sms_template={subject}: {body}")
    shown = cli.json("account", "show", "demo")
    assert shown["settings"]["require_tls"] is True
    assert shown["settings"]["sms_template"] == "{subject}: {body}"
    assert shown["settings"]["default_country"] == "GB"
    text = cli.ok("account", "show", "demo").stdout
    assert "require_tls = true\n" in text and "max_sms_parts = 10  (default)" in text

    cli.ok("account", "enable", "other")
    cli.ok("account", "disable", "demo")
    assert [a["enabled"] for a in cli.json("account", "list")] == [False, True]
    cli.ok("account", "rename", "other", "acme")
    cli.ok("account", "delete", "acme", "--yes")
    assert [a["name"] for a in cli.json("account", "list")] == ["demo"]


def test_account_delete_asks_first(cli: Admin) -> None:
    cli.ok("account", "add", "demo")
    result = cli("account", "delete", "demo", input="n\n")
    assert result.exit_code == 1
    assert [a["name"] for a in cli.json("account", "list")] == ["demo"]
    cli.ok("account", "delete", "demo", input="y\n")
    assert cli.json("account", "list") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("account", "add", "bad name"), "error: account 'bad name': use letters a-z"),
        (("account", "set", "demo", "colour=blue"), "error: settings 'colour': unknown setting"),
        (("account", "set", "demo", "max_sms_parts=0"), "must be between 1 and 255"),
        (("account", "set", "demo", "require_tls"), "write KEY=VALUE"),
        (("account", "show", "nobody"), "error: account 'nobody': no such account"),
        (("account", "add", "demo"), "an account with this name exists already"),
        (("sender", "add", "demo", "not-an-address"), "must be user@domain or *@domain"),
        (("sender", "add", "nobody", "a@example.com"), "no such account"),
        (("sender", "remove", "demo", "x@example.com"), "not a sender of account demo"),
        (("network", "add", "demo", "10.0.0.0/33"), "not an IPv4 or IPv6 network"),
        (("smpp", "remove", "nobody"), "no such SMPP credential"),
        (("user", "delete", "nobody"), "no such user"),
        (("smpp", "set", "demo"), "nothing to change"),
    ],
)
def test_wrong_input_exits_2_with_one_line(cli: Admin, args: tuple[str, ...], message: str) -> None:
    cli.ok("account", "add", "demo")
    result = cli(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_senders(cli: Admin) -> None:
    cli.ok("account", "add", "demo")
    cli.ok("account", "add", "other")
    assert (
        "added sender alice@example.com"
        in cli.ok("sender", "add", "demo", "Alice@Example.COM").stdout
    )
    cli.ok("sender", "add", "demo", "*@example.org")
    result = cli("sender", "add", "other", "alice@example.com")
    assert result.exit_code == 2
    assert "error: sender 'alice@example.com': already belongs to account demo" in result.stderr
    assert cli.json("sender", "list") == [
        {"pattern": "*@example.org", "account": "demo"},
        {"pattern": "alice@example.com", "account": "demo"},
    ]
    assert cli.json("sender", "list", "other") == []
    cli.ok("sender", "remove", "demo", "*@example.org")
    assert [r["pattern"] for r in cli.json("sender", "list", "demo")] == ["alice@example.com"]


def test_networks(cli: Admin) -> None:
    cli.ok("account", "add", "demo")
    result = cli.ok("network", "add", "demo", "192.0.2.7/24")
    assert "note: 192.0.2.7/24 is stored as 192.0.2.0/24" in result.stdout
    assert "note" not in cli.ok("network", "add", "demo", "::1/128").stdout
    assert cli.json("network", "list", "demo") == [
        {"cidr": "192.0.2.0/24", "account": "demo"},
        {"cidr": "::1/128", "account": "demo"},
    ]
    cli.ok("network", "remove", "demo", "192.0.2.9/24")
    assert [n["cidr"] for n in cli.json("network", "list")] == ["::1/128"]


# --- SMPP credentials and users -------------------------------------------------------------


def test_smpp_credentials(cli: Admin) -> None:
    cli.ok("account", "add", "demo")
    cli.ok(
        "smpp", "add", "demo", "demo", "--max-binds", "2", "--throughput", "50",
        "--system-type", "VMA", "--password-stdin", input=SMPP_PASSWORD + "\n",
    )  # fmt: skip
    cli.ok("smpp", "add", "demo", "demo2", env={"TELEWAY_PASSWORD": "env-pw"})
    cli.ok("smpp", "add", "demo", "demo3", input="prompt1\nprompt1\n")
    listed = cli.json("smpp", "list")
    assert listed[0] == {
        "system_id": "demo",
        "account": "demo",
        "system_type": "VMA",
        "max_binds": 2,
        "throughput": 50.0,
        "enabled": True,
    }
    assert [c["system_id"] for c in listed] == ["demo", "demo2", "demo3"]
    assert "Password" not in cli.ok("smpp", "list").stdout

    cli.ok("smpp", "set", "demo", "--max-binds", "8", "--disable", "--system-type", "")
    changed = cli.json("smpp", "list", "demo")[0]
    assert (changed["max_binds"], changed["enabled"], changed["system_type"]) == (8, False, None)
    cli.ok("smpp", "set", "demo", "--password-stdin", input="n3wpw\n")
    cli.ok("smpp", "remove", "demo3")
    assert [c["system_id"] for c in cli.json("smpp", "list")] == ["demo", "demo2"]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("smpp", "add", "demo", "x" * 16), None, "at most 15 characters"),
        (("smpp", "add", "demo", "s1", "--password-stdin"), "toolongpw\n", "1 to 8 characters"),
        (("smpp", "add", "demo", "s1", "--password-stdin"), "\n", "no password on standard input"),
        (("smpp", "add", "demo", "s1", "--password-stdin"), "s1\n", "not be the system_id"),
        (
            ("smpp", "add", "demo", "s1", "--password-stdin", "--max-binds", "0"),
            "pw\n",
            "max_binds",
        ),
        (
            ("smpp", "add", "demo", "s1", "--password-stdin", "--throughput", "0"),
            "pw\n",
            "above zero",
        ),
        (("user", "add", "demo", "bob", "--password-stdin"), "short\n", "at least 10 characters"),
        (("user", "add", "demo", "bob", "--password-stdin"), "password123\n", "common"),
        (("user", "add", "-", "bob", "--password-stdin"), "long password x\n", "needs an account"),
        (("user", "add", "demo", "--", "-bob"), None, "username '-bob'"),
    ],
)
def test_secret_rules(cli: Admin, args: tuple[str, ...], stdin: str | None, message: str) -> None:
    cli.ok("account", "add", "demo")
    result = cli(*args, input=stdin)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "toolongpw" not in result.stderr and "password123" not in result.stderr


def test_passwords_are_never_arguments(cli: Admin) -> None:
    cli.ok("account", "add", "demo")
    result = cli("user", "add", "demo", "bob", "--password", USER_PASSWORD)
    assert result.exit_code == 2
    assert "No such option" in result.stderr


def test_user_flow(cli: Admin) -> None:
    cli.ok("account", "add", "demo")
    prompted = cli.ok(
        "user", "add", "demo", "Alice", "--email", "alice@example.com",
        input=f"{USER_PASSWORD}\n{USER_PASSWORD}\n",
    )  # fmt: skip
    assert "added user alice to account demo" in prompted.stdout
    cli.ok(
        "user",
        "add",
        "-",
        "root",
        "--role",
        "operator",
        "--password-stdin",
        input=USER_PASSWORD + "!\n",
    )
    assert cli.json("user", "list") == [
        {"username": "alice", "role": "user", "account": "demo", "email": "alice@example.com", "enabled": True},
        {"username": "root", "role": "operator", "account": None, "email": None, "enabled": True},
    ]  # fmt: skip
    assert [u["username"] for u in cli.json("user", "list", "demo")] == ["alice"]
    cli.ok("user", "passwd", "alice", env={"TELEWAY_PASSWORD": "a brand new password"})
    cli.ok("user", "disable", "alice")
    assert cli.json("user", "list", "demo")[0]["enabled"] is False
    cli.ok("user", "enable", "alice")
    cli.ok("user", "delete", "alice")
    assert [u["username"] for u in cli.json("user", "list")] == ["root"]
    # the password changes are in the audit log, the passwords are not
    audit = cli.ok("audit", "--limit", "100", "--json").stdout
    actions = [entry["action"] for entry in json.loads(audit)]
    assert "user.password" in actions and "user.delete" in actions
    for secret in (USER_PASSWORD, "a brand new password", "$argon2"):
        assert secret not in audit


# --- provisioning files ---------------------------------------------------------------------

FILE = """\
[[accounts]]
name = "demo"
senders = ["alice@example.com", "*@example.org"]
networks = ["127.0.0.0/8", "::1/128"]

[accounts.settings]
sms_template = "{subject},{body}"
max_sms_parts = 3

[[accounts.users]]
username = "demo"
password = "demo user password"

[[accounts.smpp]]
system_id = "demo"
password = "secret1"
max_binds = 4
throughput = 100

[[operators]]
username = "root"
password = "root password here"
"""


def test_apply_twice_reports_no_change_the_second_time(cli: Admin, tmp_path: Path) -> None:
    path = tmp_path / "provisioning.toml"
    path.write_text(FILE)
    first = cli.ok("apply", str(path))
    assert "created account demo" in first.stdout
    assert "created smpp demo (account demo)" in first.stdout
    assert first.stdout.endswith("\n8 created, 0 updated, 0 unchanged, 0 removed\n")
    second = cli.ok("apply", str(path))
    assert second.stdout == "no changes\n0 created, 0 updated, 8 unchanged, 0 removed\n"
    verbose = cli.ok("apply", str(path), "-v").stdout
    assert "unchanged sender alice@example.com (account demo)" in verbose
    report = json.loads(cli.ok("apply", str(path), "--json").stdout)
    assert report["changed"] is False and report["counts"]["unchanged"] == 8


def test_apply_from_stdin_and_dry_run(cli: Admin) -> None:
    result = cli.ok("apply", "-", "--dry-run", input=FILE)
    assert "(dry run: nothing was changed)" in result.stdout
    assert cli.json("account", "list") == []
    cli.ok("apply", "-", input=FILE)
    assert [a["name"] for a in cli.json("account", "list")] == ["demo"]


def test_invalid_file_is_rejected_with_line_numbers(cli: Admin, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        FILE.replace('"*@example.org"', '"*@exa mple.org"')
        .replace("max_binds = 4", "max_binds = 0")
        .replace('password = "secret1"', 'password = "much too long"')
    )
    result = cli("apply", str(path))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {path} was not applied (3 problem(s)):"
    assert lines[1].startswith(f"{path}:3: accounts[0].senders[1]: ")
    assert lines[2].startswith(f"{path}:16: accounts[0].smpp[0].password: password must be 1 to 8")
    assert lines[3].startswith(f"{path}:17: accounts[0].smpp[0].max_binds: 0: must be between")
    assert "much too long" not in result.stderr
    assert cli.json("account", "list") == []  # nothing applied, not even the valid parts

    path.write_text("[[accounts]\n")
    result = cli("apply", str(path))
    assert result.exit_code == 2
    assert f"{path}:1: TOML syntax" in result.stderr


def test_export_then_apply_is_a_no_op(cli: Admin, tmp_path: Path) -> None:
    cli.ok("apply", "-", input=FILE)
    cli.ok("sender", "add", "demo", "bob@example.com")
    cli.ok("account", "disable", "demo")
    exported = cli.ok("export").stdout
    assert "secret1" not in exported and "demo user password" not in exported
    assert exported.count('password_hash = "$argon2id$') == 3
    out = tmp_path / "export.toml"
    cli.ok("export", "-o", str(out))
    assert out.read_text() == exported
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    again = cli.ok("apply", str(out), "--prune")
    assert again.stdout.startswith("no changes\n")


def test_prune(cli: Admin, tmp_path: Path) -> None:
    cli.ok("apply", "-", input=FILE)
    cli.ok("account", "add", "stray")
    smaller = FILE.replace(
        'senders = ["alice@example.com", "*@example.org"]', 'senders = ["alice@example.com"]'
    )
    without = cli.ok("apply", "-", input=smaller)
    assert without.stdout.startswith("no changes\n")
    assert [a["name"] for a in cli.json("account", "list")] == ["demo", "stray"]
    pruned = cli.ok("apply", "-", "--prune", input=smaller)
    assert "removed sender *@example.org (account demo)" in pruned.stdout
    assert "removed account stray" in pruned.stdout
    assert [a["name"] for a in cli.json("account", "list")] == ["demo"]
    assert [s["pattern"] for s in cli.json("sender", "list")] == ["alice@example.com"]


def test_audit_shows_changes(cli: Admin) -> None:
    _demo(cli)
    table = cli.ok("audit", "--limit", "2").stdout.splitlines()
    assert table[0].split()[:4] == ["AT", "ACTOR", "ACTION", "SUBJECT"]
    assert "smpp.create" in table[1] and "smpp:demo" in table[1]
    entries = cli.json("audit")
    assert [e["action"] for e in entries] == [
        "smpp.create",
        "network.add",
        "sender.add",
        "account.create",
    ]
    assert all(e["actor"].startswith("cli") for e in entries)
    assert SMPP_PASSWORD not in json.dumps(entries)
    assert cli("audit", "--limit", "0").exit_code == 2


def test_actor_can_be_given_by_the_main_cli(sqlite_url: str) -> None:
    runner = CliRunner()
    result = runner.invoke(
        admin, ["account", "add", "demo"], obj={"database_url": sqlite_url, "actor": "ops:bob"}
    )
    assert result.exit_code == 0
    entries = json.loads(
        runner.invoke(admin, ["audit", "--json"], obj={"database_url": sqlite_url}).stdout
    )
    assert entries[0]["actor"] == "ops:bob"


# --- runtime failures -----------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_database_exits_1_without_the_password() -> None:
    port = _closed_port()
    cli = Admin(f"postgresql+asyncpg://teleway:hunter2@127.0.0.1:{port}/teleway")
    result = cli("account", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: cannot reach the database at postgresql+asyncpg://teleway:***@127.0.0.1:{port}/teleway: "
    )
    assert "hunter2" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_schema_exits_1(tmp_path: Path) -> None:
    cli = Admin(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    result = cli("account", "list")
    assert result.exit_code == 1
    assert "has no teleway schema" in result.stderr


def test_missing_or_invalid_url_exits_1() -> None:
    result = CliRunner().invoke(admin, ["account", "list"], obj={})
    assert result.exit_code == 1
    assert "no database configured" in result.stderr
    result = Admin("nosuchdriver://x")("account", "list")
    assert result.exit_code == 1
    assert "invalid database URL" in result.stderr


def test_engine_for_sqlite_and_plain_urls(sqlite_url: str) -> None:
    plain = create_engine(sqlite_url.replace("sqlite+aiosqlite", "sqlite"))
    assert plain.url.drivername == "sqlite+aiosqlite"

    async def pragmas() -> tuple[int, int]:
        try:
            async with plain.connect() as conn:
                keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
                busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one()
                return int(keys), int(busy)
        finally:
            await plain.dispose()

    assert asyncio.run(pragmas()) == (1, 5000)
    postgres = create_engine("postgresql://teleway@127.0.0.1/teleway")
    assert postgres.url.drivername == "postgresql+asyncpg"
    result = Admin("mysql://x@y/z")("account", "list")
    assert result.exit_code == 1 and "invalid database URL" in result.stderr


def test_provisioning_waits_for_a_concurrent_writer(cli: Admin, sqlite_url: str) -> None:
    """A write transaction of the running gateway delays the CLI; it does not fail it."""
    cli.ok("account", "add", "demo")
    path = sqlite_url.removeprefix("sqlite+aiosqlite:///")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA journal_mode=WAL")  # as the store runs it
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE accounts SET enabled = 1")
    timer = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    timer.start()
    try:
        cli.ok("sender", "add", "demo", "a@example.com")
    finally:
        timer.join()
        other.close()
    assert [r["pattern"] for r in cli.json("sender", "list")] == ["a@example.com"]


# --- help -----------------------------------------------------------------------------------


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def test_every_command_has_help_with_an_example() -> None:
    commands = list(_commands(admin))
    assert len(commands) >= 25
    for path in commands:
        result = CliRunner().invoke(admin, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example" in result.stdout, path
        assert "teleway admin " + " ".join(path) in result.stdout, path


# --- PostgreSQL -----------------------------------------------------------------------------


def test_postgres_flow(empty_postgres_url: str) -> None:
    cli = Admin(empty_postgres_url)
    first = cli.ok("apply", "-", input=FILE)
    assert first.stdout.endswith("\n8 created, 0 updated, 0 unchanged, 0 removed\n")
    assert cli.ok("apply", "-", input=FILE).stdout.startswith("no changes\n")
    cli.ok("account", "add", "acme")
    cli.ok("sender", "add", "acme", "*@acme.example")
    result = cli("sender", "add", "acme", "alice@example.com")
    assert result.exit_code == 2 and "already belongs to account demo" in result.stderr
    cli.ok("smpp", "add", "acme", "acme01", "--password-stdin", input="pw4acme\n")
    exported = cli.ok("export").stdout
    assert cli.ok("apply", "-", "--prune", input=exported).stdout.startswith("no changes\n")
    assert [a["name"] for a in cli.json("account", "list")] == ["acme", "demo"]
