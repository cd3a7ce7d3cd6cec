"""The whole gateway as a user runs it: db upgrade, admin apply, serve, send, status, SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gwharness import make_gateway

from db_fixtures import fresh_postgres_database

PROVISIONING = """
[[accounts]]
name = "demo"
senders = ["*@example.com"]
networks = ["127.0.0.0/8"]

[accounts.settings]
sender_id = "TELEWAY"
"""


def wait_for_state(gw, message_id: str, want: str, timeout: float = 30) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        report = json.loads(gw.cli("status", message_id, "--json").stdout)
        states = {d["state"] for d in report["deliveries"]}
        if states == {want}:
            return report  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"still {states}, wanted {want}\n{gw.log()}")
        time.sleep(0.2)


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    with fresh_postgres_database("teleway_e2e") as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize(
    ("event_loop", "database"),
    [
        ("", "sqlite"),
        ("asyncio", "sqlite"),
        pytest.param("", "postgresql", marks=pytest.mark.postgres),
    ],
    ids=["uvloop-sqlite", "asyncio-sqlite", "uvloop-postgresql"],
)
def test_message_travels_to_the_simulator_and_back(
    tmp_path: Path, event_loop: str, database: str, request: pytest.FixtureRequest
) -> None:
    """The default event loop (uvloop) on both stores, and asyncio's own loop."""
    url = request.getfixturevalue("fresh_postgres") if database == "postgresql" else None
    gw = make_gateway(tmp_path, event_loop=event_loop, database_url=url)
    assert "up to date" in gw.cli("db", "upgrade").stdout
    (tmp_path / "prov.toml").write_text(PROVISIONING)
    gw.cli("admin", "apply", str(tmp_path / "prov.toml"))
    server = gw.serve()
    try:
        gw.wait_http(server)
        sent = gw.cli(
            "send",
            "--account",
            "demo",
            "--to",
            "+17816170000",
            "--to",
            "1-781-6170001",
            "--report",
            "--subject",
            "Hi",
            "Hello from teleway",
        )
        message_id = sent.stdout.split()[2]
        report = wait_for_state(gw, message_id, "delivered")
        delivery = report["deliveries"][0]
        transitions = [(e["from"], e["to"]) for e in delivery["events"]]
        assert transitions == [
            (None, "accepted"),
            ("accepted", "queued"),
            ("queued", "in_flight"),  # leased by a dispatcher
            ("in_flight", "in_flight"),  # submitted to the SMSC, waiting for its receipt
            ("in_flight", "delivered"),
        ]
        assert "DELIVRD" in delivery["events"][-1]["reason"]
        assert delivery["upstream_ids"] and delivery["upstream_ids"][0].startswith("simulator:")
        metrics = gw.http_text("/metrics")
        assert (
            'teleway_deliveries_final_total{channel="sms",reason="DELIVRD",state="delivered"} 2.0'
            in metrics
        )
        assert 'teleway_upstream_bound{upstream="simulator"} 1.0' in metrics
        # the store writer's series: on SQLite every queue write of the dispatchers is one of
        # its commits (on PostgreSQL they run on the pool); the commit process is SQLite's only
        commits = re.search(r"^teleway_store_commits_total (\S+)$", metrics, re.MULTILINE)
        assert commits, metrics
        assert (float(commits[1]) > 0) == (database == "sqlite")
        assert ("teleway_store_commit_process_up" in metrics) == (database == "sqlite")
        status, health = gw.http_json("/healthz")
        assert status == 200 and health["upstreams"] == {"simulator": True}
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=40)
    log = gw.log()
    assert code == 0, log
    assert "listening: HTTP" in log and "stopped" in log
    assert f"event_loop={event_loop or 'uvloop'}" in log, log
    assert f"database={database}" in log, log


@pytest.mark.slow
def test_unknown_account_and_bad_number_are_clear_errors(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    gw.cli("db", "upgrade")
    (tmp_path / "prov.toml").write_text(PROVISIONING)
    gw.cli("admin", "apply", str(tmp_path / "prov.toml"))
    missing = gw.cli("send", "--account", "nobody", "--to", "+17816170000", "x", check=False)
    assert missing.returncode == 2 and "no account named 'nobody'" in missing.stderr
    bad = gw.cli("send", "--account", "demo", "--to", "12345", "x", check=False)
    assert bad.returncode == 2 and "recipients[0]" in bad.stderr and "Traceback" not in bad.stderr


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    result = gw.cli("serve", check=False, timeout=30)
    assert result.returncode == 1
    assert "teleway db upgrade" in result.stderr and "Traceback" not in result.stderr


def test_invalid_config_is_reported_before_anything_starts(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    gw.config.write_text(gw.config.read_text().replace(f"port = {gw.http_port}", "port = 99999"))
    result = gw.cli("serve", check=False)
    assert result.returncode == 2
    assert "listeners.http.port" in result.stderr and "99999" in result.stderr


def test_unreachable_database_is_one_clear_line_without_the_password(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, database_url="postgresql://postgres:sekrit@127.0.0.1:1/nowhere")
    for command in (("db", "upgrade"), ("serve",)):
        result = gw.cli(*command, check=False)
        assert result.returncode == 1
        assert "cannot" in result.stderr and "127.0.0.1:1" in result.stderr
        assert "sekrit" not in result.stderr and "Traceback" not in result.stderr


def test_a_taken_port_is_reported_and_nothing_is_left_running(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    gw.cli("db", "upgrade")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", gw.simulator_port))
        taken.listen()
        result = gw.cli("serve", check=False)
    assert result.returncode == 1
    assert f"127.0.0.1:{gw.simulator_port}" in result.stderr
    assert "address already in use" in result.stderr and "Traceback" not in result.stderr
