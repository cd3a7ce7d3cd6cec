"""Alembic environment: runs on the connection handed over by `teleway.store.migrations`, or,
from the alembic command line, on TELEWAY_DATABASE_URL (or alembic.ini's sqlalchemy.url)."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from teleway.store.tables import metadata

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite has little ALTER TABLE
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_url(url: str) -> None:
    from teleway.store.engine import open_engine

    db = open_engine(url, pool_size=1)
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await db.engine.dispose()


given = config.attributes.get("connection")
if given is not None:
    run_migrations(given)
elif context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported")
else:
    url = os.environ.get("TELEWAY_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set TELEWAY_DATABASE_URL to the database to migrate")
    asyncio.run(run_from_url(url))
