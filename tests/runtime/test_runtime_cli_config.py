"""`teleway config check|show` through click's CliRunner."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from teleway.runtime.cli_config import config

GOOD = """
[listeners.smtp]
port = 2600

[database]
url = "postgresql://tw:db-secret@db.example:5432/teleway"

[[upstreams]]
name = "acme"
host = "smsc.example.net"
system_id = "acme"
password = "up-pw"
"""

BAD = """
[listeners.smtp]
port = 99999

[logging]
level = "loud"
"""


@pytest.fixture(autouse=True)
def _clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty working directory and no TELEWAY_* variables from the outside world."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in list(os.environ):
        if name.startswith("TELEWAY_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "t.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_check_defaults() -> None:
    result = CliRunner().invoke(config, ["check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "configuration OK"
    assert "source:    built-in defaults" in lines
    assert any(line.split()[:2] == ["smtp", "127.0.0.1:2525"] for line in lines)
    assert any(line.split()[:2] == ["http", "127.0.0.1:8080"] for line in lines)
    upstream_lines = lines[lines.index("upstreams:") + 1 :]
    assert [line.split()[0] for line in upstream_lines] == ["simulator"]


def test_check_file_and_masking(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = CliRunner().invoke(config, ["check", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert f"source:    {path}" in result.output
    assert "127.0.0.1:2600" in result.output
    assert "database:  postgresql+asyncpg://tw:***@db.example:5432/teleway" in result.output
    assert "acme" in result.output and "smsc.example.net:2775" in result.output
    assert "db-secret" not in result.output and "up-pw" not in result.output


def test_check_invalid_exits_2_and_lists_every_problem(tmp_path: Path) -> None:
    result = CliRunner().invoke(config, ["check", "--config", str(write(tmp_path, BAD))])
    assert result.exit_code == 2
    assert "configuration OK" not in result.output
    assert "configuration invalid: 2 problems" in result.stderr
    assert "listeners.smtp.port = 99999: must be a port number 1-65535" in result.stderr
    assert 'logging.level = "loud": must be one of' in result.stderr


def test_check_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    result = CliRunner().invoke(config, ["check", "--config", str(missing)])
    assert result.exit_code == 2
    assert f'config file = "{missing}": no such file' in result.stderr


def test_check_uses_path_from_main_group(tmp_path: Path) -> None:
    good, bad = write(tmp_path, GOOD, "good.toml"), write(tmp_path, BAD, "bad.toml")
    result = CliRunner().invoke(config, ["check"], obj={"config_path": str(bad)})
    assert result.exit_code == 2
    # --config on the subcommand wins over the group's
    result = CliRunner().invoke(
        config, ["check", "--config", str(good)], obj={"config_path": str(bad)}
    )
    assert result.exit_code == 0, result.output
    # None from the group: defaults
    result = CliRunner().invoke(config, ["check"], obj={"config_path": None})
    assert result.exit_code == 0


def test_check_as_a_subcommand_of_a_main_group(tmp_path: Path) -> None:
    @click.group()
    @click.option("--config", "config_path", default=None)
    @click.pass_context
    def main(ctx: click.Context, config_path: str | None) -> None:
        ctx.obj = {"config_path": config_path}

    main.add_command(config)
    result = CliRunner().invoke(main, ["--config", str(write(tmp_path, BAD)), "config", "check"])
    assert result.exit_code == 2
    result = CliRunner().invoke(main, ["--config", str(write(tmp_path, GOOD)), "config", "check"])
    assert result.exit_code == 0


def test_check_env_override_error() -> None:
    result = CliRunner().invoke(config, ["check"], env={"TELEWAY_QUEUE__WORKRS": "3"})
    assert result.exit_code == 2
    assert "TELEWAY_QUEUE__WORKRS" in result.stderr
    assert "did you mean TELEWAY_QUEUE__WORKERS?" in result.stderr


def test_check_without_upstreams_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "[simulator]\nenabled = false\n")
    result = CliRunner().invoke(config, ["check", "--config", str(path)])
    assert result.exit_code == 0
    assert "upstreams: none (no SMS can be sent)" in result.output


def test_show_prints_effective_toml_with_secrets_masked(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = CliRunner().invoke(
        config, ["show", "--config", str(path)], env={"TELEWAY_QUEUE__WORKERS": "9"}
    )
    assert result.exit_code == 0, result.output
    shown = tomllib.loads(result.stdout)
    assert shown["listeners"]["smtp"]["port"] == 2600  # file
    assert shown["queue"]["workers"] == 9  # environment
    assert shown["listeners"]["http"]["port"] == 8080  # default
    assert shown["database"]["url"] == "postgresql+asyncpg://tw:***@db.example:5432/teleway"
    assert shown["upstreams"][0]["password"] == "***"
    assert shown["simulator"]["password"] == "***"
    assert "db-secret" not in result.output and "up-pw" not in result.output


def test_show_defaults_include_the_simulator_upstream() -> None:
    result = CliRunner().invoke(config, ["show"])
    assert result.exit_code == 0
    shown = tomllib.loads(result.stdout)
    assert [u["name"] for u in shown["upstreams"]] == ["simulator"]
    assert shown["upstreams"][0]["port"] == shown["simulator"]["port"] == 2776
    assert 'simulat"' not in result.output


def test_show_invalid_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(config, ["show", "--config", str(write(tmp_path, BAD))])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "listeners.smtp.port = 99999" in result.stderr
