"""Schema migrations (Alembic), usable from code without an alembic.ini.

    await upgrade(url)         # bring the database to the newest revision (creates it if empty)
    await check_current(url)   # raise SchemaMismatch unless the database is at that revision

The gateway calls `check_current` at start and refuses to run against a database at another
revision (an older one: run `teleway db upgrade`; an unknown one: written by a newer teleway).
Developers add a revision with
`alembic -c src/teleway/store/migrations/alembic.ini revision --autogenerate -m "..."`
(TELEWAY_DATABASE_URL names the database to compare with).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection

from teleway.store.engine import open_engine, store_errors

MIGRATIONS = Path(__file__).resolve().parent

# Several nodes starting at once against one PostgreSQL: only one upgrades at a time.
_PG_UPGRADE_LOCK = 0x7E1E_3A7


class SchemaMismatch(RuntimeError):
    """The database is not at the revision this program was built for."""

    def __init__(self, current: Sequence[str], expected: Sequence[str], known: bool) -> None:
        self.current = tuple(current)
        self.expected = tuple(expected)
        have = ", ".join(self.current) or "no schema (empty database)"
        want = ", ".join(self.expected)
        if known:
            advice = "run `teleway db upgrade`"
        else:
            advice = "the revision is unknown to this teleway (written by a newer version?)"
        super().__init__(f"database schema is at {have}, this program needs {want}: {advice}")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revisions() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


async def upgrade(url: str | URL, revision: str = "head") -> None:
    """Upgrade the database to `revision` (default: the newest) in one transaction."""
    db = open_engine(url, pool_size=1)
    try:
        with store_errors():
            async with db.engine.begin() as connection:
                if db.is_postgresql:
                    await connection.exec_driver_sql(
                        f"SELECT pg_advisory_xact_lock({_PG_UPGRADE_LOCK})"
                    )
                await connection.run_sync(_upgrade, revision)
    finally:
        await db.engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def current_revisions(url: str | URL) -> tuple[str, ...]:
    """The revisions the database is stamped with (empty for an empty database)."""
    db = open_engine(url, pool_size=1)
    try:
        with store_errors():
            async with db.reader.connect() as connection:
                return await connection.run_sync(_current)
    finally:
        await db.engine.dispose()


def _current(connection: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(connection).get_current_heads())


async def check_current(url: str | URL) -> None:
    """Raise SchemaMismatch unless the database is exactly at the head revision."""
    current = await current_revisions(url)
    expected = head_revisions()
    if set(current) != set(expected):
        script = ScriptDirectory.from_config(alembic_config())
        known = all(_known(script, rev) for rev in current)
        raise SchemaMismatch(current, expected, known)


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises several kinds for unknown ids
        return False
