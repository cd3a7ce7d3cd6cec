"""Portal pages in process (real SQLite store, httpx over ASGI): login, sessions, CSRF, roles,
preferences with preview, API keys, history, CSV, test message, operator provisioning."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from portal_support import PASSWORD, csrf_of, login, portal_world

from teleway.core.model import Content, Origin, Recipient, Submission


async def test_login_page_and_dashboard(tmp_path: Path) -> None:
    async with portal_world(tmp_path) as world, world.client() as client:
        response = await client.get("/")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")
        await login(client, "alice")
        page = await client.get("/")
        assert "Dashboard" in page.text
        assert "<svg" in page.text
        for path in ("/messages", "/send", "/settings", "/account/password"):
            r = await client.get(path)
            assert r.status_code == 200, (path, r.text)
