from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.core import provisioning as prov
from teleway.core.model import LongSmsPolicy, PushMode, Role, Settings


def _error(call: object, *args: object) -> prov.ProvisioningError:
    assert callable(call)
    with pytest.raises(prov.ProvisioningError) as info:
        call(*args)
    return info.value


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [("demo", "demo"), (" ACME.Corp_1-x ", "acme.corp_1-x"), ("0", "0")]
)
def test_account_names(raw: str, expected: str) -> None:
    assert prov.normalise_account_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "-demo", ".demo", "a b", "dé", "a/b", "x" * 65])
def test_bad_account_names(raw: str) -> None:
    error = _error(prov.normalise_account_name, raw)
    assert error.field == "account"
    assert error.value == raw
    assert error.reason
    assert str(error).startswith(f"account {raw!r}: ")


def test_usernames_allow_email_like_names() -> None:
    assert prov.normalise_username("Alice+Ops@Example.com") == "alice+ops@example.com"
    assert _error(prov.normalise_username, "_x").field == "username"
    assert _error(prov.normalise_username, "x" * 129).field == "username"


def test_roles() -> None:
    assert prov.normalise_role("Operator") is Role.OPERATOR
    assert prov.normalise_role("user") is Role.ACCOUNT_USER
    assert "operator, user" in _error(prov.normalise_role, "admin").reason


# --- senders --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("*@Example.org.", "*@example.org"),
        ("x@bücher.example", "x@xn--bcher-kva.example"),
        ("*@BÜCHER.example", "*@xn--bcher-kva.example"),
        ("first.last+tag@sub.example.com", "first.last+tag@sub.example.com"),
        ("user@localhost", "user@localhost"),
    ],
)
def test_sender_patterns(raw: str, expected: str) -> None:
    assert prov.normalise_sender_pattern(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "required"),
        ("example.com", "user@domain or *@domain"),
        ("@example.com", "user@domain"),
        ("a*@example.com", "wildcard"),
        ("*@*.example.com", "wildcard"),
        ("a b@example.com", "not allowed"),
        ("a@exa_mple.com", "label"),
        ("a@-example.com", "label"),
        ("a@[192.0.2.1]", "address literals"),
        (".a@example.com", "'.'"),
        ("a..b@example.com", "'.'"),
        ("x" * 65 + "@example.com", "64"),
        ("a@" + "x" * 64 + ".com", "label"),
    ],
)
def test_bad_sender_patterns(raw: str, reason: str) -> None:
    error = _error(prov.normalise_sender_pattern, raw)
    assert error.field == "sender"
    assert error.value == raw  # the whole input is named, not a fragment
    assert reason in error.reason


def test_sender_address_refuses_wildcards() -> None:
    assert prov.normalise_sender_address("Bob@Example.com") == "bob@example.com"
    assert "wildcard" in _error(prov.normalise_sender_address, "*@example.com").reason


_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(
    local=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,20}", fullmatch=True),
    labels=st.lists(_label, min_size=1, max_size=4),
    wildcard=st.booleans(),
)
def test_sender_normalisation_is_idempotent(local: str, labels: list[str], wildcard: bool) -> None:
    raw = f"{'*' if wildcard else local}@{'.'.join(labels).upper()}"
    once = prov.normalise_sender_pattern(raw)
    assert prov.normalise_sender_pattern(once) == once
    assert once == once.lower()


# --- networks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("192.0.2.7/24", "192.0.2.0/24"),  # host bits cleared (strict=False)
        (" 10.1.2.3 ", "10.1.2.3/32"),
        ("2001:DB8:0:0::1/32", "2001:db8::/32"),
        ("::1", "::1/128"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),  # IPv4-mapped becomes IPv4
        ("0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_networks(raw: str, expected: str) -> None:
    assert prov.normalise_cidr(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "nope", "10.0.0.0/33", "300.1.1.1", "10.0.0.0/8/8", "fe80::1%"]
)
def test_bad_networks(raw: str) -> None:
    assert _error(prov.normalise_cidr, raw).field == "network"


@given(st.ip_addresses(), st.integers(min_value=0, max_value=128))
def test_network_normalisation_is_idempotent_and_keeps_the_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int
) -> None:
    prefix = min(prefix, address.max_prefixlen)
    once = prov.normalise_cidr(f"{address}/{prefix}")
    assert prov.normalise_cidr(once) == once
    network = ipaddress.ip_network(once)
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None and prefix >= 96:
        assert mapped in network  # an IPv4-mapped network is stored as IPv4
    else:
        assert address in network


# --- SMPP -----------------------------------------------------------------------------------


def test_system_id_and_type() -> None:
    assert prov.normalise_system_id("Acme_01") == "Acme_01"
    assert prov.normalise_system_id("x" * 15) == "x" * 15
    assert "16 octets" in _error(prov.normalise_system_id, "x" * 16).reason
    assert _error(prov.normalise_system_id, "").field == "system_id"
    assert "ASCII" in _error(prov.normalise_system_id, "a b").reason
    assert "ASCII" in _error(prov.normalise_system_id, "é").reason
    assert prov.normalise_system_type("VMA") == "VMA"
    assert prov.normalise_system_type("") is None
    assert prov.normalise_system_type(None) is None
    assert "13 octets" in _error(prov.normalise_system_type, "x" * 13).reason


def test_binds_and_throughput() -> None:
    assert prov.normalise_max_binds(1) == 1
    assert prov.normalise_max_binds("8") == 8
    for bad in (0, -1, 1001, True, "x", 2.5):
        assert _error(prov.normalise_max_binds, bad).field == "max_binds"
    assert prov.normalise_throughput(100) == 100.0
    assert prov.normalise_throughput("0.5") == 0.5
    for bad_rate in (0, -1.0, float("inf"), float("nan"), "fast", False, None):
        assert _error(prov.normalise_throughput, bad_rate).field == "throughput"


# --- settings -------------------------------------------------------------------------------


def test_defaults_pass_their_own_checks() -> None:
    defaults = Settings()
    assert prov.build_settings(defaults.to_dict()) == defaults
    assert set(prov.SETTING_NAMES) == set(defaults.to_dict())
    assert prov.settings_overrides(defaults) == {}


def test_allowed_senders_round_trip_through_the_stored_form() -> None:
    settings = prov.build_settings({"allowed_senders": ["ACME", " +4479111* ", "12345"]})
    assert settings.allowed_senders == ("ACME", "+4479111*", "12345")
    stored = prov.settings_overrides(settings)
    assert stored == {"allowed_senders": ["ACME", "+4479111*", "12345"]}
    assert Settings.from_dict(stored) == settings


def test_build_settings_normalises_and_merges() -> None:
    base = prov.build_settings({"max_sms_parts": 3})
    settings = prov.build_settings(
        {
            "default_country": "gb",
            "long_sms_policy": "TRUNCATE",
            "push_mode": "push-then-sms",
            "notify_email": "Ops@Example.com",
            "sender_id": "ACME",
            "webhook_url": "https://hooks.example.com/teleway?x=1",
        },
        base,
    )
    assert settings.max_sms_parts == 3
    assert settings.default_country == "GB"
    assert settings.long_sms_policy is LongSmsPolicy.TRUNCATE
    assert settings.push_mode is PushMode.PUSH_THEN_SMS
    assert settings.notify_email == "ops@example.com"
    assert prov.settings_overrides(settings) == {
        "max_sms_parts": 3,
        "default_country": "GB",
        "long_sms_policy": "truncate",
        "push_mode": "push-then-sms",
        "notify_email": "ops@example.com",
        "sender_id": "ACME",
        "webhook_url": "https://hooks.example.com/teleway?x=1",
    }


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("colour", "blue", "unknown setting"),
        ("max_sms_parts", 0, "between 1 and 255"),
        ("max_sms_parts", 256, "between 1 and 255"),
        ("max_sms_parts", True, "whole number"),
        ("long_sms_policy", "split", "concatenate, truncate, reject"),
        ("push_mode", "always", "off, push-only, push-then-sms"),
        ("push_fallback_seconds", -1, "between 0"),
        ("default_country", "XX", "ISO 3166"),
        ("default_country", "UK", "ISO 3166"),
        ("default_country", 44, "text"),
        ("sender_id", "+1234567890123456", "15 digits"),
        ("sender_id", "ACME CORPORATION", "11 characters"),
        ("sender_id", "+12ab", "only digits"),
        ("sender_id", "!!!", "letters"),
        ("require_tls", "yes", "true or false"),
        ("validity_seconds", 0, "at least 1"),
        ("max_recipients", 0, "at least 1"),
        ("notify_email", "nobody", "user@domain"),
        ("webhook_url", "ftp://example.com/x", "http"),
        ("webhook_url", "https://", "host"),
        ("webhook_url", "https://example.com:99999/", "valid URL"),
        ("sms_template", "", "empty"),
        ("sms_template", 5, "text"),
        ("allowed_senders", ["AC*"], "digits, optionally after '+'"),
        ("allowed_senders", ["+1*2*"], "digits, optionally after '+'"),
        ("allowed_senders", ["ACME CORPORATION"], "11 characters"),
        ("allowed_senders", [""], "empty sender id"),
        ("allowed_senders", [5], "text"),
        ("allowed_senders", 5, "list of sender ids"),
        ("allowed_senders", ["+1"] * 1001, "at most 1000"),
    ],
)
def test_bad_settings(key: str, value: object, reason: str) -> None:
    error = _error(prov.build_settings, {key: value})
    assert error.field in (f"settings.{key}", "settings")
    assert reason in error.reason, error.reason


@pytest.mark.parametrize(
    "template",
    ["{subject},{body}", "{body}", "From {from}: {subject} - {body}", "{{literal}} {body:.100}"],
)
def test_good_templates(template: str) -> None:
    assert prov.validate_template(template) == template


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{subject", "expected '}'"),
        ("}{body}", "Single '}'"),
        ("{}", "unknown placeholder {}"),
        ("{0}", "unknown placeholder {0}"),
        ("{body.upper}", "unknown placeholder"),
        ("{body[0]}", "unknown placeholder"),
        ("{sender}", "use only {body}, {from}, {subject}, {to}"),
        ("{to} only", "must contain {body} or {subject}"),
        ("{body:d}", "cannot be applied"),
        ("{body:{subject}}", "nested"),
        ("x" * 1001 + "{body}", "at most 1000"),
    ],
)
def test_bad_templates(template: str, reason: str) -> None:
    error = _error(prov.validate_template, template)
    assert reason in error.reason, error.reason


def test_command_line_setting_values() -> None:
    assert prov.parse_setting_assignment("require_tls=YES") == ("require_tls", True)
    assert prov.parse_setting_assignment("require_tls=off") == ("require_tls", False)
    assert prov.parse_setting_assignment("max_sms_parts= 4") == ("max_sms_parts", 4)
    assert prov.parse_setting_assignment("default_country=de") == ("default_country", "DE")
    assert prov.parse_setting_assignment("webhook_url=") == ("webhook_url", None)
    assert prov.parse_setting_assignment("sender_id=none") == ("sender_id", None)
    assert prov.parse_setting_assignment("sms_template={subject}={body}") == (
        "sms_template",
        "{subject}={body}",
    )
    assert prov.parse_setting_assignment("allowed_senders=ACME, +1555*,,ACME") == (
        "allowed_senders",
        ["ACME", "+1555*"],
    )
    assert prov.parse_setting_assignment("allowed_senders=") == ("allowed_senders", [])
    assert "KEY=VALUE" in _error(prov.parse_setting_assignment, "require_tls").reason
    assert "true or false" in _error(prov.parse_setting_assignment, "require_tls=maybe").reason
    assert "whole number" in _error(prov.parse_setting_assignment, "max_sms_parts=four").reason
    assert "unknown setting" in _error(prov.parse_setting_assignment, "colour=red").reason


def test_error_subclasses() -> None:
    assert issubclass(prov.UnknownObject, prov.ProvisioningError)
    assert issubclass(prov.Conflict, prov.ProvisioningError)
    assert issubclass(prov.ProvisioningError, ValueError)
