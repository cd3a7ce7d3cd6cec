"""`core.smpp_submit`: the ESME's submit -> Submission policy, fuzzed and tabled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.core.model import Delivery, DeliveryState, Device, ReportOn
from teleway.core.smpp_submit import (
    DEVICE_TAG,
    content_of,
    query_state,
    read_submit,
    report_of,
    sender_of,
)
from teleway.proto.smpp import SubmitSm, Tag, Tlv
from teleway.proto.smpp.constants import CommandStatus as S
from teleway.proto.smpp.errors import SmppError
from teleway.proto.sms.alphabets import decode_text

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

tlvs = st.lists(
    st.one_of(
        st.builds(lambda v: Tlv.octets(Tag.MESSAGE_PAYLOAD, v), st.binary(max_size=300)),
        st.builds(lambda v: Tlv(Tag.SAR_MSG_REF_NUM, v), st.binary(min_size=2, max_size=2)),
        st.builds(lambda v: Tlv(Tag.SAR_TOTAL_SEGMENTS, bytes([v])), st.integers(0, 255)),
        st.builds(lambda v: Tlv(Tag.SAR_SEGMENT_SEQNUM, bytes([v])), st.integers(0, 255)),
        st.builds(lambda v: Tlv(DEVICE_TAG, v), st.binary(max_size=10)),
    ),
    max_size=4,
)
addresses = st.one_of(st.text(max_size=20), st.from_regex(r"\+?[0-9]{0,17}", fullmatch=True))


@given(
    source_ton=st.integers(0, 255),
    source_npi=st.integers(0, 255),
    source=addresses,
    dest_ton=st.integers(0, 255),
    dest=addresses,
    esm_class=st.integers(0, 255),
    registered_delivery=st.integers(0, 255),
    data_coding=st.integers(0, 255),
    priority=st.integers(0, 255),
    short_message=st.binary(max_size=254),
    extra=tlvs,
    schedule=st.one_of(st.just(""), st.text(max_size=16), st.just("000000010000000R")),
)
def test_any_submit_is_read_or_refused_with_a_code(
    source_ton: int,
    source_npi: int,
    source: str,
    dest_ton: int,
    dest: str,
    esm_class: int,
    registered_delivery: int,
    data_coding: int,
    priority: int,
    short_message: bytes,
    extra: list[Tlv],
    schedule: str,
) -> None:
    pdu = SubmitSm(
        source_addr_ton=source_ton,
        source_addr_npi=source_npi,
        source_addr=source,
        dest_addr_ton=dest_ton,
        destination_addr=dest,
        esm_class=esm_class,
        registered_delivery=registered_delivery,
        data_coding=data_coding,
        priority_flag=priority,
        short_message=short_message,
        schedule_delivery_time=schedule,
        tlvs=tuple(extra),
    )
    try:
        request = read_submit(pdu, now=NOW)
        content = content_of(request.data_coding, request.payload)
    except SmppError as exc:
        assert exc.command_status != 0
        return
    assert request.recipients and content is not None


@given(st.binary(max_size=160).map(lambda b: bytes(x & 0x7F for x in b)))
def test_gsm_fast_path_equals_the_full_decoder(septets: bytes) -> None:
    assert content_of(0, septets).text == decode_text(septets, "gsm7")


@pytest.mark.parametrize(
    ("value", "report"),
    [
        (0, ReportOn.NONE),
        (1, ReportOn.FINAL),
        (2, ReportOn.FAILURE),
        (0x10, ReportOn.ALL),
        (0x11, ReportOn.ALL),
        (0x04, ReportOn.NONE),
    ],
)
def test_registered_delivery(value: int, report: ReportOn) -> None:
    assert report_of(value) is report


def test_registered_delivery_reserved() -> None:
    with pytest.raises(SmppError) as caught:
        report_of(3)
    assert caught.value.command_status == S.ESME_RINVREGDLVFLG


@pytest.mark.parametrize(
    ("ton", "npi", "addr", "result"),
    [
        (1, 1, "447911123456", "+447911123456"),
        (1, 0, "+447911123456", "+447911123456"),
        (5, 0, "ACME", "ACME"),
        (5, 0, "1234", "1234"),
        (3, 0, "12345", "12345"),
        (0, 0, "", None),
        (2, 1, "447911123456", S.ESME_RINVSRCTON),
        (4, 1, "447911123456", S.ESME_RINVSRCTON),
        (1, 9, "447911123456", S.ESME_RINVSRCNPI),
        (1, 1, "0447911123456", S.ESME_RINVSRCADR),
        (0, 0, "ACME", S.ESME_RINVSRCTON),
        (5, 0, "ACME\x01", S.ESME_RINVSRCADR),
        (7, 0, "ACME", S.ESME_RINVSRCTON),
    ],
)
def test_sender_rules(ton: int, npi: int, addr: str, result: str | int | None) -> None:
    if isinstance(result, int):
        with pytest.raises(SmppError) as caught:
            sender_of(ton, npi, addr)
        assert caught.value.command_status == result
    else:
        assert sender_of(ton, npi, addr) == result


def test_device_tlv_selects_the_device() -> None:
    pdu = SubmitSm(
        source_addr_ton=5,
        source_addr="ACME",
        dest_addr_ton=1,
        destination_addr="17816170000",
        short_message=b"call me",
        tlvs=(Tlv.cstr(DEVICE_TAG, "mobile"),),
    )
    assert read_submit(pdu, now=NOW).recipients[0].device is Device.MOBILE
    with pytest.raises(SmppError) as caught:
        read_submit(pdu.replace(tlvs=(Tlv.cstr(DEVICE_TAG, "pager"),)), now=NOW)
    assert caught.value.command_status == S.ESME_RINVOPTPARAMVAL


def _delivery(state: DeliveryState, seq: int = 0, minutes: int = 0) -> Delivery:
    at = NOW + timedelta(minutes=minutes)
    return Delivery(
        id=f"d{seq}",
        message_id="m",
        account_id=1,
        seq=seq,
        recipient="+17816170000",
        device=Device.SMS,
        state=state,
        next_attempt_at=at,
        valid_until=at + timedelta(days=1),
        created_at=NOW,
        updated_at=at,
    )


def test_query_state() -> None:
    assert query_state([_delivery(DeliveryState.QUEUED)]) == (1, "", 0)
    state, final, _ = query_state([_delivery(DeliveryState.DELIVERED)])
    assert state == 2 and final.startswith("261122120000")
    # submit_multi: not final while one is pending; then the first failure wins
    mixed = [_delivery(DeliveryState.DELIVERED, 0), _delivery(DeliveryState.IN_FLIGHT, 1)]
    assert query_state(mixed)[0] == 1
    done = [
        _delivery(DeliveryState.DELIVERED, 0),
        _delivery(DeliveryState.UNDELIVERABLE, 1, 5),
    ]
    state, final, _ = query_state(done)
    assert state == 5 and final.startswith("261122120500")
