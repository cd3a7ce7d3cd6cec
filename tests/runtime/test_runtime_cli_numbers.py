"""`teleway admin number add/list/remove`: exit codes and messages."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from teleway.runtime.cli_admin import admin

pytestmark = pytest.mark.usefixtures("cheap_hashing")


def run(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(admin, list(args), obj={"database_url": url})
    return result.exit_code, result.output


def test_add_list_remove_and_errors(sqlite_url: str) -> None:
    assert run(sqlite_url, "account", "add", "acme")[0] == 0
    code, out = run(sqlite_url, "number", "add", "acme", "+447400123456")
    assert code == 0 and "+447400123456" in out
    assert run(sqlite_url, "number", "add", "acme", "54321")[0] == 0
    code, out = run(sqlite_url, "number", "add", "acme", "0044 7400 123456")
    assert code == 2 and "already belongs" in out
    code, out = run(sqlite_url, "number", "add", "acme", "ACME")
    assert code == 2 and "digits only" in out
    code, out = run(sqlite_url, "number", "add", "nobody", "+4915112345678")
    assert code == 2 and "no such account" in out
    code, out = run(sqlite_url, "number", "list", "--json")
    assert [(n["number"], n["account"]) for n in json.loads(out)] == [
        ("+447400123456", "acme"),
        ("54321", "acme"),
    ]
    code, out = run(sqlite_url, "number", "list")
    assert code == 0 and "NUMBER" in out and "54321" in out
    assert run(sqlite_url, "number", "remove", "54321")[0] == 0
    code, out = run(sqlite_url, "number", "remove", "54321")
    assert code == 2 and "no inbound number" in out
    code, out = run(sqlite_url, "audit", "--json")
    assert {"number.add", "number.remove"} <= {e["action"] for e in json.loads(out)}
