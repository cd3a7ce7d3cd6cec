"""SPF and DKIM/DMARC alignment per account, answered by a DNS server of the test's own on
loopback (dnspython on the wire), so nothing reaches the internet."""
# ruff: noqa: F811 (pytest fixtures imported from smtp_harness are test parameters)

from __future__ import annotations

import asyncio
import base64
import smtplib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import dkim
import dns.message
import dns.rcode
import dns.resolver
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from smtp_harness import DOMAIN, MakeRig, email, make_rig  # noqa: F401

from teleway.ingress.smtp_authenticity import aligned, use_dns_servers

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)
PUBLIC_B64 = base64.b64encode(
    KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()

ZONE = {
    "acme.test.": ["v=spf1 ip4:127.0.0.0/8 -all"],
    "bad.test.": ["v=spf1 ip4:192.0.2.1 -all"],
    "sel._domainkey.acme.test.": [f"v=DKIM1; k=rsa; p={PUBLIC_B64}"],
    "sel._domainkey.evil.test.": [f"v=DKIM1; k=rsa; p={PUBLIC_B64}"],
}


class TxtServer(asyncio.DatagramProtocol):
    """Answers TXT questions from ZONE; NXDOMAIN for other names."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().lower()
        records = ZONE.get(name)
        if records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            chunks = [
                " ".join(f'"{r[i : i + 250]}"' for i in range(0, len(r), 250)) for r in records
            ]
            response.answer.append(dns.rrset.from_text(name, 60, "IN", "TXT", *chunks))
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def dns_server() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(TxtServer, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")[1]
    transport.close()


@pytest.fixture(autouse=True)
def restore_resolver() -> Iterator[None]:
    saved = dns.resolver.default_resolver
    yield
    dns.resolver.default_resolver = saved


def transaction(client: smtplib.SMTP, sender: str, data: bytes) -> tuple[Any, Any]:
    client.mail(sender)
    rcpt = client.rcpt(f"+17816170000@{DOMAIN}")
    if rcpt[0] != 250:
        client.rset()
        return rcpt, None
    return rcpt, client.data(data)


async def test_spf_pass_and_fail(make_rig: MakeRig, dns_server: int) -> None:
    use_dns_servers([f"127.0.0.1:{dns_server}"])
    rig, _ = await make_rig(settings={"check_spf": True})
    await rig.directory.add_sender("acme", "*@bad.test", actor="t")
    await rig.directory.add_sender("acme", "*@nospf.test", actor="t")

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        return [
            transaction(client, f"bob@{domain}", email(sender=f"bob@{domain}").as_bytes())
            for domain in ("acme.test", "bad.test", "nospf.test")
        ]

    good, bad, none = await rig.session(go)
    assert good[0][0] == 250 and good[1][0] == 250
    assert bad[0][0] == 550 and bad[0][1].startswith(b"5.7.23")
    assert b"does not authorise 127.0.0.1 (SPF fail)" in bad[0][1]
    assert none[0][0] == 550 and b"SPF none" in none[0][1]
    assert len(rig.accepted) == 1


def signed(domain: str, sender: str = "bob@acme.test") -> bytes:
    raw = email(sender=sender, subject="Signed").as_bytes()
    signature = dkim.sign(raw, b"sel", domain.encode(), PRIVATE_PEM, linesep=b"\r\n")
    return signature + raw


async def test_dkim_alignment(make_rig: MakeRig, dns_server: int) -> None:
    use_dns_servers([f"127.0.0.1:{dns_server}"])
    rig, _ = await make_rig(settings={"check_dkim": True})

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        return [
            transaction(client, "bob@acme.test", data)[1]
            for data in (
                signed("acme.test"),
                email().as_bytes(),  # no signature
                signed("evil.test"),  # valid, but not the From domain
                signed("acme.test").replace(b"Meeting at 10", b"Meeting at 11"),  # altered
            )
        ]

    good, unsigned, foreign, altered = await rig.session(go)
    assert good[0] == 250
    assert unsigned[0] == 550 and unsigned[1].startswith(b"5.7.20")
    assert foreign[0] == 550 and foreign[1].startswith(b"5.7.22")
    assert b"evil.test does not match the From domain acme.test" in foreign[1]
    assert altered[0] == 550 and altered[1].startswith(b"5.7.20")
    assert len(rig.accepted) == 1


async def test_aligned_spf_is_enough_for_dmarc(make_rig: MakeRig, dns_server: int) -> None:
    use_dns_servers([f"127.0.0.1:{dns_server}"])
    rig, _ = await make_rig(settings={"check_dkim": True, "check_spf": True})

    def go(client: smtplib.SMTP) -> Any:
        client.ehlo("client.test")
        return transaction(client, "bob@acme.test", email().as_bytes())[1]

    reply = await rig.session(go)
    assert reply[0] == 250  # unsigned, but SPF passed for the From domain (DMARC: either)


def test_relaxed_alignment() -> None:
    assert aligned("acme.test", "acme.test")
    assert aligned("mail.acme.test", "acme.test")
    assert aligned("acme.test", "news.acme.test")
    assert not aligned("evil.test", "acme.test")
    assert not aligned("notacme.test", "acme.test")
