"""TLS for every listener: the operator's certificate, or a self-signed one for a first run.

With `cert` and `key` empty, a self-signed pair for `localhost`, 127.0.0.1 and ::1 (plus the
gateway's domains) is generated once into `data_dir/tls/` (the key readable by its owner only)
and reused on later starts, so `make run` offers STARTTLS and SMPP over TLS without any setup.
Clients must then trust that certificate explicitly (or skip verification on loopback tests).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

SELF_SIGNED_DAYS = 825  # what browsers accept for a leaf certificate at most
CERT_NAME = "selfsigned-cert.pem"
KEY_NAME = "selfsigned-key.pem"


class TlsError(Exception):
    """A certificate or key cannot be used; the message says which file and why."""


def self_signed_pair(data_dir: Path, names: Sequence[str] = ()) -> tuple[Path, Path]:
    """The paths of the self-signed certificate and key under `data_dir/tls`, made if missing."""
    folder = Path(data_dir) / "tls"
    cert, key = folder / CERT_NAME, folder / KEY_NAME
    if cert.exists() and key.exists():
        return cert, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    hosts = ["localhost", *(n for n in names if n and n != "localhost")]
    alt: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    temporary = key.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    os.replace(temporary, key)
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key


def server_context(
    cert: str | Path, key: str | Path, data_dir: Path, names: Sequence[str] = ()
) -> ssl.SSLContext:
    """A server-side context (TLS 1.2 or newer) with the given pair, or the self-signed one
    when both are empty."""
    if not cert and not key:
        cert, key = self_signed_pair(data_dir, names)
    elif not cert or not key:
        raise TlsError("give both tls_cert and tls_key, or neither (a self-signed pair is made)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise TlsError(f"cannot read {exc.filename}: no such file") from exc
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"cannot use certificate {cert} with key {key}: {exc}") from exc
    return context


def client_context_trusting(cert: str | Path) -> ssl.SSLContext:
    """A client context that trusts exactly `cert` (tests, and `teleway` talking to itself)."""
    context = ssl.create_default_context(cafile=str(cert))
    return context
