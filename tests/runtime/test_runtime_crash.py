"""SIGKILL under load: nothing acknowledged is lost, duplicates only for work in flight.

A submitter process calls accept() and records every acknowledged message; the gateway delivers
to an SMSC simulator in a third process that journals every submit_sm it receives. The test
kills the gateway (and once the submitter) with SIGKILL at random moments, restarts them, and
then checks the journal against the acknowledgements.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gwharness import TELEWAY, free_port, make_gateway
from sqlalchemy import Connection, select

from teleway.store import open_store
from teleway.store.tables import deliveries, delivery_events

MESSAGES = 1500
PROVISIONING = '[[accounts]]\nname = "crash"\nnetworks = ["127.0.0.0/8"]\n'


def final_states(url: str) -> dict[str, tuple[str, int]]:
    def query(conn: Connection) -> dict[str, tuple[str, int]]:
        rows = conn.execute(
            select(deliveries.c.message_id, deliveries.c.state, deliveries.c.attempts)
        )
        return {r.message_id: (r.state, r.attempts) for r in rows}

    async def read() -> dict[str, tuple[str, int]]:
        # a read-only transaction: never waits for the writers of the running gateway
        store = await open_store(url)
        try:
            return await store.db.read(query)
        finally:
            await store.close()

    return asyncio.run(read())


def lease_takeovers(url: str) -> set[str]:
    def query(conn: Connection) -> set[str]:
        rows = conn.execute(
            select(deliveries.c.message_id)
            .join(delivery_events, delivery_events.c.delivery_id == deliveries.c.id)
            .where(delivery_events.c.from_state == "in_flight")
            .where(delivery_events.c.to_state.in_(["in_flight", "queued"]))
            .where(delivery_events.c.reason.ilike("%lease%"))
        )
        return {r.message_id for r in rows}

    async def read() -> set[str]:
        store = await open_store(url)
        try:
            return await store.db.read(query)
        finally:
            await store.close()

    return asyncio.run(read())


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def wait_for_growth(path: Path, count: int, timeout: float = 60) -> None:
    start, deadline = lines(path), time.monotonic() + timeout
    while lines(path) < start + count:
        assert time.monotonic() < deadline, f"{path.name} did not grow"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random()
    sim_port = free_port()
    journal = tmp_path / "journal.jsonl"
    gw = make_gateway(
        tmp_path,
        simulator=False,
        extra=f'\n[[upstreams]]\nname = "sim"\nhost = "127.0.0.1"\nport = {sim_port}\n'
        'system_id = "teleway"\npassword = "simulat"\nreconnect_min = 0.2\nreconnect_max = 1\n',
    )
    gw.cli("db", "upgrade")
    (tmp_path / "prov.toml").write_text(PROVISIONING)
    gw.cli("admin", "apply", str(tmp_path / "prov.toml"))
    simulator = subprocess.Popen(
        [
            *TELEWAY,
            "simulate",
            "smsc",
            "--port",
            str(sim_port),
            "--journal",
            str(journal),
            "--receipt-delay",
            "0.05",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "sim.log", "wb"),  # noqa: SIM115
    )
    acked = tmp_path / "acked.txt"
    submitter_cmd = [
        sys.executable,
        str(Path(__file__).with_name("crash_submitter.py")),
        gw.database_url,
        "crash",
        str(acked),
    ]
    kills = 0
    gateway = submitter = None
    try:
        gateway = gw.serve()
        submitter = subprocess.Popen([*submitter_cmd, "0", str(MESSAGES // 2)])
        # kill the submitter once while it is acknowledging, then continue with the rest
        wait_for_growth(acked, 20)
        time.sleep(rng.uniform(0, 0.3))
        submitter.send_signal(signal.SIGKILL)
        submitter.wait()
        submitter = subprocess.Popen([*submitter_cmd, str(MESSAGES // 2), str(MESSAGES)])
        for _ in range(3):
            # kill while the gateway is delivering: after it sent some more submit_sm
            wait_for_growth(journal, 20)
            time.sleep(rng.uniform(0, 0.3))
            gateway.send_signal(signal.SIGKILL)
            gateway.wait()
            kills += 1
            gateway = gw.serve()
        assert submitter.wait(timeout=120) == 0
        acknowledged = dict(line.split() for line in acked.read_text().splitlines())
        assert len(acknowledged) >= MESSAGES // 2 + 20
        deadline = time.monotonic() + 120
        while True:
            states = final_states(gw.database_url)
            pending = [m for m in acknowledged if states.get(m, ("?", 0))[0] != "delivered"]
            if not pending:
                break
            assert time.monotonic() < deadline, f"{len(pending)} not delivered, e.g. {pending[:3]}"
            time.sleep(0.5)
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=60) == 0
    finally:
        # whatever failed, leave no process of this test running
        for process in (gateway, submitter, simulator):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
    # every acknowledged message is stored and was delivered by the simulator
    assert all(m in states for m in acknowledged)
    texts = collections.Counter(
        bytes.fromhex(json.loads(line)["short_message"]).decode("latin-1")
        for line in journal.read_text().splitlines()
    )
    for message_id, text in acknowledged.items():
        assert texts[text] >= 1, f"{message_id} ({text}) never reached the SMSC"
    # duplicates only for deliveries whose lease was taken over after a kill (in flight then)
    by_text = {text: message_id for message_id, text in acknowledged.items()}
    taken_over = lease_takeovers(gw.database_url)
    duplicated = [t for t, n in texts.items() if n > 1 and t in by_text]
    for text in duplicated:
        assert by_text[text] in taken_over, f"{text} sent twice without a crash in between"
    print(
        f"\ncrash test: {len(acknowledged)} acknowledged, {kills} gateway kills + 1 submitter "
        f"kill, {len(duplicated)} duplicates (all in flight at a kill), 0 lost"
    )
