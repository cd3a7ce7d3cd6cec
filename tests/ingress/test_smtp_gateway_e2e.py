"""The whole path in a real `teleway serve`: e-mail in over SMTP (STARTTLS), SMS out to the SMSC
simulator, receipt back, notification e-mail out through a relay (aiosmtpd) in this test."""

from __future__ import annotations

import asyncio
import json
import signal
import smtplib
import ssl
import subprocess
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from smtp_gwharness import smtp_gateway


class Sink:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(
            (envelope.mail_from or "", list(envelope.rcpt_tos), envelope.original_content or b"")
        )
        return "250 OK"


def send(port: int, recipients: list[str], subject: str, body: str) -> str:
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = "Bob <bob@acme.test>"
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(body)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.starttls(context=context)
        client.ehlo("client.test")
        client.mail("bob@acme.test")
        for r in recipients:
            assert client.rcpt(r)[0] == 250
        code, text = client.data(message.as_bytes())
    assert code == 250, text
    return text.decode().rsplit(" ", 1)[1]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("event_loop", ["", "asyncio"], ids=["default-uvloop", "asyncio"])
async def test_email_to_sms_delivered_and_the_sender_is_notified(
    tmp_path: Path, event_loop: str
) -> None:
    """On both event loops `teleway serve` can run on: STARTTLS (aiosmtpd layers the
    standard library's SSL protocol over the loop's transport) must work on each."""
    sink = Sink()
    loop = asyncio.get_running_loop()
    relay = await loop.create_server(lambda: SMTP(sink), "127.0.0.1", 0)
    relay_port = relay.sockets[0].getsockname()[1]
    gw = smtp_gateway(tmp_path, relay_port=relay_port, event_loop=event_loop)
    process = gw.files.serve()
    try:
        await asyncio.to_thread(gw.wait_smtp, process)
        message_id = await asyncio.to_thread(
            send,
            gw.smtp_port,
            ["+17816170000@sms.teleway.test", "+17816170001@fax.teleway.test"],
            "Hello",
            "Meeting at 10",
        )
        deadline = time.monotonic() + 40
        while not sink.received:
            assert time.monotonic() < deadline, gw.files.log()
            await asyncio.sleep(0.2)
        status = json.loads(
            (await asyncio.to_thread(gw.files.cli, "status", message_id, "--json")).stdout
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 60)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
        relay.close()
    states = {d["recipient"]: d["state"] for d in status["deliveries"]}
    # the SMS reached DELIVERED; the fax waits in the queue for its channel, never failed
    assert states == {"+17816170000": "delivered", "+17816170001": "queued"}
    [(sender, recipients, raw)] = sink.received
    assert sender == "<>" and recipients == ["bob@acme.test"]
    assert b"+17816170000" in raw and b"delivered" in raw
    assert f"event_loop={event_loop or 'uvloop'}" in gw.files.log()
