"""Database fixtures for the tests that work on the schema made by `tables.metadata.create_all`
(the account directory, the provisioning file, `teleway admin`). Loaded as a plugin by
tests/conftest.py, so every test module can ask for them by name.

- `cheap_hashing`: argon2 at minimal cost for the duration of a test; opt in with
  ``pytestmark = pytest.mark.usefixtures("cheap_hashing")``.
- `sqlite_url`: a fresh SQLite file with the schema (a copy of `sqlite_schema_template`).
- `postgres_database`: one PostgreSQL database per session with the schema, uniquely named and
  dropped at the end; `empty_postgres_url` is that database emptied, for synchronous tests.
  `fresh_postgres_database(prefix)` makes a new database without schema, for a real gateway.
- `database_url`: parametrized over ``sqlite`` and ``postgres``; `engine` opens it (foreign keys
  on for SQLite, every table emptied for PostgreSQL) and `directory` is a `Directory` on it, built
  with the keyword arguments of `directory_options` (override that fixture for a variant).

PostgreSQL: TELEWAY_TEST_POSTGRES (default postgresql+asyncpg://postgres@127.0.0.1:5432/test)
must be reachable, or the tests fail; TELEWAY_SKIP_POSTGRES=1 skips the PostgreSQL half.

The names avoid those of tests/store/conftest.py (`postgres_url`, `sqlite_template`, `backend`),
whose migrated databases serve the store contract tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from teleway.core import passwords
from teleway.store import tables
from teleway.store.directory import Directory

POSTGRES_URL = os.environ.get(
    "TELEWAY_TEST_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def cheap_hashing() -> Iterator[None]:
    passwords.configure(time_cost=1, memory_cost=8, parallelism=1)
    yield
    passwords.reset()


async def _admin(url: URL) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password,
        database=url.database,
    )  # fmt: skip


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database with the schema, dropped at the end of the session."""
    if os.environ.get("TELEWAY_SKIP_POSTGRES") == "1":
        pytest.skip("TELEWAY_SKIP_POSTGRES=1")
    base = make_url(POSTGRES_URL)
    name = f"teleway_schema_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await _admin(base)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        engine = create_async_engine(base.set(database=name))
        async with engine.begin() as schema:
            await schema.run_sync(tables.metadata.create_all)
        await engine.dispose()

    async def drop() -> None:
        conn = await _admin(base)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {base.render_as_string(hide_password=True)} is unreachable: {exc} "
            "(set TELEWAY_SKIP_POSTGRES=1 to skip)"
        )
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(drop())


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (no schema: a gateway's `teleway db upgrade` makes it),
    dropped on exit; skipped with TELEWAY_SKIP_POSTGRES=1."""
    if os.environ.get("TELEWAY_SKIP_POSTGRES") == "1":
        pytest.skip("TELEWAY_SKIP_POSTGRES=1")
    base = make_url(POSTGRES_URL)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        connection = await _admin(base)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _empty_all_tables(engine: AsyncEngine) -> None:
    names = ", ".join(table.name for table in tables.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
def empty_postgres_url(postgres_database: str) -> str:
    """The session's PostgreSQL database with every table emptied (for synchronous tests: this
    runs its own event loop)."""

    async def empty() -> None:
        engine = create_async_engine(postgres_database)
        try:
            await _empty_all_tables(engine)
        finally:
            await engine.dispose()

    asyncio.run(empty())
    return postgres_database


@pytest.fixture(scope="session")
def sqlite_schema_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file with the schema, copied for each test (cheaper than create_all)."""
    path = tmp_path_factory.mktemp("schema") / "template.db"

    async def create() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        async with engine.begin() as conn:
            await conn.run_sync(tables.metadata.create_all)
        await engine.dispose()

    asyncio.run(create())
    return path


@pytest.fixture
def sqlite_url(sqlite_schema_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "teleway.db"
    shutil.copyfile(sqlite_schema_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_database"))


def _foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    if database_url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _foreign_keys_on)
    else:
        await _empty_all_tables(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def directory_options() -> dict[str, Any]:
    """Keyword arguments for the `directory` fixture's `Directory` beyond the engine."""
    return {}


@pytest.fixture
def directory(engine: AsyncEngine, directory_options: dict[str, Any]) -> Directory:
    return Directory(engine, **directory_options)
