"""The REST API through real sockets: a `teleway serve` process (SMSC simulator as upstream),
httpx as the client, and a webhook receiver (a real HTTP server in this test process)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from gwharness import GatewayFiles, make_gateway

from db_fixtures import fresh_postgres_database
from teleway.notify.webhook import SIGNATURE_HEADER, verify

SECRET = "whsec-test-0123456789"


@dataclass
class Receiver:
    """Records every POST; answers with `status` (changeable while running)."""

    status: int = 200
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(c["body"]) for c in self.calls]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with rec.lock:
                rec.calls.append({"headers": dict(self.headers), "body": body, "at": time.time()})
                status = rec.status
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"try again later")

        def log_message(self, format: str, *args: Any) -> None:
            return None

    rec.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=rec.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()


@dataclass
class Api:
    gw: GatewayFiles
    key: str
    other_key: str

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.gw.http_port}/api/v1", headers=headers, timeout=10
        )


def _create_key(gw: GatewayFiles, account: str, name: str) -> str:
    out = json.loads(gw.cli("admin", "apikey", "create", account, name, "--json").stdout)
    return str(out["key"])


@pytest.fixture(scope="module")
def postgres_gateway_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (the gateway's `db upgrade` migrates it)."""
    with fresh_postgres_database("teleway_api") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_gateway_url"))


@pytest.fixture
def api(tmp_path: Path, receiver: Receiver, request: pytest.FixtureRequest) -> Iterator[Api]:
    # only the first test runs on both databases; the others on SQLite
    url = request.getfixturevalue("database") if "database" in request.fixturenames else None
    gw = make_gateway(
        tmp_path,
        database_url=url,
        receipt_delay=0.2,
        extra="\n[webhooks]\nallow_private = true\nretry_base_seconds = 0.2\n"
        "retry_max_seconds = 0.5\n",
    )
    gw.cli("db", "upgrade")
    gw.cli("admin", "account", "add", "acme")
    gw.cli("admin", "account", "add", "other")
    gw.cli(
        "admin",
        "account",
        "set",
        "acme",
        f"webhook_url={receiver.url}",
        f"webhook_secret={SECRET}",
        "max_recipients=5",
    )
    key = _create_key(gw, "acme", "test-key")
    other = _create_key(gw, "other", "their-key")
    server = gw.serve()
    try:
        gw.wait_http(server)
        yield Api(gw=gw, key=key, other_key=other)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=40)
        except Exception:
            server.kill()
            server.wait()


def wait_for(predicate: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_submit_deliver_webhook_signed(database: str | None, api: Api, receiver: Receiver) -> None:
    with api.client() as client:
        created = client.post(
            "/messages",
            json={
                "recipients": [{"number": "+14155550100"}, {"number": "+14155550101"}],
                "text": "Hello over HTTP",
            },
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert created.headers["location"] == f"/api/v1/messages/{body['id']}"
        assert [d["recipient"] for d in body["deliveries"]] == ["+14155550100", "+14155550101"]

        def delivered() -> bool:
            finals = [e for e in receiver.events() if e.get("state") == "delivered"]
            return len(finals) == 2

        wait_for(delivered, "two delivered webhooks")
        for call in receiver.calls:
            header = call["headers"][SIGNATURE_HEADER]
            assert verify(SECRET, header, call["body"], now=time.time())
            assert not verify("wrong-secret", header, call["body"], now=time.time())
            assert not verify(SECRET, header, call["body"] + b" ", now=time.time())
        events = receiver.events()
        assert {e["message_id"] for e in events} == {body["id"]}
        states = [e["state"] for e in events if e["delivery_id"] == body["deliveries"][0]["id"]]
        assert states[-1] == "delivered" and "in_flight" in states
        assert len({e["id"] for e in events}) == len(events)  # event ids are unique

        detail = client.get(f"/messages/{body['id']}").json()
        assert {d["state"] for d in detail["deliveries"]} == {"delivered"}
        timeline = [e["to"] for e in detail["deliveries"][0]["events"]]
        assert timeline[:2] == ["accepted", "queued"] and timeline[-1] == "delivered"
        assert detail["deliveries"][0]["parts"][0]["state"] == "DELIVRD"
        assert detail["origin"] == "http" and detail["options"]["report"] == "all"

        page = client.get("/messages", params={"state": "delivered"}).json()
        assert [m["id"] for m in page["items"]] == [body["id"]]
        usage = client.get("/account/usage").json()
        assert usage["messages"] == 1 and usage["by_state"] == {"delivered": 2}


@pytest.mark.slow
def test_idempotency_isolation_errors_and_cancel(api: Api, receiver: Receiver) -> None:
    base = f"http://127.0.0.1:{api.gw.http_port}/api/v1"
    message = {"recipients": [{"number": "+14155550100", "device": "sms"}], "text": "once"}
    with api.client() as client:
        first = client.post("/messages", json=message, headers={"Idempotency-Key": "order-42"})
        assert first.status_code == 201
        again = client.post("/messages", json=message, headers={"Idempotency-Key": "order-42"})
        assert again.status_code == 201 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        changed = client.post(
            "/messages",
            json={**message, "text": "twice"},
            headers={"Idempotency-Key": "order-42"},
        )
        assert changed.status_code == 422
        assert changed.headers["content-type"] == "application/problem+json"
        assert changed.json()["type"].endswith("#problem-idempotency-key-reused")
        listed = client.get("/messages").json()["items"]
        assert [m["id"] for m in listed] == [first.json()["id"]]  # one message only

        # another account's key sees nothing of it
        with api.client(api.other_key) as theirs:
            hidden = theirs.get(f"/messages/{first.json()['id']}")
            assert hidden.status_code == 404
            assert hidden.json()["status"] == 404
            assert theirs.delete(f"/messages/{first.json()['id']}").status_code == 404
            assert theirs.get("/messages").json()["items"] == []

        # precise problems
        malformed = client.post(
            "/messages", content=b'{"recipients": [', headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 400
        assert malformed.json()["type"].endswith("#problem-malformed-request")
        wrong = client.post(
            "/messages",
            json={
                "recipients": [{"number": 4155550100, "device": "pager"}],
                "text": 7,
                "options": {"validity": "soon", "callback_url": "ftp://x"},
                "colour": "blue",
            },
        )
        assert wrong.status_code == 422
        fields = {e["field"]: e["reason"] for e in wrong.json()["errors"]}
        assert set(fields) == {
            "recipients[0].number",
            "recipients[0].device",
            "text",
            "options.validity",
            "options.callback_url",
            "colour",
        }
        assert "pager" in fields["recipients[0].device"]
        bad_number = client.post("/messages", json={"recipients": [{"number": "12"}], "text": "x"})
        assert bad_number.status_code == 422
        assert bad_number.json()["errors"][0]["field"] == "recipients[0].number"
        too_many = client.post(
            "/messages",
            json={"recipients": [{"number": f"+1415555{n:04d}"} for n in range(6)], "text": "x"},
        )
        assert too_many.status_code == 422  # the account allows 5
        assert too_many.json()["errors"] == [
            {"field": "recipients", "reason": "6 recipients, the account allows 5"}
        ]
        unsupported = client.post(
            "/messages", content=b"text", headers={"Content-Type": "text/plain"}
        )
        assert unsupported.status_code == 415

        # cancel what is still queued (scheduled an hour ahead)
        later = client.post(
            "/messages",
            json={**message, "options": {"schedule": "2999-01-01T00:00:00Z", "validity": 3600}},
        )
        assert later.status_code == 422  # scheduled after the validity ends
        assert later.json()["errors"][0]["field"] == "options.schedule"
        soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        scheduled = client.post("/messages", json={**message, "options": {"schedule": soon}})
        assert scheduled.status_code == 201
        message_id = scheduled.json()["id"]
        cancelled = client.delete(f"/messages/{message_id}")
        assert cancelled.status_code == 200
        assert cancelled.json()["cancelled"] == [scheduled.json()["deliveries"][0]["id"]]
        assert cancelled.json()["deliveries"][0]["state"] == "cancelled"
        twice = client.delete(f"/messages/{message_id}")
        assert twice.status_code == 409

    # authentication
    anonymous = httpx.get(f"{base}/messages", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    forged = httpx.get(f"{base}/messages", headers={"X-API-Key": "tw_" + "A" * 43}, timeout=10)
    assert forged.status_code == 401
    by_header = httpx.get(f"{base}/messages", headers={"X-API-Key": api.key}, timeout=10)
    assert by_header.status_code == 200
    revoked = api.gw.cli("admin", "apikey", "list", "--account", "other", "--json")
    their_id = json.loads(revoked.stdout)[0]["id"]
    api.gw.cli("admin", "apikey", "revoke", str(their_id))
    gone = httpx.get(f"{base}/messages", headers={"X-API-Key": api.other_key}, timeout=10)
    assert gone.status_code == 401

    # the webhook saw the cancellation too (reports every change for HTTP submissions)
    wait_for(
        lambda: any(
            e.get("message_id") == message_id and e["state"] == "cancelled"
            for e in receiver.events()
        ),
        "the cancelled webhook",
    )


@pytest.mark.slow
def test_webhook_retried_until_the_receiver_answers(api: Api, receiver: Receiver) -> None:
    receiver.status = 503
    with api.client() as client:
        created = client.post(
            "/messages", json={"recipients": [{"number": "+14155550100"}], "text": "retry me"}
        )
        assert created.status_code == 201
        wait_for(lambda: len(receiver.calls) >= 3, "a few failing webhook calls")
        receiver.status = 200

        def settled() -> bool:
            return any(e["state"] == "delivered" for e in receiver.events())

        wait_for(settled, "the delivered webhook after the receiver recovered")
        ids = [e["id"] for e in receiver.events()]
        assert len(ids) > len(set(ids))  # the same event id was retried
    # counted once the outbox item is settled, a moment after the receiver answered
    metrics = wait_for(
        lambda: (
            (m := api.gw.http_text("/metrics")) and 'webhooks_total{result="delivered"}' in m and m
        ),
        "the delivered webhook counted",
    )
    assert 'teleway_webhooks_total{result="retry"}' in metrics
    assert 'teleway_http_requests_total{method="POST",route="/api/v1/messages",status="201"}' in (
        metrics
    )


@pytest.mark.slow
def test_openapi_docs_and_security_headers(api: Api) -> None:
    base = f"http://127.0.0.1:{api.gw.http_port}"
    spec = httpx.get(f"{base}/api/v1/openapi.json", timeout=10)
    assert spec.status_code == 200
    document = spec.json()
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {"/messages", "/messages/{message_id}", "/account/usage"}
    docs = httpx.get(f"{base}/api/v1/docs", timeout=10)
    assert docs.status_code == 200 and "createMessage" in docs.text
    assert "<script" not in docs.text and "cdn" not in docs.text.lower()
    for response in (spec, docs):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    missing = httpx.get(f"{base}/api/v1/nothing-here", timeout=10)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong_method = httpx.put(f"{base}/api/v1/messages", timeout=10)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"
