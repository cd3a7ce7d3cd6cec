"""The SMPP server against python-smpplib 2.2 (a real ESME library) over real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions
from smpp_harness import RECIPIENT, SENDER, SmppRig, in_thread, start_smpp_rig, stop_smpp_rig

pytestmark = pytest.mark.usefixtures("cheap_hashing")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[SmppRig]:
    made = await start_smpp_rig(tmp_path)
    try:
        yield made
    finally:
        await stop_smpp_rig(made)


def client(port: int) -> smpplib.client.Client:
    c = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    return c


def submit(c: smpplib.client.Client, text: bytes = b"hello", **fields: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {
        "source_addr_ton": 1,
        "source_addr_npi": 1,
        "source_addr": SENDER,
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": RECIPIENT,
        "short_message": text,
    }
    values.update(fields)
    c.send_message(**values)
    return c.read_pdu()


async def test_bind_submit_query_unbind(rig: SmppRig) -> None:
    def run() -> tuple[int, str, int, int]:
        c = client(rig.port)
        # smpplib allows query_sm on receiver/transceiver binds only (its COMMAND_STATES)
        c.bind_transceiver(system_id="acme01", password="secret1")
        resp = submit(c)
        assert resp.status == 0, hex(resp.status)
        message_id = resp.message_id.decode()
        q = c.query_message(
            message_id=message_id, source_addr_ton=1, source_addr_npi=1, source_addr=SENDER
        )
        query = c.read_pdu()
        unbind = c.unbind()
        c.disconnect()
        del q
        return resp.status, message_id, query.message_state, unbind.status

    status, message_id, state, unbind_status = await in_thread(run)
    assert status == 0 and message_id
    assert state in (1, 2)  # ENROUTE or already DELIVERED
    assert unbind_status == 0
    message = await rig.store.messages.get_message(message_id)
    assert message is not None and message.content.text == "hello"
    assert message.options.sender_id == "+" + SENDER
    assert str(message.origin) == "smpp"


async def test_receipt_reaches_a_receiver_bind(rig: SmppRig) -> None:
    """Submit on a transmitter, receive the receipt on a receiver bind of the same account:
    simulator upstream -> store -> outbox -> deliver_sm (esm_class 0x04 + TLVs)."""

    def run() -> tuple[str, list[object]]:
        tx = client(rig.port)
        rx = client(rig.port)
        received: list[object] = []
        try:
            tx.bind_transmitter(system_id="acme01", password="secret1")
            rx.bind_receiver(system_id="acme01", password="secret1")
            resp = submit(tx, b"receipt please", registered_delivery=1)
            assert resp.status == 0
            rx.set_message_received_handler(lambda pdu: received.append(pdu))
            deadline = time.monotonic() + 20
            while not received and time.monotonic() < deadline:
                rx.read_once()  # answers deliver_sm with deliver_sm_resp ESME_ROK
            tx.unbind()
            rx.unbind()
            return resp.message_id.decode(), received
        finally:
            tx.disconnect()
            rx.disconnect()

    message_id, received = await in_thread(run)
    assert len(received) == 1
    pdu = received[0]
    assert pdu.esm_class == 0x04  # type: ignore[attr-defined]
    assert pdu.receipted_message_id.decode() == message_id  # type: ignore[attr-defined]
    assert pdu.message_state == 2  # type: ignore[attr-defined]  # DELIVERED
    text = pdu.short_message.decode()  # type: ignore[attr-defined]
    assert f"id:{message_id} " in text and "stat:DELIVRD" in text and "text:receipt please" in text
    assert pdu.source_addr.decode() == RECIPIENT  # type: ignore[attr-defined]
    assert pdu.destination_addr.decode() == SENDER  # type: ignore[attr-defined]
    account = await rig.directory.account_by_name("acme")
    assert account is not None
    # the deliver_sm_resp was read; marking the outbox item sent is committed right after
    deadline = time.monotonic() + 10
    while True:
        items = await rig.store.outbox.recent(account_id=account.id)
        if [str(i.status) for i in items] == ["sent"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert [str(i.status) for i in items] == ["sent"]
