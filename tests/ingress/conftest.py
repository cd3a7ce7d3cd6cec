"""Fixtures of the SMTP ingress tests (see smtp_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from smtp_harness import RecordingAcceptor, SmtpRig, start_rig, stop_rig

MakeRig = Callable[..., Awaitable[tuple[SmtpRig, RecordingAcceptor]]]


@pytest.fixture
async def make_rig(tmp_path: Path, cheap_hashing: None) -> AsyncIterator[MakeRig]:
    """Start a rig with options (limits=, settings=, networks=, tls=); stopped at the end."""
    started: list[SmtpRig] = []

    async def make(**options: Any) -> tuple[SmtpRig, RecordingAcceptor]:
        root = tmp_path / f"rig{len(started)}"
        root.mkdir()
        rig, acceptor = await start_rig(root, **options)
        started.append(rig)
        return rig, acceptor

    try:
        yield make
    finally:
        for rig in started:
            await stop_rig(rig)


@pytest.fixture
async def rig(make_rig: MakeRig) -> SmtpRig:
    made, _ = await make_rig()
    return made
