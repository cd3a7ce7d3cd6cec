"""The idle timeout (`[listeners.smtp] timeout`): a connection that sends nothing for that long
is closed; one that keeps sending commands is not, however long it stays."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from teleway.ingress.smtp import SmtpLimits, SmtpListener, SmtpPolicy

TIMEOUT = 0.4


async def _never_called(*_: Any) -> Any:
    raise AssertionError("no message is sent in these tests")


async def start(tmp_path: Path) -> SmtpListener:
    policy = SmtpPolicy(
        limits=SmtpLimits(domains=("teleway.test",), timeout=TIMEOUT),
        directory=None,  # type: ignore[arg-type]
        accept=_never_called,
        blobs=None,  # type: ignore[arg-type]
        spool_dir=tmp_path / "spool",
    )
    listener = SmtpListener(policy, host="127.0.0.1", port=0, auth=False)
    await listener.start()
    return listener


async def closed_after(reader: asyncio.StreamReader) -> float:
    """Seconds until the server closes the connection (EOF), reading whatever comes first."""
    started = time.monotonic()
    while await asyncio.wait_for(reader.read(4096), 10):
        pass
    return time.monotonic() - started


async def test_an_idle_connection_is_closed_after_the_timeout(tmp_path: Path) -> None:
    listener = await start(tmp_path)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        assert (await reader.readline()).startswith(b"220")
        writer.write(b"EHLO client.test\r\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        waited = await closed_after(reader)
        assert TIMEOUT * 0.9 <= waited < TIMEOUT + 2
        writer.close()
    finally:
        await listener.stop()


async def test_a_busy_connection_outlives_the_timeout(tmp_path: Path) -> None:
    listener = await start(tmp_path)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        assert (await reader.readline()).startswith(b"220")
        started = time.monotonic()
        while time.monotonic() - started < TIMEOUT * 3:  # a command every quarter timeout
            writer.write(b"NOOP\r\n")
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"250")
            await asyncio.sleep(TIMEOUT / 4)
        # still served after three timeouts' worth of time; then idle, it is closed
        writer.write(b"NOOP\r\n")
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"250")
        assert await closed_after(reader) >= TIMEOUT * 0.9
        writer.close()
    finally:
        await listener.stop()
