"""SIGKILL during a batch: every message that got `250` over SMTP is in the store after the
restart, with its recipients (the gateway acknowledges only after the commit)."""

from __future__ import annotations

import asyncio
import random
import signal
import smtplib
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest
from smtp_gwharness import smtp_gateway
from sqlalchemy import Connection, select

from teleway.store import open_store
from teleway.store.tables import deliveries

MESSAGES = 160
CONNECTIONS = 4


def stored(url: str) -> dict[str, list[str]]:
    def query(conn: Connection) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for row in conn.execute(select(deliveries.c.message_id, deliveries.c.recipient)):
            found.setdefault(row.message_id, []).append(row.recipient)
        return found

    async def read() -> dict[str, list[str]]:
        store = await open_store(url)
        try:
            return await store.db.read(query)
        finally:
            await store.close()

    return asyncio.run(read())


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_loses_no_acknowledged_email(tmp_path: Path) -> None:
    gw = smtp_gateway(tmp_path)
    acked: dict[str, str] = {}  # message id -> recipient number
    lock = threading.Lock()
    todo = list(range(MESSAGES))
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            with lock:
                if not todo:
                    return
                index = todo.pop()
            number = f"+1781555{index:04d}"
            message = EmailMessage(policy=SMTP_POLICY)
            message["From"] = "bob@acme.test"
            message["Subject"] = f"crash {index}"
            message.set_content("x" * 200)
            try:
                with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=10) as smtp:
                    smtp.ehlo("crash.test")
                    smtp.mail("bob@acme.test")
                    assert smtp.rcpt(f"{number}@teleway.test")[0] == 250
                    code, text = smtp.data(message.as_bytes())
                if code == 250:
                    with lock:
                        acked[text.decode().rsplit(" ", 1)[1]] = number
                    continue
            except (OSError, smtplib.SMTPException):
                pass  # the gateway died mid-transaction: not acknowledged, send it again
            with lock:
                todo.append(index)
            time.sleep(0.05)

    process = gw.files.serve()
    threads = [threading.Thread(target=client) for _ in range(CONNECTIONS)]
    kills = 0
    try:
        gw.wait_smtp(process)
        for thread in threads:
            thread.start()
        rng = random.Random()
        for _ in range(2):
            target = len(acked) + 30
            deadline = time.monotonic() + 60
            while len(acked) < target and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.2))
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            process = gw.files.serve()
            gw.wait_smtp(process)
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
    finally:
        stop.set()
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
    assert kills == 2
    assert len(acked) == MESSAGES  # every message was acknowledged once in the end
    in_store = stored(gw.files.database_url)
    lost = [m for m in acked if m not in in_store]
    assert lost == [], f"{len(lost)} acknowledged messages missing"
    for message_id, number in acked.items():
        assert in_store[message_id] == [number]
