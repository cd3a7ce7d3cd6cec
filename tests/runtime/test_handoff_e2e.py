"""The handoff end to end through real sockets: python-smpplib as the customer's ESME -> the
gateway's SMPP server -> accept() hands the new deliveries to the gateway's own dispatchers ->
the built-in SMSC simulator (upstream) -> receipts -> deliver_sm back to the ESME. No delivery
is leased from the store: each was committed already leased, in accept()'s transaction."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
from prometheus_client import generate_latest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingress"))

from smpp_harness import (
    RECIPIENT,
    SENDER,
    SmppRig,
    in_thread,
    start_smpp_rig,
    stop_smpp_rig,
)

from teleway.core.model import DeliveryState

pytestmark = [pytest.mark.usefixtures("cheap_hashing"), pytest.mark.timeout(60)]

S = DeliveryState
COUNT = 6


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


async def test_messages_handed_off_at_accept_reach_the_upstream_and_receipts_flow_back(
    rig: SmppRig,
) -> None:
    queue = rig.store.queue
    leased_from_store: list[str] = []
    lease = queue.lease

    async def counting_lease(**kwargs: Any) -> Any:
        leases = await lease(**kwargs)
        leased_from_store.extend(item.delivery.id for item in leases)
        return leases

    queue.lease = counting_lease  # the dispatchers' queue: every lease() of theirs goes here

    def run() -> tuple[list[str], list[Any]]:
        tx = client(rig.port)
        rx = client(rig.port)
        received: list[Any] = []
        try:
            tx.bind_transmitter(system_id="acme01", password="secret1")
            rx.bind_receiver(system_id="acme01", password="secret1")
            ids = []
            for n in range(COUNT):
                tx.send_message(
                    source_addr_ton=1,
                    source_addr_npi=1,
                    source_addr=SENDER,
                    dest_addr_ton=1,
                    dest_addr_npi=1,
                    destination_addr=RECIPIENT,
                    short_message=f"handoff {n}".encode(),
                    registered_delivery=1,
                )
                resp = tx.read_pdu()
                assert resp.status == 0, hex(resp.status)
                ids.append(resp.message_id.decode())
            rx.set_message_received_handler(lambda pdu: received.append(pdu))
            deadline = time.monotonic() + 30
            while len(received) < COUNT and time.monotonic() < deadline:
                rx.read_once()
            tx.unbind()
            rx.unbind()
            return ids, received
        finally:
            tx.disconnect()
            rx.disconnect()

    message_ids, receipts = await in_thread(run)
    assert len(receipts) == COUNT
    assert {r.receipted_message_id.decode() for r in receipts} == set(message_ids)
    assert {r.message_state for r in receipts} == {2}  # DELIVERED
    assert leased_from_store == []  # every one went straight from accept() to a dispatcher
    workers = {d.worker for d in rig.gateway.dispatchers}
    for message_id in message_ids:
        (delivery,) = await rig.store.messages.deliveries_of(message_id)
        assert delivery.state is S.DELIVERED
        events = await rig.store.messages.events_of(delivery.id)
        assert [(e.from_state, e.to_state) for e in events] == [
            (None, S.ACCEPTED),
            (S.ACCEPTED, S.QUEUED),
            (S.QUEUED, S.IN_FLIGHT),
            (S.IN_FLIGHT, S.IN_FLIGHT),  # submitted: released, waiting for the receipt
            (S.IN_FLIGHT, S.DELIVERED),
        ]
        assert events[2].at == events[0].at  # leased in accept()'s own transaction
        worker = events[2].reason.removeprefix("leased to ").removesuffix(", attempt 1")
        assert worker in workers
    exposition = generate_latest(rig.gateway.metrics.registry).decode()
    assert f'teleway_handoff_total{{result="handed"}} {float(COUNT)}' in exposition
