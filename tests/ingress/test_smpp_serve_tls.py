"""SMPP over TLS through a real `teleway serve`, on each event loop it can run on.

python-smpplib is the ESME: it binds as a transceiver over TLS (the self-signed certificate
`teleway serve` generates), submits a message asking for a receipt, gets ESME_ROK with the
message_id, and receives the delivery receipt from the SMSC simulator behind the gateway on the
same TLS bind, then unbinds.
"""

from __future__ import annotations

import ssl
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

import smpplib.client
import smpplib.consts
from gwharness import free_port, make_gateway

PROVISIONING = """
[[accounts]]
name = "tls"
networks = ["127.0.0.0/8"]

[[accounts.smpp]]
system_id = "tls01"
password = "tlspass1"
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("event_loop", ["", "asyncio"], ids=["default-uvloop", "asyncio"])
def test_smpplib_over_tls_submits_and_gets_its_receipt(tmp_path: Path, event_loop: str) -> None:
    gw = make_gateway(tmp_path, receipt_delay=0.05, event_loop=event_loop)
    tls_port = free_port()
    text = gw.config.read_text()
    assert "[listeners.smpp_tls]\nenabled = false\n" in text
    gw.config.write_text(
        text.replace(
            "[listeners.smpp_tls]\nenabled = false\n", f"[listeners.smpp_tls]\nport = {tls_port}\n"
        )
    )
    gw.cli("db", "upgrade")
    (tmp_path / "prov.toml").write_text(PROVISIONING)
    gw.cli("admin", "apply", str(tmp_path / "prov.toml"))
    process = gw.serve()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the certificate `teleway serve` generated
    client = smpplib.client.Client(
        "127.0.0.1", tls_port, timeout=10, ssl_context=context, allow_unknown_opt_params=True
    )
    responses: list[tuple[int, str]] = []
    receipts: list[str] = []

    def sent(pdu: smpplib.command.Command) -> None:
        responses.append((pdu.status, pdu.message_id.decode()))

    def received(pdu: smpplib.command.Command) -> None:
        if pdu.esm_class & 0x04:
            receipts.append(pdu.receipted_message_id.decode())

    client.set_message_sent_handler(sent)
    client.set_message_received_handler(received)
    try:
        gw.wait_http(process)
        client.connect()
        client.bind_transceiver(system_id="tls01", password="tlspass1")
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_INTL,
            source_addr="447911123456",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            destination_addr="17816170000",
            short_message=b"over TLS",
            registered_delivery=1,
        )
        deadline = time.monotonic() + 30
        while not receipts:
            assert time.monotonic() < deadline, f"no receipt: {responses}\n{gw.log()}"
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
        process.terminate()
        process.wait(timeout=40)
    [(status, message_id)] = responses
    assert status == 0 and message_id
    assert receipts == [message_id]
    assert f"event_loop={event_loop or 'uvloop'}" in gw.log()
