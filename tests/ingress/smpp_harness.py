"""A real gateway in this process, with its SMPP server on loopback, for the SMPP server tests.

`start_smpp_rig` writes a config (SQLite store, SMPP plain + TLS listeners on free ports, the
built-in SMSC simulator as the upstream with a short receipt delay), upgrades the database,
starts `runtime.gateway.Gateway` and provisions:

* account `acme` (network 127.0.0.0/8): `acme01`/`secret1` (throughput and max_binds from the
  arguments), `acme02`/`secret2` with system_type `VMA`;
* account `faraway` (network 10.0.0.0/8 only): `far01`/`secret3`.

Tests talk to it with python-smpplib (in a thread: it is synchronous), raw sockets with our
codec, or Kannel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from gwharness import free_port

from teleway.proto.smpp import decode, encode
from teleway.proto.smpp.pdu import Pdu
from teleway.runtime.config import load_config
from teleway.runtime.gateway import Gateway, upgrade_database
from teleway.store.directory import Directory

SENDER = "447911123456"  # international, TON 1
RECIPIENT = "17816170000"


@dataclass
class SmppRig:
    root: Path
    gateway: Gateway
    port: int
    tls_port: int
    directory: Directory

    @property
    def store(self) -> Any:
        assert self.gateway.store is not None
        return self.gateway.store


async def start_smpp_rig(
    root: Path,
    *,
    window: int = 10,
    throughput: float = 10_000,
    max_binds: int = 4,
    receipt_delay: float = 0.05,
    success_ratio: float = 1.0,
    auth_fail_limit: int = 5,
    response_timeout: float = 10.0,
    concat_timeout: float = 5.0,
    settings: dict[str, object] | None = None,
    extra: str = "",
) -> SmppRig:
    port, tls_port, sim_port = free_port(), free_port(), free_port()
    config = root / "teleway.toml"
    config.write_text(
        f"""
[gateway]
data_dir = "{root}/var"
domains = ["teleway.test"]

[database]
url = "sqlite+aiosqlite:///{root}/var/teleway.db"

[blobs]
directory = "{root}/var/blobs"

[listeners.smtp]
enabled = false

[listeners.smpp]
port = {port}
window = {window}
response_timeout = {response_timeout}
concat_timeout = {concat_timeout}

[listeners.smpp_tls]
port = {tls_port}

[listeners.http]
enabled = false

[security]
auth_fail_limit = {auth_fail_limit}

[queue]
poll_interval = 0.1
retry_base_seconds = 0.5
retry_max_seconds = 2
lease_seconds = 5

[simulator]
port = {sim_port}
receipt_delay = {receipt_delay}
success_ratio = {success_ratio}
{extra}
"""
    )
    # without `source` the gateway does not watch the file for route changes (that watcher
    # takes seconds to stop, and these tests do not change routes)
    cfg = dataclasses.replace(load_config(config, env={}), source=None)
    await upgrade_database(cfg)
    gateway = Gateway(cfg)
    await gateway.start()
    assert gateway.store is not None
    directory = Directory(gateway.store.engine)
    await directory.create_account("acme", actor="test", settings=settings or {})
    await directory.add_network("acme", "127.0.0.0/8", actor="test")
    await directory.add_smpp(
        "acme",
        "acme01",
        actor="test",
        password="secret1",
        max_binds=max_binds,
        throughput=throughput,
    )
    await directory.add_smpp("acme", "acme02", actor="test", password="secret2", system_type="VMA")
    await directory.create_account("faraway", actor="test")
    await directory.add_network("faraway", "10.0.0.0/8", actor="test")
    await directory.add_smpp("faraway", "far01", actor="test", password="secret3")
    return SmppRig(root=root, gateway=gateway, port=port, tls_port=tls_port, directory=directory)


async def stop_smpp_rig(rig: SmppRig) -> None:
    await rig.gateway.stop()


class RawEsme:
    """A blocking socket speaking our codec: for what smpplib refuses to send."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sequence = 0

    def send(self, pdu: Pdu) -> int:
        self.sequence += 1
        self.sock.sendall(encode(pdu.replace(sequence_number=self.sequence)))
        return self.sequence

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> Pdu:
        head = self._exact(4)
        (length,) = struct.unpack(">I", head)
        return decode(head + self._exact(length - 4))

    def request(self, pdu: Pdu) -> Pdu:
        self.send(pdu)
        return self.read()

    def closed_by_peer(self) -> bool:
        """True when the server closed the connection (EOF or reset)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


async def in_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(function, *args, **kwargs)
