"""``teleway simulate mo``: a reply from a phone, injected into the SMSC simulator.

It binds to the simulator as a transmitter with system_type "MO" (the simulator's credentials)
and submits the text; the simulator delivers it to the gateway's receiver binds as a
mobile-originated deliver_sm, split into concatenated parts when long (see
teleway.testing.smsc).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import click

from teleway.proto.smpp.constants import CommandStatus, Tag, status_name
from teleway.proto.smpp.pdu import BindTransmitter, SubmitSm
from teleway.proto.smpp.session import Role, Session
from teleway.proto.smpp.tlv import Tlv
from teleway.proto.sms.alphabets import encode_text
from teleway.proto.sms.gsm7 import gsm7_can_encode
from teleway.testing.smsc import MO_PARTS_TAG, MO_REFERENCE_TAG, MO_SYSTEM_TYPE
from teleway.transport.smpp import SmppLink

__all__ = ["inject_mo", "simulate_mo"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
MAX_TEXT = 65_535 // 2  # message_payload holds 64 KiB (SMPP v3.4 5.3.2.32), UCS-2 halves it


async def inject_mo(
    *,
    host: str,
    port: int,
    system_id: str,
    password: str,
    source: str,
    destination: str,
    text: str,
    timeout: float = 10.0,
    parts: Sequence[int] = (),
    reference: int | None = None,
) -> None:
    """Bind with system_type MO, submit the reply, unbind. Raises ConnectionError on failure.
    `parts`: deliver only these parts of a long reply now; `reference`: its concatenation
    reference (give the same one to deliver the other parts later)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    session = Session(Role.ESME, window=1, response_timeout=timeout, now=time.monotonic())
    link = SmppLink(reader, writer, session, name="mo-injector")
    pump = asyncio.create_task(link.run())
    try:
        bound = await link.request(
            BindTransmitter(system_id=system_id, password=password, system_type=MO_SYSTEM_TYPE)
        )
        if bound.command_status != CommandStatus.ESME_ROK:
            raise ConnectionRefusedError(f"bind refused: {status_name(bound.command_status)}")
        gsm = gsm7_can_encode(text)
        data = encode_text(text, "gsm7" if gsm else "ucs2")
        tlvs = [Tlv.octets(Tag.MESSAGE_PAYLOAD, data)]
        if parts:
            listed = ",".join(str(n) for n in parts).encode() + b"\0"
            tlvs.append(Tlv.octets(MO_PARTS_TAG, listed))
        if reference is not None:
            tlvs.append(Tlv.octets(MO_REFERENCE_TAG, bytes([reference])))
        answer = await link.request(
            SubmitSm(
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr=source.lstrip("+"),
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr=destination.lstrip("+"),
                data_coding=0 if gsm else 8,
                tlvs=tuple(tlvs),
            )
        )
        if answer.command_status != CommandStatus.ESME_ROK:
            raise ConnectionError(f"injection refused: {status_name(answer.command_status)}")
        await link.unbind(timeout)
    finally:
        writer.close()
        await asyncio.wait_for(pump, timeout)


@click.command("mo", context_settings=CONTEXT)
@click.option(
    "--to",
    "destination",
    required=True,
    metavar="NUMBER",
    help="The number the phone writes to (one of ours: an inbound number or the "
    "sender id a message came from).",
)
@click.option(
    "--from",
    "source",
    required=True,
    metavar="PHONE",
    help="The phone's number, international format.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Simulator host.")
@click.option("--port", default=2776, show_default=True, type=click.IntRange(1, 65535))
@click.option("--system-id", default="teleway", show_default=True)
@click.option("--password", default="simulat", show_default=True)
@click.option(
    "--parts",
    default="",
    metavar="N,N,...",
    help="Deliver only these parts of a long reply now (e.g. 1,3); send the others later "
    "with the same --reference.",
)
@click.option(
    "--reference",
    type=click.IntRange(0, 255),
    default=None,
    help="The concatenation reference of a long reply (default: the simulator's next).",
)
@click.argument("text")
def simulate_mo(
    destination: str,
    source: str,
    host: str,
    port: int,
    system_id: str,
    password: str,
    parts: str,
    reference: int | None,
    text: str,
) -> None:
    """Send TEXT as a reply from phone --from to number --to through the SMSC simulator."""
    if not text or len(text) > MAX_TEXT:
        raise click.BadParameter(f"must be 1..{MAX_TEXT} characters", param_hint="TEXT")
    try:
        numbers = [int(n) for n in parts.split(",") if n.strip()]
    except ValueError:
        raise click.BadParameter("part numbers separated by commas", param_hint="--parts") from None
    if any(not 1 <= n <= 255 for n in numbers):
        raise click.BadParameter("part numbers are 1..255", param_hint="--parts")
    try:
        asyncio.run(
            inject_mo(
                host=host,
                port=port,
                system_id=system_id,
                password=password,
                source=source,
                destination=destination,
                text=text,
                parts=numbers,
                reference=reference,
            )
        )
    except (OSError, TimeoutError) as exc:
        raise click.ClickException(f"cannot inject at {host}:{port}: {exc}") from exc
    click.echo(f"reply from {source} to {destination} handed to the simulator")
