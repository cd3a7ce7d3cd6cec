"""The SMPP server's rules through real sockets: binds, address rules, encodings, long
messages, message management, malformed input, flow control, TLS, shutdown.

The client is `RawEsme` (a blocking socket with our codec, run in a thread) where smpplib
refuses to send what we need to test (a submit on a receiver bind, garbage, reserved TONs).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from smpp_harness import (
    RECIPIENT,
    SENDER,
    RawEsme,
    SmppRig,
    in_thread,
    start_smpp_rig,
    stop_smpp_rig,
)

from teleway.core.model import DeliveryState
from teleway.core.ports import StoreFull, StoreUnavailable
from teleway.proto.smpp import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    CancelSm,
    DataSm,
    DistributionList,
    EnquireLink,
    QuerySm,
    ReplaceSm,
    SmeAddress,
    SubmitMulti,
    SubmitSm,
    Tag,
    Tlv,
    Unbind,
    encode,
)
from teleway.proto.smpp.constants import CommandStatus as S
from teleway.proto.smpp.timefmt import format_relative

pytestmark = pytest.mark.usefixtures("cheap_hashing")
T = TypeVar("T")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[SmppRig]:
    made = await start_smpp_rig(tmp_path, concat_timeout=1.0)
    try:
        yield made
    finally:
        await stop_smpp_rig(made)


async def esme(
    rig: SmppRig,
    work: Callable[[RawEsme], T],
    *,
    bind: str = "trx",
    system_id: str = "acme01",
    password: str = "secret1",
) -> T:
    def run() -> T:
        c = RawEsme(rig.port)
        try:
            if bind:
                cls = {"tx": BindTransmitter, "rx": BindReceiver, "trx": BindTransceiver}[bind]
                resp = c.request(cls(system_id=system_id, password=password))
                assert resp.command_status == 0, resp
            return work(c)
        finally:
            c.close()

    return await in_thread(run)


def sm(text: bytes = b"hello", **fields: Any) -> SubmitSm:
    values: dict[str, Any] = {
        "source_addr_ton": 1,
        "source_addr_npi": 1,
        "source_addr": SENDER,
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": RECIPIENT,
        "short_message": text,
    }
    values.update(fields)
    return SubmitSm(**values)


def bind_status(rig: SmppRig, system_id: str, password: str, **fields: Any) -> Callable[[], int]:
    def run() -> int:
        c = RawEsme(rig.port)
        try:
            return c.request(
                BindTransceiver(system_id=system_id, password=password, **fields)
            ).command_status
        finally:
            c.close()

    return run


# ---- binds ------------------------------------------------------------------------------


async def test_bind_refusals_have_their_codes(rig: SmppRig) -> None:
    assert await in_thread(bind_status(rig, "acme01", "wrong")) == S.ESME_RINVPASWD
    assert await in_thread(bind_status(rig, "nobody", "secret1")) == S.ESME_RBINDFAIL
    # far01 is right, but its account allows 10.0.0.0/8 only: same code as unknown
    assert await in_thread(bind_status(rig, "far01", "secret3")) == S.ESME_RBINDFAIL
    assert await in_thread(bind_status(rig, "acme02", "secret2")) == S.ESME_RINVSYSTYP
    assert await in_thread(bind_status(rig, "acme02", "secret2", system_type="VMA")) == S.ESME_ROK


async def test_failed_binds_are_rate_limited_per_ip(tmp_path: Path) -> None:
    rig = await start_smpp_rig(tmp_path, auth_fail_limit=3)
    try:
        for _ in range(3):
            assert await in_thread(bind_status(rig, "acme01", "wrong")) == S.ESME_RINVPASWD
        # now even the right password is refused, without saying why
        assert await in_thread(bind_status(rig, "acme01", "secret1")) == S.ESME_RBINDFAIL
        metrics = rig.gateway.metrics.render().decode()
        assert 'teleway_smpp_bind_failures_total{reason="rate_limited"} 1.0' in metrics
    finally:
        await stop_smpp_rig(rig)


async def test_max_binds_per_credential(tmp_path: Path) -> None:
    rig = await start_smpp_rig(tmp_path, max_binds=2)
    try:

        def run() -> list[int]:
            clients = [RawEsme(rig.port) for _ in range(3)]
            try:
                return [
                    c.request(
                        BindTransmitter(system_id="acme01", password="secret1")
                    ).command_status
                    for c in clients
                ]
            finally:
                for c in clients:
                    c.close()

        assert await in_thread(run) == [0, 0, S.ESME_RBINDFAIL]
        # once they are gone (the server notices the closed sockets), binding works again
        deadline = time.monotonic() + 10
        while (status := await in_thread(bind_status(rig, "acme01", "secret1"))) != S.ESME_ROK:
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.1)
    finally:
        await stop_smpp_rig(rig)


async def test_already_bound_and_submit_on_receiver(rig: SmppRig) -> None:
    def run(c: RawEsme) -> tuple[int, int, int]:
        again = c.request(BindTransmitter(system_id="acme01", password="secret1"))
        submit = c.request(sm())
        link = c.request(EnquireLink())
        return again.command_status, submit.command_status, link.command_status

    assert await esme(rig, run, bind="rx") == (S.ESME_RALYBND, S.ESME_RINVBNDSTS, S.ESME_ROK)


async def test_submit_before_bind_and_unknown_command(rig: SmppRig) -> None:
    def run(c: RawEsme) -> tuple[int, int, int]:
        before = c.request(sm())
        c.send_raw(struct.pack(">IIII", 16, 0x00000077, 0, 99))
        nack = c.read()
        return before.command_status, nack.command_id, nack.command_status

    assert await esme(rig, run, bind="") == (S.ESME_RINVBNDSTS, 0x80000000, S.ESME_RINVCMDID)


# ---- address rules ----------------------------------------------------------------------


FIELD_RULES: list[tuple[dict[str, Any], int]] = [
        ({"source_addr_ton": 2}, S.ESME_RINVSRCTON),  # numeric sender must be international
        ({"source_addr_ton": 0}, S.ESME_RINVSRCTON),
        ({"source_addr_ton": 7}, S.ESME_RINVSRCTON),  # reserved
        ({"source_addr_ton": 5, "source_addr": "ACME"}, S.ESME_ROK),
        ({"source_addr_ton": 1, "source_addr": "ACME"}, S.ESME_RINVSRCTON),
        ({"source_addr_ton": 5, "source_addr": "FARTOOLONGNAME"}, S.ESME_RINVSRCADR),
        ({"source_addr_ton": 3, "source_addr": "12345"}, S.ESME_ROK),  # short code
        ({"dest_addr_ton": 7}, S.ESME_RINVDSTTON),
        ({"dest_addr_ton": 5}, S.ESME_RINVDSTTON),
        ({"destination_addr": "1781abc"}, S.ESME_RINVDSTADR),
        ({"destination_addr": "999999"}, S.ESME_RINVDSTADR),  # libphonenumber says no
        ({"registered_delivery": 3}, S.ESME_RINVREGDLVFLG),
        ({"esm_class": 0x04}, S.ESME_RINVESMCLASS),
        ({"priority_flag": 4}, S.ESME_RINVPRTFLG),
        ({"sm_default_msg_id": 1}, S.ESME_RINVDFTMSGID),
        ({"data_coding": 0x05}, S.ESME_RSUBMITFAIL),
        ({"validity_period": "991231235959000+"}, S.ESME_RINVEXPIRY),
        ({"schedule_delivery_time": "not a time"}, S.ESME_RINVSCHED),
        ({"short_message": b""}, S.ESME_RINVMSGLEN),
        (
            {"tlvs": (Tlv.octets(Tag.MESSAGE_PAYLOAD, b"also here"),)},
            S.ESME_ROPTPARNOTALLWD,  # both short_message and message_payload
        ),
        (
            {"short_message": b"", "tlvs": (Tlv.octets(Tag.MESSAGE_PAYLOAD, b"x" * 600),)},
            S.ESME_ROK,
        ),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "status"), FIELD_RULES)
async def test_submit_field_rules(rig: SmppRig, fields: dict[str, Any], status: int) -> None:
    response = await esme(rig, lambda c: c.request(sm(**fields)))
    assert response.command_status == status, response
    if status == S.ESME_ROK:
        assert await rig.store.messages.get_message(response.message_id) is not None


async def test_allowed_sender_ids(tmp_path: Path) -> None:
    """An account limited to some sender ids: others get ESME_RINVSRCADR (in submit_sm,
    data_sm and submit_multi alike); no source_addr means the account's own sender."""
    made = await start_smpp_rig(
        tmp_path,
        settings={"sender_id": "ACMEBANK", "allowed_senders": ["ACME", "+4479111*"]},
    )
    try:

        def work(c: RawEsme) -> list[int]:
            statuses = [
                c.request(sm(source_addr_ton=ton, source_addr=addr)).command_status
                for ton, addr in [
                    (1, SENDER),  # +447911123456: in the allowed prefix
                    (5, "ACME"),
                    (5, "ACMEBANK"),  # the account's own sender
                    (0, ""),  # none given: the account's own sender
                    (1, "447912123456"),
                    (5, "Acme"),
                    (5, "EVIL"),
                ]
            ]
            data = DataSm(
                source_addr_ton=5,
                source_addr="EVIL",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr=RECIPIENT,
                tlvs=(Tlv.octets(Tag.MESSAGE_PAYLOAD, b"hello"),),
            )
            statuses.append(c.request(data).command_status)
            multi = SubmitMulti(
                source_addr_ton=5,
                source_addr="EVIL",
                dest_addresses=(SmeAddress(1, 1, RECIPIENT),),
                short_message=b"hello",
            )
            statuses.append(c.request(multi).command_status)
            return statuses

        statuses = await esme(made, work)
    finally:
        await stop_smpp_rig(made)
    ok, bad = S.ESME_ROK, S.ESME_RINVSRCADR
    assert statuses == [ok, ok, ok, ok, bad, bad, bad, bad, bad]


def one_write(c: RawEsme, pdus: list[SubmitSm]) -> list[Any]:
    """Send the PDUs in one write (the server reads them together) and return their
    responses in the order sent (matched by sequence number)."""
    first = c.sequence + 1
    data = b""
    for pdu in pdus:
        c.sequence += 1
        data += encode(pdu.replace(sequence_number=c.sequence))
    c.send_raw(data)
    responses = {r.sequence_number: r for r in (c.read() for _ in pdus)}
    return [responses[first + n] for n in range(len(pdus))]


async def test_a_window_read_at_once_is_checked_as_if_each_came_alone(tmp_path: Path) -> None:
    """The server answers the submit_sm of one read together (one store write for the plain
    ones): every rule still gives each request its own code, parts of a long message and
    replace_if_present still take their own paths, and what was OK is stored."""
    rig = await start_smpp_rig(tmp_path, window=64)
    try:
        assert rig.gateway.smpp is not None
        real = rig.gateway.smpp.accept_many
        assert real is not None
        batches: list[int] = []

        async def counting(submissions: Any) -> Any:
            batches.append(len(submissions))
            return await real(submissions)

        rig.gateway.smpp.accept_many = counting
        pdus = [sm(**fields) for fields, _ in FIELD_RULES]
        pdus += [udh_part(7, 2, 2, "world"), udh_part(7, 2, 1, "hello "), sm(b"plain")]
        pdus.append(sm(b"again", replace_if_present_flag=1))
        expected = [status for _, status in FIELD_RULES] + [S.ESME_ROK] * 4
        responses = await esme(rig, lambda c: one_write(c, pdus))
        statuses = [r.command_status for r in responses]
        assert statuses == expected
        assert max(batches) > 1  # the plain ones went through one accept_many call
        parts = {responses[n].message_id for n in (len(FIELD_RULES), len(FIELD_RULES) + 1)}
        assert len(parts) == 1
        joined = await rig.store.messages.get_message(parts.pop())
        assert joined is not None and joined.content.text == "hello world"
        for n, status in enumerate(expected):
            if status == S.ESME_ROK:
                stored = await rig.store.messages.get_message(responses[n].message_id)
                assert stored is not None, n
    finally:
        await stop_smpp_rig(rig)


async def test_ucs2_and_gsm_text_stored_as_unicode(rig: SmppRig) -> None:
    text = "Привет, мир 👋🏽"

    def run(c: RawEsme) -> tuple[str, str, str]:
        ucs2 = c.request(sm(text.encode("utf-16-be"), data_coding=8))
        gsm = c.request(sm(bytes([0x00, 0x1B, 0x65, 0x20, 0x41]), data_coding=0))  # @€ A
        latin = c.request(sm("café".encode("latin-1"), data_coding=3))
        return ucs2.message_id, gsm.message_id, latin.message_id

    ids = await esme(rig, run)
    texts = [(await rig.store.messages.get_message(i)).content.text for i in ids]  # type: ignore[union-attr]
    assert texts == [text, "@€ A", "café"]


async def test_binary_payload_kept_as_bytes(rig: SmppRig) -> None:
    data = bytes(range(0, 140))
    response = await esme(rig, lambda c: c.request(sm(data, data_coding=4)))
    message = await rig.store.messages.get_message(response.message_id)
    assert message is not None and message.content.raw == data
    assert message.content.data_coding == 4 and message.content.text == ""


async def test_odd_ucs2_refused(rig: SmppRig) -> None:
    response = await esme(rig, lambda c: c.request(sm(b"\x04\x1f\x04", data_coding=8)))
    assert response.command_status == S.ESME_RINVMSGLEN


# ---- long messages ----------------------------------------------------------------------


def udh_part(reference: int, total: int, seq: int, text: str) -> SubmitSm:
    header = bytes([5, 0, 3, reference, total, seq])
    return sm(header + text.encode("utf-16-be"), esm_class=0x40, data_coding=8)


async def test_udh_parts_become_one_message(rig: SmppRig) -> None:
    chunks = ["Часть один, ", "часть два, ", "часть три 🎉"]

    def run(c: RawEsme) -> list[Any]:
        for seq in (2, 1, 3):  # any order
            c.send(udh_part(42, 3, seq, chunks[seq - 1]))
        return [c.read() for _ in range(3)]

    responses = await esme(rig, run)
    assert {r.command_status for r in responses} == {0}
    assert len({r.message_id for r in responses}) == 1  # every part answered with the same id
    message = await rig.store.messages.get_message(responses[0].message_id)
    assert message is not None and message.content.text == "".join(chunks)
    assert len(await rig.store.messages.deliveries_of(message.id)) == 1


async def test_sar_parts_become_one_message(rig: SmppRig) -> None:
    def part(seq: int, text: bytes) -> SubmitSm:
        return sm(
            text,
            tlvs=(
                Tlv.int(Tag.SAR_MSG_REF_NUM, 700),
                Tlv.int(Tag.SAR_TOTAL_SEGMENTS, 2),
                Tlv.int(Tag.SAR_SEGMENT_SEQNUM, seq),
            ),
        )

    def run(c: RawEsme) -> list[Any]:
        c.send(part(1, b"first half "))
        c.send(part(2, b"second half"))
        return [c.read(), c.read()]

    responses = await esme(rig, run)
    assert responses[0].message_id == responses[1].message_id != ""
    message = await rig.store.messages.get_message(responses[0].message_id)
    assert message is not None and message.content.text == "first half second half"


async def test_incomplete_long_message_is_refused(rig: SmppRig) -> None:
    def run(c: RawEsme) -> Any:
        c.send(udh_part(9, 3, 1, "only the first part"))
        return c.read()  # concat_timeout is 1 s in this rig

    response = await esme(rig, run)
    assert response.command_status == S.ESME_RSUBMITFAIL


# ---- submit_multi, data_sm ---------------------------------------------------------------


async def test_submit_multi_reports_refused_destinations(rig: SmppRig) -> None:
    pdu = SubmitMulti(
        source_addr_ton=5,
        source_addr="ACME",
        dest_addresses=(
            SmeAddress(1, 1, RECIPIENT),
            SmeAddress(1, 1, "447911123457"),
            SmeAddress(1, 1, "999999"),
            SmeAddress(7, 1, "17816170002"),
            DistributionList("friends"),
        ),
        short_message=b"to many",
    )
    response = await esme(rig, lambda c: c.request(pdu))
    assert response.command_status == 0 and response.message_id
    refused = {u.destination_addr: u.error_status_code for u in response.unsuccess_sme}
    assert refused == {
        "999999": S.ESME_RINVDSTADR,
        "17816170002": S.ESME_RINVDSTTON,
        "friends": S.ESME_RCNTSUBDL,
    }
    deliveries = await rig.store.messages.deliveries_of(response.message_id)
    assert sorted(d.recipient for d in deliveries) == ["+17816170000", "+447911123457"]


async def test_data_sm(rig: SmppRig) -> None:
    pdu = DataSm(
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=SENDER,
        dest_addr_ton=1,
        destination_addr=RECIPIENT,
        tlvs=(Tlv.octets(Tag.MESSAGE_PAYLOAD, b"data sm text"),),
    )
    response = await esme(rig, lambda c: c.request(pdu))
    assert response.command_status == 0
    message = await rig.store.messages.get_message(response.message_id)
    assert message is not None and message.content.text == "data sm text"


# ---- query, cancel, replace ---------------------------------------------------------------


def later(seconds: int) -> str:
    from datetime import timedelta

    return format_relative(timedelta(seconds=seconds))


async def test_cancel_and_query_a_scheduled_message(rig: SmppRig) -> None:
    def run(c: RawEsme) -> tuple[Any, ...]:
        submitted = c.request(sm(b"in an hour", schedule_delivery_time=later(3600)))
        mid = submitted.message_id
        queued = c.request(QuerySm(message_id=mid, source_addr_ton=1, source_addr=SENDER))
        cancel = c.request(CancelSm(message_id=mid))
        after = c.request(QuerySm(message_id=mid))
        again = c.request(CancelSm(message_id=mid))
        unknown = c.request(QuerySm(message_id="nope"))
        return queued, cancel, after, again, unknown

    queued, cancel, after, again, unknown = await esme(rig, run)
    assert queued.message_state == 1 and queued.final_date == ""  # ENROUTE
    assert cancel.command_status == 0
    assert after.message_state == 4 and after.final_date  # DELETED, with its date
    assert again.command_status == S.ESME_RCANCELFAIL
    assert unknown.command_status == S.ESME_RINVMSGID


async def test_cancel_by_source_and_destination(rig: SmppRig) -> None:
    def run(c: RawEsme) -> tuple[Any, ...]:
        first = c.request(sm(b"one", schedule_delivery_time=later(3600)))
        second = c.request(sm(b"two", schedule_delivery_time=later(3600)))
        cancel = c.request(
            CancelSm(
                source_addr_ton=1,
                source_addr=SENDER,
                dest_addr_ton=1,
                destination_addr=RECIPIENT,
            )
        )
        return first.message_id, second.message_id, cancel.command_status

    first, second, status = await esme(rig, run)
    assert status == 0
    for mid in (first, second):
        (delivery,) = await rig.store.messages.deliveries_of(mid)
        assert delivery.state is DeliveryState.CANCELLED


async def test_replace_a_queued_message_only(rig: SmppRig) -> None:
    loop = asyncio.get_running_loop()

    def state_of(message_id: str) -> DeliveryState:
        deliveries = asyncio.run_coroutine_threadsafe(
            rig.store.messages.deliveries_of(message_id), loop
        ).result(10)
        return deliveries[0].state

    def run(c: RawEsme) -> tuple[Any, ...]:
        mid = c.request(sm(b"old text", schedule_delivery_time=later(3600))).message_id
        replaced = c.request(
            ReplaceSm(message_id=mid, source_addr_ton=1, source_addr=SENDER, short_message=b"new")
        )
        now = c.request(sm(b"sent at once", registered_delivery=0)).message_id
        deadline = time.monotonic() + 20
        while state_of(now) is DeliveryState.QUEUED:  # until a dispatcher has taken it
            assert time.monotonic() < deadline
            time.sleep(0.05)
        too_late = c.request(ReplaceSm(message_id=now, short_message=b"too late"))
        return mid, replaced.command_status, too_late.command_status

    mid, replaced, too_late = await esme(rig, run)
    assert replaced == 0 and too_late == S.ESME_RREPLACEFAIL
    message = await rig.store.messages.get_message(mid)
    assert message is not None and message.content.text == "new"


async def test_other_accounts_messages_are_invisible(rig: SmppRig) -> None:
    await rig.directory.add_network("faraway", "127.0.0.0/8", actor="test")
    mid = (await esme(rig, lambda c: c.request(sm()))).message_id

    def run(c: RawEsme) -> tuple[int, int]:
        return (
            c.request(QuerySm(message_id=mid)).command_status,
            c.request(CancelSm(message_id=mid)).command_status,
        )

    assert await esme(rig, run, system_id="far01", password="secret3") == (
        S.ESME_RINVMSGID,
        S.ESME_RINVMSGID,
    )


# ---- malformed input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        struct.pack(">IIII", 8, 4, 0, 1),  # command_length below the header
        struct.pack(">IIII", 10_000_000, 4, 0, 1),  # oversized
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # garbage
    ],
)
async def test_broken_framing_gets_generic_nack_and_close(rig: SmppRig, data: bytes) -> None:
    """Framing is lost: a generic_nack ESME_RINVCMDLEN is sent, then the connection closed."""

    def run(c: RawEsme) -> tuple[Any, bool]:
        c.send_raw(data)
        try:
            nack = c.read()
        except ConnectionError:
            return None, True
        return nack, c.closed_by_peer()

    nack, closed = await esme(rig, run, bind="")
    assert nack is not None, "closed without the generic_nack"
    assert nack.command_id == 0x80000000 and nack.command_status == S.ESME_RINVCMDLEN
    assert closed


async def test_truncated_body_is_answered_and_the_link_lives_on(rig: SmppRig) -> None:
    def run(c: RawEsme) -> tuple[int, int]:
        whole = encode(sm().replace(sequence_number=5))
        cut = whole[16:30]  # the body stops inside destination_addr
        c.send_raw(struct.pack(">IIII", 16 + len(cut), 4, 0, 5) + cut)
        answer = c.read()
        assert answer.sequence_number == 5
        return answer.command_status, c.request(sm()).command_status

    status, next_status = await esme(rig, run)
    assert status != 0
    assert next_status == 0


async def test_client_that_never_reads_is_dropped(tmp_path: Path) -> None:
    """Keep writing enquire_links without reading: the server stops reading, its buffer stays
    bounded, and the connection is dropped after response_timeout."""
    rig = await start_smpp_rig(tmp_path, response_timeout=1.0)
    try:

        def run() -> tuple[bool, int]:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", rig.port))
            s.settimeout(0.5)
            one = encode(EnquireLink(sequence_number=1))
            chunk = one * 4096
            sent = 0
            deadline = time.monotonic() + 30
            dropped = False
            while time.monotonic() < deadline:
                try:
                    sent += s.send(chunk)
                except TimeoutError:
                    continue  # our side is full too: the server stopped reading
                except (BrokenPipeError, ConnectionResetError):
                    dropped = True
                    break
            s.close()
            return dropped, sent

        watcher_peak = 0

        async def watch() -> None:
            nonlocal watcher_peak
            assert rig.gateway.smpp is not None
            while True:
                for link in list(rig.gateway.smpp._links):
                    size = link.writer.transport.get_write_buffer_size()
                    watcher_peak = max(watcher_peak, size)
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        dropped, sent = await in_thread(run)
        watcher.cancel()
        assert dropped, "the server kept the connection of a client that does not read"
        assert sent > 1_000_000  # it did try hard
        # bounded: the high-water mark plus one read's worth of answers
        assert watcher_peak < 64 * 1024 + 65536
        # and others are still served
        assert await in_thread(bind_status(rig, "acme01", "secret1")) == S.ESME_ROK
    finally:
        await stop_smpp_rig(rig)


# ---- flow control, store errors -----------------------------------------------------------


async def test_throughput_limit_answers_throttled(tmp_path: Path) -> None:
    rig = await start_smpp_rig(tmp_path, throughput=5)
    try:

        def run(c: RawEsme) -> list[int]:
            for _ in range(20):
                c.send(sm())
            return [c.read().command_status for _ in range(20)]

        statuses = await esme(rig, run)
        assert statuses.count(S.ESME_RTHROTTLED) >= 10
        assert statuses.count(S.ESME_ROK) >= 5
    finally:
        await stop_smpp_rig(rig)


async def test_window_beyond_limit_is_throttled(rig: SmppRig) -> None:
    """window = 10: the 11th unanswered request is refused by the session, not queued."""
    assert rig.gateway.smpp is not None
    gate = asyncio.Event()
    real = rig.gateway.smpp.accept

    async def slow(submission: Any) -> Any:
        await gate.wait()
        return await real(submission)

    real_many = rig.gateway.smpp.accept_many
    assert real_many is not None

    async def slow_many(submissions: Any) -> Any:
        await gate.wait()
        return await real_many(submissions)

    rig.gateway.smpp.accept = slow
    rig.gateway.smpp.accept_many = slow_many
    loop = asyncio.get_running_loop()

    def run(c: RawEsme) -> list[int]:
        for _ in range(11):
            c.send(sm())
        first = c.read()  # the refusal comes at once, the others wait for the gate
        loop.call_soon_threadsafe(gate.set)
        return [first.command_status] + [c.read().command_status for _ in range(10)]

    statuses = await esme(rig, run)
    assert statuses[0] == S.ESME_RTHROTTLED and statuses[1:] == [0] * 10


@pytest.mark.parametrize(
    ("error", "status"),
    [(StoreFull("disk full"), S.ESME_RMSGQFUL), (StoreUnavailable("down"), S.ESME_RSYSERR)],
)
async def test_store_failure_is_never_ok(rig: SmppRig, error: Exception, status: int) -> None:
    assert rig.gateway.smpp is not None

    async def failing(submission: Any) -> Any:
        raise error

    rig.gateway.smpp.accept = failing
    rig.gateway.smpp.accept_many = failing
    response = await esme(rig, lambda c: c.request(sm()))
    assert response.command_status == status
    # a window read at once: every plain submit_sm of it gets the same refusal
    responses = await esme(rig, lambda c: one_write(c, [sm(b"a"), sm(b"b"), sm(b"c")]))
    assert [r.command_status for r in responses] == [status] * 3


# ---- TLS, shutdown --------------------------------------------------------------------------


async def test_tls_listener(rig: SmppRig) -> None:
    def run() -> tuple[int, int]:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the rig's self-signed certificate
        raw = socket.create_connection(("127.0.0.1", rig.tls_port), timeout=10)
        c = RawEsme.__new__(RawEsme)
        c.sock = context.wrap_socket(raw, server_hostname="localhost")
        c.sequence = 0
        try:
            bound = c.request(BindTransceiver(system_id="acme01", password="secret1"))
            return bound.command_status, c.request(sm(b"over TLS")).command_status
        finally:
            c.close()

    assert await in_thread(run) == (0, 0)


async def test_shutdown_unbinds_every_esme(rig: SmppRig) -> None:
    loop = asyncio.get_running_loop()
    stopping: asyncio.Future[None] = loop.create_future()

    def run(c: RawEsme) -> tuple[int, bool]:
        loop.call_soon_threadsafe(stopping.set_result, None)
        unbind = c.read()
        c.send_raw(encode(unbind.response()))
        return unbind.command_id, c.closed_by_peer()

    task = asyncio.ensure_future(esme(rig, run))
    await stopping
    await asyncio.sleep(0.2)
    assert rig.gateway.smpp is not None
    await rig.gateway.smpp.stop(5.0)
    command_id, closed = await task
    assert command_id == Unbind.command_id and closed
