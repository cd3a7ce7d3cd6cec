"""Migrations: the initial revision builds exactly tables.py, on SQLite and PostgreSQL, and a
database at another revision is refused."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import URL, Connection, make_url
from store_helpers import DEFAULT_PG

from teleway.core.ports import StoreUnavailable
from teleway.store import open_store, tables
from teleway.store.engine import open_engine, to_asyncpg_dsn
from teleway.store.migrations import (
    SchemaMismatch,
    check_current,
    current_revisions,
    head_revisions,
    upgrade,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str | URL]:
    """An empty database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    session_url: URL = request.getfixturevalue("postgres_url")  # fails if no server
    name = f"teleway_mig_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(to_asyncpg_dsn(session_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield session_url.set(database=name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _diffs(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, tables.metadata))


async def test_upgrade_builds_exactly_the_tables(empty_url: str | URL) -> None:
    with pytest.raises(SchemaMismatch) as refused:
        await check_current(empty_url)
    assert refused.value.current == ()
    assert refused.value.expected == head_revisions()
    assert "teleway db upgrade" in str(refused.value)

    await upgrade(empty_url)
    await check_current(empty_url)
    assert await current_revisions(empty_url) == head_revisions()
    await upgrade(empty_url)  # at head already: nothing to do

    db = open_engine(empty_url)
    try:
        async with db.engine.connect() as connection:
            assert await connection.run_sync(_diffs) == []
    finally:
        await db.close()


async def test_unknown_revision_is_refused(empty_url: str | URL) -> None:
    await upgrade(empty_url)
    db = open_engine(empty_url)
    try:
        async with db.engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    finally:
        await db.close()
    with pytest.raises(SchemaMismatch) as refused:
        await check_current(empty_url)
    assert refused.value.current == ("f00dfeed",)
    assert "newer" in str(refused.value)
    with pytest.raises(SchemaMismatch):
        await open_store(empty_url)


async def test_open_store_checks_or_migrates(empty_url: str | URL) -> None:
    with pytest.raises(SchemaMismatch):
        await open_store(empty_url)
    store = await open_store(empty_url, migrate=True)
    try:
        assert await store.queue.depth()
    finally:
        await store.close()
    store = await open_store(empty_url)  # now at head
    await store.close()


async def test_unreachable_postgres_is_unavailable() -> None:
    url = make_url(DEFAULT_PG).set(port=1, database="nowhere")  # nothing listens on port 1
    with pytest.raises(StoreUnavailable):
        await check_current(url)
    with pytest.raises(StoreUnavailable):
        await open_store(url)
