"""A reply whose parts arrive far apart survives a SIGKILL of the gateway: the parts it had
already answered OK were committed first, the restarted gateway reloads them, and the part
that comes later completes the message (real processes: the SMSC simulator, `teleway serve`,
`teleway simulate mo --parts`)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from gwharness import TELEWAY, GatewayFiles, free_port
from test_runtime_sms_e2e import PASSWORD, SYSTEM_ID, outbox, prepare, simulator, upstream_block

pytestmark = pytest.mark.slow

PHONE = "+4915112345678"
OURS = "447400123456"
TEXT = "A long reply from a phone whose parts the network delivers far apart. " * 5  # 3 parts


def held_rows(gw: GatewayFiles) -> int:
    path = gw.database_url.split("///", 1)[1]
    with sqlite3.connect(path, timeout=10) as db:
        return int(db.execute("select count(*) from held_mo_parts").fetchone()[0])


def inject(port: int, parts: str) -> None:
    subprocess.run(
        [*TELEWAY, "simulate", "mo", "--port", str(port), "--system-id", SYSTEM_ID,
         "--password", PASSWORD, "--from", PHONE, "--to", OURS, "--reference", "42",
         "--parts", parts, TEXT],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


def test_parts_answered_before_a_kill_complete_the_reply_after_the_restart(
    tmp_path: Path,
) -> None:
    port = free_port()
    gw = prepare(tmp_path, upstream_block("carrier", port))
    gw.cli("admin", "number", "add", "demo", "+" + OURS)
    with simulator(tmp_path, port):
        first = gw.serve()
        try:
            gw.wait_http(first)
            inject(port, "1,3")
            # answered after the hold (5 s), and committed before that answer
            deadline = time.monotonic() + 30
            while held_rows(gw) < 2:
                assert time.monotonic() < deadline, gw.log()[-3000:]
                time.sleep(0.2)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        assert outbox(gw) == []
        second = gw.serve()
        try:
            gw.wait_http(second)
            assert "2 kept part(s) of incomplete replies restored" in gw.log()
            inject(port, "2")
            deadline = time.monotonic() + 30
            while not outbox(gw):
                assert time.monotonic() < deadline, gw.log()[-3000:]
                time.sleep(0.2)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=40)
    [reply] = outbox(gw)
    assert reply["payload"]["text"] == TEXT
    assert reply["payload"]["parts"] == 3
    assert reply["payload"]["from"] == PHONE
    assert held_rows(gw) == 0
