"""Large messages: 10 concurrent 20 MB fax attachments are spooled to disk and parsed in worker
processes while the event loop keeps serving; the worst stall of the loop is measured (issue 5
asks for < 100 ms) and a small message sent meanwhile is answered."""
# ruff: noqa: F811 (pytest fixtures imported from smtp_harness are test parameters)

from __future__ import annotations

import asyncio
import gc
import json
import smtplib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtp_harness import DOMAIN, MakeRig, email, make_rig  # noqa: F401

from teleway.runtime.wiring import settle_heap

SIZE = 20 * 1024 * 1024
CONNECTIONS = 10
CLIENT = Path(__file__).with_name("smtp_big_client.py")


class StallMeter:
    """How long the event loop went without waking a 10 ms timer, two ways:

    - `worst`: wall-clock lateness of the timer (includes time the process was not scheduled:
      on a busy 2-core test machine that is mostly other processes' doing);
    - `worst_cpu`: CPU time the loop's thread spent between two wakes, i.e. work that blocked
      the loop, whatever the machine's load. This is what the test holds under 100 ms."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.worst_cpu = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.perf_counter() - started - 0.01)
            self.worst_cpu = max(self.worst_cpu, time.thread_time() - cpu)

    def __enter__(self) -> StallMeter:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


@pytest.fixture
def served_heap() -> Iterator[None]:
    """The interpreter as `teleway serve` runs it (runtime.wiring.settle_heap). In a pytest
    worker that already ran hundreds of tests, a full collection of the runner's own heap
    takes 120 ms and more (measured after 350 tests), and it counts as the loop's CPU: a CI
    run once saw 184 ms. The gateway's process freezes its start-up heap instead."""
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    settle_heap()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.usefixtures("served_heap")
async def test_ten_concurrent_20mb_faxes_do_not_stall_the_loop(make_rig: MakeRig) -> None:
    rig, _ = await make_rig(limits={"max_message_size": 32 * 1024 * 1024}, tls=False)
    with StallMeter() as meter:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CLIENT),
            str(rig.port),
            str(CONNECTIONS),
            str(SIZE),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            # a small message from another client is answered while the big ones stream in
            await asyncio.sleep(1.0)
            small_started = time.perf_counter()

            def small(client: smtplib.SMTP) -> tuple[int, bytes]:
                client.ehlo("small.test")
                return client.send_message(email(to=f"+17816170000@{DOMAIN}")) or (250, b"")

            await rig.session(small)
            small_seconds = time.perf_counter() - small_started
            out, _ = await asyncio.wait_for(process.communicate(), 280)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    replies = [json.loads(line) for line in out.decode().splitlines()]
    assert [r["code"] for r in replies] == [250] * CONNECTIONS, replies
    messages = await rig.messages()
    big = [m for m in messages if m.content.subject == "Big fax"]
    assert len(big) == CONNECTIONS
    for message in big:
        [attachment] = message.content.attachments
        assert attachment.size == SIZE and attachment.content_type == "application/pdf"
        assert rig.blobs.path_of(attachment.blob_id).stat().st_size == SIZE
    assert list((rig.root / "spool").iterdir()) == []  # spool files are removed
    print(
        f"\nworst loop stall {meter.worst * 1000:.1f} ms wall clock,"
        f" {meter.worst_cpu * 1000:.1f} ms of loop CPU; small message {small_seconds:.2f} s"
    )
    assert meter.worst_cpu < 0.1
