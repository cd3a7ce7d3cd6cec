"""Delivery receipt text (SMPP v3.4 Appendix B).

An SMSC reports the outcome of a message in a ``deliver_sm`` with esm_class 0x04 whose
short_message reads::

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...

Appendix B calls this format "SMSC vendor specific", and real SMSCs vary. The parser is
tolerant of what we have seen:

* keys in any case, ``submit date`` also as ``submit_date`` / ``submitdate``;
* dates of 10 (YYMMDDhhmm), 12 (YYMMDDhhmmss) or 14 (YYYYMMDDhhmmss) digits; a date that does
  not parse is None (the raw value stays in ``Receipt.raw``);
* any field but ``id`` missing (None), fields in another order;
* unknown fields kept in ``Receipt.extra`` (key as written -> value), as is a repeated known
  field (the first occurrence is the one parsed);
* ids in decimal or hex: ``message_id`` is kept exactly as sent, and
  :func:`normalise_message_id` gives the forms to compare it with the submit_sm_resp id;
* stat words of Appendix B and their long spellings (DELIVERED, UNDELIVERABLE, ...).

``text:`` is always last and runs to the end of the string, so it may contain colons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from teleway.proto.sms.errors import ReceiptError

__all__ = [
    "Receipt",
    "ReceiptState",
    "build_receipt_text",
    "message_ids_match",
    "normalise_message_id",
    "parse_receipt_text",
]

RECEIPT_TEXT_CHARS = 20
"""Appendix B: the ``text`` field carries the first 20 characters of the original message."""


class ReceiptState(IntEnum):
    """Final (or interim) state with its SMPP ``message_state`` number (SMPP v3.4 5.2.28)."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8

    @property
    def stat_word(self) -> str:
        """The 7-character word of Appendix B Table B-2 (``DELIVRD``, ``UNDELIV``, ...)."""
        return _STAT_WORDS[self]

    @classmethod
    def from_stat_word(cls, word: str) -> ReceiptState | None:
        """Tolerant lookup: Appendix B words and long forms, any case; None if unknown."""
        return _STAT_LOOKUP.get(word.strip().upper())


_STAT_WORDS: dict[ReceiptState, str] = {
    ReceiptState.ENROUTE: "ENROUTE",
    ReceiptState.DELIVERED: "DELIVRD",
    ReceiptState.EXPIRED: "EXPIRED",
    ReceiptState.DELETED: "DELETED",
    ReceiptState.UNDELIVERABLE: "UNDELIV",
    ReceiptState.ACCEPTED: "ACCEPTD",
    ReceiptState.UNKNOWN: "UNKNOWN",
    ReceiptState.REJECTED: "REJECTD",
}
_STAT_LOOKUP: dict[str, ReceiptState] = {w: s for s, w in _STAT_WORDS.items()}
_STAT_LOOKUP.update(
    {
        "DELIVERED": ReceiptState.DELIVERED,
        "UNDELIVERABLE": ReceiptState.UNDELIVERABLE,
        "UNDELIVERED": ReceiptState.UNDELIVERABLE,
        "FAILED": ReceiptState.UNDELIVERABLE,  # seen from some SMSCs; not in Appendix B
        "ACCEPTED": ReceiptState.ACCEPTED,
        "REJECTED": ReceiptState.REJECTED,
        "EN_ROUTE": ReceiptState.ENROUTE,
    }
)


@dataclass(frozen=True, kw_only=True)
class Receipt:
    """A parsed receipt. Missing fields are None; ``message_id`` is the id exactly as sent."""

    message_id: str
    submitted: int | None = None
    delivered: int | None = None
    submit_date: datetime | None = None
    done_date: datetime | None = None
    stat: str | None = None
    state: ReceiptState | None = None
    err: str | None = None
    text: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    raw: str = ""

    @property
    def err_code(self) -> int | None:
        """``err`` as a number: decimal digits, or hex with a ``0x`` prefix; else None."""
        if self.err is None:
            return None
        value = self.err.strip()
        if value.lower().startswith("0x"):
            try:
                return int(value[2:], 16)
            except ValueError:
                return None
        return int(value) if value.isascii() and value.isdigit() else None


# A key starts the string or follows whitespace and ends at a colon; "submit date" and
# "done date" contain a space (or underscore).
_KEY_RE = re.compile(r"(?:^|(?<=\s))([A-Za-z][A-Za-z0-9_]*(?:[ _][Dd][Aa][Tt][Ee])?)[ \t]*:")

_KNOWN = {
    "id": "message_id",
    "sub": "submitted",
    "dlvrd": "delivered",
    "submitdate": "submit_date",
    "donedate": "done_date",
    "stat": "stat",
    "err": "err",
    "text": "text",
}


def _norm_key(key: str) -> str:
    return key.lower().replace(" ", "").replace("_", "")


def _parse_int(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _parse_date(value: str) -> datetime | None:
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        return None
    fmt = {10: "%y%m%d%H%M", 12: "%y%m%d%H%M%S", 14: "%Y%m%d%H%M%S"}.get(len(value))
    if fmt is None:
        return None
    try:
        return datetime.strptime(value, fmt)
    except ValueError:
        return None


def parse_receipt_text(s: str) -> Receipt:
    """Parse receipt text. Raises :class:`ReceiptError` when ``s`` is not a receipt.

    A text is a receipt when it has an ``id`` field and at least one of ``stat``, ``dlvrd``,
    ``sub``, ``done date``, ``submit date``, ``err``.
    """
    raw = s
    # Leading blanks and NUL terminators go; trailing blanks may belong to the text field.
    s = s.strip("\x00").lstrip()
    values: dict[str, str] = {}
    extra: dict[str, str] = {}
    matches = list(_KEY_RE.finditer(s))
    for i, m in enumerate(matches):
        key = m.group(1)
        norm = _norm_key(key)
        if norm == "text":
            values.setdefault("text", s[m.end() :])
            break
        end = matches[i + 1].start() if i + 1 < len(matches) else len(s)
        value = s[m.end() : end].strip().strip("\x00")
        name = _KNOWN.get(norm)
        if name is None or name in values:
            # Unknown, or a known key repeated: kept as written, the first one wins.
            extra.setdefault(key, value)
        else:
            values[name] = value
    message_id = values.get("message_id")
    others = {"submitted", "delivered", "submit_date", "done_date", "stat", "err"}
    if not message_id or not others.intersection(values):
        raise ReceiptError(f"not a delivery receipt: {raw[:60]!r}")
    stat = values.get("stat")
    return Receipt(
        message_id=message_id,
        submitted=_parse_int(values["submitted"]) if "submitted" in values else None,
        delivered=_parse_int(values["delivered"]) if "delivered" in values else None,
        submit_date=_parse_date(values["submit_date"]) if "submit_date" in values else None,
        done_date=_parse_date(values["done_date"]) if "done_date" in values else None,
        stat=stat or None,
        state=ReceiptState.from_stat_word(stat) if stat else None,
        err=values.get("err") or None,
        text=values.get("text"),
        extra=extra,
        raw=raw,
    )


def _check_token(name: str, value: str) -> None:
    if not value or any(ch.isspace() for ch in value):
        raise ReceiptError(f"{name} must be non-empty and without spaces, got {value!r}")


def build_receipt_text(
    *,
    message_id: str,
    submitted: int,
    delivered: int,
    submit_date: datetime,
    done_date: datetime,
    stat: str | ReceiptState,
    err: int | str,
    text: str,
    with_seconds: bool = False,
) -> str:
    """The Appendix B text. Counts and a numeric ``err`` are zero-padded to 3 digits, dates are
    YYMMDDhhmm (YYMMDDhhmmss with ``with_seconds``), ``text`` is cut to its first 20 characters.
    A :class:`ReceiptState` gives its 7-letter word; a ``stat`` string is used as given.
    """
    _check_token("message_id", message_id)
    stat_word = stat.stat_word if isinstance(stat, ReceiptState) else stat
    _check_token("stat", stat_word)
    for name, count in (("submitted", submitted), ("delivered", delivered)):
        if count < 0:
            raise ReceiptError(f"{name} must not be negative, got {count}")
    if isinstance(err, int):
        if err < 0:
            raise ReceiptError(f"err must not be negative, got {err}")
        err_text = f"{err:03d}"
    else:
        _check_token("err", err)
        err_text = err
    date_fmt = "%y%m%d%H%M%S" if with_seconds else "%y%m%d%H%M"
    return (
        f"id:{message_id} sub:{submitted:03d} dlvrd:{delivered:03d} "
        f"submit date:{submit_date.strftime(date_fmt)} done date:{done_date.strftime(date_fmt)} "
        f"stat:{stat_word} err:{err_text} text:{text[:RECEIPT_TEXT_CHARS]}"
    )


def normalise_message_id(s: str) -> set[str]:
    """The comparable forms of a message id.

    Upstreams report the same id differently in ``submit_sm_resp`` and in the receipt (hex in
    one, decimal in the other; leading zeros; case). The set holds: the id as given (stripped
    of whitespace), lower-cased, without a ``0x`` prefix, without leading zeros, and, when the
    id reads as a number, its decimal->hex and hex->decimal conversions (lower-case, no
    leading zeros). Two ids *may* be the same message when their sets intersect.

    Because a digit string is both valid decimal and valid hex, distinct ids can collide (e.g.
    decimal 16 and hex "10"); match within one upstream's ids only, and prefer an exact match.
    """
    given = s.strip()
    forms = {given, given.lower()}
    body = given.lower()
    if body.startswith("0x") and len(body) > 2:
        body = body[2:]
        forms.add(body)
    if body:
        forms.add(body.lstrip("0") or "0")
    if body.isascii() and body.isdigit():
        forms.add(format(int(body), "x"))
        forms.add(str(int(body)))
    if body and body.isascii() and all(ch in "0123456789abcdef" for ch in body):
        forms.add(str(int(body, 16)))
    return forms


def message_ids_match(a: str, b: str) -> bool:
    """True when :func:`normalise_message_id` forms of ``a`` and ``b`` intersect."""
    return a.strip() == b.strip() or bool(normalise_message_id(a) & normalise_message_id(b))
