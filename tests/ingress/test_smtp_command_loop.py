"""The listener's own command loop (`GatewaySMTP._serve_commands`, with MAIL/RCPT of a plain
address handed straight to the policy) answers every command stream exactly as aiosmtpd's loop
does: both run side by side on real sockets and get the same bytes, pipelined, generated."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_harness import client_tls, server_tls

from teleway.core.model import Accepted, Account, Submission, User
from teleway.ingress.smtp import GatewaySMTP, SmtpLimits, SmtpListener, SmtpPolicy
from teleway.store.blobs import LocalBlobStore

DOMAIN = "teleway.test"


class Senders:
    """Provisioning in memory: `*@acme.test` may send from loopback."""

    async def account_for_sender(self, address: str) -> Account | None:
        return Account(id=1, name="acme") if address.endswith("@acme.test") else None

    async def allows(self, account_id: int, ip: str) -> bool:
        return ip.startswith("127.")

    async def verify_login(self, username: str, password: str) -> User | None:
        return None


async def accept(submission: Submission) -> Accepted:
    """Commits nothing; the id depends only on the submission, so both servers agree."""
    digest = hashlib.sha256(repr((submission.recipients, submission.content)).encode())
    return Accepted(
        message_id=digest.hexdigest()[:16],
        delivery_ids=(),
        recipients=tuple(r.number for r in submission.recipients),
    )


class ReferenceListener(SmtpListener):
    """The same listener on aiosmtpd's own command loop: a command call limit (never reached)
    makes `GatewaySMTP` leave the loop to aiosmtpd."""

    def _protocol(self) -> GatewaySMTP:
        protocol = super()._protocol()
        protocol._enforce_call_limit = True
        protocol._call_limit_default = 10**9
        protocol._call_limit_base = {}
        return protocol


class Servers:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.ports: dict[str, int] = {}
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    def _policy(self, name: str) -> SmtpPolicy:
        return SmtpPolicy(
            limits=SmtpLimits(
                domains=(DOMAIN,),
                hostname=DOMAIN,
                max_message_size=4096,
                max_recipients=3,
                max_connections_per_ip=0,
                connections_per_minute_per_ip=0,
                messages_per_minute_per_ip=0,
                messages_per_minute_per_account=0,
            ),
            directory=Senders(),
            accept=accept,
            blobs=LocalBlobStore(self.root / name / "blobs"),
            spool_dir=self.root / name / "spool",
        )

    async def _start(self) -> None:
        tls = server_tls(self.root)
        self.listeners = {
            "ours": SmtpListener(self._policy("ours"), host="127.0.0.1", port=0),
            "aiosmtpd": ReferenceListener(self._policy("aiosmtpd"), host="127.0.0.1", port=0),
            "ours-tls": SmtpListener(
                self._policy("ours-tls"), host="127.0.0.1", port=0, tls_context=tls
            ),
            "aiosmtpd-tls": ReferenceListener(
                self._policy("aiosmtpd-tls"), host="127.0.0.1", port=0, tls_context=tls
            ),
        }
        for name, listener in self.listeners.items():
            await listener.start()
            self.ports[name] = listener.port

    def stop(self) -> None:
        async def stop() -> None:
            for listener in self.listeners.values():
                await listener.stop()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    running = Servers(tmp_path_factory.mktemp("command-loop"))
    yield running
    running.stop()


def conversation(port: int, lines: list[bytes]) -> bytes:
    """Send every line at once (pipelined), then QUIT; everything the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"".join(lines) + b"QUIT\r\n")
        received = []
        while chunk := client.recv(65536):
            received.append(chunk)
    return b"".join(received)


def conversation_after_starttls(port: int, lines: list[bytes]) -> bytes:
    """EHLO and STARTTLS in the clear, then the lines (pipelined) and QUIT over TLS."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        plain.sendall(b"EHLO client.test\r\nSTARTTLS\r\n")
        clear = b""
        while not clear.endswith(b"\r\n") or b"\r\n220 " not in clear:
            chunk = plain.recv(65536)
            assert chunk, clear
            clear += chunk
        with client_tls().wrap_socket(plain) as client:
            client.sendall(b"".join(lines) + b"QUIT\r\n")
            received = [clear]
            while chunk := client.recv(65536):
                received.append(chunk)
    return b"".join(received)


_address = st.sampled_from(
    [
        "<bob@acme.test>",
        "<eve@evil.test>",
        "<Bob.Smith@ACME.test>",
        f"<+17816170000@{DOMAIN}>",
        f"<+17816170001@fax.{DOMAIN}>",
        f"<12@{DOMAIN}>",
        f"<+17816170002@pager.{DOMAIN}>",
        "<+17816170003@example.com>",
        '<"quoted"@acme.test>',
        "<>",
        "<a..b@acme.test>",
        "bob@acme.test",
        "<bob@acme.test",
        "<" + "x" * 70 + "@acme.test>",
        "<é@acme.test>",
    ]
)
_parameters = st.sampled_from(
    [
        *("", " SIZE=100", " SIZE=99999", " SIZE", " SIZE=1x", " BODY=8BITMIME", " BODY=BINARY"),
        *(" SMTPUTF8", " X=1", "  ", "\t", " (comment)"),
    ]
)
_keyword = st.sampled_from(["MAIL FROM:", "mail from:", "Mail From: ", "MAIL FROM", "MAIL TO:"])
_rcpt_keyword = st.sampled_from(["RCPT TO:", "rcpt to:", "RCPT TO: ", "RCPT", "RCPT FROM:"])
_mail = st.builds(lambda k, a, p: f"{k}{a}{p}".encode(), _keyword, _address, _parameters)
_rcpt = st.builds(lambda k, a, p: f"{k}{a}{p}".encode(), _rcpt_keyword, _address, _parameters)
_body = st.sampled_from(
    [
        b"From: bob@acme.test\r\nSubject: Hi\r\n\r\nMeeting at 10\r\n.\r\n",
        b"From: eve@evil.test\r\n\r\nhello\r\n.\r\n",
        b"From: bob@acme.test\r\n\r\n..stuffed\r\n.\r\n",
        b"From: bob@acme.test\r\n\r\n" + b"x" * 5000 + b"\r\n.\r\n",
        b".\r\n",
    ]
)
_other = st.sampled_from(
    [
        b"EHLO client.test",
        b"HELO client.test",
        b"EHLO",
        b"RSET",
        b"RSET x",
        b"NOOP",
        b"NOOP hello",
        b"VRFY bob@acme.test",
        b"HELP",
        b"HELP MAIL",
        b"HELP RCPT",
        b"DATA x",
        b"",
        b"   ",
        b"BOGUS command",
        b"\xff\xfe",
        b"MAIL FROM:<b\xffb@acme.test>",
        b"AUTH PLAIN AGJvYgBwdw==",
        b"STARTTLS",
        b"MAIL FROM:<bob@acme.test> " + b"S" * 600,
        b"NOOP " + b"n" * 1100,
        # longer than 512: allowed only in an EHLO session (SIZE and SMTPUTF8 extend MAIL)
        b"MAIL FROM:<bob@acme.test> SIZE=" + b"1" * 500,
    ]
)


def _line(item: bytes) -> bytes:
    return item + b"\r\n"


_step = st.one_of(
    _mail.map(_line),
    _rcpt.map(_line),
    _other.map(_line),
    _body.map(lambda body: b"DATA\r\n" + body),
)
_script = st.lists(_step, max_size=12).map(lambda steps: [b"EHLO client.test\r\n", *steps])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=_script, greet=st.booleans())
def test_both_loops_answer_every_script_alike(
    servers: Servers, script: list[bytes], greet: bool
) -> Any:
    lines = script if greet else script[1:]
    ours = conversation(servers.ports["ours"], lines)
    reference = conversation(servers.ports["aiosmtpd"], lines)
    assert ours == reference


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=_script, greet=st.booleans())
def test_both_loops_answer_alike_after_starttls(
    servers: Servers, script: list[bytes], greet: bool
) -> Any:
    """STARTTLS gives the connection a new session (no EHLO yet): the loop must use it. (A
    second STARTTLS is left out: the client would have to start TLS within TLS.)"""
    lines = [line for line in (script if greet else script[1:]) if line != b"STARTTLS\r\n"]
    ours = conversation_after_starttls(servers.ports["ours-tls"], lines)
    assert ours == conversation_after_starttls(servers.ports["aiosmtpd-tls"], lines)


def test_after_starttls_the_new_session_counts(servers: Servers) -> None:
    """Before the EHLO that follows STARTTLS, a MAIL line over 512 octets is too long (the
    extended limits belong to the session STARTTLS ended)."""
    lines = [b"MAIL FROM:<bob@acme.test> SIZE=" + b"1" * 500 + b"\r\n", b"NOOP\r\n"]
    ours = conversation_after_starttls(servers.ports["ours-tls"], lines)
    assert ours == conversation_after_starttls(servers.ports["aiosmtpd-tls"], lines)
    assert ours.endswith(b"500 Command line too long\r\n250 OK\r\n221 Bye\r\n"), ours[-80:]


def test_a_plain_transaction_goes_the_fast_way_and_is_answered_alike(servers: Servers) -> None:
    lines = [
        b"EHLO client.test\r\n",
        b"MAIL FROM:<bob@acme.test>\r\n",
        f"RCPT TO:<+17816170000@{DOMAIN}>\r\n".encode(),
        b"DATA\r\n",
        b"From: bob@acme.test\r\nSubject: Hi\r\n\r\nMeeting at 10\r\n.\r\n",
    ]
    ours = conversation(servers.ports["ours"], lines)
    assert ours == conversation(servers.ports["aiosmtpd"], lines)
    replies = [line[:3] for line in ours.split(b"\r\n") if line[3:4] == b" "]
    assert replies == [b"220", b"250", b"250", b"250", b"354", b"250", b"221"]
    assert b"250 2.1.5 +17816170000 by SMS OK" in ours


def test_command_stream_split_into_single_bytes_is_read_alike(servers: Servers) -> None:
    """Commands arriving a byte at a time (the loop must wait for whole lines)."""
    lines = (
        b"EHLO c\r\nMAIL FROM:<bob@acme.test>\r\nRCPT TO:<+17816170000@teleway.test>\r\nRSET\r\n"
    )
    answers = []
    for port in (servers.ports["ours"], servers.ports["aiosmtpd"]):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            for byte in lines + b"QUIT\r\n":
                client.sendall(bytes([byte]))
            answers.append(b"".join(iter(lambda c=client: c.recv(65536), b"")))
    assert answers[0] == answers[1]
    assert answers[0].count(b"\r\n250 ") >= 3
