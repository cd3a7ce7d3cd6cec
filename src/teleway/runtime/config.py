"""teleway's configuration: one TOML file, environment overrides, validated into frozen values.

Precedence, lowest first: the defaults written on the dataclasses below, the TOML file, then
``TELEWAY_<SECTION>__<KEY>`` environment variables. :func:`load_config` collects *every*
problem (unknown keys, wrong types, values out of range, contradictions between keys) before
it raises one :class:`ConfigError`, so an operator fixes a file in one pass, not one error per
start. Secrets (passwords, the password inside the database URL) never appear in a problem or
in :meth:`Config.masked_dict`.

The defaults alone are a working single-node gateway: SQLite under ``./var``, every listener on
the loopback interface, and the built-in SMSC simulator as the only SMS upstream.

The schema *is* the dataclasses: each field's type says how a TOML value is converted, and its
``metadata`` carries the per-key check (``_check``) and whether it is a secret (``_secret``).
Checks that involve several keys (TLS pairs, unique names, two listeners on one address) are in
:func:`_cross_check`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import socket
import tomllib
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from teleway.core.routing import Route, RouteError, RouteTable, SenderType

__all__ = [
    "CONFIG_PATH_ENV",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "MASK",
    "BindMode",
    "BlobsConfig",
    "Concat",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "DatabaseConfig",
    "EventLoop",
    "GatewayConfig",
    "HttpListenerConfig",
    "ListenersConfig",
    "LogFormat",
    "LogLevel",
    "LoggingConfig",
    "MessageIdFormat",
    "NotificationsConfig",
    "QueueConfig",
    "RouteConfig",
    "SecurityConfig",
    "SimulatorConfig",
    "SmppListenerConfig",
    "SmppTlsListenerConfig",
    "SmtpListenerConfig",
    "UpstreamConfig",
    "WebhooksConfig",
    "find_config_file",
    "iter_keys",
    "load_config",
    "mask_url",
]

#: Environment variables starting with this prefix and containing ``__`` are overrides.
ENV_PREFIX = "TELEWAY_"
#: Names the configuration file when no path is given (checked before ``./teleway.toml``).
CONFIG_PATH_ENV = "TELEWAY_CONFIG"
#: Looked for in the working directory when neither a path nor $TELEWAY_CONFIG is given.
DEFAULT_CONFIG_FILE = "teleway.toml"


class _Masked(str):
    """A secret's stand-in: equal to ``"***"``, printed without quotes in problems."""

    __slots__ = ()


#: What every secret is shown as.
MASK = _Masked("***")

# SMPP v3.4 field limits (section 4.1.1 bind_transmitter, 4.4.1 submit_sm): C-Octet Strings
# whose maximum size includes the terminating NUL, hence one character less here.
SMPP_SYSTEM_ID_MAX = 15  # system_id: Var. max 16
SMPP_PASSWORD_MAX = 8  # password: Var. max 9
SMPP_SYSTEM_TYPE_MAX = 12  # system_type: Var. max 13
SMPP_ADDRESS_MAX = 20  # source_addr: Var. max 21
SMPP_TON_VALUES = frozenset(range(7))  # 5.2.5: 0..6
SMPP_NPI_VALUES = frozenset({0, 1, 3, 4, 6, 8, 9, 10, 14, 18})  # 5.2.6
GSM_DATA_CODINGS = frozenset({0, 1, 3})  # 5.2.19: SMSC default, IA5, Latin-1

# RFC 1035 2.3.4 / RFC 1123 2.1: 63 octets a label, 253 characters a name (without final dot).
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


# --------------------------------------------------------------------------------------------
# problems


def _show(value: object) -> str:
    """Render a value the way it would be written in TOML (secrets stay ``***``)."""
    if isinstance(value, _Masked):
        return str(value)
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, StrEnum):
        return json.dumps(value.value, ensure_ascii=False)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "(table)"
    return str(value)


@dataclass(frozen=True, kw_only=True)
class ConfigProblem:
    """One thing wrong with the configuration.

    ``key`` is the dotted path (``listeners.smtp.port``, ``upstreams[1].window``), the name of
    an environment variable for a bad override, or ``config file``. ``value`` is what was given
    (:data:`MASK` for secrets, ``None`` when a required key is missing).
    """

    key: str
    value: object
    reason: str

    def __str__(self) -> str:
        return f"{self.key} = {_show(self.value)}: {self.reason}"


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every reason, in file order."""

    def __init__(self, problems: list[ConfigProblem] | tuple[ConfigProblem, ...]) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class _Invalid(ValueError):
    """Raised by a key's check with the reason the value is refused."""


# --------------------------------------------------------------------------------------------
# per-key checks: take the converted value, return it (possibly normalised) or raise _Invalid

_T = TypeVar("_T")
_Num = TypeVar("_Num", int, float)
_Check = Callable[[Any], Any]


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise _Invalid("must be a port number 1-65535")
    return value


def _positive(value: _Num) -> _Num:
    if value <= 0:
        raise _Invalid("must be greater than 0")
    return value


def _non_negative(value: _Num) -> _Num:
    if value < 0:
        raise _Invalid("must be 0 or more")
    return value


def _ratio(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise _Invalid("must be between 0.0 and 1.0")
    return value


def _one_of(allowed: frozenset[int], spec: str) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value not in allowed:
            listed = ", ".join(str(v) for v in sorted(allowed))
            raise _Invalid(f"must be one of {listed} ({spec})")
        return value

    return check


def _is_hostname(value: str) -> bool:
    if not value or len(value) > 253 or value.endswith("."):
        return False
    return all(_LABEL.match(label) for label in value.split("."))


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _host(value: str) -> str:
    if not (_is_ip(value) or _is_hostname(value)):
        raise _Invalid("must be an IP address or a host name")
    return value


def _domains(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise _Invalid("must list at least one domain")
    lowered = tuple(d.lower() for d in value)
    for domain in lowered:
        if not _is_hostname(domain) or _is_ip(domain):
            raise _Invalid(f"{domain!r} is not a valid domain name")
    if len(set(lowered)) != len(lowered):
        raise _Invalid("lists a domain twice")
    return lowered


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise _Invalid(
            "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def _node_name(value: str) -> str:
    return _name(value) if value else ""


def _smpp_text(max_len: int, spec: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if len(value) > max_len:
            raise _Invalid(f"must be at most {max_len} characters ({spec})")
        if not value.isascii() or not value.isprintable():
            raise _Invalid(f"must be printable ASCII ({spec})")
        return value

    return check


def _relay_tls(value: str) -> str:
    if value not in ("none", "starttls", "tls"):
        raise _Invalid('must be "none", "starttls" or "tls"')
    return value


def _http_url(value: str) -> str:
    if value and not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
        raise _Invalid("must be empty or an http:// or https:// URL")
    return value.rstrip("/")


# The database drivers teleway ships with; the plain forms are rewritten to them.
_DB_SCHEMES = {
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "sqlite": "sqlite+aiosqlite",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.DOTALL)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``.

    Deliberately generous: everything between the user name and the *last* ``@`` is masked
    (a password may itself hold ``@`` or ``/``), as is a ``password=`` query parameter.
    """
    m = _URL.match(url)
    if not m:
        return url
    rest = m["rest"]
    at = rest.rfind("@")
    if at != -1:
        userinfo, tail = rest[:at], rest[at + 1 :]
        if ":" in userinfo:
            rest = f"{userinfo.split(':', 1)[0]}:{MASK}@{tail}"
    rest = re.sub(r"(?i)([?&]password=)[^&#]*", rf"\g<1>{MASK}", rest)
    return f"{m['scheme']}://{rest}"


def _database_url(value: str) -> str:
    m = _URL.match(value)
    if not m:
        raise _Invalid(
            "must be a database URL such as sqlite+aiosqlite:///./var/teleway.db "
            "or postgresql+asyncpg://user:password@host/teleway"
        )
    scheme = _DB_SCHEMES.get(m["scheme"].lower())
    if scheme is None:
        raise _Invalid(
            f"unsupported database {m['scheme']!r}: use sqlite+aiosqlite or postgresql+asyncpg "
            "(plain sqlite and postgresql URLs are accepted and rewritten)"
        )
    rest = m["rest"]
    if scheme == "sqlite+aiosqlite" and rest and not rest.startswith("/"):
        raise _Invalid("a SQLite URL has three slashes before a relative path: sqlite:///./x.db")
    if scheme == "postgresql+asyncpg":
        authority = rest.rsplit("@", 1)[-1].split("/", 1)[0].split("?", 1)[0]
        port = authority.rsplit("]", 1)[-1].rpartition(":")[2] if ":" in authority else ""
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise _Invalid("the port in a PostgreSQL URL must be a number 1-65535")
    return f"{scheme}://{rest}"


def _rule(check: _Check | None = None, *, secret: bool = False) -> dict[str, Any]:
    """A key's metadata: the check its value must pass and whether it is a secret."""
    return {"check": check, "secret": secret}


def _default_node_name() -> str:
    """This machine's host name, reduced to what a node name may contain."""
    raw = socket.gethostname().split(".")[0] or "teleway"
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", raw).strip("-._")[:64]
    return cleaned or "teleway"


# --------------------------------------------------------------------------------------------
# enumerations


class BindMode(StrEnum):
    """How the gateway binds to an upstream SMSC (SMPP v3.4 4.1)."""

    TRANSCEIVER = "transceiver"  # one session submits and receives receipts
    TRANSMITTER_RECEIVER = "transmitter+receiver"  # a transmitter and a receiver session


class Concat(StrEnum):
    """How a long text is split into parts the handset reassembles."""

    UDH8 = "udh8"  # UDH IEI 0x00, 8-bit reference (3GPP TS 23.040 9.2.3.24.1)
    UDH16 = "udh16"  # UDH IEI 0x08, 16-bit reference (3GPP TS 23.040 9.2.3.24.8)
    SAR = "sar"  # sar_msg_ref_num / sar_total_segments / sar_segment_seqnum TLVs (SMPP 5.3.2.22-24)
    PAYLOAD = "payload"  # whole text in message_payload (SMPP 5.3.2.32); the SMSC splits it


class MessageIdFormat(StrEnum):
    """How an upstream's message ids in submit_sm_resp relate to those in its receipts."""

    AUTO = "auto"  # match as given, then try hex <-> decimal conversions
    HEX = "hex"  # submit_sm_resp gives hex, receipts give decimal (common quirk)
    DECIMAL = "decimal"  # both decimal, compared as numbers


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class LogFormat(StrEnum):
    TEXT = "text"  # key=value lines for people
    JSON = "json"  # one JSON object per line for log collectors


class EventLoop(StrEnum):
    UVLOOP = "uvloop"  # libuv's loop (PyPI uvloop): same asyncio API, much cheaper socket I/O
    ASYNCIO = "asyncio"  # the standard library's own selector loop


# --------------------------------------------------------------------------------------------
# sections


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """``[gateway]``: who this node is and which mail domains it answers for."""

    node_name: str = field(default_factory=_default_node_name, metadata=_rule(_node_name))
    domains: tuple[str, ...] = field(default=("teleway.localhost",), metadata=_rule(_domains))
    data_dir: Path = Path("./var")
    event_loop: EventLoop = EventLoop.UVLOOP

    @property
    def tls_dir(self) -> Path:
        """Where self-signed certificates are generated when a TLS listener has none."""
        return self.data_dir / "tls"


@dataclass(frozen=True, kw_only=True)
class SmtpListenerConfig:
    """``[listeners.smtp]``: e-mail to ``<number>@<device>.<domain>``."""

    enabled: bool = True
    host: str = field(default="127.0.0.1", metadata=_rule(_host))
    port: int = field(default=2525, metadata=_rule(_port))
    # RFC 1870 SIZE, announced in EHLO.
    max_message_size: int = field(default=10 * 1024 * 1024, metadata=_rule(_positive))
    # RFC 5321 4.5.3.1.8: a server must accept at least 100 recipients per message.
    max_recipients: int = field(default=100, metadata=_rule(_positive))
    # RFC 5321 4.5.3.2.7: the server waits at least 5 minutes for the next command.
    timeout: float = field(default=300.0, metadata=_rule(_positive))
    starttls: bool = True
    auth_require_tls: bool = True
    tls_cert: str = ""
    tls_key: str = ""
    # SMTP AUTH (PLAIN/LOGIN, after STARTTLS only) for users of an account
    auth: bool = True
    # limits per client IP address and per account; 0 switches a rate limit off
    max_connections_per_ip: int = field(default=20, metadata=_rule(_non_negative))
    connections_per_minute_per_ip: int = field(default=600, metadata=_rule(_non_negative))
    messages_per_minute_per_ip: int = field(default=6000, metadata=_rule(_non_negative))
    messages_per_minute_per_account: int = field(default=6000, metadata=_rule(_non_negative))
    # name in the greeting and EHLO reply (empty: the first gateway domain)
    hostname: str = ""
    # DNS servers for SPF and DKIM checks ("host" or "host:port"); empty: the system's
    dns_servers: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class NotificationsConfig:
    """``[notifications]``: e-mails to senders about their messages' outcomes, and replies
    from phones to e-mail senders, through an outbound SMTP relay."""

    enabled: bool = True
    relay_host: str = field(default="127.0.0.1", metadata=_rule(_host))
    relay_port: int = field(default=25, metadata=_rule(_port))
    # "none", "starttls" (upgrade after EHLO) or "tls" (implicit TLS, e.g. port 465)
    relay_tls: str = field(default="none", metadata=_rule(_relay_tls))
    relay_tls_verify: bool = True
    relay_user: str = ""
    relay_password: str = field(default="", metadata=_rule(secret=True))
    from_address: str = "teleway@teleway.localhost"
    # a failed relay attempt is retried with back-off until the item's validity ends
    retry_base_seconds: float = field(default=30.0, metadata=_rule(_positive))
    retry_max_seconds: float = field(default=3600.0, metadata=_rule(_positive))
    timeout: float = field(default=30.0, metadata=_rule(_positive))


@dataclass(frozen=True, kw_only=True)
class WebhooksConfig:
    """``[webhooks]``: POSTs of delivery state changes to HTTP submitters' URLs."""

    enabled: bool = True
    timeout: float = field(default=10.0, metadata=_rule(_positive))
    concurrency: int = field(default=16, metadata=_rule(_positive))
    # a failed POST is retried with back-off until the message's validity ends
    retry_base_seconds: float = field(default=5.0, metadata=_rule(_positive))
    retry_max_seconds: float = field(default=3600.0, metadata=_rule(_positive))
    # let webhooks reach loopback, private and link-local addresses (tests, closed networks)
    allow_private: bool = False


@dataclass(frozen=True, kw_only=True)
class SmppListenerConfig:
    """``[listeners.smpp]``: ESMEs bind here; the session keys apply to ``smpp_tls`` too."""

    enabled: bool = True
    host: str = field(default="127.0.0.1", metadata=_rule(_host))
    port: int = field(default=2775, metadata=_rule(_port))
    window: int = field(default=10, metadata=_rule(_positive))
    enquire_link_interval: float = field(default=30.0, metadata=_rule(_positive))
    response_timeout: float = field(default=10.0, metadata=_rule(_positive))
    inactivity_timeout: float = field(default=300.0, metadata=_rule(_positive))
    # largest PDU an ESME may send (SMPP v3.4 3.2 sets no limit; 64 KiB holds every real one)
    max_pdu_length: int = field(default=65536, metadata=_rule(_positive))
    # our deliver_sm (receipts, replies) awaiting deliver_sm_resp per bind
    receipt_window: int = field(default=10, metadata=_rule(_positive))
    # how long the parts of a concatenated message may take to arrive, all of them
    concat_timeout: float = field(default=10.0, metadata=_rule(_positive))


@dataclass(frozen=True, kw_only=True)
class SmppTlsListenerConfig:
    """``[listeners.smpp_tls]``: SMPP over TLS; a self-signed certificate when none is given."""

    enabled: bool = True
    host: str = field(default="127.0.0.1", metadata=_rule(_host))
    port: int = field(default=3550, metadata=_rule(_port))
    tls_cert: str = ""
    tls_key: str = ""


@dataclass(frozen=True, kw_only=True)
class HttpListenerConfig:
    """``[listeners.http]``: REST API, portal and ``/metrics``."""

    enabled: bool = True
    host: str = field(default="127.0.0.1", metadata=_rule(_host))
    port: int = field(default=8080, metadata=_rule(_port))
    tls_cert: str = ""
    tls_key: str = ""
    metrics: bool = True
    public_url: str = field(default="", metadata=_rule(_http_url))
    # REST API: requests per second per API key (token bucket) and the burst it allows
    api_rate_limit: float = field(default=20.0, metadata=_rule(_positive))
    api_rate_burst: int = field(default=40, metadata=_rule(_positive))
    # largest request body (multipart submissions with fax documents or audio included)
    max_body_bytes: int = field(default=10 * 1024 * 1024, metadata=_rule(_positive))
    # recipients of one POST /messages at most (the account's own limit applies too)
    api_max_recipients: int = field(default=1000, metadata=_rule(_positive))


@dataclass(frozen=True, kw_only=True)
class ListenersConfig:
    """``[listeners.*]``: where customers reach the gateway."""

    smtp: SmtpListenerConfig = field(default_factory=SmtpListenerConfig)
    smpp: SmppListenerConfig = field(default_factory=SmppListenerConfig)
    smpp_tls: SmppTlsListenerConfig = field(default_factory=SmppTlsListenerConfig)
    http: HttpListenerConfig = field(default_factory=HttpListenerConfig)


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    """``[database]``: the store and the queue (SQLite for one node, PostgreSQL for several)."""

    url: str = field(
        default="sqlite+aiosqlite:///./var/teleway.db", metadata=_rule(_database_url, secret=True)
    )
    pool_size: int = field(default=5, metadata=_rule(_positive))
    max_overflow: int = field(default=0, metadata=_rule(_non_negative))
    pool_timeout: float = field(default=30.0, metadata=_rule(_positive))
    echo: bool = False

    @property
    def display_url(self) -> str:
        """The URL with its password masked: for logs, ``config show`` and error messages."""
        return mask_url(self.url)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.url.split("+", 1)[0].split(":", 1)[0]

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def sqlite_path(self) -> Path | None:
        """The database file (relative to the working directory), None for in-memory/PostgreSQL."""
        if not self.is_sqlite:
            return None
        rest = self.url.split("://", 1)[1].split("?", 1)[0]
        path = rest[1:] if rest.startswith("/") else rest
        if not path or path == ":memory:":
            return None
        return Path(path)


@dataclass(frozen=True, kw_only=True)
class BlobsConfig:
    """``[blobs]``: attachments and rendered media (audio, fax images) on local disk."""

    directory: Path = Path("./var/blobs")


@dataclass(frozen=True, kw_only=True)
class QueueConfig:
    """``[queue]``: the durable delivery queue and its retry policy."""

    workers: int = field(default=4, metadata=_rule(_positive))
    lease_seconds: float = field(default=60.0, metadata=_rule(_positive))
    poll_interval: float = field(default=1.0, metadata=_rule(_positive))
    retry_base_seconds: float = field(default=10.0, metadata=_rule(_positive))
    retry_max_seconds: float = field(default=3600.0, metadata=_rule(_positive))
    default_validity_seconds: int = field(default=172800, metadata=_rule(_positive))


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """``[simulator]``: the built-in SMSC simulator, the default SMS upstream."""

    enabled: bool = True
    host: str = field(default="127.0.0.1", metadata=_rule(_host))
    port: int = field(default=2776, metadata=_rule(_port))
    system_id: str = field(
        default="teleway",
        metadata=_rule(_smpp_text(SMPP_SYSTEM_ID_MAX, "SMPP v3.4 4.1.1 system_id")),
    )
    password: str = field(
        default="simulat",
        metadata=_rule(_smpp_text(SMPP_PASSWORD_MAX, "SMPP v3.4 4.1.1 password"), secret=True),
    )
    receipt_delay: float = field(default=1.0, metadata=_rule(_non_negative))
    success_ratio: float = field(default=1.0, metadata=_rule(_ratio))


@dataclass(frozen=True, kw_only=True)
class UpstreamConfig:
    """One ``[[upstreams]]`` entry: an SMSC the gateway binds to as an ESME."""

    name: str = field(metadata=_rule(_name))
    host: str = field(metadata=_rule(_host))
    port: int = field(default=2775, metadata=_rule(_port))
    tls: bool = False
    tls_verify: bool = True
    tls_ca: str = ""
    system_id: str = field(
        metadata=_rule(_smpp_text(SMPP_SYSTEM_ID_MAX, "SMPP v3.4 4.1.1 system_id"))
    )
    password: str = field(
        default="",
        metadata=_rule(_smpp_text(SMPP_PASSWORD_MAX, "SMPP v3.4 4.1.1 password"), secret=True),
    )
    system_type: str = field(
        default="", metadata=_rule(_smpp_text(SMPP_SYSTEM_TYPE_MAX, "SMPP v3.4 4.1.1 system_type"))
    )
    bind_mode: BindMode = BindMode.TRANSCEIVER
    binds: int = field(default=1, metadata=_rule(_positive))
    window: int = field(default=10, metadata=_rule(_positive))
    throughput: float = field(default=0.0, metadata=_rule(_non_negative))
    enquire_link_interval: float = field(default=30.0, metadata=_rule(_positive))
    response_timeout: float = field(default=10.0, metadata=_rule(_positive))
    reconnect_min: float = field(default=1.0, metadata=_rule(_positive))
    reconnect_max: float = field(default=60.0, metadata=_rule(_positive))
    source_addr: str = field(
        default="", metadata=_rule(_smpp_text(SMPP_ADDRESS_MAX, "SMPP v3.4 4.4.1 source_addr"))
    )
    source_ton: int = field(default=1, metadata=_rule(_one_of(SMPP_TON_VALUES, "SMPP v3.4 5.2.5")))
    source_npi: int = field(default=1, metadata=_rule(_one_of(SMPP_NPI_VALUES, "SMPP v3.4 5.2.6")))
    data_coding_gsm: int = field(
        default=0, metadata=_rule(_one_of(GSM_DATA_CODINGS, "SMPP v3.4 5.2.19"))
    )
    gsm_packed: bool = False
    concat: Concat = Concat.UDH8
    message_id_format: MessageIdFormat = MessageIdFormat.AUTO
    enabled: bool = True


@dataclass(frozen=True, kw_only=True)
class RouteConfig:
    """One ``[[routes]]`` entry (``core.routing``): the first route whose conditions all hold
    decides; ``upstreams`` lists tiers in failover order, a tier being ``"a"`` or
    ``"a:3, b:1"`` (load shared by weight). Reloaded on SIGHUP and when the file changes."""

    name: str = field(metadata=_rule(_name))
    upstreams: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    sender: SenderType = SenderType.ANY

    def route(self) -> Route:
        """The core route (RouteError when malformed)."""
        return Route.build(
            name=self.name,
            upstreams=self.upstreams,
            prefixes=self.prefixes,
            countries=self.countries,
            accounts=self.accounts,
            sender=self.sender,
        )


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    """``[logging]``."""

    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.TEXT
    file: str = ""


@dataclass(frozen=True, kw_only=True)
class SecurityConfig:
    """``[security]``: brakes on password guessing, per client IP address."""

    auth_fail_limit: int = field(default=5, metadata=_rule(_positive))
    auth_fail_window_seconds: float = field(default=300.0, metadata=_rule(_positive))


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole, validated configuration. Build it with :func:`load_config`.

    ``Config()`` gives the raw defaults *without* the simulator upstream that
    :func:`load_config` adds; ``source`` is the file it was read from (None: defaults only)
    and takes no part in equality.
    """

    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    listeners: ListenersConfig = field(default_factory=ListenersConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    blobs: BlobsConfig = field(default_factory=BlobsConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    upstreams: tuple[UpstreamConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    source: Path | None = field(default=None, compare=False, metadata={"internal": True})

    def listening_addresses(self) -> list[tuple[str, str, int]]:
        """``(key, host, port)`` of every enabled listener, the simulator included."""
        found: list[tuple[str, str, int]] = []
        for name in ("smtp", "smpp", "smpp_tls", "http"):
            listener = getattr(self.listeners, name)
            if listener.enabled:
                found.append((f"listeners.{name}", listener.host, listener.port))
        if self.simulator.enabled:
            found.append(("simulator", self.simulator.host, self.simulator.port))
        return found

    def upstream(self, name: str) -> UpstreamConfig:
        """The upstream called ``name`` (KeyError if there is none)."""
        for upstream in self.upstreams:
            if upstream.name == name:
                return upstream
        raise KeyError(name)

    def route_table(self) -> RouteTable:
        """The ``[[routes]]`` as a core route table over the enabled upstreams (RouteError when
        a route is malformed or names an unknown upstream)."""
        return RouteTable(
            routes=tuple(r.route() for r in self.routes),
            upstreams=tuple(u.name for u in self.upstreams if u.enabled),
        )

    def as_dict(self, *, masked: bool = False) -> dict[str, Any]:
        """Plain TOML-ready values (str, int, float, bool, lists, tables), optionally masked."""
        return _to_dict(self, masked=masked)

    def masked_dict(self) -> dict[str, Any]:
        """:meth:`as_dict` with every secret as ``***`` and the database URL's password masked."""
        return _to_dict(self, masked=True)


# --------------------------------------------------------------------------------------------
# schema helpers

_hint_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _hint_cache:
        _hint_cache[cls] = typing.get_type_hints(cls)
    return _hint_cache[cls]


def _keys(cls: type) -> dict[str, Field[Any]]:
    return {f.name: f for f in fields(cls) if not f.metadata.get("internal")}


def _item_type(tp: Any) -> Any:
    """For ``tuple[X, ...]`` return X, else None."""
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and is_dataclass(tp)


def _is_section_list(tp: Any) -> bool:
    item = _item_type(tp)
    return item is not None and _is_section(item)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _looks_secret(name: str) -> bool:
    """Could a key of this name (misspelt, perhaps) hold a secret? Then its value is masked."""
    return any(w in name.lower() for w in ("pas", "pw", "secret", "token", "url"))


def _close_match(name: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return close[0] if close else None


# --------------------------------------------------------------------------------------------
# building from the merged TOML tables


class _Builder:
    """Turns merged TOML tables into section dataclasses, collecting problems."""

    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []
        self.bad: set[str] = set()

    def problem(self, key: str, value: object, reason: str, *, secret: bool = False) -> None:
        if secret and value not in (None, ""):
            value = MASK
        elif isinstance(value, str) and "://" in value:
            value = mask_url(value)  # a URL may carry a password wherever it comes from
        self.problems.append(ConfigProblem(key=key, value=value, reason=reason))
        self.bad.add(key)

    def build(self, cls: type[_T], data: Mapping[str, Any], prefix: str) -> _T:
        keys = _keys(cls)
        for name, value in data.items():
            if name not in keys:
                close = _close_match(name, list(keys))
                if close is None:
                    reason = "unknown key; known keys: " + ", ".join(keys)
                else:
                    reason = f'unknown key (did you mean "{close}"?)'
                # a misspelt "pasword" still holds a password
                secret = _looks_secret(name) or (close is not None and _looks_secret(close))
                self.problem(_join(prefix, name), value, reason, secret=secret)
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        for name, f in keys.items():
            key = _join(prefix, name)
            required = f.default is MISSING and f.default_factory is MISSING
            if name in data:
                value = self.convert(hints[name], data[name], key, f)
                if value is not _BAD:
                    kwargs[name] = value
                    continue
            elif required:
                self.problem(key, None, "is required")
            if required:
                kwargs[name] = _placeholder(hints[name])
        return cls(**kwargs)

    def convert(self, tp: Any, value: Any, key: str, f: Field[Any] | None) -> Any:
        shown = value
        if f is not None and f.metadata.get("secret") and value not in ("", None):
            shown = mask_url(value) if isinstance(value, str) and "://" in value else MASK
        try:
            converted = self._convert_type(tp, value, key)
        except _Invalid as exc:
            self.problem(key, shown, str(exc))
            return _BAD
        check = f.metadata.get("check") if f else None
        if check is not None:
            try:
                converted = check(converted)
            except _Invalid as exc:
                self.problem(key, shown, str(exc))
                return _BAD
        return converted

    def _convert_type(self, tp: Any, value: Any, key: str) -> Any:
        if tp is bool:
            if not isinstance(value, bool):
                raise _Invalid("must be true or false")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _Invalid("must be an integer")
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _Invalid("must be a number")
            if not math.isfinite(value):
                raise _Invalid("must be a finite number")
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise _Invalid("must be a string")
            return value
        if tp is Path:
            if not isinstance(value, str) or not value:
                raise _Invalid("must be a path (a non-empty string)")
            return Path(value)
        if isinstance(tp, type) and issubclass(tp, StrEnum):
            allowed = [m.value for m in tp]
            if isinstance(value, str) and value.lower() in allowed:
                return tp(value.lower())
            raise _Invalid("must be one of: " + ", ".join(f'"{a}"' for a in allowed))
        if _is_section(tp):
            if not isinstance(value, dict):
                raise _Invalid("must be a table")
            return self.build(tp, value, key)
        item = _item_type(tp)
        if item is str:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _Invalid("must be a list of strings")
            return tuple(value)
        if item is not None and _is_section(item):
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise _Invalid("must be a list of tables ([[" + key + "]])")
            return tuple(self.build(item, v, f"{key}[{i}]") for i, v in enumerate(value))
        raise TypeError(f"unsupported configuration type {tp!r} for {key}")  # a bug here


_BAD = object()


def _placeholder(tp: Any) -> Any:
    """A stand-in for a missing required key so that building can go on collecting problems."""
    if tp is str:
        return ""
    if tp is int:
        return 0
    raise TypeError(f"no placeholder for {tp!r}")


# --------------------------------------------------------------------------------------------
# environment overrides


_ENV_BOOLS = {
    **dict.fromkeys(("true", "yes", "on", "1"), True),
    **dict.fromkeys(("false", "no", "off", "0"), False),
}


def _env_scalar(tp: Any, raw: str) -> Any:
    """Parse an override by the type of its key.

    Strings stay verbatim (a password ``12345678`` is not a number) unless written as a quoted
    TOML string; booleans also accept yes/no/on/off/1/0; lists of strings also accept
    ``a,b,c``; everything else is read as a TOML value, or kept as text for the type check to
    refuse with a proper message.
    """
    if tp is bool and raw.strip().lower() in _ENV_BOOLS:
        return _ENV_BOOLS[raw.strip().lower()]
    textual = tp is str or tp is Path or (isinstance(tp, type) and issubclass(tp, StrEnum))
    if textual:
        if raw[:1] in ('"', "'"):
            try:
                parsed = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                return raw
            return parsed if isinstance(parsed, str) else raw
        return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if _item_type(tp) is str:
            return [part.strip() for part in raw.split(",") if part.strip()]
        return raw


def _env_name(parts: list[str]) -> str:
    return ENV_PREFIX + "__".join(p.upper() for p in parts)


def _apply_env(raw: dict[str, Any], env: Mapping[str, str], builder: _Builder) -> dict[str, str]:
    """Write overrides into ``raw``; return {dotted key: variable} for every key overridden."""
    origins: dict[str, str] = {}
    sections = sorted(_keys(Config))
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :]
        value = env[var]
        if "__" not in rest:
            head = rest.lower()
            for section in sections:
                if head.startswith(section + "_"):
                    hint = _env_name([section, head[len(section) + 1 :]])
                    builder.problem(
                        var,
                        value,
                        f"separate section and key with a double underscore, e.g. {hint}",
                        secret=True,
                    )
                    break
            continue  # not an override: e.g. TELEWAY_CONFIG
        key = _set_override(raw, rest.lower().split("__"), var, value, builder)
        if key is not None:
            origins[key] = var
    return origins


def _set_override(
    raw: dict[str, Any], parts: list[str], var: str, value: str, builder: _Builder
) -> str | None:
    """Put one override into ``raw``; return its dotted key, or None after a problem."""

    def problem(reason: str) -> None:
        builder.problem(var, value, reason, secret=_looks_secret(var))

    cls: type = Config
    node: dict[str, Any] = raw
    dotted = ""
    walked: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        keys = _keys(cls)
        if part not in keys:
            close = _close_match(part, list(keys))
            where = ".".join(walked) or "top level"
            reason = f"no key {part!r} in {where}"
            if close is not None:
                reason += f" (did you mean {_env_name([*walked, close, *parts[i + 1 :]])}?)"
            else:
                reason += "; known keys: " + ", ".join(keys)
            problem(reason)
            return None
        tp = _hints(cls)[part]
        last = i == len(parts) - 1
        walked.append(part)
        dotted = _join(dotted, part)
        if _is_section(tp):
            if last:
                problem(f"{dotted} is a section; name one of its keys")
                return None
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                return None  # the file's own type error is reported by the builder
            node, cls = child, tp
            i += 1
            continue
        if _is_section_list(tp):
            entries = node.get(part, [])
            index = parts[i + 1] if not last else ""
            if not index.isdigit():
                problem(f"name an entry and a key, e.g. {_env_name([part, '0', 'host'])}")
                return None
            if not isinstance(entries, list) or int(index) >= len(entries):
                count = len(entries) if isinstance(entries, list) else 0
                problem(f"there is no {part}[{index}]: the configuration file defines {count}")
                return None
            entry = entries[int(index)]
            if not isinstance(entry, dict):
                return None
            walked.append(index)
            dotted = f"{dotted}[{index}]"
            node, cls = entry, _item_type(tp)
            i += 2
            if i == len(parts):
                problem(f"{dotted} is a table; name one of its keys")
                return None
            continue
        if not last:
            problem(f"{dotted} is a key, not a section")
            return None
        node[part] = _env_scalar(tp, value)
        return dotted
    return None


# --------------------------------------------------------------------------------------------
# checks across keys


def _same_address(a: str, b: str) -> bool:
    """Would binding both hosts on one port collide? Wildcards collide with everything."""
    if a in _WILDCARD_HOSTS or b in _WILDCARD_HOSTS:
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


def _cross_check(config: Config, builder: _Builder) -> None:
    bad = builder.bad

    def ok(*keys: str) -> bool:
        return not any(k in bad for k in keys)

    # TLS certificate and key: both or neither, and the files must be there.
    for name in ("smtp", "smpp_tls", "http"):
        listener = getattr(config.listeners, name)
        prefix = f"listeners.{name}"
        cert_key, key_key = f"{prefix}.tls_cert", f"{prefix}.tls_key"
        if not ok(cert_key, key_key):
            continue
        if bool(listener.tls_cert) != bool(listener.tls_key):
            missing, given = (key_key, cert_key) if listener.tls_cert else (cert_key, key_key)
            builder.problem(missing, "", f"must be set together with {given} (both or neither)")
            continue
        for k, path in ((cert_key, listener.tls_cert), (key_key, listener.tls_key)):
            if path and not Path(path).is_file():
                builder.problem(k, path, "no such file")
    for i, upstream in enumerate(config.upstreams):
        if upstream.tls_ca and not Path(upstream.tls_ca).is_file():
            builder.problem(f"upstreams[{i}].tls_ca", upstream.tls_ca, "no such file")

    # Ranges given as two keys.
    q = config.queue
    if ok("queue.retry_base_seconds", "queue.retry_max_seconds") and (
        q.retry_max_seconds < q.retry_base_seconds
    ):
        builder.problem(
            "queue.retry_max_seconds",
            q.retry_max_seconds,
            f"must be at least queue.retry_base_seconds ({q.retry_base_seconds:g})",
        )
    names: dict[str, int] = {}
    for i, upstream in enumerate(config.upstreams):
        prefix = f"upstreams[{i}]"
        if ok(f"{prefix}.reconnect_min", f"{prefix}.reconnect_max") and (
            upstream.reconnect_max < upstream.reconnect_min
        ):
            builder.problem(
                f"{prefix}.reconnect_max",
                upstream.reconnect_max,
                f"must be at least {prefix}.reconnect_min ({upstream.reconnect_min:g})",
            )
        if upstream.name and ok(f"{prefix}.name"):
            if upstream.name in names:
                builder.problem(
                    f"{prefix}.name",
                    upstream.name,
                    f"upstream names must be unique: upstreams[{names[upstream.name]}] has it too",
                )
            else:
                names[upstream.name] = i

    # Routes: well-formed, unique names, only configured upstreams.
    route_names: set[str] = set()
    enabled = {u.name for u in config.upstreams if u.enabled}
    for i, route_cfg in enumerate(config.routes):
        prefix = f"routes[{i}]"
        if not ok(f"{prefix}.name", f"{prefix}.upstreams", f"{prefix}.sender"):
            continue
        if route_cfg.name in route_names:
            builder.problem(f"{prefix}.name", route_cfg.name, "route names must be unique")
        route_names.add(route_cfg.name)
        try:
            route = route_cfg.route()
        except RouteError as exc:
            builder.problem(f"{prefix}.upstreams", list(route_cfg.upstreams), str(exc))
            continue
        # with no [[upstreams]] the simulator is added later under the name "simulator"
        known = enabled or ({"simulator"} if config.simulator.enabled else set())
        unknown = [n for n in route.upstream_names() if n not in known]
        if unknown:
            builder.problem(
                f"{prefix}.upstreams",
                list(route_cfg.upstreams),
                f"no enabled upstream named {', '.join(unknown)}"
                f" (known: {', '.join(sorted(known)) or 'none'})",
            )

    # Two enabled listeners on one address.
    seen: list[tuple[str, str, int]] = []
    for key, host, port in config.listening_addresses():
        if not ok(f"{key}.host", f"{key}.port"):
            continue
        for other_key, other_host, other_port in seen:
            if port == other_port and _same_address(host, other_host):
                builder.problem(
                    f"{key}.port",
                    port,
                    f"{other_key} already listens on {other_host}:{other_port}",
                )
                break
        seen.append((key, host, port))


# --------------------------------------------------------------------------------------------
# loading


def find_config_file(env: Mapping[str, str] = os.environ) -> Path | None:
    """The file :func:`load_config` reads when given no path: $TELEWAY_CONFIG, ./teleway.toml."""
    named = env.get(CONFIG_PATH_ENV)
    if named:
        return Path(named)
    local = Path(DEFAULT_CONFIG_FILE)
    return local if local.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        reason = "no such file"
    except IsADirectoryError:
        reason = "is a directory, not a file"
    except OSError as exc:
        reason = f"cannot be read: {exc.strerror or exc}"
    except tomllib.TOMLDecodeError as exc:
        reason = f"is not valid TOML: {exc}"
    except UnicodeDecodeError:
        reason = "is not valid TOML: not UTF-8 text"
    raise ConfigError([ConfigProblem(key="config file", value=str(path), reason=reason)])


def _simulator_upstream(simulator: SimulatorConfig) -> UpstreamConfig:
    """The upstream used when none is configured: the built-in simulator, reached on loopback."""
    host = simulator.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return UpstreamConfig(
        name="simulator",
        host=host,
        port=simulator.port,
        system_id=simulator.system_id,
        password=simulator.password,
        # the simulator's receipts carry its submit_sm_resp ids as they are
        message_id_format=MessageIdFormat.DECIMAL,
    )


def load_config(path: str | Path | None = None, env: Mapping[str, str] = os.environ) -> Config:
    """Read, merge, override and validate the configuration.

    ``path`` None means: the file named by $TELEWAY_CONFIG, else ``./teleway.toml`` if it
    exists, else the built-in defaults. A path given (or named) that does not exist is an
    error. Raises :class:`ConfigError` listing every problem found.
    """
    source = Path(path) if path is not None else find_config_file(env)
    raw: dict[str, Any] = _read_toml(source) if source is not None else {}
    builder = _Builder()
    origins = _apply_env(raw, env, builder)
    config = builder.build(Config, raw, "")
    _cross_check(config, builder)
    if builder.problems:
        problems = [
            replace(p, reason=f"{p.reason} (set by {origins[p.key]})") if p.key in origins else p
            for p in builder.problems
        ]
        raise ConfigError(problems)
    gateway = config.gateway
    if not gateway.node_name:
        gateway = replace(gateway, node_name=_default_node_name())
    upstreams = config.upstreams
    if not upstreams and config.simulator.enabled:
        upstreams = (_simulator_upstream(config.simulator),)
    return replace(config, gateway=gateway, upstreams=upstreams, source=source)


# --------------------------------------------------------------------------------------------
# output


def _plain(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _to_dict(obj: Any, *, masked: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, f in _keys(type(obj)).items():
        value = getattr(obj, name)
        if is_dataclass(value):
            out[name] = _to_dict(value, masked=masked)
        elif isinstance(value, tuple) and value and is_dataclass(value[0]):
            out[name] = [_to_dict(v, masked=masked) for v in value]
        elif masked and f.metadata.get("secret") and value:
            out[name] = mask_url(value) if name == "url" else str(MASK)
        else:
            out[name] = _plain(value)
    return out


def iter_keys(cls: type = Config, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf key as (dotted name, default); upstream keys appear as ``upstreams[].key``."""
    for name, f in _keys(cls).items():
        tp = _hints(cls)[name]
        key = _join(prefix, name)
        if _is_section(tp):
            yield from iter_keys(tp, key)
        elif _is_section_list(tp):
            yield from iter_keys(_item_type(tp), key + "[]")
        elif f.default is not MISSING:
            yield key, f.default
        elif f.default_factory is not MISSING:
            yield key, f.default_factory()
        else:
            yield key, None
