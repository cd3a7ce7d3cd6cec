"""Is the e-mail really from whom it says? SPF (RFC 7208) and DKIM (RFC 6376) with DMARC-style
alignment of the From domain (RFC 7489 3.1), per account (`check_spf`, `check_dkim`).

pyspf and dkimpy do the work; both resolve through dnspython's default resolver, which the
gateway points at the servers in `listeners.smtp.dns_servers` (see `use_dns_servers`), so tests
answer from a DNS server of their own on loopback without reaching the internet. Lookups block:
callers run these functions in a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dkim
import dns.resolver
import spf

SPF_QUERY_SECONDS = 20.0  # RFC 7208 4.6.4 suggests at least 20 s for the whole evaluation
DKIM_DNS_SECONDS = 5.0


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """An authenticity answer: `ok`, or the SMTP reply to give."""

    ok: bool
    result: str  # pass / fail / softfail / neutral / none / temperror / permerror
    reply: str = ""  # the SMTP reply when not ok
    domain: str = ""  # the domain that passed (SPF: MAIL FROM domain; DKIM: d=)


def use_dns_servers(servers: Sequence[str]) -> None:
    """Point dnspython's default resolver (used by pyspf and dkimpy) at `servers`
    (`host` or `host:port`). An empty list keeps the system's resolv.conf."""
    if not servers:
        return
    resolver = dns.resolver.Resolver(configure=False)
    nameservers = []
    ports: dict[str, int] = {}
    for server in servers:
        host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
        host = host or server
        nameservers.append(host)
        if port:
            ports[host] = int(port)
    resolver.nameservers = nameservers
    resolver.nameserver_ports = ports
    resolver.lifetime = SPF_QUERY_SECONDS
    dns.resolver.default_resolver = resolver


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment (RFC 7489 3.1.1) without the public suffix list: the same domain, or
    one a subdomain of the other."""
    domain, from_domain = domain.lower(), from_domain.lower()
    return (
        domain == from_domain
        or from_domain.endswith("." + domain)
        or domain.endswith("." + from_domain)
    )


def check_spf(ip: str, mail_from: str, helo: str) -> Verdict:
    """SPF of the envelope sender for the connecting IP. Only `pass` is good enough: an account
    that asks for SPF wants its senders' domains to authorise the client."""
    try:
        result, explanation = spf.check2(
            i=ip, s=mail_from, h=helo or "unknown", querytime=SPF_QUERY_SECONDS
        )
    except Exception as exc:  # pyspf raises for malformed input it does not catch itself
        return Verdict(ok=False, result="permerror", reply=f"550 5.7.24 SPF error: {exc}")
    domain = domain_of(mail_from)
    if result == "pass":
        return Verdict(ok=True, result=result, domain=domain)
    if result == "temperror":
        return Verdict(
            ok=False,
            result=result,
            reply=f"451 4.7.24 SPF of {domain} could not be checked now: {explanation}",
        )
    if result == "permerror":
        return Verdict(
            ok=False, result=result, reply=f"550 5.7.24 SPF record of {domain} is broken"
        )
    return Verdict(
        ok=False,
        result=result,
        reply=f"550 5.7.23 SPF of {domain} does not authorise {ip} (SPF {result})",
    )


def check_dkim(message: bytes, from_domain: str, spf_domain: str | None) -> Verdict:
    """DKIM signature of the message, aligned with the From domain; like DMARC, an aligned SPF
    pass (`spf_domain`) is enough on its own."""
    if spf_domain and aligned(spf_domain, from_domain):
        return Verdict(ok=True, result="pass", domain=spf_domain)
    try:
        signer = dkim.DKIM(message, timeout=int(DKIM_DNS_SECONDS))
        valid = signer.verify()
    except dkim.DKIMException as exc:
        return Verdict(ok=False, result="fail", reply=f"550 5.7.20 no valid DKIM signature: {exc}")
    except Exception as exc:  # DNS errors surface as plain exceptions from dnspython
        return Verdict(
            ok=False, result="temperror", reply=f"451 4.7.5 DKIM key lookup failed: {exc!r}"
        )
    if not valid:
        return Verdict(ok=False, result="fail", reply="550 5.7.20 no valid DKIM signature")
    signing = (signer.domain or b"").decode("ascii", "replace").lower()
    if not aligned(signing, from_domain):
        return Verdict(
            ok=False,
            result="fail",
            reply=(
                f"550 5.7.22 the DKIM signature of {signing} does not match"
                f" the From domain {from_domain}"
            ),
        )
    return Verdict(ok=True, result="pass", domain=signing)
