"""Phone numbers: everything the gateway stores is E.164, checked with libphonenumber's data."""

from __future__ import annotations

import functools
import re

import phonenumbers

_SEPARATORS = re.compile(r"[\s.\-()/]")
_MAX_INPUT = 40


class InvalidNumber(ValueError):
    """A recipient that cannot be a phone number; `reason` says why, for the wire reply."""

    def __init__(self, raw: str, reason: str) -> None:
        super().__init__(f"{raw!r}: {reason}")
        self.raw = raw
        self.reason = reason


@functools.lru_cache(maxsize=4096)
def normalise_number(raw: str, default_country: str | None = None) -> str:
    """Return the E.164 form of `raw`.

    Results are cached (4,096 entries, LRU): libphonenumber's parse and validation cost about
    80 microseconds per number, and gateways see the same recipients again and again.

    Accepted: `+17816170000`, `17816170000`, `1-781-6170000`, `001 781 617 0000`, dots or dashes
    as separators. Numbers are international unless `default_country` (ISO 3166 alpha-2) is given
    and the digits are not a valid international number, in which case they are read as
    national numbers of that country.
    """
    text = raw.strip()
    if not text or len(text) > _MAX_INPUT:
        raise InvalidNumber(raw, "empty or too long")
    digits = _SEPARATORS.sub("", text)
    international = digits.startswith("+") or digits.startswith("00")
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    body = digits[1:] if digits.startswith("+") else digits
    if not body.isdigit():
        raise InvalidNumber(raw, "only digits and separators are allowed")
    if international:
        fast = _international_fast(body)
        if fast is not None:
            return fast
    candidates = ["+" + body]
    if not international and default_country:
        candidates.append(body)
    for candidate in candidates:
        region = None if candidate.startswith("+") else default_country
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    raise InvalidNumber(raw, "not a valid phone number")


def _international_fast(digits: str) -> str | None:
    """E.164 of international `digits` without libphonenumber's generic parser, or None.

    Country calling codes are prefix-free (ITU-T E.164), so the code is the first 1-3 digits
    found in libphonenumber's table; the number is then validated by libphonenumber itself.
    Only a valid result is returned: anything else (a trunk 0 after the country code, an
    unknown code) goes through `phonenumbers.parse`, which decides as before. A property test
    checks both paths agree.
    """
    if not digits.isdigit() or digits[0] == "0":  # no country code starts with 0
        return None
    for size in (1, 2, 3):
        code = int(digits[:size]) if len(digits) > size else 0
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            national = digits[size:]
            if not national or national[0] == "0" or len(national) > 17:
                return None
            number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
            return "+" + digits if phonenumbers.is_valid_number(number) else None
    return None


def region_of(e164: str) -> str | None:
    """ISO region code of an E.164 number (used by routing and the portal)."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return None
