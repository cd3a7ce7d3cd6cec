"""SMPP absolute and relative time formats (spec 7.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleway.proto.smpp import CommandStatus, SmppError
from teleway.proto.smpp.timefmt import (
    format_absolute,
    format_relative,
    parse_absolute,
    parse_relative,
    parse_time,
    resolve,
)


def test_empty_means_not_given() -> None:
    assert parse_absolute("") is None
    assert parse_relative("") is None
    assert parse_time("") is None
    assert resolve("", now=datetime(2024, 1, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("240102150405000+", datetime(2024, 1, 2, 15, 4, 5, tzinfo=UTC)),
        ("240102150405004+", datetime(2024, 1, 2, 14, 4, 5, tzinfo=UTC)),  # UTC+1h
        ("240102150405308-", datetime(2024, 1, 2, 17, 4, 5, 300_000, tzinfo=UTC)),  # UTC-2h
        ("240101001500004+", datetime(2023, 12, 31, 23, 15, 0, tzinfo=UTC)),
        ("991231235959948-", datetime(2100, 1, 1, 11, 59, 59, 900_000, tzinfo=UTC)),
    ],
)
def test_parse_absolute(text: str, expected: datetime) -> None:
    value = parse_absolute(text)
    assert value == expected
    assert value is not None and value.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("000000000010000R", timedelta(seconds=10)),
        ("000001000000000R", timedelta(days=1)),
        ("000100000000000R", timedelta(days=30)),
        ("010000000000000R", timedelta(days=365)),
        ("000000480000000R", timedelta(hours=48)),  # durations may exceed clock ranges
        ("010203040506000R", timedelta(days=365 + 60 + 3, hours=4, minutes=5, seconds=6)),
    ],
)
def test_parse_relative(text: str, expected: timedelta) -> None:
    assert parse_relative(text) == expected
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2401021504050",  # too short
        "240102150405000+0",  # too long
        "24010215040500+",  # 15 characters
        "240102150405000X",  # bad direction
        "2401021504050a0+",  # non digit
        "241302150405000+",  # month 13
        "240230150405000+",  # 30 February
        "240102250405000+",  # hour 25
        "240102150405049+",  # 49 quarter hours
        "２40102150405000+",  # non-ASCII digit
    ],
)
def test_invalid_absolute_uses_the_callers_status(text: str) -> None:
    for status in (CommandStatus.ESME_RINVSCHED, CommandStatus.ESME_RINVEXPIRY):
        with pytest.raises(SmppError) as info:
            parse_time(text, status=status)
        assert info.value.command_status == status


def test_defaults_and_format_mismatch() -> None:
    with pytest.raises(SmppError) as sched:
        parse_absolute("000001000000000R")  # relative given where absolute expected
    assert sched.value.command_status == CommandStatus.ESME_RINVSCHED
    with pytest.raises(SmppError) as expiry:
        parse_relative("240102150405000+")
    assert expiry.value.command_status == CommandStatus.ESME_RINVEXPIRY
    with pytest.raises(SmppError):
        parse_relative("0000010000a0000R")


def test_resolve_relative_from_now() -> None:
    now = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert resolve("000000010000000R", now=now) == datetime(2024, 1, 1, 13, 0, tzinfo=UTC)
    assert resolve("240102150405000+", now=now) == datetime(2024, 1, 2, 15, 4, 5, tzinfo=UTC)
    local_now = datetime(2024, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert resolve("000000000100000R", now=local_now) == datetime(2024, 1, 1, 12, 1, tzinfo=UTC)


def test_format_absolute_keeps_quarter_hour_offsets() -> None:
    tz = timezone(timedelta(hours=5, minutes=45))
    assert format_absolute(datetime(2024, 1, 2, 15, 4, 5, 340_000, tzinfo=tz)) == "240102150405323+"
    west = timezone(-timedelta(hours=3, minutes=30))
    assert format_absolute(datetime(2024, 1, 2, 1, 2, 3, tzinfo=west)) == "240102010203014-"
    odd = timezone(timedelta(minutes=7))
    assert format_absolute(datetime(2024, 1, 2, 0, 7, tzinfo=odd)) == "240102000000000+"


def test_format_errors() -> None:
    with pytest.raises(ValueError):
        format_absolute(datetime(2024, 1, 1))
    with pytest.raises(ValueError):
        format_absolute(datetime(1999, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError):
        format_relative(timedelta(seconds=-1))
    with pytest.raises(ValueError):
        format_relative(timedelta(days=365 * 100))


def test_format_relative() -> None:
    assert format_relative(timedelta(days=40)) == "000110000000000R"
    assert format_relative(timedelta(hours=25, seconds=1)) == "000001010001000R"
    assert format_relative(timedelta(0)) == "000000000000000R"


aware = st.datetimes(
    min_value=datetime(2000, 1, 2),
    max_value=datetime(2099, 12, 30),
    timezones=st.integers(-48, 48).map(lambda q: timezone(timedelta(minutes=15 * q))),
)


@given(aware)
def test_absolute_round_trip(moment: datetime) -> None:
    truncated = moment.replace(microsecond=moment.microsecond // 100_000 * 100_000)
    assert parse_absolute(format_absolute(moment)) == truncated


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=365 * 99)))
def test_relative_round_trip(duration: timedelta) -> None:
    whole = timedelta(days=duration.days, seconds=duration.seconds)
    text = format_relative(duration)
    assert len(text) == 16 and text.endswith("000R")
    assert parse_relative(text) == whole
