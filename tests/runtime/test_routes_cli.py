"""`teleway routes check`: which upstream a number would use and why, from the real config."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from teleway.runtime.cli import main

CONFIG = """
[simulator]
enabled = false

[[upstreams]]
name = "vodafone"
host = "127.0.0.1"
system_id = "x"

[[upstreams]]
name = "o2"
host = "127.0.0.1"
system_id = "x"

[[upstreams]]
name = "backup"
host = "127.0.0.1"
system_id = "x"

[[routes]]
name = "uk"
countries = ["GB"]
upstreams = ["vodafone:3, o2:1", "backup"]

[[routes]]
name = "alpha-senders"
sender = "alphanumeric"
upstreams = ["o2"]
"""


def run(tmp_path: Path, *args: str, config: str = CONFIG) -> tuple[int, str]:
    path = tmp_path / "teleway.toml"
    path.write_text(config)
    result = CliRunner().invoke(main, ["--config", str(path), "routes", "check", *args])
    return result.exit_code, result.output


def test_uk_number_uses_the_weighted_tier_and_lists_the_failover(tmp_path: Path) -> None:
    code, out = run(tmp_path, "+447400123456")
    assert code == 0, out
    assert out.splitlines()[0] == "+447400123456 -> vodafone"
    assert "route: uk" in out and "failover: o2, backup" in out
    assert "load shared (o2 1/4, vodafone 3/4), drew vodafone" in out


def test_draw_and_down_upstreams_change_the_choice(tmp_path: Path) -> None:
    code, out = run(tmp_path, "+447400123456", "--seed-draw", "0.9", "--json")
    assert code == 0 and json.loads(out)["upstream"] == "o2"
    code, out = run(tmp_path, "+447400123456", "--down", "vodafone", "--down", "o2", "--json")
    data = json.loads(out)
    assert (data["route"], data["upstream"], data["failover"]) == ("uk", "backup", [])


def test_sender_type_route_and_the_default_route(tmp_path: Path) -> None:
    _, out = run(tmp_path, "+4915112345678", "--sender", "ACME", "--json")
    assert json.loads(out)["route"] == "alpha-senders"
    _, out = run(tmp_path, "+4915112345678", "--sender", "+4915100000000", "--json")
    data = json.loads(out)
    assert data["route"] is None and data["upstream"] == "vodafone"
    assert data["failover"] == ["o2", "backup"]


def test_nothing_available_exits_1(tmp_path: Path) -> None:
    down = ["--down", "vodafone", "--down", "o2", "--down", "backup"]
    code, out = run(tmp_path, "+447400123456", *down)
    assert code == 1
    assert "no upstream available" in out


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    code, out = run(tmp_path, "not-a-number")
    assert code == 2 and "invalid number" in out
    code, out = run(tmp_path, "+447400123456", "--down", "nope")
    assert code == 2 and "no upstream named nope" in out
    bad = CONFIG.replace('upstreams = ["o2"]', 'upstreams = ["o2:zero"]')
    code, out = run(tmp_path, "+447400123456", config=bad)
    assert code == 2 and "routes[1].upstreams" in out and "weight" in out


def test_help_describes_the_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["routes", "check", "--help"])
    assert result.exit_code == 0 and "which upstream" in result.output
