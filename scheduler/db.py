"""Engines, sessions and migrations for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
    # Let SQLAlchemy, not the driver, say when transactions begin (see _sqlite_begin).
    dbapi_connection.isolation_level = None


READ_ONLY = "remindbot_read_only"


def _sqlite_begin(connection: Connection) -> None:
    # A transaction that reads and then writes must hold the write lock from the start:
    # otherwise a concurrent writer makes it fail with "database is locked" instead of
    # waiting for the busy timeout. Read-only sessions (see ``reading``) need no lock.
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite files get WAL mode, foreign keys, a busy timeout and
    transactions that take the write lock when they begin."""
    if not url.startswith("sqlite"):
        # A server restart leaves dead connections in the pool: test each before use.
        kwargs.setdefault("pool_pre_ping", True)
    if url.startswith("postgresql+asyncpg"):
        # No JIT compilation: the bot's statements are short index reads, for which
        # compiling (about 10 ms at 10 million reminders) costs more than it saves.
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("server_settings", {}).setdefault("jit", "off")
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(engine):
        _create_private(engine.url.database)
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _create_private(database: str | None) -> None:
    """Create a new SQLite file readable by its owner only (0600), whatever the umask: it
    holds every patient's data. SQLite gives its -wal and -shm files the same mode."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists() or not path.parent.is_dir():
        return  # an existing file keeps its mode; a missing folder is reported on connect
    with contextlib.suppress(FileExistsError, PermissionError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def reading(
    sessions: async_sessionmaker[AsyncSession], *, short: bool = False
) -> AsyncIterator[AsyncSession]:
    """A session for reads only: on SQLite it does not wait for, or block, writers.

    ``short``: reads of a few milliseconds each, a web page's. On PostgreSQL they run
    without parallel workers: starting them cost more than these reads take (a team's
    week of activity at 10 million reminders: 30 ms with two workers, 23 without)."""
    async with sessions() as session:
        connection = await session.connection(execution_options={READ_ONLY: True})
        if short and connection.dialect.name == "postgresql":
            await connection.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
        yield session


# Alembic is imported by the functions that migrate or read the schema version: a command
# that only reads the database (and the bot's import of this module) does without it.


def _alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    command.upgrade(_alembic_config(connection), revision)


def _current_heads(connection: Connection) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    return set(MigrationContext.configure(connection).get_current_heads())


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


async def migrate(engine: AsyncEngine, *, revision: str = "head") -> None:
    """Upgrade the database to the newest schema (or to ``revision``); a database already
    there is unchanged."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, revision)


async def is_migrated(engine: AsyncEngine) -> bool:
    """Whether the database schema is at the newest revision."""
    async with engine.connect() as connection:
        heads = await connection.run_sync(_current_heads)
    return heads == {head_revision()}


def is_database_error(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be reached or used right now (an outage,
    not a bug): what a caller reports in one line and tries again later."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(error, OperationalError | InterfaceError):
        return True
    if isinstance(error, DBAPIError):
        return error.connection_invalidated
    # asyncpg reports a refused or unresolvable server as a plain OSError (a missing file
    # is not the database's: callers check their files first).
    return isinstance(error, OSError) and not isinstance(
        error, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError
    )


def database_label(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)
