"""An SMTP listener on loopback over a real (SQLite) store, for the SMTP ingress tests.

`SmtpRig` holds the store, the directory (account `acme`: senders `*@acme.test`, network
127.0.0.0/8, user `alice`), the listener (port chosen by the OS, STARTTLS with a self-signed
certificate) and the helpers tests use to talk to it with smtplib or swaks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import smtplib
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from teleway.core.model import Message
from teleway.ingress.smtp import SmtpLimits, SmtpListener, SmtpPolicy
from teleway.runtime.acceptance import Acceptor
from teleway.runtime.metrics import Metrics
from teleway.runtime.wiring import RandomIds, SystemClock
from teleway.store import Store, open_store
from teleway.store.blobs import LocalBlobStore
from teleway.store.directory import Directory

DOMAIN = "teleway.test"
PASSWORD = "correct horse battery staple"
SWAKS = shutil.which("swaks") or "/usr/bin/swaks"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (the tests' own; the gateway has runtime.tls)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls(directory: Path) -> ssl.SSLContext:
    cert, key = self_signed(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class SmtpRig:
    root: Path
    store: Store
    directory: Directory
    policy: SmtpPolicy
    listener: SmtpListener
    metrics: Metrics
    blobs: LocalBlobStore
    accepted: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.listener.port

    async def messages(self) -> list[Message]:
        found = []
        for message_id in self.accepted:
            message = await self.store.messages.get_message(message_id)
            assert message is not None
            found.append(message)
        return found

    async def only_message(self) -> Message:
        messages = await self.messages()
        assert len(messages) == 1, messages
        return messages[0]

    async def session(self, fn: Callable[[smtplib.SMTP], Any]) -> Any:
        """Run `fn(client)` in a thread with an smtplib client connected to the listener."""

        def run() -> Any:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
                return fn(client)

        return await asyncio.to_thread(run)

    async def swaks(self, *args: str) -> subprocess.CompletedProcess[str]:
        process = await asyncio.create_subprocess_exec(
            SWAKS,
            "--server",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--hide-informational",
            "--timeout",
            "30",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), 60)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        return subprocess.CompletedProcess(
            [SWAKS, *args], process.returncode or 0, out.decode(), err.decode()
        )


def email(
    *,
    sender: str = "bob@acme.test",
    to: str = f"+17816170000@{DOMAIN}",
    subject: str = "Hello",
    body: str = "Meeting at 10",
) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)  # CRLF line ends, as on the wire
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return message


class RecordingAcceptor:
    """The gateway's Acceptor, remembering the ids it committed (for the tests to read)."""

    def __init__(self, acceptor: Acceptor, seen: list[str]) -> None:
        self.acceptor = acceptor
        self.seen = seen
        self.failure: Exception | None = None

    async def accept(self, submission: Any) -> Any:
        if self.failure is not None:
            raise self.failure
        accepted = await self.acceptor.accept(submission)
        self.seen.append(accepted.message_id)
        return accepted


async def start_rig(
    root: Path,
    *,
    limits: dict[str, Any] | None = None,
    settings: dict[str, object] | None = None,
    networks: tuple[str, ...] = ("127.0.0.0/8",),
    tls: bool = True,
) -> tuple[SmtpRig, RecordingAcceptor]:
    url = f"sqlite+aiosqlite:///{root}/teleway.db"
    store = await open_store(url, migrate=True)
    directory = Directory(store.engine)
    await directory.create_account("acme", actor="test", settings=settings or {})
    await directory.add_sender("acme", "*@acme.test", actor="test")
    await directory.add_sender("acme", "ops@partner.test", actor="test")
    for cidr in networks:
        await directory.add_network("acme", cidr, actor="test")
    await directory.add_user("alice", actor="test", account="acme", password=PASSWORD)
    await directory.create_account("other", actor="test")
    await directory.add_sender("other", "*@other.test", actor="test")
    await directory.add_network("other", "10.0.0.0/8", actor="test")
    metrics = Metrics()
    seen: list[str] = []
    recording = RecordingAcceptor(
        Acceptor(store=store.messages, clock=SystemClock(), ids=RandomIds(), metrics=metrics),
        seen,
    )
    blobs = LocalBlobStore(root / "blobs")
    policy = SmtpPolicy(
        limits=SmtpLimits(domains=(DOMAIN,), hostname=DOMAIN, **(limits or {})),
        directory=directory,
        accept=recording.accept,
        blobs=blobs,
        spool_dir=root / "spool",
        replies=lambda command, code: metrics.smtp_replies.labels(command, code).inc(),
    )
    listener = SmtpListener(
        policy, host="127.0.0.1", port=0, tls_context=server_tls(root) if tls else None
    )
    await listener.start()
    rig = SmtpRig(
        root=root,
        store=store,
        directory=directory,
        policy=policy,
        listener=listener,
        metrics=metrics,
        blobs=blobs,
        accepted=seen,
    )
    return rig, recording


async def stop_rig(rig: SmtpRig) -> None:
    await rig.listener.stop()
    await rig.store.close()


MakeRig = Callable[..., Awaitable[tuple[SmtpRig, RecordingAcceptor]]]


@pytest.fixture
async def make_rig(tmp_path: Path, cheap_hashing: None) -> AsyncIterator[MakeRig]:
    """Start a rig with options (limits=, settings=, networks=, tls=); stopped at the end.
    Test modules import this fixture (and `rig`) from here."""
    started: list[SmtpRig] = []

    async def make(**options: Any) -> tuple[SmtpRig, RecordingAcceptor]:
        root = tmp_path / f"rig{len(started)}"
        root.mkdir()
        made, acceptor = await start_rig(root, **options)
        started.append(made)
        return made, acceptor

    try:
        yield make
    finally:
        for made in started:
            await stop_rig(made)


@pytest.fixture
async def rig(make_rig: MakeRig) -> SmtpRig:
    made, _ = await make_rig()
    return made
