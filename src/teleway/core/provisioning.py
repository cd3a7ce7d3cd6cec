"""Validation and normalisation of everything an operator provisions.

Pure functions: each takes what an operator typed (CLI argument, provisioning-file value, portal
form) and returns the canonical form the store keeps, or raises `ProvisioningError(field, value,
reason)`. The store, the CLI and the provisioning file all go through here, so one input has one
meaning everywhere.

Canonical forms:

* account names and usernames: lower-case (names are case-insensitive);
* sender patterns: `user@domain` or `*@domain`, lower-case, the domain in IDNA A-labels
  (`bücher.example` -> `xn--bcher-kva.example`);
* networks: `ipaddress` network text; host bits are cleared (`192.0.2.7/24` -> `192.0.2.0/24`,
  parsed with strict=False), a bare address becomes a /32 or /128, and an IPv4-mapped IPv6
  network (`::ffff:10.0.0.0/104`) becomes its IPv4 form, because connections from IPv4-mapped
  addresses are matched as IPv4;
* SMPP system_id / system_type: kept as given (SMPP compares them octet by octet).
"""

from __future__ import annotations

import ipaddress
import math
import re
import string
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import phonenumbers

from teleway.core.model import Device, LongSmsPolicy, PushMode, ReportOn, Role, Settings
from teleway.core.senders import WILDCARD
from teleway.core.templates import PLACEHOLDERS, template_problems


class ProvisioningError(ValueError):
    """An input that cannot be provisioned. `field` names what (`sender`, `settings.max_sms_parts`),
    `value` is what was given (never a password: callers pass a placeholder), `reason` says why."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"{field} {value!r}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason


class UnknownObject(ProvisioningError):
    """The named account, user, sender, network or credential does not exist."""


class Conflict(ProvisioningError):
    """The object exists already or belongs to something else (a uniqueness rule)."""


HIDDEN = "<hidden>"
"""What `ProvisioningError.value` holds when the rejected value is a secret."""

ACCOUNT_NAME_MAX = 64
USERNAME_MAX = 128  # users.username is String(128)
EMAIL_MAX = 254  # RFC 5321 4.5.3.1.3 path limit minus the angle brackets
LOCAL_PART_MAX = 64  # RFC 5321 4.5.3.1.1
DOMAIN_MAX = 253  # RFC 1035 2.3.4 (255 octets on the wire)
LABEL_MAX = 63  # RFC 1035 2.3.4
SYSTEM_ID_MAX = 15  # SMPP v3.4 5.2.1: C-Octet String of 16 octets including the NUL
SYSTEM_TYPE_MAX = 12  # SMPP v3.4 5.2.3: C-Octet String of 13 octets including the NUL
MAX_BINDS_LIMIT = 1000
MAX_SMS_PARTS_LIMIT = 255  # 3GPP TS 23.040 9.2.3.24.1: the part count is one octet
ALPHANUMERIC_SENDER_MAX = 11  # 3GPP TS 23.040 9.1.2.5: 11 GSM 7-bit characters
E164_DIGITS_MAX = 15  # ITU-T E.164 section 6
ALLOWED_SENDERS_MAX = 1000  # entries of settings.allowed_senders
TEMPLATE_MAX = 1000
URL_MAX = 2048
TEMPLATE_FIELDS: frozenset[str] = PLACEHOLDERS  # what core.templates.sms_text fills in

_ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,127}")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_LOCAL_PART_FORBIDDEN = set(' <>()[]\\,;:"@')


def _ascii_visible(text: str) -> bool:
    return all(0x21 <= ord(char) <= 0x7E for char in text)


def normalise_account_name(value: str) -> str:
    """`[a-z0-9][a-z0-9._-]{0,63}` after lower-casing."""
    text = value.strip().lower()
    if not text:
        raise ProvisioningError("account", value, "an account name is required")
    if len(text) > ACCOUNT_NAME_MAX:
        raise ProvisioningError("account", value, f"at most {ACCOUNT_NAME_MAX} characters")
    if not _ACCOUNT_NAME.fullmatch(text):
        raise ProvisioningError(
            "account",
            value,
            "use letters a-z, digits, '.', '_' and '-', starting with a letter or digit",
        )
    return text


def normalise_username(value: str) -> str:
    """`[a-z0-9][a-z0-9._@+-]{0,127}` after lower-casing (so an e-mail address is a username)."""
    text = value.strip().lower()
    if not text:
        raise ProvisioningError("username", value, "a username is required")
    if len(text) > USERNAME_MAX:
        raise ProvisioningError("username", value, f"at most {USERNAME_MAX} characters")
    if not _USERNAME.fullmatch(text):
        raise ProvisioningError(
            "username",
            value,
            "use letters a-z, digits and . _ @ + -, starting with a letter or digit",
        )
    return text


def normalise_role(value: str | Role) -> Role:
    """`operator` or `user`."""
    try:
        return Role(str(value).strip().lower())
    except ValueError:
        raise ProvisioningError(
            "role", value, f"must be one of: {', '.join(r.value for r in Role)}"
        ) from None


def normalise_domain(value: str, *, field: str = "domain", shown: str | None = None) -> str:
    """A host name in lower-case IDNA A-labels (stdlib IDNA 2003 codec), without a final dot.

    `shown` is the value to name in errors when the domain is part of a larger input."""
    text = value.strip().rstrip(".")
    if shown is not None:
        value = shown
    if not text:
        raise ProvisioningError(field, value, "a domain is required")
    if text.startswith("["):
        raise ProvisioningError(field, value, "address literals are not accepted; use a domain")
    try:
        ascii_name = text.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ProvisioningError(field, value, f"not a valid domain name ({exc})") from None
    if len(ascii_name) > DOMAIN_MAX:
        raise ProvisioningError(field, value, f"at most {DOMAIN_MAX} characters")
    for label in ascii_name.split("."):
        if not _LABEL.fullmatch(label):
            raise ProvisioningError(
                field,
                value,
                f"label {label!r} must be 1-{LABEL_MAX} letters, digits or '-', "
                "not starting or ending with '-'",
            )
    return ascii_name


def _local_part(local: str, field: str, value: str) -> str:
    if len(local) > LOCAL_PART_MAX:
        raise ProvisioningError(field, value, f"the part before '@' is over {LOCAL_PART_MAX}")
    bad = sorted(
        {char for char in local if char in _LOCAL_PART_FORBIDDEN or not char.isprintable()}
    )
    if bad:
        raise ProvisioningError(
            field, value, f"the part before '@' contains {''.join(bad)!r}, which is not allowed"
        )
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise ProvisioningError(field, value, "the part before '@' has a misplaced '.'")
    return local.lower()


def _split_address(value: str, field: str) -> tuple[str, str]:
    text = value.strip()
    if len(text) > EMAIL_MAX:
        raise ProvisioningError(field, value, f"at most {EMAIL_MAX} characters")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise ProvisioningError(field, value, "must look like user@domain")
    return local, domain


def normalise_email(value: str, *, field: str = "email") -> str:
    """One e-mail address, lower-cased, domain in A-labels; no wildcard."""
    local, domain = _split_address(value, field)
    if "*" in local:
        raise ProvisioningError(field, value, "a wildcard is not allowed here")
    return (
        f"{_local_part(local, field, value)}@{normalise_domain(domain, field=field, shown=value)}"
    )


def normalise_sender_pattern(value: str) -> str:
    """An authorised sender: `user@domain` (one address) or `*@domain` (the whole domain)."""
    field = "sender"
    text = value.strip()
    if not text:
        raise ProvisioningError(field, value, "a sender address or *@domain is required")
    if "@" not in text:
        raise ProvisioningError(field, value, "must be user@domain or *@domain")
    local, domain = _split_address(text, field)
    if "*" in domain:
        raise ProvisioningError(
            field, value, "a wildcard stands only for the whole part before '@': *@domain"
        )
    if local == "*":
        return f"*@{normalise_domain(domain, field=field, shown=value)}"
    if "*" in local:
        raise ProvisioningError(
            field, value, "a wildcard stands only for the whole part before '@': *@domain"
        )
    return normalise_email(text, field=field)


def normalise_sender_address(value: str) -> str:
    """The canonical form of an envelope sender, for matching against stored patterns."""
    return normalise_email(value, field="sender")


def normalise_cidr(value: str) -> str:
    """A source network, IPv4 or IPv6, in canonical text (see the module docstring).

    The host bits of `192.0.2.7/24` are cleared rather than refused (ipaddress strict=False):
    callers that want to tell the operator compare the input with the result.
    """
    text = value.strip()
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ProvisioningError(
            "network", value, "not an IPv4 or IPv6 network (e.g. 192.0.2.0/24, 2001:db8::/32)"
        ) from None
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            return str(ipaddress.IPv4Network((mapped, network.prefixlen - 96)))
    return str(network)


def normalise_system_id(value: str) -> str:
    """1 to 15 visible ASCII characters, case kept (SMPP v3.4 5.2.1)."""
    if not value:
        raise ProvisioningError("system_id", value, "a system_id is required")
    if len(value) > SYSTEM_ID_MAX:
        raise ProvisioningError(
            "system_id",
            value,
            f"at most {SYSTEM_ID_MAX} characters (SMPP v3.4 5.2.1: 16 octets with NUL)",
        )
    if not _ascii_visible(value):
        raise ProvisioningError("system_id", value, "visible ASCII characters only, no spaces")
    return value


def normalise_system_type(value: str | None) -> str | None:
    """0 to 12 visible ASCII characters (SMPP v3.4 5.2.3); empty means none."""
    if value is None or value == "":
        return None
    if len(value) > SYSTEM_TYPE_MAX:
        raise ProvisioningError(
            "system_type",
            value,
            f"at most {SYSTEM_TYPE_MAX} characters (SMPP v3.4 5.2.3: 13 octets with NUL)",
        )
    if not _ascii_visible(value):
        raise ProvisioningError("system_type", value, "visible ASCII characters only, no spaces")
    return value


def _integer(field: str, value: object) -> int:
    if isinstance(value, bool):
        raise ProvisioningError(field, value, "must be a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ProvisioningError(field, value, "must be a whole number")


def normalise_max_binds(value: object) -> int:
    """How many sessions one system_id may hold at once: 1 to 1000."""
    number = _integer("max_binds", value)
    if not 1 <= number <= MAX_BINDS_LIMIT:
        raise ProvisioningError("max_binds", value, f"must be between 1 and {MAX_BINDS_LIMIT}")
    return number


def normalise_throughput(value: object) -> float:
    """Messages per second allowed to one system_id: a finite number above zero."""
    number: float
    if isinstance(value, bool):
        raise ProvisioningError("throughput", value, "must be a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ProvisioningError("throughput", value, "must be a number") from None
    else:
        raise ProvisioningError("throughput", value, "must be a number")
    if not math.isfinite(number) or number <= 0:
        raise ProvisioningError("throughput", value, "must be a number above zero")
    return number


# --- settings -------------------------------------------------------------------------------


def validate_template(value: str, *, field: str = "settings.sms_template") -> str:
    """An SMS template: text with `{subject}`, `{body}`, `{from}`, `{to}` placeholders
    (str.format syntax, parsed with string.Formatter; `{{` and `}}` are literal braces)."""
    if not value:
        raise ProvisioningError(field, value, "must not be empty")
    if len(value) > TEMPLATE_MAX:
        raise ProvisioningError(field, value, f"at most {TEMPLATE_MAX} characters")
    allowed = ", ".join("{" + name + "}" for name in sorted(TEMPLATE_FIELDS))
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ProvisioningError(field, value, f"{exc}; write {{{{ and }}}} for braces") from None
    used = set()
    for _literal, name, spec, _conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            shown = "{" + name + "}" if name else "{}"
            raise ProvisioningError(
                field, value, f"unknown placeholder {shown}; use only {allowed}"
            )
        if spec and "{" in spec:
            raise ProvisioningError(field, value, "nested placeholders are not allowed")
        used.add(name)
    problems = template_problems(value)
    if problems:
        raise ProvisioningError(field, value, "; ".join(problems))
    if not used & {"subject", "body"}:
        raise ProvisioningError(field, value, "must contain {body} or {subject}")
    try:
        value.format(**dict.fromkeys(TEMPLATE_FIELDS, "x"))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ProvisioningError(field, value, f"cannot be applied: {exc}") from None
    return value


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ProvisioningError(field, value, "must be text")
    return value


def _optional_text(field: str, value: object) -> str | None:
    if value is None:
        return None
    text = _text(field, value).strip()
    return text or None


def _bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ProvisioningError(field, value, "must be true or false")
    return value


def _int_range(field: str, value: object, low: int, high: int | None) -> int:
    number = _integer(field, value)
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ProvisioningError(field, value, f"must be {bound}")
    return number


def _sms_template(value: object) -> str:
    return validate_template(_text("settings.sms_template", value))


def _long_sms_policy(value: object) -> str:
    field = "settings.long_sms_policy"
    text = _text(field, value).strip().lower()
    try:
        return LongSmsPolicy(text).value
    except ValueError:
        raise ProvisioningError(
            field, value, f"must be one of: {', '.join(p.value for p in LongSmsPolicy)}"
        ) from None


def _push_mode(value: object) -> str:
    field = "settings.push_mode"
    text = _text(field, value).strip().lower()
    try:
        return PushMode(text).value
    except ValueError:
        raise ProvisioningError(
            field, value, f"must be one of: {', '.join(m.value for m in PushMode)}"
        ) from None


def _choice(field: str, value: object, choices: type[StrEnum]) -> str:
    text = _text(field, value).strip().lower()
    try:
        return choices(text).value
    except ValueError:
        raise ProvisioningError(
            field, value, f"must be one of: {', '.join(c.value for c in choices)}"
        ) from None


def _webhook_secret(value: object) -> str | None:
    field = "settings.webhook_secret"
    text = _optional_text(field, value)
    if text is None:
        return None
    if not 16 <= len(text) <= 256:
        raise ProvisioningError(field, "(hidden)", "between 16 and 256 characters")
    return text


def normalise_region(value: object) -> str | None:
    """An ISO 3166 alpha-2 region that libphonenumber knows (`GB`, `US`); empty means none."""
    field = "settings.default_country"
    text = _optional_text(field, value)
    if text is None:
        return None
    region = text.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ProvisioningError(
            field, value, "not an ISO 3166 region known to libphonenumber (e.g. GB, US, DE)"
        )
    return region


def normalise_sender_id(value: object, field: str = "settings.sender_id") -> str | None:
    """The default SMS originator: `+` and up to 15 digits (E.164), up to 15 digits (a short
    code or national number), or up to 11 ASCII characters with a letter (alphanumeric)."""
    text = _optional_text(field, value)
    if text is None:
        return None
    digits = text[1:] if text.startswith("+") else text
    if digits.isascii() and digits.isdigit():
        if len(digits) > E164_DIGITS_MAX:
            raise ProvisioningError(field, value, f"at most {E164_DIGITS_MAX} digits (E.164)")
        return text
    if text.startswith("+"):
        raise ProvisioningError(field, value, "after '+' only digits are allowed")
    if len(text) > ALPHANUMERIC_SENDER_MAX:
        raise ProvisioningError(
            field,
            value,
            f"an alphanumeric sender has at most {ALPHANUMERIC_SENDER_MAX} characters "
            "(3GPP TS 23.040 9.1.2.5)",
        )
    if not all(0x20 <= ord(char) <= 0x7E for char in text) or not any(
        char.isalpha() for char in text
    ):
        raise ProvisioningError(
            field, value, "an alphanumeric sender uses ASCII letters, digits and spaces"
        )
    return text


def normalise_allowed_senders(value: object) -> list[str]:
    """`allowed_senders` (core.senders): a list of sender ids, or one text of them separated by
    commas (the command line, the portal); each an exact sender id (as `sender_id`) or digits,
    optionally after "+", ending in `*` (a prefix). Duplicates dropped, order kept."""
    field = "settings.allowed_senders"
    if value is None:
        return []
    if isinstance(value, str):
        items: list[object] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ProvisioningError(field, value, "must be a list of sender ids")
    if len(items) > ALLOWED_SENDERS_MAX:
        raise ProvisioningError(field, value, f"at most {ALLOWED_SENDERS_MAX} entries")
    result: list[str] = []
    for item in items:
        text = _text(field, item).strip()
        if text.endswith(WILDCARD):
            prefix = text[:-1]
            digits = prefix[1:] if prefix.startswith("+") else prefix
            if not (digits.isascii() and digits.isdigit()) or len(digits) > E164_DIGITS_MAX:
                raise ProvisioningError(
                    field, item, "a prefix ending in '*' must be digits, optionally after '+'"
                )
        elif not text:
            raise ProvisioningError(field, item, "an empty sender id")
        else:
            text = normalise_sender_id(text, field) or ""
        if text not in result:
            result.append(text)
    return result


def _notify_email(value: object) -> str | None:
    field = "settings.notify_email"
    text = _optional_text(field, value)
    return None if text is None else normalise_email(text, field=field)


def normalise_webhook_url(value: object) -> str | None:
    """An absolute http(s) URL with a host; empty means none."""
    field = "settings.webhook_url"
    text = _optional_text(field, value)
    if text is None:
        return None
    if len(text) > URL_MAX:
        raise ProvisioningError(field, value, f"at most {URL_MAX} characters")
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise ProvisioningError(field, value, "not a valid URL") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ProvisioningError(field, value, "must be an http:// or https:// URL with a host")
    if any(char.isspace() for char in text):
        raise ProvisioningError(field, value, "must not contain spaces")
    return text


_SETTING_RULES: dict[str, Callable[[object], object]] = {
    "sms_template": _sms_template,
    "long_sms_policy": _long_sms_policy,
    "max_sms_parts": lambda v: _int_range("settings.max_sms_parts", v, 1, MAX_SMS_PARTS_LIMIT),
    "push_mode": _push_mode,
    "push_fallback_seconds": lambda v: _int_range(
        "settings.push_fallback_seconds", v, 0, 7 * 24 * 3600
    ),
    "default_country": normalise_region,
    "sender_id": normalise_sender_id,
    "require_tls": lambda v: _bool("settings.require_tls", v),
    "validity_seconds": lambda v: _int_range("settings.validity_seconds", v, 1, None),
    "max_recipients": lambda v: _int_range("settings.max_recipients", v, 1, None),
    "notify_email": _notify_email,
    "notify_on": lambda v: _choice("settings.notify_on", v, ReportOn),
    "notify_dsn": lambda v: _bool("settings.notify_dsn", v),
    "strip_signature": lambda v: _bool("settings.strip_signature", v),
    "strip_quotes": lambda v: _bool("settings.strip_quotes", v),
    "check_spf": lambda v: _bool("settings.check_spf", v),
    "check_dkim": lambda v: _bool("settings.check_dkim", v),
    "webhook_url": normalise_webhook_url,
    "webhook_secret": _webhook_secret,
    "smpp_default_device": lambda v: _choice("settings.smpp_default_device", v, Device),
    "allowed_senders": normalise_allowed_senders,
}

SETTING_NAMES: tuple[str, ...] = tuple(Settings().to_dict())
"""Every setting key, in the order of `Settings.to_dict()`."""

_BOOL_WORDS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}


def _unknown_setting(key: str) -> ProvisioningError:
    return ProvisioningError("settings", key, f"unknown setting; known: {', '.join(SETTING_NAMES)}")


def normalise_setting(key: str, value: object) -> object:
    """One setting value, checked and in its stored form (enums as their text)."""
    rule = _SETTING_RULES.get(key)
    if rule is None:
        raise _unknown_setting(key)
    return rule(value)


def normalise_settings(data: Mapping[str, object]) -> dict[str, object]:
    """Check a partial settings mapping (what a file or the CLI sets); return it normalised."""
    return {key: normalise_setting(key, value) for key, value in data.items()}


def build_settings(changes: Mapping[str, object], base: Settings | None = None) -> Settings:
    """`base` (default: the defaults) with `changes` applied, every value checked."""
    checked = normalise_settings(changes)
    start = (base or Settings()).to_dict()
    try:
        return Settings.from_dict({**start, **checked})
    except (ValueError, TypeError) as exc:  # Settings rejects what the rules above missed
        raise ProvisioningError("settings", dict(changes), str(exc)) from None


def settings_overrides(settings: Settings) -> dict[str, Any]:
    """The settings that differ from the defaults (what the store and an export keep)."""
    defaults = Settings().to_dict()
    return {key: value for key, value in settings.to_dict().items() if value != defaults[key]}


def parse_setting_value(key: str, raw: str) -> object:
    """Turn command-line text into the typed value of setting `key` (then checked):
    `true/false/yes/no/on/off/1/0` for flags, digits for numbers, empty or `none` for
    'not set' on optional settings."""
    if key not in _SETTING_RULES:
        raise _unknown_setting(key)
    default = Settings().to_dict()[key]
    text = raw.strip()
    value: object
    if isinstance(default, bool):
        word = _BOOL_WORDS.get(text.lower())
        if word is None:
            raise ProvisioningError(f"settings.{key}", raw, "must be true or false")
        value = word
    elif isinstance(default, int):
        value = _integer(f"settings.{key}", text)
    elif default is None and text.lower() in ("", "none"):
        value = None
    else:
        value = raw
    return normalise_setting(key, value)


def parse_setting_assignment(text: str) -> tuple[str, object]:
    """`KEY=VALUE` from the command line -> (key, checked value)."""
    key, equals, raw = text.partition("=")
    key = key.strip()
    if not equals or not key:
        raise ProvisioningError("settings", text, "write KEY=VALUE, e.g. max_sms_parts=4")
    return key, parse_setting_value(key, raw)
