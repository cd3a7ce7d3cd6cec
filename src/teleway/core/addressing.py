"""E-mail recipients as phone numbers: `<number>@<device>.<gateway domain>`.

The product has always been addressed this way (seeds/smtp-gateway.txt): the local part is an
international phone number written with digits and `+`, `-` or `.`; the first label of the domain
names the device (SMS, Business, Mobile, Home, Fax; any case) and may be left out, which means SMS.
Everything here is pure: the SMTP ingress answers each RCPT TO from what `parse_address` says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from teleway.core.model import Device, Recipient
from teleway.core.numbers import InvalidNumber, normalise_number

# RFC 5321 4.5.3.1.1 / 4.5.3.1.2: local part at most 64 octets, domain at most 255.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255

DEVICE_NAMES = "SMS, Business, Mobile, Home, Fax"

_LOCAL = re.compile(r"\+?[0-9][0-9.\-]*")


class AddressProblem(ValueError):
    """Why a recipient address is refused; `kind` picks the SMTP reply.

    - `relay`: the domain is not one of the gateway's (RFC 5321 3.6.2: no open relay)
    - `device`: the first label names no device we deliver to
    - `number`: the local part is not a phone number
    - `syntax`: not an address at all
    """

    def __init__(self, address: str, kind: str, reason: str) -> None:
        super().__init__(f"{address!r}: {reason}")
        self.address = address
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class PhoneAddress:
    """One recipient address taken apart: the E.164 number, the device, the gateway domain."""

    number: str  # E.164
    device: Device
    domain: str  # the gateway domain it was sent to, lower case

    @property
    def recipient(self) -> Recipient:
        return Recipient(number=self.number, device=self.device)


def _domain_of(address: str) -> tuple[str, str]:
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise AddressProblem(address, "syntax", "not an e-mail address")
    if len(local) > MAX_LOCAL_PART or len(domain) > MAX_DOMAIN:
        raise AddressProblem(address, "syntax", "address too long (RFC 5321 4.5.3.1)")
    return local, domain.lower().rstrip(".")


def is_gateway_domain(domain: str, domains: Iterable[str]) -> bool:
    """True when `domain` is a gateway domain or `<device>.<gateway domain>` (any device name,
    even unknown: the answer to an unknown device is 'no such device', not 'relay denied')."""
    domain = domain.lower().rstrip(".")
    for own in domains:
        own = own.lower()
        if domain == own:
            return True
        head, dot, tail = domain.partition(".")
        if dot and tail == own and head:
            return True
    return False


def parse_address(
    address: str, domains: Iterable[str], *, default_country: str | None = None
) -> PhoneAddress:
    """Take `<number>@<device>.<domain>` apart or raise AddressProblem.

    `domains` are the gateway domains (configuration, lower case). The number is normalised to
    E.164 with libphonenumber; `default_country` (the account's) reads national numbers.
    """
    local, domain = _domain_of(address)
    own = [d.lower() for d in domains]
    device = Device.SMS
    matched = ""
    if domain in own:
        matched = domain
    else:
        head, dot, tail = domain.partition(".")
        if not dot or tail not in own:
            raise AddressProblem(address, "relay", "relay denied: not a domain of this gateway")
        try:
            device = Device(head)
        except ValueError:
            raise AddressProblem(
                address, "device", f"unknown device {head!r}; use one of {DEVICE_NAMES}"
            ) from None
        matched = tail
    if not _LOCAL.fullmatch(local):
        raise AddressProblem(
            address, "number", "the local part must be a phone number such as +17816170000"
        )
    try:
        number = normalise_number(local, default_country)
    except InvalidNumber as exc:
        raise AddressProblem(address, "number", f"not a phone number: {exc.reason}") from exc
    return PhoneAddress(number=number, device=device, domain=matched)
