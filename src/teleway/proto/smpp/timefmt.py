"""SMPP v3.4 time formats (spec 7.1): schedule_delivery_time, validity_period, final_date.

Absolute time ``YYMMDDhhmmsstnnp``: local time of the sender plus its offset from UTC in
quarter hours (``nn``, 00-48) and direction ``p`` (``+`` ahead of UTC, ``-`` behind);
``t`` is tenths of a second.  We return an aware ``datetime`` in UTC.

Relative time ``YYMMDDhhmmss000R``: a duration from "now" (the SMSC's current time).  We
return a ``timedelta`` counting a year as 365 days and a month as 30 days: the spec does not
say how long they are, and a fixed length keeps the conversion reversible and independent
of the current date.  Formatting a ``timedelta`` back writes as many whole years (365 d) and
months (30 d) as fit, so ``"000040000000000R"`` (40 days) is re-written
``"000110000000000R"`` (1 month 10 days): same duration.

Years ``YY`` are 2000 + YY (SMPP traffic predates nothing else we care about).

An empty string means "not given" and yields None.  Anything else that is not one of the two
formats raises :class:`SmppError` with the status chosen by the caller: ``ESME_RINVSCHED``
for schedule_delivery_time, ``ESME_RINVEXPIRY`` for validity_period.  No clock is read here:
:func:`resolve` takes ``now`` as a parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from teleway.proto.smpp.constants import CommandStatus
from teleway.proto.smpp.errors import SmppError

__all__ = [
    "DAYS_PER_MONTH",
    "DAYS_PER_YEAR",
    "format_absolute",
    "format_relative",
    "parse_absolute",
    "parse_relative",
    "parse_time",
    "resolve",
]

#: Length of a relative-time year and month (see module docstring).
DAYS_PER_YEAR = 365
DAYS_PER_MONTH = 30

_QUARTER = timedelta(minutes=15)
_MAX_QUARTERS = 48  # spec 7.1.1: nn is 00-48


def _fail(text: str, why: str, status: int) -> SmppError:
    return SmppError(f"invalid SMPP time {text!r}: {why}", command_status=status)


def _digits(text: str, status: int) -> list[int]:
    body = text[:15]
    if len(text) != 16 or not (body.isascii() and body.isdigit()):
        raise _fail(text, "expected 16 characters YYMMDDhhmmsstnn + '+', '-' or 'R'", status)
    return [int(body[i : i + 2]) for i in range(0, 12, 2)] + [int(body[12]), int(body[13:15])]


def parse_absolute(text: str, *, status: int = CommandStatus.ESME_RINVSCHED) -> datetime | None:
    """``YYMMDDhhmmsstnnp`` -> aware UTC datetime; ``""`` -> None. Raises SmppError(status)."""
    if text == "":
        return None
    if len(text) != 16 or text[15] not in "+-":
        raise _fail(text, "not an absolute time (must end with '+' or '-')", status)
    yy, mo, dd, hh, mi, ss, tenths, quarters = _digits(text, status)
    if quarters > _MAX_QUARTERS:
        raise _fail(text, f"UTC offset {quarters} quarter hours exceeds 48", status)
    try:
        local = datetime(2000 + yy, mo, dd, hh, mi, ss, tenths * 100_000, tzinfo=UTC)
    except ValueError as exc:
        raise _fail(text, str(exc), status) from exc
    offset = quarters * _QUARTER
    # local = UTC + offset for '+', so UTC = local - offset.
    return local - offset if text[15] == "+" else local + offset


def parse_relative(text: str, *, status: int = CommandStatus.ESME_RINVEXPIRY) -> timedelta | None:
    """``YYMMDDhhmmss000R`` -> timedelta; ``""`` -> None. Raises SmppError(status).

    The ``tnn`` digits should be ``000`` (spec 7.1.2); other digits are tolerated and
    ignored, as some ESMEs fill them.  Hours/minutes/seconds may exceed 23/59/59 (a
    duration, not a clock time).
    """
    if text == "":
        return None
    if len(text) != 16 or text[15] != "R":
        raise _fail(text, "not a relative time (must end with 'R')", status)
    yy, mo, dd, hh, mi, ss, _tenths, _quarters = _digits(text, status)
    return timedelta(
        days=yy * DAYS_PER_YEAR + mo * DAYS_PER_MONTH + dd, hours=hh, minutes=mi, seconds=ss
    )


def parse_time(
    text: str, *, status: int = CommandStatus.ESME_RINVSCHED
) -> datetime | timedelta | None:
    """Either format: absolute -> UTC datetime, relative -> timedelta, ``""`` -> None."""
    if text.endswith("R"):
        return parse_relative(text, status=status)
    return parse_absolute(text, status=status)


def resolve(
    text: str, *, now: datetime, status: int = CommandStatus.ESME_RINVSCHED
) -> datetime | None:
    """The absolute UTC instant ``text`` designates, a relative time counting from ``now``."""
    value = parse_time(text, status=status)
    if isinstance(value, timedelta):
        return (now + value).astimezone(UTC)
    return value


def format_absolute(moment: datetime) -> str:
    """Aware datetime -> ``YYMMDDhhmmsstnnp`` in its own UTC offset.

    An offset that is not a whole number of quarter hours (or beyond 12 h) is written as UTC
    (``00+``).  Tenths of a second are truncated.  Raises ValueError for a naive datetime or
    a year outside 2000-2099.
    """
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("format_absolute needs an aware datetime")
    if offset % _QUARTER or abs(offset) > _MAX_QUARTERS * _QUARTER:
        moment = moment.astimezone(UTC)
        offset = timedelta(0)
    if not 2000 <= moment.year <= 2099:
        raise ValueError(f"year {moment.year} cannot be written as YY (2000-2099)")
    quarters = abs(offset) // _QUARTER
    sign = "-" if offset < timedelta(0) else "+"
    return (
        f"{moment.year % 100:02d}{moment.month:02d}{moment.day:02d}"
        f"{moment.hour:02d}{moment.minute:02d}{moment.second:02d}"
        f"{moment.microsecond // 100_000:d}{quarters:02d}{sign}"
    )


def format_relative(duration: timedelta) -> str:
    """timedelta -> ``YYMMDDhhmmss000R`` (365-day years, 30-day months, whole seconds).

    Raises ValueError for a negative duration or one of 100 years or more.
    """
    if duration < timedelta(0):
        raise ValueError("a relative SMPP time cannot be negative")
    days = duration.days
    years, days = divmod(days, DAYS_PER_YEAR)
    months, days = divmod(days, DAYS_PER_MONTH)
    if years > 99:
        raise ValueError("a relative SMPP time must be under 100 years")
    hours, rest = divmod(duration.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{years:02d}{months:02d}{days:02d}{hours:02d}{minutes:02d}{seconds:02d}000R"
