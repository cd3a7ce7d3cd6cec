"""A private Postfix relaying to the SMTP listener: a real MTA's SMTP client (EHLO, PIPELINING,
8BITMIME, retries after 4xx) delivers a batch, one message of which first gets 451 4.3.0."""
# ruff: noqa: F811 (pytest fixtures imported from smtp_harness are test parameters)

from __future__ import annotations

import asyncio
import re
import shutil
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from gwharness import free_port
from smtp_harness import DOMAIN, MakeRig, make_rig  # noqa: F401

from teleway.core.ports import StoreUnavailable

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
pytestmark = pytest.mark.skipif(not Path(POSTFIX).exists(), reason="postfix is not installed")


class Postfix:
    """A throw-away Postfix instance: its own config, queue and log under `base`."""

    def __init__(self, base: Path, relay_port: int) -> None:
        self.base = base
        self.conf = base / "conf"
        self.port = free_port()
        self.relay_port = relay_port

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.conf), *args], capture_output=True, text=True, timeout=60
        )

    def start(self) -> None:
        for sub in ("conf", "queue", "data"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.base / "data", "postfix")
        master = Path("/etc/postfix/master.cf.proto").read_text()
        master = re.sub(
            r"^smtp(\s+)inet(\s+)n(\s+)-(\s+)y",
            f"127.0.0.1:{self.port} inet n - n",
            master,
            flags=re.M,
        )
        # no chroot anywhere (the private queue is not a chroot jail)
        master = re.sub(r"^([a-z0-9.:]+ +[a-z-]+ +[-ny] +[-ny] +)y ", r"\1n ", master, flags=re.M)
        (self.conf / "master.cf").write_text(master)
        (self.conf / "main.cf").write_text(
            f"""compatibility_level = 3.6
myhostname = relay.postfix.test
mydestination =
local_transport = error:local delivery disabled
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{self.relay_port}
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtputf8_enable = yes
queue_directory = {self.base}/queue
data_directory = {self.base}/data
maillog_file = {self.base}/maillog
maillog_file_prefixes = /var, /dev/stdout, {self.base}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""
        )
        check = self.run("check")
        assert check.returncode == 0, check.stderr
        started = self.run("start")
        assert started.returncode == 0, started.stderr + self.log()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("postfix did not listen:\n" + self.log())

    def stop(self) -> None:
        if self.run("stop").returncode != 0:
            self.run("abort")

    def flush(self) -> None:
        subprocess.run(["postqueue", "-c", str(self.conf), "-f"], capture_output=True, timeout=30)

    def log(self) -> str:
        path = self.base / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def postfix_base(tmp_path: Path) -> Iterator[Path]:
    base = Path("/tmp") / f"pf-{tmp_path.name[-20:]}-{free_port()}"  # short: unix socket paths
    yield base
    shutil.rmtree(base, ignore_errors=True)


class FirstFails:
    """Wraps the rig's acceptor: the first DATA of the batch gets StoreUnavailable (451)."""

    def __init__(self, acceptor: Any) -> None:
        self.acceptor = acceptor
        self.failed = 0

    async def accept(self, submission: Any) -> Any:
        if self.failed == 0:
            self.failed += 1
            raise StoreUnavailable("simulated outage")
        return await self.acceptor.accept(submission)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_postfix_relays_a_batch_with_a_451_retry(
    make_rig: MakeRig, postfix_base: Path
) -> None:
    rig, acceptor = await make_rig(tls=False)
    flaky = FirstFails(acceptor)
    rig.policy.accept = flaky.accept
    postfix = Postfix(postfix_base, rig.port)
    await asyncio.to_thread(postfix.start)
    try:
        batch = 6

        def inject() -> None:
            with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
                for i in range(batch):
                    message = EmailMessage(policy=SMTP_POLICY)
                    message["From"] = "bob@acme.test"
                    message["To"] = f"+1781617{i:04d}@{DOMAIN}"
                    message["Subject"] = f"Batch {i}"
                    message.set_content(f"Grüße Nummer {i} – ünïcødé", cte="8bit")
                    client.send_message(
                        message,
                        to_addrs=[f"+1781617{i:04d}@{DOMAIN}", f"+1781627{i:04d}@fax.{DOMAIN}"],
                    )

        await asyncio.to_thread(inject)
        deadline = time.monotonic() + 60
        while len(rig.accepted) < batch:
            assert time.monotonic() < deadline, postfix.log()
            await asyncio.sleep(0.5)
            if flaky.failed and len(rig.accepted) == batch - 1:
                await asyncio.to_thread(postfix.flush)
    finally:
        await asyncio.to_thread(postfix.stop)
    log = postfix.log()
    assert "451 4.3.0" in log  # Postfix saw the temporary failure and kept the message
    assert log.count("status=sent") == 2 * batch  # one line per recipient
    messages = await rig.messages()
    subjects = sorted(m.content.subject for m in messages)
    assert subjects == [f"Batch {i}" for i in range(batch)]
    for message in messages:
        i = int(message.content.subject.split()[1])
        assert message.content.text == f"Grüße Nummer {i} – ünïcødé"  # 8BITMIME intact
        deliveries = await rig.store.messages.deliveries_of(message.id)
        assert sorted(d.recipient for d in deliveries) == sorted(
            [f"+1781617{i:04d}", f"+1781627{i:04d}"]
        )
