"""SIGKILL with handed-off deliveries in flight: `teleway serve` with its SMPP listener, an ESME
(python-smpplib) whose submits are acknowledged, an upstream simulator process that answers
slowly. The gateway is killed while the handed-off deliveries wait for their submit_sm_resp;
after a restart their leases expire and they are submitted again: every acknowledged message
is delivered (at least once), none lost."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import smpplib.client
from gwharness import free_port, make_gateway
from test_runtime_sms_e2e import serving, simulator, upstream_block, wait_final

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

COUNT = 12
PROVISIONING = """
[[accounts]]
name = "demo"
networks = ["127.0.0.0/8"]

[[accounts.smpp]]
system_id = "esme1"
password = "secret1"
"""


def submit_over_smpp(port: int) -> list[str]:
    c = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    try:
        c.bind_transmitter(system_id="esme1", password="secret1")
        ids = []
        for n in range(COUNT):
            c.send_message(
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr="447911123456",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr=f"4915112345{n:03d}",
                short_message=f"crash {n}".encode(),
            )
            resp = c.read_pdu()
            assert resp.status == 0, hex(resp.status)
            ids.append(resp.message_id.decode())
        return ids
    finally:
        c.disconnect()


def events(db_path: str, message_id: str) -> list[tuple[str | None, str, float, str]]:
    with sqlite3.connect(db_path, timeout=10) as db:
        return db.execute(
            "select e.from_state, e.to_state, e.at, e.reason from delivery_events e "
            "join deliveries d on d.id = e.delivery_id where d.message_id = ? order by e.id",
            (message_id,),
        ).fetchall()


def test_handed_off_deliveries_of_a_killed_gateway_are_submitted_after_the_restart(
    tmp_path: Path,
) -> None:
    up_port, smpp_port = free_port(), free_port()
    gw = make_gateway(
        tmp_path,
        simulator=False,
        extra=upstream_block("carrier", up_port, response_timeout=10.0),
    )
    text = gw.config.read_text()
    assert "[listeners.smpp]\nenabled = false" in text
    gw.config.write_text(
        text.replace("[listeners.smpp]\nenabled = false", f"[listeners.smpp]\nport = {smpp_port}")
    )
    gw.cli("db", "upgrade")
    (tmp_path / "prov.toml").write_text(PROVISIONING)
    gw.cli("admin", "apply", str(tmp_path / "prov.toml"))
    db_path = gw.database_url.split("///", 1)[1]

    # an upstream that never answers: the gateway dies waiting for the submit_sm_resp
    with simulator(tmp_path, up_port, "--no-response-ratio", "1"), serving(gw) as server:
        acknowledged = submit_over_smpp(smpp_port)
        time.sleep(1)  # the submits leave at once; their answers never come
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    for message_id in acknowledged:
        history = events(db_path, message_id)
        assert [(f, t) for f, t, _, _ in history] == [
            (None, "accepted"),
            ("accepted", "queued"),
            ("queued", "in_flight"),
        ]
        assert history[2][2] == history[0][2]  # leased in accept()'s transaction
    # restart, the upstream answering now: the leases (lease_seconds = 5) expire and the new
    # process's dispatchers take them again
    with simulator(tmp_path, up_port) as journal, serving(gw):
        final = wait_final(gw, acknowledged, timeout=60)
    assert {final[m][0] for m in acknowledged} == {"delivered"}
    for message_id in acknowledged:
        reasons = [r for _, t, _, r in events(db_path, message_id) if t == "in_flight"]
        assert any("expired; leased to" in r and r.endswith("attempt 2") for r in reasons)
    on_wire = [json.loads(line)["destination_addr"] for line in journal.read_text().splitlines()]
    for n in range(COUNT):
        assert on_wire.count(f"4915112345{n:03d}") >= 1
