from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.core import model
from teleway.core.ids import ID_LENGTH, id_millis, make_id
from teleway.core.lifecycle import (
    RECEIPT_STAT,
    SMPP_MESSAGE_STATE,
    InvalidTransition,
    can_transition,
    check_transition,
    sources_of,
)
from teleway.core.model import (
    DeliveryState,
    Device,
    Network,
    Options,
    ReportOn,
    Settings,
    sender_pattern_matches,
)
from teleway.core.numbers import InvalidNumber, normalise_number
from teleway.core.retry import RetryPolicy
from teleway.core.smpp_submit import SubmitRequest
from teleway.runtime.wiring import RandomIds


@pytest.mark.parametrize(
    "raw",
    ["+17816170000", "17816170000", "1-781-6170000", "1.781.617.0000", "001 781 617 0000"],
)
def test_international_forms_normalise_to_e164(raw: str) -> None:
    assert normalise_number(raw) == "+17816170000"


def test_national_number_needs_default_country() -> None:
    with pytest.raises(InvalidNumber):
        normalise_number("020 7946 0018")
    assert normalise_number("020 7946 0018", "GB") == "+442079460018"


@pytest.mark.parametrize("raw", ["", "hello", "+1", "12", "+1781617000012345678", "+1-781-abc"])
def test_invalid_numbers_are_refused_with_a_reason(raw: str) -> None:
    with pytest.raises(InvalidNumber) as info:
        normalise_number(raw)
    assert info.value.reason


def test_ids_are_sortable_unique_and_fit_smpp() -> None:
    a = make_id(1_700_000_000_000, bytes(10))
    b = make_id(1_700_000_000_001, bytes(10))
    c = make_id(1_700_000_000_001, b"\x00" * 9 + b"\x01")
    assert len(a) == ID_LENGTH <= 64
    assert a < b < c
    assert id_millis(b) == 1_700_000_000_001


@given(st.integers(0, (1 << 48) - 1), st.binary(min_size=10, max_size=10))
def test_id_round_trips_timestamp(millis: int, entropy: bytes) -> None:
    ident = make_id(millis, entropy)
    assert len(ident) == 26
    assert id_millis(ident) == millis
    assert set(ident) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


@given(st.lists(st.tuples(st.integers(0, (1 << 48) - 1), st.binary(min_size=10, max_size=10))))
def test_id_is_the_crockford_base32_of_time_and_entropy(pairs: list[tuple[int, bytes]]) -> None:
    """Against a plain digit-by-digit reference, whatever order of timestamps the per-millisecond
    prefix cache sees."""
    for millis, entropy in pairs:
        value = (millis << 80) | int.from_bytes(entropy, "big")
        digits = "".join(
            "0123456789ABCDEFGHJKMNPQRSTVWXYZ"[(value >> (5 * n)) & 31] for n in range(25, -1, -1)
        )
        assert make_id(millis, entropy) == digits


def test_random_ids_are_unique_across_threads() -> None:
    ids = RandomIds()

    def many() -> list[str]:
        return [ids.new_id() for _ in range(5_000)]  # more than one entropy pool each

    with ThreadPoolExecutor(4) as pool:
        made = [i for chunk in pool.map(lambda _: many(), range(4)) for i in chunk]
    assert len(set(made)) == len(made) == 20_000
    assert all(len(i) == ID_LENGTH for i in made)


def test_state_machine_table() -> None:
    assert can_transition(None, DeliveryState.ACCEPTED)
    assert can_transition(DeliveryState.QUEUED, DeliveryState.IN_FLIGHT)
    assert not can_transition(DeliveryState.DELIVERED, DeliveryState.QUEUED)
    for final in (DeliveryState.DELIVERED, DeliveryState.EXPIRED, DeliveryState.CANCELLED):
        assert final.is_final
        for target in DeliveryState:
            assert not can_transition(final, target)
    with pytest.raises(InvalidTransition):
        check_transition(DeliveryState.ACCEPTED, DeliveryState.DELIVERED)
    assert sources_of(DeliveryState.DELIVERED) == {DeliveryState.IN_FLIGHT}
    assert set(SMPP_MESSAGE_STATE) == set(DeliveryState) == set(RECEIPT_STAT)


def test_sender_patterns() -> None:
    assert sender_pattern_matches("*@example.com", "Alice@Example.COM")
    assert not sender_pattern_matches("*@example.com", "alice@sub.example.com")
    assert not sender_pattern_matches("*@example.com", "example.com")
    assert sender_pattern_matches("bob@example.org", "BOB@example.org")
    assert not sender_pattern_matches("bob@example.org", "bobby@example.org")


def test_networks_v4_v6_and_mapped() -> None:
    net = Network(id=1, account_id=1, cidr="192.0.2.0/24")
    assert net.contains("192.0.2.7")
    assert net.contains("::ffff:192.0.2.7")
    assert not net.contains("192.0.3.1")
    assert not net.contains("not-an-ip")
    v6 = Network(id=2, account_id=1, cidr="2001:db8::/32")
    assert v6.contains("2001:db8::1") and not v6.contains("192.0.2.7")


def test_settings_round_trip_and_unknown_keys() -> None:
    s = Settings(sms_template="{body}", default_country="GB")
    assert Settings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown setting"):
        Settings.from_dict({"colour": "blue"})


def test_options_round_trip() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    o = Options(
        valid_until=now, scheduled_at=now - timedelta(hours=1), report=ReportOn.ALL, extra={"a": 1}
    )
    assert Options.from_dict(o.to_dict()) == o


@given(st.integers(1, 60), st.floats(0, 0.999999))
def test_retry_delay_is_bounded_and_grows(attempts: int, draw: float) -> None:
    policy = RetryPolicy(base_seconds=10, max_seconds=3600)
    delay = policy.delay(attempts, draw).total_seconds()
    ceiling = min(3600, 10 * 2 ** (attempts - 1))
    assert 0.1 * ceiling - 1e-9 <= delay <= ceiling + 1e-9


def test_retry_stops_at_validity() -> None:
    policy = RetryPolicy(base_seconds=10, max_seconds=3600)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert policy.next_attempt(attempts=1, now=now, valid_until=now + timedelta(hours=1), draw=0.5)
    assert (
        policy.next_attempt(attempts=10, now=now, valid_until=now + timedelta(seconds=5), draw=0.5)
        is None
    )


def _full_parse(raw: str) -> str | None:
    import phonenumbers

    try:
        parsed = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _example_numbers() -> list[str]:
    import phonenumbers

    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        example = phonenumbers.example_number(region)
        if example is not None:
            found.append(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    return found


EXAMPLES = _example_numbers()


@given(
    st.one_of(
        st.sampled_from(EXAMPLES),
        st.builds(
            lambda e, d: e[:-1] + d, st.sampled_from(EXAMPLES), st.sampled_from("0123456789")
        ),
        st.text("0123456789", min_size=1, max_size=17).map(lambda d: "+" + d),
    )
)
def test_fast_international_path_agrees_with_libphonenumber(raw: str) -> None:
    from teleway.core.numbers import _international_fast

    fast = _international_fast(raw[1:])
    if fast is not None:
        assert fast == _full_parse(raw)
    expected = _full_parse(raw)
    if expected is None:
        with pytest.raises(InvalidNumber):
            normalise_number.__wrapped__(raw)
    else:
        assert normalise_number.__wrapped__(raw) == expected


def test_every_regions_example_number_is_valid() -> None:
    assert len(EXAMPLES) > 200
    for raw in EXAMPLES:
        assert normalise_number.__wrapped__(raw) == raw


@pytest.mark.parametrize(
    ("report", "state", "wanted"),
    [
        (ReportOn.NONE, DeliveryState.DELIVERED, False),
        (ReportOn.FINAL, DeliveryState.DELIVERED, True),
        (ReportOn.FINAL, DeliveryState.EXPIRED, True),
        (ReportOn.FINAL, DeliveryState.IN_FLIGHT, False),
        (ReportOn.FAILURE, DeliveryState.DELIVERED, False),
        (ReportOn.FAILURE, DeliveryState.UNDELIVERABLE, True),
        (ReportOn.FAILURE, DeliveryState.CANCELLED, True),
        (ReportOn.FAILURE, DeliveryState.QUEUED, False),
        (ReportOn.ALL, DeliveryState.IN_FLIGHT, True),
        (ReportOn.ALL, DeliveryState.DELIVERED, True),
    ],
)
def test_report_on_wants(report: ReportOn, state: DeliveryState, wanted: bool) -> None:
    assert report.wants(state) is wanted


def test_options_from_early_stored_bool_report() -> None:
    assert Options.from_dict({"report": True}).report is ReportOn.FINAL
    assert Options.from_dict({"report": False}).report is ReportOn.NONE
    assert Options.from_dict({}).report is ReportOn.NONE
    assert Options.from_dict({"report": "failure"}).report is ReportOn.FAILURE


def test_settings_new_fields_round_trip() -> None:
    s = Settings(notify_on=ReportOn.FINAL, smpp_default_device=Device.MOBILE, check_spf=True)
    back = Settings.from_dict(s.to_dict())
    assert back == s
    assert back.notify_on is ReportOn.FINAL and back.smpp_default_device is Device.MOBILE


# --- quick_init: the frozen values' fast constructor --------------------------------------

QUICK = [
    model.Content, model.Options, model.Recipient, model.Submission, model.Message,
    model.Delivery, model.DeliveryEvent, model.Accepted, model.HeldPart, model.OutboxItem,
    SubmitRequest,
]  # fmt: skip
_SAMPLE = object()


def _required(cls: type) -> dict[str, object]:
    """A value for every field without a default (any object: neither init checks types)."""
    return {
        f.name: _SAMPLE
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }


@pytest.mark.parametrize("cls", QUICK, ids=lambda c: c.__name__)
@given(data=st.data())
def test_quick_init_builds_what_the_dataclass_init_builds(cls: type, data: st.DataObject) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    given_too = data.draw(st.sets(st.sampled_from(names)))
    kwargs = _required(cls) | {name: (name, 1) for name in given_too}
    quick = cls(**kwargs)
    slow = object.__new__(cls)
    cls.__dataclass_init__(slow, **kwargs)
    assert quick.__dict__ == slow.__dict__
    assert list(quick.__dict__) == names  # same attributes, in field order
    assert quick == slow
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.id = "changed"
    assert dataclasses.replace(quick) == quick


@pytest.mark.parametrize("cls", QUICK, ids=lambda c: c.__name__)
def test_quick_init_refuses_what_the_dataclass_init_refuses(cls: type) -> None:
    required = _required(cls)
    with pytest.raises(TypeError):
        cls(**required, not_a_field=1)
    for name in required:
        with pytest.raises(TypeError):
            cls(**{k: v for k, v in required.items() if k != name})
    with pytest.raises(TypeError):
        cls(_SAMPLE, **required)  # keyword-only, like the dataclass's


def test_quick_init_default_factories_give_fresh_values_and_post_init_runs() -> None:
    assert model.Options().extra == {} and model.Options().extra is not model.Options().extra

    @model.quick_init
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Checked:
        low: int
        high: int = 10

        def __post_init__(self) -> None:
            if self.low > self.high:
                raise ValueError("low above high")

    assert Checked(low=3).high == 10
    with pytest.raises(ValueError, match="low above high"):
        Checked(low=11)
