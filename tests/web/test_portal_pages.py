"""Portal pages in process (real SQLite store, httpx over ASGI): login, sessions, CSRF, roles,
preferences with preview, API keys, history, CSV, test message, operator provisioning."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from pathlib import Path

import httpx
from portal_support import PASSWORD, PortalWorld, csrf_of, login, portal_world

from teleway.core.model import (
    Content,
    DeliveryState,
    Origin,
    Recipient,
    Submission,
)
from teleway.store.history import MessageFilter
from teleway.store.web_sessions import token_id
from teleway.web.portal.base import SESSION_COOKIE


async def _message(world: PortalWorld, account: str, number: str, text: str) -> str:
    found = await world.directory.account_by_name(account)
    assert found is not None
    accepted = await world.ctx.accept(
        Submission(
            account=found,
            origin=Origin.SMTP,
            submitter=f"someone@{account}.example",
            recipients=(Recipient(number=number),),
            content=Content(text=text, subject="Hello"),
        )
    )
    return accepted.message_id


async def test_pages_need_a_session_and_redirect_back_after_login(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        response = await client.get("/messages?state=queued")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2Fmessages%3Fstate%3Dqueued"
        assert (await client.post("/settings", data={"x": "1"})).status_code == 401
        page = await client.get("/login?next=/messages")
        login_response = await client.post(
            "/login",
            data={
                "username": "alice",
                "password": PASSWORD,
                "csrf": csrf_of(page.text),
                "next": "/messages",
            },
        )
        assert login_response.status_code == 303
        assert login_response.headers["location"] == "/messages"
        for path in ("/", "/messages", "/send", "/settings", "/account/password"):
            r = await client.get(path)
            assert r.status_code == 200, (path, r.text)
            assert "default-src 'self'" in r.headers["content-security-policy"]


async def test_login_next_is_never_an_open_redirect(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
            page = await client.get("/login")
            r = await client.post(
                "/login",
                data={
                    "username": "alice",
                    "password": PASSWORD,
                    "csrf": csrf_of(page.text),
                    "next": target,
                },
            )
            assert r.status_code == 303
            assert r.headers["location"] == "/"
            client.cookies.clear()


async def test_session_cookie_flags_and_stored_hash(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        page = await client.get("/login")
        r = await client.post(
            "/login",
            data={"username": "alice", "password": PASSWORD, "csrf": csrf_of(page.text)},
        )
        cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith(SESSION_COOKIE))
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
        assert "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP listener here; TLS: see the next test
        token = client.cookies[SESSION_COOKIE]
        assert len(token) >= 43
        # the table keeps the SHA-256 of the token, never the token
        assert await world.sessions.resolve(token, now=world.ctx.clock.now()) is not None
        raw = (tmp_path / "portal.db").read_bytes()
        assert token.encode() not in raw
        assert token_id(token) != token


async def test_cookie_is_secure_when_the_listener_speaks_tls(tmp_path: Path) -> None:
    from dataclasses import replace

    from teleway.web.portal import build_portal

    async with portal_world(tmp_path) as world:
        app = build_portal(replace(world.ctx, tls=True), sessions=world.sessions)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="https://portal.test") as c:
            page = await c.get("/login")
            r = await c.post(
                "/login",
                data={"username": "alice", "password": PASSWORD, "csrf": csrf_of(page.text)},
            )
            cookie = next(
                v for v in r.headers.get_list("set-cookie") if v.startswith(SESSION_COOKIE)
            )
            assert "Secure" in cookie


async def test_wrong_password_login_csrf_and_throttle(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        page = await client.get("/login")
        token = csrf_of(page.text)
        r = await client.post("/login", data={"username": "alice", "password": "nope"})
        assert r.status_code == 403 and "expired" in r.text  # no login CSRF token
        for _ in range(5):
            r = await client.post(
                "/login", data={"username": "alice", "password": "wrong password", "csrf": token}
            )
            assert r.status_code == 401
            assert "Wrong username or password" in r.text
        r = await client.post(
            "/login", data={"username": "alice", "password": PASSWORD, "csrf": token}
        )
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) > 0
        assert "Too many failed logins" in r.text
        # another address is not throttled
        other = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=world.app, client=("127.0.0.2", 40000)),
            base_url="http://portal.test",
        )
        async with other:
            assert await login(other, "alice")


async def test_user_lock_out_after_repeated_failures_from_many_addresses(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world:
        for i in range(10):
            transport = httpx.ASGITransport(app=world.app, client=(f"10.0.0.{i}", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://p.test") as c:
                page = await c.get("/login")
                r = await c.post(
                    "/login",
                    data={"username": "alice", "password": "not it!!!", "csrf": csrf_of(page.text)},
                )
                assert r.status_code == 401
        transport = httpx.ASGITransport(app=world.app, client=("10.0.1.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://p.test") as c:
            page = await c.get("/login")
            r = await c.post(
                "/login",
                data={"username": "alice", "password": PASSWORD, "csrf": csrf_of(page.text)},
            )
            assert r.status_code == 401  # locked: even the right password is refused
        entries = await world.directory.audit_log(limit=5)
        assert any(e.action == "user.lockout" and e.subject == "user:alice" for e in entries)


async def test_logout_ends_the_session(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        csrf = await login(client, "alice")
        token = client.cookies[SESSION_COOKIE]
        r = await client.post("/logout", data={"csrf": csrf})
        assert r.status_code == 303
        client.cookies.set(SESSION_COOKIE, token)
        assert (await client.get("/")).status_code == 303
        assert await world.sessions.resolve(token, now=world.ctx.clock.now()) is None


async def test_csrf_is_required_on_every_change(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        csrf = await login(client, "alice")
        for data in ({}, {"csrf": "forged"}, {"csrf": csrf[:-1] + "x"}):
            r = await client.post("/settings", data={**data, "sms_template": "{body}"})
            assert r.status_code == 403, data
            assert "CSRF" in r.text
        r = await client.post("/settings/preview", json={"sms_template": "{body}"})
        assert r.status_code == 403
        r = await client.post("/logout")
        assert r.status_code == 403
        account = await world.directory.account_by_name("acme")
        assert account is not None and account.settings.sms_template == "{subject},{body}"
        r = await client.post("/settings", data={"csrf": csrf, "sms_template": "{body}"})
        assert r.status_code == 303
        account = await world.directory.account_by_name("acme")
        assert account is not None and account.settings.sms_template == "{body}"


async def test_account_user_cannot_reach_another_accounts_data(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        theirs = await _message(world, "globex", "+14155550101", "globex secret")
        mine = await _message(world, "acme", "+14155550102", "acme hello")
        csrf = await login(client, "alice")
        for path in (
            f"/messages/{theirs}",
            f"/messages/{theirs}/timeline",
            f"/messages/{theirs}/events",
            "/admin/accounts/globex/settings",
        ):
            r = await client.get(path)
            assert r.status_code == 404, path
            assert "globex secret" not in r.text
        assert (await client.get(f"/messages/{mine}")).status_code == 200
        for path in ("/admin/accounts", "/admin/users", "/admin/audit", "/admin/accounts/globex"):
            assert (await client.get(path)).status_code == 403, path
        r = await client.post(
            "/admin/accounts/globex/settings", data={"csrf": csrf, "sms_template": "{body}"}
        )
        assert r.status_code == 404
        r = await client.post(
            "/admin/accounts/globex/sender-add", data={"csrf": csrf, "pattern": "x@evil.example"}
        )
        assert r.status_code == 403
        listing = await client.get("/messages?account=globex")
        assert mine in listing.text and theirs not in listing.text
        export = await client.get("/messages.csv")
        assert export.status_code == 200
        rows = list(csv.reader(io.StringIO(export.text)))
        assert rows[0][0] == "message_id"
        assert [r[0] for r in rows[1:]] == [mine]


async def test_password_change_rules_and_other_sessions_end(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client, world.client() as other:
        csrf = await login(client, "alice")
        await login(other, "alice")
        r = await client.post(
            "/account/password",
            data={"csrf": csrf, "current": PASSWORD, "new": "password", "repeat": "password"},
        )
        assert r.status_code == 400
        assert "at least 10 characters" in r.text or "most common" in r.text
        r = await client.post(
            "/account/password",
            data={
                "csrf": csrf,
                "current": "wrong one!!",
                "new": "a new long one",
                "repeat": "a new long one",
            },
        )
        assert r.status_code == 400 and "not your current password" in r.text
        r = await client.post(
            "/account/password",
            data={
                "csrf": csrf,
                "current": PASSWORD,
                "new": "a new long one",
                "repeat": "different one",
            },
        )
        assert r.status_code == 400 and "differ" in r.text
        r = await client.post(
            "/account/password",
            data={
                "csrf": csrf,
                "current": PASSWORD,
                "new": "a new long one",
                "repeat": "a new long one",
            },
        )
        assert r.status_code == 303
        assert (await client.get("/")).status_code == 200  # this session stays
        assert (await other.get("/")).status_code == 303  # the other browser is logged out
        assert await world.directory.verify_login("alice", "a new long one") is not None


async def test_preferences_save_preview_and_errors(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        csrf = await login(client, "alice")
        r = await client.post(
            "/settings/preview",
            json={"sms_template": "{subject}: {body}", "subject": "Hi", "body": "x" * 200},
            headers={"X-CSRF-Token": csrf},
        )
        assert r.status_code == 200
        data = r.json()
        assert data["text"].startswith("Hi: xxx")
        assert data["encoding"] == "GSM 7-bit"
        assert data["parts_needed"] == 2
        r = await client.post(
            "/settings/preview",
            json={"sms_template": "{body}", "body": "Привет"},
            headers={"X-CSRF-Token": csrf},
        )
        assert r.json()["encoding"].startswith("UCS-2") and r.json()["parts_needed"] == 1
        r = await client.post("/settings/preview", content=b"[1,", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 400
        r = await client.post(
            "/settings",
            data={"csrf": csrf, "sms_template": "{nope}", "max_sms_parts": "3", "flags": "1"},
        )
        assert r.status_code == 400
        assert "unknown placeholder {nope}" in r.text
        r = await client.post(
            "/settings",
            data={"csrf": csrf, "max_sms_parts": "many", "sms_template": "{body}"},
        )
        assert r.status_code == 400 and "whole number" in r.text
        r = await client.post(
            "/settings",
            data={
                "csrf": csrf,
                "sms_template": "{subject} - {body}",
                "long_sms_policy": "truncate",
                "max_sms_parts": "3",
                "push_mode": "push-then-sms",
                "push_fallback_seconds": "120",
                "webhook_url": "https://hooks.example/teleway",
                "webhook_secret": "s3cret-s3cret-s3cret",
            },
        )
        assert r.status_code == 303, r.text
        account = await world.directory.account_by_name("acme")
        assert account is not None
        s = account.settings
        assert (s.sms_template, str(s.long_sms_policy), s.max_sms_parts) == (
            "{subject} - {body}",
            "truncate",
            3,
        )
        assert (str(s.push_mode), s.push_fallback_seconds) == ("push-then-sms", 120)
        assert s.webhook_url == "https://hooks.example/teleway"
        assert s.webhook_secret == "s3cret-s3cret-s3cret"
        page = await client.get("/settings")
        assert "s3cret-s3cret-s3cret" not in page.text  # a secret is never shown back
        audit = await world.directory.audit_log(limit=3)
        assert audit[0].action == "account.settings" and audit[0].actor == "portal:alice"
        # an account user cannot change operator-only settings by adding fields
        r = await client.post(
            "/settings", data={"csrf": csrf, "sender_id": "BANK", "max_recipients": "9999"}
        )
        account = await world.directory.account_by_name("acme")
        assert account is not None and account.settings.sender_id is None
        assert account.settings.max_recipients == 100


async def test_webhook_secret_never_reaches_the_audit_log(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        csrf = await login(client, "alice")
        r = await client.post(
            "/settings", data={"csrf": csrf, "webhook_secret": "s3cret-s3cret-s3cret"}
        )
        assert r.status_code == 303
        audit = await world.directory.audit_log(limit=1)
        assert audit[0].action == "account.settings"
        assert "s3cret" not in str(audit[0].detail)


async def test_api_keys_shown_once_listed_and_revoked(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        csrf = await login(client, "alice")
        r = await client.post("/settings/api-keys", data={"csrf": csrf, "name": "billing"})
        assert r.status_code == 200
        key = re.search(r'<code id="new-key">([^<]+)</code>', r.text)
        assert key is not None
        secret = key.group(1)
        found = await world.ctx.api_keys.authenticate(secret, now=world.ctx.clock.now())
        assert found is not None and found.name == "billing"
        listing = await client.get("/settings")
        assert secret not in listing.text and found.prefix in listing.text
        r = await client.post("/settings/api-keys", data={"csrf": csrf, "name": "billing"})
        assert r.status_code == 400 and "already has a key named" in r.text
        r = await client.post(f"/settings/api-keys/{found.id}/revoke", data={"csrf": csrf})
        assert r.status_code == 303
        assert await world.ctx.api_keys.authenticate(secret, now=world.ctx.clock.now()) is None
        # another account's key cannot be revoked from here
        globex = await world.directory.account_by_name("globex")
        assert globex is not None
        theirs, _ = await world.ctx.api_keys.create(
            globex.id, "theirs", now=world.ctx.clock.now(), actor="test"
        )
        r = await client.post(f"/settings/api-keys/{theirs.id}/revoke", data={"csrf": csrf})
        assert r.status_code == 404
        still = await world.ctx.api_keys.get(theirs.id, account_id=None)
        assert still is not None and still.active


async def test_send_test_message_and_history(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        csrf = await login(client, "alice")
        r = await client.post(
            "/send", data={"csrf": csrf, "number": "not a number", "device": "sms", "text": "hi"}
        )
        assert r.status_code == 400 and "refused" in r.text
        r = await client.post(
            "/send", data={"csrf": csrf, "number": "+14155550123", "device": "pager", "text": "x"}
        )
        assert r.status_code == 400 and "Unknown device" in r.text
        r = await client.post(
            "/send",
            data={"csrf": csrf, "number": "+14155550123", "device": "sms", "text": "Hello <b>"},
        )
        assert r.status_code == 303
        message_id = r.headers["location"].split("?")[0].rsplit("/", 1)[1]
        message = await world.ctx.messages.get_message(message_id)
        assert message is not None
        assert message.origin is Origin.HTTP and message.submitter == "portal:alice"
        page = await client.get(f"/messages/{message_id}")
        assert page.status_code == 200
        assert "Hello &lt;b&gt;" in page.text  # escaped
        assert "+14155550123" in page.text
        listing = await client.get("/messages?recipient=550123&origin=http")
        assert message_id in listing.text
        listing = await client.get("/messages?recipient=999999")
        assert message_id not in listing.text
        bad = await client.get("/messages?since=yesterday&state=lost")
        assert bad.status_code == 400
        assert "Use a date like" in bad.text and "Unknown state" in bad.text
        export = await client.get("/messages.csv?origin=http")
        assert export.headers["content-type"].startswith("text/csv")
        assert "attachment" in export.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(export.text)))
        assert rows[1][0] == message_id and rows[1][5] == "+14155550123"
        formula = await _message(world, "acme", "+14155550124", '=HYPERLINK("http://x.example")')
        export = await client.get("/messages.csv?recipient=550124")
        rows = list(csv.reader(io.StringIO(export.text)))
        assert rows[1][0] == formula
        assert rows[1][14] == '\'=HYPERLINK("http://x.example")'  # not a formula


async def test_live_events_follow_the_delivery_to_its_end(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        message_id = await _message(world, "acme", "+14155550199", "live")
        [delivery] = await world.ctx.messages.deliveries_of(message_id)
        await login(client, "alice")
        page = await client.get(f"/messages/{message_id}")
        after = re.search(r"events\?after=(\d+)", page.text)
        assert after is not None

        async def advance() -> None:
            await asyncio.sleep(0.3)
            now = world.ctx.clock.now()
            await world.ctx.queue.transition(
                delivery.id, DeliveryState.IN_FLIGHT, now=now, reason="sent to upstream sim"
            )
            await asyncio.sleep(0.3)
            await world.ctx.queue.transition(
                delivery.id, DeliveryState.DELIVERED, now=now, reason="receipt DELIVRD"
            )

        task = asyncio.create_task(advance())
        seen: list[str] = []
        async with client.stream(
            "GET", f"/messages/{message_id}/events?after={after.group(1)}"
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    seen.append(line[7:])
                if line == "event: done":
                    break
        await task
        assert seen[0] == "change" and seen[-1] == "done"
        timeline = await client.get(f"/messages/{message_id}/timeline")
        assert "receipt DELIVRD" in timeline.text and "sent to upstream sim" in timeline.text


async def test_operator_provisioning_errors_and_audit(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        csrf = await login(client, "olga")
        r = await client.post("/admin/accounts", data={"csrf": csrf, "name": "Bad Name!"})
        assert r.status_code == 400 and "Bad Name!" in r.text
        r = await client.post("/admin/accounts", data={"csrf": csrf, "name": "initech"})
        assert r.status_code == 303 and r.headers["location"].startswith("/admin/accounts/initech")
        base = "/admin/accounts/initech"
        r = await client.post(
            f"{base}/sender-add", data={"csrf": csrf, "pattern": "*@initech.example"}
        )
        assert r.status_code == 303
        r = await client.post(
            f"{base}/sender-add", data={"csrf": csrf, "pattern": "*@initech.example"}
        )
        assert r.status_code == 409 and "already" in r.text
        r = await client.post(f"{base}/network-add", data={"csrf": csrf, "cidr": "10.0.0.300/24"})
        assert r.status_code == 400 and "10.0.0.300/24" in r.text and "Traceback" not in r.text
        r = await client.post(f"{base}/network-add", data={"csrf": csrf, "cidr": "192.0.2.7/24"})
        assert r.status_code == 303
        r = await client.post(
            f"{base}/user-add",
            data={"csrf": csrf, "username": "ivan", "password": "password", "email": ""},
        )
        assert r.status_code == 400
        assert "Password: " in r.text and "most common" in r.text
        r = await client.post(
            f"{base}/smpp-add",
            data={"csrf": csrf, "system_id": "initech", "password": "toolongpassword"},
        )
        assert r.status_code == 400 and "Password: must be 1 to 8 characters" in r.text
        r = await client.post(
            f"{base}/smpp-add",
            data={
                "csrf": csrf,
                "system_id": "initech",
                "password": "Sm9pp!x",
                "max_binds": "2",
                "throughput": "12.5",
            },
        )
        assert r.status_code == 303, r.text
        [credential] = await world.directory.list_smpp("initech")
        assert (credential.max_binds, credential.throughput) == (2, 12.5)
        page = await client.get(base)
        assert "192.0.2.0/24" in page.text and "*@initech.example" in page.text
        audit = await client.get("/admin/audit")
        assert "sender.add" in audit.text and "portal:olga" in audit.text
        assert "sender:*@initech.example" in audit.text
        assert "Sm9pp!x" not in audit.text
        r = await client.post(f"{base}/disable", data={"csrf": csrf})
        assert r.status_code == 303
        account = await world.directory.account_by_name("initech")
        assert account is not None and not account.enabled
        r = await client.post(
            "/admin/accounts/nosuch/sender-add", data={"csrf": csrf, "pattern": "a@b.c"}
        )
        assert r.status_code == 404
        for path in ("/admin/status", "/admin/users", "/admin/accounts/initech/settings"):
            assert (await client.get(path)).status_code == 200, path


async def test_operator_disabling_a_user_ends_their_sessions(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as op, world.client() as user:
        csrf = await login(op, "olga")
        await login(user, "alice")
        r = await op.post("/admin/users/alice/disable", data={"csrf": csrf})
        assert r.status_code == 303
        assert (await user.get("/")).status_code == 303
        r = await op.post("/admin/users/olga/disable", data={"csrf": csrf})
        assert r.status_code == 400 and "cannot disable yourself" in r.text


async def test_unknown_pages_and_methods_get_html_errors(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        await login(client, "alice")
        r = await client.get("/no/such/page")
        assert r.status_code == 404 and "<html" in r.text
        r = await client.delete("/messages")
        assert r.status_code == 405
        r = await client.get("/messages/" + "x" * 500)
        assert r.status_code == 404


async def test_every_form_carries_the_session_csrf_token(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client, world.client() as op:
        mine = await _message(world, "acme", "+14155550111", "hello")
        pages = {
            "alice": (
                client,
                ["/", "/messages", "/send", "/settings", "/account/password", f"/messages/{mine}"],
            ),
            "olga": (
                op,
                [
                    "/admin/accounts",
                    "/admin/accounts/acme",
                    "/admin/users",
                    "/admin/accounts/acme/settings",
                    "/send",
                ],
            ),
        }
        for username, (c, paths) in pages.items():
            csrf = await login(c, username)
            for path in paths:
                html = (await c.get(path)).text
                tokens = re.findall(r'name="csrf" value="([^"]*)"', html)
                forms = html.count("<form")
                post_forms = len(re.findall(r'<form[^>]*method="post"', html))
                assert tokens, path
                assert set(tokens) == {csrf}, (path, set(tokens))
                assert len(tokens) >= post_forms, path
                assert forms >= post_forms


async def test_audit_page_never_shows_a_secret(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client, world.client() as op:
        csrf = await login(client, "alice")
        r = await client.post(
            "/settings", data={"csrf": csrf, "webhook_secret": "s3cret-s3cret-s3cret"}
        )
        assert r.status_code == 303
        await login(op, "olga")
        audit = await op.get("/admin/audit?q=account.settings")
        assert "account.settings" in audit.text
        assert "webhook_secret" in audit.text and "s3cret" not in audit.text


async def test_store_down_gives_a_503_page_and_changes_nothing(tmp_path: Path) -> None:
    from teleway.core.ports import StoreUnavailable

    async with portal_world(tmp_path) as world, world.client() as client:
        csrf = await login(client, "alice")

        async def down(*args: object, **kwargs: object) -> None:
            raise StoreUnavailable("database is locked")

        history, directory = world.ctx.history, world.ctx.directory
        original_search, original_verify = history.search, directory.verify_login
        history.search = down  # type: ignore[method-assign]
        try:
            r = await client.get("/messages")
            assert r.status_code == 503
            assert "The database is not reachable" in r.text and "Traceback" not in r.text
        finally:
            history.search = original_search  # type: ignore[method-assign]
        r = await client.post(
            "/send", data={"csrf": csrf, "number": "+14155550123", "device": "sms", "text": "x"}
        )
        assert r.status_code == 303
        client.cookies.clear()
        directory.verify_login = down  # type: ignore[method-assign]
        try:
            page = await client.get("/login")
            r = await client.post(
                "/login",
                data={"username": "alice", "password": PASSWORD, "csrf": csrf_of(page.text)},
            )
            assert r.status_code == 503 and "not reachable" in r.text
        finally:
            directory.verify_login = original_verify  # type: ignore[method-assign]


async def test_test_message_when_the_store_refuses_writes(tmp_path: Path) -> None:
    from dataclasses import replace

    from teleway.core.ports import StoreFull
    from teleway.web.portal import build_portal

    async def full(submission: Submission) -> None:
        raise StoreFull("disk full")

    async with portal_world(tmp_path) as world:
        app = build_portal(replace(world.ctx, accept=full), sessions=world.sessions)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://p.test") as client:
            csrf = await login(client, "alice")
            r = await client.post(
                "/send",
                data={"csrf": csrf, "number": "+14155550123", "device": "sms", "text": "x"},
            )
            assert r.status_code == 503
            assert "nothing was sent" in r.text
        page = await world.ctx.history.search(MessageFilter())
        assert page.items == ()


async def test_status_page_shows_upstreams_queue_and_a_published_route_table(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from teleway.web.portal import build_portal

    async with portal_world(tmp_path) as world:
        ctx = replace(
            world.ctx,
            routes=lambda: [{"prefix": "+44", "upstreams": "eu-1, eu-2", "weight": 3}],
        )
        app = build_portal(ctx, sessions=world.sessions)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://p.test") as client:
            await login(client, "olga")
            page = await client.get("/admin/status")
            assert page.status_code == 200
            assert "+44" in page.text and "eu-1, eu-2" in page.text
            assert "sim" in page.text and "bound" in page.text


async def test_ended_sessions_are_purged_at_login(tmp_path: Path) -> None:
    from datetime import timedelta

    async with portal_world(tmp_path) as world, world.client() as client:
        alice = await world.directory.get_user("alice")
        assert alice is not None
        old = world.ctx.clock.now() - timedelta(days=2)
        for _ in range(3):
            await world.sessions.create(alice, now=old, ip=None)
        assert await world.sessions.count(alice.id) == 3
        await login(client, "alice")
        assert await world.sessions.count(alice.id) == 1  # only the new one


async def test_notification_settings_and_operator_only_settings(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client, world.client() as op:
        csrf = await login(client, "alice")
        r = await client.post(
            "/settings",
            data={
                "csrf": csrf,
                "flags": "1",
                "notify_email": "ops@acme.example",
                "notify_on": "all",
                "notify_dsn": "on",
                "strip_signature": "on",
            },
        )
        assert r.status_code == 303, r.text
        account = await world.directory.account_by_name("acme")
        assert account is not None
        s = account.settings
        assert (s.notify_email, str(s.notify_on), s.notify_dsn) == ("ops@acme.example", "all", True)
        assert (s.strip_signature, s.strip_quotes) == (True, False)
        r = await client.post("/settings", data={"csrf": csrf, "notify_email": "not an address"})
        assert r.status_code == 400 and "not an address" in r.text
        op_csrf = await login(op, "olga")
        r = await op.post(
            "/admin/accounts/acme/settings",
            data={
                "csrf": op_csrf,
                "flags": "1",
                "sender_id": "ACME",
                "default_country": "GB",
                "max_recipients": "5",
                "smpp_default_device": "mobile",
                "check_spf": "on",
            },
        )
        assert r.status_code == 303, r.text
        account = await world.directory.account_by_name("acme")
        assert account is not None
        s = account.settings
        assert (s.sender_id, s.default_country, s.max_recipients) == ("ACME", "GB", 5)
        assert (str(s.smpp_default_device), s.check_spf, s.check_dkim) == ("mobile", True, False)
        # the operator's form unchecked the account user's flags it did not send: none were
        # sent here except check_spf, so the user's flags are now off (a form is the whole page)
        assert s.notify_dsn is False
        r = await op.post(
            "/admin/accounts/acme/settings",
            data={"csrf": op_csrf, "sender_id": "THIS IS FAR TOO LONG"},
        )
        assert r.status_code == 400
        # allowed sender ids: one field, entries separated by commas, shown back the same way
        r = await op.post(
            "/admin/accounts/acme/settings",
            data={"csrf": op_csrf, "allowed_senders": "ACME, +4479111*"},
        )
        assert r.status_code == 303, r.text
        account = await world.directory.account_by_name("acme")
        assert account is not None
        assert account.settings.allowed_senders == ("ACME", "+4479111*")
        page = await op.get("/admin/accounts/acme/settings")
        assert 'value="ACME, +4479111*"' in page.text
        r = await op.post(
            "/admin/accounts/acme/settings",
            data={"csrf": op_csrf, "allowed_senders": "ACME, AC*"},
        )
        assert r.status_code == 400 and "must be digits" in r.text
        # an account user cannot widen what it may send as
        await client.post("/settings", data={"csrf": csrf, "allowed_senders": ""})
        account = await world.directory.account_by_name("acme")
        assert account is not None
        assert account.settings.allowed_senders == ("ACME", "+4479111*")
