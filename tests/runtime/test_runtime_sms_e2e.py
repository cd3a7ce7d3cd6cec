"""SMS delivery end to end with real processes and sockets: `teleway serve` -> an upstream
`teleway simulate smsc` process (with its journal) -> receipts; replies injected with
`teleway simulate mo` -> the outbox; faults (upstream down at start, throttling, errors,
disconnects, response timeouts, permanent refusals): every accepted message ends final, none
lost, possible duplicates counted."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from gwharness import TELEWAY, GatewayFiles, free_port, make_gateway

from teleway.core.accept import accept
from teleway.core.model import Content, Options, Origin, Recipient, ReportOn, Submission
from teleway.proto.sms.alphabets import decode_text, encoding_for_data_coding
from teleway.runtime.wiring import RandomIds, SystemClock
from teleway.store import open_store
from teleway.store.directory import Directory

pytestmark = pytest.mark.slow

PROVISIONING = """
[[accounts]]
name = "demo"
senders = ["*@example.com"]

[accounts.settings]
sender_id = "TELEWAY"
max_sms_parts = 10
"""
SYSTEM_ID, PASSWORD = "upstr", "pw"

TEXTS = {
    "short": "Hello from teleway",
    "long-gsm": "Escapes []{}€ and ~ in a long GSM text that needs parts. " * 4,
    "hebrew": "שלום! הודעה בעברית מהשער",
    "emoji": "Party 🎉 at 8 😀👍🏽 " * 6,
}


@contextmanager
def simulator(root: Path, port: int, *options: str) -> Iterator[Path]:
    journal = root / f"journal-{port}.jsonl"
    log = open(root / f"simulator-{port}.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [*TELEWAY, "simulate", "smsc", "--port", str(port), "--system-id", SYSTEM_ID,
         "--password", PASSWORD, "--receipt-delay", "0.05", "--seed", "11",
         "--journal", str(journal), *options],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while b"listening" not in (root / f"simulator-{port}.log").read_bytes():
            assert process.poll() is None, (root / f"simulator-{port}.log").read_text()
            assert time.monotonic() < deadline, "simulator did not start"
            time.sleep(0.05)
        yield journal
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def upstream_block(name: str, port: int, **extra: Any) -> str:
    values: dict[str, Any] = {
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "system_id": SYSTEM_ID,
        "password": PASSWORD,
        "reconnect_min": 0.1,
        "reconnect_max": 0.5,
        "response_timeout": 1.0,
    }
    values.update(extra)
    lines = ["[[upstreams]]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def prepare(root: Path, extra: str) -> GatewayFiles:
    gw = make_gateway(root, simulator=False, extra=extra)
    gw.cli("db", "upgrade")
    (root / "prov.toml").write_text(PROVISIONING)
    gw.cli("admin", "apply", str(root / "prov.toml"))
    return gw


@contextmanager
def serving(gw: GatewayFiles, *, wait_upstreams: bool = True) -> Iterator[subprocess.Popen[bytes]]:
    server = gw.serve()
    try:
        if wait_upstreams:
            gw.wait_http(server)
        else:
            deadline = time.monotonic() + 30
            while True:
                assert server.poll() is None, gw.log()
                try:
                    if gw.http_json("/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, gw.log()
                time.sleep(0.1)
        yield server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def submit(
    gw: GatewayFiles,
    items: list[tuple[str, str]],
    *,
    origin: Origin = Origin.CLI,
    submitter: str = "e2e",
) -> list[str]:
    """accept() each (recipient, text) into the gateway's database; return message ids."""

    async def run() -> list[str]:
        store = await open_store(gw.database_url)
        try:
            account = await Directory(store.engine).account_by_name("demo")
            assert account is not None
            ids = []
            for number, text in items:
                accepted = await accept(
                    Submission(
                        account=account,
                        origin=origin,
                        submitter=submitter,
                        recipients=(Recipient(number=number),),
                        content=Content(text=text),
                        options=Options(report=ReportOn.FINAL),
                    ),
                    store=store.messages,
                    clock=SystemClock(),
                    ids=RandomIds(),
                )
                ids.append(accepted.message_id)
            return ids
        finally:
            await store.close()

    return asyncio.run(run())


def states(gw: GatewayFiles) -> dict[str, tuple[str, str | None]]:
    """delivery message id -> (state, error), read straight from the database."""
    path = gw.database_url.split("///", 1)[1]
    with sqlite3.connect(path, timeout=10) as db:
        rows = db.execute("select message_id, state, error from deliveries").fetchall()
    return {m: (s, e) for m, s, e in rows}


def wait_final(
    gw: GatewayFiles, ids: list[str], timeout: float = 60
) -> dict[str, tuple[str, str | None]]:
    final = {"delivered", "undeliverable", "expired", "rejected", "cancelled"}
    deadline = time.monotonic() + timeout
    while True:
        now = states(gw)
        if all(now.get(i, ("?", None))[0] in final for i in ids):
            return now
        if time.monotonic() > deadline:
            pending = {i: now.get(i) for i in ids if now.get(i, ("?",))[0] not in final}
            raise AssertionError(f"not final: {pending}\n{gw.log()[-4000:]}")
        time.sleep(0.2)


def journal_texts(journal: Path) -> dict[str, list[str]]:
    """destination -> texts submitted (parts joined by concatenation order)."""
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    out: dict[str, list[str]] = {}
    groups: dict[tuple[str, int], dict[int, str]] = {}
    for r in records:
        data = bytes.fromhex(r["short_message"] or r["payload"])
        if r["esm_class"] & 0x40:
            header, data = data[: 1 + data[0]], data[1 + data[0] :]
            ref, total, seq = header[-3], header[-2], header[-1]
        else:
            ref, total, seq = -1, 1, 1
        encoding = encoding_for_data_coding(r["data_coding"])
        assert encoding is not None
        text = decode_text(data, encoding)
        if total == 1:
            out.setdefault(r["destination_addr"], []).append(text)
            continue
        group = groups.setdefault((r["destination_addr"], ref), {})
        group[seq] = text
        if len(group) == total:
            joined = "".join(group[i] for i in range(1, total + 1))
            out.setdefault(r["destination_addr"], []).append(joined)
            del groups[(r["destination_addr"], ref)]
    return out


def outbox(gw: GatewayFiles) -> list[dict[str, Any]]:
    path = gw.database_url.split("///", 1)[1]
    with sqlite3.connect(path, timeout=10) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("select * from outbox where kind = 'inbound' order by id").fetchall()
    return [dict(r) | {"payload": json.loads(r["payload"])} for r in rows]


def metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def test_every_encoding_is_delivered_and_the_log_shows_sent_then_delivered(
    tmp_path: Path,
) -> None:
    port = free_port()
    gw = prepare(tmp_path, upstream_block("carrier", port))
    with simulator(tmp_path, port) as journal, serving(gw):
        items = [(f"+4915112345{i:03d}", text) for i, text in enumerate(TEXTS.values())]
        ids = submit(gw, items)
        final = wait_final(gw, ids)
        log = gw.log()
    assert {final[i][0] for i in ids} == {"delivered"}
    on_wire = journal_texts(journal)
    for number, text in items:
        assert on_wire[number.lstrip("+")] == [text]
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    coding = {r["destination_addr"]: r["data_coding"] for r in records}
    assert coding["4915112345000"] == 0 and coding["4915112345001"] == 0
    assert coding["4915112345002"] == 8 and coding["4915112345003"] == 8
    assert {r["source_addr"] for r in records} == {"TELEWAY"}
    assert {r["source_addr_ton"] for r in records} == {5}
    sent = log.index("SENT")
    assert "DELIVERED" in log[sent:]


def test_replies_reach_the_outbox_by_number_and_by_e_mail_threading(tmp_path: Path) -> None:
    port = free_port()
    gw = prepare(tmp_path, upstream_block("carrier", port))
    gw.cli("admin", "number", "add", "demo", "+447400123456")
    listed = json.loads(gw.cli("admin", "number", "list", "--json").stdout)
    assert listed[0]["number"] == "+447400123456" and listed[0]["account"] == "demo"
    phone = "+4915112345678"
    with simulator(tmp_path, port), serving(gw):
        # a conversation started by e-mail: alice's message reaches the phone from "TELEWAY"
        [emailed] = submit(
            gw, [(phone, "Are you coming?")], origin=Origin.SMTP, submitter="alice@example.com"
        )
        wait_final(gw, [emailed])

        def inject(to: str, text: str) -> None:
            subprocess.run(
                [*TELEWAY, "simulate", "mo", "--port", str(port), "--system-id", SYSTEM_ID,
                 "--password", PASSWORD, "--from", phone, "--to", to, text],
                check=True, capture_output=True, timeout=30,
            )  # fmt: skip

        inject("447400123456", "Reply to the number " * 10)  # long: 2 parts, reassembled
        inject("TELEWAY", "Yes, at 8 😀")
        inject("999", "nobody owns this")
        deadline = time.monotonic() + 30
        while len(outbox(gw)) < 2:
            assert time.monotonic() < deadline, gw.log()[-3000:]
            time.sleep(0.2)
        time.sleep(1.0)  # the unroutable one has been handled too
        metrics = gw.http_text("/metrics")
    items = outbox(gw)
    assert len(items) == 2
    by_number, threaded = items
    assert (by_number["origin"], by_number["account_id"]) == ("smpp", 1)
    assert by_number["payload"]["text"] == "Reply to the number " * 10
    assert by_number["payload"]["from"] == phone
    assert by_number["payload"]["to"] == "447400123456"
    assert by_number["payload"]["parts"] == 2
    assert threaded["origin"] == "smtp"
    assert threaded["payload"]["reply_to"] == "alice@example.com"
    assert threaded["payload"]["message_id"] == emailed == threaded["message_id"]
    assert threaded["payload"]["text"] == "Yes, at 8 😀"
    assert metric(metrics, 'teleway_inbound_sms_total{result="unrouted"') == 1
    assert "reply not routed" in gw.log()


def test_faults_every_message_ends_final_none_lost_duplicates_counted(tmp_path: Path) -> None:
    port = free_port()
    # the simulator answers and receipts with the same ids: "decimal" (as given) avoids the
    # cross-base guesses of "auto" when a first attempt's receipt is orphaned by its retry
    gw = prepare(
        tmp_path,
        upstream_block(
            "carrier", port, window=8, response_timeout=0.5, message_id_format="decimal"
        ),
    )
    numbers = [f"+4915112346{i:03d}" for i in range(40)]
    refused = numbers[7]
    # upstream down at start: messages are accepted and wait
    with serving(gw, wait_upstreams=False):
        ids = submit(
            gw, [(n, f"fault test {n} " + "x" * (i % 3) * 80) for i, n in enumerate(numbers)]
        )
        time.sleep(1.5)
        assert {s for s, _ in states(gw).values()} <= {"queued", "accepted"}
        with simulator(
            tmp_path, port,
            "--throttle-ratio", "0.15", "--error-ratio", "0.05", "--disconnect-ratio", "0.03",
            "--no-response-ratio", "0.03", "--reject", refused,
        ) as journal:  # fmt: skip
            final = wait_final(gw, ids, timeout=80)
            metrics = gw.http_text("/metrics")
    by_number = dict(zip(numbers, ids, strict=True))
    assert final[by_number[refused]] == ("undeliverable", "ESME_RINVDSTADR")
    others = [by_number[n] for n in numbers if n != refused]
    assert {final[i][0] for i in others} == {"delivered"}, {i: final[i] for i in others}
    on_wire = journal_texts(journal)
    for number in numbers:
        if number != refused:
            assert number.lstrip("+") in on_wire  # nothing lost
    statuses = metric(metrics, 'teleway_upstream_submits_total{status="ESME_RTHROTTLED"')
    assert statuses >= 1
    assert metric(metrics, "teleway_possible_duplicates_total") >= 1
    sim_log = (tmp_path / f"simulator-{port}.log").read_text()
    assert "listening" in sim_log


def test_routes_reload_on_sighup_and_bad_routes_are_refused(tmp_path: Path) -> None:
    port, other = free_port(), free_port()
    blocks = upstream_block("alpha", port) + upstream_block("beta", other)
    route_to = '\n[[routes]]\nname = "de"\ncountries = ["DE"]\nupstreams = ["{0}"]\n'
    gw = prepare(tmp_path, blocks + route_to.format("alpha"))
    base = gw.config.read_text().replace(route_to.format("alpha"), "")

    def upstream_of(message_id: str) -> str:
        path = gw.database_url.split("///", 1)[1]
        with sqlite3.connect(path, timeout=10) as db:
            [(ids,)] = db.execute(
                "select upstream_ids from deliveries where message_id = ?", (message_id,)
            ).fetchall()
        return str(json.loads(ids)[0]).split(":")[0]

    check = gw.cli("routes", "check", "+4915112345678", "--json")
    assert json.loads(check.stdout)["upstream"] == "alpha"
    with simulator(tmp_path, port), simulator(tmp_path, other), serving(gw) as server:
        [first] = submit(gw, [("+4915112345678", "via alpha")])
        wait_final(gw, [first])
        assert upstream_of(first) == "alpha"
        gw.config.write_text(base + route_to.format("beta"))
        server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while gw.log().count("routes reloaded") < 1:
            assert time.monotonic() < deadline, gw.log()[-3000:]
            time.sleep(0.1)
        [second] = submit(gw, [("+4915112345679", "via beta")])
        wait_final(gw, [second])
        assert upstream_of(second) == "beta"
        # a route naming an upstream that does not exist: refused, beta stays
        gw.config.write_text(base + route_to.format("gamma"))
        server.send_signal(signal.SIGHUP)
        while "routes not reloaded" not in gw.log():
            assert time.monotonic() < deadline + 20, gw.log()[-3000:]
            time.sleep(0.1)
        [third] = submit(gw, [("+4915112345670", "still beta")])
        wait_final(gw, [third])
        assert upstream_of(third) == "beta"
        metrics = gw.http_text("/metrics")
    assert metric(metrics, 'teleway_route_reloads_total{result="ok"}') >= 1
    assert metric(metrics, 'teleway_route_reloads_total{result="invalid"}') >= 1
