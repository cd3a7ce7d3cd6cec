"""SIGKILL during a submit_sm storm: every submit_sm answered ESME_ROK is in the store after a
restart (the answer is only sent after the commit).

`teleway serve` runs as a subprocess with its SMPP listener; this test is the ESME: four binds
keep 32 submit_sm each in flight and record every message_id answered with ESME_ROK. The
gateway is killed with SIGKILL in the middle of the storm, twice, and restarted; then the store
is read (read-only) and must hold every acknowledged message.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Connection, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from gwharness import GatewayFiles, free_port

from teleway.proto.smpp import BindTransmitter, SubmitSm, encode
from teleway.store import open_store
from teleway.store.tables import messages

PROVISIONING = """
[[accounts]]
name = "storm"
networks = ["127.0.0.0/8"]

[[accounts.smpp]]
system_id = "storm01"
password = "storm1"
max_binds = 8
throughput = 100000
"""


def gateway_files(root: Path) -> tuple[GatewayFiles, int]:
    http_port, smpp_port, sim_port = free_port(), free_port(), free_port()
    url = f"sqlite+aiosqlite:///{root}/var/teleway.db"
    config = root / "teleway.toml"
    config.write_text(
        f"""
[gateway]
data_dir = "{root}/var"
domains = ["teleway.test"]

[database]
url = "{url}"

[blobs]
directory = "{root}/var/blobs"

[listeners.smtp]
enabled = false

[listeners.smpp]
port = {smpp_port}
window = 32

[listeners.smpp_tls]
enabled = false

[listeners.http]
port = {http_port}

[simulator]
port = {sim_port}
receipt_delay = 0.05
"""
    )
    files = GatewayFiles(
        root=root, config=config, http_port=http_port, simulator_port=sim_port, database_url=url
    )
    return files, smpp_port


_HEADER = struct.Struct(">IIII")


async def storm(
    port: int,
    acked: list[str],
    stop: threading.Event,
    window: int = 32,
    refused: collections.Counter[int] | None = None,
) -> None:
    """One bind submitting until the connection dies or `stop` is set; `refused` counts the
    other answers to submit_sm by command_status."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    writer.write(encode(BindTransmitter(system_id="storm01", password="storm1", sequence_number=1)))
    sequence = 1
    try:
        head = await reader.readexactly(16)
        length, _, status, _ = _HEADER.unpack(head)
        await reader.readexactly(length - 16)
        if status != 0:
            return

        def submit() -> None:
            nonlocal sequence
            sequence += 1
            pdu = SubmitSm(
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr="447911123456",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr="17816170000",
                short_message=f"storm {sequence}".encode(),
                sequence_number=sequence,
            )
            writer.write(encode(pdu))

        for _ in range(window):
            submit()
        while not stop.is_set():
            head = await reader.readexactly(16)
            length, command_id, status, _ = _HEADER.unpack(head)
            body = await reader.readexactly(length - 16)
            if command_id == 0x80000004 and status == 0:
                acked.append(body.rstrip(b"\0").decode())
            elif command_id == 0x80000004 and refused is not None:
                refused[status] += 1
            submit()
    except (OSError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


def run_storm(
    port: int,
    acked: list[str],
    stop: threading.Event,
    refused: collections.Counter[int] | None = None,
) -> None:
    async def all_binds() -> None:
        await asyncio.gather(*(storm(port, acked, stop, refused=refused) for _ in range(4)))

    asyncio.run(all_binds())


def stored_ids(url: str) -> set[str]:
    def query(conn: Connection) -> set[str]:
        return set(conn.execute(select(messages.c.id)).scalars())

    async def read() -> set[str]:
        store = await open_store(url)
        try:
            return await store.db.read(query)
        finally:
            await store.close()

    return asyncio.run(read())


def wait_listening(port: int, process: subprocess.Popen[bytes], gw: GatewayFiles) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gateway exited early:\n{gw.log()}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"gateway did not listen:\n{gw.log()}")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_during_submit_storm_loses_no_acknowledged_message(tmp_path: Path) -> None:
    gw, smpp_port = gateway_files(tmp_path)
    gw.cli("db", "upgrade")
    (tmp_path / "prov.toml").write_text(PROVISIONING)
    gw.cli("admin", "apply", str(tmp_path / "prov.toml"))
    acked: list[str] = []
    gateway = None
    kills = 0
    try:
        for _ in range(2):
            gateway = gw.serve()
            wait_listening(smpp_port, gateway, gw)
            stop = threading.Event()
            before = len(acked)
            thread = threading.Thread(target=run_storm, args=(smpp_port, acked, stop))
            thread.start()
            deadline = time.monotonic() + 60
            while len(acked) < before + 300:
                assert time.monotonic() < deadline, f"storm too slow:\n{gw.log()}"
                time.sleep(0.01)
            gateway.send_signal(signal.SIGKILL)  # in the middle of the storm
            gateway.wait()
            kills += 1
            stop.set()
            thread.join(30)
            assert not thread.is_alive()
        gateway = gw.serve()  # a restart recovers the store
        wait_listening(smpp_port, gateway, gw)
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=60) == 0
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.send_signal(signal.SIGKILL)
            gateway.wait(timeout=10)
    stored = stored_ids(gw.database_url)
    missing = [m for m in acked if m not in stored]
    assert not missing, f"{len(missing)} acknowledged but not stored, e.g. {missing[:3]}"
    assert len(acked) >= 600 and kills == 2
    print(f"\nSMPP crash test: {len(acked)} acknowledged, {kills} SIGKILLs, 0 lost")


def commit_process_of(pid: int) -> int:
    """The gateway's SQLite commit process (store.commit_process), from /proc."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"commit_process.py" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    raise AssertionError("no commit process")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_of_the_commit_process_loses_nothing_and_the_gateway_goes_on(
    tmp_path: Path,
) -> None:
    """The store's commit process is killed twice in the storm: what it had not answered gets
    ESME_RSYSERR (a temporary error: the ESME sends again), every ESME_ROK is stored, and the
    gateway goes on with a new one without a restart."""
    gw, smpp_port = gateway_files(tmp_path)
    gw.cli("db", "upgrade")
    (tmp_path / "prov.toml").write_text(PROVISIONING)
    gw.cli("admin", "apply", str(tmp_path / "prov.toml"))
    acked: list[str] = []
    refused: collections.Counter[int] = collections.Counter()
    killed: list[int] = []
    gateway = gw.serve()
    stop = threading.Event()
    thread = threading.Thread(target=run_storm, args=(smpp_port, acked, stop, refused))
    try:
        wait_listening(smpp_port, gateway, gw)
        thread.start()
        for _ in range(3):
            before = len(acked)
            deadline = time.monotonic() + 60
            while len(acked) < before + 300:
                assert time.monotonic() < deadline, f"storm too slow:\n{gw.log()}"
                time.sleep(0.01)
            if len(killed) < 2:
                child = commit_process_of(gateway.pid)
                assert child not in killed  # a new one after each kill
                os.kill(child, signal.SIGKILL)
                killed.append(child)
        stop.set()
        thread.join(30)
        assert not thread.is_alive()
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=60) == 0, gw.log()
    finally:
        stop.set()
        if gateway.poll() is None:
            gateway.send_signal(signal.SIGKILL)
            gateway.wait(timeout=10)
    stored = stored_ids(gw.database_url)
    missing = [m for m in acked if m not in stored]
    assert not missing, f"{len(missing)} acknowledged but not stored, e.g. {missing[:3]}"
    assert len(acked) >= 900 and len(killed) == 2
    assert set(refused) <= {0x08}, refused  # ESME_RSYSERR only, for what the dead child held
    assert gw.log().count("SQLite commit process exited; the next new rows start another") == 2
