"""Kannel 1.4.5 (Debian `kannel`) as the ESME: bearerbox binds to our SMPP server as a
transceiver, smsbox takes HTTP sendsms; delivery reports (dlr-mask=31) come back to a dlr-url
served by this test. The gateway is real (in this process), its upstream the built-in SMSC
simulator, so receipts travel simulator -> store -> outbox -> deliver_sm -> Kannel -> dlr-url.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from smpp_harness import SmppRig, free_port, start_smpp_rig, stop_smpp_rig

pytestmark = [
    pytest.mark.usefixtures("cheap_hashing"),
    pytest.mark.skipif(
        not Path("/usr/sbin/bearerbox").exists(),
        reason="Kannel is not installed (/usr/sbin/bearerbox; Debian package kannel)",
    ),
    pytest.mark.timeout(180),
]

SENDER = "+447911123456"


def kannel_config(root: Path, smpp_port: int, ports: dict[str, int]) -> Path:
    log = root / "kannel"
    log.mkdir()
    config = root / "kannel.conf"
    config.write_text(
        f"""
group = core
admin-port = {ports["admin"]}
admin-interface = 127.0.0.1
admin-password = adminpw
status-password = statuspw
admin-allow-ip = "127.0.0.1"
smsbox-port = {ports["box"]}
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
log-file = "{log}/bearerbox.log"
log-level = 0
store-type = file
store-location = "{log}/kannel.store"
dlr-storage = internal

group = smsc
smsc = smpp
smsc-id = teleway
host = 127.0.0.1
port = {smpp_port}
transceiver-mode = true
smsc-username = acme01
smsc-password = secret1
system-type = ""
interface-version = 34
enquire-link-interval = 30
reconnect-delay = 1
max-pending-submits = 20
log-file = "{log}/smsc.log"
log-level = 0

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {ports["box"]}
sendsms-port = {ports["sendsms"]}
sendsms-interface = 127.0.0.1
log-file = "{log}/smsbox.log"
log-level = 0

group = sendsms-user
username = tester
password = testpw
max-messages = 10
concatenation = true

group = sms-service
keyword = default
text = "no service"
catch-all = true
"""
    )
    return config


class DlrSink(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, str]]

    def do_GET(self) -> None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        type(self).received.append(query)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def dlr_sink() -> Iterator[tuple[int, list[dict[str, str]]]]:
    received: list[dict[str, str]] = []
    handler = type("Sink", (DlrSink,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "a Kannel box exited"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} did not open")


@pytest.fixture
async def kannel(tmp_path: Path) -> AsyncIterator[tuple[SmppRig, int]]:
    rig = await start_smpp_rig(tmp_path, window=20, receipt_delay=0.2)
    ports = {"admin": free_port(), "box": free_port(), "sendsms": free_port()}
    config = kannel_config(tmp_path, rig.port, ports)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        out = open(tmp_path / "kannel" / "boxes.out", "wb")  # noqa: SIM115
        bearerbox = subprocess.Popen(["/usr/sbin/bearerbox", str(config)], stdout=out, stderr=out)
        processes.append(bearerbox)
        await asyncio.to_thread(wait_port, ports["box"], bearerbox)
        smsbox = subprocess.Popen(["/usr/sbin/smsbox", str(config)], stdout=out, stderr=out)
        processes.append(smsbox)
        await asyncio.to_thread(wait_port, ports["sendsms"], smsbox)
        # wait for bearerbox's transceiver bind
        assert rig.gateway.smpp is not None
        deadline = time.monotonic() + 30
        while not rig.gateway.smpp.registry.receiver_accounts():
            assert time.monotonic() < deadline, "Kannel did not bind"
            await asyncio.sleep(0.1)
        yield rig, ports["sendsms"]
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(processes):
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        await stop_smpp_rig(rig)


def sendsms(port: int, text: str, to: str, dlr_url: str, **extra: str) -> str:
    query = urllib.parse.urlencode(
        {
            "username": "tester",
            "password": "testpw",
            "from": SENDER,
            "to": to,
            "text": text,
            "dlr-mask": "31",
            "dlr-url": dlr_url,
            **extra,
        }
    )
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/cgi-bin/sendsms?{query}", timeout=10
    ) as r:
        return r.read().decode()


async def wait_for(predicate, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_kannel_submits_and_gets_delivery_reports(
    kannel: tuple[SmppRig, int], dlr_sink: tuple[int, list[dict[str, str]]]
) -> None:
    rig, sendsms_port = kannel
    sink_port, reports = dlr_sink
    long_text = ("Long message from Kannel, part of a 400 character text. " * 8)[:400]
    cases = {
        "gsm": ("Hello from Kannel @ teleway", "+17816170000", {}),
        "long": (long_text, "+17816170001", {}),
        "ucs2": ("Привет из Kannel 🎉", "+17816170002", {"coding": "2", "charset": "UTF-8"}),
    }
    for name, (text, to, extra) in cases.items():
        url = f"http://127.0.0.1:{sink_port}/dlr?case={name}&type=%d&smsc_id=%i&reply=%A"
        answer = await asyncio.to_thread(sendsms, sendsms_port, text, to, url, **extra)
        assert "Accepted" in answer or "Sent" in answer, answer

    def finals() -> dict[str, dict[str, str]]:
        return {r["case"]: r for r in reports if r.get("type") == "1"}

    await wait_for(lambda: set(finals()) == set(cases), timeout=60)
    for name, report in finals().items():
        assert "stat:DELIVRD" in report["reply"], (name, report)
    # the SMSC acknowledgement (type 8) came first for each
    assert {r["case"] for r in reports if r.get("type") == "8"} == set(cases)
    # the store holds each as ONE message with the whole text, whatever Kannel split
    messages = await rig.store.messages.list_messages(None, limit=10)
    texts = {m.content.text for m in messages}
    for text, _, _ in cases.values():
        assert text in texts
    assert len(messages) == 3
    # Kannel sent the 400 characters as 3 concatenated parts: 5 submit_sm in all
    metrics = rig.gateway.metrics.render().decode()
    assert 'teleway_smpp_requests_total{command="submit_sm",status="0x00"} 5.0' in metrics
