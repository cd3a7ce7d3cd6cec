"""Configuration loading: defaults, the example file, validation, environment overrides, masking."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from teleway.runtime.config import (
    MASK,
    BindMode,
    Concat,
    Config,
    ConfigError,
    ConfigProblem,
    LogFormat,
    LogLevel,
    MessageIdFormat,
    UpstreamConfig,
    iter_keys,
    load_config,
    mask_url,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "teleway.example.toml"

UPSTREAM = """
[[upstreams]]
name = "{name}"
host = "smsc.example.net"
system_id = "acme"
password = "s3cret"
"""


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in an empty directory, so no ./teleway.toml is picked up by accident."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write(tmp_path: Path, text: str, name: str = "teleway-test.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(
    tmp_path: Path, text: str, env: dict[str, str] | None = None
) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=env or {})
    return list(info.value.problems)


def only_problem(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigProblem:
    problems = problems_of(tmp_path, text, env)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# ---------------------------------------------------------------------------------- defaults


def test_defaults_are_a_working_single_node_gateway() -> None:
    cfg = load_config(None, env={})
    assert cfg.source is None
    assert cfg.gateway.node_name  # the host name
    assert cfg.gateway.domains == ("teleway.localhost",)
    assert cfg.gateway.data_dir == Path("var")
    assert cfg.gateway.tls_dir == Path("var/tls")
    assert (cfg.listeners.smtp.host, cfg.listeners.smtp.port) == ("127.0.0.1", 2525)
    assert cfg.listeners.smtp.max_message_size == 10 * 1024 * 1024
    assert cfg.listeners.smtp.starttls is True
    assert (cfg.listeners.smpp.host, cfg.listeners.smpp.port) == ("127.0.0.1", 2775)
    assert cfg.listeners.smpp_tls.port == 3550
    assert cfg.listeners.http.port == 8080
    assert cfg.listeners.http.metrics is True
    assert cfg.database.url == "sqlite+aiosqlite:///./var/teleway.db"
    assert cfg.database.is_sqlite
    assert cfg.database.sqlite_path == Path("var/teleway.db")
    assert cfg.database.echo is False
    assert cfg.blobs.directory == Path("var/blobs")
    assert cfg.queue.workers == 4
    assert cfg.queue.lease_seconds == 60
    assert cfg.queue.poll_interval == 1.0
    assert (cfg.queue.retry_base_seconds, cfg.queue.retry_max_seconds) == (10, 3600)
    assert cfg.queue.default_validity_seconds == 172800
    assert cfg.simulator.enabled
    assert (cfg.simulator.port, cfg.simulator.system_id) == (2776, "teleway")
    assert cfg.simulator.password == "simulat"
    assert cfg.logging.level is LogLevel.INFO
    assert cfg.logging.format is LogFormat.TEXT
    assert cfg.logging.file == ""
    assert (cfg.security.auth_fail_limit, cfg.security.auth_fail_window_seconds) == (5, 300)
    # every listener and the simulator on distinct loopback ports
    addresses = cfg.listening_addresses()
    assert len({port for _, _, port in addresses}) == len(addresses) == 5


def test_default_upstream_is_the_simulator() -> None:
    cfg = load_config(None, env={})
    assert len(cfg.upstreams) == 1
    up = cfg.upstream("simulator")
    assert (up.host, up.port) == ("127.0.0.1", 2776)
    assert (up.system_id, up.password) == ("teleway", "simulat")
    assert up == UpstreamConfig(
        name="simulator",
        host="127.0.0.1",
        port=2776,
        system_id="teleway",
        password="simulat",
        message_id_format=MessageIdFormat.DECIMAL,  # its receipts repeat its own ids
    )


def test_simulator_upstream_follows_the_simulator_settings(tmp_path: Path) -> None:
    path = write(tmp_path, '[simulator]\nhost = "0.0.0.0"\nport = 2999\nsystem_id = "sim"\n')
    cfg = load_config(path, env={"TELEWAY_SIMULATOR__PASSWORD": "pw"})
    (up,) = cfg.upstreams
    assert (up.name, up.host, up.port, up.system_id, up.password) == (
        "simulator",
        "127.0.0.1",  # reachable, not the wildcard
        2999,
        "sim",
        "pw",
    )


def test_no_simulator_upstream_when_disabled_or_upstreams_given(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[simulator]\nenabled = false\n"), env={})
    assert cfg.upstreams == ()
    cfg = load_config(write(tmp_path, UPSTREAM.format(name="acme")), env={})
    assert [u.name for u in cfg.upstreams] == ["acme"]
    with pytest.raises(KeyError):
        cfg.upstream("simulator")


def test_upstream_defaults(tmp_path: Path) -> None:
    (up,) = load_config(write(tmp_path, UPSTREAM.format(name="acme")), env={}).upstreams
    assert up.port == 2775
    assert up.tls is False
    assert up.system_type == ""
    assert up.bind_mode is BindMode.TRANSCEIVER
    assert (up.binds, up.window, up.throughput) == (1, 10, 0)
    assert (up.enquire_link_interval, up.response_timeout) == (30, 10)
    assert (up.reconnect_min, up.reconnect_max) == (1, 60)
    assert (up.source_addr, up.source_ton, up.source_npi) == ("", 1, 1)
    assert (up.data_coding_gsm, up.gsm_packed) == (0, False)
    assert up.concat is Concat.UDH8
    assert up.message_id_format is MessageIdFormat.AUTO
    assert up.enabled is True


def test_config_is_frozen() -> None:
    cfg = load_config(None, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.listeners.smtp.port = 1  # type: ignore[misc]


# ------------------------------------------------------------------------------ example file


def test_example_file_gives_exactly_the_defaults() -> None:
    from_example = load_config(EXAMPLE, env={})
    assert from_example.source == EXAMPLE
    assert from_example == load_config(None, env={})


def _flatten(table: dict[str, object], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        keys |= _flatten(value, key) if isinstance(value, dict) else {key}
    return keys


def _commented_upstream_block() -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index("# [[upstreams]]")
    end = text.index("[logging]")
    lines = [line.removeprefix("#").removeprefix(" ") for line in text[start:end].splitlines()]
    return "\n".join(line for line in lines if not line.startswith("#"))


def test_example_file_has_every_key() -> None:
    parsed = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    lists = ("upstreams[]", "routes[]")
    schema = {key for key, _ in iter_keys() if not key.startswith(lists)}
    assert _flatten(parsed) == schema
    commented = tomllib.loads(_commented_upstream_block())
    for name in ("upstreams", "routes"):
        entry = commented[name][0]
        assert {f"{name}[].{k}" for k in entry} == {
            key for key, _ in iter_keys() if key.startswith(f"{name}[]")
        }


def test_example_upstream_block_shows_the_defaults_and_loads(tmp_path: Path) -> None:
    block = _commented_upstream_block()
    upstream = tomllib.loads(block)["upstreams"][0]
    defaults = {f.name: f.default for f in dataclasses.fields(UpstreamConfig)}
    for key, value in upstream.items():
        if key not in ("name", "host", "system_id"):  # required: no default
            assert value == defaults[key], key
    cfg = load_config(write(tmp_path, block), env={})
    assert cfg.upstream("smsc-a").host == "smsc-a.example.net"


def test_every_key_in_the_docs() -> None:
    docs = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    for key, _ in iter_keys():
        assert f"`{key.rsplit('.', 1)[-1]}`" in docs, key


# ---------------------------------------------------------------------------- finding a file


def test_teleway_toml_in_working_directory_is_used(_empty_cwd: Path) -> None:
    (_empty_cwd / "teleway.toml").write_text("[listeners.smtp]\nport = 2600\n")
    cfg = load_config(None, env={})
    assert cfg.listeners.smtp.port == 2600
    assert cfg.source == Path("teleway.toml")


def test_teleway_config_variable_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[listeners.smtp]\nport = 2601\n")
    cfg = load_config(None, env={"TELEWAY_CONFIG": str(path)})
    assert cfg.listeners.smtp.port == 2601


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, env={})
    (problem,) = info.value.problems
    assert problem.key == "config file"
    assert problem.reason == "no such file"
    assert str(missing) in str(info.value)


def test_invalid_toml_is_an_error(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "[gateway\nnode_name = 1\n")
    assert problem.key == "config file"
    assert problem.reason.startswith("is not valid TOML")


# ------------------------------------------------------------------------------- validation

CASES = [
    # (TOML, key, value, reason)
    (
        "[listeners.smtp]\nport = 99999",
        "listeners.smtp.port",
        99999,
        "must be a port number 1-65535",
    ),
    ("[listeners.smpp]\nport = 0", "listeners.smpp.port", 0, "must be a port number 1-65535"),
    ('[listeners.http]\nport = "80"', "listeners.http.port", "80", "must be an integer"),
    ("[listeners.http]\nport = true", "listeners.http.port", True, "must be an integer"),
    ('[listeners.smtp]\nenabled = "yes"', "listeners.smtp.enabled", "yes", "must be true or false"),
    (
        '[listeners.smtp]\nhost = "bad host"',
        "listeners.smtp.host",
        "bad host",
        "must be an IP address or a host name",
    ),
    (
        '[listeners.smtp]\nhost = "-x.example"',
        "listeners.smtp.host",
        "-x.example",
        "must be an IP address or a host name",
    ),
    (
        "[listeners.smtp]\nmax_message_size = 0",
        "listeners.smtp.max_message_size",
        0,
        "must be greater than 0",
    ),
    (
        '[listeners.http]\npublic_url = "ftp://x"',
        "listeners.http.public_url",
        "ftp://x",
        "must be empty or an http:// or https:// URL",
    ),
    ("[gateway]\ndomains = []", "gateway.domains", [], "must list at least one domain"),
    (
        '[gateway]\ndomains = "teleway.example"',
        "gateway.domains",
        "teleway.example",
        "must be a list of strings",
    ),
    (
        '[gateway]\ndomains = ["bad_domain.example"]',
        "gateway.domains",
        ["bad_domain.example"],
        "'bad_domain.example' is not a valid domain name",
    ),
    (
        '[gateway]\ndomains = ["a.example", "A.example"]',
        "gateway.domains",
        ["a.example", "A.example"],
        "lists a domain twice",
    ),
    (
        '[gateway]\nnode_name = "node 1"',
        "gateway.node_name",
        "node 1",
        "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
    ),
    ('[gateway]\ndata_dir = ""', "gateway.data_dir", "", "must be a path (a non-empty string)"),
    ("[queue]\nworkers = 0", "queue.workers", 0, "must be greater than 0"),
    ("[queue]\npoll_interval = -1.5", "queue.poll_interval", -1.5, "must be greater than 0"),
    (
        "[queue]\nlease_seconds = inf",
        "queue.lease_seconds",
        float("inf"),
        "must be a finite number",
    ),
    (
        "[queue]\nretry_base_seconds = 100\nretry_max_seconds = 50",
        "queue.retry_max_seconds",
        50.0,
        "must be at least queue.retry_base_seconds (100)",
    ),
    (
        "[queue]\ndefault_validity_seconds = 1.5",
        "queue.default_validity_seconds",
        1.5,
        "must be an integer",
    ),
    (
        '[simulator]\npassword = "ninechars"',
        "simulator.password",
        MASK,
        "must be at most 8 characters (SMPP v3.4 4.1.1 password)",
    ),
    (
        '[simulator]\nsystem_id = "sixteen-chars-id"',
        "simulator.system_id",
        "sixteen-chars-id",
        "must be at most 15 characters (SMPP v3.4 4.1.1 system_id)",
    ),
    (
        "[simulator]\nsuccess_ratio = 1.5",
        "simulator.success_ratio",
        1.5,
        "must be between 0.0 and 1.0",
    ),
    ("[simulator]\nreceipt_delay = -1", "simulator.receipt_delay", -1, "must be 0 or more"),
    (
        '[logging]\nlevel = "verbose"',
        "logging.level",
        "verbose",
        'must be one of: "debug", "info", "warning", "error", "critical"',
    ),
    ('[logging]\nformat = "xml"', "logging.format", "xml", 'must be one of: "text", "json"'),
    ("[security]\nauth_fail_limit = 0", "security.auth_fail_limit", 0, "must be greater than 0"),
    (
        '[database]\nurl = "mysql+aiomysql://u@h/db"',
        "database.url",
        "mysql+aiomysql://u@h/db",
        "unsupported database 'mysql+aiomysql': use sqlite+aiosqlite or postgresql+asyncpg (plain sqlite and postgresql URLs are accepted and rewritten)",
    ),
    ('[database]\nurl = "teleway.db"', "database.url", MASK, None),
    (
        '[database]\nurl = "sqlite://var/x.db"',
        "database.url",
        "sqlite://var/x.db",
        "a SQLite URL has three slashes before a relative path: sqlite:///./x.db",
    ),
    (
        '[database]\nurl = "postgresql://u@h:99999/db"',
        "database.url",
        "postgresql://u@h:99999/db",
        "the port in a PostgreSQL URL must be a number 1-65535",
    ),
    ("[database]\npool_size = 0", "database.pool_size", 0, "must be greater than 0"),
    ('[listeners]\nsmtp = "on"', "listeners.smtp", "on", "must be a table"),
    ("upstreams = 3", "upstreams", 3, "must be a list of tables ([[upstreams]])"),
]


@pytest.mark.parametrize(("text", "key", "value", "reason"), CASES, ids=[c[1] for c in CASES])
def test_each_invalid_value_is_reported(
    tmp_path: Path, text: str, key: str, value: object, reason: str | None
) -> None:
    problem = only_problem(tmp_path, text + "\n")
    assert problem.key == key
    assert problem.value == value
    if reason is not None:
        assert problem.reason == reason


def test_problem_text_is_key_value_reason(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "[listeners.smtp]\nport = 99999\n")
    assert str(problem) == "listeners.smtp.port = 99999: must be a port number 1-65535"
    problem = only_problem(tmp_path, '[listeners.smtp]\nhost = "a b"\n')
    assert str(problem) == 'listeners.smtp.host = "a b": must be an IP address or a host name'


def test_domains_are_lower_cased(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, '[gateway]\ndomains = ["SMS.Example.COM", "b.example"]\n'), env={}
    )
    assert cfg.gateway.domains == ("sms.example.com", "b.example")


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "::1", "192.0.2.7", "localhost", "gw-1.example.net"]
)
def test_listener_hosts_accepted(tmp_path: Path, host: str) -> None:
    cfg = load_config(write(tmp_path, f'[listeners.http]\nhost = "{host}"\nport = 8181\n'), env={})
    assert cfg.listeners.http.host == host


def test_enum_values_are_case_insensitive(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[logging]\nlevel = "DEBUG"\nformat = "Json"\n'), env={})
    assert (cfg.logging.level, cfg.logging.format) == (LogLevel.DEBUG, LogFormat.JSON)


def test_unknown_keys_suggest_the_close_name(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path, "[listeners.smtp]\nprot = 25\n[listners]\n[queue]\nxyzzy = 1\n"
    )
    by_key = {p.key: p for p in problems}
    assert by_key["listeners.smtp.prot"].reason == 'unknown key (did you mean "port"?)'
    assert by_key["listeners.smtp.prot"].value == 25
    assert by_key["listners"].reason == 'unknown key (did you mean "listeners"?)'
    assert by_key["queue.xyzzy"].reason.startswith(
        "unknown key; known keys: workers, lease_seconds"
    )


def test_tls_cert_and_key_go_together(tmp_path: Path) -> None:
    cert = write(tmp_path, "cert", "cert.pem")
    problem = only_problem(tmp_path, f'[listeners.smtp]\ntls_cert = "{cert}"\n')
    assert problem.key == "listeners.smtp.tls_key"
    assert problem.reason == "must be set together with listeners.smtp.tls_cert (both or neither)"
    problem = only_problem(tmp_path, f'[listeners.http]\ntls_key = "{cert}"\n')
    assert problem.key == "listeners.http.tls_cert"


def test_tls_files_must_exist(tmp_path: Path) -> None:
    cert = write(tmp_path, "cert", "cert.pem")
    missing = tmp_path / "missing-key.pem"
    problem = only_problem(
        tmp_path, f'[listeners.smpp_tls]\ntls_cert = "{cert}"\ntls_key = "{missing}"\n'
    )
    assert (problem.key, problem.value, problem.reason) == (
        "listeners.smpp_tls.tls_key",
        str(missing),
        "no such file",
    )
    key = write(tmp_path, "key", "key.pem")
    cfg = load_config(
        write(tmp_path, f'[listeners.smpp_tls]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'), env={}
    )
    assert cfg.listeners.smpp_tls.tls_cert == str(cert)


def test_upstream_checks(tmp_path: Path) -> None:
    text = (
        UPSTREAM.format(name="a")
        + 'bind_mode = "receiver"\nconcat = "udh"\ndata_coding_gsm = 8\nsource_ton = 7\n'
        + 'source_npi = 2\nmessage_id_format = "octal"\nreconnect_min = 10\nreconnect_max = 5\n'
        + 'system_type = "thirteen-char"\nsource_addr = "123456789012345678901"\nwindow = 0\n'
        + UPSTREAM.format(name="a")
        + "[[upstreams]]\nport = 1\n"
    )
    got = {(p.key, p.reason) for p in problems_of(tmp_path, text)}
    assert got == {
        ("upstreams[0].bind_mode", 'must be one of: "transceiver", "transmitter+receiver"'),
        ("upstreams[0].concat", 'must be one of: "udh8", "udh16", "sar", "payload"'),
        ("upstreams[0].data_coding_gsm", "must be one of 0, 1, 3 (SMPP v3.4 5.2.19)"),
        ("upstreams[0].source_ton", "must be one of 0, 1, 2, 3, 4, 5, 6 (SMPP v3.4 5.2.5)"),
        (
            "upstreams[0].source_npi",
            "must be one of 0, 1, 3, 4, 6, 8, 9, 10, 14, 18 (SMPP v3.4 5.2.6)",
        ),
        ("upstreams[0].message_id_format", 'must be one of: "auto", "hex", "decimal"'),
        ("upstreams[0].reconnect_max", "must be at least upstreams[0].reconnect_min (10)"),
        ("upstreams[0].system_type", "must be at most 12 characters (SMPP v3.4 4.1.1 system_type)"),
        ("upstreams[0].source_addr", "must be at most 20 characters (SMPP v3.4 4.4.1 source_addr)"),
        ("upstreams[0].window", "must be greater than 0"),
        ("upstreams[1].name", "upstream names must be unique: upstreams[0] has it too"),
        ("upstreams[2].name", "is required"),
        ("upstreams[2].host", "is required"),
        ("upstreams[2].system_id", "is required"),
    }


def test_upstream_all_options(tmp_path: Path) -> None:
    text = UPSTREAM.format(name="b") + (
        'bind_mode = "transmitter+receiver"\nconcat = "sar"\ndata_coding_gsm = 3\n'
        'message_id_format = "hex"\nthroughput = 12.5\nbinds = 2\ngsm_packed = true\n'
        'tls = true\nsource_addr = "ACME"\nsource_ton = 5\nsource_npi = 0\n'
    )
    (up,) = load_config(write(tmp_path, text), env={}).upstreams
    assert up.bind_mode is BindMode.TRANSMITTER_RECEIVER
    assert up.concat is Concat.SAR
    assert up.message_id_format is MessageIdFormat.HEX
    assert (up.data_coding_gsm, up.throughput, up.binds, up.gsm_packed, up.tls) == (
        3,
        12.5,
        2,
        True,
        True,
    )
    assert (up.source_addr, up.source_ton, up.source_npi) == ("ACME", 5, 0)


def test_two_listeners_on_one_address(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "[listeners.http]\nport = 2525\n")
    assert (problem.key, problem.value) == ("listeners.http.port", 2525)
    assert problem.reason == "listeners.smtp already listens on 127.0.0.1:2525"


def test_wildcard_listener_collides_with_loopback(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, '[simulator]\nhost = "0.0.0.0"\nport = 2775\n')
    assert problem.key == "simulator.port"
    assert problem.reason == "listeners.smpp already listens on 127.0.0.1:2775"


def test_same_port_different_hosts_or_disabled_is_fine(tmp_path: Path) -> None:
    text = '[listeners.http]\nhost = "127.0.0.2"\nport = 2525\n[listeners.smpp_tls]\nenabled = false\nport = 2775\n'
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.listeners.http.port == cfg.listeners.smtp.port == 2525


def test_bad_value_does_not_cause_a_spurious_collision(tmp_path: Path) -> None:
    # smtp.port is refused; its default (2525) must not then "collide" with http.
    problems = problems_of(tmp_path, "[listeners.smtp]\nport = 0\n[listeners.http]\nport = 2525\n")
    assert [p.key for p in problems] == ["listeners.smtp.port"]


def test_all_problems_are_collected(tmp_path: Path) -> None:
    text = (
        "[listeners.smtp]\nport = 99999\n"
        '[logging]\nlevel = "loud"\n'
        "[queue]\nworkers = -1\n"
        '[gateway]\ndomains = ["x y"]\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={"TELEWAY_QUEUE__LEASE_SECONDS": "soon"})
    keys = [p.key for p in info.value.problems]
    assert sorted(keys) == sorted(
        [
            "listeners.smtp.port",
            "logging.level",
            "queue.workers",
            "queue.lease_seconds",
            "gateway.domains",
        ]
    )
    lines = str(info.value).splitlines()
    assert len(lines) == 5
    assert "listeners.smtp.port = 99999: must be a port number 1-65535" in lines


@given(st.integers(min_value=-(2**20), max_value=2**20))
def test_port_range_property(port: int) -> None:
    try:
        cfg = load_config(None, env={"TELEWAY_LISTENERS__HTTP__PORT": str(port)})
    except ConfigError as exc:
        assert not 1 <= port <= 65535 or port in (2525, 2775, 3550, 2776)
        # out of range, or colliding with another listener (reported on the later of the two)
        assert exc.problems[0].key in ("listeners.http.port", "simulator.port")
    else:
        assert 1 <= port <= 65535
        assert cfg.listeners.http.port == port


# ------------------------------------------------------------------------------- database URL


@pytest.mark.parametrize(
    ("given", "effective"),
    [
        ("sqlite:///./data/t.db", "sqlite+aiosqlite:///./data/t.db"),
        ("sqlite:////srv/teleway/t.db", "sqlite+aiosqlite:////srv/teleway/t.db"),
        ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
        ("postgresql://tw:pw@db:5432/teleway", "postgresql+asyncpg://tw:pw@db:5432/teleway"),
        ("postgres://tw@db/teleway", "postgresql+asyncpg://tw@db/teleway"),
        ("postgresql+asyncpg://tw:pw@db/teleway", "postgresql+asyncpg://tw:pw@db/teleway"),
    ],
)
def test_database_urls_are_rewritten_to_async_drivers(given: str, effective: str) -> None:
    cfg = load_config(None, env={"TELEWAY_DATABASE__URL": given})
    assert cfg.database.url == effective


def test_database_properties() -> None:
    pg = load_config(None, env={"TELEWAY_DATABASE__URL": "postgresql://tw:p%40ss@db:5432/teleway"})
    assert pg.database.dialect == "postgresql"
    assert not pg.database.is_sqlite
    assert pg.database.sqlite_path is None
    assert pg.database.display_url == "postgresql+asyncpg://tw:***@db:5432/teleway"
    memory = load_config(None, env={"TELEWAY_DATABASE__URL": "sqlite+aiosqlite:///:memory:"})
    assert memory.database.sqlite_path is None
    absolute = load_config(None, env={"TELEWAY_DATABASE__URL": "sqlite:////srv/t.db"})
    assert absolute.database.sqlite_path == Path("/srv/t.db")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+asyncpg://u:pw@h/db", "postgresql+asyncpg://u:***@h/db"),
        ("postgresql+asyncpg://u:p@w/d@h/db", "postgresql+asyncpg://u:***@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        (
            "postgresql+asyncpg://h/db?user=u&password=pw",
            "postgresql+asyncpg://h/db?user=u&password=***",
        ),
        ("sqlite+aiosqlite:///./var/t.db", "sqlite+aiosqlite:///./var/t.db"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@given(
    user=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    password=st.text(
        st.characters(codec="utf-8", exclude_characters="\n"), min_size=1, max_size=30
    ),
    host=st.from_regex(r"[a-z][a-z0-9-]{0,10}(:[1-9][0-9]{0,3})?", fullmatch=True),
)
def test_mask_url_hides_any_password(user: str, password: str, host: str) -> None:
    url = f"postgresql+asyncpg://{user}:{password}@{host}/teleway"
    assert mask_url(url) == f"postgresql+asyncpg://{user}:***@{host}/teleway"


def test_database_password_never_in_problems(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, '[database]\nurl = "mysql://tw:hunter2@db/x"\n')
    assert problem.value == "mysql://tw:***@db/x"
    assert "hunter2" not in str(problem)


# ----------------------------------------------------------------------- environment overrides


def test_env_overrides_with_types(tmp_path: Path) -> None:
    path = write(tmp_path, "[listeners.smtp]\nport = 2600\n" + UPSTREAM.format(name="acme"))
    env = {
        "TELEWAY_LISTENERS__SMTP__PORT": "2526",  # int, wins over the file
        "TELEWAY_LISTENERS__SMTP__STARTTLS": "false",  # bool
        "TELEWAY_LISTENERS__HTTP__METRICS": "no",  # bool, friendly spelling
        "TELEWAY_QUEUE__POLL_INTERVAL": "0.25",  # float
        "TELEWAY_QUEUE__LEASE_SECONDS": "5",  # int for a float key
        "TELEWAY_GATEWAY__DOMAINS": '["a.example", "B.example"]',  # array
        "TELEWAY_LOGGING__LEVEL": "debug",  # enum
        "TELEWAY_LISTENERS__SMPP_TLS__PORT": "3551",  # key with a single underscore inside
        "TELEWAY_UPSTREAMS__0__PASSWORD": "12345678",  # string, although it looks like a number
        "TELEWAY_UPSTREAMS__0__WINDOW": "50",
        "TELEWAY_CONFIG": "ignored: names the file, not an override",
        "PATH": "/usr/bin",
    }
    cfg = load_config(path, env=env)
    assert cfg.listeners.smtp.port == 2526
    assert cfg.listeners.smtp.starttls is False
    assert cfg.listeners.http.metrics is False
    assert cfg.queue.poll_interval == 0.25
    assert cfg.queue.lease_seconds == 5.0
    assert isinstance(cfg.queue.lease_seconds, float)
    assert cfg.gateway.domains == ("a.example", "b.example")
    assert cfg.logging.level is LogLevel.DEBUG
    assert cfg.listeners.smpp_tls.port == 3551
    assert cfg.upstreams[0].password == "12345678"
    assert cfg.upstreams[0].window == 50


def test_env_string_forms() -> None:
    cfg = load_config(
        None,
        env={
            "TELEWAY_GATEWAY__DOMAINS": "a.example, b.example",
            "TELEWAY_SIMULATOR__SYSTEM_ID": '"quoted"',
            "TELEWAY_GATEWAY__NODE_NAME": "node-7",
        },
    )
    assert cfg.gateway.domains == ("a.example", "b.example")
    assert cfg.simulator.system_id == "quoted"
    assert cfg.gateway.node_name == "node-7"


def test_env_unknown_key_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"TELEWAY_LISTENERS__SMTP__PROT": "25"})
    (problem,) = info.value.problems
    assert problem.key == "TELEWAY_LISTENERS__SMTP__PROT"
    assert problem.reason == (
        "no key 'prot' in listeners.smtp (did you mean TELEWAY_LISTENERS__SMTP__PORT?)"
    )


@pytest.mark.parametrize(
    ("var", "reason"),
    [
        (
            "TELEWAY_DATABSE__URL",
            "no key 'databse' in top level (did you mean TELEWAY_DATABASE__URL?)",
        ),
        (
            "TELEWAY_DATABASE_URL",
            "separate section and key with a double underscore, e.g. TELEWAY_DATABASE__URL",
        ),
        ("TELEWAY_LISTENERS__SMTP", "listeners.smtp is a section; name one of its keys"),
        ("TELEWAY_QUEUE__WORKERS__X", "queue.workers is a key, not a section"),
        (
            "TELEWAY_UPSTREAMS__0__PASSWORD",
            "there is no upstreams[0]: the configuration file defines 0",
        ),
        ("TELEWAY_UPSTREAMS__PASSWORD", "name an entry and a key, e.g. TELEWAY_UPSTREAMS__0__HOST"),
        ("TELEWAY_UPSTREAMS__0", "there is no upstreams[0]: the configuration file defines 0"),
    ],
)
def test_env_bad_variables(var: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={var: "postgresql://u:topsecret@h/db"})
    (problem,) = info.value.problems
    assert (problem.key, problem.reason) == (var, reason)
    assert "topsecret" not in str(info.value)


def test_env_type_error_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"TELEWAY_QUEUE__WORKERS": "many"})
    (problem,) = info.value.problems
    assert (
        str(problem) == 'queue.workers = "many": must be an integer (set by TELEWAY_QUEUE__WORKERS)'
    )


def test_env_upstream_index_beyond_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, UPSTREAM.format(name="a"))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"TELEWAY_UPSTREAMS__1__HOST": "x"})
    assert (
        info.value.problems[0].reason
        == "there is no upstreams[1]: the configuration file defines 1"
    )


def test_env_can_set_a_section_missing_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway]\n")
    cfg = load_config(path, env={"TELEWAY_SECURITY__AUTH_FAIL_LIMIT": "9"})
    assert cfg.security.auth_fail_limit == 9


# ----------------------------------------------------------------------------------- secrets


def test_masked_dict_hides_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[database]\nurl = "postgresql://tw:dbsecret@db/teleway"\n' + UPSTREAM.format(name="acme"),
    )
    cfg = load_config(path, env={})
    masked = cfg.masked_dict()
    assert masked["upstreams"][0]["password"] == "***"
    assert masked["simulator"]["password"] == "***"
    assert masked["database"]["url"] == "postgresql+asyncpg://tw:***@db/teleway"
    dumped = tomli_w.dumps(masked)
    assert "dbsecret" not in dumped and "s3cret" not in dumped and '"simulat"' not in dumped
    plain = cfg.as_dict()
    assert plain["upstreams"][0]["password"] == "s3cret"
    assert plain["database"]["url"] == "postgresql+asyncpg://tw:dbsecret@db/teleway"


def test_empty_secret_is_shown_empty(tmp_path: Path) -> None:
    text = UPSTREAM.format(name="acme").replace('password = "s3cret"', 'password = ""')
    masked = load_config(write(tmp_path, text), env={}).masked_dict()
    assert masked["upstreams"][0]["password"] == ""


def test_secrets_never_in_error_messages(tmp_path: Path) -> None:
    text = (
        '[simulator]\npassword = "longsecret1"\n'
        + UPSTREAM.format(name="a").replace("s3cret", "pw-overlong")
        + 'pasword = "typo-secret"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(
            write(tmp_path, text), env={"TELEWAY_DATABASE__URL": "oracle://u:envsecret@h/x"}
        )
    message = str(info.value)
    for secret in ("longsecret1", "pw-overlong", "typo-secret", "envsecret"):
        assert secret not in message
    assert "simulator.password = ***: must be at most 8 characters" in message
    assert 'upstreams[0].pasword = ***: unknown key (did you mean "password"?)' in message


def test_round_trip_through_toml(tmp_path: Path) -> None:
    text = (
        '[gateway]\nnode_name = "n1"\ndomains = ["x.example"]\n'
        '[database]\nurl = "postgresql://tw:pw@db/teleway"\n'
        + UPSTREAM.format(name="a")
        + UPSTREAM.format(name="b")
        + 'concat = "payload"\n'
    )
    cfg = load_config(write(tmp_path, text), env={})
    again = load_config(write(tmp_path, tomli_w.dumps(cfg.as_dict()), "again.toml"), env={})
    assert again == cfg


def test_config_constructor_gives_raw_defaults() -> None:
    raw = Config()
    assert raw.upstreams == ()
    assert dataclasses.replace(raw, upstreams=load_config(None, env={}).upstreams) == load_config(
        None, env={}
    )


def test_iter_keys_lists_defaults() -> None:
    keys = dict(iter_keys())
    assert keys["listeners.smtp.port"] == 2525
    assert keys["upstreams[].name"] is None
    assert keys["upstreams[].concat"] is Concat.UDH8
    assert all(re.fullmatch(r"[a-z_]+(\[\])?(\.[a-z_]+)*", k) for k in keys)


def test_examples_in_the_docs_load(tmp_path: Path) -> None:
    docs = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", docs, re.DOTALL)
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        path = write(tmp_path, block, f"doc-{i}.toml")
        try:
            cfg = load_config(path, env={})
        except ConfigError as exc:
            # certificate files of the examples do not exist here; nothing else may be wrong
            assert all(p.reason == "no such file" for p in exc.problems), str(exc)
        else:
            assert cfg.upstreams
    two = load_config(write(tmp_path, blocks[-1], "two.toml"), env={})
    assert [u.name for u in two.upstreams] == ["primary", "backup"]


@pytest.mark.parametrize(
    "var",
    ["TELEWAY_UPSTREAMS__PASSWORD", "TELEWAY_SIMULATOR__PASWORD", "TELEWAY_SIMULATOR__PASSWORD__X"],
)
def test_env_secret_values_masked_in_structural_problems(var: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={var: "plain-secret"})
    (problem,) = info.value.problems
    assert problem.key == var
    assert problem.value == MASK
    assert "plain-secret" not in str(info.value)
