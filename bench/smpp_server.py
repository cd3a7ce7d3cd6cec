"""SMPP server benchmark: N binds x window W of submit_sm, as fast as the server answers.

    .venv/bin/python bench/smpp_server.py [--quick] [--binds 4] [--window 64] [--seconds 10]

Every server runs in its own process, measured side by side in the same run by the same load
generator (a plain asyncio client in another process keeping W pre-encoded submit_sm in flight
per bind, answering nothing, parsing only headers):

* ``sink``: a raw asyncio socket answering every submit_sm with a canned submit_sm_resp; it
  shows what the load generator itself can drive (it must be far above the others);
* ``smpp34``: the PyPI ``smpp34`` server (Rust/tokio core) accepting every message and doing
  nothing else: the do-nothing ceiling of a real SMPP stack driven from Python;
* ``teleway``: our SMPP server with its real store (SQLite, WAL, group commit): every ESME_ROK
  is sent after the message and its delivery are committed. Delivery workers are not running
  (this measures ingress: accept and store). It runs on the event loop `teleway serve` uses by
  default (uvloop; ``--event-loop asyncio`` for the standard library's);
* ``jasmin``: Jasmin's SMPP server, when a ``jasmin`` installation is found (see --jasmin).

Reported per server: accepted submit_sm/s (responses with ESME_ROK per second of the
measurement window), p50/p99 submit-to-response latency, CPU of the server process (percent
of one core) and its peak RSS. The table is printed and written to docs/benchmarks.md
(section "SMPP server"), keeping the other sections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpu import tree_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## SMPP server"

_HEADER = struct.Struct(">IIII")
SUBMIT_SM_RESP = 0x80000004
BIND_TRANSMITTER = 0x00000002
SYSTEM_ID, PASSWORD = "bench", "bench1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the load generator ----------------------------------------------------------------------


def _bind_pdu() -> bytes:
    body = (
        SYSTEM_ID.encode() + b"\0" + PASSWORD.encode() + b"\0" + b"\0" + bytes([0x34, 0, 0]) + b"\0"
    )
    return _HEADER.pack(16 + len(body), BIND_TRANSMITTER, 0, 1) + body


def _submit_template() -> bytes:
    """A submit_sm (sequence number patched per send): international sender and recipient,
    a 60-character GSM text, no receipt."""
    text = b"benchmark message number one of many, sent as fast as we can"
    body = (
        b"\0"  # service_type
        + bytes([1, 1])
        + b"447911123456\0"
        + bytes([1, 1])
        + b"17816170000\0"
        + bytes([0, 0, 0])  # esm_class, protocol_id, priority_flag
        + b"\0\0"  # schedule_delivery_time, validity_period
        + bytes([0, 0, 0, 0])  # registered_delivery, replace_if_present, data_coding, default id
        + bytes([len(text)])
        + text
    )
    return _HEADER.pack(16 + len(body), 0x00000004, 0, 0) + body


@dataclass
class LoadResult:
    ok: int
    errors: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int] = field(default_factory=dict)


async def _one_bind(
    port: int, window: int, warmup: float, seconds: float, result: LoadResult
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_bind_pdu())
    head = await reader.readexactly(16)
    length, _cid, status, _seq = _HEADER.unpack(head)
    await reader.readexactly(length - 16)
    if status != 0:
        raise RuntimeError(f"bind refused with status 0x{status:08X}")
    template = bytearray(_submit_template())
    sent_at: dict[int, float] = {}
    next_seq = 2
    clock = time.perf_counter
    started = clock()
    measure_from = started + warmup
    measure_to = measure_from + seconds
    stopping = False

    def send(count: int) -> None:
        nonlocal next_seq
        chunks = []
        now = clock()
        for _ in range(count):
            seq = next_seq
            next_seq += 1
            struct.pack_into(">I", template, 12, seq)
            chunks.append(bytes(template))
            sent_at[seq] = now
        writer.write(b"".join(chunks))

    send(window)
    buffer = b""
    latencies = result.latencies
    while sent_at:
        data = await reader.read(65536)
        if not data:
            break
        buffer += data
        pos = 0
        answered = 0
        now = clock()
        while len(buffer) - pos >= 16:
            length, cid, status, seq = _HEADER.unpack_from(buffer, pos)
            if len(buffer) - pos < length:
                break
            pos += length
            if cid != SUBMIT_SM_RESP:
                continue
            sent = sent_at.pop(seq, None)
            if sent is None:
                continue
            answered += 1
            if measure_from <= now < measure_to:
                if status == 0:
                    result.ok += 1
                    if len(latencies) < 200_000:
                        latencies.append(now - sent)
                else:
                    result.errors += 1
                    result.statuses[status] = result.statuses.get(status, 0) + 1
        buffer = buffer[pos:]
        if now >= measure_to:
            stopping = True
        if not stopping and answered:
            send(answered)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def _load(port: int, binds: int, window: int, warmup: float, seconds: float) -> LoadResult:
    result = LoadResult(ok=0, errors=0, seconds=seconds, latencies=[])
    await asyncio.gather(*(_one_bind(port, window, warmup, seconds, result) for _ in range(binds)))
    return result


def run_load(port: int, binds: int, window: int, warmup: float, seconds: float) -> LoadResult:
    return asyncio.run(_load(port, binds, window, warmup, seconds))


# ---- the servers -------------------------------------------------------------------------------


async def _serve_sink(port: int, count_file: str = "") -> None:
    """Answer every request with a canned response of the same sequence number: binds with an
    empty system_id, submit_sm with message_id "1", the rest header only. With `count_file`,
    the number of submit_sm received is written there twice a second (the SMSC behind
    Jasmin: what was really forwarded)."""
    received = binds = 0
    canned = {
        0x00000004: bytearray(_HEADER.pack(18, SUBMIT_SM_RESP, 0, 0) + b"1\0"),
        0x00000001: bytearray(_HEADER.pack(17, 0x80000001, 0, 0) + b"\0"),
        0x00000002: bytearray(_HEADER.pack(17, 0x80000002, 0, 0) + b"\0"),
        0x00000009: bytearray(_HEADER.pack(17, 0x80000009, 0, 0) + b"\0"),
    }

    class Sink(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            nonlocal received, binds
            buffer = self.buffer + data
            pos = 0
            out = []
            while len(buffer) - pos >= 16:
                length, cid, _status, seq = _HEADER.unpack_from(buffer, pos)
                if len(buffer) - pos < length:
                    break
                pos += length
                if cid & 0x80000000:
                    continue  # a response (to nothing we sent): ignore
                response = canned.get(cid)
                if response is None:
                    response = bytearray(_HEADER.pack(16, cid | 0x80000000, 0, 0))
                if cid == 0x00000004:
                    received += 1
                elif cid in (0x00000001, 0x00000002, 0x00000009):
                    binds += 1
                struct.pack_into(">I", response, 12, seq)
                out.append(bytes(response))
            self.buffer = buffer[pos:]
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]

    server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port)
    async with server:
        while True:
            await asyncio.sleep(0.5)
            if count_file:
                Path(count_file).write_text(f"{received} {binds}")


async def _serve_smpp34(port: int) -> None:
    import smpp34

    server = smpp34.Server("127.0.0.1", port, system_id="smpp34")
    await server.start()
    counter = 0
    while True:
        event = await server.next()
        if isinstance(event, smpp34.SubmitSmEvent):
            counter += 1
            event.accept(str(counter))


async def _serve_teleway(port: int, window: int, directory_path: str) -> None:
    from teleway.core import passwords
    from teleway.ingress.smpp_server import SmppServer, SmppServerSettings
    from teleway.runtime.acceptance import Acceptor
    from teleway.runtime.metrics import Metrics, SmppServerMetrics
    from teleway.runtime.wiring import RandomIds, SystemClock, settle_heap
    from teleway.store import open_store
    from teleway.store.directory import Directory
    from teleway.store.smpp_ops import SmppOperations

    passwords.configure(time_cost=1, memory_cost=8, parallelism=1)  # binds are not measured
    store = await open_store(f"sqlite+aiosqlite:///{directory_path}/bench.db", migrate=True)
    directory = Directory(store.engine)
    await directory.create_account("bench", actor="bench")
    await directory.add_network("bench", "127.0.0.0/8", actor="bench")
    await directory.add_smpp(
        "bench", SYSTEM_ID, actor="bench", password=PASSWORD, max_binds=64, throughput=1e9
    )
    metrics = Metrics()
    clock = SystemClock()
    acceptor = Acceptor(store=store.messages, clock=clock, ids=RandomIds(), metrics=metrics)
    server = SmppServer(
        SmppServerSettings(port=port, window=window, inactivity_timeout=None),
        directory=directory,
        accept=acceptor.accept,
        accept_many=acceptor.accept_many,
        operations=SmppOperations(store.db, store.writer, store.queue),
        clock=clock,
        observer=SmppServerMetrics(metrics),
    )
    await server.start()
    settle_heap()  # as `teleway serve` does once started
    print("ready", flush=True)
    await asyncio.Event().wait()


async def _accept_only(concurrency: int, seconds: float) -> None:
    """The same submissions straight into `Acceptor.accept` (no SMPP): what the store path
    alone allows on this machine now. Prints "rate cpu_percent p50_ms p99_ms"."""
    from teleway.core.model import Content, Options, Origin, Recipient, Submission
    from teleway.runtime.acceptance import Acceptor
    from teleway.runtime.metrics import Metrics
    from teleway.runtime.wiring import RandomIds, SystemClock, settle_heap
    from teleway.store import open_store
    from teleway.store.directory import Directory

    with tempfile.TemporaryDirectory() as folder:
        store = await open_store(f"sqlite+aiosqlite:///{folder}/bench.db", migrate=True)
        account = await Directory(store.engine).create_account("bench", actor="bench")
        acceptor = Acceptor(
            store=store.messages, clock=SystemClock(), ids=RandomIds(), metrics=Metrics()
        )
        submission = Submission(
            account=account,
            origin=Origin.SMPP,
            submitter=SYSTEM_ID,
            recipients=(Recipient(number="+17816170000"),),
            content=Content(text="benchmark message number one of many", data_coding=0),
            options=Options(
                sender_id="+447911123456",
                extra={"source_addr_ton": 1, "source_addr_npi": 1, "source_addr": "447911123456"},
            ),
        )
        settle_heap()
        done = 0
        latencies: list[float] = []
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                started = time.perf_counter()
                await acceptor.accept(submission)
                latencies.append(time.perf_counter() - started)
                done += 1

        cpu, wall = tree_cpu_seconds(os.getpid()), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - wall
        cpu = (tree_cpu_seconds(os.getpid()) - cpu) / wall
        await store.close()
    print(
        f"{done / wall} {cpu * 100} {_percentile(latencies, 0.5)} {_percentile(latencies, 0.99)}",
        flush=True,
    )


def accept_row(args: argparse.Namespace, me: list[str]) -> Row:
    command = [*me, "--serve", "accept", "--window", str(args.binds * args.window)]
    command += ["--event-loop", args.event_loop]
    command += ["--seconds", str(args.seconds)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    rate, cpu, p50, p99 = (float(x) for x in out.stdout.split()[-4:])
    return Row("accept() alone", rate, 0, p50, p99, cpu, 0, "no SMPP: the store path's own rate")


def serve(
    kind: str,
    port: int,
    window: int,
    count_file: str = "",
    seconds: float = 3,
    event_loop: str = "uvloop",
) -> None:
    from teleway.runtime.config import EventLoop
    from teleway.runtime.wiring import run

    def runner(main: Any) -> None:  # teleway runs on the event loop `teleway serve` uses
        run(main, EventLoop(event_loop))

    if kind == "sink":
        asyncio.run(_serve_sink(port, count_file))
        runner(_serve_sink(port, count_file))
    elif kind == "smpp34":
        asyncio.run(_serve_smpp34(port))
    elif kind == "accept":
        runner(_accept_only(window, seconds))
    elif kind == "teleway":
        with tempfile.TemporaryDirectory() as folder:
            runner(_serve_teleway(port, window, folder))
    else:
        raise SystemExit(f"unknown server {kind}")


# ---- measuring ---------------------------------------------------------------------------------


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # peak resident set size
            return int(line.split()[1]) / 1024
    return 0.0


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError("server did not listen")


@dataclass
class Row:
    name: str
    accepted: float
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_percent: float
    rss_mib: float
    note: str = ""


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def measure(
    name: str, command: list[str], port: int, args: argparse.Namespace, note: str = ""
) -> Row:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_port(port, process)
        time.sleep(0.3)
        return measure_running(name, process.pid, port, args, note)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure_running(
    name: str, pid: int, port: int, args: argparse.Namespace, note: str = ""
) -> Row:
    cpu_before = tree_cpu_seconds(pid)
    wall_before = time.perf_counter()
    result = run_load(port, args.binds, args.window, args.warmup, args.seconds)
    cpu = (tree_cpu_seconds(pid) - cpu_before) / (time.perf_counter() - wall_before)
    if result.statuses:
        codes = ", ".join(f"0x{k:02X} x{v}" for k, v in sorted(result.statuses.items()))
        note = f"{note}; error statuses: {codes}".lstrip("; ")
    return Row(
        name=name,
        accepted=result.ok / result.seconds,
        errors=result.errors,
        p50_ms=_percentile(result.latencies, 0.50),
        p99_ms=_percentile(result.latencies, 0.99),
        cpu_percent=cpu * 100,
        rss_mib=_rss_mib(pid),
        note=note,
    )


# ---- Jasmin ------------------------------------------------------------------------------------

_JASMIN_CONFIG = """
[smpp-server]
id = "smpps_01"
bind = 127.0.0.1
port = {smpp}
log_level = WARNING

[smpp-server-pb]
bind = 127.0.0.1
port = {pb}

[client-management]
bind = 127.0.0.1
port = {cm}

[jcli]
bind = 127.0.0.1
port = {jcli}
authentication = False

[router]
bind = 127.0.0.1
port = {router}

[amqp-broker]
host = 127.0.0.1
port = 5672

[redis-client]
host = 127.0.0.1
port = 6379
dbid = 7
"""


def _jcli(port: int, commands: list[str]) -> str:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import telnetlib  # Jasmin's console negotiates telnet options

    console = telnetlib.Telnet("127.0.0.1", port, 10)
    console.read_until(b"jcli : ", 10)
    transcript = []
    for command in commands:
        console.write(command.encode() + b"\r\n")
        _, _, text = console.expect([rb"jcli : ", rb"> "], 10)
        transcript.append(text.decode(errors="replace"))
    console.close()
    return "".join(transcript)


def jasmin_row(args: argparse.Namespace, me: list[str]) -> tuple[Row, float]:
    """Jasmin's SMPP server (user bench, default route to a counting sink); returns the row
    and the rate at which submit_sm reached the sink behind it (forwarded)."""
    venv = Path(args.jasmin_venv)
    jasmind = venv / "bin" / "jasmind.py"
    if not jasmind.exists():
        raise RuntimeError(f"{jasmind} not found")
    specs = sorted(venv.glob("lib/python*/site-packages/txamqp/specs/standard/amqp0-9-1*.xml"))
    if not specs:
        raise RuntimeError("txamqp's AMQP 0-9-1 spec not found in the Jasmin venv")
    root = Path(tempfile.mkdtemp(prefix="jasmin-bench-"))
    etc = root / "etc" / "jasmin"
    (etc / "resource").mkdir(parents=True)
    (etc / "store").mkdir()
    (root / "var" / "log" / "jasmin").mkdir(parents=True)
    (etc / "resource" / "amqp0-9-1.xml").write_bytes(specs[0].read_bytes())
    ports = {k: free_port() for k in ("smpp", "pb", "cm", "jcli", "router")}
    cid = f"bench{os.getpid()}"  # its RabbitMQ queue (submit.sm.<cid>) is this run's alone
    (etc / "jasmin.cfg").write_text(_JASMIN_CONFIG.format(**ports))
    sink_port = free_port()
    count_file = root / "forwarded.txt"
    sink = subprocess.Popen(
        [*me, "--serve", "sink", "--port", str(sink_port), "--count-file", str(count_file)],
        stdout=subprocess.DEVNULL,
    )
    env = {**os.environ, "ROOT_PATH": str(root)}
    daemon = subprocess.Popen(
        [
            str(venv / "bin" / "python"),
            str(jasmind),
            "-c",
            str(etc / "jasmin.cfg"),
            "--disable-http-api",
        ],
        env=env,
        stdout=open(root / "jasmind.out", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    try:
        _wait_port(sink_port, sink)
        _wait_port(ports["jcli"], daemon)
        _wait_port(ports["smpp"], daemon)
        transcript = _jcli(
            ports["jcli"],
            [
                "group -a",
                "gid bench",
                "ok",
                "user -a",
                "username " + SYSTEM_ID,
                "password " + PASSWORD,
                "gid bench",
                "uid bench",
                "ok",
                "smppccm -a",
                f"cid {cid}",
                "host 127.0.0.1",
                f"port {sink_port}",
                "username sink",
                "password sink",
                "submit_throughput 100000",
                "ok",
                f"smppccm -1 {cid}",
                "mtrouter -a",
                "type defaultroute",
                f"connector smppc({cid})",
                "rate 0.00",
                "ok",
            ],
        )
        (root / "jcli.txt").write_text(transcript)

        def counts() -> tuple[int, int]:
            text = count_file.read_text() if count_file.exists() else ""
            submits, _, binds = text.partition(" ")
            return int(submits or 0), int(binds or 0)

        deadline = time.monotonic() + 60
        while counts()[1] < 1:  # Jasmin's connector has bound to the sink
            if time.monotonic() > deadline:
                raise RuntimeError("Jasmin's connector did not bind to the sink")
            time.sleep(0.2)
        time.sleep(1)
        before = counts()[0]
        started = time.perf_counter()
        row = measure_running("jasmin 0.11", daemon.pid, ports["smpp"], args)
        time.sleep(1.0)  # what was accepted at the end may still be on its way
        forwarded = (counts()[0] - before) / (time.perf_counter() - started)
        return row, forwarded
    finally:
        _stop(daemon)
        _stop(sink)
        if shutil.which("rabbitmqctl"):  # leave no queue of ours behind on the shared broker
            subprocess.run(
                ["rabbitmqctl", "delete_queue", f"submit.sm.{cid}"],
                capture_output=True,
                check=False,
            )


def _table(rows: list[Row], args: argparse.Namespace, reference: Row | None) -> str:
    lines = [
        f"{args.binds} binds x window {args.window}, {args.seconds:g} s measured after "
        f"{args.warmup:g} s warm-up, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"load average {os.getloadavg()[0]:.1f} when the table was written (other work on the "
        "machine lowers every row alike; compare the rows of one run).",
        "",
        "| server | accepted submit_sm/s | vs smpp34 | errors | p50 ms | p99 ms | server CPU % | "
        "peak RSS MiB | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio = (
            f"{row.accepted / reference.accepted:.2f}x"
            if reference is not None and reference.accepted
            else ""
        )
        lines.append(
            f"| {row.name} | {row.accepted:,.0f} | {ratio} | {row.errors} | {row.p50_ms:.1f} | "
            f"{row.p99_ms:.1f} | {row.cpu_percent:.0f} | {row.rss_mib:.0f} | {row.note} |"
        )
    return "\n".join(lines)


METHOD = """How to read it: every server runs in its own process and gets the same load generator
(a raw asyncio client keeping the window full with pre-encoded submit_sm; the `sink` row shows
its own ceiling). `smpp34` is the do-nothing reference (Rust core, accepts and forgets). `teleway`
answers ESME_ROK only after the message and its delivery are committed to SQLite (WAL,
synchronous=FULL, group commit in the store's commit process); delivery workers are not
running; it runs on the event loop `teleway serve` uses (uvloop by default; `--event-loop`).
Server CPU counts the server's process and its child processes (teleway's commit process). `accept() alone` sends the
same submission straight into `Acceptor.accept` with the same concurrency and no SMPP at all: the
gap between it and `teleway` is what the SMPP layer costs, the rest is the store path. `jasmin`
is Jasmin 0.11 (RabbitMQ + Redis) routing to a counting SMSC; it answers once the message is
queued in RabbitMQ, so what reached the SMSC behind it is shown too."""


def write_docs(table: str, extra: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    section = (
        f"{SECTION}\n\n`make bench-smpp` (bench/smpp_server.py).\n\n{table}\n\n{extra}\n\n"
        f"{METHOD}\n"
    )
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCS.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binds", type=int, default=4)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="3 s per server")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument(
        "--jasmin-venv",
        default=os.environ.get("JASMIN_VENV", ""),
        help="a virtualenv with `pip install jasmin` (0.11); needs RabbitMQ on 5672 and Redis "
        "on 6379 (db 7 is used). Default: $JASMIN_VENV; without it Jasmin is skipped",
    )
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of teleway (default: uvloop, as `teleway serve` runs)",
    )
    parser.add_argument("--serve", default="", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count-file", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.window, args.count_file, args.seconds, args.event_loop)
        return
    if args.quick:
        args.seconds, args.warmup = 3.0, 1.0
    me = [sys.executable, str(Path(__file__).resolve())]
    rows: list[Row] = []
    for name in ("sink", "smpp34", "teleway"):
        port = free_port()
        command = [*me, "--serve", name, "--port", str(port), "--window", str(args.window)]
        command += ["--event-loop", args.event_loop]
        print(f"measuring {name} ...", flush=True)
        try:
            rows.append(measure(name, command, port, args))
        except Exception as exc:  # a server that cannot run gets a row saying so
            rows.append(Row(name, 0, 0, float("nan"), float("nan"), 0, 0, f"failed: {exc}"))
    print("measuring accept() alone ...", flush=True)
    try:
        rows.append(accept_row(args, me))
    except Exception as exc:
        rows.append(Row("accept() alone", 0, 0, float("nan"), float("nan"), 0, 0, f"failed: {exc}"))
    notes = ""
    if args.jasmin_venv:
        print("measuring jasmin ...", flush=True)
        try:
            row, forwarded = jasmin_row(args, me)
            row.note = f"forwarded to the SMSC behind it: {forwarded:,.0f}/s; {row.note}".rstrip(
                "; "
            )
            rows.append(row)
            teleway = next((r for r in rows if r.name == "teleway"), None)
            if teleway is not None and row.accepted:
                notes = (
                    f"teleway / Jasmin accepted: {teleway.accepted / row.accepted:.1f}x; "
                    f"teleway / Jasmin forwarded: {teleway.accepted / max(forwarded, 1):.1f}x "
                    "(Jasmin answers ESME_ROK once the message is queued in RabbitMQ, teleway "
                    "once it is committed to its store)."
                )
        except Exception as exc:
            notes = f"Jasmin could not be measured: {exc}"
    else:
        notes = (
            "Jasmin: not measured in this run (give --jasmin-venv or $JASMIN_VENV: a "
            "virtualenv with `pip install jasmin`)."
        )
    reference = next((r for r in rows if r.name == "smpp34" and r.accepted), None)
    table = _table(rows, args, reference)
    print()
    print(table)
    print()
    print(notes)
    if not args.no_docs:
        write_docs(table, notes)


if __name__ == "__main__":
    main()
