"""SMS delivery benchmark: teleway's SMPP client path against two upstreams in the same run.

    .venv/bin/python bench/sms_delivery.py [--quick] [--no-write]

Upstreams, each in its own process (so that the SMSC does not share the gateway's core):

- `simulator`: `teleway simulate smsc --no-receipts` (our SMSC simulator, pure Python);
- `smpp34`: the PyPI `smpp34` server (Rust core) answering every submit_sm, a do-nothing
  reference SMSC written by others.

Measured for each (4 binds x window 64 unless said otherwise):

- `channel submit_sm/s`: SmsChannel.send() from 256 concurrent tasks, no store: the SMPP
  client path alone (template, encoding, routing, window, pacing);
- `accepted-to-submitted msgs/s`: messages committed by accept() into SQLite beforehand, then
  the Dispatcher (lease -> channel -> store the upstream ids) until the last is submitted;
- `p50 / p99 accept->submit ms`: accept() at a steady 1,000 msgs/s while the dispatcher runs;
  latency from accept() returning (committed) to submit_sm_resp received (an upper bound of
  accept -> submit_sm on the upstream). Twice in the same run: `handoff` (accept() hands new
  deliveries, committed already leased, to the local dispatchers: `LocalHandoff`, as `teleway
  serve` wires it) and `queued` (no handoff: the dispatchers lease them from the store, a second
  commit); `--rounds N` alternates the two N times and reports the medians. With `--stall-ms S`, the first commit after every `--stall-every` seconds is held S
  ms longer (the writer thread sleeps after COMMIT, before anyone is told): a disk whose fsync
  stalls, simulated the same way for both;
- `limit`: one bind, throughput limit configured at `--limit` msgs/s: measured rate over the
  run and the most submits seen in any 1 s window, as a ratio of the limit. The rate is taken
  from the `limit`-th submit on; any lateness from then on (the limiter's, the event loop's,
  or a submit not ready when its slot came) shows as a lower rate. That is what a user of the
  limit gets, so the measurement was kept as it is.

Each measurement starts once its client is bound, after `settle_heap()` (what `teleway serve`
does once started: the collector's full passes no longer rescan what lives as long as the
process).

Writes (replaces) the `## SMS delivery` section of docs/benchmarks.md unless `--no-write`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from teleway.channels.sms.channel import SmsChannel
from teleway.channels.sms.upstream import Upstream, UpstreamSettings
from teleway.core.accept import accept
from teleway.core.model import (
    Account,
    Content,
    Delivery,
    DeliveryState,
    Device,
    Message,
    Options,
    Origin,
    Recipient,
    Settings,
    Submission,
)
from teleway.core.outcome import Outcome, Submitted
from teleway.runtime.metrics import Metrics
from teleway.runtime.wiring import RandomIds, SystemClock, settle_heap
from teleway.runtime.workers import Dispatcher, LocalHandoff
from teleway.store import open_store
from teleway.store.directory import Directory
from teleway.store.migrations import upgrade

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
SYSTEM_ID, PASSWORD = "bench", "pw"
BINDS, WINDOW = 4, 64
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- upstream processes -------------------------------------------------------------------


async def serve_smpp34(port: int) -> None:
    """A do-nothing SMSC on smpp34: accept every submit with a fresh id."""
    import smpp34

    server = smpp34.Server("127.0.0.1", port, system_id="smpp34")
    await server.start()
    print("listening", flush=True)
    count = 0
    while True:
        event = await server.next()
        if isinstance(event, smpp34.SubmitSmEvent):
            count += 1
            event.accept(format(count, "x"))


class UpstreamProcess:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        if kind == "simulator":
            command = [
                sys.executable, "-m", "teleway.runtime", "simulate", "smsc",
                "--port", str(self.port), "--system-id", SYSTEM_ID, "--password", PASSWORD,
                "--no-receipts",
            ]  # fmt: skip
        else:
            command = [sys.executable, __file__, "--serve-smpp34", str(self.port)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        for line in self.process.stdout:
            if "listening" in line:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not start")
        else:
            raise RuntimeError(f"{kind} exited: {self.process.returncode}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ---- the client side ------------------------------------------------------------------------


class Accounts:
    def __init__(self, account: Account) -> None:
        self.account = account

    async def get_account(self, account_id: int) -> Account | None:
        return self.account


async def ignore_deliver(upstream: Upstream, pdu: Any) -> int:
    return 0


class TimedChannel(SmsChannel):
    """Remembers when each message was submitted (submit_sm_resp received)."""

    submitted_at: dict[str, float]

    async def send(self, delivery: Delivery, message: Message) -> Outcome:
        outcome = await super().send(delivery, message)
        if isinstance(outcome, Submitted):
            self.submitted_at[message.id] = time.monotonic()
        return outcome


async def client(
    port: int, account: Account, *, binds: int = BINDS, window: int = WINDOW, limit: float = 0
) -> tuple[TimedChannel, list[Upstream]]:
    settings = UpstreamSettings(
        name="up", host="127.0.0.1", port=port, system_id=SYSTEM_ID, password=PASSWORD,
        binds=binds, window=window, throughput=limit, response_timeout=30,
    )  # fmt: skip
    up = Upstream(settings, on_deliver=ignore_deliver)
    channel = TimedChannel(upstreams=[up], accounts=Accounts(account), rng=random.Random(1))
    channel.submitted_at = {}
    up.start()
    assert await up.wait_bound(10), "no bind"
    while len(up._tx_links) < binds:  # every bind up before timing
        await asyncio.sleep(0.01)
    settle_heap()  # everything is started: as `teleway serve` does before serving
    return channel, [up]


def delivery(n: int) -> Delivery:
    return Delivery(
        id=f"d{n}", message_id=f"m{n}", account_id=1, seq=0, recipient=f"+49151{n % 10**8:08d}",
        device=Device.SMS, state=DeliveryState.IN_FLIGHT, attempts=1, next_attempt_at=NOW,
        valid_until=NOW + timedelta(days=1), created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def message(n: int) -> Message:
    return Message(
        id=f"m{n}", account_id=1, origin=Origin.HTTP, submitter="bench",
        content=Content(text=f"Benchmark message {n}"), options=Options(), created_at=NOW,
    )  # fmt: skip


async def channel_rate(port: int, account: Account, count: int) -> float:
    channel, ups = await client(port, account)
    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            outcome = await channel.send(delivery(n), message(n))
            assert isinstance(outcome, Submitted), outcome

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(BINDS * WINDOW)))
    elapsed = time.monotonic() - started
    for up in ups:
        await up.stop()
    return count / elapsed


async def limit_accuracy(
    port: int, account: Account, limit: float, seconds: float
) -> tuple[float, int]:
    channel, ups = await client(port, account, binds=1, window=WINDOW, limit=limit)
    count = int(limit * seconds)
    queue = iter(range(count))
    times: list[float] = []  # when each submit_sm was let through to the socket
    up = ups[0]
    pace = up._pace

    async def timed_pace() -> None:
        await pace()
        times.append(time.monotonic())

    up._pace = timed_pace  # type: ignore[method-assign]

    async def worker() -> None:
        for n in queue:
            outcome = await channel.send(delivery(n), message(n))
            assert isinstance(outcome, Submitted)

    await asyncio.gather(*(worker() for _ in range(WINDOW)))
    await up.stop()
    # the sustained rate, from the limit-th submit on (what a limiter lets go in its first
    # second, burst or not, is not a rate)
    limit_n = int(limit)
    rate = (len(times) - limit_n) / (times[-1] - times[limit_n - 1])
    # timestamps are taken just after the limiter let each submit through: allow 1 ms of
    # event-loop jitter between the limiter's own clock reading and ours
    peak = max(bisect.bisect_left(times, t + 0.999) - i for i, t in enumerate(times))
    return rate, peak


@dataclass
class StoreRig:
    store: Any
    account: Account


async def prepare_store(directory: str) -> StoreRig:
    url = f"sqlite+aiosqlite:///{directory}/bench-{time.monotonic_ns()}.db"
    await upgrade(url)
    store = await open_store(url)
    account = await Directory(store.engine).create_account(
        "bench", actor="bench", settings={"sender_id": "TELEWAY"}
    )
    return StoreRig(store=store, account=account)


async def accept_many(rig: StoreRig, count: int, submitters: int = 100) -> dict[str, float]:
    accepted: dict[str, float] = {}
    numbers = iter(range(count))
    clock, ids = SystemClock(), RandomIds()

    async def submitter() -> None:
        for n in numbers:
            result = await accept(
                Submission(
                    account=rig.account, origin=Origin.HTTP, submitter="bench",
                    recipients=(Recipient(number=f"+49151{n % 10**8:08d}"),),
                    content=Content(text=f"Benchmark message {n}"), options=Options(),
                ),
                store=rig.store.messages, clock=clock, ids=ids,
            )  # fmt: skip
            accepted[result.message_id] = time.monotonic()

    await asyncio.gather(*(submitter() for _ in range(submitters)))
    return accepted


def dispatchers(rig: StoreRig, channel: SmsChannel, workers: int = 4) -> list[Dispatcher]:
    return [
        Dispatcher(
            queue=rig.store.queue,
            messages=rig.store.messages,
            channels=[channel],
            clock=SystemClock(),
            metrics=Metrics(),
            worker=f"bench-{i}",
            concurrency=BINDS * WINDOW // workers,
            poll_interval=0.05,
        )
        for i in range(workers)
    ]


async def accepted_to_submitted(port: int, directory: str, count: int) -> float:
    rig = await prepare_store(directory)
    await accept_many(rig, count)
    channel, ups = await client(port, rig.account)
    started = time.monotonic()
    workers = dispatchers(rig, channel)
    tasks = [asyncio.create_task(d.run()) for d in workers]
    while len(channel.submitted_at) < count:
        await asyncio.sleep(0.01)
    elapsed = max(channel.submitted_at.values()) - started
    await asyncio.gather(*(d.stop(5) for d in workers))
    await asyncio.gather(*tasks)
    for up in ups:
        await up.stop()
    await rig.store.close()
    return count / elapsed


def stall_commits(rig: StoreRig, stall: float, every: float) -> None:
    """Hold the first commit after every `every` seconds `stall` seconds longer, in the writer
    thread after COMMIT and before the callers are told (a disk whose fsync stalls)."""
    writer = rig.store.writer
    transaction = writer._transaction
    next_stall = time.monotonic() + every

    def slow(connection: Any, batch: Any) -> Any:
        nonlocal next_stall
        result = transaction(connection, batch)
        if time.monotonic() >= next_stall:
            time.sleep(stall)
            next_stall = time.monotonic() + every
        return result

    writer._transaction = slow


async def latency(
    port: int,
    directory: str,
    rate: float,
    seconds: float,
    *,
    handoff: bool,
    stall: float = 0.0,
    stall_every: float = 1.0,
) -> tuple[float, float]:
    rig = await prepare_store(directory)
    if stall > 0:
        stall_commits(rig, stall, stall_every)
    channel, ups = await client(port, rig.account)
    workers = dispatchers(rig, channel)
    tasks = [asyncio.create_task(d.run()) for d in workers]
    local = LocalHandoff(workers) if handoff else None
    clock, ids = SystemClock(), RandomIds()
    accepted: dict[str, float] = {}
    pending: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        result = await accept(
            Submission(
                account=rig.account, origin=Origin.HTTP, submitter="bench",
                recipients=(Recipient(number=f"+49151{n % 10**8:08d}"),),
                content=Content(text=f"Latency message {n}"), options=Options(),
            ),
            store=rig.store.messages, clock=clock, ids=ids, handoff=local,
        )  # fmt: skip
        accepted[result.message_id] = time.monotonic()

    count = int(rate * seconds)
    started = time.monotonic()
    for n in range(count):  # open loop: one accept every 1/rate s, whatever happens
        due = started + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(n))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    deadline = time.monotonic() + 60
    while not set(accepted) <= set(channel.submitted_at) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.gather(*(d.stop(5) for d in workers))
    await asyncio.gather(*tasks)
    for up in ups:
        await up.stop()
    await rig.store.close()
    samples = sorted(
        (channel.submitted_at[m] - t) * 1000
        for m, t in accepted.items()
        if m in channel.submitted_at
    )
    assert len(samples) == len(accepted), "some messages were not submitted"
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return statistics.median(samples), p99


@dataclass
class Row:
    upstream: str
    channel_rate: float
    store_rate: float
    p50: float
    p99: float
    queued_p50: float
    queued_p99: float
    limit_rate: float
    limit_peak: int


async def run_all(args: argparse.Namespace) -> list[Row]:
    account = Account(id=1, name="bench", settings=Settings(sender_id="TELEWAY"))
    scale = 1 if args.quick else 4
    rows = []
    with tempfile.TemporaryDirectory(prefix="teleway-bench-sms-") as directory:
        for kind in ("simulator", "smpp34"):
            upstream = UpstreamProcess(kind)
            try:
                print(f"{kind}: channel ...", flush=True)
                rate = await channel_rate(upstream.port, account, 5_000 * scale)
                print(f"{kind}: accepted-to-submitted ...", flush=True)
                store_rate = await accepted_to_submitted(upstream.port, directory, 2_500 * scale)
                print(f"{kind}: latency at {args.rate:g}/s ...", flush=True)
                stall = {"stall": args.stall_ms / 1000, "stall_every": args.stall_every}
                runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
                for _ in range(args.rounds):  # alternated: a noisy moment hits both alike
                    for handoff in (True, False):
                        result = await latency(
                            upstream.port,
                            directory,
                            args.rate,
                            3 * scale,
                            handoff=handoff,
                            **stall,
                        )
                        runs[handoff].append(result)
                (p50, p99), (q50, q99) = (
                    (
                        statistics.median(r[0] for r in runs[h]),
                        statistics.median(r[1] for r in runs[h]),
                    )
                    for h in (True, False)
                )
                if args.rounds > 1:
                    for h in (True, False):
                        name = "handoff" if h else "queued"
                        print(f"  {name} p50/p99 per round: {runs[h]}", flush=True)
                print(f"{kind}: limit {args.limit:g}/s ...", flush=True)
                limit_rate, peak = await limit_accuracy(
                    upstream.port, account, args.limit, 3 * scale
                )
            finally:
                upstream.stop()
            row = Row(kind, rate, store_rate, p50, p99, q50, q99, limit_rate, peak)
            print(
                f"  {kind:<10} channel {rate:>8,.0f} submit_sm/s  accepted->submitted "
                f"{store_rate:>7,.0f}/s  handoff p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
                f"queued p50 {q50:6.1f} ms  p99 {q99:6.1f} ms  "
                f"limit {args.limit:g}/s: measured {limit_rate:,.1f}/s, peak 1 s {peak}",
                flush=True,
            )
            rows.append(row)
    return rows


def table(rows: list[Row], args: argparse.Namespace) -> str:
    ref = {r.upstream: r for r in rows}
    sim, rust = ref["simulator"], ref["smpp34"]
    lines = [
        "## SMS delivery",
        "",
        f"`bench/sms_delivery.py{' --quick' if args.quick else ''}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{datetime.now(UTC):%Y-%m-%d}; load average {args.load} at the start (the machine is "
        f"shared). Each upstream runs in its own process; {BINDS} binds x window {WINDOW}."
        + (
            f" Commits stalled {args.stall_ms:g} ms every {args.stall_every:g} s (simulated)."
            if args.stall_ms
            else ""
        ),
        "",
        "| upstream | channel submit_sm/s | accepted-to-submitted msgs/s (SQLite) "
        f"| p50 accept->submit ms at {args.rate:g}/s (handoff) | p99 ms (handoff) "
        "| p50 ms (queued) | p99 ms (queued) "
        f"| limit {args.limit:g}/s: measured | peak in any 1 s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.upstream} | {r.channel_rate:,.0f} | {r.store_rate:,.0f} | {r.p50:.1f} "
            f"| {r.p99:.1f} | {r.queued_p50:.1f} | {r.queued_p99:.1f} "
            f"| {r.limit_rate:,.1f} ({r.limit_rate / args.limit - 1:+.1%}) "
            f"| {r.limit_peak} ({r.limit_peak / args.limit - 1:+.1%}) |"
        )
    lines += [
        "",
        f"Ratio simulator / smpp34 (same client): channel {sim.channel_rate / rust.channel_rate:.2f}x, "
        f"accepted-to-submitted {sim.store_rate / rust.store_rate:.2f}x. "
        "`channel` is the SMPP client alone (SmsChannel.send from 256 tasks); "
        "`accepted-to-submitted` adds the durable queue: lease, submit, store the upstream ids "
        "(SQLite, synchronous=FULL). Latency is from accept() returning (committed) to "
        "submit_sm_resp; the limit is one bind with the configured throughput. `handoff`: "
        "accept() commits new deliveries already leased to the local dispatchers and hands "
        "them over (as `teleway serve` does); `queued`: the dispatchers lease them from the "
        "store (a second commit between accept and submit).",
        "",
        "Targets (issue 6, on a quiet machine): channel >= 5,000 submit_sm/s, limit within 2 %, "
        "p99 accept->submit < 100 ms at 1,000 msgs/s. Where accepted-to-submitted stays below "
        "the latency load, the queue backs up and the latency is queueing time: the durable "
        "queue's leases and releases (one store write per batch of deliveries each) bound "
        "that path.",
        "",
    ]
    return "\n".join(lines)


def write_section(section: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n\n"
    pattern = re.compile(r"^## SMS delivery\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages (about 40 s)")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency load, msgs/s")
    parser.add_argument("--limit", type=float, default=500.0, help="throughput limit, msgs/s")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="latency: alternate handoff/queued this often, report the medians",
    )
    parser.add_argument(
        "--stall-ms", type=float, default=0.0, help="latency runs: hold one commit this long..."
    )
    parser.add_argument(
        "--stall-every", type=float, default=1.0, help="... every this many seconds"
    )
    parser.add_argument("--serve-smpp34", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_smpp34:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_smpp34(args.serve_smpp34))
        return
    args.load = " / ".join(f"{n:.1f}" for n in os.getloadavg())
    rows = asyncio.run(run_all(args))
    section = table(rows, args)
    print()
    print(section)
    if not args.no_write:
        write_section(section)


if __name__ == "__main__":
    main()
