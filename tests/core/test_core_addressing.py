"""`<number>@<device>.<domain>` parsing: the forms the product documents, refusals with their
kind (which picks the SMTP reply), and fuzzing: nothing but AddressProblem ever escapes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.core.addressing import AddressProblem, is_gateway_domain, parse_address
from teleway.core.model import Device

DOMAINS = ("teleway.test", "gw.example.org")


@pytest.mark.parametrize(
    ("address", "number", "device"),
    [
        ("+17816170000@teleway.test", "+17816170000", Device.SMS),
        ("17816170000@SMS.teleway.test", "+17816170000", Device.SMS),
        ("1-781-6170000@Business.teleway.test", "+17816170000", Device.BUSINESS),
        ("1.781.617.0000@mobile.gw.example.org", "+17816170000", Device.MOBILE),
        ("<+447911123456@HOME.Teleway.Test>", "+447911123456", Device.HOME),
        ("+4930123456@fax.teleway.test.", "+4930123456", Device.FAX),
    ],
)
def test_documented_forms(address: str, number: str, device: Device) -> None:
    parsed = parse_address(address, DOMAINS)
    assert (parsed.number, parsed.device) == (number, device)
    assert parsed.recipient.number == number


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("+17816170000@example.com", "relay"),
        ("+17816170000@teleway.test.evil.test", "relay"),
        ("+17816170000@sms.sms.teleway.test", "relay"),
        ("+17816170000@pager.teleway.test", "device"),
        ("alice@teleway.test", "number"),
        ("123@teleway.test", "number"),
        ("+1781617000012345678901@teleway.test", "number"),
        ("teleway.test", "syntax"),
        ("@teleway.test", "syntax"),
        ("1" * 70 + "@teleway.test", "syntax"),
    ],
)
def test_refusals(address: str, kind: str) -> None:
    with pytest.raises(AddressProblem) as caught:
        parse_address(address, DOMAINS)
    assert caught.value.kind == kind


def test_national_numbers_need_the_accounts_country() -> None:
    with pytest.raises(AddressProblem):
        parse_address("020 7946 0018@teleway.test".replace(" ", ""), DOMAINS)
    parsed = parse_address("02079460018@teleway.test", DOMAINS, default_country="GB")
    assert parsed.number == "+442079460018"


def test_gateway_domain_check() -> None:
    assert is_gateway_domain("TELEWAY.test", DOMAINS)
    assert is_gateway_domain("anything.teleway.test", DOMAINS)
    assert not is_gateway_domain("teleway.test.evil", DOMAINS)
    assert not is_gateway_domain("a.b.teleway.test", DOMAINS)


@given(st.text(max_size=120))
def test_fuzz_only_address_problems(address: str) -> None:
    with contextlib.suppress(AddressProblem):
        parse_address(address, DOMAINS, default_country="US")


@given(st.integers(min_value=2012000000, max_value=9899999999), st.sampled_from(list(Device)))
def test_valid_us_numbers_round_trip(digits: int, device: Device) -> None:
    try:
        parsed = parse_address(f"1{digits}@{device.value}.teleway.test", DOMAINS)
    except AddressProblem as exc:
        assert exc.kind == "number"  # not every 10-digit block is an assigned NANP range
        return
    assert parsed.number == f"+1{digits}" and parsed.device is device
