"""Delivery receipt text: build, parse, real-world variants, message id normalisation."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.proto.sms import (
    ReceiptError,
    ReceiptState,
    build_receipt_text,
    message_ids_match,
    normalise_message_id,
    parse_receipt_text,
)

SUBMIT = datetime(2024, 3, 5, 14, 7)
DONE = datetime(2024, 3, 5, 14, 9)


def test_build_exact_text() -> None:
    text = build_receipt_text(
        message_id="0123456789",
        submitted=1,
        delivered=1,
        submit_date=SUBMIT,
        done_date=DONE,
        stat="DELIVRD",
        err=0,
        text="Your parcel arrives tomorrow between 9 and 11",
    )
    assert text == (
        "id:0123456789 sub:001 dlvrd:001 submit date:2403051407 done date:2403051409 "
        "stat:DELIVRD err:000 text:Your parcel arrives "
    )


def test_build_with_state_and_seconds() -> None:
    text = build_receipt_text(
        message_id="abc",
        submitted=1,
        delivered=0,
        submit_date=datetime(2024, 1, 2, 3, 4, 5),
        done_date=datetime(2024, 1, 2, 3, 4, 59),
        stat=ReceiptState.UNDELIVERABLE,
        err="0x0B",
        text="hi",
        with_seconds=True,
    )
    assert "submit date:240102030405 done date:240102030459 stat:UNDELIV err:0x0B text:hi" in text


@pytest.mark.parametrize(
    "kwargs",
    [{"message_id": ""}, {"message_id": "a b"}, {"stat": "NOT OK"}, {"err": -1}, {"submitted": -1}],
)
def test_build_rejects_unparseable_fields(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "message_id": "1",
        "submitted": 1,
        "delivered": 1,
        "submit_date": SUBMIT,
        "done_date": DONE,
        "stat": "DELIVRD",
        "err": 0,
        "text": "",
    }
    args.update(kwargs)
    with pytest.raises(ReceiptError):
        build_receipt_text(**args)  # type: ignore[arg-type]


def test_state_numbers_and_words() -> None:
    assert [s.value for s in ReceiptState] == [1, 2, 3, 4, 5, 6, 7, 8]
    words = [s.stat_word for s in ReceiptState]
    assert words == [
        "ENROUTE",
        "DELIVRD",
        "EXPIRED",
        "DELETED",
        "UNDELIV",
        "ACCEPTD",
        "UNKNOWN",
        "REJECTD",
    ]
    for state in ReceiptState:
        assert ReceiptState.from_stat_word(state.stat_word.lower()) is state
    assert ReceiptState.from_stat_word("Delivered") is ReceiptState.DELIVERED
    assert ReceiptState.from_stat_word("BOGUS") is None


ids = st.text(alphabet="0123456789abcdefABCDEF-", min_size=1, max_size=20)
minutes = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2068, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0)
)


@given(
    message_id=ids,
    submitted=st.integers(0, 999),
    delivered=st.integers(0, 999),
    submit_date=minutes,
    done_date=minutes,
    state=st.sampled_from(list(ReceiptState)),
    err=st.integers(0, 999),
    text=st.text(max_size=40).filter(lambda t: "\x00" not in t),
)
def test_build_parse_round_trip(
    message_id: str,
    submitted: int,
    delivered: int,
    submit_date: datetime,
    done_date: datetime,
    state: ReceiptState,
    err: int,
    text: str,
) -> None:
    built = build_receipt_text(
        message_id=message_id,
        submitted=submitted,
        delivered=delivered,
        submit_date=submit_date,
        done_date=done_date,
        stat=state,
        err=err,
        text=text,
    )
    receipt = parse_receipt_text(built)
    assert receipt.message_id == message_id
    assert (receipt.submitted, receipt.delivered) == (submitted, delivered)
    assert (receipt.submit_date, receipt.done_date) == (submit_date, done_date)
    assert receipt.state is state
    assert receipt.stat == state.stat_word
    assert receipt.err_code == err
    assert receipt.text == text[:20]
    assert receipt.extra == {}


def test_kannel_style_receipt() -> None:
    r = parse_receipt_text(
        "id:1a2b3c4d sub:001 dlvrd:001 submit date:1801011200 done date:1801011201 "
        "stat:DELIVRD err:000 Text:Test message"
    )
    assert r.message_id == "1a2b3c4d"
    assert r.submit_date == datetime(2018, 1, 1, 12, 0)
    assert r.done_date == datetime(2018, 1, 1, 12, 1)
    assert r.state is ReceiptState.DELIVERED
    assert r.text == "Test message"


def test_upper_case_keys_and_lower_case_stat() -> None:
    r = parse_receipt_text(
        "ID:12345 SUB:1 DLVRD:1 SUBMIT DATE:2301011200 DONE DATE:2301011205 STAT:delivrd ERR:0 TEXT:x"
    )
    assert (r.message_id, r.submitted, r.delivered, r.err_code) == ("12345", 1, 1, 0)
    assert r.stat == "delivrd"
    assert r.state is ReceiptState.DELIVERED
    assert r.done_date == datetime(2023, 1, 1, 12, 5)


def test_twelve_digit_dates() -> None:
    r = parse_receipt_text(
        "id:99 sub:001 dlvrd:001 submit date:230101120005 done date:230101120130 "
        "stat:DELIVRD err:000 text:"
    )
    assert r.submit_date == datetime(2023, 1, 1, 12, 0, 5)
    assert r.done_date == datetime(2023, 1, 1, 12, 1, 30)
    assert r.text == ""


def test_missing_err_and_text() -> None:
    r = parse_receipt_text(
        "id:42 sub:001 dlvrd:000 submit date:2301011200 done date:2301021200 stat:EXPIRED"
    )
    assert r.err is None and r.err_code is None
    assert r.text is None
    assert r.state is ReceiptState.EXPIRED


def test_hex_id_and_hex_err() -> None:
    r = parse_receipt_text(
        "id:0A1B2C3D sub:001 dlvrd:000 submit date:2301011200 done date:2301011201 "
        "stat:UNDELIV err:0x0B text:hello"
    )
    assert r.message_id == "0A1B2C3D"
    assert r.err == "0x0B" and r.err_code == 11
    assert r.state is ReceiptState.UNDELIVERABLE
    assert message_ids_match(r.message_id, str(0x0A1B2C3D))


def test_extra_and_repeated_fields_kept() -> None:
    r = parse_receipt_text(
        "id:77 sub:001 dlvrd:000 submit date:2301011200 done date:2301011201 stat:REJECTD "
        "err:088 mcc:234 mnc:10 smsc:abc ID:78 text:spam"
    )
    assert r.state is ReceiptState.REJECTED
    assert r.err_code == 88
    assert r.extra == {"mcc": "234", "mnc": "10", "smsc": "abc", "ID": "78"}
    assert r.message_id == "77"
    assert r.text == "spam"


def test_extra_fields_simple() -> None:
    r = parse_receipt_text("id:5 stat:ACCEPTD err:000 network:Vodafone price:0.05 text:x")
    assert r.extra == {"network": "Vodafone", "price": "0.05"}
    assert r.state is ReceiptState.ACCEPTED


def test_underscore_keys_long_stat_and_no_counts() -> None:
    r = parse_receipt_text("id:5 submit_date:2301011200 done_date:2301011201 stat:DELIVERED err:0")
    assert r.submitted is None and r.delivered is None
    assert r.submit_date == datetime(2023, 1, 1, 12, 0)
    assert r.done_date == datetime(2023, 1, 1, 12, 1)
    assert r.state is ReceiptState.DELIVERED
    assert r.stat == "DELIVERED"


def test_reordered_fields_nul_terminated_and_crlf() -> None:
    r = parse_receipt_text("stat:ENROUTE id:abc-123 err:000\r\n\x00")
    assert r.message_id == "abc-123"
    assert r.state is ReceiptState.ENROUTE
    assert r.err == "000"


def test_text_may_contain_colons_and_keys() -> None:
    r = parse_receipt_text("id:1 stat:DELIVRD text:id:2 stat:UNDELIV")
    assert r.message_id == "1"
    assert r.state is ReceiptState.DELIVERED
    assert r.text == "id:2 stat:UNDELIV"


def test_bad_date_and_unknown_stat_become_none() -> None:
    r = parse_receipt_text("id:1 submit date:2313011200 done date:12 stat:WHATEVER err:x")
    assert r.submit_date is None and r.done_date is None
    assert r.stat == "WHATEVER" and r.state is None
    assert r.err == "x" and r.err_code is None


@pytest.mark.parametrize(
    "text",
    ["", "Hello world", "id:123", "stat:DELIVRD err:000", "id: stat:DELIVRD", "hid:1 stat:x"],
)
def test_not_a_receipt(text: str) -> None:
    with pytest.raises(ReceiptError) as info:
        parse_receipt_text(text)
    assert isinstance(info.value, ValueError)
    assert "not a delivery receipt" in str(info.value)


def test_normalise_message_id_forms() -> None:
    assert normalise_message_id("000123") >= {"000123", "123", "7b", str(0x123)}
    assert normalise_message_id("0A1B") >= {"0A1B", "0a1b", "a1b", str(0x0A1B)}
    assert normalise_message_id("0x1F") >= {"0x1F", "0x1f", "1f", "31"}
    assert normalise_message_id("  abc-def ") == {"abc-def"}
    assert normalise_message_id("0") >= {"0"}
    assert message_ids_match("0000012345", "12345")
    assert message_ids_match("ABCDEF", "abcdef")
    assert message_ids_match("3039", "12345")  # hex 0x3039 == 12345
    assert not message_ids_match("abc-1", "abc-2")
