"""Backends for the store contract tests: SQLite (a file per test), PostgreSQL (a fresh database
per session, emptied before each test) and the in-memory fake.

PostgreSQL is the server at 127.0.0.1:5432 (override with TELEWAY_TEST_POSTGRES, a SQLAlchemy
URL naming an existing database to connect to for CREATE DATABASE). When it cannot be reached
the PostgreSQL tests fail; set TELEWAY_SKIP_POSTGRES=1 to skip them instead.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url
from store_helpers import (
    DEFAULT_PG,
    PG_USERS,
    START,
    Backend,
    add_accounts,
    empty_postgres,
)

from teleway.store import Store, open_store
from teleway.store.engine import to_asyncpg_dsn
from teleway.store.migrations import upgrade
from teleway.testing.fakes import FakeClock, InMemoryStore, SequentialIds

T = TypeVar("T")


def run_aside(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end on its own loop in another thread (session fixtures may be
    set up from inside a test's running loop)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def postgres_wanted() -> bool:
    return os.environ.get("TELEWAY_SKIP_POSTGRES") != "1"


async def _admin_connection() -> tuple[asyncpg.Connection, URL]:
    base = make_url(os.environ.get("TELEWAY_TEST_POSTGRES", DEFAULT_PG))
    users = (base.username,) if base.username else PG_USERS
    error: Exception | None = None
    for user in users:
        url = base.set(username=user)
        try:
            return await asyncpg.connect(to_asyncpg_dsn(url), timeout=10), url
        except (OSError, asyncpg.PostgresError) as exc:
            error = exc
    raise ConnectionError(f"PostgreSQL at {base.host}:{base.port}: {error}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[URL]:
    """A fresh, migrated database for this test session, dropped at the end."""
    if not postgres_wanted():
        pytest.skip("TELEWAY_SKIP_POSTGRES=1")
    name = f"teleway_test_{secrets.token_hex(6)}"

    async def create() -> URL:
        connection, url = await _admin_connection()
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return url.set(database=name)

    try:
        url = run_aside(create())
    except (ConnectionError, OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is needed for these tests ({exc}); set TELEWAY_SKIP_POSTGRES=1 to skip"
        )
    try:
        run_aside(upgrade(url))
        yield url
    finally:

        async def drop() -> None:
            connection, _ = await _admin_connection()
            try:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await connection.close()

        run_aside(drop())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating each time would be slow)."""
    path = tmp_path_factory.mktemp("template") / "teleway.db"
    run_aside(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


async def _fresh_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> str | URL:
    """An empty migrated database for `request.param`: a copy of the SQLite template, or the
    session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        path = tmp_path / "teleway.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    await empty_postgres(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "memory"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> AsyncIterator[Backend]:
    clock = FakeClock(START)
    ids = SequentialIds()
    if request.param == "memory":
        memory = InMemoryStore()
        yield Backend("memory", memory, memory, clock, ids, memory=memory)
        return
    url = await _fresh_url(request, tmp_path, sqlite_template)
    store = await open_store(url)
    await add_accounts(store)
    backend = Backend(request.param, store.messages, store.queue, clock, ids, store=store, url=url)
    try:
        yield backend
    finally:
        if request.param == "postgres":
            await backend.make_roomy()
        for cleanup in backend._cleanups:
            await cleanup()
        await store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> AsyncIterator[Store]:
    """A SQL store (a copy of the migrated SQLite template, or the session's PostgreSQL
    database emptied) with the test accounts: for the tests of what only the SQL stores have."""
    url = await _fresh_url(request, tmp_path, sqlite_template)
    opened = await open_store(url)
    await add_accounts(opened)
    try:
        yield opened
    finally:
        await opened.close()
