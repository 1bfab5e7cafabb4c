"""Shared fixtures: a migrated database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from scheduler.db import create_engine, migrate, session_factory
from tests.fake_bot_api import fake_bot_api
from tests.network_guard import NetworkGuard, network_guard

# Fixtures imported to be requested by name; __all__ tells the linter they are used.
__all__ = ["fake_bot_api", "network_guard"]

# Property tests must not depend on the machine's speed: no deadline per example (a busy CI
# machine made one example of the planner take more than hypothesis's default 200 ms).
settings.register_profile("remindbot", deadline=None)
settings.load_profile("remindbot")

POSTGRES_URL = os.environ.get("REMINDBOT_TEST_POSTGRES_URL")
# CI sets this so that a missing PostgreSQL fails the run instead of skipping tests.
REQUIRE_POSTGRES = os.environ.get("REMINDBOT_TEST_REQUIRE_POSTGRES") == "1"


@pytest.fixture(autouse=True)
def _no_internet(network_guard: NetworkGuard) -> NetworkGuard:
    """Every test runs with the network guard on: only loopback (and the test database)."""
    return network_guard


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without it, constructing RetryAfter warns (PTBDeprecationWarning), which
    # filterwarnings=error turns into the exception PTB raises instead of RetryAfter.
    monkeypatch.setenv("PTB_TIMEDELTA", "1")


def skip_or_fail(reason: str) -> None:
    if REQUIRE_POSTGRES:
        pytest.fail(f"{reason} (REMINDBOT_TEST_REQUIRE_POSTGRES=1)")
    pytest.skip(reason)


EngineFactory = Callable[[], AsyncEngine]
# How to open more engines on the database of an ``engine`` fixture, as other processes would.
_OPENERS: dict[AsyncEngine, EngineFactory] = {}


async def _postgres_engine() -> AsyncIterator[AsyncEngine]:
    """An engine whose connections use a fresh schema, dropped afterwards."""
    if not POSTGRES_URL:
        skip_or_fail("REMINDBOT_TEST_POSTGRES_URL is not set")
    assert POSTGRES_URL
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    try:
        async with admin.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OSError as error:
        await admin.dispose()
        skip_or_fail(f"PostgreSQL at REMINDBOT_TEST_POSTGRES_URL is unreachable: {error}")

    def open_engine() -> AsyncEngine:
        assert POSTGRES_URL
        settings = {"server_settings": {"search_path": schema}}
        return create_engine(POSTGRES_URL, connect_args=settings)

    engine = open_engine()
    _OPENERS[engine] = open_engine
    try:
        yield engine
    finally:
        del _OPENERS[engine]
        await engine.dispose()
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An empty database (no tables yet), on a SQLite file or in a PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'remindbot.db'}"
        sqlite = create_engine(url)
        _OPENERS[sqlite] = lambda: create_engine(url)
        yield sqlite
        del _OPENERS[sqlite]
        await sqlite.dispose()
    else:
        async for postgres in _postgres_engine():
            yield postgres


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncEngine:
    """A database migrated to the newest schema."""
    await migrate(engine)
    return engine


@pytest.fixture
async def open_engine(db: AsyncEngine) -> AsyncIterator[EngineFactory]:
    """Opens further engines on the test database (disposed afterwards)."""
    opened: list[AsyncEngine] = []

    def open_more() -> AsyncEngine:
        engine = _OPENERS[db]()
        opened.append(engine)
        return engine

    yield open_more
    for engine in opened:
        await engine.dispose()


@pytest.fixture
def sessions(db: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(db)


@pytest.fixture
async def session(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


COORDINATOR_ID = 900
NOW_FOR_SETUP = datetime(2026, 1, 1, tzinfo=UTC)


async def team_with_coordinator(
    sessions: async_sessionmaker[AsyncSession], user_id: int = COORDINATOR_ID
) -> int:
    """Make ``user_id`` a coordinator of the default team (every patient's team must have
    one); returns the team's id."""
    from scheduler import store, teams
    from scheduler.statuses import Role

    async with sessions.begin() as session:
        if await store.role_of(session, user_id=user_id) is None:
            await store.grant(
                session, user_id=user_id, role=Role.COORDINATOR, actor="test", now=NOW_FOR_SETUP
            )
        try:
            team = await teams.by_name(session, name=teams.DEFAULT_TEAM)
        except teams.UnknownTeam:  # tables made from the models, not by the migrations
            team = await teams.create(
                session, name=teams.DEFAULT_TEAM, actor="test", now=NOW_FOR_SETUP
            )
            await teams.join_only_team(session, user_id=user_id)
        return team.id


async def dump(engine: AsyncEngine) -> str:
    """Every row of every table, as text: what a copy of the database would reveal."""
    from sqlalchemy import inspect as inspect_schema

    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: inspect_schema(sync).get_table_names())
        lines = []
        for name in sorted(names):
            for row in await connection.execute(text(f'SELECT * FROM "{name}"')):
                lines.append(f"{name}: {tuple(row)!r}")
    return "\n".join(lines)


def sqlite_with_coordinator(path: Path, user_id: int = COORDINATOR_ID) -> None:
    """A migrated SQLite file whose default team has a coordinator, as the command line
    finds a clinic's database (no audit event, so tests can count the ones they cause)."""
    import asyncio

    async def prepare() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await migrate(engine)
            async with engine.begin() as connection:
                await connection.execute(
                    text(
                        "INSERT INTO staff_user (telegram_user_id, role, granted_at, granted_by) "
                        "VALUES (:user, 'coordinator', :now, 'test')"
                    ),
                    {"user": user_id, "now": NOW_FOR_SETUP},
                )
                await connection.execute(
                    text("INSERT INTO team_member (team_id, user_id) VALUES (1, :user)"),
                    {"user": user_id},
                )
        finally:
            await engine.dispose()

    asyncio.run(prepare())
