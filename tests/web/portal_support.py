"""A portal around a real store (SQLite file, migrated) for in-process page tests, and a
logged-in httpx client that fills in the CSRF token the way a browser submits the form."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from teleway.core import passwords
from teleway.core.accept import accept
from teleway.core.model import Accepted, Role, Submission
from teleway.runtime.wiring import RandomIds, SystemClock
from teleway.store import Store, open_store
from teleway.store.api_keys import ApiKeys
from teleway.store.blobs import LocalBlobStore
from teleway.store.directory import Directory
from teleway.store.history import History
from teleway.store.idempotency import IdempotencyKeys
from teleway.store.web_sessions import WebSessions
from teleway.store.webhooks import WebhookAttempts
from teleway.web.context import WebContext
from teleway.web.portal import build_portal

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class PortalWorld:
    store: Store
    directory: Directory
    ctx: WebContext
    app: Any
    sessions: WebSessions

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=("127.0.0.1", 40000)),
            base_url="http://portal.test",
            follow_redirects=False,
        )


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field in the page"
    return found.group(1)


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session CSRF token (from the dashboard)."""
    page = await client.get("/login")
    response = await client.post(
        "/login",
        data={"username": username, "password": password, "csrf": csrf_of(page.text), "next": "/"},
    )
    assert response.status_code == 303, response.text
    dashboard = await client.get("/")
    assert dashboard.status_code == 200, dashboard.text
    return csrf_of(dashboard.text)


@asynccontextmanager
async def portal_world(tmp_path: Path) -> AsyncIterator[PortalWorld]:
    passwords.configure(time_cost=1, memory_cost=8, parallelism=1)
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path}/portal.db", migrate=True)
    clock, ids = SystemClock(), RandomIds()
    directory = Directory(store.engine)
    sessions = WebSessions(store.engine)

    async def accept_one(submission: Submission) -> Accepted:
        return await accept(submission, store=store.messages, clock=clock, ids=ids)

    async def health() -> dict[str, Any]:
        return {"ok": True, "queue": {}, "upstreams": {"sim": True}}

    ctx = WebContext(
        messages=store.messages,
        queue=store.queue,
        directory=directory,
        accept=accept_one,
        blobs=LocalBlobStore(tmp_path / "blobs"),
        clock=clock,
        ids=ids,
        history=History(store.db),
        api_keys=ApiKeys(store.db, store.writer),
        idempotency=IdempotencyKeys(store.db, store.writer),
        webhooks=WebhookAttempts(store.db, store.writer),
        health=health,
        upstreams=lambda: {"sim": True},
    )
    try:
        await directory.create_account("acme", actor="test")
        await directory.create_account("globex", actor="test")
        await directory.add_user("alice", actor="test", account="acme", password=PASSWORD)
        await directory.add_user("gina", actor="test", account="globex", password=PASSWORD)
        await directory.add_user("olga", actor="test", role=Role.OPERATOR, password=PASSWORD)
        yield PortalWorld(
            store=store,
            directory=directory,
            ctx=ctx,
            app=build_portal(ctx, sessions=sessions),
            sessions=sessions,
        )
    finally:
        await store.close()
        passwords.reset()
