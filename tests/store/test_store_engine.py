"""Engine settings and the translation of database errors into the domain's."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from teleway.core.ports import StoreFull, StoreUnavailable
from teleway.store.engine import (
    ConflictRetry,
    StoreRejected,
    normalise_url,
    open_engine,
    store_errors,
    translate,
)


class _PgError(Exception):
    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _wrapped(kind: type[sa_exc.DBAPIError], orig: Exception) -> sa_exc.DBAPIError:
    return kind("INSERT ...", {}, orig)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_wrapped(sa_exc.OperationalError, sqlite3.OperationalError("database or disk is full")), StoreFull),
        (_wrapped(sa_exc.OperationalError, sqlite3.OperationalError("database is locked")), StoreUnavailable),
        (_wrapped(sa_exc.OperationalError, _PgError("could not extend file", "53100")), StoreFull),
        (_wrapped(sa_exc.OperationalError, _PgError("deadlock detected", "40P01")), ConflictRetry),
        (_wrapped(sa_exc.IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed")), StoreRejected),
        (_wrapped(sa_exc.DataError, _PgError("value too long", "22001")), StoreRejected),
        (_wrapped(sa_exc.InterfaceError, _PgError("connection is closed", "08003")), StoreUnavailable),
        # raw sqlite3 errors (the writer's row-only batches run on the driver connection)
        (sqlite3.OperationalError("database or disk is full"), StoreFull),
        (sqlite3.OperationalError("database is locked"), StoreUnavailable),
        (sqlite3.IntegrityError("UNIQUE constraint failed: messages.id"), StoreRejected),
        (sqlite3.InterfaceError("Cannot operate on a closed database."), StoreUnavailable),
        (sa_exc.TimeoutError("QueuePool limit reached"), StoreUnavailable),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), StoreUnavailable),
        (OSError(errno.ENOSPC, "No space left on device"), StoreFull),
    ],
)  # fmt: skip
def test_errors_are_translated(error: Exception, expected: type[Exception]) -> None:
    mapped = translate(error)
    assert type(mapped) is expected
    with pytest.raises(expected) as raised, store_errors():
        raise error
    assert raised.value.__cause__ is error


def test_other_errors_pass_through() -> None:
    assert translate(KeyError("x")) is None
    with pytest.raises(KeyError), store_errors():
        raise KeyError("x")


def test_urls() -> None:
    assert normalise_url("sqlite:///var/x.db").drivername == "sqlite+aiosqlite"
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert normalise_url("postgresql+asyncpg://u@h/db").drivername == "postgresql+asyncpg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    with pytest.raises(ValueError):
        normalise_url("mysql://u@h/db")
    with pytest.raises(ValueError):
        open_engine("sqlite+aiosqlite:///:memory:")


async def test_sqlite_connections_are_durable(tmp_path: Path) -> None:
    db = open_engine(f"sqlite:///{tmp_path / 'sub' / 'dir' / 'x.db'}")  # directories created
    try:

        def pragmas(connection: Any) -> dict[str, Any]:
            return {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }

        expected = {
            "journal_mode": "wal",
            "synchronous": 2,
            "foreign_keys": 1,
            "busy_timeout": 5000,
        }
        assert await db.read(pragmas) == expected  # the store's own (pysqlite) connections
        async with db.engine.connect() as connection:  # the aiosqlite engine for others
            assert await connection.run_sync(pragmas) == expected
            # transactions take the write lock at BEGIN
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
            assert connection.in_transaction()
    finally:
        await db.close()


async def test_unopenable_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a_directory.db").mkdir()
    db = open_engine(f"sqlite+aiosqlite:///{tmp_path / 'a_directory.db'}")
    try:
        with pytest.raises(StoreUnavailable):
            await db.read(lambda connection: connection.exec_driver_sql("SELECT 1").scalar())
    finally:
        await db.close()
