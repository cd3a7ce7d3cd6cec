"""`teleway admin`: provisioning from the command line.

The main `teleway` group registers `admin` and puts the database URL in
`ctx.obj["database_url"]` (optionally the audit actor in `ctx.obj["actor"]`, default
`cli:<login name>`). Every command opens its own engine (`get_engine`), runs one asyncio loop
and disposes the engine.

Passwords never travel as command-line arguments (they would show in `ps` and shell history):
they are prompted for (twice), read from the first line of standard input with
`--password-stdin`, or taken from the environment variable TELEWAY_PASSWORD (for scripts).

Exit codes: 0 success, 2 invalid input (bad value, unknown account, conflict, invalid
provisioning file), 1 runtime failure (database unreachable, schema missing). Errors are one
line on standard error, never a traceback.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from teleway.core import provisioning as prov
from teleway.core.model import Account, Network, Role, SenderRule, SmppCredential, User
from teleway.core.ports import StoreUnavailable
from teleway.runtime import provision_file
from teleway.store.directory import UNSET, AuditEntry, Directory, Unset
from teleway.store.engine import READ_ONLY_OPTION, normalise_url
from teleway.store.inbound import InboundNumber, InboundNumberError, InboundNumbers

EXIT_RUNTIME = 1
EXIT_INVALID = 2
PASSWORD_ENV = "TELEWAY_PASSWORD"

T = TypeVar("T")


class AdminFailure(Exception):
    """A runtime failure already phrased for the operator."""


# --- engine and running ---------------------------------------------------------------------


SQLITE_BUSY_TIMEOUT_MS = 5_000  # wait this long for a running gateway's write lock


def _sqlite_hooks(engine: AsyncEngine) -> None:
    """SQLite the way the store uses it (store.engine): foreign keys on, wait for another
    process's write lock, and BEGIN IMMEDIATE so that a provisioning transaction that reads then
    writes cannot fail half-way because the running gateway wrote in between."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" hook below BEGINs
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")  # a lookup: no write lock needed
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str) -> AsyncEngine:
    """An AsyncEngine for `url` (plain `sqlite:///` and `postgresql://` URLs get the async
    drivers); SQLite connections get `PRAGMA foreign_keys=ON` (see `_sqlite_hooks`)."""
    engine = create_async_engine(normalise_url(url))
    if engine.dialect.name == "sqlite":
        _sqlite_hooks(engine)
    return engine


def _database_url(ctx: click.Context) -> str:
    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    url = obj.get("database_url")
    if not url:
        raise AdminFailure("no database configured (database_url is not set)")
    return str(url)


def _shown_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def get_engine(ctx: click.Context) -> AsyncEngine:
    """A new AsyncEngine for the database URL the main CLI put in `ctx.obj["database_url"]`."""
    url = _database_url(ctx)
    try:
        return create_engine(url)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise AdminFailure(f"invalid database URL {_shown_url(url)}: {exc}") from exc


def _actor(ctx: click.Context) -> str:
    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    if obj.get("actor"):
        return str(obj["actor"])
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {_one_line(message)}", err=True)
    raise click.exceptions.Exit(code)


def _why(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    if isinstance(cause, DBAPIError) and cause.orig is not None:
        cause = cause.orig
    text = str(cause) or type(cause).__name__
    return text


def _run(ctx: click.Context, work: Callable[[Directory], Awaitable[T]]) -> T:
    """Run `work` with a Directory on a fresh engine; turn failures into one-line errors."""

    async def main() -> T:
        engine = get_engine(ctx)
        try:
            return await work(Directory(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except provision_file.ProvisionFileError:
        raise
    except prov.ProvisioningError as exc:
        _fail(str(exc), EXIT_INVALID)
    except AdminFailure as exc:
        _fail(str(exc), EXIT_RUNTIME)
    except (StoreUnavailable, SQLAlchemyError, OSError) as exc:
        url = _shown_url(_database_url(ctx))
        why = _why(exc)
        lowered = why.lower()
        if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
            _fail(
                f"the database at {url} has no teleway schema (apply the migrations first): {why}",
                EXIT_RUNTIME,
            )
        _fail(f"cannot reach the database at {url}: {why}", EXIT_RUNTIME)
    except Exception as exc:  # the operator gets one line, not a traceback
        if os.environ.get("TELEWAY_DEBUG") == "1":
            raise
        _fail(
            f"unexpected {type(exc).__name__}: {exc} (set TELEWAY_DEBUG=1 for details)",
            EXIT_RUNTIME,
        )


def _checked(action: Callable[[], T]) -> T:
    """Run input validation that happens before the database is touched."""
    try:
        return action()
    except prov.ProvisioningError as exc:
        _fail(str(exc), EXIT_INVALID)


def _read_password(*, from_stdin: bool, prompt: str) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            _fail("no password on standard input (--password-stdin)", EXIT_INVALID)
        return password
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    value: str = click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    return value


# --- output ---------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def _json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _user_dict(user: User, names: dict[int, str]) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role.value,
        "account": names.get(user.account_id) if user.account_id is not None else None,
        "email": user.email,
        "enabled": user.enabled,
    }


def _smpp_dict(credential: SmppCredential, names: dict[int, str]) -> dict[str, Any]:
    return {
        "system_id": credential.system_id,
        "account": names.get(credential.account_id),
        "system_type": credential.system_type,
        "max_binds": credential.max_binds,
        "throughput": credential.throughput,
        "enabled": credential.enabled,
    }


def _rate(value: float) -> str:
    return f"{value:g}/s"


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help=f"Read the password from the first line of standard input (else ${PASSWORD_ENV}, "
    "else a prompt).",
)


# --- the group ------------------------------------------------------------------------------


@click.group("admin")
def admin() -> None:
    """Provision accounts, users, senders, networks and SMPP credentials.

    Every change is written to the audit log (`teleway admin audit`). Passwords are
    prompted for, read with --password-stdin, or taken from $TELEWAY_PASSWORD; they are
    never accepted as arguments.

    \b
    Quick start:
      teleway admin account add demo
      teleway admin sender add demo '*@example.com'
      teleway admin network add demo 192.0.2.0/24
      teleway admin smpp add demo demo --max-binds 2
      teleway admin apply provisioning.toml --dry-run
    """


# --- accounts -------------------------------------------------------------------------------


@admin.group("account")
def account_group() -> None:
    """Customer accounts: add, list, show, enable, disable, rename, delete, set settings."""


@account_group.command("add")
@click.argument("name")
@click.option("--disabled", is_flag=True, help="Create the account disabled.")
@click.option(
    "--set", "assignments", multiple=True, metavar="KEY=VALUE", help="A setting (repeatable)."
)
@click.pass_context
def account_add(
    ctx: click.Context, name: str, disabled: bool, assignments: tuple[str, ...]
) -> None:
    """Create account NAME (lower-case letters, digits, '.', '_', '-').

    \b
    Examples:
      teleway admin account add acme
      teleway admin account add acme --set default_country=GB --set max_sms_parts=3
    """
    settings = _checked(lambda: dict(prov.parse_setting_assignment(a) for a in assignments))

    async def work(directory: Directory) -> Account:
        return await directory.create_account(
            name, actor=_actor(ctx), settings=settings, enabled=not disabled
        )

    account = _run(ctx, work)
    click.echo(f"created account {account.name} (id {account.id})")


@account_group.command("list")
@json_option
@click.pass_context
def account_list(ctx: click.Context, as_json: bool) -> None:
    """List accounts with how many senders, networks, users and SMPP credentials each has.

    \b
    Examples:
      teleway admin account list
      teleway admin account list --json
    """

    async def work(
        directory: Directory,
    ) -> tuple[list[Account], list[SenderRule], list[Network], list[User], list[SmppCredential]]:
        return (
            await directory.list_accounts(),
            await directory.list_senders(),
            await directory.list_networks(),
            await directory.list_users(),
            await directory.list_smpp(),
        )

    accounts, senders, networks, users, credentials = _run(ctx, work)

    def count(items: Sequence[Any], account: Account) -> int:
        return sum(1 for item in items if item.account_id == account.id)

    rows: list[dict[str, Any]] = [
        {
            "id": a.id,
            "name": a.name,
            "enabled": a.enabled,
            "senders": count(senders, a),
            "networks": count(networks, a),
            "users": count(users, a),
            "smpp": count(credentials, a),
        }
        for a in accounts
    ]
    if as_json:
        _json(rows)
        return
    click.echo(
        _table(
            ["NAME", "ENABLED", "SENDERS", "NETWORKS", "USERS", "SMPP"],
            [
                [
                    r["name"],
                    _yes_no(r["enabled"]),
                    r["senders"],
                    r["networks"],
                    r["users"],
                    r["smpp"],
                ]
                for r in rows
            ],
        )
    )


@account_group.command("show")
@click.argument("name")
@json_option
@click.pass_context
def account_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show account NAME: settings, senders, networks, users and SMPP credentials.

    \b
    Examples:
      teleway admin account show acme
      teleway admin account show acme --json
    """

    async def work(directory: Directory) -> dict[str, Any]:
        account = await directory.require_account(name)
        names = {account.id: account.name}
        return {
            "id": account.id,
            "name": account.name,
            "enabled": account.enabled,
            "settings": account.settings.to_dict(),
            "settings_changed": sorted(prov.settings_overrides(account.settings)),
            "senders": [s.pattern for s in await directory.list_senders(account.name)],
            "networks": [n.cidr for n in await directory.list_networks(account.name)],
            "users": [_user_dict(u, names) for u in await directory.list_users(account.name)],
            "smpp": [_smpp_dict(c, names) for c in await directory.list_smpp(account.name)],
        }

    data = _run(ctx, work)
    changed = set(data.pop("settings_changed"))
    if as_json:
        _json(data)
        return
    click.echo(f"account {data['name']} (id {data['id']}), enabled: {_yes_no(data['enabled'])}")
    click.echo("settings:")
    for key, value in data["settings"].items():
        marker = "" if key in changed else "  (default)"
        click.echo(f"  {key} = {json.dumps(value, ensure_ascii=False)}{marker}")
    click.echo("senders: " + (", ".join(data["senders"]) or "none"))
    click.echo("networks: " + (", ".join(data["networks"]) or "none (no client may connect)"))
    click.echo("users:" + ("" if data["users"] else " none"))
    if data["users"]:
        rows = [
            [u["username"], u["role"], u["email"], _yes_no(u["enabled"])] for u in data["users"]
        ]
        click.echo(_indent(_table(["USERNAME", "ROLE", "EMAIL", "ENABLED"], rows)))
    click.echo("smpp:" + ("" if data["smpp"] else " none"))
    if data["smpp"]:
        rows = [
            [
                c["system_id"],
                c["system_type"],
                c["max_binds"],
                _rate(c["throughput"]),
                _yes_no(c["enabled"]),
            ]
            for c in data["smpp"]
        ]
        click.echo(
            _indent(
                _table(["SYSTEM_ID", "SYSTEM_TYPE", "MAX_BINDS", "THROUGHPUT", "ENABLED"], rows)
            )
        )


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


@account_group.command("enable")
@click.argument("name")
@click.pass_context
def account_enable(ctx: click.Context, name: str) -> None:
    """Enable account NAME.

    \b
    Example:
      teleway admin account enable acme
    """
    account = _run(ctx, lambda d: d.set_account_enabled(name, True, actor=_actor(ctx)))
    click.echo(f"account {account.name} enabled")


@account_group.command("disable")
@click.argument("name")
@click.pass_context
def account_disable(ctx: click.Context, name: str) -> None:
    """Disable account NAME: its clients are refused on every ingress, its users cannot log in.

    \b
    Example:
      teleway admin account disable acme
    """
    account = _run(ctx, lambda d: d.set_account_enabled(name, False, actor=_actor(ctx)))
    click.echo(f"account {account.name} disabled")


@account_group.command("rename")
@click.argument("name")
@click.argument("new_name")
@click.pass_context
def account_rename(ctx: click.Context, name: str, new_name: str) -> None:
    """Rename account NAME to NEW_NAME.

    \b
    Example:
      teleway admin account rename acme acme-corp
    """
    account = _run(ctx, lambda d: d.rename_account(name, new_name, actor=_actor(ctx)))
    click.echo(f"account renamed to {account.name}")


@account_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def account_delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete account NAME with its users, senders, networks and SMPP credentials.

    Refused once the account has messages: disable it instead.

    \b
    Example:
      teleway admin account delete acme --yes
    """
    if not yes:
        click.confirm(f"Delete account {name} and everything that belongs to it?", abort=True)
    _run(ctx, lambda d: d.delete_account(name, actor=_actor(ctx)))
    click.echo(f"deleted account {name}")


@account_group.command("set")
@click.argument("name")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.pass_context
def account_set(ctx: click.Context, name: str, assignments: tuple[str, ...]) -> None:
    """Change settings of account NAME.

    Keys: sms_template, long_sms_policy (concatenate|truncate|reject), max_sms_parts,
    push_mode (off|push-only|push-then-sms), push_fallback_seconds, default_country,
    sender_id, require_tls, validity_seconds, max_recipients, notify_email, webhook_url.
    An empty value (or `none`) clears an optional setting.

    \b
    Examples:
      teleway admin account set acme default_country=GB require_tls=true
      teleway admin account set acme 'sms_template={subject}: {body}'
      teleway admin account set acme webhook_url=
    """
    changes = _checked(lambda: dict(prov.parse_setting_assignment(a) for a in assignments))
    account = _run(ctx, lambda d: d.update_settings(name, changes, actor=_actor(ctx)))
    click.echo(f"account {account.name} updated: {', '.join(sorted(changes))}")


# --- users ----------------------------------------------------------------------------------


@admin.group("user")
def user_group() -> None:
    """Portal users: account users (role user) and operators (role operator)."""


@user_group.command("add")
@click.argument("account")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=Role.ACCOUNT_USER.value,
    show_default=True,
    help="operator: sees every account; user: only ACCOUNT.",
)
@click.option("--email", help="The user's e-mail address.")
@password_stdin_option
@click.pass_context
def user_add(
    ctx: click.Context,
    account: str,
    username: str,
    role: str,
    email: str | None,
    password_stdin: bool,
) -> None:
    """Add USERNAME to ACCOUNT (use '-' as ACCOUNT for an operator without an account).

    The password needs at least 10 characters, must not be the username nor a common password.

    \b
    Examples:
      teleway admin user add acme alice --email alice@acme.example
      printf '%s\\n' "$PW" | teleway admin user add - root --role operator --password-stdin
    """
    the_account = None if account == "-" else account
    if the_account is None and role != Role.OPERATOR.value:
        _fail("an account user needs an account (use '-' only with --role operator)", EXIT_INVALID)
    _checked(lambda: prov.normalise_username(username))
    password = _read_password(from_stdin=password_stdin, prompt=f"Password for {username}")

    async def work(directory: Directory) -> User:
        return await directory.add_user(
            username,
            actor=_actor(ctx),
            account=the_account,
            role=role,
            email=email,
            password=password,
        )

    user = _run(ctx, work)
    where = f" to account {the_account}" if the_account else ""
    click.echo(f"added {user.role.value} {user.username}{where}")


@user_group.command("passwd")
@click.argument("username")
@password_stdin_option
@click.pass_context
def user_passwd(ctx: click.Context, username: str, password_stdin: bool) -> None:
    """Set a new password for USERNAME (also lifts a login lock-out).

    \b
    Examples:
      teleway admin user passwd alice
      TELEWAY_PASSWORD="$PW" teleway admin user passwd alice
    """
    password = _read_password(from_stdin=password_stdin, prompt=f"New password for {username}")
    _run(ctx, lambda d: d.set_password(username, password=password, actor=_actor(ctx)))
    click.echo(f"password of {username} changed")


@user_group.command("enable")
@click.argument("username")
@click.pass_context
def user_enable(ctx: click.Context, username: str) -> None:
    """Enable USERNAME (also lifts a login lock-out).

    \b
    Example:
      teleway admin user enable alice
    """
    user = _run(ctx, lambda d: d.set_user_enabled(username, True, actor=_actor(ctx)))
    click.echo(f"user {user.username} enabled")


@user_group.command("disable")
@click.argument("username")
@click.pass_context
def user_disable(ctx: click.Context, username: str) -> None:
    """Disable USERNAME: the user can no longer log in.

    \b
    Example:
      teleway admin user disable alice
    """
    user = _run(ctx, lambda d: d.set_user_enabled(username, False, actor=_actor(ctx)))
    click.echo(f"user {user.username} disabled")


@user_group.command("delete")
@click.argument("username")
@click.pass_context
def user_delete(ctx: click.Context, username: str) -> None:
    """Delete USERNAME.

    \b
    Example:
      teleway admin user delete alice
    """
    _run(ctx, lambda d: d.delete_user(username, actor=_actor(ctx)))
    click.echo(f"deleted user {username}")


@user_group.command("list")
@click.argument("account", required=False)
@json_option
@click.pass_context
def user_list(ctx: click.Context, account: str | None, as_json: bool) -> None:
    """List the users of ACCOUNT, or every user and operator.

    \b
    Examples:
      teleway admin user list
      teleway admin user list acme --json
    """

    async def work(directory: Directory) -> tuple[list[User], dict[int, str]]:
        return await directory.list_users(account), await directory.account_names()

    users, names = _run(ctx, work)
    rows = [_user_dict(user, names) for user in users]
    if as_json:
        _json(rows)
        return
    click.echo(
        _table(
            ["USERNAME", "ROLE", "ACCOUNT", "EMAIL", "ENABLED"],
            [
                [r["username"], r["role"], r["account"], r["email"], _yes_no(r["enabled"])]
                for r in rows
            ],
        )
    )


# --- senders and networks -------------------------------------------------------------------


@admin.group("sender")
def sender_group() -> None:
    """Authorised e-mail senders: one address (user@domain) or a whole domain (*@domain)."""


@sender_group.command("add")
@click.argument("account")
@click.argument("pattern")
@click.pass_context
def sender_add(ctx: click.Context, account: str, pattern: str) -> None:
    """Authorise PATTERN (user@domain or *@domain) to send for ACCOUNT.

    An address belongs to one account; an exact address wins over a *@domain rule.

    \b
    Examples:
      teleway admin sender add acme alice@acme.example
      teleway admin sender add acme '*@acme.example'
    """
    rule = _run(ctx, lambda d: d.add_sender(account, pattern, actor=_actor(ctx)))
    click.echo(f"added sender {rule.pattern} to account {prov.normalise_account_name(account)}")


@sender_group.command("remove")
@click.argument("account")
@click.argument("pattern")
@click.pass_context
def sender_remove(ctx: click.Context, account: str, pattern: str) -> None:
    """Remove PATTERN from ACCOUNT's senders.

    \b
    Example:
      teleway admin sender remove acme alice@acme.example
    """
    _run(ctx, lambda d: d.remove_sender(account, pattern, actor=_actor(ctx)))
    click.echo(f"removed sender {pattern}")


@sender_group.command("list")
@click.argument("account", required=False)
@json_option
@click.pass_context
def sender_list(ctx: click.Context, account: str | None, as_json: bool) -> None:
    """List the senders of ACCOUNT, or of every account.

    \b
    Examples:
      teleway admin sender list acme
      teleway admin sender list --json
    """

    async def work(directory: Directory) -> tuple[list[SenderRule], dict[int, str]]:
        return await directory.list_senders(account), await directory.account_names()

    rules, names = _run(ctx, work)
    rows = [{"pattern": r.pattern, "account": names.get(r.account_id)} for r in rules]
    if as_json:
        _json(rows)
        return
    click.echo(_table(["PATTERN", "ACCOUNT"], [[r["pattern"], r["account"]] for r in rows]))


@admin.group("network")
def network_group() -> None:
    """Source networks (CIDR, IPv4 or IPv6) an account's clients may connect from."""


@network_group.command("add")
@click.argument("account")
@click.argument("cidr")
@click.pass_context
def network_add(ctx: click.Context, account: str, cidr: str) -> None:
    """Allow ACCOUNT's clients to connect from CIDR.

    Host bits are cleared (192.0.2.7/24 is stored as 192.0.2.0/24) and a bare address is a
    /32 or /128. An account without networks accepts no connection.

    \b
    Examples:
      teleway admin network add acme 192.0.2.0/24
      teleway admin network add acme 2001:db8::/32
    """
    network = _run(ctx, lambda d: d.add_network(account, cidr, actor=_actor(ctx)))
    if network.cidr != cidr.strip():
        click.echo(f"note: {cidr.strip()} is stored as {network.cidr}")
    click.echo(f"added network {network.cidr}")


@network_group.command("remove")
@click.argument("account")
@click.argument("cidr")
@click.pass_context
def network_remove(ctx: click.Context, account: str, cidr: str) -> None:
    """Remove CIDR from ACCOUNT's networks.

    \b
    Example:
      teleway admin network remove acme 192.0.2.0/24
    """
    _run(ctx, lambda d: d.remove_network(account, cidr, actor=_actor(ctx)))
    click.echo(f"removed network {prov.normalise_cidr(cidr)}")


@network_group.command("list")
@click.argument("account", required=False)
@json_option
@click.pass_context
def network_list(ctx: click.Context, account: str | None, as_json: bool) -> None:
    """List the networks of ACCOUNT, or of every account.

    \b
    Examples:
      teleway admin network list acme
      teleway admin network list --json
    """

    async def work(directory: Directory) -> tuple[list[Network], dict[int, str]]:
        return await directory.list_networks(account), await directory.account_names()

    networks, names = _run(ctx, work)
    rows = [{"cidr": n.cidr, "account": names.get(n.account_id)} for n in networks]
    if as_json:
        _json(rows)
        return
    click.echo(_table(["CIDR", "ACCOUNT"], [[r["cidr"], r["account"]] for r in rows]))


# --- SMPP credentials -----------------------------------------------------------------------


@admin.group("smpp")
def smpp_group() -> None:
    """SMPP credentials: the system_id and password an ESME binds with.

    SMPP v3.4 limits system_id to 15 and the password to 8 characters; short passwords are
    protected by the bind rate limit and the account's networks.
    """


@smpp_group.command("add")
@click.argument("account")
@click.argument("system_id")
@click.option("--system-type", default=None, help="SMPP system_type (at most 12 characters).")
@click.option("--max-binds", type=int, default=4, show_default=True, help="Sessions at once.")
@click.option(
    "--throughput", type=float, default=100.0, show_default=True, help="Messages per second."
)
@click.option("--disabled", is_flag=True, help="Create the credential disabled.")
@password_stdin_option
@click.pass_context
def smpp_add(
    ctx: click.Context,
    account: str,
    system_id: str,
    system_type: str | None,
    max_binds: int,
    throughput: float,
    disabled: bool,
    password_stdin: bool,
) -> None:
    """Add SMPP credential SYSTEM_ID to ACCOUNT (password: 1-8 printable ASCII characters).

    \b
    Examples:
      teleway admin smpp add acme acme01 --max-binds 2 --throughput 50
      echo 'pw4acme' | teleway admin smpp add acme acme02 --password-stdin
    """
    _checked(lambda: prov.normalise_system_id(system_id))
    password = _read_password(from_stdin=password_stdin, prompt=f"SMPP password for {system_id}")

    async def work(directory: Directory) -> SmppCredential:
        return await directory.add_smpp(
            account,
            system_id,
            actor=_actor(ctx),
            password=password,
            system_type=system_type,
            max_binds=max_binds,
            throughput=throughput,
            enabled=not disabled,
        )

    credential = _run(ctx, work)
    click.echo(f"added SMPP credential {credential.system_id}")


@smpp_group.command("set")
@click.argument("system_id")
@click.option("--system-type", default=None, help="New system_type ('' clears it).")
@click.option("--max-binds", type=int, default=None, help="Sessions at once.")
@click.option("--throughput", type=float, default=None, help="Messages per second.")
@click.option("--account", default=None, help="Move the credential to this account.")
@click.option("--enable/--disable", "enabled", default=None, help="Enable or disable it.")
@click.option(
    "--change-password", is_flag=True, help=f"Set a new password (prompt or ${PASSWORD_ENV})."
)
@password_stdin_option
@click.pass_context
def smpp_set(
    ctx: click.Context,
    system_id: str,
    system_type: str | None,
    max_binds: int | None,
    throughput: float | None,
    account: str | None,
    enabled: bool | None,
    change_password: bool,
    password_stdin: bool,
) -> None:
    """Change SMPP credential SYSTEM_ID; options left out stay as they are.

    \b
    Examples:
      teleway admin smpp set acme01 --max-binds 8 --throughput 200
      teleway admin smpp set acme01 --disable
      echo 'n3wpw' | teleway admin smpp set acme01 --password-stdin
    """
    password = None
    if change_password or password_stdin:
        password = _read_password(
            from_stdin=password_stdin, prompt=f"New SMPP password for {system_id}"
        )
    any_change = password is not None or any(
        v is not None for v in (system_type, max_binds, throughput, account, enabled)
    )
    if not any_change:
        _fail("nothing to change: give at least one option (see --help)", EXIT_INVALID)

    def given(value: T | None) -> T | Unset:
        return UNSET if value is None else value

    async def work(directory: Directory) -> SmppCredential:
        return await directory.update_smpp(
            system_id,
            actor=_actor(ctx),
            account=given(account),
            password=password,
            system_type=given(system_type),
            max_binds=given(max_binds),
            throughput=given(throughput),
            enabled=given(enabled),
        )

    credential = _run(ctx, work)
    click.echo(f"updated SMPP credential {credential.system_id}")


@smpp_group.command("remove")
@click.argument("system_id")
@click.pass_context
def smpp_remove(ctx: click.Context, system_id: str) -> None:
    """Remove SMPP credential SYSTEM_ID.

    \b
    Example:
      teleway admin smpp remove acme01
    """
    _run(ctx, lambda d: d.remove_smpp(system_id, actor=_actor(ctx)))
    click.echo(f"removed SMPP credential {system_id}")


@smpp_group.command("list")
@click.argument("account", required=False)
@json_option
@click.pass_context
def smpp_list(ctx: click.Context, account: str | None, as_json: bool) -> None:
    """List the SMPP credentials of ACCOUNT, or of every account.

    \b
    Examples:
      teleway admin smpp list acme
      teleway admin smpp list --json
    """

    async def work(directory: Directory) -> tuple[list[SmppCredential], dict[int, str]]:
        return await directory.list_smpp(account), await directory.account_names()

    credentials, names = _run(ctx, work)
    rows = [_smpp_dict(c, names) for c in credentials]
    if as_json:
        _json(rows)
        return
    click.echo(
        _table(
            ["SYSTEM_ID", "ACCOUNT", "SYSTEM_TYPE", "MAX_BINDS", "THROUGHPUT", "ENABLED"],
            [
                [
                    r["system_id"],
                    r["account"],
                    r["system_type"],
                    r["max_binds"],
                    _rate(r["throughput"]),
                    _yes_no(r["enabled"]),
                ]
                for r in rows
            ],
        )
    )


# --- provisioning files and audit -----------------------------------------------------------


@admin.command("apply")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--prune", is_flag=True, help="Also remove what the file does not list.")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--verbose", "-v", is_flag=True, help="Also list unchanged objects.")
@json_option
@click.pass_context
def apply_command(
    ctx: click.Context, file: Any, prune: bool, dry_run: bool, verbose: bool, as_json: bool
) -> None:
    """Make the database match provisioning FILE (TOML; '-' reads standard input).

    The whole file is checked first; if anything is wrong, every problem is reported with its
    line number and nothing is changed. Then everything is applied in one transaction.
    Applying the same file again changes nothing. See docs/provisioning.md for the format.

    \b
    Examples:
      teleway admin apply provisioning.toml --dry-run
      teleway admin apply provisioning.toml
      teleway admin export > all.toml && teleway admin apply all.toml --prune
    """
    text = file.read()
    name = getattr(file, "name", "-")
    try:
        report = _run(
            ctx,
            lambda d: provision_file.apply(d, text, _actor(ctx), prune=prune, dry_run=dry_run),
        )
    except provision_file.ProvisionFileError as exc:
        click.echo(f"error: {name} was not applied ({len(exc.problems)} problem(s)):", err=True)
        for problem in exc.problems:
            where = f"{name}:{problem.line}: " if problem.line is not None else f"{name}: "
            path = f"{problem.path}: " if problem.path else ""
            click.echo(f"{where}{path}{_one_line(problem.message)}", err=True)
        raise click.exceptions.Exit(EXIT_INVALID) from None
    if as_json:
        _json(report.to_dict())
        return
    for change in report.changes:
        if verbose or change.action is not provision_file.ChangeAction.UNCHANGED:
            click.echo(str(change))
    if not report.changed:
        click.echo("no changes")
    click.echo(report.summary())


@admin.command("export")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), help="Write to this file (mode 0600)."
)
@click.pass_context
def export_command(ctx: click.Context, output: str | None) -> None:
    """Print the current provisioning as a provisioning file (password hashes, never
    plaintext). Applying it changes nothing.

    \b
    Examples:
      teleway admin export > provisioning.toml
      teleway admin export -o backup.toml
    """
    text = _run(ctx, provision_file.export)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}", EXIT_RUNTIME)
    click.echo(f"wrote {output}", err=True)


@admin.command("audit")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="How many."
)
@json_option
@click.pass_context
def audit_command(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Show the newest audit log entries (who changed what, when), newest first.

    \b
    Examples:
      teleway admin audit
      teleway admin audit --limit 200 --json
    """
    entries: list[AuditEntry] = _run(ctx, lambda d: d.audit_log(limit))
    if as_json:
        _json(
            [
                {
                    "at": e.at.isoformat(),
                    "actor": e.actor,
                    "action": e.action,
                    "subject": e.subject,
                    "detail": e.detail,
                }
                for e in entries
            ]
        )
        return
    click.echo(
        _table(
            ["AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"],
            [
                [
                    e.at.strftime("%Y-%m-%d %H:%M:%S"),
                    e.actor,
                    e.action,
                    e.subject,
                    json.dumps(e.detail, ensure_ascii=False, sort_keys=True) if e.detail else "",
                ]
                for e in entries
            ],
        )
    )


# ---- inbound numbers (replies from phones) ---------------------------------------------------


@admin.group("number")
def number_group() -> None:
    """Numbers an account receives replies (MO) on: long numbers and short codes."""


def _numbers_call(
    ctx: click.Context, work: Callable[[InboundNumbers, Directory], Awaitable[T]]
) -> T:
    async def call(directory: Directory) -> T:
        try:
            return await work(InboundNumbers(directory.engine), directory)
        except InboundNumberError as exc:
            raise prov.ProvisioningError("number", exc.number, exc.reason) from exc

    return _run(ctx, call)


@number_group.command("add")
@click.argument("account")
@click.argument("number")
@click.pass_context
def number_add(ctx: click.Context, account: str, number: str) -> None:
    """Route replies sent to NUMBER to ACCOUNT (its ESMEs get them as deliver_sm).

    \b
    Examples:
      teleway admin number add acme +447700900123
      teleway admin number add acme 54321          # a short code
    """

    async def work(numbers: InboundNumbers, directory: Directory) -> str:
        owner = await directory.require_account(account)
        return await numbers.add(number, owner.id, datetime.now(UTC), actor=_actor(ctx))

    key = _numbers_call(ctx, work)
    click.echo(f"number {key} now routes replies to account {account}")


@number_group.command("list")
@click.option("--account", default=None, help="Only this account's numbers.")
@json_option
@click.pass_context
def number_list(ctx: click.Context, account: str | None, as_json: bool) -> None:
    """List inbound numbers and their accounts.

    \b
    Examples:
      teleway admin number list
      teleway admin number list --account acme --json
    """

    async def work(numbers: InboundNumbers, directory: Directory) -> list[InboundNumber]:
        owner = await directory.require_account(account) if account else None
        return await numbers.numbers(owner.id if owner else None)

    found = _numbers_call(ctx, work)
    if as_json:
        _json(
            [
                {"number": n.number, "account": n.account, "created_at": n.created_at.isoformat()}
                for n in found
            ]
        )
        return
    click.echo(
        _table(
            ["NUMBER", "ACCOUNT", "ADDED"],
            [[n.number, n.account, n.created_at.strftime("%Y-%m-%d %H:%M")] for n in found],
        )
    )


@number_group.command("remove")
@click.argument("number")
@click.pass_context
def number_remove(ctx: click.Context, number: str) -> None:
    """Stop routing replies sent to NUMBER (exit code 2 when it is not provisioned).

    \b
    Example:
      teleway admin number remove +447400123456
    """

    async def work(numbers: InboundNumbers, directory: Directory) -> bool:
        return await numbers.remove(number, actor=_actor(ctx))

    if not _numbers_call(ctx, work):
        _fail(f"no inbound number {number}", EXIT_INVALID)
    click.echo(f"number {number} removed")


# ---- REST API keys ----------------------------------------------------------------------------


@admin.group("apikey")
def apikey_group() -> None:
    """REST API keys of an account: created (shown once), listed, revoked."""


def _apikeys_call(ctx: click.Context, work: Callable[[Any, Directory], Awaitable[T]]) -> T:
    """Run `work(ApiKeys, Directory)` on an opened store (the keys go through its writer)."""
    from teleway.store import SchemaMismatch, open_store
    from teleway.store.api_keys import ApiKeyError, ApiKeys

    async def call(directory: Directory) -> T:
        try:
            store = await open_store(_database_url(ctx))
        except SchemaMismatch as exc:
            raise AdminFailure(f"{exc}; run `teleway db upgrade` first") from exc
        try:
            return await work(ApiKeys(store.db, store.writer), directory)
        except ApiKeyError as exc:
            refused = prov.ProvisioningError("apikey", "", str(exc))
            refused.args = (f"API key: {exc}",)  # the reason alone, no empty value
            raise refused from exc
        finally:
            await store.close()

    return _run(ctx, call)


def _apikey_dict(key: Any, names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": key.id,
        "account": names.get(key.account_id, str(key.account_id)),
        "name": key.name,
        "prefix": key.prefix,
        "rate_limit": key.rate_limit,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@apikey_group.command("create")
@click.argument("account")
@click.argument("name")
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Requests per second for this key (default: [listeners.http] api_rate_limit).",
)
@json_option
@click.pass_context
def apikey_create(
    ctx: click.Context, account: str, name: str, rate_limit: float | None, as_json: bool
) -> None:
    """Create a key called NAME for ACCOUNT and print it (the only time it is shown).

    \b
    Example:
      teleway admin apikey create acme billing-server
    """

    async def work(keys: Any, directory: Directory) -> tuple[Any, str]:
        owner = await directory.require_account(account)
        created: tuple[Any, str] = await keys.create(
            owner.id, name, now=datetime.now(UTC), actor=_actor(ctx), rate_limit=rate_limit
        )
        return created

    key, secret = _apikeys_call(ctx, work)
    if as_json:
        _json({**_apikey_dict(key, {key.account_id: account}), "key": secret})
        return
    click.echo(f"API key {key.name!r} (id {key.id}) created for account {account}:")
    click.echo(secret)
    click.echo("Store it now: teleway keeps only its SHA-256 and cannot show it again.")


@apikey_group.command("list")
@click.option("--account", default=None, help="Only this account's keys.")
@click.option("--active", is_flag=True, help="Leave out revoked keys.")
@json_option
@click.pass_context
def apikey_list(ctx: click.Context, account: str | None, active: bool, as_json: bool) -> None:
    """List API keys (their prefixes, never the keys).

    \b
    Example:
      teleway admin apikey list --account acme --active
    """

    async def work(keys: Any, directory: Directory) -> tuple[list[Any], dict[int, str]]:
        owner = await directory.require_account(account) if account else None
        found = await keys.list_keys(owner.id if owner else None, include_revoked=not active)
        return found, await directory.account_names()

    found, names = _apikeys_call(ctx, work)
    rows = [_apikey_dict(k, names) for k in found]
    if as_json:
        _json(rows)
        return
    click.echo(
        _table(
            ["ID", "ACCOUNT", "NAME", "PREFIX", "LAST USED", "REVOKED"],
            [
                [
                    r["id"],
                    r["account"],
                    r["name"],
                    r["prefix"] + "…",
                    (r["last_used_at"] or "never")[:16],
                    (r["revoked_at"] or "-")[:16],
                ]
                for r in rows
            ],
        )
    )


@apikey_group.command("revoke")
@click.argument("key_id", type=int)
@click.pass_context
def apikey_revoke(ctx: click.Context, key_id: int) -> None:
    """Revoke the key with id KEY_ID (see `apikey list`); requests with it get 401 at once.

    \b
    Example:
      teleway admin apikey revoke 7
    """

    async def work(keys: Any, directory: Directory) -> Any:
        return await keys.revoke(key_id, account_id=None, now=datetime.now(UTC), actor=_actor(ctx))

    key = _apikeys_call(ctx, work)
    click.echo(f"API key {key.name!r} (id {key.id}, {key.prefix}…) revoked")
