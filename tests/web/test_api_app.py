"""The REST API application in process, over a real store (SQLite file, migrated): limits,
multipart attachments, store outages, pagination, and the request parser under hypothesis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teleway.core.accept import accept
from teleway.core.model import Accepted, Device, ReportOn, Submission
from teleway.core.ports import StoreUnavailable
from teleway.runtime.wiring import RandomIds, SystemClock
from teleway.store import Store, open_store
from teleway.store.api_keys import ApiKeys
from teleway.store.blobs import LocalBlobStore
from teleway.store.directory import Directory
from teleway.store.history import History
from teleway.store.idempotency import PENDING_TIMEOUT, IdempotencyKeys
from teleway.store.smpp_ops import SmppOperations
from teleway.store.webhooks import WebhookAttempts
from teleway.testing.fakes import FakeClock
from teleway.web.api.schemas import parse_message
from teleway.web.app import build_app
from teleway.web.context import ApiSettings, WebContext

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


class World:
    def __init__(self, store: Store, ctx: WebContext, keys: dict[str, str], blobs: Path):
        self.store = store
        self.ctx = ctx
        self.keys = keys
        self.blobs = blobs
        self.down = False
        self.app = build_app(ctx)  # one application: its rate limit buckets live as long

    def client(self, ctx: WebContext | None = None, key: str | None = None) -> httpx.AsyncClient:
        app = self.app if ctx is None else build_app(ctx)
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("10.0.0.9", 1)),
            base_url="http://gateway.test/api/v1",
            headers={"Authorization": f"Bearer {key or self.keys['acme']}"},
        )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path}/api.db", migrate=True)
    clock, ids = SystemClock(), RandomIds()
    directory = Directory(store.engine)
    holder: dict[str, World] = {}

    async def accept_one(submission: Submission) -> Accepted:
        if holder["world"].down:
            raise StoreUnavailable("database is locked (simulated)")
        return await accept(submission, store=store.messages, clock=clock, ids=ids)

    api_keys = ApiKeys(store.db, store.writer)
    ctx = WebContext(
        messages=store.messages,
        queue=store.queue,
        directory=directory,
        accept=accept_one,
        blobs=LocalBlobStore(tmp_path / "blobs"),
        clock=clock,
        ids=ids,
        history=History(store.db),
        api_keys=api_keys,
        idempotency=IdempotencyKeys(store.db, store.writer),
        webhooks=WebhookAttempts(store.db, store.writer),
        cancel_queued=SmppOperations(store.db, store.writer, store.queue).cancel,
        api=ApiSettings(rate_limit=1000, rate_burst=1000, max_body_bytes=64 * 1024),
    )
    keys = {}
    for name in ("acme", "globex"):
        account = await directory.create_account(name, actor="test")
        keys[name] = (await api_keys.create(account.id, "k", now=clock.now(), actor="t"))[1]
    holder["world"] = w = World(store, ctx, keys, tmp_path / "blobs")
    try:
        yield w
    finally:
        await store.close()


MESSAGE = {"recipients": [{"number": "+14155550100"}], "text": "hi"}


async def test_per_key_rate_limit_answers_429_with_retry_after(world: World) -> None:
    slow = build_app(replace(world.ctx, api=ApiSettings(rate_limit=0.5, rate_burst=2)))
    world.app = slow
    async with world.client() as client:
        assert (await client.get("/messages")).status_code == 200
        assert (await client.get("/messages")).status_code == 200
        limited = await client.get("/messages")
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["retry_after"] == int(limited.headers["retry-after"])
        # another key has its own bucket
        async with world.client(key=world.keys["globex"]) as other:
            assert (await other.get("/messages")).status_code == 200


async def test_failed_authentications_are_limited_per_client(world: World) -> None:
    async with world.client(key="tw_" + "x" * 43) as client:
        statuses = [(await client.get("/messages")).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]  # [security] auth_fail_limit = 5 per 300 s
    async with world.client() as good:  # the same address: still refused while it cools down
        assert (await good.get("/messages")).status_code == 429


async def test_store_down_is_503_and_releases_the_idempotency_key(world: World) -> None:
    async with world.client() as client:
        world.down = True
        refused = await client.post("/messages", json=MESSAGE, headers={"Idempotency-Key": "k1"})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["type"].endswith("#problem-temporarily-unavailable")
        world.down = False
        retried = await client.post("/messages", json=MESSAGE, headers={"Idempotency-Key": "k1"})
        assert retried.status_code == 201
        assert "idempotent-replayed" not in retried.headers
        page = (await client.get("/messages")).json()
        assert [m["id"] for m in page["items"]] == [retried.json()["id"]]


async def test_store_down_while_authenticating_is_503(world: World) -> None:
    class DownKeys:
        async def authenticate(self, secret: str, *, now: Any) -> None:
            raise StoreUnavailable("could not connect to server (simulated)")

    world.app = build_app(replace(world.ctx, api_keys=DownKeys()))  # type: ignore[arg-type]
    async with world.client() as client:
        response = await client.get("/messages")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == "application/problem+json"


async def test_invalid_submission_releases_its_idempotency_key(world: World) -> None:
    async with world.client() as client:
        bad = {"recipients": [{"number": "12"}], "text": "x"}
        first = await client.post("/messages", json=bad, headers={"Idempotency-Key": "k2"})
        assert first.status_code == 422
        fixed = await client.post("/messages", json=MESSAGE, headers={"Idempotency-Key": "k2"})
        assert fixed.status_code == 201
        for header in ("", "has space", "x" * 256):
            response = await client.post(
                "/messages", json=MESSAGE, headers={"Idempotency-Key": header}
            )
            assert response.status_code == 400, header


async def test_a_retry_after_a_crash_between_commit_and_key_gets_the_committed_message(
    world: World,
) -> None:
    """The first request's message was committed but its process died before the key was
    completed: the retry (once the claim is stale) is answered with that message, not a
    second one."""
    clock = FakeClock(datetime.now(UTC))
    keys = world.ctx.idempotency

    class DiesBeforeCompleting:
        def __getattr__(self, name: str) -> Any:
            return getattr(keys, name)

        async def complete(self, *args: Any, **kwargs: Any) -> None:
            raise StoreUnavailable("the process died here")

    body = {**MESSAGE, "recipients": [{"number": "+14155550100"}, {"number": "+14155550101"}]}
    header = {"Idempotency-Key": "order-4711"}
    dying = replace(world.ctx, clock=clock, idempotency=DiesBeforeCompleting())
    async with world.client(dying) as client:
        first = await client.post("/messages", json=body, headers=header)
    assert first.status_code == 201
    clock.advance(PENDING_TIMEOUT + timedelta(seconds=1))
    restarted = replace(world.ctx, clock=clock)
    async with world.client(restarted) as client:
        again = await client.post("/messages", json=body, headers=header)
        replayed = await client.post("/messages", json=body, headers=header)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    expected = first.json()
    got = again.json()
    assert got["id"] == expected["id"]
    assert got["deliveries"] == expected["deliveries"]
    assert replayed.json() == got and replayed.headers["Idempotent-Replayed"] == "true"
    account = await world.ctx.directory.account_by_name("acme")
    assert account is not None
    listed = await world.store.messages.list_messages(account.id)
    assert [m.id for m in listed] == [expected["id"]]  # one message, not two


async def test_sender_id_outside_the_allowed_senders_is_422(world: World) -> None:
    await world.ctx.directory.update_settings(
        "acme", {"sender_id": "ACME", "allowed_senders": ["ACME", "+4479111*"]}, actor="test"
    )
    async with world.client() as client:
        for sender, status in [("ACME", 201), ("+447911123456", 201), ("EVIL", 422)]:
            body = {**MESSAGE, "options": {"sender_id": sender}}
            response = await client.post("/messages", json=body)
            assert response.status_code == status, (sender, response.text)
        problem = response.json()
        assert [e["field"] for e in problem["errors"]] == ["options.sender_id"], problem
        assert (await client.post("/messages", json=MESSAGE)).status_code == 201


async def test_multipart_fax_with_a_document(world: World) -> None:
    message = {"recipients": [{"number": "+14155550100", "device": "fax"}], "subject": "Invoice"}
    async with world.client() as client:
        created = await client.post(
            "/messages",
            data={"message": json.dumps(message)},
            files=[("attachments", ("invoice.pdf", PDF, "application/pdf"))],
        )
        assert created.status_code == 201, created.text
        detail = (await client.get(f"/messages/{created.json()['id']}")).json()
        assert detail["attachments"] == [
            {"filename": "invoice.pdf", "content_type": "application/pdf", "size": len(PDF)}
        ]
        assert detail["deliveries"][0]["device"] == "fax"
        stored = await world.store.messages.get_message(created.json()["id"])
        assert stored is not None
        assert await world.ctx.blobs.get(stored.content.attachments[0].blob_id) == PDF

        wrong = await client.post(
            "/messages",
            data={"message": json.dumps(message), "extra": "1"},
            files=[("attachments", ("run.exe", b"MZ", "application/x-msdownload"))],
        )
        assert wrong.status_code == 422
        assert {e["field"] for e in wrong.json()["errors"]} == {
            "extra",
            "attachments[0].content_type",
        }
        no_json = await client.post(
            "/messages",
            data={"message": "{nope"},
            files=[("attachments", ("a.pdf", PDF, "application/pdf"))],
        )
        assert no_json.status_code == 422
        assert no_json.json()["errors"][0]["field"] == "message"
        text_fax = await client.post(
            "/messages", json={"recipients": [{"number": "+14155550100", "device": "fax"}]}
        )
        assert text_fax.status_code == 422
        assert text_fax.json()["errors"][0]["field"] == "text"


async def test_bodies_over_the_limit_are_413(world: World) -> None:
    big = b'{"text": "' + b"x" * (200 * 1024) + b'"}'
    async with world.client() as client:
        declared = await client.post(
            "/messages", content=big, headers={"Content-Type": "application/json"}
        )
        assert declared.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(200):
                yield b"x" * 1024

        streamed = await client.post(
            "/messages", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert streamed.headers["content-type"] == "application/problem+json"


async def test_pages_follow_the_link_header(world: World) -> None:
    async with world.client() as client:
        made = []
        for n in range(5):
            response = await client.post("/messages", json={**MESSAGE, "text": f"m{n}"})
            made.append(response.json()["id"])
        seen: list[str] = []
        url: str | None = "/messages?limit=2&device=sms"
        while url:
            page = await client.get(url)
            seen += [m["id"] for m in page.json()["items"]]
            link = page.headers.get("link")
            url = link[link.index("<") + 1 + len("/api/v1") : link.index(">")] if link else None
        assert seen == list(reversed(made))
        bad = await client.get("/messages", params={"cursor": "garbage!", "limit": "0"})
        assert bad.status_code == 422
        assert {e["field"] for e in bad.json()["errors"]} == {"limit"}
        forged = await client.get("/messages", params={"cursor": "Z2FyYmFnZQ"})
        assert forged.status_code == 422 and forged.json()["errors"][0]["field"] == "cursor"
        filters = await client.get(
            "/messages", params={"since": "yesterday", "state": "lost", "origin": "pigeon"}
        )
        assert {e["field"] for e in filters.json()["errors"]} == {"since", "state", "origin"}


async def test_reports_are_asked_for_only_when_someone_listens(world: World) -> None:
    async with world.client() as client:
        plain = (await client.post("/messages", json=MESSAGE)).json()["id"]
        hooked = (
            await client.post(
                "/messages",
                json={**MESSAGE, "options": {"callback_url": "https://example.com/hook"}},
            )
        ).json()["id"]
    plain_delivery = (await world.store.messages.deliveries_of(plain))[0]
    hooked_delivery = (await world.store.messages.deliveries_of(hooked))[0]
    assert plain_delivery.report is ReportOn.NONE
    assert hooked_delivery.report is ReportOn.ALL
    await world.ctx.directory.update_settings(
        "acme", {"webhook_url": "https://example.com/all"}, actor="t"
    )
    async with world.client() as client:
        later = (await client.post("/messages", json=MESSAGE)).json()["id"]
    assert (await world.store.messages.deliveries_of(later))[0].report is ReportOn.ALL


async def test_disabled_account_and_usage_range(world: World) -> None:
    async with world.client() as client:
        usage = await client.get(
            "/account/usage",
            params={"since": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"},
        )
        assert usage.status_code == 422 and usage.json()["errors"][0]["field"] == "until"
        await world.ctx.directory.set_account_enabled("acme", False, actor="t")
        refused = await client.post("/messages", json=MESSAGE)
        assert refused.status_code == 403


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    data=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "recipients",
                        "number",
                        "device",
                        "text",
                        "subject",
                        "options",
                        "validity",
                        "schedule",
                        "sender_id",
                        "callback_url",
                        "x",
                    ]
                ),
                children,
                max_size=5,
            )
        ),
        max_leaves=20,
    )
)
def test_parser_never_crashes_and_always_explains(data: Any) -> None:
    parsed, errors = parse_message(data, max_recipients=10)
    assert (parsed is None) == bool(errors)
    for error in errors:
        assert error.field and error.reason
    if parsed is not None:
        assert 1 <= len(parsed.recipients) <= 10
        assert all(isinstance(r.device, Device) for r in parsed.recipients)


async def test_refused_requests_are_logged_without_the_key(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="teleway.web.api")
    async with world.client() as client:
        await client.post("/messages", json={"recipients": []})
    async with world.client(key="tw_" + "y" * 43) as stranger:
        await stranger.get("/messages")
    refused = [r for r in caplog.records if r.getMessage() == "API: request refused"]
    assert [r.fields["status"] for r in refused] == [422, 401]  # type: ignore[attr-defined]
    assert refused[0].fields["problem"] == "invalid-request"  # type: ignore[attr-defined]
    text = " ".join(str(getattr(r, "fields", "")) + r.getMessage() for r in caplog.records)
    assert world.keys["acme"] not in text and "y" * 43 not in text


async def test_cancel_takes_only_what_is_still_queued(world: World) -> None:
    async with world.client() as client:
        two = {**MESSAGE, "recipients": [{"number": "+14155550100"}, {"number": "+14155550101"}]}
        created = (await client.post("/messages", json=two)).json()
        # a dispatcher takes the first delivery (IN_FLIGHT, leased): it must not be cancelled
        leased = await world.store.queue.lease(
            worker="w1", now=world.ctx.clock.now(), limit=1, lease_for=timedelta(seconds=60)
        )
        assert [lease.delivery.id for lease in leased] == [created["deliveries"][0]["id"]]
        cancelled = await client.delete(f"/messages/{created['id']}")
        assert cancelled.status_code == 200
        assert cancelled.json()["cancelled"] == [created["deliveries"][1]["id"]]
        states = [d["state"] for d in cancelled.json()["deliveries"]]
        assert states == ["in_flight", "cancelled"]
        events = cancelled.json()["deliveries"][1]["events"]
        assert events[-1]["reason"] == "cancelled through the API by key k"
        again = await client.delete(f"/messages/{created['id']}")
        assert again.status_code == 409
        assert "in_flight" in again.json()["detail"]
