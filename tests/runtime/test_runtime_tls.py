"""Self-signed TLS for first runs, and the operator's own pair."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from teleway.runtime.tls import TlsError, client_context_trusting, self_signed_pair, server_context


def test_self_signed_pair_is_made_once_and_private(tmp_path: Path) -> None:
    cert, key = self_signed_pair(tmp_path, ["gw.example"])
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert key.stat().st_mode & 0o077 == 0
    first = cert.read_bytes()
    again, _ = self_signed_pair(tmp_path, ["gw.example"])
    assert again.read_bytes() == first


def test_half_a_pair_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="both"):
        server_context("cert.pem", "", tmp_path)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="no such file"):
        server_context(tmp_path / "nope.pem", tmp_path / "nope.key", tmp_path)


async def test_handshake_with_the_self_signed_certificate(tmp_path: Path) -> None:
    context = server_context("", "", tmp_path, ["gw.example"])
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        cert, _ = self_signed_pair(tmp_path)
        for host in ("localhost", "gw.example"):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context_trusting(cert), server_hostname=host
            )
            writer.write(b"ping\n")
            assert await reader.readline() == b"ping\n"
            writer.close()
        # a client that does not trust it fails the handshake
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=ssl.create_default_context(), server_hostname="localhost"
            )
    finally:
        server.close()
        await server.wait_closed()
