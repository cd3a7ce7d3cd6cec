"""Declarative provisioning: a TOML file that says which accounts, senders, networks, inbound
numbers, users and SMPP credentials exist. The format is described in docs/provisioning.md.

`apply()` checks the whole file first (syntax, every value, duplicates, and what the store
holds), names every problem with its line, and changes nothing if there is any. It then makes
the store match the file inside one transaction and reports, per object, whether it was created,
updated, left unchanged or (with `prune`) removed. Applying the same file twice changes nothing
the second time: plaintext passwords are compared by verifying them against the stored hash.

Rules:

* an object is identified by its name: account `name`, `username`, sender pattern, network,
  inbound number, `system_id`; a username, sender pattern, number or system_id listed under another account than the
  one that holds it now is moved there;
* a key left out of an entry is not managed: a new object gets the default, an existing one
  keeps its value (so `enabled` or a setting changed from the command line survives an apply
  of a file that does not mention it); the same holds for the `senders`, `networks`,
  `numbers`, `users` and `smpp` lists of an account, and for the top-level `accounts` and `operators` lists;
* without `prune` nothing is removed; with `prune`, every object missing from a list the file
  gives is removed: accounts absent from `accounts` (refused for an account that has messages),
  operators absent from `operators`, and senders, networks, numbers, users and credentials
  absent from their account's lists.

`export()` writes the current provisioning in the same format, with argon2id hashes instead of
passwords, so that applying an export (with or without prune) changes nothing.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import tomli_w

from teleway.core import passwords
from teleway.core import provisioning as prov
from teleway.core.model import Account, Role, Settings, SmppCredential, User
from teleway.store.directory import UNSET, Directory, Unset
from teleway.store.inbound import InboundNumberError, normalise_inbound_number

FORMAT_VERSION = 1

Path = tuple[str | int, ...]

_TOP_KEYS = ("version", "accounts", "operators")
_ACCOUNT_KEYS = ("name", "enabled", "senders", "networks", "numbers", "settings", "users", "smpp")
_USER_KEYS = ("username", "password", "password_hash", "role", "email", "enabled")
_OPERATOR_KEYS = ("username", "password", "password_hash", "email", "enabled")
_SMPP_KEYS = (
    "system_id",
    "password",
    "password_hash",
    "system_type",
    "max_binds",
    "throughput",
    "enabled",
)


# --- results --------------------------------------------------------------------------------


class ChangeAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REMOVED = "removed"


@dataclass(frozen=True, kw_only=True)
class Change:
    """What apply did to one object. `kind` is account, operator, user, sender, network or
    smpp; `name` the object's identity; `account` the account it belongs to; `fields` what an
    update changed (`enabled`, `settings.require_tls`, `password`, `account`, ...)."""

    kind: str
    name: str
    action: ChangeAction
    account: str | None = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.action.value} {self.kind} {self.name}"
        if self.account is not None:
            text += f" (account {self.account})"
        if self.fields:
            text += ": " + ", ".join(self.fields)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "account": self.account,
            "action": self.action.value,
            "fields": list(self.fields),
        }


@dataclass(frozen=True, kw_only=True)
class ChangeReport:
    """Every object the file names (and every pruned one), with what happened to it."""

    changes: tuple[Change, ...] = ()
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return any(change.action is not ChangeAction.UNCHANGED for change in self.changes)

    def count(self, action: ChangeAction) -> int:
        return sum(1 for change in self.changes if change.action is action)

    def summary(self) -> str:
        counts = ", ".join(f"{self.count(action)} {action.value}" for action in ChangeAction)
        return counts + (" (dry run: nothing was changed)" if self.dry_run else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "changed": self.changed,
            "counts": {action.value: self.count(action) for action in ChangeAction},
            "changes": [change.to_dict() for change in self.changes],
        }


@dataclass(frozen=True, kw_only=True)
class FileProblem:
    """One thing wrong with a provisioning file: where (line, and the path of the entry such as
    `accounts[0].senders[1]`) and why."""

    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class ProvisionFileError(ValueError):
    """The file was refused as a whole; nothing was applied."""

    def __init__(self, problems: Sequence[FileProblem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.line is not None, p.line or 0)))
        super().__init__("\n".join(str(problem) for problem in self.problems))


# --- where things are in the source text ----------------------------------------------------

_AOT_HEADER = re.compile(r"\[\[\s*(?P<keys>[^\[\]]+?)\s*\]\]\s*(?:#.*)?$")
_TABLE_HEADER = re.compile(r"\[\s*(?P<keys>[^\[\]]+?)\s*\]\s*(?:#.*)?$")
_BARE_OR_QUOTED = r"(?:[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*')"
_KEY_LINE = re.compile(
    rf"(?P<keys>{_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*=\s*(?P<value>.*)$"
)
_KEY_PART = re.compile(_BARE_OR_QUOTED)
_STRING = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'")


def _dotted(keys: str) -> list[str]:
    parts = []
    for match in _KEY_PART.finditer(keys):
        part = match.group(0)
        if part[:1] in ('"', "'"):
            part = part[1:-1]
        parts.append(part)
    return parts


def _bracket_depth(text: str, depth: int) -> int:
    """Depth of [] / {} nesting after `text`, skipping strings and comments."""
    index = 0
    while index < len(text):
        char = text[index]
        if char in "\"'":
            match = _STRING.match(text, index)
            index = match.end() if match else len(text)
            continue
        if char == "#":
            break
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        index += 1
    return depth


class SourceMap:
    """Line numbers of tables, keys and list elements in a TOML text.

    tomllib gives values without positions, so the text is scanned line by line for table
    headers (`[[accounts]]`, `[[accounts.users]]`, `[accounts.settings]`) and `key = value`
    lines, counting array-of-tables entries the way TOML does. Enough for locating the entries of
    a provisioning file; a key that cannot be found falls back to its enclosing entry.
    """

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines()
        self._first: dict[Path, int] = {}
        self._spans: dict[Path, tuple[int, int, int]] = {}  # first, last line index, column
        self._scan()

    def _resolve(self, keys: Sequence[str], counts: Mapping[Path, int]) -> Path:
        path: Path = ()
        for key in keys:
            path = (*path, key)
            if path in counts:
                path = (*path, counts[path] - 1)
        return path

    def _scan(self) -> None:
        counts: dict[Path, int] = {}
        current: Path = ()
        index = 0
        while index < len(self._lines):
            raw = self._lines[index]
            line = raw.strip()
            number = index + 1
            index += 1
            if not line or line.startswith("#"):
                continue
            header = _AOT_HEADER.match(line)
            if header:
                keys = _dotted(header["keys"])
                array = (*self._resolve(keys[:-1], counts), keys[-1])
                counts[array] = counts.get(array, 0) + 1
                current = (*array, counts[array] - 1)
                self._first.setdefault(array, number)
                self._first.setdefault(current, number)
                continue
            header = _TABLE_HEADER.match(line)
            if header:
                current = self._resolve(_dotted(header["keys"]), counts)
                self._first.setdefault(current, number)
                continue
            assignment = _KEY_LINE.match(line)
            if not assignment:
                continue
            path = (*current, *_dotted(assignment["keys"]))
            self._first.setdefault(path, number)
            value = assignment["value"]
            end = index - 1
            for quote in ('"""', "'''"):
                if value.startswith(quote) and value.count(quote) == 1:
                    while end + 1 < len(self._lines) and quote not in self._lines[end + 1]:
                        end += 1
                    end = min(end + 1, len(self._lines) - 1)
                    break
            else:
                depth = _bracket_depth(value, 0)
                while depth > 0 and end + 1 < len(self._lines):
                    end += 1
                    depth = _bracket_depth(self._lines[end], depth)
            column = len(raw) - len(raw.lstrip()) + assignment.start("value")
            self._spans[path] = (index - 1, end, column)
            index = end + 1

    def line_of(self, path: Path) -> int | None:
        """The line of `path` (1-based), or of the nearest enclosing thing that was found."""
        probe = tuple(path)
        while probe:
            if probe in self._first:
                if probe != tuple(path) and probe in self._spans:
                    element = path[len(probe)]
                    if isinstance(element, int):
                        return self._element_line(probe, element) or self._first[probe]
                return self._first[probe]
            probe = probe[:-1]
        return None

    def _element_line(self, path: Path, element: int) -> int | None:
        """The line where element `element` of the array value of `path` starts: elements
        are counted at the array's top level (strings, numbers, inline tables, arrays)."""
        start, end, column = self._spans[path]
        depth = 0
        expecting = False
        seen = -1
        for offset in range(start, end + 1):
            text = self._lines[offset]
            index = column if offset == start else 0
            while index < len(text):
                char = text[index]
                if char == "#":
                    break
                if char.isspace():
                    index += 1
                    continue
                if depth == 1 and expecting and char not in ",]":
                    seen += 1
                    if seen == element:
                        return offset + 1
                    expecting = False
                if char in "\"'":
                    match = _STRING.match(text, index)
                    index = match.end() if match else len(text)
                    continue
                if char in "[{":
                    depth += 1
                    expecting = depth == 1
                elif char in "]}":
                    depth -= 1
                elif char == "," and depth == 1:
                    expecting = True
                index += 1
        return None


def _path_text(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


# --- reading the file into specs ------------------------------------------------------------


@dataclass(kw_only=True)
class _UserSpec:
    path: Path
    username: str
    role: Role
    account: str | None
    email: str | Unset | None = UNSET
    enabled: bool | Unset = UNSET
    password: str | None = None
    password_hash: str | None = None


@dataclass(kw_only=True)
class _SmppSpec:
    path: Path
    system_id: str
    account: str
    password: str | None = None
    password_hash: str | None = None
    system_type: str | Unset | None = UNSET
    max_binds: int | Unset = UNSET
    throughput: float | Unset = UNSET
    enabled: bool | Unset = UNSET


@dataclass(kw_only=True)
class _AccountSpec:
    path: Path
    name: str
    enabled: bool | Unset = UNSET
    settings: dict[str, object] | None = None
    senders: list[tuple[str, Path]] | None = None
    networks: list[tuple[str, Path]] | None = None
    numbers: list[tuple[str, Path]] | None = None
    users: list[_UserSpec] | None = None
    smpp: list[_SmppSpec] | None = None


@dataclass(kw_only=True)
class _FileSpec:
    accounts: list[_AccountSpec] | None = None
    operators: list[_UserSpec] | None = None


class _Reader:
    """Checks the parsed document; collects every problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[tuple[Path, str]] = []
        self._usernames: dict[str, Path] = {}
        self._senders: dict[str, Path] = {}
        self._numbers: dict[str, Path] = {}
        self._system_ids: dict[str, Path] = {}
        self._accounts: dict[str, Path] = {}

    def problem(self, path: Path, message: str) -> None:
        self.problems.append((path, message))

    def failed(self, path: Path, exc: prov.ProvisioningError) -> None:
        if exc.value == prov.HIDDEN:
            self.problem(path, exc.reason)
        else:
            self.problem(path, f"{exc.value!r}: {exc.reason}")

    def _unknown_keys(self, path: Path, table: Mapping[str, Any], known: Sequence[str]) -> None:
        for key in table:
            if key not in known:
                self.problem((*path, key), f"unknown key; expected one of: {', '.join(known)}")

    def _table_list(self, path: Path, value: object, what: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.problem(path, f"must be a list of {what} tables ([[{_path_text(path)}]])")
            return []
        return value

    def _string_list(self, path: Path, value: object) -> list[str] | None:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(path, "must be a list of strings")
            return None
        return value

    def _string(self, path: Path, table: Mapping[str, Any], key: str) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem((*path, key), "must be a string")
            return None
        return value

    def _bool(self, path: Path, table: Mapping[str, Any], key: str) -> bool | Unset:
        if key not in table:
            return UNSET
        value = table[key]
        if not isinstance(value, bool):
            self.problem((*path, key), "must be true or false")
            return UNSET
        return value

    def _claim(self, seen: dict[str, Path], key: str, path: Path, what: str) -> bool:
        first = seen.get(key)
        if first is not None:
            self.problem(path, f"{what} {key!r} is listed twice (first at {_path_text(first)})")
            return False
        seen[key] = path
        return True

    def read(self, document: Mapping[str, Any]) -> _FileSpec:
        self._unknown_keys((), document, _TOP_KEYS)
        version = document.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            self.problem(("version",), f"unsupported format version {version!r}; use 1")
        spec = _FileSpec()
        if "accounts" in document:
            spec.accounts = []
            entries = self._table_list(("accounts",), document["accounts"], "account")
            for index, entry in enumerate(entries):
                account = self._account(("accounts", index), entry)
                if account is not None:
                    spec.accounts.append(account)
        if "operators" in document:
            spec.operators = []
            entries = self._table_list(("operators",), document["operators"], "operator")
            for index, entry in enumerate(entries):
                operator = self._user(("operators", index), entry, account=None)
                if operator is not None:
                    spec.operators.append(operator)
        return spec

    def _account(self, path: Path, entry: Mapping[str, Any]) -> _AccountSpec | None:
        self._unknown_keys(path, entry, _ACCOUNT_KEYS)
        raw_name = self._string(path, entry, "name")
        if raw_name is None:
            if "name" not in entry:
                self.problem(path, "an account needs a name")
            return None
        try:
            name = prov.normalise_account_name(raw_name)
        except prov.ProvisioningError as exc:
            self.failed((*path, "name"), exc)
            return None
        if not self._claim(self._accounts, name, (*path, "name"), "account"):
            return None
        spec = _AccountSpec(path=path, name=name, enabled=self._bool(path, entry, "enabled"))
        if "settings" in entry:
            spec.settings = self._settings((*path, "settings"), entry["settings"])
        if "senders" in entry:
            spec.senders = self._patterns(path, entry["senders"], "senders", name)
        if "networks" in entry:
            spec.networks = self._patterns(path, entry["networks"], "networks", name)
        if "numbers" in entry:
            spec.numbers = self._numbers_of(path, entry["numbers"])
        if "users" in entry:
            spec.users = []
            for index, item in enumerate(
                self._table_list((*path, "users"), entry["users"], "user")
            ):
                user = self._user((*path, "users", index), item, account=name)
                if user is not None:
                    spec.users.append(user)
        if "smpp" in entry:
            spec.smpp = []
            for index, item in enumerate(
                self._table_list((*path, "smpp"), entry["smpp"], "SMPP credential")
            ):
                credential = self._smpp((*path, "smpp", index), item, account=name)
                if credential is not None:
                    spec.smpp.append(credential)
        return spec

    def _settings(self, path: Path, value: object) -> dict[str, object]:
        if not isinstance(value, dict):
            self.problem(path, "must be a table ([accounts.settings])")
            return {}
        settings: dict[str, object] = {}
        for key, item in value.items():
            try:
                settings[key] = prov.normalise_setting(key, item)
            except prov.ProvisioningError as exc:
                if key not in prov.SETTING_NAMES:
                    self.problem((*path, key), exc.reason)
                else:
                    self.failed((*path, key), exc)
        return settings

    def _numbers_of(self, path: Path, value: object) -> list[tuple[str, Path]]:
        """Inbound numbers (replies to them go to the account): normalised, each in one
        account of the file only."""
        items = self._string_list((*path, "numbers"), value)
        result: list[tuple[str, Path]] = []
        for index, item in enumerate(items or ()):
            where = (*path, "numbers", index)
            try:
                number = normalise_inbound_number(item)
            except InboundNumberError as exc:
                self.problem(where, f"{item!r}: {exc.reason}")
                continue
            if self._claim(self._numbers, number, where, "number"):
                result.append((number, where))
        return result

    def _patterns(
        self, path: Path, value: object, key: str, account: str
    ) -> list[tuple[str, Path]]:
        items = self._string_list((*path, key), value)
        if items is None:
            return []
        result: list[tuple[str, Path]] = []
        seen: dict[str, Path] = {}
        for index, item in enumerate(items):
            where = (*path, key, index)
            try:
                if key == "senders":
                    normal = prov.normalise_sender_pattern(item)
                else:
                    normal = prov.normalise_cidr(item)
            except prov.ProvisioningError as exc:
                self.failed(where, exc)
                continue
            if key == "senders":
                first = self._senders.get(normal)
                if first is not None:
                    self.problem(
                        where, f"sender {normal!r} is listed twice (first at {_path_text(first)})"
                    )
                    continue
                self._senders[normal] = where
            elif not self._claim(seen, normal, where, "network"):
                continue
            result.append((normal, where))
        return result

    def _secret(
        self, path: Path, entry: Mapping[str, Any], *, smpp: bool, identity: str
    ) -> tuple[str | None, str | None]:
        password = self._string(path, entry, "password")
        password_hash = self._string(path, entry, "password_hash")
        if password is not None and password_hash is not None:
            self.problem((*path, "password"), "give password or password_hash, not both")
            return None, None
        if password is not None:
            if smpp:
                problems = passwords.check_smpp_password(password, system_id=identity)
            else:
                problems = passwords.check_password_strength(password, username=identity)
            if problems:
                self.problem((*path, "password"), "password " + "; ".join(problems))
                return None, None
        if password_hash is not None and not passwords.is_password_hash(password_hash):
            self.problem((*path, "password_hash"), "not an argon2id hash ($argon2id$v=19$...)")
            return None, None
        return password, password_hash

    def _user(
        self, path: Path, entry: Mapping[str, Any], *, account: str | None
    ) -> _UserSpec | None:
        self._unknown_keys(path, entry, _USER_KEYS if account is not None else _OPERATOR_KEYS)
        raw = self._string(path, entry, "username")
        if raw is None:
            if "username" not in entry:
                self.problem(path, "a user needs a username")
            return None
        try:
            username = prov.normalise_username(raw)
        except prov.ProvisioningError as exc:
            self.failed((*path, "username"), exc)
            return None
        if not self._claim(self._usernames, username, (*path, "username"), "username"):
            return None
        role = Role.OPERATOR
        if account is not None:
            raw_role = self._string(path, entry, "role")
            role = Role.ACCOUNT_USER
            if raw_role is not None:
                try:
                    role = prov.normalise_role(raw_role)
                except prov.ProvisioningError as exc:
                    self.failed((*path, "role"), exc)
        spec = _UserSpec(
            path=path,
            username=username,
            role=role,
            account=account,
            enabled=self._bool(path, entry, "enabled"),
        )
        if "email" in entry:
            email = self._string(path, entry, "email")
            try:
                spec.email = prov.normalise_email(email) if email else None
            except prov.ProvisioningError as exc:
                self.failed((*path, "email"), exc)
        spec.password, spec.password_hash = self._secret(path, entry, smpp=False, identity=username)
        return spec

    def _smpp(self, path: Path, entry: Mapping[str, Any], *, account: str) -> _SmppSpec | None:
        self._unknown_keys(path, entry, _SMPP_KEYS)
        raw = self._string(path, entry, "system_id")
        if raw is None:
            if "system_id" not in entry:
                self.problem(path, "an SMPP credential needs a system_id")
            return None
        try:
            system_id = prov.normalise_system_id(raw)
        except prov.ProvisioningError as exc:
            self.failed((*path, "system_id"), exc)
            return None
        if not self._claim(self._system_ids, system_id, (*path, "system_id"), "system_id"):
            return None
        spec = _SmppSpec(
            path=path,
            system_id=system_id,
            account=account,
            enabled=self._bool(path, entry, "enabled"),
        )
        try:
            if "system_type" in entry:
                spec.system_type = prov.normalise_system_type(
                    self._string(path, entry, "system_type")
                )
        except prov.ProvisioningError as exc:
            self.failed((*path, "system_type"), exc)
        try:
            if "max_binds" in entry:
                if not isinstance(entry["max_binds"], int):
                    raise prov.ProvisioningError(
                        "max_binds", entry["max_binds"], "must be a whole number"
                    )
                spec.max_binds = prov.normalise_max_binds(entry["max_binds"])
        except prov.ProvisioningError as exc:
            self.failed((*path, "max_binds"), exc)
        try:
            if "throughput" in entry:
                if isinstance(entry["throughput"], str):
                    raise prov.ProvisioningError(
                        "throughput", entry["throughput"], "must be a number"
                    )
                spec.throughput = prov.normalise_throughput(entry["throughput"])
        except prov.ProvisioningError as exc:
            self.failed((*path, "throughput"), exc)
        spec.password, spec.password_hash = self._secret(path, entry, smpp=True, identity=system_id)
        return spec


def _syntax_problem(exc: tomllib.TOMLDecodeError, text: str) -> FileProblem:
    """tomllib puts the position in its message: `(at line 3, column 9)` or
    `(at end of document)`."""
    match = re.search(r"at line (\d+)", str(exc))
    line: int | None = int(match.group(1)) if match else None
    if line is None and "end of document" in str(exc):
        line = max(1, len(text.splitlines()))
    return FileProblem(line=line, path="", message=f"TOML syntax: {exc}")


def parse(text: str) -> tuple[_FileSpec, SourceMap]:
    """Read and check a provisioning file without the store; raise ProvisionFileError."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProvisionFileError([_syntax_problem(exc, text)]) from None
    source = SourceMap(text)
    reader = _Reader()
    spec = reader.read(document)
    if reader.problems:
        raise ProvisionFileError(
            [
                FileProblem(line=source.line_of(path), path=_path_text(path), message=message)
                for path, message in reader.problems
            ]
        )
    return spec, source


def check(text: str) -> None:
    """Raise ProvisionFileError if the file is invalid on its own (no store needed)."""
    parse(text)


# --- planning against the store -------------------------------------------------------------


@dataclass(kw_only=True)
class _State:
    accounts: dict[str, Account]
    names: dict[int, str]
    users: dict[str, User]
    senders: dict[str, str]  # pattern -> account name
    networks: dict[str, set[str]]  # account name -> cidrs
    numbers: dict[str, str]  # inbound number -> account name
    smpp: dict[str, SmppCredential]


async def _load(directory: Directory) -> _State:
    accounts = {account.name: account for account in await directory.list_accounts()}
    names = {account.id: name for name, account in accounts.items()}
    networks: dict[str, set[str]] = {name: set() for name in accounts}
    for network in await directory.list_networks():
        networks[names[network.account_id]].add(network.cidr)
    return _State(
        accounts=accounts,
        names=names,
        users={user.username: user for user in await directory.list_users()},
        senders={s.pattern: names[s.account_id] for s in await directory.list_senders()},
        networks=networks,
        numbers={n.number: n.account for n in await directory.inbound_numbers().numbers()},
        smpp={c.system_id: c for c in await directory.list_smpp()},
    )


def _all_users(spec: _FileSpec) -> Iterator[_UserSpec]:
    for account in spec.accounts or ():
        yield from account.users or ()
    yield from spec.operators or ()


def _all_smpp(spec: _FileSpec) -> Iterator[_SmppSpec]:
    for account in spec.accounts or ():
        yield from account.smpp or ()


async def _user_changes(user: _UserSpec, current: User, names: Mapping[int, str]) -> list[str]:
    fields = []
    if user.role is not current.role:
        fields.append("role")
    current_account = names.get(current.account_id) if current.account_id is not None else None
    if user.account != current_account:
        fields.append("account")
    if not isinstance(user.email, Unset) and user.email != current.email:
        fields.append("email")
    if not isinstance(user.enabled, Unset) and user.enabled != current.enabled:
        fields.append("enabled")
    if user.password is not None:
        same = await asyncio.to_thread(
            passwords.verify_password, current.password_hash, user.password
        )
        if not same:
            fields.append("password")
    elif user.password_hash is not None and user.password_hash != current.password_hash:
        fields.append("password")
    return fields


async def _smpp_changes(
    spec: _SmppSpec, current: SmppCredential, names: Mapping[int, str]
) -> list[str]:
    fields = []
    if spec.account != names.get(current.account_id):
        fields.append("account")
    for name in ("system_type", "max_binds", "throughput", "enabled"):
        wanted = getattr(spec, name)
        if not isinstance(wanted, Unset) and wanted != getattr(current, name):
            fields.append(name)
    if spec.password is not None:
        same = await asyncio.to_thread(
            passwords.verify_password, current.password_hash, spec.password
        )
        if not same:
            fields.append("password")
    elif spec.password_hash is not None and spec.password_hash != current.password_hash:
        fields.append("password")
    return fields


def _settings_changes(wanted: Mapping[str, object], current: Settings) -> list[str]:
    merged = prov.build_settings(wanted, current).to_dict()
    before = current.to_dict()
    return [f"settings.{key}" for key in before if merged[key] != before[key]]


@dataclass(kw_only=True)
class _Plan:
    removals: list[Change] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)


async def _plan_checks(
    directory: Directory, spec: _FileSpec, state: _State, *, prune: bool
) -> _Plan:
    """Problems only visible against the store, and what prune removes."""
    plan = _Plan()
    for user in _all_users(spec):
        if user.username not in state.users and user.password is None and not user.password_hash:
            plan.problems.append((user.path, "a new user needs a password or password_hash"))
    for credential in _all_smpp(spec):
        if (
            credential.system_id not in state.smpp
            and credential.password is None
            and not credential.password_hash
        ):
            plan.problems.append(
                (credential.path, "a new SMPP credential needs a password or password_hash")
            )
    if not prune:
        return plan

    wanted_senders = {
        pattern for account in spec.accounts or () for pattern, _ in account.senders or ()
    }
    wanted_numbers = {
        number for account in spec.accounts or () for number, _ in account.numbers or ()
    }
    wanted_users = {user.username for user in _all_users(spec)}
    wanted_smpp = {credential.system_id for credential in _all_smpp(spec)}
    declared = {account.name: account for account in spec.accounts or ()}

    if spec.accounts is not None:
        for name in sorted(state.accounts):
            if name in declared:
                continue
            messages = await directory.message_count(name)
            if messages:
                plan.problems.append(
                    (
                        ("accounts",),
                        f"account {name!r} is not in the file but has {messages} message(s); "
                        "prune cannot delete it (add it to the file, disabled)",
                    )
                )
            plan.removals.append(Change(kind="account", name=name, action=ChangeAction.REMOVED))
    removed_accounts = {c.name for c in plan.removals}
    for account in spec.accounts or ():
        if account.name not in state.accounts:
            continue
        if account.senders is not None:
            for pattern, owner in sorted(state.senders.items()):
                if owner == account.name and pattern not in wanted_senders:
                    plan.removals.append(
                        Change(
                            kind="sender",
                            name=pattern,
                            account=owner,
                            action=ChangeAction.REMOVED,
                        )
                    )
        if account.networks is not None:
            listed = {cidr for cidr, _ in account.networks}
            for cidr in sorted(state.networks.get(account.name, set()) - listed):
                plan.removals.append(
                    Change(
                        kind="network", name=cidr, account=account.name, action=ChangeAction.REMOVED
                    )
                )
        if account.numbers is not None:
            for number, owner in sorted(state.numbers.items()):
                if owner == account.name and number not in wanted_numbers:
                    plan.removals.append(
                        Change(
                            kind="number",
                            name=number,
                            account=owner,
                            action=ChangeAction.REMOVED,
                        )
                    )
        account_id = state.accounts[account.name].id
        if account.users is not None:
            for username, stored_user in sorted(state.users.items()):
                if stored_user.account_id == account_id and username not in wanted_users:
                    plan.removals.append(
                        Change(
                            kind="user",
                            name=username,
                            account=account.name,
                            action=ChangeAction.REMOVED,
                        )
                    )
        if account.smpp is not None:
            for system_id, stored in sorted(state.smpp.items()):
                if stored.account_id == account_id and system_id not in wanted_smpp:
                    plan.removals.append(
                        Change(
                            kind="smpp",
                            name=system_id,
                            account=account.name,
                            action=ChangeAction.REMOVED,
                        )
                    )
    if spec.operators is not None:
        for username, stored_user in sorted(state.users.items()):
            if stored_user.account_id is None and username not in wanted_users:
                plan.removals.append(
                    Change(kind="operator", name=username, action=ChangeAction.REMOVED)
                )
    # objects of a pruned account go with it; report only the account
    plan.removals = [
        change
        for change in plan.removals
        if change.kind == "account" or change.account not in removed_accounts
    ]
    return plan


async def _remove(directory: Directory, change: Change, actor: str) -> None:
    if change.kind == "account":
        await directory.delete_account(change.name, actor=actor)
    elif change.kind == "sender":
        assert change.account is not None
        await directory.remove_sender(change.account, change.name, actor=actor)
    elif change.kind == "network":
        assert change.account is not None
        await directory.remove_network(change.account, change.name, actor=actor)
    elif change.kind in ("user", "operator"):
        await directory.delete_user(change.name, actor=actor)
    elif change.kind == "smpp":
        await directory.remove_smpp(change.name, actor=actor)
    elif change.kind == "number":
        await directory.inbound_numbers().remove(change.name, actor=actor)


async def _apply_user(directory: Directory, user: _UserSpec, state: _State, actor: str) -> Change:
    kind = "operator" if user.account is None else "user"
    current = state.users.get(user.username)
    if current is None:
        await directory.add_user(
            user.username,
            actor=actor,
            account=user.account,
            role=user.role,
            password=user.password,
            password_hash=user.password_hash,
            email=None if isinstance(user.email, Unset) else user.email,
            enabled=True if isinstance(user.enabled, Unset) else user.enabled,
        )
        return Change(
            kind=kind, name=user.username, account=user.account, action=ChangeAction.CREATED
        )
    fields = await _user_changes(user, current, state.names)
    if {"role", "account", "email"} & set(fields):
        await directory.update_user(
            user.username,
            actor=actor,
            role=user.role,
            account=user.account,
            email=user.email,
        )
    if "enabled" in fields:
        assert isinstance(user.enabled, bool)
        await directory.set_user_enabled(user.username, user.enabled, actor=actor)
    if "password" in fields:
        await directory.set_password(
            user.username, actor=actor, password=user.password, password_hash=user.password_hash
        )
    return Change(
        kind=kind,
        name=user.username,
        account=user.account,
        action=ChangeAction.UPDATED if fields else ChangeAction.UNCHANGED,
        fields=tuple(fields),
    )


async def _apply_smpp(directory: Directory, spec: _SmppSpec, state: _State, actor: str) -> Change:
    current = state.smpp.get(spec.system_id)
    if current is None:
        await directory.add_smpp(
            spec.account,
            spec.system_id,
            actor=actor,
            password=spec.password,
            password_hash=spec.password_hash,
            system_type=None if isinstance(spec.system_type, Unset) else spec.system_type,
            max_binds=4 if isinstance(spec.max_binds, Unset) else spec.max_binds,
            throughput=100.0 if isinstance(spec.throughput, Unset) else spec.throughput,
            enabled=True if isinstance(spec.enabled, Unset) else spec.enabled,
        )
        return Change(
            kind="smpp", name=spec.system_id, account=spec.account, action=ChangeAction.CREATED
        )
    fields = await _smpp_changes(spec, current, state.names)
    if fields:
        await directory.update_smpp(
            spec.system_id,
            actor=actor,
            account=spec.account if "account" in fields else UNSET,
            password=spec.password if "password" in fields else None,
            password_hash=spec.password_hash if "password" in fields else None,
            system_type=spec.system_type,
            max_binds=spec.max_binds,
            throughput=spec.throughput,
            enabled=spec.enabled,
        )
    return Change(
        kind="smpp",
        name=spec.system_id,
        account=spec.account,
        action=ChangeAction.UPDATED if fields else ChangeAction.UNCHANGED,
        fields=tuple(fields),
    )


async def _apply_account(
    directory: Directory, account: _AccountSpec, state: _State, actor: str
) -> list[Change]:
    changes: list[Change] = []
    current = state.accounts.get(account.name)
    if current is None:
        await directory.create_account(
            account.name,
            actor=actor,
            settings=account.settings or {},
            enabled=True if isinstance(account.enabled, Unset) else account.enabled,
        )
        changes.append(Change(kind="account", name=account.name, action=ChangeAction.CREATED))
    else:
        fields = []
        if not isinstance(account.enabled, Unset) and account.enabled != current.enabled:
            await directory.set_account_enabled(account.name, account.enabled, actor=actor)
            fields.append("enabled")
        if account.settings is not None:
            setting_fields = _settings_changes(account.settings, current.settings)
            if setting_fields:
                await directory.update_settings(account.name, account.settings, actor=actor)
                fields.extend(setting_fields)
        changes.append(
            Change(
                kind="account",
                name=account.name,
                action=ChangeAction.UPDATED if fields else ChangeAction.UNCHANGED,
                fields=tuple(fields),
            )
        )
    for pattern, _path in account.senders or ():
        owner = state.senders.get(pattern)
        moved: tuple[str, ...] = ()
        if owner is None:
            await directory.add_sender(account.name, pattern, actor=actor)
            action = ChangeAction.CREATED
        elif owner != account.name:
            await directory.move_sender(pattern, account.name, actor=actor)
            action, moved = ChangeAction.UPDATED, ("account",)
        else:
            action = ChangeAction.UNCHANGED
        changes.append(
            Change(kind="sender", name=pattern, account=account.name, action=action, fields=moved)
        )
    existing_networks = state.networks.get(account.name, set())
    for cidr, _path in account.networks or ():
        if cidr in existing_networks:
            action = ChangeAction.UNCHANGED
        else:
            await directory.add_network(account.name, cidr, actor=actor)
            action = ChangeAction.CREATED
        changes.append(Change(kind="network", name=cidr, account=account.name, action=action))
    if account.numbers:
        changes.extend(await _apply_numbers(directory, account, state, actor))
    for user in account.users or ():
        changes.append(await _apply_user(directory, user, state, actor))
    for credential in account.smpp or ():
        changes.append(await _apply_smpp(directory, credential, state, actor))
    return changes


async def _apply_numbers(
    directory: Directory, account: _AccountSpec, state: _State, actor: str
) -> list[Change]:
    numbers = directory.inbound_numbers()
    owner_account = await directory.account_by_name(account.name)  # created above if new
    if owner_account is None:
        raise prov.ProvisioningError("account", account.name, "no such account")
    account_id = owner_account.id
    now = datetime.now(UTC)
    changes = []
    for number, _path in account.numbers or ():
        owner = state.numbers.get(number)
        moved: tuple[str, ...] = ()
        if owner is None:
            await numbers.add(number, account_id, now, actor=actor)
            action = ChangeAction.CREATED
        elif owner != account.name:
            await numbers.move(number, account_id, now, actor=actor)
            action, moved = ChangeAction.UPDATED, ("account",)
        else:
            action = ChangeAction.UNCHANGED
        changes.append(
            Change(kind="number", name=number, account=account.name, action=action, fields=moved)
        )
    return changes


async def apply(
    directory: Directory,
    text: str,
    actor: str,
    *,
    prune: bool = False,
    dry_run: bool = False,
) -> ChangeReport:
    """Make the store match the provisioning file `text` (see the module docstring).

    Raises ProvisionFileError (nothing changed) when the file or any entry is invalid or
    cannot be applied; StoreUnavailable when the store cannot be reached. With `dry_run` the
    changes are made and reported inside the transaction, then rolled back.
    """
    spec, source = parse(text)

    def refused(problems: Sequence[tuple[Path, str]]) -> ProvisionFileError:
        return ProvisionFileError(
            [
                FileProblem(line=source.line_of(path), path=_path_text(path), message=message)
                for path, message in problems
            ]
        )

    async with directory.transaction(rollback=dry_run) as tx:
        state = await _load(tx)
        plan = await _plan_checks(tx, spec, state, prune=prune)
        if plan.problems:
            raise refused(plan.problems)
        changes: list[Change] = []
        current_path: Path = ()
        try:
            # objects first, whole accounts last: what the file moves out of an account that
            # prune deletes must be moved before the account (and what is left) goes
            for removal in plan.removals:
                if removal.kind != "account":
                    await _remove(tx, removal, actor)
                    changes.append(removal)
            for account in spec.accounts or ():
                current_path = account.path
                changes.extend(await _apply_account(tx, account, state, actor))
            for operator in spec.operators or ():
                current_path = operator.path
                changes.append(await _apply_user(tx, operator, state, actor))
            current_path = ("accounts",)
            for removal in plan.removals:
                if removal.kind == "account":
                    await _remove(tx, removal, actor)
                    changes.append(removal)
        except prov.ProvisioningError as exc:
            raise refused([(current_path, str(exc))]) from exc
        report = ChangeReport(changes=tuple(changes), dry_run=dry_run)
        if report.changed:
            await tx.record(
                actor=actor,
                action="provision.apply",
                subject="provisioning-file",
                detail={
                    "prune": prune,
                    "counts": {a.value: report.count(a) for a in ChangeAction},
                },
            )
    return report


# --- export ---------------------------------------------------------------------------------

_EXPORT_HEADER = """\
# teleway provisioning, as exported by `teleway admin export`.
# Secrets are argon2id hashes (password_hash); apply with `teleway admin apply FILE`.
# See docs/provisioning.md for the format.

"""


def _user_entry(user: User, *, with_role: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"username": user.username}
    if with_role:
        entry["role"] = user.role.value
    if user.email:
        entry["email"] = user.email
    entry["enabled"] = user.enabled
    entry["password_hash"] = user.password_hash
    return entry


def _smpp_entry(credential: SmppCredential) -> dict[str, Any]:
    entry: dict[str, Any] = {"system_id": credential.system_id}
    if credential.system_type:
        entry["system_type"] = credential.system_type
    entry["max_binds"] = credential.max_binds
    entry["throughput"] = credential.throughput
    entry["enabled"] = credential.enabled
    entry["password_hash"] = credential.password_hash
    return entry


async def export(directory: Directory) -> str:
    """The current provisioning as a provisioning file (hashes, never plaintext)."""
    async with directory.transaction(rollback=True) as tx:
        accounts = await tx.list_accounts()
        users = await tx.list_users()
        senders = await tx.list_senders()
        networks = await tx.list_networks()
        numbers = await tx.inbound_numbers().numbers()
        credentials = await tx.list_smpp()
    document: dict[str, Any] = {"version": FORMAT_VERSION}
    entries = []
    for account in accounts:
        entry: dict[str, Any] = {
            "name": account.name,
            "enabled": account.enabled,
            "senders": [s.pattern for s in senders if s.account_id == account.id],
            "networks": [n.cidr for n in networks if n.account_id == account.id],
            "numbers": [n.number for n in numbers if n.account_id == account.id],
        }
        overrides = prov.settings_overrides(account.settings)
        if overrides:
            entry["settings"] = overrides
        entry["users"] = [
            _user_entry(user, with_role=True) for user in users if user.account_id == account.id
        ]
        entry["smpp"] = [_smpp_entry(c) for c in credentials if c.account_id == account.id]
        entries.append(entry)
    document["operators"] = [
        _user_entry(user, with_role=False) for user in users if user.account_id is None
    ]
    document["accounts"] = entries
    return _EXPORT_HEADER + tomli_w.dumps(document)
